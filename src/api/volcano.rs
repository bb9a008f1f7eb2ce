//! Volcano's Queue and PodGroup (`scheduling.volcano.sh/v1beta1`), read as muster's own.
//!
//! muster does not serve these kinds: they belong to Volcano's CRDs, which a cluster migrating from Volcano
//! already has (and Spark's `VolcanoFeatureStep` creates PodGroups of). When the CRDs are installed muster watches
//! both kinds and converts each object into the muster type of the same meaning, marked with
//! [`ORIGIN_ANNOTATION`] so that status goes back to the Volcano object in Volcano's shape. A muster object of
//! the same name wins over a Volcano one.
//!
//! Mapping (everything else in the Volcano object is ignored):
//! - Queue: `spec.weight`, `spec.capability`, `spec.guarantee.resource`, `spec.reclaimable`, `spec.parent`;
//!   `status.state` Closed or Closing (Volcano's way to close a queue) becomes `spec.state: Closed`.
//! - PodGroup: `spec.minMember`, `spec.minTaskMember` (tasks are told apart by the pods'
//!   `volcano.sh/task-spec` annotation), `spec.minResources`, `spec.queue`, `spec.priorityClassName`. There are
//!   no member templates: muster learns the shapes from the first `minMember` pods.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

use super::{PodGroup, Queue};

/// The API version of Volcano's scheduling kinds.
pub const API_VERSION: &str = "scheduling.volcano.sh/v1beta1";

/// Annotation muster puts on the objects it converted from Volcano's (never written to the cluster).
pub const ORIGIN_ANNOTATION: &str = "muster.dev/origin";
/// The value of [`ORIGIN_ANNOTATION`] on a converted Volcano object.
pub const ORIGIN_VOLCANO: &str = "scheduling.volcano.sh";

/// The pod annotation naming the Volcano task (for `minTaskMember`).
pub const TASK_SPEC_ANNOTATION: &str = "volcano.sh/task-spec";

/// Volcano's Queue kind (cluster-scoped).
pub fn queue_resource() -> ApiResource {
    resource("Queue", "queues")
}

