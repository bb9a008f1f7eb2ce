//! Scale of the watch: how long `muster serve` takes to sync its model from a large cluster of realistic objects,
//! and how much memory and CPU that costs it (design target: resident memory <= 200 MB with 10,000 nodes and
//! 100,000 pods). Run: `cargo bench --bench watch_scale`. The full size took 31 minutes on the 2-core development
//! machine, 25 of them filling the cluster: kube-apiserver spends about 15 ms of CPU on each Running pod (5 ms on
//! the create, 10 ms on the status write) and grows to about 16 GiB resident, so run it on an otherwise quiet
//! machine. A smoke run (about 3 minutes): `MUSTER_BENCH_NODES=1000 MUSTER_BENCH_PODS=10000 cargo bench --bench
//! watch_scale`.
//!
//! A real control plane (etcd + kube-apiserver) with muster's CRDs. First the cluster is filled, with no muster
//! running: N Nodes as a cloud kubelet registers them (instance-type capacity and allocatable, zone and pool
//! labels, taints on the dedicated pools, the pressure and Ready conditions, node info, addresses and a list of cached
//! images), then P pods as a Spark-and-services cluster has them, each bound to a node (spec.nodeName, as placed
//! by a scheduler) and then moved to Running through the status subresource (the API server resets the status
//! given at creation) with the status a kubelet writes (conditions, IPs, one status per container). About 60% of
//! the pods belong to Spark applications (a driver and 4 to 40 executors each, `schedulerName: muster`, in
//! `spark-<team>` namespaces): muster's own pods, which it groups into gangs. The rest are Deployment replicas of
//! services (`default-scheduler`, in `<team>` and `<team>-staging` namespaces), which muster counts as usage.
//! Every pod has 10-14 labels, 5-7 annotations (Spark drivers and a quarter of the services carry a 1-2 KB JSON
//! configuration annotation), 2-3 containers with images, args, 10-20 environment variables, requests and limits,
//! volume mounts and ports, probes on the long-running containers, volumes (including the service-account token
//! projection every real pod has), and ownerReferences (executors to their driver, drivers to a SparkApplication,
//! replicas to a ReplicaSet; no garbage collector runs, so the owners need not exist). Requests go out raw
//! (pre-serialised JSON, answers not decoded), CONCURRENCY at a time.
//!
//! Then `muster serve` (release build, default configuration: the production cycle and status intervals) is
//! started and measured while it syncs:
//! - "ready": from spawning the process until `/readyz` answers 200, which muster does once every watch has
//!   delivered its complete initial list, the lists are applied, recorded admissions are restored and the first
//!   admission cycle has run (src/controller/admission.rs `finish_initial_sync`);
//! - "nodes listed", "pods listed": when muster logged that kind's initial list applied (its log timestamps);
//! - "model": `muster_cache_objects` on /metrics (the gauges are first set during `finish_initial_sync`, so they
//!   are read once `/readyz` is 200 and checked against N and P);
//! - CPU seconds (utime + stime) and resident memory (VmRSS and its peak VmHWM, /proc/<pid>/status) at ready and
//!   once muster has settled (no write of its own waiting or in flight for 3 s: on a first start it creates the
//!   automatic PodGroup of every Spark application and writes their status), and a 100 ms trace of VmRSS;
//! - for context, kube-apiserver's and etcd's resident memory and the CPU kube-apiserver spent meanwhile
//!   (serving muster's lists, and muster's writes on a first start).
//!
//! The first start is a first deployment (no PodGroups exist yet). It is then killed (SIGKILL) and started again
//! MUSTER_BENCH_RESTARTS times (default 1) on the same cluster: a warm re-sync, where every automatic PodGroup
//! exists and records its gang's admission, which muster restores before it reports ready.
//!
//! Environment: MUSTER_BENCH_NODES (default 10000), MUSTER_BENCH_PODS (default 100000), MUSTER_BENCH_CONCURRENCY
//! (create requests in flight, default 64), MUSTER_BENCH_POD_STATUS (`running`, the default, or `pending`: leave
//! the pods Pending-but-bound and skip the status writes, a third of the fill's API server CPU; the objects are
//! then about 3 KB smaller), MUSTER_BENCH_RESTARTS (default
//! 1), MUSTER_BENCH_HOLD_S (default 0: after measuring, keep the control plane up that long and print its
//! kubeconfig, to run muster under a profiler against the same cluster). The fill stops the benchmark if the
//! machine's available memory falls under 1 GiB.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams};
use muster::api::PodGroup;
use serde_json::{Value, json};
use support::muster::{process_cpu_seconds, process_rss_bytes, prometheus_sample, self_cpu_seconds, stat_cpu_seconds};
use support::{ControlPlane, Listeners, MusterConfig, MusterServe, ServeOptions, install_crds};

const MIB: f64 = 1024.0 * 1024.0;
/// How long muster gets to sync (the fixture's own start timeout, 90 s, is for tests on small clusters).
const READY_TIMEOUT: Duration = Duration::from_secs(900);
/// Share of the pods (percent) that belong to Spark applications; the rest are services' replicas.
const SPARK_SHARE_PERCENT: usize = 60;
const TEAMS: [&str; 10] =
    ["payments", "search", "ads", "risk", "growth", "ml-platform", "data-eng", "fraud", "catalog", "logistics"];
/// Where every pod's image would come from; nothing pulls it (no kubelet runs).
const REGISTRY: &str = "registry.invalid";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn mem_available_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).unwrap_or(u64::MAX / 1024) * 1024
}

// ----- deterministic names and ids -----

/// A well-mixed 64-bit value from `seed` (splitmix64): stands in for the random parts of real names and ids, the
/// same on every run.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `len` lowercase hex digits derived from `seed`.
fn hex(seed: u64, len: usize) -> String {
    let mut text = String::with_capacity(len + 16);
    let mut i = 0;
    while text.len() < len {
        text.push_str(&format!("{:016x}", mix(seed.wrapping_mul(31).wrapping_add(i))));
        i += 1;
    }
    text.truncate(len);
    text
}

fn uuid(seed: u64) -> String {
    let h = hex(seed, 32);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A Kubernetes timestamp (whole seconds, as the API server writes them) `ago` before now.
fn timestamp(ago: Duration) -> Value {
    let second = Timestamp::now().as_second() - ago.as_secs() as i64;
    serde_json::to_value(Time(Timestamp::from_second(second).expect("a recent time"))).expect("a time serialises")
}

// ----- nodes -----

struct InstanceType {
    name: &'static str,
    cpu: u32,
    memory_gib: u64,
    max_pods: u32,
}

const SPARK_TYPES: [InstanceType; 2] = [
    InstanceType { name: "r5.8xlarge", cpu: 32, memory_gib: 256, max_pods: 234 },
    InstanceType { name: "m5.8xlarge", cpu: 32, memory_gib: 128, max_pods: 234 },
];
const GENERAL_TYPES: [InstanceType; 3] = [
    InstanceType { name: "m5.4xlarge", cpu: 16, memory_gib: 64, max_pods: 234 },
    InstanceType { name: "c5.4xlarge", cpu: 16, memory_gib: 32, max_pods: 234 },
    InstanceType { name: "m5.2xlarge", cpu: 8, memory_gib: 32, max_pods: 58 },
];
const MEMORY_TYPES: [InstanceType; 1] = [InstanceType { name: "r5.4xlarge", cpu: 16, memory_gib: 128, max_pods: 234 }];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pool {
    /// Spark executors only: tainted `dedicated=spark:NoSchedule`.
    Spark,
    /// Services and Spark drivers: no taint.
    General,
    /// In-memory caches: tainted `workload=memory:NoSchedule`.
    Memory,
}

impl Pool {
    /// 45% Spark, 45% general, 10% memory nodes.
    fn of_node(i: usize) -> Pool {
        match i % 20 {
            0..9 => Pool::Spark,
            9..18 => Pool::General,
            _ => Pool::Memory,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Pool::Spark => "spark",
            Pool::General => "general",
            Pool::Memory => "memory",
        }
    }

    fn instance_type(self, i: usize) -> &'static InstanceType {
        match self {
            Pool::Spark => &SPARK_TYPES[i % SPARK_TYPES.len()],
            Pool::General => &GENERAL_TYPES[i % GENERAL_TYPES.len()],
            Pool::Memory => &MEMORY_TYPES[i % MEMORY_TYPES.len()],
        }
    }
}

