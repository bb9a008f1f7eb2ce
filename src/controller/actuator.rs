//! The actuator: every write muster makes to the cluster, retried until it succeeds or its reason is gone.
//!
//! Like a client-go workqueue: actions are keyed by what they write (a pod's eviction, a PodGroup's status), a
//! newer action for a key replaces one not yet made, one key is never written by two workers at once, and a
//! failed attempt is retried with exponential backoff (200 ms doubling to 30 s). An action ends when it
//! succeeds, when what it was for is gone (404; a UID precondition that no longer holds), on a permanent refusal
//! (a 4xx that retrying cannot change), or, for an eviction the API server keeps refusing (a
//! PodDisruptionBudget's 429, a 5xx), after `eviction_timeout`: the admission task is told and re-plans.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, EvictParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::events::{EventRecorder, Occurrence};
use crate::api::{PodGroup, Queue, errors, names, volcano};
use crate::core::Millis;
use crate::index::convert::spark::{POD_TEMPLATE_KEY, SPARK_PROPERTIES_KEY, SparkConfFiles, SparkConfSources};
use crate::index::{GangKey, ObjectRef};
use crate::metrics::Metrics;

/// A write to the cluster.
#[derive(Debug, Clone)]
pub enum Action {
    /// Nudge a pending pod so kube-scheduler retries it now (it has been directed to a node).
    Touch {
        namespace: String,
        name: String,
    },
    /// Remove muster's scheduling gate from a pod its gang's admission directed (or one kube-scheduler and an
    /// autoscaler should see), only if it is still the pod with this UID. Removing the gate is also what makes
    /// kube-scheduler try the pod at once.
    Ungate {
        namespace: String,
        name: String,
        uid: String,
    },
    /// Set Karpenter's `karpenter.sh/do-not-disrupt: "true"` on a running member whose loss would leave its gang
    /// below its minimum, only if it is still the pod with this UID.
    ProtectFromDisruption {
        namespace: String,
        name: String,
        uid: String,
    },
    /// Evict a pod (reclaim) through the Eviction API, only if it is still the pod with this UID.
    Evict {
        namespace: String,
        name: String,
        uid: String,
        beneficiary: GangKey,
        note: String,
    },
    /// Record an Event on an object.
    Event {
        object: ObjectRef,
        warning: bool,
        reason: String,
        note: String,
    },
    /// A malformed object was skipped: log it and record a Warning Event on it.
    ReportProblem {
        object: ObjectRef,
        reason: &'static str,
        message: String,
    },
    CreatePodGroup(Box<PodGroup>),
    CreateQueue(Box<Queue>),
    /// Read a Spark driver's configuration ConfigMaps (a read, not a write: its result comes back as
    /// [`Outcome::SparkConf`]). Spark creates them just after the driver pod, so "not found" is retried for
    /// [`SPARK_CONF_WAIT`].
    FetchSparkConf {
        namespace: String,
        driver: String,
        driver_uid: String,
        sources: SparkConfSources,
    },
    /// Merge-patch a PodGroup's status. `record` marks a write that makes an admission (and where its
    /// reservations are) durable.
    PodGroupStatus {
        namespace: String,
        name: String,
        status: serde_json::Value,
        record: Option<Record>,
        /// The PodGroup is Volcano's: the status goes there, in Volcano's shape.
        volcano: bool,
    },
    QueueStatus {
        name: String,
        status: serde_json::Value,
        volcano: bool,
    },
}

