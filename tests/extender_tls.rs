//! Mutual TLS on the real `muster serve`'s extender listener: clients without a certificate, with one from
//! another CA, or with an expired one are refused at the handshake; certificates rotated on disk are picked up
//! without a restart, while a request in flight on an old connection completes.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster::extender::tls::{Pki, Validity};
use serde_json::json;
use support::muster::{
    MusterConfig, MusterServe, ServeOptions, TestPki, client_config, http_status, install_crds, prometheus_sample,
    read_until_closed, tls_stream,
};
use support::{ControlPlane, TestNode, wait_until};
use tokio::io::AsyncWriteExt;

const FILTER: &str = "/muster/filter";

fn filter_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "Pod": {"metadata": {"name": "web", "namespace": "default", "uid": "00000000-0000-4000-8000-000000000002"},
                "spec": {"schedulerName": "default-scheduler", "containers": [{"name": "c", "image": "x"}]}},
        "NodeNames": ["node-1"],
    }))
    .expect("JSON")
}

fn head(length: usize) -> String {
    format!(
        "POST {FILTER} HTTP/1.1\r\nHost: muster\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// One filter call on a new connection with `tls`: the HTTP status, or why there was none.
async fn filter_with(muster: &MusterServe, tls: Arc<rustls::ClientConfig>) -> Result<u16, String> {
    let mut stream = tls_stream(muster.extender_addr(), tls).await?;
    let body = filter_body();
    // TLS 1.3 lets the client finish its handshake before the server has checked its certificate: a refusal
    // then arrives as the connection closing instead of an answer.
    let sent = async {
        stream.write_all(head(body.len()).as_bytes()).await?;
        stream.write_all(&body).await
    };
    sent.await.map_err(|e| format!("write: {e}"))?;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    http_status(&answer).ok_or_else(|| format!("no HTTP answer ({} bytes)", answer.len()))
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// Replaces `name` in `dir` at once (a rename), as a Secret volume's update does.
fn replace(dir: &Path, name: &str, contents: &[u8]) {
    let temporary = dir.join(format!(".{name}.new"));
    std::fs::write(&temporary, contents).expect("write a certificate file");
    std::fs::rename(&temporary, dir.join(name)).expect("rename a certificate file");
}

async fn reloads(muster: &MusterServe, result: &str) -> f64 {
    prometheus_sample(&muster.metrics().await, "muster_tls_reloads_total", &format!("result=\"{result}\""))
}

async fn wait_for_reloads(muster: &MusterServe, result: &str, at_least: f64) {
    let start = Instant::now();
    while reloads(muster, result).await < at_least {
        assert!(start.elapsed() < Duration::from_secs(30), "muster never reported {at_least} TLS reloads ({result})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_clients_are_refused_and_rotated_certificates_are_used_without_a_restart() {
    let control_plane = ControlPlane::start().await;
    install_crds(&control_plane.client()).await;
    control_plane.create_node(&TestNode::new("node-1", "4", "8Gi")).await;
    let pki = Arc::new(TestPki::generate());
    let config = MusterConfig::for_tests().extender_field("tlsReloadInterval", "300ms");
    let mut muster =
        MusterServe::start_with(&control_plane, &config, ServeOptions { pki: Some(pki.clone()), ..Default::default() })
            .await;
    let dir = pki.dir();
    let old_ca = read(dir, "ca.crt");
    let old_client = pki.client_config();
    assert_eq!(filter_with(&muster, old_client.clone()).await, Ok(200));

    // Refused: no certificate, a certificate from another CA, an expired certificate from the right CA.
    let no_certificate =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates({
                let mut roots = rustls::RootCertStore::empty();
                for ca in rustls_pki_types::pem::PemObject::pem_slice_iter(&old_ca) {
                    roots.add(ca.expect("a PEM CA")).expect("a usable CA");
                }
                roots
            })
            .with_no_client_auth();
    let stranger = TestPki::generate();
    let other_ca =
        client_config(&old_ca, stranger.pki.client_cert_pem.as_bytes(), stranger.pki.client_key_pem.as_bytes());
    let now = std::time::SystemTime::now();
    let expired_validity = Validity {
        not_before: now - Duration::from_secs(7 * 24 * 3600),
        not_after: now - Duration::from_secs(24 * 3600),
    };
    let (expired_cert, expired_key) =
        pki.pki.issue_client("kube-scheduler", expired_validity).expect("an expired cert");
    let expired = client_config(&old_ca, expired_cert.as_bytes(), expired_key.as_bytes());
    let failures_before = prometheus_sample(&muster.metrics().await, "muster_tls_handshake_failures_total", "extender");
    for (what, tls) in [("no certificate", Arc::new(no_certificate)), ("another CA", other_ca), ("expired", expired)] {
        let outcome = filter_with(&muster, tls).await;
        assert!(outcome.is_err(), "a client with {what} got an answer: {outcome:?}");
    }
    // Each is counted just after muster's side of the handshake ends, which the client may see first.
    wait_until("each refused handshake is counted", Duration::from_secs(30), || async {
        let failures = prometheus_sample(&muster.metrics().await, "muster_tls_handshake_failures_total", "extender");
        if failures - failures_before == 3.0 { Ok(()) } else { Err(format!("{} counted", failures - failures_before)) }
    })
    .await;

    // A keep-alive connection, and a request in flight on another (head and half the body sent).
    let mut keep_alive = tls_stream(muster.extender_addr(), old_client.clone()).await.expect("connect");
    let body = filter_body();
    keep_alive.write_all(head(body.len()).as_bytes()).await.expect("write");
    keep_alive.write_all(&body).await.expect("write");
    let mut in_flight = tls_stream(muster.extender_addr(), old_client.clone()).await.expect("connect");
    let (first_half, second_half) = body.split_at(body.len() / 2);
    in_flight.write_all(head(body.len()).as_bytes()).await.expect("write");
    in_flight.write_all(first_half).await.expect("write");

    // Rotation to a new CA: the server certificate from the new CA, both CAs trusted for clients meanwhile.
    let new = Pki::generate(&["127.0.0.1".to_owned()], "kube-scheduler", Validity::from_now(Duration::from_secs(3600)))
        .expect("a new CA");
    let bundle = [old_ca.as_slice(), new.ca_cert_pem.as_bytes()].concat();
    replace(dir, "ca.crt", &bundle);
    replace(dir, "tls.key", new.server_key_pem.as_bytes());
    replace(dir, "tls.crt", new.server_cert_pem.as_bytes());
    wait_for_reloads(&muster, "loaded", 1.0).await;

    in_flight.write_all(second_half).await.expect("finish the body after the rotation");
    let (answer, _) = read_until_closed(&mut in_flight, Duration::from_secs(5)).await;
    assert_eq!(http_status(&answer), Some(200), "the request in flight across the rotation completes");
    let (answer, _) = read_until_closed(&mut keep_alive, Duration::from_secs(5)).await;
    assert_eq!(http_status(&answer), Some(200), "the connection opened before the rotation still answers");

    // The files change one by one, and a re-read between two of them may load a consistent mix (the new CA
    // bundle with the old certificate): only a client of the new CA being served shows all three in use.
    let new_client =
        client_config(new.ca_cert_pem.as_bytes(), new.client_cert_pem.as_bytes(), new.client_key_pem.as_bytes());
    wait_until("muster serves the new certificate", Duration::from_secs(30), || async {
        match filter_with(&muster, new_client.clone()).await {
            Ok(200) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // New connections get the new server certificate: a client trusting only the old CA now refuses muster;
    // clients of either CA are accepted while both are in ca.crt.
    let old_cert_new_trust =
        client_config(new.ca_cert_pem.as_bytes(), &read(dir, "client.crt"), &read(dir, "client.key"));
    assert!(filter_with(&muster, old_client.clone()).await.is_err(), "the old server certificate is no longer served");
    assert_eq!(filter_with(&muster, old_cert_new_trust.clone()).await, Ok(200));

    // The old CA retired: its client certificate is refused, the new one accepted.
    let loaded = reloads(&muster, "loaded").await;
    replace(dir, "ca.crt", new.ca_cert_pem.as_bytes());
    wait_for_reloads(&muster, "loaded", loaded + 1.0).await;
    assert!(filter_with(&muster, old_cert_new_trust).await.is_err(), "a client of the retired CA is refused");
    assert_eq!(filter_with(&muster, new_client.clone()).await, Ok(200));

    // A broken key is refused and the certificates in use stay.
    let refused = reloads(&muster, "refused").await;
    replace(dir, "tls.key", b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    wait_for_reloads(&muster, "refused", refused + 1.0).await;
    assert_eq!(filter_with(&muster, new_client).await, Ok(200));
    muster.assert_running();
    assert!(muster.log().contains("cannot be used; keeping the previous ones"), "the refusal is logged");
}
