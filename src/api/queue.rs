//! The cluster-scoped `Queue`: a team's weighted share of the cluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The smallest queue weight, as in Volcano.
pub const MIN_WEIGHT: i32 = 1;
/// The largest queue weight, as in Volcano.
pub const MAX_WEIGHT: i32 = 65535;

/// A queue: a weighted share of the cluster for the PodGroups that name it. Field names follow Volcano's Queue.
// clippy mistakes the repeated `type_ = "string"` inside separate `printcolumn(...)` entries for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scheduling.muster.dev",
    version = "v1alpha1",
    kind = "Queue",
    plural = "queues",
    shortname = "mq",
    category = "muster",
    status = "QueueStatus",
    doc = "A weighted share of the cluster for the PodGroups that name it (Volcano's Queue fields).",
    printcolumn(name = "Weight", type_ = "integer", json_path = ".spec.weight"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Deserved-CPU", type_ = "string", json_path = ".status.deserved.cpu"),
    printcolumn(name = "Deserved-Mem", type_ = "string", json_path = ".status.deserved.memory"),
    printcolumn(name = "Allocated-CPU", type_ = "string", json_path = ".status.allocated.cpu"),
    printcolumn(name = "Allocated-Mem", type_ = "string", json_path = ".status.allocated.memory"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pending", priority = 1),
    printcolumn(name = "Inqueue", type_ = "integer", json_path = ".status.inqueue", priority = 1),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.running", priority = 1),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parent", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    /// Relative share among queues with demand (1..65535).
    #[serde(default = "default_weight")]
    #[schemars(range(min = MIN_WEIGHT, max = MAX_WEIGHT))]
    pub weight: i32,
    /// Hard cap per resource (name -> quantity): the queue's running and reserved requests never exceed it.
    /// Resources not listed are uncapped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capability: BTreeMap<String, Quantity>,
    /// Capacity reserved for this queue and never lent to others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantee: Option<Guarantee>,
    /// Whether capacity this queue borrows above its deserved share may be reclaimed by other queues.
    #[serde(default = "default_reclaimable")]
    pub reclaimable: bool,
    /// Name of the parent queue in a hierarchy; none for a top-level queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Desired state: a Closed queue admits no new PodGroups (running ones continue).
    #[serde(default)]
    pub state: QueueState,
}

/// Volcano's `guarantee`: `{resource: {name: quantity}}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Guarantee {
    /// Reserved amount per resource name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource: BTreeMap<String, Quantity>,
}

/// The desired state of a queue.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum QueueState {
    #[default]
    Open,
    Closed,
}

/// The observed state of a queue, as Volcano reports it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ObservedQueueState {
    Open,
    /// Closed in spec, but admitted or running PodGroups remain.
    Closing,
    Closed,
}

/// What muster last computed for a queue.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ObservedQueueState>,
    /// The fair share the queue is entitled to now (name -> quantity).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deserved: BTreeMap<String, Quantity>,
    /// Requests of its running members plus capacity reserved for its admitted gangs (name -> quantity).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocated: BTreeMap<String, Quantity>,
    /// PodGroups in phase Pending.
    #[serde(default)]
    pub pending: i32,
    /// PodGroups in phase Inqueue (admitted, capacity reserved).
    #[serde(default)]
    pub inqueue: i32,
    /// PodGroups in phase Running.
    #[serde(default)]
    pub running: i32,
}

/// The spec the API server stores for `spec: {}` (the CRD's defaults).
impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec {
            weight: default_weight(),
            capability: BTreeMap::new(),
            guarantee: None,
            reclaimable: default_reclaimable(),
            parent: None,
            state: QueueState::default(),
        }
    }
}

fn default_weight() -> i32 {
    MIN_WEIGHT
}

fn default_reclaimable() -> bool {
    true
}
