//! Core benchmarks (targets in design.md). Run: `cargo bench --bench core`; results and the machine they were
//! measured on are recorded in benches/README.md.
//!
//! Fast path: identical nodes (half full for admission), the same gang admitted again and again, flat queues.
//! - admission: one gang (driver on an on-demand pool, executors on a tainted spot pool) admitted through a full
//!   admission cycle, then released, on clusters of 1,000 / 10,000 / 50,000 nodes in three pools that are half
//!   full of other work. Throughput is in member placements.
//! - fair share: deserved shares for 10 / 100 / 1,000 queues.
//! - reclaim: a cycle that plans reclaim for a 1+16 gang at 10,000 nodes with 100,000 running pods.
//! - admission latency percentiles and resident memory are printed once, before criterion runs.
//!
//! Realistic clusters: seeded, so every run sees the same clusters and gangs.
//! - admission_realistic: 1,000 / 10,000 / 50,000 nodes of six instance types in three pools (spot nodes tainted,
//!   three zones), each filled by several foreign pods to a random 0-90% of its cpu and, independently, memory.
//!   A stream of 256 different gangs (varied shapes, node selectors, tolerations, affinity; leaf queues under
//!   parents) is offered one admission cycle per gang; the last 32 admitted stay, so the cluster churns instead
//!   of returning to one state. One iteration is one pass over the stream; throughput counts the member
//!   placements of a pass. Admitted fraction and per-gang latency percentiles are printed. Once more at 10,000
//!   nodes with the gangs spread over 1,000 leaf queues under 50 parents under 5 roots, since every cycle computes
//!   every queue's share.
//! - fair_share_hierarchical: deserved shares of 1,000 leaf queues under 50 parents under 5 roots (and 100/10/2).
//! - reclaim_realistic: 10,000 heterogeneous nodes (110,000 pods) held by two borrowing queues; three owed queues
//!   each ask for a different gang; one cycle plans a reclaim for each.

use std::collections::{BTreeSet, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use muster::core::fairshare::{ShareInput, deserved_shares};
use muster::core::resources::{CPU, MEMORY, PODS};
use muster::core::testkit::{GI, gang, labelled, node, request, selecting, tainted, template, tolerating};
use muster::core::{
    Cluster, GangId, GangSpec, Millis, NodeSpec, PodSpec, Policy, QueueId, QueueSpec, Requirement, Resources,
    SelectorOperator, TemplateSpec, Term, WaitReason,
};

/// Fast path (identical half-full nodes, same gang): see the realistic benchmarks below for the general case.
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

/// Fast path: identical half-full nodes, the same gang re-admitted.
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

/// Fast path: identical nodes, one borrowing queue, one owed gang.
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

// ----- realistic clusters -----

/// splitmix64: a tiny seeded generator, so every run builds the same clusters and gangs without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is negligible at these ranges).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.between(0, 99) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.between(0, items.len() as u64 - 1) as usize]
    }
}

struct InstanceType {
    name: &'static str,
    cores: u64,
    mem_gi: u64,
    max_pods: u64,
}

const INSTANCE_TYPES: [InstanceType; 6] = [
    InstanceType { name: "m5.xlarge", cores: 4, mem_gi: 16, max_pods: 58 },
    InstanceType { name: "m5.4xlarge", cores: 16, mem_gi: 64, max_pods: 234 },
    InstanceType { name: "m5.8xlarge", cores: 32, mem_gi: 128, max_pods: 234 },
    InstanceType { name: "c5.9xlarge", cores: 36, mem_gi: 72, max_pods: 234 },
    InstanceType { name: "r5.8xlarge", cores: 32, mem_gi: 256, max_pods: 234 },
    InstanceType { name: "m5.24xlarge", cores: 96, mem_gi: 384, max_pods: 737 },
];

/// Node pools: name, share of the nodes in percent, instance types (indices into `INSTANCE_TYPES`). Spot nodes
/// are tainted `spot=true:NoSchedule`.
const POOLS: [(&str, u64, &[usize]); 3] =
    [("on-demand", 10, &[0, 1, 5]), ("spot", 55, &[2, 3, 4, 5]), ("general", 35, &[0, 1, 3, 4])];
const ZONE: &str = "topology.kubernetes.io/zone";
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";

