//! Spark as users submit it: only `spark.kubernetes.scheduler.name=muster`, no muster annotations. muster reads
//! the driver's Spark configuration (its `spark.properties` and executor pod template ConfigMaps) and reserves
//! the executors' exact shape and placement before any exists. For each configuration of the matrix and each
//! pinned Spark version, the real spark-submit creates the driver in cluster mode, the real driver (run here as
//! its pod would run it, from that same ConfigMap) creates its executors, and the test compares muster's executor
//! template with every executor pod Spark created, field by field.
//!
//! `MUSTER_SPARK_ROW=<row name>` runs one row of the matrix (for debugging a row; CI runs them all).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Toleration};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use muster::api::MemberTemplate;
use muster::index::convert::spark_pod_group_name;
use support::spark::driver_conf;
use support::{
    E2E_TIMEOUT, ExtenderMode, MUSTER_SCHEDULER, MusterConfig, MusterEnv, PodPhase, SparkSubmit, TestNode,
    describe_pod, quantity, set_pod_phase, wait_until,
};

/// One configuration of the matrix: the confs beyond the scheduler name, an executor pod template, and the
/// executor counts muster must derive (min, max).
struct Row {
    name: &'static str,
    confs: &'static [(&'static str, &'static str)],
    template: Option<&'static str>,
    counts: (i32, Option<i32>),
}

const TEMPLATE: &str = r#"apiVersion: v1
kind: Pod
spec:
  priorityClassName: ""
  tolerations:
  - {key: workload, operator: Equal, value: spark-executor, effect: NoSchedule}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}
  containers:
  - name: log-shipper
    image: busybox
    resources: {requests: {cpu: 100m, memory: 64Mi}}
  - name: executor
    resources: {requests: {ephemeral-storage: 2Gi}}
"#;

const MATRIX: &[Row] = &[
    Row {
        name: "static",
        confs: &[("spark.executor.instances", "2"), ("spark.executor.cores", "1"), ("spark.executor.memory", "1g")],
        template: None,
        counts: (2, Some(2)),
    },
    Row {
        name: "dynamic",
        confs: &[
            ("spark.dynamicAllocation.enabled", "true"),
            ("spark.dynamicAllocation.shuffleTracking.enabled", "true"),
            ("spark.dynamicAllocation.minExecutors", "1"),
            ("spark.dynamicAllocation.initialExecutors", "2"),
            ("spark.dynamicAllocation.maxExecutors", "3"),
        ],
        template: None,
        counts: (2, Some(3)),
    },
    Row {
        name: "overhead",
        confs: &[
            ("spark.executor.instances", "1"),
            ("spark.executor.memory", "2g"),
            ("spark.executor.memoryOverhead", "512m"),
        ],
        template: None,
        counts: (1, Some(1)),
    },
    Row {
        name: "factor",
        confs: &[
            ("spark.executor.instances", "1"),
            ("spark.executor.memory", "3g"),
            ("spark.executor.memoryOverheadFactor", "0.25"),
        ],
        template: None,
        counts: (1, Some(1)),
    },
    Row {
        name: "pyspark-memory",
        confs: &[
            ("spark.executor.instances", "1"),
            ("spark.executor.memory", "1g"),
            ("spark.executor.pyspark.memory", "512m"),
        ],
        template: None,
        counts: (1, Some(1)),
    },
    Row {
        name: "off-heap",
        confs: &[
            ("spark.executor.instances", "1"),
            ("spark.memory.offHeap.enabled", "true"),
            ("spark.memory.offHeap.size", "256m"),
        ],
        template: None,
        counts: (1, Some(1)),
    },
    Row {
        name: "request-cores",
        confs: &[
            ("spark.executor.instances", "1"),
            ("spark.executor.cores", "2"),
            ("spark.kubernetes.executor.request.cores", "1500m"),
            ("spark.kubernetes.executor.limit.cores", "2"),
        ],
        template: None,
        counts: (1, Some(1)),
    },
    Row {
        name: "custom-resource",
        confs: &[
            ("spark.executor.instances", "1"),
            ("spark.executor.resource.fpga.amount", "1"),
            ("spark.executor.resource.fpga.vendor", "example.com"),
            ("spark.executor.resource.fpga.discoveryScript", "/opt/discover-fpga.sh"),
            ("spark.task.resource.fpga.amount", "1"),
        ],
        template: None,
        counts: (1, Some(1)),
    },
    Row {
        name: "node-selectors",
        confs: &[
            ("spark.executor.instances", "1"),
            ("spark.kubernetes.node.selector.zone", "a"),
            ("spark.kubernetes.executor.node.selector.pool", "spot"),
        ],
        template: None,
        counts: (1, Some(1)),
    },
    Row {
        name: "pod-template",
        confs: &[
            ("spark.executor.instances", "1"),
            ("spark.kubernetes.executor.podTemplateContainerName", "executor"),
            ("spark.kubernetes.executor.node.selector.pool", "spot"),
        ],
        template: Some(TEMPLATE),
        counts: (1, Some(1)),
    },
];

