//! An elastic cluster for a test's control plane: real Karpenter (its KWOK cloud provider, `karpenter-kwok`) and
//! the real KWOK controller (`kwok`), both built from their pinned Go modules by
//! `tests/controlplane/autoscaling.sh`.
//!
//! Karpenter watches for pods kube-scheduler marked Unschedulable (and for CapacityBuffers), picks instance types
//! from a small fixed list ([`default_instance_types`]), and creates NodeClaims; its KWOK provider "launches" each
//! one by creating the Node object itself (no kubelet exists). The KWOK controller then plays the kubelet of exactly
//! those Nodes: it marks them Ready, keeps their Lease renewed, turns the pods bound to them Running, and deletes
//! the pods that are terminating there (Karpenter's drain evicts them). Karpenter registers and initializes the
//! node, and later consolidates it away (taint, drain, delete NodeClaim and Node) once it is empty or
//! underutilized for the NodePool's `consolidateAfter`.
//!
//! # Who plays the kubelet where
//!
//! - Nodes Karpenter creates carry the annotation `kwok.x-k8s.io/node: fake`; KWOK is started with
//!   `--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake`, so it manages those and nothing else. Pods
//!   bound there become Running (Ready) through KWOK's `pod-ready` stage and are deleted (grace 0) by its
//!   `pod-delete` stage as soon as they carry a deletionTimestamp (an eviction, a delete). Tests need neither
//!   [`set_pod_phase`](super::set_pod_phase) nor [`TerminatingPodKubelet`](super::TerminatingPodKubelet) there.
//!   Neither fights KWOK: `set_pod_phase(Running)` writes what KWOK would (KWOK's stage only matches Pending pods
//!   that are not Ready), `set_pod_phase(Succeeded/Failed)` is final (the API server refuses any later move back to
//!   Running, so a late KWOK write fails harmlessly), and `TerminatingPodKubelet` racing KWOK to force-delete a pod
//!   just gets a 404, which it ignores.
//! - Nodes a test creates itself ([`ControlPlane::create_node`], [`TestNode`](super::TestNode)) have no such
//!   annotation: KWOK ignores them and their pods, and the test plays their kubelet as before.
//! - Karpenter counts every pending pod kube-scheduler marked Unschedulable, whatever its `schedulerName`, and
//!   never binds pods itself: kube-scheduler (and for muster's pods, muster) binds them once the node is usable.
//!
//! # What the control plane lacks, and why it does not matter here
//!
//! There is no kube-controller-manager: nothing garbage-collects by owner reference, and nothing marks a silent
//! node NotReady. Karpenter deletes its Nodes itself (its termination finalizer), and KWOK keeps its nodes Ready.
//! The API server runs without the TaintNodesByCondition admission plugin, so new Nodes carry only the taints
//! Karpenter puts on them (`karpenter.sh/unregistered:NoExecute` at creation, removed at registration;
//! `karpenter.sh/disrupted:NoSchedule` while being consolidated).
//!
//! Use: `Autoscaling::start(&control_plane, AutoscalingOptions::default())`, then
//! [`Autoscaling::create_kwok_nodeclass`] and [`Autoscaling::create_nodepool`] (or [`NodePoolSpec`]). Dropping it
//! stops both processes (printing their log tails first when the test fails); drop it before the control plane
//! (declare it after), as Rust does for locals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PodTemplate, PodTemplateSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::controlplane::ControlPlane;
use super::muster::install_crd_files;
use super::process::{ManagedProcess, print_log_tails, stop_all};
use super::tools::autoscaling_dir;
use super::wait::wait_until;

/// The annotation (and label) Karpenter's KWOK provider puts on every Node it creates; KWOK manages exactly those.
pub const KWOK_NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");
/// The label Karpenter puts on every node and NodeClaim of a NodePool (value: the NodePool's name).
pub const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";
/// The label that selects a capacity type (`spot`, `on-demand`) and that Karpenter sets on its nodes.
pub const CAPACITY_TYPE_LABEL: &str = "karpenter.sh/capacity-type";
/// The zone every offering of [`default_instance_types`] is in (`topology.kubernetes.io/zone`).
pub const ZONE: &str = "test-zone-a";
/// The KWOKNodeClass [`Autoscaling::create_nodepool`] refers to; create it with [`Autoscaling::create_kwok_nodeclass`].
pub const DEFAULT_NODE_CLASS: &str = "default";