impl Action {
    /// What the action writes: one at a time per key, and the newest wins.
    fn key(&self, seq: u64) -> String {
        match self {
            Action::Touch { namespace, name } => format!("touch/{namespace}/{name}"),
            Action::Evict { uid, .. } => format!("evict/{uid}"),
            Action::Ungate { uid, .. } => format!("ungate/{uid}"),
            Action::ProtectFromDisruption { uid, .. } => format!("protect/{uid}"),
            Action::Event { .. } | Action::ReportProblem { .. } => format!("event/{seq}"),
            Action::CreatePodGroup(pg) => format!(
                "create-podgroup/{}/{}",
                pg.metadata.namespace.as_deref().unwrap_or_default(),
                pg.metadata.name.as_deref().unwrap_or_default()
            ),
            Action::CreateQueue(q) => format!("create-queue/{}", q.metadata.name.as_deref().unwrap_or_default()),
            Action::PodGroupStatus { namespace, name, .. } => format!("podgroup-status/{namespace}/{name}"),
            Action::QueueStatus { name, .. } => format!("queue-status/{name}"),
            Action::FetchSparkConf { driver_uid, .. } => format!("spark-conf/{driver_uid}"),
        }
    }

    /// The `kind` label of `muster_action_failures_total` and `muster_actions_completed_total`.
    fn kind(&self) -> &'static str {
        match self {
            Action::Touch { .. } => "touch",
            Action::Evict { .. } => "evict",
            Action::Ungate { .. } => "ungate",
            Action::ProtectFromDisruption { .. } => "annotate",
            Action::Event { .. } | Action::ReportProblem { .. } => "event",
            Action::CreatePodGroup(_) | Action::CreateQueue(_) => "create",
            Action::PodGroupStatus { .. } | Action::QueueStatus { .. } => "status",
            Action::FetchSparkConf { .. } => "read",
        }
    }
}

/// What the admission task needs to hear back.
#[derive(Debug)]
pub enum Outcome {
    /// A PodGroup status was written (as given).
    PodGroupStatusWritten {
        namespace: String,
        name: String,
        status: serde_json::Value,
        record: Option<Record>,
    },
    QueueStatusWritten {
        name: String,
        status: serde_json::Value,
    },
    /// An eviction was given up after the API server kept refusing it for `eviction_timeout`.
    EvictionRefused {
        uid: String,
        beneficiary: GangKey,
        message: String,
    },
    /// What the capacity-request reconciler saw: whether CapacityBuffer is served, and what the autoscaler says.
    CapacityBuffers(super::capacity::BufferReport),
    /// A write failed for good (a permanent refusal): the task forgets it was made, so it is computed again.
    Abandoned {
        key: String,
    },
    /// A Spark driver's configuration, or why it cannot be read.
    SparkConf {
        driver_uid: String,
        conf: Result<SparkConfFiles, String>,
    },
}

enum Verdict {
    Done,
    /// A read finished: hand its result to the admission task.
    Read(Outcome),
    Retry(String),
    GiveUp(String),
}

struct Pending {
    action: Action,
    attempt: u32,
    first: Instant,
    due: Instant,
    seq: u64,
}

/// Settings of the actuator.
#[derive(Debug, Clone)]
pub struct ActuatorConfig {
    /// How long a refused eviction is retried before the admission task re-plans.
    pub eviction_timeout: Duration,
    /// Writes in flight at once.
    pub concurrency: usize,
}

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Events are for people: not worth retrying for longer than this.
const EVENT_GIVE_UP: Duration = Duration::from_secs(300);
/// How long a Spark driver's configuration ConfigMap may be missing: spark-submit creates it right after the
/// driver pod, so a minute covers a slow API server; after that the driver is reported as waiting for it.
pub const SPARK_CONF_WAIT: Duration = Duration::from_secs(60);

/// The PodGroup status fields muster writes that may be absent from a status (empty or unset).
const PODGROUP_STATUS_FIELDS: &[&str] =
    &["phase", "conditions", "admittedAt", "observedGeneration", "reservations", "placement"];

