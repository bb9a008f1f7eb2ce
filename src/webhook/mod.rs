//! The mutating admission webhook: `POST /mutate-pods` puts the scheduling gate [`ADMISSION_GATE`] on every new
//! pod of muster's scheduler name, so kube-scheduler does not even try such a pod until its gang is admitted
//! (muster removes the gate then). Every replica serves it, leader or standby, over HTTPS with a certificate muster
//! manages itself ([`cert`]): made once, kept in a Secret, its CA patched into the MutatingWebhookConfiguration.
//!
//! The webhook is an optimisation, never a requirement: the shipped configuration has `failurePolicy: Ignore`, so
//! a pod created while no replica answers arrives ungated, and the extender's filter holds it back as before. For
//! the same reason nothing here stops muster: a certificate or configuration that cannot be had is logged and
//! retried.
//!
//! [`ADMISSION_GATE`]: crate::api::names::ADMISSION_GATE

pub mod cert;
pub mod review;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::server::ServerConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use self::cert::{CaBundle, CertManager, CertSettings, ServingCert};
use crate::extender::listen::{self, ConnectionLimits, TlsSource};
use crate::metrics::Metrics;

/// The path the MutatingWebhookConfiguration calls.
pub const MUTATE_PATH: &str = "/mutate-pods";
/// Largest AdmissionReview read. A pod is at most 1.5 MiB (etcd's request limit); its review, JSON envelope
/// included, stays well below this.
pub const MAX_BODY_BYTES: usize = 3 << 20;
/// How often the Secret and the caBundle are checked again once in place (a renewal due, a configuration
/// re-applied without its caBundle).
const RECHECK: Duration = Duration::from_secs(300);
/// How soon after a failure (or while the configuration is missing) they are tried again.
const RETRY: Duration = Duration::from_secs(30);
/// The first certificate is tried this soon again at first, doubling up to [`RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("--webhook-hosts: {0}")]
    Hosts(String),
    #[error("listening on {addr} (webhook): {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("Secret {namespace}/{name}: {source}")]
    Secret { namespace: String, name: String, source: kube::Error },
    #[error("Secret {namespace}/{name} kept changing under muster ({attempts} attempts)")]
    Contended { namespace: String, name: String, attempts: usize },
    #[error("MutatingWebhookConfiguration {name}: {source}")]
    Configuration { name: String, source: kube::Error },
    #[error("generating the webhook certificate: {0}")]
    Generate(#[from] crate::extender::tls::TlsError),
    #[error("the webhook certificate: {0}")]
    Certificate(String),
}

/// Flags of the webhook (part of `muster serve`'s).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookArgs {
    /// Address of the mutating admission webhook (HTTPS, `POST /mutate-pods`); no webhook when unset.
    #[arg(id = "webhook_listen", long = "webhook-listen", env = "MUSTER_WEBHOOK_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The Secret (kubernetes.io/tls) holding the webhook's certificate, made by muster when missing.
    #[arg(id = "webhook_secret", long = "webhook-secret", default_value = "muster-webhook-tls")]
    pub secret: String,
    /// Namespace of that Secret.
    #[arg(
        id = "webhook_namespace",
        long = "webhook-namespace",
        env = "POD_NAMESPACE",
        default_value = "muster-system"
    )]
    pub namespace: String,
    /// The MutatingWebhookConfiguration whose webhooks get the certificate's CA as caBundle.
    #[arg(id = "webhook_configuration", long = "webhook-configuration", default_value = "muster")]
    pub configuration: String,
    /// DNS names and IP addresses the certificate is valid for, comma separated (default:
    /// `muster-webhook.<namespace>.svc`, the Service the API server calls).
    #[arg(id = "webhook_hosts", long = "webhook-hosts", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

impl WebhookArgs {
    /// The hosts, or the default Service name in the namespace.
    pub fn hosts(&self) -> Result<Vec<String>, WebhookError> {
        let hosts: Vec<String> = self.hosts.iter().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect();
        if hosts.is_empty() {
            return Ok(vec![format!("muster-webhook.{}.svc", self.namespace)]);
        }
        for host in &hosts {
            rustls_pki_types::ServerName::try_from(host.as_str())
                .map_err(|e| WebhookError::Hosts(format!("{host:?} is neither a DNS name nor an IP address: {e}")))?;
        }
        Ok(hosts)
    }
}

