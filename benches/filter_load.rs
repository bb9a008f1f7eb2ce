//! Load on a running `muster serve`'s filter verb with realistic ExtenderArgs (design.md target: p99 <= 1 ms with
//! 5,000 node names, >= 20,000 requests/s on 2 cores). Run: `cargo bench --bench filter_load`; the numbers and the
//! machine are recorded in benches/README.md ("Extender and end to end").
//!
//! A real control plane (etcd + kube-apiserver) with muster's CRDs and `muster serve` (release build); 5,000 Nodes
//! created through the API (concurrently; the time is reported), a gang muster has admitted (its pods pending, no
//! kube-scheduler runs) and one it cannot admit. The bodies are what kube-scheduler sends with nodeCacheCapable:
//! `{"Pod": <the pod as stored>, "NodeNames": [5,000 names]}`; also, once, the full-Node form (nodeCacheCapable
//! false). N keep-alive connections each send requests back to back for a fixed time; every answer is checked
//! (status 200, no Error). The load generator runs in this process on the same 2 cores as muster, etcd and
//! kube-apiserver, so the numbers are a floor for muster alone.
//!
//! Environment: MUSTER_BENCH_NODES (default 5000), MUSTER_BENCH_SECONDS per measurement (default 5),
//! MUSTER_BENCH_POD_COUNT (default 0): that many extra pods, already bound (spread over the nodes, as if placed by
//! another scheduler), created before measuring, to size muster's resident memory with a full cache.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use support::muster::{process_cpu_seconds, process_rss_bytes, prometheus_sample, self_cpu_seconds};
use support::{
    ControlPlane, HttpConnection, MusterConfig, MusterServe, TestNode, URL_PREFIX, create_nodes_concurrently, gang_pod,
    install_crds, member_template, pod_group, prebound_pod, wait_until,
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Run {
    label: String,
    connections: usize,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    response_bytes: usize,
    /// muster's own mean filter latency over the run (its request-duration histogram).
    server_mean: Duration,
    /// CPU seconds per second of wall time: muster, and this load generator.
    muster_cores: f64,
    client_cores: f64,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }

    fn print(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {:<34} | {:>5} | {:>8} | {:>9.0} | {:>7.3} | {:>7.3} | {:>7.3} | {:>7.3} | {:>9.3} | {:>9} | {:>5.2} | {:>5.2} |",
            self.label,
            self.connections,
            self.requests,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.90)),
            ms(self.percentile(0.99)),
            ms(*self.latencies.last().expect("at least one request")),
            ms(self.server_mean),
            self.response_bytes,
            self.muster_cores,
            self.client_cores,
        );
    }
}

