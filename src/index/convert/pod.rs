//! A pod's effective requests and its placement constraints, as kube-scheduler computes them.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    Affinity, Container, NodeSelectorRequirement, NodeSelectorTerm, Pod, Toleration as K8sToleration,
};

use crate::core::resources::PODS;
use crate::core::{
    Placement, Requirement, ResourceNames, Resources, SelectorOperator, TaintEffect, Term, Toleration,
    TolerationOperator,
};

use super::*;

/// Resources a pod-level `spec.resources` may set (kube's `IsSupportedPodLevelResource`).
fn is_pod_level_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// The pod's effective requests as kube-scheduler computes them (`PodRequests` in k8s.io/component-helpers):
/// the larger of (app containers + sidecars) and the peak of any init container (plus the sidecars started
/// before it), pod-level `spec.resources` overriding cpu/memory/hugepages, plus `spec.overhead`, plus one `pods`.
///
/// A container resource with a limit but no request requests its limit, as the API server's defaulting sets it;
/// pods read back from the API server are already defaulted, but pods built elsewhere (tests, the simulator) may
/// not be. New extended resource names are interned in `names`.
pub fn pod_requests(pod: &Pod, names: &mut ResourceNames) -> Result<Resources, ConvertError> {
    let object = Subject { kind: "Pod", meta: &pod.metadata };
    let Some(spec) = &pod.spec else { return Ok(Resources::ZERO.with(PODS, 1)) };

    let mut total = Resources::ZERO;
    for c in &spec.containers {
        let request = container_requests(c, "spec.containers", names, object)?;
        total = checked_add(&total, &request, object, "spec.containers")?;
    }
    // Sidecars (restartable init containers) run alongside everything after them; a regular init container
    // runs alone except for the sidecars started before it.
    let mut sidecars = Resources::ZERO;
    let mut init_peak = Resources::ZERO;
    for c in spec.init_containers.iter().flatten() {
        let request = container_requests(c, "spec.initContainers", names, object)?;
        let in_use = if c.restart_policy.as_deref() == Some("Always") {
            total = checked_add(&total, &request, object, "spec.initContainers")?;
            sidecars = checked_add(&sidecars, &request, object, "spec.initContainers")?;
            sidecars
        } else {
            checked_add(&sidecars, &request, object, "spec.initContainers")?
        };
        init_peak = init_peak.max(&in_use);
    }
    total = total.max(&init_peak);

    if let Some(pod_level) = &spec.resources {
        let requests = pod_level.requests.iter().flatten();
        for (name, quantity) in requests.filter(|(name, _)| is_pod_level_resource(name)) {
            let field = format_args!("spec.resources.requests.{name}");
            let (slot, amount) = parse_resource(name, quantity, names, object, field)?;
            total.0[slot] = amount;
        }
        // Defaulting: a pod-level limit stands in for a request nobody made, at pod or container level.
        let limits = pod_level.limits.iter().flatten();
        for (name, quantity) in limits.filter(|(name, _)| is_pod_level_resource(name)) {
            let requested = pod_level.requests.as_ref().is_some_and(|r| r.contains_key(name));
            let field = format_args!("spec.resources.limits.{name}");
            let (slot, amount) = parse_resource(name, quantity, names, object, field)?;
            if !requested && total.0[slot] == 0 {
                total.0[slot] = amount;
            }
        }
    }

    if let Some(overhead) = &spec.overhead {
        let overhead = parse_list(overhead, names, object, "spec.overhead")?;
        total = checked_add(&total, &overhead, object, "spec.overhead")?;
    }
    // kube-scheduler counts every pod as one against the node's `pods` allocatable, whatever it requests.
    total.0[PODS] = 1;
    Ok(total)
}

/// One container's requests, with limits standing in for missing requests (API server defaulting).
fn container_requests(
    c: &Container,
    list_field: &str,
    names: &mut ResourceNames,
    object: Subject<'_>,
) -> Result<Resources, ConvertError> {
    let Some(resources) = &c.resources else { return Ok(Resources::ZERO) };
    let requests = resources.requests.as_ref();
    let container = &c.name;
    let mut r = Resources::ZERO;
    for (name, quantity) in requests.into_iter().flatten() {
        let field = format_args!("{list_field}[name={container}].resources.requests.{name}");
        let (slot, amount) = parse_resource(name, quantity, names, object, field)?;
        r.0[slot] = amount;
    }
    for (name, quantity) in resources.limits.iter().flatten() {
        if requests.is_some_and(|req| req.contains_key(name)) {
            continue;
        }
        let field = format_args!("{list_field}[name={container}].resources.limits.{name}");
        let (slot, amount) = parse_resource(name, quantity, names, object, field)?;
        r.0[slot] = amount;
    }
    Ok(r)
}

