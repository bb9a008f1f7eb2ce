//! Core benchmarks (targets in design.md). Run: `cargo bench --bench core`; results and the machine they were
//! measured on are recorded in benches/README.md.
//!
//! - admission: one gang (driver on an on-demand pool, executors on a tainted spot pool) admitted through a full
//!   admission cycle, then released, on clusters of 1,000 / 10,000 / 50,000 nodes in three pools that are half
//!   full of other work. Throughput is in member placements.
//! - fair share: deserved shares for 10 / 100 / 1,000 queues.
//! - reclaim: a cycle that plans reclaim for a 1+16 gang at 10,000 nodes with 100,000 running pods.
//! - admission latency percentiles and resident memory are printed once, before criterion runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use muster::core::fairshare::{ShareInput, deserved_shares};
use muster::core::testkit::{GI, gang, labelled, node, request, selecting, tainted, template, tolerating};
use muster::core::{Cluster, GangSpec, PodSpec, Policy, QueueId, QueueSpec, Resources};

/// A cluster of `n` nodes: 10% on-demand (drivers), 60% tainted spot (executors), 30% general; every node half
/// full of foreign pods so placement has to look.
fn cluster(n: usize) -> (Cluster, QueueId) {
    let mut c = Cluster::new();
    for i in 0..n {
        let spec = match i % 10 {
            0 => labelled(node(&format!("od-{i}"), 16_000, 64 * GI), "pool", "on-demand"),
            1..=6 => tainted(labelled(node(&format!("spot-{i}"), 32_000, 128 * GI), "pool", "spot"), "spot", "true"),
            _ => labelled(node(&format!("gen-{i}"), 16_000, 64 * GI), "pool", "general"),
        };
        let half = Resources::cpu_mem(spec.allocatable.get(0) / 2, spec.allocatable.get(1) / 2);
        let id = c.add_node(spec).unwrap();
        c.add_pod(PodSpec { name: format!("f{i}"), request: half, member: None, priority: 0 }, Some(id), 0).unwrap();
    }
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    (c, q)
}

fn spark_gang(q: QueueId, executors: u32, name: &str) -> GangSpec {
    gang(
        name,
        q,
        0,
        vec![
            selecting(template("driver", 1000, 4 * GI, 1, 1), "pool", "on-demand"),
            tolerating(
                selecting(template("executor", 4000, 10 * GI, executors, executors), "pool", "spot"),
                "spot",
                "true",
            ),
        ],
    )
}

/// Admit one gang through a full cycle, then release it, so the cluster stays in the same state.
fn admit_and_release(c: &mut Cluster, q: QueueId, executors: u32, policy: &Policy) {
    let g = c.add_gang(spark_gang(q, executors, "bench")).unwrap();
    let out = c.run_cycle(0, policy);
    assert_eq!(out.admitted.len(), 1, "the benchmark gang must fit");
    c.remove_gang(g).unwrap();
}

fn admission(crit: &mut Criterion) {
    let policy = Policy::default();
    let mut group = crit.benchmark_group("admission");
    group.sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for nodes in [1_000, 10_000, 50_000] {
        let (mut c, q) = cluster(nodes);
        for executors in [4u32, 16, 64] {
            group.throughput(Throughput::Elements(u64::from(1 + executors)));
            group.bench_with_input(BenchmarkId::new(format!("1+{executors}"), nodes), &executors, |b, &e| {
                b.iter(|| admit_and_release(black_box(&mut c), q, e, &policy))
            });
        }
    }
    group.finish();
}

fn fair_share(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("fair_share");
    let total = Resources::cpu_mem(100_000_000, 400_000 * GI);
    for queues in [10usize, 100, 1_000] {
        let inputs: Vec<ShareInput> = (0..queues)
            .map(|i| ShareInput {
                weight: 1 + (i as u64 * 7919) % 16,
                capability: if i % 5 == 0 {
                    Resources::cpu_mem(50_000_000 / queues as u64, u64::MAX)
                } else {
                    Resources::UNLIMITED
                },
                guarantee: if i % 7 == 0 { Resources::cpu_mem(10_000, 10 * GI) } else { Resources::ZERO },
                request: Resources::cpu_mem(
                    1_000 * (1 + (i as u64 * 104_729) % 400_000),
                    GI * (1 + (i as u64 * 31) % 2_000),
                ),
                parent: None,
            })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(queues), &inputs, |b, inputs| {
            b.iter(|| deserved_shares(black_box(&total), black_box(inputs)).unwrap())
        });
    }
    group.finish();
}

/// 10,000 nodes of 16 CPU, fully used by queue "borrower": 10,000 gangs of 10 pods (5 minimum, 5 elastic).
/// Queue "owed" then asks for a 1+16 gang it deserves: the cycle must plan a reclaim.
fn reclaim_cluster() -> (Cluster, QueueId) {
    let mut c = Cluster::new();
    let nodes: Vec<_> = (0..10_000).map(|i| c.add_node(node(&format!("n{i}"), 16_000, 64 * GI)).unwrap()).collect();
    let borrower = c.upsert_queue(QueueSpec::new("borrower", 1));
    let owed = c.upsert_queue(QueueSpec::new("owed", 1));
    for (i, &n) in nodes.iter().enumerate() {
        let g =
            c.add_gang(gang(&format!("b{i}"), borrower, i as u64, vec![template("w", 1600, 6 * GI, 5, 10)])).unwrap();
        c.restore_admission(g, &[], 0, 0).unwrap();
        for p in 0..10 {
            c.add_pod(
                PodSpec {
                    name: format!("b{i}-{p}"),
                    request: request(1600, 6 * GI),
                    member: Some((g, 0)),
                    priority: 0,
                },
                Some(n),
                0,
            )
            .unwrap();
        }
    }
    c.add_gang(gang(
        "owed",
        owed,
        1,
        vec![template("driver", 1000, 4 * GI, 1, 1), template("executor", 4000, 10 * GI, 16, 16)],
    ))
    .unwrap();
    (c, owed)
}

fn reclaim(crit: &mut Criterion) {
    let (base, _) = reclaim_cluster();
    let policy = Policy::default();
    let mut group = crit.benchmark_group("reclaim");
    group.sample_size(20).measurement_time(Duration::from_secs(6));
    group.bench_function("plan 1+16 at 10k nodes / 100k pods", |b| {
        b.iter_batched(
            || base.clone(),
            |mut c| {
                let out = c.run_cycle(1, &policy);
                assert!(!out.evictions.is_empty(), "the cycle must plan a reclaim");
                c
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Per-admission latency percentiles for a 1+16 gang at 10,000 nodes, and resident memory of the
/// 10,000-node / 100,000-pod model. Printed, not asserted.
fn probes() {
    let policy = Policy::default();
    let (mut c, q) = cluster(10_000);
    for _ in 0..200 {
        admit_and_release(&mut c, q, 16, &policy);
    }
    let mut samples: Vec<Duration> = (0..5_000)
        .map(|_| {
            let start = Instant::now();
            admit_and_release(&mut c, q, 16, &policy);
            start.elapsed()
        })
        .collect();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "probe admission 1+16 at 10k nodes over {} admissions: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
    drop(c);
    let before = rss_mib();
    let (model, _) = reclaim_cluster();
    println!(
        "probe resident memory: {:.0} MiB with the 10k-node / 100k-pod model ({:.0} MiB before building it; {} nodes, {} pods)",
        rss_mib(),
        before,
        model.node_count(),
        model.pod_count()
    );
}

criterion_group!(benches, admission, fair_share, reclaim);

fn main() {
    probes();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
