//! The extender's listener without a control plane: `listen::serve` with the real extender router on
//! 127.0.0.1:0, spoken to over raw TCP (HTTP/1.1 written by hand, so a request can stop half-way) or rustls.
//!
//! mutual TLS (who is refused at the handshake, and counted), certificate rotation while a request is in
//! flight, files broken mid-rotation, a certificate that arrives after the listener starts (as the webhook's
//! does), and the bounds: body size by Content-Length and while reading, concurrency, the request deadline, the
//! header deadline, the connection cap and the node-list limit. No timing is asserted beyond "eventually",
//! within generous deadlines.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use muster::extender::listen::{self, ConnectionLimits, TlsSource};
use muster::extender::server::{Extender, RequestLimits, extender_router};
use muster::extender::tls::{Pki, TlsError, TlsFiles, TlsReloader, Validity};
use muster::metrics::Metrics;
use muster::plan::{Feedback, Health, Plans};
use rustls::server::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Bound on anything that should happen "soon" (a loaded CI machine included).
const DEADLINE: Duration = Duration::from_secs(10);

// ----- the server -----

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
    _feedback: mpsc::Receiver<Feedback>,
}

fn request_limits() -> RequestLimits {
    RequestLimits { max_concurrent_requests: 64, request_timeout: Duration::from_secs(30), max_body_bytes: 64 << 20 }
}

fn connection_limits() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 64,
        handshake_timeout: Duration::from_secs(30),
        header_read_timeout: Duration::from_secs(30),
    }
}

/// Serves the extender router (leader, synced, no nodes known: a 2 MiB body limit, 1,000 node names) on a port
/// of 127.0.0.1, with TLS when given.
async fn serve(tls: Option<Arc<dyn TlsSource>>, requests: RequestLimits, connections: ConnectionLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    let metrics = Arc::new(Metrics::new());
    let (feedback, inbox) = mpsc::channel(64);
    let plans = Arc::new(Plans::new(Health::new(Duration::from_secs(60)), feedback));
    plans.health.set_leader(true);
    plans.health.set_synced();
    // An API server that is never there (nothing here binds).
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"))).expect("a kube client");
    let extender = Arc::new(Extender { plans, client, metrics: metrics.clone(), scheduler_name: "muster".to_owned() });
    let app = extender_router(extender, "/muster", requests);
    let (stop, stopped) = watch::channel(false);
    let serving = tokio::spawn(listen::serve("extender", listener, tls, app, connections, metrics.clone(), stopped));
    Server { addr, metrics, stop, serving, _feedback: inbox }
}

impl Server {
    /// The value of a metric series whose labels include `labels` (0 when absent).
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        for line in self.metrics.render().lines() {
            let Some(rest) = line.strip_prefix(name) else { continue };
            let (series, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ").expect("a series"),
                None => ("", rest.trim_start()),
            };
            if rest.starts_with([' ', '{'])
                && labels.iter().all(|(k, v)| series.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
            {
                return value.trim().parse().expect("a number");
            }
        }
        0.0
    }

    /// Waits until the metric reaches `value`; fails with what it is after [`DEADLINE`].
    async fn metric_reaches(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let start = tokio::time::Instant::now();
        while self.metric(name, labels) != value {
            assert!(
                start.elapsed() < DEADLINE,
                "{name}{labels:?} is {} after {DEADLINE:?}, expected {value}",
                self.metric(name, labels)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(DEADLINE, self.serving).await.expect("the listener stops").expect("it did not panic");
    }
}

// ----- HTTP/1.1 by hand -----

/// A filter request for a pod that is not muster's (another scheduler's): every node passes.
fn foreign_filter(nodes: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "Pod": {
            "metadata": {"name": "p", "namespace": "default", "uid": "uid-foreign"},
            "spec": {"schedulerName": "default-scheduler", "containers": [{"name": "c", "image": "x"}]},
        },
        "NodeNames": nodes,
    }))
    .expect("JSON")
}

/// The head of a keep-alive POST of `length` bytes.
fn head(path: &str, length: usize) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    [head(path, body.len()), body.to_vec()].concat()
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts a refusal in the wire format's shape and returns its `Error`.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/json", "{self:?}");
        let error = self.json()["Error"].as_str().unwrap_or_default().to_owned();
        assert!(!error.is_empty(), "no Error: {self:?}");
        error
    }
}

