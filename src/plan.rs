//! What the admission task publishes and the extender reads: the seam between the one writer of the model and
//! the HTTP layer that answers kube-scheduler.
//!
//! The admission task owns the model (index and core) and is the only code that changes it; after each cycle it
//! publishes here, per pod UID, where the pod goes or why it waits ([`PodPlan`], a concurrent map: a `filter`
//! call takes no global lock and never waits for a cycle), and a snapshot for `/state`. The extender sends back
//! what it learns ([`Feedback`]: a bind it made, nodes kube-scheduler did not offer, preemption questions); the
//! task decides what that means. Nothing an HTTP request carries about a pod is ever written into the model.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Where a pod of muster's goes, as last published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodPlan {
    /// Go to this node: a reserved slot of its admitted gang, or free capacity for an elastic member. The
    /// admission is already recorded in the PodGroup's status.
    Directed(Arc<str>),
    /// Not placed now; the reason is for people (shared by every member of a gang).
    Waiting(Arc<str>),
    /// Bound to this node already.
    Bound(Arc<str>),
}

/// What the extender tells the admission task. None of it is taken as the truth about a pod; the watch is.
#[derive(Debug)]
pub enum Feedback {
    /// muster created this Binding and the API server accepted it (the watch will confirm).
    Bound { namespace: String, name: String, uid: String, node: String },
    /// kube-scheduler's filters left out the node this pod was directed to; these are the nodes it did offer.
    NotOffered { uid: String, offered: Vec<String> },
    /// Of the victims kube-scheduler proposes, per node, which nodes keep every gang at its minimum.
    Preempt { proposals: Vec<(String, Vec<String>)>, reply: oneshot::Sender<Vec<String>> },
}

