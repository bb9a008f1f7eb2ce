//! Conversions from Kubernetes objects (and muster's CRDs) into the core's model. Pure functions: no API calls.
//!
//! Every function reads one object and either returns core values or a [`ConvertError`] naming the object and the
//! offending field or value, ready to be shown in an Event or a log line. Pods and nodes are converted on every
//! watch event, so the names in error messages are only formatted when an error is actually built.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint as K8sTaint,
    Toleration as K8sToleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

use crate::api::{self, names};
use crate::core::resources::PODS;
use crate::core::{
    NodeSpec, Placement, QuantityError, Requirement, ResourceError, ResourceNames, Resources, SelectorOperator, Taint,
    TaintEffect, TemplateSpec, Term, Toleration, TolerationOperator, Unit, parse_amount,
};

/// The name of the template for a Spark driver in an automatic PodGroup.
pub const SPARK_DRIVER_TEMPLATE: &str = names::SPARK_ROLE_DRIVER;
/// The name of the template for Spark executors in an automatic PodGroup.
pub const SPARK_EXECUTOR_TEMPLATE: &str = names::SPARK_ROLE_EXECUTOR;

/// Why an object could not be converted. `object` is e.g. `Pod spark/exec-1`, `field` a JSON path into it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    #[error("{object}: {field}: {cause}")]
    Quantity { object: String, field: String, cause: QuantityError },
    #[error("{object}: {field}: {cause}")]
    Resource { object: String, field: String, cause: ResourceError },
    #[error("{object}: {field}: {value:?} {problem}")]
    Invalid { object: String, field: String, value: String, problem: String },
    #[error("{object}: annotation {annotation}: {problem}")]
    Annotation { object: String, annotation: &'static str, problem: String },
    #[error(
        "{object}: spec.minMember is {min_member} but the member templates' minMember add up to only \
         {template_sum}; raise a template's minMember or lower spec.minMember"
    )]
    MinMemberAboveTemplates { object: String, min_member: u32, template_sum: u64 },
}

impl ConvertError {
    fn invalid(
        object: Subject<'_>,
        field: impl fmt::Display,
        value: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConvertError::Invalid {
            object: object.to_string(),
            field: field.to_string(),
            value: value.into(),
            problem: problem.into(),
        }
    }

    fn annotation(object: Subject<'_>, annotation: &'static str, problem: impl Into<String>) -> Self {
        ConvertError::Annotation { object: object.to_string(), annotation, problem: problem.into() }
    }
}

/// The object being converted, as error messages name it: `Kind namespace/name` (`Kind name` when
/// cluster-scoped).
#[derive(Clone, Copy)]
struct Subject<'a> {
    kind: &'static str,
    meta: &'a ObjectMeta,
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.meta.name.as_deref().unwrap_or("<unnamed>");
        match self.meta.namespace.as_deref() {
            Some(namespace) => write!(f, "{} {namespace}/{name}", self.kind),
            None => write!(f, "{} {name}", self.kind),
        }
    }
}

/// How a pod names the gang it belongs to, in the order [`gang_key`] looks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GangSource {
    /// The `muster.dev/pod-group` label.
    Label,
    /// Volcano's `scheduling.k8s.io/group-name` annotation or its `scheduling.volcano.sh/group-name` alias.
    VolcanoAnnotation,
    /// Spark's `spark-app-selector` label: the application's automatic PodGroup, which muster creates.
    SparkApp { app_id: String },
}