/// Node `i`: a random pool, one of the pool's instance types, a random zone.
fn realistic_node(rng: &mut Rng, i: usize) -> NodeSpec {
    let mut roll = rng.between(0, 99);
    let (pool, _, types) = *POOLS
        .iter()
        .find(|(_, share, _)| {
            let here = roll < *share;
            roll = roll.saturating_sub(*share);
            here
        })
        .expect("pool shares add up to 100");
    let t = &INSTANCE_TYPES[rng.pick(types)];
    // Allocatable is below capacity (kubelet and system reservations), as on real nodes: capacities are then not
    // round multiples of typical requests, which is what makes packing leave fragments.
    let cpu = t.cores * 1000 - 100 - t.cores * 10;
    let mem = t.mem_gi * GI - GI / 2 - t.mem_gi * GI / 50;
    let mut n = node(&format!("{pool}-{i}"), cpu, mem);
    n.allocatable = n.allocatable.with(PODS, t.max_pods);
    let zone = rng.pick(&ZONES);
    let n = labelled(labelled(labelled(n, "pool", pool), ZONE, zone), INSTANCE_TYPE, t.name);
    if pool == "spot" { tainted(n, "spot", "true") } else { n }
}

/// A cluster of `n` realistic nodes, each filled by 2 to 8 foreign pods of assorted sizes that together use a
/// random 0-90% of its cpu and, independently, of its memory.
fn realistic_cluster(n: usize, seed: u64) -> Cluster {
    let mut rng = Rng(seed);
    let mut c = Cluster::new();
    for i in 0..n {
        let spec = realistic_node(&mut rng, i);
        let (name, alloc) = (spec.name.clone(), spec.allocatable);
        let id = c.add_node(spec).unwrap();
        let cpu = alloc.get(CPU) * rng.between(0, 90) / 100;
        let mem = alloc.get(MEMORY) * rng.between(0, 90) / 100;
        let pods = rng.between(2, 8) as usize;
        let cpu_weights: Vec<u64> = (0..pods).map(|_| rng.between(1, 10)).collect();
        let mem_weights: Vec<u64> = (0..pods).map(|_| rng.between(1, 10)).collect();
        let (cpu_sum, mem_sum) = (cpu_weights.iter().sum::<u64>(), mem_weights.iter().sum::<u64>());
        for p in 0..pods {
            let r = request(cpu * cpu_weights[p] / cpu_sum, mem * mem_weights[p] / mem_sum);
            if r.get(CPU) == 0 && r.get(MEMORY) == 0 {
                continue;
            }
            let pod = PodSpec { name: format!("{name}-f{p}"), request: r, member: None, priority: 0 };
            c.add_pod(pod, Some(id), 0).unwrap();
        }
    }
    c
}

/// Leaf queues of the admission stream: five under two parents, one root of its own.
fn stream_queues(c: &mut Cluster) -> Vec<QueueId> {
    c.upsert_queue(QueueSpec::new("analytics", 3));
    c.upsert_queue(QueueSpec::new("ml", 2));
    let leaves = [
        ("etl", 2, Some("analytics")),
        ("reporting", 1, Some("analytics")),
        ("adhoc", 1, Some("analytics")),
        ("training", 3, Some("ml")),
        ("inference", 1, Some("ml")),
        ("batch", 1, None),
    ];
    leaves
        .iter()
        .map(|&(name, weight, parent)| {
            c.upsert_queue(QueueSpec { parent: parent.map(str::to_string), ..QueueSpec::new(name, weight) })
        })
        .collect()
}

/// `leaves` leaf queues under `parents` parents under `roots` roots (round robin), for a cycle that must compute
/// a large hierarchy's shares every time.
fn many_queues(c: &mut Cluster, roots: usize, parents: usize, leaves: usize) -> Vec<QueueId> {
    for r in 0..roots {
        c.upsert_queue(QueueSpec::new(&format!("root-{r}"), 1 + r as u64 % 3));
    }
    for p in 0..parents {
        let parent = Some(format!("root-{}", p % roots));
        c.upsert_queue(QueueSpec { parent, ..QueueSpec::new(&format!("parent-{p}"), 1 + p as u64 % 4) });
    }
    (0..leaves)
        .map(|l| {
            let parent = Some(format!("parent-{}", l % parents));
            c.upsert_queue(QueueSpec { parent, ..QueueSpec::new(&format!("leaf-{l}"), 1 + l as u64 % 8) })
        })
        .collect()
}