/// How long Karpenter and KWOK get to report ready (warm: a few seconds; generous for a loaded CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the API server gets to establish Karpenter's CRDs.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// Free ports are picked by binding port 0 and releasing it; a start that loses that race is retried.
const START_ATTEMPTS: u32 = 3;
/// Generous bound for Karpenter to provision a node for a pending pod and KWOK to make it Ready (batch window,
/// launch, registration, initialization), and for kube-scheduler to bind the pod there.
pub const PROVISION_TIMEOUT: Duration = Duration::from_secs(120);
/// Generous bound for Karpenter to consolidate an empty node away: `consolidateAfter`, up to a 10 s disruption
/// polling period, a 15 s validation delay, then taint, drain, and deletion of the NodeClaim and the Node.
pub const CONSOLIDATION_TIMEOUT: Duration = Duration::from_secs(180);

/// One instance type offered by Karpenter's KWOK provider: `cpu` cores, `memory` (a Kubernetes quantity), room
/// for `pods` pods. Karpenter subtracts 100m cpu and 10Mi memory (kube-reserved) for the node's allocatable.
#[derive(Clone, Debug)]
pub struct InstanceType {
    pub name: String,
    pub cpu: u32,
    pub memory: String,
    pub pods: u32,
    pub offerings: Vec<Offering>,
}

/// Where and at what hourly price an [`InstanceType`] can be had: `capacity_type` is `spot` or `on-demand`.
#[derive(Clone, Debug)]
pub struct Offering {
    pub capacity_type: String,
    pub zone: String,
    pub price: f64,
}

/// Three shapes with 4 GiB per core, each offered as spot and on-demand in [`ZONE`], prices linear in cores (so
/// Karpenter prefers one big node over several small ones for the same pods):
///
/// | name               | cpu | memory | allocatable cpu | on-demand $/h | spot $/h |
/// |--------------------|-----|--------|-----------------|---------------|----------|
/// | `m-2x-amd64-linux` | 2   | 8Gi    | 1900m           | 0.10          | 0.04     |
/// | `m-4x-amd64-linux` | 4   | 16Gi   | 3900m           | 0.20          | 0.08     |
/// | `m-8x-amd64-linux` | 8   | 32Gi   | 7900m           | 0.40          | 0.16     |
pub fn default_instance_types() -> Vec<InstanceType> {
    [2u32, 4, 8]
        .into_iter()
        .map(|cpu| InstanceType {
            name: format!("m-{cpu}x-amd64-linux"),
            cpu,
            memory: format!("{}Gi", 4 * cpu),
            pods: 110,
            offerings: vec![
                Offering { capacity_type: "on-demand".to_owned(), zone: ZONE.to_owned(), price: 0.05 * f64::from(cpu) },
                Offering { capacity_type: "spot".to_owned(), zone: ZONE.to_owned(), price: 0.02 * f64::from(cpu) },
            ],
        })
        .collect()
}

/// The instance types file Karpenter's KWOK provider reads (`INSTANCE_TYPES_FILE_PATH`; the format of the list it
/// embeds, kwok/cloudprovider/instance_types.json in the Karpenter module).
fn instance_types_json(types: &[InstanceType]) -> String {
    let list: Vec<Value> = types
        .iter()
        .map(|t| {
            let offerings: Vec<Value> = t
                .offerings
                .iter()
                .map(|o| {
                    json!({
                        "Price": o.price,
                        "Available": true,
                        "Requirements": [
                            {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": [o.capacity_type]},
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [o.zone]},
                        ],
                    })
                })
                .collect();
            json!({
                "name": t.name,
                "offerings": offerings,
                "architecture": "amd64",
                "operatingSystems": ["linux"],
                "resources": {"cpu": t.cpu.to_string(), "memory": t.memory, "pods": t.pods.to_string()},
            })
        })
        .collect();
    serde_json::to_string_pretty(&list).expect("JSON values serialise")
}

