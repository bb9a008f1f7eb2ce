//! Tests of the control-plane fixture itself, against the real etcd, kube-apiserver and stock kube-scheduler: if
//! these pass, a muster test that fails on this fixture fails because of muster.

mod support;

use k8s_openapi::api::core::v1::{Pod, Toleration};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::{Client, Error};
use support::{
    ControlPlane, DEFAULT_TIMEOUT, PodPhase, STOCK_SCHEDULER_CONFIG, TestNode, bound_node, pod_condition,
    set_pod_phase, test_pod, wait_for_pod, wait_until,
};

async fn create_pod(client: &Client, namespace: &str, pod: &Pod) {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), pod)
        .await
        .unwrap_or_else(|e| panic!("cannot create pod {:?}: {e}", pod.metadata.name));
}

async fn wait_until_bound(client: &Client, namespace: &str, name: &str) -> String {
    let pod = wait_for_pod(client, namespace, name, "is bound", |p| bound_node(p).is_some()).await;
    bound_node(&pod).expect("the pod was just seen bound").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_scheduler_binds_a_pod_to_a_fake_node_and_the_test_plays_its_kubelet() {
    let mut control_plane = ControlPlane::start().await;
    control_plane.start_scheduler(STOCK_SCHEDULER_CONFIG).await;
    let client = control_plane.client();
    control_plane.create_namespace("binds").await;

    let node =
        control_plane.create_node(&TestNode::new("worker-1", "4", "8Gi").resource("example.com/fpga", "2")).await;
    let status = node.status.expect("the node was created with its status");
    let allocatable = status.allocatable.expect("allocatable is stored on create");
    assert_eq!(allocatable["cpu"].0, "4");
    assert_eq!(allocatable["memory"].0, "8Gi");
    assert_eq!(allocatable["pods"].0, "110");
    assert_eq!(allocatable["example.com/fpga"].0, "2");
    let ready = status.conditions.into_iter().flatten().find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status).as_deref(), Some("True"));

    create_pod(&client, "binds", &test_pod("app", "500m", "1Gi")).await;
    assert_eq!(wait_until_bound(&client, "binds", "app").await, "worker-1");

    // Nothing runs the pod: the test moves it through its phases as a kubelet would.
    let running = set_pod_phase(&client, "binds", "app", PodPhase::Running).await;
    let running_status = running.status.as_ref().expect("a pod status was written");
    assert_eq!(running_status.phase.as_deref(), Some("Running"));
    assert_eq!(pod_condition(&running, "Ready").map(|c| c.status.as_str()), Some("True"));
    assert_eq!(
        pod_condition(&running, "PodScheduled").map(|c| c.status.as_str()),
        Some("True"),
        "playing the kubelet keeps the scheduler's condition"
    );
    let succeeded = set_pod_phase(&client, "binds", "app", PodPhase::Succeeded).await;
    assert_eq!(succeeded.status.and_then(|s| s.phase).as_deref(), Some("Succeeded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_that_fits_no_node_stays_unbound_and_is_marked_unschedulable() {
    let mut control_plane = ControlPlane::start().await;
    control_plane.start_scheduler(STOCK_SCHEDULER_CONFIG).await;
    let client = control_plane.client();
    control_plane.create_namespace("too-big").await;
    control_plane.create_node(&TestNode::new("small", "2", "4Gi")).await;

    create_pod(&client, "too-big", &test_pod("huge", "3", "1Gi")).await;
    // The scheduler records its verdict on the pod: waiting for it replaces guessing with a sleep.
    let pod = wait_for_pod(&client, "too-big", "huge", "is marked unschedulable", |p| {
        pod_condition(p, "PodScheduled").is_some_and(|c| c.status == "False")
    })
    .await;
    let condition = pod_condition(&pod, "PodScheduled").expect("just waited for it");
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    let message = condition.message.as_deref().unwrap_or_default();
    assert!(message.contains("Insufficient cpu"), "unexpected message: {message}");
    assert_eq!(bound_node(&pod), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_without_the_toleration_avoids_a_tainted_node() {
    let mut control_plane = ControlPlane::start().await;
    control_plane.start_scheduler(STOCK_SCHEDULER_CONFIG).await;
    let client = control_plane.client();
    control_plane.create_namespace("taints").await;
    // The tainted node is much emptier, so the scheduler's scoring would prefer it if it ignored the taint.
    control_plane.create_node(&TestNode::new("spot", "32", "128Gi").taint("pool", "spot", "NoSchedule")).await;
    control_plane.create_node(&TestNode::new("on-demand", "2", "4Gi")).await;

    for name in ["a", "b", "c"] {
        create_pod(&client, "taints", &test_pod(name, "100m", "128Mi")).await;
    }
    for name in ["a", "b", "c"] {
        assert_eq!(wait_until_bound(&client, "taints", name).await, "on-demand");
    }

    // The control: with the toleration, the same pod goes to the emptier tainted node.
    let mut tolerating = test_pod("tolerating", "100m", "128Mi");
    tolerating.spec.as_mut().expect("test_pod has a spec").tolerations = Some(vec![Toleration {
        key: Some("pool".to_owned()),
        operator: Some("Equal".to_owned()),
        value: Some("spot".to_owned()),
        effect: Some("NoSchedule".to_owned()),
        ..Toleration::default()
    }]);
    create_pod(&client, "taints", &tolerating).await;
    assert_eq!(wait_until_bound(&client, "taints", "tolerating").await, "spot");
}

fn is_forbidden(result: Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::Api(status)) if status.code == 403)
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_mode_enforces_permissions_for_declared_users() {
    let mut control_plane =
        ControlPlane::builder().rbac().user("nobody", &[]).user("reader", &["pod-readers"]).start().await;
    let admin = control_plane.client();
    control_plane.create_namespace("rbac").await;
    create_pod(&admin, "rbac", &test_pod("app", "100m", "128Mi")).await;

    let nobody = control_plane.client_for_user("nobody").await;
    let listed = Api::<Pod>::namespaced(nobody, "rbac").list(&ListParams::default()).await;
    assert!(is_forbidden(listed), "a user without bindings must get 403");

    // Groups from the token file reach the authorizer: a binding to the group lets `reader` read pods, only.
    let role = ClusterRole {
        metadata: ObjectMeta { name: Some("pod-reader".to_owned()), ..ObjectMeta::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("the admin can create roles");
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some("pod-readers".to_owned()), ..ObjectMeta::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: "pod-reader".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".to_owned(),
            name: "pod-readers".to_owned(),
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("the admin can bind roles");
    let reader = Api::<Pod>::namespaced(control_plane.client_for_user("reader").await, "rbac");
    // The authorizer sees new bindings through its informer, a moment after they are written.
    wait_until("the reader can list pods", DEFAULT_TIMEOUT, || async {
        reader.list(&ListParams::default()).await.map_err(|e| e.to_string())
    })
    .await;
    assert!(is_forbidden(reader.create(&PostParams::default(), &test_pod("other", "1", "1Gi")).await));

    // kube-scheduler runs as system:kube-scheduler, whose stock bootstrap role is enough to bind.
    control_plane.start_scheduler(STOCK_SCHEDULER_CONFIG).await;
    control_plane.create_node(&TestNode::new("worker", "2", "4Gi")).await;
    assert_eq!(wait_until_bound(&admin, "rbac", "app").await, "worker");
}
