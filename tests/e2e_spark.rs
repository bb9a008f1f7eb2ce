//! A real Spark application end to end: spark-submit creates the driver pod for muster, the
//! stock kube-scheduler asks muster, and the real Spark driver (run here, as if inside its bound pod) creates the
//! executors, labelled and owned exactly as in production.

mod support;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::ListParams;
use muster::index::convert::spark_pod_group_name;
use support::{
    E2E_TIMEOUT, ExtenderMode, HOLD, MUSTER_SCHEDULER, MusterConfig, MusterEnv, PodHistory, PodPhase, SparkSubmit,
    TestNode, assert_no_node_overcommitted, bound_node, describe_pod, gang_pod, member_template, pod_condition,
    pod_group, pod_request, quantity, set_pod_phase, wait_until, with_node_selector,
};

/// One executor pod's requests as the Spark driver below creates them: 1 core, and 1g + max(0.4 x 1g, 384m) of
/// memory (a Python application's overhead factor, which `SparkSubmit::in_driver_pod` sets as cluster mode hands it
/// to the driver). The driver declares exactly this to muster, which reserves it before the executors exist; the
/// test checks the executors Spark creates against it.
const EXECUTOR_CPU: &str = "1";
const EXECUTOR_MEMORY: &str = "1433Mi";
const MIN_EXECUTORS: u32 = 2;
const MAX_EXECUTORS: u32 = 4;

