//! The admission task: the one owner of the model.
//!
//! Its inputs are the watch events of every modelled kind, muster's own confirmed writes (a Binding the extender
//! made, a status write, an eviction the API server kept refusing) and hints from the extender (nodes
//! kube-scheduler did not offer). Nothing else changes the model. After each batch of inputs it runs an
//! admission cycle when something changed (and at least every `cycle_interval`, for timers), directs every
//! pending member of an admitted gang to a node, and publishes the result for the extender ([`Plans`]).
//!
//! Durability: an admission is written to the PodGroup's status before any member is directed. Until the
//! actuator confirms that write, the members' published plan says they wait for it; a muster restarted after a
//! kill therefore finds every admission whose members may have bound, and restores it before it is ready.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use tokio::sync::mpsc;
use tracing::{debug, info, instrument, warn};

use super::actuator::{Action, Outcome, Record};
use super::capacity::{self, BufferReport, Desired, DesiredBuffer};
use super::status;
use super::watch::{KINDS, WatchEvent};
use crate::api::{PodGroup, Queue, volcano};
use crate::core::{CycleOutcome, GangId, GangPhase, Millis, NodeSet, PodId, PodRole, Policy, WaitsFor};
use crate::index::{ClusterWrite, GangKey, Index, ObjectRef, PodEntry};
use crate::metrics::Metrics;
use crate::plan::{Feedback, GangState, Plans, PodPlan, QueueState, ReservationState, StateSnapshot};

/// An input of the admission task.
#[derive(Debug)]
pub enum Input {
    Node(WatchEvent<Node>),
    Queue(WatchEvent<Queue>),
    PriorityClass(WatchEvent<PriorityClass>),
    PodGroup(WatchEvent<PodGroup>),
    Pod(WatchEvent<Pod>),
    /// Volcano's kinds, converted to muster's (only once their CRDs are installed).
    VolcanoQueue(WatchEvent<Queue>),
    VolcanoPodGroup(WatchEvent<PodGroup>),
}

/// Timers and bounds of the task.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub policy: Policy,
    pub cycle_interval: Duration,
    pub status_interval: Duration,
    /// Publish CapacityBuffers for gangs that wait for capacity (when the API server serves the kind).
    pub capacity_requests: bool,
    /// Annotate `karpenter.sh/do-not-disrupt` on running members whose loss would break their gang.
    pub protect_gangs: bool,
}

/// How stale `/state` and the gauges may get at most while things change.
const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(250);
/// `/state` is rebuilt after every change while building it costs at most this share of the task's time (so it
/// agrees with the plans the extender answers from), and every `SNAPSHOT_INTERVAL` at most when it costs more.
const SNAPSHOT_COST_SHARE: u32 = 10;
/// Inputs applied before the next cycle at most (so a flood of events still gets cycles).
const BATCH: usize = 4096;
/// How long a kube-scheduler refusal of a ghost pod is remembered.
const REFUSAL_MEMORY: Duration = Duration::from_secs(300);
/// How long the nodes kube-scheduler offered a pod restrict where muster directs it.
const OFFERED_HINT_TTL: Millis = 60_000;

/// Per kind: what the last list said exists, to delete what a re-list no longer contains.
#[derive(Default)]
struct KindSync {
    known: HashSet<String>,
    listing: Option<HashSet<String>>,
    synced: bool,
}

pub struct AdmissionTask {
    index: Index,
    config: AdmissionConfig,
    plans: Arc<Plans>,
    metrics: Arc<Metrics>,
    actions: mpsc::UnboundedSender<Action>,
    sync: HashMap<&'static str, KindSync>,
    /// What is published per pod UID (to publish only changes).
    published: HashMap<String, PodPlan>,
    /// Per gang, the admission (and placement of its reservations) recorded in its PodGroup status (durable).
    recorded: HashMap<GangKey, Record>,
    /// Per gang, the record being written.
    recording: HashMap<GangKey, Record>,
    /// Gangs whose status is being written to give up capacity their record still names (see
    /// [`crate::core::Gang::unreleased`]).
    releasing: HashSet<GangKey>,
    written_groups: HashMap<(String, String), serde_json::Value>,
    written_queues: HashMap<String, serde_json::Value>,
    /// Waiting reasons already announced by an Event, per gang.
    announced: BTreeMap<GangKey, String>,
    /// Evictions in flight: pod UID to the gang they make room for.
    evicting: HashMap<String, GangKey>,
    /// Per beneficiary of reclaim, why its last eviction failed (until it is admitted).
    refusals: HashMap<GangKey, String>,
    /// Nodes kube-scheduler offered a pod when its directed node was not among them.
    offered: HashMap<PodId, (NodeSet, Millis)>,
    /// Why a pending member of an admitted gang has no node (elastic members without room).
    unplaced: HashMap<PodId, Arc<str>>,
    /// Gangs whose reservations expired, to put back in line once their members are there.
    expired: HashSet<GangId>,
    last_status: Instant,
    last_snapshot: Instant,
    last_cycle: Instant,
    changed_since_snapshot: bool,
    /// Some pod's plan may have changed outside a cycle (a status write confirmed, a pod re-directed).
    publish_due: bool,
    /// How long the last `/state` snapshot took to build.
    snapshot_cost: Duration,
    /// The gauges mirroring the model and the cost counters, refreshed at every snapshot.
    gauges: super::gauges::ModelGauges,
    /// The capacity requests wanted, for the reconciler ([`super::capacity`]); `None` when they are off.
    buffers: Option<tokio::sync::watch::Sender<Arc<Desired>>>,
    /// What the reconciler last reported (whether CapacityBuffer is served, what the autoscaler says).
    buffer_report: BufferReport,
    /// Per gang waiting for capacity, what it misses and what was requested (for its PodGroup's status).
    capacity_notes: HashMap<GangKey, String>,
    /// Pods whose gate removal or do-not-disrupt annotation was asked for (by UID), so it is asked once.
    ungating: HashSet<String>,
    protecting: HashSet<String>,
}