/// Reads one response (a body with a Content-Length, as the router's are) within [`DEADLINE`].
async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Answer> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 << 10];
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {buf:?}")));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status");
        let header = |name: &str| {
            head.split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        };
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).expect("a Content-Length");
        let mut body = buf[end..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed within the body"));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Ok(Answer { status, content_type: header("content-type").unwrap_or_default(), body })
    };
    tokio::time::timeout(DEADLINE, read).await.expect("an answer within the deadline")
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8]) -> Answer {
    stream.write_all(request).await.expect("the request is sent");
    read_answer(stream).await.expect("an answer")
}

/// Reads until the server closes the connection; returns what it sent first. A reset counts as closed.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let read = async {
        match stream.read_to_end(&mut buf).await {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    };
    tokio::time::timeout(DEADLINE, read).await.expect("the server closes the connection within the deadline");
    buf
}

// ----- TLS clients -----

fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().expect("PEM certificates")
}

/// A client trusting `cas` for the server, presenting `identity` (certificate, key) when given.
fn client(cas: &[&str], identity: Option<(&str, &str)>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in certificates(ca) {
            roots.add(cert).expect("a CA certificate");
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert), PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a key"))
            .expect("a client identity"),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

async fn connect_tls(addr: SocketAddr, client: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a server name");
    tokio::time::timeout(DEADLINE, client.connect(name, tcp)).await.expect("a handshake within the deadline")
}

/// Tries a filter request over TLS and returns the error the client sees; fails if an HTTP answer arrives.
/// With TLS 1.3 the client's side of the handshake ends before the server has checked the client's
/// certificate, so the refusal can come as an alert on the first read rather than from `connect`.
async fn refused(addr: SocketAddr, client: &TlsConnector) -> String {
    let mut stream = match connect_tls(addr, client).await {
        Ok(stream) => stream,
        Err(e) => return e.to_string(),
    };
    let _ = stream.write_all(&post("/muster/filter", &foreign_filter(&["node-a"]))).await;
    let mut buf = Vec::new();
    let outcome = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf)).await.expect("an outcome in time");
    assert!(buf.is_empty(), "an HTTP answer arrived: {:?}", String::from_utf8_lossy(&buf));
    match outcome {
        Ok(_) => panic!("the connection closed without a TLS error"),
        Err(e) => e.to_string(),
    }
}

/// Whether a client's error says the server refused its certificate as not signed by a trusted CA. Every CA
/// `Pki` generates has the same name ("muster CA"), so a certificate of another one is refused for its
/// signature (`DecryptError`) rather than for an unknown issuer (`UnknownCA`).
fn untrusted_client(error: &str) -> bool {
    error.contains("received fatal alert: UnknownCA") || error.contains("received fatal alert: DecryptError")
}

/// Whether a client's error says it did not trust the server's certificate (see [`untrusted_client`]).
fn untrusted_server(error: &str) -> bool {
    error.contains("invalid peer certificate: UnknownIssuer")
        || error.contains("invalid peer certificate: BadSignature")
}

fn hour() -> Validity {
    Validity::from_now(Duration::from_secs(3600))
}

fn pki() -> Pki {
    Pki::generate(&["localhost".to_owned()], "kube-scheduler", hour()).expect("a PKI")
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("writing a TLS file");
}

fn filter_passes_all(answer: &Answer, nodes: &[&str]) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["NodeNames"], json!(nodes), "{answer:?}");
}