/// On-demand node od-1 (4 cpu) and a spot pool of 2-cpu nodes. A second gang, `holder`, is admitted first: its
/// `head` member runs on od-1 and its `tail` member, which never appears, keeps 1 cpu reserved on spot-1. The
/// Spark application (driver on od-1, `MIN_EXECUTORS` of 1 cpu on the spot pool, dynamic allocation up to
/// `MAX_EXECUTORS`) is submitted in cluster mode:
/// 1. with only spot-1 (1 cpu left after the reservation) its driver stays unbound;
/// 2. spot-2 joins: the driver binds, with both minimum executors reserved before any exists;
/// 3. the test plays the kubelet (driver Running) and runs the real driver in the pod: Spark asks for 4
///    executors; the 2 minimum bind, plus exactly 1 extra on the only free cpu left, while the 4th stays pending
///    and none lands on the capacity reserved for `holder`.
#[tokio::test(flavor = "multi_thread")]
async fn a_spark_application_starts_with_its_minimum_executors_and_grows_only_on_free_capacity() {
    let namespace = "spark-gang";
    let config = MusterConfig::for_tests().reservation_timeout("30m");
    let env = MusterEnv::start(namespace, &config, ExtenderMode::NodeNames).await;
    let client = env.client();
    env.control_plane.create_node(&TestNode::new("od-1", "4", "8Gi").label("pool", "on-demand")).await;
    env.control_plane.create_node(&TestNode::new("spot-1", "2", "8Gi").label("pool", "spot")).await;
    let history = PodHistory::start(&client, namespace).await;

    // The other gang, holding 1 cpu of spot-1 for a member that never shows up.
    let mut head = member_template("head", 1, "500m", "256Mi");
    head.node_selector = BTreeMap::from([("pool".to_owned(), "on-demand".to_owned())]);
    let mut tail = member_template("tail", 1, "1", "1Gi");
    tail.node_selector = BTreeMap::from([("pool".to_owned(), "spot".to_owned())]);
    env.create_pod_group(&pod_group("holder", "default", vec![head, tail])).await;
    let mut head_pod = gang_pod("holder-head", "holder", Some("head"), "500m", "256Mi");
    with_node_selector(&mut head_pod, "pool", "on-demand");
    env.create_pod(&head_pod).await;
    env.wait_all_bound(&["holder-head".to_owned()]).await;
    let holder = env
        .wait_for_state("gang holder is admitted with its tail reserved on spot-1", |state| {
            let g = state.gang(namespace, "holder").ok_or("holder not in /state")?;
            let on_spot_1 = g.reservations.iter().any(|r| r.template == "tail" && r.node == "spot-1" && r.count == 1);
            if g.is_admitted() && on_spot_1 { Ok(g.clone()) } else { Err(g.describe()) }
        })
        .await;
    eprintln!("holder: {}", holder.describe());

    let annotation = |key: &str| format!("spark.kubernetes.driver.annotation.{key}");
    let submit = SparkSubmit::new(&env.control_plane, namespace)
        .app_name("gang")
        .conf("spark.kubernetes.scheduler.name", MUSTER_SCHEDULER)
        .conf("spark.kubernetes.driver.node.selector.pool", "on-demand")
        .conf("spark.kubernetes.executor.node.selector.pool", "spot")
        .conf("spark.executor.cores", EXECUTOR_CPU)
        .conf("spark.executor.memory", "1g")
        .conf("spark.dynamicAllocation.enabled", "true")
        .conf("spark.dynamicAllocation.shuffleTracking.enabled", "true")
        .conf("spark.dynamicAllocation.minExecutors", &MIN_EXECUTORS.to_string())
        .conf("spark.dynamicAllocation.initialExecutors", &MAX_EXECUTORS.to_string())
        .conf("spark.dynamicAllocation.maxExecutors", &MAX_EXECUTORS.to_string())
        .conf(&annotation("muster.dev/min-executors"), &MIN_EXECUTORS.to_string())
        .conf(&annotation("muster.dev/max-executors"), &MAX_EXECUTORS.to_string())
        .conf(
            &annotation("muster.dev/executor-resources"),
            &format!(r#"{{"cpu":"{EXECUTOR_CPU}","memory":"{EXECUTOR_MEMORY}"}}"#),
        )
        .conf(&annotation("muster.dev/executor-node-selector"), r#"{"pool":"spot"}"#);

    // 1. Cluster mode: spark-submit creates the driver pod. The spot pool has 1 free cpu for 2 executors.
    let submitted = submit.submit_cluster_mode().await;
    let gang = spark_pod_group_name(&submitted.app_id);
    let driver_only = [submitted.pod_name.clone()];
    let reason = env.assert_gang_waits(&history, &gang, &driver_only).await;
    eprintln!("muster's reason for the Spark gang {gang}: {reason}");
    let pg = env.pod_groups().get(&gang).await.unwrap_or_else(|e| panic!("no automatic PodGroup {gang}: {e}"));
    let templates: Vec<(&str, i32)> =
        pg.spec.member_templates.iter().map(|t| (t.name.as_str(), t.min_member)).collect();
    assert!(templates.contains(&("driver", 1)), "PodGroup {gang}: {templates:?}");
    assert!(templates.contains(&("executor", MIN_EXECUTORS as i32)), "PodGroup {gang}: {templates:?}");

    // 2. A second spot node: driver and minimum executors fit together.
    env.control_plane.create_node(&TestNode::new("spot-2", "2", "8Gi").label("pool", "spot")).await;
    let driver_node = env.wait_all_bound(&driver_only).await[&submitted.pod_name].clone();
    assert_eq!(driver_node, "od-1");
    let state = env.muster.state().await;
    let g = state.gang(namespace, &gang).unwrap_or_else(|| panic!("{gang} not in /state: {}", state.describe()));
    assert!(g.is_admitted(), "{}", g.describe());
    assert_eq!(
        g.reserved("executor"),
        MIN_EXECUTORS,
        "when the driver binds, its minimum executors (none exists yet) are reserved: {}",
        g.describe()
    );
    assert!(g.reservations.iter().all(|r| r.node.starts_with("spot-")), "{}", g.describe());

    // 3. Play the kubelet and run the real driver inside its pod.
    set_pod_phase(&client, namespace, &submitted.pod_name, PodPhase::Running).await;
    let app = submit.in_driver_pod(&submitted.pod_name, &submitted.app_id).start().await;
    assert_eq!(app.app_id(), submitted.app_id);
    let selector = app.executor_selector();
    let pods = env.pods();
    let executors = wait_until(
        "Spark created its initial executors, three bound and the fourth tried and pending",
        E2E_TIMEOUT,
        || {
            let (pods, selector) = (pods.clone(), selector.clone());
            async move {
                let list = pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| e.to_string())?.items;
                let bound = list.iter().filter(|p| bound_node(p).is_some()).count();
                let tried_unbound = list
                    .iter()
                    .filter(|p| bound_node(p).is_none())
                    .all(|p| pod_condition(p, "PodScheduled").is_some_and(|c| c.status == "False"));
                let seen = list.iter().map(describe_pod).collect::<Vec<_>>().join("; ");
                if list.len() == MAX_EXECUTORS as usize && bound == 3 && tried_unbound {
                    Ok(list)
                } else if bound > 3 {
                    panic!("more executors bound than the spot pool's free capacity allows: {seen}");
                } else {
                    Err(format!("{} executors, {bound} bound: {seen}", list.len()))
                }
            }
        },
    )
    .await;
    for executor in &executors {
        let name = executor.name_any();
        let owner = executor.metadata.owner_references.as_deref().unwrap_or_default();
        assert!(owner.iter().any(|o| o.name == submitted.pod_name), "{name} is not owned by the driver: {owner:?}");
        assert_eq!(executor.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()), Some(MUSTER_SCHEDULER));
        assert_eq!(pod_request(executor, "cpu"), quantity("cpu", EXECUTOR_CPU), "{name}: the driver's annotation");
        assert_eq!(
            pod_request(executor, "memory"),
            quantity("memory", EXECUTOR_MEMORY),
            "{name}: Spark sized the executor differently from what the driver declared to muster"
        );
    }

    // Hold: kube-scheduler keeps retrying the fourth; it must not bind.
    tokio::time::sleep(HOLD).await;
    let executors: Vec<Pod> = pods.list(&ListParams::default().labels(&selector)).await.expect("list").items;
    let bound: Vec<(String, String)> =
        executors.iter().filter_map(|p| bound_node(p).map(|n| (p.name_any(), n.to_owned()))).collect();
    assert_eq!(bound.len(), 3, "2 minimum executors + 1 extra on the only free cpu: {bound:?}");
    assert!(bound.iter().all(|(_, node)| node.starts_with("spot-")), "{bound:?}");
    let names: Vec<String> = executors.iter().map(|p| p.name_any()).collect();
    history.caught_up().await;
    let executor_bindings = history.of(|t| names.contains(&t.pod) && t.node.is_some());
    assert_eq!(executor_bindings.len(), 3, "each bound executor bound once, none other: {executor_bindings:?}");

    // The holder's reservation is intact, and counting it no node is over-committed: the extra executor did not
    // take capacity reserved for another gang.
    let state = env.muster.state().await;
    let holder = state.gang(namespace, "holder").expect("holder is in /state");
    assert!(holder.is_admitted(), "{}", holder.describe());
    assert_eq!(holder.reserved("tail"), 1, "{}", holder.describe());
    let mut reserved = HashMap::new();
    for r in holder.reservations.iter().filter(|r| r.template == "tail") {
        let entry = reserved.entry(r.node.clone()).or_insert((0, 0));
        entry.0 += i64::from(r.count) * quantity("cpu", "1");
        entry.1 += i64::from(r.count) * quantity("memory", "1Gi");
    }
    assert_no_node_overcommitted(&client, &reserved).await;
    let spark = state.gang(namespace, &gang).expect("the Spark gang is in /state");
    assert!(spark.is_admitted(), "{}", spark.describe());
    assert!(spark.reservations.is_empty(), "driver and minimum executors are bound: {}", spark.describe());
    assert!(spark.bound > MIN_EXECUTORS, "{}", spark.describe());
    // Stop the driver (Spark deletes its executor pods) before the control plane goes.
    drop(app);
}
