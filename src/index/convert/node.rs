//! A Node's allocatable capacity, labels, taints and cordon.

use std::fmt;

use k8s_openapi::api::core::v1::{Node, Taint as K8sTaint};

use crate::core::{NodeSpec, ResourceNames, Resources, Taint, TaintEffect};

use super::*;

/// A node as the core sees it: allocatable (capacity when the kubelet reported no allocatable), labels, taints and
/// the cordon flag. Only resources already interned in `names` are kept: a resource no pod requests cannot
/// constrain placement.
pub fn node_spec(node: &Node, names: &ResourceNames) -> Result<NodeSpec, ConvertError> {
    let object = Subject { kind: "Node", meta: &node.metadata };
    let name = required_name(object)?;
    let status = node.status.as_ref();
    let (field, list) = match status.and_then(|s| s.allocatable.as_ref()) {
        Some(allocatable) => ("status.allocatable", Some(allocatable)),
        None => ("status.capacity", status.and_then(|s| s.capacity.as_ref())),
    };
    let mut allocatable = Resources::ZERO;
    for (resource, quantity) in list.into_iter().flatten() {
        if let Some(slot) = names.slot(resource) {
            allocatable.0[slot] = parse_quantity(resource, quantity, object, format_args!("{field}.{resource}"))?;
        }
    }
    let spec = node.spec.as_ref();
    let taints = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| taint(t, object, format_args!("spec.taints[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(NodeSpec {
        name,
        allocatable,
        labels: node.metadata.labels.clone().unwrap_or_default(),
        taints,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
    })
}

fn taint(t: &K8sTaint, object: Subject<'_>, field: fmt::Arguments<'_>) -> Result<Taint, ConvertError> {
    let effect = TaintEffect::parse(&t.effect).ok_or_else(|| {
        ConvertError::invalid(
            object,
            format_args!("{field}.effect"),
            &t.effect,
            "is not a taint effect (NoSchedule, PreferNoSchedule, NoExecute)",
        )
    })?;
    Ok(Taint { key: t.key.clone(), value: t.value.clone().unwrap_or_default(), effect })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resources::PODS;
    use crate::index::convert::fixtures::*;

    #[test]
    fn node_spec_reads_allocatable_capacity_taints_and_cordon() {
        let mut names = ResourceNames::default();
        let gpu = names.intern("nvidia.com/gpu").unwrap();
        let n = node(json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {"unschedulable": true,
                     "taints": [{"key": "dedicated", "value": "ml", "effect": "NoExecute"}, {"key": "soft",
                                 "effect": "PreferNoSchedule"}]},
            "status": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "4",
                                    "hugepages-2Mi": "0"}}
        }));
        let spec = node_spec(&n, &names).unwrap();
        assert_eq!(spec.name, "n1");
        assert_eq!(spec.allocatable, Resources::cpu_mem(8000, 32 * GI).with(PODS, 110).with(gpu, 4));
        assert!(names.slot("hugepages-2Mi").is_none(), "node_spec never interns");
        assert!(spec.unschedulable);
        assert_eq!(spec.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(
            spec.taints[0],
            Taint { key: "dedicated".into(), value: "ml".into(), effect: TaintEffect::NoExecute }
        );
        assert_eq!(spec.taints[1].value, "");

        let with_allocatable = node(json!({"metadata": {"name": "n2"}, "status": {
            "capacity": {"cpu": "8"}, "allocatable": {"cpu": "7500m"}}}));
        assert_eq!(node_spec(&with_allocatable, &names).unwrap().allocatable, Resources::cpu_mem(7500, 0));

        let absurd = node(json!({"metadata": {"name": "n3"}, "status": {"allocatable": {"memory": "100Ei"}}}));
        let err = node_spec(&absurd, &names).unwrap_err().to_string();
        assert!(err.starts_with("Node n3: status.allocatable.memory: ") && err.contains("too large"), "{err}");
        let bad_taint =
            node(json!({"metadata": {"name": "n4"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}}));
        let err = node_spec(&bad_taint, &names).unwrap_err().to_string();
        assert!(err.contains("Node n4: spec.taints[0].effect: \"Sometimes\""), "{err}");
        let unnamed = node(json!({"metadata": {}}));
        assert!(node_spec(&unnamed, &names).unwrap_err().to_string().contains("metadata.name"));
    }
}