/// `status` as a merge patch that replaces the whole status: a field among `fields` that it leaves out is set to
/// null, which a merge patch reads as "remove" (left out, the stored value would stay: an old admission time or
/// reservations a restarted muster would restore).
fn clearing_absent(status: &serde_json::Value, fields: &[&str]) -> serde_json::Value {
    let mut patch = status.clone();
    if let Some(map) = patch.as_object_mut() {
        for field in fields {
            map.entry(field.to_string()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}

fn backoff(attempt: u32) -> Duration {
    MIN_BACKOFF.saturating_mul(1 << attempt.min(10)).min(MAX_BACKOFF)
}

/// Runs until the action channel closes (the admission task ended).
pub async fn run(
    client: Client,
    config: ActuatorConfig,
    metrics: Arc<Metrics>,
    mut actions: mpsc::UnboundedReceiver<Action>,
    outcomes: mpsc::UnboundedSender<Outcome>,
) {
    let recorder = Arc::new(EventRecorder::new(client.clone(), "muster"));
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut due: BTreeSet<(Instant, u64, String)> = BTreeSet::new();
    // Keys being written, and a newer action for the same key that arrived meanwhile.
    let mut in_flight: HashMap<String, Option<Action>> = HashMap::new();
    let mut workers: JoinSet<(String, Pending, Verdict)> = JoinSet::new();
    let mut seq = 0u64;
    let mut open = true;
    loop {
        // Start what is due, up to the concurrency limit.
        let now = Instant::now();
        while workers.len() < config.concurrency {
            let Some(first) = due.first().cloned() else { break };
            if first.0 > now {
                break;
            }
            due.remove(&first);
            let key = first.2;
            let Some(job) = pending.remove(&key) else { continue };
            in_flight.insert(key.clone(), None);
            let (client, recorder) = (client.clone(), recorder.clone());
            let eviction_timeout = config.eviction_timeout;
            workers.spawn(async move {
                let verdict = perform(&client, &recorder, &job, eviction_timeout).await;
                (key, job, verdict)
            });
        }
        metrics.action_queue_depth.set((pending.len() + in_flight.len()) as i64);
        if !open && pending.is_empty() && workers.is_empty() {
            return;
        }
        let next_due = due.first().map(|d| d.0);
        tokio::select! {
            action = actions.recv(), if open => match action {
                Some(mut action) => {
                    seq += 1;
                    let key = action.key(seq);
                    if let Some(newer) = in_flight.get_mut(&key) {
                        if let Some(older) = newer.as_ref() {
                            carry_admission(older, &mut action);
                        }
                        *newer = Some(action);
                    } else {
                        let now = Instant::now();
                        if let Some(old) = pending.remove(&key) {
                            due.remove(&(old.due, old.seq, key.clone()));
                            carry_admission(&old.action, &mut action);
                        }
                        due.insert((now, seq, key.clone()));
                        pending.insert(key, Pending { action, attempt: 0, first: now, due: now, seq });
                    }
                }
                None => open = false,
            },
            Some(joined) = workers.join_next() => {
                let (key, mut job, verdict) = match joined {
                    Ok(done) => done,
                    // The runtime is shutting down and cancelled the worker: so is this task; the write is
                    // re-derived from the cluster by whoever runs next.
                    Err(e) if e.is_cancelled() => {
                        debug!(error = %e, "actuator worker cancelled at shutdown");
                        return;
                    }
                    Err(e) => {
                        // A worker panicked: a bug, so the process must restart rather than limp on.
                        panic!("an actuator worker failed: {e}");
                    }
                };
                let mut newer = in_flight.remove(&key).flatten();
                if let Some(next) = newer.as_mut() {
                    carry_admission(&job.action, next);
                }
                match verdict {
                    Verdict::Done => {
                        metrics.actions_completed.with_label_values(&[job.action.kind()]).inc();
                        report_done(&job.action, &outcomes)
                    }
                    Verdict::Read(outcome) => {
                        metrics.actions_completed.with_label_values(&[job.action.kind()]).inc();
                        let _ = outcomes.send(outcome);
                    }
                    Verdict::Retry(error) => {
                        metrics.action_failures.with_label_values(&[job.action.kind()]).inc();
                        debug!(%key, attempt = job.attempt, %error, "write failed; retrying with backoff");
                        if newer.is_none() {
                            job.attempt += 1;
                            job.due = Instant::now() + backoff(job.attempt);
                            due.insert((job.due, job.seq, key.clone()));
                            pending.insert(key.clone(), job);
                        }
                    }
                    Verdict::GiveUp(error) => {
                        metrics.action_failures.with_label_values(&[job.action.kind()]).inc();
                        warn!(%key, attempts = job.attempt + 1, %error, "write given up");
                        if let Action::FetchSparkConf { driver_uid, .. } = &job.action {
                            let _ = outcomes
                                .send(Outcome::SparkConf { driver_uid: driver_uid.clone(), conf: Err(error) });
                        } else if let Action::Evict { uid, beneficiary, .. } = &job.action {
                            let _ = outcomes.send(Outcome::EvictionRefused {
                                uid: uid.clone(),
                                beneficiary: beneficiary.clone(),
                                message: error,
                            });
                        } else {
                            let _ = outcomes.send(Outcome::Abandoned { key: key.clone() });
                        }
                    }
                }
                if let Some(action) = newer {
                    seq += 1;
                    let now = Instant::now();
                    due.insert((now, seq, key.clone()));
                    pending.insert(key, Pending { action, attempt: 0, first: now, due: now, seq });
                }
            },
            _ = sleep_until(next_due) => {}
        }
    }
}

/// Which admission, and which placement of its reservations ([`crate::core::Gang::placement`]), a PodGroup
/// status write records. A member is directed only once the record of its gang's current placement is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub admitted_at: Millis,
    pub placement: u64,
}

/// A newer status write for a PodGroup replaces one not yet made; if the older one was the write that makes an
/// admission durable, the newer carries that on (it is computed later from the same model, so it records the
/// admission too), or the admission task would wait for its confirmation for ever.
fn carry_admission(older: &Action, newer: &mut Action) {
    if let (Action::PodGroupStatus { record: Some(at), .. }, Action::PodGroupStatus { record: newer_at @ None, .. }) =
        (older, newer)
    {
        *newer_at = Some(*at);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn report_done(action: &Action, outcomes: &mpsc::UnboundedSender<Outcome>) {
    match action {
        Action::PodGroupStatus { namespace, name, status, record, .. } => {
            let _ = outcomes.send(Outcome::PodGroupStatusWritten {
                namespace: namespace.clone(),
                name: name.clone(),
                status: status.clone(),
                record: *record,
            });
        }
        Action::QueueStatus { name, status, .. } => {
            let _ = outcomes.send(Outcome::QueueStatusWritten { name: name.clone(), status: status.clone() });
        }
        _ => {}
    }
}

/// Patches a pod; done when it is gone or no longer the pod with the patch's UID (409).
async fn pod_patch(
    client: &Client,
    namespace: &str,
    name: &str,
    patch: Patch<&serde_json::Value>,
    what: &str,
) -> Verdict {
    match Api::<Pod>::namespaced(client.clone(), namespace).patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => Verdict::Done,
        Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => Verdict::Done,
        Err(e) => classify(e, what),
    }
}

/// Sorts an error: worth retrying (no answer, 429, 5xx) or final (any other 4xx).
fn classify(e: kube::Error, what: &str) -> Verdict {
    if errors::is_transient(&e) {
        Verdict::Retry(format!("{what}: {e}"))
    } else {
        Verdict::GiveUp(format!("{what}: {e}"))
    }
}

async fn perform(client: &Client, recorder: &EventRecorder, job: &Pending, eviction_timeout: Duration) -> Verdict {
    match &job.action {
        Action::Touch { namespace, name } => {
            let patch = serde_json::json!({"metadata": {"annotations": {
                names::RETRY_ANNOTATION: super::now_ms().to_string()
            }}});
            match Api::<Pod>::namespaced(client.clone(), namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Verdict::Done,
                Err(e) if errors::is_not_found(&e) => Verdict::Done, // gone meanwhile
                Err(e) => classify(e, "touching the pod"),
            }
        }
        Action::Ungate { namespace, name, uid } => {
            // A strategic merge patch deletes the gate by its name and keeps anyone else's gates; the UID in the
            // patch is a precondition (a pod re-created under the same name answers 409, and is not touched).
            let patch = serde_json::json!({
                "metadata": {"uid": uid},
                "spec": {"schedulingGates": [{"$patch": "delete", "name": names::ADMISSION_GATE}]},
            });
            pod_patch(client, namespace, name, Patch::Strategic(&patch), "removing the scheduling gate").await
        }
        Action::ProtectFromDisruption { namespace, name, uid } => {
            let patch = serde_json::json!({
                "metadata": {"uid": uid, "annotations": {names::DO_NOT_DISRUPT: "true"}},
            });
            pod_patch(client, namespace, name, Patch::Merge(&patch), "annotating the pod do-not-disrupt").await
        }
        Action::Evict { namespace, name, uid, note, .. } => {
            if job.attempt == 0 {
                info!(%namespace, %name, %note, "evicting to reclaim capacity");
                let event = Occurrence {
                    warning: false,
                    reason: "Reclaimed".into(),
                    note: note.clone(),
                    action: names::EVENT_ACTION_EVICT.into(),
                };
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    uid: Some(uid.clone()),
                    ..ObjectReference::default()
                };
                let _ = recorder.publish(&event, &reference).await;
            }
            // Only this pod: a pod of the same name created since is not what reclaim chose.
            let params = EvictParams {
                delete_options: Some(DeleteParams {
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..DeleteParams::default()
                }),
                ..EvictParams::default()
            };
            match Api::<Pod>::namespaced(client.clone(), namespace).evict(name, &params).await {
                Ok(_) => Verdict::Done,
                // Gone, or replaced by another pod of that name: the reason for this eviction is gone.
                Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => Verdict::Done,
                Err(e) => {
                    let message = match &e {
                        kube::Error::Api(s) => format!("eviction of {namespace}/{name} refused: {}", s.message),
                        other => format!("eviction of {namespace}/{name} failed: {other}"),
                    };
                    if job.first.elapsed() >= eviction_timeout {
                        Verdict::GiveUp(message)
                    } else {
                        match classify(e, "evicting") {
                            Verdict::Retry(_) => Verdict::Retry(message),
                            _ => Verdict::GiveUp(message),
                        }
                    }
                }
            }
        }
        Action::Event { object, warning, reason, note } => {
            let event = Occurrence {
                warning: *warning,
                reason: reason.clone(),
                note: note.clone(),
                action: names::EVENT_ACTION_ADMISSION.into(),
            };
            publish_event(recorder, &event, object, job).await
        }
        Action::ReportProblem { object, reason, message } => {
            if job.attempt == 0 {
                warn!(kind = object.kind, namespace = ?object.namespace, name = %object.name, %reason, %message,
                    "skipped a malformed object");
            }
            let event = Occurrence {
                warning: true,
                reason: (*reason).into(),
                note: message.clone(),
                action: names::EVENT_ACTION_SKIP.into(),
            };
            publish_event(recorder, &event, object, job).await
        }
        Action::CreatePodGroup(pg) => {
            let ns = pg.namespace().unwrap_or_default();
            match Api::<PodGroup>::namespaced(client.clone(), &ns).create(&PostParams::default(), pg).await {
                Ok(_) => Verdict::Done,
                Err(e) if errors::is_conflict(&e) => Verdict::Done, // exists already
                Err(e) => classify(e, "creating the PodGroup"),
            }
        }
        Action::CreateQueue(q) => match Api::<Queue>::all(client.clone()).create(&PostParams::default(), q).await {
            Ok(_) => Verdict::Done,
            Err(e) if errors::is_conflict(&e) => Verdict::Done,
            Err(e) => classify(e, "creating the Queue"),
        },
        Action::PodGroupStatus { namespace, name, status, volcano: true, .. } => {
            let patch = serde_json::json!({"status": volcano::podgroup_status(status)});
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &volcano::podgroup_resource());
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => Verdict::Done,
                Err(e) if errors::is_not_found(&e) => {
                    Verdict::GiveUp(format!("Volcano PodGroup {namespace}/{name} is gone"))
                }
                Err(e) => classify(e, "writing Volcano PodGroup status"),
            }
        }
        Action::PodGroupStatus { namespace, name, status, .. } => {
            let patch = serde_json::json!({"status": clearing_absent(status, PODGROUP_STATUS_FIELDS)});
            match Api::<PodGroup>::namespaced(client.clone(), namespace)
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Verdict::Done,
                Err(e) if errors::is_not_found(&e) => Verdict::GiveUp(format!("PodGroup {namespace}/{name} is gone")),
                Err(e) => classify(e, "writing PodGroup status"),
            }
        }
        Action::FetchSparkConf { namespace, driver, driver_uid, sources } => {
            match fetch_spark_conf(client, namespace, sources).await {
                Ok(files) => Verdict::Read(Outcome::SparkConf { driver_uid: driver_uid.clone(), conf: Ok(files) }),
                Err(FetchError::Missing(message)) => {
                    Verdict::Read(Outcome::SparkConf { driver_uid: driver_uid.clone(), conf: Err(message) })
                }
                Err(FetchError::Api(e, what)) if errors::is_not_found(&e) => {
                    let message = format!("{what} in {namespace} does not exist");
                    if job.first.elapsed() >= SPARK_CONF_WAIT {
                        Verdict::GiveUp(format!(
                            "{message} ({}s after driver {driver} was seen)",
                            SPARK_CONF_WAIT.as_secs()
                        ))
                    } else {
                        Verdict::Retry(message)
                    }
                }
                Err(FetchError::Api(kube::Error::Api(s), what)) if s.code == 403 => Verdict::GiveUp(format!(
                    "muster may not read {what} in {namespace} ({}): grant it `get` on configmaps",
                    s.message
                )),
                Err(FetchError::Api(e, what)) => classify(e, &format!("reading {what} in {namespace}")),
            }
        }
        Action::QueueStatus { name, status, volcano: true } => {
            let patch = serde_json::json!({"status": volcano::queue_status(status)});
            let api = Api::<DynamicObject>::all_with(client.clone(), &volcano::queue_resource());
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => Verdict::Done,
                Err(e) if errors::is_not_found(&e) => Verdict::GiveUp(format!("Volcano Queue {name} is gone")),
                Err(e) => classify(e, "writing Volcano Queue status"),
            }
        }
        Action::QueueStatus { name, status, .. } => {
            let patch = serde_json::json!({"status": status});
            match Api::<Queue>::all(client.clone())
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Verdict::Done,
                Err(e) if errors::is_not_found(&e) => Verdict::GiveUp(format!("Queue {name} is gone")),
                Err(e) => classify(e, "writing Queue status"),
            }
        }
    }
}

