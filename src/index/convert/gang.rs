//! PodGroups and Spark drivers into gang templates, and which gang a pod belongs to.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Toleration as K8sToleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

use crate::api::{self, names};
use crate::core::resources::PODS;
use crate::core::{Placement, ResourceNames, Resources, TemplateSpec, Unit, parse_amount};

use super::pod::{convert_tolerations, placement};
use super::spark::{SparkConfFiles, executor_plan};
use super::*;

/// The name of the template for a Spark driver in an automatic PodGroup.
pub const SPARK_DRIVER_TEMPLATE: &str = names::SPARK_ROLE_DRIVER;
/// The name of the template for Spark executors in an automatic PodGroup.
pub const SPARK_EXECUTOR_TEMPLATE: &str = names::SPARK_ROLE_EXECUTOR;

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

/// A Spark application's automatic gang, as muster derives it from the driver pod.
#[derive(Debug, Clone)]
pub struct SparkGang {
    /// `driver` (exactly one: the driver's own requests and placement), then `executor` when the application
    /// has executors muster knows the shape of.
    pub templates: Vec<TemplateSpec>,
    /// The executors' node affinity as Spark will write it (shown in the automatic PodGroup).
    pub executor_affinity: Option<k8s_openapi::api::core::v1::Affinity>,
    /// The queue the Spark configuration names, if any (annotations on the driver come first).
    pub queue: Option<String>,
}

