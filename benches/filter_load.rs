//! Load on a running `muster serve`'s filter verb with realistic ExtenderArgs (design.md target: p99 <= 1 ms with
//! 5,000 node names, >= 20,000 requests/s on 2 cores), on a quiet cluster and while the cluster churns. Run:
//! `cargo bench --bench filter_load`; the numbers and the machine are recorded in benches/README.md ("Extender and
//! end to end").
//!
//! A real control plane (etcd + kube-apiserver) with muster's CRDs and `muster serve` (release build); 5,000 Nodes
//! created through the API (concurrently; the time is reported). The pods asked about: MUSTER_BENCH_GANGS gangs of 4
//! (1 cpu each) muster has admitted (their members pending: no kube-scheduler runs, so each member stays directed
//! to its node) and MUSTER_BENCH_WAITING_GANGS gangs of 3 it cannot admit (32 cpu > any node). The bodies are what
//! kube-scheduler sends with nodeCacheCapable: `{"Pod": <the pod as stored>, "NodeNames": [5,000 names]}`, one body
//! per pod; also, once, the full-Node form (nodeCacheCapable false). N keep-alive connections each send requests
//! back to back for a fixed time, each connection cycling through the distinct bodies of its row (starting at a
//! different offset). Every answer is classified (directed to one node, gang waits, not yet known, ...) and
//! checked against what the pod should get; unexpected answers are counted and printed, not fatal.
//!
//! Rows:
//! - "quiet (cached path)": one body sent over and over (the same pod, so the same map entry and the same bytes
//!   hot in every cache), nothing else happening. These are the rows earlier versions of this benchmark reported.
//! - "quiet, distinct": the bodies of every admitted member (or every waiting member) in turn, nothing else
//!   happening.
//! - "churn, distinct": the same, while a background writer in this process changes the cluster through the API
//!   server: gangs (a PodGroup + 4 members of 1 cpu, which muster admits, records and directs) and foreign pods
//!   (100m, bound to a node at creation, as another scheduler's) created at MUSTER_BENCH_CHURN_PODS_PER_S (half
//!   each) and each deleted MUSTER_BENCH_CHURN_LIFETIME_S after creation; Nodes created at
//!   MUSTER_BENCH_CHURN_NODES_PER_S and deleted after the same lifetime. So muster's watches, admission cycles,
//!   PodGroup status writes and plan publication all run while the filter load runs. Each row reports the churn
//!   achieved (API writes completed per second: creations and deletions of pods, PodGroups and Nodes) and the
//!   admission cycles muster ran (`muster_admission_cycles_total`) with their mean duration. The writer also
//!   probes one member of each new churn gang through the filter verb every 10 ms from the creation of the gang's
//!   last member until it is directed: the first answer's kind and the time until it is directed are printed
//!   after the churn rows.
//!
//! The load generator and the churn writer run in this process on the same 2 cores as muster, etcd and
//! kube-apiserver, so the numbers are a floor for muster alone. CPU per row, in cores (CPU seconds per second, from
//! /proc): "muster"; "client", this process (load generator and churn writer); "k8s", etcd and kube-apiserver;
//! "others", the rest of the machine (other people's work: the noise). "server ms" is muster's mean from its
//! request-duration histogram, "srv p99 <=" the histogram bucket its p99 falls under and "srv >1ms" how many
//! requests the histogram put above 1 ms.
//!
//! Environment: MUSTER_BENCH_NODES (default 5000), MUSTER_BENCH_SECONDS per row (default 5), MUSTER_BENCH_GANGS
//! (default 100), MUSTER_BENCH_WAITING_GANGS (default 20), MUSTER_BENCH_CHURN_PODS_PER_S (default 50),
//! MUSTER_BENCH_CHURN_NODES_PER_S (default 2), MUSTER_BENCH_CHURN_LIFETIME_S (default 10; the churn runs that long
//! plus 2 s before the first churn row, so deletions are flowing too), MUSTER_BENCH_POD_COUNT (default 0): that many
//! extra pods, already bound (spread over the nodes, as if placed by another scheduler), created before measuring,
//! to size muster's resident memory with a full cache.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use muster::api::PodGroup;
use support::muster::{process_cpu_seconds, process_rss_bytes, prometheus_sample, self_cpu_seconds};
use support::{
    ControlPlane, HttpConnection, MusterConfig, MusterServe, ServeOptions, TestNode, URL_PREFIX,
    create_nodes_concurrently, gang_pod, install_crds, member_template, pod_group, prebound_pod, wait_until,
};
use tokio::sync::Semaphore;

const NAMESPACE: &str = "bench";
const CHURN_NAMESPACE: &str = "churn";
/// Members per admitted gang (measured and churn) and per waiting gang.
const GANG_SIZE: usize = 4;
const WAITING_GANG_SIZE: usize = 3;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ----- answers -----

/// What a filter answer says, from its first bytes (the first reason is near the start: the answers are
/// `{"Nodes":null,"NodeNames":[...],"FailedNodes":{},"FailedAndUnresolvableNodes":{"node":"muster: ..."...`).
fn classify(status: u16, answer: &[u8]) -> &'static str {
    if status != 200 {
        return "HTTP error";
    }
    if !answer.ends_with(br#""Error":""}"#) {
        return "Error field set";
    }
    let prefix = &answer[..answer.len().min(1024)];
    let prefix = match std::str::from_utf8(prefix) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&prefix[..e.valid_up_to()]).unwrap_or_default(),
    };
    if prefix.contains(r#""NodeNames":[""#) || prefix.contains(r#""items":[{"#) {
        return "directed";
    }
    for (needle, class) in [
        ("waits for admission", "gang waits for admission"),
        ("not yet known", "not yet known"),
        ("being recorded", "admission being recorded"),
        ("directed at the next cycle", "admitted, not yet directed"),
        ("not among the", "directed node not offered"),
        ("already bound", "already bound"),
        ("not serving", "not serving"),
    ] {
        if prefix.contains(needle) {
            return class;
        }
    }
    "other refusal"
}

