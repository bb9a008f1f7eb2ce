//! `muster serve`: the extender and the controller in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::controller::leader::{self, LeaderConfig};
use crate::controller::{self, ActuatorConfig, AdmissionConfig};
use crate::core::Policy;
use crate::duration::HumanDuration;
use crate::extender::access::{StateAccess, StateAccessMode};
use crate::extender::listen::{self, ConnectionLimits};
use crate::extender::server::{self as http, Extender, RequestLimits};
use crate::extender::tls::{TlsFiles, TlsReloader};
use crate::index::{Index, IndexConfig};
use crate::metrics::Metrics;
use crate::plan::{Health, Plans};

/// Flags of `muster serve`; each overrides the same field of the `--config` file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (see config/muster.yaml for every field).
    #[arg(long, env = "MUSTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the extender verbs (overrides extender.listen).
    #[arg(long, env = "MUSTER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of /healthz and /readyz (overrides health.listen).
    #[arg(long, env = "MUSTER_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Address of /metrics and /state (overrides metrics.listen).
    #[arg(long, env = "MUSTER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Prefix of the extender verbs (`POST <prefix>/filter`, `/prioritize`, `/bind`, `/preempt`).
    #[arg(long, env = "MUSTER_URL_PREFIX")]
    pub url_prefix: Option<String>,
    /// Pods with this spec.schedulerName are muster's.
    #[arg(long, env = "MUSTER_SCHEDULER_NAME")]
    pub scheduler_name: Option<String>,
    /// Queue for gangs that name none.
    #[arg(long, env = "MUSTER_DEFAULT_QUEUE")]
    pub default_queue: Option<String>,
    /// Elect a leader among replicas on a Lease (overrides leaderElection.enabled).
    #[arg(long, env = "MUSTER_LEADER_ELECT")]
    pub leader_elect: bool,
    /// This replica's identity in leader election (default: the pod name, else hostname-pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log lines as JSON objects (one per line, for a log pipeline) or as text.
    #[arg(long, env = "MUSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// PodGroup label keys (a Spark driver's labels are copied to its PodGroup) copied onto the per-gang cost
    /// counter `muster_gang_allocated_resource_seconds_total` as `label_<key>`, e.g. `team,cost-center`. Keep the
    /// list short: every distinct combination of values is a series.
    #[arg(long, env = "MUSTER_COST_LABELS", value_delimiter = ',')]
    pub cost_labels: Vec<String>,
    /// For gangs that wait for capacity, publish what they miss as CapacityBuffers (autoscaling.x-k8s.io) for an
    /// autoscaler (Karpenter, cluster-autoscaler); without the API, their pods are ungated instead.
    #[arg(long, env = "MUSTER_CAPACITY_REQUESTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub capacity_requests: bool,
    /// Annotate `karpenter.sh/do-not-disrupt: "true"` on running members whose loss would leave their gang below
    /// its minimum, so consolidation does not break running gangs.
    #[arg(long, env = "MUSTER_PROTECT_GANGS", default_value_t = true, action = clap::ArgAction::Set)]
    pub protect_gangs: bool,
    /// The mutating admission webhook's flags (`--webhook-*`; no webhook unless `--webhook-listen` is set).
    #[command(flatten)]
    pub webhook: Box<crate::webhook::WebhookArgs>,
}

/// The format of `muster serve`'s log lines (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `muster certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt, tls.key (the server's) and client.crt, client.key (kube-scheduler's).
    #[arg(long)]
    pub out: PathBuf,
    /// DNS names and IP addresses the server certificate is valid for (repeat, or separate with commas).
    #[arg(long = "host", value_delimiter = ',', default_values_t = ["127.0.0.1".to_string(), "localhost".to_string()])]
    pub hosts: Vec<String>,
    /// Common name of the client certificate.
    #[arg(long, default_value = "kube-scheduler")]
    pub client_name: String,
    /// How long the certificates are valid (they are made anew at every start of the pod).
    #[arg(long, default_value = "365d")]
    pub valid_for: HumanDuration,
}

