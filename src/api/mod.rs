//! muster's custom resources (group `scheduling.muster.dev`, version `v1alpha1`) and the well-known label and
//! annotation keys.
//!
//! Field names follow Volcano's Queue and PodGroup wherever the meaning is the same, so a Volcano user can read
//! them; member templates and the reservations in PodGroup status are muster's own.

pub mod errors;
pub mod names;
mod podgroup;
mod queue;
pub mod volcano;

use kube::CustomResourceExt;

pub use podgroup::{
    ConditionStatus, DEFAULT_QUEUE, MemberTemplate, PodGroup, PodGroupCondition, PodGroupPhase, PodGroupSpec,
    PodGroupStatus, Reservation,
};
pub use queue::{Guarantee, MAX_WEIGHT, MIN_WEIGHT, ObservedQueueState, Queue, QueueSpec, QueueState, QueueStatus};

/// The Kubeflow Spark Operator's SparkApplication kind (`sparkoperator.k8s.io/v1beta2`), which muster reads (never
/// writes) for the executors' fields the operator's webhook puts on pods.
pub fn spark_application_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "sparkoperator.k8s.io".into(),
        version: "v1beta2".into(),
        api_version: "sparkoperator.k8s.io/v1beta2".into(),
        kind: "SparkApplication".into(),
        plural: "sparkapplications".into(),
    }
}

/// Both CustomResourceDefinitions as one multi-document YAML stream, in a fixed order (Queue, then PodGroup).
/// This is what `muster crds` prints and what `deploy/crds/muster.yaml` holds.
pub fn crds_yaml() -> String {
    [Queue::crd(), PodGroup::crd()]
        .iter()
        .map(|crd| {
            // Serialising a CustomResourceDefinition built from our own static types cannot fail.
            serde_norway::to_string(crd).expect("a CustomResourceDefinition serialises to YAML")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use serde::Deserialize;
    use serde_json::Value;

    use super::*;

    fn crds() -> Vec<CustomResourceDefinition> {
        serde_norway::Deserializer::from_str(&crds_yaml())
            .map(|doc| CustomResourceDefinition::deserialize(doc).expect("a CRD document"))
            .collect()
    }

    /// Checks the rules of a structural schema that a derive can break: every node has a type unless it is an
    /// int-or-string or preserves unknown fields, and there are no `$ref`s or `*Of` combinators (which would need
    /// the same shape in every branch).
    fn assert_structural(schema: &Value, path: &str) {
        let object = schema.as_object().unwrap_or_else(|| panic!("{path}: not an object"));
        for forbidden in ["$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "$defs"] {
            assert!(!object.contains_key(forbidden), "{path}: has {forbidden}");
        }
        let typed = object.get("type").and_then(Value::as_str).is_some_and(|t| !t.is_empty());
        let untyped_ok = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        assert!(typed || untyped_ok, "{path}: no type");
        assert!(
            !(object.contains_key("properties") && object.contains_key("additionalProperties")),
            "{path}: both properties and additionalProperties"
        );
        for (name, child) in object.get("properties").and_then(Value::as_object).into_iter().flatten() {
            assert_structural(child, &format!("{path}.{name}"));
        }
        if let Some(items) = object.get("items") {
            assert_structural(items, &format!("{path}[]"));
        }
        if let Some(values) = object.get("additionalProperties").filter(|v| v.is_object()) {
            assert_structural(values, &format!("{path}{{}}"));
        }
    }

    #[test]
    fn crds_are_deterministic_structural_and_complete() {
        assert_eq!(crds_yaml(), crds_yaml());
        let crds = crds();
        let names: Vec<_> = crds.iter().map(|c| c.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["queues.scheduling.muster.dev", "podgroups.scheduling.muster.dev"]);
        for crd in &crds {
            let version = &crd.spec.versions[0];
            assert_eq!((version.name.as_str(), version.served, version.storage), ("v1alpha1", true, true));
            assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
            assert!(!version.additional_printer_columns.as_deref().unwrap_or_default().is_empty());
            let schema = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("a schema");
            assert_structural(&serde_json::to_value(schema).unwrap(), &crd.spec.names.kind);
        }
        assert_eq!(crds[0].spec.scope, "Cluster");
        assert_eq!(crds[1].spec.scope, "Namespaced");
        let yaml = crds_yaml();
        assert!(yaml.contains("x-kubernetes-int-or-string: true"), "quantities are int-or-string");
        assert!(yaml.contains("x-kubernetes-list-map-keys"), "member templates are a map list keyed by name");
    }

    #[test]
    fn a_volcano_style_manifest_reads_with_defaults() {
        let queue: Queue = serde_norway::from_str(
            "apiVersion: scheduling.muster.dev/v1alpha1\nkind: Queue\nmetadata: {name: team-a}\n\
             spec: {capability: {cpu: 100, memory: 400Gi}, guarantee: {resource: {cpu: '10'}}}\n",
        )
        .unwrap();
        assert_eq!((queue.spec.weight, queue.spec.reclaimable, queue.spec.state), (1, true, QueueState::Open));
        assert_eq!(queue.spec.capability["cpu"].0, "100");
        assert_eq!(queue.spec.guarantee.unwrap().resource["cpu"].0, "10");

        let pg: PodGroup = serde_norway::from_str(
            "apiVersion: scheduling.muster.dev/v1alpha1\nkind: PodGroup\nmetadata: {name: etl, namespace: data}\n\
             spec: {minMember: 3, minResources: {cpu: '3'}, priorityClassName: high}\n",
        )
        .unwrap();
        assert_eq!(pg.spec.queue, DEFAULT_QUEUE);
        assert_eq!(pg.spec.min_member, Some(3));
        assert!(pg.spec.member_templates.is_empty());
        // Empty collections are left out when written, so status patches and manifests stay small.
        let written = serde_json::to_value(&pg.spec).unwrap();
        assert!(written.get("memberTemplates").is_none() && written.get("minTaskMember").is_none());
    }

    #[test]
    fn default_specs_are_what_an_empty_spec_deserialises_to() {
        let queue: QueueSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(queue, QueueSpec::default());
        let pg: PodGroupSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(pg, PodGroupSpec::default());
    }
}