/// How Karpenter runs; [`AutoscalingOptions::default`] suits most tests.
#[derive(Clone, Debug)]
pub struct AutoscalingOptions {
    /// What Karpenter may launch (default: [`default_instance_types`]).
    pub instance_types: Vec<InstanceType>,
    /// `BATCH_IDLE_DURATION`: a provisioning batch ends after this long without a new pending pod (default 1 s,
    /// Karpenter's default).
    pub batch_idle_duration: Duration,
    /// `BATCH_MAX_DURATION`: a provisioning batch ends after this long at most (default 3 s; Karpenter's is 10 s).
    pub batch_max_duration: Duration,
    /// `FEATURE_GATES` (default `CapacityBuffer=true`; Karpenter's other gates keep their defaults, e.g.
    /// `SpotToSpotConsolidation=false`, so a spot node is deleted but never replaced by a cheaper spot node).
    pub feature_gates: String,
    /// `LOG_LEVEL`: `debug`, `info` (default) or `error`.
    pub log_level: String,
}

impl Default for AutoscalingOptions {
    fn default() -> Self {
        AutoscalingOptions {
            instance_types: default_instance_types(),
            batch_idle_duration: Duration::from_secs(1),
            batch_max_duration: Duration::from_secs(3),
            feature_gates: "CapacityBuffer=true".to_owned(),
            log_level: "info".to_owned(),
        }
    }
}

/// A NodePool of Karpenter's `karpenter.sh/v1` API: requirements on capacity type, `kubernetes.io/arch: amd64`
/// and `kubernetes.io/os: linux`, the KWOKNodeClass [`DEFAULT_NODE_CLASS`], consolidation policy
/// `WhenEmptyOrUnderutilized`, a disruption budget of `100%` of nodes (Karpenter's default, 10%, rounds up to one
/// node at a time), and `expireAfter: Never`.
#[derive(Clone, Debug)]
pub struct NodePoolSpec {
    pub name: String,
    pub capacity_type: String,
    pub labels: BTreeMap<String, String>,
    /// `(key, value, effect)`.
    pub taints: Vec<(String, String, String)>,
    /// `spec.limits.cpu`: the NodePool's nodes never add up to more cores than this.
    pub limits_cpu: u32,
    /// `spec.disruption.consolidateAfter`, e.g. `5s`, `1m`, `Never`.
    pub consolidate_after: String,
    /// `spec.disruption.budgets[0].nodes`, e.g. `100%`, `1`, `0` (no voluntary disruption).
    pub budget_nodes: String,
    pub node_class: String,
    /// `spec.weight`: Karpenter tries NodePools of higher weight first.
    pub weight: Option<u32>,
}

impl NodePoolSpec {
    pub fn new(name: &str, capacity_type: &str) -> NodePoolSpec {
        NodePoolSpec {
            name: name.to_owned(),
            capacity_type: capacity_type.to_owned(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            limits_cpu: 1000,
            consolidate_after: "5s".to_owned(),
            budget_nodes: "100%".to_owned(),
            node_class: DEFAULT_NODE_CLASS.to_owned(),
            weight: None,
        }
    }

    /// A label every node of the pool gets (`spec.template.metadata.labels`).
    pub fn label(mut self, key: &str, value: &str) -> NodePoolSpec {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A taint every node of the pool gets (`spec.template.spec.taints`); `effect` is `NoSchedule`,
    /// `PreferNoSchedule` or `NoExecute`. Karpenter only launches nodes for pods that tolerate it.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> NodePoolSpec {
        self.taints.push((key.to_owned(), value.to_owned(), effect.to_owned()));
        self
    }

    pub fn limits_cpu(mut self, cores: u32) -> NodePoolSpec {
        self.limits_cpu = cores;
        self
    }

    pub fn consolidate_after(mut self, duration: &str) -> NodePoolSpec {
        self.consolidate_after = duration.to_owned();
        self
    }

    pub fn budget_nodes(mut self, nodes: &str) -> NodePoolSpec {
        self.budget_nodes = nodes.to_owned();
        self
    }

    pub fn node_class(mut self, name: &str) -> NodePoolSpec {
        self.node_class = name.to_owned();
        self
    }

    pub fn weight(mut self, weight: u32) -> NodePoolSpec {
        self.weight = Some(weight);
        self
    }

    /// The NodePool object.
    pub fn to_json(&self) -> Value {
        let taints: Vec<Value> = self
            .taints
            .iter()
            .map(|(key, value, effect)| json!({"key": key, "value": value, "effect": effect}))
            .collect();
        let mut template_spec = json!({
            "requirements": [
                {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": [self.capacity_type]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            ],
            "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": self.node_class},
            "expireAfter": "Never",
        });
        if !taints.is_empty() {
            template_spec["taints"] = Value::Array(taints);
        }
        let mut spec = json!({
            "template": {"metadata": {"labels": self.labels}, "spec": template_spec},
            "limits": {"cpu": self.limits_cpu.to_string()},
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": self.consolidate_after,
                "budgets": [{"nodes": self.budget_nodes}],
            },
        });
        if let Some(weight) = self.weight {
            spec["weight"] = json!(weight);
        }
        json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": self.name}, "spec": spec})
    }
}

/// `karpenter.sh/v1` NodePool.
pub fn nodepool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool"), "nodepools")
}

