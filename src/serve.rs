//! `muster serve`: the extender and the controller in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use anyhow::Context;
use serde::Deserialize;
use tracing::info;

use crate::controller::{self, Shared};
use crate::core::Policy;
use crate::index::{Index, IndexConfig};
use crate::sim::scenario::Duration;

/// Flags of `muster serve`; each overrides the same field of the `--config` file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (see config/muster.yaml for every field).
    #[arg(long, env = "MUSTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the extender, metrics, health and state endpoints.
    #[arg(long, env = "MUSTER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Prefix of the extender verbs (POST <prefix>/filter, /prioritize, /bind, /preempt).
    #[arg(long, env = "MUSTER_URL_PREFIX")]
    pub url_prefix: Option<String>,
    /// Pods with this spec.schedulerName are muster's.
    #[arg(long, env = "MUSTER_SCHEDULER_NAME")]
    pub scheduler_name: Option<String>,
    /// Queue for gangs that name none.
    #[arg(long, env = "MUSTER_DEFAULT_QUEUE")]
    pub default_queue: Option<String>,
}

/// The configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServeConfig {
    pub scheduler_name: String,
    pub default_queue: String,
    pub listen: SocketAddr,
    pub url_prefix: String,
    pub cycle_interval: Duration,
    pub status_interval: Duration,
    pub policy: PolicyConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PolicyConfig {
    #[serde(rename = "claimTTL")]
    pub claim_ttl: Duration,
    pub reservation_timeout: Duration,
    pub drain_after: Duration,
    pub min_runtime: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            scheduler_name: "muster".into(),
            default_queue: "default".into(),
            listen: "0.0.0.0:8888".parse().expect("valid address"),
            url_prefix: "/muster".into(),
            cycle_interval: Duration(1_000),
            status_interval: Duration(2_000),
            policy: PolicyConfig::default(),
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = Policy::default();
        PolicyConfig {
            claim_ttl: Duration(p.claim_ttl),
            reservation_timeout: Duration(p.reservation_timeout),
            drain_after: Duration(p.drain_after),
            min_runtime: Duration(p.min_runtime),
        }
    }
}

impl ServeConfig {
    /// The file (if any) with the flags applied on top.
    pub fn load(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                serde_yaml::from_str(&text).with_context(|| format!("invalid configuration in {}", path.display()))?
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
        anyhow::ensure!(config.url_prefix.starts_with('/'), "urlPrefix must start with '/': {:?}", config.url_prefix);
        anyhow::ensure!(config.cycle_interval.0 > 0, "cycleInterval must be positive");
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

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::load(&args)?;
    let client =
        kube::Client::try_default().await.context("connecting to the Kubernetes API (KUBECONFIG or in-cluster)")?;
    controller::preflight(&client).await?;
    let index = Index::new(IndexConfig {
        scheduler_name: config.scheduler_name.clone(),
        default_queue: config.default_queue.clone(),
    });
    let (shared, actions) = Shared::new(index, config.policy(), client);

    // Serve health and readiness at once; the extender verbs answer 503 until the cache has synced.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    info!(listen = %listener.local_addr()?, prefix = %config.url_prefix, scheduler = %config.scheduler_name, "serving");
    let app = crate::extender::server::router(shared.clone(), &config.url_prefix);
    let server = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown()).await });

    tokio::spawn(controller::actuator(shared.clone(), actions));
    controller::start_watchers(&shared).await;
    {
        let mut index = shared.lock();
        shared.cycle(&mut index, controller::now_ms());
    }
    controller::set_ready(&shared);
    info!("cache synced; ready");
    tokio::spawn(controller::admission_loop(shared.clone(), StdDuration::from_millis(config.cycle_interval.0)));
    tokio::spawn(controller::status_writer(shared.clone(), StdDuration::from_millis(config.status_interval.0)));
    server.await.context("server task")?.context("server")?;
    info!("shut down");
    Ok(())
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
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