/// `muster certs`: a fresh CA and the two certificates it signs, written to `--out`.
pub fn run_certs(args: CertsArgs) -> anyhow::Result<()> {
    use crate::extender::tls::{Pki, Validity};
    anyhow::ensure!(args.valid_for.0 > 0, "--valid-for must be positive");
    let pki = Pki::generate(&args.hosts, &args.client_name, Validity::from_now(args.valid_for.std()))?;
    pki.write_to(&args.out)?;
    println!(
        "wrote ca.crt, tls.crt, tls.key, client.crt, client.key to {} (server: {})",
        args.out.display(),
        args.hosts.join(", ")
    );
    Ok(())
}

/// The configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServeConfig {
    pub scheduler_name: String,
    pub default_queue: String,
    pub url_prefix: String,
    pub extender: ExtenderListenerConfig,
    pub health: PlainListenerConfig,
    pub metrics: MetricsListenerConfig,
    pub cycle_interval: HumanDuration,
    pub status_interval: HumanDuration,
    /// A refused eviction (a PodDisruptionBudget's 429, a 5xx) is retried this long, then given up: the victim
    /// counts as running again and the next cycle re-plans reclaim.
    pub eviction_timeout: HumanDuration,
    /// `/readyz` fails while a watch has been failing for longer than this.
    pub watch_stale_after: HumanDuration,
    pub leader_election: LeaderElectionConfig,
    pub policy: PolicyConfig,
}

/// The extender verbs' listener: mutual TLS, or plain HTTP on loopback only (kube-scheduler as a sidecar).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ExtenderListenerConfig {
    pub listen: SocketAddr,
    /// Serve TLS with this certificate and require client certificates signed by its client CA.
    pub tls: Option<TlsFiles>,
    /// The TLS files are re-read this often; a change is used for new connections.
    pub tls_reload_interval: HumanDuration,
    /// Allow plain HTTP on an address other than loopback (anyone who reaches it could bind pods as muster).
    #[serde(rename = "insecurePlainHTTP")]
    pub insecure_plain_http: bool,
    pub max_connections: usize,
    pub max_concurrent_requests: usize,
    pub request_timeout: HumanDuration,
    /// Ceiling of the request body; below it, the limit is sized by the cluster's node count.
    pub max_body_bytes: usize,
    /// A TLS handshake not completed by then is dropped.
    pub handshake_timeout: HumanDuration,
    /// A request's headers not received by then close the connection (also how long a keep-alive connection may
    /// sit idle).
    pub header_read_timeout: HumanDuration,
}