fn node_ip(i: usize) -> String {
    let n = i + 1000;
    format!("10.{}.{}.{}", 16 + (n >> 16), (n >> 8) & 255, n & 255)
}

fn node_name(i: usize) -> String {
    format!("ip-{}.ec2.internal", node_ip(i).replace('.', "-"))
}

fn zone(i: usize) -> &'static str {
    ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3]
}

/// Images a node of this cluster has pulled: what a kubelet reports in status.images (its 50 largest at most).
fn node_images(i: usize) -> Value {
    let images = [
        ("data-platform/spark", "3.5.1-scala2.12-java17-python3-ubuntu", 1_421_337_812u64),
        ("observability/fluent-bit", "3.0.7", 88_140_417),
        ("mesh/proxyv2", "1.22.3", 97_402_583),
        ("amazon-k8s-cni", "v1.18.3-eksbuild.1", 60_810_214),
        ("amazon-k8s-cni-init", "v1.18.3-eksbuild.1", 58_112_093),
        ("kube-proxy", "v1.35.4-minimal-eksbuild.2", 31_901_555),
        ("ebs-csi-driver", "v1.32.0", 84_301_100),
        ("csi-node-driver-registrar", "v2.11.0-eks-1-30-8", 9_221_406),
        ("livenessprobe", "v2.13.0-eks-1-30-8", 8_712_003),
        ("node-exporter", "v1.8.1", 11_552_341),
        ("payments/api", "2024.11.3", 210_040_112),
        ("search/indexer", "7.4.0", 355_020_001),
        ("catalog/web", "1.93.0", 180_334_100),
        ("pause", "3.9", 299_513),
    ];
    let list: Vec<Value> = images
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 5 != i % 5 || *k < 4)
        .map(|(k, (repo, tag, size))| {
            json!({
                "names": [
                    format!("{REGISTRY}/{repo}@sha256:{}", hex(k as u64 * 7919, 64)),
                    format!("{REGISTRY}/{repo}:{tag}"),
                ],
                "sizeBytes": size,
            })
        })
        .collect();
    Value::Array(list)
}

/// A Node as an EKS kubelet registers it (the node lifecycle controller and the cloud provider add nothing here:
/// neither runs).
fn node_object(i: usize) -> Value {
    let pool = Pool::of_node(i);
    let t = pool.instance_type(i / 20);
    let name = node_name(i);
    let ip = node_ip(i);
    let memory_ki = t.memory_gib * 1024 * 1024 * 97 / 100;
    let capacity = json!({
        "attachable-volumes-aws-ebs": "25",
        "cpu": t.cpu.to_string(),
        "ephemeral-storage": "104845292Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": format!("{memory_ki}Ki"),
        "pods": t.max_pods.to_string(),
    });
    let allocatable = json!({
        "attachable-volumes-aws-ebs": "25",
        "cpu": format!("{}m", t.cpu * 1000 - 190),
        "ephemeral-storage": "95551679124",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": format!("{}Ki", memory_ki - 1_500_000),
        "pods": t.max_pods.to_string(),
    });
    let heartbeat = timestamp(Duration::from_secs(20));
    let booted = timestamp(Duration::from_secs(86_400 + (i as u64 % 3600)));
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": heartbeat, "lastTransitionTime": booted})
    };
    let taints = match pool {
        Pool::Spark => json!([{"key": "dedicated", "value": "spark", "effect": "NoSchedule"}]),
        Pool::Memory => json!([{"key": "workload", "value": "memory", "effect": "NoSchedule"}]),
        Pool::General => Value::Null,
    };
    let instance_id = format!("i-0{}", hex(i as u64, 16));
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/instance-type": t.name,
                "beta.kubernetes.io/os": "linux",
                "eks.amazonaws.com/capacityType": if i.is_multiple_of(7) { "SPOT" } else { "ON_DEMAND" },
                "eks.amazonaws.com/nodegroup": format!("{}-{}", pool.label(), t.name.replace('.', "-")),
                "eks.amazonaws.com/nodegroup-image": "ami-0c2b8ca1dad447f8a",
                "failure-domain.beta.kubernetes.io/region": "us-east-1",
                "failure-domain.beta.kubernetes.io/zone": zone(i),
                "k8s.io/cloud-provider-aws": hex(1, 32),
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": t.name,
                "pool": pool.label(),
                "topology.ebs.csi.aws.com/zone": zone(i),
                "topology.kubernetes.io/region": "us-east-1",
                "topology.kubernetes.io/zone": zone(i),
            },
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": ip,
                "csi.volume.kubernetes.io/nodeid": format!("{{\"ebs.csi.aws.com\":\"{instance_id}\"}}"),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "providerID": format!("aws:///{}/{instance_id}", zone(i)),
            "taints": taints,
        },
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                condition(
                    "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
                ),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "InternalDNS", "address": name},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hex(i as u64 + 11, 32),
                "systemUUID": uuid(i as u64 + 13).to_uppercase(),
                "bootID": uuid(i as u64 + 17),
                "kernelVersion": "6.1.102-111.182.amzn2023.x86_64",
                "osImage": "Amazon Linux 2023.5.20240805",
                "containerRuntimeVersion": "containerd://1.7.20",
                "kubeletVersion": "v1.35.4-eks-1552ad0",
                "kubeProxyVersion": "v1.35.4-eks-1552ad0",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": node_images(i),
        },
    })
}

// ----- pods -----

#[derive(Clone, Copy, Debug)]
enum Role {
    /// A Spark driver with `executors` executors.
    Driver { executors: u32 },
    /// Executor `id` (1-based) of a Spark application.
    Executor { id: u32 },
    /// A replica of a Deployment.
    Replica,
}

/// One pod to create: which workload it belongs to and where it runs.
#[derive(Clone, Copy, Debug)]
struct PodPlan {
    role: Role,
    /// The Spark application or Deployment (its index among those of its kind).
    workload: usize,
    /// Pod index, for names and ids.
    index: usize,
    node: usize,
}

const SPARK_APPS: [&str; 8] = [
    "sessions-agg",
    "feature-backfill",
    "clickstream-etl",
    "model-train",
    "ledger-recon",
    "search-index-build",
    "ads-attribution",
    "risk-scores",
];
const SERVICES: [&str; 8] = ["api", "web", "worker", "gateway", "indexer", "cache", "scheduler", "notifier"];

fn spark_namespace(app: usize) -> String {
    format!("spark-{}", TEAMS[app % TEAMS.len()])
}

fn service_namespace(deployment: usize) -> String {
    let team = TEAMS[deployment % TEAMS.len()];
    if (deployment / TEAMS.len()) % 4 == 3 { format!("{team}-staging") } else { team.to_string() }
}

fn namespaces() -> Vec<String> {
    TEAMS.iter().flat_map(|t| [format!("spark-{t}"), t.to_string(), format!("{t}-staging")]).collect()
}

/// Spark's pod name prefix: the application name and a random suffix.
fn spark_prefix(app: usize) -> String {
    format!("{}-{app}-{}", SPARK_APPS[app % SPARK_APPS.len()], hex(app as u64 + 101, 16))
}

fn spark_app_id(app: usize) -> String {
    format!("spark-{}", hex(app as u64 + 202, 32))
}

/// A cache Deployment runs on the memory pool.
fn is_cache(deployment: usize) -> bool {
    SERVICES[deployment % SERVICES.len()] == "cache"
}