/// `karpenter.sh/v1` NodeClaim.
pub fn nodeclaim_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim"), "nodeclaims")
}

/// `karpenter.kwok.sh/v1alpha1` KWOKNodeClass.
pub fn kwok_nodeclass_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("karpenter.kwok.sh", "v1alpha1", "KWOKNodeClass"),
        "kwoknodeclasses",
    )
}

/// `autoscaling.x-k8s.io/v1beta1` CapacityBuffer (namespaced).
pub fn capacity_buffer_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("autoscaling.x-k8s.io", "v1beta1", "CapacityBuffer"),
        "capacitybuffers",
    )
}

/// Karpenter and KWOK running against a [`ControlPlane`]. Dropping it stops both (SIGTERM, 1 s grace, SIGKILL),
/// after printing their log tails and the node timeline when the test is failing.
pub struct Autoscaling {
    client: Client,
    /// `kwok`, then `karpenter`.
    processes: Vec<ManagedProcess>,
    karpenter_metrics_port: u16,
    timeline: Timeline,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Autoscaling {
    /// Installs Karpenter's CRDs (NodePool, NodeClaim, NodeOverlay, CapacityBuffer, KWOKNodeClass) and starts KWOK
    /// and Karpenter against `control_plane` (its admin kubeconfig, a `system:masters` member), each on free
    /// loopback ports, and waits until both report ready. Logs and configuration go to the control plane's
    /// directory (`kwok.log`, `karpenter.log`). Call from the test's own thread (see [`ManagedProcess`]).
    pub async fn start(control_plane: &ControlPlane, options: AutoscalingOptions) -> Autoscaling {
        let dir = autoscaling_dir();
        let client = control_plane.client();
        install_crds_in(&client, &dir.join("crds")).await;

        let timeline = Timeline::new();
        let watchers = timeline.watch(&client);
        let mut autoscaling =
            Autoscaling { client, processes: Vec::new(), karpenter_metrics_port: 0, timeline, watchers };
        autoscaling.start_kwok(control_plane, dir).await;
        autoscaling.start_karpenter(control_plane, dir, &options).await;
        autoscaling
    }

    async fn start_kwok(&mut self, control_plane: &ControlPlane, dir: &Path) {
        // KWOK v0.8 has no built-in stages: it runs exactly the Stage objects of its --config files. These are its
        // "fast" set, copied from the kwok module by autoscaling.sh: node-initialize (Ready at once),
        // node-heartbeat-with-lease (with --node-lease-duration-seconds, a Lease per node renewed by KWOK),
        // pod-ready (bound pods Running and Ready), pod-complete (Job pods only), pod-delete (terminating pods
        // deleted at once).
        let stages_dir = dir.join("kwok-stages");
        let mut stages: Vec<PathBuf> = std::fs::read_dir(&stages_dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", stages_dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .collect();
        stages.sort();
        assert!(!stages.is_empty(), "{} holds no KWOK stage", stages_dir.display());
        // KWOK would also read ~/.kwok/kwok.yaml: HOME points into the test's directory, so nothing of the machine's
        // user leaks in.
        let home = control_plane.dir().join("kwok-home");
        std::fs::create_dir_all(&home).expect("cannot create KWOK's home directory");

        for attempt in 1..=START_ATTEMPTS {
            let [port] = free_loopback_ports();
            let mut command = Command::new(dir.join("kwok"));
            command
                .env_clear()
                .env("HOME", &home)
                .arg(format!("--kubeconfig={}", control_plane.kubeconfig().display()))
                .arg(format!(
                    "--manage-nodes-with-annotation-selector={}={}",
                    KWOK_NODE_ANNOTATION.0, KWOK_NODE_ANNOTATION.1
                ))
                // Plain HTTP on loopback: /healthz answers once the controllers started (readiness below).
                .arg(format!("--server-address=127.0.0.1:{port}"))
                .arg("--node-lease-duration-seconds=40")
                // Pod IPs; the default, 10.0.0.0/24, is the control plane's Service range and holds only 256.
                .arg("--cidr=10.244.0.0/16");
            for stage in &stages {
                command.arg(format!("--config={}", stage.display()));
            }
            let mut process = vec![ManagedProcess::spawn("kwok", command, control_plane.dir())];
            match wait_until_http_ok(&mut process, port, "/healthz").await {
                Ok(()) => {
                    self.processes.append(&mut process);
                    return;
                }
                Err(failure) => {
                    let port_taken = process[0].log().contains("address already in use");
                    if !port_taken || attempt == START_ATTEMPTS {
                        print_log_tails(&process, 40);
                        stop_all(&mut process, Duration::ZERO);
                        panic!("kwok did not start: {failure} (log tail above)");
                    }
                    stop_all(&mut process, Duration::ZERO);
                }
            }
        }
    }

    async fn start_karpenter(&mut self, control_plane: &ControlPlane, dir: &Path, options: &AutoscalingOptions) {
        let instance_types = control_plane.dir().join("karpenter-instance-types.json");
        std::fs::write(&instance_types, instance_types_json(&options.instance_types))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", instance_types.display()));
        for attempt in 1..=START_ATTEMPTS {
            // Karpenter binds its metrics and health ports on all interfaces (":<port>"); no flag narrows that.
            let [metrics_port, health_port] = free_loopback_ports();
            let mut command = Command::new(dir.join("karpenter-kwok"));
            command
                .env_clear()
                .env("HOME", control_plane.dir())
                // controller-runtime reads the kubeconfig from KUBECONFIG (Karpenter has no --kubeconfig flag).
                .env("KUBECONFIG", control_plane.kubeconfig())
                .env("DISABLE_LEADER_ELECTION", "true")
                .env("METRICS_PORT", metrics_port.to_string())
                .env("HEALTH_PROBE_PORT", health_port.to_string())
                .env("FEATURE_GATES", &options.feature_gates)
                .env("BATCH_IDLE_DURATION", go_duration(options.batch_idle_duration))
                .env("BATCH_MAX_DURATION", go_duration(options.batch_max_duration))
                .env("INSTANCE_TYPES_FILE_PATH", &instance_types)
                .env("LOG_LEVEL", &options.log_level);
            let mut process = vec![ManagedProcess::spawn("karpenter", command, control_plane.dir())];
            match wait_until_http_ok(&mut process, health_port, "/readyz").await {
                Ok(()) => {
                    self.processes.append(&mut process);
                    self.karpenter_metrics_port = metrics_port;
                    return;
                }
                Err(failure) => {
                    let port_taken = process[0].log().contains("address already in use");
                    if !port_taken || attempt == START_ATTEMPTS {
                        print_log_tails(&process, 60);
                        stop_all(&mut process, Duration::ZERO);
                        panic!("karpenter did not start: {failure} (log tail above)");
                    }
                    stop_all(&mut process, Duration::ZERO);
                }
            }
        }
    }

    /// Creates a KWOKNodeClass (no registration delay: Karpenter's KWOK provider creates the Node at launch).
    pub async fn create_kwok_nodeclass(&self, name: &str) {
        let object = json!({
            "apiVersion": "karpenter.kwok.sh/v1alpha1",
            "kind": "KWOKNodeClass",
            "metadata": {"name": name},
        });
        create_dynamic(&self.client, &kwok_nodeclass_resource(), None, object).await;
    }

    /// Creates a NodePool `name` for `capacity_type` (`spot` or `on-demand`) whose nodes get `labels`, at most
    /// `limits_cpu` cores in all, consolidated `consolidate_after` (e.g. `5s`) after becoming empty or
    /// underutilized; see [`NodePoolSpec`] for the rest, and [`Autoscaling::create_nodepool_from`] for taints,
    /// weights and budgets.
    pub async fn create_nodepool(
        &self,
        name: &str,
        capacity_type: &str,
        labels: &[(&str, &str)],
        limits_cpu: u32,
        consolidate_after: &str,
    ) {
        let mut spec =
            NodePoolSpec::new(name, capacity_type).limits_cpu(limits_cpu).consolidate_after(consolidate_after);
        for (key, value) in labels {
            spec = spec.label(key, value);
        }
        self.create_nodepool_from(&spec).await;
    }

    /// Creates the NodePool and waits until Karpenter reports it Ready: Karpenter ignores a NodePool that is not
    /// Ready yet ("ignoring nodepool, not ready"), and a pod that arrived meanwhile waits for the provisioner's
    /// next periodic pass, 10 s later.
    pub async fn create_nodepool_from(&self, spec: &NodePoolSpec) {
        create_dynamic(&self.client, &nodepool_resource(), None, spec.to_json()).await;
        let api = Api::<DynamicObject>::all_with(self.client.clone(), &nodepool_resource());
        wait_until(&format!("Karpenter reports NodePool {} Ready", spec.name), READY_TIMEOUT, || async {
            let pool = api.get(&spec.name).await.map_err(|e| e.to_string())?;
            let conditions = conditions(&pool);
            if conditions.iter().any(|(type_, status, _)| type_ == "Ready" && status == "True") {
                Ok(())
            } else {
                Err(format!("conditions {conditions:?}"))
            }
        })
        .await;
    }

    /// The nodes Karpenter launched (label `karpenter.sh/nodepool`), sorted by name, terminating ones included.
    pub async fn karpenter_nodes(&self) -> Vec<Node> {
        let mut nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default().labels(NODEPOOL_LABEL))
            .await
            .unwrap_or_else(|e| panic!("cannot list nodes: {e}"))
            .items;
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        nodes
    }

    /// Every NodeClaim, sorted by name.
    pub async fn nodeclaims(&self) -> Vec<DynamicObject> {
        let api = Api::<DynamicObject>::all_with(self.client.clone(), &nodeclaim_resource());
        let mut claims =
            api.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("cannot list NodeClaims: {e}")).items;
        claims.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        claims
    }