/// Keeps a template off the listed values of a label (required node affinity, `NotIn`).
fn avoiding(mut t: TemplateSpec, key: &str, values: &[&str]) -> TemplateSpec {
    t.placement.required_terms = vec![Term {
        match_expressions: vec![Requirement {
            key: key.to_string(),
            operator: SelectorOperator::NotIn,
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
        match_fields: Vec::new(),
    }];
    t.placement = t.placement.canonical();
    t
}

/// Executor counts of a stream.
#[derive(Debug, Clone, Copy)]
enum Mix {
    /// Mostly around 4 and around 16 executors, some 1 to 11, a tenth 24 to 64.
    Mixed,
    /// Every gang 16 to 64 executors.
    Wide,
}

/// `count` different Spark-shaped gangs (a driver and executors) over `queues`.
fn gang_stream(seed: u64, queues: &[QueueId], mix: Mix, count: usize) -> Vec<GangSpec> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|i| {
            let driver = template("driver", 500 * rng.between(1, 8), GI / 2 * rng.between(2, 16), 1, 1);
            let cores = rng.pick(&[1, 2, 2, 4, 4, 4, 5, 8]);
            let heap_gi = (cores * rng.pick(&[1, 2, 4, 4, 6])).clamp(1, 29);
            // Spark adds max(384 MiB, 10%) of memory overhead to every executor.
            let mem = heap_gi * GI + (heap_gi * GI / 10).max(384 << 20);
            let executors = match mix {
                Mix::Mixed => match rng.between(0, 99) {
                    0..=34 => rng.between(2, 6),
                    35..=69 => rng.between(12, 20),
                    70..=89 => rng.between(1, 11),
                    _ => rng.between(24, 64),
                },
                Mix::Wide => rng.between(16, 64),
            } as u32;
            // Dynamic allocation: some gangs may grow beyond their minimum (elastic members, not admitted here).
            let max = if rng.percent(30) { executors * 2 } else { executors };
            let executor = template("executor", cores * 1000, mem, executors, max);
            let (driver, executor) = match rng.between(0, 99) {
                0..=44 => (
                    selecting(driver, "pool", "on-demand"),
                    tolerating(selecting(executor, "pool", "spot"), "spot", "true"),
                ),
                45..=64 => (driver, tolerating(avoiding(executor, INSTANCE_TYPE, &["m5.xlarge"]), "spot", "true")),
                65..=84 => {
                    let zone = rng.pick(&ZONES);
                    (selecting(driver, ZONE, zone), tolerating(selecting(executor, ZONE, zone), "spot", "true"))
                }
                _ => (selecting(driver, "pool", "general"), selecting(executor, "pool", "general")),
            };
            GangSpec {
                name: format!("app-{i:03}"),
                queue: rng.pick(queues),
                priority: if rng.percent(10) { 100 } else { 0 },
                created: 0,
                templates: vec![driver, executor],
            }
        })
        .collect()
}

const STREAM_GANGS: usize = 256;
/// Admitted gangs kept in the cluster; the oldest is released when another is admitted.
const WINDOW: usize = 32;

/// A stream of different gangs offered to the admission cycle one at a time.
struct Stream {
    specs: Vec<GangSpec>,
    window: VecDeque<GangId>,
    now: Millis,
    offered: u64,
    admitted: u64,
    placements: u64,
    evictions: u64,
}

impl Stream {
    fn new(specs: Vec<GangSpec>) -> Stream {
        Stream { specs, window: VecDeque::new(), now: 0, offered: 0, admitted: 0, placements: 0, evictions: 0 }
    }

    /// Offers gang `i` of the stream to one admission cycle; returns its member placements (0 if not admitted).
    fn step(&mut self, c: &mut Cluster, policy: &Policy, i: usize) -> u64 {
        self.now += 1;
        let g = c.add_gang(GangSpec { created: self.now, ..self.specs[i].clone() }).unwrap();
        let out = c.run_cycle(self.now, policy);
        self.offered += 1;
        self.evictions += out.evictions.len() as u64;
        if out.admitted.first() != Some(&g) {
            // No room right now: drop it, so every cycle offers exactly one new gang and refusals do not pile up.
            c.remove_gang(g).unwrap();
            return 0;
        }
        let placed = c.gang(g).unwrap().slots.len() as u64;
        self.admitted += 1;
        self.placements += placed;
        self.window.push_back(g);
        if self.window.len() > WINDOW {
            c.remove_gang(self.window.pop_front().unwrap()).unwrap();
        }
        placed
    }