fn deployment_name(deployment: usize) -> String {
    format!("{}-{}-{deployment}", TEAMS[deployment % TEAMS.len()], SERVICES[deployment % SERVICES.len()])
}

/// The pods to create: Spark applications and Deployments, interleaved so that SPARK_SHARE_PERCENT of the pods
/// are Spark's, each pod assigned to a node of its pool in turn.
fn plan_pods(count: usize, node_count: usize) -> Vec<PodPlan> {
    let pool_nodes = |pool: Pool| -> Vec<usize> {
        let nodes: Vec<usize> = (0..node_count).filter(|&i| Pool::of_node(i) == pool).collect();
        // Tiny clusters may lack a pool: put its pods anywhere.
        if nodes.is_empty() { (0..node_count).collect() } else { nodes }
    };
    let (spark_nodes, general_nodes, memory_nodes) =
        (pool_nodes(Pool::Spark), pool_nodes(Pool::General), pool_nodes(Pool::Memory));
    let mut next = [0usize; 3];
    let mut place = |pool: Pool| {
        let (nodes, k) = match pool {
            Pool::Spark => (&spark_nodes, 0),
            Pool::General => (&general_nodes, 1),
            Pool::Memory => (&memory_nodes, 2),
        };
        next[k] += 1;
        nodes[next[k] % nodes.len()]
    };
    let mut plans = Vec::with_capacity(count);
    let (mut apps, mut deployments, mut spark_pods) = (0, 0, 0);
    while plans.len() < count {
        if spark_pods * 100 <= plans.len() * SPARK_SHARE_PERCENT {
            let executors = 4 + (apps as u32 * 7) % 37;
            let role = Role::Driver { executors };
            plans.push(PodPlan { role, workload: apps, index: plans.len(), node: place(Pool::General) });
            for id in 1..=executors {
                let role = Role::Executor { id };
                plans.push(PodPlan { role, workload: apps, index: plans.len(), node: place(Pool::Spark) });
            }
            spark_pods += 1 + executors as usize;
            apps += 1;
        } else {
            let replicas = 2 + (deployments as u32 * 5) % 19;
            let pool = if is_cache(deployments) { Pool::Memory } else { Pool::General };
            for _ in 0..replicas {
                plans.push(PodPlan {
                    role: Role::Replica,
                    workload: deployments,
                    index: plans.len(),
                    node: place(pool),
                });
            }
            deployments += 1;
        }
    }
    plans.truncate(count);
    plans
}

fn env_list(vars: &[(&str, String)]) -> Value {
    Value::Array(vars.iter().map(|(name, value)| json!({"name": name, "value": value})).collect())
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
}

/// The volume every pod gets from the ServiceAccount admission plugin (disabled in this control plane, which has
/// no token controller, so it is written out here).
fn token_volume(seed: u64) -> Value {
    json!({
        "name": format!("kube-api-access-{}", &hex(seed, 5)),
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
                ]}},
            ],
        },
    })
}

fn token_mount(seed: u64) -> Value {
    json!({
        "name": format!("kube-api-access-{}", &hex(seed, 5)),
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": true,
    })
}