enum FetchError {
    /// A ConfigMap exists but lacks the key Spark writes: it will not change, so there is no point retrying.
    Missing(String),
    /// The API server's answer, and which ConfigMap was asked for.
    Api(kube::Error, String),
}

/// Reads `spark.properties` and the executor pod template (when mounted) from the driver's ConfigMaps.
async fn fetch_spark_conf(
    client: &Client,
    namespace: &str,
    sources: &SparkConfSources,
) -> Result<SparkConfFiles, FetchError> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let read = |name: String, key: &'static str| {
        let api = api.clone();
        async move {
            let map = api.get(&name).await.map_err(|e| FetchError::Api(e, format!("ConfigMap {name}")))?;
            map.data
                .and_then(|mut d| d.remove(key))
                .ok_or_else(|| FetchError::Missing(format!("ConfigMap {namespace}/{name} has no {key:?} key")))
        }
    };
    let properties = read(sources.properties.clone(), SPARK_PROPERTIES_KEY).await?;
    let pod_template = match &sources.pod_template {
        Some(name) => Some(read(name.clone(), POD_TEMPLATE_KEY).await?),
        None => None,
    };
    let operator_executor = match &sources.spark_application {
        Some(name) => spark_application_executor(client, namespace, name).await?,
        None => None,
    };
    Ok(SparkConfFiles { properties, pod_template, operator_executor })
}

