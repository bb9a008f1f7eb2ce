//! Fair share end to end: two queues of weights 2 and 1 under sustained contention, through the
//! stock kube-scheduler calling `muster serve`, converge to a 2:1 split of the contended resource (cpu).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};
use muster::api::names;
use support::muster::delete_pod_now;
use support::{
    ExtenderMode, MusterConfig, MusterEnv, PodPhase, TestNode, assert_no_node_overcommitted, bound_node, gang_pod,
    holds_capacity, member_template, pod_group, pod_request, quantity, queue, state_quantity, try_set_pod_phase,
};

/// The cluster: 3 nodes x 4 cpu = 12 cpu, so the queues deserve 8 and 4 cpu.
const NODES: usize = 3;
const NODE_CPU: &str = "4";
/// Each gang: 2 members of 500m (1 cpu), small enough that shares move in fine steps.
const GANG_SIZE: usize = 2;
const MEMBER_CPU: &str = "500m";
/// Gangs of each queue kept waiting at all times: each queue alone could fill the cluster, so whenever capacity
/// frees, muster has to choose between the queues.
const BACKLOG: usize = 12;
/// How long a gang runs once fully bound, before the test (its kubelet) completes it: 2 s plus a fixed spread of
/// up to 2 s by gang number, so completions do not come in synchronised waves.
fn run_time(serial: usize) -> Duration {
    Duration::from_millis(2000 + (serial as u64 * 7919) % 2000)
}
/// Silver has the cluster to itself until gold's gangs start arriving: it borrows what gold does not use yet,
/// and the shares must then converge from that skewed start.
const GOLD_JOINS_AT: Duration = Duration::from_secs(10);
/// Shares are sampled only after this: 20 s (five to ten run times) after gold joined.
const WARM_UP: Duration = Duration::from_secs(30);
/// The sampling window: about 20 run times.
const WINDOW: Duration = Duration::from_secs(60);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
const QUEUES: [(&str, i32); 2] = [("gold", 2), ("silver", 1)];

struct GangRun {
    queue: &'static str,
    serial: usize,
    bound_at: Option<Instant>,
    done: bool,
    evicted: bool,
}

/// Plays the kubelet for a pod that may be gone meanwhile (then there is nothing to do).
async fn kubelet_set_phase(client: &kube::Client, namespace: &str, name: &str, phase: PodPhase) {
    match try_set_pod_phase(client, namespace, name, phase).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("cannot set pod {namespace}/{name} to {phase:?}: {e}"),
    }
}

