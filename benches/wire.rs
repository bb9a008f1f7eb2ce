//! Decoding the body of a filter or prioritize call (`ExtenderArgs`) as a nodeCacheCapable kube-scheduler sends
//! it: a pending Spark executor pod, marshalled the way kube-scheduler's informer holds it (no TypeMeta, no
//! managedFields, defaults filled in by admission), `Nodes: null`, and 100 or 5,000 `NodeNames` such as
//! `ip-10-0-12-34.ec2.internal`. Each iteration decodes a different body (its own pod, its own selection and
//! order of names out of a 6,000-node cluster) from a pool bigger than the caches that matter.
//!
//! - muster: `wire::decode::<ExtenderArgs>`, what the extender runs (names borrowed, Go's key matching).
//! - borrowed / owned: the same three fields with plain serde derives and exact keys, the names as muster's
//!   borrowing `NodeNames` or as `Vec<String>`; their difference is what borrowing saves.
//!
//! A paired probe printed first alternates the three forms in short rounds, for a ratio that a noisy machine
//! moves less than criterion's separate medians.
//!
//! Run: `flock /tmp/muster-bench.lock cargo bench --bench wire -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use k8s_openapi::api::core::v1::Pod;
use muster::extender::wire::{ExtenderArgs, NodeList, NodeNames, decode};
use serde::Deserialize;
use serde_json::{Value, json};

/// Nodes in the cluster the names are drawn from.
const CLUSTER: usize = 6_000;

#[derive(Deserialize)]
struct BorrowedArgs<'a> {
    #[serde(rename = "Pod")]
    pod: Pod,
    #[serde(rename = "Nodes")]
    nodes: Option<NodeList>,
    #[serde(rename = "NodeNames", borrow)]
    node_names: Option<NodeNames<'a>>,
}

#[derive(Deserialize)]
struct OwnedArgs {
    #[serde(rename = "Pod")]
    pod: Pod,
    #[serde(rename = "Nodes")]
    nodes: Option<NodeList>,
    #[serde(rename = "NodeNames")]
    node_names: Option<Vec<String>>,
}

/// xorshift64*: deterministic, so every run decodes the same bodies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// EC2-style private DNS names of the cluster's nodes, spread over the 10.0.0.0/16 VPC.
fn cluster_names() -> Vec<String> {
    (0..CLUSTER).map(|i| format!("ip-10-0-{}-{}.ec2.internal", (i * 7) % 256, 4 + (i * 13) % 250)).collect()
}

fn random_uid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next(), rng.next());
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        a & 0xffff,
        (a >> 16) & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Executor `exec` of Spark application `app`, as kube-scheduler marshals it from its informer cache.