    /// Creates a PodTemplate `name` in `namespace` and a CapacityBuffer of the same name referring to it, asking
    /// for `replicas` chunks of that shape (default provisioning strategy `buffer.x-k8s.io/active-capacity`).
    /// Karpenter provisions room for them as if that many such pods were pending; no pod is ever created.
    pub async fn create_capacity_buffer(&self, namespace: &str, name: &str, template: PodTemplateSpec, replicas: u32) {
        let pod_template = PodTemplate {
            metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
            template: Some(template),
        };
        Api::<PodTemplate>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &pod_template)
            .await
            .unwrap_or_else(|e| panic!("cannot create PodTemplate {namespace}/{name}: {e}"));
        let buffer = json!({
            "apiVersion": "autoscaling.x-k8s.io/v1beta1",
            "kind": "CapacityBuffer",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podTemplateRef": {"name": name}, "replicas": replicas},
        });
        create_dynamic(&self.client, &capacity_buffer_resource(), Some(namespace), buffer).await;
    }

    /// The CapacityBuffer `namespace/name` as stored (status included).
    pub async fn capacity_buffer(&self, namespace: &str, name: &str) -> DynamicObject {
        Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &capacity_buffer_resource())
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("cannot read CapacityBuffer {namespace}/{name}: {e}"))
    }

    pub async fn delete_capacity_buffer(&self, namespace: &str, name: &str) {
        Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &capacity_buffer_resource())
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("cannot delete CapacityBuffer {namespace}/{name}: {e}"));
    }

    /// Waits until Karpenter has no node and no NodeClaim left (consolidation finished), within
    /// [`CONSOLIDATION_TIMEOUT`]; returns how long that took.
    pub async fn wait_until_no_karpenter_nodes(&self) -> Duration {
        let start = Instant::now();
        wait_until("Karpenter has consolidated every node away", CONSOLIDATION_TIMEOUT, || async {
            let nodes = self.karpenter_nodes().await;
            let claims = self.nodeclaims().await;
            if nodes.is_empty() && claims.is_empty() {
                Ok(())
            } else {
                Err(format!("nodes: [{}]; NodeClaims: [{}]", describe_nodes(&nodes), describe_nodeclaims(&claims)))
            }
        })
        .await;
        start.elapsed()
    }

    /// Everything seen happen to Karpenter's Nodes and NodeClaims since [`Autoscaling::start`], one line per change
    /// (existence, taints, Ready, Karpenter's lifecycle labels and conditions), with the time since start.
    pub fn timeline(&self) -> String {
        self.timeline.render()
    }

    /// The Prometheus text of Karpenter's metrics endpoint (e.g. `karpenter_nodeclaims_created_total`).
    pub async fn karpenter_metrics(&self) -> String {
        http_get(self.karpenter_metrics_port, "/metrics")
            .await
            .unwrap_or_else(|e| panic!("GET Karpenter /metrics: {e}"))
    }

    /// Karpenter's whole log (JSON lines).
    pub fn karpenter_log(&self) -> String {
        self.processes[1].log()
    }

    /// KWOK's whole log.
    pub fn kwok_log(&self) -> String {
        self.processes[0].log()
    }
}

