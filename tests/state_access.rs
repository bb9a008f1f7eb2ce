//! `/state` on the metrics listener answers only what its caller could list from the API server: muster asks
//! the real kube-apiserver (RBAC authorization) who a bearer token is (TokenReview) and whether it may list
//! PodGroups cluster-wide or in the namespace asked for (SubjectAccessReview). `/metrics` stays open.

mod support;

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use muster::api::PodGroup;
use serde_json::Value;
use support::muster::{HttpConnection, MusterConfig, MusterServe, install_crds, member_template, pod_group};
use support::{ControlPlane, wait_until};

const DEVELOPER: &str = "team-a-dev";

/// `GET path` on the metrics listener with `token` (if any): status and body.
async fn get_state(muster: &MusterServe, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut connection = HttpConnection::connect(muster.metrics_addr()).await.expect("connect to the metrics port");
    if let Some(token) = token {
        connection = connection.with_token(token);
    }
    let (status, body) = connection.request(hyper::Method::GET, path, bytes::Bytes::new()).await.expect("an answer");
    let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!("GET {path} answered {status} with non-JSON ({e}): {}", String::from_utf8_lossy(&body))
    });
    (status, body)
}

fn gang_namespaces(state: &Value) -> Vec<String> {
    let mut namespaces: Vec<String> = state["gangs"]
        .as_array()
        .expect("gangs")
        .iter()
        .map(|g| g["namespace"].as_str().expect("a namespace").to_owned())
        .collect();
    namespaces.sort();
    namespaces
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_answers_only_the_namespaces_the_caller_may_list_podgroups_in() {
    let control_plane = ControlPlane::builder().rbac().user(DEVELOPER, &[]).start().await;
    let admin = control_plane.client();
    install_crds(&admin).await;
    for namespace in ["team-a", "team-b"] {
        control_plane.create_namespace(namespace).await;
        let group = pod_group("etl", "default", vec![member_template("worker", 2, "1", "1Gi")]);
        Api::<PodGroup>::namespaced(admin.clone(), namespace)
            .create(&PostParams::default(), &group)
            .await
            .unwrap_or_else(|e| panic!("create a PodGroup in {namespace}: {e}"));
    }
    // The developer may list PodGroups in team-a only.
    let role = Role {
        metadata: ObjectMeta { name: Some("podgroup-reader".into()), ..Default::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["scheduling.muster.dev".into()]),
            resources: Some(vec!["podgroups".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), "team-a").create(&PostParams::default(), &role).await.expect("a Role");
    let binding = RoleBinding {
        metadata: ObjectMeta { name: Some("podgroup-reader".into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "podgroup-reader".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: DEVELOPER.into(),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), "team-a")
        .create(&PostParams::default(), &binding)
        .await
        .expect("a RoleBinding");

    let muster = MusterServe::start(&control_plane, &MusterConfig::for_tests()).await;
    let admin_token = control_plane.admin_token().to_owned();
    let developer = control_plane.token_for_user(DEVELOPER).to_owned();

    // The admin (system:masters) sees both namespaces, once muster has loaded both gangs.
    let everything = wait_until("the admin's /state shows both gangs", Duration::from_secs(60), || async {
        let (status, state) = get_state(&muster, "/state", Some(&admin_token)).await;
        let namespaces = gang_namespaces(&state);
        if status == 200 && namespaces == ["team-a", "team-b"] { Ok(state) } else { Err(format!("{status} {state}")) }
    })
    .await;
    assert!(everything["queues"].as_array().is_some_and(|q| !q.is_empty()), "queues are shown: {everything}");

    // No token, a token the API server does not know: 401 with the reason.
    let (status, body) = get_state(&muster, "/state", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["Error"].as_str().is_some_and(|e| e.contains("Bearer")), "{body}");
    let (status, body) = get_state(&muster, "/state", Some("not-a-token")).await;
    assert_eq!(status, 401, "{body}");

    // The developer: not cluster-wide, not team-b; team-a, and only team-a's gangs.
    let (status, body) = get_state(&muster, "/state", Some(&developer)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["Error"].as_str().is_some_and(|e| e.contains("?namespace=")), "the refusal says what to ask: {body}");
    let (status, body) = get_state(&muster, "/state?namespace=team-b", Some(&developer)).await;
    assert_eq!(status, 403, "{body}");
    let (status, state) = get_state(&muster, "/state?namespace=team-a", Some(&developer)).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(gang_namespaces(&state), ["team-a"], "{state}");
    assert_eq!(state["queues"], everything["queues"], "queues are cluster-wide aggregates, shown to every caller");

    // The admin may narrow too.
    let (status, state) = get_state(&muster, "/state?namespace=team-b", Some(&admin_token)).await;
    assert_eq!((status, gang_namespaces(&state)), (200, vec!["team-b".to_owned()]), "{state}");

    // /metrics needs nothing.
    let mut connection = HttpConnection::connect(muster.metrics_addr()).await.expect("connect");
    let (status, metrics) =
        connection.request(hyper::Method::GET, "/metrics", bytes::Bytes::new()).await.expect("/metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("muster_http_rejected_requests_total{code=\"401\",listener=\"metrics\"} 2"), "{metrics}");
    assert!(metrics.contains("muster_http_rejected_requests_total{code=\"403\",listener=\"metrics\"} 2"), "{metrics}");
}