    /// One pass over the whole stream; returns its member placements.
    fn pass(&mut self, c: &mut Cluster, policy: &Policy) -> u64 {
        (0..self.specs.len()).map(|i| self.step(c, policy, i)).sum()
    }

    fn reset_counts(&mut self) {
        (self.offered, self.admitted, self.placements, self.evictions) = (0, 0, 0, 0);
    }

    fn admitted_fraction(&self) -> f64 {
        self.admitted as f64 / self.offered.max(1) as f64
    }
}

/// Per-gang latency of `steps` stream steps: (p50, p99, max).
fn stream_latency(c: &mut Cluster, stream: &mut Stream, policy: &Policy, steps: usize) -> [Duration; 3] {
    let n = stream.specs.len();
    let mut samples: Vec<Duration> = (0..steps)
        .map(|i| {
            let start = Instant::now();
            stream.step(c, policy, i % n);
            start.elapsed()
        })
        .collect();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    [pct(0.50), pct(0.99), samples[samples.len() - 1]]
}

/// Benchmarks one stream on one cluster, then prints what it admitted and per-gang latency.
fn bench_stream(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    nodes: usize,
    c: &mut Cluster,
    specs: Vec<GangSpec>,
) {
    let policy = Policy::default();
    let mut stream = Stream::new(specs);
    // Reach the steady state (a full window) before measuring; the second pass sets the throughput figure.
    stream.pass(c, &policy);
    stream.reset_counts();
    let per_pass = stream.pass(c, &policy);
    assert!(
        stream.admitted_fraction() >= 0.9,
        "{label} at {nodes} nodes admitted only {:.1}% of the stream: the benchmark must measure admissions",
        100.0 * stream.admitted_fraction()
    );
    stream.reset_counts();
    group.throughput(Throughput::Elements(per_pass));
    group.bench_function(BenchmarkId::new(label, nodes), |b| b.iter(|| stream.pass(black_box(c), &policy)));
    if stream.offered > 0 {
        report_stream(label, nodes, c, &mut stream, &policy, per_pass);
    } // else filtered out on the command line
    // The next stream on this cluster starts from its foreign pods alone.
    for g in stream.window.drain(..) {
        c.remove_gang(g).unwrap();
    }
}