/// Volcano's PodGroup kind (namespaced).
pub fn podgroup_resource() -> ApiResource {
    resource("PodGroup", "podgroups")
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "scheduling.volcano.sh".into(),
        version: "v1beta1".into(),
        api_version: API_VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Whether an object came from Volcano's kinds.
pub fn is_volcano(meta: &ObjectMeta) -> bool {
    meta.annotations.as_ref().and_then(|a| a.get(ORIGIN_ANNOTATION)).is_some_and(|v| v == ORIGIN_VOLCANO)
}

fn converted_meta(object: &DynamicObject) -> ObjectMeta {
    let mut meta = object.metadata.clone();
    meta.managed_fields = None;
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(ORIGIN_ANNOTATION.into(), ORIGIN_VOLCANO.into());
    meta
}

/// A field of `value` copied when present and not null.
fn copy(from: &Value, to: &mut serde_json::Map<String, Value>, field: &str) {
    if let Some(v) = from.get(field).filter(|v| !v.is_null()) {
        to.insert(field.into(), v.clone());
    }
}

/// A Volcano Queue as a muster Queue.
pub fn queue_from(object: &DynamicObject) -> Result<Queue, String> {
    let spec = object.data.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut converted = serde_json::Map::new();
    for field in ["weight", "capability", "guarantee", "reclaimable", "parent"] {
        copy(&spec, &mut converted, field);
    }
    let state = object.data.pointer("/status/state").and_then(Value::as_str);
    if matches!(state, Some("Closed" | "Closing")) {
        converted.insert("state".into(), "Closed".into());
    }
    let spec = serde_json::from_value(Value::Object(converted)).map_err(|e| format!("spec: {e}"))?;
    let mut queue = Queue::new(object.metadata.name.as_deref().unwrap_or_default(), spec);
    queue.metadata = converted_meta(object);
    Ok(queue)
}

/// A Volcano PodGroup as a muster PodGroup (no member templates: shapes come from its pods).
pub fn podgroup_from(object: &DynamicObject) -> Result<PodGroup, String> {
    let spec = object.data.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut converted = serde_json::Map::new();
    for field in ["minMember", "minTaskMember", "minResources", "queue", "priorityClassName"] {
        copy(&spec, &mut converted, field);
    }
    let spec = serde_json::from_value(Value::Object(converted)).map_err(|e| format!("spec: {e}"))?;
    let mut pg = PodGroup::new(object.metadata.name.as_deref().unwrap_or_default(), spec);
    pg.metadata = converted_meta(object);
    Ok(pg)
}

/// muster's PodGroup status as Volcano writes its own: `phase` (muster's Expired is Volcano's Pending),
/// `conditions`, `running`, `succeeded`, `failed`. muster's reservations are not part of Volcano's schema.
pub fn podgroup_status(status: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for field in ["phase", "conditions", "running", "succeeded", "failed"] {
        copy(status, &mut out, field);
    }
    if out.get("phase").and_then(Value::as_str) == Some("Expired") {
        out.insert("phase".into(), "Pending".into());
    }
    Value::Object(out)
}

/// muster's Queue status as Volcano's: `state`, `pending`, `inqueue`, `running`, and `allocated`.
pub fn queue_status(status: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for field in ["state", "pending", "inqueue", "running", "allocated"] {
        copy(status, &mut out, field);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_guides_queue_is_a_muster_queue() {
        let q = queue_from(&dynamic(json!({
            "apiVersion": API_VERSION, "kind": "Queue",
            "metadata": {"name": "team-data-engineering"},
            "spec": {"weight": 3, "reclaimable": true, "capability": {"cpu": 80, "memory": "320Gi"},
                     "guarantee": {"resource": {"cpu": "10"}}, "parent": "root", "affinity": {"ignored": true}},
            "status": {"state": "Open"}
        })))
        .unwrap();
        assert_eq!(q.spec.weight, 3);
        assert!(q.spec.reclaimable);
        assert_eq!(q.spec.capability["cpu"].0, "80");
        assert_eq!(q.spec.capability["memory"].0, "320Gi");
        assert_eq!(q.spec.guarantee.unwrap().resource["cpu"].0, "10");
        assert_eq!(q.spec.parent.as_deref(), Some("root"));
        assert_eq!(q.spec.state, crate::api::QueueState::Open);
        assert!(is_volcano(&q.metadata));

        let closed = queue_from(&dynamic(json!({
            "apiVersion": API_VERSION, "kind": "Queue", "metadata": {"name": "q"}, "status": {"state": "Closing"}
        })))
        .unwrap();
        assert_eq!(closed.spec.state, crate::api::QueueState::Closed);
        let bad = queue_from(&dynamic(json!({
            "apiVersion": API_VERSION, "kind": "Queue", "metadata": {"name": "q"}, "spec": {"weight": "heavy"}
        })));
        assert!(bad.unwrap_err().starts_with("spec: "));
    }

    #[test]
    fn a_volcano_podgroup_is_a_gang_without_templates() {
        let pg = podgroup_from(&dynamic(json!({
            "apiVersion": API_VERSION, "kind": "PodGroup",
            "metadata": {"name": "spark-abc-podgroup", "namespace": "spark"},
            "spec": {"minMember": 3, "minTaskMember": {"driver": 1, "executor": 2}, "queue": "team-a",
                     "minResources": {"cpu": "5"}, "priorityClassName": "high"}
        })))
        .unwrap();
        assert_eq!(pg.spec.min_member, Some(3));
        assert_eq!(pg.spec.min_task_member["executor"], 2);
        assert_eq!(pg.spec.queue, "team-a");
        assert_eq!(pg.spec.priority_class_name.as_deref(), Some("high"));
        assert!(pg.spec.member_templates.is_empty());
        assert_eq!(pg.metadata.namespace.as_deref(), Some("spark"));
        assert!(is_volcano(&pg.metadata));
    }

    #[test]
    fn statuses_take_volcanos_shape() {
        let status = json!({"phase": "Expired", "running": 1, "succeeded": 0, "failed": 0,
                            "admittedAt": "x", "reservations": [], "placement": [], "conditions": []});
        assert_eq!(
            podgroup_status(&status),
            json!({"phase": "Pending", "running": 1, "succeeded": 0, "failed": 0, "conditions": []})
        );
        let queue = json!({"state": "Open", "deserved": {"cpu": "4"}, "allocated": {"cpu": "2"}, "pending": 1});
        assert_eq!(queue_status(&queue), json!({"state": "Open", "allocated": {"cpu": "2"}, "pending": 1}));
    }
}
