//! A real Spark client (PyPI pyspark 3.5, spark-submit on the machine's Java) against the real API server: the
//! pods it creates are the ones muster must recognise and size, so these tests pin down what Spark actually
//! writes (labels, requests, scheduler name, owner reference) in both deploy modes.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Api;
use support::{ControlPlane, PodPhase, SparkSubmit, set_pod_phase, wait_for_pods};

/// A scheduler name nothing serves in these tests, so the pods stay pending where the test can read them.
const SCHEDULER_NAME: &str = "muster";

/// The memory request (= limit) Spark gives a pod, in MiB: memory + max(factor x memory, 384 MiB) + pyspark
/// memory (executors of Python applications only), the overhead truncated to whole MiB as Spark does.
fn expected_memory_mib(memory_mib: u64, overhead_factor: f64, pyspark_memory_mib: u64) -> String {
    let overhead = ((overhead_factor * memory_mib as f64) as u64).max(384);
    format!("{}Mi", memory_mib + overhead + pyspark_memory_mib)
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn scheduler_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.scheduler_name.as_deref()
}

/// The one container's (cpu request, memory request, memory limit).
fn resources(pod: &Pod) -> (String, String, String) {
    let spec = pod.spec.as_ref().expect("a pod has a spec");
    assert_eq!(spec.containers.len(), 1, "a Spark pod has one container");
    let resources = spec.containers[0].resources.as_ref().expect("Spark sets resources");
    let requests = resources.requests.as_ref().expect("Spark sets requests");
    let limits = resources.limits.as_ref().expect("Spark sets a memory limit");
    (requests["cpu"].0.clone(), requests["memory"].0.clone(), limits["memory"].0.clone())
}

