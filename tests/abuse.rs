//! Abuse of the real `muster serve`'s extender listener (mutual TLS) on a real control plane: a 1 GB body, 16
//! million one-character node names, 10,000 concurrent connections, slowloris (headers and bodies that trickle),
//! clients without a trusted certificate. After each, muster is still up, answers a legitimate filter call over
//! mutual TLS and `/readyz`, and its peak resident memory (VmHWM) stays under [`MEMORY_BOUND_MIB`].
//!
//! The bound comes from the limits (docs/security.md): with 10 nodes the body limit is 2 MiB + 10 × 16 KiB, at
//! most 64 requests are in flight, a list holds at most 1,000 names, and a pending connection costs a few
//! kilobytes until its handshake deadline closes it. The tests print what they measured.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::muster::{
    MusterConfig, MusterServe, TestPki, client_config, http_status, install_crds, prometheus_sample, read_until_closed,
    tls_stream,
};
use support::{ControlPlane, TestNode, wait_until};
use tokio::io::AsyncWriteExt;

/// Peak resident memory muster may reach under any of these attacks.
const MEMORY_BOUND_MIB: u64 = 256;
const NODES: usize = 10;
const FILTER: &str = "/muster/filter";

/// A control plane with `NODES` nodes and muster with short deadlines (headers 2 s, requests 3 s), so the tests
/// see them act.
async fn start(handshake_timeout: &str) -> (ControlPlane, MusterServe) {
    raise_open_files_limit();
    let control_plane = ControlPlane::start().await;
    install_crds(&control_plane.client()).await;
    for i in 0..NODES {
        control_plane.create_node(&TestNode::new(&format!("node-{i}"), "4", "8Gi")).await;
    }
    let config = MusterConfig::for_tests()
        .extender_field("handshakeTimeout", handshake_timeout)
        .extender_field("headerReadTimeout", "2s")
        .extender_field("requestTimeout", "3s");
    let muster = MusterServe::start(&control_plane, &config).await;
    // The body limit is sized by the nodes muster knows: wait until it knows them all.
    let start = Instant::now();
    while prometheus_sample(&muster.metrics().await, "muster_cache_objects", "kind=\"nodes\"") < NODES as f64 {
        assert!(start.elapsed() < Duration::from_secs(60), "muster never saw the {NODES} nodes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (control_plane, muster)
}

/// The tests open thousands of sockets: lift the soft open-files limit to the hard one.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: as above.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}

/// A filter call for a pod that is not muster's, offering every node: what any kube-scheduler call costs.
fn legitimate_filter() -> Value {
    let names: Vec<String> = (0..NODES).map(|i| format!("node-{i}")).collect();
    json!({
        "Pod": {"metadata": {"name": "web", "namespace": "default", "uid": "00000000-0000-4000-8000-000000000001"},
                "spec": {"schedulerName": "default-scheduler", "containers": [{"name": "c", "image": "x"}]}},
        "NodeNames": names,
    })
}

/// muster is alive, ready, and answers a legitimate filter call over mutual TLS with every node passing.
async fn assert_serving(muster: &mut MusterServe, context: &str) {
    muster.assert_running();
    let (status, body) = muster.readyz().await.unwrap_or_else(|e| panic!("{context}: /readyz: {e}"));
    assert_eq!(status, 200, "{context}: /readyz: {body}");
    let (status, body) = muster
        .try_post_json(FILTER, &legitimate_filter())
        .await
        .unwrap_or_else(|e| panic!("{context}: a legitimate filter call failed: {e}"));
    assert_eq!(status, 200, "{context}: {body}");
    let answer: Value = serde_json::from_str(&body).expect("filter answers JSON");
    assert_eq!(answer["NodeNames"].as_array().map(Vec::len), Some(NODES), "{context}: {body}");
}

/// muster's peak resident memory so far (VmHWM), in MiB.
fn peak_rss_mib(muster: &MusterServe) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", muster.pid())).expect("muster's /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib / 1024
}

fn assert_memory_bounded(muster: &MusterServe, context: &str) {
    let peak = peak_rss_mib(muster);
    println!("{context}: muster's peak resident memory {peak} MiB (bound {MEMORY_BOUND_MIB} MiB)");
    assert!(
        peak < MEMORY_BOUND_MIB,
        "{context}: muster's peak resident memory {peak} MiB exceeds {MEMORY_BOUND_MIB} MiB"
    );
}

/// A TLS connection to the extender with the test client certificate.
async fn tls_connect(muster: &MusterServe) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_stream(muster.extender_addr(), muster.pki().client_config())
        .await
        .expect("mutual TLS handshake with the test client certificate")
}