/// The `/state` document (queues with deserved and allocated, gangs with phase, reason and reservations).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateSnapshot {
    pub queues: Vec<QueueState>,
    pub gangs: Vec<GangState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueState {
    pub name: String,
    pub weight: u64,
    pub open: bool,
    pub deserved: std::collections::BTreeMap<String, String>,
    pub allocated: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GangState {
    pub namespace: String,
    pub name: String,
    pub kind: &'static str,
    pub queue: String,
    pub phase: String,
    pub reason: Option<String>,
    pub min_member: u32,
    pub bound: u32,
    pub reservations: Vec<ReservationState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReservationState {
    pub template: String,
    pub node: String,
    pub count: u32,
}

/// Health of the process, read by `/healthz` and `/readyz`.
#[derive(Debug)]
pub struct Health {
    /// The initial lists are applied and recorded admissions restored.
    synced: AtomicBool,
    /// This replica holds the Lease (always true without leader election).
    leader: AtomicBool,
    /// Per watched kind: since when its watch has been failing, and when it last failed.
    watch_errors: Mutex<HashMap<&'static str, (Instant, Instant)>>,
    /// A watch counts as broken once it has failed for this long without recovering.
    stale_after: std::time::Duration,
    /// Whether some watch is broken, as of the last [`Health::refresh`] (read on the hot path without a lock).
    watch_broken: AtomicBool,
    started: Instant,
}

/// A watch whose last failure is older than this has recovered (the watcher retries at least every
/// `WATCH_BACKOFF_MAX`, 5 s, so a broken watch fails at least that often).
const WATCH_RECOVERED_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

impl Health {
    pub fn new(stale_after: std::time::Duration) -> Health {
        Health {
            synced: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            watch_errors: Mutex::new(HashMap::new()),
            stale_after,
            watch_broken: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Release);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    pub fn watch_failed(&self, kind: &'static str) {
        let now = Instant::now();
        let mut errors = self.watch_errors.lock().unwrap_or_else(|p| p.into_inner());
        let entry = errors.entry(kind).or_insert((now, now));
        if now.duration_since(entry.1) > WATCH_RECOVERED_AFTER {
            entry.0 = now; // a new streak
        }
        entry.1 = now;
    }

    pub fn watch_ok(&self, kind: &'static str) {
        self.watch_errors.lock().unwrap_or_else(|p| p.into_inner()).remove(kind);
    }

    /// Kinds whose watch has been failing for longer than the bound, with for how long.
    pub fn broken_watches(&self) -> Vec<(&'static str, std::time::Duration)> {
        let now = Instant::now();
        let errors = self.watch_errors.lock().unwrap_or_else(|p| p.into_inner());
        let mut broken: Vec<_> = errors
            .iter()
            .filter(|(_, (since, last))| {
                now.duration_since(*last) <= WATCH_RECOVERED_AFTER && now.duration_since(*since) > self.stale_after
            })
            .map(|(kind, (since, _))| (*kind, now.duration_since(*since)))
            .collect();
        broken.sort();
        broken
    }

    /// Re-evaluates whether a watch is broken (the admission task calls this on every step).
    pub fn refresh(&self) {
        self.watch_broken.store(!self.broken_watches().is_empty(), Ordering::Release);
    }

    /// Whether the extender verbs should be answered: leader, synced, no watch broken (as of the last refresh).
    /// Lock-free, for the hot path; [`Health::readiness`] says why not.
    pub fn is_serving(&self) -> bool {
        self.is_leader() && self.is_synced() && !self.watch_broken.load(Ordering::Acquire)
    }

    /// `Ok` when this replica should receive kube-scheduler's calls; else why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.is_leader() {
            return Err("not the leader (a standby replica)".into());
        }
        if !self.is_synced() {
            return Err(format!("cache not synced yet (started {:.1} s ago)", self.started.elapsed().as_secs_f64()));
        }
        let broken = self.broken_watches();
        if !broken.is_empty() {
            let list: Vec<String> = broken.iter().map(|(k, d)| format!("{k} for {} s", d.as_secs())).collect();
            return Err(format!("watch broken: {}", list.join(", ")));
        }
        Ok(())
    }
}

/// Everything published for readers.
pub struct Plans {
    /// Pod UID to its plan. Written only by the admission task.
    pods: DashMap<String, PodPlan>,
    /// Pods kube-scheduler asked about and muster turned away (UID to when): when one of them is directed to a
    /// node later, the admission task nudges it so kube-scheduler retries at once rather than after its backoff.
    refused: DashMap<String, Instant>,
    state: RwLock<Arc<StateSnapshot>>,
    /// Bumped on every publication (lets tests and metrics see progress).
    generation: AtomicU64,
    /// Nodes in the model at the last publication: the extender sizes its request-body limit by it.
    node_count: AtomicU64,
    pub health: Health,
    feedback: mpsc::Sender<Feedback>,
}

impl Plans {
    pub fn new(health: Health, feedback: mpsc::Sender<Feedback>) -> Plans {
        Plans {
            pods: DashMap::new(),
            refused: DashMap::new(),
            state: RwLock::new(Arc::new(StateSnapshot::default())),
            generation: AtomicU64::new(0),
            node_count: AtomicU64::new(0),
            health,
            feedback,
        }
    }

    // ----- readers (the extender) -----

    pub fn pod(&self, uid: &str) -> Option<PodPlan> {
        self.pods.get(uid).map(|p| p.value().clone())
    }

    /// Remembers that kube-scheduler was turned away for this pod.
    pub fn note_refused(&self, uid: &str) {
        // Bounded: UIDs of pods that never existed must not grow this without limit (the task prunes it too).
        if self.refused.len() < 1_000_000 {
            self.refused.insert(uid.to_string(), Instant::now());
        }
    }

    /// Tells the admission task something; dropped (with `false`) when its inbox is full, never blocking.
    pub fn send(&self, feedback: Feedback) -> bool {
        self.feedback.try_send(feedback).is_ok()
    }

    pub fn state(&self) -> Arc<StateSnapshot> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Nodes muster knows (0 until the first publication).
    pub fn node_count(&self) -> usize {
        self.node_count.load(Ordering::Relaxed) as usize
    }

    // ----- the writer (the admission task) -----

    pub(crate) fn set_pod(&self, uid: &str, plan: PodPlan) {
        self.pods.insert(uid.to_string(), plan);
    }

    pub(crate) fn remove_pod(&self, uid: &str) {
        self.pods.remove(uid);
        self.refused.remove(uid);
    }

    /// Takes the refused pod if there is one (it is about to be nudged).
    pub(crate) fn take_refused(&self, uid: &str) -> bool {
        self.refused.remove(uid).is_some()
    }

    /// The pods kube-scheduler was turned away for and not nudged since.
    pub(crate) fn refused_uids(&self) -> Vec<String> {
        self.refused.iter().map(|e| e.key().clone()).collect()
    }

    /// Forgets refusals older than `age` for pods muster does not know (ghosts).
    pub(crate) fn prune_refused(&self, age: std::time::Duration) {
        let now = Instant::now();
        self.refused.retain(|uid, at| now.duration_since(*at) < age || self.pods.contains_key(uid));
    }

    pub(crate) fn set_state(&self, state: StateSnapshot) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
    }

    pub(crate) fn set_node_count(&self, nodes: usize) {
        self.node_count.store(nodes as u64, Ordering::Relaxed);
    }

    pub(crate) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
}
