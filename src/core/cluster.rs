//! The cluster model: nodes, queues, gangs, pods and reservations, with dense integer ids and incremental
//! accounting. Everything here is synchronous and clock-free: callers pass `now` in milliseconds.
//!
//! Reservation lifecycle (modelled on kube-scheduler's assume/forget cache):
//! ```text
//!   admit ──> Slot (capacity reserved on a node for one missing minimum member of a template)
//!   place ──> Slot claimed by a pending pod (assumed; expires after `claim_ttl` if no bind follows)
//!   bind  ──> Slot consumed: the pod's usage replaces the reservation
//!   pod of a live gang removed ──> its capacity is re-reserved as a Slot on the same node for the replacement
//!   gang removed / reservation timeout ──> remaining Slots released
//! ```
//! Members beyond a template's minimum are *elastic*: they get an elastic claim on free capacity when placed and
//! never a slot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::capacity::{CapacityIndex, ClassId, NodeView};
use super::pack::Demand;
use super::placement::{NodeFacts, Placement, Taint};
use super::resources::{ResourceNames, Resources};

/// Milliseconds on whatever clock the caller uses (simulated or wall).
pub type Millis = u64;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            #[inline]
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}
id_type!(NodeId);
id_type!(QueueId);
id_type!(GangId);
id_type!(PodId);

/// A dense, id-reusing arena. Freed ids are reused lowest-last (a stack), which is deterministic.
#[derive(Debug, Clone)]
pub struct Arena<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena { items: Vec::new(), free: Vec::new() }
    }
}

impl<T> Arena<T> {
    pub fn insert(&mut self, item: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(item);
                i
            }
            None => {
                self.items.push(Some(item));
                self.items.len() as u32 - 1
            }
        }
    }
    pub fn remove(&mut self, i: u32) -> Option<T> {
        let item = self.items.get_mut(i as usize)?.take();
        if item.is_some() {
            self.free.push(i);
        }
        item
    }
    #[inline]
    pub fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize).and_then(Option::as_ref)
    }
    #[inline]
    pub fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize).and_then(Option::as_mut)
    }
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.items.iter().enumerate().filter_map(|(i, t)| t.as_ref().map(|t| (i as u32, t)))
    }
    pub fn capacity(&self) -> usize {
        self.items.len()
    }
    pub fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub allocatable: Resources,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub spec: NodeSpec,
    /// Requests of pods bound here, of any scheduler, including pods being deleted.
    pub used: Resources,
    /// The part of `used` that belongs to pods already being deleted (it will free up).
    pub terminating: Resources,
    /// The part of `used` that belongs to gang members (muster's own pods; the rest is foreign).
    pub managed: Resources,
    /// `managed` by queue (queues with members bound here only): draining a head asks what its own queue runs
    /// on every node, which would otherwise mean walking every pod of the queue.
    pub(crate) managed_by_queue: Vec<(QueueId, Resources)>,
    /// Gang slots and elastic claims.
    pub reserved: Resources,
    /// Capacity held back for blocked gangs (draining or reclaiming); rebuilt every admission cycle.
    pub held: Resources,
    /// Capacity the model has given back (a slot moved away, an admission released) that a gang's durable record
    /// still claims until the write saying otherwise lands: nobody may take it, or a restart in between would
    /// restore two gangs onto it. See [`Gang::unreleased`].
    pub unreleased: Resources,
    /// What-if capacity during reclaim planning only; always zero outside it.
    pub bonus: Resources,
    /// What a gang could use here if every muster-managed pod, slot and hold were gone (allocatable less foreign
    /// pods and unreleased capacity), as last published by `touch_node`: when it changes anywhere, verdicts of
    /// the form "could it ever fit?" must be recomputed ([`Cluster::static_epoch`]).
    pub(crate) static_available: Resources,
    pub pods: Vec<PodId>,
}

