//! The controller: the only writer to the cluster.
//!
//! - Watches Nodes, Pods, PodGroups, Queues and PriorityClasses into the [`Index`] (ready once every initial
//!   list has been applied, nodes and queues first so that recorded reservations restore onto known nodes).
//! - Runs admission cycles on every change and at least every `cycle_interval`, and acts on what they decide:
//!   touches the pending pods of admitted gangs so kube-scheduler retries them at once, evicts reclaim victims.
//! - Creates what the index asks for (a Spark driver's PodGroup, the default Queue), records Events, and writes
//!   PodGroup and Queue status, idempotently (only what changed).

mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use crate::api::{PodGroup, Queue, names};
use crate::core::{CycleOutcome, GangPhase, Millis, Policy};
use crate::index::{Index, ObjectRef, Request};
use crate::metrics::Metrics;

/// Errors that stop `muster serve` from starting.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "cannot reach the Kubernetes API to list {kind}: {source} (are muster's CRDs installed? kubectl apply -f deploy/crds/)"
    )]
    Unreachable { kind: &'static str, source: kube::Error },
}

/// Milliseconds since the Unix epoch: the one clock muster reads (the core takes time as an argument).
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// What a cycle or the index asks the controller to do against the API server.
#[derive(Debug)]
pub enum Action {
    /// Touch a pending pod so kube-scheduler retries it now (its gang was admitted).
    Retry {
        namespace: String,
        name: String,
    },
    /// Evict a pod to reclaim capacity for another queue.
    Evict {
        namespace: String,
        name: String,
        reason: String,
    },
    Create(Request),
    Event {
        object: ObjectRef,
        warning: bool,
        reason: String,
        note: String,
    },
}

/// State shared by the watchers, the admission loop and the HTTP server.
pub struct Shared {
    index: Mutex<Index>,
    pub policy: Policy,
    pub client: Client,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    /// Wakes the admission loop.
    pub wake: Notify,
    actions: mpsc::UnboundedSender<Action>,
}

impl Shared {
    pub fn new(index: Index, policy: Policy, client: Client) -> (Arc<Shared>, mpsc::UnboundedReceiver<Action>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            index: Mutex::new(index),
            policy,
            client,
            metrics: Metrics::new(),
            ready: AtomicBool::new(false),
            wake: Notify::new(),
            actions: tx,
        });
        (shared, rx)
    }

    /// The model. Never held across an await: the extender answers from it in microseconds.
    pub fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs an admission cycle on the locked model and queues what it decided.
    pub fn cycle(&self, index: &mut Index, now: Millis) {
        let start = Instant::now();
        index.set_now(now);
        let out = index.core.run_cycle(now, &self.policy);
        self.metrics.cycles.inc();
        self.metrics.cycle_duration.observe(start.elapsed().as_secs_f64());
        self.act_on(index, &out, now);
        self.forward_requests(index);
    }

    /// Queues the index's own requests (PodGroups and Queues to create, malformed objects to report).
    pub fn forward_requests(&self, index: &mut Index) {
        for r in index.take_requests() {
            let _ = self.actions.send(Action::Create(r));
        }
    }

    fn act_on(&self, index: &Index, out: &CycleOutcome, now: Millis) {
        let core = &index.core;
        for g in &out.admitted {
            let Some(gang) = core.gang(*g) else { continue };
            self.metrics.admission_wait.observe(now.saturating_sub(gang.spec.created) as f64 / 1000.0);
            for p in &gang.pods {
                let Some(pod) = core.pod(*p) else { continue };
                if pod.node.is_none()
                    && pod.claim.is_none()
                    && let Some((namespace, name)) = pod.spec.name.split_once('/')
                {
                    let _ = self.actions.send(Action::Retry { namespace: namespace.into(), name: name.into() });
                }
            }
            if let Some(key) = index.gang_key(*g) {
                let note = format!("reserved {} members on {} nodes", gang.slots.len(), {
                    let mut nodes: Vec<_> = gang.slots.iter().map(|s| s.node).collect();
                    nodes.sort();
                    nodes.dedup();
                    nodes.len()
                });
                if let Some(object) = gang_object(index, key) {
                    let _ =
                        self.actions.send(Action::Event { object, warning: false, reason: "Admitted".into(), note });
                }
            }
        }
        for e in &out.evictions {
            self.metrics.reclaim_evictions.inc();
            let Some(pod) = core.pod(e.pod) else { continue };
            let Some((namespace, name)) = pod.spec.name.split_once('/') else { continue };
            let beneficiary = core.gang(e.beneficiary).map(|g| g.spec.name.clone()).unwrap_or_default();
            let reason = format!(
                "reclaimed for {beneficiary}, whose queue is below its deserved share{}",
                if e.whole_gang { " (whole gang: its elastic members were not enough)" } else { "" }
            );
            let _ = self.actions.send(Action::Evict { namespace: namespace.into(), name: name.into(), reason });
        }
    }
}