/// The `spark.properties` that cluster-mode spark-submit wrote for the driver, from the ConfigMap its pod mounts.
async fn driver_properties(client: &kube::Client, driver: &Pod) -> String {
    let volumes = driver.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    let namespace = driver.metadata.namespace.as_deref().expect("a stored pod has a namespace");
    for config_map in volumes.iter().filter_map(|v| v.config_map.as_ref()) {
        let config_map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get(&config_map.name)
            .await
            .expect("the driver's ConfigMap exists");
        if let Some(properties) = config_map.data.and_then(|mut data| data.remove("spark.properties")) {
            return properties;
        }
    }
    panic!("the driver pod mounts no ConfigMap with spark.properties: {volumes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_submit_creates_labelled_and_sized_executor_pods_for_the_named_scheduler() {
    let control_plane = ControlPlane::start().await;
    control_plane.create_namespace("spark").await;
    let app = SparkSubmit::new(&control_plane, "spark")
        .app_name("sizing")
        .conf("spark.kubernetes.scheduler.name", SCHEDULER_NAME)
        .conf("spark.executor.cores", "2")
        .conf("spark.executor.memory", "2g")
        .conf("spark.executor.pyspark.memory", "256m")
        // Dynamic allocation as muster's users run it: min executors are the gang, the rest are elastic.
        .conf("spark.dynamicAllocation.enabled", "true")
        .conf("spark.dynamicAllocation.shuffleTracking.enabled", "true")
        .conf("spark.dynamicAllocation.minExecutors", "1")
        .conf("spark.dynamicAllocation.initialExecutors", "3")
        .conf("spark.dynamicAllocation.maxExecutors", "5")
        .start()
        .await;
    assert!(app.app_id().starts_with("spark-"), "unexpected app id {}", app.app_id());

    let executors = wait_for_pods(
        &control_plane.client(),
        "spark",
        &app.executor_selector(),
        "are the 3 initial executors",
        |pods| pods.len() == 3,
    )
    .await;

    // A client-mode driver does not know its application is Python (only cluster-mode submission tells it,
    // with spark.kubernetes.resource.type=python), so the pods leave out the pyspark memory and use the JVM
    // overhead factor 0.1.
    let memory = expected_memory_mib(2048, 0.1, 0);
    let mut exec_ids: Vec<&str> = Vec::new();
    for pod in &executors {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        assert_eq!(label(pod, "spark-app-selector"), Some(app.app_id()), "{name}");
        assert_eq!(label(pod, "spark-role"), Some("executor"), "{name}");
        assert_eq!(label(pod, "spark-app-name"), Some("sizing"), "{name}");
        exec_ids.push(label(pod, "spark-exec-id").expect("executors carry spark-exec-id"));
        assert_eq!(scheduler_name(pod), Some(SCHEDULER_NAME), "{name}");
        assert_eq!(
            resources(pod),
            ("2".to_owned(), memory.clone(), memory.clone()),
            "{name}: (cpu request, memory request, memory limit)"
        );
        assert!(pod.metadata.owner_references.is_none(), "{name}: a driver outside any pod owns nothing");
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert_eq!(bound, None, "{name}: nothing serves {SCHEDULER_NAME}");
    }
    exec_ids.sort_unstable();
    assert_eq!(exec_ids, ["1", "2", "3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_mode_submission_continued_inside_its_driver_pod_creates_owned_executors() {
    // RBAC mode: Spark authenticates with the kubeconfig's token, as against a real cluster.
    let control_plane = ControlPlane::builder().rbac().start().await;
    let client = control_plane.client();
    control_plane.create_namespace("cluster-mode").await;
    let submit = SparkSubmit::new(&control_plane, "cluster-mode")
        .app_name("report")
        .conf("spark.kubernetes.scheduler.name", SCHEDULER_NAME)
        .conf("spark.executor.instances", "2")
        .conf("spark.executor.memory", "2g")
        .conf("spark.executor.pyspark.memory", "256m");

    // First half: spark-submit creates the driver pod, as a user's cluster-mode submission does.
    let submitted = submit.submit_cluster_mode().await;
    let pods = Api::<Pod>::namespaced(client.clone(), "cluster-mode");
    let driver = pods.get(&submitted.pod_name).await.expect("spark-submit created the driver pod");
    assert_eq!(label(&driver, "spark-app-selector"), Some(submitted.app_id.as_str()));
    assert_eq!(label(&driver, "spark-role"), Some("driver"));
    assert_eq!(scheduler_name(&driver), Some(SCHEDULER_NAME));
    // A Python driver of 1g (the default) gets the non-JVM overhead factor 0.4.
    let driver_memory = expected_memory_mib(1024, 0.4, 0);
    assert_eq!(resources(&driver), ("1".to_owned(), driver_memory.clone(), driver_memory));
    let driver_uid = driver.metadata.uid.clone().expect("a stored pod has a uid");
    // The confs `in_driver_pod` adds are the ones this submission handed its driver: if a Spark upgrade
    // changes them, the emulation below must change too.
    let properties = driver_properties(&client, &driver).await;
    for line in ["spark.kubernetes.resource.type=python", "spark.kubernetes.memoryOverheadFactor=0.4"] {
        assert!(properties.lines().any(|l| l == line), "no {line} in the driver's properties:\n{properties}");
    }

    // Second half: its kubelet would run the driver; the test marks the pod Running (Spark waits for it to be
    // Ready) and runs the driver here, as if inside that pod.
    set_pod_phase(&client, "cluster-mode", &submitted.pod_name, PodPhase::Running).await;
    let app = submit.in_driver_pod(&submitted.pod_name, &submitted.app_id).start().await;
    assert_eq!(app.app_id(), submitted.app_id, "spark.app.id names the application");

    let executors =
        wait_for_pods(&client, "cluster-mode", &app.executor_selector(), "are the 2 executors", |pods| pods.len() == 2)
            .await;
    // As a cluster-mode Python driver sizes them: factor 0.4, plus the pyspark memory.
    let memory = expected_memory_mib(2048, 0.4, 256);
    for pod in &executors {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let owners = pod.metadata.owner_references.as_deref().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{name}: owners {owners:?}");
        let owner = &owners[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Pod", submitted.pod_name.as_str()), "{name}");
        assert_eq!(owner.uid, driver_uid, "{name}");
        assert_eq!(owner.controller, Some(true), "{name}");
        assert_eq!(label(pod, "spark-app-selector"), Some(submitted.app_id.as_str()), "{name}");
        assert_eq!(label(pod, "spark-role"), Some("executor"), "{name}");
        assert_eq!(scheduler_name(pod), Some(SCHEDULER_NAME), "{name}");
        assert_eq!(resources(pod), ("1".to_owned(), memory.clone(), memory.clone()), "{name}");
    }
    assert!(!app.log().contains("Timed out waiting"), "Spark did not see the driver pod Ready:\n{}", app.log());
}
