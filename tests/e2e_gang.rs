//! Gangs end to end: real etcd + kube-apiserver, the stock kube-scheduler calling `muster serve` as its extender,
//! fake nodes created through the API. A gang starts whole or not at all.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use muster::api::{PodGroup, names};
use muster::index::convert::spark_pod_group_name;
use support::muster::prometheus_sample;
use support::{
    E2E_TIMEOUT, ExtenderMode, HOLD, MusterConfig, MusterEnv, PodHistory, TestNode, Transition, assert_never_bound,
    assert_no_node_overcommitted, bound_node, fetch_state, gang_pod, member_template, muster_pod, pod_condition,
    pod_group, prebound_pod, toleration, wait_until, with_node_selector,
};

// ---------------------------------------------------------------------------------------------------------------
// a. A gang that fits is fully bound, only to nodes whose capacity allows it.
// ---------------------------------------------------------------------------------------------------------------

/// Three 4-cpu nodes; node-a already runs a 3-cpu pod muster did not place. The gang is a 1-cpu leader and four
/// 2-cpu workers: it fits only as workers 2+2 on node-b and node-c and the leader in node-a's last cpu. A
/// scheduler spreading pods one by one (the stock scoring prefers the emptiest node) would put the leader on
/// node-b or node-c and strand a worker; muster must direct every member to its reserved slot.
async fn a_gang_that_fits_is_fully_bound_within_capacity(mode: ExtenderMode, namespace: &str) {
    let env = MusterEnv::start(namespace, &MusterConfig::for_tests(), mode).await;
    for name in ["node-a", "node-b", "node-c"] {
        env.control_plane.create_node(&TestNode::new(name, "4", "8Gi")).await;
    }
    env.create_pod(&prebound_pod("foreign", "node-a", "3", "1Gi")).await;

    env.create_pod_group(&pod_group(
        "fits",
        "default",
        vec![member_template("leader", 1, "1", "1Gi"), member_template("worker", 4, "2", "1Gi")],
    ))
    .await;
    // The leader first: kube-scheduler's own scoring (the emptiest node) would put it on node-b or node-c.
    env.create_pod(&gang_pod("fits-leader", "fits", Some("leader"), "1", "1Gi")).await;
    let mut members = vec!["fits-leader".to_owned()];
    for i in 0..4 {
        let name = format!("fits-worker-{i}");
        env.create_pod(&gang_pod(&name, "fits", Some("worker"), "2", "1Gi")).await;
        members.push(name);
    }
    let nodes = env.wait_all_bound(&members).await;
    assert_eq!(nodes["fits-leader"], "node-a", "the leader must take node-a's last cpu: {nodes:?}");
    for i in 0..4 {
        let node = &nodes[&format!("fits-worker-{i}")];
        assert!(node == "node-b" || node == "node-c", "a 2-cpu worker cannot fit node-a: {nodes:?}");
    }
    let by_node = assert_no_node_overcommitted(&env.client(), &HashMap::new()).await;
    assert_eq!(by_node["node-b"].len(), 2, "{by_node:?}");
    assert_eq!(by_node["node-c"].len(), 2, "{by_node:?}");

    // Every member went through kube-scheduler (PodScheduled=True), bound by muster's bind verb.
    for name in &members {
        let pod = env.pods().get(name).await.expect("the member exists");
        let scheduled = pod_condition(&pod, "PodScheduled").map(|c| c.status.as_str());
        assert_eq!(scheduled, Some("True"), "{name}: {:?}", pod.status);
    }
    let gang = env
        .wait_for_state("gang fits is admitted with all 5 members bound", |state| {
            let gang = state.gang(namespace, "fits").ok_or("gang fits not in /state")?;
            if gang.is_admitted() && gang.bound == 5 && gang.min_member == 5 {
                Ok(gang.clone())
            } else {
                Err(gang.describe())
            }
        })
        .await;
    assert_eq!(gang.queue, "default");
    // All members are bound: nothing is left reserved.
    assert!(gang.reservations.is_empty(), "a fully bound gang holds no reservations: {}", gang.describe());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gang_that_fits_is_fully_bound_within_node_capacity_node_names_mode() {
    a_gang_that_fits_is_fully_bound_within_capacity(ExtenderMode::NodeNames, "fits-names").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gang_that_fits_is_fully_bound_within_node_capacity_full_nodes_mode() {
    a_gang_that_fits_is_fully_bound_within_capacity(ExtenderMode::FullNodes, "fits-nodes").await;
}

// ---------------------------------------------------------------------------------------------------------------
// b. A gang that does not fit binds nothing, and binds entirely once capacity frees.
// ---------------------------------------------------------------------------------------------------------------

/// Three 4-cpu nodes, node-3 half taken by a pod muster did not place; a gang of three 3-cpu members needs one
/// whole node each. Sums would say it fits (12 - 2 = 10 >= 9): it does not. Deleting the blocking pod frees
/// node-3 and the gang binds entirely. Full Node objects in the filter calls (nodeCacheCapable: false).
#[tokio::test(flavor = "multi_thread")]
async fn a_gang_that_does_not_fit_binds_nothing_until_a_blocking_pod_goes() {
    let env = MusterEnv::start("blocked", &MusterConfig::for_tests(), ExtenderMode::FullNodes).await;
    for name in ["node-1", "node-2", "node-3"] {
        env.control_plane.create_node(&TestNode::new(name, "4", "8Gi")).await;
    }
    env.create_pod(&prebound_pod("blocker", "node-3", "2", "1Gi")).await;
    let history = PodHistory::start(&env.client(), &env.namespace).await;

    let members = env.create_simple_gang("wide", "default", 3, "3", "2Gi").await;
    let reason = env.assert_gang_waits(&history, "wide", &members).await;
    eprintln!("muster's reason for gang wide: {reason}");

    env.delete_pod_now("blocker").await;
    let nodes = env.wait_all_bound(&members).await;
    let distinct: BTreeSet<&String> = nodes.values().collect();
    assert_eq!(distinct.len(), 3, "one 3-cpu member per 4-cpu node: {nodes:?}");
    assert_no_node_overcommitted(&env.client(), &HashMap::new()).await;
    // Each member was bound once and never moved.
    history.caught_up().await;
    for member in &members {
        assert_eq!(history.bindings_of(member).len(), 1, "{member}: {:?}", history.bindings_of(member));
    }
}

/// Two 4-cpu nodes cannot take three 3-cpu members; a third node joins the cluster and the gang binds entirely.
#[tokio::test(flavor = "multi_thread")]
async fn a_gang_that_does_not_fit_binds_nothing_until_a_node_is_added() {
    let env = MusterEnv::start("grows", &MusterConfig::for_tests(), ExtenderMode::NodeNames).await;
    for name in ["node-1", "node-2"] {
        env.control_plane.create_node(&TestNode::new(name, "4", "8Gi")).await;
    }
    let history = PodHistory::start(&env.client(), &env.namespace).await;
    let members = env.create_simple_gang("wide", "default", 3, "3", "2Gi").await;
    env.assert_gang_waits(&history, "wide", &members).await;

    env.control_plane.create_node(&TestNode::new("node-3", "4", "8Gi")).await;
    let nodes = env.wait_all_bound(&members).await;
    let distinct: BTreeSet<&String> = nodes.values().collect();
    assert_eq!(distinct.len(), 3, "one 3-cpu member per 4-cpu node: {nodes:?}");
    assert_no_node_overcommitted(&env.client(), &HashMap::new()).await;
}

// ---------------------------------------------------------------------------------------------------------------
// c. Several gangs at once on a cluster that fits some of them: no gang is ever partially bound.
// ---------------------------------------------------------------------------------------------------------------

/// What a background poller of `/state` saw: when each gang was first seen admitted, and how many polls ran.
#[derive(Default)]
struct StateSamples {
    first_admitted: HashMap<String, Duration>,
    polls: u32,
}

/// Polls `/state` every 100 ms until aborted, recording when each gang of `namespace` is first seen admitted
/// (times on `history`'s clock).
fn sample_state(
    env: &MusterEnv,
    history: &PodHistory,
    namespace: &str,
) -> (Arc<Mutex<StateSamples>>, tokio::task::JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(StateSamples::default()));
    let (addr, token) = (env.muster.metrics_addr(), env.muster.token().to_owned());
    let start = std::time::Instant::now() - history.now();
    let namespace = namespace.to_owned();
    let task = {
        let samples = samples.clone();
        tokio::spawn(async move {
            loop {
                let at = start.elapsed();
                if let Ok(state) = fetch_state(addr, &token).await {
                    let mut samples = samples.lock().expect("samples lock");
                    samples.polls += 1;
                    for gang in state.gangs.iter().filter(|g| g.namespace == namespace && g.is_admitted()) {
                        samples.first_admitted.entry(gang.name.clone()).or_insert(at);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    (samples, task)
}

/// The longest a gang may stay partially bound: the time kube-scheduler needs to bind one gang's members one
/// after another (well under a second warm), with a very generous margin for a loaded 2-core CI machine. A gang
/// that never completes, or loses members, fails whatever the margin.
const PARTIAL_LIMIT: Duration = Duration::from_secs(30);

/// The intervals during which `gang` (of `size` members) was partially bound, as (start, end, bound at end);
/// `end` is `None` when the history ends with it partial.
fn partial_intervals(transitions: &[Transition], size: usize) -> Vec<(Duration, Option<Duration>, usize)> {
    let mut bound: BTreeSet<&str> = BTreeSet::new();
    let mut intervals = Vec::new();
    let mut open: Option<Duration> = None;
    for t in transitions {
        if t.node.is_some() {
            bound.insert(&t.pod);
        } else {
            bound.remove(t.pod.as_str());
        }
        let partial = !bound.is_empty() && bound.len() < size;
        match (open, partial) {
            (None, true) => open = Some(t.at),
            (Some(start), false) => {
                intervals.push((start, Some(t.at), bound.len()));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        intervals.push((start, None, bound.len()));
    }
    intervals
}

/// Four 4-cpu nodes (16 cpu) and six gangs asking for 37.5 cpu in shapes that fragment differently, submitted at
/// once with their members interleaved. A watch records every binding from the start; `/state` is polled all
/// along. Checked over the whole run: a gang is partially bound only while kube-scheduler binds its members in a
/// row (each such interval ends with the whole gang bound, within `PARTIAL_LIMIT`), no member of a gang muster
/// has not admitted is ever bound, and at quiescence each gang is fully bound or fully unbound, in agreement with
/// `/state`.
#[tokio::test(flavor = "multi_thread")]
async fn gangs_submitted_together_are_never_left_partially_bound() {
    let namespace = "together";
    let env = MusterEnv::start(namespace, &MusterConfig::for_tests(), ExtenderMode::NodeNames).await;
    for i in 1..=4 {
        env.control_plane.create_node(&TestNode::new(&format!("node-{i}"), "4", "16Gi")).await;
    }
    let history = PodHistory::start(&env.client(), namespace).await;
    let (samples, sampler) = sample_state(&env, &history, namespace);

    // (name, members, cpu each)
    let gangs: [(&str, usize, &str); 6] =
        [("g1", 3, "2"), ("g2", 3, "2"), ("g3", 2, "3"), ("g4", 4, "1"), ("g5", 2, "4"), ("g6", 5, "1500m")];
    for (name, size, cpu) in gangs {
        env.create_pod_group(&pod_group(name, "default", vec![member_template("worker", size as i32, cpu, "1Gi")]))
            .await;
    }
    // Members interleaved across gangs (g1-0, g2-0, ..., g1-1, ...), all created concurrently.
    let mut pods = Vec::new();
    for i in 0..5 {
        for (name, size, cpu) in gangs {
            if i < size {
                pods.push(gang_pod(&format!("{name}-{i}"), name, None, cpu, "1Gi"));
            }
        }
    }
    futures::future::join_all(pods.iter().map(|pod| env.create_pod(pod))).await;
    let members = |gang: &str| -> Vec<String> {
        let size = gangs.iter().find(|g| g.0 == gang).expect("a known gang").1;
        (0..size).map(|i| format!("{gang}-{i}")).collect()
    };

    // Quiescence: muster has decided about every gang, the admitted ones are fully bound, kube-scheduler has
    // tried every member of the others; then nothing changes for a while.
    let pods_api = env.pods();
    let (env_ref, members) = (&env, &members);
    let decided = wait_until("every gang is fully bound or waiting with a reason", E2E_TIMEOUT, || {
        let pods_api = pods_api.clone();
        async move {
            let state = env_ref.muster.state().await;
            let pods: HashMap<String, Pod> = pods_api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .map(|p| (p.name_any(), p))
                .collect();
            let mut admitted = BTreeSet::new();
            for (name, size, _) in gangs {
                let gang = state.gang(namespace, name).ok_or_else(|| format!("{name} not in /state"))?;
                let bound = members(name).iter().filter(|m| pods.get(*m).and_then(bound_node).is_some()).count();
                if gang.is_admitted() && bound == size {
                    admitted.insert(name);
                } else if gang.is_pending() && gang.reason.is_some() && bound == 0 {
                    let tried = members(name).iter().all(|m| {
                        pods.get(m).and_then(|p| pod_condition(p, "PodScheduled")).is_some_and(|c| c.status == "False")
                    });
                    if !tried {
                        return Err(format!("{name}: kube-scheduler has not tried every member yet"));
                    }
                } else {
                    return Err(format!("{} (bound {bound}); /state: {}", gang.describe(), state.describe()));
                }
            }
            Ok(admitted)
        }
    })
    .await;
    history.caught_up().await;
    let transitions_at_quiescence = history.transitions().len();
    tokio::time::sleep(HOLD).await;
    let transitions = history.transitions();
    assert_eq!(
        transitions.len(),
        transitions_at_quiescence,
        "bindings changed after quiescence: {:?}",
        &transitions[transitions_at_quiescence..]
    );
    sampler.abort();
    let samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    assert!(samples.polls > 10, "/state was polled only {} times", samples.polls);

    assert!(!decided.is_empty(), "some gang fits an empty 16-cpu cluster, yet none was bound");
    assert!(decided.len() < gangs.len(), "37.5 cpu of gangs cannot all fit 16 cpu: {decided:?}");

    for (name, size, _) in gangs {
        let of_gang: Vec<Transition> =
            transitions.iter().filter(|t| t.gang.as_deref() == Some(name)).cloned().collect();
        let state = env.muster.state().await;
        let gang = state.gang(namespace, name).expect("every gang is in /state").clone();
        if decided.contains(name) {
            // Bound: muster had admitted it, and its partial phase ended with the whole gang bound, promptly.
            assert!(
                samples.first_admitted.contains_key(name),
                "gang {name} was bound but /state never showed it admitted ({} polls)",
                samples.polls
            );
            let intervals = partial_intervals(&of_gang, size);
            for (start, end, bound_at_end) in &intervals {
                let end =
                    end.unwrap_or_else(|| panic!("gang {name} stayed partially bound from {start:?}: {of_gang:?}"));
                assert_eq!(*bound_at_end, size, "gang {name} went from partial to {bound_at_end} bound: {of_gang:?}");
                assert!(end - *start <= PARTIAL_LIMIT, "gang {name} was partial for {:?}: {of_gang:?}", end - *start);
            }
            assert_eq!(of_gang.len(), size, "gang {name}: each member bound exactly once: {of_gang:?}");
            assert_eq!(gang.bound as usize, size, "{}", gang.describe());
            // If muster recorded the admission time in the PodGroup status, it precedes every binding.
            let pg = Api::<PodGroup>::namespaced(env.client(), namespace).get(name).await.expect("PodGroup exists");
            if let Some(admitted_at) = pg.status.and_then(|s| s.admitted_at) {
                let admitted_at: SystemTime = admitted_at.0.into();
                let first_bound = of_gang.first().expect("bound gangs have transitions").at;
                let first_bound_wall = SystemTime::now() - (history.now() - first_bound);
                assert!(
                    admitted_at <= first_bound_wall + Duration::from_secs(1),
                    "gang {name}: admittedAt {admitted_at:?} is after its first member was bound ({first_bound_wall:?})"
                );
            }
        } else {
            assert!(of_gang.is_empty(), "gang {name} was not admitted but members were bound: {of_gang:?}");
            assert!(gang.is_pending() && gang.bound == 0, "{}", gang.describe());
            assert!(
                !samples.first_admitted.contains_key(name),
                "gang {name} was seen admitted, yet it is unbound and pending at the end: {}",
                gang.describe()
            );
        }
    }
    assert_no_node_overcommitted(&env.client(), &HashMap::new()).await;
}

// ---------------------------------------------------------------------------------------------------------------
// d. Driver on an on-demand pool, executors on a tainted spot pool.
// ---------------------------------------------------------------------------------------------------------------

const SPOT_TAINT: (&str, &str) = ("pool", "spot");

/// A Spark driver pod as spark-submit would create it (labels), declaring its executor gang with muster's
/// annotations: `min` executors of 2 cpu / 2Gi on the tainted spot pool.
fn spark_driver(name: &str, app_id: &str, min: u32) -> Pod {
    let mut pod = muster_pod(name, "1", "1Gi");
    with_node_selector(&mut pod, "pool", "on-demand");
    pod.metadata.labels = Some(BTreeMap::from([
        (names::SPARK_APP_SELECTOR_LABEL.to_owned(), app_id.to_owned()),
        (names::SPARK_ROLE_LABEL.to_owned(), names::SPARK_ROLE_DRIVER.to_owned()),
    ]));
    let tolerations = serde_json::to_string(&[toleration(SPOT_TAINT.0, SPOT_TAINT.1)]).expect("serialises");
    pod.metadata.annotations = Some(BTreeMap::from([
        (names::MIN_EXECUTORS_ANNOTATION.to_owned(), min.to_string()),
        (names::MAX_EXECUTORS_ANNOTATION.to_owned(), min.to_string()),
        (names::EXECUTOR_RESOURCES_ANNOTATION.to_owned(), r#"{"cpu":"2","memory":"2Gi"}"#.to_owned()),
        (names::EXECUTOR_NODE_SELECTOR_ANNOTATION.to_owned(), r#"{"pool":"spot"}"#.to_owned()),
        (names::EXECUTOR_TOLERATIONS_ANNOTATION.to_owned(), tolerations),
    ]));
    pod
}

/// An executor pod of `app_id` as Spark's driver creates it: labels, 2 cpu / 2Gi, spot selector and toleration,
/// owned by the driver.
fn spark_executor(driver: &Pod, app_id: &str, id: u32) -> Pod {
    let mut pod = muster_pod(&format!("{app_id}-exec-{id}"), "2", "2Gi");
    with_node_selector(&mut pod, "pool", "spot");
    pod.spec.as_mut().expect("spec").tolerations = Some(vec![toleration(SPOT_TAINT.0, SPOT_TAINT.1)]);
    pod.metadata.labels = Some(BTreeMap::from([
        (names::SPARK_APP_SELECTOR_LABEL.to_owned(), app_id.to_owned()),
        (names::SPARK_ROLE_LABEL.to_owned(), names::SPARK_ROLE_EXECUTOR.to_owned()),
        (names::SPARK_EXEC_ID_LABEL.to_owned(), id.to_string()),
    ]));
    pod.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Pod".to_owned(),
        name: driver.name_any(),
        uid: driver.metadata.uid.clone().expect("a stored pod has a uid"),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    pod
}

/// Two roomy on-demand nodes, one tainted 4-cpu spot node: the driver (1 cpu, on-demand) of an application whose
/// three 2-cpu executors need the spot pool stays unbound although the on-demand pool has room (a plain pod
/// there binds at once), because the spot pool takes only two executors. A second spot node makes the whole gang
/// fit: the driver binds while the three executors, which do not exist yet, are reserved on the spot pool; the
/// executors then bind there. Full Node objects in the filter calls.
#[tokio::test(flavor = "multi_thread")]
async fn a_driver_waits_until_its_executors_fit_the_spot_pool() {
    let namespace = "spot";
    let env = MusterEnv::start(namespace, &MusterConfig::for_tests(), ExtenderMode::FullNodes).await;
    for name in ["od-1", "od-2"] {
        env.control_plane.create_node(&TestNode::new(name, "8", "16Gi").label("pool", "on-demand")).await;
    }
    let spot = |name: &str| {
        TestNode::new(name, "4", "8Gi").label("pool", "spot").taint(SPOT_TAINT.0, SPOT_TAINT.1, "NoSchedule")
    };
    env.control_plane.create_node(&spot("spot-1")).await;
    let history = PodHistory::start(&env.client(), namespace).await;

    let app_id = "spark-d0001";
    let gang = spark_pod_group_name(app_id);
    let driver_name = format!("{app_id}-driver");
    env.create_pod(&spark_driver(&driver_name, app_id, 3)).await;
    let driver_only = [driver_name.clone()];
    env.assert_gang_waits(&history, &gang, &driver_only).await;
    // muster created the application's PodGroup from the driver's annotations.
    let pg = env.pod_groups().get(&gang).await.unwrap_or_else(|e| panic!("no automatic PodGroup {gang}: {e}"));
    let templates: Vec<(&str, i32)> =
        pg.spec.member_templates.iter().map(|t| (t.name.as_str(), t.min_member)).collect();
    assert!(templates.contains(&("executor", 3)), "PodGroup {gang} templates: {templates:?}");

    // The on-demand pool has room: a plain pod for muster binds there.
    let mut probe = muster_pod("probe", "1", "1Gi");
    with_node_selector(&mut probe, "pool", "on-demand");
    env.create_pod(&probe).await;
    let probe_node = env.wait_all_bound(&["probe".to_owned()]).await["probe"].clone();
    assert!(probe_node.starts_with("od-"), "probe on {probe_node}");
    tokio::time::sleep(HOLD).await;
    assert_never_bound(&history, &driver_only, "the executors do not fit the spot pool");

    env.control_plane.create_node(&spot("spot-2")).await;
    let driver_node = env.wait_all_bound(&driver_only).await[&driver_name].clone();
    assert!(driver_node.starts_with("od-"), "driver on {driver_node}");
    // No executor exists yet: all three are reserved, on the spot pool.
    let state = env.muster.state().await;
    let g = state.gang(namespace, &gang).unwrap_or_else(|| panic!("{gang} not in /state: {}", state.describe()));
    assert!(g.is_admitted(), "{}", g.describe());
    assert_eq!(g.reserved("executor"), 3, "three executors reserved when the driver binds: {}", g.describe());
    for r in g.reservations.iter().filter(|r| r.template == "executor") {
        assert!(r.node.starts_with("spot-"), "executor reserved off the spot pool: {}", g.describe());
    }

    let driver = env.pods().get(&driver_name).await.expect("driver exists");
    let mut executors = Vec::new();
    for id in 1..=3 {
        let executor = spark_executor(&driver, app_id, id);
        executors.push(executor.name_any());
        env.create_pod(&executor).await;
    }
    let nodes = env.wait_all_bound(&executors).await;
    for (name, node) in &nodes {
        assert!(node.starts_with("spot-"), "{name} on {node}");
    }
    assert_no_node_overcommitted(&env.client(), &HashMap::new()).await;
    let g = env
        .wait_for_state("the Spark gang has its driver and executors bound", |state| {
            let g = state.gang(namespace, &gang).ok_or("gang not in /state")?;
            if g.bound == 4 && g.reservations.is_empty() { Ok(g.clone()) } else { Err(g.describe()) }
        })
        .await;
    assert!(g.is_admitted(), "{}", g.describe());
}

// ---------------------------------------------------------------------------------------------------------------
// A restart writes no status that did not change.
// ---------------------------------------------------------------------------------------------------------------

/// The `status` of a PodGroup as the API server holds it.
async fn stored_status(env: &MusterEnv, name: &str) -> serde_json::Value {
    let pg = env.pod_groups().get(name).await.unwrap_or_else(|e| panic!("PodGroup {name}: {e}"));
    serde_json::to_value(&pg.status).expect("a status serialises")
}

/// A running gang and a gang that can never fit, their statuses written; muster is killed and restarted. The
/// restarted muster finds every PodGroup and Queue status already as it would write it, so it writes none: with
/// thousands of PodGroups, rewriting them all after each restart is a burst of patches the API server pays for.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_muster_rewrites_no_status_that_has_not_changed() {
    let config = MusterConfig::for_tests().status_interval("200ms");
    let mut env = MusterEnv::start("restart-status", &config, ExtenderMode::NodeNames).await;
    env.control_plane.create_node(&TestNode::new("node-1", "4", "8Gi")).await;
    let runs = env.create_simple_gang("runs", "default", 2, "1", "1Gi").await;
    env.wait_all_bound(&runs).await;
    env.create_simple_gang("never", "default", 3, "3", "1Gi").await;

    let phase = |status: &serde_json::Value| status["phase"].as_str().unwrap_or_default().to_string();
    wait_until("both PodGroups' statuses are written", E2E_TIMEOUT, || async {
        let (runs, never) = (stored_status(&env, "runs").await, stored_status(&env, "never").await);
        let written = phase(&runs) == "Running"
            && runs["running"] == 2
            && phase(&never) == "Pending"
            && never["conditions"].as_array().is_some_and(|c| !c.is_empty());
        if written { Ok(()) } else { Err(format!("runs: {runs}, never: {never}")) }
    })
    .await;
    // Ten status intervals: anything still to be written before the restart is written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = (stored_status(&env, "runs").await, stored_status(&env, "never").await);

    env.muster.kill9();
    env.muster.restart().await;
    env.wait_for_state("the restarted muster has both gangs back", |state| {
        let runs = state.gang(&env.namespace, "runs").ok_or("gang runs not in /state")?;
        let never = state.gang(&env.namespace, "never").ok_or("gang never not in /state")?;
        if runs.is_admitted() && runs.bound == 2 && never.is_pending() {
            Ok(())
        } else {
            Err(format!("{} / {}", runs.describe(), never.describe()))
        }
    })
    .await;
    // Ten status intervals and several admission cycles of the new process.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let metrics = env.muster.metrics().await;
    let status_writes = prometheus_sample(&metrics, "muster_actions_completed_total", "kind=\"status\"");
    let after = (stored_status(&env, "runs").await, stored_status(&env, "never").await);
    assert_eq!(after, before, "the statuses are what they were before the restart");
    assert_eq!(
        status_writes,
        0.0,
        "the restarted muster wrote {status_writes} statuses that had not changed; its log:\n{}",
        env.muster.log_tail(40)
    );
    // The counter counts: a change after the restart is written.
    env.create_simple_gang("later", "default", 1, "1", "1Gi").await;
    wait_until("the new gang's status is written and counted", E2E_TIMEOUT, || async {
        let writes =
            prometheus_sample(&env.muster.metrics().await, "muster_actions_completed_total", "kind=\"status\"");
        if writes > 0.0 { Ok(()) } else { Err("no status write counted yet".to_string()) }
    })
    .await;
}
