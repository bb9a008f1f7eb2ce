//! Volcano's objects, as a cluster migrating from Volcano has them: muster reads `scheduling.volcano.sh/v1beta1`
//! Queues and PodGroups when their CRDs are installed (here after muster started: it finds them while running)
//! and writes their status in Volcano's shape; without them it runs as ever (every other e2e test).

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use muster::api::volcano;
use serde_json::{Value, json};
use support::spark::driver_conf;
use support::{
    E2E_TIMEOUT, ExtenderMode, HOLD, MUSTER_SCHEDULER, MusterConfig, MusterEnv, PodHistory, PodPhase, SparkSubmit,
    TerminatingPodKubelet, TestNode, assert_never_bound, bound_node, describe_pod, install_crds_from, muster_pod,
    set_pod_phase, wait_until,
};

/// The operations guide's Queue, verbatim.
const GUIDE_QUEUE: &str = r#"
apiVersion: scheduling.volcano.sh/v1beta1
kind: Queue
metadata:
  name: team-data-engineering
spec:
  weight: 3               # relative weight vs other queues
  reclaimable: true       # allows borrowing from idle queues
  capability:
    cpu: 80
    memory: 320Gi
"#;

async fn create(client: &kube::Client, resource: &ApiResource, namespace: Option<&str>, object: Value) {
    let object: DynamicObject = serde_json::from_value(object).expect("an object");
    let api = match namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, resource),
        None => Api::<DynamicObject>::all_with(client.clone(), resource),
    };
    api.create(&PostParams::default(), &object).await.expect("create a Volcano object");
}

async fn volcano_status(client: &kube::Client, resource: &ApiResource, namespace: Option<&str>, name: &str) -> Value {
    let api = match namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, resource),
        None => Api::<DynamicObject>::all_with(client.clone(), resource),
    };
    api.get(name).await.expect("the Volcano object").data.get("status").cloned().unwrap_or(Value::Null)
}

/// A pod of a Volcano PodGroup: the group-name annotation and the task, as Volcano's job controller writes them.
fn volcano_pod(name: &str, group: &str, task: &str, cpu: &str) -> Pod {
    let mut pod = muster_pod(name, cpu, "1Gi");
    pod.metadata.annotations = Some(BTreeMap::from([
        ("scheduling.k8s.io/group-name".to_owned(), group.to_owned()),
        (volcano::TASK_SPEC_ANNOTATION.to_owned(), task.to_owned()),
    ]));
    pod
}