// ----- mutual TLS -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_a_current_certificate_of_the_client_ca_complete_the_handshake() {
    let dir = tempfile::tempdir().expect("a directory");
    let pki = pki();
    pki.write_to(dir.path()).expect("writing the PKI");
    let tls = Arc::new(TlsReloader::load(TlsFiles::in_dir(dir.path())).expect("the files load"));
    let server = serve(Some(tls), request_limits(), connection_limits()).await;

    // The right client certificate: served.
    let trusted = client(&[&pki.ca_cert_pem], Some((&pki.client_cert_pem, &pki.client_key_pem)));
    let mut stream = connect_tls(server.addr, &trusted).await.expect("the handshake succeeds");
    let answer = exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["node-a", "node-b"]))).await;
    filter_passes_all(&answer, &["node-a", "node-b"]);
    drop(stream);
    assert_eq!(server.metric("muster_tls_handshake_failures_total", &[("listener", "extender")]), 0.0);

    // No certificate.
    let anonymous = client(&[&pki.ca_cert_pem], None);
    let error = refused(server.addr, &anonymous).await;
    assert!(error.contains("received fatal alert: CertificateRequired"), "{error}");

    // A certificate of another CA.
    let other = self::pki();
    let stranger = client(&[&pki.ca_cert_pem], Some((&other.client_cert_pem, &other.client_key_pem)));
    let error = refused(server.addr, &stranger).await;
    assert!(untrusted_client(&error), "{error}");

    // An expired certificate of the right CA.
    let now = SystemTime::now();
    let past =
        Validity { not_before: now - Duration::from_secs(2 * 86_400), not_after: now - Duration::from_secs(86_400) };
    let (cert, key) = pki.issue_client("kube-scheduler", past).expect("an expired certificate");
    let expired = client(&[&pki.ca_cert_pem], Some((&cert, &key)));
    let error = refused(server.addr, &expired).await;
    assert!(error.contains("received fatal alert: CertificateExpired"), "{error}");

    server.metric_reaches("muster_tls_handshake_failures_total", &[("listener", "extender")], 3.0).await;
    // The listener still serves the right client.
    let mut stream = connect_tls(server.addr, &trusted).await.expect("the handshake succeeds");
    filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["n"]))).await, &["n"]);
    drop(stream);
    server.stop().await;
}

/// A certificate that comes later, as the webhook's does (from a Secret, once the API server answers).
#[derive(Default)]
struct LaterCertificate(RwLock<Option<Arc<ServerConfig>>>);

impl TlsSource for LaterCertificate {
    fn current(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().expect("not poisoned").clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_yet_connections_close_uncounted_and_are_served_once_it_comes() {
    let dir = tempfile::tempdir().expect("a directory");
    let pki = pki();
    pki.write_to(dir.path()).expect("writing the PKI");
    let later = Arc::new(LaterCertificate::default());
    let server = serve(Some(later.clone() as Arc<dyn TlsSource>), request_limits(), connection_limits()).await;
    let trusted = client(&[&pki.ca_cert_pem], Some((&pki.client_cert_pem, &pki.client_key_pem)));

    // No certificate: the connection is closed at once, before any TLS byte is answered.
    let error = connect_tls(server.addr, &trusted).await.expect_err("no handshake without a certificate");
    assert!(!untrusted_client(&error.to_string()), "{error}");
    server.metric_reaches("muster_http_connections", &[("listener", "extender")], 0.0).await;
    assert_eq!(
        server.metric("muster_tls_handshake_failures_total", &[("listener", "extender")]),
        0.0,
        "a connection closed for want of a certificate is not a failed handshake"
    );

    // The certificate arrives: the next connection is served with it.
    let loaded = TlsReloader::load(TlsFiles::in_dir(dir.path())).expect("the files load");
    *later.0.write().expect("not poisoned") = Some(loaded.current());
    let mut stream = connect_tls(server.addr, &trusted).await.expect("the handshake succeeds");
    filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["n"]))).await, &["n"]);
    drop(stream);
    server.stop().await;
}

