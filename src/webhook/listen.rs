//! The webhook's HTTPS listener: server-only TLS with the certificate the Secret holds (swapped in place when it
//! is renewed), with the extender's connection bounds ([`ConnectionLimits`]): a cap on open connections, a
//! handshake deadline and a header deadline, so a slow or idle client cannot hold a task for ever.
//!
//! The extender's own listener (`extender::listen`) takes its certificate from files and requires client
//! certificates; the API server calling a webhook presents none, hence this small sibling.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::server::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::extender::listen::ConnectionLimits;
use crate::metrics::Metrics;

/// The listener's name in the connection metrics.
pub const LISTENER: &str = "webhook";
/// Largest request head (request line and headers) read.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// How long connections get to finish their requests once the listener stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The TLS configuration new connections handshake with; none until the first certificate is had.
#[derive(Default)]
pub struct TlsSlot(RwLock<Option<Arc<ServerConfig>>>);

impl TlsSlot {
    pub fn set(&self, config: Arc<ServerConfig>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(config);
    }

    fn current(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Serves `app` over TLS on `listener` until `stop` turns true, then lets open requests finish (up to 5 s). A
/// connection arriving while `tls` holds no certificate yet is closed (the API server then applies the
/// configuration's failurePolicy).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<TlsSlot>,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = metrics.http_connections.with_label_values(&[LISTENER]);
    let refused = metrics.http_connections_refused.with_label_values(&[LISTENER]);
    let handshake_failures = metrics.tls_handshake_failures.with_label_values(&[LISTENER]);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(listener = LISTENER, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
        };
        while connections.try_join_next().is_some() {}
        let Some(config) = tls.current() else {
            debug!(listener = LISTENER, "connection closed: no certificate yet");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.inc();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, stop, open, handshake_failures) =
            (app.clone(), stop.clone(), open.clone(), handshake_failures.clone());
        connections.spawn(async move {
            let _slot = slot;
            open.inc();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(TokioIo::new(stream), app, limits, stop).await,
                Ok(Err(e)) => {
                    handshake_failures.inc();
                    debug!(listener = LISTENER, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    handshake_failures.inc();
                    debug!(listener = LISTENER, "TLS handshake timed out");
                }
            }
            open.dec();
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        connections.abort_all();
    }
}

async fn serve_http<IO>(io: TokioIo<IO>, app: Router, limits: ConnectionLimits, mut stop: watch::Receiver<bool>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => {
            if let Err(e) = ended {
                debug!(listener = LISTENER, error = %e, "connection ended with an error");
            }
        }
        _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