#[tokio::test(flavor = "multi_thread")]
async fn spark_3_5_executors_are_reserved_exactly_as_spark_creates_them() {
    run_matrix("3.5.9", "spark-conf-35").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_4_executors_are_reserved_exactly_as_spark_creates_them() {
    run_matrix("4.1.1", "spark-conf-4").await;
}

/// A configuration Spark itself would refuse once its driver runs (a fractional size): muster never makes a gang
/// of the driver alone. The automatic PodGroup's status and an Event on the driver say which key is wrong, and the
/// driver stays unbound.
#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_configuration_is_reported_on_the_podgroup_and_the_driver_and_nothing_starts() {
    let namespace = "spark-conf-bad";
    let env = MusterEnv::start(namespace, &MusterConfig::for_tests(), ExtenderMode::NodeNames).await;
    env.control_plane.create_node(&TestNode::new("node-1", "16", "64Gi")).await;
    let history = support::PodHistory::start(&env.client(), namespace).await;
    let submitted = SparkSubmit::new(&env.control_plane, namespace)
        .app_name("bad")
        .conf("spark.kubernetes.scheduler.name", MUSTER_SCHEDULER)
        // spark-submit checks spark.executor.memory itself; the overhead only the driver reads.
        .conf("spark.executor.memoryOverhead", "1.5g")
        .submit_cluster_mode()
        .await;
    let gang = spark_pod_group_name(&submitted.app_id);
    let groups = env.pod_groups();
    let condition = wait_until(&format!("PodGroup {gang} says why"), E2E_TIMEOUT, || {
        let (groups, gang) = (groups.clone(), gang.clone());
        async move {
            let pg = groups.get(&gang).await.map_err(|e| e.to_string())?;
            let conditions = pg.status.map(|s| s.conditions).unwrap_or_default();
            conditions
                .into_iter()
                .find(|c| c.message.as_deref().is_some_and(|m| m.contains("spark.executor.memoryOverhead")))
                .ok_or_else(|| "no condition naming the key yet".to_owned())
        }
    })
    .await;
    assert!(condition.message.as_deref().is_some_and(|m| m.contains("\"1.5g\"")), "{condition:?}");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client(), namespace);
    let listed = events.list(&ListParams::default()).await.expect("events").items;
    let on_driver: Vec<_> = listed
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(submitted.pod_name.as_str()))
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(on_driver.iter().any(|r| r == "InvalidSparkConf"), "Events on the driver: {on_driver:?}");
    tokio::time::sleep(support::HOLD).await;
    support::assert_never_bound(&history, std::slice::from_ref(&submitted.pod_name), "its gang cannot be known");
}

async fn run_matrix(version: &str, namespace: &str) {
    let env = MusterEnv::start(namespace, &MusterConfig::for_tests(), ExtenderMode::NodeNames).await;
    // Real nodes report their ephemeral storage; the template row's executor requests some.
    let od = TestNode::new("od-1", "16", "64Gi").label("pool", "on-demand").resource("ephemeral-storage", "100Gi");
    env.control_plane.create_node(&od).await;
    for n in 1..=2 {
        let node = TestNode::new(&format!("spot-{n}"), "16", "64Gi")
            .label("pool", "spot")
            .label("zone", "a")
            .label("kubernetes.io/arch", "amd64")
            .resource("example.com/fpga", "4")
            .resource("ephemeral-storage", "100Gi");
        env.control_plane.create_node(&node).await;
    }
    let mut results = Vec::new();
    let only = std::env::var("MUSTER_SPARK_ROW").ok();
    for row in MATRIX.iter().filter(|r| only.as_deref().is_none_or(|o| o == r.name)) {
        let verdict = run_row(&env, version, namespace, row).await;
        eprintln!("Spark {version} {:<16} {verdict}", row.name);
        results.push(format!("{}: {verdict}", row.name));
    }
    eprintln!("Spark {version} matrix:\n  {}", results.join("\n  "));
}