/// `spec.executor` of the SparkApplication that launched a driver. `None` when the Spark Operator's CRD is not
/// installed or the object is gone (the conf alone then describes the executors), or when muster may not read
/// SparkApplications (logged: the executors' node selector, tolerations and affinity from `spec.executor` are
/// then unknown to muster).
async fn spark_application_executor(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<serde_json::Value>, FetchError> {
    let resource = crate::api::spark_application_resource();
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource);
    match api.get(name).await {
        Ok(app) => Ok(app.data.get("spec").and_then(|s| s.get("executor")).cloned()),
        Err(e) if errors::is_not_found(&e) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            warn!(%namespace, %name, message = %s.message,
                "may not read the SparkApplication of a driver; its executors' webhook fields are ignored");
            Ok(None)
        }
        Err(e) => Err(FetchError::Api(e, format!("SparkApplication {name}"))),
    }
}

async fn publish_event(recorder: &EventRecorder, event: &Occurrence, object: &ObjectRef, job: &Pending) -> Verdict {
    match recorder.publish(event, &object_reference(object)).await {
        Ok(()) => Verdict::Done,
        Err(e) if errors::is_not_found(&e) => Verdict::Done,
        Err(e) if job.first.elapsed() >= EVENT_GIVE_UP => Verdict::GiveUp(format!("recording an Event: {e}")),
        Err(e) => match classify(e, "recording an Event") {
            Verdict::GiveUp(m) => Verdict::GiveUp(m),
            other => other,
        },
    }
}

