//! Building the objects tests create (fake Nodes, simple Pods) and playing the kubelet nobody runs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, ResourceRequirements, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use serde_json::json;

/// The image of every pod the tests make. Nothing ever pulls it: no kubelet runs.
pub const UNUSED_IMAGE: &str = "registry.invalid/muster-test:never-pulled";

/// A Node as a kubelet would register it: capacity = allocatable, a Ready condition, the hostname label.
#[derive(Clone, Debug)]
pub struct TestNode {
    name: String,
    resources: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
}

impl TestNode {
    /// A node with the given cpu (`"4"`, `"3500m"`) and memory (`"8Gi"`) and room for 110 pods (kubelet's default).
    pub fn new(name: &str, cpu: &str, memory: &str) -> TestNode {
        TestNode {
            name: name.to_owned(),
            resources: BTreeMap::from([
                ("cpu".to_owned(), cpu.to_owned()),
                ("memory".to_owned(), memory.to_owned()),
                ("pods".to_owned(), "110".to_owned()),
            ]),
            labels: BTreeMap::from([("kubernetes.io/hostname".to_owned(), name.to_owned())]),
            taints: Vec::new(),
        }
    }

    /// Sets any resource's capacity: `pods`, `ephemeral-storage`, or an extended resource such as
    /// `nvidia.com/gpu`.
    pub fn resource(mut self, name: &str, quantity: &str) -> TestNode {
        self.resources.insert(name.to_owned(), quantity.to_owned());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> TestNode {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds a taint; `effect` is `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> TestNode {
        self.taints.push(Taint {
            key: key.to_owned(),
            value: Some(value.to_owned()),
            effect: effect.to_owned(),
            time_added: None,
        });
        self
    }

    /// The Node object, status included: kube-apiserver keeps the status given at creation (kubelets register
    /// this way), so no separate status update is needed.
    pub fn to_node(&self) -> Node {
        let resources: BTreeMap<String, Quantity> =
            self.resources.iter().map(|(name, quantity)| (name.clone(), Quantity(quantity.clone()))).collect();
        let now = Time(Timestamp::now());
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(resources.clone()),
                allocatable: Some(resources),
                // kube-scheduler itself ignores conditions (it reads the not-ready taint, which no admission
                // plugin adds here), but a Node without Ready=True is not a healthy node to anyone else.
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".to_owned(),
                    status: "True".to_owned(),
                    reason: Some("KubeletReady".to_owned()),
                    message: Some("fake node created by the muster test fixture".to_owned()),
                    last_heartbeat_time: Some(now.clone()),
                    last_transition_time: Some(now),
                }]),
                ..NodeStatus::default()
            }),
        }
    }
}

/// A pod with one container requesting `cpu` and `memory`, for the default scheduler; adjust the fields
/// (scheduler name, labels, tolerations) before creating it.
pub fn test_pod(name: &str, cpu: &str, memory: &str) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".to_owned(),
                image: Some(UNUSED_IMAGE.to_owned()),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_owned(), Quantity(cpu.to_owned())),
                        ("memory".to_owned(), Quantity(memory.to_owned())),
                    ])),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The condition of `type_` (`PodScheduled`, `Ready`, ...) in a pod's status.
pub fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The node a pod is bound to.
pub fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// The phases a test can move a pod to, as its kubelet would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Running,
    Succeeded,
    Failed,
}

/// Plays the kubelet: writes `phase` and the matching Ready condition to the pod's status subresource (Running
/// makes it Ready, as Spark's driver-readiness wait expects). Kubernetes refuses to move a pod out of
/// Succeeded or Failed. Returns the updated pod.
pub async fn set_pod_phase(client: &Client, namespace: &str, name: &str, phase: PodPhase) -> Pod {
    try_set_pod_phase(client, namespace, name, phase)
        .await
        .unwrap_or_else(|e| panic!("cannot set pod {namespace}/{name} to {phase:?}: {e}"))
}

/// [`set_pod_phase`] for a pod that may be gone (evicted, deleted): the API error is returned instead of failing.
pub async fn try_set_pod_phase(client: &Client, namespace: &str, name: &str, phase: PodPhase) -> kube::Result<Pod> {
    let now = serde_json::to_value(Time(Timestamp::now())).expect("a timestamp serialises");
    let (phase_name, ready, reason) = match phase {
        PodPhase::Running => ("Running", "True", None),
        PodPhase::Succeeded => ("Succeeded", "False", Some("PodCompleted")),
        PodPhase::Failed => ("Failed", "False", Some("PodFailed")),
    };
    let condition = |type_: &str| json!({"type": type_, "status": ready, "reason": reason, "lastTransitionTime": now});
    // A strategic merge patch merges `conditions` by type, keeping PodScheduled.
    let patch = json!({
        "status": {
            "phase": phase_name,
            "startTime": now,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                condition("ContainersReady"),
                condition("Ready"),
            ],
        }
    });
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
}