/// Streams a body of `total` bytes (`prefix`, then `filler` repeated) in 1 MiB writes, chunked (no length), while
/// reading the answer. Returns the HTTP status muster answered (None if the connection broke before one was
/// read) and how many bytes were written before muster stopped reading.
async fn stream_body(muster: &MusterServe, prefix: &[u8], filler: &[u8], total: usize) -> (Option<u16>, usize) {
    let stream = tls_connect(muster).await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = format!(
        "POST {FILTER} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        muster.extender_addr()
    );
    let reading = tokio::spawn(async move { read_until_closed(&mut reader, Duration::from_secs(60)).await.0 });
    let chunk: Vec<u8> = filler.iter().copied().cycle().take(1 << 20).collect();
    let mut written = 0usize;
    writer.write_all(head.as_bytes()).await.expect("send the head");
    let mut send = async |bytes: &[u8]| -> std::io::Result<()> {
        writer.write_all(format!("{:x}\r\n", bytes.len()).as_bytes()).await?;
        writer.write_all(bytes).await?;
        writer.write_all(b"\r\n").await
    };
    let mut outcome = send(prefix).await.map(|_| written += prefix.len());
    while outcome.is_ok() && written < total {
        outcome = send(&chunk).await.map(|_| written += chunk.len());
    }
    if outcome.is_ok() {
        let _ = writer.write_all(b"0\r\n\r\n").await;
    }
    let answer = reading.await.expect("the reader task");
    (http_status(&answer), written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_body_and_sixteen_million_node_names_are_refused_within_bounded_memory() {
    let (_control_plane, mut muster) = start("2s").await;
    assert_serving(&mut muster, "at start").await;
    let baseline = peak_rss_mib(&muster);
    println!("muster's peak resident memory after start: {baseline} MiB");

    // Announced: refused from the head, nothing read.
    let (status, body) = muster.announce_body(FILTER, 1 << 30).await;
    assert_eq!(status, 413, "a 1 GiB Content-Length: {body}");
    assert!(body.contains("exceeds the limit") && body.contains("10 nodes"), "the reason names the limit: {body}");

    // Streamed without a length: muster stops reading at its limit.
    let (status, written) = stream_body(&muster, b"{\"NodeNames\":[", b"\"a\",", 1 << 30).await;
    println!("1 GiB chunked body: answered {status:?} after {} MiB were written", written >> 20);
    assert!(written < 64 << 20, "muster kept reading a body far past its limit ({written} bytes written)");
    assert!(matches!(status, Some(413) | None), "a chunked 1 GiB body answered {status:?}");
    assert_serving(&mut muster, "after a 1 GiB body").await;
    assert_memory_bounded(&muster, "after a 1 GiB body");

    // 16 million one-character names: 64 MiB of `"a",`. Announced and streamed.
    let sixteen_million = 16_000_000usize;
    let (status, body) = muster.announce_body(FILTER, (sixteen_million * 4 + 100) as u64).await;
    assert_eq!(status, 413, "16 million names announced: {body}");
    let (status, written) = stream_body(&muster, b"{\"NodeNames\":[", b"\"a\",", sixteen_million * 4).await;
    println!("16 million names, chunked: answered {status:?} after {} MiB were written", written >> 20);
    assert!(matches!(status, Some(413) | None), "16 million names answered {status:?}");

    let too_large = prometheus_sample(&muster.metrics().await, "muster_http_rejected_requests_total", "code=\"413\"");
    assert_eq!(too_large, 4.0, "two announced and two streamed bodies refused with 413");

    // As many names as fit under the body limit (half a million): refused by the node limit, not decoded whole.
    let names = vec!["a"; 500_000];
    let (status, body) = muster
        .try_post_json(FILTER, &json!({"Pod": legitimate_filter()["Pod"], "NodeNames": names}))
        .await
        .expect("an answer to 500,000 names");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than 1000 node names"), "{body}");
    assert_serving(&mut muster, "after 16 million names").await;
    assert_memory_bounded(&muster, "after 16 million names");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_and_slowloris_leave_muster_serving_within_bounded_memory() {
    // A handshake deadline long enough that all 10,000 are open at once.
    let (_control_plane, mut muster) = start("40s").await;
    assert_serving(&mut muster, "at start").await;
    let connections = 10_000usize;
    assert!(
        open_files_limit() > connections as u64 + 1_000,
        "the test needs more than {connections} open files (ulimit -n is {})",
        open_files_limit()
    );

    // 10,000 connections that start a TLS handshake (a record header, then nothing) and stall.
    let addr = muster.extender_addr();
    let mut stalled = Vec::with_capacity(connections);
    let opened = Instant::now();
    for _ in 0..connections / 500 {
        let batch: Vec<_> = (0..500)
            .map(|_| async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await?;
                stream.write_all(&[0x16, 0x03, 0x01, 0x00, 0xff]).await?;
                Ok::<_, std::io::Error>(stream)
            })
            .collect();
        for connected in futures::future::join_all(batch).await {
            stalled.push(connected.unwrap_or_else(|e| panic!("connection {} of {connections}: {e}", stalled.len())));
        }
    }
    println!("{connections} stalled connections opened in {:.1}s", opened.elapsed().as_secs_f64());
    // A connect returns once the kernel queued the connection; muster accepts from that queue a moment later, so
    // the gauge is polled until it counts them all (well inside the 40 s handshake deadline).
    let open =
        wait_until(&format!("muster holds all {connections} connections at once"), Duration::from_secs(20), || async {
            let open = prometheus_sample(&muster.metrics().await, "muster_http_connections", "listener=\"extender\"");
            if open >= connections as f64 { Ok(open) } else { Err(format!("muster_http_connections {open}")) }
        })
        .await;
    println!(
        "muster_http_connections{{listener=\"extender\"}} with them open: {open}, {:.1}s after the first connect",
        opened.elapsed().as_secs_f64()
    );
    // While they are open, kube-scheduler still gets answers.
    assert_serving(&mut muster, "with 10,000 stalled connections").await;
    assert_memory_bounded(&muster, "with 10,000 stalled connections");
    // The handshake deadline closes every one of them.
    let mut still_open = 0;
    for stream in stalled.iter_mut().step_by(100) {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(60)).await;
        still_open += usize::from(!closed);
    }
    assert_eq!(still_open, 0, "stalled handshakes outlived the handshake deadline");
    drop(stalled);
    // Each is counted just after its socket closes, so the count is polled.
    wait_until("every stalled handshake is counted as failed", Duration::from_secs(20), || async {
        let failures = prometheus_sample(&muster.metrics().await, "muster_tls_handshake_failures_total", "extender");
        if failures >= connections as f64 { Ok(()) } else { Err(format!("{failures} counted")) }
    })
    .await;

    // Slowloris with a valid certificate: 200 connections whose request heads trickle a byte every 300 ms. The
    // header deadline (2 s) closes them before a head completes.
    let mut trickling = Vec::new();
    for _ in 0..200 {
        trickling.push(tls_connect(&muster).await);
    }
    let trickle = tokio::spawn(async move {
        let head = b"POST /muster/filter HTTP/1.1\r\nHost: muster\r\nContent-Length: 2\r\n\r\n{}";
        let mut closed = vec![false; trickling.len()];
        let started = Instant::now();
        for byte in head.iter() {
            for (stream, closed) in trickling.iter_mut().zip(closed.iter_mut()) {
                if !*closed && stream.write_all(&[*byte]).await.and(stream.flush().await).is_err() {
                    *closed = true;
                }
            }
            if closed.iter().all(|c| *c) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut answered = 0;
        for (stream, was_closed) in trickling.iter_mut().zip(closed.iter()) {
            if !*was_closed {
                let (answer, _) = read_until_closed(stream, Duration::from_secs(5)).await;
                answered += usize::from(http_status(&answer) == Some(200));
            }
        }
        (closed.iter().filter(|c| **c).count(), answered, started.elapsed())
    });
    // Slow bodies: heads complete, bodies never do; the request deadline (3 s) answers 408.
    let mut slow_bodies = Vec::new();
    for _ in 0..50 {
        let mut stream = tls_connect(&muster).await;
        stream
            .write_all(b"POST /muster/filter HTTP/1.1\r\nHost: muster\r\nContent-Length: 1000\r\n\r\n{\"Pod\":")
            .await
            .expect("send a head");
        slow_bodies.push(stream);
    }
    assert_serving(&mut muster, "during slowloris").await;
    let mut timed_out = 0;
    for stream in slow_bodies.iter_mut() {
        let (answer, _) = read_until_closed(stream, Duration::from_secs(20)).await;
        timed_out += usize::from(http_status(&answer) == Some(408));
    }
    assert_eq!(timed_out, slow_bodies.len(), "every never-finished body gets 408 at the request deadline");
    let (closed, answered, took) = trickle.await.expect("the trickle task");
    println!(
        "slowloris heads: {closed} of 200 closed by muster within {:.1}s, {answered} answered",
        took.as_secs_f64()
    );
    assert_eq!((closed, answered), (200, 0), "the header deadline closes every trickling head");

    // Clients without a trusted certificate are refused at the handshake; kube-scheduler's still works.
    let stranger = TestPki::generate();
    let refused = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let foreign = client_config(
        std::fs::read(muster.pki().dir().join("ca.crt")).expect("ca").as_slice(),
        stranger.pki.client_cert_pem.as_bytes(),
        stranger.pki.client_key_pem.as_bytes(),
    );
    let handshake = tokio_rustls::TlsConnector::from(foreign).connect(name, refused).await;
    let outcome = match handshake {
        // TLS 1.3: the client finishes first; the refusal arrives with the first read.
        Ok(mut stream) => {
            let _ = stream.write_all(b"GET /muster/filter HTTP/1.1\r\nHost: m\r\n\r\n").await;
            let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
            http_status(&answer)
        }
        Err(_) => None,
    };
    assert_eq!(outcome, None, "a client certificate from another CA got an HTTP answer");

    assert_serving(&mut muster, "after the connection floods").await;
    assert_memory_bounded(&muster, "after the connection floods");
}