/// One filter request body and the answer its pod should get.
#[derive(Clone)]
struct Body {
    bytes: Bytes,
    expect: &'static str,
}

/// `{"Pod": <pod>, "NodeNames": [<names_json>]}` where `names_json` is the comma-separated quoted names.
fn names_body(pod: &Pod, names_json: &str) -> Bytes {
    let pod = serde_json::to_string(pod).expect("a pod serialises");
    Bytes::from(format!(r#"{{"Pod":{pod},"NodeNames":[{names_json}]}}"#))
}

fn names_json<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(",")
}

// ----- muster's counters -----

#[derive(Clone, Default)]
struct ServerCounters {
    filter_count: f64,
    filter_seconds: f64,
    /// The filter histogram's cumulative buckets: (upper bound in seconds, count).
    filter_buckets: Vec<(f64, f64)>,
    cycles: f64,
    cycle_count: f64,
    cycle_seconds: f64,
}

/// The cumulative buckets of `name`'s histogram for the series whose labels contain `label`.
fn histogram_buckets(text: &str, name: &str, label: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// CPU seconds the whole machine was busy so far (every core: /proc/stat's first line less idle and iowait).
fn machine_busy_seconds() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: f64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    (total - idle) / ticks
}

async fn server_counters(muster: &MusterServe) -> ServerCounters {
    let metrics = muster.metrics().await;
    let request = "muster_extender_request_duration_seconds";
    let cycle = "muster_admission_cycle_duration_seconds";
    ServerCounters {
        filter_count: prometheus_sample(&metrics, &format!("{request}_count"), "verb=\"filter\""),
        filter_seconds: prometheus_sample(&metrics, &format!("{request}_sum"), "verb=\"filter\""),
        filter_buckets: histogram_buckets(&metrics, request, "verb=\"filter\""),
        cycles: prometheus_sample(&metrics, "muster_admission_cycles_total", ""),
        cycle_count: prometheus_sample(&metrics, &format!("{cycle}_count"), ""),
        cycle_seconds: prometheus_sample(&metrics, &format!("{cycle}_sum"), ""),
    }
}

// ----- one row -----

struct Run {
    label: String,
    connections: usize,
    distinct: usize,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    max_answer_bytes: usize,
    /// muster's own mean filter latency over the run (its request-duration histogram).
    server_mean: Duration,
    /// From muster's histogram: the bucket bound its p99 falls under, and how many took longer than 1 ms.
    server_p99_under: f64,
    server_over_1ms: f64,
    /// CPU seconds per second of wall time: muster, this process (load generator and churn writer), etcd and
    /// kube-apiserver, and everything else on the machine (other people's work).
    muster_cores: f64,
    client_cores: f64,
    control_plane_cores: f64,
    other_cores: f64,
    cycles: f64,
    cycle_mean: Duration,
    /// API writes completed per second by the churn writer during the row.
    churn_per_s: Option<ChurnRates>,
    /// Answers that were not what their pod should get: (expected, got) -> count.
    unexpected: BTreeMap<(&'static str, &'static str), usize>,
    over_1ms: usize,
    load_average: String,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }

    fn header() {
        println!(
            "| {:<44} | {:>5} | {:>8} | {:>8} | {:>7} | {:>7} | {:>7} | {:>7} | {:>9} | {:>10} | {:>8} | {:>8} | {:>6} | {:>6} | {:>6} | {:>6} | {:>6} | {:>8} | {:>10} | {:>14} |",
            "filter",
            "conns",
            "distinct",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "server ms",
            "srv p99 <=",
            "srv >1ms",
            "answer B",
            "muster",
            "client",
            "k8s",
            "others",
            "cycles",
            "cycle ms",
            "churn obj/s",
            "load avg"
        );
        println!(
            "|{}|------:|---------:|---------:|--------:|--------:|--------:|--------:|----------:|-----------:|---------:|---------:|-------:|-------:|-------:|-------:|-------:|---------:|-----------:|---------------:|",
            "-".repeat(46)
        );
    }

    fn print(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {:<44} | {:>5} | {:>8} | {:>8.0} | {:>7.3} | {:>7.3} | {:>7.3} | {:>7.3} | {:>9.3} | {:>10} | {:>8.0} | {:>8} | {:>6.2} | {:>6.2} | {:>6.2} | {:>6.2} | {:>6.0} | {:>8.3} | {:>10} | {:>14} |",
            self.label,
            self.connections,
            self.distinct,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.90)),
            ms(self.percentile(0.99)),
            ms(*self.latencies.last().expect("at least one request")),
            ms(self.server_mean),
            if self.server_p99_under.is_finite() {
                format!("{}", self.server_p99_under * 1e3)
            } else {
                "inf".to_string()
            },
            self.server_over_1ms,
            self.max_answer_bytes,
            self.muster_cores,
            self.client_cores,
            self.control_plane_cores,
            self.other_cores,
            self.cycles,
            ms(self.cycle_mean),
            self.churn_per_s.map_or("-".to_string(), |c| format!("{:.1}", c.total)),
            self.load_average,
        );
        if let Some(c) = self.churn_per_s {
            println!(
                "|   churn/s: pods +{:.1} -{:.1}, PodGroups +{:.1} -{:.1}, Nodes +{:.1} -{:.1}, write errors {}; {} requests > 1 ms of {}",
                c.pods_created,
                c.pods_deleted,
                c.groups_created,
                c.groups_deleted,
                c.nodes_created,
                c.nodes_deleted,
                c.errors,
                self.over_1ms,
                self.requests
            );
        }
        for ((expected, got), n) in &self.unexpected {
            println!("|   UNEXPECTED: {n} answers `{got}` where `{expected}` was due");
        }
    }
}

