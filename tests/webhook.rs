//! muster's mutating admission webhook, called by the real kube-apiserver over TLS with the certificate muster
//! manages itself.
//!
//! The test registers a MutatingWebhookConfiguration the way the chart does, but with a `url` client config
//! (`https://127.0.0.1:<port>/mutate-pods`: there is no Service routing here) and no caBundle, then starts
//! `muster serve --webhook-listen 127.0.0.1:<port> --webhook-hosts 127.0.0.1`. Checked:
//!
//! - muster makes the Secret (tls.crt, tls.key, ca.crt) and patches its CA into the configuration;
//! - (a) a pod of muster's scheduler created through the API server comes back with the gate
//!   `muster.dev/admission`; (b) a pod of `default-scheduler` and (c) a pod created with `spec.nodeName` get none,
//!   though the webhook was asked about both (its request counter says so);
//! - (f) malformed AdmissionReviews posted straight to the webhook get 400 with the reason, an oversized one 413;
//! - (d) a restarted muster reuses the Secret (same ca.crt, not rewritten) and serves the same certificate;
//! - (e) with muster stopped, a pod of muster's scheduler is still created (failurePolicy Ignore), ungated.
//!
//! Nothing is skipped: without the control plane binaries (tests/controlplane/build.sh) the test fails.

mod support;

use support::gates::gates;

use std::sync::Arc;

use bytes::Bytes;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use muster::api::names::ADMISSION_GATE;
use serde_json::{Value, json};
use support::muster::{http_status, prometheus_sample, read_until_closed, tls_stream};
use support::{
    ControlPlane, DEFAULT_TIMEOUT, HttpConnection, MusterConfig, MusterServe, ServeOptions, install_crds, muster_pod,
    prebound_pod, test_pod, wait_until,
};

/// Where muster keeps its certificate, and the configuration it patches.
const SYSTEM_NAMESPACE: &str = "muster-webhook-test";
const SECRET: &str = "webhook-tls";
const CONFIGURATION: &str = "muster-test";
/// The namespace whose pods the configuration sends to muster.
const NAMESPACE: &str = "work";

fn configuration(port: u16) -> MutatingWebhookConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION},
        "webhooks": [{
            "name": "admission-gate.muster.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate-pods")},
            "rules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
                "scope": "Namespaced",
            }],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
            "reinvocationPolicy": "Never",
        }],
    }))
    .expect("a MutatingWebhookConfiguration")
}

/// The Secret's three entries, once it exists with all of them.
async fn read_secret(client: &Client) -> Result<(Secret, [Vec<u8>; 3]), String> {
    let secret = Api::<Secret>::namespaced(client.clone(), SYSTEM_NAMESPACE)
        .get_opt(SECRET)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no Secret yet")?;
    let data = secret.data.clone().unwrap_or_default();
    let entry = |key: &str| data.get(key).map(|v| v.0.clone()).ok_or(format!("no {key} in {:?}", data.keys()));
    let entries = [entry("tls.crt")?, entry("tls.key")?, entry("ca.crt")?];
    Ok((secret, entries))
}

/// Waits until every webhook of the configuration carries `ca` as its caBundle.
async fn wait_for_ca_bundle(client: &Client, ca: &[u8]) {
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    wait_until("muster patches the caBundle", DEFAULT_TIMEOUT, || async {
        let configuration = api.get(CONFIGURATION).await.map_err(|e| e.to_string())?;
        let bundles: Vec<Option<&[u8]>> = configuration
            .webhooks
            .iter()
            .flatten()
            .map(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()))
            .collect();
        match !bundles.is_empty() && bundles.iter().all(|b| *b == Some(ca)) {
            true => Ok(()),
            false => {
                Err(format!("{} webhooks, caBundles {:?}", bundles.len(), bundles.iter().map(|b| b.map(<[u8]>::len))))
            }
        }
    })
    .await;
}