impl Default for ExtenderListenerConfig {
    fn default() -> Self {
        ExtenderListenerConfig {
            listen: "127.0.0.1:8888".parse().expect("valid address"),
            tls: None,
            tls_reload_interval: HumanDuration(10_000),
            insecure_plain_http: false,
            max_connections: 16_384,
            max_concurrent_requests: 64,
            request_timeout: HumanDuration(10_000),
            max_body_bytes: 64 << 20,
            handshake_timeout: HumanDuration(10_000),
            header_read_timeout: HumanDuration(30_000),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PlainListenerConfig {
    pub listen: SocketAddr,
}

impl Default for PlainListenerConfig {
    fn default() -> Self {
        PlainListenerConfig { listen: "0.0.0.0:8081".parse().expect("valid address") }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricsListenerConfig {
    pub listen: SocketAddr,
    /// Who may read /state: `kubernetes` (a bearer token allowed to list PodGroups) or `open`.
    pub state_access: StateAccessMode,
}

impl Default for MetricsListenerConfig {
    fn default() -> Self {
        MetricsListenerConfig {
            listen: "0.0.0.0:9090".parse().expect("valid address"),
            state_access: StateAccessMode::Kubernetes,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LeaderElectionConfig {
    pub enabled: bool,
    pub lease_name: String,
    /// Default: the pod's namespace ($POD_NAMESPACE), else "default".
    pub lease_namespace: String,
    pub lease_duration: HumanDuration,
    /// The leader renews its Lease this long before it would expire.
    pub renew_grace: HumanDuration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: false,
            lease_name: "muster".into(),
            lease_namespace: String::new(),
            lease_duration: HumanDuration(15_000),
            renew_grace: HumanDuration(5_000),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PolicyConfig {
    #[serde(rename = "claimTTL")]
    pub claim_ttl: HumanDuration,
    pub reservation_timeout: HumanDuration,
    pub drain_after: HumanDuration,
    pub min_runtime: HumanDuration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            scheduler_name: "muster".into(),
            default_queue: "default".into(),
            url_prefix: "/muster".into(),
            extender: ExtenderListenerConfig::default(),
            health: PlainListenerConfig::default(),
            metrics: MetricsListenerConfig::default(),
            cycle_interval: HumanDuration(1_000),
            status_interval: HumanDuration(2_000),
            eviction_timeout: HumanDuration(60_000),
            watch_stale_after: HumanDuration(30_000),
            leader_election: LeaderElectionConfig::default(),
            policy: PolicyConfig::default(),
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = Policy::default();
        PolicyConfig {
            claim_ttl: HumanDuration(p.claim_ttl),
            reservation_timeout: HumanDuration(p.reservation_timeout),
            drain_after: HumanDuration(p.drain_after),
            min_runtime: HumanDuration(p.min_runtime),
        }
    }
}

impl ServeConfig {
    /// The file (if any) with the flags applied on top.
    pub fn load(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                serde_norway::from_str(&text).with_context(|| format!("invalid configuration in {}", path.display()))?
            }
            None => ServeConfig::default(),
        };
        if let Some(v) = args.listen {
            config.extender.listen = v;
        }
        if let Some(v) = args.health_listen {
            config.health.listen = v;
        }
        if let Some(v) = args.metrics_listen {
            config.metrics.listen = v;
        }
        if let Some(v) = &args.url_prefix {
            config.url_prefix = v.clone();
        }
        if let Some(v) = &args.scheduler_name {
            config.scheduler_name = v.clone();
        }
        if let Some(v) = &args.default_queue {
            config.default_queue = v.clone();
        }
        if args.leader_elect {
            config.leader_election.enabled = true;
        }
        anyhow::ensure!(config.url_prefix.starts_with('/'), "urlPrefix must start with '/': {:?}", config.url_prefix);
        anyhow::ensure!(config.cycle_interval.0 > 0, "cycleInterval must be positive");
        anyhow::ensure!(config.status_interval.0 > 0, "statusInterval must be positive");
        let x = &config.extender;
        anyhow::ensure!(
            x.tls.is_some() || x.insecure_plain_http || x.listen.ip().is_loopback(),
            "extender.listen {} is not a loopback address and extender.tls is not set: the extender verbs (bind \
             among them) would be open to anyone who reaches it. Configure extender.tls (mutual TLS), listen on \
             127.0.0.1 beside kube-scheduler, or set extender.insecurePlainHTTP: true",
            x.listen
        );
        anyhow::ensure!(
            x.max_connections > 0 && x.max_concurrent_requests > 0 && x.max_body_bytes > 0,
            "extender.maxConnections, maxConcurrentRequests and maxBodyBytes must be positive"
        );
        anyhow::ensure!(
            x.request_timeout.0 > 0
                && x.handshake_timeout.0 > 0
                && x.header_read_timeout.0 > 0
                && x.tls_reload_interval.0 > 0,
            "extender timeouts and tlsReloadInterval must be positive"
        );
        let le = &config.leader_election;
        anyhow::ensure!(
            le.lease_duration.0 >= 2_000 && le.renew_grace.0 >= 1_000 && le.renew_grace.0 < le.lease_duration.0,
            "leaderElection: leaseDuration must be at least 2s and renewGrace at least 1s and below leaseDuration"
        );
        Ok(config)
    }

    pub fn policy(&self) -> Policy {
        Policy {
            claim_ttl: self.policy.claim_ttl.0,
            reservation_timeout: self.policy.reservation_timeout.0,
            drain_after: self.policy.drain_after.0,
            min_runtime: self.policy.min_runtime.0,
            ..Policy::default()
        }
    }
}

/// Inputs from the extender to the admission task buffered at most (beyond that, hints are dropped).
const FEEDBACK_BUFFER: usize = 16_384;

/// The cost label keys, checked: Kubernetes label keys (`[prefix/]name`), each once.
fn cost_labels(keys: &[String]) -> anyhow::Result<Vec<String>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for key in keys.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        let name = key.rsplit('/').next().unwrap_or(key);
        let valid = name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        anyhow::ensure!(valid, "--cost-labels: {key:?} is not a Kubernetes label key");
        let metric_label = crate::metrics::cost_label_name(key);
        anyhow::ensure!(seen.insert(metric_label.clone()), "--cost-labels: {key:?} repeats {metric_label}");
        out.push(key.to_string());
    }
    Ok(out)
}

/// Runs until SIGTERM or Ctrl-C, or until something it depends on fails (then the process exits non-zero and is
/// restarted): a background task ending or panicking, the HTTP server failing, leadership lost.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::load(&args)?;
    let cost_labels = cost_labels(&args.cost_labels)?;
    let mut kube_config =
        kube::Config::infer().await.context("configuring the Kubernetes API client (KUBECONFIG or in-cluster)")?;
    // The actuator retries every write with its own bounded backoff and needs to see each refusal (a
    // PodDisruptionBudget's 429) at once; the client's own retries would hide it for minutes.
    kube_config.default_retry = false;
    let client = kube::Client::try_from(kube_config).context("connecting to the Kubernetes API")?;
    controller::preflight(&client).await?;
    let metrics = Arc::new(Metrics::with_cost_labels(&cost_labels));
    let (feedback_tx, feedback_rx) = mpsc::channel(FEEDBACK_BUFFER);
    let plans = Arc::new(Plans::new(Health::new(config.watch_stale_after.std()), feedback_tx));

    // The listeners at once (health answers while a standby waits for the Lease); the extender verbs answer 503
    // until this replica leads and has synced.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = start_listeners(&config, &client, &plans, &metrics, stop_rx).await?;
    crate::webhook::start(&args.webhook, &config.scheduler_name, &client, &metrics, stop_tx.subscribe(), &mut servers)
        .await?;
    // A listener ends only once `stop_tx` says so: one ending before is a failure of the process.
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let listeners = tokio::spawn(async move {
        let first = servers.join_next().await;
        let _ = ended_tx.send(format!("{first:?}"));
        while servers.join_next().await.is_some() {}
    });
    let server_ended = async {
        match ended_rx.await {
            Ok(ended) => anyhow::anyhow!("a listener stopped: {ended}"),
            Err(_) => anyhow::anyhow!("the listeners' supervisor stopped"),
        }
    };
    tokio::pin!(server_ended);
    let mut leadership = None;
    if config.leader_election.enabled {
        let le = &config.leader_election;
        let lease = LeaderConfig {
            lease_name: le.lease_name.clone(),
            lease_namespace: if le.lease_namespace.is_empty() {
                std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into())
            } else {
                le.lease_namespace.clone()
            },
            identity: args.identity.clone().unwrap_or_else(default_identity),
            lease_duration: le.lease_duration.std(),
            renew_grace: le.renew_grace.std(),
        };
        tokio::select! {
            acquired = leader::acquire(client.clone(), lease) => leadership = Some(acquired?),
            _ = shutdown() => {
                info!("shut down while standing by");
                let _ = stop_tx.send(true);
                return Ok(());
            }
            ended = &mut server_ended => return Err(ended),
        }
    }
    plans.health.set_leader(true);
    metrics.leader.set(1);

    let index = Index::new(IndexConfig {
        scheduler_name: config.scheduler_name.clone(),
        default_queue: config.default_queue.clone(),
    });
    let admission = AdmissionConfig {
        policy: config.policy(),
        cycle_interval: config.cycle_interval.std(),
        status_interval: config.status_interval.std(),
        capacity_requests: args.capacity_requests,
        protect_gangs: args.protect_gangs,
    };
    let actuator = ActuatorConfig { eviction_timeout: config.eviction_timeout.std(), concurrency: 16 };
    let controller = controller::run(client, index, admission, actuator, plans.clone(), metrics.clone(), feedback_rx);
    let lost = async {
        match leadership.as_mut() {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        failure = controller => Err(anyhow::Error::new(failure).context("the controller stopped")),
        lost = lost => Err(anyhow::Error::new(lost)),
        ended = &mut server_ended => Err(ended),
        _ = shutdown() => Ok(()),
    };
    // Stop answering as the leader at once, let requests in flight (a bind) finish, then give the Lease up (a
    // standby takes it once the expiry it last saw has passed).
    plans.health.set_leader(false);
    metrics.leader.set(0);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(6), listeners).await;
    if let Some(l) = leadership {
        l.release().await;
    }
    match &outcome {
        Ok(()) => info!("shut down"),
        Err(e) => error!(error = %format!("{e:#}"), "stopping"),
    }
    outcome
}

/// Binds the three listeners (an address in use fails the start) and serves each in its own task; a task ends
/// only when `stop` turns true.
async fn start_listeners(
    config: &ServeConfig,
    client: &kube::Client,
    plans: &Arc<Plans>,
    metrics: &Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinSet<()>> {
    let x = &config.extender;
    let tls = match &x.tls {
        Some(files) => Some(Arc::new(
            TlsReloader::load(files.clone()).context("loading the extender's TLS certificate and client CA")?,
        )),
        None => None,
    };
    let bind = |addr: SocketAddr, what: &'static str| async move {
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr} ({what})"))
    };
    let extender_listener = bind(x.listen, "extender").await?;
    let health_listener = bind(config.health.listen, "health").await?;
    let metrics_listener = bind(config.metrics.listen, "metrics").await?;
    raise_descriptor_limit(x.max_connections + 2 * PLAIN_MAX_CONNECTIONS);
    info!(
        extender = %extender_listener.local_addr()?,
        tls = tls.is_some(),
        health = %health_listener.local_addr()?,
        metrics = %metrics_listener.local_addr()?,
        prefix = %config.url_prefix,
        scheduler = %config.scheduler_name,
        "serving"
    );
    let extender = Arc::new(Extender {
        plans: plans.clone(),
        client: client.clone(),
        metrics: metrics.clone(),
        scheduler_name: config.scheduler_name.clone(),
    });
    let request_limits = RequestLimits {
        max_concurrent_requests: x.max_concurrent_requests,
        request_timeout: x.request_timeout.std(),
        max_body_bytes: x.max_body_bytes,
    };
    let extender_limits = ConnectionLimits {
        max_connections: x.max_connections,
        handshake_timeout: x.handshake_timeout.std(),
        header_read_timeout: x.header_read_timeout.std(),
    };
    let plain_limits = ConnectionLimits {
        max_connections: PLAIN_MAX_CONNECTIONS,
        handshake_timeout: PLAIN_HEADER_READ_TIMEOUT,
        header_read_timeout: PLAIN_HEADER_READ_TIMEOUT,
    };
    let access = Arc::new(StateAccess::new(config.metrics.state_access, client.clone()));
    let mut servers = tokio::task::JoinSet::new();
    if let Some(tls) = &tls {
        servers.spawn(watch_tls_files(tls.clone(), x.tls_reload_interval.std(), metrics.clone(), stop.clone()));
    }
    servers.spawn(listen::serve(
        "extender",
        extender_listener,
        tls.map(|tls| tls as Arc<dyn listen::TlsSource>),
        http::extender_router(extender.clone(), &config.url_prefix, request_limits),
        extender_limits,
        metrics.clone(),
        stop.clone(),
    ));
    servers.spawn(listen::serve(
        "health",
        health_listener,
        None,
        http::health_router(extender.clone()),
        plain_limits,
        metrics.clone(),
        stop.clone(),
    ));
    servers.spawn(listen::serve(
        "metrics",
        metrics_listener,
        None,
        http::metrics_router(extender, access),
        plain_limits,
        metrics.clone(),
        stop,
    ));
    Ok(servers)
}

/// Open connections at most on the health and metrics listeners (kubelet's probes, Prometheus).
const PLAIN_MAX_CONNECTIONS: usize = 1_024;
/// Header deadline on the health and metrics listeners.
const PLAIN_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Re-reads the TLS files every `interval` until `stop`; a change is used for new connections, a broken one is
/// reported and the previous certificate kept.
async fn watch_tls_files(
    tls: Arc<TlsReloader>,
    interval: std::time::Duration,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        let files = tls.clone();
        match tokio::task::spawn_blocking(move || files.check()).await {
            Ok(Ok(false)) => {}
            Ok(Ok(true)) => {
                metrics.tls_reloads.with_label_values(&["extender", "loaded"]).inc();
                info!(cert = %tls.files().cert_file.display(), "TLS certificate files changed: new connections use them");
            }
            Ok(Err(e)) => {
                metrics.tls_reloads.with_label_values(&["extender", "refused"]).inc();
                error!(error = %e, "TLS certificate files changed but cannot be used; keeping the previous ones");
            }
            Err(e) => error!(error = %e, "checking the TLS files panicked"),
        }
    }
}

