//! One listener: accept connections up to a cap, complete the TLS handshake (when the listener has TLS) within a
//! deadline, then serve HTTP/1.1 with a deadline on each request's headers. What happens inside a request (body
//! size, concurrency, the request deadline) is the router's layers' business ([`super::server`]).
//!
//! Every listener of `muster serve` runs this loop: the extender's (mutual TLS, certificate from files), the
//! admission webhook's (server TLS, certificate from a Secret it manages) and the plain health and metrics
//! listeners. Where a listener's certificate comes from is its [`TlsSource`].
//!
//! Why each bound: a connection that never completes its handshake or never sends a request line would otherwise
//! hold a task, a socket and buffers for ever (slowloris); past the cap, a new connection is closed at once so
//! the process never runs out of descriptors or memory, and kube-scheduler reconnects.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::IntCounter;
use rustls::server::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::tls::TlsReloader;
use crate::metrics::Metrics;

/// Where a TLS listener gets the configuration each new connection handshakes with. Asked once per connection,
/// so a renewed certificate applies to new connections while open ones keep theirs.
pub trait TlsSource: Send + Sync + 'static {
    /// The configuration to handshake with; `None` while there is no certificate yet, which closes the connection
    /// at once (the client sees a refused handshake and retries or applies its failure policy).
    fn current(&self) -> Option<Arc<ServerConfig>>;
}

impl TlsSource for TlsReloader {
    fn current(&self) -> Option<Arc<ServerConfig>> {
        Some(TlsReloader::current(self))
    }
}

/// Connection-level bounds of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most; more are closed on arrival.
    pub max_connections: usize,
    /// A TLS handshake not done by then is abandoned.
    pub handshake_timeout: Duration,
    /// The headers of a request (the first, or the next on a keep-alive connection) not read by then close the
    /// connection: an idle keep-alive connection lasts this long.
    pub header_read_timeout: Duration,
}

/// Largest request head (request line and headers) read; beyond it the connection gets 431 and closes.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// How long connections get to finish their requests once the listener stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` turns true; then stops accepting, lets open requests finish (up to 5 s)
/// and returns. Errors accepting a connection (out of descriptors) are logged and retried, never fatal.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Arc<dyn TlsSource>>,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = metrics.http_connections.with_label_values(&[name]);
    let refused = metrics.http_connections_refused.with_label_values(&[name]);
    let handshake_failures = metrics.tls_handshake_failures.with_label_values(&[name]);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off a moment rather than spin; the connections in flight go on.
                    warn!(listener = name, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.inc();
            debug!(listener = name, "connection refused: at the maximum of open connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, tls, stop, open, handshake_failures) =
            (app.clone(), tls.clone(), stop.clone(), open.clone(), handshake_failures.clone());
        connections.spawn(async move {
            let _slot = slot;
            open.inc();
            match tls {
                None => serve_http(TokioIo::new(stream), app, limits, stop).await,
                Some(tls) => {
                    if let Some(stream) = handshake(name, tls.as_ref(), stream, limits, &handshake_failures).await {
                        serve_http(TokioIo::new(stream), app, limits, stop).await;
                    }
                }
            }
            open.dec();
        });
    }
    drop(listener);
    // Each connection saw `stop` too and is finishing its request in flight.
    if tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        warn!(listener = name, left = connections.len(), "connections still open after the drain timeout; closing");
        connections.abort_all();
    }
}

/// The TLS handshake of one connection, within the handshake deadline; `None` (counted unless there was no
/// certificate to offer) when it does not complete.
async fn handshake(
    name: &'static str,
    tls: &dyn TlsSource,
    stream: TcpStream,
    limits: ConnectionLimits,
    failures: &IntCounter,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let Some(config) = tls.current() else {
        debug!(listener = name, "connection closed: no certificate yet");
        return None;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            failures.inc();
            debug!(listener = name, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            failures.inc();
            debug!(listener = name, "TLS handshake timed out");
            None
        }
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
                debug!(error = %e, "connection ended with an error");
            }
        }
        _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