/// The pod's hard node constraints: nodeSelector, required node affinity and tolerations, canonicalised.
///
/// Preferred affinity only scores and pod (anti-)affinity is left to kube-scheduler's own filters, which run
/// before the extender's; neither is part of a [`Placement`].
pub fn pod_placement(pod: &Pod) -> Result<Placement, ConvertError> {
    let object = Subject { kind: "Pod", meta: &pod.metadata };
    let Some(spec) = &pod.spec else { return Ok(Placement::default()) };
    placement(
        spec.node_selector.as_ref(),
        spec.affinity.as_ref(),
        spec.tolerations.as_deref().unwrap_or_default(),
        object,
        format_args!("spec"),
    )
}

/// Builds a canonical [`Placement`] from the three Kubernetes constraint fields found under `field`.
pub(super) fn placement(
    node_selector: Option<&BTreeMap<String, String>>,
    affinity: Option<&Affinity>,
    tolerations: &[K8sToleration],
    object: Subject<'_>,
    field: fmt::Arguments<'_>,
) -> Result<Placement, ConvertError> {
    let required = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    let required_terms = match required {
        None => Vec::new(),
        // Kubernetes ORs the terms, so an empty list matches no node; an empty Term says exactly that in the core
        // (the API server rejects such a pod, but a placement must never widen what the object allows).
        Some(selector) if selector.node_selector_terms.is_empty() => vec![Term::default()],
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .enumerate()
            .map(|(i, term)| {
                let terms = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
                node_selector_term(term, object, format_args!("{field}.{terms}[{i}]"))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Placement {
        node_selector: node_selector.cloned().unwrap_or_default(),
        required_terms,
        tolerations: convert_tolerations(tolerations, object, format_args!("{field}.tolerations"))?,
    }
    .canonical())
}

pub(super) fn convert_tolerations(
    list: &[K8sToleration],
    object: Subject<'_>,
    field: fmt::Arguments<'_>,
) -> Result<Vec<Toleration>, ConvertError> {
    list.iter().enumerate().map(|(i, t)| toleration(t, object, format_args!("{field}[{i}]"))).collect()
}

fn node_selector_term(
    term: &NodeSelectorTerm,
    object: Subject<'_>,
    field: fmt::Arguments<'_>,
) -> Result<Term, ConvertError> {
    let requirements = |list: Option<&Vec<NodeSelectorRequirement>>, kind: &str| {
        list.into_iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| requirement(r, object, format_args!("{field}.{kind}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Term {
        match_expressions: requirements(term.match_expressions.as_ref(), "matchExpressions")?,
        match_fields: requirements(term.match_fields.as_ref(), "matchFields")?,
    })
}

fn requirement(
    r: &NodeSelectorRequirement,
    object: Subject<'_>,
    field: fmt::Arguments<'_>,
) -> Result<Requirement, ConvertError> {
    let operator = SelectorOperator::parse(&r.operator).ok_or_else(|| {
        ConvertError::invalid(
            object,
            format_args!("{field}.operator"),
            &r.operator,
            "is not a node selector operator (In, NotIn, Exists, DoesNotExist, Gt, Lt)",
        )
    })?;
    Ok(Requirement { key: r.key.clone(), operator, values: r.values.clone().unwrap_or_default() })
}

fn toleration(t: &K8sToleration, object: Subject<'_>, field: fmt::Arguments<'_>) -> Result<Toleration, ConvertError> {
    let operator = match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => TolerationOperator::Equal,
        "Exists" => TolerationOperator::Exists,
        other => {
            return Err(ConvertError::invalid(
                object,
                format_args!("{field}.operator"),
                other,
                "is not a supported toleration operator (Equal, Exists)",
            ));
        }
    };
    let effect = match t.effect.as_deref().unwrap_or_default() {
        "" => None,
        other => Some(TaintEffect::parse(other).ok_or_else(|| {
            ConvertError::invalid(
                object,
                format_args!("{field}.effect"),
                other,
                "is not a taint effect (NoSchedule, PreferNoSchedule, NoExecute)",
            )
        })?),
    };
    Ok(Toleration {
        key: t.key.clone().unwrap_or_default(),
        operator,
        value: t.value.clone().unwrap_or_default(),
        effect,
    })
}

/// The core's tolerations as Kubernetes tolerations (for the PodGroup muster writes for a Spark driver).
pub fn tolerations_to_k8s(tolerations: &[crate::core::Toleration]) -> Vec<k8s_openapi::api::core::v1::Toleration> {
    use crate::core::{TaintEffect, TolerationOperator};
    tolerations
        .iter()
        .map(|t| k8s_openapi::api::core::v1::Toleration {
            key: (!t.key.is_empty()).then(|| t.key.clone()),
            operator: Some(match t.operator {
                TolerationOperator::Equal => "Equal".to_string(),
                TolerationOperator::Exists => "Exists".to_string(),
            }),
            value: (!t.value.is_empty()).then(|| t.value.clone()),
            effect: t.effect.map(|e| {
                match e {
                    TaintEffect::NoSchedule => "NoSchedule",
                    TaintEffect::PreferNoSchedule => "PreferNoSchedule",
                    TaintEffect::NoExecute => "NoExecute",
                }
                .to_string()
            }),
            toleration_seconds: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TemplateSpec;
    use crate::index::convert::fixtures::*;

    #[test]
    fn spark_executor_pod_requests_placement_and_gang() {
        let exec = spark_executor();
        let mut names = ResourceNames::default();
        let request = pod_requests(&exec, &mut names).unwrap();
        assert_eq!(request, cpu_mem_pods(1000, 5 * GI), "4g heap + 1g overhead is a 5Gi request");

        let placement = pod_placement(&exec).unwrap();
        assert_eq!(placement.node_selector.get("pool").map(String::as_str), Some("spot"));
        assert_eq!(placement.tolerations.len(), 2);
        let spot = node_spec(&spot_node(), &names).unwrap();
        assert_eq!(spot.allocatable, Resources::cpu_mem(15_900, 62 * GI).with(PODS, 110).with(3, 100 * GI));
        let facts = NodeFacts { name: &spot.name, labels: &spot.labels, taints: &spot.taints, unschedulable: false };
        assert_eq!(placement.first_violation(&facts), None, "the executor tolerates the spot taint");
        let untolerating = Placement { tolerations: vec![], ..placement.clone() };
        assert!(untolerating.first_violation(&facts).unwrap().contains("workload=spark-executor"));

        let key = gang_key(&exec).unwrap();
        assert_eq!(key.namespace, "spark");
        assert_eq!(key.name, "spark-0b6b3c5e2a0f4d6f9f3c2d1e0a9b8c7d", "Spark's own ids are used unchanged");
        assert_eq!(key.source, GangSource::SparkApp { app_id: "spark-0b6b3c5e2a0f4d6f9f3c2d1e0a9b8c7d".into() });

        let templates = [
            TemplateSpec {
                name: "driver".into(),
                request: cpu_mem_pods(1000, 2 * GI),
                placement: Placement::default(),
                min: 1,
                max: 1,
            },
            TemplateSpec { name: "executor".into(), request, placement, min: 2, max: 10 },
        ];
        assert_eq!(template_for_pod(&exec, &request, &templates), Some(1));
    }

    #[test]
    fn init_containers_sidecars_and_overhead() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "500m"}}}
                ],
                "initContainers": [
                    {"name": "setup", "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}},
                    {"name": "proxy", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
                    {"name": "migrate", "resources": {"requests": {"cpu": "1900m", "memory": "3Gi"}}}
                ],
                "overhead": {"cpu": "100m", "memory": "64Mi"}
            }
        }));
        let mut names = ResourceNames::default();
        // Containers + sidecar: 1750m, 1.25Gi. Init peak: "migrate" runs beside the sidecar: 2150m, 3.25Gi.
        // The larger of the two per resource, plus overhead.
        assert_eq!(pod_requests(&p, &mut names).unwrap(), cpu_mem_pods(2150 + 100, 3 * GI + 256 * MI + 64 * MI));

        let idle_init = pod(json!({
            "metadata": {"name": "q"},
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "3"}}}],
                     "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]}
        }));
        assert_eq!(pod_requests(&idle_init, &mut names).unwrap(), cpu_mem_pods(3000, 0));
    }

    #[test]
    fn limits_default_requests_and_extended_resources_are_interned() {
        let p = pod(json!({
            "metadata": {"name": "gpu", "namespace": "ml"},
            "spec": {"containers": [{"name": "train", "resources": {
                "requests": {"cpu": "2"},
                "limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "2"}
            }}]}
        }));
        let mut names = ResourceNames::default();
        let r = pod_requests(&p, &mut names).unwrap();
        let gpu = names.slot("nvidia.com/gpu").expect("interned");
        assert_eq!(r, cpu_mem_pods(2000, 8 * GI).with(gpu, 2), "requests win; limits fill the gaps");
        assert!(pod_requests(&pod(json!({"metadata": {"name": "empty"}})), &mut names).unwrap() == cpu_mem_pods(0, 0));
    }

    #[test]
    fn pod_level_resources_override_cpu_and_memory() {
        let p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {
                "resources": {"requests": {"cpu": "3"}, "limits": {"memory": "2Gi"}},
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "1", "ephemeral-storage": "1Gi"}}},
                    {"name": "b"}
                ]
            }
        }));
        let mut names = ResourceNames::default();
        let r = pod_requests(&p, &mut names).unwrap();
        assert_eq!(r, cpu_mem_pods(3000, 2 * GI).with(3, GI), "pod-level cpu wins, the memory limit stands in");
    }

    #[test]
    fn garbage_and_absurd_quantities_are_errors_naming_object_and_field() {
        let mut names = ResourceNames::default();
        for (bad, expect) in [("5 Gi", "invalid quantity"), ("-1", "negative"), ("1e30", "too large"), ("", "empty")] {
            let p = pod(json!({
                "metadata": {"name": "bad", "namespace": "ns"},
                "spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": bad}}}]}
            }));
            let err = pod_requests(&p, &mut names).unwrap_err().to_string();
            assert!(err.starts_with("Pod ns/bad: spec.containers[name=c].resources.requests.memory: "), "{err}");
            assert!(err.contains(expect) && err.contains(&format!("{bad:?}")), "{err}");
        }
        // Each amount is the largest Kubernetes accepts (2^63 - 1); three of them leave u64.
        let huge = "9223372036854775807";
        let overflow = pod(json!({
            "metadata": {"name": "o", "namespace": "ns"},
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": huge}}},
                                    {"name": "b", "resources": {"requests": {"memory": huge}}},
                                    {"name": "c", "resources": {"requests": {"memory": "2"}}}]}
        }));
        let err = pod_requests(&overflow, &mut names).unwrap_err().to_string();
        assert!(err.contains("Pod ns/o") && err.contains("overflow"), "{err}");

        let mut full = ResourceNames::default();
        for i in 0..8 {
            full.intern(&format!("example.com/r{i}")).unwrap();
        }
        let extra = pod(json!({
            "metadata": {"name": "x", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"example.com/new": "1"}}}]}
        }));
        let err = pod_requests(&extra, &mut full).unwrap_err().to_string();
        assert!(err.contains("limits.example.com/new") && err.contains("at most"), "{err}");
    }

    #[test]
    fn required_node_affinity_and_tolerations() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [],
                "affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "a", "a"]},
                                              {"key": "gpu", "operator": "DoesNotExist"}]},
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}
                    ]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 1, "preference": {"matchExpressions": [{"key": "x", "operator": "Bogus"}]}}
                    ]
                }},
                "tolerations": [{"key": "a", "value": "1"}, {"operator": "Exists"}]
            }
        }));
        let placement = pod_placement(&p).unwrap();
        assert_eq!(placement.required_terms.len(), 2);
        let zone_term = placement.required_terms.iter().find(|t| !t.match_expressions.is_empty()).unwrap();
        let zone = zone_term.match_expressions.iter().find(|r| r.key == "zone").unwrap();
        assert_eq!((zone.operator, zone.values.clone()), (SelectorOperator::In, vec!["a".into(), "b".into()]));
        let by_name = placement.required_terms.iter().find(|t| !t.match_fields.is_empty()).unwrap();
        assert_eq!(by_name.match_fields[0].key, "metadata.name");
        assert!(placement.tolerations.contains(&Toleration {
            key: "a".into(),
            operator: TolerationOperator::Equal,
            value: "1".into(),
            effect: None
        }));
        assert!(placement.tolerations.iter().any(|t| t.key.is_empty() && t.operator == TolerationOperator::Exists));

        let bad = |spec: serde_json::Value| {
            pod_placement(&pod(json!({"metadata": {"name": "b", "namespace": "ns"}, "spec": spec})))
                .unwrap_err()
                .to_string()
        };
        let err = bad(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}]}}}}));
        assert!(err.contains("nodeSelectorTerms[0].matchExpressions[0].operator: \"Near\""), "{err}");
        let err = bad(json!({"containers": [], "tolerations": [{"key": "a", "operator": "Gt", "value": "3"}]}));
        assert!(err.contains("Pod ns/b: spec.tolerations[0].operator: \"Gt\""), "{err}");
        let err = bad(json!({"containers": [], "tolerations": [{"key": "a", "effect": "NoWay"}]}));
        assert!(err.contains("spec.tolerations[0].effect: \"NoWay\""), "{err}");

        let no_terms = pod(json!({"metadata": {"name": "n"}, "spec": {"containers": [], "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}}));
        let labels = BTreeMap::new();
        let facts = NodeFacts { name: "n1", labels: &labels, taints: &[], unschedulable: false };
        assert!(!pod_placement(&no_terms).unwrap().allows(&facts), "an empty term list matches no node");
    }
}