impl Drop for Autoscaling {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
        if std::thread::panicking() {
            print_log_tails(&self.processes, 60);
            eprintln!("\n----- Karpenter nodes and NodeClaims over time -----\n{}", self.timeline.render());
        }
        stop_all(&mut self.processes, Duration::from_secs(1));
    }
}

/// One line per node: name, Ready, taints, instance type, capacity type, allocatable cpu, terminating.
pub fn describe_nodes(nodes: &[Node]) -> String {
    nodes.iter().map(node_summary).collect::<Vec<_>>().join("; ")
}

/// One line per NodeClaim: name, node, instance type, conditions that are True, terminating.
pub fn describe_nodeclaims(claims: &[DynamicObject]) -> String {
    claims.iter().map(nodeclaim_summary).collect::<Vec<_>>().join("; ")
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// `key=value:effect` of each of the node's taints.
pub fn node_taints(node: &Node) -> Vec<String> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints
        .into_iter()
        .flatten()
        .map(|t| format!("{}={}:{}", t.key, t.value.as_deref().unwrap_or(""), t.effect))
        .collect()
}

/// A node's label, if set.
pub fn node_label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The `(type, status, reason)` of each condition in an object's `status.conditions` (NodeClaim, NodePool,
/// CapacityBuffer).
pub fn conditions(object: &DynamicObject) -> Vec<(String, String, String)> {
    let list = object.data.get("status").and_then(|s| s.get("conditions")).and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .map(|c| {
            let field = |name: &str| c.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
            (field("type"), field("status"), field("reason"))
        })
        .collect()
}