/// The log shipper sidecar of Spark pods.
fn log_shipper(seed: u64, local_dir: &str) -> Value {
    json!({
        "name": "log-shipper",
        "image": format!("{REGISTRY}/observability/fluent-bit:3.0.7"),
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config=/fluent-bit/etc/fluent-bit.conf", "--enable-hot-reload"],
        "env": env_list(&[
            ("FLUENT_ELASTICSEARCH_HOST", "logs.observability.svc.cluster.local".into()),
            ("FLUENT_ELASTICSEARCH_PORT", "9200".into()),
            ("LOG_LEVEL", "info".into()),
            ("SPARK_LOG_DIR", local_dir.into()),
            ("FLUSH_INTERVAL_SECONDS", "5".into()),
            ("BUFFER_CHUNK_LIMIT", "2M".into()),
            ("BUFFER_TOTAL_LIMIT", "512M".into()),
            ("TZ", "UTC".into()),
        ]),
        "ports": [{"name": "http-metrics", "containerPort": 2020, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        "livenessProbe": {"httpGet": {"path": "/", "port": 2020, "scheme": "HTTP"},
                          "periodSeconds": 30, "timeoutSeconds": 5, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/api/v1/health", "port": 2020, "scheme": "HTTP"},
                           "periodSeconds": 10, "timeoutSeconds": 3},
        "volumeMounts": [
            {"name": "spark-local-dir-1", "mountPath": local_dir},
            {"name": "fluent-bit-config", "mountPath": "/fluent-bit/etc/"},
            token_mount(seed),
        ],
    })
}

/// spark-defaults as a Spark-on-Kubernetes setup carries them in a driver annotation (about 1.5 KB of JSON).
fn spark_conf_annotation(app: usize, executors: u32) -> String {
    let conf = json!({
        "spark.app.name": SPARK_APPS[app % SPARK_APPS.len()],
        "spark.app.id": spark_app_id(app),
        "spark.master": "k8s://https://kubernetes.default.svc:443",
        "spark.submit.deployMode": "cluster",
        "spark.kubernetes.namespace": spark_namespace(app),
        "spark.kubernetes.container.image":
            format!("{REGISTRY}/data-platform/spark:3.5.1-scala2.12-java17-python3-ubuntu"),
        "spark.kubernetes.scheduler.name": "muster",
        "spark.kubernetes.executor.podNamePrefix": spark_prefix(app),
        "spark.executor.instances": executors.to_string(),
        "spark.executor.cores": "2",
        "spark.executor.memory": "8g",
        "spark.executor.memoryOverhead": "819m",
        "spark.driver.cores": "1",
        "spark.driver.memory": "4g",
        "spark.dynamicAllocation.enabled": "false",
        "spark.sql.shuffle.partitions": "800",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "com.amazonaws.auth.WebIdentityTokenCredentialsProvider",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": format!("s3a://example-spark-history/{}/", TEAMS[app % TEAMS.len()]),
        "spark.ui.prometheus.enabled": "true",
        "spark.metrics.conf.*.sink.prometheusServlet.class": "org.apache.spark.metrics.sink.PrometheusServlet",
        "spark.kubernetes.executor.annotation.prometheus.io/scrape": "true",
        "spark.kubernetes.driver.annotation.muster.dev/min-executors": executors.to_string(),
        "spark.kubernetes.local.dirs.tmpfs": "false",
    });
    conf.to_string()
}

/// A runtime configuration some services carry in an annotation (about 1.5 KB of JSON).
fn runtime_config_annotation(deployment: usize) -> String {
    let features: Vec<Value> = (0..12)
        .map(|k| {
            let name = format!("feature-{k}-{}", hex(deployment as u64 * 13 + k, 6));
            json!({"name": name, "enabled": k % 3 != 0, "rollout": (k * 8) % 100})
        })
        .collect();
    json!({
        "service": deployment_name(deployment),
        "upstreams": [
            format!("{}-db.{}.svc.cluster.local:5432", TEAMS[deployment % TEAMS.len()], service_namespace(deployment)),
            "redis.shared.svc.cluster.local:6379",
        ],
        "timeouts": {"connectMs": 250, "requestMs": 5000, "idleMs": 60000},
        "retries": {"attempts": 3, "backoffMs": [50, 200, 800]},
        "features": features,
    })
    .to_string()
}

/// The pod object to create and, separately, the status a kubelet would write once it runs.
fn pod_objects(plan: &PodPlan) -> (String, String, Value, Value) {
    match plan.role {
        Role::Driver { executors } => spark_pod(plan, None, executors),
        Role::Executor { id } => spark_pod(plan, Some(id), 0),
        Role::Replica => service_pod(plan),
    }
}

fn spark_pod(plan: &PodPlan, executor: Option<u32>, executors: u32) -> (String, String, Value, Value) {
    let app = plan.workload;
    let seed = plan.index as u64;
    let namespace = spark_namespace(app);
    let prefix = spark_prefix(app);
    let team = TEAMS[app % TEAMS.len()];
    let app_name = SPARK_APPS[app % SPARK_APPS.len()];
    let app_id = spark_app_id(app);
    let local_dir = format!("/var/data/spark-{}", uuid(app as u64 + 303));
    let driver_name = format!("{prefix}-driver");
    let driver_svc = format!("{prefix}-driver-svc.{namespace}.svc");
    let image = format!("{REGISTRY}/data-platform/spark:3.5.1-scala2.12-java17-python3-ubuntu");
    let common_env = |role: &str| -> Vec<(&'static str, String)> {
        vec![
            ("SPARK_USER", format!("svc-{team}")),
            ("SPARK_APPLICATION_ID", app_id.clone()),
            ("SPARK_CONF_DIR", "/opt/spark/conf".into()),
            ("SPARK_LOCAL_DIRS", local_dir.clone()),
            ("HADOOP_CONF_DIR", "/opt/hadoop/conf".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_STS_REGIONAL_ENDPOINTS", "regional".into()),
            ("AWS_ROLE_ARN", format!("arn:aws:iam::123456789012:role/spark-{team}")),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token".into()),
            ("JAVA_HOME", "/opt/java/openjdk".into()),
            ("PYSPARK_PYTHON", "/usr/bin/python3".into()),
            ("SPARK_ROLE", role.into()),
        ]
    };
    let (name, role, main, labels_extra, annotations, owner) = match executor {
        None => {
            let mut env = common_env("driver");
            env.extend([
                ("SPARK_DRIVER_MEMORY", "4g".to_string()),
                ("PYSPARK_DRIVER_PYTHON", "/usr/bin/python3".into()),
                ("SPARK_SUBMIT_OPTS", "-Dlog4j.configurationFile=/opt/spark/conf/log4j2.properties".into()),
            ]);
            let mut env = env_list(&env);
            env.as_array_mut().expect("a list").push(field_env("SPARK_DRIVER_BIND_ADDRESS", "status.podIP"));
            let main = json!({
                "name": "spark-kubernetes-driver",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": ["driver", "--properties-file", "/opt/spark/conf/spark.properties", "--class",
                         format!("com.example.{team}.jobs.Main"), "local:///opt/app/jobs-assembly-4.12.0.jar",
                         "--date", "2026-11-25", "--output", format!("s3a://example-warehouse/{team}/{app_name}/")],
                "env": env,
                "ports": [
                    {"name": "driver-rpc-port", "containerPort": 7078, "protocol": "TCP"},
                    {"name": "blockmanager", "containerPort": 7079, "protocol": "TCP"},
                    {"name": "spark-ui", "containerPort": 4040, "protocol": "TCP"},
                ],
                "resources": {"requests": {"cpu": "1", "memory": "4505Mi"}, "limits": {"cpu": "1", "memory": "4505Mi"}},
                "readinessProbe": {"httpGet": {"path": "/", "port": 4040, "scheme": "HTTP"}, "periodSeconds": 15},
                "volumeMounts": [
                    {"name": "spark-local-dir-1", "mountPath": local_dir},
                    {"name": "spark-conf-volume-driver", "mountPath": "/opt/spark/conf"},
                    {"name": "hadoop-properties", "mountPath": "/opt/hadoop/conf"},
                    token_mount(seed),
                ],
            });
            let annotations = json!({
                "muster.dev/min-executors": executors.to_string(),
                "muster.dev/executor-resources": r#"{"cpu":"2050m","memory":"9075Mi"}"#,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "4040",
                "prometheus.io/path": "/metrics/executors/prometheus",
                "example.com/spark-conf": spark_conf_annotation(app, executors),
            });
            let owner = json!({"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
                               "name": format!("{app_name}-{app}"), "uid": uuid(app as u64 + 404),
                               "controller": true, "blockOwnerDeletion": true});
            (driver_name.clone(), "driver", main, json!({}), annotations, owner)
        }
        Some(id) => {
            let mut env = common_env("executor");
            env.extend([
                ("SPARK_DRIVER_URL", format!("spark://CoarseGrainedScheduler@{driver_svc}:7078")),
                ("SPARK_EXECUTOR_CORES", "2".into()),
                ("SPARK_EXECUTOR_MEMORY", "8g".into()),
                ("SPARK_EXECUTOR_ID", id.to_string()),
                ("SPARK_RESOURCE_PROFILE_ID", "0".into()),
                ("SPARK_JAVA_OPT_0", "-Dspark.driver.port=7078".into()),
                ("SPARK_JAVA_OPT_1", "-Dspark.driver.blockManager.port=7079".into()),
            ]);
            let mut env = env_list(&env);
            let list = env.as_array_mut().expect("a list");
            list.push(field_env("SPARK_EXECUTOR_POD_IP", "status.podIP"));
            list.push(field_env("SPARK_EXECUTOR_POD_NAME", "metadata.name"));
            let main = json!({
                "name": "spark-kubernetes-executor",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": ["executor"],
                "env": env,
                "ports": [{"name": "blockmanager", "containerPort": 7079, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "2", "memory": "9011Mi"}, "limits": {"cpu": "2", "memory": "9011Mi"}},
                "volumeMounts": [
                    {"name": "spark-local-dir-1", "mountPath": local_dir},
                    {"name": "spark-conf-volume-exec", "mountPath": "/opt/spark/conf"},
                    {"name": "hadoop-properties", "mountPath": "/opt/hadoop/conf"},
                    token_mount(seed),
                ],
            });
            let annotations = json!({
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "7079",
                "prometheus.io/path": "/metrics/executors/prometheus",
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                "kubectl.kubernetes.io/default-container": "spark-kubernetes-executor",
            });
            let owner = json!({"apiVersion": "v1", "kind": "Pod", "name": driver_name, "uid": uuid(app as u64 + 505),
                               "controller": true});
            (
                format!("{prefix}-exec-{id}"),
                "executor",
                main,
                json!({"spark-exec-id": id.to_string(),
                "spark-exec-resourceprofile-id": "0"}),
                annotations,
                owner,
            )
        }
    };
    let mut labels = json!({
        "app": app_name,
        "spark-app-selector": app_id,
        "spark-app-name": app_name,
        "spark-role": role,
        "spark-version": "3.5.1",
        "team": team,
        "version": "4.12.0",
        "environment": "production",
        "cost-center": format!("cc-{}", 1000 + app % 37),
        "sparkoperator.k8s.io/app-name": format!("{app_name}-{app}"),
    });
    if let (Value::Object(l), Value::Object(extra)) = (&mut labels, labels_extra) {
        l.extend(extra);
    }
    let conf_volume = if executor.is_some() { "spark-conf-volume-exec" } else { "spark-conf-volume-driver" };
    let conf_map = format!("spark-{}-conf-map", if executor.is_some() { "exec" } else { "drv" });
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": {
            "schedulerName": "muster",
            "nodeName": node_name(plan.node),
            "serviceAccountName": "spark",
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "hostname": name,
            "subdomain": if executor.is_none() { Value::from(format!("{prefix}-driver-svc")) } else { Value::Null },
            "nodeSelector": {"pool": if executor.is_some() { "spark" } else { "general" }},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "spark", "effect": "NoSchedule"}],
            "securityContext": {"fsGroup": 185, "runAsUser": 185, "runAsNonRoot": true},
            "containers": [main, log_shipper(seed, &local_dir)],
            "volumes": [
                {"name": "spark-local-dir-1", "emptyDir": {}},
                {"name": conf_volume, "configMap": {"name": format!("{prefix}-{conf_map}"), "defaultMode": 420,
                    "items": [{"key": "spark.properties", "path": "spark.properties", "mode": 420}]}},
                {"name": "hadoop-properties", "configMap": {"name": "hadoop-conf", "defaultMode": 420}},
                {"name": "fluent-bit-config", "configMap": {"name": "fluent-bit-spark", "defaultMode": 420}},
                token_volume(seed),
            ],
        },
    });
    let status = running_status(plan, &pod);
    (namespace, name, pod, status)
}