/// The PodGroup a pod belongs to: `namespace/name`, and how the pod named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GangRef {
    pub namespace: String,
    pub name: String,
    pub source: GangSource,
}

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
fn placement(
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

fn convert_tolerations(
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

/// The member templates of a PodGroup, in spec order (a template's index is its position).
///
/// Each template's request gets `pods: 1`; `maxMember` unset means unbounded. An empty list is returned for a
/// Volcano-style PodGroup without templates: its shape can only be learned from its member pods.
pub fn podgroup_templates(pg: &api::PodGroup, names: &mut ResourceNames) -> Result<Vec<TemplateSpec>, ConvertError> {
    let object = Subject { kind: "PodGroup", meta: &pg.metadata };
    let spec = &pg.spec;
    let min_member = spec
        .min_member
        .map(|m| {
            u32::try_from(m)
                .map_err(|_| ConvertError::invalid(object, "spec.minMember", m.to_string(), "must not be negative"))
        })
        .transpose()?;
    if spec.member_templates.len() > usize::from(u16::MAX) {
        return Err(ConvertError::invalid(
            object,
            "spec.memberTemplates",
            spec.member_templates.len().to_string(),
            "is more templates than muster supports (65535)",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut templates = Vec::with_capacity(spec.member_templates.len());
    for (i, t) in spec.member_templates.iter().enumerate() {
        let field = format!("spec.memberTemplates[{i}]");
        if t.name.is_empty() {
            return Err(ConvertError::invalid(object, format_args!("{field}.name"), "", "must not be empty"));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(ConvertError::invalid(object, format_args!("{field}.name"), &t.name, "names two templates"));
        }
        let min = u32::try_from(t.min_member).map_err(|_| {
            ConvertError::invalid(
                object,
                format_args!("{field}.minMember"),
                t.min_member.to_string(),
                "must not be negative",
            )
        })?;
        let max = match t.max_member {
            None => u32::MAX,
            Some(max) => u32::try_from(max).ok().filter(|&max| max >= min).ok_or_else(|| {
                ConvertError::invalid(
                    object,
                    format_args!("{field}.maxMember"),
                    max.to_string(),
                    format!("must be at least minMember ({min})"),
                )
            })?,
        };
        if let Some(&task_min) = spec.min_task_member.get(&t.name)
            && task_min != t.min_member
        {
            return Err(ConvertError::invalid(
                object,
                format_args!("spec.minTaskMember.{}", t.name),
                task_min.to_string(),
                format!("disagrees with {field}.minMember ({})", t.min_member),
            ));
        }
        let mut request = parse_list(&t.resources, names, object, format_args!("{field}.resources"))?;
        request.0[PODS] = 1;
        let placement =
            placement(Some(&t.node_selector), t.affinity.as_ref(), &t.tolerations, object, format_args!("{field}"))?;
        templates.push(TemplateSpec { name: t.name.clone(), request, placement, min, max });
    }
    let template_sum: u64 = templates.iter().map(|t| u64::from(t.min)).sum();
    if let Some(min_member) = min_member
        && !templates.is_empty()
        && u64::from(min_member) > template_sum
    {
        return Err(ConvertError::MinMemberAboveTemplates { object: object.to_string(), min_member, template_sum });
    }
    Ok(templates)
}

/// The templates of a Spark application's automatic PodGroup, from its driver pod (label `spark-role=driver`):
/// `driver` (exactly one: the driver's own requests and placement) and, when the driver carries
/// `muster.dev/min-executors`, `executor` with that minimum, `muster.dev/max-executors` as maximum (unbounded when
/// absent), `muster.dev/executor-resources` as request and the executor node-selector and tolerations annotations
/// as placement.
pub fn spark_driver_templates(driver: &Pod, names: &mut ResourceNames) -> Result<Vec<TemplateSpec>, ConvertError> {
    let object = Subject { kind: "Pod", meta: &driver.metadata };
    let role = label(&driver.metadata, names::SPARK_ROLE_LABEL).unwrap_or_default();
    if role != names::SPARK_ROLE_DRIVER {
        return Err(ConvertError::invalid(
            object,
            format_args!("metadata.labels[{}]", names::SPARK_ROLE_LABEL),
            role,
            format!("is not {:?}: not a Spark driver pod", names::SPARK_ROLE_DRIVER),
        ));
    }
    let mut templates = vec![TemplateSpec {
        name: SPARK_DRIVER_TEMPLATE.to_string(),
        request: pod_requests(driver, names)?,
        placement: pod_placement(driver)?,
        min: 1,
        max: 1,
    }];
    let Some(min) = annotation_count(driver, names::MIN_EXECUTORS_ANNOTATION, object)? else {
        return Ok(templates);
    };
    let max = annotation_count(driver, names::MAX_EXECUTORS_ANNOTATION, object)?.unwrap_or(u32::MAX);
    if max < min {
        return Err(ConvertError::annotation(
            object,
            names::MAX_EXECUTORS_ANNOTATION,
            format!("{max} is below {} ({min})", names::MIN_EXECUTORS_ANNOTATION),
        ));
    }
    let resources: BTreeMap<String, Quantity> = annotation_json(driver, names::EXECUTOR_RESOURCES_ANNOTATION, object)?
        .ok_or_else(|| {
            ConvertError::annotation(
                object,
                names::EXECUTOR_RESOURCES_ANNOTATION,
                format!(
                    "is required with {} (muster reserves capacity for executors before they exist)",
                    names::MIN_EXECUTORS_ANNOTATION
                ),
            )
        })?;
    let resources_error =
        |problem: String| ConvertError::annotation(object, names::EXECUTOR_RESOURCES_ANNOTATION, problem);
    let mut request = Resources::ZERO;
    for (resource, quantity) in &resources {
        let slot = names.intern(resource).map_err(|e| resources_error(e.to_string()))?;
        request.0[slot] = parse_amount(&quantity.0, Unit::for_resource(resource))
            .map_err(|e| resources_error(format!("{resource}: {e}")))?;
    }
    request.0[PODS] = 1;
    let node_selector: Option<BTreeMap<String, String>> =
        annotation_json(driver, names::EXECUTOR_NODE_SELECTOR_ANNOTATION, object)?;
    let tolerations: Option<Vec<K8sToleration>> =
        annotation_json(driver, names::EXECUTOR_TOLERATIONS_ANNOTATION, object)?;
    let tolerations_field = format_args!("metadata.annotations[{}]", names::EXECUTOR_TOLERATIONS_ANNOTATION);
    let placement = Placement {
        node_selector: node_selector.unwrap_or_default(),
        required_terms: Vec::new(),
        tolerations: convert_tolerations(tolerations.as_deref().unwrap_or_default(), object, tolerations_field)?,
    }
    .canonical();
    templates.push(TemplateSpec { name: SPARK_EXECUTOR_TEMPLATE.to_string(), request, placement, min, max });
    Ok(templates)
}

/// A non-negative member count from an annotation, `None` when the annotation is absent.
fn annotation_count(pod: &Pod, annotation: &'static str, object: Subject<'_>) -> Result<Option<u32>, ConvertError> {
    let Some(text) = pod.metadata.annotations.as_ref().and_then(|a| a.get(annotation)) else { return Ok(None) };
    text.trim()
        .parse::<u32>()
        .map(Some)
        .map_err(|_| ConvertError::annotation(object, annotation, format!("{text:?} is not a non-negative integer")))
}

/// A JSON annotation decoded into `T`, `None` when the annotation is absent.
fn annotation_json<T: DeserializeOwned>(
    pod: &Pod,
    annotation: &'static str,
    object: Subject<'_>,
) -> Result<Option<T>, ConvertError> {
    let Some(text) = pod.metadata.annotations.as_ref().and_then(|a| a.get(annotation)) else { return Ok(None) };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| ConvertError::annotation(object, annotation, format!("{text:?} is not valid: {e}")))
}

/// Which of `templates` a member pod fills (its index), given the pod's effective requests:
///
/// 1. the `muster.dev/member-template` annotation (or label) by name; it is authoritative, so a name that matches
///    no template gives `None`;
/// 2. Spark's `spark-role` label value when a template has that name; when the templates follow Spark's roles
///    (one is named `driver` or `executor`) a pod of another role matches none;
/// 3. the only template, when there is exactly one;
/// 4. the first template whose request equals `requests`;
/// 5. otherwise `None`.
pub fn template_for_pod(pod: &Pod, requests: &Resources, templates: &[TemplateSpec]) -> Option<u16> {
    let index_of = |name: &str| templates.iter().position(|t| t.name == name).and_then(|i| u16::try_from(i).ok());
    let meta = &pod.metadata;
    let explicit = meta.annotations.as_ref().and_then(|a| a.get(names::MEMBER_TEMPLATE_KEY));
    if let Some(name) = explicit.or_else(|| meta.labels.as_ref().and_then(|l| l.get(names::MEMBER_TEMPLATE_KEY))) {
        return index_of(name);
    }
    if let Some(role) = label(meta, names::SPARK_ROLE_LABEL) {
        if let Some(i) = index_of(role) {
            return Some(i);
        }
        let spark_roles = [SPARK_DRIVER_TEMPLATE, SPARK_EXECUTOR_TEMPLATE];
        if templates.iter().any(|t| spark_roles.contains(&t.name.as_str())) {
            return None;
        }
    }
    if templates.len() == 1 {
        return Some(0);
    }
    templates.iter().position(|t| t.request == *requests).and_then(|i| u16::try_from(i).ok())
}

/// The PodGroup a pod belongs to, looked up in this order: the `muster.dev/pod-group` label; Volcano's
/// `scheduling.k8s.io/group-name` annotation (or its alias); Spark's `spark-app-selector` label, naming the
/// application's automatic PodGroup [`spark_pod_group_name`]. `None` makes the pod a gang of one. Empty values
/// name nothing and are skipped.
pub fn gang_key(pod: &Pod) -> Option<GangRef> {
    let meta = &pod.metadata;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_string());
    let annotation = |key: &str| meta.annotations.as_ref()?.get(key).map(String::as_str).filter(|v| !v.is_empty());
    let (name, source) = if let Some(name) = label(meta, names::POD_GROUP_LABEL) {
        (name.to_string(), GangSource::Label)
    } else if let Some(name) =
        annotation(names::VOLCANO_GROUP_ANNOTATION).or_else(|| annotation(names::VOLCANO_GROUP_ANNOTATION_ALIAS))
    {
        (name.to_string(), GangSource::VolcanoAnnotation)
    } else {
        let app_id = label(meta, names::SPARK_APP_SELECTOR_LABEL)?;
        (spark_pod_group_name(app_id), GangSource::SparkApp { app_id: app_id.to_string() })
    };
    Some(GangRef { namespace, name, source })
}

/// The queue a pod names by annotation: muster's, else Volcano's.
pub fn queue_annotation(meta: &ObjectMeta) -> Option<&str> {
    let annotations = meta.annotations.as_ref()?;
    annotations
        .get(names::QUEUE_ANNOTATION)
        .or_else(|| annotations.get(names::VOLCANO_QUEUE_ANNOTATION))
        .map(String::as_str)
}

/// The longest name the automatic PodGroup may have: it is also used as a label value (at most 63 characters).
const MAX_POD_GROUP_NAME: usize = 63;

/// The name of a Spark application's automatic PodGroup: its app id, lowercased, prefixed `spark-` unless it
/// already starts so (Spark's generated ids are `spark-<32 hex digits>`, which are used unchanged). When the id had
/// to be altered to be a valid DNS-1123 label (characters other than lowercase letters, digits and `-`, or longer
/// than 63), a hash of the original id is appended so different ids keep different names.
pub fn spark_pod_group_name(app_id: &str) -> String {
    let sanitised: String = app_id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    let sanitised = sanitised.trim_matches('-');
    let name = if sanitised.starts_with("spark-") { sanitised.to_string() } else { format!("spark-{sanitised}") };
    if !sanitised.is_empty() && sanitised == app_id && name.len() <= MAX_POD_GROUP_NAME {
        return name;
    }
    let hash = format!("{:08x}", fnv1a(app_id.as_bytes()) as u32);
    // Everything before the hash is ASCII by construction, so byte truncation stays on a char boundary.
    let keep = MAX_POD_GROUP_NAME - hash.len() - 1;
    let stem = name[..name.len().min(keep)].trim_end_matches('-');
    format!("{stem}-{hash}")
}

/// 64-bit FNV-1a: a stable hash (unlike `std`'s, it never changes between releases), so names survive upgrades.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A non-empty label value.
fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

fn required_name(object: Subject<'_>) -> Result<String, ConvertError> {
    object.meta.name.clone().ok_or_else(|| ConvertError::invalid(object, "metadata.name", "", "is required"))
}

/// Parses one quantity into the integer unit the core stores for `resource`.
fn parse_quantity(
    resource: &str,
    quantity: &Quantity,
    object: Subject<'_>,
    field: fmt::Arguments<'_>,
) -> Result<u64, ConvertError> {
    parse_amount(&quantity.0, Unit::for_resource(resource)).map_err(|cause| ConvertError::Quantity {
        object: object.to_string(),
        field: field.to_string(),
        cause,
    })
}

/// Interns `resource` and parses its quantity: `(slot, amount)`.
fn parse_resource(
    resource: &str,
    quantity: &Quantity,
    names: &mut ResourceNames,
    object: Subject<'_>,
    field: fmt::Arguments<'_>,
) -> Result<(usize, u64), ConvertError> {
    let slot = names.intern(resource).map_err(|cause| ConvertError::Resource {
        object: object.to_string(),
        field: field.to_string(),
        cause,
    })?;
    Ok((slot, parse_quantity(resource, quantity, object, field)?))
}

/// Parses a whole `name -> quantity` map found at `field`, interning new names.
fn parse_list(
    list: &BTreeMap<String, Quantity>,
    names: &mut ResourceNames,
    object: Subject<'_>,
    field: impl fmt::Display,
) -> Result<Resources, ConvertError> {
    let mut r = Resources::ZERO;
    for (resource, quantity) in list {
        let (slot, amount) = parse_resource(resource, quantity, names, object, format_args!("{field}.{resource}"))?;
        r.0[slot] = amount;
    }
    Ok(r)
}

/// `a + b`, or an error when a sum leaves u64: such requests are absurd, and saturating would make them look
/// like `Resources::UNLIMITED`.
fn checked_add(a: &Resources, b: &Resources, object: Subject<'_>, field: &str) -> Result<Resources, ConvertError> {
    let mut r = *a;
    for (x, y) in r.0.iter_mut().zip(b.0) {
        *x = x.checked_add(y).ok_or_else(|| {
            ConvertError::invalid(object, field, y.to_string(), "makes the pod's total requests overflow")
        })?;
    }
    Ok(r)
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
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    use super::*;
    use crate::core::placement::NodeFacts;
    use crate::core::resources::{CPU, MEMORY};

    const GI: u64 = 1 << 30;
    const MI: u64 = 1 << 20;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("test pod")
    }

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).expect("test node")
    }

    fn cpu_mem_pods(millicores: u64, bytes: u64) -> Resources {
        Resources::cpu_mem(millicores, bytes).with(PODS, 1)
    }

    /// An executor pod as Spark 3.5 creates it for `--executor-memory 4g --conf spark.executor.memoryOverhead=1g`
    /// with an executor pod template that tolerates the spot pool's taint.
    fn spark_executor() -> Pod {
        pod(json!({
            "metadata": {
                "name": "pi-3f1c0e8f-exec-1",
                "namespace": "spark",
                "labels": {
                    "spark-app-selector": "spark-0b6b3c5e2a0f4d6f9f3c2d1e0a9b8c7d",
                    "spark-app-name": "pi",
                    "spark-role": "executor",
                    "spark-exec-id": "1",
                    "spark-exec-resourceprofile-id": "0",
                    "spark-version": "3.5.1"
                },
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "pi-driver", "uid": "d-1",
                                     "controller": true}]
            },
            "spec": {
                "schedulerName": "muster",
                "restartPolicy": "Never",
                "nodeSelector": {"pool": "spot"},
                "tolerations": [
                    {"key": "workload", "operator": "Equal", "value": "spark-executor", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 300}
                ],
                "containers": [{
                    "name": "spark-kubernetes-executor",
                    "image": "apache/spark:3.5.1",
                    "resources": {
                        "requests": {"cpu": "1", "memory": "5120Mi"},
                        "limits": {"memory": "5120Mi"}
                    }
                }]
            }
        }))
    }

    fn spot_node() -> Node {
        node(json!({
            "metadata": {"name": "spot-1", "labels": {"pool": "spot", "kubernetes.io/hostname": "spot-1"}},
            "spec": {"taints": [{"key": "workload", "value": "spark-executor", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "15900m", "memory": "62Gi", "pods": "110",
                                       "ephemeral-storage": "100Gi", "example.com/fpga": "2"}}
        }))
    }

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
        let huge = "18446744073709551615";
        let overflow = pod(json!({
            "metadata": {"name": "o", "namespace": "ns"},
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": huge}}},
                                    {"name": "b", "resources": {"requests": {"memory": "1"}}}]}
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

    fn podgroup(spec: serde_json::Value) -> api::PodGroup {
        serde_json::from_value(json!({
            "apiVersion": "scheduling.muster.dev/v1alpha1", "kind": "PodGroup",
            "metadata": {"name": "etl", "namespace": "data"}, "spec": spec
        }))
        .expect("test podgroup")
    }

    #[test]
    fn podgroup_templates_convert_and_validate() {
        let mut names = ResourceNames::default();
        let pg = podgroup(json!({
            "minMember": 5,
            "queue": "team-a",
            "minTaskMember": {"executor": 4},
            "memberTemplates": [
                {"name": "driver", "minMember": 1, "maxMember": 1, "resources": {"cpu": "1", "memory": "2Gi"}},
                {"name": "executor", "minMember": 4, "resources": {"cpu": "2", "memory": "5Gi"},
                 "nodeSelector": {"pool": "spot"},
                 "tolerations": [{"key": "workload", "value": "spark-executor", "effect": "NoSchedule"}],
                 "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                     "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In",
                                                                  "values": ["a"]}]}]}}}}
            ]
        }));
        let templates = podgroup_templates(&pg, &mut names).unwrap();
        assert_eq!(templates.len(), 2);
        assert_eq!((templates[0].min, templates[0].max), (1, 1));
        assert_eq!(templates[0].request, cpu_mem_pods(1000, 2 * GI));
        assert_eq!((templates[1].min, templates[1].max), (4, u32::MAX));
        assert_eq!(templates[1].request, cpu_mem_pods(2000, 5 * GI));
        assert_eq!(templates[1].placement.tolerations[0].effect, Some(TaintEffect::NoSchedule));
        assert_eq!(templates[1].placement.required_terms.len(), 1);
        assert_eq!(templates[1].placement.node_selector.len(), 1);

        let volcano_style = podgroup(json!({"minMember": 3}));
        assert!(podgroup_templates(&volcano_style, &mut names).unwrap().is_empty());

        let err = |spec| podgroup_templates(&podgroup(spec), &mut ResourceNames::default()).unwrap_err().to_string();
        let e = err(json!({"memberTemplates": [{"name": "w", "minMember": 3, "maxMember": 2}]}));
        assert!(e.contains("PodGroup data/etl: spec.memberTemplates[0].maxMember: \"2\"") && e.contains("(3)"), "{e}");
        let e = err(json!({"minMember": 9, "memberTemplates": [{"name": "a", "minMember": 2},
                                                                {"name": "b", "minMember": 3}]}));
        assert!(e.contains("spec.minMember is 9") && e.contains("add up to only 5"), "{e}");
        let e = err(json!({"memberTemplates": [{"name": "a"}, {"name": "a"}]}));
        assert!(e.contains("spec.memberTemplates[1].name: \"a\""), "{e}");
        let e = err(json!({"minTaskMember": {"a": 2}, "memberTemplates": [{"name": "a", "minMember": 1}]}));
        assert!(e.contains("spec.minTaskMember.a: \"2\" disagrees"), "{e}");
        let e = err(json!({"memberTemplates": [{"name": "a", "resources": {"memory": "2 GB"}}]}));
        assert!(e.contains("spec.memberTemplates[0].resources.memory") && e.contains("\"2 GB\""), "{e}");
        let e = err(json!({"minMember": -1}));
        assert!(e.contains("spec.minMember: \"-1\""), "{e}");
        let e = err(json!({"memberTemplates": [{"name": "a", "minMember": -2}]}));
        assert!(e.contains("spec.memberTemplates[0].minMember: \"-2\""), "{e}");
    }

    fn spark_driver(annotations: serde_json::Value) -> Pod {
        pod(json!({
            "metadata": {
                "name": "pi-driver", "namespace": "spark",
                "labels": {"spark-app-selector": "spark-abc", "spark-role": "driver"},
                "annotations": annotations
            },
            "spec": {
                "nodeSelector": {"pool": "on-demand"},
                "containers": [{"name": "spark-kubernetes-driver",
                                "resources": {"requests": {"cpu": "1", "memory": "1408Mi"},
                                              "limits": {"memory": "1408Mi"}}}]
            }
        }))
    }

    #[test]
    fn spark_driver_templates_from_annotations() {
        let mut names = ResourceNames::default();
        let driver = spark_driver(json!({
            "muster.dev/min-executors": "4",
            "muster.dev/max-executors": "20",
            "muster.dev/executor-resources": r#"{"cpu":"2","memory":"5Gi","nvidia.com/gpu":1}"#,
            "muster.dev/executor-node-selector": r#"{"pool":"spot"}"#,
            "muster.dev/executor-tolerations":
                r#"[{"key":"workload","operator":"Equal","value":"spark-executor","effect":"NoSchedule"}]"#
        }));
        let templates = spark_driver_templates(&driver, &mut names).unwrap();
        let gpu = names.slot("nvidia.com/gpu").unwrap();
        assert_eq!(templates.len(), 2);
        let (d, e) = (&templates[0], &templates[1]);
        assert_eq!((d.name.as_str(), d.min, d.max), ("driver", 1, 1));
        assert_eq!(d.request, cpu_mem_pods(1000, 1408 * MI));
        assert_eq!(d.placement.node_selector.get("pool").map(String::as_str), Some("on-demand"));
        assert_eq!((e.name.as_str(), e.min, e.max), ("executor", 4, 20));
        assert_eq!(e.request, cpu_mem_pods(2000, 5 * GI).with(gpu, 1));
        assert_eq!(e.placement.node_selector.get("pool").map(String::as_str), Some("spot"));
        assert_eq!(e.placement.tolerations[0].value, "spark-executor");

        let driver_only = spark_driver_templates(&spark_driver(json!({})), &mut names).unwrap();
        assert_eq!(driver_only.len(), 1);
        let unbounded = spark_driver(json!({"muster.dev/min-executors": "2",
                                            "muster.dev/executor-resources": r#"{"cpu":"1"}"#}));
        assert_eq!(spark_driver_templates(&unbounded, &mut names).unwrap()[1].max, u32::MAX);

        let mut err =
            |annotations| spark_driver_templates(&spark_driver(annotations), &mut names).unwrap_err().to_string();
        let e = err(json!({"muster.dev/min-executors": "four"}));
        assert!(e.contains("Pod spark/pi-driver: annotation muster.dev/min-executors: \"four\""), "{e}");
        let e = err(json!({"muster.dev/min-executors": "2"}));
        assert!(e.contains("muster.dev/executor-resources: is required"), "{e}");
        let e = err(json!({"muster.dev/min-executors": "2", "muster.dev/executor-resources": "cpu=2"}));
        assert!(e.contains("annotation muster.dev/executor-resources: \"cpu=2\" is not valid"), "{e}");
        let e = err(json!({"muster.dev/min-executors": "2", "muster.dev/executor-resources": r#"{"cpu":"2 cores"}"#}));
        assert!(e.contains("annotation muster.dev/executor-resources: cpu: invalid quantity \"2 cores\""), "{e}");
        let e = err(json!({"muster.dev/min-executors": "5", "muster.dev/max-executors": "3",
                           "muster.dev/executor-resources": r#"{"cpu":"1"}"#}));
        assert!(e.contains("annotation muster.dev/max-executors: 3 is below"), "{e}");
        let e = err(json!({"muster.dev/min-executors": "1", "muster.dev/executor-resources": r#"{"cpu":"1"}"#,
                           "muster.dev/executor-node-selector": r#"["pool"]"#}));
        assert!(e.contains("annotation muster.dev/executor-node-selector"), "{e}");
        let e = err(json!({"muster.dev/min-executors": "1", "muster.dev/executor-resources": r#"{"cpu":"1"}"#,
                           "muster.dev/executor-tolerations": r#"[{"key":"k","operator":"Sometimes"}]"#}));
        assert!(e.contains("metadata.annotations[muster.dev/executor-tolerations][0].operator"), "{e}");

        let e = spark_driver_templates(&spark_executor(), &mut names).unwrap_err().to_string();
        assert!(e.contains("metadata.labels[spark-role]: \"executor\""), "{e}");
    }

    fn template(name: &str, request: Resources) -> TemplateSpec {
        TemplateSpec { name: name.into(), request, placement: Placement::default(), min: 1, max: 1 }
    }

    fn member(labels: serde_json::Value, annotations: serde_json::Value) -> Pod {
        pod(json!({"metadata": {"name": "m", "namespace": "ns", "labels": labels, "annotations": annotations}}))
    }

    #[test]
    fn template_for_pod_rules_in_order() {
        let small = cpu_mem_pods(1000, GI);
        let large = cpu_mem_pods(4000, 8 * GI);
        let roles = [template("driver", small), template("executor", large)];
        let custom = [template("ps", small), template("worker", large), template("eval", large)];

        let explicit = member(json!({"spark-role": "executor"}), json!({"muster.dev/member-template": "driver"}));
        assert_eq!(template_for_pod(&explicit, &large, &roles), Some(0), "the annotation beats spark-role");
        let by_label = member(json!({"muster.dev/member-template": "eval"}), json!({}));
        assert_eq!(template_for_pod(&by_label, &large, &custom), Some(2));
        let unknown = member(json!({}), json!({"muster.dev/member-template": "nope"}));
        assert_eq!(template_for_pod(&unknown, &small, &custom), None, "an explicit name is authoritative");

        let executor = member(json!({"spark-role": "executor"}), json!({}));
        assert_eq!(template_for_pod(&executor, &small, &roles), Some(1), "spark-role beats the request");
        let driver_only = [template("driver", small)];
        assert_eq!(template_for_pod(&executor, &small, &driver_only), None, "an executor is not the driver");
        assert_eq!(template_for_pod(&executor, &small, &custom), Some(0), "foreign names: fall back to requests");

        let plain = member(json!({}), json!({}));
        assert_eq!(template_for_pod(&plain, &small, &[template("only", large)]), Some(0));
        assert_eq!(template_for_pod(&plain, &large, &custom), Some(1), "the first equal request");
        assert_eq!(template_for_pod(&plain, &cpu_mem_pods(1, 1), &custom), None);
        assert_eq!(template_for_pod(&plain, &small, &[]), None);
    }

    #[test]
    fn gang_key_sources_in_order() {
        let key = |labels, annotations| gang_key(&member(labels, annotations));
        let all = key(
            json!({"muster.dev/pod-group": "pg", "spark-app-selector": "spark-1"}),
            json!({"scheduling.k8s.io/group-name": "vc"}),
        )
        .unwrap();
        assert_eq!((all.namespace.as_str(), all.name.as_str(), all.source), ("ns", "pg", GangSource::Label));
        let volcano = key(json!({"spark-app-selector": "spark-1"}), json!({"scheduling.k8s.io/group-name": "vc"}));
        assert_eq!(volcano.unwrap().source, GangSource::VolcanoAnnotation);
        let alias = key(json!({}), json!({"scheduling.volcano.sh/group-name": "vc2"})).unwrap();
        assert_eq!((alias.name.as_str(), alias.source), ("vc2", GangSource::VolcanoAnnotation));
        let spark = key(json!({"muster.dev/pod-group": ""}), json!({"scheduling.k8s.io/group-name": ""})).is_none();
        assert!(spark, "empty values name nothing");
        let app = key(json!({"spark-app-selector": "MyApp_01"}), json!({})).unwrap();
        assert_eq!(app.source, GangSource::SparkApp { app_id: "MyApp_01".into() });
        assert_eq!(app.name, spark_pod_group_name("MyApp_01"));
        assert!(key(json!({"spark-role": "executor"}), json!({})).is_none(), "no gang: a gang of one");
    }

    fn is_dns1123_label(s: &str) -> bool {
        let bytes = s.as_bytes();
        !s.is_empty()
            && s.len() <= 63
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    }

    #[test]
    fn spark_pod_group_names() {
        assert_eq!(
            spark_pod_group_name("spark-0b6b3c5e2a0f4d6f9f3c2d1e0a9b8c7d"),
            "spark-0b6b3c5e2a0f4d6f9f3c2d1e0a9b8c7d"
        );
        assert_eq!(spark_pod_group_name("nightly-etl"), "spark-nightly-etl");
        let lossy = spark_pod_group_name("Nightly_ETL");
        assert!(lossy.starts_with("spark-nightly-etl-") && is_dns1123_label(&lossy), "{lossy}");
        assert_ne!(lossy, spark_pod_group_name("nightly-etl"), "altered ids keep distinct names");
        assert_eq!(lossy, spark_pod_group_name("Nightly_ETL"), "deterministic");
        let long = spark_pod_group_name(&"a".repeat(100));
        assert!(is_dns1123_label(&long), "{long}");
        assert!(is_dns1123_label(&spark_pod_group_name("___")));
        assert!(is_dns1123_label(&spark_pod_group_name("")));
    }

    proptest::proptest! {
        #[test]
        fn spark_pod_group_names_are_always_dns_labels(app_id in "\\PC{0,80}") {
            let name = spark_pod_group_name(&app_id);
            proptest::prop_assert!(is_dns1123_label(&name), "{:?} -> {:?}", app_id, name);
        }
    }
}