/// The listener's name in the connection metrics.
const LISTENER: &str = "webhook";

/// The TLS configuration new webhook connections handshake with: none until the first certificate is had, then
/// replaced in place when the Secret's certificate changes.
#[derive(Default)]
struct TlsSlot(RwLock<Option<Arc<ServerConfig>>>);

impl TlsSlot {
    fn set(&self, config: Arc<ServerConfig>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(config);
    }
}

impl TlsSource for TlsSlot {
    fn current(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Connection bounds of the webhook listener: the API server keeps a few connections per replica.
const LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 1_024,
    handshake_timeout: Duration::from_secs(10),
    header_read_timeout: Duration::from_secs(30),
};

/// Starts the webhook when `--webhook-listen` is set: binds its address (in use fails the start), then spawns
/// into `tasks` one task that serves it and keeps its certificate and caBundle current. The task ends only when
/// `stop` turns true.
pub async fn start(
    args: &WebhookArgs,
    scheduler_name: &str,
    client: &kube::Client,
    metrics: &Arc<Metrics>,
    stop: watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<(), WebhookError> {
    let Some(addr) = args.listen else {
        return Ok(());
    };
    let settings = CertSettings {
        namespace: args.namespace.clone(),
        secret: args.secret.clone(),
        configuration: args.configuration.clone(),
        hosts: args.hosts()?,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| WebhookError::Listen { addr, source })?;
    info!(
        webhook = %listener.local_addr().unwrap_or(addr),
        secret = %format!("{}/{}", settings.namespace, settings.secret),
        configuration = %settings.configuration,
        hosts = %settings.hosts.join(","),
        "serving the admission webhook"
    );
    let tls = Arc::new(TlsSlot::default());
    let app = router(Arc::new(Mutator { scheduler_name: scheduler_name.to_owned(), metrics: metrics.clone() }));
    let manager = CertManager::new(client.clone(), settings);
    let server = listen::serve(LISTENER, listener, Some(tls.clone()), app, LIMITS, metrics.clone(), stop.clone());
    tasks.spawn(async move {
        tokio::join!(server, keep_certificate(manager, tls, stop));
    });
    Ok(())
}

/// Obtains the certificate, then re-checks the Secret and the caBundle every [`RECHECK`] (every [`RETRY`] while
/// something fails or the configuration is missing), until `stop`.
async fn keep_certificate(manager: CertManager, tls: Arc<TlsSlot>, mut stop: watch::Receiver<bool>) {
    let settings = manager.settings().clone();
    let mut current: Option<ServingCert> = None;
    let mut wait = Duration::ZERO;
    let mut first_retry = FIRST_RETRY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        match manager.ensure_secret().await.and_then(|cert| Ok((cert.server_config()?, cert))) {
            Ok((config, cert)) if current.as_ref() != Some(&cert) => {
                tls.set(config);
                info!(secret = %format!("{}/{}", settings.namespace, settings.secret), "webhook certificate loaded");
                current = Some(cert);
            }
            Ok(_) => {}
            Err(e) if current.is_none() => {
                error!(error = %e, retry_in = ?first_retry, "the webhook has no certificate yet; the API server's \
                       calls fail and pods arrive ungated (the extender still holds them)");
                wait = first_retry;
                first_retry = (first_retry * 2).min(RETRY);
                continue;
            }
            Err(e) => warn!(error = %e, "checking the webhook certificate failed; serving the one loaded"),
        }
        let Some(cert) = &current else { continue };
        wait = match manager.patch_ca_bundle(&cert.ca_pem).await {
            Ok(CaBundle::Current) => RECHECK,
            Ok(CaBundle::Patched(webhooks)) => {
                info!(configuration = %settings.configuration, webhooks, "caBundle patched");
                RECHECK
            }
            Ok(CaBundle::Missing) => {
                warn!(configuration = %settings.configuration, retry_in = ?RETRY,
                      "MutatingWebhookConfiguration not found: the API server does not call the webhook");
                RETRY
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?RETRY, "patching the caBundle failed");
                RETRY
            }
        };
    }
}