/// The Kubernetes object that stands for a gang in Events: its PodGroup, or its pod.
pub fn gang_object(index: &Index, key: &crate::index::GangKey) -> Option<ObjectRef> {
    use crate::index::GangKey;
    match key {
        GangKey::PodGroup { namespace, name } => {
            let uid = index.gang(key).and_then(|g| g.podgroup.as_ref()).and_then(|pg| pg.metadata.uid.clone());
            uid.as_ref()?;
            Some(ObjectRef { kind: "PodGroup", namespace: Some(namespace.clone()), name: name.clone(), uid })
        }
        GangKey::Pod { namespace, name } => {
            let uid = index.pod_uid(namespace, name).map(str::to_string);
            Some(ObjectRef { kind: "Pod", namespace: Some(namespace.clone()), name: name.clone(), uid })
        }
    }
}

fn object_reference(o: &ObjectRef) -> ObjectReference {
    let api_version = if o.kind == "PodGroup" || o.kind == "Queue" { "scheduling.muster.dev/v1alpha1" } else { "v1" };
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(o.kind.into()),
        name: Some(o.name.clone()),
        namespace: o.namespace.clone(),
        uid: o.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Applies one kind's watch events to the index, treating each re-list as the complete set of objects (so
/// objects deleted while the watch was down are deleted here too). Signals `synced` after the first list.
async fn watch_kind<K>(
    shared: Arc<Shared>,
    api: Api<K>,
    kind: &'static str,
    key: fn(&K) -> String,
    apply: fn(&mut Index, Arc<K>),
    delete: fn(&mut Index, &str),
    synced: Arc<Notify>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut known: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut first = true;
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(kind, error = %e, "watch failed; retrying with backoff");
                continue;
            }
        };
        let mut index = shared.lock();
        index.set_now(now_ms());
        match event {
            Event::Init => listing = Some(HashSet::new()),
            Event::InitApply(obj) | Event::Apply(obj) => {
                let k = key(&obj);
                if let Some(l) = listing.as_mut() {
                    l.insert(k.clone());
                }
                known.insert(k);
                apply(&mut index, Arc::new(obj));
            }
            Event::Delete(obj) => {
                let k = key(&obj);
                known.remove(&k);
                delete(&mut index, &k);
            }
            Event::InitDone => {
                let listed = listing.take().unwrap_or_default();
                for gone in known.difference(&listed).cloned().collect::<Vec<_>>() {
                    delete(&mut index, &gone);
                }
                known = listed;
                if first {
                    first = false;
                    info!(kind, objects = known.len(), "initial list applied");
                    synced.notify_one();
                }
            }
        }
        shared.forward_requests(&mut index);
        drop(index);
        shared.wake.notify_one();
    }
}

fn name_of<K: Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

fn namespaced_name_of<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
}

fn uid_of<K: Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap_or_default()
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

/// Starts the watchers; returns once every initial list has been applied (then the extender may answer).
pub async fn start_watchers(shared: &Arc<Shared>) {
    let c = shared.client.clone();
    let wait = |n: Arc<Notify>| async move { n.notified().await };
    // Nodes and queues first: recorded reservations restore onto nodes and into queues that are known.
    let nodes = Arc::new(Notify::new());
    tokio::spawn(watch_kind(
        shared.clone(),
        Api::<Node>::all(c.clone()),
        "nodes",
        name_of,
        Index::apply_node,
        Index::delete_node,
        nodes.clone(),
    ));
    let queues = Arc::new(Notify::new());
    tokio::spawn(watch_kind(
        shared.clone(),
        Api::<Queue>::all(c.clone()),
        "queues",
        name_of,
        Index::apply_queue,
        Index::delete_queue,
        queues.clone(),
    ));
    let classes = Arc::new(Notify::new());
    tokio::spawn(watch_kind(
        shared.clone(),
        Api::<PriorityClass>::all(c.clone()),
        "priorityclasses",
        name_of,
        |i, pc: Arc<PriorityClass>| i.apply_priority_class(&pc),
        Index::delete_priority_class,
        classes.clone(),
    ));
    wait(nodes).await;
    wait(queues).await;
    wait(classes).await;
    let groups = Arc::new(Notify::new());
    tokio::spawn(watch_kind(
        shared.clone(),
        Api::<PodGroup>::all(c.clone()),
        "podgroups",
        namespaced_name_of,
        Index::apply_podgroup,
        |i, key| {
            if let Some((ns, name)) = key.split_once('/') {
                i.delete_podgroup(ns, name);
            }
        },
        groups.clone(),
    ));
    wait(groups).await;
    let pods = Arc::new(Notify::new());
    tokio::spawn(watch_kind(
        shared.clone(),
        Api::<Pod>::all(c),
        "pods",
        uid_of,
        Index::apply_pod,
        Index::delete_pod,
        pods.clone(),
    ));
    wait(pods).await;
}

/// Runs admission on every change and at least every `interval`.
pub async fn admission_loop(shared: Arc<Shared>, interval: Duration) {
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        let mut index = shared.lock();
        let now = now_ms();
        shared.cycle(&mut index, now);
        shared.metrics.observe(&index);
    }
}

