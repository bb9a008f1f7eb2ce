//! Elastic clusters, end to end: muster's scheduling gates (its webhook, called by the real kube-apiserver), its
//! capacity requests (CapacityBuffers) acted on by real Karpenter with its KWOK provider, and the stock
//! kube-scheduler calling muster's extender.
//!
//! a. A Spark-shaped gang (driver + 8 executors) whose executors need spot nodes that do not exist yet: muster
//!    asks Karpenter for exactly the missing executors, admits the gang when the nodes come, and Karpenter
//!    consolidates the nodes away after the gang finishes.
//! b. A gang that waits for its queue's share gets no capacity request and no node; its pods stay gated.
//! c. 500 gangs that cannot be admitted: with gates, kube-scheduler never tries them and muster's filter is never
//!    called; without gates (the counts are printed for both).
//! d. A running gang loses a node holding two of its minimum executors: the replacements are re-reserved (with
//!    a capacity request for them) before a newer gang of the same queue is admitted.
//! e. With the webhook registered but down (failurePolicy Ignore), pods arrive ungated and the extender still
//!    keeps the gang whole.
//! f. A gang whose executors are larger than any node the pool can make: muster still asks (that is the
//!    autoscaler's call), and the PodGroup's status relays the autoscaler's answer; no node is made.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use muster::api::{Guarantee, MemberTemplate, PodGroup};
use support::autoscaling::{
    Autoscaling, AutoscalingOptions, CAPACITY_TYPE_LABEL, CONSOLIDATION_TIMEOUT, DEFAULT_NODE_CLASS, InstanceType,
    Offering, PROVISION_TIMEOUT, ZONE, capacity_buffer_resource, nodeclaim_resource,
};
use support::gates::{ADMISSION_GATE, free_port, gates, register_webhook, wait_for_webhook};
use support::muster::{create_pod, delete_pod_now, prometheus_sample};
use support::{
    ControlPlane, ExtenderMode, MusterConfig, MusterServe, PodHistory, ServeOptions, TestNode, gang_pod, install_crds,
    member_template, muster_pod, pod_condition, pod_group, queue, set_pod_phase, start_muster_scheduler, wait_until,
};

/// Labels of the static on-demand node the drivers run on (no Karpenter pool makes such nodes).
const DRIVER_POOL: (&str, &str) = ("pool", "drivers");
/// How long a test watches that something does not happen (no capacity request, no node, no attempt): longer
/// than several of muster's status intervals and Karpenter's batch windows.
const QUIET_HOLD: Duration = Duration::from_secs(20);

/// A control plane with muster (its webhook registered when `gated`), the stock kube-scheduler calling it, and
/// optionally Karpenter + KWOK. Fields drop in order: Karpenter and muster stop before the control plane.
struct Elastic {
    autoscaling: Option<Autoscaling>,
    muster: MusterServe,
    control_plane: ControlPlane,
    namespace: String,
}

impl Elastic {
    async fn start(namespace: &str, gated: bool, autoscaling: Option<AutoscalingOptions>) -> Elastic {
        let mut control_plane = ControlPlane::start().await;
        install_crds(&control_plane.client()).await;
        // Karpenter first, as in a cluster it is there before muster: muster finds the CapacityBuffer API at start.
        let autoscaling = match autoscaling {
            Some(options) => {
                let a = Autoscaling::start(&control_plane, options).await;
                a.create_kwok_nodeclass(DEFAULT_NODE_CLASS).await;
                Some(a)
            }
            None => None,
        };
        let args = if gated { register_webhook(&control_plane, free_port()).await } else { Vec::new() };
        let config = MusterConfig { status_interval: Some("1s".into()), ..MusterConfig::for_tests() };
        let muster =
            MusterServe::start_with(&control_plane, &config, ServeOptions { args, ..ServeOptions::default() }).await;
        if gated {
            wait_for_webhook(&control_plane.client()).await;
        }
        start_muster_scheduler(&mut control_plane, &muster, ExtenderMode::NodeNames).await;
        control_plane.create_namespace(namespace).await;
        Elastic { autoscaling, muster, control_plane, namespace: namespace.to_owned() }
    }