/// Prints what a benchmarked stream admitted, then measures per-gang latency over four more passes.
fn report_stream(label: &str, nodes: usize, c: &mut Cluster, stream: &mut Stream, policy: &Policy, per_pass: u64) {
    let passes = stream.offered as f64 / stream.specs.len() as f64;
    println!(
        "  {label}/{nodes}: admitted {} of {} gangs offered ({:.1}%), {:.0} member placements per pass \
         (throughput figure: {per_pass}), {} evictions planned",
        stream.admitted,
        stream.offered,
        100.0 * stream.admitted_fraction(),
        stream.placements as f64 / passes.max(1.0),
        stream.evictions
    );
    let [p50, p99, max] = stream_latency(c, stream, policy, 4 * STREAM_GANGS);
    println!("  {label}/{nodes}: per-gang admission cycle p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(stream.admitted_fraction() >= 0.9, "{label} at {nodes} nodes: too many refusals while measuring");
}

/// Heterogeneous clusters and a stream of different gangs.
fn admission_realistic(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("admission_realistic");
    group.sample_size(15).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for nodes in [1_000, 10_000, 50_000] {
        let mut c = realistic_cluster(nodes, 0x5EED_0000 + nodes as u64);
        let queues = stream_queues(&mut c);
        for (label, mix) in [("mixed", Mix::Mixed), ("wide", Mix::Wide)] {
            let specs = gang_stream(0xA99 + nodes as u64, &queues, mix, STREAM_GANGS);
            bench_stream(&mut group, label, nodes, &mut c, specs);
        }
    }
    // Every cycle computes every queue's share: the same mixed stream over 1,000 leaf queues in a hierarchy.
    let mut c = realistic_cluster(10_000, 0x5EED_0000 + 10_000);
    let queues = many_queues(&mut c, 5, 50, 1_000);
    let specs = gang_stream(0xA99 + 10_000, &queues, Mix::Mixed, STREAM_GANGS);
    bench_stream(&mut group, "mixed, 1,055 queues", 10_000, &mut c, specs);
    group.finish();
}

/// `leaves` leaf queues under `parents` parents under `roots` roots, with assorted weights, capabilities,
/// guarantees, and requests (a third of the leaves idle).
fn hierarchy_inputs(roots: usize, parents: usize, leaves: usize, total: &Resources) -> Vec<ShareInput> {
    let mut rng = Rng(0xFA1 + leaves as u64);
    let share_of =
        |r: &Resources, percent: u64| Resources::cpu_mem(r.get(CPU) / 100 * percent, r.get(MEMORY) / 100 * percent);
    let mut inputs: Vec<ShareInput> = Vec::with_capacity(roots + parents + leaves);
    for r in 0..roots {
        inputs.push(ShareInput {
            weight: rng.between(1, 4),
            capability: if r == 0 { share_of(total, 30) } else { Resources::UNLIMITED },
            guarantee: Resources::ZERO,
            request: Resources::ZERO,
            parent: None,
        });
    }
    for p in 0..parents {
        inputs.push(ShareInput {
            weight: rng.between(1, 8),
            capability: if p % 4 == 0 { share_of(total, rng.between(2, 10)) } else { Resources::UNLIMITED },
            guarantee: if p % 5 == 0 { share_of(total, 1) } else { Resources::ZERO },
            request: Resources::ZERO,
            parent: Some(p % roots),
        });
    }
    for l in 0..leaves {
        // Heavy-tailed demand: most leaves ask for a little, a few for a lot.
        let scale = if rng.percent(10) { 200 } else { 1 };
        let request = if rng.percent(33) {
            Resources::ZERO
        } else {
            Resources::cpu_mem(1_000 * rng.between(1, 500) * scale, GI * rng.between(1, 2_000) * scale)
        };
        inputs.push(ShareInput {
            weight: rng.between(1, 16),
            capability: if l % 6 == 0 { share_of(total, 1) } else { Resources::UNLIMITED },
            guarantee: if l % 10 == 0 {
                Resources::cpu_mem(rng.between(1, 50) * 1_000, rng.between(1, 200) * GI)
            } else {
                Resources::ZERO
            },
            request,
            parent: Some(roots + l % parents),
        });
    }
    inputs
}

fn fair_share_hierarchical(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("fair_share_hierarchical");
    group.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    // About the capacity of 10,000 of the realistic nodes.
    let total = Resources::cpu_mem(300_000_000, 1_200_000 * GI);
    for (roots, parents, leaves) in [(2, 10, 100), (5, 50, 1_000)] {
        let inputs = hierarchy_inputs(roots, parents, leaves, &total);
        let shares = deserved_shares(&total, &inputs).unwrap();
        let roots_total = Resources::sum(shares[..roots].iter());
        assert!(roots_total.fits_in(&total), "the roots divide no more than the cluster");
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{leaves} leaves, {parents} parents, {roots} roots")),
            &inputs,
            |b, inputs| b.iter(|| deserved_shares(black_box(&total), black_box(inputs)).unwrap()),
        );
    }
    group.finish();
}

