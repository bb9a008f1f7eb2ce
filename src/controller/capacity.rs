//! Capacity requests: what a gang waiting for nodes needs, published as `CapacityBuffer`s for an autoscaler.
//!
//! kube-scheduler only marks the pods that exist unschedulable, and muster keeps a gang's pods gated until it is
//! admitted, so an autoscaler would never learn that a Spark application needs eight executors Spark has not
//! created yet. For a gang that waits for **capacity** (its queue would admit it; the nodes that exist cannot
//! hold it), the admission task computes, per member template, how many minimum members find no room
//! ([`crate::core::Cluster::shortfall`]), and this module keeps one `PodTemplate` plus one
//! `CapacityBuffer` (`autoscaling.x-k8s.io/v1beta1`, the API Karpenter and cluster-autoscaler implement) per such
//! template, owned by the PodGroup, with `replicas` = the members missing. A buffer shrinks as capacity arrives
//! and goes when the gang is admitted or waits for anything else (quota: more nodes would not help).
//!
//! The reconciler is level-based: every change of the desired set, and every 15 s, it lists the buffers and
//! templates muster manages (by label), applies what differs (server-side apply) and deletes the rest. What the
//! autoscaler reports in a buffer's conditions goes back to the admission task, which shows it in the PodGroup's
//! status. When the API server does not serve `CapacityBuffer` (no autoscaler that implements it), the reconciler
//! says so once and the admission task falls back to ungating the pods that exist.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PodTemplate, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::actuator::Outcome;
use crate::api::errors;
use crate::index::GangKey;

/// Label on every object this module manages (and the selector it lists them by).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "muster";
/// Label naming the gang (`namespace/name` is not a label value: the PodGroup's name) a buffer is for.
pub const GANG_LABEL: &str = "muster.dev/capacity-for";
/// Annotation with a digest of what muster applied, so an unchanged request is not applied again.
const SPEC_DIGEST: &str = "muster.dev/spec-digest";
/// How often the reconciler re-lists even when nothing changed (repairs a buffer someone edited or deleted).
const RESYNC: Duration = Duration::from_secs(15);
/// How often it checks again for the CapacityBuffer API when the API server did not serve it (an autoscaler
/// installed after muster is noticed this long after at most; the check is one list call of at most one object).
const API_CHECK: Duration = Duration::from_secs(10);
/// Field manager of muster's server-side applies.
const FIELD_MANAGER: &str = "muster";
/// The container image of a buffer's pod template. Never run: an autoscaler only reads the template's shape.
const PLACEHOLDER_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The `CapacityBuffer` kind, `autoscaling.x-k8s.io/v1beta1`.
pub fn capacity_buffer_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("autoscaling.x-k8s.io", "v1beta1", "CapacityBuffer"),
        "capacitybuffers",
    )
}

/// One buffer muster wants to exist: `replicas` members of one template of one gang.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredBuffer {
    pub namespace: String,
    /// Name of both the PodTemplate and the CapacityBuffer.
    pub name: String,
    pub gang: GangKey,
    pub template: String,
    pub replicas: i32,
    pub owner: OwnerReference,
    pub pod_template: PodTemplateSpec,
}

/// Every buffer muster wants, by (namespace, name).
pub type Desired = BTreeMap<(String, String), DesiredBuffer>;

/// What the reconciler reports back to the admission task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BufferReport {
    /// False while the API server does not serve CapacityBuffer.
    pub available: bool,
    /// Per gang, what the autoscaler says of its buffers (their conditions), for the PodGroup's status.
    pub said: HashMap<GangKey, String>,
}

/// The name of the buffer for `template` of PodGroup `group`: a DNS subdomain, unique per (group, template).
pub fn buffer_name(group: &str, template: &str) -> String {
    let clean: String = template
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    let mut name = format!("{group}-{clean}");
    // A template name that had to be changed (or a long one) gets a digest, so two templates never share a name.
    if clean != template || name.len() > 200 {
        name.truncate(200);
        name = format!("{}-{:08x}", name.trim_end_matches('-'), fnv1a(template.as_bytes()) as u32);
    }
    name
}

/// The pod template of one member: its requests, placement constraints, and the gang's labels.
pub fn member_pod_template(
    gang_name: &str,
    template: &crate::api::MemberTemplate,
    labels: &BTreeMap<String, String>,
) -> PodTemplateSpec {
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let mut labels = labels.clone();
    labels.insert(GANG_LABEL.into(), gang_name.into());
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "member".into(),
                image: Some(PLACEHOLDER_IMAGE.into()),
                resources: Some(ResourceRequirements {
                    requests: Some(template.resources.clone()),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            node_selector: (!template.node_selector.is_empty()).then(|| template.node_selector.clone()),
            tolerations: (!template.tolerations.is_empty()).then(|| template.tolerations.clone()),
            affinity: template.affinity.clone(),
            ..PodSpec::default()
        }),
    }
}