    /// Gated, with Karpenter: a 2-cpu on-demand node for drivers, an empty spot NodePool, queue `team`, and a
    /// Spark-shaped PodGroup `gang` of that queue (a driver of 1 cpu / 1Gi, `executors` executors of
    /// `cpu` / `memory` on spot).
    async fn with_spark_gang(namespace: &str, gang: &str, executors: i32, cpu: &str, memory: &str) -> Elastic {
        let env = Elastic::start(namespace, true, Some(AutoscalingOptions::default())).await;
        env.control_plane.create_node(&driver_node("od-0", "2")).await;
        env.karpenter().create_nodepool("spot", "spot", &[], 64, "20s").await;
        env.create_queue(&queue("team", 1)).await;
        let templates =
            vec![template("driver", 1, "1", "1Gi", DRIVER_POOL), template("executor", executors, cpu, memory, spot())];
        env.create_pod_group(&pod_group(gang, "team", templates)).await;
        env
    }

    fn client(&self) -> Client {
        self.control_plane.client()
    }

    fn karpenter(&self) -> &Autoscaling {
        self.autoscaling.as_ref().expect("started with Karpenter")
    }

    async fn create_pod(&self, pod: &Pod) -> Pod {
        Api::<Pod>::namespaced(self.client(), &self.namespace)
            .create(&PostParams::default(), pod)
            .await
            .unwrap_or_else(|e| panic!("cannot create pod {}: {e}", pod.name_any()))
    }

    async fn pod(&self, name: &str) -> Pod {
        Api::<Pod>::namespaced(self.client(), &self.namespace).get(name).await.expect("pod")
    }

    async fn create_pod_group(&self, group: &PodGroup) {
        Api::<PodGroup>::namespaced(self.client(), &self.namespace)
            .create(&PostParams::default(), group)
            .await
            .unwrap_or_else(|e| panic!("cannot create PodGroup {}: {e}", group.name_any()));
    }

    async fn pod_group(&self, name: &str) -> PodGroup {
        Api::<PodGroup>::namespaced(self.client(), &self.namespace).get(name).await.expect("PodGroup")
    }

    async fn create_queue(&self, queue: &muster::api::Queue) {
        Api::<muster::api::Queue>::all(self.client()).create(&PostParams::default(), queue).await.expect("queue");
    }

    async fn buffers(&self) -> Vec<DynamicObject> {
        Api::<DynamicObject>::namespaced_with(self.client(), &self.namespace, &capacity_buffer_resource())
            .list(&ListParams::default())
            .await
            .expect("list CapacityBuffers")
            .items
    }