fn service_pod(plan: &PodPlan) -> (String, String, Value, Value) {
    let d = plan.workload;
    let seed = plan.index as u64;
    let namespace = service_namespace(d);
    let deployment = deployment_name(d);
    let team = TEAMS[d % TEAMS.len()];
    let service = SERVICES[d % SERVICES.len()];
    let template_hash = hex(d as u64 + 606, 10);
    let name = format!("{deployment}-{template_hash}-{}", hex(seed + 707, 5));
    let version = format!("2026.{}.{}", 1 + d % 12, d % 30);
    let image = format!("{REGISTRY}/{team}/{service}:{version}");
    let (cpu, memory, limit_memory) = if is_cache(d) { ("1", "8Gi", "8Gi") } else { ("250m", "512Mi", "1Gi") };
    let mut env = env_list(&[
        ("SERVICE_NAME", deployment.clone()),
        ("ENVIRONMENT", if namespace.ends_with("-staging") { "staging" } else { "production" }.into()),
        ("LOG_LEVEL", "info".into()),
        ("LOG_FORMAT", "json".into()),
        ("HTTP_PORT", "8080".into()),
        ("METRICS_PORT", "9090".into()),
        ("DATABASE_HOST", format!("{team}-db.{namespace}.svc.cluster.local")),
        ("DATABASE_POOL_SIZE", "20".into()),
        ("REDIS_URL", "redis://redis.shared.svc.cluster.local:6379/0".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.observability.svc:4317".into()),
        ("OTEL_SERVICE_NAME", deployment.clone()),
        ("GOMAXPROCS", "2".into()),
        ("GOMEMLIMIT", "900MiB".into()),
        ("FEATURE_FLAGS_URL", "http://flags.platform.svc.cluster.local/v1".into()),
    ]);
    let list = env.as_array_mut().expect("a list");
    list.push(field_env("POD_NAME", "metadata.name"));
    list.push(field_env("POD_NAMESPACE", "metadata.namespace"));
    list.push(field_env("POD_IP", "status.podIP"));
    list.push(field_env("NODE_NAME", "spec.nodeName"));
    let app = json!({
        "name": service,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", "--config=/etc/app/config.yaml", "--http-addr=:8080", "--metrics-addr=:9090"],
        "env": env,
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": limit_memory}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                          "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"},
                           "periodSeconds": 5, "timeoutSeconds": 2},
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                         "periodSeconds": 2, "failureThreshold": 30},
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": true},
            {"name": "tmp", "mountPath": "/tmp"},
            token_mount(seed),
        ],
    });
    let proxy = json!({
        "name": "istio-proxy",
        "image": format!("{REGISTRY}/mesh/proxyv2:1.22.3"),
        "args": ["proxy", "sidecar", "--domain", format!("{namespace}.svc.cluster.local"), "--proxyLogLevel=warning",
                 "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
        "env": env_list(&[
            ("PILOT_CERT_PROVIDER", "istiod".into()),
            ("CA_ADDR", "istiod.istio-system.svc:15012".into()),
            ("ISTIO_META_APP_CONTAINERS", service.into()),
            ("ISTIO_META_CLUSTER_ID", "Kubernetes".into()),
            ("ISTIO_META_INTERCEPTION_MODE", "REDIRECT".into()),
            ("ISTIO_META_WORKLOAD_NAME", deployment.clone()),
            ("ISTIO_META_OWNER", format!("kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{deployment}")),
            ("ISTIO_META_MESH_ID", "cluster.local".into()),
            ("TRUST_DOMAIN", "cluster.local".into()),
            ("PROXY_CONFIG", "{}".into()),
        ]),
        "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                           "initialDelaySeconds": 1, "periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 30},
        "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": true,
                            "allowPrivilegeEscalation": false},
        "volumeMounts": [
            {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
            {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
            {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
            token_mount(seed),
        ],
    });
    let mut containers = vec![app, proxy];
    if d.is_multiple_of(3) {
        containers.push(json!({
            "name": "config-reloader",
            "image": format!("{REGISTRY}/platform/config-reloader:0.14.2"),
            "args": ["--watch-dir=/etc/app", "--webhook-url=http://127.0.0.1:8080/-/reload"],
            "env": env_list(&[("RELOAD_INTERVAL", "30s".into()), ("LOG_LEVEL", "warn".into())]),
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}],
        }));
    }
    let mut annotations = json!({
        "kubectl.kubernetes.io/default-container": service,
        "kubectl.kubernetes.io/restartedAt": "2026-11-20T09:14:03Z",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "checksum/config": hex(d as u64 + 808, 64),
        "sidecar.istio.io/status": json!({"initContainers": ["istio-init"], "containers": ["istio-proxy"],
            "volumes": ["workload-socket", "istio-envoy", "istio-data", "istio-podinfo", "istiod-ca-cert"],
            "imagePullSecrets": null, "revision": "default"}).to_string(),
    });
    if d.is_multiple_of(4) {
        annotations["example.com/runtime-config"] = Value::from(runtime_config_annotation(d));
    }
    let tolerations = if is_cache(d) {
        json!([{"key": "workload", "operator": "Equal", "value": "memory", "effect": "NoSchedule"}])
    } else {
        Value::Null
    };
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generateName": format!("{deployment}-{template_hash}-"),
            "labels": {
                "app": deployment,
                "app.kubernetes.io/name": service,
                "app.kubernetes.io/instance": deployment,
                "app.kubernetes.io/version": version,
                "app.kubernetes.io/component": if is_cache(d) { "cache" } else { "server" },
                "app.kubernetes.io/part-of": team,
                "app.kubernetes.io/managed-by": "Helm",
                "helm.sh/chart": format!("{service}-{}.{}.0", 1 + d % 4, d % 10),
                "pod-template-hash": template_hash,
                "team": team,
                "version": version,
                "security.istio.io/tlsMode": "istio",
                "service.istio.io/canonical-name": deployment,
                "service.istio.io/canonical-revision": version,
            },
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{deployment}-{template_hash}"), "uid": uuid(d as u64 + 909),
                "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "nodeName": node_name(plan.node),
            "serviceAccountName": team,
            "terminationGracePeriodSeconds": 45,
            "tolerations": tolerations,
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {"matchLabels": {"app": deployment}}}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": deployment}}}],
            "initContainers": [{
                "name": "istio-init",
                "image": format!("{REGISTRY}/mesh/proxyv2:1.22.3"),
                "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
                         "-x", "", "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                                    "runAsUser": 0, "runAsNonRoot": false},
            }],
            "containers": containers,
            "volumes": [
                {"name": "config", "configMap": {"name": format!("{deployment}-config"), "defaultMode": 420}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                {"name": "workload-socket", "emptyDir": {}},
                {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
                {"name": "istio-data", "emptyDir": {}},
                {"name": "istio-podinfo", "downwardAPI": {"defaultMode": 420, "items": [
                    {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"}}]}},
                {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert", "defaultMode": 420}},
                token_volume(seed),
            ],
        },
    });
    let status = running_status(plan, &pod);
    (namespace, name, pod, status)
}

/// What a kubelet writes once the pod runs: its conditions, IPs and a status per container of `pod`'s spec.
fn running_status(plan: &PodPlan, pod: &Value) -> Value {
    let started = timestamp(Duration::from_secs(600 + (plan.index as u64 % 3000)));
    let condition =
        |type_: &str| json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": started});
    let seed = plan.index as u64 * 16;
    let containers = |list: &str| -> Vec<(String, String)> {
        let list = pod["spec"][list].as_array().cloned().unwrap_or_default();
        list.iter()
            .map(|c| (c["name"].as_str().unwrap_or("").to_string(), c["image"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    let ids = |k: u64, image: &str| {
        let repository = image.rsplit_once(':').map_or(image, |(repository, _)| repository);
        (
            format!("{repository}@sha256:{}", hex(seed + 2 * k, 64)),
            format!("containerd://{}", hex(seed + 2 * k + 1, 64)),
        )
    };
    let statuses: Vec<Value> = containers("containers")
        .iter()
        .enumerate()
        .map(|(k, (name, image))| {
            let (image_id, container_id) = ids(k as u64, image);
            json!({
                "name": name,
                "state": {"running": {"startedAt": started}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "started": true,
                "image": image,
                "imageID": image_id,
                "containerID": container_id,
            })
        })
        .collect();
    let init_statuses: Vec<Value> = containers("initContainers")
        .iter()
        .enumerate()
        .map(|(k, (name, image))| {
            let (image_id, container_id) = ids(k as u64 + 4, image);
            json!({
                "name": name,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                         "finishedAt": started, "containerID": container_id}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "started": false,
                "image": image,
                "imageID": image_id,
                "containerID": container_id,
            })
        })
        .collect();
    let n = plan.index + 4096;
    let pod_ip = format!("100.{}.{}.{}", 64 + (n >> 16), (n >> 8) & 255, n & 255);
    let host_ip = node_ip(plan.node);
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers"),
            condition("Initialized"),
            condition("Ready"),
            condition("ContainersReady"),
            condition("PodScheduled"),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "containerStatuses": statuses,
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = Value::Array(init_statuses);
    }
    json!({"status": status})
}

// ----- raw requests -----

/// One request whose answer is not decoded, retried a few times on a transient failure (a dropped connection, an
/// overloaded API server). `Ok(None)` when the API server answers with `tolerate` (an AlreadyExists after a
/// create that did land before its answer was lost).
async fn send(
    client: &Client,
    method: http::Method,
    path: &str,
    content_type: &str,
    body: &[u8],
    tolerate: Option<u16>,
) -> Result<Option<String>, String> {
    let mut last = String::new();
    for attempt in 0..6u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        let request = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, "application/json")
            .body(body.to_vec())
            .expect("a valid request");
        match client.request_text(request).await {
            Ok(text) => return Ok(Some(text)),
            Err(kube::Error::Api(e)) if Some(e.code) == tolerate && attempt > 0 => return Ok(None),
            Err(kube::Error::Api(e)) if e.code != 429 && e.code < 500 => return Err(format!("{path}: {e}")),
            Err(e) => last = format!("{path}: {e}"),
        }
    }
    Err(last)
}

/// Counters of the fill, shared with the progress reporter.
#[derive(Default)]
struct Fill {
    created: AtomicU64,
    status_written: AtomicU64,
    body_bytes: AtomicU64,
    aborted: AtomicBool,
}

async fn create_pods(client: &Client, plans: &[PodPlan], concurrency: usize, running: bool, fill: &Arc<Fill>) {
    futures::stream::iter(plans.iter().map(|plan| {
        let (client, fill) = (client.clone(), fill.clone());
        async move {
            if fill.aborted.load(Ordering::Relaxed) {
                return;
            }
            let (namespace, name, pod, status) = pod_objects(plan);
            let body = serde_json::to_vec(&pod).expect("a pod serialises");
            fill.body_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            let path = format!("/api/v1/namespaces/{namespace}/pods");
            send(&client, http::Method::POST, &path, "application/json", &body, Some(409))
                .await
                .unwrap_or_else(|e| panic!("cannot create pod {namespace}/{name}: {e}"));
            fill.created.fetch_add(1, Ordering::Relaxed);
            if running {
                let body = serde_json::to_vec(&status).expect("a status serialises");
                let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
                send(&client, http::Method::PATCH, &path, "application/merge-patch+json", &body, None)
                    .await
                    .unwrap_or_else(|e| panic!("cannot write the status of pod {namespace}/{name}: {e}"));
                fill.status_written.fetch_add(1, Ordering::Relaxed);
            }
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<()>>()
    .await;
}

// ----- the processes measured -----

/// /proc/<pid>/status and stat of one process.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    rss: u64,
    hwm: u64,
    cpu: f64,
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_default();
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0) * 1024
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcSample { rss: kib("VmRSS:"), hwm: kib("VmHWM:"), cpu: stat_cpu_seconds(&stat) })
}

/// The `muster` child of this process (the running `muster serve`): its pid, found by parent and command name.
fn muster_child() -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (head, tail) = stat.rsplit_once(')')?;
        let mut fields = tail.split_whitespace();
        let (state, ppid) = (fields.next()?, fields.next()?);
        (head.ends_with("(muster") && ppid == me && state != "Z").then_some(pid)
    })
}

/// Samples the `muster` child every 100 ms from before it is spawned until stopped: VmRSS over time.
struct Tracer {
    samples: Arc<Mutex<Vec<(Duration, ProcSample)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracer {
    fn start(started: Instant, exclude: Option<u32>) -> Tracer {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut pid = None;
            while !st.load(Ordering::Relaxed) {
                if pid.is_none() {
                    pid = muster_child().filter(|p| Some(*p) != exclude);
                }
                if let Some(sample) = pid.and_then(proc_sample) {
                    s.lock().expect("not poisoned").push((started.elapsed(), sample));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Tracer { samples, stop, task }
    }

    async fn finish(self) -> Vec<(Duration, ProcSample)> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().expect("not poisoned"))
    }
}

/// The RSS trace in a line: one value per second or so (MiB).
fn trace_line(trace: &[(Duration, ProcSample)]) -> String {
    let mut line = Vec::new();
    let mut next = Duration::ZERO;
    for (at, sample) in trace {
        if *at >= next {
            line.push(format!("{:.0}s:{:.0}", at.as_secs_f64(), sample.rss as f64 / MIB));
            next = *at + Duration::from_secs(2);
        }
    }
    line.join(" ")
}

/// From muster's log: seconds from `spawned` to each "initial list applied" line, by kind, and to "cache synced".
fn log_milestones(log: &str, spawned: Timestamp) -> Vec<(String, f64, String)> {
    let mut milestones = Vec::new();
    for line in log.lines() {
        let Some(at) = line.split_whitespace().next().and_then(|t| t.parse::<Timestamp>().ok()) else { continue };
        let secs = at.duration_since(spawned).as_secs_f64();
        let field = |key: &str| {
            line.split(&format!("{key}=")).nth(1).and_then(|v| v.split_whitespace().next()).map(|v| v.trim_matches('"'))
        };
        if line.contains("initial list applied") {
            let kind = field("kind").unwrap_or("?").to_string();
            milestones.push((kind, secs, field("objects").unwrap_or("?").to_string()));
        } else if line.contains("cache synced") {
            milestones.push(("synced".into(), secs, String::new()));
        } else if line.contains("serving") && line.contains("listen") {
            milestones.push(("serving".into(), secs, String::new()));
        }
    }
    milestones
}

/// The control plane's processes, found by the directory in their command lines.
struct ControlPlaneProcesses {
    apiserver: String,
    etcd: String,
    etcd_db: std::path::PathBuf,
}

impl ControlPlaneProcesses {
    fn of(control_plane: &ControlPlane) -> ControlPlaneProcesses {
        let dir = control_plane.dir();
        ControlPlaneProcesses {
            apiserver: format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            etcd: format!("--data-dir={}", dir.join("etcd-data").display()),
            etcd_db: dir.join("etcd-data/member/snap/db"),
        }
    }

    fn describe(&self) -> String {
        format!(
            "kube-apiserver {:.0} MiB, etcd {:.0} MiB resident (etcd database file {:.0} MiB); machine memory available {:.1} GiB",
            process_rss_bytes(&self.apiserver) as f64 / MIB,
            process_rss_bytes(&self.etcd) as f64 / MIB,
            std::fs::metadata(&self.etcd_db).map(|m| m.len()).unwrap_or(0) as f64 / MIB,
            mem_available_bytes() as f64 / (1024.0 * MIB),
        )
    }
}

// ----- one start of muster -----

struct StartResult {
    label: String,
    ready: Duration,
    milestones: Vec<(String, f64, String)>,
    at_ready: ProcSample,
    settled: Option<(Duration, ProcSample)>,
    peak_rss_traced: u64,
    cached: [f64; 3],
    apiserver_cpu: f64,
    apiserver_rss: u64,
    etcd_rss: u64,
    podgroups: usize,
    load_average: String,
    trace: Vec<(Duration, ProcSample)>,
}

/// muster's own writes (PodGroups and status) still waiting or in flight.
async fn action_queue_depth(muster: &MusterServe) -> f64 {
    match muster.try_get("/metrics").await {
        Ok((200, text)) => prometheus_sample(&text, "muster_action_queue_depth", ""),
        _ => f64::NAN,
    }
}

async fn count_podgroups(client: &Client) -> usize {
    Api::<PodGroup>::all(client.clone()).list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0)
}

/// Starts muster (or restarts it, when `existing` is given) and measures its sync.
async fn measure_start(
    label: &str,
    control_plane: &ControlPlane,
    existing: Option<&mut MusterServe>,
    processes: &ControlPlaneProcesses,
    expected: (usize, usize),
) -> (Option<MusterServe>, StartResult) {
    let client = control_plane.client();
    let apiserver_cpu_before = process_cpu_seconds(&processes.apiserver);
    let spawned = Timestamp::now();
    let started = Instant::now();
    let previous = existing.as_ref().map(|m| m.pid());
    let tracer = Tracer::start(started, previous);
    let mut fresh = None;
    // Started as a "standby" (the fixture then waits only for /healthz, which answers as soon as the HTTP server
    // is up), so that the wait for /readyz below, not the fixture's 90 s start timeout, bounds the sync.
    let muster: &mut MusterServe = match existing {
        Some(m) => {
            m.kill9();
            m.restart_standby().await;
            m
        }
        None => {
            let options = ServeOptions { addrs: Some(Listeners::free()), standby: true, ..ServeOptions::default() };
            fresh = Some(MusterServe::start_with(control_plane, &MusterConfig::default(), options).await);
            fresh.as_mut().expect("just started")
        }
    };
    loop {
        if let Ok((200, _)) = muster.readyz().await {
            break;
        }
        if !muster.is_running() || started.elapsed() > READY_TIMEOUT {
            panic!("muster serve did not become ready within {READY_TIMEOUT:?}; log tail:\n{}", muster.log_tail(40));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = started.elapsed();
    let at_ready = proc_sample(muster.pid()).unwrap_or_default();
    let metrics = muster.metrics().await;
    let cached = ["nodes", "pods", "gangs"]
        .map(|kind| prometheus_sample(&metrics, "muster_cache_objects", &format!("kind=\"{kind}\"")));
    if cached[0] as usize != expected.0 || cached[1] as usize != expected.1 {
        println!(
            "  NOTE: at ready muster's model holds {} nodes and {} pods, not {} and {}",
            cached[0], cached[1], expected.0, expected.1
        );
    }
    // Settled: none of muster's own writes waiting or in flight for 3 s in a row (a first start creates every
    // Spark application's PodGroup and writes its status).
    let mut quiet_since: Option<Instant> = None;
    let mut settled = None;
    while started.elapsed() < ready + Duration::from_secs(300) {
        let depth = action_queue_depth(muster).await;
        if depth == 0.0 {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(3) {
                settled = Some((since.duration_since(started), proc_sample(muster.pid()).unwrap_or_default()));
                break;
            }
        } else {
            quiet_since = None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let trace = tracer.finish().await;
    let milestones = log_milestones(&muster.log(), spawned);
    let result = StartResult {
        label: label.to_string(),
        ready,
        milestones,
        at_ready,
        settled,
        peak_rss_traced: trace.iter().map(|(_, s)| s.rss).max().unwrap_or(0),
        cached,
        apiserver_cpu: process_cpu_seconds(&processes.apiserver) - apiserver_cpu_before,
        apiserver_rss: process_rss_bytes(&processes.apiserver),
        etcd_rss: process_rss_bytes(&processes.etcd),
        podgroups: count_podgroups(&client).await,
        load_average: load_average(),
        trace,
    };
    (fresh, result)
}

fn print_results(results: &[StartResult]) {
    let mib = |b: u64| b as f64 / MIB;
    let milestone = |r: &StartResult, kind: &str| {
        r.milestones.iter().find(|(k, _, _)| k == kind).map_or("-".to_string(), |(_, s, _)| format!("{s:.1}"))
    };
    println!(
        "| {:<22} | {:>7} | {:>7} | {:>7} | {:>7} | {:>7} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>18} | {:>9} | {:>9} | {:>14} |",
        "muster serve start",
        "serving",
        "nodes",
        "pods",
        "ready",
        "CPU s",
        "RSS ready",
        "HWM ready",
        "settled",
        "CPU s",
        "RSS",
        "HWM",
        "PodGroups",
        "model nodes/pods/gangs",
        "apisrv s",
        "apisrv MiB",
        "load avg"
    );
    println!(
        "|{}|--------:|--------:|--------:|--------:|--------:|----------:|----------:|----------:|----------:|----------:|----------:|----------:|-------------------:|----------:|-----------:|---------------:|",
        "-".repeat(24)
    );
    for r in results {
        let (settled_at, settled) =
            r.settled.map_or(("-".to_string(), None), |(d, s)| (format!("{:.1}", d.as_secs_f64()), Some(s)));
        println!(
            "| {:<22} | {:>7} | {:>7} | {:>7} | {:>7.1} | {:>7.1} | {:>9.0} | {:>9.0} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>18} | {:>9.1} | {:>10.0} | {:>14} |",
            r.label,
            milestone(r, "serving"),
            milestone(r, "nodes"),
            milestone(r, "pods"),
            r.ready.as_secs_f64(),
            r.at_ready.cpu,
            mib(r.at_ready.rss),
            mib(r.at_ready.hwm),
            settled_at,
            settled.map_or("-".to_string(), |s| format!("{:.1}", s.cpu)),
            settled.map_or("-".to_string(), |s| format!("{:.0}", mib(s.rss))),
            settled.map_or("-".to_string(), |s| format!("{:.0}", mib(s.hwm))),
            r.podgroups,
            format!("{:.0}/{:.0}/{:.0}", r.cached[0], r.cached[1], r.cached[2]),
            r.apiserver_cpu,
            mib(r.apiserver_rss),
            r.load_average,
        );
    }
    println!();
    println!(
        "(seconds from spawning the process: `serving` = HTTP listener up, `nodes`/`pods` = that kind's initial list \
         applied (muster's log), `ready` = /readyz 200, `settled` = no write of muster's waiting or in flight for 3 s; \
         CPU = muster's utime+stime so far; RSS/HWM = VmRSS/VmHWM in MiB; apisrv s = kube-apiserver CPU seconds from \
         spawn to settled; apisrv MiB = its VmRSS then)"
    );
    for r in results {
        println!(
            "{}: peak VmRSS traced {:.0} MiB; etcd {:.0} MiB; VmRSS every 2 s (s:MiB): {}",
            r.label,
            mib(r.peak_rss_traced),
            mib(r.etcd_rss),
            trace_line(&r.trace)
        );
        let lists: Vec<String> = r
            .milestones
            .iter()
            .filter(|(_, _, n)| !n.is_empty())
            .map(|(k, s, n)| format!("{k} {n} at {s:.1} s"))
            .collect();
        println!("  initial lists applied: {}", lists.join(", "));
    }
}

// ----- the benchmark -----

async fn bench() {
    let node_count = env_or("MUSTER_BENCH_NODES", 10_000) as usize;
    let pod_count = env_or("MUSTER_BENCH_PODS", 100_000) as usize;
    let concurrency = env_or("MUSTER_BENCH_CONCURRENCY", 64) as usize;
    let restarts = env_or("MUSTER_BENCH_RESTARTS", 1) as usize;
    let hold = Duration::from_secs(env_or("MUSTER_BENCH_HOLD_S", 0));
    let running = std::env::var("MUSTER_BENCH_POD_STATUS").as_deref() != Ok("pending");
    println!(
        "watch_scale: {node_count} nodes, {pod_count} pods ({}), {concurrency} requests in flight; load average at the \
         start {}",
        if running { "Running: status written" } else { "Pending, bound" },
        load_average()
    );

    let control_plane = ControlPlane::start().await;
    let client = control_plane.client();
    let processes = ControlPlaneProcesses::of(&control_plane);
    install_crds(&client).await;
    for namespace in namespaces() {
        control_plane.create_namespace(&namespace).await;
    }

    // Nodes.
    let started = Instant::now();
    let node_bytes = Arc::new(AtomicU64::new(0));
    futures::stream::iter((0..node_count).map(|i| {
        let (client, node_bytes) = (client.clone(), node_bytes.clone());
        async move {
            let body = serde_json::to_vec(&node_object(i)).expect("a node serialises");
            node_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            send(&client, http::Method::POST, "/api/v1/nodes", "application/json", &body, Some(409))
                .await
                .unwrap_or_else(|e| panic!("cannot create node {i}: {e}"));
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<()>>()
    .await;
    let took = started.elapsed();
    println!(
        "created {node_count} Nodes in {:.1} s ({:.0}/s; {:.0} bytes each as sent)",
        took.as_secs_f64(),
        node_count as f64 / took.as_secs_f64(),
        node_bytes.load(Ordering::Relaxed) as f64 / node_count.max(1) as f64
    );

    // Pods, with a progress line every 30 s (and a stop if the machine runs short of memory).
    let plans = plan_pods(pod_count, node_count.max(1));
    let apps = plans.iter().filter(|p| matches!(p.role, Role::Driver { .. })).count();
    let spark_pods = plans.iter().filter(|p| !matches!(p.role, Role::Replica)).count();
    let deployments = plans.iter().filter(|p| matches!(p.role, Role::Replica)).map(|p| p.workload).max();
    println!(
        "pods: {spark_pods} of {apps} Spark applications (schedulerName muster) and {} replicas of {} Deployments \
         (default-scheduler), in {} namespaces",
        pod_count - spark_pods,
        deployments.map_or(0, |d| d + 1),
        namespaces().len()
    );
    let fill = Arc::new(Fill::default());
    let (cpu_client_before, cpu_apiserver_before, cpu_etcd_before) =
        (self_cpu_seconds(), process_cpu_seconds(&processes.apiserver), process_cpu_seconds(&processes.etcd));
    let started = Instant::now();
    let reporter = {
        let fill = fill.clone();
        let apiserver = processes.apiserver.clone();
        let etcd = processes.etcd.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let available = mem_available_bytes();
                let created = fill.created.load(Ordering::Relaxed);
                println!(
                    "  {:>5.0} s: {created} pods created, {} statuses written ({:.0} pods/s); kube-apiserver {:.0} MiB, \
                     etcd {:.0} MiB; memory available {:.1} GiB; load {}",
                    started.elapsed().as_secs_f64(),
                    fill.status_written.load(Ordering::Relaxed),
                    created as f64 / started.elapsed().as_secs_f64(),
                    process_rss_bytes(&apiserver) as f64 / MIB,
                    process_rss_bytes(&etcd) as f64 / MIB,
                    available as f64 / (1024.0 * MIB),
                    load_average()
                );
                if available < 1024 * 1024 * 1024 {
                    println!("  STOPPING the fill: the machine has less than 1 GiB of memory available");
                    fill.aborted.store(true, Ordering::Relaxed);
                }
            }
        })
    };
    create_pods(&client, &plans, concurrency, running, &fill).await;
    reporter.abort();
    assert!(!fill.aborted.load(Ordering::Relaxed), "the fill was stopped: the machine ran short of memory");
    let took = started.elapsed();
    println!(
        "created {pod_count} pods{} in {:.1} s ({:.0} pods/s, {concurrency} in flight); CPU seconds: this process {:.0}, \
         kube-apiserver {:.0}, etcd {:.0}; {:.0} bytes per pod as sent",
        if running { " and wrote their Running status" } else { "" },
        took.as_secs_f64(),
        pod_count as f64 / took.as_secs_f64(),
        self_cpu_seconds() - cpu_client_before,
        process_cpu_seconds(&processes.apiserver) - cpu_apiserver_before,
        process_cpu_seconds(&processes.etcd) - cpu_etcd_before,
        fill.body_bytes.load(Ordering::Relaxed) as f64 / pod_count.max(1) as f64
    );
    println!("after the fill: {}", processes.describe());

    // The objects as muster receives them: JSON as the API server serves them (managedFields and status
    // included), one of each shape and the mean over a page of every kind.
    let get = |path: String| {
        let client = client.clone();
        async move { send(&client, http::Method::GET, &path, "application/json", &[], None).await.ok().flatten() }
    };
    let mut shapes = Vec::new();
    for role in ["driver", "executor", "replica"] {
        let Some(plan) = plans.iter().find(|p| match p.role {
            Role::Driver { .. } => role == "driver",
            Role::Executor { .. } => role == "executor",
            Role::Replica => role == "replica",
        }) else {
            continue;
        };
        let (namespace, name, _, _) = pod_objects(plan);
        if let Some(text) = get(format!("/api/v1/namespaces/{namespace}/pods/{name}")).await {
            shapes.push(format!("{role} {} B", text.len()));
        }
    }
    let mean_of = |text: Option<String>| {
        let text = text.unwrap_or_default();
        let items = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["items"].as_array().map(Vec::len))
            .unwrap_or(0)
            .max(1);
        text.len() / items
    };
    let pod_mean = mean_of(get("/api/v1/pods?limit=500".into()).await);
    let node_mean = mean_of(get("/api/v1/nodes?limit=500".into()).await);
    println!(
        "objects as served (JSON): pods {} (mean over the first 500 listed: {pod_mean} B); nodes: mean {node_mean} B",
        shapes.join(", ")
    );

    // muster: a first start, then warm restarts.
    println!();
    let expected = (node_count, pod_count);
    let mut results = Vec::new();
    let (muster, first) = measure_start("first start", &control_plane, None, &processes, expected).await;
    let mut muster = muster.expect("a first start returns its process");
    println!("first start measured (ready after {:.1} s)", first.ready.as_secs_f64());
    results.push(first);
    for n in 1..=restarts {
        let label = format!("restart {n} (after kill -9)");
        let (_, result) = measure_start(&label, &control_plane, Some(&mut muster), &processes, expected).await;
        println!("{label} measured (ready after {:.1} s)", result.ready.as_secs_f64());
        results.push(result);
    }
    println!();
    print_results(&results);
    println!();
    println!("at the end: {}; load average {}", processes.describe(), load_average());

    if !hold.is_zero() {
        drop(muster);
        println!(
            "holding the control plane for {hold:?}: KUBECONFIG={} (muster stopped; start your own against it)",
            control_plane.kubeconfig().display()
        );
        tokio::time::sleep(hold).await;
    }
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: this one needs minutes and a control plane.
    if !std::env::args().any(|a| a == "--bench") {
        println!("watch_scale: a benchmark; run it with `cargo bench --bench watch_scale`");
        return;
    }
    // 100,000 Running pods take about 2.5 GB in etcd (two revisions each until kube-apiserver compacts, every 5
    // minutes), over etcd's default 2 GiB quota; etcd reads any flag from ETCD_<FLAG>, and the control plane's
    // etcd inherits this process's environment. 8 GiB is the largest quota etcd recommends.
    if std::env::var_os("ETCD_QUOTA_BACKEND_BYTES").is_none() {
        // SAFETY: no other thread exists yet (the runtime is built below), so nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var("ETCD_QUOTA_BACKEND_BYTES", (8u64 << 30).to_string()) };
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(bench());
}