// ----- rotation -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_keeps_requests_in_flight_and_new_connections_use_the_new_files() {
    let dir = tempfile::tempdir().expect("a directory");
    let old = pki();
    old.write_to(dir.path()).expect("writing the PKI");
    let tls = Arc::new(TlsReloader::load(TlsFiles::in_dir(dir.path())).expect("the files load"));
    let server = serve(Some(tls.clone() as Arc<dyn TlsSource>), request_limits(), connection_limits()).await;

    // A keep-alive connection of the old PKI: one request answered, the next one half uploaded.
    let old_client = client(&[&old.ca_cert_pem], Some((&old.client_cert_pem, &old.client_key_pem)));
    let mut open = connect_tls(server.addr, &old_client).await.expect("the handshake succeeds");
    filter_passes_all(&exchange(&mut open, &post("/muster/filter", &foreign_filter(&["a"]))).await, &["a"]);
    let body = foreign_filter(&["node-a", "node-b", "node-c"]);
    let (first, rest) = body.split_at(body.len() / 2);
    open.write_all(&head("/muster/filter", body.len())).await.expect("the head is sent");
    open.write_all(first).await.expect("half the body is sent");
    open.flush().await.expect("flushed");

    // A new CA signs the new server certificate; both CAs are trusted for clients during the change.
    let new = pki();
    write(dir.path(), "tls.crt", &new.server_cert_pem);
    write(dir.path(), "tls.key", &new.server_key_pem);
    write(dir.path(), "ca.crt", &format!("{}{}", old.ca_cert_pem, new.ca_cert_pem));
    assert!(tls.check().expect("the new files load"), "a change is reported");
    assert!(!tls.check().expect("still loadable"), "nothing changed since");

    // The request in flight completes, and the connection keeps serving.
    open.write_all(rest).await.expect("the rest of the body is sent");
    filter_passes_all(&read_answer(&mut open).await.expect("an answer"), &["node-a", "node-b", "node-c"]);
    filter_passes_all(&exchange(&mut open, &post("/muster/filter", &foreign_filter(&["b"]))).await, &["b"]);
    drop(open);

    // New connections get the new server certificate: a client trusting only the new CA is served (with a
    // client certificate of either CA), one trusting only the old CA no longer trusts the server.
    let new_client = client(&[&new.ca_cert_pem], Some((&new.client_cert_pem, &new.client_key_pem)));
    let mut stream = connect_tls(server.addr, &new_client).await.expect("the handshake succeeds");
    filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["c"]))).await, &["c"]);
    drop(stream);
    let old_identity = client(&[&new.ca_cert_pem], Some((&old.client_cert_pem, &old.client_key_pem)));
    let mut stream = connect_tls(server.addr, &old_identity).await.expect("the old client CA is still trusted");
    filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["d"]))).await, &["d"]);
    drop(stream);
    let error =
        connect_tls(server.addr, &old_client).await.map(drop).expect_err("the old CA signed no server cert now");
    assert!(untrusted_server(&error.to_string()), "{error}");

    // The old client CA removed: a client certificate of the old CA is refused on a new connection.
    write(dir.path(), "ca.crt", &new.ca_cert_pem);
    assert!(tls.check().expect("the new files load"));
    let error = refused(server.addr, &old_identity).await;
    assert!(untrusted_client(&error), "{error}");
    let mut stream = connect_tls(server.addr, &new_client).await.expect("the handshake succeeds");
    filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["e"]))).await, &["e"]);
    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_keep_the_previous_configuration() {
    let dir = tempfile::tempdir().expect("a directory");
    let pki = pki();
    pki.write_to(dir.path()).expect("writing the PKI");
    let tls = Arc::new(TlsReloader::load(TlsFiles::in_dir(dir.path())).expect("the files load"));
    let server = serve(Some(tls.clone() as Arc<dyn TlsSource>), request_limits(), connection_limits()).await;
    let trusted = client(&[&pki.ca_cert_pem], Some((&pki.client_cert_pem, &pki.client_key_pem)));

    // A new certificate written, its key not yet (garbage in its place: not PEM, then PEM of no key).
    let new = self::pki();
    write(dir.path(), "tls.crt", &new.server_cert_pem);
    for (garbage, i) in
        [("this is not a key\n", 0), ("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", 1)]
    {
        write(dir.path(), "tls.key", garbage);
        let error = tls.check().expect_err("a garbage key is refused");
        assert!(matches!(error, TlsError::BadKey { .. } | TlsError::Config { .. }), "{error}");
        assert!(error.to_string().contains("tls.key"), "the refusal names the key file: {error}");
        assert!(!tls.check().expect("the same refused files are not reported again"));
        let mut stream = connect_tls(server.addr, &trusted).await.expect("the previous configuration serves");
        let name = format!("a{i}");
        filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&[&name]))).await, &[&name]);
        drop(stream);
    }

    // A certificate that does not match its key is refused too.
    write(dir.path(), "tls.key", &pki.server_key_pem);
    assert!(tls.check().is_err(), "a certificate with another certificate's key is refused");
    let mut stream = connect_tls(server.addr, &trusted).await.expect("the previous configuration serves");
    filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["b"]))).await, &["b"]);
    drop(stream);

    // The key arrives: the new certificate is in use.
    write(dir.path(), "tls.key", &new.server_key_pem);
    assert!(tls.check().expect("the new files load"));
    let error = connect_tls(server.addr, &trusted).await.map(drop).expect_err("the server certificate changed");
    assert!(untrusted_server(&error.to_string()), "{error}");
    let renewed = client(&[&new.ca_cert_pem], Some((&pki.client_cert_pem, &pki.client_key_pem)));
    let mut stream = connect_tls(server.addr, &renewed).await.expect("the new certificate serves");
    filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["c"]))).await, &["c"]);
    drop(stream);
    server.stop().await;
}