fn node_summary(node: &Node) -> String {
    let allocatable_cpu =
        node.status.as_ref().and_then(|s| s.allocatable.as_ref()).and_then(|a| a.get("cpu")).map(|q| q.0.as_str());
    format!(
        "{} ready={} taints=[{}] type={} capacity={} cpu={}{}",
        node.name_any(),
        node_ready(node),
        node_taints(node).join(","),
        node_label(node, "node.kubernetes.io/instance-type").unwrap_or("-"),
        node_label(node, CAPACITY_TYPE_LABEL).unwrap_or("-"),
        allocatable_cpu.unwrap_or("-"),
        if node.metadata.deletion_timestamp.is_some() { " terminating" } else { "" }
    )
}

fn nodeclaim_summary(claim: &DynamicObject) -> String {
    let status = claim.data.get("status");
    let node = status.and_then(|s| s.get("nodeName")).and_then(Value::as_str).unwrap_or("-");
    let labels = claim.metadata.labels.as_ref();
    let instance_type = labels.and_then(|l| l.get("node.kubernetes.io/instance-type")).map(String::as_str);
    let true_conditions: Vec<String> =
        conditions(claim).into_iter().filter(|(_, status, _)| status == "True").map(|(type_, _, _)| type_).collect();
    format!(
        "{} node={node} type={} true=[{}]{}",
        claim.name_any(),
        instance_type.unwrap_or("-"),
        true_conditions.join(","),
        if claim.metadata.deletion_timestamp.is_some() { " terminating" } else { "" }
    )
}

/// What the fixture saw of Karpenter's Nodes and NodeClaims, for the report and for failures.
#[derive(Clone)]
struct Timeline {
    start: Instant,
    events: Arc<Mutex<TimelineEvents>>,
}

/// `(elapsed, line)` in order, and the last summary of each object, to record only changes.
type TimelineEvents = (Vec<(Duration, String)>, BTreeMap<String, String>);

impl Timeline {
    fn new() -> Timeline {
        Timeline { start: Instant::now(), events: Arc::new(Mutex::new((Vec::new(), BTreeMap::new()))) }
    }