fn executor_pod(app: &str, exec: usize, rng: &mut Rng) -> Value {
    let name = format!("{app}-exec-{exec}");
    let uid = random_uid(rng);
    let app_id = format!("spark-{:032x}", u128::from(rng.next()) << 64 | u128::from(rng.next()));
    let driver = format!("{app}-driver");
    json!({
        "metadata": {
            "name": name,
            "namespace": "spark-jobs",
            "uid": uid,
            "resourceVersion": (40_000_000 + rng.below(1_000_000)).to_string(),
            "creationTimestamp": format!("2026-12-02T18:{:02}:{:02}Z", rng.below(60), rng.below(60)),
            "labels": {
                "spark-app-name": app,
                "spark-app-selector": app_id,
                "spark-exec-id": exec.to_string(),
                "spark-exec-resourceprofile-id": "0",
                "spark-role": "executor",
                "spark-version": "3.5.1",
                "muster.dev/pod-group": app
            },
            "annotations": {"muster.dev/queue": "team-analytics"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": driver, "uid": random_uid(rng),
                                 "controller": true}]
        },
        "spec": {
            "volumes": [
                {"name": "spark-local-dir-1", "emptyDir": {}},
                {"name": "spark-conf-volume-exec", "configMap": {"name": format!("{app}-exec-conf-map"),
                    "items": [{"key": "spark-env.sh", "path": "spark-env.sh", "mode": 420}], "defaultMode": 420}},
                {"name": format!("kube-api-access-{:05x}", rng.next() & 0xfffff), "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ], "defaultMode": 420}}
            ],
            "containers": [{
                "name": "spark-kubernetes-executor",
                "image": "apache/spark:3.5.1-scala2.12-java17-python3-ubuntu",
                "args": ["executor"],
                "ports": [{"name": "blockmanager", "containerPort": 7079, "protocol": "TCP"}],
                "env": [
                    {"name": "SPARK_USER", "value": "spark"},
                    {"name": "SPARK_DRIVER_URL",
                     "value": format!("spark://CoarseGrainedScheduler@{driver}-svc.spark-jobs.svc:7078")},
                    {"name": "SPARK_EXECUTOR_CORES", "value": "4"},
                    {"name": "SPARK_EXECUTOR_MEMORY", "value": "14g"},
                    {"name": "SPARK_APPLICATION_ID", "value": app_id},
                    {"name": "SPARK_CONF_DIR", "value": "/opt/spark/conf"},
                    {"name": "SPARK_EXECUTOR_ID", "value": exec.to_string()},
                    {"name": "SPARK_RESOURCE_PROFILE_ID", "value": "0"},
                    {"name": "SPARK_EXECUTOR_POD_IP",
                     "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                    {"name": "SPARK_EXECUTOR_POD_NAME",
                     "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "SPARK_JAVA_OPT_0", "value": "-Djava.net.preferIPv6Addresses=false"},
                    {"name": "SPARK_JAVA_OPT_1", "value": "-Dspark.driver.port=7078"},
                    {"name": "SPARK_JAVA_OPT_2", "value": "-Dspark.driver.blockManager.port=7079"},
                    {"name": "SPARK_LOCAL_DIRS", "value": "/var/data/spark-local-dir-1"}
                ],
                "resources": {"limits": {"memory": "16793Mi"}, "requests": {"cpu": "4", "memory": "16793Mi"}},
                "volumeMounts": [
                    {"name": "spark-local-dir-1", "mountPath": "/var/data/spark-local-dir-1"},
                    {"name": "spark-conf-volume-exec", "mountPath": "/opt/spark/conf"},
                    {"name": "kube-api-access", "readOnly": true,
                     "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                ],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"karpenter.sh/capacity-type": "spot", "pool": "spark"},
            "serviceAccountName": "spark",
            "serviceAccount": "spark",
            "hostname": name,
            "securityContext": {},
            "schedulerName": "muster",
            "tolerations": [
                {"key": "workload", "operator": "Equal", "value": "spark-executor", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": null,
                            "lastTransitionTime": "2026-12-02T18:40:02Z", "reason": "Unschedulable",
                            "message": "0/6000 nodes are available: gang spark-jobs/etl is waiting for capacity."}],
            "qosClass": "Burstable"
        }
    })
}

/// `count` distinct request bodies, each naming `names` nodes of the cluster in its own order.
fn bodies(count: usize, names: usize) -> Vec<Vec<u8>> {
    let cluster = cluster_names();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ names as u64);
    (0..count)
        .map(|i| {
            let mut order: Vec<usize> = (0..CLUSTER).collect();
            for k in 0..names {
                let j = k + rng.below(CLUSTER - k);
                order.swap(k, j);
            }
            let node_names: Vec<&str> = order[..names].iter().map(|&n| cluster[n].as_str()).collect();
            let pod = executor_pod(&format!("etl-{:08x}", rng.next() as u32), 1 + i % 64, &mut rng);
            serde_json::to_vec(&json!({"Pod": pod, "Nodes": null, "NodeNames": node_names})).unwrap()
        })
        .collect()
}

/// Every body decodes the same way in all three forms, with every name where it should be.
fn check(bodies: &[Vec<u8>], names: usize) {
    for body in bodies {
        let muster: ExtenderArgs = decode(body).unwrap();
        let borrowed: BorrowedArgs = serde_json::from_slice(body).unwrap();
        let owned: OwnedArgs = serde_json::from_slice(body).unwrap();
        assert!(muster.nodes.is_none() && borrowed.nodes.is_none() && owned.nodes.is_none());
        assert_eq!(muster.pod, borrowed.pod);
        assert_eq!(muster.pod, owned.pod);
        let (muster, borrowed, owned) =
            (muster.node_names.unwrap(), borrowed.node_names.unwrap(), owned.node_names.unwrap());
        assert_eq!(muster.len(), names);
        assert!(muster.iter().zip(&*borrowed).zip(&owned).all(|((m, b), o)| m == b && m == o));
    }
}

fn decode_muster(body: &[u8]) {
    black_box(decode::<ExtenderArgs>(black_box(body)).unwrap());
}

fn decode_borrowed(body: &[u8]) {
    black_box(serde_json::from_slice::<BorrowedArgs>(black_box(body)).unwrap());
}

fn decode_owned(body: &[u8]) {
    black_box(serde_json::from_slice::<OwnedArgs>(black_box(body)).unwrap());
}

/// A decoding form: its name and a function that decodes one body and drops the result.
type Form = (&'static str, fn(&[u8]));

const FORMS: [Form; 3] = [("muster", decode_muster), ("borrowed", decode_borrowed), ("owned", decode_owned)];

/// 100 and 5,000 names: (names, distinct bodies). 5,000 names make a body of about 150 kB: 32 of them (about
/// 5 MB) outrun the caches.
const SIZES: [(usize, usize); 2] = [(100, 512), (5_000, 32)];

/// Criterion times the forms one after another, and on a shared machine a burst of other work can move one of
/// them by more than borrowing saves at 100 names. This probe alternates the forms in short rounds and compares
/// owned with borrowed within each round, which cancels anything slower than a round.
fn paired_probe(names: usize, bodies: &[Vec<u8>]) {
    const ROUNDS: usize = 31;
    let per_round = (1_500_000 / bodies[0].len()).max(10);
    let mut next = bodies.iter().cycle();
    // Microseconds per decode, by round and form; each round starts with a different form.
    let mut rounds = [[0.0; 3]; ROUNDS];
    for (round, times) in rounds.iter_mut().enumerate() {
        for k in 0..3 {
            let form = (round + k) % 3;
            let start = Instant::now();
            for _ in 0..per_round {
                FORMS[form].1(next.next().unwrap());
            }
            times[form] = start.elapsed().as_secs_f64() * 1e6 / per_round as f64;
        }
    }
    // p10, median and p90.
    let spread = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        (values[values.len() / 10], values[values.len() / 2], values[values.len() * 9 / 10])
    };
    let form = |f: usize| spread(rounds.iter().map(|t| t[f]).collect()).1;
    let ratio = |a: usize, b: usize| spread(rounds.iter().map(|t| t[a] / t[b]).collect());
    let per_decode: Vec<String> =
        FORMS.iter().enumerate().map(|(f, (name, _))| format!("{name} {:.1} µs", form(f))).collect();
    let (owned_lo, owned, owned_hi) = ratio(2, 1);
    let (muster_lo, muster, muster_hi) = ratio(0, 1);
    println!(
        "paired probe, {names} names ({ROUNDS} rounds of {per_round} decodes per form): median per decode {}; \
         owned/borrowed {owned:.2} (p10-p90 {owned_lo:.2}-{owned_hi:.2}), muster/borrowed {muster:.2} \
         ({muster_lo:.2}-{muster_hi:.2})",
        per_decode.join(", ")
    );
}

fn extender_args(c: &mut Criterion) {
    let mut group = c.benchmark_group("extender_args_decode");
    for (names, pool) in SIZES {
        let bodies = bodies(pool, names);
        let mean = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
        group.throughput(Throughput::Bytes(mean as u64));
        for (form, run) in FORMS {
            group.bench_with_input(BenchmarkId::new(form, names), &bodies, |b, bodies| {
                let mut next = bodies.iter().cycle();
                b.iter(|| run(next.next().unwrap()))
            });
        }
    }
    group.finish();
}

fn probes() {
    for (names, pool) in SIZES {
        let bodies = bodies(pool, names);
        check(&bodies, names);
        let mean = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
        println!("{names} names: {pool} distinct bodies of {mean} bytes on average");
        paired_probe(names, &bodies);
    }
}

criterion_group!(benches, extender_args);

fn main() {
    probes();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
