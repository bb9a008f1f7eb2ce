//! The operations guide's SparkApplication, submitted the way the Kubeflow Spark Operator submits it: the confs
//! come from the operator's submission rules (`support::spark_operator`, reproduced from its source) with only the
//! scheduler name changed to muster, and go to the real spark-submit in cluster mode. The SparkApplication object
//! itself is in the cluster too (its CRD reduced to a schemaless one), as the operator would have it.
//!
//! On a cluster with room for 2 of 4 such applications: exactly 2 start whole, the other 2 drivers stay unbound
//! and no executor of theirs exists; when one finishes, the next starts whole.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use muster::index::convert::spark_pod_group_name;
use support::spark::driver_conf;
use support::spark_operator::{COVERED_RULES, operator_submission};
use support::{
    E2E_TIMEOUT, ExtenderMode, HOLD, MusterConfig, MusterEnv, PodHistory, PodPhase, SparkApp, SparkSubmit,
    SubmittedDriver, TerminatingPodKubelet, TestNode, assert_never_bound, bound_node, describe_pod, install_crds_from,
    quantity, set_pod_phase, wait_until,
};

const GUIDE_APPLICATION: &str = include_str!("fixtures/spark/guide-sparkapplication.yaml");
const NAMESPACE: &str = "spark-jobs";

#[tokio::test(flavor = "multi_thread")]
async fn the_guides_spark_application_runs_whole_two_at_a_time_on_room_for_two() {
    eprintln!("Spark Operator submission rules reproduced:\n  {}", COVERED_RULES.join("\n  "));
    let config = MusterConfig::for_tests().reservation_timeout("30m");
    let env = MusterEnv::start(NAMESPACE, &config, ExtenderMode::NodeNames).await;
    let client = env.client();
    install_crds_from(&client, "tests/fixtures/crds/sparkapplication.yaml").await;
    // The driver runs as ServiceAccount `spark` (spec.driver.serviceAccount).
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": "spark"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &account)
        .await
        .expect("create ServiceAccount spark");
    // Two nodes of 5 cpu: one application is a 1-cpu driver and 2 executors of 2 cpu (the guide's sizes), so
    // each node holds exactly one. The executors' node selector comes from the SparkApplication (the operator's
    // webhook puts it on the pods), and muster reserves it: the nodes carry that label.
    for n in 1..=2 {
        let node = TestNode::new(&format!("node-{n}"), "5", "16Gi").label("workload", "spark-executor");
        env.control_plane.create_node(&node).await;
    }
    let history = PodHistory::start(&client, NAMESPACE).await;
    // Spark deletes its executors when it stops; with no kubelet, this finishes those deletions.
    let _kubelet = TerminatingPodKubelet::start(&client, NAMESPACE);

    let mut drivers: Vec<(SparkSubmit, SubmittedDriver)> = Vec::new();
    for n in 1..=4 {
        let mut app: serde_json::Value = serde_norway::from_str(GUIDE_APPLICATION).expect("the guide's YAML");
        app["metadata"]["name"] = format!("etl-daily-orders-{n}").into();
        create_spark_application(&client, &app).await;
        let submission = operator_submission(&app).expect("the operator's submission of the guide's application");
        assert_eq!(submission.confs["spark.kubernetes.scheduler.name"], "muster");
        let mut submit = SparkSubmit::new(&env.control_plane, NAMESPACE).app_name(&submission.app_name);
        for (key, value) in &submission.confs {
            // The image is the guide's (nothing pulls it); everything else exactly as the operator passes it.
            submit = submit.conf(key, value);
        }
        let submitted = submit.submit_cluster_mode().await;
        drivers.push((submit, submitted));
    }
    let driver_names: Vec<String> = drivers.iter().map(|(_, d)| d.pod_name.clone()).collect();

    // Exactly two drivers bind; each gang holds its 2 executors, sized as the operator's confs say.
    let pods = env.pods();
    let bound = wait_until("exactly 2 of the 4 drivers bind", E2E_TIMEOUT, || {
        let (pods, names) = (pods.clone(), driver_names.clone());
        async move {
            let mut bound = Vec::new();
            for name in &names {
                let pod = pods.get(name).await.map_err(|e| e.to_string())?;
                if bound_node(&pod).is_some() {
                    bound.push(name.clone());
                }
            }
            if bound.len() == 2 { Ok(bound) } else { Err(format!("bound: {bound:?}")) }
        }
    })
    .await;
    tokio::time::sleep(HOLD).await;
    let (running, waiting): (Vec<_>, Vec<_>) = drivers.into_iter().partition(|(_, d)| bound.contains(&d.pod_name));
    let waiting_names: Vec<String> = waiting.iter().map(|(_, d)| d.pod_name.clone()).collect();
    assert_never_bound(&history, &waiting_names, "2 applications fill the cluster");

    for (_, driver) in running.iter().chain(waiting.iter()) {
        let gang = spark_pod_group_name(&driver.app_id);
        let pg = env.pod_groups().get(&gang).await.unwrap_or_else(|e| panic!("no PodGroup {gang}: {e}"));
        let executor = pg.spec.member_templates.iter().find(|t| t.name == "executor").expect("executor template");
        assert_eq!((executor.min_member, executor.max_member), (2, Some(10)), "{gang}: dynamic allocation 2-10");
        assert_eq!(quantity("cpu", &executor.resources["cpu"].0), quantity("cpu", "2"), "{gang}: executor.cores");
        assert_eq!(
            quantity("memory", &executor.resources["memory"].0),
            quantity("memory", "5Gi"),
            "{gang}: executor.memory 4g + memoryOverhead 1g"
        );
        assert_eq!(
            executor.node_selector,
            BTreeMap::from([("workload".to_owned(), "spark-executor".to_owned())]),
            "{gang}: the SparkApplication's spec.executor.nodeSelector"
        );
        assert_eq!(executor.tolerations.len(), 1, "{gang}: spec.executor.tolerations: {:?}", executor.tolerations);
    }

    // The two admitted applications run: their drivers (from the ConfigMaps spark-submit wrote) create their
    // executors, which bind on the capacity reserved for them.
    let mut apps = Vec::new();
    for (submit, driver) in &running {
        apps.push(run_driver(&env, submit.clone(), driver).await);
    }
    for app in &apps {
        wait_executors_bound(&env, app, 2).await;
    }
    for (_, driver) in &waiting {
        let selector = format!("spark-app-selector={}", driver.app_id);
        let listed = env.pods().list(&ListParams::default().labels(&selector)).await.expect("list").items;
        let executors: Vec<Pod> = listed.into_iter().filter(is_executor).collect();
        assert!(executors.is_empty(), "a waiting application has no executor: {executors:?}");
    }

    // One application finishes: Spark deletes its executors, the kubelet marks its driver Succeeded.
    let finished = apps.remove(0);
    let finished_selector = finished.executor_selector();
    finished.finish().await;
    wait_until("Spark deleted the finished application's executors", E2E_TIMEOUT, || {
        let (pods, selector) = (env.pods(), finished_selector.clone());
        async move {
            let left = pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| e.to_string())?.items;
            if left.is_empty() { Ok(()) } else { Err(left.iter().map(describe_pod).collect::<Vec<_>>().join("; ")) }
        }
    })
    .await;
    set_pod_phase(&client, NAMESPACE, &running[0].1.pod_name, PodPhase::Succeeded).await;
    let next = wait_until("one waiting driver binds once an application finished", E2E_TIMEOUT, || {
        let (pods, names) = (env.pods(), waiting_names.clone());
        async move {
            let mut bound = Vec::new();
            for name in &names {
                if bound_node(&pods.get(name).await.map_err(|e| e.to_string())?).is_some() {
                    bound.push(name.clone());
                }
            }
            if bound.len() == 1 { Ok(bound[0].clone()) } else { Err(format!("bound: {bound:?}")) }
        }
    })
    .await;
    let (submit, driver) = waiting.iter().find(|(_, d)| d.pod_name == next).expect("a waiting driver");
    let gang = spark_pod_group_name(&driver.app_id);
    let state = env.muster.state().await;
    let g = state.gang(NAMESPACE, &gang).unwrap_or_else(|| panic!("{gang} not in /state"));
    assert_eq!(g.reserved("executor"), 2, "its 2 executors are reserved as its driver binds: {}", g.describe());
    let next_app = run_driver(&env, submit.clone(), driver).await;
    wait_executors_bound(&env, &next_app, 2).await;
    let still_waiting: Vec<String> = waiting_names.iter().filter(|n| **n != next).cloned().collect();
    assert_never_bound(&history, &still_waiting, "the fourth application waits for the next to finish");
    drop(next_app);
    drop(apps);
}

