//! The pure capacity-packing core: no kube, no tokio, no I/O, no clock (time is passed in).
//! See `src/core/README.md` for the problem in plain math.

pub mod admission;
pub mod capacity;
pub mod cluster;
pub mod fairshare;
pub mod invariants;
pub mod pack;
pub mod place;
pub mod placement;
pub mod quantity;
pub mod reclaim;
pub mod resources;
pub mod testkit;

pub use admission::{CycleOutcome, Eviction, Reclaimed};
pub use cluster::{
    Claim, Cluster, CoreError, Gang, GangId, GangPhase, GangSpec, Millis, Node, NodeId, NodeSpec, Pod, PodExit, PodId,
    PodRole, PodSpec, Policy, Queue, QueueId, QueueSpec, Slot, TemplateSpec, WaitReason, WaitsFor,
};
pub use place::{NodeSet, Refusal};
pub use placement::{
    Placement, Requirement, SelectorOperator, Taint, TaintEffect, Term, Toleration, TolerationOperator,
};
pub use quantity::{QuantityError, Unit, parse_amount};
pub use resources::{ResourceError, ResourceNames, Resources};
