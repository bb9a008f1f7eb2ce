//! muster with its scheduling-gate webhook registered on the test's API server, the way the chart registers it
//! but with a `url` client config on loopback (the API server calls `https://127.0.0.1:<port>/mutate-pods`;
//! muster mints the serving certificate and patches the caBundle in itself).

use std::net::TcpListener;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};

use super::controlplane::ControlPlane;
use super::muster::muster_pod;
use super::wait::{DEFAULT_TIMEOUT, wait_until};

/// muster's scheduling gate.
pub const ADMISSION_GATE: &str = "muster.dev/admission";
/// The namespace muster keeps its webhook certificate in (`--webhook-namespace`).
pub const WEBHOOK_NAMESPACE: &str = "muster-system";
/// The MutatingWebhookConfiguration muster patches (`--webhook-configuration`).
pub const WEBHOOK_CONFIGURATION: &str = "muster";

/// A free loopback port for muster's webhook listener.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// Registers muster's webhook at `port` (failurePolicy Ignore) and creates the namespace of its certificate;
/// returns the `muster serve` arguments that serve it.
pub async fn register_webhook(control_plane: &ControlPlane, port: u16) -> Vec<String> {
    control_plane.create_namespace(WEBHOOK_NAMESPACE).await;
    let configuration: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION},
        "webhooks": [{
            "name": "gate.muster.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate-pods")},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
            "reinvocationPolicy": "Never",
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [WEBHOOK_NAMESPACE]
            }]},
        }],
    }))
    .expect("a MutatingWebhookConfiguration");
    Api::<MutatingWebhookConfiguration>::all(control_plane.client())
        .create(&PostParams::default(), &configuration)
        .await
        .expect("cannot register muster's webhook");
    [
        "--webhook-listen",
        &format!("127.0.0.1:{port}"),
        "--webhook-hosts",
        "127.0.0.1",
        "--webhook-namespace",
        WEBHOOK_NAMESPACE,
        "--webhook-configuration",
        WEBHOOK_CONFIGURATION,
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Waits until the API server calls muster's webhook with its certificate trusted: muster has patched its CA into
/// the configuration, and the API server (which learns it through its configuration cache, a moment later) gates
/// a dry-run pod of muster's scheduler. Until then, failurePolicy Ignore lets pods through ungated.
pub async fn wait_for_webhook(client: &Client) {
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    wait_until("muster patches its CA into the webhook configuration", DEFAULT_TIMEOUT, || {
        let api = api.clone();
        async move {
            let configuration = api.get(WEBHOOK_CONFIGURATION).await.map_err(|e| e.to_string())?;
            let patched = configuration
                .webhooks
                .unwrap_or_default()
                .iter()
                .all(|w| w.client_config.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty()));
            if patched { Ok(()) } else { Err("no caBundle yet".into()) }
        }
    })
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    wait_until("the API server gates a pod through muster's webhook", DEFAULT_TIMEOUT, || {
        let (pods, dry_run) = (pods.clone(), dry_run.clone());
        async move {
            let pod =
                pods.create(&dry_run, &muster_pod("webhook-probe", "100m", "64Mi")).await.map_err(|e| e.to_string())?;
            if gates(&pod).is_empty() { Err("a dry-run pod came back ungated".into()) } else { Ok(()) }
        }
    })
    .await;
}

/// The scheduling gates a pod carries.
pub fn gates(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .map_or_else(Vec::new, |g| g.iter().map(|g| g.name.clone()).collect())
}
