//! Pods bound per second by the stock kube-scheduler with and without muster, same run, same cluster (design.md
//! target: with muster >= 0.95 x without). Run: `cargo bench --bench e2e_throughput`; the numbers are recorded in
//! benches/README.md ("Extender and end to end").
//!
//! One control plane with 5,000 Nodes, muster's CRDs and `muster serve` (release build), and two kube-schedulers
//! running side by side: `default-scheduler` (stock, no extender) and `muster` (the same profile settings plus the
//! extender with filter/prioritize/bind/preempt, nodeCacheCapable). Both profiles score every feasible node
//! (percentageOfNodesToScore 100, which muster's profile needs) and both clients may send 1,000 requests/s, so
//! neither is held back by client-side throttling (kube-scheduler's default of 50/s would cap the stock scheduler's
//! bindings but not muster's, which muster makes itself).
//!
//! Rounds alternate (stock, muster, stock, muster, ...), each in a fresh namespace: N single pods (gangs of one
//! for muster) are created with 32 requests in flight, and a watch records when each is bound. A round's
//! throughput is N / (last binding - first creation); it is also given from the first binding, which leaves out
//! the creation ramp. The pods are deleted between rounds, so every round starts on the same empty cluster.
//!
//! Environment: MUSTER_BENCH_NODES (default 5000), MUSTER_BENCH_PODS per round (default 1000),
//! MUSTER_BENCH_ROUNDS per scheduler (default 3).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use support::muster::{process_cpu_seconds, prometheus_sample, self_cpu_seconds};
use support::{
    ControlPlane, ExtenderMode, MusterConfig, MusterServe, PodHistory, TestNode, create_nodes_concurrently,
    install_crds, muster_pod, muster_scheduler_config, test_pod, wait_until,
};

const CLIENT_QPS: u32 = 1000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scheduler {
    Stock,
    Muster,
}