/// Carries out actions against the API server, a few at a time.
pub async fn actuator(shared: Arc<Shared>, mut actions: mpsc::UnboundedReceiver<Action>) {
    let recorder = Recorder::new(shared.client.clone(), Reporter { controller: "muster".into(), instance: None });
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    while let Some(action) = actions.recv().await {
        let permit = limit.clone().acquire_owned().await.expect("semaphore never closes");
        let client = shared.client.clone();
        let recorder = recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = perform(client, &recorder, &action).await {
                warn!(?action, error = %e, "action failed");
            }
            drop(permit);
        });
    }
}

async fn perform(client: Client, recorder: &Recorder, action: &Action) -> Result<(), kube::Error> {
    match action {
        Action::Retry { namespace, name } => {
            let patch =
                serde_json::json!({"metadata": {"annotations": {names::RETRY_ANNOTATION: now_ms().to_string()}}});
            match Api::<Pod>::namespaced(client, namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()), // gone meanwhile
                Err(e) => Err(e),
            }
        }
        Action::Evict { namespace, name, reason } => {
            info!(%namespace, %name, %reason, "evicting to reclaim capacity");
            let pods = Api::<Pod>::namespaced(client, namespace);
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectReference::default()
            };
            let event = KubeEvent {
                type_: EventType::Normal,
                reason: "Reclaimed".into(),
                note: Some(reason.clone()),
                action: "Evict".into(),
                secondary: None,
            };
            let _ = recorder.publish(&event, &reference).await;
            match pods.evict(name, &EvictParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::Event { object, warning, reason, note } => {
            let event = KubeEvent {
                type_: if *warning { EventType::Warning } else { EventType::Normal },
                reason: reason.clone(),
                note: Some(note.chars().take(1000).collect()),
                action: "Admission".into(),
                secondary: None,
            };
            recorder.publish(&event, &object_reference(object)).await
        }
        Action::Create(Request::Problem { object, reason, message }) => {
            warn!(kind = object.kind, namespace = ?object.namespace, name = %object.name, %reason, %message, "skipped a malformed object");
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: (*reason).into(),
                note: Some(message.chars().take(1000).collect()),
                action: "Skip".into(),
                secondary: None,
            };
            recorder.publish(&event, &object_reference(object)).await
        }
        Action::Create(Request::CreatePodGroup(pg)) => {
            let ns = pg.metadata.namespace.clone().unwrap_or_default();
            match Api::<PodGroup>::namespaced(client, &ns).create(&PostParams::default(), pg).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::Create(Request::CreateQueue(q)) => {
            match Api::<Queue>::all(client).create(&PostParams::default(), q).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

/// Writes PodGroup and Queue status when it changed, and an Event when a gang's waiting reason changed.
pub async fn status_writer(shared: Arc<Shared>, every: Duration) {
    let mut written_groups: HashMap<(String, String), serde_json::Value> = HashMap::new();
    let mut written_queues: HashMap<String, serde_json::Value> = HashMap::new();
    let mut reasons: BTreeMap<crate::index::GangKey, String> = BTreeMap::new();
    loop {
        tokio::time::sleep(every).await;
        let (groups, queues) = {
            let index = shared.lock();
            let groups = status::podgroup_statuses(&index);
            let queues = status::queue_statuses(&index);
            // Events for waiting reasons that changed (including gangs of one, on their pod).
            let mut seen = BTreeMap::new();
            for gang in index.gangs() {
                let reason = match gang.id.and_then(|id| index.core.gang(id)) {
                    Some(g) if g.phase == GangPhase::Pending => g.reason.as_ref().map(|r| (r.code(), r.message())),
                    Some(_) => None,
                    None => gang.waiting.clone().map(|w| ("Waiting", w)),
                };
                if let Some((code, message)) = reason {
                    let text = format!("{code}: {message}");
                    if reasons.get(&gang.key) != Some(&text)
                        && let Some(object) = gang_object(&index, &gang.key)
                    {
                        let _ = shared.actions.send(Action::Event {
                            object,
                            warning: true,
                            reason: code.into(),
                            note: message,
                        });
                    }
                    seen.insert(gang.key.clone(), text);
                }
            }
            reasons = seen;
            (groups, queues)
        };
        for ((ns, name), status) in groups {
            if written_groups.get(&(ns.clone(), name.clone())) == Some(&status) {
                continue;
            }
            let api = Api::<PodGroup>::namespaced(shared.client.clone(), &ns);
            let patch = serde_json::json!({"status": status});
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    written_groups.insert((ns, name), status);
                }
                Err(e) => debug!(%ns, %name, error = %e, "podgroup status not written"),
            }
        }
        for (name, status) in queues {
            if written_queues.get(&name) == Some(&status) {
                continue;
            }
            let api = Api::<Queue>::all(shared.client.clone());
            let patch = serde_json::json!({"status": status});
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    written_queues.insert(name, status);
                }
                Err(e) => debug!(%name, error = %e, "queue status not written"),
            }
        }
    }
}

/// Whether the initial sync is done (for `/readyz`).
pub fn is_ready(shared: &Shared) -> bool {
    shared.ready.load(Ordering::Acquire)
}

pub fn set_ready(shared: &Shared) {
    shared.ready.store(true, Ordering::Release);
}
