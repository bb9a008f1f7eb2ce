//! Bad input against the real `muster serve`: every malformed, oversized or nonsensical request gets a 4xx (or
//! the wire format's `Error`) with a message, nothing panics or hangs, and muster keeps serving.

mod support;

use bytes::Bytes;
use serde_json::{Value, json};
use support::muster::{MusterConfig, MusterServe, install_crds};
use support::{ControlPlane, TestNode};

fn error_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).ok().and_then(|v| v["Error"].as_str().map(str::to_string)).unwrap_or_default()
}

async fn post_raw(muster: &MusterServe, path: &str, body: impl Into<Bytes>) -> (u16, String) {
    let (status, body) = muster
        .post_bytes(path, body.into())
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}\nmuster log:\n{}", muster.log_tail(30)));
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn pod(name: &str, uid: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"schedulerName": "muster",
                 "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_or_an_error_with_a_message_and_muster_keeps_serving() {
    let cp = ControlPlane::start().await;
    install_crds(&cp.client()).await;
    cp.create_node(&TestNode::new("node-1", "4", "8Gi")).await;
    let mut muster = MusterServe::start(&cp, &MusterConfig::for_tests()).await;

    // Not JSON, the wrong shape, a missing Pod, nesting past any sane depth: 400 with the reason in Error.
    for (what, body) in [
        ("garbage", Bytes::from_static(b"\x00\x01 this is not json")),
        ("a JSON array", Bytes::from_static(b"[1, 2, 3]")),
        ("no Pod", Bytes::from_static(br#"{"NodeNames": ["node-1"]}"#)),
        ("a Pod of the wrong type", Bytes::from_static(br#"{"Pod": 42, "NodeNames": []}"#)),
        ("deep nesting", Bytes::from(format!(r#"{{"Pod": {}{}}}"#, "[".repeat(100_000), "]".repeat(100_000)))),
    ] {
        for verb in ["filter", "prioritize", "preempt"] {
            let (status, body) = post_raw(&muster, &format!("/muster/{verb}"), body.clone()).await;
            assert_eq!(status, 400, "{verb} with {what}: {status} {body}");
            assert!(!error_of(&body).is_empty(), "{verb} with {what}: no Error message in {body}");
        }
    }
    let (status, body) = post_raw(&muster, "/muster/bind", "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("line 1"), "the message locates the problem: {body}");

    // An oversized body is refused from its head, before any of it is read (sending it would race with muster
    // closing the connection on it).
    let (status, body) = muster.announce_body("/muster/filter", 65 * 1024 * 1024).await;
    assert_eq!(status, 413, "a body over the limit: {body}");
    assert!(error_of(&body).contains("exceeds the limit"), "{body}");

    // A pod muster's watch never delivered (and node names it has never seen): every node fails, unresolvable,
    // with a reason naming the pod; nothing is chosen and nothing about the pod enters muster's model.
    let (status, body) = muster
        .post_json(
            "/muster/filter",
            &json!({"Pod": pod("lost", "uid-lost"), "NodeNames": ["no-such-node", "nor-this"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["NodeNames"], json!([]), "{body}");
    let failed = answer["FailedAndUnresolvableNodes"].as_object().expect("failed nodes");
    assert_eq!(failed.len(), 2, "{body}");
    assert!(
        failed
            .values()
            .all(|reason| reason.as_str().is_some_and(|r| r.contains("default/lost") && r.contains("not yet known"))),
        "{body}"
    );
    assert!(muster.state().await.gang("default", "lost").is_none(), "a filter request must not create a gang");

    // Binding a pod muster does not know, or onto a node it did not plan: refused in Error, nothing written.
    let (status, body) = muster
        .post_json(
            "/muster/bind",
            &json!({"PodName": "ghost", "PodNamespace": "default", "PodUID": "u", "Node": "node-1"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(error_of(&body).contains("does not know pod default/ghost"), "{body}");
    let (_, body) = muster
        .post_json(
            "/muster/bind",
            &json!({"PodName": "lost", "PodNamespace": "default", "PodUID": "uid-lost", "Node": "node-1"}),
        )
        .await;
    assert!(
        error_of(&body).contains("does not know pod default/lost"),
        "a bind muster did not plan is refused: {body}"
    );

    // Prioritize for a pod muster has no plan for: every node scores 0.
    let (status, body) = muster
        .post_json("/muster/prioritize", &json!({"Pod": pod("stranger", "uid-s"), "NodeNames": ["node-1"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!([{"Host": "node-1", "Score": 0}]));

    // Preempt proposals naming unknown pods are passed through untouched (nothing of muster's is at stake).
    let (status, body) = muster
        .post_json(
            "/muster/preempt",
            &json!({"Pod": pod("p", "uid-p"), "NodeNameToMetaVictims": {"node-1": {"Pods": [{"UID": "who"}], "NumPDBViolations": 0}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["NodeNameToMetaVictims"]["node-1"]["Pods"],
        json!([{"UID": "who"}])
    );

    // Still alive and answering.
    muster.assert_running();
    assert_eq!(muster.get("/healthz").await.0, 200);
    assert_eq!(muster.get("/readyz").await.0, 200);
    let metrics = muster.metrics().await;
    assert!(metrics.contains("muster_extender_request_duration_seconds"), "{metrics}");
}