struct Round {
    scheduler: Scheduler,
    pods: usize,
    created: Duration,
    first_bound: Duration,
    last_bound: Duration,
    /// CPU seconds each component used during the round (creation to last binding).
    cpu: Vec<(&'static str, f64)>,
    /// muster's counters over the round: extender calls by verb (count, seconds), admission cycles.
    muster_calls: Vec<(&'static str, f64, f64)>,
    cycles: f64,
}

/// The processes whose CPU time is measured, by a piece of their command line.
struct Probes {
    components: Vec<(&'static str, String)>,
}

impl Probes {
    fn cpu(&self) -> Vec<(&'static str, f64)> {
        let mut cpu: Vec<(&'static str, f64)> =
            self.components.iter().map(|(name, pattern)| (*name, process_cpu_seconds(pattern))).collect();
        cpu.push(("bench (client)", self_cpu_seconds()));
        cpu
    }
}

const VERBS: [&str; 4] = ["filter", "prioritize", "bind", "preempt"];

fn muster_counters(metrics: &str) -> (Vec<(&'static str, f64, f64)>, f64) {
    let calls = VERBS
        .iter()
        .map(|verb| {
            let label = format!("verb=\"{verb}\"");
            (
                *verb,
                prometheus_sample(metrics, "muster_extender_request_duration_seconds_count", &label),
                prometheus_sample(metrics, "muster_extender_request_duration_seconds_sum", &label),
            )
        })
        .collect();
    (calls, prometheus_sample(metrics, "muster_admission_cycles_total", ""))
}

impl Round {
    fn pods_per_second(&self) -> f64 {
        self.pods as f64 / self.last_bound.as_secs_f64()
    }

    fn pods_per_second_from_first_binding(&self) -> f64 {
        self.pods as f64 / (self.last_bound - self.first_bound).as_secs_f64().max(1e-3)
    }
}

async fn round(
    control_plane: &ControlPlane,
    muster: &MusterServe,
    probes: &Probes,
    scheduler: Scheduler,
    index: usize,
    pods: usize,
) -> Round {
    let client = control_plane.client();
    let namespace = format!("round-{index}-{}", if scheduler == Scheduler::Stock { "stock" } else { "muster" });
    control_plane.create_namespace(&namespace).await;
    let history = PodHistory::start(&client, &namespace).await;
    let api = Api::<Pod>::namespaced(client.clone(), &namespace);

    let cpu_before = probes.cpu();
    let (calls_before, cycles_before) = muster_counters(&muster.metrics().await);
    let start = history.now();
    futures::stream::iter((0..pods).map(|i| {
        let api = api.clone();
        async move {
            let name = format!("p-{i:05}");
            let pod = match scheduler {
                Scheduler::Stock => test_pod(&name, "100m", "128Mi"),
                Scheduler::Muster => muster_pod(&name, "100m", "128Mi"),
            };
            api.create(&PostParams::default(), &pod).await.unwrap_or_else(|e| panic!("cannot create {name}: {e}"));
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<()>>()
    .await;
    let created = history.now() - start;

    let bound =
        wait_until(&format!("all {pods} pods of {namespace} are bound"), Duration::from_secs(600), || {
            let transitions = history.of(|t| t.node.is_some());
            async move {
                if transitions.len() >= pods { Ok(transitions) } else { Err(format!("{} bound", transitions.len())) }
            }
        })
        .await;
    let first_bound = bound.iter().map(|t| t.at).min().expect("pods were bound") - start;
    let last_bound = bound.iter().map(|t| t.at).max().expect("pods were bound") - start;
    let cpu =
        probes.cpu().into_iter().zip(cpu_before).map(|((name, after), (_, before))| (name, after - before)).collect();
    let (calls_after, cycles_after) = muster_counters(&muster.metrics().await);
    let muster_calls = calls_after
        .into_iter()
        .zip(calls_before)
        .map(|((verb, count, sum), (_, count_before, sum_before))| (verb, count - count_before, sum - sum_before))
        .collect();

    // Clean up so the next round starts on the same empty cluster.
    let delete_now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    api.delete_collection(&delete_now, &ListParams::default()).await.expect("cannot delete the round's pods");
    wait_until(&format!("the pods of {namespace} are gone"), Duration::from_secs(300), || {
        let api = api.clone();
        async move {
            let left = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
            if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
        }
    })
    .await;
    Round { scheduler, pods, created, first_bound, last_bound, cpu, muster_calls, cycles: cycles_after - cycles_before }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len() as f64
}

async fn bench() {
    let node_count = env_or("MUSTER_BENCH_NODES", 5000) as usize;
    let pods = env_or("MUSTER_BENCH_PODS", 1000) as usize;
    let rounds = env_or("MUSTER_BENCH_ROUNDS", 3) as usize;

    let mut control_plane = ControlPlane::start().await;
    let client = control_plane.client();
    install_crds(&client).await;
    let mut muster = MusterServe::start(&control_plane, &MusterConfig::for_tests()).await;
    let nodes: Vec<TestNode> = (0..node_count).map(|i| TestNode::new(&format!("node-{i:05}"), "16", "64Gi")).collect();
    let took = create_nodes_concurrently(&client, &nodes, 64).await;
    println!(
        "created {node_count} Nodes through the API in {:.1} s ({:.0} nodes/s, 64 in flight)",
        took.as_secs_f64(),
        node_count as f64 / took.as_secs_f64()
    );
    let stock_config = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         clientConnection:\n  qps: {CLIENT_QPS}\n  burst: {}\n\
         profiles:\n- schedulerName: default-scheduler\n  percentageOfNodesToScore: 100\n",
        2 * CLIENT_QPS
    );
    control_plane.start_scheduler(&stock_config).await;
    control_plane.start_scheduler(&muster_scheduler_config(&muster, ExtenderMode::NodeNames, Some(CLIENT_QPS))).await;

    let dir = control_plane.dir().display().to_string();
    let probes = Probes {
        components: vec![
            ("etcd", format!("--data-dir={dir}/etcd-data")),
            ("kube-apiserver", format!("--cert-dir={dir}/apiserver-certs")),
            ("kube-scheduler (stock)", format!("{dir}/kube-scheduler-1-config.yaml")),
            ("kube-scheduler (muster)", format!("{dir}/kube-scheduler-2-config.yaml")),
            ("muster serve", muster.command_line_pattern()),
        ],
    };

    // A warm-up round of each, not reported.
    round(&control_plane, &muster, &probes, Scheduler::Stock, 0, pods / 10).await;
    round(&control_plane, &muster, &probes, Scheduler::Muster, 0, pods / 10).await;

    println!();
    println!(
        "| round | scheduler | pods | created in s | first bound s | last bound s | pods/s | pods/s from 1st bind |"
    );
    println!(
        "|------:|-----------|-----:|------------:|--------------:|-------------:|-------:|---------------------:|"
    );
    let mut results = Vec::new();
    for index in 1..=rounds {
        for scheduler in [Scheduler::Stock, Scheduler::Muster] {
            let r = round(&control_plane, &muster, &probes, scheduler, index, pods).await;
            println!(
                "| {index} | {:?} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
                r.scheduler,
                r.pods,
                r.created.as_secs_f64(),
                r.first_bound.as_secs_f64(),
                r.last_bound.as_secs_f64(),
                r.pods_per_second(),
                r.pods_per_second_from_first_binding()
            );
            results.push(r);
        }
    }

    println!();
    println!("CPU seconds per round (creation to last binding; 2 cores = 2 CPU seconds per second):");
    let names: Vec<&str> = results[0].cpu.iter().map(|c| c.0).collect();
    println!("| round | scheduler | wall s | {} |", names.join(" | "));
    println!("|------:|-----------|-------:|{}", "------:|".repeat(names.len()));
    for (i, r) in results.iter().enumerate() {
        let cpu: Vec<String> = r.cpu.iter().map(|c| format!("{:.1}", c.1)).collect();
        println!("| {} | {:?} | {:.1} | {} |", i / 2 + 1, r.scheduler, r.last_bound.as_secs_f64(), cpu.join(" | "));
    }
    println!();
    println!("muster's extender calls per pod in its rounds (server-side mean latency):");
    for r in results.iter().filter(|r| r.scheduler == Scheduler::Muster) {
        let calls: Vec<String> = r
            .muster_calls
            .iter()
            .map(|(verb, count, sum)| {
                format!("{verb} {:.2}/pod ({:.2} ms)", count / r.pods as f64, 1e3 * sum / count.max(1.0))
            })
            .collect();
        println!("  {}; admission cycles {:.0}", calls.join(", "), r.cycles);
    }
    let of = |s: Scheduler| results.iter().filter(move |r| r.scheduler == s);
    let stock = mean(of(Scheduler::Stock).map(Round::pods_per_second));
    let with_muster = mean(of(Scheduler::Muster).map(Round::pods_per_second));
    let stock_bind = mean(of(Scheduler::Stock).map(Round::pods_per_second_from_first_binding));
    let muster_bind = mean(of(Scheduler::Muster).map(Round::pods_per_second_from_first_binding));
    println!();
    println!(
        "mean pods/s from first creation: stock {stock:.1}, with muster {with_muster:.1}: ratio {:.3} (target >= 0.95)",
        with_muster / stock
    );
    println!(
        "mean pods/s from first binding:  stock {stock_bind:.1}, with muster {muster_bind:.1}: ratio {:.3}",
        muster_bind / stock_bind
    );
    println!("{node_count} nodes, {pods} pods per round, {rounds} rounds per scheduler");
    muster.assert_running();
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: this one needs minutes and a control plane.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e_throughput: a benchmark; run it with `cargo bench --bench e2e_throughput`");
        return;
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(bench());
}
