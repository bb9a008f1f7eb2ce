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
use crate::extender::server::Extender;
use crate::index::{Index, IndexConfig};
use crate::metrics::Metrics;
use crate::plan::{Health, Plans};

/// Flags of `muster serve`; each overrides the same field of the `--config` file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (see config/muster.yaml for every field).
    #[arg(long, env = "MUSTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the extender, metrics, health and state endpoints.
    #[arg(long, env = "MUSTER_LISTEN")]
    pub listen: Option<SocketAddr>,
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
}

/// The configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServeConfig {
    pub scheduler_name: String,
    pub default_queue: String,
    pub listen: SocketAddr,
    pub url_prefix: String,
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
            listen: "0.0.0.0:8888".parse().expect("valid address"),
            url_prefix: "/muster".into(),
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
            config.listen = v;
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

/// Runs until SIGTERM or Ctrl-C, or until something it depends on fails (then the process exits non-zero and is
/// restarted): a background task ending or panicking, the HTTP server failing, leadership lost.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::load(&args)?;
    let mut kube_config =
        kube::Config::infer().await.context("configuring the Kubernetes API client (KUBECONFIG or in-cluster)")?;
    // The actuator retries every write with its own bounded backoff and needs to see each refusal (a
    // PodDisruptionBudget's 429) at once; the client's own retries would hide it for minutes.
    kube_config.default_retry = false;
    let client = kube::Client::try_from(kube_config).context("connecting to the Kubernetes API")?;
    controller::preflight(&client).await?;
    let metrics = Arc::new(Metrics::new());
    let (feedback_tx, feedback_rx) = mpsc::channel(FEEDBACK_BUFFER);
    let plans = Arc::new(Plans::new(Health::new(config.watch_stale_after.std()), feedback_tx));

    // Health, readiness, metrics and /state at once; the extender verbs answer 503 until this replica leads and
    // has synced.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    info!(listen = %listener.local_addr()?, prefix = %config.url_prefix, scheduler = %config.scheduler_name, "serving");
    let extender = Arc::new(Extender {
        plans: plans.clone(),
        client: client.clone(),
        metrics: metrics.clone(),
        scheduler_name: config.scheduler_name.clone(),
    });
    let app = crate::extender::server::router(extender, &config.url_prefix);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server = tokio::spawn(async move {
        let mut stop = stop_rx;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });

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
            ended = &mut server => anyhow::bail!("the HTTP server ended: {ended:?}"),
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
        ended = &mut server => Err(anyhow::anyhow!("the HTTP server ended: {ended:?}")),
        _ = shutdown() => Ok(()),
    };
    // Stop answering as the leader at once, let requests in flight (a bind) finish, then give the Lease up (a
    // standby takes it once the expiry it last saw has passed).
    plans.health.set_leader(false);
    metrics.leader.set(0);
    let _ = stop_tx.send(true);
    if !server.is_finished() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut server).await;
    }
    if let Some(l) = leadership {
        l.release().await;
    }
    match &outcome {
        Ok(()) => info!("shut down"),
        Err(e) => error!(error = %format!("{e:#}"), "stopping"),
    }
    outcome
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