    /// Waits until the PodGroup has a condition of `type_`; returns its (reason, message).
    async fn wait_condition(&self, group: &str, type_: &str) -> (String, String) {
        wait_until(&format!("PodGroup {group} has condition {type_}"), PROVISION_TIMEOUT, || async move {
            let pg = self.pod_group(group).await;
            let conditions = pg.status.map(|s| s.conditions).unwrap_or_default();
            conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map(|c| (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
                .ok_or_else(|| format!("conditions: {conditions:?}"))
        })
        .await
    }

    /// Waits until every pod in `names` is bound; returns name -> node.
    async fn wait_bound(&self, names: &[String], timeout: Duration) -> BTreeMap<String, String> {
        support::wait_all_bound_within(&self.client(), &self.namespace, names, timeout).await
    }
}

fn template(name: &str, min: i32, cpu: &str, memory: &str, selector: (&str, &str)) -> MemberTemplate {
    let mut t = member_template(name, min, cpu, memory);
    t.node_selector.insert(selector.0.into(), selector.1.into());
    t
}

fn member(name: &str, group: &str, template: &str, cpu: &str, memory: &str, selector: (&str, &str)) -> Pod {
    let mut pod = gang_pod(name, group, Some(template), cpu, memory);
    support::with_node_selector(&mut pod, selector.0, selector.1);
    pod
}

fn spot() -> (&'static str, &'static str) {
    (CAPACITY_TYPE_LABEL, "spot")
}

fn driver_node(name: &str, cpu: &str) -> TestNode {
    TestNode::new(name, cpu, "16Gi").label(DRIVER_POOL.0, DRIVER_POOL.1)
}

fn replicas(buffer: &DynamicObject) -> i64 {
    buffer.data["spec"]["replicas"].as_i64().unwrap_or(-1)
}

/// When a pod was bound (its PodScheduled condition turned True), in whole seconds as the API server records it.
fn scheduled_at(pod: &Pod) -> Option<i64> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "PodScheduled" && c.status == "True")?;
    Some(c.last_transition_time.as_ref()?.0.as_second())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn karpenter_provisions_the_whole_gang_muster_asks_for_and_consolidates_after_it_finishes() {
    let env = Elastic::with_spark_gang("elastic-a", "etl", 8, "1", "2Gi").await;
    let karpenter = env.karpenter();
    let history = PodHistory::start(&env.client(), &env.namespace).await;
    let start = Instant::now();

    // The driver arrives (Spark's submission): gated by the webhook.
    let driver = env.create_pod(&member("etl-driver", "etl", "driver", "1", "1Gi", DRIVER_POOL)).await;
    assert_eq!(gates(&driver), vec![ADMISSION_GATE.to_owned()], "the webhook gates muster's pod");

    // muster asks for the 8 executors the spot pool lacks, and says so in the PodGroup's status.
    let buffer = wait_until("muster requests capacity for the executors", PROVISION_TIMEOUT, || async {
        let buffers = env.buffers().await;
        match buffers.as_slice() {
            [b] if b.name_any() == "etl-executor" => Ok(b.clone()),
            other => Err(format!("buffers: {:?}", other.iter().map(|b| b.name_any()).collect::<Vec<_>>())),
        }
    })
    .await;
    let requested_after = start.elapsed();
    assert_eq!(replicas(&buffer), 8, "sized to the missing executors, not the driver that fits: {buffer:?}");
    let (reason, message) = env.wait_condition("etl", "WaitingForCapacity").await;
    println!("WaitingForCapacity ({reason}): {message}");
    assert!(message.contains("8 x \"executor\""), "{message}");
    let template: k8s_openapi::api::core::v1::PodTemplate =
        Api::namespaced(env.client(), &env.namespace).get("etl-executor").await.expect("the buffer's PodTemplate");
    let spec = template.template.and_then(|t| t.spec).expect("template spec");
    assert_eq!(spec.node_selector.unwrap_or_default().get(CAPACITY_TYPE_LABEL).map(String::as_str), Some("spot"));

    // Spark creates its executors: gated too, they wait with the driver.
    let executors: Vec<String> = (0..8).map(|i| format!("etl-exec-{i}")).collect();
    for name in &executors {
        let pod = env.create_pod(&member(name, "etl", "executor", "1", "2Gi", spot())).await;
        assert_eq!(gates(&pod), vec![ADMISSION_GATE.to_owned()]);
    }
    let mut all = executors.clone();
    all.push("etl-driver".into());
    let placed = env.wait_bound(&all, PROVISION_TIMEOUT + Duration::from_secs(60)).await;
    let admitted_after = start.elapsed();

    // The gang runs whole: every executor on a spot node Karpenter made, none bound before the admission.
    let nodes = karpenter.karpenter_nodes().await;
    let spot_nodes: BTreeMap<String, &Node> = nodes.iter().map(|n| (n.name_any(), n)).collect();
    for e in &executors {
        assert!(spot_nodes.contains_key(&placed[e]), "{e} on {} is not a Karpenter node", placed[e]);
    }
    history.caught_up().await;
    let admitted_at =
        env.pod_group("etl").await.status.and_then(|s| s.admitted_at).map(|t| t.0.as_second()).expect("admittedAt");
    for name in &all {
        let pod = env.pod(name).await;
        assert!(gates(&pod).is_empty(), "{name} is still gated after binding");
        let at = scheduled_at(&pod).expect("bound pods are scheduled");
        assert!(at >= admitted_at, "{name} was bound at {at}, before the gang's admission at {admitted_at}");
        assert_eq!(history.bindings_of(name).len(), 1, "{name} bound once");
    }
    let instance_types: Vec<String> =
        nodes.iter().map(|n| n.labels().get("node.kubernetes.io/instance-type").cloned().unwrap_or_default()).collect();
    println!(
        "Karpenter provisioned {} spot nodes ({instance_types:?}) for 8 executors of 1 cpu / 2Gi; after the driver \
         arrived: capacity requested at {:.1} s, the gang bound whole at {:.1} s",
        nodes.len(),
        requested_after.as_secs_f64(),
        admitted_after.as_secs_f64()
    );
    for line in env.muster.log().lines().filter(|l| l.contains("capacity") || l.contains("admission decision")) {
        println!("muster: {line}");
    }
    // The request is withdrawn once the gang is admitted.
    wait_until("the capacity request is withdrawn", PROVISION_TIMEOUT, || async {
        let buffers = env.buffers().await;
        if buffers.is_empty() { Ok(()) } else { Err(format!("{} buffers left", buffers.len())) }
    })
    .await;
    // Running members whose loss would break the gang are marked so Karpenter's consolidation leaves them be.
    wait_until("the running members are marked do-not-disrupt", PROVISION_TIMEOUT, || async {
        let mut unmarked = Vec::new();
        for name in &all {
            let pod = env.pod(name).await;
            if pod.annotations().get("karpenter.sh/do-not-disrupt").map(String::as_str) != Some("true") {
                unmarked.push(name.clone());
            }
        }
        if unmarked.is_empty() { Ok(()) } else { Err(format!("not marked: {unmarked:?}")) }
    })
    .await;

    // The application finishes: Karpenter consolidates the empty spot nodes away.
    for name in &all {
        set_pod_phase(&env.client(), &env.namespace, name, support::PodPhase::Succeeded).await;
    }
    let took = karpenter.wait_until_no_karpenter_nodes().await;
    println!("Karpenter consolidated the spot nodes {:.1} s after the gang finished", took.as_secs_f64());
    assert!(took <= CONSOLIDATION_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gang_waiting_for_its_queues_share_requests_no_capacity_and_stays_gated() {
    let env = Elastic::start("elastic-b", true, Some(AutoscalingOptions::default())).await;
    let karpenter = env.karpenter();
    env.control_plane.create_node(&driver_node("od-0", "4")).await;
    karpenter.create_nodepool("spot", "spot", &[], 64, "20s").await;
    // Another queue holds a guarantee of the whole (static) cluster, unused: admitting anything else would eat it.
    let mut reserved = queue("reserved", 1);
    reserved.spec.guarantee =
        Some(Guarantee { resource: BTreeMap::from([("cpu".to_owned(), Quantity("4".to_owned()))]) });
    env.create_queue(&reserved).await;
    env.create_queue(&queue("team", 1)).await;
    let group = pod_group(
        "etl",
        "team",
        vec![template("driver", 1, "1", "1Gi", DRIVER_POOL), template("executor", 4, "1", "2Gi", spot())],
    );
    env.create_pod_group(&group).await;
    let mut names = vec!["etl-driver".to_owned()];
    env.create_pod(&member("etl-driver", "etl", "driver", "1", "1Gi", DRIVER_POOL)).await;
    for i in 0..4 {
        let name = format!("etl-exec-{i}");
        env.create_pod(&member(&name, "etl", "executor", "1", "2Gi", spot())).await;
        names.push(name);
    }

    let (reason, message) = env.wait_condition("etl", "WaitingForQuota").await;
    println!("WaitingForQuota ({reason}): {message}");
    assert_eq!(reason, "GuaranteeOfOtherQueues");
    tokio::time::sleep(QUIET_HOLD).await;
    let pg = env.pod_group("etl").await;
    let conditions = pg.status.map(|s| s.conditions).unwrap_or_default();
    assert!(conditions.iter().all(|c| c.type_ != "WaitingForCapacity"), "{conditions:?}");
    assert!(env.buffers().await.is_empty(), "no capacity request for a gang that waits for quota");
    assert!(
        karpenter.nodeclaims().await.is_empty(),
        "Karpenter provisioned for a quota wait:\n{}",
        karpenter.timeline()
    );
    for name in &names {
        let pod = env.pod(name).await;
        assert_eq!(gates(&pod), vec![ADMISSION_GATE.to_owned()], "{name} lost its gate");
        let unschedulable = pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable"));
        assert!(!unschedulable, "{name} was marked Unschedulable (an autoscaler would act on it)");
    }
}

/// Creates `count` gangs of one in queue `queue` (which cannot admit them), waits until muster reports each
/// waiting, and returns (kube-scheduler's scheduling attempts, muster's filter calls) right then and after
/// [`QUIET_HOLD`].
async fn attempts_for_unadmittable_gangs(gated: bool, count: usize) -> ((f64, f64), (f64, f64)) {
    let namespace = if gated { "storm-gated" } else { "storm-ungated" };
    let env = Elastic::start(namespace, gated, None).await;
    env.control_plane.create_node(&TestNode::new("n0", "8", "32Gi")).await;
    let mut capped = queue("capped", 1);
    capped.spec.capability = BTreeMap::from([("cpu".to_owned(), Quantity("100m".to_owned()))]);
    env.create_queue(&capped).await;
    let api = Api::<Pod>::namespaced(env.client(), &env.namespace);
    let creations = (0..count).map(|i| {
        let api = api.clone();
        async move {
            let mut pod = muster_pod(&format!("job-{i}"), "500m", "256Mi");
            pod.metadata.annotations = Some(BTreeMap::from([("muster.dev/queue".to_owned(), "capped".to_owned())]));
            api.create(&PostParams::default(), &pod).await.expect("create pod");
        }
    });
    futures::stream::iter(creations).buffer_unordered(16).collect::<Vec<()>>().await;
    let muster = &env.muster;
    wait_until(&format!("muster reports {count} gangs waiting for their queue"), PROVISION_TIMEOUT, || async move {
        let state = muster.state().await;
        let waiting = state
            .gangs
            .iter()
            .filter(|g| g.reason.as_deref().is_some_and(|r| r.starts_with("QueueCapability")))
            .count();
        if waiting == count { Ok(()) } else { Err(format!("{waiting} waiting")) }
    })
    .await;
    let sample = || async {
        let scheduler = env.control_plane.scheduler_metrics(1).await;
        let (_, metrics) = env.muster.get("/metrics").await;
        // `+ 0.0`: a sum of no samples is -0.0.
        (
            prometheus_sample(&scheduler, "scheduler_schedule_attempts_total", "") + 0.0,
            prometheus_sample(&metrics, "muster_extender_requests_total", "verb=\"filter\"") + 0.0,
        )
    };
    let first = sample().await;
    tokio::time::sleep(QUIET_HOLD).await;
    let then = sample().await;
    if !gated {
        // Without gates every pod is tried and refused, at kube-scheduler's pace (which a loaded machine slows).
        wait_until("without gates, every pod is tried and refused by muster's filter", PROVISION_TIMEOUT, || async {
            let (attempts, filters) = sample().await;
            if attempts >= count as f64 && filters >= count as f64 {
                Ok(())
            } else {
                Err(format!("{attempts} attempts, {filters} filter calls"))
            }
        })
        .await;
    }
    if gated {
        for i in [0, count - 1] {
            assert_eq!(gates(&env.pod(&format!("job-{i}")).await), vec![ADMISSION_GATE.to_owned()]);
        }
    }
    (first, then)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gated_gangs_that_cannot_be_admitted_cost_kube_scheduler_and_the_extender_nothing() {
    let count = 500;
    let (gated_first, gated_then) = attempts_for_unadmittable_gangs(true, count).await;
    let (ungated_first, ungated_then) = attempts_for_unadmittable_gangs(false, count).await;
    println!(
        "{count} unadmittable gangs; kube-scheduler scheduling attempts / muster filter calls, when all wait and {} s \
         later: with gates {gated_first:?} -> {gated_then:?}; without gates {ungated_first:?} -> {ungated_then:?}",
        QUIET_HOLD.as_secs()
    );
    assert_eq!(gated_first, (0.0, 0.0), "gated pods reached kube-scheduler");
    assert_eq!(gated_then, (0.0, 0.0), "gated pods reached kube-scheduler");
    // (Without gates, every pod was tried and refused: `attempts_for_unadmittable_gangs` waits for it.)
    assert!(ungated_then.0 > 0.0 && ungated_then.1 > 0.0, "without gates pods are tried: {ungated_then:?}");
}

/// Takes a Karpenter node away as a spot interruption does: the machine is gone, so its pods and its NodeClaim
/// go with it (no drain: finalizers are dropped, as the pod garbage collector deletes a lost node's pods).
async fn interrupt(client: &Client, namespace: &str, node: &str) {
    let nodes = Api::<Node>::all(client.clone());
    let claim = nodes.get(node).await.ok().and_then(|n| {
        n.metadata.owner_references.unwrap_or_default().into_iter().find(|o| o.kind == "NodeClaim").map(|o| o.name)
    });
    let drop_finalizers = serde_json::json!({"metadata": {"finalizers": null}});
    let _ = nodes.patch(node, &PatchParams::default(), &Patch::Merge(&drop_finalizers)).await;
    let _ = nodes.delete(node, &DeleteParams::default()).await;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default()).await.expect("pods");
    for pod in pods.items.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)) {
        delete_pod_now(client, namespace, &pod.name_any()).await;
    }
    if let Some(claim) = claim {
        let claims = Api::<DynamicObject>::all_with(client.clone(), &nodeclaim_resource());
        let _ = claims.patch(&claim, &PatchParams::default(), &Patch::Merge(&drop_finalizers)).await;
        let _ = claims.delete(&claim, &DeleteParams::default()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_lost_to_a_spot_interruption_are_re_reserved_before_a_newer_gang_of_the_queue() {
    // One spot shape (4 cpu, 3.9 allocatable): each node holds exactly two executors of 1.5 cpu.
    let four_cpu = InstanceType {
        name: "m-4x-amd64-linux".into(),
        cpu: 4,
        memory: "16Gi".into(),
        pods: 110,
        offerings: vec![Offering { capacity_type: "spot".into(), zone: ZONE.into(), price: 0.08 }],
    };
    let options = AutoscalingOptions { instance_types: vec![four_cpu], ..AutoscalingOptions::default() };
    let env = Elastic::start("elastic-d", true, Some(options)).await;
    let karpenter = env.karpenter();
    env.control_plane.create_node(&driver_node("od-0", "2")).await;
    karpenter.create_nodepool("spot", "spot", &[], 64, "5m").await;
    env.create_queue(&queue("team", 1)).await;
    let gang = |name: &str, executors: i32| {
        pod_group(
            name,
            "team",
            vec![
                template("driver", 1, "1", "1Gi", DRIVER_POOL),
                template("executor", executors, "1500m", "2Gi", spot()),
            ],
        )
    };
    env.create_pod_group(&gang("first", 4)).await;
    let mut first: Vec<String> = vec!["first-driver".into()];
    env.create_pod(&member("first-driver", "first", "driver", "1", "1Gi", DRIVER_POOL)).await;
    for i in 0..4 {
        let name = format!("first-exec-{i}");
        env.create_pod(&member(&name, "first", "executor", "1500m", "2Gi", spot())).await;
        first.push(name);
    }
    let placed = env.wait_bound(&first, PROVISION_TIMEOUT + Duration::from_secs(60)).await;
    let nodes_before = karpenter.karpenter_nodes().await.len();
    // A spot node with two of the executors is interrupted.
    let mut per_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (pod, node) in &placed {
        if pod.contains("exec") {
            per_node.entry(node.as_str()).or_default().push(pod.as_str());
        }
    }
    let (lost_node, lost) = per_node.iter().find(|(_, pods)| pods.len() == 2).expect("a node holds two executors");
    let (lost_node, lost) = (lost_node.to_string(), lost.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    println!("{nodes_before} spot nodes for 4 executors; interrupting {lost_node} with {lost:?}");
    interrupt(&env.client(), &env.namespace, &lost_node).await;

    // A newer gang of the same queue arrives right after.
    env.create_pod_group(&gang("second", 2)).await;
    let mut second: Vec<String> = vec!["second-driver".into()];
    env.create_pod(&member("second-driver", "second", "driver", "1", "1Gi", DRIVER_POOL)).await;
    for i in 0..2 {
        let name = format!("second-exec-{i}");
        env.create_pod(&member(&name, "second", "executor", "1500m", "2Gi", spot())).await;
        second.push(name);
    }
    // The lost executors' capacity is requested; the newer gang waits behind the repair (for its queue's turn).
    // (The gang's first request, for 4 executors, may still be on its way out: the request for the two lost
    // ones has the same name.)
    let buffer = wait_until("muster requests capacity for the 2 lost executors", PROVISION_TIMEOUT, || async {
        let buffers = env.buffers().await;
        match buffers.into_iter().find(|b| b.name_any() == "first-executor") {
            Some(b) if replicas(&b) == 2 => Ok(b),
            Some(b) => Err(format!("first-executor asks for {} replicas", replicas(&b))),
            None => Err("no request yet".to_owned()),
        }
    })
    .await;
    assert_eq!(env.buffers().await.len(), 1, "only the lost executors are requested: {buffer:?}");
    let (reason, _) = env.wait_condition("second", "WaitingForQuota").await;
    assert_eq!(reason, "BehindHeadOfQueue");
    // Spark replaces the lost executors.
    for (i, _) in lost.iter().enumerate() {
        let name = format!("first-exec-r{i}");
        env.create_pod(&member(&name, "first", "executor", "1500m", "2Gi", spot())).await;
        first.push(name);
    }
    // Watch muster's model: the first moment the newer gang is admitted, the running gang holds its minimum.
    let (muster, namespace) = (&env.muster, env.namespace.as_str());
    wait_until("the newer gang is admitted", PROVISION_TIMEOUT * 2, || async move {
        let state = muster.state().await;
        let newer = state.gang(namespace, "second").ok_or("no second gang")?;
        if !newer.is_admitted() {
            return Err(format!("second: {}", newer.describe()));
        }
        let running = state.gang(namespace, "first").expect("first gang");
        let held = running.bound + running.reservations.iter().map(|r| r.count).sum::<u32>();
        assert!(
            held >= running.min_member,
            "the newer gang was admitted while the running gang holds {held} of {}: {}",
            running.min_member,
            state.describe()
        );
        Ok(())
    })
    .await;
    let replacements: Vec<String> = first.iter().filter(|p| p.contains("-r")).cloned().collect();
    let placed = env.wait_bound(&replacements, PROVISION_TIMEOUT).await;
    env.wait_bound(&second, PROVISION_TIMEOUT * 2).await;
    println!(
        "replacements on {:?}; {} spot nodes now",
        placed.values().collect::<Vec<_>>(),
        karpenter.karpenter_nodes().await.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_webhook_down_pods_arrive_ungated_and_the_extender_keeps_the_gang_whole() {
    let mut control_plane = ControlPlane::start().await;
    install_crds(&control_plane.client()).await;
    // Registered, but nothing listens there: the API server ignores the failure (failurePolicy Ignore).
    let _args = register_webhook(&control_plane, free_port()).await;
    let muster = MusterServe::start(&control_plane, &MusterConfig::for_tests()).await;
    start_muster_scheduler(&mut control_plane, &muster, ExtenderMode::NodeNames).await;
    let namespace = "webhook-down";
    control_plane.create_namespace(namespace).await;
    let client = control_plane.client();
    for i in 0..2 {
        control_plane.create_node(&TestNode::new(&format!("n{i}"), "2", "8Gi")).await;
    }
    Api::<muster::api::Queue>::all(client.clone()).create(&PostParams::default(), &queue("team", 1)).await.unwrap();
    let history = PodHistory::start(&client, namespace).await;
    Api::<PodGroup>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod_group("trio", "team", vec![member_template("worker", 3, "1500m", "1Gi")]))
        .await
        .unwrap();
    let mut names = Vec::new();
    for i in 0..3 {
        let name = format!("trio-{i}");
        let pod = create_pod(&client, namespace, &gang_pod(&name, "trio", None, "1500m", "1Gi")).await;
        assert!(gates(&pod).is_empty(), "the webhook is down: the pod arrives ungated");
        names.push(name);
    }
    // Two nodes hold two of the three members: kube-scheduler tries them, the extender refuses every one.
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    wait_until("kube-scheduler tries every member and the extender refuses it", support::E2E_TIMEOUT, || async {
        for name in &names {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            if pod_condition(&pod, "PodScheduled").map(|c| c.status.as_str()) != Some("False") {
                return Err(format!("{name} not tried yet"));
            }
        }
        Ok(())
    })
    .await;
    tokio::time::sleep(support::HOLD).await;
    support::assert_never_bound(&history, &names, "two of three fit");
    control_plane.create_node(&TestNode::new("n2", "2", "8Gi")).await;
    let placed = support::wait_all_bound_within(&client, namespace, &names, support::E2E_TIMEOUT).await;
    assert_eq!(placed.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gang_larger_than_any_node_the_pool_makes_is_reported_as_the_autoscaler_says() {
    // The largest spot node Karpenter can make has 8 cpu (7.9 allocatable); each executor asks for 12.
    let env = Elastic::with_spark_gang("elastic-f", "huge", 2, "12", "8Gi").await;
    let karpenter = env.karpenter();
    env.create_pod(&member("huge-driver", "huge", "driver", "1", "1Gi", DRIVER_POOL)).await;

    // muster asks (whether a node can be made is the autoscaler's call), and relays the autoscaler's answer.
    let message = wait_until("the PodGroup relays the autoscaler's refusal", PROVISION_TIMEOUT, || async {
        let pg = env.pod_group("huge").await;
        let conditions = pg.status.map(|s| s.conditions).unwrap_or_default();
        match conditions.iter().find(|c| c.type_ == "WaitingForCapacity") {
            Some(c) if c.message.as_deref().unwrap_or("").contains("the autoscaler says: ") => {
                let message = c.message.clone().unwrap_or_default();
                if message.contains("Provisioning=False") && message.contains("2 failed") {
                    Ok(message)
                } else {
                    Err(message)
                }
            }
            other => Err(format!("WaitingForCapacity: {other:?}")),
        }
    })
    .await;
    println!("WaitingForCapacity: {message}");
    assert!(message.contains("2 x \"executor\" (cpu=12"), "{message}");
    let buffers = env.buffers().await;
    assert_eq!(buffers.iter().map(|b| (b.name_any(), replicas(b))).collect::<Vec<_>>(), [("huge-executor".into(), 2)]);

    // Nothing is bought for it, and the driver keeps its gate: it would only wait on a node of its own.
    tokio::time::sleep(QUIET_HOLD).await;
    assert!(karpenter.nodeclaims().await.is_empty(), "Karpenter provisioned:\n{}", karpenter.timeline());
    assert_eq!(gates(&env.pod("huge-driver").await), vec![ADMISSION_GATE.to_owned()]);
}
