//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): of several replicas, only the holder
//! admits, writes and reports Ready, so the Service in front of them routes kube-scheduler to it alone.
//!
//! A replica that can no longer confirm it holds the Lease steps down by ending the process (it restarts as a
//! standby): it stops acting before the Lease can expire and another replica can take it. Confirmation is a
//! read of the Lease (holder and renew time) at least every second; the lease manager renews it.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tracing::{info, warn};

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// The holder renews this long before the Lease would expire.
    pub renew_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease { namespace: String, name: String, source: LeaseManagerError },
    #[error("lost the leader Lease {0}: stepping down")]
    Lost(String),
}

/// The Lease is ours until [`Leadership::lost`] returns.
pub struct Leadership {
    config: LeaderConfig,
    client: Client,
    changes: watch::Receiver<bool>,
    manager: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: Client, config: LeaderConfig) -> Result<Leadership, LeaderError> {
    let error = |source| LeaderError::Lease {
        namespace: config.lease_namespace.clone(),
        name: config.lease_name.clone(),
        source,
    };
    let seconds = |d: Duration| d.as_secs().max(1);
    let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&config.identity)
        .with_duration(seconds(config.lease_duration))
        .with_grace(seconds(config.renew_grace).min(seconds(config.lease_duration) - 1).max(1))
        .build()
        .await
        .map_err(error)?;
    let (mut changes, manager) = manager.watch().await;
    info!(lease = %format!("{}/{}", config.lease_namespace, config.lease_name), identity = %config.identity,
        "waiting to become the leader");
    while !*changes.borrow_and_update() {
        if changes.changed().await.is_err() {
            let result = manager.await;
            return Err(match result {
                Ok(Err(e)) => error(e),
                _ => LeaderError::Lost("the lease manager stopped".into()),
            });
        }
    }
    info!(identity = %config.identity, "became the leader");
    Ok(Leadership { config, client, changes, manager })
}

impl Leadership {
    /// Returns when leadership is lost (or can no longer be confirmed within the renew deadline).
    pub async fn lost(&mut self) -> LeaderError {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.config.lease_namespace);
        let deadline = self.config.lease_duration.saturating_sub(self.config.renew_grace).max(Duration::from_secs(1));
        let mut confirmed = Instant::now();
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() || !*self.changes.borrow() {
                        return LeaderError::Lost("another replica holds it".into());
                    }
                }
                _ = every.tick() => {
                    match api.get(&self.config.lease_name).await {
                        Ok(lease) => {
                            let spec = lease.spec.unwrap_or_default();
                            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                                confirmed = Instant::now();
                            } else {
                                return LeaderError::Lost(format!(
                                    "the Lease is held by {}",
                                    spec.holder_identity.unwrap_or_else(|| "nobody".into())
                                ));
                            }
                        }
                        Err(e) => warn!(error = %e, "cannot read the leader Lease"),
                    }
                    if confirmed.elapsed() > deadline {
                        return LeaderError::Lost(format!(
                            "could not confirm the Lease for {} s (renew deadline)",
                            confirmed.elapsed().as_secs()
                        ));
                    }
                }
            }
        }
    }

    /// Gives the Lease up (graceful shutdown). A standby takes it once the expiry it last read has passed, so
    /// this spares a replica that restarts at once the wait, not a running standby.
    pub async fn release(self) {
        drop(self.changes); // the lease manager releases the Lease when nobody listens
        let _ = tokio::time::timeout(Duration::from_secs(5), self.manager).await;
    }
}