fn member_names(gang: &str) -> Vec<String> {
    (0..GANG_SIZE).map(|i| format!("{gang}-{i}")).collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Two queues (gold weight 2, silver weight 1) each keep `BACKLOG` small gangs waiting, silver from the start and
/// gold from `GOLD_JOINS_AT` (until then silver must be able to borrow the idle cluster); the test plays the kubelet:
/// a gang whose members are all bound is marked Running and, after its run time, Succeeded and deleted, freeing its
/// cpu for the next admission; a pod muster evicts (reclaim) terminates at once, and its gang is given up. After
/// `WARM_UP`, the cpu requested by each queue's bound, unfinished pods is sampled every `SAMPLE_EVERY` for `WINDOW`:
/// the mean gold/silver ratio must be within 10% of 2. Also checked: the cluster stays busy (the contention is
/// real), no node is over-committed at any check, and muster's `/state` deserves cpu in the same 2:1 ratio.
#[tokio::test(flavor = "multi_thread")]
async fn two_queues_weighted_two_to_one_share_the_cluster_two_to_one() {
    let namespace = "fair";
    let env = MusterEnv::start(namespace, &MusterConfig::for_tests(), ExtenderMode::NodeNames).await;
    let client = env.client();
    for i in 1..=NODES {
        env.control_plane.create_node(&TestNode::new(&format!("node-{i}"), NODE_CPU, "32Gi")).await;
    }
    for (name, weight) in QUEUES {
        env.create_queue(&queue(name, weight)).await;
    }
    let cluster_cpu = NODES as i64 * quantity("cpu", NODE_CPU);

    let mut gangs: BTreeMap<String, GangRun> = BTreeMap::new();
    let mut serial = 0;
    let mut samples: Vec<(i64, i64)> = Vec::new();
    // muster's own view at each sample: allocated gold, allocated silver, deserved gold, deserved silver.
    let mut muster_view: Vec<[i64; 4]> = Vec::new();
    // The most cpu silver held while it was alone.
    let mut silver_borrowed = 0;
    let start = Instant::now();
    let mut next_sample = start + WARM_UP;
    let pods_api = env.pods();
    while start.elapsed() < WARM_UP + WINDOW {
        let pods: HashMap<String, Pod> = pods_api
            .list(&ListParams::default())
            .await
            .expect("cannot list pods")
            .items
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect();
        let now = Instant::now();

        // The kubelet. A member being deleted (muster evicts through the Eviction API, which leaves the pod to its
        // kubelet to stop) or gone: its gang is given up, as its job would. A fully bound gang starts running; a
        // running gang completes after its run time.
        let mut to_run = Vec::new();
        let mut to_finish = Vec::new();
        for (name, run) in gangs.iter_mut().filter(|(_, run)| !run.done) {
            let members = member_names(name);
            let evicted = members.iter().any(|m| pods.get(m).is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
            if evicted {
                run.done = true;
                run.evicted = true;
                to_finish.push((name.clone(), PodPhase::Failed));
                continue;
            }
            match run.bound_at {
                None => {
                    if members.iter().all(|m| pods.get(m).and_then(bound_node).is_some()) {
                        run.bound_at = Some(now);
                        to_run.extend(members);
                    }
                }
                Some(at) if now - at >= run_time(run.serial) => {
                    run.done = true;
                    to_finish.push((name.clone(), PodPhase::Succeeded));
                }
                Some(_) => {}
            }
        }
        futures::future::join_all(to_run.iter().map(|m| kubelet_set_phase(&client, namespace, m, PodPhase::Running)))
            .await;
        futures::future::join_all(to_finish.iter().map(|(gang, phase)| {
            let (client, pod_groups) = (client.clone(), env.pod_groups());
            async move {
                for member in member_names(gang) {
                    kubelet_set_phase(&client, namespace, &member, *phase).await;
                    delete_pod_now(&client, namespace, &member).await;
                }
                match pod_groups.delete(gang, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => panic!("cannot delete PodGroup {gang}: {e}"),
                }
            }
        }))
        .await;

        // Keep every queue's backlog full.
        let mut creations = Vec::new();
        for (queue_name, _) in QUEUES {
            if queue_name == "gold" && start.elapsed() < GOLD_JOINS_AT {
                continue;
            }
            let waiting = gangs.values().filter(|r| r.queue == queue_name && !r.done && r.bound_at.is_none()).count();
            for _ in waiting..BACKLOG {
                serial += 1;
                let name = format!("{queue_name}-{serial:04}");
                gangs.insert(
                    name.clone(),
                    GangRun { queue: queue_name, serial, bound_at: None, done: false, evicted: false },
                );
                creations.push((name, queue_name));
            }
        }
        let env = &env;
        futures::future::join_all(creations.iter().map(|(name, queue_name)| async move {
            env.create_pod_group(&pod_group(
                name,
                queue_name,
                vec![member_template("worker", GANG_SIZE as i32, MEMBER_CPU, "256Mi")],
            ))
            .await;
            for member in member_names(name) {
                env.create_pod(&gang_pod(&member, name, None, MEMBER_CPU, "256Mi")).await;
            }
        }))
        .await;

        if start.elapsed() < GOLD_JOINS_AT {
            let silver_alone: i64 = pods.values().filter(|p| holds_capacity(p)).map(|p| pod_request(p, "cpu")).sum();
            silver_borrowed = silver_borrowed.max(silver_alone);
        }
        if Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let mut cpu: HashMap<&str, i64> = HashMap::new();
            for pod in pods.values().filter(|p| holds_capacity(p) && p.metadata.deletion_timestamp.is_none()) {
                let gang = pod.labels().get(names::POD_GROUP_LABEL).cloned().unwrap_or_default();
                let queue_name = gangs.get(&gang).map(|r| r.queue).unwrap_or("?");
                *cpu.entry(queue_name).or_default() += pod_request(pod, "cpu");
            }
            assert_eq!(cpu.get("?"), None, "bound pods of no known gang: {cpu:?}");
            samples.push((cpu.get("gold").copied().unwrap_or(0), cpu.get("silver").copied().unwrap_or(0)));
            let state = env.muster.state().await;
            let of = |q: &str, deserved: bool| {
                let queue = state.queue(q);
                let value = queue.and_then(|q| if deserved { q.deserved.get("cpu") } else { q.allocated.get("cpu") });
                value.map_or(0, |v| state_quantity("cpu", v))
            };
            muster_view.push([of("gold", false), of("silver", false), of("gold", true), of("silver", true)]);
            if samples.len().is_multiple_of(20) {
                assert_no_node_overcommitted(&client, &HashMap::new()).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let count = samples.len();
    assert!(count >= 60, "only {count} samples in the window");
    let gold = mean(samples.iter().map(|s| s.0 as f64));
    let silver = mean(samples.iter().map(|s| s.1 as f64));
    let completed = |q: &str| gangs.values().filter(|r| r.done && !r.evicted && r.queue == q).count();
    let evicted = |q: &str| gangs.values().filter(|r| r.evicted && r.queue == q).count();
    let view = |i: usize| mean(muster_view.iter().map(|v| v[i] as f64));
    eprintln!(
        "mean bound cpu over {count} samples: gold {gold:.0}m, silver {silver:.0}m (ratio {:.3}) of {cluster_cpu}m; \
         silver alone held up to {silver_borrowed}m; gangs completed: gold {}, silver {}; evicted by muster: gold {}, \
         silver {}\n\
         muster's /state over the same samples: allocated gold {:.0}m, silver {:.0}m; deserved gold {:.0}m, \
         silver {:.0}m",
        gold / silver.max(1.0),
        completed("gold"),
        completed("silver"),
        evicted("gold"),
        evicted("silver"),
        view(0),
        view(1),
        view(2),
        view(3),
    );
    assert!(
        silver_borrowed >= cluster_cpu * 3 / 4,
        "alone, silver should borrow the idle cluster, but held at most {silver_borrowed}m of {cluster_cpu}m"
    );
    assert!(silver > 0.0, "silver got nothing under contention: gold {gold:.0}m");
    let ratio = gold / silver;
    assert!(
        (1.8..=2.2).contains(&ratio),
        "gold:silver = {ratio:.3}, not within 10% of 2 (gold {gold:.0}m, silver {silver:.0}m)"
    );
    let busy = (gold + silver) / cluster_cpu as f64;
    assert!(busy >= 0.6, "the cluster was only {:.0}% allocated on average: no real contention", busy * 100.0);
    assert!(
        completed("silver") >= 10,
        "too few silver gangs completed for a meaningful share: {}",
        completed("silver")
    );
    let deserved_ratio = view(2) / view(3).max(1.0);
    assert!(
        (1.8..=2.2).contains(&deserved_ratio),
        "muster's mean deserved cpu gold:silver = {deserved_ratio:.3} ({:.0}m : {:.0}m)",
        view(2),
        view(3)
    );
}