/// Creates the SparkApplication object, as the user would with kubectl (the operator is not running).
async fn create_spark_application(client: &kube::Client, app: &serde_json::Value) {
    let resource = muster::api::spark_application_resource();
    let object: DynamicObject = serde_json::from_value(app.clone()).expect("a SparkApplication object");
    Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &resource)
        .create(&PostParams::default(), &object)
        .await
        .expect("create the SparkApplication");
}

/// Plays the kubelet for a bound driver and runs it from the ConfigMaps spark-submit wrote.
async fn run_driver(env: &MusterEnv, submit: SparkSubmit, driver: &SubmittedDriver) -> SparkApp {
    let client = env.client();
    let (properties, _) = driver_conf(&client, NAMESPACE, &driver.pod_name).await;
    set_pod_phase(&client, NAMESPACE, &driver.pod_name, PodPhase::Running).await;
    submit.start_from_driver_conf(&properties, None).await
}

fn is_executor(pod: &Pod) -> bool {
    pod.labels().get("spark-role").map(String::as_str) == Some("executor")
}

async fn wait_executors_bound(env: &MusterEnv, app: &SparkApp, count: usize) {
    let selector = app.executor_selector();
    let pods = env.pods();
    wait_until(&format!("{count} executors of {} bound", app.app_id()), E2E_TIMEOUT, || {
        let (pods, selector) = (pods.clone(), selector.clone());
        async move {
            let list = pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| e.to_string())?.items;
            let bound = list.iter().filter(|p| bound_node(p).is_some()).count();
            if bound >= count { Ok(()) } else { Err(list.iter().map(describe_pod).collect::<Vec<_>>().join("; ")) }
        }
    })
    .await;
}