impl Node {
    /// allocatable - used - reserved - unreleased.
    #[inline]
    pub fn free(&self) -> Resources {
        self.spec.allocatable.saturating_sub(&self.used).saturating_sub(&self.reserved).saturating_sub(&self.unreleased)
    }
    /// What a gang without a hold here may use.
    #[inline]
    pub fn available(&self) -> Resources {
        self.free().saturating_sub(&self.held).saturating_add(&self.bonus)
    }
    /// What a gang could use here if every muster-managed pod, slot and hold were gone: `available()` with
    /// managed usage, reservations and holds given back (the never-fits check packs against this).
    #[inline]
    pub fn available_without_managed(&self) -> Resources {
        self.free()
            .saturating_sub(&self.held)
            .saturating_add(&self.managed.saturating_add(&self.reserved).saturating_add(&self.held))
    }
    /// What members of queue `q` bound here request.
    pub fn managed_of(&self, q: QueueId) -> Resources {
        self.managed_by_queue.iter().find(|(id, _)| *id == q).map(|(_, r)| *r).unwrap_or_default()
    }
    fn add_managed(&mut self, q: QueueId, r: &Resources) {
        self.managed = self.managed.saturating_add(r);
        match self.managed_by_queue.iter_mut().find(|(id, _)| *id == q) {
            Some((_, total)) => *total = total.saturating_add(r),
            None => self.managed_by_queue.push((q, *r)),
        }
    }
    fn sub_managed(&mut self, q: QueueId, r: &Resources) {
        self.managed = self.managed.saturating_sub(r);
        if let Some(i) = self.managed_by_queue.iter().position(|(id, _)| *id == q) {
            let total = &mut self.managed_by_queue[i].1;
            *total = total.saturating_sub(r);
            if total.is_zero() {
                self.managed_by_queue.swap_remove(i);
            }
        }
    }
    pub fn facts(&self) -> NodeFacts<'_> {
        NodeFacts {
            name: &self.spec.name,
            labels: &self.spec.labels,
            taints: &self.spec.taints,
            unschedulable: self.spec.unschedulable,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: String,
    pub weight: u64,
    /// Hard cap; `Resources::UNLIMITED` in uncapped slots.
    pub capability: Resources,
    /// Reserved for this queue, never lent.
    pub guarantee: Resources,
    /// Whether capacity this queue borrows above its deserved share may be reclaimed.
    pub reclaimable: bool,
    /// Closed queues admit nothing new.
    pub open: bool,
    pub parent: Option<String>,
}

impl QueueSpec {
    pub fn new(name: &str, weight: u64) -> QueueSpec {
        QueueSpec {
            name: name.to_string(),
            weight,
            capability: Resources::UNLIMITED,
            guarantee: Resources::ZERO,
            reclaimable: true,
            open: true,
            parent: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub spec: QueueSpec,
    /// Requests of bound members plus reservations (slots and elastic claims) of this queue's gangs.
    pub allocated: Resources,
    /// Deserved share computed by the last admission cycle.
    pub deserved: Resources,
    /// allocated + pending demand, as of the last admission cycle.
    pub request: Resources,
    /// Bit `s` set when, at the start of the last admission cycle, allocation exceeded the deserved share in
    /// resource slot `s` (what the queue borrows, and what reclaim may take back).
    pub borrowing: u16,
    pub gangs: Vec<GangId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    pub name: String,
    /// Per-member requests; `pods` is counted (1 per member) by whoever builds the spec.
    pub request: Resources,
    pub placement: Placement,
    /// Members that must start together (the gang minimum for this role).
    pub min: u32,
    /// Upper bound on members (elastic ones included); `u32::MAX` when unbounded.
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GangSpec {
    /// Stable external name (namespace/name); breaks ties in ordering.
    pub name: String,
    pub queue: QueueId,
    pub priority: i32,
    pub created: Millis,
    pub templates: Vec<TemplateSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GangPhase {
    /// Nothing reserved, nothing bound (or restored bindings below the minimum with nothing reserved).
    Pending,
    /// Every missing minimum member has a slot; some members may be bound.
    Admitted,
    /// Every minimum member is bound.
    Running,
    /// Reservations timed out before members bound; remaining slots were released.
    Expired,
    /// Its members are finishing: nothing more is reserved for it until a new member appears.
    Finished,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub template: u16,
    pub node: NodeId,
    /// A pending pod that was directed to this slot and whose bind has not been observed yet.
    pub claim: Option<(PodId, Millis)>,
    /// When this slot was reserved (admission or re-reservation); drives the reservation timeout.
    pub since: Millis,
}

/// Why a gang is not admitted; rendered for Events and PodGroup conditions.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitReason {
    QueueClosed,
    QueueCapability {
        detail: Arc<str>,
    },
    GuaranteeOfOtherQueues {
        detail: Arc<str>,
    },
    OverDeserved {
        detail: Arc<str>,
    },
    Insufficient {
        detail: Arc<str>,
    },
    /// Cannot fit even if every muster-managed pod were gone: waiting will not help.
    NeverFits {
        detail: Arc<str>,
    },
    Draining {
        detail: Arc<str>,
    },
    Reclaiming {
        detail: Arc<str>,
    },
    BehindHead {
        head: Arc<str>,
    },
}

impl WaitReason {
    /// Short machine-readable reason (PodGroup condition reason, metrics label).
    pub fn code(&self) -> &'static str {
        match self {
            WaitReason::QueueClosed => "QueueClosed",
            WaitReason::QueueCapability { .. } => "QueueCapability",
            WaitReason::GuaranteeOfOtherQueues { .. } => "GuaranteeOfOtherQueues",
            WaitReason::OverDeserved { .. } => "OverDeserved",
            WaitReason::Insufficient { .. } => "NotEnoughResources",
            WaitReason::NeverFits { .. } => "NeverFits",
            WaitReason::Draining { .. } => "Draining",
            WaitReason::Reclaiming { .. } => "Reclaiming",
            WaitReason::BehindHead { .. } => "BehindHeadOfQueue",
        }
    }

    pub fn message(&self) -> String {
        match self {
            WaitReason::QueueClosed => "queue is Closed: it admits no new gangs".to_string(),
            WaitReason::QueueCapability { detail } => format!("queue capability would be exceeded: {detail}"),
            WaitReason::GuaranteeOfOtherQueues { detail } => {
                format!("admitting would take capacity guaranteed to other queues: {detail}")
            }
            WaitReason::OverDeserved { detail } => {
                format!("queue is not reclaimable and at its deserved share: {detail}")
            }
            WaitReason::Insufficient { detail } => format!("waiting for capacity: {detail}"),
            WaitReason::NeverFits { detail } => format!("gang can never fit this cluster: {detail}"),
            WaitReason::Draining { detail } => format!("head of its queue, holding capacity as it frees: {detail}"),
            WaitReason::Reclaiming { detail } => format!("reclaiming borrowed capacity: {detail}"),
            WaitReason::BehindHead { head } => format!("waiting behind the head of its queue, {head}"),
        }
    }
}

/// Whether a gang's missing members could fit with every muster-managed pod gone, and the inputs of that
/// verdict: it depends only on them, so while they are unchanged the packing over every node is not redone.
#[derive(Debug, Clone)]
pub(crate) struct StaticVerdict {
    /// [`Cluster::static_epoch`] when it was computed.
    pub epoch: u64,
    pub demands: Vec<Demand>,
    pub budget: u64,
    /// `Some` when the gang never fits.
    pub never_fits: Option<WaitReason>,
}

#[derive(Debug, Clone)]
pub struct Gang {
    pub spec: GangSpec,
    pub phase: GangPhase,
    pub classes: Vec<ClassId>,
    /// Bound members that count towards the minimum, per template.
    pub bound_min: Vec<u32>,
    /// Bound members beyond the minimum, per template.
    pub bound_elastic: Vec<u32>,
    /// Minimum members that ran and succeeded, per template: they still count towards the minimum (a gang
    /// whose members finish one by one is completing, not missing members), until a new wave requeues it.
    pub completed: Vec<u32>,
    pub slots: Vec<Slot>,
    pub pods: Vec<PodId>,
    /// How many of `pods` are not bound (so scans for pending members skip gangs with none).
    pub unbound: u32,
    pub admitted_at: Option<Millis>,
    /// Bumped whenever a reservation is placed or moved to another node: a record of the gang's reservations
    /// (PodGroup status) made at an older value no longer describes them.
    pub placement: u64,
    /// First time an admission attempt failed since the gang became pending.
    pub waiting_since: Option<Millis>,
    pub reason: Option<WaitReason>,
    /// Capacity epoch of the last failed packing attempt: no retry until capacity grew.
    pub tried_epoch: Option<u64>,
    /// The last never-fits verdict and what it was computed from; reused while neither changed.
    pub(crate) static_verdict: Option<StaticVerdict>,
    /// Capacity held for this gang while it is the head of its queue and waits (draining or reclaiming):
    /// others may not use it; the gang itself may. Re-applied at the start of every cycle.
    pub hold: Vec<(NodeId, Resources)>,
    /// The slots (template, node) the gang's durable record lists, as the caller last saw it written
    /// ([`Cluster::set_recorded`]); empty when nothing is recorded (or the caller keeps no records).
    pub recorded: Vec<(u16, NodeId)>,
    /// Per node, the capacity of recorded slots the gang no longer holds there (neither a slot nor a member bound
    /// there): given back in the model but not yet in the record, so a restart could restore it. Kept out of
    /// everyone's reach ([`Node::unreleased`]) until a status write gives it up.
    pub unreleased: Vec<(NodeId, Resources)>,
}

impl Gang {
    /// Minimum members per template that are neither bound nor reserved.
    pub fn missing(&self) -> Vec<u32> {
        let mut missing: Vec<u32> = self
            .spec
            .templates
            .iter()
            .zip(self.bound_min.iter().zip(&self.completed))
            .map(|(t, (b, c))| t.min.saturating_sub(b + c))
            .collect();
        for s in &self.slots {
            missing[s.template as usize] = missing[s.template as usize].saturating_sub(1);
        }
        missing
    }

    /// `f(template, missing)` for every template, without allocating for the common small gang: the admission
    /// cycle asks this of every gang, every cycle.
    fn for_each_missing(&self, mut f: impl FnMut(usize, u32)) {
        const SMALL: usize = 8;
        let n = self.spec.templates.len();
        if n > SMALL {
            for (t, m) in self.missing().into_iter().enumerate() {
                f(t, m);
            }
            return;
        }
        let mut missing = [0u32; SMALL];
        let held = self.bound_min.iter().zip(&self.completed);
        for (m, (t, (b, c))) in missing.iter_mut().zip(self.spec.templates.iter().zip(held)) {
            *m = t.min.saturating_sub(b + c);
        }
        for s in &self.slots {
            missing[s.template as usize] = missing[s.template as usize].saturating_sub(1);
        }
        for (t, m) in missing[..n].iter().enumerate() {
            f(t, *m);
        }
    }

    pub fn missing_total(&self) -> u32 {
        let mut total = 0;
        self.for_each_missing(|_, m| total += m);
        total
    }

    /// Resources of the missing minimum members.
    pub fn missing_request(&self) -> Resources {
        let mut total = Resources::ZERO;
        self.for_each_missing(|t, m| {
            total = total.saturating_add(&self.spec.templates[t].request.times(u64::from(m)));
        });
        total
    }

    pub fn min_total(&self) -> u32 {
        self.spec.templates.iter().map(|t| t.min).sum()
    }

    pub fn bound_total(&self) -> u32 {
        self.bound_min.iter().chain(&self.bound_elastic).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    /// Stable external name (namespace/name).
    pub name: String,
    pub request: Resources,
    /// The gang and template this pod belongs to; `None` for pods muster does not manage.
    pub member: Option<(GangId, u16)>,
    pub priority: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRole {
    /// Not muster's: only its usage counts.
    Foreign,
    /// Counts towards its gang's minimum.
    Min,
    /// Beyond its template's minimum: first to go in a reclaim.
    Elastic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Directed to slot `index` of its gang (the slot's capacity is already reserved).
    Slot { node: NodeId, at: Millis },
    /// Elastic member placed on free capacity; `request` is reserved on `node` until bind.
    Elastic { node: NodeId, at: Millis },
}

impl Claim {
    pub fn node(&self) -> NodeId {
        match *self {
            Claim::Slot { node, .. } | Claim::Elastic { node, .. } => node,
        }
    }
    pub fn at(&self) -> Millis {
        match *self {
            Claim::Slot { at, .. } | Claim::Elastic { at, .. } => at,
        }
    }
}

/// How a pod left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodExit {
    Deleted,
    Succeeded,
    /// Failed: its controller (Spark, a Job) is expected to create a replacement.
    Failed,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub spec: PodSpec,
    pub node: Option<NodeId>,
    pub role: PodRole,
    pub bound_at: Option<Millis>,
    pub terminating: bool,
    pub claim: Option<Claim>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("unknown {kind} #{id}")]
    Unknown { kind: &'static str, id: u32 },
    #[error("gang {gang}: {reason}")]
    InvalidGang { gang: String, reason: String },
    #[error("node {0:?} already exists")]
    DuplicateNode(String),
    #[error("queue {0:?} already exists")]
    DuplicateQueue(String),
    #[error("queue {queue:?} still holds {gangs} gangs")]
    QueueInUse { queue: String, gangs: usize },
    #[error("pod {pod}: {reason}")]
    InvalidPod { pod: String, reason: String },
}

/// Knobs of the admission policy. Times are in milliseconds of the caller's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// A claim (filter answered, bind not yet observed) is forgotten after this long.
    pub claim_ttl: Millis,
    /// Slots of an admitted gang that no member consumed within this long are released (gang -> Expired).
    pub reservation_timeout: Millis,
    /// A blocked head of a queue within its deserved share starts holding capacity (draining) after this long.
    pub drain_after: Millis,
    /// Pods running for less than this are never chosen as reclaim victims.
    pub min_runtime: Millis,
    /// Search budget (nodes visited) of the exact packing fallback.
    pub exact_search_budget: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            claim_ttl: 30_000,
            reservation_timeout: 600_000,
            drain_after: 120_000,
            min_runtime: 0,
            exact_search_budget: 20_000,
        }
    }
}

/// The whole model. Mutations keep every aggregate (node usage, queue allocation, capacity index) in step.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub resources: ResourceNames,
    pub(crate) nodes: Arena<Node>,
    pub(crate) node_by_name: HashMap<String, NodeId>,
    pub(crate) queues: Arena<Queue>,
    pub(crate) queue_by_name: HashMap<String, QueueId>,
    pub(crate) gangs: Arena<Gang>,
    pub(crate) pods: Arena<Pod>,
    pub(crate) capacity: CapacityIndex,
    /// Sum of allocatable over nodes.
    pub(crate) total: Resources,
    /// Bumped whenever capacity may have grown (a release, a new node): failed gangs become worth retrying.
    pub(crate) capacity_epoch: u64,
    /// Set by any change an admission cycle should look at.
    pub(crate) dirty: bool,
    /// Bumped whenever the capacity a gang could use with every muster-managed pod gone changes anywhere (a node
    /// added, removed or relabelled, foreign usage, unreleased capacity): never-fits verdicts are cached until
    /// then.
    pub(crate) static_epoch: u64,
}

struct Nodes<'a>(&'a Arena<Node>);