/// Submits one configuration, checks muster's executor template against Spark's executors, and cleans up.
async fn run_row(env: &MusterEnv, version: &str, namespace: &str, row: &Row) -> String {
    let client = env.client();
    let template_dir = tempfile::tempdir().expect("a temporary directory");
    let mut submit = SparkSubmit::new(&env.control_plane, namespace)
        .version(version)
        .app_name(row.name)
        .conf("spark.kubernetes.scheduler.name", MUSTER_SCHEDULER);
    for (key, value) in row.confs {
        submit = submit.conf(key, value);
    }
    if let Some(template) = row.template {
        let file = template_dir.path().join("executor.yaml");
        std::fs::write(&file, template).expect("write the template");
        submit = submit.conf("spark.kubernetes.executor.podTemplateFile", &file.display().to_string());
    }
    let submitted = submit.submit_cluster_mode().await;
    let gang = spark_pod_group_name(&submitted.app_id);

    // muster read the configuration: the automatic PodGroup names the executors before any exists.
    let groups = env.pod_groups();
    let executor_template = wait_until(&format!("{}: the automatic PodGroup {gang}", row.name), E2E_TIMEOUT, || {
        let groups = groups.clone();
        let gang = gang.clone();
        async move {
            let pg = groups.get(&gang).await.map_err(|e| e.to_string())?;
            pg.spec.member_templates.iter().find(|t| t.name == "executor").cloned().ok_or(format!("{:?}", pg.spec))
        }
    })
    .await;
    assert_eq!(
        (executor_template.min_member, executor_template.max_member),
        row.counts,
        "{}: executor counts in {gang}",
        row.name
    );
    let driver_node = env.wait_all_bound(std::slice::from_ref(&submitted.pod_name)).await;
    let state = env.muster.state().await;
    let g = state.gang(namespace, &gang).unwrap_or_else(|| panic!("{gang} not in /state"));
    assert!(g.is_admitted(), "{}", g.describe());
    assert_eq!(
        g.reserved("executor") as i32,
        row.counts.0,
        "{}: minimum executors reserved: {}",
        row.name,
        g.describe()
    );

    // Run the driver from the ConfigMaps spark-submit wrote, as its pod would.
    let (properties, pod_template) = driver_conf(&client, namespace, &submitted.pod_name).await;
    set_pod_phase(&client, namespace, &submitted.pod_name, PodPhase::Running).await;
    let app = submit.start_from_driver_conf(&properties, pod_template.as_deref()).await;
    let selector = app.executor_selector();
    let pods = env.pods();
    let want = row.counts.0.max(1) as usize;
    let executors = wait_until(&format!("{}: Spark created {want} executors", row.name), E2E_TIMEOUT, || {
        let (pods, selector) = (pods.clone(), selector.clone());
        async move {
            let list = pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| e.to_string())?.items;
            if list.len() >= want {
                Ok(list)
            } else {
                Err(list.iter().map(describe_pod).collect::<Vec<_>>().join("; "))
            }
        }
    })
    .await;
    for executor in &executors {
        assert_same_shape(row.name, &executor_template, executor);
    }
    let shape = executor_template.resources.iter().map(|(k, v)| format!("{k}={}", v.0)).collect::<Vec<_>>();
    let verdict = format!(
        "ok: {} executors created by Spark match muster's template [{}] (min {}, max {:?}; driver on {})",
        executors.len(),
        shape.join(", "),
        row.counts.0,
        row.counts.1,
        driver_node[&submitted.pod_name]
    );

    // Spark deletes its executors when the driver stops; the gang ends with the driver.
    drop(app);
    env.delete_pod_now(&submitted.pod_name).await;
    verdict
}

/// Every resource the executor pod requests (containers summed; none of the matrix's pods has init
/// containers), by resource, in base units.
fn pod_requests(pod: &Pod) -> BTreeMap<String, i64> {
    let mut total = BTreeMap::new();
    for c in pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default() {
        for (name, q) in c.resources.as_ref().and_then(|r| r.requests.as_ref()).into_iter().flatten() {
            *total.entry(name.clone()).or_insert(0) += quantity(name, &q.0);
        }
    }
    total
}

/// Tolerations the API server adds to every pod (DefaultTolerationSeconds): not Spark's, not placement.
fn is_default_toleration(t: &Toleration) -> bool {
    t.toleration_seconds.is_some()
        && ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"].contains(&t.key.as_deref().unwrap_or(""))
}

fn toleration_set(tolerations: &[Toleration]) -> BTreeSet<String> {
    tolerations
        .iter()
        .filter(|t| !is_default_toleration(t))
        .map(|t| {
            let operator = t.operator.as_deref().unwrap_or("Equal");
            format!("{:?}/{operator}/{:?}/{:?}", t.key, t.value, t.effect)
        })
        .collect()
}

fn assert_same_shape(row: &str, template: &MemberTemplate, executor: &Pod) {
    let name = executor.name_any();
    let spec = executor.spec.as_ref().expect("spec");
    assert_eq!(spec.scheduler_name.as_deref(), Some(MUSTER_SCHEDULER), "{row}: {name}");
    let reserved: BTreeMap<String, i64> =
        template.resources.iter().map(|(k, v)| (k.clone(), quantity(k, &v.0))).collect();
    assert_eq!(reserved, pod_requests(executor), "{row}: requests of {name} vs muster's executor template");
    assert_eq!(
        template.node_selector,
        spec.node_selector.clone().unwrap_or_default(),
        "{row}: node selector of {name}"
    );
    assert_eq!(
        toleration_set(&template.tolerations),
        toleration_set(spec.tolerations.as_deref().unwrap_or_default()),
        "{row}: tolerations of {name}"
    );
    let required = |affinity: Option<&k8s_openapi::api::core::v1::Affinity>| {
        affinity
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.clone())
    };
    assert_eq!(
        required(template.affinity.as_ref()),
        required(spec.affinity.as_ref()),
        "{row}: required node affinity of {name}"
    );
}
