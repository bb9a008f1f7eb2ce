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
//!
//! This file holds the [`Cluster`] and its reads; each entity's types and mutations have their own file
//! (`node.rs`, `queue.rs`, `gang.rs`, `pod.rs`; dense ids in `ids.rs`).

mod gang;
mod ids;
mod node;
mod pod;
mod queue;

use std::collections::HashMap;

use super::capacity::{CapacityIndex, NodeView};
use super::placement::Placement;
use super::resources::{ResourceNames, Resources};

pub(crate) use gang::StaticVerdict;
pub use gang::{Gang, GangPhase, GangSpec, Slot, TemplateSpec, WaitReason, WaitsFor};
pub use ids::{Arena, GangId, Millis, NodeId, PodId, QueueId};
pub use node::{Node, NodeSpec};
pub use pod::{Claim, Pod, PodExit, PodRole, PodSpec};
pub use queue::{Queue, QueueSpec};

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
    /// Set when a cycle finds a pending gang that can never fit: the deserved shares it computed counted that
    /// gang's demand, and are recomputed without it before the cycle ends.
    pub(crate) shares_stale: bool,
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
}
