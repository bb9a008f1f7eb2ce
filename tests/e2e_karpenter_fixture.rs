//! Tests of the autoscaling fixture itself (`support::autoscaling`): real Karpenter (KWOK cloud provider) and the
//! real KWOK controller against the real control plane and the stock kube-scheduler. If these pass, a muster test
//! on an elastic cluster that fails does so because of muster.
//!
//! Each test prints what it saw (`cargo test --test e2e_karpenter_fixture -- --nocapture`): how long provisioning
//! and consolidation took, the nodes' labels and taints, and a timeline of every Node and NodeClaim change.

mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Event, Node, Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use support::autoscaling::{
    Autoscaling, AutoscalingOptions, CAPACITY_TYPE_LABEL, DEFAULT_NODE_CLASS, NODEPOOL_LABEL, PROVISION_TIMEOUT,
    conditions, describe_nodeclaims, describe_nodes, node_label, node_ready, node_taints,
};
use support::{ControlPlane, STOCK_SCHEDULER_CONFIG, bound_node, describe_pod, pod_condition, test_pod, wait_until};

async fn get_pod(client: &Client, namespace: &str, name: &str) -> Result<Pod, String> {
    Api::<Pod>::namespaced(client.clone(), namespace).get(name).await.map_err(|e| e.to_string())
}