/// `connections` keep-alive connections, each posting `bodies` in turn (connection c starts at body
/// c * len / connections) to the filter verb for `duration`.
async fn load(
    muster: &MusterServe,
    control_plane: &str,
    label: &str,
    bodies: &Arc<Vec<Body>>,
    connections: usize,
    duration: Duration,
    churn: Option<&ChurnCounters>,
) -> Run {
    let path = format!("{URL_PREFIX}/filter");
    let before = server_counters(muster).await;
    let churn_before = churn.map(ChurnCounters::snapshot);
    let (muster_cpu_before, client_cpu_before, control_plane_cpu_before, machine_before) = (
        process_cpu_seconds(&muster.command_line_pattern()),
        self_cpu_seconds(),
        process_cpu_seconds(control_plane),
        machine_busy_seconds(),
    );
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (bodies, path, extender) = (bodies.clone(), path.clone(), muster.extender_connector());
            tokio::spawn(async move {
                let mut connection = extender.connect().await.expect("cannot connect to muster");
                let mut latencies = Vec::new();
                let mut max_bytes = 0;
                let mut unexpected: BTreeMap<(&'static str, &'static str), usize> = BTreeMap::new();
                let mut i = c * bodies.len() / connections;
                while start.elapsed() < duration {
                    let body = &bodies[i % bodies.len()];
                    i += 1;
                    let sent = Instant::now();
                    let (status, answer) =
                        connection.post(&path, body.bytes.clone()).await.expect("filter request failed");
                    latencies.push(sent.elapsed());
                    let class = classify(status, &answer);
                    if class != body.expect {
                        *unexpected.entry((body.expect, class)).or_default() += 1;
                    }
                    max_bytes = max_bytes.max(answer.len());
                }
                (latencies, max_bytes, unexpected)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut max_answer_bytes = 0;
    let mut unexpected = BTreeMap::new();
    for task in tasks {
        let (mut l, bytes, u) = task.await.expect("a load task panicked");
        latencies.append(&mut l);
        max_answer_bytes = max_answer_bytes.max(bytes);
        for (k, n) in u {
            *unexpected.entry(k).or_default() += n;
        }
    }
    let elapsed = start.elapsed();
    let muster_cores =
        (process_cpu_seconds(&muster.command_line_pattern()) - muster_cpu_before) / elapsed.as_secs_f64();
    let client_cores = (self_cpu_seconds() - client_cpu_before) / elapsed.as_secs_f64();
    let control_plane_cores = (process_cpu_seconds(control_plane) - control_plane_cpu_before) / elapsed.as_secs_f64();
    let machine_cores = (machine_busy_seconds() - machine_before) / elapsed.as_secs_f64();
    let churn_per_s = churn.zip(churn_before).map(|(c, b)| ChurnRates::between(&b, &c.snapshot(), elapsed));
    let after = server_counters(muster).await;
    let server_mean = Duration::from_secs_f64(
        (after.filter_seconds - before.filter_seconds) / (after.filter_count - before.filter_count).max(1.0),
    );
    let cycle_mean = Duration::from_secs_f64(
        (after.cycle_seconds - before.cycle_seconds) / (after.cycle_count - before.cycle_count).max(1.0),
    );
    // Server-side tail, from the histogram's buckets (filter calls of the churn probes included: a few dozen/s).
    let served = after.filter_count - before.filter_count;
    let delta: Vec<(f64, f64)> = after
        .filter_buckets
        .iter()
        .map(|(le, n)| (*le, n - before.filter_buckets.iter().find(|b| b.0 == *le).map_or(0.0, |b| b.1)))
        .collect();
    let server_p99_under = delta.iter().find(|(_, n)| *n >= 0.99 * served).map_or(f64::INFINITY, |b| b.0);
    let server_over_1ms = served - delta.iter().find(|b| b.0 == 0.001).map_or(served, |b| b.1);
    latencies.sort_unstable();
    let over_1ms = latencies.len() - latencies.partition_point(|l| *l <= Duration::from_millis(1));
    Run {
        label: label.to_owned(),
        connections,
        distinct: bodies.len(),
        requests: latencies.len(),
        elapsed,
        latencies,
        max_answer_bytes,
        server_mean,
        server_p99_under,
        server_over_1ms,
        muster_cores,
        client_cores,
        control_plane_cores,
        other_cores: machine_cores - muster_cores - client_cores - control_plane_cores,
        cycles: after.cycles - before.cycles,
        cycle_mean,
        churn_per_s,
        unexpected,
        over_1ms,
        load_average: load_average(),
    }
}

/// Sends `body` once and returns the decoded answer, checking it has no `Error`.
async fn filter_once(muster: &MusterServe, body: &Bytes) -> serde_json::Value {
    let mut connection = muster.connect_extender().await.expect("cannot connect");
    let (status, answer) = connection.post(&format!("{URL_PREFIX}/filter"), body.clone()).await.expect("filter");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("filter answers JSON");
    let error = answer.get("Error").and_then(|e| e.as_str()).unwrap_or_default();
    assert!(error.is_empty(), "filter answered an error: {error}");
    answer
}

/// One of the reasons given for a failed node, to show what the answers carry.
fn sample_reason(answer: &serde_json::Value) -> String {
    let failed = answer.get("FailedAndUnresolvableNodes").or_else(|| answer.get("FailedNodes"));
    let first = failed.and_then(|f| f.as_object()).and_then(|f| f.values().next());
    first.and_then(|r| r.as_str()).unwrap_or("-").to_owned()
}

fn count(answer: &serde_json::Value, key: &str) -> usize {
    match answer.get(key) {
        Some(serde_json::Value::Array(a)) => a.len(),
        Some(serde_json::Value::Object(o)) => o.len(),
        _ => 0,
    }
}

// ----- churn -----

/// What the churn writer has completed so far (API writes that succeeded), and what failed.
#[derive(Default)]
struct ChurnCounters {
    pods_created: AtomicU64,
    pods_deleted: AtomicU64,
    groups_created: AtomicU64,
    groups_deleted: AtomicU64,
    nodes_created: AtomicU64,
    nodes_deleted: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl ChurnCounters {
    fn snapshot(&self) -> [u64; 7] {
        [
            &self.pods_created,
            &self.pods_deleted,
            &self.groups_created,
            &self.groups_deleted,
            &self.nodes_created,
            &self.nodes_deleted,
            &self.errors,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }

    fn record<T>(&self, counter: &AtomicU64, result: kube::Result<T>, what: &str) -> Option<T> {
        match result {
            Ok(v) => {
                counter.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_errors.lock().expect("not poisoned");
                if first.len() < 5 {
                    first.push(format!("{what}: {e}"));
                }
                None
            }
        }
    }
}

#[derive(Clone, Copy)]
struct ChurnRates {
    pods_created: f64,
    pods_deleted: f64,
    groups_created: f64,
    groups_deleted: f64,
    nodes_created: f64,
    nodes_deleted: f64,
    errors: u64,
    total: f64,
}

impl ChurnRates {
    fn between(before: &[u64; 7], after: &[u64; 7], elapsed: Duration) -> ChurnRates {
        let rate = |i: usize| (after[i] - before[i]) as f64 / elapsed.as_secs_f64();
        ChurnRates {
            pods_created: rate(0),
            pods_deleted: rate(1),
            groups_created: rate(2),
            groups_deleted: rate(3),
            nodes_created: rate(4),
            nodes_deleted: rate(5),
            errors: after[6] - before[6],
            total: (0..6).map(rate).sum(),
        }
    }
}

/// The first answer a new churn gang's member got, and how long until muster directed it.
#[derive(Default)]
struct Probes {
    first_answer: BTreeMap<&'static str, usize>,
    answers: BTreeMap<&'static str, usize>,
    directed_after: Vec<Duration>,
    never_directed: usize,
}

struct ChurnConfig {
    pods_per_s: f64,
    nodes_per_s: f64,
    lifetime: Duration,
    node_count: usize,
}

/// The background writer: see the module documentation.
struct Churn {
    stop: Arc<AtomicBool>,
    stopped: Arc<tokio::sync::Notify>,
    counters: Arc<ChurnCounters>,
    probes: Arc<Mutex<Probes>>,
    scheduler: tokio::task::JoinHandle<tokio::task::JoinSet<()>>,
    started: Instant,
}

/// Shared by the churn tasks.
struct ChurnContext {
    client: kube::Client,
    counters: Arc<ChurnCounters>,
    probes: Arc<Mutex<Probes>>,
    stop: Arc<AtomicBool>,
    stopped: Arc<tokio::sync::Notify>,
    /// At most this many API writes in flight.
    in_flight: Semaphore,
    lifetime: Duration,
    node_count: usize,
    muster: std::net::SocketAddr,
    /// The client certificate the extender listener requires.
    tls: std::sync::Arc<rustls::ClientConfig>,
    /// The fixed node names as a JSON fragment, and the churn nodes that exist now (for probe bodies).
    fixed_names_json: String,
    churn_nodes: Mutex<BTreeSet<String>>,
}

impl ChurnContext {
    /// Sleeps for the objects' lifetime, or less if the churn is stopped.
    async fn live(&self) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(self.lifetime) => {}
            _ = self.stopped.notified() => {}
        }
    }

    fn delete_params() -> DeleteParams {
        DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }
    }

    /// A PodGroup and its members, then foreign pods bound to nodes; all deleted after the lifetime.
    async fn round(self: Arc<Self>, i: usize) {
        let pods = Api::<Pod>::namespaced(self.client.clone(), CHURN_NAMESPACE);
        let groups = Api::<PodGroup>::namespaced(self.client.clone(), CHURN_NAMESPACE);
        let group = format!("cg-{i:06}");
        let created = {
            let _permit = self.in_flight.acquire().await.expect("open");
            groups
                .create(
                    &PostParams::default(),
                    &pod_group(&group, "default", vec![member_template("worker", GANG_SIZE as i32, "1", "1Gi")]),
                )
                .await
        };
        self.counters.record(&self.counters.groups_created, created, "create PodGroup");
        let mut names = Vec::new();
        let mut pods_to_create = Vec::new();
        for m in 0..GANG_SIZE {
            let name = format!("{group}-{m}");
            pods_to_create.push(gang_pod(&name, &group, None, "1", "1Gi"));
            names.push(name);
        }
        for m in 0..GANG_SIZE {
            let name = format!("cf-{i:06}-{m}");
            // A scattered node for each foreign pod (a multiplicative hash of its number).
            let node = (i * GANG_SIZE + m).wrapping_mul(2_654_435_761) % self.node_count;
            pods_to_create.push(prebound_pod(&name, &format!("node-{node:05}"), "100m", "128Mi"));
            names.push(name);
        }
        let created: Vec<(Option<Pod>, Instant)> = futures::future::join_all(pods_to_create.iter().map(|pod| {
            let (pods, this) = (pods.clone(), self.clone());
            async move {
                let _permit = this.in_flight.acquire().await.expect("open");
                let result = pods.create(&PostParams::default(), pod).await;
                (this.counters.record(&this.counters.pods_created, result, "create pod"), Instant::now())
            }
        }))
        .await;
        // The gang can be admitted once its last member exists: probe from then.
        let members = &created[..GANG_SIZE];
        if members.iter().all(|(pod, _)| pod.is_some())
            && let (Some(member), Some(last)) = (&members[0].0, members.iter().map(|(_, at)| *at).max())
        {
            self.probe(member, last).await;
        }
        self.live().await;
        futures::future::join_all(names.iter().map(|name| {
            let (pods, this) = (pods.clone(), self.clone());
            async move {
                let _permit = this.in_flight.acquire().await.expect("open");
                let result = pods.delete(name, &Self::delete_params()).await;
                this.counters.record(&this.counters.pods_deleted, result, "delete pod");
            }
        }))
        .await;
        let deleted = {
            let _permit = self.in_flight.acquire().await.expect("open");
            groups.delete(&group, &DeleteParams::default()).await
        };
        self.counters.record(&self.counters.groups_deleted, deleted, "delete PodGroup");
    }

    /// Asks muster's filter about a new member every 10 ms from `created` (when its gang's last member was
    /// created) until it is directed (at most 10 s), offering every node that exists (the fixed ones and the churn
    /// nodes of the moment), as kube-scheduler would.
    async fn probe(&self, member: &Pod, created: Instant) {
        let Ok(mut connection) = HttpConnection::connect_tls(self.muster, self.tls.clone()).await else { return };
        let path = format!("{URL_PREFIX}/filter");
        let mut first = true;
        while created.elapsed() < Duration::from_secs(10) && !self.stop.load(Ordering::Acquire) {
            let churn_nodes = names_json(self.churn_nodes.lock().expect("not poisoned").iter().map(String::as_str));
            let names = if churn_nodes.is_empty() {
                self.fixed_names_json.clone()
            } else {
                format!("{},{churn_nodes}", self.fixed_names_json)
            };
            let Ok((status, answer)) = connection.post(&path, names_body(member, &names)).await else { return };
            let class = classify(status, &answer);
            {
                let mut probes = self.probes.lock().expect("not poisoned");
                if first {
                    *probes.first_answer.entry(class).or_default() += 1;
                    first = false;
                }
                *probes.answers.entry(class).or_default() += 1;
                if class == "directed" {
                    probes.directed_after.push(created.elapsed());
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !self.stop.load(Ordering::Acquire) {
            self.probes.lock().expect("not poisoned").never_directed += 1;
        }
    }

    async fn node(self: Arc<Self>, i: usize) {
        let api = Api::<Node>::all(self.client.clone());
        let name = format!("churn-node-{i:05}");
        let node = TestNode::new(&name, "16", "64Gi").label("pool", "churn").to_node();
        let created = {
            let _permit = self.in_flight.acquire().await.expect("open");
            api.create(&PostParams::default(), &node).await
        };
        if self.counters.record(&self.counters.nodes_created, created, "create Node").is_none() {
            return;
        }
        self.churn_nodes.lock().expect("not poisoned").insert(name.clone());
        self.live().await;
        self.churn_nodes.lock().expect("not poisoned").remove(&name);
        let deleted = {
            let _permit = self.in_flight.acquire().await.expect("open");
            api.delete(&name, &DeleteParams::default()).await
        };
        self.counters.record(&self.counters.nodes_deleted, deleted, "delete Node");
    }
}

impl Churn {
    fn start(client: kube::Client, muster: &MusterServe, config: ChurnConfig, fixed_names_json: String) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(tokio::sync::Notify::new());
        let counters = Arc::new(ChurnCounters::default());
        let probes = Arc::new(Mutex::new(Probes::default()));
        let context = Arc::new(ChurnContext {
            client,
            counters: counters.clone(),
            probes: probes.clone(),
            stop: stop.clone(),
            stopped: stopped.clone(),
            in_flight: Semaphore::new(32),
            lifetime: config.lifetime,
            node_count: config.node_count,
            muster: muster.extender_addr(),
            tls: muster.pki().client_config(),
            fixed_names_json,
            churn_nodes: Mutex::new(BTreeSet::new()),
        });
        let started = Instant::now();
        // Each round creates GANG_SIZE gang members and GANG_SIZE foreign pods.
        let rounds_per_s = config.pods_per_s / (2 * GANG_SIZE) as f64;
        let scheduler = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut tasks = tokio::task::JoinSet::new();
                let (mut rounds, mut nodes) = (0usize, 0usize);
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while !stop.load(Ordering::Acquire) {
                    tick.tick().await;
                    let t = started.elapsed().as_secs_f64();
                    while (rounds as f64) < t * rounds_per_s {
                        tasks.spawn(context.clone().round(rounds));
                        rounds += 1;
                    }
                    while (nodes as f64) < t * config.nodes_per_s {
                        tasks.spawn(context.clone().node(nodes));
                        nodes += 1;
                    }
                    while tasks.try_join_next().is_some() {}
                }
                tasks
            }
        });
        Churn { stop, stopped, counters, probes, scheduler, started }
    }

    /// Stops creating, deletes what the churn created (waiting for it) and returns the probes.
    async fn stop(self) -> Probes {
        self.stop.store(true, Ordering::Release);
        self.stopped.notify_waiters();
        let mut tasks = self.scheduler.await.expect("the churn scheduler panicked");
        // Tasks that were about to start waiting when notified: wake them again until all are done.
        loop {
            self.stopped.notify_waiters();
            match tokio::time::timeout(Duration::from_millis(100), tasks.join_next()).await {
                Ok(Some(result)) => result.expect("a churn task panicked"),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        let whole = ChurnRates::between(&[0; 7], &self.counters.snapshot(), self.started.elapsed());
        println!(
            "churn over its whole {:.1} s (cleanup included): {:.1} API writes/s; pods +{:.1}/s -{:.1}/s, PodGroups \
             +{:.1}/s -{:.1}/s, Nodes +{:.1}/s -{:.1}/s; {} write errors {:?}",
            self.started.elapsed().as_secs_f64(),
            whole.total,
            whole.pods_created,
            whole.pods_deleted,
            whole.groups_created,
            whole.groups_deleted,
            whole.nodes_created,
            whole.nodes_deleted,
            whole.errors,
            self.counters.first_errors.lock().expect("not poisoned"),
        );
        std::mem::take(&mut *self.probes.lock().expect("not poisoned"))
    }
}

// ----- the benchmark -----

async fn bench() {
    let node_count = env_or("MUSTER_BENCH_NODES", 5000) as usize;
    let seconds = Duration::from_secs(env_or("MUSTER_BENCH_SECONDS", 5));
    let gang_count = env_or("MUSTER_BENCH_GANGS", 100) as usize;
    let waiting_count = env_or("MUSTER_BENCH_WAITING_GANGS", 20) as usize;
    let churn_config = ChurnConfig {
        pods_per_s: env_or("MUSTER_BENCH_CHURN_PODS_PER_S", 50) as f64,
        nodes_per_s: env_or("MUSTER_BENCH_CHURN_NODES_PER_S", 2) as f64,
        lifetime: Duration::from_secs(env_or("MUSTER_BENCH_CHURN_LIFETIME_S", 10)),
        node_count,
    };
    println!("load average at the start: {}", load_average());

    let control_plane = ControlPlane::start().await;
    let client = control_plane.client();
    // etcd's and kube-apiserver's command lines name the control plane's directory; nothing else's does.
    let cp_pattern = control_plane.dir().to_string_lossy().into_owned();
    let cp = cp_pattern.as_str();
    install_crds(&client).await;
    // No kube-scheduler binds the members, so claims and reservations must outlive the benchmark; the rest is
    // what the end-to-end tests use (a 500 ms cycle interval).
    let config = MusterConfig::for_tests().claim_ttl("1h").reservation_timeout("1h");
    let muster = MusterServe::start(&control_plane, &config).await;
    control_plane.create_namespace(NAMESPACE).await;
    control_plane.create_namespace(CHURN_NAMESPACE).await;

    let nodes: Vec<TestNode> = (0..node_count)
        .map(|i| TestNode::new(&format!("node-{i:05}"), "16", "64Gi").label("pool", ["a", "b"][i % 2]))
        .collect();
    let took = create_nodes_concurrently(&client, &nodes, 64).await;
    println!(
        "created {node_count} Nodes through the API in {:.1} s ({:.0} nodes/s, 64 in flight)",
        took.as_secs_f64(),
        node_count as f64 / took.as_secs_f64()
    );

    let extra_pods = env_or("MUSTER_BENCH_POD_COUNT", 0) as usize;
    if extra_pods > 0 {
        let started = Instant::now();
        let api = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
        futures::stream::iter((0..extra_pods).map(|i| {
            let api = api.clone();
            async move {
                let pod = prebound_pod(&format!("bound-{i:06}"), &format!("node-{:05}", i % node_count), "10m", "16Mi");
                api.create(&Default::default(), &pod).await.expect("cannot create a bound pod");
            }
        }))
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
        println!("created {extra_pods} bound pods through the API in {:.1} s", started.elapsed().as_secs_f64());
    }

    // Gangs muster can admit (their members wait: no kube-scheduler runs) and gangs it cannot (32 cpu > any node).
    let env_pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    let pod_groups = Api::<PodGroup>::namespaced(client.clone(), NAMESPACE);
    let gangs: Vec<(String, usize, &str)> = (0..gang_count)
        .map(|i| (format!("gang-{i:03}"), GANG_SIZE, "1"))
        .chain((0..waiting_count).map(|i| (format!("waits-{i:03}"), WAITING_GANG_SIZE, "32")))
        .collect();
    let started = Instant::now();
    futures::stream::iter(gangs.iter().map(|(name, size, cpu)| {
        let (pod_groups, env_pods) = (pod_groups.clone(), env_pods.clone());
        async move {
            let group = pod_group(name, "default", vec![member_template("worker", *size as i32, cpu, "1Gi")]);
            pod_groups.create(&Default::default(), &group).await.expect("cannot create a PodGroup");
            for i in 0..*size {
                let pod = gang_pod(&format!("{name}-{i}"), name, None, cpu, "1Gi");
                env_pods.create(&Default::default(), &pod).await.expect("cannot create a pod");
            }
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<()>>()
    .await;
    let member_count = gang_count * GANG_SIZE + waiting_count * WAITING_GANG_SIZE;
    println!(
        "created {gang_count} admissible gangs of {GANG_SIZE} x 1 cpu and {waiting_count} gangs of {WAITING_GANG_SIZE} \
         x 32 cpu ({member_count} pods) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    wait_until("muster admitted every admissible gang and none of the others", Duration::from_secs(120), || async {
        let state = muster.state().await;
        let not_yet: Vec<&str> = gangs
            .iter()
            .filter(|(name, _, cpu)| {
                let gang = state.gang(NAMESPACE, name);
                if *cpu == "1" { !gang.is_some_and(|g| g.is_admitted()) } else { !gang.is_some_and(|g| g.is_pending()) }
            })
            .map(|(name, _, _)| name.as_str())
            .collect();
        if not_yet.is_empty() { Ok(()) } else { Err(format!("not decided as expected yet: {not_yet:?}")) }
    })
    .await;
    println!("muster decided every gang {:.1} s after the first was created", started.elapsed().as_secs_f64());

    // Let muster's cache catch up with the objects just created before sizing it.
    wait_until("muster caches every node", Duration::from_secs(300), || async {
        let cached = prometheus_sample(&muster.metrics().await, "muster_cache_objects", "kind=\"nodes\"");
        if cached as usize >= node_count { Ok(()) } else { Err(format!("{cached} nodes cached")) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "muster serve resident memory: {:.0} MiB with {node_count} nodes and {} pods cached",
        process_rss_bytes(&muster.command_line_pattern()) as f64 / (1024.0 * 1024.0),
        extra_pods + member_count
    );

    // One body per member, as kube-scheduler would send it: the pod as stored and every node's name.
    let names: Vec<String> = nodes.iter().map(|n| n.to_node().metadata.name.expect("named")).collect();
    let fixed_names_json = names_json(names.iter().map(String::as_str));
    let stored: BTreeMap<String, Pod> = env_pods
        .list(&ListParams::default())
        .await
        .expect("cannot list the pods")
        .items
        .into_iter()
        .map(|p| (p.metadata.name.clone().expect("named"), p))
        .collect();
    let bodies_of = |prefix: &str, expect: &'static str| -> Arc<Vec<Body>> {
        let bodies: Vec<Body> = stored
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, pod)| Body { bytes: names_body(pod, &fixed_names_json), expect })
            .collect();
        Arc::new(bodies)
    };
    let admitted_all = bodies_of("gang-", "directed");
    let waiting_all = bodies_of("waits-", "gang waits for admission");
    let mixed_all: Arc<Vec<Body>> = Arc::new(admitted_all.iter().chain(waiting_all.iter()).cloned().collect());
    let admitted_one = Arc::new(vec![admitted_all[0].clone()]);
    let waiting_one = Arc::new(vec![waiting_all[0].clone()]);
    let both_one = Arc::new(vec![admitted_all[0].clone(), waiting_all[0].clone()]);

    // Check the answers are the real thing before timing them: every member directed (its admission recorded),
    // every waiting member refused.
    wait_until("every body gets the answer its pod should", Duration::from_secs(60), || async {
        let mut connection = muster.connect_extender().await?;
        let mut wrong = BTreeMap::<(&str, &str), usize>::new();
        for body in mixed_all.iter() {
            let (status, answer) = connection.post(&format!("{URL_PREFIX}/filter"), body.bytes.clone()).await?;
            let class = classify(status, &answer);
            if class != body.expect {
                *wrong.entry((body.expect, class)).or_default() += 1;
            }
        }
        if wrong.is_empty() { Ok(()) } else { Err(format!("{wrong:?}")) }
    })
    .await;
    let mut reasons = BTreeMap::<String, usize>::new();
    for body in waiting_all.iter() {
        *reasons.entry(sample_reason(&filter_once(&muster, &body.bytes).await)).or_default() += 1;
    }
    println!("the un-admitted members' reasons: {reasons:?}");
    let answer = filter_once(&muster, &admitted_one[0].bytes).await;
    let passed = count(&answer, "NodeNames");
    assert!(passed >= 1, "the admitted member passed no node: {answer}");
    println!(
        "admitted member: {passed} node(s) passed, {} failed, {} failed unresolvable, e.g. {:?}",
        count(&answer, "FailedNodes"),
        count(&answer, "FailedAndUnresolvableNodes"),
        sample_reason(&answer)
    );
    let answer = filter_once(&muster, &waiting_one[0].bytes).await;
    assert_eq!(count(&answer, "NodeNames"), 0, "an un-admitted member must pass no node");
    println!(
        "un-admitted member: 0 nodes passed, {} failed, {} failed unresolvable, e.g. {:?}",
        count(&answer, "FailedNodes"),
        count(&answer, "FailedAndUnresolvableNodes"),
        sample_reason(&answer)
    );
    println!(
        "request bodies: {} bytes (admitted), {} bytes (un-admitted); {} distinct admitted members, {} distinct \
         waiting; {seconds:?} per row",
        admitted_one[0].bytes.len(),
        waiting_one[0].bytes.len(),
        admitted_all.len(),
        waiting_all.len()
    );

    println!();
    Run::header();
    // Warm-up, not reported.
    load(&muster, cp, "warm-up", &mixed_all, 2, Duration::from_secs(1), None).await;
    for connections in [1, 2, 4, 8, 16] {
        let rows = [
            ("quiet (cached path): one admitted member".to_string(), &admitted_one),
            ("quiet (cached path): one un-admitted member".to_string(), &waiting_one),
            ("quiet (cached path): both, alternating".to_string(), &both_one),
        ];
        for (label, bodies) in rows {
            load(&muster, cp, &label, bodies, connections, seconds, None).await.print();
        }
    }
    for connections in [1, 4] {
        load(&muster, cp, "quiet, distinct: admitted members", &admitted_all, connections, seconds, None).await.print();
        load(&muster, cp, "quiet, distinct: un-admitted members", &waiting_all, connections, seconds, None)
            .await
            .print();
    }
    load(&muster, cp, "quiet, distinct: both (mixed)", &mixed_all, 4, seconds, None).await.print();

    // What mutual TLS costs: the same bodies to a second muster serving plain HTTP on loopback (it restores the
    // same admissions from PodGroup status), rows interleaved so both see the same machine. Keep-alive
    // connections, as kube-scheduler's: the handshake is paid once per connection, not per request.
    let plain_options = ServeOptions { plain_http: true, ..ServeOptions::default() };
    let plain = MusterServe::start_with(&control_plane, &config, plain_options).await;
    let answer = filter_once(&plain, &admitted_one[0].bytes).await;
    assert_eq!(count(&answer, "NodeNames"), 1, "the plain-HTTP muster restored the admissions");
    println!();
    println!("mutual TLS (the default) against plain HTTP on loopback, same bodies, same machine, interleaved:");
    Run::header();
    for connections in [1, 4] {
        let label = "quiet, distinct: both (mixed), mutual TLS";
        load(&muster, cp, label, &mixed_all, connections, seconds, None).await.print();
        let label = "quiet, distinct: both (mixed), plain HTTP";
        load(&plain, cp, label, &mixed_all, connections, seconds, None).await.print();
    }
    drop(plain);

    // The same distinct bodies while the cluster churns.
    println!();
    println!(
        "churn: {} pods/s created (half gang members in PodGroups of {GANG_SIZE}, half foreign pods bound to \
         nodes), {} Nodes/s created, each object deleted {:?} after creation; measuring from {:?} after the start \
         (load average now {})",
        churn_config.pods_per_s,
        churn_config.nodes_per_s,
        churn_config.lifetime,
        churn_config.lifetime + Duration::from_secs(2),
        load_average()
    );
    let warm_up = churn_config.lifetime + Duration::from_secs(2);
    let churn = Churn::start(client.clone(), &muster, churn_config, fixed_names_json.clone());
    tokio::time::sleep(warm_up).await;
    Run::header();
    for connections in [1, 4] {
        let counters = Some(&*churn.counters);
        load(&muster, cp, "churn, distinct: admitted members", &admitted_all, connections, seconds, counters)
            .await
            .print();
        load(&muster, cp, "churn, distinct: un-admitted members", &waiting_all, connections, seconds, counters)
            .await
            .print();
    }
    load(&muster, cp, "churn, distinct: both (mixed)", &mixed_all, 4, seconds, Some(&*churn.counters)).await.print();
    let probes = churn.stop().await;
    let mut directed = probes.directed_after.clone();
    directed.sort_unstable();
    let at = |p: f64| {
        let d = directed.get(((directed.len() as f64 - 1.0) * p).round() as usize);
        d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
    };
    println!(
        "new churn gangs probed through filter every 10 ms from their last member's creation: {} probed; first \
         answer {:?}; all answers {:?}; directed after p50 {} ms, p90 {} ms, p99 {} ms, max {} ms; not directed within 10 s: {}",
        probes.first_answer.values().sum::<usize>(),
        probes.first_answer,
        probes.answers,
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        probes.never_directed
    );
    // After the churn: the same bodies still get the same answers.
    let run = load(&muster, cp, "quiet again, distinct: both (mixed)", &mixed_all, 4, seconds, None).await;
    Run::header();
    run.print();

    // The full-Node form (nodeCacheCapable: false): kube-scheduler sends every Node object.
    let all_nodes: Vec<Node> =
        Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("cannot list nodes").items;
    let full = |pod: &Pod, expect: &'static str| -> Arc<Vec<Body>> {
        let request = serde_json::json!({"Pod": pod, "Nodes": {"metadata": {}, "items": all_nodes}});
        Arc::new(vec![Body { bytes: Bytes::from(serde_json::to_vec(&request).expect("serialises")), expect }])
    };
    let admitted_full = full(&stored["gang-000-0"], "directed");
    let waiting_full = full(&stored["waits-000-0"], "gang waits for admission");
    let answer = filter_once(&muster, &admitted_full[0].bytes).await;
    let passed = answer.pointer("/Nodes/items").and_then(|i| i.as_array()).map_or(0, Vec::len);
    assert!(passed >= 1, "the admitted member passed no Node in the full-Node form: {answer}");
    println!();
    println!("full-Node form (nodeCacheCapable: false): request body {} bytes", admitted_full[0].bytes.len());
    Run::header();
    for connections in [1, 2] {
        let label = format!("quiet (cached path): admitted, {} Nodes", all_nodes.len());
        load(&muster, cp, &label, &admitted_full, connections, seconds, None).await.print();
        let label = format!("quiet (cached path): un-admitted, {} Nodes", all_nodes.len());
        load(&muster, cp, &label, &waiting_full, connections, seconds, None).await.print();
    }
    println!();
    println!("load average at the end: {}", load_average());
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: this one needs minutes and a control plane.
    if !std::env::args().any(|a| a == "--bench") {
        println!("filter_load: a benchmark; run it with `cargo bench --bench filter_load`");
        return;
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(bench());
}