fn object_reference(o: &ObjectRef) -> ObjectReference {
    let api_version = if let Some(api_version) = o.api_version {
        api_version.to_string()
    } else if o.kind == "PodGroup" || o.kind == "Queue" {
        format!("{}/{}", PodGroup::group(&()), PodGroup::version(&()))
    } else {
        "v1".to_string()
    };
    ObjectReference {
        api_version: Some(api_version),
        kind: Some(o.kind.into()),
        name: Some(o.name.clone()),
        namespace: o.namespace.clone(),
        uid: o.uid.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_patch_clears_the_fields_the_status_leaves_out() {
        // A requeued gang: no admission time, no reservations. A merge patch must remove the stored ones.
        let status = serde_json::json!({"phase": "Pending", "running": 0});
        let patch = clearing_absent(&status, PODGROUP_STATUS_FIELDS);
        assert_eq!(patch["phase"], "Pending");
        assert_eq!(patch["running"], 0);
        for field in ["admittedAt", "reservations", "placement", "conditions", "observedGeneration"] {
            assert!(patch[field].is_null() && patch.get(field).is_some(), "{field} is not cleared: {patch}");
        }
        // What the status has is written as it is.
        let admitted =
            serde_json::json!({"phase": "Inqueue", "placement": [{"template": "w", "node": "n1", "count": 2}]});
        let patch = clearing_absent(&admitted, PODGROUP_STATUS_FIELDS);
        assert_eq!(patch["placement"][0]["count"], 2);
        assert!(patch["reservations"].is_null());
    }
}