/// `connections` keep-alive connections, each posting `bodies` in turn (request i uses `bodies[i % len]`) to the
/// filter verb for `duration`. Every answer must be 200 without an `Error`.
async fn load(muster: &MusterServe, label: &str, bodies: &[Bytes], connections: usize, duration: Duration) -> Run {
    let path = format!("{URL_PREFIX}/filter");
    let (count_before, sum_before) = server_filter_counters(muster).await;
    let (muster_cpu_before, client_cpu_before) =
        (process_cpu_seconds(&muster.command_line_pattern()), self_cpu_seconds());
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (bodies, path, addr) = (bodies.to_vec(), path.clone(), muster.addr());
            tokio::spawn(async move {
                let mut connection = HttpConnection::connect(addr).await.expect("cannot connect to muster");
                let mut latencies = Vec::new();
                let mut response_bytes = 0;
                let mut i = c;
                while start.elapsed() < duration {
                    let body = bodies[i % bodies.len()].clone();
                    i += 1;
                    let sent = Instant::now();
                    let (status, answer) = connection.post(&path, body).await.expect("filter request failed");
                    latencies.push(sent.elapsed());
                    assert_eq!(status, 200, "filter answered {status}: {}", String::from_utf8_lossy(&answer));
                    response_bytes = answer.len();
                }
                (latencies, response_bytes)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut response_bytes = 0;
    for task in tasks {
        let (mut l, bytes) = task.await.expect("a load task panicked");
        latencies.append(&mut l);
        response_bytes = response_bytes.max(bytes);
    }
    let elapsed = start.elapsed();
    let muster_cores =
        (process_cpu_seconds(&muster.command_line_pattern()) - muster_cpu_before) / elapsed.as_secs_f64();
    let client_cores = (self_cpu_seconds() - client_cpu_before) / elapsed.as_secs_f64();
    let (count_after, sum_after) = server_filter_counters(muster).await;
    let server_mean = Duration::from_secs_f64((sum_after - sum_before) / (count_after - count_before).max(1.0));
    latencies.sort_unstable();
    Run {
        label: label.to_owned(),
        connections,
        requests: latencies.len(),
        elapsed,
        latencies,
        response_bytes,
        server_mean,
        muster_cores,
        client_cores,
    }
}

/// muster's filter request count and total seconds, from its request-duration histogram.
async fn server_filter_counters(muster: &MusterServe) -> (f64, f64) {
    let metrics = muster.metrics().await;
    let name = "muster_extender_request_duration_seconds";
    let label = "verb=\"filter\"";
    (
        prometheus_sample(&metrics, &format!("{name}_count"), label),
        prometheus_sample(&metrics, &format!("{name}_sum"), label),
    )
}

/// Sends `body` once and returns the decoded answer, checking it has no `Error`.
async fn filter_once(muster: &MusterServe, body: &Bytes) -> serde_json::Value {
    let mut connection = HttpConnection::connect(muster.addr()).await.expect("cannot connect");
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

async fn bench() {
    let node_count = env_or("MUSTER_BENCH_NODES", 5000) as usize;
    let seconds = Duration::from_secs(env_or("MUSTER_BENCH_SECONDS", 5));
    let namespace = "bench";

    let control_plane = ControlPlane::start().await;
    let client = control_plane.client();
    install_crds(&client).await;
    let muster = MusterServe::start(&control_plane, &MusterConfig::for_tests()).await;
    control_plane.create_namespace(namespace).await;

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
        let api = Api::<Pod>::namespaced(client.clone(), namespace);
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

    // One gang muster can admit (its members wait: no kube-scheduler runs), one it cannot (32 cpu > any node).
    let env_pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let pod_groups = Api::namespaced(client.clone(), namespace);
    for (name, size, cpu) in [("admitted", 4, "2"), ("waiting", 3, "32")] {
        pod_groups
            .create(&Default::default(), &pod_group(name, "default", vec![member_template("worker", size, cpu, "1Gi")]))
            .await
            .expect("cannot create a PodGroup");
        for i in 0..size {
            env_pods
                .create(&Default::default(), &gang_pod(&format!("{name}-{i}"), name, None, cpu, "1Gi"))
                .await
                .expect("cannot create a pod");
        }
    }
    let state_wait = Instant::now();
    wait_until("muster admitted gang `admitted` and not `waiting`", Duration::from_secs(120), || async {
        let state = muster.state().await;
        let admitted = state.gang(namespace, "admitted").is_some_and(|g| g.is_admitted());
        let waiting = state.gang(namespace, "waiting").is_some_and(|g| g.is_pending());
        if admitted && waiting { Ok(()) } else { Err(state.describe()) }
    })
    .await;
    println!("muster decided both gangs {:.1} s after they were created", state_wait.elapsed().as_secs_f64());

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
        extra_pods + 7
    );

    let names: Vec<String> = nodes.iter().map(|n| n.to_node().metadata.name.expect("named")).collect();
    let body = |pod: &Pod| -> Bytes {
        Bytes::from(serde_json::to_vec(&serde_json::json!({"Pod": pod, "NodeNames": names})).expect("serialises"))
    };
    let admitted_pod = env_pods.get("admitted-0").await.expect("admitted-0");
    let waiting_pod = env_pods.get("waiting-0").await.expect("waiting-0");
    let admitted = body(&admitted_pod);
    let waiting = body(&waiting_pod);

    // Check the answers are the real thing before timing them.
    let answer = filter_once(&muster, &admitted).await;
    let passed = count(&answer, "NodeNames");
    assert!(passed >= 1, "the admitted member passed no node: {answer}");
    println!(
        "admitted member: {passed} node(s) passed, {} failed, {} failed unresolvable, e.g. {:?}",
        count(&answer, "FailedNodes"),
        count(&answer, "FailedAndUnresolvableNodes"),
        sample_reason(&answer)
    );
    let answer = filter_once(&muster, &waiting).await;
    assert_eq!(count(&answer, "NodeNames"), 0, "an un-admitted member must pass no node");
    println!(
        "un-admitted member: 0 nodes passed, {} failed, {} failed unresolvable, e.g. {:?}",
        count(&answer, "FailedNodes"),
        count(&answer, "FailedAndUnresolvableNodes"),
        sample_reason(&answer)
    );
    println!(
        "request bodies: {} bytes (admitted), {} bytes (un-admitted); {seconds:?} per row",
        admitted.len(),
        waiting.len()
    );

    println!();
    println!(
        "| {:<34} | {:>5} | {:>8} | {:>9} | {:>7} | {:>7} | {:>7} | {:>7} | {:>9} | {:>9} | {:>5} | {:>5} |",
        "filter",
        "conns",
        "requests",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "server ms",
        "answer B",
        "muster cores",
        "client cores"
    );
    println!(
        "|{}|------:|---------:|----------:|--------:|--------:|--------:|--------:|----------:|----------:|------:|------:|",
        "-".repeat(36)
    );
    // Warm-up, not reported.
    load(&muster, "warm-up", &[admitted.clone(), waiting.clone()], 2, Duration::from_secs(1)).await;
    for connections in [1, 2, 4, 8, 16] {
        load(
            &muster,
            &format!("admitted member ({node_count} names)"),
            std::slice::from_ref(&admitted),
            connections,
            seconds,
        )
        .await
        .print();
        load(
            &muster,
            &format!("un-admitted member ({node_count} names)"),
            std::slice::from_ref(&waiting),
            connections,
            seconds,
        )
        .await
        .print();
        load(&muster, "both, alternating", &[admitted.clone(), waiting.clone()], connections, seconds).await.print();
    }

    // The full-Node form (nodeCacheCapable: false): kube-scheduler sends every Node object.
    let all_nodes: Vec<Node> =
        Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("cannot list nodes").items;
    let full = |pod: &Pod| -> Bytes {
        let request = serde_json::json!({"Pod": pod, "Nodes": {"metadata": {}, "items": all_nodes}});
        Bytes::from(serde_json::to_vec(&request).expect("serialises"))
    };
    let admitted_full = full(&admitted_pod);
    let answer = filter_once(&muster, &admitted_full).await;
    let passed = answer.pointer("/Nodes/items").and_then(|i| i.as_array()).map_or(0, Vec::len);
    assert!(passed >= 1, "the admitted member passed no Node in the full-Node form: {answer}");
    println!();
    println!("full-Node form (nodeCacheCapable: false): request body {} bytes", admitted_full.len());
    for connections in [1, 2] {
        load(
            &muster,
            &format!("admitted member ({node_count} Nodes)"),
            std::slice::from_ref(&admitted_full),
            connections,
            seconds,
        )
        .await
        .print();
        load(&muster, &format!("un-admitted member ({node_count} Nodes)"), &[full(&waiting_pod)], connections, seconds)
            .await
            .print();
    }
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: this one needs minutes and a control plane.
    if !std::env::args().any(|a| a == "--bench") {
        println!("filter_load: a benchmark; run it with `cargo bench --bench filter_load`");
        return;
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(bench());
}
