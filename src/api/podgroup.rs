//! The namespaced `PodGroup`: a gang of pods admitted all together or not at all.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The queue a PodGroup joins when it names none (Volcano's default too).
pub const DEFAULT_QUEUE: &str = "default";

/// A gang: pods that start together or not at all. Volcano's PodGroup fields plus muster's member templates,
/// which describe members that do not exist yet (Spark executors) so capacity can be reserved for them.
// clippy mistakes the repeated `type_ = "string"` inside separate `printcolumn(...)` entries for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scheduling.muster.dev",
    version = "v1alpha1",
    kind = "PodGroup",
    plural = "podgroups",
    shortname = "mpg",
    category = "muster",
    namespaced,
    status = "PodGroupStatus",
    doc = "A gang of pods admitted all together or not at all (Volcano's PodGroup fields plus member templates).",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "MinMember", type_ = "integer", json_path = ".spec.minMember"),
    printcolumn(name = "Queue", type_ = "string", json_path = ".spec.queue"),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.running"),
    printcolumn(name = "Admitted", type_ = "date", json_path = ".status.admittedAt", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PodGroupSpec {
    /// Members that must be placeable together before any is admitted. With member templates it may be left
    /// unset (it is then the sum of the templates' minMember) and must not exceed that sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_member: Option<i32>,
    /// The gang's minimum total requests (name -> quantity). Informational, kept for Volcano compatibility:
    /// muster packs the member templates' shapes instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_resources: BTreeMap<String, Quantity>,
    /// The Queue this gang's resources are charged to.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Priority of the gang among the pending gangs of its queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Volcano's per-task minimum (template name -> members). When a member template of the same name exists,
    /// both numbers must agree.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_task_member: BTreeMap<String, i32>,
    /// The roles of the gang (e.g. a driver and its executors), with their shape and placement. Without templates
    /// the gang is Volcano-style: its shape is learned from the member pods that exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub member_templates: Vec<MemberTemplate>,
}

/// One role of a gang: identical members with the same requests and placement constraints.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberTemplate {
    /// Unique within the PodGroup; pods name it with the `muster.dev/member-template` annotation, or Spark's
    /// `spark-role` label value matches it.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Members of this role that must start together.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_member: i32,
    /// Most members of this role; those above minMember are elastic. Unbounded when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_member: Option<i32>,
    /// One member's resource requests (name -> quantity), as its pod will request them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Quantity>,
    /// The members' node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The members' tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The members' affinity; muster evaluates its required node affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// The lifecycle of a gang (Volcano's phase names plus Failed and Expired).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PodGroupPhase {
    /// Waiting for admission; nothing reserved.
    Pending,
    /// Admitted: capacity is reserved (see `reservations`) for every minimum member not yet running.
    Inqueue,
    /// At least minMember members are running.
    Running,
    /// All members finished successfully.
    Completed,
    /// The gang cannot complete (members failed below the minimum).
    Failed,
    /// Its reservations timed out before the members were bound; it waits for admission again.
    Expired,
}

/// The status of a condition, as in Kubernetes conditions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation about a PodGroup, e.g. `Unschedulable` with the reason it waits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodGroupCondition {
    /// The condition's kind, e.g. `Unschedulable` or `Admitted`; unique within the list.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// A machine-readable CamelCase reason, e.g. `NotEnoughResources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Capacity held on one node for `count` not-yet-bound minimum members of one template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The member template's name.
    pub template: String,
    /// The node the capacity is held on.
    pub node: String,
    /// How many members' worth of the template's requests are held there.
    #[schemars(range(min = 1))]
    pub count: i32,
}

/// What muster decided about a PodGroup. The admission part (`admittedAt`, `placement`, `observedGeneration`) is
/// the durable record a restarted muster restores its reservations from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodGroupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodGroupPhase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<PodGroupCondition>,
    /// Members running.
    #[serde(default)]
    pub running: i32,
    /// Members that finished successfully.
    #[serde(default)]
    pub succeeded: i32,
    /// Members that failed.
    #[serde(default)]
    pub failed: i32,
    /// When the gang was admitted (RFC 3339); unset while it has never been admitted or after it was requeued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<Time>,
    /// The `metadata.generation` of the spec the reservations were planned for: reservations recorded for an
    /// older generation describe templates that may have changed and are not restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Capacity held for the minimum members that are not bound yet, one entry per (template, node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["template", "node"]))]
    pub reservations: Vec<Reservation>,
    /// Where the current admission puts every minimum member, bound or not: the nodes of the bound members and of
    /// the reservations, one entry per (template, node). A restarted muster restores from it the reservations of
    /// the members not bound (a member bound on a listed node accounts for one entry there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["template", "node"]))]
    pub placement: Vec<Reservation>,
}

/// The spec the API server stores for `spec: {}` (the CRD's defaults).
impl Default for PodGroupSpec {
    fn default() -> Self {
        PodGroupSpec {
            min_member: None,
            min_resources: BTreeMap::new(),
            queue: default_queue(),
            priority_class_name: None,
            min_task_member: BTreeMap::new(),
            member_templates: Vec::new(),
        }
    }
}

fn default_queue() -> String {
    DEFAULT_QUEUE.to_string()
}
