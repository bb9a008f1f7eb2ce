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
//! Environment: MUSTER_BENCH_NODES (default 5000), MUSTER_BENCH_SECONDS per measurement (default 5).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use support::{
    ControlPlane, HttpConnection, MusterConfig, MusterServe, TestNode, URL_PREFIX, create_nodes_concurrently, gang_pod,
    install_crds, member_template, pod_group, wait_until,
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
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }

    fn print(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {:<34} | {:>5} | {:>8} | {:>9.0} | {:>7.3} | {:>7.3} | {:>7.3} | {:>7.3} | {:>9} |",
            self.label,
            self.connections,
            self.requests,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.90)),
            ms(self.percentile(0.99)),
            ms(*self.latencies.last().expect("at least one request")),
            self.response_bytes,
        );
    }
}

/// `connections` keep-alive connections, each posting `bodies` in turn (request i uses `bodies[i % len]`) to the
/// filter verb for `duration`. Every answer must be 200 without an `Error`.
async fn load(muster: &MusterServe, label: &str, bodies: &[Bytes], connections: usize, duration: Duration) -> Run {
    let path = format!("{URL_PREFIX}/filter");
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
    latencies.sort_unstable();
    Run { label: label.to_owned(), connections, requests: latencies.len(), elapsed, latencies, response_bytes }
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
        "admitted member: {passed} node(s) passed, {} failed, {} failed unresolvable",
        count(&answer, "FailedNodes"),
        count(&answer, "FailedAndUnresolvableNodes")
    );
    let answer = filter_once(&muster, &waiting).await;
    assert_eq!(count(&answer, "NodeNames"), 0, "an un-admitted member must pass no node");
    println!(
        "un-admitted member: 0 nodes passed, {} failed, {} failed unresolvable",
        count(&answer, "FailedNodes"),
        count(&answer, "FailedAndUnresolvableNodes")
    );
    println!(
        "request bodies: {} bytes (admitted), {} bytes (un-admitted); {seconds:?} per row",
        admitted.len(),
        waiting.len()
    );

    println!();
    println!(
        "| {:<34} | {:>5} | {:>8} | {:>9} | {:>7} | {:>7} | {:>7} | {:>7} | {:>9} |",
        "filter, nodeCacheCapable", "conns", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "answer B"
    );
    println!(
        "|{}|-------:|---------:|----------:|--------:|--------:|--------:|--------:|----------:|",
        "-".repeat(36)
    );
    // Warm-up, not reported.
    load(&muster, "warm-up", &[admitted.clone(), waiting.clone()], 2, Duration::from_secs(1)).await;
    for connections in [1, 2, 4, 8, 16] {
        load(&muster, "admitted member (5,000 names)", std::slice::from_ref(&admitted), connections, seconds)
            .await
            .print();
        load(&muster, "un-admitted member (5,000 names)", std::slice::from_ref(&waiting), connections, seconds)
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
    println!("full-Node form: request body {} bytes", admitted_full.len());
    for connections in [1, 2] {
        load(&muster, "admitted member (5,000 Nodes)", std::slice::from_ref(&admitted_full), connections, seconds)
            .await
            .print();
        load(&muster, "un-admitted member (5,000 Nodes)", &[full(&waiting_pod)], connections, seconds).await.print();
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