/// The handler's state.
struct Mutator {
    scheduler_name: String,
    metrics: Arc<Metrics>,
}

fn router(mutator: Arc<Mutator>) -> Router {
    Router::new().route(MUTATE_PATH, axum::routing::post(mutate)).with_state(mutator)
}

/// `POST /mutate-pods`: an AdmissionReview in, one out (200), or 400/413 with the reason in plain text.
async fn mutate(State(mutator): State<Arc<Mutator>>, request: Request) -> Response {
    let response = match read_body(request).await {
        Err(refused) => refused,
        Ok(bytes) => match review::answer(&bytes, &mutator.scheduler_name) {
            Ok(answer) => {
                if answer.gated {
                    mutator.metrics.webhook_gated_pods.inc();
                }
                ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        },
    };
    mutator.metrics.webhook_requests.with_label_values(&[response.status().as_str()]).inc();
    response
}

/// The body, at most [`MAX_BODY_BYTES`]: a larger announced length is refused from the head alone, before any of
/// it is read.
async fn read_body(request: Request) -> Result<Bytes, Response> {
    let too_large = || {
        (StatusCode::PAYLOAD_TOO_LARGE, format!("an AdmissionReview is at most {MAX_BODY_BYTES} bytes\n"))
            .into_response()
    };
    let announced = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await.map_err(|e| match e
        .into_inner()
        .downcast_ref::<http_body_util::LengthLimitError>(
    ) {
        Some(_) => too_large(),
        None => (StatusCode::BAD_REQUEST, "the request body could not be read\n").into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use clap::Parser;
    use tower::ServiceExt;

    fn mutator() -> Arc<Mutator> {
        Arc::new(Mutator { scheduler_name: "muster".into(), metrics: Arc::new(Metrics::new()) })
    }

    async fn post(mutator: &Arc<Mutator>, body: Body, length: Option<usize>) -> (StatusCode, String) {
        let mut request = axum::http::Request::post(MUTATE_PATH);
        if let Some(length) = length {
            request = request.header(header::CONTENT_LENGTH, length);
        }
        let response =
            router(mutator.clone()).oneshot(request.body(body).expect("a request")).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_handler_answers_reviews_and_refuses_the_rest_with_the_reason() {
        let m = mutator();
        let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u", "operation": "CREATE",
            "object": {"spec": {"schedulerName": "muster", "containers": [{"name": "c"}]}},
        }});
        let (status, body) = post(&m, Body::from(review.to_string()), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"patchType\":\"JSONPatch\""), "{body}");
        assert_eq!(m.metrics.webhook_gated_pods.get(), 1);

        let (status, body) = post(&m, Body::from("{"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("not JSON"), "{body}");

        // Too large: announced (refused from the head), or streamed without a length.
        let (status, body) = post(&m, Body::empty(), Some(MAX_BODY_BYTES + 1)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        let (status, _) = post(&m, Body::from(vec![b' '; MAX_BODY_BYTES + 1]), None).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

        let requests = |code: &str| m.metrics.webhook_requests.with_label_values(&[code]).get();
        assert_eq!((requests("200"), requests("400"), requests("413")), (1, 1, 2));
        assert_eq!(m.metrics.webhook_gated_pods.get(), 1);
    }

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        webhook: WebhookArgs,
    }

    #[test]
    fn hosts_default_to_the_service_in_the_namespace() {
        let flags = Flags::parse_from(["x", "--webhook-namespace", "gangs"]);
        assert_eq!(flags.webhook.hosts().expect("hosts"), ["muster-webhook.gangs.svc"]);
        let flags = Flags::parse_from(["x", "--webhook-hosts", "a.b.svc, 127.0.0.1"]);
        assert_eq!(flags.webhook.hosts().expect("hosts"), ["a.b.svc", "127.0.0.1"]);
        let flags = Flags::parse_from(["x", "--webhook-hosts", "not a host"]);
        assert!(flags.webhook.hosts().expect_err("refused").to_string().contains("not a host"));
        assert_eq!(flags.webhook.listen, None, "off unless asked for");
    }
}