#[tokio::test(flavor = "multi_thread")]
async fn volcano_queues_and_podgroups_are_honoured_and_their_status_written_as_volcano_does() {
    let namespace = "volcano";
    let config = MusterConfig::for_tests().watch_stale_after("3s");
    let env = MusterEnv::start(namespace, &config, ExtenderMode::NodeNames).await;
    let client = env.client();
    // muster started (and is ready) without Volcano's CRDs; they are installed now.
    install_crds_from(&client, "tests/fixtures/crds/volcano.yaml").await;
    let queues = volcano::queue_resource();
    let groups = volcano::podgroup_resource();
    let guide_queue: Value = serde_norway::from_str(GUIDE_QUEUE).expect("the guide's Queue YAML");
    create(&client, &queues, None, guide_queue).await;
    for n in 1..=2 {
        env.control_plane.create_node(&TestNode::new(&format!("node-{n}"), "4", "8Gi")).await;
    }
    let history = PodHistory::start(&client, namespace).await;

    // A gang of a driver and 2 executors (minTaskMember), 5 cpu of the 8.
    create(
        &client,
        &groups,
        Some(namespace),
        json!({"apiVersion": volcano::API_VERSION, "kind": "PodGroup", "metadata": {"name": "etl"},
               "spec": {"minMember": 3, "minTaskMember": {"driver": 1, "executor": 2},
                        "queue": "team-data-engineering"}}),
    )
    .await;
    let etl = ["etl-driver", "etl-exec-1", "etl-exec-2"].map(str::to_owned);
    env.create_pod(&volcano_pod(&etl[0], "etl", "driver", "1")).await;
    env.create_pod(&volcano_pod(&etl[1], "etl", "executor", "2")).await;
    env.create_pod(&volcano_pod(&etl[2], "etl", "executor", "2")).await;
    let bound = env.wait_all_bound(&etl).await;
    eprintln!("Volcano PodGroup etl bound: {bound:?}");

    // A second gang that cannot fit beside it (2 x 3 cpu with 3 cpu left): it waits whole.
    create(
        &client,
        &groups,
        Some(namespace),
        json!({"apiVersion": volcano::API_VERSION, "kind": "PodGroup", "metadata": {"name": "big"},
               "spec": {"minMember": 2, "queue": "team-data-engineering"}}),
    )
    .await;
    let big = ["big-0", "big-1"].map(str::to_owned);
    for name in &big {
        env.create_pod(&volcano_pod(name, "big", "worker", "3")).await;
    }
    tokio::time::sleep(HOLD).await;
    assert_never_bound(&history, &big, "the second gang does not fit beside the first");

    let state = env.muster.state().await;
    let g = state.gang(namespace, "etl").unwrap_or_else(|| panic!("etl not in /state: {}", state.describe()));
    assert_eq!(g.queue, "team-data-engineering", "the Volcano PodGroup's queue is the Volcano Queue");
    assert!(g.is_admitted(), "{}", g.describe());
    assert!(state.queue("team-data-engineering").is_some(), "the guide's Queue is a muster queue");

    // Status, as Volcano writes it: on the Volcano objects, in Volcano's fields only.
    for name in &etl {
        set_pod_phase(&client, namespace, name, PodPhase::Running).await;
    }
    let etl_status = wait_until("Volcano PodGroup etl reports Running", E2E_TIMEOUT, || {
        let client = client.clone();
        let groups = groups.clone();
        async move {
            let status = volcano_status(&client, &groups, Some(namespace), "etl").await;
            if status["phase"] == "Running" && status["running"] == 3 { Ok(status) } else { Err(status.to_string()) }
        }
    })
    .await;
    assert!(etl_status.get("reservations").is_none() && etl_status.get("placement").is_none(), "{etl_status}");
    let big_status = wait_until("Volcano PodGroup big reports why it waits", E2E_TIMEOUT, || {
        let client = client.clone();
        let groups = groups.clone();
        async move {
            let status = volcano_status(&client, &groups, Some(namespace), "big").await;
            let unschedulable = status["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Unschedulable" && c["status"] == "True"));
            if status["phase"] == "Pending" && unschedulable { Ok(status) } else { Err(status.to_string()) }
        }
    })
    .await;
    eprintln!("Volcano PodGroup big: {big_status}");
    // muster's Events about it point at the Volcano object (kubectl describe shows them there).
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), namespace);
    let about_big = wait_until("an Event on the Volcano PodGroup big", E2E_TIMEOUT, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
            let regarding_big: Vec<_> = list
                .into_iter()
                .filter_map(|e| e.regarding)
                .filter(|r| r.name.as_deref() == Some("big") && r.kind.as_deref() == Some("PodGroup"))
                .collect();
            regarding_big.first().cloned().ok_or_else(|| "no Event about big yet".to_owned())
        }
    })
    .await;
    assert_eq!(about_big.api_version.as_deref(), Some(volcano::API_VERSION), "{about_big:?}");
    let queue_status = wait_until("the Volcano Queue's status", E2E_TIMEOUT, || {
        let client = client.clone();
        let queues = queues.clone();
        async move {
            let status = volcano_status(&client, &queues, None, "team-data-engineering").await;
            if status["running"] == 1 && status["pending"] == 1 { Ok(status) } else { Err(status.to_string()) }
        }
    })
    .await;
    assert!(queue_status.get("deserved").is_none(), "only Volcano's fields: {queue_status}");
    eprintln!("Volcano Queue team-data-engineering: {queue_status}");

    // Volcano is uninstalled: its objects are forgotten, and the watch of a kind that is gone is no broken watch
    // (muster stays ready well past watchStaleAfter).
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in ["queues.scheduling.volcano.sh", "podgroups.scheduling.volcano.sh"] {
        crds.delete(crd, &DeleteParams::default()).await.expect("delete a Volcano CRD");
    }
    env.wait_for_state("the Volcano PodGroups are forgotten", |state| match state.gang(namespace, "etl") {
        None => Ok(()),
        Some(g) => Err(g.describe()),
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let (code, body) = env.muster.readyz().await.expect("/readyz answers");
    assert_eq!(code, 200, "muster stays ready without Volcano's CRDs: {body}");
}

/// What Spark's `VolcanoFeatureStep` does (PyPI's pyspark is built without it): the application's pods carry the
/// annotation `scheduling.k8s.io/group-name=<app>-podgroup` and the PodGroup exists, with the queue and minMember
/// of the user's template. The real spark-submit and driver run with the annotation the step would add.
#[tokio::test(flavor = "multi_thread")]
async fn sparks_volcano_path_works_unchanged() {
    let namespace = "spark-volcano";
    let env = MusterEnv::start(namespace, &MusterConfig::for_tests(), ExtenderMode::NodeNames).await;
    let client = env.client();
    install_crds_from(&client, "tests/fixtures/crds/volcano.yaml").await;
    let _kubelet = TerminatingPodKubelet::start(&client, namespace);
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "spark"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace).create(&PostParams::default(), &account).await.ok();
    create(&client, &volcano::queue_resource(), None, serde_norway::from_str(GUIDE_QUEUE).unwrap()).await;
    env.control_plane.create_node(&TestNode::new("node-1", "8", "32Gi")).await;
    let group = "pi-podgroup";
    create(
        &client,
        &volcano::podgroup_resource(),
        Some(namespace),
        json!({"apiVersion": volcano::API_VERSION, "kind": "PodGroup", "metadata": {"name": group},
               "spec": {"minMember": 1, "queue": "team-data-engineering"}}),
    )
    .await;
    let annotation = "scheduling.k8s.io/group-name";
    let submit = SparkSubmit::new(&env.control_plane, namespace)
        .app_name("pi")
        .conf("spark.kubernetes.scheduler.name", MUSTER_SCHEDULER)
        .conf(&format!("spark.kubernetes.driver.annotation.{annotation}"), group)
        .conf(&format!("spark.kubernetes.executor.annotation.{annotation}"), group)
        .conf("spark.executor.instances", "2");
    let submitted = submit.submit_cluster_mode().await;
    env.wait_all_bound(std::slice::from_ref(&submitted.pod_name)).await;
    let state = env.muster.state().await;
    let g = state.gang(namespace, group).unwrap_or_else(|| panic!("{group} not in /state: {}", state.describe()));
    assert_eq!(g.queue, "team-data-engineering");

    set_pod_phase(&client, namespace, &submitted.pod_name, PodPhase::Running).await;
    let pods: Api<Pod> = env.pods();
    let (properties, _) = driver_conf(&client, namespace, &submitted.pod_name).await;
    let app = submit.start_from_driver_conf(&properties, None).await;
    let selector = app.executor_selector();
    wait_until("Spark's 2 executors bind as members of the Volcano PodGroup", E2E_TIMEOUT, || {
        let (pods, selector) = (pods.clone(), selector.clone());
        async move {
            let list = pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| e.to_string())?.items;
            let bound = list.iter().filter(|p| bound_node(p).is_some()).count();
            if bound == 2 { Ok(()) } else { Err(list.iter().map(describe_pod).collect::<Vec<_>>().join("; ")) }
        }
    })
    .await;
    let state = env.muster.state().await;
    let g = state.gang(namespace, group).expect("the Volcano gang");
    assert_eq!(g.bound, 3, "driver and both executors are members of {group}: {}", g.describe());
    app.finish().await;
}
