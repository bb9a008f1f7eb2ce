//! Gangs end to end on the real control plane, and what a backlog of gangs that cannot be admitted costs the
//! ones that can. Run: `cargo bench --bench e2e_gangs`.
//!
//! One control plane (etcd + kube-apiserver), MUSTER_BENCH_NODES Nodes created through the API (default 5,000; 16
//! cpu, 64Gi each), muster's CRDs, `muster serve` (release build, 500 ms cycle interval as in the tests) and three
//! kube-scheduler processes side by side, each with one profile:
//! 1. `default-scheduler`: the stock kube-scheduler exactly as it ships. Its configuration sets nothing, so
//!    percentageOfNodesToScore adapts to the cluster (about 10% of 5,000 nodes) and its client may send 50
//!    requests/s (burst 100). It needs a process of its own: the client limit is per process.
//! 2. `stock-full`: the reference of benches/e2e_throughput.rs: stock plugins, percentageOfNodesToScore 100 (as
//!    muster's profile) and 1,000 requests/s (burst 2,000), so it is never held back by its client.
//! 3. `muster`: the configuration muster ships (config/kube-scheduler.yaml): percentageOfNodesToScore 100, muster
//!    as extender with filter/prioritize/bind/preempt, nodeCacheCapable, and kube-scheduler's default client limit
//!    (MUSTER_BENCH_MUSTER_QPS sets another; burst 2 x qps). muster makes the Bindings itself, so that limit
//!    does not cap its bindings. MUSTER_BENCH_MUSTER_SCORE_PERCENT sets another percentageOfNodesToScore, as an
//!    experiment (muster's configuration asks for 100).
//!
//! A gang is a driver (1 cpu, 2Gi) and N executors (2 cpu, 4Gi each). For muster: a PodGroup (templates
//! `driver` 1 and `executor` N, minMember 1+N) and then its 1+N pods (schedulerName muster, the pod-group label,
//! the member-template annotation), as tests/e2e_gang.rs creates them; all 1+N create requests are sent at once
//! once the PodGroup exists. For the stock schedulers the same 1+N pods, without PodGroup. One watch over every
//! pod of the benchmark records when each is first seen bound. A gang's latency is from just before its first
//! create request to the watch event of its last member's binding ("creation to all bound").
//!
//! **Part A, gangs end to end.** "32 in flight" is read as 32 gangs in flight: 32 slots, each creating a gang and
//! waiting until all its members are bound before it creates its next one (a closed loop, so throughput and
//! latency are measured together, by Little's law 32 x 17 pods in flight for 1+16). A run is
//! MUSTER_BENCH_GANGS_4 gangs of 1+4 (default 192) or MUSTER_BENCH_GANGS_16 gangs of 1+16 (default 72) through
//! one scheduler in a fresh namespace; gangs/s and pods/s are over first creation to last binding. Pods stay
//! bound until the run ends; then they (and the PodGroups) are deleted, so every run starts on the same empty
//! cluster. MUSTER_BENCH_ROUNDS rounds (default 2) of every (shape, scheduler) pair in turn, after an unreported
//! warm-up run per scheduler. Then MUSTER_BENCH_SOLO_GANGS gangs of 1+16 (default 10) per scheduler one at a
//! time: the latency of a gang that waits behind no other. MUSTER_BENCH_IN_FLIGHT changes the 32.
//!
//! **Part B, backlog** (muster only). A steady stream of admissible gangs of 1+4 (queue `stream`) arrives open
//! loop, MUSTER_BENCH_STREAM_RATE gangs/s (default 2) for MUSTER_BENCH_STREAM_SECONDS (default 60); each gang is
//! deleted MUSTER_BENCH_STREAM_LIFETIME_S (default 10) after it is whole, as finished applications go, so the
//! cluster stays equally full. Phase 1 runs the stream with no backlog. Then MUSTER_BENCH_BACKLOG_GANGS gangs
//! (default 1,000) of 1+4 that cannot be admitted are created (PodGroup and pods, 32 in flight); the benchmark
//! watches the backlog alone for MUSTER_BENCH_BACKLOG_SETTLE_S (default 30; how many backlog pods kube-scheduler has
//! tried, PodScheduled=False, and its queues every 10 s), and phase 2 runs the same stream beside it. (Waiting until
//! kube-scheduler has tried every backlog pod once takes over 4 minutes at 5,000 nodes on this machine, and its
//! queue does not stay empty after that: each rejected pod is queued again, see the events the benchmark prints,
//! so there is no settled state to wait for.) Why the backlog waits
//! (MUSTER_BENCH_BACKLOG_KIND): `quota` (default): queue `backlog` has capability cpu 9, which one admitted and
//! bound gang of the same shape (the plug) uses up, so each backlog gang waits on the queue's capability;
//! `oversized`: an uncapped queue, and executors of 32 cpu, more than any node has. Per phase: the stream gangs'
//! creation-to-all-bound latency, kube-scheduler's scheduling attempts per second (`scheduler_schedule_attempts_total`
//! of the muster process, from its /metrics, by result) and muster's filter calls over the arrival window, CPU
//! seconds per component. This is the "before scheduling gates" number: a backlog pod is an ordinary pending pod
//! that kube-scheduler keeps retrying.
//!
//! MUSTER_BENCH_PART: `all` (default), `gangs` (part A only) or `backlog` (part B only).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use muster::api::{PodGroup, Queue};
use support::muster::{process_cpu_seconds, prometheus_sample, self_cpu_seconds};
use support::{
    ControlPlane, ExtenderMode, MUSTER_SCHEDULER, MusterConfig, MusterServe, STOCK_SCHEDULER_CONFIG, TestNode,
    bound_node, create_nodes_concurrently, gang_pod, install_crds, member_template, muster_scheduler_config,
    pod_condition, pod_group, queue, test_pod,
};
use tokio::sync::oneshot;