/// Allocatable cpu of a node in millicores.
fn allocatable_millicpu(node: &Node) -> u64 {
    let quantity = node.status.as_ref().and_then(|s| s.allocatable.as_ref()).and_then(|a| a.get("cpu"));
    let text = quantity.map(|q| q.0.as_str()).unwrap_or("0");
    match text.strip_suffix('m') {
        Some(milli) => milli.parse().unwrap_or(0),
        None => text.parse::<u64>().map(|cores| cores * 1000).unwrap_or(0),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn karpenter_launches_a_spot_node_for_a_pending_pod_kwok_runs_it_and_karpenter_consolidates_it_away() {
    let start = Instant::now();
    let mut control_plane = ControlPlane::start().await;
    control_plane.start_scheduler(STOCK_SCHEDULER_CONFIG).await;
    let control_plane_started = start.elapsed();
    let autoscaling = Autoscaling::start(&control_plane, AutoscalingOptions::default()).await;
    let started = start.elapsed();
    let client = control_plane.client();
    autoscaling.create_kwok_nodeclass(DEFAULT_NODE_CLASS).await;
    autoscaling.create_nodepool("spot", "spot", &[("muster.dev/pool", "spot")], 100, "5s").await;
    control_plane.create_namespace("elastic").await;

    // 3 cpu: no node exists, so kube-scheduler marks it Unschedulable and Karpenter launches the cheapest spot
    // instance type it fits (m-4x: 3900m allocatable).
    let mut pod = test_pod("app", "3", "1Gi");
    pod.spec.as_mut().expect("test_pod has a spec").node_selector =
        Some(BTreeMap::from([(CAPACITY_TYPE_LABEL.to_owned(), "spot".to_owned())]));
    let created = Instant::now();
    Api::<Pod>::namespaced(client.clone(), "elastic")
        .create(&PostParams::default(), &pod)
        .await
        .expect("cannot create the pod");

    let claims = wait_until("Karpenter creates a NodeClaim", PROVISION_TIMEOUT, || async {
        let claims = autoscaling.nodeclaims().await;
        if claims.is_empty() { Err("no NodeClaim".to_owned()) } else { Ok(claims) }
    })
    .await;
    let claim_after = created.elapsed();
    assert_eq!(claims.len(), 1, "one pod needs one node: {}", describe_nodeclaims(&claims));

    let running = wait_until("the pod is bound to a Karpenter node and Running", PROVISION_TIMEOUT, || async {
        let pod = get_pod(&client, "elastic", "app").await?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if bound_node(&pod).is_some() && phase == Some("Running") { Ok(pod) } else { Err(describe_pod(&pod)) }
    })
    .await;
    let running_after = created.elapsed();
    assert_eq!(pod_condition(&running, "Ready").map(|c| c.status.as_str()), Some("True"), "KWOK makes it Ready");
    let node_name = bound_node(&running).expect("seen bound").to_owned();
    let node = Api::<Node>::all(client.clone()).get(&node_name).await.expect("the pod's node exists");
    assert!(node_ready(&node), "KWOK keeps the node Ready: {}", describe_nodes(std::slice::from_ref(&node)));
    assert_eq!(node_label(&node, NODEPOOL_LABEL), Some("spot"));
    assert_eq!(node_label(&node, CAPACITY_TYPE_LABEL), Some("spot"));
    assert_eq!(node_label(&node, "muster.dev/pool"), Some("spot"), "the NodePool's template labels reach the node");
    assert_eq!(node_label(&node, "node.kubernetes.io/instance-type"), Some("m-4x-amd64-linux"));
    assert_eq!(node.annotations().get("kwok.x-k8s.io/node").map(String::as_str), Some("fake"));
    assert!(node_taints(&node).is_empty(), "an initialized node carries no Karpenter taint: {:?}", node_taints(&node));
    // Karpenter writes the NodeClaim's status after it has untainted the Node: the pod may already run by then.
    let claim_conditions =
        wait_until("the NodeClaim is Launched, Registered and Initialized", PROVISION_TIMEOUT, || async {
            let claims = autoscaling.nodeclaims().await;
            let conditions = claims.first().map(conditions).unwrap_or_default();
            let all_true = ["Launched", "Registered", "Initialized"]
                .iter()
                .all(|wanted| conditions.iter().any(|(type_, status, _)| type_ == wanted && status == "True"));
            if claims.len() == 1 && all_true { Ok(conditions) } else { Err(describe_nodeclaims(&claims)) }
        })
        .await;
    let claims = autoscaling.nodeclaims().await;

    println!(
        "started control plane + kube-scheduler in {control_plane_started:?}, then CRDs + KWOK + Karpenter in {:?}",
        started - control_plane_started
    );
    println!("pod created -> NodeClaim after {claim_after:?}, -> bound and Running after {running_after:?}");
    println!("node {node_name}:\n  labels: {:?}", node.labels());
    println!("  annotations: {:?}", node.annotations());
    println!("  taints: {:?}", node_taints(&node));
    println!(
        "  capacity: {:?}\n  allocatable: {:?}",
        node.status.as_ref().and_then(|s| s.capacity.as_ref()),
        node.status.as_ref().and_then(|s| s.allocatable.as_ref())
    );
    println!("  provider id: {:?}", node.spec.as_ref().and_then(|s| s.provider_id.as_deref()));
    println!("NodeClaim {}: conditions {claim_conditions:?}", claims[0].name_any());
    let attempts: Vec<String> = control_plane
        .scheduler_metrics(1)
        .await
        .lines()
        .filter(|line| line.starts_with("scheduler_schedule_attempts_total"))
        .map(str::to_owned)
        .collect();
    println!("kube-scheduler: {attempts:?}");

    let deleted = Instant::now();
    Api::<Pod>::namespaced(client.clone(), "elastic")
        .delete("app", &DeleteParams::default())
        .await
        .expect("cannot delete the pod");
    // KWOK deletes the terminating pod (no kubelet would); then the node is empty and Karpenter removes it.
    wait_until("KWOK finishes the pod's deletion", PROVISION_TIMEOUT, || async {
        match get_pod(&client, "elastic", "app").await {
            Err(e) if e.contains("NotFound") || e.contains("not found") => Ok(()),
            Err(e) => Err(e),
            Ok(pod) => Err(describe_pod(&pod)),
        }
    })
    .await;
    let pod_gone_after = deleted.elapsed();
    let consolidated_in = autoscaling.wait_until_no_karpenter_nodes().await;
    println!("pod deleted -> gone after {pod_gone_after:?}; -> node and NodeClaim gone after {:?}", deleted.elapsed());
    println!("(consolidation wait alone {consolidated_in:?})");
    println!("timeline:\n{}", autoscaling.timeline());
    println!("test wall time {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capacity_buffer_makes_karpenter_provision_room_without_pods_and_deleting_it_consolidates() {
    let start = Instant::now();
    let mut control_plane = ControlPlane::start().await;
    control_plane.start_scheduler(STOCK_SCHEDULER_CONFIG).await;
    let autoscaling = Autoscaling::start(&control_plane, AutoscalingOptions::default()).await;
    let client = control_plane.client();
    autoscaling.create_kwok_nodeclass(DEFAULT_NODE_CLASS).await;
    autoscaling.create_nodepool("on-demand", "on-demand", &[], 100, "5s").await;
    control_plane.create_namespace("buffered").await;

    // A chunk of 2 cpu, 3 chunks: room for 3 such pods, i.e. 6 cores in pieces of 2.
    let chunk = test_pod("chunk", "2", "1Gi");
    let template = PodTemplateSpec { metadata: Some(ObjectMeta::default()), spec: chunk.spec.clone() };
    let created = Instant::now();
    autoscaling.create_capacity_buffer("buffered", "warm-pool", template, 3).await;

    let nodes =
        wait_until("Karpenter provisions Ready nodes with room for 3 chunks of 2 cpu", PROVISION_TIMEOUT, || async {
            let nodes = autoscaling.karpenter_nodes().await;
            let chunks: u64 = nodes.iter().filter(|n| node_ready(n)).map(|n| allocatable_millicpu(n) / 2000).sum();
            let all_ready = nodes.iter().all(|n| node_ready(n) && node_taints(n).is_empty());
            if chunks >= 3 && all_ready {
                Ok(nodes)
            } else {
                Err(format!("{chunks} chunks fit: [{}]", describe_nodes(&nodes)))
            }
        })
        .await;
    let provisioned_after = created.elapsed();
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await.expect("cannot list pods").items;
    assert!(
        pods.is_empty(),
        "a buffer creates no pod: {:?}",
        pods.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    );
    println!("buffer created -> {} Ready node(s) after {provisioned_after:?}: {}", nodes.len(), describe_nodes(&nodes));
    for node in &nodes {
        println!("  {} labels: {:?}", node.name_any(), node.labels());
    }

    let buffer = autoscaling.capacity_buffer("buffered", "warm-pool").await;
    println!("buffer status right after provisioning: {}", buffer.data["status"]);
    let ready_for_provisioning = conditions(&buffer);
    assert!(
        ready_for_provisioning.iter().any(|(type_, status, _)| type_ == "ReadyForProvisioning" && status == "True"),
        "Karpenter resolved the buffer: {ready_for_provisioning:?}"
    );
    let status =
        wait_until("Karpenter reports the buffer as provisioned (Provisioning=True)", PROVISION_TIMEOUT, || async {
            let buffer = autoscaling.capacity_buffer("buffered", "warm-pool").await;
            let conditions = conditions(&buffer);
            if conditions.iter().any(|(type_, status, _)| type_ == "Provisioning" && status == "True") {
                Ok(buffer.data["status"].clone())
            } else {
                Err(format!("{conditions:?}"))
            }
        })
        .await;
    println!("buffer Provisioning=True after {:?}: {status}", created.elapsed());

    // The nodes hold no pod, yet they are not empty to Karpenter: its disruption pass refuses to consolidate a
    // node hosting the buffer's virtual pods, and says so in an event on the node.
    let node_names: Vec<String> = nodes.iter().map(ResourceExt::name_any).collect();
    let event = wait_until("Karpenter declines to consolidate a buffer node", PROVISION_TIMEOUT, || async {
        let events = Api::<Event>::all(client.clone()).list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let refusals: Vec<&Event> = events
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Unconsolidatable"))
            .filter(|e| e.involved_object.name.as_ref().is_some_and(|name| node_names.contains(name)))
            .collect();
        match refusals.first() {
            Some(event) => Ok((*event).clone()),
            None => Err(format!("{} events, none Unconsolidatable for {node_names:?}", events.items.len())),
        }
    })
    .await;
    println!(
        "after {:?}: event {:?} on {:?} {:?}: {:?}",
        created.elapsed(),
        event.reason,
        event.involved_object.kind,
        event.involved_object.name,
        event.message
    );
    assert!(
        event.message.as_deref().is_some_and(|m| m.contains("buffer pods")),
        "Karpenter keeps the node for the buffer: {:?}",
        event.message
    );
    let nodes_now = autoscaling.karpenter_nodes().await;
    assert_eq!(nodes_now.iter().map(ResourceExt::name_any).collect::<Vec<_>>(), node_names, "no node was replaced");
    println!("nodes then: {}", describe_nodes(&nodes_now));
    println!("NodeClaims then: {}", describe_nodeclaims(&autoscaling.nodeclaims().await));

    let deleted = Instant::now();
    autoscaling.delete_capacity_buffer("buffered", "warm-pool").await;
    autoscaling.wait_until_no_karpenter_nodes().await;
    println!("buffer deleted -> every node consolidated away after {:?}", deleted.elapsed());
    println!("timeline:\n{}", autoscaling.timeline());
    println!("test wall time {:?}", start.elapsed());
}