/// 10,000 realistic nodes, each running a logging daemon (foreign) and one gang of 10 pods (5 minimum, 5 elastic)
/// that takes the rest of it, of two borrowing queues. Three owed queues each ask for a different gang first (a Spark
/// job on spot, a zone-pinned one with large executors, one on the general pool), with a backlog behind it.
fn reclaim_realistic_cluster() -> (Cluster, Vec<GangId>) {
    let mut rng = Rng(0x7EC1A1);
    let mut c = Cluster::new();
    let borrowers =
        [c.upsert_queue(QueueSpec::new("borrow-etl", 1)), c.upsert_queue(QueueSpec::new("borrow-adhoc", 1))];
    for i in 0..10_000 {
        let spec = realistic_node(&mut rng, i);
        let (name, alloc) = (spec.name.clone(), spec.allocatable);
        let n = c.add_node(spec).unwrap();
        let daemon = request(rng.between(100, 300), rng.between(256, 768) << 20);
        c.add_pod(PodSpec { name: format!("{name}-log"), request: daemon, member: None, priority: 0 }, Some(n), 0)
            .unwrap();
        let each = request((alloc.get(CPU) - daemon.get(CPU)) / 10, (alloc.get(MEMORY) - daemon.get(MEMORY)) / 10);
        let admitted = rng.between(0, 1_000_000);
        let mut g = gang(&format!("b{i}"), rng.pick(&borrowers), admitted, vec![template("w", 0, 0, 5, 10)]);
        g.templates[0].request = each;
        g.priority = if rng.percent(20) { 10 } else { 0 };
        let g = c.add_gang(g).unwrap();
        c.restore_admission(g, &[], admitted, admitted).unwrap();
        for p in 0..10 {
            let pod = PodSpec { name: format!("b{i}-{p}"), request: each, member: Some((g, 0)), priority: 0 };
            c.add_pod(pod, Some(n), admitted).unwrap();
        }
    }
    // A running muster has evaluated its capacity index long before a gang arrives: one cycle with nothing
    // waiting builds it, so the measured cycle does not rebuild every class from scratch.
    assert!(c.run_cycle(1_000_001, &Policy::default()).admitted.is_empty());
    let owed = |c: &mut Cluster, name: &str| c.upsert_queue(QueueSpec::new(name, 1));
    let (ml, reporting, streaming) =
        (owed(&mut c, "owed-ml"), owed(&mut c, "owed-reporting"), owed(&mut c, "owed-streaming"));
    // Borrowing needs demand beyond the cluster: a backlog of 72 gangs (57,600 cpu, about 15% of the cluster) in
    // each owed queue makes every queue deserve about a fifth, so both borrowers hold far more than their share.
    // Only the first gang of each owed queue (its head) may reclaim.
    for (name, q) in [("ml", ml), ("reporting", reporting), ("streaming", streaming)] {
        for k in 0..72 {
            let backlog = vec![template("executor", 8_000, 30 * GI, 100, 100)];
            c.add_gang(gang(&format!("{name}-backlog-{k}"), q, 1_600_000 + k, backlog)).unwrap();
        }
    }
    let mem = |gi: u64| gi * GI + (gi * GI / 10).max(384 << 20);
    let gangs = vec![
        gang(
            "ml-train",
            ml,
            1_500_000,
            vec![
                selecting(template("driver", 1_000, mem(4), 1, 1), "pool", "on-demand"),
                tolerating(selecting(template("executor", 4_000, mem(10), 16, 16), "pool", "spot"), "spot", "true"),
            ],
        ),
        gang(
            "report-daily",
            reporting,
            1_500_000,
            vec![
                selecting(template("driver", 2_000, mem(8), 1, 1), ZONE, ZONES[0]),
                tolerating(selecting(template("executor", 8_000, mem(28), 8, 12), ZONE, ZONES[0]), "spot", "true"),
            ],
        ),
        gang(
            "stream-join",
            streaming,
            1_500_000,
            vec![
                selecting(template("driver", 500, mem(2), 1, 1), "pool", "general"),
                selecting(template("executor", 2_000, mem(6), 32, 32), "pool", "general"),
            ],
        ),
    ];
    let ids = gangs.into_iter().map(|g| c.add_gang(g).unwrap()).collect();
    (c, ids)
}

fn reclaim_realistic(crit: &mut Criterion) {
    let (base, owed) = reclaim_realistic_cluster();
    let policy = Policy::default();
    let now = 2_000_000;
    {
        let mut c = base.clone();
        let out = c.run_cycle(now, &policy);
        let beneficiaries: BTreeSet<GangId> = out.evictions.iter().map(|e| e.beneficiary).collect();
        let reclaiming: BTreeSet<GangId> =
            out.waiting.iter().filter(|(_, r)| matches!(r, WaitReason::Reclaiming { .. })).map(|(g, _)| *g).collect();
        println!(
            "  reclaim_realistic: {} nodes, {} pods; one cycle plans {} evictions ({} victims) for {} gangs",
            c.node_count(),
            c.pod_count(),
            out.evictions.len(),
            out.reclaimed.len(),
            beneficiaries.len(),
        );
        for g in &owed {
            assert!(reclaiming.contains(g), "owed gang {g:?} must be reclaiming");
            let n = out.evictions.iter().filter(|e| e.beneficiary == *g).count();
            println!("    for {}: {n} evictions", c.gang(*g).unwrap().spec.name);
        }
    }
    let mut group = crit.benchmark_group("reclaim_realistic");
    // A cycle here takes far longer than the fast path's: flat sampling keeps the group to a few seconds.
    group
        .sample_size(10)
        .sampling_mode(criterion::SamplingMode::Flat)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function("plan 3 owed queues at 10k heterogeneous nodes / 110k pods", |b| {
        b.iter_batched(
            || base.clone(),
            |mut c| {
                let out = c.run_cycle(now, &policy);
                assert!(!out.evictions.is_empty(), "the cycle must plan evictions");
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

criterion_group!(
    benches,
    admission,
    fair_share,
    reclaim,
    admission_realistic,
    fair_share_hierarchical,
    reclaim_realistic
);

fn main() {
    probes();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