fn now_ms() -> Millis {
    super::now_ms()
}

/// Wall-clock time as Unix seconds, for timestamp gauges.
fn unix_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl AdmissionTask {
    pub fn new(
        index: Index,
        config: AdmissionConfig,
        plans: Arc<Plans>,
        metrics: Arc<Metrics>,
        actions: mpsc::UnboundedSender<Action>,
        buffers: Option<tokio::sync::watch::Sender<Arc<Desired>>>,
    ) -> AdmissionTask {
        let long_ago = Instant::now() - Duration::from_secs(3600);
        AdmissionTask {
            index,
            config,
            plans,
            metrics,
            actions,
            sync: KINDS.iter().map(|k| (*k, KindSync::default())).collect(),
            published: HashMap::new(),
            recorded: HashMap::new(),
            recording: HashMap::new(),
            releasing: HashSet::new(),
            written_groups: HashMap::new(),
            written_queues: HashMap::new(),
            announced: BTreeMap::new(),
            evicting: HashMap::new(),
            refusals: HashMap::new(),
            offered: HashMap::new(),
            unplaced: HashMap::new(),
            expired: HashSet::new(),
            last_status: long_ago,
            last_snapshot: long_ago,
            gauges: Default::default(),
            last_cycle: long_ago,
            changed_since_snapshot: true,
            publish_due: false,
            snapshot_cost: Duration::ZERO,
            buffers,
            buffer_report: BufferReport::default(),
            capacity_notes: HashMap::new(),
            ungating: HashSet::new(),
            protecting: HashSet::new(),
        }
    }

    /// Runs until its inputs close (a watch ended: the supervisor restarts the process).
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut feedback: mpsc::Receiver<Feedback>,
        mut outcomes: mpsc::UnboundedReceiver<Outcome>,
    ) {
        let mut tick = tokio::time::interval(self.config.cycle_interval.min(SNAPSHOT_INTERVAL));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Some(o) = outcomes.recv() => self.on_outcome(o),
                Some(f) = feedback.recv() => self.on_feedback(f),
                input = inputs.recv() => match input {
                    Some(i) => self.on_input(i),
                    None => return,
                },
                _ = tick.tick() => {}
            }
            // Take what else is waiting before deciding anything (a burst of events, one cycle).
            for _ in 0..BATCH {
                match inputs.try_recv() {
                    Ok(i) => self.on_input(i),
                    Err(_) => break,
                }
            }
            while let Ok(o) = outcomes.try_recv() {
                self.on_outcome(o);
            }
            while let Ok(f) = feedback.try_recv() {
                self.on_feedback(f);
            }
            self.forward_requests();
            if !self.index.is_synced() {
                if KINDS.iter().all(|k| self.sync.get(k).is_some_and(|s| s.synced)) {
                    self.finish_initial_sync();
                } else {
                    continue;
                }
            }
            self.step();
        }
    }

    /// The initial lists are in: restore recorded admissions, decide, publish, and only then report ready.
    fn finish_initial_sync(&mut self) {
        self.index.set_now(now_ms());
        let restored = self.index.finish_initial_sync();
        info!(restored = restored.len(), "initial lists applied; recorded admissions restored");
        for (key, _) in restored {
            // What was restored is what is recorded (a slot that no longer fitted is repaired, a new placement).
            if let Some(record) = self.index.gang(&key).and_then(|e| e.id).and_then(|g| self.record_of(g)) {
                self.recorded.insert(key, record);
            }
        }
        // kube-scheduler may hold these pods back after an earlier muster refused them (or did not answer):
        // nudge each one when it is first directed, rather than leave it to kube-scheduler's backoff.
        for (uid, entry) in self.index.managed_pods() {
            if entry.node.is_none() && !entry.gated {
                self.plans.note_refused(uid);
            }
        }
        self.cycle(now_ms());
        self.publish_snapshot();
        self.plans.health.set_synced();
        info!("cache synced; ready");
    }

    /// After inputs: a cycle when something changed or a timer is due, then the periodic writes.
    fn step(&mut self) {
        self.plans.health.refresh();
        let now = now_ms();
        if self.index.core.is_dirty() || self.last_cycle.elapsed() >= self.config.cycle_interval {
            self.cycle(now);
        } else if self.publish_due {
            self.publish_pods();
        }
        if self.last_status.elapsed() >= self.config.status_interval {
            self.nudge_refused_directed();
            self.request_capacity();
            self.protect_running_gangs();
            self.write_statuses();
            self.plans.prune_refused(REFUSAL_MEMORY);
            let now = now_ms();
            self.offered.retain(|_, (_, at)| now.saturating_sub(*at) < OFFERED_HINT_TTL);
        }
        let since = self.last_snapshot.elapsed();
        if self.changed_since_snapshot
            && (since >= SNAPSHOT_INTERVAL || since >= self.snapshot_cost * SNAPSHOT_COST_SHARE)
        {
            self.publish_snapshot();
        }
    }

    // ----- inputs -----

    fn on_input(&mut self, input: Input) {
        self.index.set_now(now_ms());
        self.changed_since_snapshot = true;
        match input {
            Input::Node(e) => self.watch_event("nodes", e, |n| n.name_any(), Index::apply_node, Index::delete_node),
            Input::Queue(e) => self.watch_event("queues", e, |q| q.name_any(), Index::apply_queue, Index::delete_queue),
            Input::PriorityClass(e) => self.watch_event(
                "priorityclasses",
                e,
                |p| p.name_any(),
                |i, pc| i.apply_priority_class(&pc),
                Index::delete_priority_class,
            ),
            Input::PodGroup(e) => self.watch_event(
                "podgroups",
                e,
                |pg| format!("{}/{}", pg.namespace().unwrap_or_default(), pg.name_any()),
                Index::apply_podgroup,
                |i, key| {
                    if let Some((ns, name)) = key.split_once('/') {
                        i.delete_podgroup(ns, name);
                    }
                },
            ),
            Input::VolcanoQueue(e) => {
                self.watch_event("volcano-queues", e, |q| q.name_any(), Index::apply_queue, Index::delete_volcano_queue)
            }
            Input::VolcanoPodGroup(e) => self.watch_event(
                "volcano-podgroups",
                e,
                |pg| format!("{}/{}", pg.namespace().unwrap_or_default(), pg.name_any()),
                Index::apply_podgroup,
                |i, key| {
                    if let Some((ns, name)) = key.split_once('/') {
                        i.delete_volcano_podgroup(ns, name);
                    }
                },
            ),
            Input::Pod(e) => self.watch_event(
                "pods",
                e,
                |p| p.uid().unwrap_or_default(),
                Index::apply_pod,
                |i, uid| i.delete_pod(uid),
            ),
        }
    }

    fn watch_event<K>(
        &mut self,
        kind: &'static str,
        event: WatchEvent<K>,
        key: fn(&K) -> String,
        apply: fn(&mut Index, Arc<K>),
        delete: fn(&mut Index, &str),
    ) {
        self.metrics.watch_last_event.with_label_values(&[kind]).set(unix_seconds());
        // Volcano's kinds appear when their CRDs are installed; readiness waits only for muster's KINDS.
        let sync = self.sync.entry(kind).or_default();
        let mut gone = Vec::new();
        match event {
            WatchEvent::Init => sync.listing = Some(HashSet::new()),
            WatchEvent::Apply(obj) => {
                let k = key(&obj);
                if let Some(l) = sync.listing.as_mut() {
                    l.insert(k.clone());
                }
                sync.known.insert(k);
                apply(&mut self.index, obj);
            }
            WatchEvent::Delete(obj) => {
                let k = key(&obj);
                sync.known.remove(&k);
                gone.push(k);
            }
            WatchEvent::InitDone => {
                let listed = sync.listing.take().unwrap_or_default();
                gone.extend(sync.known.difference(&listed).cloned());
                sync.known = listed;
                if !sync.synced {
                    sync.synced = true;
                    info!(kind, objects = sync.known.len(), "initial list applied");
                }
            }
        }
        for k in gone {
            delete(&mut self.index, &k);
            if kind == "pods" {
                self.pod_gone(&k);
            }
        }
    }

    fn pod_gone(&mut self, uid: &str) {
        if self.published.remove(uid).is_some() {
            self.plans.remove_pod(uid);
        }
        self.evicting.remove(uid);
        self.ungating.remove(uid);
        self.protecting.remove(uid);
    }

    fn on_feedback(&mut self, feedback: Feedback) {
        self.index.set_now(now_ms());
        match feedback {
            Feedback::Bound { namespace, name, uid, node } => {
                // muster's own write, accepted by the API server: assume it (the watch confirms it shortly).
                if self.index.pod_uid(&namespace, &name) == Some(uid.as_str()) {
                    self.index.assume_bound(&namespace, &name, &node);
                    self.changed_since_snapshot = true;
                }
            }
            Feedback::NotOffered { uid, offered } => {
                let Some(id) = self.index.pod(&uid).and_then(|e| e.id) else { return };
                let set = NodeSet::new(offered.iter().filter_map(|n| self.index.core.node_id(n)));
                let Some(pod) = self.index.core.pod(id) else { return };
                if let Some(claim) = pod.claim
                    && !set.contains(claim.node())
                {
                    // Direct it again, among the nodes kube-scheduler finds feasible (it knows constraints
                    // muster does not model, such as pod affinity).
                    self.index.core.forget_claim(id);
                    self.offered.insert(id, (set.clone(), now_ms()));
                    self.direct(id, now_ms(), &set);
                    self.publish_due = true;
                }
            }
            Feedback::Preempt { proposals, reply } => {
                let allowed = proposals
                    .into_iter()
                    .filter(|(_, uids)| {
                        let ids: Vec<PodId> =
                            uids.iter().filter_map(|u| self.index.pod(u).and_then(|e| e.id)).collect();
                        self.index.core.allowed_victims(&ids).len() == ids.len()
                    })
                    .map(|(node, _)| node)
                    .collect();
                let _ = reply.send(allowed);
            }
        }
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        self.index.set_now(now_ms());
        match outcome {
            Outcome::PodGroupStatusWritten { namespace, name, status, record } => {
                let key = GangKey::PodGroup { namespace: namespace.clone(), name: name.clone() };
                // What a restart would now restore: capacity this write gave up becomes free for others.
                self.index.note_status_written(&key, &status);
                self.releasing.remove(&key);
                if let Some(at) = record {
                    if self.recording.get(&key) == Some(&at) {
                        self.recording.remove(&key);
                    }
                    self.recorded.insert(key, at);
                    self.publish_due = true; // its members may go now
                }
                self.written_groups.insert((namespace, name), status);
            }
            Outcome::CapacityBuffers(report) => {
                self.buffer_report = report;
                self.changed_since_snapshot = true;
            }
            Outcome::QueueStatusWritten { name, status } => {
                self.written_queues.insert(name, status);
            }
            Outcome::EvictionRefused { uid, beneficiary, message } => {
                self.evicting.remove(&uid);
                self.metrics.evictions_refused.inc();
                warn!(pod = %uid, gang = %beneficiary, %message, "eviction given up; the next cycle re-plans reclaim");
                if let Some(id) = self.index.pod(&uid).and_then(|e| e.id) {
                    let _ = self.index.core.cancel_termination(id);
                }
                if let Some(object) = self.gang_object(&beneficiary) {
                    self.act(Action::Event {
                        object,
                        warning: true,
                        reason: "EvictionRefused".into(),
                        note: message.clone(),
                    });
                }
                self.refusals.insert(beneficiary, message);
                self.changed_since_snapshot = true;
            }
            Outcome::SparkConf { driver_uid, conf } => {
                self.index.apply_spark_conf(&driver_uid, conf);
                self.changed_since_snapshot = true;
                self.forward_requests();
            }
            Outcome::Abandoned { key } => {
                // A status write refused for good (e.g. the object is gone): compute it afresh next time.
                if let Some(rest) = key.strip_prefix("podgroup-status/")
                    && let Some((ns, name)) = rest.split_once('/')
                {
                    let gang = GangKey::PodGroup { namespace: ns.into(), name: name.into() };
                    self.recording.remove(&gang);
                    self.releasing.remove(&gang);
                    self.written_groups.remove(&(ns.to_string(), name.to_string()));
                }
            }
        }
    }

    fn act(&self, action: Action) {
        // The actuator lives as long as this task; if it is gone the supervisor is ending the process.
        let _ = self.actions.send(action);
    }

    /// Passes on what the index asks to be done in the cluster.
    fn forward_requests(&mut self) {
        for r in self.index.take_writes() {
            self.act(match r {
                ClusterWrite::Problem { object, reason, message } => Action::ReportProblem { object, reason, message },
                ClusterWrite::CreatePodGroup(pg) => Action::CreatePodGroup(pg),
                ClusterWrite::CreateQueue(q) => Action::CreateQueue(q),
                ClusterWrite::FetchSparkConf { namespace, driver, driver_uid, sources } => {
                    Action::FetchSparkConf { namespace, driver, driver_uid, sources }
                }
            });
        }
    }

    // ----- the cycle -----

    #[instrument(level = "debug", skip(self))]
    fn cycle(&mut self, now: Millis) {
        let start = Instant::now();
        self.index.set_now(now);
        let out = self.index.core.run_cycle(now, &self.config.policy);
        self.last_cycle = Instant::now();
        self.metrics.cycles.inc();
        self.act_on(&out, now);
        if !out.admitted.is_empty() && self.buffers.is_some() {
            // Withdraw the admitted gangs' capacity requests at once, not at the next status write: an autoscaler
            // must not provision for a gang that no longer needs it.
            self.request_capacity();
        }
        self.requeue_expired();
        self.direct_pending_members(now);
        self.record_admissions();
        self.publish_pods();
        self.metrics.cycle_duration.observe(start.elapsed().as_secs_f64());
        self.changed_since_snapshot = true;
        self.forward_requests();
    }

    fn act_on(&mut self, out: &CycleOutcome, now: Millis) {
        for g in &out.admitted {
            let Some(gang) = self.index.core.gang(*g) else { continue };
            let queue = self.queue_name(gang.spec.queue);
            self.metrics
                .gang_wait
                .with_label_values(&[&queue])
                .observe(now.saturating_sub(gang.spec.created) as f64 / 1000.0);
            let mut nodes: Vec<_> = gang.slots.iter().map(|s| s.node).collect();
            nodes.sort();
            nodes.dedup();
            let note = format!("reserved {} members on {} nodes", gang.slots.len(), nodes.len());
            if let Some(key) = self.index.gang_key(*g).cloned() {
                info!(gang = %key, %queue, reason = "Admitted", %note, "admission decision");
                self.refusals.remove(&key);
                if let Some(object) = self.gang_object(&key) {
                    self.act(Action::Event { object, warning: false, reason: "Admitted".into(), note });
                }
            }
        }
        for r in out.reclaimed.iter().filter(|r| r.whole_gang) {
            let queue = self.index.core.gang(r.victim).map(|g| self.queue_name(g.spec.queue)).unwrap_or_default();
            self.metrics.reclaimed_gangs.with_label_values(&[&queue]).inc();
        }
        for e in &out.evictions {
            let queue = self.index.core.gang(e.victim).map(|g| self.queue_name(g.spec.queue)).unwrap_or_default();
            self.metrics.reclaim_evictions.with_label_values(&[&queue]).inc();
            let Some(uid) = self.index.uid_of(e.pod) else { continue };
            let Some(entry) = self.index.pod(&uid) else { continue };
            let (namespace, name) = (entry.namespace.clone(), entry.name.clone());
            let Some(beneficiary) = self.index.gang_key(e.beneficiary).cloned() else { continue };
            let note = format!(
                "reclaimed for {beneficiary}, whose queue is below its deserved share{}",
                if e.whole_gang { " (whole gang: its elastic members were not enough)" } else { "" }
            );
            self.evicting.insert(uid.clone(), beneficiary.clone());
            self.act(Action::Evict { namespace, name, uid, beneficiary, note });
        }
        for g in &out.expired {
            self.metrics.expired_gangs.inc();
            self.expired.insert(*g);
            let Some(key) = self.index.gang_key(*g).cloned() else { continue };
            let Some(gang) = self.index.core.gang(*g) else { continue };
            let missing = gang.missing_total();
            let bound = gang.bound_total();
            let note = format!(
                "{missing} minimum members did not bind within {} s; their reservations are released and the gang \
                 goes back in line until they appear{}",
                self.config.policy.reservation_timeout / 1000,
                if bound > 0 { format!(" ({bound} members keep running without them)") } else { String::new() }
            );
            warn!(gang = %key, %note, "reservation expired");
            if let Some(object) = self.gang_object(&key) {
                self.act(Action::Event { object, warning: true, reason: "ReservationExpired".into(), note });
            }
        }
    }

    /// Expired gangs whose members are there go back in line (those still without members wait for them:
    /// the index requeues a gang when a new member appears).
    fn requeue_expired(&mut self) {
        let core = &mut self.index.core;
        self.expired.retain(|g| match core.gang(*g) {
            Some(gang) if gang.phase == GangPhase::Expired => {
                if gang.unbound > 0 {
                    let _ = core.requeue(*g);
                    false
                } else {
                    true
                }
            }
            _ => false,
        });
    }

    /// Directs every pending member of an admitted gang that has no node yet: to a slot of its template, or (an
    /// elastic member) to free capacity. Only the admission task claims capacity, so two pods never get the same.
    fn direct_pending_members(&mut self, now: Millis) {
        let core = &self.index.core;
        let pending: Vec<PodId> = core
            .gangs()
            .filter(|(_, g)| g.unbound > 0 && matches!(g.phase, GangPhase::Admitted | GangPhase::Running))
            .flat_map(|(_, g)| g.pods.iter().copied())
            .filter(|p| core.pod(*p).is_some_and(|p| p.node.is_none() && p.claim.is_none() && !p.terminating))
            .collect();
        self.unplaced.retain(|p, _| core.pod(*p).is_some_and(|p| p.node.is_none()));
        if pending.is_empty() {
            return;
        }
        let all = NodeSet::new(self.index.core.nodes().map(|(n, _)| n));
        for id in pending {
            self.direct(id, now, &all);
        }
    }

    /// Claims a node for pending member `id` among `all` (or the nodes kube-scheduler last offered it).
    fn direct(&mut self, id: PodId, now: Millis, all: &NodeSet) {
        let offered = match self.offered.get(&id) {
            Some((set, _)) => set,
            None => all,
        };
        match self.index.core.place(id, offered, now) {
            Ok(_) => {
                self.unplaced.remove(&id);
            }
            Err(refusal) => {
                self.unplaced.insert(id, Arc::from(refusal.summary()));
            }
        }
    }

    /// Whether gang `g`'s current admission still has to be written to its PodGroup before members may go.
    fn needs_record(&self, key: &GangKey, g: GangId) -> bool {
        let GangKey::PodGroup { .. } = key else { return false }; // a gang of one has nothing partial to lose
        match self.record_of(g) {
            Some(record) => self.recorded.get(key) != Some(&record),
            None => false,
        }
    }

    /// The record that would describe gang `g` now: its admission and the placement of its reservations.
    fn record_of(&self, g: GangId) -> Option<Record> {
        let gang = self.index.core.gang(g)?;
        Some(Record { admitted_at: gang.admitted_at?, placement: gang.placement })
    }

    /// Writes each new admission to its PodGroup's status at once (the record members wait for), and the
    /// status of each gang whose record still names capacity the model has given back (a moved slot, a released
    /// admission), so that capacity becomes free for others.
    fn record_admissions(&mut self) {
        let mut writes = Vec::new();
        let mut releases = Vec::new();
        for entry in self.index.gangs() {
            let Some(g) = entry.id else { continue };
            if !self.needs_record(&entry.key, g) {
                let unreleased = self.index.core.gang(g).is_some_and(|gang| !gang.unreleased.is_empty());
                if unreleased && entry.podgroup.is_some() && !self.releasing.contains(&entry.key) {
                    releases.push(entry.key.clone());
                }
                continue;
            }
            let at = self.record_of(g).expect("needs_record checked");
            if self.recording.get(&entry.key) == Some(&at) || entry.podgroup.is_none() {
                continue; // in flight, or its PodGroup (a Spark driver's) is still being created
            }
            writes.push((entry.key.clone(), at));
        }
        if writes.is_empty() && releases.is_empty() {
            return;
        }
        let timeout = self.config.policy.reservation_timeout;
        for key in releases {
            let GangKey::PodGroup { namespace, name } = &key else { continue };
            let Some(status) =
                status::podgroup_status(&self.index, &key, &self.refusals, &self.capacity_notes, timeout)
            else {
                continue;
            };
            self.releasing.insert(key.clone());
            let volcano = self.index.podgroup_is_volcano(namespace, name);
            self.act(Action::PodGroupStatus {
                namespace: namespace.clone(),
                name: name.clone(),
                status,
                record: None,
                volcano,
            });
        }
        for (key, at) in writes {
            let GangKey::PodGroup { namespace, name } = &key else { continue };
            let Some(status) =
                status::podgroup_status(&self.index, &key, &self.refusals, &self.capacity_notes, timeout)
            else {
                continue;
            };
            self.recording.insert(key.clone(), at);
            let volcano = self.index.podgroup_is_volcano(namespace, name);
            self.act(Action::PodGroupStatus {
                namespace: namespace.clone(),
                name: name.clone(),
                status,
                record: Some(at),
                volcano,
            });
        }
    }

    // ----- publishing -----

    /// The plan of one pod of muster's.
    fn plan_of(&self, entry: &PodEntry, gang_reasons: &mut HashMap<GangId, Arc<str>>) -> PodPlan {
        if let Some(node) = &entry.node {
            return PodPlan::Bound(Arc::from(node.as_str()));
        }
        if let Some(w) = &entry.waiting {
            return PodPlan::Waiting(Arc::from(w.as_str()));
        }
        let Some(id) = entry.id else { return PodPlan::Waiting(Arc::from("muster has not placed this pod in a gang")) };
        let core = &self.index.core;
        let Some(pod) = core.pod(id) else { return PodPlan::Waiting(Arc::from("muster is still loading this pod")) };
        let Some((g, _)) = pod.spec.member else { return PodPlan::Waiting(Arc::from("not a member of a gang")) };
        if let Some(claim) = pod.claim {
            if let Some(key) = &entry.gang
                && self.needs_record(key, g)
            {
                return PodPlan::Waiting(Arc::from(
                    "gang admitted; its reservations are being recorded in its PodGroup status",
                ));
            }
            let node = core.node(claim.node()).map(|n| n.spec.name.as_str()).unwrap_or_default();
            return PodPlan::Directed(Arc::from(node));
        }
        if let Some(reason) = self.unplaced.get(&id) {
            return PodPlan::Waiting(reason.clone());
        }
        let reason = gang_reasons.entry(g).or_insert_with(|| {
            let Some(gang) = core.gang(g) else { return Arc::from("its gang is gone") };
            let text = match gang.phase {
                GangPhase::Pending | GangPhase::Expired => {
                    let why = entry
                        .gang
                        .as_ref()
                        .and_then(|k| {
                            status::waiting_reason(
                                &self.index,
                                k,
                                &self.refusals,
                                self.config.policy.reservation_timeout,
                            )
                        })
                        .map(|(code, _)| code)
                        .unwrap_or("waiting for the next admission cycle");
                    format!("gang {} waits for admission ({why})", gang.spec.name)
                }
                GangPhase::Finished => format!("gang {} has finished; it admits no new members", gang.spec.name),
                GangPhase::Admitted | GangPhase::Running => {
                    format!("gang {} is admitted; this member is directed at the next cycle", gang.spec.name)
                }
            };
            Arc::from(text)
        });
        PodPlan::Waiting(reason.clone())
    }

    /// Publishes every managed pod's plan that changed, and nudges pods kube-scheduler was refused for that are
    /// now directed.
    fn publish_pods(&mut self) {
        self.publish_due = false;
        let mut gang_reasons = HashMap::new();
        let mut changes = Vec::new();
        let mut seen = HashSet::with_capacity(self.published.len());
        for (uid, entry) in self.index.managed_pods() {
            seen.insert(uid.as_str());
            if entry.node.is_some() && matches!(self.published.get(uid), Some(PodPlan::Bound(_))) {
                continue; // bound stays bound
            }
            let plan = self.plan_of(entry, &mut gang_reasons);
            if self.published.get(uid) != Some(&plan) {
                changes.push((uid.clone(), entry.namespace.clone(), entry.name.clone(), plan));
            }
        }
        let gone: Vec<String> = self.published.keys().filter(|u| !seen.contains(u.as_str())).cloned().collect();
        for uid in gone {
            self.published.remove(&uid);
            self.plans.remove_pod(&uid);
        }
        if changes.is_empty() {
            return;
        }
        for (uid, namespace, name, plan) in changes {
            let directed = matches!(plan, PodPlan::Directed(_));
            self.plans.set_pod(&uid, plan.clone());
            self.published.insert(uid.clone(), plan);
            let gated = self.index.pod(&uid).is_some_and(|e| e.gated);
            if directed && gated {
                // Its gang is admitted and its admission recorded: kube-scheduler may see it now.
                self.ungate(uid, namespace, name);
            } else if directed && self.plans.take_refused(&uid) {
                debug!(%namespace, %name, "directed a pod kube-scheduler was turned away for; nudging it");
                self.act(Action::Touch { namespace, name });
            }
        }
        self.plans.bump();
    }

    /// Nudges pods that are directed but were turned away after their plan was published (a filter that read
    /// the plan just before it changed): without this they would wait for kube-scheduler's periodic flush.
    fn nudge_refused_directed(&mut self) {
        for uid in self.plans.refused_uids() {
            if let Some(PodPlan::Directed(_)) = self.published.get(&uid)
                && let Some(entry) = self.index.pod(&uid)
                && self.plans.take_refused(&uid)
            {
                self.act(Action::Touch { namespace: entry.namespace.clone(), name: entry.name.clone() });
            }
        }
    }

    /// The `/state` snapshot and the gauges that mirror the model.
    fn publish_snapshot(&mut self) {
        let start = Instant::now();
        self.changed_since_snapshot = false;
        let index = &self.index;
        let core = &index.core;
        let queues = core
            .queues()
            .map(|(_, q)| QueueState {
                name: q.spec.name.clone(),
                weight: q.spec.weight,
                open: q.spec.open,
                deserved: core.resources.render(&q.deserved),
                allocated: core.resources.render(&q.allocated),
            })
            .collect();
        let timeout = self.config.policy.reservation_timeout;
        let gangs = index
            .gangs()
            .map(|entry| {
                let (namespace, name, kind) = match &entry.key {
                    GangKey::PodGroup { namespace, name } => (namespace.clone(), name.clone(), "PodGroup"),
                    GangKey::Pod { namespace, name } => (namespace.clone(), name.clone(), "Pod"),
                };
                let reason = status::waiting_reason(index, &entry.key, &self.refusals, timeout)
                    .map(|(code, message)| format!("{code}: {message}"));
                match entry.id.and_then(|id| core.gang(id)) {
                    Some(g) => {
                        let mut reservations: BTreeMap<(String, String), u32> = BTreeMap::new();
                        for s in &g.slots {
                            let key = (
                                g.spec.templates[s.template as usize].name.clone(),
                                index.node_name(s.node).unwrap_or_default().to_string(),
                            );
                            *reservations.entry(key).or_default() += 1;
                        }
                        let phase = match g.phase {
                            GangPhase::Expired => "Pending".to_string(), // back in its queue's pending set
                            other => format!("{other:?}"),
                        };
                        GangState {
                            namespace,
                            name,
                            kind,
                            queue: core.queue(g.spec.queue).map(|q| q.spec.name.clone()).unwrap_or_default(),
                            phase,
                            reason,
                            min_member: g.min_total(),
                            bound: g.bound_total(),
                            reservations: reservations
                                .into_iter()
                                .map(|((template, node), count)| ReservationState { template, node, count })
                                .collect(),
                        }
                    }
                    None => GangState {
                        namespace,
                        name,
                        kind,
                        queue: String::new(),
                        phase: "Waiting".into(),
                        reason,
                        min_member: 0,
                        bound: 0,
                        reservations: Vec::new(),
                    },
                }
            })
            .collect();
        self.plans.set_state(StateSnapshot { queues, gangs });
        self.plans.set_node_count(self.index.node_count());
        self.gauges.observe(&self.metrics, &self.index, now_ms());
        self.last_snapshot = Instant::now();
        self.snapshot_cost = start.elapsed();
    }

    // ----- status -----

    /// Writes PodGroup and Queue status that changed, and an Event when a gang's waiting reason changed.
    /// Asks for the removal of muster's gate from a pod (once).
    fn ungate(&mut self, uid: String, namespace: String, name: String) {
        if self.ungating.insert(uid.clone()) {
            self.act(Action::Ungate { namespace, name, uid });
        }
    }

    /// For every gang that waits for capacity: what it misses (its PodGroup's status says it), published as
    /// CapacityBuffers when the gang's PodGroup declares its member templates and the API server serves the kind;
    /// otherwise its pods that exist are ungated, so kube-scheduler marks them unschedulable and an autoscaler
    /// sees them (a gang of one, a PodGroup whose shapes come from its pods, or no CapacityBuffer API).
    fn request_capacity(&mut self) {
        let mut desired = Desired::new();
        let mut notes = HashMap::new();
        let mut ungate = Vec::new();
        let buffers_served = self.buffers.is_some() && self.buffer_report.available;
        let waiting: Vec<(GangKey, GangId)> = self
            .index
            .gangs()
            .filter_map(|e| Some((e.key.clone(), e.id?)))
            .filter(|(_, g)| {
                self.index.core.gang(*g).is_some_and(|gang| {
                    let short = match gang.phase {
                        GangPhase::Pending => true,
                        // An admitted gang that lost members and could not be repaired.
                        GangPhase::Admitted => gang.missing_total() > 0,
                        _ => false,
                    };
                    short && gang.reason.as_ref().is_some_and(|r| r.waits_for() == WaitsFor::Capacity)
                })
            })
            .collect();
        for (key, g) in waiting {
            let short = self.index.core.shortfall(g);
            let Some(gang) = self.index.core.gang(g) else { continue };
            let missing: Vec<String> = short
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(t, n)| {
                    let template = &gang.spec.templates[t];
                    format!(
                        "{n} x {:?} ({} each)",
                        template.name,
                        self.index.core.resources.describe(&template.request)
                    )
                })
                .collect();
            if missing.is_empty() {
                continue; // every member fits now: the next cycle admits it
            }
            let mut note = format!("missing on the nodes that exist: {}", missing.join(", "));
            let podgroup = self.index.gang(&key).and_then(|e| e.podgroup.clone());
            let templated = podgroup.as_ref().filter(|pg| !pg.spec.member_templates.is_empty());
            match (templated, buffers_served, &key) {
                (Some(pg), true, GangKey::PodGroup { namespace, name }) => {
                    let owner = OwnerReference {
                        api_version: "scheduling.muster.dev/v1alpha1".into(),
                        kind: "PodGroup".into(),
                        name: name.clone(),
                        uid: pg.metadata.uid.clone().unwrap_or_default(),
                        ..OwnerReference::default()
                    };
                    let labels = pg.metadata.labels.clone().unwrap_or_default();
                    let mut names = Vec::new();
                    for (t, n) in short.iter().enumerate().filter(|(_, n)| **n > 0) {
                        let template_name = &gang.spec.templates[t].name;
                        let Some(template) = pg.spec.member_templates.iter().find(|m| &m.name == template_name) else {
                            continue;
                        };
                        let buffer = capacity::buffer_name(name, template_name);
                        names.push(buffer.clone());
                        desired.insert(
                            (namespace.clone(), buffer.clone()),
                            DesiredBuffer {
                                namespace: namespace.clone(),
                                name: buffer,
                                gang: key.clone(),
                                template: template_name.clone(),
                                replicas: (*n).min(i32::MAX as u32) as i32,
                                owner: owner.clone(),
                                pod_template: capacity::member_pod_template(name, template, &labels),
                            },
                        );
                    }
                    note.push_str(&format!("; requested from the autoscaler as CapacityBuffer {}", names.join(", ")));
                    if let Some(said) = self.buffer_report.said.get(&key) {
                        note.push_str(&format!("; the autoscaler says: {said}"));
                    }
                }
                _ => {
                    if self.config.capacity_requests {
                        note.push_str("; its pods are ungated so that an autoscaler sees them");
                        ungate.extend(gang.pods.iter().filter_map(|p| self.index.uid_of(*p)));
                    }
                }
            }
            notes.insert(key, note);
        }
        for uid in ungate {
            if let Some(entry) = self.index.pod(&uid).filter(|e| e.gated && e.node.is_none()) {
                let (namespace, name) = (entry.namespace.clone(), entry.name.clone());
                self.ungate(uid, namespace, name);
            }
        }
        self.capacity_notes = notes;
        if let Some(tx) = &self.buffers {
            let desired = Arc::new(desired);
            tx.send_if_modified(|current| {
                if **current == *desired {
                    false
                } else {
                    *current = desired;
                    true
                }
            });
        }
    }

    /// Marks `karpenter.sh/do-not-disrupt` on every bound minimum member whose loss would leave its gang below
    /// its minimum (no bound elastic member of its template could take its place), so that an autoscaler's
    /// voluntary disruption (consolidation, drift) does not break a running gang. A spot interruption still can:
    /// the admission cycle then re-reserves the lost members first.
    fn protect_running_gangs(&mut self) {
        if !self.config.protect_gangs {
            return;
        }
        let core = &self.index.core;
        let mut protect = Vec::new();
        for (uid, entry) in self.index.managed_pods() {
            if entry.node.is_none() || entry.disruption_annotated || self.protecting.contains(uid) {
                continue;
            }
            let Some(pod) = entry.id.and_then(|id| core.pod(id)) else { continue };
            let Some((g, t)) = pod.spec.member else { continue };
            if pod.role != PodRole::Min || pod.terminating {
                continue;
            }
            if core.gang(g).is_some_and(|gang| gang.bound_elastic[t as usize] == 0) {
                protect.push((uid.clone(), entry.namespace.clone(), entry.name.clone()));
            }
        }
        for (uid, namespace, name) in protect {
            self.protecting.insert(uid.clone());
            self.act(Action::ProtectFromDisruption { namespace, name, uid });
        }
    }

    fn write_statuses(&mut self) {
        self.last_status = Instant::now();
        let timeout = self.config.policy.reservation_timeout;
        let groups = status::podgroup_statuses(&self.index, &self.refusals, &self.capacity_notes, timeout);
        let queues = status::queue_statuses(&self.index);
        let mut reasons = BTreeMap::new();
        let mut events = Vec::new();
        for gang in self.index.gangs() {
            if let Some((code, message)) = status::waiting_reason(&self.index, &gang.key, &self.refusals, timeout) {
                let text = format!("{code}: {message}");
                if self.announced.get(&gang.key) != Some(&text) {
                    let queue = gang.id.and_then(|g| self.index.core.gang(g)).map(|g| self.queue_name(g.spec.queue));
                    info!(gang = %gang.key, queue = queue.as_deref().unwrap_or(""), reason = code, note = %message, "admission decision");
                    if let Some(object) = self.gang_object(&gang.key) {
                        events.push(Action::Event { object, warning: true, reason: code.into(), note: message });
                    }
                }
                reasons.insert(gang.key.clone(), text);
            }
        }
        self.announced = reasons;
        for e in events {
            self.act(e);
        }
        // What was last written, else what the object already holds: a restarted muster finds most statuses as
        // it would write them, and writing them again would cost the API server a patch per PodGroup. A stored
        // status found equal counts as written, so it is serialised for comparison once, not every interval.
        for ((namespace, name), status) in groups {
            if self.index.podgroup_is_volcano(&namespace, &name) && !self.index.podgroup_has_gang(&namespace, &name) {
                continue; // Volcano's PodGroup of pods Volcano schedules: its status is Volcano's to write
            }
            let key = (namespace, name);
            match self.written_groups.get(&key) {
                Some(written) if *written == status => {}
                None if self.stored_podgroup_status(&key.0, &key.1).is_some_and(|stored| stored == status) => {
                    self.written_groups.insert(key, status);
                }
                _ => {
                    let (namespace, name) = key;
                    let volcano = self.index.podgroup_is_volcano(&namespace, &name);
                    self.act(Action::PodGroupStatus { namespace, name, status, record: None, volcano });
                }
            }
        }
        let queues_in_use: HashSet<String> = self.index.queues_with_gangs();
        for (name, status) in queues {
            if self.index.queue_is_volcano(&name) && !queues_in_use.contains(&name) {
                continue; // a Volcano Queue no gang of muster's uses: Volcano writes its status
            }
            let stored_equal = || {
                let stored = self.index.queue_object(&name).and_then(|q| q.status.as_ref());
                stored.is_some_and(|stored| serde_json::to_value(stored).is_ok_and(|stored| stored == status))
            };
            match self.written_queues.get(&name) {
                Some(written) if *written == status => {}
                None if stored_equal() => {
                    self.written_queues.insert(name, status);
                }
                _ => {
                    let volcano = self.index.queue_is_volcano(&name);
                    self.act(Action::QueueStatus { name, status, volcano });
                }
            }
        }
    }

    fn queue_name(&self, q: crate::core::QueueId) -> String {
        self.index.core.queue(q).map(|q| q.spec.name.clone()).unwrap_or_default()
    }

    /// The status a PodGroup holds as last seen by the watch, in the form muster writes it.
    fn stored_podgroup_status(&self, namespace: &str, name: &str) -> Option<serde_json::Value> {
        let key = GangKey::PodGroup { namespace: namespace.to_string(), name: name.to_string() };
        let status = self.index.gang(&key)?.podgroup.as_ref()?.status.as_ref()?;
        serde_json::to_value(status).ok()
    }

    /// The Kubernetes object that stands for a gang in Events: its PodGroup, or its pod.
    fn gang_object(&self, key: &GangKey) -> Option<ObjectRef> {
        match key {
            GangKey::PodGroup { namespace, name } => {
                let podgroup = self.index.gang(key).and_then(|g| g.podgroup.as_ref())?;
                let uid = Some(podgroup.metadata.uid.clone()?);
                let api_version = volcano::is_volcano(&podgroup.metadata).then_some(volcano::API_VERSION);
                Some(ObjectRef {
                    kind: "PodGroup",
                    api_version,
                    namespace: Some(namespace.clone()),
                    name: name.clone(),
                    uid,
                })
            }
            GangKey::Pod { namespace, name } => {
                let uid = self.index.pod_uid(namespace, name).map(str::to_string);
                Some(ObjectRef {
                    kind: "Pod",
                    api_version: None,
                    namespace: Some(namespace.clone()),
                    name: name.clone(),
                    uid,
                })
            }
        }
    }
}