/// Raises the soft limit of open files towards the hard limit, so `needed` connections (plus the watches and
/// files) fit; says so when the hard limit is lower.
fn raise_descriptor_limit(needed: usize) {
    let wanted = (needed + 256) as u64;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write and read only the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit { rlim_cur: wanted.min(limit.rlim_max), rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    if limit.rlim_cur < wanted {
        warn!(
            open_files = limit.rlim_cur,
            wanted, "the open-file limit is below extender.maxConnections plus the other listeners; raise it"
        );
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "muster".into());
    format!("{host}-{}", std::process::id())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_labels_are_label_keys_each_once() {
        let keys = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            cost_labels(&keys(&["team", " cost-center", "", "example.com/pipeline"])).unwrap(),
            keys(&["team", "cost-center", "example.com/pipeline"])
        );
        let bad = cost_labels(&keys(&["bad key!"])).unwrap_err().to_string();
        assert!(bad.contains("bad key!"), "{bad}");
        // Two keys that become the same Prometheus label would merge their series.
        let clash = cost_labels(&keys(&["cost-center", "cost_center"])).unwrap_err().to_string();
        assert!(clash.contains("label_cost_center"), "{clash}");
    }

    fn args(config: &std::path::Path, listen: Option<&str>) -> ServeArgs {
        ServeArgs {
            config: Some(config.to_owned()),
            listen: listen.map(|l| l.parse().expect("an address")),
            health_listen: None,
            metrics_listen: None,
            url_prefix: None,
            scheduler_name: None,
            default_queue: None,
            leader_elect: false,
            identity: None,
            log_format: LogFormat::Text,
            cost_labels: Vec::new(),
            capacity_requests: true,
            protect_gangs: true,
            webhook: Default::default(),
        }
    }

    fn load(yaml: &str, listen: Option<&str>) -> anyhow::Result<ServeConfig> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("muster.yaml");
        std::fs::write(&path, yaml).expect("write the configuration");
        ServeConfig::load(&args(&path, listen))
    }

    #[test]
    fn the_shipped_configuration_loads_with_its_documented_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/muster.yaml");
        let config = ServeConfig::load(&args(&path, None)).expect("config/muster.yaml loads");
        let defaults = ServeConfig::default();
        assert_eq!(config.extender.listen, defaults.extender.listen);
        assert_eq!(config.extender.max_connections, defaults.extender.max_connections);
        assert_eq!(config.extender.max_body_bytes, defaults.extender.max_body_bytes);
        assert_eq!(config.health.listen, defaults.health.listen);
        assert_eq!(config.metrics.state_access, StateAccessMode::Kubernetes);
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_forced() {
        let refused = load("extender: {listen: 0.0.0.0:8888}\n", None).expect_err("plain HTTP on every address");
        assert!(refused.to_string().contains("is not a loopback address and extender.tls is not set"), "{refused}");
        let refused = load("{}\n", Some("10.0.0.1:8888")).expect_err("--listen is checked too");
        assert!(refused.to_string().contains("10.0.0.1:8888"), "{refused}");
        assert!(load("extender: {listen: 127.0.0.1:8888}\n", None).is_ok());
        assert!(load("extender: {listen: '[::1]:8888'}\n", None).is_ok());
        assert!(load("extender: {listen: 0.0.0.0:8888, insecurePlainHTTP: true}\n", None).is_ok());
        let tls = "extender: {listen: 0.0.0.0:8443, tls: {certFile: a, keyFile: b, clientCAFile: c}}\n";
        assert!(load(tls, None).is_ok(), "with tls any address is fine (the files are read at start)");
    }

    #[test]
    fn the_old_single_listen_key_is_refused_with_its_name() {
        let refused = load("listen: 0.0.0.0:8888\n", None).expect_err("`listen` moved under extender");
        assert!(format!("{refused:#}").contains("listen"), "{refused:#}");
    }
}