/// The automatic gang of a Spark driver pod (label `spark-role=driver`).
///
/// The executors come from the driver's Spark configuration when `conf` is given (see
/// [`super::spark::executor_plan`]); each annotation present on the driver then overrides its part:
/// `muster.dev/min-executors`, `muster.dev/max-executors`, `muster.dev/executor-resources` (the request),
/// `muster.dev/executor-node-selector` and `muster.dev/executor-tolerations`. Without a configuration the
/// annotations alone describe the executors (`min-executors` and `executor-resources` together), and without
/// either the gang is the driver alone: callers decide whether that is acceptable.
pub fn spark_driver_gang(
    driver: &Pod,
    conf: Option<&SparkConfFiles>,
    names: &mut ResourceNames,
) -> Result<SparkGang, ConvertError> {
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
    let mut gang = SparkGang {
        templates: vec![TemplateSpec {
            name: SPARK_DRIVER_TEMPLATE.to_string(),
            request: pod_requests(driver, names)?,
            placement: pod_placement(driver)?,
            min: 1,
            max: 1,
        }],
        executor_affinity: None,
        queue: None,
    };
    let mut executor = match conf {
        Some(files) => {
            let plan = executor_plan(driver, files).map_err(|e| ConvertError::SparkConf {
                object: object.to_string(),
                key: e.key,
                problem: e.problem,
            })?;
            gang.queue = plan.queue;
            gang.executor_affinity =
                plan.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).filter(|a| a.node_affinity.is_some()).map(
                    |a| k8s_openapi::api::core::v1::Affinity {
                        node_affinity: a.node_affinity.clone(),
                        ..Default::default()
                    },
                );
            Some(TemplateSpec {
                name: SPARK_EXECUTOR_TEMPLATE.to_string(),
                request: pod_requests(&plan.pod, names)?,
                placement: pod_placement(&plan.pod)?,
                min: plan.min,
                max: plan.max,
            })
        }
        None => None,
    };

    let min = annotation_count(driver, names::MIN_EXECUTORS_ANNOTATION, object)?;
    let resources: Option<BTreeMap<String, Quantity>> =
        annotation_json(driver, names::EXECUTOR_RESOURCES_ANNOTATION, object)?;
    if executor.is_none() {
        let Some(min) = min else { return Ok(gang) };
        if resources.is_none() {
            return Err(ConvertError::annotation(
                object,
                names::EXECUTOR_RESOURCES_ANNOTATION,
                format!(
                    "is required with {} when the driver mounts no Spark configuration (muster reserves \
                     capacity for executors before they exist)",
                    names::MIN_EXECUTORS_ANNOTATION
                ),
            ));
        }
        executor = Some(TemplateSpec {
            name: SPARK_EXECUTOR_TEMPLATE.to_string(),
            request: Resources::ZERO,
            placement: Placement::default(),
            min,
            max: u32::MAX,
        });
    }
    let mut executor = executor.expect("set above");
    if let Some(min) = min {
        executor.min = min;
    }
    if let Some(max) = annotation_count(driver, names::MAX_EXECUTORS_ANNOTATION, object)? {
        executor.max = max;
    }
    if executor.max < executor.min {
        return Err(ConvertError::annotation(
            object,
            names::MAX_EXECUTORS_ANNOTATION,
            format!("{} is below the minimum number of executors ({})", executor.max, executor.min),
        ));
    }
    if let Some(resources) = resources {
        let resources_error =
            |problem: String| ConvertError::annotation(object, names::EXECUTOR_RESOURCES_ANNOTATION, problem);
        let mut request = Resources::ZERO;
        for (resource, quantity) in &resources {
            let slot = names.intern(resource).map_err(|e| resources_error(e.to_string()))?;
            request.0[slot] = parse_amount(&quantity.0, Unit::for_resource(resource))
                .map_err(|e| resources_error(format!("{resource}: {e}")))?;
        }
        request.0[PODS] = 1;
        executor.request = request;
    }
    let node_selector: Option<BTreeMap<String, String>> =
        annotation_json(driver, names::EXECUTOR_NODE_SELECTOR_ANNOTATION, object)?;
    if let Some(node_selector) = node_selector {
        executor.placement.node_selector = node_selector;
    }
    let tolerations: Option<Vec<K8sToleration>> =
        annotation_json(driver, names::EXECUTOR_TOLERATIONS_ANNOTATION, object)?;
    if let Some(tolerations) = tolerations {
        let field = format_args!("metadata.annotations[{}]", names::EXECUTOR_TOLERATIONS_ANNOTATION);
        executor.placement.tolerations = convert_tolerations(&tolerations, object, field)?;
    }
    executor.placement = executor.placement.canonical();
    gang.templates.push(executor);
    Ok(gang)
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
    // A Volcano task: the template of that name, when the gang has one (learned from a Volcano PodGroup).
    if let Some(i) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::api::volcano::TASK_SPEC_ANNOTATION))
        .and_then(|t| index_of(t))
    {
        return Some(i);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TaintEffect;
    use crate::index::convert::fixtures::*;

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
        let templates = spark_driver_gang(&driver, None, &mut names).unwrap().templates;
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

        let driver_only = spark_driver_gang(&spark_driver(json!({})), None, &mut names).unwrap().templates;
        assert_eq!(driver_only.len(), 1);
        let unbounded = spark_driver(json!({"muster.dev/min-executors": "2",
                                            "muster.dev/executor-resources": r#"{"cpu":"1"}"#}));
        assert_eq!(spark_driver_gang(&unbounded, None, &mut names).unwrap().templates[1].max, u32::MAX);

        let mut err =
            |annotations| spark_driver_gang(&spark_driver(annotations), None, &mut names).unwrap_err().to_string();
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
        assert!(e.contains("annotation muster.dev/max-executors: 3 is below the minimum"), "{e}");
        let e = err(json!({"muster.dev/min-executors": "1", "muster.dev/executor-resources": r#"{"cpu":"1"}"#,
                           "muster.dev/executor-node-selector": r#"["pool"]"#}));
        assert!(e.contains("annotation muster.dev/executor-node-selector"), "{e}");
        let e = err(json!({"muster.dev/min-executors": "1", "muster.dev/executor-resources": r#"{"cpu":"1"}"#,
                           "muster.dev/executor-tolerations": r#"[{"key":"k","operator":"Sometimes"}]"#}));
        assert!(e.contains("metadata.annotations[muster.dev/executor-tolerations][0].operator"), "{e}");

        let e = spark_driver_gang(&spark_executor(), None, &mut names).unwrap_err().to_string();
        assert!(e.contains("metadata.labels[spark-role]: \"executor\""), "{e}");
    }

    #[test]
    fn spark_driver_gang_from_its_configuration_with_annotations_overriding() {
        let mut names = ResourceNames::default();
        let conf = SparkConfFiles {
            properties: "spark.executor.cores=2\nspark.executor.memory=4g\nspark.executor.memoryOverhead=1g\n\
                         spark.dynamicAllocation.enabled=true\nspark.dynamicAllocation.minExecutors=2\n\
                         spark.dynamicAllocation.maxExecutors=10\nspark.kubernetes.executor.node.selector.pool=spot\n\
                         spark.kubernetes.scheduler.volcano.podGroupPolicy.queue=team-a\n"
                .into(),
            pod_template: Some(
                "spec:\n  tolerations: [{key: workload, operator: Exists}]\n  affinity:\n    nodeAffinity:\n      \
                 requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - \
                 matchExpressions: [{key: arch, operator: In, values: [arm64]}]\n"
                    .into(),
            ),
            operator_executor: None,
        };
        let gang = spark_driver_gang(&spark_driver(json!({})), Some(&conf), &mut names).unwrap();
        let e = &gang.templates[1];
        assert_eq!((e.name.as_str(), e.min, e.max), ("executor", 2, 10));
        assert_eq!(e.request, cpu_mem_pods(2000, 5 * GI));
        assert_eq!(e.placement.node_selector.get("pool").map(String::as_str), Some("spot"));
        assert_eq!(e.placement.tolerations.len(), 1);
        assert_eq!(e.placement.required_terms.len(), 1, "the template's required node affinity");
        assert!(gang.executor_affinity.is_some());
        assert_eq!(gang.queue.as_deref(), Some("team-a"));

        let overridden = spark_driver(json!({
            "muster.dev/min-executors": "3",
            "muster.dev/executor-resources": r#"{"cpu":"1","memory":"2Gi"}"#,
            "muster.dev/executor-node-selector": r#"{"pool":"on-demand"}"#
        }));
        let e = spark_driver_gang(&overridden, Some(&conf), &mut names).unwrap().templates[1].clone();
        assert_eq!((e.min, e.max), (3, 10), "the annotation overrides the minimum, the conf's maximum stays");
        assert_eq!(e.request, cpu_mem_pods(1000, 2 * GI));
        assert_eq!(e.placement.node_selector.get("pool").map(String::as_str), Some("on-demand"));
        assert_eq!(e.placement.tolerations.len(), 1, "tolerations not overridden stay the template's");

        let bad = SparkConfFiles {
            properties: "spark.executor.memory=1.5g\n".into(),
            pod_template: None,
            operator_executor: None,
        };
        let err = spark_driver_gang(&spark_driver(json!({})), Some(&bad), &mut names).unwrap_err().to_string();
        assert!(err.starts_with("Pod spark/pi-driver: Spark conf spark.executor.memory: \"1.5g\""), "{err}");
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
