//! muster's custom resources (group `scheduling.muster.dev`, version `v1alpha1`) and the well-known label and
//! annotation keys.
//!
//! Field names follow Volcano's Queue and PodGroup wherever the meaning is the same, so a Volcano user can read
//! them; member templates and the reservations in PodGroup status are muster's own.

pub mod names;
mod podgroup;
mod queue;

use kube::CustomResourceExt;

pub use podgroup::{
    ConditionStatus, DEFAULT_QUEUE, MemberTemplate, PodGroup, PodGroupCondition, PodGroupPhase, PodGroupSpec,
    PodGroupStatus, Reservation,
};
pub use queue::{Guarantee, MAX_WEIGHT, MIN_WEIGHT, ObservedQueueState, Queue, QueueSpec, QueueState, QueueStatus};

/// Both CustomResourceDefinitions as one multi-document YAML stream, in a fixed order (Queue, then PodGroup).
/// This is what `muster crds` prints and what `deploy/crds/muster.yaml` holds.
pub fn crds_yaml() -> String {
    [Queue::crd(), PodGroup::crd()]
        .iter()
        .map(|crd| {
            // Serialising a CustomResourceDefinition built from our own static types cannot fail.
            serde_yaml::to_string(crd).expect("a CustomResourceDefinition serialises to YAML")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}