// ----- bounds over plain HTTP -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_over_the_limit_is_refused_before_the_body_is_sent() {
    let server = serve(None, request_limits(), connection_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connected");
    stream.write_all(&head("/muster/filter", 1 << 30)).await.expect("the head is sent");
    let answer = read_answer(&mut stream).await.expect("an answer before any body");
    let error = answer.error(413);
    assert!(error.contains("request body of 1073741824 bytes exceeds the limit of 2097152 bytes"), "{error}");
    server
        .metric_reaches("muster_http_rejected_requests_total", &[("listener", "extender"), ("code", "413")], 1.0)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    let limits = RequestLimits { max_body_bytes: 64 << 10, ..request_limits() };
    let server = serve(None, limits, connection_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connected");
    let head = "POST /muster/filter HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("the head is sent");
    // 80 KiB of body in 8 KiB chunks (never terminated): past the 64 KiB limit.
    for _ in 0..10 {
        let chunk = [format!("{:x}\r\n", 8 << 10).into_bytes(), vec![b' '; 8 << 10], b"\r\n".to_vec()].concat();
        if stream.write_all(&chunk).await.is_err() {
            break; // the server answered and closed
        }
    }
    let answer = read_answer(&mut stream).await.expect("an answer");
    // Cut off while reading (no Content-Length to refuse by): the refusal says the limit all the same.
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.content_type, "application/json", "{answer:?}");
    let error: serde_json::Value = serde_json::from_slice(&answer.body).expect("a JSON refusal");
    assert!(
        error["Error"].as_str().is_some_and(|e| e.starts_with("request body exceeds the limit of 65536 bytes")),
        "{answer:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_limit_are_shed() {
    let limits = RequestLimits { max_concurrent_requests: 1, ..request_limits() };
    let server = serve(None, limits, connection_limits()).await;
    let rejected = [("listener", "extender"), ("code", "503")];

    // One request held open: its body half sent.
    let body = foreign_filter(&["node-a"]);
    let (first, rest) = body.split_at(body.len() / 2);
    let mut held = TcpStream::connect(server.addr).await.expect("connected");
    held.write_all(&[head("/muster/filter", body.len()), first.to_vec()].concat()).await.expect("half sent");

    // Another one meanwhile, of another verb (the limit is the listener's, not each verb's): shed with 503
    // (once the held one has reached the handler).
    let start = tokio::time::Instant::now();
    let error = loop {
        let mut other = TcpStream::connect(server.addr).await.expect("connected");
        let answer = exchange(&mut other, &post("/muster/prioritize", &foreign_filter(&["x"]))).await;
        if answer.status == 503 {
            break answer.error(503);
        }
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(start.elapsed() < DEADLINE, "no 503 while a request is held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.contains("retry"), "{error}");
    assert_eq!(server.metric("muster_http_rejected_requests_total", &rejected), 1.0);

    // The held request completes, and then others are served again.
    held.write_all(rest).await.expect("the rest sent");
    filter_passes_all(&read_answer(&mut held).await.expect("an answer"), &["node-a"]);
    let mut other = TcpStream::connect(server.addr).await.expect("connected");
    filter_passes_all(&exchange(&mut other, &post("/muster/filter", &foreign_filter(&["y"]))).await, &["y"]);
    assert_eq!(server.metric("muster_http_rejected_requests_total", &rejected), 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_completes_times_out() {
    let limits = RequestLimits { request_timeout: Duration::from_millis(300), ..request_limits() };
    let server = serve(None, limits, connection_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connected");
    stream.write_all(&[head("/muster/filter", 100), b"{\"Pod\": ".to_vec()].concat()).await.expect("sent");
    let error = read_answer(&mut stream).await.expect("an answer").error(408);
    assert!(error.contains("not completed within 300ms"), "{error}");
    server
        .metric_reaches("muster_http_rejected_requests_total", &[("listener", "extender"), ("code", "408")], 1.0)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_completes_closes_the_connection() {
    let limits = ConnectionLimits { header_read_timeout: Duration::from_millis(300), ..connection_limits() };
    let server = serve(None, request_limits(), limits).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connected");
    stream.write_all(b"POST /muster/fil").await.expect("half a request line sent");
    let sent = closed_by_server(&mut stream).await;
    assert!(sent.is_empty(), "closed without an answer: {:?}", String::from_utf8_lossy(&sent));
    // An idle keep-alive connection is closed the same way after its request.
    let mut stream = TcpStream::connect(server.addr).await.expect("connected");
    filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&["a"]))).await, &["a"]);
    assert!(closed_by_server(&mut stream).await.is_empty());
    server.metric_reaches("muster_http_connections", &[("listener", "extender")], 0.0).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_on_arrival() {
    let limits = ConnectionLimits { max_connections: 2, ..connection_limits() };
    let server = serve(None, request_limits(), limits).await;
    let refused = [("listener", "extender")];

    // Two connections, each served once and kept open.
    let mut held = Vec::new();
    for name in ["a", "b"] {
        let mut stream = TcpStream::connect(server.addr).await.expect("connected");
        filter_passes_all(&exchange(&mut stream, &post("/muster/filter", &foreign_filter(&[name]))).await, &[name]);
        held.push(stream);
    }
    server.metric_reaches("muster_http_connections", &[("listener", "extender")], 2.0).await;

    // The third is closed without an answer, and counted.
    let mut third = TcpStream::connect(server.addr).await.expect("the kernel accepts it");
    let _ = third.write_all(&post("/muster/filter", &foreign_filter(&["c"]))).await;
    let sent = closed_by_server(&mut third).await;
    assert!(sent.is_empty(), "closed without an answer: {:?}", String::from_utf8_lossy(&sent));
    server.metric_reaches("muster_http_connections_refused_total", &refused, 1.0).await;

    // The held ones still serve; once one closes, a new connection is served (eventually: the server has to see
    // the close first).
    filter_passes_all(&exchange(&mut held[1], &post("/muster/filter", &foreign_filter(&["d"]))).await, &["d"]);
    drop(held.remove(0));
    let start = tokio::time::Instant::now();
    loop {
        let mut stream = TcpStream::connect(server.addr).await.expect("connected");
        if stream.write_all(&post("/muster/filter", &foreign_filter(&["e"]))).await.is_ok()
            && let Ok(answer) = read_answer(&mut stream).await
        {
            filter_passes_all(&answer, &["e"]);
            break;
        }
        assert!(start.elapsed() < DEADLINE, "no connection served after one closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_node_names_than_the_limit_is_a_bad_request() {
    let server = serve(None, request_limits(), connection_limits()).await;
    let names: Vec<String> = (0..5_000).map(|i| format!("node-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut stream = TcpStream::connect(server.addr).await.expect("connected");
    let answer = exchange(&mut stream, &post("/muster/filter", &foreign_filter(&names))).await;
    let error = answer.error(400);
    assert!(error.contains("more than 1000 node names in one request"), "{error}");
    // At the limit, served.
    let answer = exchange(&mut stream, &post("/muster/filter", &foreign_filter(&names[..1_000]))).await;
    filter_passes_all(&answer, &names[..1_000]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_axum_refuses_is_refused_in_the_wire_format_too() {
    let server = serve(None, request_limits(), connection_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connected");
    // An unknown path, a verb with the wrong method.
    let error = exchange(&mut stream, &post("/muster/schedule", b"{}")).await.error(404);
    assert!(error.contains("POST /muster/schedule") && error.contains("/filter"), "{error}");
    let get = b"GET /muster/filter HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let error = exchange(&mut stream, get).await.error(405);
    assert!(!error.is_empty(), "{error}");
    // A malformed chunked body (a chunk size that is not hex).
    let mut stream = TcpStream::connect(server.addr).await.expect("connected");
    let bad_chunk =
        b"POST /muster/filter HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n";
    let error = exchange(&mut stream, bad_chunk).await.error(400);
    assert!(!error.is_empty(), "{error}");
    server.stop().await;
}
