//! The controller: the one writer of the model and the only writer to the cluster.
//!
//! - [`watch`]: a watch per modelled kind (Nodes, Pods, PodGroups, Queues, PriorityClasses), feeding
//! - [`admission`]: the task that owns the model (index and core), runs admission cycles, directs the members
//!   of admitted gangs and publishes plans for the extender ([`crate::plan`]), and asks for
//! - [`actuator`]: every write to the cluster (evictions with UID preconditions, status, Events, PodGroup and
//!   Queue creation, nudges), retried with backoff until it succeeds or its reason is gone.
//! - [`capacity`]: the capacity requests (CapacityBuffers) of gangs that wait for nodes, for an autoscaler.
//! - [`leader`]: leader election on a Lease, so that of several replicas only one acts.
//!
//! [`run`] supervises them: if any task ends or panics, it returns an error and the process exits (and is
//! restarted), rather than limping on with part of itself gone.

pub mod actuator;
pub mod admission;
pub mod capacity;
pub mod events;
mod gauges;
pub mod leader;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;
use tokio::sync::mpsc;

use crate::api::{PodGroup, Queue};
use crate::core::Millis;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::plan::{Feedback, Plans};
pub use actuator::ActuatorConfig;
pub use admission::AdmissionConfig;

/// Errors of the controller layer.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "cannot reach the Kubernetes API to list {kind}: {source} (are muster's CRDs installed? kubectl apply -f deploy/crds/)"
    )]
    Unreachable { kind: &'static str, source: kube::Error },
    #[error("a background task ended: {0}")]
    TaskEnded(String),
}

/// Milliseconds since the Unix epoch: the one clock muster reads (the core takes time as an argument).
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// Checks that the API server serves what muster needs, so a missing CRD is a clear error at start-up.
pub async fn preflight(client: &Client) -> Result<(), ControllerError> {
    let lp = kube::api::ListParams::default().limit(1);
    Api::<PodGroup>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|source| ControllerError::Unreachable { kind: "podgroups.scheduling.muster.dev", source })?;
    Api::<Queue>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|source| ControllerError::Unreachable { kind: "queues.scheduling.muster.dev", source })?;
    Api::<Node>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|source| ControllerError::Unreachable { kind: "nodes", source })?;
    Ok(())
}

/// Inputs buffered between the watches and the admission task (back-pressure beyond that).
const INPUT_BUFFER: usize = 8192;

/// Starts the watches, the admission task and the actuator; returns only when one of them ends (an error: the
/// caller ends the process). Readiness is reported through `plans.health` once the initial sync is done.
pub async fn run(
    client: Client,
    index: Index,
    admission: AdmissionConfig,
    actuator: ActuatorConfig,
    plans: Arc<Plans>,
    metrics: Arc<Metrics>,
    feedback: mpsc::Receiver<Feedback>,
) -> ControllerError {
    let (input_tx, input_rx) = mpsc::channel(INPUT_BUFFER);
    let (action_tx, action_rx) = mpsc::unbounded_channel();
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let mut tasks: tokio::task::JoinSet<&'static str> = tokio::task::JoinSet::new();
    watch::spawn_all(&mut tasks, &client, &input_tx, &plans, &metrics);
    drop(input_tx);
    // The capacity requests' reconciler, fed the desired buffers by the admission task.
    let buffers = if admission.capacity_requests {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(capacity::Desired::new()));
        let (client, outcomes) = (client.clone(), outcome_tx.clone());
        tasks.spawn(async move {
            capacity::run(client, rx, outcomes).await;
            "capacity requests"
        });
        Some(tx)
    } else {
        None
    };
    let task = admission::AdmissionTask::new(index, admission, plans.clone(), metrics.clone(), action_tx, buffers);
    // The admission task gets a thread of its own: a long cycle (tens of milliseconds at 10,000 nodes) must
    // never hold up a worker of the runtime that answers kube-scheduler.
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("muster-admission".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(task.run(input_rx, feedback, outcome_rx)),
            Err(e) => tracing::error!(error = %e, "cannot start the admission task's runtime"),
        }
        let _ = ended_tx.send(()); // dropped unsent if the task panicked: the same news
    });
    if let Err(e) = spawned {
        return ControllerError::TaskEnded(format!("cannot start the admission thread: {e}"));
    }
    tasks.spawn(async move {
        let _ = ended_rx.await;
        "admission"
    });
    tasks.spawn(async move {
        actuator::run(client, actuator, metrics, action_rx, outcome_tx).await;
        "actuator"
    });
    match tasks.join_next().await {
        Some(Ok(name)) => ControllerError::TaskEnded(format!("the {name} task returned")),
        Some(Err(e)) if e.is_panic() => ControllerError::TaskEnded(format!("a task panicked: {e}")),
        Some(Err(e)) => ControllerError::TaskEnded(format!("a task was cancelled: {e}")),
        None => ControllerError::TaskEnded("no tasks".into()),
    }
}
