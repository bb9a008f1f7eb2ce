//! Polling with a deadline: tests wait for what the real components do, and fail saying what never happened.

use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};

use super::objects::bound_node;

/// Long enough for anything a healthy control plane does in these tests (they take well under a second), short
/// enough that a broken test fails in reasonable time.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `probe` until it returns `Ok`, at most for `timeout`, and returns its value. `probe` returns
/// `Err(what it saw instead)`; on timeout the test panics with `what` and the last thing seen.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let seen = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting until {what}; last seen: {seen}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until pod `namespace/name` exists and satisfies `condition` (described by `what`, e.g. "is bound"),
/// and returns it.
pub async fn wait_for_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    condition: impl Fn(&Pod) -> bool,
) -> Pod {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let condition = &condition;
    wait_until(&format!("pod {namespace}/{name} {what}"), DEFAULT_TIMEOUT, || {
        let pods = pods.clone();
        async move {
            match pods.get(name).await {
                Ok(pod) if condition(&pod) => Ok(pod),
                Ok(pod) => Err(describe_pod(&pod)),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Waits until the pods matching `label_selector` in `namespace` satisfy `condition` (described by `what`, e.g.
/// "are 2 executors"), and returns them sorted by name.
pub async fn wait_for_pods(
    client: &Client,
    namespace: &str,
    label_selector: &str,
    what: &str,
    condition: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let condition = &condition;
    let params = ListParams::default().labels(label_selector);
    let what = format!("the pods in {namespace} matching {label_selector:?} {what}");
    wait_until(&what, DEFAULT_TIMEOUT, || {
        let (pods, params) = (pods.clone(), params.clone());
        async move {
            let mut list = pods.list(&params).await.map_err(|e| e.to_string())?.items;
            list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            if condition(&list) {
                Ok(list)
            } else {
                Err(format!("{} pods: [{}]", list.len(), list.iter().map(describe_pod).collect::<Vec<_>>().join("; ")))
            }
        }
    })
    .await
}

/// One line with what matters about a pod's progress: node, phase, conditions.
pub fn describe_pod(pod: &Pod) -> String {
    let mut text = format!(
        "{} node={} phase={}",
        pod.metadata.name.as_deref().unwrap_or("?"),
        bound_node(pod).unwrap_or("-"),
        pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("-")
    );
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    for condition in conditions.into_iter().flatten() {
        write!(text, " {}={}", condition.type_, condition.status).expect("writing to a String cannot fail");
        if let Some(reason) = &condition.reason {
            write!(text, "({reason}: {})", condition.message.as_deref().unwrap_or(""))
                .expect("writing to a String cannot fail");
        }
    }
    text
}
