//! A Queue's weight, capability and guarantee.

use crate::api::{self};
use crate::core::{ResourceNames, Resources};

use super::*;

/// A Queue as the core sees it. Capability slots not listed stay unlimited; names in capability and guarantee are
/// interned so a cap on a resource nobody requests yet still holds once someone does.
pub fn queue_spec(q: &api::Queue, names: &mut ResourceNames) -> Result<crate::core::QueueSpec, ConvertError> {
    let object = Subject { kind: "Queue", meta: &q.metadata };
    let name = required_name(object)?;
    let weight = Some(q.spec.weight)
        .filter(|w| (api::MIN_WEIGHT..=api::MAX_WEIGHT).contains(w))
        .and_then(|w| u64::try_from(w).ok())
        .ok_or_else(|| {
            ConvertError::invalid(
                object,
                "spec.weight",
                q.spec.weight.to_string(),
                format!("is out of range {}..={}", api::MIN_WEIGHT, api::MAX_WEIGHT),
            )
        })?;
    let mut capability = Resources::UNLIMITED;
    for (resource, quantity) in &q.spec.capability {
        let field = format_args!("spec.capability.{resource}");
        let (slot, amount) = parse_resource(resource, quantity, names, object, field)?;
        capability.0[slot] = amount;
    }
    let guarantee = match &q.spec.guarantee {
        Some(g) => parse_list(&g.resource, names, object, "spec.guarantee.resource")?,
        None => Resources::ZERO,
    };
    Ok(crate::core::QueueSpec {
        name,
        weight,
        capability,
        guarantee,
        reclaimable: q.spec.reclaimable,
        open: q.spec.state == api::QueueState::Open,
        parent: q.spec.parent.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::convert::fixtures::*;

    fn queue(spec: serde_json::Value) -> api::Queue {
        serde_json::from_value(json!({
            "apiVersion": "scheduling.muster.dev/v1alpha1", "kind": "Queue",
            "metadata": {"name": "team-a"}, "spec": spec
        }))
        .expect("test queue")
    }

    #[test]
    fn queue_spec_weights_caps_and_guarantees() {
        let mut names = ResourceNames::default();
        let q = queue(json!({
            "weight": 3,
            "capability": {"cpu": "100", "nvidia.com/gpu": "8"},
            "guarantee": {"resource": {"cpu": "10", "memory": "64Gi"}},
            "reclaimable": false,
            "parent": "research",
            "state": "Closed"
        }));
        let spec = queue_spec(&q, &mut names).unwrap();
        let gpu = names.slot("nvidia.com/gpu").unwrap();
        assert_eq!((spec.name.as_str(), spec.weight, spec.reclaimable, spec.open), ("team-a", 3, false, false));
        assert_eq!(spec.parent.as_deref(), Some("research"));
        assert_eq!(spec.capability.get(CPU), 100_000);
        assert_eq!(spec.capability.get(gpu), 8);
        assert_eq!(spec.capability.get(MEMORY), u64::MAX, "unset capability slots are unlimited");
        assert_eq!(spec.guarantee, Resources::cpu_mem(10_000, 64 * GI));

        let defaults = queue_spec(&queue(json!({})), &mut names).unwrap();
        assert_eq!((defaults.weight, defaults.reclaimable, defaults.open), (1, true, true));
        assert_eq!(defaults.capability, Resources::UNLIMITED);

        for weight in [0, -1, 65_536] {
            let err = queue_spec(&queue(json!({ "weight": weight })), &mut names).unwrap_err().to_string();
            assert!(err.contains("Queue team-a: spec.weight") && err.contains(&format!("\"{weight}\"")), "{err}");
        }
        let err = queue_spec(&queue(json!({"capability": {"cpu": "lots"}})), &mut names).unwrap_err().to_string();
        assert!(err.contains("spec.capability.cpu") && err.contains("\"lots\""), "{err}");
    }
}