/// Client limit of the `stock-full` reference (requests/s; burst twice that), as in e2e_throughput.
const FULL_QPS: u32 = 1000;
/// Every pod of the benchmark carries this label (value: its gang), so one watch sees them all and a gang's pods
/// can be deleted together. muster ignores it.
const GANG_LABEL: &str = "bench.muster.dev/gang";
const DRIVER: (&str, &str) = ("1", "2Gi");
const EXECUTOR: (&str, &str) = ("2", "4Gi");
/// Executors of the `oversized` backlog: more cpu than any node has.
const OVERSIZED_EXECUTOR: (&str, &str) = ("32", "4Gi");
/// A gang not whole after this long counts as not bound (and is reported), rather than stalling the benchmark.
const GANG_TIMEOUT: Duration = Duration::from_secs(300);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_f64_or(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
enum Scheduler {
    StockDefault,
    StockFull,
    Muster,
}

impl Scheduler {
    const ALL: [Scheduler; 3] = [Scheduler::StockDefault, Scheduler::StockFull, Scheduler::Muster];

    /// The pods' schedulerName (the profile of the process).
    fn profile(self) -> &'static str {
        match self {
            Scheduler::StockDefault => "default-scheduler",
            Scheduler::StockFull => "stock-full",
            Scheduler::Muster => MUSTER_SCHEDULER,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Scheduler::StockDefault => "stock, default config",
            Scheduler::StockFull => "stock, 100% scoring, 1000 QPS",
            Scheduler::Muster => "muster",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Scheduler::StockDefault => "stock-default",
            Scheduler::StockFull => "stock-full",
            Scheduler::Muster => "muster",
        }
    }

    /// Which kube-scheduler process serves it (1-based start order, as the fixture names them).
    fn process(self) -> usize {
        match self {
            Scheduler::StockDefault => 1,
            Scheduler::StockFull => 2,
            Scheduler::Muster => 3,
        }
    }
}

/// A gang: a driver and `executors` executors of `executor` (cpu, memory) each.
#[derive(Clone, Copy, Debug)]
struct Shape {
    executors: usize,
    executor: (&'static str, &'static str),
}

impl Shape {
    fn of(executors: usize) -> Shape {
        Shape { executors, executor: EXECUTOR }
    }

    fn size(self) -> usize {
        1 + self.executors
    }

    fn name(self) -> String {
        format!("1+{}", self.executors)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Creating gangs
// ---------------------------------------------------------------------------------------------------------------

fn member(scheduler: Scheduler, gang: &str, name: &str, template: &str, request: (&str, &str)) -> Pod {
    let mut pod = match scheduler {
        Scheduler::Muster => gang_pod(name, gang, Some(template), request.0, request.1),
        _ => {
            let mut pod = test_pod(name, request.0, request.1);
            pod.spec.as_mut().expect("test_pod has a spec").scheduler_name = Some(scheduler.profile().to_owned());
            pod
        }
    };
    pod.metadata.labels.get_or_insert_with(BTreeMap::new).insert(GANG_LABEL.to_owned(), gang.to_owned());
    pod
}

/// Creates a gang: for muster its PodGroup in `queue` first, then all its pods at once.
async fn create_gang(client: &Client, namespace: &str, scheduler: Scheduler, gang: &str, shape: Shape, queue: &str) {
    if scheduler == Scheduler::Muster {
        let group = pod_group(
            gang,
            queue,
            vec![
                member_template("driver", 1, DRIVER.0, DRIVER.1),
                member_template("executor", shape.executors as i32, shape.executor.0, shape.executor.1),
            ],
        );
        Api::<PodGroup>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &group)
            .await
            .unwrap_or_else(|e| panic!("cannot create PodGroup {namespace}/{gang}: {e}"));
    }
    let mut pods = vec![member(scheduler, gang, &format!("{gang}-driver"), "driver", DRIVER)];
    for i in 0..shape.executors {
        pods.push(member(scheduler, gang, &format!("{gang}-exec-{i}"), "executor", shape.executor));
    }
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    futures::future::join_all(pods.iter().map(|pod| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), pod)
                .await
                .unwrap_or_else(|e| panic!("cannot create pod {namespace}/{}: {e}", pod.name_any()));
        }
    }))
    .await;
}

/// Deletes one gang as a finished application goes: its PodGroup, then its pods (at once, grace 0). In this order
/// because muster reserves capacity again for the members of a PodGroup that outlives its pods (it waits for them
/// to come back), which would add work that a finished application does not cause.
async fn delete_gang(client: &Client, namespace: &str, gang: &str) {
    let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    match Api::<PodGroup>::namespaced(client.clone(), namespace).delete(gang, &now).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("cannot delete PodGroup {namespace}/{gang}: {e}"),
    }
    let selector = ListParams::default().labels(&format!("{GANG_LABEL}={gang}"));
    Api::<Pod>::namespaced(client.clone(), namespace)
        .delete_collection(&now, &selector)
        .await
        .unwrap_or_else(|e| panic!("cannot delete the pods of {namespace}/{gang}: {e}"));
}