impl NodeView for Nodes<'_> {
    fn node_count(&self) -> usize {
        self.0.capacity()
    }
    fn allows(&self, node: u32, placement: &Placement) -> Option<bool> {
        self.0.get(node).map(|n| placement.allows(&n.facts()))
    }
    fn available(&self, node: u32) -> Resources {
        self.0.get(node).map(Node::available).unwrap_or(Resources::ZERO)
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster::default()
    }

    // ----- reads -----

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0)
    }
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_by_name.get(name).copied()
    }
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().map(|(i, n)| (NodeId(i), n))
    }
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
    pub fn queue(&self, id: QueueId) -> Option<&Queue> {
        self.queues.get(id.0)
    }
    pub fn queue_id(&self, name: &str) -> Option<QueueId> {
        self.queue_by_name.get(name).copied()
    }
    pub fn queues(&self) -> impl Iterator<Item = (QueueId, &Queue)> {
        self.queues.iter().map(|(i, q)| (QueueId(i), q))
    }
    pub fn gang(&self, id: GangId) -> Option<&Gang> {
        self.gangs.get(id.0)
    }
    pub fn gangs(&self) -> impl Iterator<Item = (GangId, &Gang)> {
        self.gangs.iter().map(|(i, g)| (GangId(i), g))
    }
    pub fn gang_count(&self) -> usize {
        self.gangs.len()
    }
    pub fn pod(&self, id: PodId) -> Option<&Pod> {
        self.pods.get(id.0)
    }
    pub fn pods(&self) -> impl Iterator<Item = (PodId, &Pod)> {
        self.pods.iter().map(|(i, p)| (PodId(i), p))
    }
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
    /// Sum of allocatable over all nodes.
    pub fn total(&self) -> Resources {
        self.total
    }
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
    pub fn capacity_epoch(&self) -> u64 {
        self.capacity_epoch
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(id.0).expect("live node")
    }
    pub(crate) fn gang_mut(&mut self, id: GangId) -> &mut Gang {
        self.gangs.get_mut(id.0).expect("live gang")
    }
    fn queue_mut(&mut self, id: QueueId) -> &mut Queue {
        self.queues.get_mut(id.0).expect("live queue")
    }
    fn pod_mut(&mut self, id: PodId) -> &mut Pod {
        self.pods.get_mut(id.0).expect("live pod")
    }

    /// Re-publishes a node's available capacity to the capacity index.
    #[inline]
    pub(crate) fn touch_node(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(id.0).expect("live node");
        let available = node.available();
        let without_managed = node.available_without_managed();
        if without_managed != node.static_available {
            node.static_available = without_managed;
            self.static_epoch += 1;
        }
        self.capacity.update(id.0, available);
    }

    /// Rebuilds stale eligibility classes. Every read of the capacity index goes through here first.
    pub(crate) fn refresh_capacity(&mut self) {
        if self.capacity.is_stale() {
            let Cluster { capacity, nodes, .. } = self;
            capacity.refresh(&Nodes(nodes));
        }
    }

    pub(crate) fn capacity(&self) -> &CapacityIndex {
        &self.capacity
    }

    /// The queue of a member's gang, if the gang is live.
    fn member_queue(&self, member: Option<(GangId, u16)>) -> Option<QueueId> {
        member.and_then(|(g, _)| self.gang(g)).map(|g| g.spec.queue)
    }

    pub(crate) fn capacity_grew(&mut self) {
        self.capacity_epoch += 1;
        self.dirty = true;
    }

    // ----- nodes -----

    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeId, CoreError> {
        if self.node_by_name.contains_key(&spec.name) {
            return Err(CoreError::DuplicateNode(spec.name));
        }
        self.total = self.total.saturating_add(&spec.allocatable);
        let name = spec.name.clone();
        let static_available = spec.allocatable;
        let id = NodeId(self.nodes.insert(Node {
            spec,
            used: Resources::ZERO,
            terminating: Resources::ZERO,
            managed: Resources::ZERO,
            managed_by_queue: Vec::new(),
            reserved: Resources::ZERO,
            held: Resources::ZERO,
            unreleased: Resources::ZERO,
            bonus: Resources::ZERO,
            static_available,
            pods: Vec::new(),
        }));
        self.node_by_name.insert(name, id);
        self.capacity.invalidate();
        self.static_epoch += 1;
        self.capacity_grew();
        Ok(id)
    }

    /// Replaces a node's allocatable, labels, taints and cordon state (its name is its identity).
    pub fn update_node(&mut self, id: NodeId, spec: NodeSpec) -> Result<(), CoreError> {
        let node = self.nodes.get_mut(id.0).ok_or(CoreError::Unknown { kind: "node", id: id.0 })?;
        if node.spec == spec {
            return Ok(());
        }
        let constraints_changed = node.spec.labels != spec.labels
            || node.spec.taints != spec.taints
            || node.spec.unschedulable != spec.unschedulable;
        self.total = self.total.saturating_sub(&node.spec.allocatable).saturating_add(&spec.allocatable);
        node.spec.allocatable = spec.allocatable;
        node.spec.labels = spec.labels;
        node.spec.taints = spec.taints;
        node.spec.unschedulable = spec.unschedulable;
        if constraints_changed {
            node.static_available = node.available_without_managed();
            self.capacity.invalidate();
            self.static_epoch += 1;
        } else {
            self.touch_node(id);
        }
        self.capacity_grew();
        Ok(())
    }

    /// Removes a node. Pods bound there stop counting; slots there are dropped, which leaves their gangs short:
    /// the next admission cycle re-places them ([`crate::core::admission`] repairs admitted gangs first).
    pub fn remove_node(&mut self, id: NodeId) -> Result<(), CoreError> {
        let node = self.nodes.remove(id.0).ok_or(CoreError::Unknown { kind: "node", id: id.0 })?;
        self.static_epoch += 1;
        self.node_by_name.remove(&node.spec.name);
        self.total = self.total.saturating_sub(&node.spec.allocatable);
        for pod_id in node.pods {
            let pod = self.pod_mut(pod_id);
            pod.node = None;
            let (request, role, member) = (pod.spec.request, pod.role, pod.spec.member);
            pod.role = PodRole::Foreign;
            pod.bound_at = None;
            if let Some((gang, template)) = member {
                self.unbind_member(gang, template, role, &request);
                if let Some(g) = self.gangs.get_mut(gang.0) {
                    g.unbound += 1;
                }
            }
        }
        let gang_ids: Vec<GangId> = self.gangs().map(|(g, _)| g).collect();
        for g in gang_ids {
            let gang = self.gang_mut(g);
            let (lost, kept): (Vec<Slot>, Vec<Slot>) = gang.slots.drain(..).partition(|s| s.node == id);
            gang.slots = kept;
            // A record naming the node cannot be restored there (and the id may be reused by a new node).
            gang.recorded.retain(|(_, n)| *n != id);
            gang.unreleased.retain(|(n, _)| *n != id);
            if lost.is_empty() {
                continue;
            }
            let queue = gang.spec.queue;
            let released = lost.iter().fold(Resources::ZERO, |acc, s| {
                acc.saturating_add(&self.gangs.get(g.0).unwrap().spec.templates[s.template as usize].request)
            });
            for s in &lost {
                if let Some((pod, _)) = s.claim
                    && let Some(p) = self.pods.get_mut(pod.0)
                {
                    p.claim = None;
                }
            }
            let q = self.queue_mut(queue);
            q.allocated = q.allocated.saturating_sub(&released);
            self.refresh_phase(g);
        }
        // Elastic claims on the node vanish with it.
        let claimed: Vec<PodId> = self
            .pods()
            .filter(|(_, p)| matches!(p.claim, Some(Claim::Elastic { node, .. }) if node == id))
            .map(|(p, _)| p)
            .collect();
        for p in claimed {
            let pod = self.pod_mut(p);
            pod.claim = None;
            let (request, member) = (pod.spec.request, pod.spec.member);
            if let Some((gang, _)) = member {
                let queue = self.gangs.get(gang.0).expect("live gang").spec.queue;
                let q = self.queue_mut(queue);
                q.allocated = q.allocated.saturating_sub(&request);
            }
        }
        self.capacity.invalidate();
        self.dirty = true;
        Ok(())
    }

    // ----- queues -----

    pub fn upsert_queue(&mut self, spec: QueueSpec) -> QueueId {
        if let Some(&id) = self.queue_by_name.get(&spec.name) {
            let q = self.queue_mut(id);
            if q.spec != spec {
                q.spec = spec;
                self.capacity_grew(); // a raised capability or an opened queue can admit more
            }
            return id;
        }
        let name = spec.name.clone();
        let id = QueueId(self.queues.insert(Queue {
            spec,
            allocated: Resources::ZERO,
            deserved: Resources::ZERO,
            request: Resources::ZERO,
            borrowing: 0,
            gangs: Vec::new(),
        }));
        self.queue_by_name.insert(name, id);
        self.dirty = true;
        id
    }

    pub fn remove_queue(&mut self, id: QueueId) -> Result<(), CoreError> {
        let q = self.queues.get(id.0).ok_or(CoreError::Unknown { kind: "queue", id: id.0 })?;
        if !q.gangs.is_empty() {
            return Err(CoreError::QueueInUse { queue: q.spec.name.clone(), gangs: q.gangs.len() });
        }
        let q = self.queues.remove(id.0).expect("checked");
        self.queue_by_name.remove(&q.spec.name);
        self.dirty = true;
        Ok(())
    }

    // ----- gangs -----

    pub fn add_gang(&mut self, spec: GangSpec) -> Result<GangId, CoreError> {
        let invalid = |reason: String| CoreError::InvalidGang { gang: spec.name.clone(), reason };
        if self.queues.get(spec.queue.0).is_none() {
            return Err(invalid(format!("unknown queue #{}", spec.queue.0)));
        }
        if spec.templates.is_empty() {
            return Err(invalid("has no member templates".to_string()));
        }
        if spec.templates.len() > 64 {
            return Err(invalid(format!("has {} templates; at most 64 are supported", spec.templates.len())));
        }
        for t in &spec.templates {
            if t.max < t.min {
                return Err(invalid(format!("template {:?}: max {} is below min {}", t.name, t.max, t.min)));
            }
        }
        if spec.templates.iter().all(|t| t.min == 0) {
            return Err(invalid("minimum is zero: nothing to admit".to_string()));
        }
        let classes: Vec<ClassId> = {
            let Cluster { capacity, nodes, .. } = self;
            spec.templates.iter().map(|t| capacity.acquire(&t.placement, &Nodes(nodes))).collect()
        };
        let n = spec.templates.len();
        let queue = spec.queue;
        let id = GangId(self.gangs.insert(Gang {
            spec,
            phase: GangPhase::Pending,
            classes,
            bound_min: vec![0; n],
            bound_elastic: vec![0; n],
            completed: vec![0; n],
            slots: Vec::new(),
            pods: Vec::new(),
            unbound: 0,
            admitted_at: None,
            placement: 0,
            waiting_since: None,
            reason: None,
            tried_epoch: None,
            static_verdict: None,
            hold: Vec::new(),
            recorded: Vec::new(),
            unreleased: Vec::new(),
        }));
        self.queue_mut(queue).gangs.push(id);
        self.dirty = true;
        Ok(id)
    }

    /// Changes what may change on a live gang: priority always; templates and queue only while it holds nothing.
    pub fn update_gang(&mut self, id: GangId, spec: GangSpec) -> Result<(), CoreError> {
        let gang = self.gangs.get(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        if gang.spec == spec {
            return Ok(());
        }
        let holds_nothing =
            gang.slots.is_empty() && gang.pods.iter().all(|p| self.pods.get(p.0).is_none_or(|p| p.node.is_none()));
        if gang.spec.templates != spec.templates || gang.spec.queue != spec.queue {
            if !holds_nothing {
                return Err(CoreError::InvalidGang {
                    gang: spec.name,
                    reason: "templates and queue cannot change once members are reserved or bound".to_string(),
                });
            }
            let pods = gang.pods.clone();
            self.remove_gang(id)?;
            let new_id = self.add_gang(spec)?;
            debug_assert_eq!(new_id, id, "a just-freed id is reused first");
            for p in pods {
                if let Some(pod) = self.pods.get_mut(p.0) {
                    pod.spec.member = pod.spec.member.map(|(_, t)| (new_id, t));
                    let unbound = pod.node.is_none();
                    let g = self.gang_mut(new_id);
                    g.pods.push(p);
                    g.unbound += u32::from(unbound);
                }
            }
            return Ok(());
        }
        self.gang_mut(id).spec = spec;
        self.dirty = true;
        Ok(())
    }

    /// Adds a template with no minimum to a live gang (members of a shape nobody declared, such as the
    /// executors of a Spark driver that stated no minimum): they are elastic. Returns its index.
    pub fn add_elastic_template(&mut self, id: GangId, template: TemplateSpec) -> Result<u16, CoreError> {
        let gang = self.gangs.get(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        if template.min != 0 || gang.spec.templates.len() >= 64 {
            return Err(CoreError::InvalidGang {
                gang: gang.spec.name.clone(),
                reason: format!(
                    "cannot add template {:?}: only templates without a minimum can join a live gang",
                    template.name
                ),
            });
        }
        let class = {
            let Cluster { capacity, nodes, .. } = self;
            capacity.acquire(&template.placement, &Nodes(nodes))
        };
        let gang = self.gang_mut(id);
        gang.spec.templates.push(template);
        gang.classes.push(class);
        gang.bound_min.push(0);
        gang.bound_elastic.push(0);
        gang.completed.push(0);
        self.dirty = true;
        Ok(self.gang(id).expect("live").spec.templates.len() as u16 - 1)
    }

    /// Forgets a gang (its PodGroup was deleted or it finished): releases its slots; its pods become foreign.
    pub fn remove_gang(&mut self, id: GangId) -> Result<(), CoreError> {
        if self.gangs.get(id.0).is_none() {
            return Err(CoreError::Unknown { kind: "gang", id: id.0 });
        }
        // A gang that is gone is not restored: its record claims nothing any more (released with its slots).
        self.gang_mut(id).recorded.clear();
        self.release_slots(id);
        let hold = std::mem::take(&mut self.gang_mut(id).hold);
        self.unhold(&hold);
        let gang = self.gangs.remove(id.0).expect("checked");
        for pod_id in &gang.pods {
            let Some(pod) = self.pods.get_mut(pod_id.0) else { continue };
            pod.spec.member = None;
            let request = pod.spec.request;
            let bound_as_member = pod.node.is_some() && pod.role != PodRole::Foreign;
            pod.role = PodRole::Foreign;
            let elastic_claim = match pod.claim.take() {
                Some(Claim::Elastic { node, .. }) => Some(node),
                _ => None,
            };
            let node = pod.node;
            let q = self.queues.get_mut(gang.spec.queue.0).expect("live queue");
            if bound_as_member {
                q.allocated = q.allocated.saturating_sub(&request);
                if let Some(n) = node.and_then(|n| self.nodes.get_mut(n.0)) {
                    n.sub_managed(gang.spec.queue, &request);
                }
                // Its capacity no longer counts as muster's to give back (never-fits verdicts change).
                if let Some(n) = node {
                    self.touch_node(n);
                }
            }
            let q = self.queues.get_mut(gang.spec.queue.0).expect("live queue");
            if let Some(node) = elastic_claim {
                q.allocated = q.allocated.saturating_sub(&request);
                let n = self.node_mut(node);
                n.reserved = n.reserved.saturating_sub(&request);
                self.touch_node(node);
            }
        }
        for class in gang.classes {
            self.capacity.release(class);
        }
        self.queue_mut(gang.spec.queue).gangs.retain(|g| *g != id);
        self.capacity_grew();
        Ok(())
    }

    /// Releases every slot of a gang (timeout, removal). Claims on them are forgotten.
    pub(crate) fn release_slots(&mut self, id: GangId) {
        let gang = self.gang_mut(id);
        let slots = std::mem::take(&mut gang.slots);
        let queue = gang.spec.queue;
        let requests: Vec<Resources> = slots.iter().map(|s| gang.spec.templates[s.template as usize].request).collect();
        for (slot, request) in slots.iter().zip(&requests) {
            let node = self.node_mut(slot.node);
            node.reserved = node.reserved.saturating_sub(request);
            self.touch_node(slot.node);
            if let Some((pod, _)) = slot.claim
                && let Some(p) = self.pods.get_mut(pod.0)
            {
                p.claim = None;
            }
            let q = self.queue_mut(queue);
            q.allocated = q.allocated.saturating_sub(request);
        }
        if !slots.is_empty() {
            self.capacity_grew();
        }
        self.refresh_phase(id);
    }

    /// Reserves one slot of `template` on `node` for gang `id`.
    pub(crate) fn reserve_slot(&mut self, id: GangId, template: u16, node: NodeId, now: Millis) {
        let gang = self.gang_mut(id);
        let request = gang.spec.templates[template as usize].request;
        let queue = gang.spec.queue;
        gang.slots.push(Slot { template, node, claim: None, since: now });
        gang.placement += 1;
        let n = self.node_mut(node);
        n.reserved = n.reserved.saturating_add(&request);
        self.touch_node(node);
        let q = self.queue_mut(queue);
        q.allocated = q.allocated.saturating_add(&request);
        self.refresh_unreleased(id);
    }

    /// The slots gang `id`'s durable record lists (a PodGroup status write landed, or was read at start-up).
    /// From now on capacity the model gives back that this record still claims stays unavailable until the
    /// next record no longer lists it.
    pub fn set_recorded(&mut self, id: GangId, slots: Vec<(u16, NodeId)>) -> Result<(), CoreError> {
        let gang = self.gangs.get_mut(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        gang.recorded = slots;
        self.refresh_unreleased(id);
        Ok(())
    }

    /// Recomputes gang `id`'s unreleased capacity: the capacity of each recorded slot that neither a slot of the
    /// gang nor a member bound on that node accounts for. It covers what restoring the record now (as
    /// [`Cluster::restore_admission`] would after a restart) would reserve beyond the gang's current slots.
    pub(crate) fn refresh_unreleased(&mut self, id: GangId) {
        let Some(gang) = self.gangs.get(id.0) else { return };
        if gang.recorded.is_empty() && gang.unreleased.is_empty() {
            return; // the common case, and always so for callers that keep no records (the simulator)
        }
        let mut want: Vec<(NodeId, Resources)> = Vec::new();
        if !gang.recorded.is_empty() {
            // A recorded slot is accounted for by a slot of the gang on that node now, or by a member bound there
            // (a restart counts it consumed). Any other is held, even where a restart would not restore it today
            // (no member missing): a member that fails later would make it restorable again.
            let mut here: HashMap<(u16, NodeId), u32> = HashMap::new();
            for s in &gang.slots {
                *here.entry((s.template, s.node)).or_default() += 1;
            }
            for p in &gang.pods {
                if let Some(pod) = self.pods.get(p.0)
                    && let (Some(node), Some((_, t)), false) = (pod.node, pod.spec.member, pod.terminating)
                {
                    *here.entry((t, node)).or_default() += 1;
                }
            }
            for &(t, node) in &gang.recorded {
                if let Some(c) = here.get_mut(&(t, node))
                    && *c > 0
                {
                    *c -= 1;
                    continue;
                }
                if self.nodes.get(node.0).is_none() {
                    continue;
                }
                let request = gang.spec.templates[t as usize].request;
                match want.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, r)) => *r = r.saturating_add(&request),
                    None => want.push((node, request)),
                }
            }
        }
        if want == gang.unreleased {
            return;
        }
        let old = std::mem::replace(&mut self.gang_mut(id).unreleased, want.clone());
        for (node, r) in &old {
            if let Some(n) = self.nodes.get_mut(node.0) {
                n.unreleased = n.unreleased.saturating_sub(r);
                self.touch_node(*node);
            }
        }
        for (node, r) in &want {
            let n = self.node_mut(*node);
            n.unreleased = n.unreleased.saturating_add(r);
            self.touch_node(*node);
        }
        let released = old.iter().any(|(n, r)| want.iter().find(|(m, _)| m == n).is_none_or(|(_, w)| !r.fits_in(w)));
        if released {
            self.capacity_grew();
        }
    }

    /// Restores an admission recorded before a restart: the gang's slots, as (template, node) pairs.
    pub fn restore_admission(
        &mut self,
        id: GangId,
        slots: &[(u16, NodeId)],
        admitted_at: Millis,
        now: Millis,
    ) -> Result<(), CoreError> {
        let gang = self.gangs.get(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        let mut missing = gang.missing();
        let requests: Vec<Resources> = gang.spec.templates.iter().map(|t| t.request).collect();
        // A record written before some members bound still lists the slots they consumed: a member bound on a
        // recorded node of its template accounts for one recorded slot there, which is not restored (restoring
        // it instead of the slot still missing could fill a node another gang's record needs).
        let mut consumed: HashMap<(u16, NodeId), u32> = HashMap::new();
        for p in &gang.pods {
            if let Some(pod) = self.pods.get(p.0)
                && let (Some(node), Some((_, t)), false) = (pod.node, pod.spec.member, pod.terminating)
            {
                *consumed.entry((t, node)).or_default() += 1;
            }
        }
        for &(t, node) in slots {
            if let Some(c) = consumed.get_mut(&(t, node))
                && *c > 0
            {
                *c -= 1;
                continue;
            }
            let Some(n) = self.nodes.get(node.0) else {
                continue; // the node went away while we were down; the admission cycle repairs the gang
            };
            // A record written before some members bound names more slots than are missing, and the capacity of
            // a recorded node may have been taken meanwhile: restore only what is missing and still fits. What is
            // left missing the admission cycle repairs (the gang stays admitted).
            let fits = requests.get(t as usize).is_some_and(|r| r.fits_in(&n.available()));
            if fits
                && let Some(m) = missing.get_mut(t as usize)
                && *m > 0
            {
                *m -= 1;
                self.reserve_slot(id, t, node, now);
            }
        }
        let gang = self.gang_mut(id);
        gang.admitted_at = Some(admitted_at);
        self.refresh_phase(id);
        self.dirty = true;
        Ok(())
    }

    /// Recomputes a gang's phase from its slots and bound members.
    pub(crate) fn refresh_phase(&mut self, id: GangId) {
        self.refresh_unreleased(id);
        let gang = self.gang_mut(id);
        if matches!(gang.phase, GangPhase::Expired | GangPhase::Finished) {
            return;
        }
        let missing = gang.missing_total();
        let bound_min: u32 = gang.bound_min.iter().sum();
        gang.phase = if missing == 0 && gang.slots.is_empty() {
            GangPhase::Running
        } else if missing == 0 {
            GangPhase::Admitted
        } else if gang.admitted_at.is_some() && (bound_min > 0 || !gang.slots.is_empty()) {
            // Admitted earlier and lost a slot (node removed): still admitted, the cycle repairs it.
            GangPhase::Admitted
        } else {
            GangPhase::Pending
        };
    }

    // ----- pods -----

    /// Adds a pod, bound (`node` set) or pending.
    pub fn add_pod(&mut self, spec: PodSpec, node: Option<NodeId>, now: Millis) -> Result<PodId, CoreError> {
        if let Some((gang, template)) = spec.member {
            let g = self.gangs.get(gang.0).ok_or(CoreError::Unknown { kind: "gang", id: gang.0 })?;
            if template as usize >= g.spec.templates.len() {
                return Err(CoreError::InvalidPod {
                    pod: spec.name,
                    reason: format!("template #{template} out of range"),
                });
            }
        }
        if let Some(n) = node
            && self.nodes.get(n.0).is_none()
        {
            return Err(CoreError::Unknown { kind: "node", id: n.0 });
        }
        let member = spec.member;
        let id = PodId(self.pods.insert(Pod {
            spec,
            node: None,
            role: PodRole::Foreign,
            bound_at: None,
            terminating: false,
            claim: None,
        }));
        if let Some((gang, _)) = member {
            let g = self.gang_mut(gang);
            g.pods.push(id);
            g.unbound += 1;
        }
        if let Some(n) = node {
            self.bind_pod(id, n, now)?;
        }
        self.dirty = true;
        Ok(id)
    }

    /// Records that a pending pod is now bound to `node` (observed from the API server or simulated).
    pub fn bind_pod(&mut self, id: PodId, node: NodeId, now: Millis) -> Result<(), CoreError> {
        let pod = self.pods.get(id.0).ok_or(CoreError::Unknown { kind: "pod", id: id.0 })?;
        if self.nodes.get(node.0).is_none() {
            return Err(CoreError::Unknown { kind: "node", id: node.0 });
        }
        if let Some(current) = pod.node {
            if current == node {
                return Ok(());
            }
            return Err(CoreError::InvalidPod { pod: pod.spec.name.clone(), reason: "already bound elsewhere".into() });
        }
        let (request, member, claim) = (pod.spec.request, pod.spec.member, pod.claim);
        // An elastic claim's reservation is replaced by the pod's usage; a slot claim is consumed below.
        if let Some(Claim::Elastic { node: claimed, .. }) = claim {
            self.unreserve_elastic(member, claimed, &request);
        }
        let role = match member {
            None => PodRole::Foreign,
            Some((gang, template)) => {
                let g = self.gang_mut(gang);
                g.unbound = g.unbound.saturating_sub(1);
                self.consume_slot(gang, template, id, node, &request)
            }
        };
        let queue = self.member_queue(member);
        let pod = self.pod_mut(id);
        pod.claim = None;
        pod.node = Some(node);
        pod.role = role;
        pod.bound_at = Some(now);
        let terminating = pod.terminating;
        let n = self.node_mut(node);
        n.used = n.used.saturating_add(&request);
        if terminating {
            n.terminating = n.terminating.saturating_add(&request);
        }
        if role != PodRole::Foreign {
            n.add_managed(queue.expect("a member's gang is live"), &request);
        }
        n.pods.push(id);
        self.touch_node(node);
        if let Some((gang, _)) = member {
            self.refresh_unreleased(gang);
        }
        self.dirty = true;
        Ok(())
    }

    /// Turns a slot into a bound member, or counts the pod as elastic when the gang has no slot for it.
    fn consume_slot(&mut self, gang: GangId, template: u16, pod: PodId, node: NodeId, request: &Resources) -> PodRole {
        let g = self.gang_mut(gang);
        let queue = g.spec.queue;
        // Prefer the slot this pod claimed, then one on the node it landed on, then any slot of its template.
        let pick = g
            .slots
            .iter()
            .position(|s| s.claim.is_some_and(|(p, _)| p == pod))
            .or_else(|| g.slots.iter().position(|s| s.template == template && s.node == node && s.claim.is_none()))
            .or_else(|| g.slots.iter().position(|s| s.template == template && s.claim.is_none()))
            .or_else(|| g.slots.iter().position(|s| s.template == template));
        let t = template as usize;
        let role = if let Some(i) = pick {
            let slot = g.slots.swap_remove(i);
            g.bound_min[t] += 1;
            let slot_request = g.spec.templates[slot.template as usize].request;
            if let Some((other, _)) = slot.claim
                && other != pod
                && let Some(p) = self.pods.get_mut(other.0)
            {
                p.claim = None; // that pod loses its directions; it will be placed again
            }
            let n = self.node_mut(slot.node);
            n.reserved = n.reserved.saturating_sub(&slot_request);
            self.touch_node(slot.node);
            let q = self.queue_mut(queue);
            q.allocated = q.allocated.saturating_sub(&slot_request);
            PodRole::Min
        } else if g.bound_min[t] + g.completed[t] < g.spec.templates[t].min && g.phase != GangPhase::Expired {
            // Bound without a reservation (placed before muster saw it, or restored): it still counts.
            g.bound_min[t] += 1;
            PodRole::Min
        } else {
            g.bound_elastic[t] += 1;
            PodRole::Elastic
        };
        let q = self.queue_mut(queue);
        q.allocated = q.allocated.saturating_add(request);
        self.refresh_phase(gang);
        role
    }

    fn unbind_member(&mut self, gang: GangId, template: u16, role: PodRole, request: &Resources) {
        let Some(g) = self.gangs.get_mut(gang.0) else { return };
        let t = template as usize;
        match role {
            PodRole::Min => g.bound_min[t] = g.bound_min[t].saturating_sub(1),
            PodRole::Elastic => g.bound_elastic[t] = g.bound_elastic[t].saturating_sub(1),
            PodRole::Foreign => return,
        }
        let queue = g.spec.queue;
        let q = self.queue_mut(queue);
        q.allocated = q.allocated.saturating_sub(request);
        self.refresh_phase(gang);
    }

    /// Marks a pod as being deleted. From this moment it no longer counts towards its gang or queue (the
    /// decision that it goes has been made), while its capacity stays in use on its node until it is removed;
    /// reclaim planning counts that capacity as about to free.
    pub fn set_terminating(&mut self, id: PodId) -> Result<(), CoreError> {
        let pod = self.pods.get_mut(id.0).ok_or(CoreError::Unknown { kind: "pod", id: id.0 })?;
        if pod.terminating {
            return Ok(());
        }
        pod.terminating = true;
        let (node, request, role, member) = (pod.node, pod.spec.request, pod.role, pod.spec.member);
        pod.role = PodRole::Foreign;
        if pod.claim.is_some() {
            self.forget_claim(id);
        }
        if let Some(node) = node {
            let queue = self.member_queue(member);
            let n = self.node_mut(node);
            n.terminating = n.terminating.saturating_add(&request);
            if role != PodRole::Foreign {
                n.sub_managed(queue.expect("a member's gang is live"), &request);
            }
            // Its capacity no longer counts as muster's to give back (never-fits verdicts change).
            self.touch_node(node);
        }
        if let (Some(_), Some((gang, template))) = (node, member) {
            self.unbind_member(gang, template, role, &request);
            if role == PodRole::Min {
                self.promote_elastic(gang, template);
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Undoes [`Cluster::set_terminating`] for a pod that is not going after all (the API server refused its
    /// eviction): it counts towards its gang and queue again, as a minimum member while its template is below
    /// its minimum, else as an elastic one. Returns false if the pod was not marked.
    pub fn cancel_termination(&mut self, id: PodId) -> Result<bool, CoreError> {
        let pod = self.pods.get_mut(id.0).ok_or(CoreError::Unknown { kind: "pod", id: id.0 })?;
        if !pod.terminating {
            return Ok(false);
        }
        pod.terminating = false;
        let (node, request, member) = (pod.node, pod.spec.request, pod.spec.member);
        let Some(node) = node else {
            self.dirty = true;
            return Ok(true);
        };
        let role = match member.filter(|(g, _)| self.gangs.get(g.0).is_some()) {
            None => PodRole::Foreign,
            Some((gang, template)) => {
                let g = self.gang_mut(gang);
                let t = template as usize;
                let role = if g.bound_min[t] + g.completed[t] < g.spec.templates[t].min {
                    g.bound_min[t] += 1;
                    PodRole::Min
                } else {
                    g.bound_elastic[t] += 1;
                    PodRole::Elastic
                };
                let queue = g.spec.queue;
                let q = self.queue_mut(queue);
                q.allocated = q.allocated.saturating_add(&request);
                self.restore_admitted_at(gang);
                self.refresh_phase(gang);
                role
            }
        };
        self.pod_mut(id).role = role;
        let queue = self.member_queue(self.pods.get(id.0).and_then(|p| p.spec.member));
        let n = self.node_mut(node);
        n.terminating = n.terminating.saturating_sub(&request);
        if role != PodRole::Foreign {
            n.add_managed(queue.expect("a member's gang is live"), &request);
        }
        self.touch_node(node);
        // The reclaim that counted on this capacity must be planned again: gangs that failed may retry.
        self.capacity_grew();
        self.dirty = true;
        Ok(true)
    }

    /// Evicts a whole gang (reclaim): its pods start terminating, its slots are released, and it goes back to
    /// Pending; it is not admitted again before its evicted pods are gone.
    /// A whole-gang eviction clears the gang's admission; if every eviction was refused the gang is whole and
    /// running again, and must count as admitted since its members bound (reclaim's `min_runtime` and victim
    /// order read it; a gang without it would never be a reclaim candidate again).
    fn restore_admitted_at(&mut self, id: GangId) {
        let gang = self.gang(id).expect("live gang");
        if gang.admitted_at.is_some() || gang.missing_total() > 0 {
            return;
        }
        let since =
            gang.pods.iter().filter_map(|p| self.pod(*p)).filter(|p| !p.terminating).filter_map(|p| p.bound_at).min();
        self.gang_mut(id).admitted_at = Some(since.unwrap_or(0));
    }

    pub fn evict_gang(&mut self, id: GangId) -> Result<Vec<PodId>, CoreError> {
        let gang = self.gangs.get(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        let bound: Vec<PodId> = gang
            .pods
            .iter()
            .copied()
            .filter(|p| self.pods.get(p.0).is_some_and(|p| p.node.is_some() && !p.terminating))
            .collect();
        for &p in &bound {
            self.set_terminating(p)?;
        }
        // A gang that is gone is not restored: its record claims nothing any more (released with its slots).
        self.gang_mut(id).recorded.clear();
        self.release_slots(id);
        let hold = std::mem::take(&mut self.gang_mut(id).hold);
        self.unhold(&hold);
        let gang = self.gang_mut(id);
        gang.admitted_at = None;
        gang.waiting_since = None;
        gang.tried_epoch = None;
        gang.phase = GangPhase::Pending;
        self.refresh_phase(id);
        Ok(bound)
    }

    /// Removes a pod that was deleted or reached a terminal phase.
    ///
    /// When a minimum member of a live gang goes, the gang must not silently drop below its minimum: an elastic
    /// member of the same template is promoted in its place, or else, if the pod *failed* (its controller will
    /// create a replacement), its capacity is re-reserved on the same node for that replacement. The
    /// reservation timeout releases that slot if no replacement comes.
    pub fn remove_pod(&mut self, id: PodId, exit: PodExit, now: Millis) -> Result<(), CoreError> {
        let pod = self.pods.remove(id.0).ok_or(CoreError::Unknown { kind: "pod", id: id.0 })?;
        let (request, member) = (pod.spec.request, pod.spec.member);
        match pod.claim {
            Some(Claim::Elastic { node, .. }) => self.unreserve_elastic(member, node, &request),
            Some(Claim::Slot { .. }) => {
                if let Some((gang, _)) = member {
                    self.clear_slot_claim(gang, id);
                }
            }
            None => {}
        }
        if let Some(node) = pod.node {
            let queue = self.member_queue(member);
            let n = self.node_mut(node);
            n.used = n.used.saturating_sub(&request);
            if pod.terminating {
                n.terminating = n.terminating.saturating_sub(&request);
            }
            if pod.role != PodRole::Foreign {
                n.sub_managed(queue.expect("a member's gang is live"), &request);
            }
            n.pods.retain(|p| *p != id);
            self.touch_node(node);
            self.capacity_grew();
        }
        if let Some((gang, template)) = member
            && self.gangs.get(gang.0).is_some()
        {
            let g = self.gang_mut(gang);
            g.pods.retain(|p| *p != id);
            if pod.node.is_none() {
                g.unbound = g.unbound.saturating_sub(1);
            }
            if let Some(node) = pod.node {
                self.unbind_member(gang, template, pod.role, &request);
                // A terminating pod already left its gang (see `set_terminating`); its role is Foreign here.
                if pod.role == PodRole::Min && !self.promote_elastic(gang, template) {
                    let g = self.gangs.get(gang.0).expect("live gang");
                    match exit {
                        PodExit::Failed if g.phase != GangPhase::Expired => {
                            self.reserve_slot(gang, template, node, now);
                        }
                        // Done, not missing: nothing is reserved for it (the gang is completing).
                        PodExit::Succeeded => self.gang_mut(gang).completed[template as usize] += 1,
                        _ => {}
                    }
                    self.refresh_phase(gang);
                }
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Makes one bound elastic member of `template` count towards the minimum instead. Returns false if none.
    fn promote_elastic(&mut self, gang: GangId, template: u16) -> bool {
        let g = self.gangs.get(gang.0).expect("live gang");
        if g.bound_elastic[template as usize] == 0 {
            return false;
        }
        let candidate = g.pods.iter().copied().find(|p| {
            self.pods
                .get(p.0)
                .is_some_and(|p| p.role == PodRole::Elastic && p.spec.member.is_some_and(|m| m.1 == template))
        });
        let Some(p) = candidate else { return false };
        self.pod_mut(p).role = PodRole::Min;
        let g = self.gang_mut(gang);
        g.bound_elastic[template as usize] -= 1;
        g.bound_min[template as usize] += 1;
        self.refresh_phase(gang);
        true
    }

    fn clear_slot_claim(&mut self, gang: GangId, pod: PodId) {
        if let Some(g) = self.gangs.get_mut(gang.0) {
            for s in &mut g.slots {
                if s.claim.is_some_and(|(p, _)| p == pod) {
                    s.claim = None;
                }
            }
        }
    }

    /// Forgets a pod's claim (bind failed or timed out).
    pub fn forget_claim(&mut self, id: PodId) {
        let Some(pod) = self.pods.get_mut(id.0) else { return };
        let (claim, request, member) = (pod.claim.take(), pod.spec.request, pod.spec.member);
        match claim {
            Some(Claim::Elastic { node, .. }) => {
                self.unreserve_elastic(member, node, &request);
                self.capacity_grew();
            }
            Some(Claim::Slot { .. }) => {
                if let Some((gang, _)) = member {
                    self.clear_slot_claim(gang, id);
                }
            }
            None => {}
        }
    }

    fn unreserve_elastic(&mut self, member: Option<(GangId, u16)>, node: NodeId, request: &Resources) {
        if let Some(n) = self.nodes.get_mut(node.0) {
            n.reserved = n.reserved.saturating_sub(request);
            self.touch_node(node);
        }
        if let Some((gang, _)) = member
            && let Some(g) = self.gangs.get(gang.0)
        {
            let queue = g.spec.queue;
            let q = self.queue_mut(queue);
            q.allocated = q.allocated.saturating_sub(request);
        }
    }

    /// Records a claim: the pod was told to go to `node`.
    pub(crate) fn set_claim(&mut self, id: PodId, claim: Claim) {
        let pod = self.pod_mut(id);
        pod.claim = Some(claim);
        let (request, member) = (pod.spec.request, pod.spec.member);
        if let Claim::Elastic { node, .. } = claim {
            let n = self.node_mut(node);
            n.reserved = n.reserved.saturating_add(&request);
            self.touch_node(node);
            if let Some((gang, _)) = member {
                let queue = self.gangs.get(gang.0).expect("live gang").spec.queue;
                let q = self.queue_mut(queue);
                q.allocated = q.allocated.saturating_add(&request);
            }
        }
    }

    /// Expires claims older than the policy's TTL and slots older than the reservation timeout.
    /// Returns the gangs whose reservations expired.
    pub fn expire(&mut self, now: Millis, policy: &Policy) -> Vec<GangId> {
        // Only unbound gang members ever hold claims.
        let stale_claims: Vec<PodId> = self
            .gangs()
            .filter(|(_, g)| g.unbound > 0)
            .flat_map(|(_, g)| g.pods.iter().copied())
            .filter(|p| {
                self.pod(*p).is_some_and(|p| {
                    p.node.is_none() && p.claim.is_some_and(|c| now.saturating_sub(c.at()) >= policy.claim_ttl)
                })
            })
            .collect();
        for p in stale_claims {
            self.forget_claim(p);
        }
        let expired: Vec<GangId> = self
            .gangs()
            .filter(|(_, g)| {
                g.slots.iter().any(|s| s.claim.is_none() && now.saturating_sub(s.since) >= policy.reservation_timeout)
            })
            .map(|(id, _)| id)
            .collect();
        for &g in &expired {
            self.release_slots(g);
            let gang = self.gang_mut(g);
            gang.phase = GangPhase::Expired;
            gang.reason = None;
        }
        expired
    }

    /// Marks a gang whose members are completing: its remaining slots are released and it is neither admitted
    /// nor repaired again until [`Cluster::requeue`] (a new wave of members appears).
    pub fn finish_gang(&mut self, id: GangId) -> Result<(), CoreError> {
        if self.gangs.get(id.0).is_none() {
            return Err(CoreError::Unknown { kind: "gang", id: id.0 });
        }
        // A gang that is gone is not restored: its record claims nothing any more (released with its slots).
        self.gang_mut(id).recorded.clear();
        self.release_slots(id);
        let hold = std::mem::take(&mut self.gang_mut(id).hold);
        self.unhold(&hold);
        let gang = self.gang_mut(id);
        gang.phase = GangPhase::Finished;
        gang.reason = None;
        gang.waiting_since = None;
        self.dirty = true;
        Ok(())
    }

    /// Puts an expired or finished gang back in line (its owner retries it, or a new wave of members came).
    pub fn requeue(&mut self, id: GangId) -> Result<(), CoreError> {
        let gang = self.gangs.get_mut(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        gang.phase = GangPhase::Pending;
        gang.admitted_at = None;
        gang.waiting_since = None;
        gang.tried_epoch = None;
        // A new wave needs its whole minimum again.
        gang.completed.iter_mut().for_each(|c| *c = 0);
        self.refresh_phase(id);
        self.dirty = true;
        Ok(())
    }
}