/// Runs until the desired set's sender is dropped (the admission task ended).
pub async fn run(client: Client, mut desired: watch::Receiver<Arc<Desired>>, outcomes: mpsc::UnboundedSender<Outcome>) {
    let buffers_api = capacity_buffer_resource();
    let mut available = None::<bool>;
    let mut last_report = None::<BufferReport>;
    loop {
        let wanted = desired.borrow_and_update().clone();
        let report = match reconcile(&client, &buffers_api, &wanted).await {
            Ok(said) => {
                if available != Some(true) {
                    info!(
                        "the API server serves CapacityBuffer: gangs waiting for capacity request it from the autoscaler"
                    );
                }
                available = Some(true);
                BufferReport { available: true, said }
            }
            Err(ReconcileError::NotServed) => {
                if available != Some(false) {
                    info!(
                        "the API server does not serve autoscaling.x-k8s.io/v1beta1 CapacityBuffer (no autoscaler \
                         that implements it): muster ungates the pods of gangs that wait for capacity instead; \
                         checking again every {} s",
                        API_CHECK.as_secs()
                    );
                }
                available = Some(false);
                BufferReport { available: false, said: HashMap::new() }
            }
            Err(ReconcileError::Api(e)) => {
                warn!(error = %e, "reconciling capacity requests failed; retrying");
                last_report.clone().unwrap_or_default()
            }
        };
        if last_report.as_ref() != Some(&report) {
            if outcomes.send(Outcome::CapacityBuffers(report.clone())).is_err() {
                return;
            }
            last_report = Some(report);
        }
        let wait = if available == Some(false) { API_CHECK } else { RESYNC };
        tokio::select! {
            changed = desired.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

enum ReconcileError {
    NotServed,
    Api(kube::Error),
}

impl From<kube::Error> for ReconcileError {
    fn from(e: kube::Error) -> Self {
        if errors::is_not_found(&e) { ReconcileError::NotServed } else { ReconcileError::Api(e) }
    }
}

/// Makes the managed buffers and templates match `wanted`; returns what the autoscaler says per gang.
async fn reconcile(
    client: &Client,
    resource: &ApiResource,
    wanted: &Desired,
) -> Result<HashMap<GangKey, String>, ReconcileError> {
    let selector = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let buffers = Api::<DynamicObject>::all_with(client.clone(), resource).list(&selector).await?;
    let templates = Api::<PodTemplate>::all(client.clone()).list(&selector).await.map_err(ReconcileError::Api)?;
    let key = |ns: Option<String>, name: String| (ns.unwrap_or_default(), name);
    let have_buffers: HashMap<(String, String), DynamicObject> =
        buffers.items.into_iter().map(|b| (key(b.metadata.namespace.clone(), b.name_any()), b)).collect();
    let have_templates: HashMap<(String, String), PodTemplate> =
        templates.items.into_iter().map(|t| (key(t.metadata.namespace.clone(), t.name_any()), t)).collect();

    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let mut said: HashMap<GangKey, Vec<String>> = HashMap::new();
    for (k, want) in wanted {
        let digest = format!("{:016x}", digest_of(want));
        let current = |annotations: Option<&BTreeMap<String, String>>| {
            annotations.and_then(|a| a.get(SPEC_DIGEST)).is_some_and(|d| *d == digest)
        };
        if !have_templates.get(k).is_some_and(|t| current(t.metadata.annotations.as_ref())) {
            let object = serde_json::json!({
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": metadata(want, &digest),
                "template": want.pod_template,
            });
            Api::<PodTemplate>::namespaced(client.clone(), &want.namespace)
                .patch(&want.name, &apply, &Patch::Apply(&object))
                .await
                .map_err(ReconcileError::Api)?;
            debug!(namespace = %want.namespace, name = %want.name, "applied a capacity request's pod template");
        }
        match have_buffers.get(k) {
            Some(b) if current(b.metadata.annotations.as_ref()) => {
                if let Some(text) = conditions_said(b) {
                    said.entry(want.gang.clone()).or_default().push(format!("{}: {text}", want.name));
                }
            }
            _ => {
                let object = serde_json::json!({
                    "apiVersion": "autoscaling.x-k8s.io/v1beta1",
                    "kind": "CapacityBuffer",
                    "metadata": metadata(want, &digest),
                    "spec": {
                        "podTemplateRef": {"name": want.name},
                        "replicas": want.replicas,
                    },
                });
                Api::<DynamicObject>::namespaced_with(client.clone(), &want.namespace, resource)
                    .patch(&want.name, &apply, &Patch::Apply(&object))
                    .await?;
                info!(
                    namespace = %want.namespace, name = %want.name, gang = %want.gang, template = %want.template,
                    replicas = want.replicas, "requested capacity from the autoscaler"
                );
            }
        }
    }
    for (k, b) in &have_buffers {
        if !wanted.contains_key(k) {
            let deleted = Api::<DynamicObject>::namespaced_with(client.clone(), &k.0, resource)
                .delete(&k.1, &DeleteParams::default())
                .await;
            match deleted {
                Ok(_) => {
                    info!(namespace = %k.0, name = %k.1, gang = b.labels().get(GANG_LABEL).map(String::as_str).unwrap_or(""), "capacity request withdrawn")
                }
                Err(e) if errors::is_not_found(&e) => {}
                Err(e) => return Err(ReconcileError::Api(e)),
            }
        }
    }
    for k in have_templates.keys() {
        if !wanted.contains_key(k) {
            match Api::<PodTemplate>::namespaced(client.clone(), &k.0).delete(&k.1, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if errors::is_not_found(&e) => {}
                Err(e) => return Err(ReconcileError::Api(e)),
            }
        }
    }
    Ok(said.into_iter().map(|(gang, parts)| (gang, parts.join("; "))).collect())
}

fn metadata(want: &DesiredBuffer, digest: &str) -> serde_json::Value {
    let group = match &want.gang {
        GangKey::PodGroup { name, .. } | GangKey::Pod { name, .. } => name.clone(),
    };
    serde_json::json!({
        "name": want.name,
        "namespace": want.namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, GANG_LABEL: group},
        "annotations": {SPEC_DIGEST: digest, "muster.dev/member-template": want.template},
        "ownerReferences": [want.owner],
    })
}

/// The autoscaler's conditions on a buffer, as one line (`Provisioning=False (Reason): message`).
fn conditions_said(buffer: &DynamicObject) -> Option<String> {
    let conditions = buffer.data.get("status")?.get("conditions")?.as_array()?;
    let parts: Vec<String> = conditions
        .iter()
        .filter_map(|c| {
            let type_ = c.get("type")?.as_str()?;
            let status = c.get("status")?.as_str()?;
            let reason = c.get("reason").and_then(|r| r.as_str()).unwrap_or("");
            let message = c.get("message").and_then(|m| m.as_str()).unwrap_or("");
            Some(match (reason.is_empty(), message.is_empty()) {
                (true, true) => format!("{type_}={status}"),
                (false, true) => format!("{type_}={status} ({reason})"),
                _ => format!("{type_}={status} ({reason}): {message}"),
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A digest of what is applied for `want` (stable across processes: FNV-1a over its JSON).
fn digest_of(want: &DesiredBuffer) -> u64 {
    let text = serde_json::json!([want.replicas, want.pod_template, want.owner]).to_string();
    fnv1a(text.as_bytes())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_names_are_dns_subdomains_and_distinct_per_template() {
        assert_eq!(buffer_name("spark-pi", "executor"), "spark-pi-executor");
        let odd = buffer_name("spark-pi", "Executor_A");
        assert!(odd.starts_with("spark-pi-executor-a-"), "{odd}");
        assert_ne!(odd, buffer_name("spark-pi", "executor-a"));
        assert!(odd.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        let long = buffer_name("g", &"x".repeat(300));
        assert!(long.len() <= 253, "{}", long.len());
    }

    #[test]
    fn a_member_template_keeps_its_shape_and_constraints() {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let template = crate::api::MemberTemplate {
            name: "executor".into(),
            min_member: 8,
            resources: [("cpu".to_string(), Quantity("2".into()))].into(),
            node_selector: [("karpenter.sh/capacity-type".to_string(), "spot".to_string())].into(),
            ..Default::default()
        };
        let spec = member_pod_template("spark-pi", &template, &BTreeMap::new());
        let pod = spec.spec.expect("spec");
        assert_eq!(pod.containers[0].resources.as_ref().and_then(|r| r.requests.as_ref()), Some(&template.resources));
        assert_eq!(pod.node_selector.as_ref(), Some(&template.node_selector));
        assert_eq!(
            spec.metadata.and_then(|m| m.labels).and_then(|l| l.get(GANG_LABEL).cloned()).as_deref(),
            Some("spark-pi")
        );
    }

    #[test]
    fn the_autoscalers_conditions_are_summarised() {
        let buffer: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoscaling.x-k8s.io/v1beta1", "kind": "CapacityBuffer",
            "metadata": {"name": "b"},
            "status": {"conditions": [
                {"type": "ReadyForProvisioning", "status": "True", "reason": "Ready"},
                {"type": "Provisioning", "status": "False", "reason": "NoCapacity", "message": "no instance type fits"},
            ]},
        }))
        .expect("buffer");
        assert_eq!(
            conditions_said(&buffer).as_deref(),
            Some("ReadyForProvisioning=True (Ready), Provisioning=False (NoCapacity): no instance type fits")
        );
    }
}