    fn record(&self, key: String, summary: Option<String>) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let (lines, last) = &mut *events;
        let line = match summary {
            Some(summary) if last.get(&key) == Some(&summary) => return,
            Some(summary) => {
                last.insert(key.clone(), summary.clone());
                format!("{key}: {summary}")
            }
            None => {
                last.remove(&key);
                format!("{key}: deleted")
            }
        };
        lines.push((self.start.elapsed(), line));
    }

    fn render(&self) -> String {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        for (at, line) in &events.0 {
            writeln!(text, "{:>7.2}s {line}", at.as_secs_f64()).expect("writing to a String cannot fail");
        }
        text
    }

    /// Watches Nodes carrying the NodePool label and every NodeClaim, recording changes until aborted.
    fn watch(&self, client: &Client) -> Vec<tokio::task::JoinHandle<()>> {
        let nodes = {
            let timeline = self.clone();
            let api = Api::<Node>::all(client.clone());
            let config = watcher::Config::default().labels(NODEPOOL_LABEL);
            tokio::spawn(async move {
                let mut stream = watcher(api, config).boxed();
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                            timeline.record(format!("node {}", node.name_any()), Some(node_timeline_summary(&node)));
                        }
                        Ok(watcher::Event::Delete(node)) => timeline.record(format!("node {}", node.name_any()), None),
                        _ => {}
                    }
                }
            })
        };
        let claims = {
            let timeline = self.clone();
            let api = Api::<DynamicObject>::all_with(client.clone(), &nodeclaim_resource());
            tokio::spawn(async move {
                // The NodeClaim CRD is installed before this runs; the watcher retries on its own meanwhile.
                let mut stream = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(watcher::Event::Apply(claim) | watcher::Event::InitApply(claim)) => {
                            timeline.record(format!("nodeclaim {}", claim.name_any()), Some(nodeclaim_summary(&claim)));
                        }
                        Ok(watcher::Event::Delete(claim)) => {
                            timeline.record(format!("nodeclaim {}", claim.name_any()), None);
                        }
                        _ => {}
                    }
                }
            })
        };
        vec![nodes, claims]
    }
}

/// What matters of a node's progress: Ready, taints, Karpenter's lifecycle labels, instance and capacity type.
fn node_timeline_summary(node: &Node) -> String {
    let karpenter_labels: Vec<String> = ["karpenter.sh/registered", "karpenter.sh/initialized"]
        .into_iter()
        .filter_map(|key| node_label(node, key).map(|value| format!("{key}={value}")))
        .collect();
    format!("{} labels=[{}]", node_summary(node), karpenter_labels.join(","))
}

/// Creates every CRD in the `*.yaml` files of `dir` (sorted by name) and waits until each is Established.
async fn install_crds_in(client: &Client, dir: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    install_crd_files(client, &files).await;
}

async fn create_dynamic(client: &Client, resource: &ApiResource, namespace: Option<&str>, object: Value) {
    let object: DynamicObject = serde_json::from_value(object).expect("the fixture builds valid objects");
    let name = object.name_any();
    let api = match namespace {
        Some(namespace) => Api::<DynamicObject>::namespaced_with(client.clone(), namespace, resource),
        None => Api::<DynamicObject>::all_with(client.clone(), resource),
    };
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("cannot create {} {name}: {e}", resource.kind));
}

/// A duration as Go's time.ParseDuration reads it (`1500ms`).
fn go_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// Distinct loopback ports that were free a moment ago (see [`START_ATTEMPTS`] for the race).
fn free_loopback_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("bound listener has an address").port())
}

/// Polls `http://127.0.0.1:<port><path>` until it answers 200, failing early if the process exits.
async fn wait_until_http_ok(processes: &mut [ManagedProcess], port: u16, path: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Some(status) = processes[0].exit_status() {
            return Err(format!("{} exited ({status})", processes[0].name()));
        }
        let last_error = match http_get(port, path).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if start.elapsed() > READY_TIMEOUT {
            return Err(format!("{path} not ok after {READY_TIMEOUT:?}; last answer: {last_error}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.0 GET on loopback; the body when the status is 200.
async fn http_get(port: u16, path: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status_line = head.lines().next().unwrap_or("");
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(body.to_owned())
    } else {
        Err(format!("{status_line}: {}", body.chars().take(500).collect::<String>()))
    }
}