/// Deletes every PodGroup and pod of a namespace (in that order, see [`delete_gang`]) and waits until the pods are
/// gone.
async fn clear_namespace(client: &Client, namespace: &str) {
    let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    Api::<PodGroup>::namespaced(client.clone(), namespace)
        .delete_collection(&now, &ListParams::default())
        .await
        .expect("cannot delete the PodGroups");
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    pods.delete_collection(&now, &ListParams::default()).await.expect("cannot delete the pods");
    let start = Instant::now();
    loop {
        let left = pods.list(&ListParams::default().limit(1)).await.expect("cannot list pods").items.len();
        if left == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the pods of {namespace} were not gone after 300 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the schedulers and muster see the deletions before the next run starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
}

// ---------------------------------------------------------------------------------------------------------------
// The watch: when each pod is first bound, when each gang is whole
// ---------------------------------------------------------------------------------------------------------------

struct Waiter {
    size: usize,
    bound: usize,
    done: oneshot::Sender<Duration>,
}

#[derive(Default)]
struct Seen {
    /// (namespace, pod) of every pod seen bound.
    bound: HashSet<(String, String)>,
    /// Per namespace: pods seen with PodScheduled=False (kube-scheduler tried and failed) and not bound since.
    refused: HashMap<String, HashSet<String>>,
    /// (namespace, gang) -> who waits for it to be whole.
    gangs: HashMap<(String, String), Waiter>,
}

/// One watch over every pod carrying [`GANG_LABEL`], in all namespaces. Times are on its clock ([`Watch::now`]),
/// taken when the event arrives.
struct Watch {
    start: Instant,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    async fn start(client: &Client) -> Watch {
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (listed_tx, listed_rx) = oneshot::channel();
        let task = {
            let seen = seen.clone();
            let api = Api::<Pod>::all(client.clone());
            tokio::spawn(async move {
                let mut listed = Some(listed_tx);
                let mut stream = watcher(api, watcher::Config::default().labels(GANG_LABEL)).boxed();
                while let Some(event) = stream.next().await {
                    let (pod, deleted) = match event {
                        Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                        Ok(watcher::Event::Delete(pod)) => (pod, true),
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = listed.take() {
                                let _ = tx.send(());
                            }
                            continue;
                        }
                        Ok(watcher::Event::Init) => continue,
                        Err(e) => {
                            eprintln!("watch error (the watcher retries): {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    let at = start.elapsed();
                    let namespace = pod.namespace().unwrap_or_default();
                    let name = pod.name_any();
                    let mut seen = seen.lock().expect("watch lock");
                    if deleted {
                        if let Some(refused) = seen.refused.get_mut(&namespace) {
                            refused.remove(&name);
                        }
                        continue;
                    }
                    if bound_node(&pod).is_some() {
                        if !seen.bound.insert((namespace.clone(), name.clone())) {
                            continue;
                        }
                        if let Some(refused) = seen.refused.get_mut(&namespace) {
                            refused.remove(&name);
                        }
                        let Some(gang) = pod.labels().get(GANG_LABEL).cloned() else { continue };
                        let key = (namespace, gang);
                        let whole = seen.gangs.get_mut(&key).is_some_and(|waiter| {
                            waiter.bound += 1;
                            waiter.bound >= waiter.size
                        });
                        if whole && let Some(waiter) = seen.gangs.remove(&key) {
                            let _ = waiter.done.send(at);
                        }
                    } else if pod_condition(&pod, "PodScheduled").is_some_and(|c| c.status == "False") {
                        seen.refused.entry(namespace).or_default().insert(name);
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(60), listed_rx)
            .await
            .expect("the pod watch did not list within 60 s")
            .expect("the pod watch ended before listing");
        Watch { start, seen, task }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Answers (with the time of its last binding) once all `size` members of `gang` have been seen bound. Call
    /// before creating the gang.
    fn expect(&self, namespace: &str, gang: &str, size: usize) -> oneshot::Receiver<Duration> {
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter { size, bound: 0, done: tx };
        self.seen.lock().expect("watch lock").gangs.insert((namespace.to_owned(), gang.to_owned()), waiter);
        rx
    }

    /// Pods of `namespace` that kube-scheduler has tried and failed (PodScheduled=False) and that are not bound.
    fn refused(&self, namespace: &str) -> usize {
        self.seen.lock().expect("watch lock").refused.get(namespace).map_or(0, HashSet::len)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------------------------

const RESULTS: [&str; 3] = ["scheduled", "unschedulable", "error"];

/// Counters read at the start and end of a measured window.
#[derive(Clone, Debug)]
struct Snapshot {
    at: Instant,
    /// CPU seconds used so far per component (the benchmark process last).
    cpu: Vec<(&'static str, f64)>,
    /// CPU seconds the whole machine spent busy so far (all processes, ours and others').
    machine: f64,
    /// kube-scheduler's `scheduler_schedule_attempts_total` of the observed process, per result in [`RESULTS`].
    attempts: [f64; 3],
    /// muster: filter calls (count, seconds), bind calls, admission cycles (count, seconds), gangs admitted
    /// (count, seconds from their creation to their admission).
    filter: (f64, f64),
    binds: f64,
    cycles: (f64, f64),
    admitted: (f64, f64),
    /// kube-scheduler's `scheduler_queue_incoming_pods_total` by "event -> queue": which events put pods back in
    /// its queues.
    incoming: BTreeMap<String, f64>,
}

/// The difference between two snapshots.
#[derive(Clone, Debug)]
struct Usage {
    seconds: f64,
    cpu: Vec<(&'static str, f64)>,
    /// Busy CPU seconds of everything that is not one of our components (other work on the machine).
    others: f64,
    attempts: [f64; 3],
    filter: (f64, f64),
    binds: f64,
    cycles: (f64, f64),
    admitted: (f64, f64),
    incoming: BTreeMap<String, f64>,
}

impl Usage {
    fn attempts_total(&self) -> f64 {
        self.attempts.iter().sum()
    }

    fn attempts_per_second(&self) -> f64 {
        self.attempts_total() / self.seconds
    }

    /// CPU milliseconds of `component` per unit of work (a pod, an attempt).
    fn cpu_ms_per(&self, component: &str, units: f64) -> f64 {
        1e3 * self.cpu.iter().find(|c| c.0 == component).map_or(0.0, |c| c.1) / units.max(1.0)
    }

    fn mean_cycle_ms(&self) -> f64 {
        1e3 * self.cycles.1 / self.cycles.0.max(1.0)
    }

    fn mean_admission_wait_ms(&self) -> f64 {
        1e3 * self.admitted.1 / self.admitted.0.max(1.0)
    }
}

struct Probes {
    components: Vec<(&'static str, String)>,
}

/// Busy CPU seconds of the whole machine so far (the `cpu` line of /proc/stat: everything but idle and iowait).
fn machine_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already counted in user).
    let busy: f64 = fields.iter().enumerate().filter(|(i, _)| ![3, 4].contains(i) && *i < 8).map(|(_, v)| v).sum();
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

struct Bench {
    control_plane: ControlPlane,
    muster: MusterServe,
    client: Client,
    watch: Watch,
    probes: Probes,
    in_flight: usize,
}

impl Bench {
    async fn snapshot(&self, scheduler: Scheduler) -> Snapshot {
        let scheduler_metrics = self.control_plane.scheduler_metrics(scheduler.process()).await;
        let attempts = RESULTS.map(|result| {
            prometheus_sample(&scheduler_metrics, "scheduler_schedule_attempts_total", &format!("result=\"{result}\""))
        });
        let metrics = self.muster.metrics().await;
        let histogram = |name: &str| {
            (
                prometheus_sample(&metrics, &format!("{name}_count"), ""),
                prometheus_sample(&metrics, &format!("{name}_sum"), ""),
            )
        };
        let verb = |verb: &str, suffix: &str| {
            prometheus_sample(
                &metrics,
                &format!("muster_extender_request_duration_seconds_{suffix}"),
                &format!("verb=\"{verb}\""),
            )
        };
        let mut cpu: Vec<(&'static str, f64)> =
            self.probes.components.iter().map(|(name, pattern)| (*name, process_cpu_seconds(pattern))).collect();
        cpu.push(("bench", self_cpu_seconds()));
        Snapshot {
            at: Instant::now(),
            cpu,
            machine: machine_cpu_seconds(),
            attempts,
            filter: (verb("filter", "count"), verb("filter", "sum")),
            binds: verb("bind", "count"),
            cycles: histogram("muster_admission_cycle_duration_seconds"),
            admitted: histogram("muster_gang_wait_seconds"),
            incoming: incoming_pods(&scheduler_metrics),
        }
    }

    /// The pending-pod gauges of a kube-scheduler process, by queue (active, backoff, unschedulable, gated).
    async fn pending_pods(&self, scheduler: Scheduler) -> String {
        let metrics = self.control_plane.scheduler_metrics(scheduler.process()).await;
        ["active", "backoff", "unschedulable", "gated"]
            .iter()
            .map(|q| {
                format!("{q} {:.0}", prometheus_sample(&metrics, "scheduler_pending_pods", &format!("queue=\"{q}\"")))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn usage(before: &Snapshot, after: &Snapshot) -> Usage {
    let cpu: Vec<(&'static str, f64)> =
        after.cpu.iter().zip(&before.cpu).map(|((name, a), (_, b))| (*name, a - b)).collect();
    let ours: f64 = cpu.iter().map(|c| c.1).sum();
    Usage {
        seconds: (after.at - before.at).as_secs_f64(),
        others: (after.machine - before.machine - ours).max(0.0),
        cpu,
        attempts: std::array::from_fn(|i| after.attempts[i] - before.attempts[i]),
        filter: (after.filter.0 - before.filter.0, after.filter.1 - before.filter.1),
        binds: after.binds - before.binds,
        cycles: (after.cycles.0 - before.cycles.0, after.cycles.1 - before.cycles.1),
        admitted: (after.admitted.0 - before.admitted.0, after.admitted.1 - before.admitted.1),
        incoming: after
            .incoming
            .iter()
            .map(|(key, a)| (key.clone(), a - before.incoming.get(key).copied().unwrap_or(0.0)))
            .filter(|(_, delta)| *delta > 0.0)
            .collect(),
    }
}

/// `scheduler_queue_incoming_pods_total`, summed per "event -> queue".
fn incoming_pods(metrics: &str) -> BTreeMap<String, f64> {
    let label = |line: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let start = line.find(&key)? + key.len();
        let end = line[start..].find('"')?;
        Some(line[start..start + end].to_owned())
    };
    let mut incoming = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("scheduler_queue_incoming_pods_total{")) {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let key =
            format!("{} -> {}", label(line, "event").unwrap_or_default(), label(line, "queue").unwrap_or_default());
        *incoming.entry(key).or_insert(0.0) += value;
    }
    incoming
}

/// The largest entries of [`Usage::incoming`], per second, on one line.
fn describe_incoming(usage: &Usage) -> String {
    let mut entries: Vec<(&String, &f64)> = usage.incoming.iter().collect();
    entries.sort_by(|a, b| b.1.total_cmp(a.1));
    let shown: Vec<String> =
        entries.iter().take(6).map(|(key, n)| format!("{key} {:.1}/s", *n / usage.seconds)).collect();
    if shown.is_empty() { "none".to_owned() } else { shown.join(", ") }
}

/// Nearest-rank percentile of unsorted values (0 when empty).
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 }
}

// ---------------------------------------------------------------------------------------------------------------
// Part A
// ---------------------------------------------------------------------------------------------------------------

struct Run {
    scheduler: Scheduler,
    shape: Shape,
    gangs: usize,
    /// Creation to all bound, seconds, of each gang that became whole.
    latencies: Vec<f64>,
    /// Gangs not whole within GANG_TIMEOUT.
    incomplete: usize,
    /// First creation to last binding.
    span: Duration,
    usage: Usage,
}

impl Run {
    fn gangs_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.span.as_secs_f64()
    }

    fn pods_per_second(&self) -> f64 {
        (self.latencies.len() * self.shape.size()) as f64 / self.span.as_secs_f64()
    }
}

/// `gangs` gangs through `scheduler`, `in_flight` at a time, in a fresh namespace, which is emptied afterwards.
async fn gang_run(bench: &Bench, scheduler: Scheduler, shape: Shape, gangs: usize, in_flight: usize, ns: &str) -> Run {
    bench.control_plane.create_namespace(ns).await;
    let queue = "default";
    let before = bench.snapshot(scheduler).await;
    let start = bench.watch.now();
    let results: Vec<Option<(Duration, Duration)>> = futures::stream::iter(0..gangs)
        .map(|i| async move {
            let gang = format!("g{i:04}");
            let done = bench.watch.expect(ns, &gang, shape.size());
            let created = bench.watch.now();
            create_gang(&bench.client, ns, scheduler, &gang, shape, queue).await;
            match tokio::time::timeout(GANG_TIMEOUT, done).await {
                Ok(Ok(whole)) => Some((created, whole)),
                _ => {
                    eprintln!("{ns}/{gang} was not whole within {GANG_TIMEOUT:?}");
                    None
                }
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let after = bench.snapshot(scheduler).await;
    let latencies: Vec<f64> = results.iter().flatten().map(|(c, w)| (*w - *c).as_secs_f64()).collect();
    let last = results.iter().flatten().map(|(_, w)| *w).max().unwrap_or(start);
    clear_namespace(&bench.client, ns).await;
    Run {
        scheduler,
        shape,
        gangs,
        incomplete: results.iter().filter(|r| r.is_none()).count(),
        latencies,
        span: last.saturating_sub(start).max(Duration::from_millis(1)),
        usage: usage(&before, &after),
    }
}

fn print_cpu_header(usage: &Usage, first: &str) {
    let names: Vec<&str> = usage.cpu.iter().map(|c| c.0).collect();
    println!("| {first} | wall s | {} | others |", names.join(" | "));
    println!("|---|--:|{}--:|", "--:|".repeat(names.len()));
}

fn print_cpu_row(usage: &Usage, first: &str) {
    let cpu: Vec<String> = usage.cpu.iter().map(|c| format!("{:.1}", c.1)).collect();
    println!("| {first} | {:.1} | {} | {:.1} |", usage.seconds, cpu.join(" | "), usage.others);
}

async fn part_gangs(bench: &Bench) {
    let rounds = env_or("MUSTER_BENCH_ROUNDS", 2) as usize;
    let solo = env_or("MUSTER_BENCH_SOLO_GANGS", 10) as usize;
    let shapes = [
        (Shape::of(4), env_or("MUSTER_BENCH_GANGS_4", 192) as usize),
        (Shape::of(16), env_or("MUSTER_BENCH_GANGS_16", 72) as usize),
    ];
    let in_flight = bench.in_flight;
    println!("## Part A: gangs end to end, {in_flight} gangs in flight");
    println!("load average before: {}", loadavg());

    for scheduler in Scheduler::ALL {
        gang_run(bench, scheduler, Shape::of(4), 2 * in_flight, in_flight, &format!("warmup-{}", scheduler.short()))
            .await;
    }
    println!("load average after the warm-up: {}", loadavg());
    println!();
    println!(
        "| round | shape | scheduler | gangs | gangs/s | pods/s | p50 s | p99 s | max s | attempts/pod | \
         not whole |"
    );
    println!("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut runs: Vec<Run> = Vec::new();
    for round in 1..=rounds {
        for (shape, gangs) in shapes {
            for scheduler in Scheduler::ALL {
                let ns = format!("r{round}-{}-{}", shape.executors, scheduler.short());
                let run = gang_run(bench, scheduler, shape, gangs, in_flight, &ns).await;
                println!(
                    "| {round} | {} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                    shape.name(),
                    scheduler.label(),
                    run.gangs,
                    run.gangs_per_second(),
                    run.pods_per_second(),
                    percentile(&run.latencies, 0.50),
                    percentile(&run.latencies, 0.99),
                    max(&run.latencies),
                    run.usage.attempts_total() / (run.gangs * shape.size()) as f64,
                    run.incomplete
                );
                runs.push(run);
            }
        }
        println!("<!-- load average after round {round}: {} -->", loadavg());
    }

    let mut solo_runs = Vec::new();
    if solo > 0 {
        for scheduler in Scheduler::ALL {
            let ns = format!("solo-{}", scheduler.short());
            solo_runs.push(gang_run(bench, scheduler, Shape::of(16), solo, 1, &ns).await);
        }
    }

    println!();
    println!("CPU seconds per run (first creation to last binding; 2 cores = 2 CPU seconds per second):");
    if let Some(first) = runs.first() {
        print_cpu_header(&first.usage, "round, shape, scheduler");
    }
    for (i, run) in runs.iter().enumerate() {
        let round = i / (shapes.len() * Scheduler::ALL.len()) + 1;
        print_cpu_row(&run.usage, &format!("{round}, {}, {}", run.shape.name(), run.scheduler.label()));
    }
    println!();
    println!(
        "muster's runs: extender calls per pod (server-side mean), admission cycles per gang (mean duration), \
         gang creation to admission (muster's histogram, mean):"
    );
    for run in runs.iter().filter(|r| r.scheduler == Scheduler::Muster) {
        let pods = (run.gangs * run.shape.size()) as f64;
        println!(
            "  {}: filter {:.2}/pod ({:.2} ms), bind {:.2}/pod, cycles {:.2}/gang ({:.2} ms), admitted after {:.0} ms",
            run.shape.name(),
            run.usage.filter.0 / pods,
            1e3 * run.usage.filter.1 / run.usage.filter.0.max(1.0),
            run.usage.binds / pods,
            run.usage.cycles.0 / run.gangs as f64,
            run.usage.mean_cycle_ms(),
            run.usage.mean_admission_wait_ms()
        );
    }
    println!();
    println!("CPU milliseconds per pod bound (mean of the runs):");
    println!();
    println!("| shape | scheduler | its kube-scheduler | muster serve | kube-apiserver | etcd |");
    println!("|---|---|--:|--:|--:|--:|");
    for (shape, _) in shapes {
        for scheduler in Scheduler::ALL {
            let of: Vec<&Run> =
                runs.iter().filter(|r| r.scheduler == scheduler && r.shape.executors == shape.executors).collect();
            let per_pod = |component: &str| {
                mean(
                    &of.iter()
                        .map(|r| r.usage.cpu_ms_per(component, (r.latencies.len() * shape.size()) as f64))
                        .collect::<Vec<_>>(),
                )
            };
            let own = format!("sched {}", scheduler.short());
            println!(
                "| {} | {} | {:.1} | {} | {:.1} | {:.1} |",
                shape.name(),
                scheduler.label(),
                per_pod(&own),
                if scheduler == Scheduler::Muster { format!("{:.1}", per_pod("muster serve")) } else { "-".to_owned() },
                per_pod("kube-apiserver"),
                per_pod("etcd")
            );
        }
    }

    println!();
    println!("Summary over {rounds} rounds (gangs/s and pods/s: mean of the runs; latency: all gangs pooled):");
    println!();
    println!(
        "| shape | scheduler | gangs | gangs/s | pods/s | p50 s | p99 s | max s | pods/s vs stock default | \
         vs stock 100% |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut pods_per_second: HashMap<(usize, Scheduler), f64> = HashMap::new();
    for (shape, _) in shapes {
        for scheduler in Scheduler::ALL {
            let of: Vec<&Run> =
                runs.iter().filter(|r| r.scheduler == scheduler && r.shape.executors == shape.executors).collect();
            let rate = mean(&of.iter().map(|r| r.pods_per_second()).collect::<Vec<_>>());
            pods_per_second.insert((shape.executors, scheduler), rate);
        }
        for scheduler in Scheduler::ALL {
            let of: Vec<&Run> =
                runs.iter().filter(|r| r.scheduler == scheduler && r.shape.executors == shape.executors).collect();
            let latencies: Vec<f64> = of.iter().flat_map(|r| r.latencies.iter().copied()).collect();
            let rate = pods_per_second[&(shape.executors, scheduler)];
            println!(
                "| {} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} |",
                shape.name(),
                scheduler.label(),
                latencies.len(),
                mean(&of.iter().map(|r| r.gangs_per_second()).collect::<Vec<_>>()),
                rate,
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                max(&latencies),
                rate / pods_per_second[&(shape.executors, Scheduler::StockDefault)],
                rate / pods_per_second[&(shape.executors, Scheduler::StockFull)],
            );
        }
    }
    if !solo_runs.is_empty() {
        println!();
        println!("1+16 gangs one at a time ({solo} per scheduler), creation to all bound:");
        println!();
        println!("| scheduler | p50 s | p99 s | max s |");
        println!("|---|--:|--:|--:|");
        for run in &solo_runs {
            println!(
                "| {} | {:.3} | {:.3} | {:.3} |",
                run.scheduler.label(),
                percentile(&run.latencies, 0.50),
                percentile(&run.latencies, 0.99),
                max(&run.latencies)
            );
        }
    }
    println!();
    for (shape, _) in shapes {
        let ratio = pods_per_second[&(shape.executors, Scheduler::Muster)]
            / pods_per_second[&(shape.executors, Scheduler::StockDefault)];
        println!(
            "target pods/s with muster >= 0.95 x stock default, {}: {ratio:.3} ({})",
            shape.name(),
            if ratio >= 0.95 { "met" } else { "MISSED" }
        );
    }
    let large: Vec<f64> = runs
        .iter()
        .filter(|r| r.scheduler == Scheduler::Muster && r.shape.executors == 16)
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    let p99 = percentile(&large, 0.99);
    println!(
        "target 1+16 whole within 2 s p99 of creation ({in_flight} in flight): {p99:.2} s ({})",
        if p99 <= 2.0 { "met" } else { "MISSED" }
    );
    println!("load average after part A: {}", loadavg());
}

// ---------------------------------------------------------------------------------------------------------------
// Part B
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BacklogKind {
    Quota,
    Oversized,
}

struct Phase {
    name: &'static str,
    gangs: usize,
    latencies: Vec<f64>,
    incomplete: usize,
    /// Over the arrival window.
    usage: Usage,
    /// From the end of the arrival window until the last gang was whole.
    drain: Duration,
}

/// The stream: `rate` gangs/s of `shape` for `seconds`, open loop, each deleted `lifetime` after it is whole.
async fn stream_phase(
    bench: &Bench,
    name: &'static str,
    ns: &str,
    rate: f64,
    seconds: f64,
    lifetime: Duration,
) -> Phase {
    bench.control_plane.create_namespace(ns).await;
    let shape = Shape::of(4);
    let count = (rate * seconds).round() as usize;
    let before = bench.snapshot(Scheduler::Muster).await;
    let phase_start = tokio::time::Instant::now();
    let gangs: FuturesUnordered<_> = (0..count)
        .map(|i| async move {
            tokio::time::sleep_until(phase_start + Duration::from_secs_f64(i as f64 / rate)).await;
            let gang = format!("s{i:04}");
            let done = bench.watch.expect(ns, &gang, shape.size());
            let created = bench.watch.now();
            create_gang(&bench.client, ns, Scheduler::Muster, &gang, shape, "stream").await;
            let whole = match tokio::time::timeout(GANG_TIMEOUT, done).await {
                Ok(Ok(whole)) => Some(whole - created),
                _ => {
                    eprintln!("{ns}/{gang} was not whole within {GANG_TIMEOUT:?}");
                    None
                }
            };
            let finished = tokio::time::Instant::now();
            tokio::time::sleep(lifetime).await;
            delete_gang(&bench.client, ns, &gang).await;
            (i, whole, finished)
        })
        .collect();
    let window = async {
        tokio::time::sleep_until(phase_start + Duration::from_secs_f64(seconds)).await;
        (bench.snapshot(Scheduler::Muster).await, tokio::time::Instant::now())
    };
    let (mut results, (after, window_end)): (Vec<(usize, Option<Duration>, tokio::time::Instant)>, _) =
        futures::join!(gangs.collect(), window);
    // Arrival order, for the first and second half.
    results.sort_by_key(|r| r.0);
    let last = results.iter().map(|r| r.2).max().unwrap_or(window_end);
    clear_namespace(&bench.client, ns).await;
    Phase {
        name,
        gangs: count,
        latencies: results.iter().filter_map(|r| r.1).map(|d| d.as_secs_f64()).collect(),
        incomplete: results.iter().filter(|r| r.1.is_none()).count(),
        usage: usage(&before, &after),
        drain: last.saturating_duration_since(window_end),
    }
}

/// Creates the backlog, then watches it alone for `settle`; returns what that window used.
async fn create_backlog(bench: &Bench, kind: BacklogKind, gangs: usize, settle: Duration) -> Usage {
    let ns = "backlog";
    bench.control_plane.create_namespace(ns).await;
    let shape = match kind {
        BacklogKind::Quota => Shape::of(4),
        BacklogKind::Oversized => Shape { executors: 4, executor: OVERSIZED_EXECUTOR },
    };
    let mut backlog_queue = queue("backlog", 1);
    if kind == BacklogKind::Quota {
        // Exactly one gang of this shape: the plug uses it all, every later gang waits on the capability.
        backlog_queue.spec.capability = BTreeMap::from([("cpu".to_owned(), Quantity("9".to_owned()))]);
    }
    Api::<Queue>::all(bench.client.clone())
        .create(&PostParams::default(), &backlog_queue)
        .await
        .expect("cannot create Queue backlog");
    if kind == BacklogKind::Quota {
        let done = bench.watch.expect(ns, "plug", shape.size());
        create_gang(&bench.client, ns, Scheduler::Muster, "plug", shape, "backlog").await;
        tokio::time::timeout(GANG_TIMEOUT, done).await.expect("the plug gang was not bound").expect("watch alive");
    }
    let start = Instant::now();
    futures::stream::iter(0..gangs)
        .map(|i| async move {
            create_gang(&bench.client, ns, Scheduler::Muster, &format!("b{i:04}"), shape, "backlog").await;
        })
        .buffer_unordered(bench.in_flight)
        .collect::<Vec<()>>()
        .await;
    let created = start.elapsed();
    let pods = gangs * shape.size();
    println!(
        "backlog ({kind:?}): {gangs} gangs, {pods} pods created in {:.1} s ({} in flight); load average {}",
        created.as_secs_f64(),
        bench.in_flight,
        loadavg()
    );
    // The backlog alone: watched for a fixed while rather than until kube-scheduler has tried every backlog pod,
    // which at 5,000 nodes takes minutes, and after which its queue does not stay empty anyway (see the events).
    let before = bench.snapshot(Scheduler::Muster).await;
    let window_start = Instant::now();
    loop {
        // A timeline of how kube-scheduler works through the backlog.
        println!(
            "  +{:.0} s: {} of {pods} backlog pods tried (PodScheduled=False); kube-scheduler (muster) queues: {}",
            window_start.elapsed().as_secs_f64(),
            bench.watch.refused(ns),
            bench.pending_pods(Scheduler::Muster).await
        );
        if window_start.elapsed() >= settle {
            break;
        }
        tokio::time::sleep(Duration::from_secs(10).min(settle.saturating_sub(window_start.elapsed()))).await;
    }
    usage(&before, &bench.snapshot(Scheduler::Muster).await)
}

async fn part_backlog(bench: &Bench) {
    let rate = env_f64_or("MUSTER_BENCH_STREAM_RATE", 2.0);
    let seconds = env_f64_or("MUSTER_BENCH_STREAM_SECONDS", 60.0);
    let lifetime = Duration::from_secs(env_or("MUSTER_BENCH_STREAM_LIFETIME_S", 10));
    let backlog_gangs = env_or("MUSTER_BENCH_BACKLOG_GANGS", 1000) as usize;
    let settle = Duration::from_secs(env_or("MUSTER_BENCH_BACKLOG_SETTLE_S", 30));
    let kind = match std::env::var("MUSTER_BENCH_BACKLOG_KIND").as_deref() {
        Ok("oversized") => BacklogKind::Oversized,
        Ok("quota") | Err(_) => BacklogKind::Quota,
        Ok(other) => panic!("MUSTER_BENCH_BACKLOG_KIND={other}: quota or oversized"),
    };
    println!();
    println!(
        "## Part B: backlog ({kind:?}, {backlog_gangs} gangs of 1+4) and a stream of {rate} gangs/s of 1+4 for \
         {seconds} s, each deleted {} s after it is whole",
        lifetime.as_secs()
    );
    println!("load average before: {}", loadavg());
    Api::<Queue>::all(bench.client.clone())
        .create(&PostParams::default(), &queue("stream", 1))
        .await
        .expect("cannot create Queue stream");

    let mut phases = vec![stream_phase(bench, "no backlog", "stream-1", rate, seconds, lifetime).await];
    println!("load average after phase 1: {}", loadavg());
    let quiet = create_backlog(bench, kind, backlog_gangs, settle).await;
    let quiet_name = format!("backlog alone, its first {} s", settle.as_secs());
    phases.push(stream_phase(bench, "1,000 pending gangs", "stream-2", rate, seconds, lifetime).await);
    println!(
        "after phase 2: {} of {} backlog pods tried; kube-scheduler (muster) queues: {}",
        bench.watch.refused("backlog"),
        backlog_gangs * 5,
        bench.pending_pods(Scheduler::Muster).await
    );
    println!("load average after phase 2: {}", loadavg());

    println!();
    println!(
        "| phase | gangs | p50 s | p99 s | max s | not whole | attempts/s | scheduled/s | unschedulable/s | \
         error/s | muster filters/s | filter ms | cycles/s | cycle ms | admitted after ms | drain s |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let row = |name: &str, gangs: String, latencies: &[f64], incomplete: String, usage: &Usage, drain: String| {
        let s = usage.seconds;
        println!(
            "| {name} | {gangs} | {} | {} | {} | {incomplete} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | \
             {:.2} | {} | {drain} |",
            if latencies.is_empty() { "-".to_owned() } else { format!("{:.2}", percentile(latencies, 0.5)) },
            if latencies.is_empty() { "-".to_owned() } else { format!("{:.2}", percentile(latencies, 0.99)) },
            if latencies.is_empty() { "-".to_owned() } else { format!("{:.2}", max(latencies)) },
            usage.attempts_per_second(),
            usage.attempts[0] / s,
            usage.attempts[1] / s,
            usage.attempts[2] / s,
            usage.filter.0 / s,
            1e3 * usage.filter.1 / usage.filter.0.max(1.0),
            usage.cycles.0 / s,
            usage.mean_cycle_ms(),
            if usage.admitted.0 > 0.0 { format!("{:.0}", usage.mean_admission_wait_ms()) } else { "-".to_owned() },
        );
    };
    for phase in &phases[..1] {
        row(
            phase.name,
            phase.gangs.to_string(),
            &phase.latencies,
            phase.incomplete.to_string(),
            &phase.usage,
            format!("{:.1}", phase.drain.as_secs_f64()),
        );
    }
    row(&quiet_name, "-".to_owned(), &[], "-".to_owned(), &quiet, "-".to_owned());
    for phase in &phases[1..] {
        row(
            phase.name,
            phase.gangs.to_string(),
            &phase.latencies,
            phase.incomplete.to_string(),
            &phase.usage,
            format!("{:.1}", phase.drain.as_secs_f64()),
        );
    }
    println!();
    println!("CPU seconds per window (arrival window of each phase; 2 cores = 2 CPU seconds per second):");
    print_cpu_header(&quiet, "window");
    print_cpu_row(&phases[0].usage, phases[0].name);
    print_cpu_row(&quiet, &quiet_name);
    print_cpu_row(&phases[1].usage, phases[1].name);
    println!();
    println!("Pods put into kube-scheduler's (muster) queues per second, by event -> queue:");
    println!("- {}: {}", phases[0].name, describe_incoming(&phases[0].usage));
    println!("- {quiet_name}: {}", describe_incoming(&quiet));
    println!("- {}: {}", phases[1].name, describe_incoming(&phases[1].usage));
    for phase in &phases {
        let half = phase.latencies.len() / 2;
        println!(
            "{}: p50 of the first half of the gangs (in arrival order) {:.2} s, of the second half {:.2} s",
            phase.name,
            percentile(&phase.latencies[..half], 0.5),
            percentile(&phase.latencies[half..], 0.5)
        );
    }
    println!();
    let (p50, p99) = (percentile(&phases[0].latencies, 0.5), percentile(&phases[0].latencies, 0.99));
    let (b50, b99) = (percentile(&phases[1].latencies, 0.5), percentile(&phases[1].latencies, 0.99));
    let within = b50 <= 1.1 * p50 && b99 <= 1.1 * p99 && phases[1].incomplete == 0;
    println!(
        "target admissible gangs' latency within 10% with the backlog: p50 {p50:.2} -> {b50:.2} s ({:+.0}%), \
         p99 {p99:.2} -> {b99:.2} s ({:+.0}%), {} not whole ({})",
        100.0 * (b50 / p50 - 1.0),
        100.0 * (b99 / p99 - 1.0),
        phases[1].incomplete,
        if within { "met" } else { "MISSED" }
    );
}

// ---------------------------------------------------------------------------------------------------------------

async fn bench() {
    let node_count = env_or("MUSTER_BENCH_NODES", 5000) as usize;
    let in_flight = env_or("MUSTER_BENCH_IN_FLIGHT", 32) as usize;
    let muster_qps = std::env::var("MUSTER_BENCH_MUSTER_QPS").ok().and_then(|v| v.parse::<u32>().ok());
    let muster_score_percent =
        std::env::var("MUSTER_BENCH_MUSTER_SCORE_PERCENT").ok().and_then(|v| v.parse::<u32>().ok());
    let part = std::env::var("MUSTER_BENCH_PART").unwrap_or_else(|_| "all".to_owned());
    println!("load average at start: {}", loadavg());
    let begin = Instant::now();

    let mut control_plane = ControlPlane::start().await;
    let client = control_plane.client();
    install_crds(&client).await;
    let muster = MusterServe::start(&control_plane, &MusterConfig::for_tests()).await;
    let nodes: Vec<TestNode> = (0..node_count).map(|i| TestNode::new(&format!("node-{i:05}"), "16", "64Gi")).collect();
    let took = create_nodes_concurrently(&client, &nodes, 64).await;
    println!("created {node_count} Nodes through the API in {:.1} s", took.as_secs_f64());
    // Start order fixes each one's number: Scheduler::process.
    control_plane.start_scheduler(STOCK_SCHEDULER_CONFIG).await;
    let full = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         clientConnection:\n  qps: {FULL_QPS}\n  burst: {}\n\
         profiles:\n- schedulerName: {}\n  percentageOfNodesToScore: 100\n",
        2 * FULL_QPS,
        Scheduler::StockFull.profile()
    );
    control_plane.start_scheduler(&full).await;
    let mut muster_config = muster_scheduler_config(&muster, ExtenderMode::NodeNames, muster_qps);
    if let Some(percent) = &muster_score_percent {
        // An experiment, not the shipped profile: kube-scheduler then offers muster only the feasible nodes it
        // found before stopping, and muster directs a member again when its reserved node is not among them.
        muster_config =
            muster_config.replace("percentageOfNodesToScore: 100", &format!("percentageOfNodesToScore: {percent}"));
    }
    control_plane.start_scheduler(&muster_config).await;

    let dir = control_plane.dir().display().to_string();
    let probes = Probes {
        components: vec![
            ("etcd", format!("--data-dir={dir}/etcd-data")),
            ("kube-apiserver", format!("--cert-dir={dir}/apiserver-certs")),
            ("sched stock-default", format!("{dir}/kube-scheduler-1-config.yaml")),
            ("sched stock-full", format!("{dir}/kube-scheduler-2-config.yaml")),
            ("sched muster", format!("{dir}/kube-scheduler-3-config.yaml")),
            ("muster serve", muster.command_line_pattern()),
        ],
    };
    let watch = Watch::start(&client).await;
    let mut bench = Bench { control_plane, muster, client, watch, probes, in_flight };
    println!(
        "{node_count} nodes (16 cpu, 64Gi), {in_flight} in flight; muster's kube-scheduler client qps: {}, \
         percentageOfNodesToScore: {}",
        muster_qps.map_or("default (50, burst 100)".to_owned(), |q| format!("{q} (burst {})", 2 * q)),
        muster_score_percent.map_or("100 (as shipped)".to_owned(), |p| format!("{p} (experiment)"))
    );
    println!();

    if part == "all" || part == "gangs" {
        part_gangs(&bench).await;
    }
    if part == "all" || part == "backlog" {
        part_backlog(&bench).await;
    }
    println!();
    println!("load average at the end: {}; whole benchmark {:.0} s", loadavg(), begin.elapsed().as_secs_f64());
    bench.muster.assert_running();
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: this one needs minutes and a control plane.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e_gangs: a benchmark; run it with `cargo bench --bench e2e_gangs`");
        return;
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(bench());
}