/// Server-only TLS trusting `ca` (PEM): what the API server does with the caBundle.
fn client_config(ca: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.expect("a PEM CA")).expect("a usable CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// `muster_webhook_requests_total{code}` from muster's /metrics.
async fn webhook_requests(muster: &MusterServe, code: &str) -> f64 {
    prometheus_sample(&muster.metrics().await, "muster_webhook_requests_total", &format!("code=\"{code}\""))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_gates_musters_new_pods_through_the_webhook() {
    let control_plane = ControlPlane::start().await;
    let client = control_plane.client();
    install_crds(&client).await;
    control_plane.create_namespace(SYSTEM_NAMESPACE).await;
    control_plane.create_namespace(NAMESPACE).await;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port();
    let configurations = Api::<MutatingWebhookConfiguration>::all(client.clone());
    configurations.create(&PostParams::default(), &configuration(port)).await.expect("create the configuration");

    let args = [
        "--webhook-listen",
        &format!("127.0.0.1:{port}"),
        "--webhook-hosts",
        "127.0.0.1",
        "--webhook-namespace",
        SYSTEM_NAMESPACE,
        "--webhook-secret",
        SECRET,
        "--webhook-configuration",
        CONFIGURATION,
    ];
    let options = ServeOptions { args: args.iter().map(|a| (*a).to_owned()).collect(), ..ServeOptions::default() };
    let mut muster = MusterServe::start_with(&control_plane, &MusterConfig::for_tests(), options).await;

    // The Secret, and its CA in the configuration.
    let (secret, [cert, key, ca]) =
        wait_until("muster makes the webhook Secret", DEFAULT_TIMEOUT, || read_secret(&client)).await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    for (name, pem, marker) in
        [("tls.crt", &cert, "CERTIFICATE"), ("tls.key", &key, "PRIVATE KEY"), ("ca.crt", &ca, "CERTIFICATE")]
    {
        assert!(String::from_utf8_lossy(pem).contains(&format!("-----BEGIN {marker}")), "{name} is PEM");
    }
    wait_for_ca_bundle(&client, &ca).await;

    // (a) The API server learns the new caBundle a moment later (its configuration cache): until then its calls
    // fail verification and, failurePolicy Ignore, pods are created ungated. Once one comes back gated, every
    // later call is made with it.
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    let mut attempt = 0;
    let gated = wait_until("a pod of muster's scheduler is created with the gate", DEFAULT_TIMEOUT, || {
        attempt += 1;
        let (pods, name) = (pods.clone(), format!("gated-{attempt}"));
        async move {
            let pod = pods
                .create(&PostParams::default(), &muster_pod(&name, "100m", "64Mi"))
                .await
                .map_err(|e| e.to_string())?;
            match gates(&pod).is_empty() {
                true => Err(format!("{name} was created without a gate")),
                false => Ok(pod),
            }
        }
    })
    .await;
    assert_eq!(gates(&gated), [ADMISSION_GATE], "the gate, once");
    let stored = pods.get(gated.metadata.name.as_deref().expect("named")).await.expect("the pod is stored");
    assert_eq!(gates(&stored), [ADMISSION_GATE], "stored with the gate");
    let metrics = muster.metrics().await;
    assert_eq!(prometheus_sample(&metrics, "muster_webhook_gated_pods_total", ""), 1.0, "one pod gated");
    let answered = webhook_requests(&muster, "200").await;

    // (b) Another scheduler's pod, (c) a pod bound at creation: asked about, left alone.
    let other =
        pods.create(&PostParams::default(), &test_pod("default-scheduler", "100m", "64Mi")).await.expect("created");
    assert_eq!(other.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()), Some("default-scheduler"));
    assert!(gates(&other).is_empty(), "a pod of default-scheduler gets no gate: {:?}", gates(&other));
    let mut bound = prebound_pod("bound", "node-1", "100m", "64Mi");
    bound.spec.as_mut().expect("a spec").scheduler_name = Some(support::MUSTER_SCHEDULER.to_owned());
    let bound = pods.create(&PostParams::default(), &bound).await.expect("a bound pod of muster's is created");
    assert!(gates(&bound).is_empty(), "a bound pod gets no gate: {:?}", gates(&bound));
    assert_eq!(webhook_requests(&muster, "200").await, answered + 2.0, "the webhook answered both");

    // (f) Straight to the webhook, as the API server connects: TLS verified with the caBundle, for 127.0.0.1.
    let addr = format!("127.0.0.1:{port}").parse().expect("an address");
    let mut webhook = HttpConnection::connect_tls(addr, client_config(&ca)).await.expect("a TLS connection");
    let review = |object: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE", "object": object,
        }})
    };
    let pod_json = serde_json::to_value(muster_pod("direct", "100m", "64Mi")).expect("a pod serialises");
    let (status, body) =
        webhook.post("/mutate-pods", Bytes::from(review(pod_json).to_string())).await.expect("answered");
    let answer: Value = serde_json::from_slice(&body).expect("a JSON AdmissionReview");
    assert_eq!(
        (status, &answer["response"]["uid"], &answer["response"]["allowed"]),
        (200, &json!("u-1"), &json!(true))
    );
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let malformed: [(&str, String, &str); 5] = [
        ("not JSON", "{\"apiVersion\":".to_owned(), "not JSON"),
        ("not a review", "[1, 2]".to_owned(), "not JSON of an AdmissionReview"),
        (
            "another version",
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).to_string(),
            "v1beta1",
        ),
        (
            "no request",
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
            "no request",
        ),
        ("not a pod", review(json!({"spec": {"containers": 7}})).to_string(), "not a Pod"),
    ];
    for (what, body, reason) in malformed {
        let (status, answer) = webhook.post("/mutate-pods", Bytes::from(body)).await.expect("answered");
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{what}: {answer}");
        assert!(answer.contains(reason), "{what}: {reason:?} not in {answer:?}");
    }
    // Too large: refused from the head alone, before any of the body is read.
    let mut stream = tls_stream(addr, client_config(&ca)).await.expect("a TLS connection");
    let head = format!("POST /mutate-pods HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", 4 << 20);
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.expect("send the head");
    let (answer, _) = read_until_closed(&mut stream, std::time::Duration::from_secs(10)).await;
    assert_eq!(http_status(&answer), Some(413), "{}", String::from_utf8_lossy(&answer));
    assert!(webhook_requests(&muster, "400").await >= 5.0);

    // (d) A restart (a new replica, a rollout) reuses the Secret: same CA, not rewritten, same certificate served.
    muster.kill9();
    muster.restart().await;
    let (again, [cert_again, _, ca_again]) =
        wait_until("the Secret is still there", DEFAULT_TIMEOUT, || read_secret(&client)).await;
    assert_eq!(ca_again, ca, "the restarted muster reuses the CA");
    assert_eq!(cert_again, cert);
    assert_eq!(again.metadata.resource_version, secret.metadata.resource_version, "the Secret is not rewritten");
    wait_for_ca_bundle(&client, &ca).await;
    let mut webhook = wait_until("the restarted muster serves the webhook", DEFAULT_TIMEOUT, || async {
        HttpConnection::connect_tls(addr, client_config(&ca)).await
    })
    .await;
    let (status, _) = webhook.post("/mutate-pods", Bytes::from("{}")).await.expect("answered");
    assert_eq!(status, 400, "the restarted muster answers, with the certificate the old CA verifies");
    let gated =
        pods.create(&PostParams::default(), &muster_pod("after-restart", "100m", "64Mi")).await.expect("created");
    assert_eq!(gates(&gated), [ADMISSION_GATE], "gated by the restarted muster");

    // (e) No muster: failurePolicy Ignore lets the pod be created, ungated (the extender's filter holds it back).
    muster.kill9();
    let ungated = pods.create(&PostParams::default(), &muster_pod("no-muster", "100m", "64Mi")).await.expect("created");
    assert!(gates(&ungated).is_empty(), "created without the webhook: {:?}", gates(&ungated));
}
