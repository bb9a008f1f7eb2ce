//! `muster serve` against a real control plane: the process fixture ([`MusterServe`]), the CRDs it needs
//! ([`install_crds`]), a kube-scheduler whose extender points at it ([`start_muster_scheduler`]), everything in one
//! go ([`MusterEnv`]), a small keep-alive HTTP client for its endpoints ([`HttpConnection`]), its `/state` document
//! ([`MusterState`]), concise builders for PodGroups, Queues and gang pods, a continuous record of every pod's
//! node ([`PodHistory`]) and a node-capacity check over everything bound ([`assert_no_node_overcommitted`]).
//!
//! For fault tests: [`MusterServe::kill9`] / [`MusterServe::restart`] (same address, same configuration),
//! standby replicas under leader election ([`MusterServe::start_standby`], [`ServeOptions`]), a Service-like
//! proxy that routes only to ready replicas ([`ReadyProxy`], with [`start_muster_scheduler_at`]), and a kubelet
//! that finishes the deletion of terminating (evicted) pods ([`TerminatingPodKubelet`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::muster::api::{MemberTemplate, PodGroup, PodGroupSpec, Queue, QueueSpec, names};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::Deserialize;
use tempfile::TempDir;

use super::controlplane::ControlPlane;
use super::objects::{bound_node, test_pod};
use super::process::{ManagedProcess, log_file_tail, print_log_tails, stop_all};
use super::wait::{DEFAULT_TIMEOUT, describe_pod, wait_until};

/// The scheduler name (and kube-scheduler profile) muster serves in every test.
pub const MUSTER_SCHEDULER: &str = "muster";
/// The URL prefix of the extender verbs.
pub const URL_PREFIX: &str = "/muster";
/// How long `muster serve` gets to sync its cache and report ready (a cold start on a loaded CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the API server gets to establish the CRDs.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous bound for anything muster + kube-scheduler do in a test (a gang binds in well under a second warm;
/// CI machines are slow and shared). Tests fail with what they saw when it runs out.
pub const E2E_TIMEOUT: Duration = Duration::from_secs(120);
const START_ATTEMPTS: u32 = 3;

// ---------------------------------------------------------------------------------------------------------------
// muster serve
// ---------------------------------------------------------------------------------------------------------------

/// muster's configuration file (see config/muster.yaml); unset fields are left out so muster's defaults apply.
/// `listen`, `urlPrefix` and `schedulerName` are passed as flags by [`MusterServe::start`].
#[derive(Clone, Debug, Default)]
pub struct MusterConfig {
    pub default_queue: Option<String>,
    pub cycle_interval: Option<String>,
    /// `statusInterval`: how often PodGroup and Queue status is written (urgent writes happen at once).
    pub status_interval: Option<String>,
    /// `evictionTimeout`: how long a refused eviction (PDB 429, 5xx) is retried before muster gives it up.
    pub eviction_timeout: Option<String>,
    /// `watchStaleAfter`: `/readyz` answers 503 while any watch has been broken longer than this.
    pub watch_stale_after: Option<String>,
    pub leader_election: Option<LeaderElectionConfig>,
    pub claim_ttl: Option<String>,
    pub reservation_timeout: Option<String>,
    pub drain_after: Option<String>,
    pub min_runtime: Option<String>,
    /// Further fields of the `extender:` section (bounds such as `maxConcurrentRequests`), as YAML scalars. The
    /// fixture adds `tls` itself.
    pub extender: BTreeMap<String, String>,
}

/// The `leaderElection` section of muster's configuration: replicas compete for a coordination.k8s.io Lease and
/// only its holder acts (and reports ready). Unset fields are left out so muster's defaults apply.
#[derive(Clone, Debug, Default)]
pub struct LeaderElectionConfig {
    pub enabled: bool,
    pub lease_name: Option<String>,
    pub lease_namespace: Option<String>,
    /// How long a Lease holds without renewal (e.g. `"4s"` in tests, `"15s"` by default).
    pub lease_duration: Option<String>,
    /// The holder renews this long before the Lease would expire.
    pub renew_grace: Option<String>,
}

impl LeaderElectionConfig {
    /// Leader election on, with a Lease of `lease_duration` renewed `renew_grace` before it expires; the Lease's
    /// name and namespace are muster's defaults.
    pub fn enabled(lease_duration: &str, renew_grace: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            enabled: true,
            lease_duration: Some(lease_duration.to_owned()),
            renew_grace: Some(renew_grace.to_owned()),
            ..LeaderElectionConfig::default()
        }
    }

    pub fn lease(mut self, namespace: &str, name: &str) -> LeaderElectionConfig {
        self.lease_namespace = Some(namespace.to_owned());
        self.lease_name = Some(name.to_owned());
        self
    }
}

impl MusterConfig {
    /// What the end-to-end tests run with: a short cycle interval, so timers fire promptly.
    pub fn for_tests() -> MusterConfig {
        MusterConfig { cycle_interval: Some("500ms".to_owned()), ..MusterConfig::default() }
    }

    pub fn drain_after(mut self, duration: &str) -> MusterConfig {
        self.drain_after = Some(duration.to_owned());
        self
    }

    pub fn reservation_timeout(mut self, duration: &str) -> MusterConfig {
        self.reservation_timeout = Some(duration.to_owned());
        self
    }

    pub fn claim_ttl(mut self, duration: &str) -> MusterConfig {
        self.claim_ttl = Some(duration.to_owned());
        self
    }

    pub fn min_runtime(mut self, duration: &str) -> MusterConfig {
        self.min_runtime = Some(duration.to_owned());
        self
    }

    pub fn cycle_interval(mut self, duration: &str) -> MusterConfig {
        self.cycle_interval = Some(duration.to_owned());
        self
    }

    pub fn status_interval(mut self, duration: &str) -> MusterConfig {
        self.status_interval = Some(duration.to_owned());
        self
    }

    pub fn eviction_timeout(mut self, duration: &str) -> MusterConfig {
        self.eviction_timeout = Some(duration.to_owned());
        self
    }

    pub fn watch_stale_after(mut self, duration: &str) -> MusterConfig {
        self.watch_stale_after = Some(duration.to_owned());
        self
    }

    /// Sets a field of the `extender:` section (e.g. `maxConcurrentRequests`, `requestTimeout`).
    pub fn extender_field(mut self, key: &str, value: &str) -> MusterConfig {
        self.extender.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn leader_election(mut self, leader_election: LeaderElectionConfig) -> MusterConfig {
        self.leader_election = Some(leader_election);
        self
    }

    /// The YAML file contents, with the extender serving mutual TLS with the certificates in `tls_dir`
    /// ([`TestPki`]), or plain HTTP (on loopback) without.
    pub fn to_yaml(&self, tls_dir: Option<&Path>) -> String {
        let mut yaml = format!("schedulerName: {MUSTER_SCHEDULER}\nurlPrefix: {URL_PREFIX}\nextender:\n");
        if let Some(tls_dir) = tls_dir {
            yaml.push_str(&format!(
                "  tls:\n    certFile: {:?}\n    keyFile: {:?}\n    clientCAFile: {:?}\n",
                tls_dir.join("tls.crt"),
                tls_dir.join("tls.key"),
                tls_dir.join("ca.crt")
            ));
        }
        for (key, value) in &self.extender {
            yaml.push_str(&format!("  {key}: {value}\n"));
        }
        let mut field = |key: &str, value: &Option<String>, indent: &str| {
            if let Some(value) = value {
                yaml.push_str(&format!("{indent}{key}: {value:?}\n"));
            }
        };
        field("defaultQueue", &self.default_queue, "");
        field("cycleInterval", &self.cycle_interval, "");
        field("statusInterval", &self.status_interval, "");
        field("evictionTimeout", &self.eviction_timeout, "");
        field("watchStaleAfter", &self.watch_stale_after, "");
        if let Some(election) = &self.leader_election {
            yaml.push_str(&format!("leaderElection:\n  enabled: {}\n", election.enabled));
            let mut field = |key: &str, value: &Option<String>| {
                if let Some(value) = value {
                    yaml.push_str(&format!("  {key}: {value:?}\n"));
                }
            };
            field("leaseName", &election.lease_name);
            field("leaseNamespace", &election.lease_namespace);
            field("leaseDuration", &election.lease_duration);
            field("renewGrace", &election.renew_grace);
        }
        let policy = [&self.claim_ttl, &self.reservation_timeout, &self.drain_after, &self.min_runtime];
        if policy.iter().any(|v| v.is_some()) {
            yaml.push_str("policy:\n");
            let mut field = |key: &str, value: &Option<String>| {
                if let Some(value) = value {
                    yaml.push_str(&format!("  {key}: {value:?}\n"));
                }
            };
            field("claimTTL", &self.claim_ttl);
            field("reservationTimeout", &self.reservation_timeout);
            field("drainAfter", &self.drain_after);
            field("minRuntime", &self.min_runtime);
        }
        yaml
    }
}

/// How [`MusterServe::start_with`] starts `muster serve`.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// `--identity` for leader election; `None` leaves muster's default. Replicas of one test need distinct
    /// identities. A restarted process keeps its identity, as a container restarted in the same pod keeps its
    /// pod name.
    pub identity: Option<String>,
    /// Listen on these addresses instead of free loopback ports (to stand in for a replica that was there).
    pub addrs: Option<Listeners>,
    /// Serve with these certificates instead of the test binary's shared [`TestPki`] (a rotation test changes
    /// its files).
    pub pki: Option<Arc<TestPki>>,
    /// Serve the extender verbs over plain HTTP on loopback instead of mutual TLS (the sidecar setup; a
    /// benchmark's baseline).
    pub plain_http: bool,
    /// A standby replica, which never reports ready while another holds the Lease: wait only until `/healthz`
    /// answers 200 instead of `/readyz`.
    pub standby: bool,
    /// More arguments of `muster serve` (e.g. `--log-format json`), kept across restarts.
    pub args: Vec<String>,
}

/// A running `muster serve` on a free loopback port, acting as the control plane's admin. Dropping it stops the
/// process (printing its log tail first when the test is failing).
///
/// It can be killed like a crashed pod ([`MusterServe::kill9`]) and started again on the same address with the
/// same configuration ([`MusterServe::restart`]), so a kube-scheduler (or a [`ReadyProxy`]) configured with its
/// address reaches the new process. Start and restart only from the test's own thread (the test body), never
/// from a spawned task: see [`ManagedProcess::spawn`] on PR_SET_PDEATHSIG.
pub struct MusterServe {
    /// One element, to share `stop_all`/`print_log_tails` with the other fixtures.
    process: Vec<ManagedProcess>,
    addrs: Listeners,
    /// The certificates the extender serves and kube-scheduler presents.
    pki: Arc<TestPki>,
    /// Whether the extender serves mutual TLS (else plain HTTP).
    tls: bool,
    /// The admin's bearer token, for `/state`.
    token: String,
    config_path: PathBuf,
    kubeconfig: PathBuf,
    /// `--identity`, the same for every process started by this fixture.
    identity: Option<String>,
    /// [`ServeOptions::args`].
    args: Vec<String>,
    /// Processes started so far (1 + restarts): names each one's log file.
    starts: u32,
    /// Log files of earlier (killed) processes, oldest first.
    earlier_logs: Vec<PathBuf>,
    dir: TempDir,
}

/// What a start waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Ready,
    Healthy,
}

impl Probe {
    fn of(standby: bool) -> Probe {
        if standby { Probe::Healthy } else { Probe::Ready }
    }

    fn path(self) -> &'static str {
        match self {
            Probe::Ready => "/readyz",
            Probe::Healthy => "/healthz",
        }
    }
}

impl MusterServe {
    /// Starts `muster serve` (the binary this package builds) with `config` and waits until `/readyz` answers
    /// 200. The CRDs must be installed first ([`install_crds`]). Panics with muster's log tail if it exits or
    /// does not become ready in time.
    pub async fn start(control_plane: &ControlPlane, config: &MusterConfig) -> MusterServe {
        MusterServe::start_with(control_plane, config, ServeOptions::default()).await
    }

    /// Starts a replica that is not expected to become ready (another holds the Lease): waits only until
    /// `/healthz` answers 200. Use [`MusterServe::wait_ready`] to wait for it to take over.
    pub async fn start_standby(control_plane: &ControlPlane, config: &MusterConfig, identity: &str) -> MusterServe {
        let options = ServeOptions { identity: Some(identity.to_owned()), standby: true, ..ServeOptions::default() };
        MusterServe::start_with(control_plane, config, options).await
    }

    /// Starts `muster serve` as `options` say; waits for `/readyz` (or `/healthz` for a standby) to answer 200.
    pub async fn start_with(control_plane: &ControlPlane, config: &MusterConfig, options: ServeOptions) -> MusterServe {
        let dir = tempfile::Builder::new().prefix("muster-serve-").tempdir().expect("cannot create a temporary dir");
        let config_path = dir.path().join("muster.yaml");
        let pki = options.pki.clone().unwrap_or_else(TestPki::shared);
        let tls_dir = (!options.plain_http).then(|| pki.dir());
        std::fs::write(&config_path, config.to_yaml(tls_dir)).expect("cannot write muster's configuration");
        let probe = Probe::of(options.standby);
        for attempt in 1..=START_ATTEMPTS {
            let addrs = options.addrs.unwrap_or_else(Listeners::free);
            let command = serve_command(
                &config_path,
                addrs,
                control_plane.kubeconfig(),
                options.identity.as_deref(),
                &options.args,
            );
            let mut process = vec![ManagedProcess::spawn("muster-serve", command, dir.path())];
            match wait_until_answers_ok(addrs.health, &mut process[0], probe, READY_TIMEOUT).await {
                Ok(()) => {
                    return MusterServe {
                        process,
                        addrs,
                        pki,
                        tls: !options.plain_http,
                        token: control_plane.admin_token().to_owned(),
                        config_path,
                        kubeconfig: control_plane.kubeconfig().to_owned(),
                        identity: options.identity.clone(),
                        args: options.args.clone(),
                        starts: 1,
                        earlier_logs: Vec::new(),
                        dir,
                    };
                }
                Err(failure) => {
                    let port_taken = process[0].log().contains("in use");
                    if !port_taken || attempt == START_ATTEMPTS {
                        print_log_tails(&process, 60);
                        stop_all(&mut process, Duration::ZERO);
                        panic!("muster serve did not answer 200 on {}: {failure} (log tail above)", probe.path());
                    }
                    stop_all(&mut process, Duration::ZERO);
                    if options.addrs.is_some() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// SIGKILL to the process (and its group), no grace: what a crash, an OOM kill or a lost node does. Returns
    /// once it is reaped, so its port is closed. Returns its exit status.
    pub fn kill9(&mut self) -> std::process::ExitStatus {
        self.process[0].kill()
    }

    /// Starts muster again after [`MusterServe::kill9`] (or a crash): same address, same configuration file, same
    /// kubeconfig, same identity; waits until `/readyz` answers 200. Panics if the old process still runs.
    pub async fn restart(&mut self) {
        self.respawn(Probe::Ready).await;
    }

    /// [`MusterServe::restart`] as a standby: waits only for `/healthz`.
    pub async fn restart_standby(&mut self) {
        self.respawn(Probe::Healthy).await;
    }

    async fn respawn(&mut self, probe: Probe) {
        if let Some(pid) = self.process[0].exit_status().is_none().then(|| self.process[0].pid()) {
            panic!("muster serve (pid {pid}) is still running: kill9() it before restart");
        }
        for attempt in 1..=START_ATTEMPTS {
            self.starts += 1;
            let command =
                serve_command(&self.config_path, self.addrs, &self.kubeconfig, self.identity.as_deref(), &self.args);
            let name = format!("muster-serve-{}", self.starts);
            let process = ManagedProcess::spawn(&name, command, self.dir.path());
            let old = std::mem::replace(&mut self.process[0], process);
            self.earlier_logs.push(old.log_path().to_owned());
            match wait_until_answers_ok(self.addrs.health, &mut self.process[0], probe, READY_TIMEOUT).await {
                Ok(()) => return,
                Err(failure) => {
                    // The port is fixed: a socket of the killed process may linger a moment; try again shortly.
                    let port_taken = self.process[0].log().contains("in use");
                    if !port_taken || attempt == START_ATTEMPTS {
                        print_log_tails(&self.process, 60);
                        self.process[0].kill();
                        panic!(
                            "restarted muster serve did not answer 200 on {} at {}: {failure} (log tail above)",
                            probe.path(),
                            self.addrs.health
                        );
                    }
                    self.process[0].kill();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Waits until `/readyz` answers 200 (a standby that took over, a restarted process). Panics with the log
    /// tail if the process exits or it does not happen within the start timeout.
    pub async fn wait_ready(&mut self) {
        if let Err(failure) =
            wait_until_answers_ok(self.addrs.health, &mut self.process[0], Probe::Ready, READY_TIMEOUT).await
        {
            panic!(
                "muster serve at {} did not become ready: {failure}\nlog tail:\n{}",
                self.addrs.health,
                self.log_tail(60)
            );
        }
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process[0].exit_status().is_none()
    }

    /// The `--identity` given at start (`None`: muster's default).
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The current process's id.
    pub fn pid(&self) -> u32 {
        self.process[0].pid()
    }

    /// The three listeners' addresses.
    pub fn listeners(&self) -> Listeners {
        self.addrs
    }

    /// The extender verbs (mutual TLS): `127.0.0.1:<port>`.
    pub fn extender_addr(&self) -> SocketAddr {
        self.addrs.extender
    }

    /// `/healthz` and `/readyz`.
    pub fn health_addr(&self) -> SocketAddr {
        self.addrs.health
    }

    /// `/metrics` and `/state`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.addrs.metrics
    }

    /// The certificates this process serves with (and kube-scheduler and the tests present to it).
    pub fn pki(&self) -> &Arc<TestPki> {
        &self.pki
    }

    /// The admin's bearer token, which `/state` accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// What kube-scheduler's extender `urlPrefix` must be: `https://127.0.0.1:<port>/muster` (`http://` with
    /// [`ServeOptions::plain_http`]).
    pub fn extender_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{URL_PREFIX}", self.addrs.extender)
    }

    /// How to open connections to the extender listener (owned: for tasks).
    pub fn extender_connector(&self) -> ExtenderConnector {
        ExtenderConnector { addr: self.addrs.extender, tls: self.tls.then(|| self.pki.client_config()) }
    }

    /// A piece of this process's command line, for [`process_cpu_seconds`].
    pub fn command_line_pattern(&self) -> String {
        format!("--listen {}", self.addrs.extender)
    }

    /// The whole log so far (of the current process).
    pub fn log(&self) -> String {
        self.process[0].log()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process[0].log_tail(lines)
    }

    /// The tail of the log of the process before the current one (the one [`MusterServe::kill9`] ended), if any.
    pub fn previous_log_tail(&self, lines: usize) -> Option<String> {
        self.earlier_logs.last().map(|path| log_file_tail(path, lines))
    }

    /// Panics (with the log tail) if the process has exited: a crashed muster must fail the test loudly.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.process[0].exit_status() {
            panic!("muster serve exited ({status}); log tail:\n{}", self.log_tail(60));
        }
    }

    /// `GET path` from the listener that serves it (`/healthz`, `/readyz`: health; `/metrics`, `/state`:
    /// metrics, with the admin's token): (status, body). Panics if muster does not answer within 10 s.
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .await
            .unwrap_or_else(|e| panic!("GET {path} from muster failed: {e}\nmuster log tail:\n{}", self.log_tail(30)))
    }

    /// `GET path` for a muster that may be down or slow: (status, body), or what went wrong (10 s bound).
    pub async fn try_get(&self, path: &str) -> Result<(u16, String), String> {
        let (addr, token) = if path.starts_with("/healthz") || path.starts_with("/readyz") {
            (self.addrs.health, None)
        } else {
            (self.addrs.metrics, Some(self.token.as_str()))
        };
        let (status, body) = one_request_with(addr, None, token, hyper::Method::GET, path, Bytes::new()).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A keep-alive connection to the extender listener, over mutual TLS with the client certificate.
    pub async fn connect_extender(&self) -> Result<HttpConnection, String> {
        self.extender_connector().connect().await
    }

    /// `POST path` to the extender listener with only a head announcing a `length`-byte body, none of which is
    /// sent: muster must answer from the head (a body over its limit). Status and body of the answer.
    pub async fn announce_body(&self, path: &str, length: u64) -> (u16, String) {
        use tokio::io::AsyncWriteExt;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
            self.addrs.extender
        );
        let answer = if self.tls {
            let mut stream = tls_stream(self.addrs.extender, self.pki.client_config()).await.expect("TLS connection");
            stream.write_all(head.as_bytes()).await.expect("send the head");
            read_until_closed(&mut stream, Duration::from_secs(10)).await.0
        } else {
            let mut stream = tokio::net::TcpStream::connect(self.addrs.extender).await.expect("connection");
            stream.write_all(head.as_bytes()).await.expect("send the head");
            read_until_closed(&mut stream, Duration::from_secs(10)).await.0
        };
        let text = String::from_utf8_lossy(&answer);
        let status = http_status(&answer).unwrap_or_else(|| panic!("no HTTP answer to a head alone: {text:?}"));
        (status, text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
    }

    /// `POST path` with `body` as is to the extender listener, over mutual TLS: (status, body).
    pub async fn post_bytes(&self, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
        let pki = self.tls.then_some(&*self.pki);
        one_request_with(self.addrs.extender, pki, None, hyper::Method::POST, path, body).await
    }

    /// `POST path` with a JSON body: (status, body).
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        self.try_post_json(path, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path} to muster failed: {e}\nmuster log tail:\n{}", self.log_tail(30)))
    }

    /// `POST path` with a JSON body, for a muster that may be down or slow: (status, body), or what went wrong
    /// (10 s bound).
    pub async fn try_post_json(&self, path: &str, body: &serde_json::Value) -> Result<(u16, String), String> {
        let body = Bytes::from(serde_json::to_vec(body).expect("JSON serialises"));
        let (status, body) = self.post_bytes(path, body).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// `GET /readyz`: (status, body: "ok" or the reason it is not ready), or what went wrong.
    pub async fn readyz(&self) -> Result<(u16, String), String> {
        self.try_get("/readyz").await
    }

    /// The `/state` document. Panics if it is not 200 or does not decode.
    pub async fn state(&self) -> MusterState {
        let (status, body) = self.get("/state").await;
        assert_eq!(status, 200, "GET /state answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /state is not the documented JSON ({e}): {body}"))
    }

    /// The `/state` document, or why it could not be had.
    pub async fn try_state(&self) -> Result<MusterState, String> {
        fetch_state(self.addrs.metrics, &self.token).await
    }

    /// Whether this replica says it holds the Lease (`/state` `leader`); an error if `/state` does not answer or
    /// has no `leader` field.
    pub async fn is_leader(&self) -> Result<bool, String> {
        let state = self.try_state().await?;
        state.leader.ok_or_else(|| "GET /state has no `leader` field".to_owned())
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
        body
    }
}

impl Drop for MusterServe {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(path) = self.earlier_logs.last() {
                eprintln!(
                    "\n----- last 40 lines of the previous muster serve ({}) -----\n{}\n----- end -----",
                    path.display(),
                    log_file_tail(path, 40)
                );
            }
            print_log_tails(&self.process, 60);
        }
        // A killed process was reaped already; signalling its group again could reach a reused pid.
        if self.process[0].exit_status().is_none() {
            stop_all(&mut self.process, Duration::from_secs(2));
        }
    }
}

fn serve_command(
    config: &Path,
    addrs: Listeners,
    kubeconfig: &Path,
    identity: Option<&str>,
    args: &[String],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(addrs.extender.to_string())
        .arg("--health-listen")
        .arg(addrs.health.to_string())
        .arg("--metrics-listen")
        .arg(addrs.metrics.to_string())
        .arg("--url-prefix")
        .arg(URL_PREFIX)
        .arg("--scheduler-name")
        .arg(MUSTER_SCHEDULER)
        .args(args)
        .env("KUBECONFIG", kubeconfig);
    match identity {
        Some(identity) => {
            command.arg("--identity").arg(identity);
        }
        // muster falls back to POD_NAME: a test run inside a pod would give every replica the same identity.
        None => {
            command.env_remove("POD_NAME");
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    command
}

/// Polls `probe`'s path until it answers 200, failing early if the process exits.
async fn wait_until_answers_ok(
    addr: SocketAddr,
    process: &mut ManagedProcess,
    probe: Probe,
    timeout: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    let path = probe.path();
    let mut last = String::from("no answer yet");
    loop {
        if let Some(status) = process.exit_status() {
            return Err(format!("muster serve exited ({status}); last {path}: {last}"));
        }
        match one_request(addr, hyper::Method::GET, path, Bytes::new()).await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => last = format!("{status} {}", String::from_utf8_lossy(&body)),
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            return Err(format!("no 200 after {timeout:?}; last {path}: {last}"));
        }
        // Short: a test that looks at muster the moment it becomes ready (a restore) should find it just so.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A loopback address whose port was free a moment ago (another process may take it first; callers retry).
fn free_loopback_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("cannot bind a loopback port")
}

/// The extender listener of a [`MusterServe`] and the client certificate it requires (none for plain HTTP).
#[derive(Clone)]
pub struct ExtenderConnector {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ExtenderConnector {
    pub async fn connect(&self) -> Result<HttpConnection, String> {
        match &self.tls {
            Some(tls) => HttpConnection::connect_tls(self.addr, tls.clone()).await,
            None => HttpConnection::connect(self.addr).await,
        }
    }
}

/// Where one `muster serve` listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// The extender verbs, mutual TLS.
    pub extender: SocketAddr,
    /// `/healthz`, `/readyz`.
    pub health: SocketAddr,
    /// `/metrics`, `/state`.
    pub metrics: SocketAddr,
}

impl Listeners {
    /// Three loopback ports that were free a moment ago.
    pub fn free() -> Listeners {
        Listeners { extender: free_loopback_addr(), health: free_loopback_addr(), metrics: free_loopback_addr() }
    }
}

/// Certificates for mutual TLS between the tests (and kube-scheduler) and muster's extender listener: a CA, a
/// server certificate for 127.0.0.1 and a client certificate, as `muster certs` writes them (ca.crt, tls.crt,
/// tls.key, client.crt, client.key) in a directory of their own.
pub struct TestPki {
    dir: TempDir,
    /// The CA that signed them, to issue more (a rotation, an expired client).
    pub pki: ::muster::extender::tls::Pki,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").field("dir", &self.dir.path()).finish()
    }
}

impl TestPki {
    /// A new CA and certificates, valid from an hour ago for a day.
    pub fn generate() -> TestPki {
        use ::muster::extender::tls::{Pki, Validity};
        let pki = Pki::generate(
            &["127.0.0.1".to_owned(), "localhost".to_owned()],
            "kube-scheduler",
            Validity::from_now(Duration::from_secs(24 * 3600)),
        )
        .expect("cannot generate test certificates");
        let dir = tempfile::Builder::new().prefix("muster-pki-").tempdir().expect("cannot create a temporary dir");
        pki.write_to(dir.path()).expect("cannot write test certificates");
        TestPki { dir, pki }
    }

    /// One PKI for the whole test binary: replicas of a test behind one proxy, and the kube-scheduler calling
    /// them, must trust the same CA.
    pub fn shared() -> Arc<TestPki> {
        static SHARED: std::sync::OnceLock<Arc<TestPki>> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Arc::new(TestPki::generate())).clone()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A TLS client configuration trusting the files' current `ca.crt` and presenting `client.crt`.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let read = |name: &str| std::fs::read(self.dir().join(name)).expect("cannot read a test certificate");
        client_config(&read("ca.crt"), &read("client.crt"), &read("client.key"))
    }
}

/// A TLS client configuration (ring, TLS 1.2/1.3) trusting the PEM CAs `ca` and presenting `cert`/`key` (PEM).
pub fn client_config(ca: &[u8], cert: &[u8], key: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca) {
        roots.add(ca.expect("a PEM CA")).expect("a usable CA");
    }
    let chain = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>().expect("a PEM certificate");
    let key = PrivateKeyDer::from_pem_slice(key).expect("a PEM key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("a usable client certificate");
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------------------------

/// One keep-alive HTTP/1.1 connection (hyper's client connection over a TCP stream with Nagle off), for tests
/// and the load generator: requests go one after another on it, as kube-scheduler's extender client does.
pub struct HttpConnection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    token: Option<String>,
}

impl HttpConnection {
    /// Plain HTTP (the health and metrics listeners).
    pub async fn connect(addr: SocketAddr) -> Result<HttpConnection, String> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        HttpConnection::over(stream, addr).await
    }

    /// HTTPS with a client certificate (the extender listener), as kube-scheduler's extender client connects.
    pub async fn connect_tls(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Result<HttpConnection, String> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        HttpConnection::over(stream, addr).await
    }

    async fn over<IO>(stream: IO, addr: SocketAddr) -> Result<HttpConnection, String>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors then are of no interest.
            let _ = connection.await;
        });
        Ok(HttpConnection { sender, host: addr.to_string(), token: None })
    }

    /// Sends `Authorization: Bearer <token>` with every request from now on.
    pub fn with_token(mut self, token: &str) -> HttpConnection {
        self.token = Some(token.to_owned());
        self
    }

    /// Sends one request and reads the whole answer: (status, body).
    pub async fn request(&mut self, method: hyper::Method, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
        self.sender.ready().await.map_err(|e| format!("connection not ready: {e}"))?;
        let mut request = hyper::Request::builder().method(method).uri(path).header(hyper::header::HOST, &self.host);
        if !body.is_empty() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body)).map_err(|e| format!("bad request: {e}"))?;
        let response = self.sender.send_request(request).await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| format!("{path}: reading the body: {e}"))?;
        Ok((status, body.to_bytes()))
    }

    /// `POST path` with a JSON body.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
        self.request(hyper::Method::POST, path, body).await
    }
}

/// A raw TLS stream to `addr` (a loopback listener whose certificate is for its IP) with `tls`'s client
/// certificate, for tests that write requests byte by byte.
pub async fn tls_stream(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(tls).connect(name, stream).await.map_err(|e| format!("TLS handshake: {e}"))
}

/// Reads what the server sends until it closes the connection (or breaks it) or `timeout` passes: the bytes,
/// and whether it was closed.
pub async fn read_until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin), timeout: Duration) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (answer, true),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => return (answer, false),
        }
    }
}

/// The status code of a raw HTTP/1.1 answer.
pub fn http_status(answer: &[u8]) -> Option<u16> {
    String::from_utf8_lossy(answer).strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// One request on a fresh connection, bounded by 10 s.
pub async fn one_request(
    addr: SocketAddr,
    method: hyper::Method,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    one_request_with(addr, None, None, method, path, body).await
}

/// One request on a fresh connection, over mutual TLS with `pki`'s client certificate when given, with a bearer
/// `token` when given; bounded by 10 s.
pub async fn one_request_with(
    addr: SocketAddr,
    pki: Option<&TestPki>,
    token: Option<&str>,
    method: hyper::Method,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let attempt = async {
        let mut connection = match pki {
            Some(pki) => HttpConnection::connect_tls(addr, pki.client_config()).await?,
            None => HttpConnection::connect(addr).await?,
        };
        if let Some(token) = token {
            connection = connection.with_token(token);
        }
        connection.request(method, path, body).await
    };
    tokio::time::timeout(Duration::from_secs(10), attempt).await.map_err(|_| "no answer within 10 s".to_owned())?
}

// ---------------------------------------------------------------------------------------------------------------
// /state
// ---------------------------------------------------------------------------------------------------------------

/// muster's `/state` document: `{"ready": bool, "leader": bool, "queues": [...], "gangs": [...]}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct MusterState {
    /// Initial sync (and restore) done; absent from older muster versions.
    pub ready: Option<bool>,
    /// Whether this replica holds the leader-election Lease (always true with leader election off); absent from
    /// older muster versions.
    pub leader: Option<bool>,
    pub queues: Vec<QueueState>,
    pub gangs: Vec<GangState>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct QueueState {
    pub name: String,
    pub weight: serde_json::Value,
    /// Resource name -> quantity (a Kubernetes quantity string, or a number).
    pub deserved: BTreeMap<String, serde_json::Value>,
    pub allocated: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GangState {
    pub namespace: String,
    pub name: String,
    pub queue: String,
    pub phase: String,
    pub reason: Option<String>,
    pub reservations: Vec<ReservationState>,
    pub bound: u32,
    #[serde(alias = "min_member")]
    pub min_member: u32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReservationState {
    pub template: String,
    pub node: String,
    pub count: u32,
}

impl MusterState {
    pub fn gang(&self, namespace: &str, name: &str) -> Option<&GangState> {
        self.gangs.iter().find(|g| g.namespace == namespace && g.name == name)
    }

    pub fn queue(&self, name: &str) -> Option<&QueueState> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// One line per gang, for failure messages.
    pub fn describe(&self) -> String {
        self.gangs.iter().map(GangState::describe).collect::<Vec<_>>().join("; ")
    }
}

impl GangState {
    /// Admitted: capacity reserved (Inqueue, or Admitted in the core's words) or its minimum running.
    pub fn is_admitted(&self) -> bool {
        ["inqueue", "admitted", "running"].contains(&self.phase.to_ascii_lowercase().as_str())
    }

    /// Waiting for admission (Pending, or Expired and waiting again).
    pub fn is_pending(&self) -> bool {
        ["pending", "expired"].contains(&self.phase.to_ascii_lowercase().as_str())
    }

    /// Members' worth of capacity reserved for `template` over all nodes.
    pub fn reserved(&self, template: &str) -> u32 {
        self.reservations.iter().filter(|r| r.template == template).map(|r| r.count).sum()
    }

    pub fn describe(&self) -> String {
        let reservations: Vec<String> =
            self.reservations.iter().map(|r| format!("{}x{}@{}", r.count, r.template, r.node)).collect();
        format!(
            "{}/{} queue={} phase={} bound={}/{} reservations=[{}] reason={:?}",
            self.namespace,
            self.name,
            self.queue,
            self.phase,
            self.bound,
            self.min_member,
            reservations.join(","),
            self.reason
        )
    }
}

/// Fetches and decodes `/state` from the metrics listener at `addr` with a bearer `token` (for tasks that
/// cannot borrow the [`MusterServe`]).
pub async fn fetch_state(addr: SocketAddr, token: &str) -> Result<MusterState, String> {
    let (status, body) = one_request_with(addr, None, Some(token), hyper::Method::GET, "/state", Bytes::new()).await?;
    if status != 200 {
        return Err(format!("GET /state answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET /state is not the documented JSON: {e}"))
}

/// Reads a `/state` quantity (a Kubernetes quantity string or a plain number) in milli-units for cpu and base
/// units (bytes, counts) otherwise.
pub fn state_quantity(resource: &str, value: &serde_json::Value) -> i64 {
    match value {
        serde_json::Value::Number(n) => {
            let n = n.as_f64().unwrap_or_else(|| panic!("{resource}: {n} is not a number"));
            // A bare number is the resource's base unit (cores for cpu), as a Kubernetes quantity would be.
            if resource == "cpu" { (n * 1000.0).round() as i64 } else { n.round() as i64 }
        }
        serde_json::Value::String(s) => quantity(resource, s),
        other => panic!("{resource}: {other} is not a quantity"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// CRDs and kube-scheduler
// ---------------------------------------------------------------------------------------------------------------

/// Creates every CustomResourceDefinition in deploy/crds/muster.yaml and waits until the API server reports each
/// Established.
pub async fn install_crds(client: &Client) {
    install_crds_from(client, "deploy/crds/muster.yaml").await;
}

/// Creates every CRD in the YAML file at `relative_path` (from the repository root) and waits until each is
/// Established.
pub async fn install_crds_from(client: &Client, relative_path: &str) {
    install_crd_files(client, &[Path::new(env!("CARGO_MANIFEST_DIR")).join(relative_path)]).await;
}

/// Creates every CRD in the YAML `files` (empty documents skipped) and waits until each is Established.
pub async fn install_crd_files(client: &Client, files: &[std::path::PathBuf]) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let mut names = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition = serde_json::from_value(value)
                .unwrap_or_else(|e| panic!("{} holds a document that is not a CRD: {e}", path.display()));
            let name = crd.name_any();
            api.create(&PostParams::default(), &crd).await.unwrap_or_else(|e| panic!("cannot create CRD {name}: {e}"));
            names.push(name);
        }
    }
    assert!(!names.is_empty(), "{files:?} hold no CRD");
    for name in &names {
        wait_until(&format!("CRD {name} is Established"), CRD_TIMEOUT, || {
            let api = api.clone();
            async move {
                let crd = api.get(name).await.map_err(|e| e.to_string())?;
                let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                    Ok(())
                } else {
                    Err(format!("conditions {conditions:?}"))
                }
            }
        })
        .await;
    }
}

/// How kube-scheduler hands nodes to the extender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtenderMode {
    /// `nodeCacheCapable: true`: node names only (muster reads nodes from its own cache).
    NodeNames,
    /// `nodeCacheCapable: false`: whole Node objects in every filter call.
    FullNodes,
}

/// A KubeSchedulerConfiguration like config/kube-scheduler.yaml: profile `muster` (percentageOfNodesToScore 100)
/// and the extender with filter/prioritize/bind/preempt pointing at `muster`, not ignorable. `client_qps` sets
/// `clientConnection.qps` (and burst = 2 x qps) when given; kube-scheduler's default is 50.
pub fn muster_scheduler_config(muster: &MusterServe, mode: ExtenderMode, client_qps: Option<u32>) -> String {
    muster_scheduler_config_for_url(&muster.extender_url(), mode, client_qps)
}

/// The extender's `tlsConfig` for an `https://` URL: the shared [`TestPki`]'s CA and client certificate.
fn extender_tls_fields(extender_url: &str) -> String {
    if !extender_url.starts_with("https://") {
        return String::new();
    }
    let dir = TestPki::shared().dir().to_owned();
    format!(
        "  enableHTTPS: true\n  tlsConfig:\n    caFile: {:?}\n    certFile: {:?}\n    keyFile: {:?}\n",
        dir.join("ca.crt"),
        dir.join("client.crt"),
        dir.join("client.key")
    )
}

/// [`muster_scheduler_config`] with the extender at `extender_url` (its `urlPrefix`, e.g.
/// [`ReadyProxy::extender_url`] for replicas behind a Service).
pub fn muster_scheduler_config_for_url(extender_url: &str, mode: ExtenderMode, client_qps: Option<u32>) -> String {
    let client_connection = match client_qps {
        Some(qps) => format!("clientConnection:\n  qps: {qps}\n  burst: {}\n", 2 * qps),
        None => String::new(),
    };
    format!(
        "\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
{client_connection}profiles:
- schedulerName: {MUSTER_SCHEDULER}
  percentageOfNodesToScore: 100
extenders:
- urlPrefix: {url:?}
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: 5
  bindVerb: bind
  preemptVerb: preempt
  nodeCacheCapable: {node_cache}
  httpTimeout: 10s
  ignorable: false
{tls}",
        url = extender_url,
        tls = extender_tls_fields(extender_url),
        node_cache = mode == ExtenderMode::NodeNames,
    )
}

/// Starts a kube-scheduler whose only profile is `muster`, calling `muster` as its extender.
pub async fn start_muster_scheduler(control_plane: &mut ControlPlane, muster: &MusterServe, mode: ExtenderMode) {
    control_plane.start_scheduler(&muster_scheduler_config(muster, mode, None)).await;
}

/// Starts a kube-scheduler whose only profile is `muster`, calling the extender at `extender_url` (a
/// [`ReadyProxy`] in front of several replicas).
pub async fn start_muster_scheduler_at(control_plane: &mut ControlPlane, extender_url: &str, mode: ExtenderMode) {
    control_plane.start_scheduler(&muster_scheduler_config_for_url(extender_url, mode, None)).await;
}

/// A control plane with muster's CRDs, `muster serve`, a kube-scheduler calling it, and a namespace for the test.
/// Fields drop in order: muster stops before the control plane.
pub struct MusterEnv {
    pub muster: MusterServe,
    pub control_plane: ControlPlane,
    pub namespace: String,
}

impl MusterEnv {
    pub async fn start(namespace: &str, config: &MusterConfig, mode: ExtenderMode) -> MusterEnv {
        MusterEnv::start_with(namespace, config, mode, ServeOptions::default()).await
    }

    /// As [`MusterEnv::start`], muster started as `options` say.
    pub async fn start_with(
        namespace: &str,
        config: &MusterConfig,
        mode: ExtenderMode,
        options: ServeOptions,
    ) -> MusterEnv {
        let mut control_plane = ControlPlane::start().await;
        install_crds(&control_plane.client()).await;
        let muster = MusterServe::start_with(&control_plane, config, options).await;
        start_muster_scheduler(&mut control_plane, &muster, mode).await;
        control_plane.create_namespace(namespace).await;
        MusterEnv { muster, control_plane, namespace: namespace.to_owned() }
    }

    pub fn client(&self) -> Client {
        self.control_plane.client()
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client(), &self.namespace)
    }

    pub fn pod_groups(&self) -> Api<PodGroup> {
        Api::namespaced(self.client(), &self.namespace)
    }

    pub async fn create_pod(&self, pod: &Pod) -> Pod {
        create_pod(&self.client(), &self.namespace, pod).await
    }

    pub async fn create_pod_group(&self, pod_group: &PodGroup) -> PodGroup {
        let name = pod_group.name_any();
        self.pod_groups()
            .create(&PostParams::default(), pod_group)
            .await
            .unwrap_or_else(|e| panic!("cannot create PodGroup {}/{name}: {e}", self.namespace))
    }

    pub async fn create_queue(&self, queue: &Queue) -> Queue {
        let name = queue.name_any();
        Api::<Queue>::all(self.client())
            .create(&PostParams::default(), queue)
            .await
            .unwrap_or_else(|e| panic!("cannot create Queue {name}: {e}"))
    }

    /// Creates a PodGroup of one template (`size` members of `cpu`/`memory`) and its `size` member pods
    /// `<name>-0..`; returns the pod names.
    pub async fn create_simple_gang(&self, name: &str, queue: &str, size: i32, cpu: &str, memory: &str) -> Vec<String> {
        self.create_pod_group(&pod_group(name, queue, vec![member_template("worker", size, cpu, memory)])).await;
        let mut pods = Vec::new();
        for i in 0..size {
            let pod_name = format!("{name}-{i}");
            self.create_pod(&gang_pod(&pod_name, name, None, cpu, memory)).await;
            pods.push(pod_name);
        }
        pods
    }

    /// Deletes a pod at once (grace period 0: no kubelet would ever confirm a graceful deletion).
    pub async fn delete_pod_now(&self, name: &str) {
        delete_pod_now(&self.client(), &self.namespace, name).await;
    }

    /// Waits until `probe` on muster's `/state` returns `Ok`.
    pub async fn wait_for_state<T>(&self, what: &str, probe: impl Fn(&MusterState) -> Result<T, String>) -> T {
        let probe = &probe;
        wait_until(what, E2E_TIMEOUT, || async move {
            let state = self.muster.state().await;
            probe(&state).map_err(|e| format!("{e}; /state: {}", state.describe()))
        })
        .await
    }

    /// Waits until `names` are all bound; returns name -> node.
    pub async fn wait_all_bound(&self, names: &[String]) -> BTreeMap<String, String> {
        wait_all_bound_within(&self.client(), &self.namespace, names, E2E_TIMEOUT).await
    }

    /// Waits until muster reports `gang` pending with a reason and kube-scheduler has tried (and failed) every one
    /// of `members`, holds for [`HOLD`], then checks that no member was ever bound (over `history`, from its start)
    /// and that the gang holds no reservation. Returns muster's reason.
    pub async fn assert_gang_waits(&self, history: &PodHistory, gang: &str, members: &[String]) -> String {
        let namespace = self.namespace.clone();
        let reason = self
            .wait_for_state(&format!("gang {gang} is pending with a reason"), |state| {
                let g = state.gang(&namespace, gang).ok_or_else(|| format!("gang {gang} not in /state"))?;
                match &g.reason {
                    Some(reason) if g.is_pending() && !reason.trim().is_empty() => Ok(reason.clone()),
                    _ => Err(g.describe()),
                }
            })
            .await;
        let tried = self.wait_all_unschedulable(members).await;
        for pod in &tried {
            let condition = super::objects::pod_condition(pod, "PodScheduled").expect("waited for it");
            assert_eq!(condition.reason.as_deref(), Some("Unschedulable"), "{}: {condition:?}", pod.name_any());
            assert!(
                !condition.message.as_deref().unwrap_or_default().is_empty(),
                "{}: kube-scheduler recorded no message: {condition:?}",
                pod.name_any()
            );
        }
        tokio::time::sleep(HOLD).await;
        assert_never_bound(history, members, &format!("gang {gang} must wait"));
        let state = self.muster.state().await;
        let g = state.gang(&self.namespace, gang).expect("the gang was in /state");
        assert!(g.is_pending() && g.bound == 0, "gang {gang} must still wait: {}", g.describe());
        assert!(g.reservations.is_empty(), "a waiting gang holds no capacity: {}", g.describe());
        reason
    }

    /// Waits until kube-scheduler has tried each of `names` and recorded it unschedulable (PodScheduled=False);
    /// returns the pods.
    pub async fn wait_all_unschedulable(&self, names: &[String]) -> Vec<Pod> {
        let pods = self.pods();
        wait_until(&format!("pods {names:?} are all marked unschedulable by kube-scheduler"), E2E_TIMEOUT, || {
            let pods = pods.clone();
            async move {
                let mut all = Vec::new();
                let mut waiting = false;
                let mut seen = Vec::new();
                for name in names {
                    let pod = pods.get(name).await.map_err(|e| format!("{name}: {e}"))?;
                    let scheduled = super::objects::pod_condition(&pod, "PodScheduled").map(|c| c.status.clone());
                    waiting |= scheduled.as_deref() != Some("False");
                    seen.push(describe_pod(&pod));
                    all.push(pod);
                }
                if waiting { Err(seen.join("; ")) } else { Ok(all) }
            }
        })
        .await
    }
}

/// How long a test keeps watching a gang that must stay unbound, after kube-scheduler has already tried it and
/// muster has said why it waits: several of kube-scheduler's retries (its backoff starts at 1 s) and several of
/// muster's admission cycles (500 ms in these tests).
pub const HOLD: Duration = Duration::from_secs(5);

/// Asserts that none of `pods` was ever bound during the recorded history.
pub fn assert_never_bound(history: &PodHistory, pods: &[String], context: &str) {
    let bindings: Vec<Transition> = history.of(|t| pods.contains(&t.pod) && t.node.is_some());
    assert!(bindings.is_empty(), "{context}: members were bound: {bindings:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------------------------

/// Sets a pod's node selector to `key=value`.
pub fn with_node_selector(pod: &mut Pod, key: &str, value: &str) {
    let spec = pod.spec.as_mut().expect("pods have a spec");
    spec.node_selector = Some(BTreeMap::from([(key.to_owned(), value.to_owned())]));
}

/// A member template of `min` members of `cpu`/`memory` each.
pub fn member_template(name: &str, min: i32, cpu: &str, memory: &str) -> MemberTemplate {
    MemberTemplate {
        name: name.to_owned(),
        min_member: min,
        resources: BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ]),
        ..MemberTemplate::default()
    }
}

/// A PodGroup in `queue` with `templates` (minMember left to default: the templates' sum).
pub fn pod_group(name: &str, queue: &str, templates: Vec<MemberTemplate>) -> PodGroup {
    PodGroup::new(
        name,
        PodGroupSpec {
            min_member: Some(templates.iter().map(|t| t.min_member).sum()),
            min_resources: BTreeMap::new(),
            queue: queue.to_owned(),
            priority_class_name: None,
            min_task_member: BTreeMap::new(),
            member_templates: templates,
        },
    )
}

/// A Queue of `weight`, reclaimable, no capability or guarantee.
pub fn queue(name: &str, weight: i32) -> Queue {
    Queue::new(
        name,
        QueueSpec {
            weight,
            capability: BTreeMap::new(),
            guarantee: None,
            reclaimable: true,
            parent: None,
            state: Default::default(),
        },
    )
}

/// A pod for muster (`schedulerName: muster`) joining PodGroup `group` (label `muster.dev/pod-group`), naming
/// `template` with the `muster.dev/member-template` annotation when given.
pub fn gang_pod(name: &str, group: &str, template: Option<&str>, cpu: &str, memory: &str) -> Pod {
    let mut pod = muster_pod(name, cpu, memory);
    pod.metadata.labels = Some(BTreeMap::from([(names::POD_GROUP_LABEL.to_owned(), group.to_owned())]));
    if let Some(template) = template {
        pod.metadata.annotations = Some(BTreeMap::from([(names::MEMBER_TEMPLATE_KEY.to_owned(), template.to_owned())]));
    }
    pod
}

/// A pod for muster with no gang: a gang of one.
pub fn muster_pod(name: &str, cpu: &str, memory: &str) -> Pod {
    let mut pod = test_pod(name, cpu, memory);
    pod.spec.as_mut().expect("test_pod has a spec").scheduler_name = Some(MUSTER_SCHEDULER.to_owned());
    pod
}

/// A pod already bound to `node` (spec.nodeName set at creation, as a DaemonSet controller or another scheduler
/// would leave it): usage muster did not place, which it must count.
pub fn prebound_pod(name: &str, node: &str, cpu: &str, memory: &str) -> Pod {
    let mut pod = test_pod(name, cpu, memory);
    pod.spec.as_mut().expect("test_pod has a spec").node_name = Some(node.to_owned());
    pod
}

/// A toleration of `key=value:NoSchedule`.
pub fn toleration(key: &str, value: &str) -> Toleration {
    Toleration {
        key: Some(key.to_owned()),
        operator: Some("Equal".to_owned()),
        value: Some(value.to_owned()),
        effect: Some("NoSchedule".to_owned()),
        toleration_seconds: None,
    }
}

pub async fn create_pod(client: &Client, namespace: &str, pod: &Pod) -> Pod {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), pod)
        .await
        .unwrap_or_else(|e| panic!("cannot create pod {namespace}/{}: {e}", pod.name_any()))
}

/// Creates `nodes` through the API, `concurrency` requests in flight; returns how long it took.
pub async fn create_nodes_concurrently(
    client: &Client,
    nodes: &[super::objects::TestNode],
    concurrency: usize,
) -> Duration {
    let start = Instant::now();
    let api = Api::<Node>::all(client.clone());
    futures::stream::iter(nodes.iter().map(|node| {
        let api = api.clone();
        async move {
            let node = node.to_node();
            api.create(&PostParams::default(), &node)
                .await
                .unwrap_or_else(|e| panic!("cannot create node {}: {e}", node.name_any()));
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<()>>()
    .await;
    start.elapsed()
}

/// Deletes a pod at once (grace period 0); a pod already gone is fine.
pub async fn delete_pod_now(client: &Client, namespace: &str, name: &str) {
    let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    match Api::<Pod>::namespaced(client.clone(), namespace).delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("cannot delete pod {namespace}/{name}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Quantities and capacity
// ---------------------------------------------------------------------------------------------------------------

/// A Kubernetes quantity in milli-units for `cpu` and in base units (bytes, counts) for everything else. Covers
/// the forms tests and Spark write: plain and decimal numbers, `m`, the decimal (`k`, `M`, `G`, `T`) and binary
/// (`Ki`, `Mi`, `Gi`, `Ti`) suffixes.
pub fn quantity(resource: &str, text: &str) -> i64 {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("{resource}: {text:?} is not a quantity"));
    let factor = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => panic!("{resource}: unsupported quantity suffix in {text:?}"),
    };
    let scale = if resource == "cpu" { 1000.0 } else { 1.0 };
    (number * factor * scale).round() as i64
}

/// A pod's requests of `resource` (summed over its containers; init containers are not used in these tests), in
/// the units of [`quantity`].
pub fn pod_request(pod: &Pod, resource: &str) -> i64 {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get(resource))
        .map(|q| quantity(resource, &q.0))
        .sum()
}

/// A pod still holds its node's capacity: bound and not finished.
pub fn holds_capacity(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    bound_node(pod).is_some() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Checks, from the API server, that on every node the requests of the pods bound there (all namespaces, any
/// scheduler), plus `extra` (node -> (cpu milli, memory bytes), e.g. capacity muster reserved for a gang), fit its
/// allocatable cpu, memory and pods. Returns node -> bound pod names.
pub async fn assert_no_node_overcommitted(
    client: &Client,
    extra: &HashMap<String, (i64, i64)>,
) -> BTreeMap<String, Vec<String>> {
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.expect("cannot list nodes");
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await.expect("cannot list pods");
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.items.iter().filter(|p| holds_capacity(p)) {
        by_node.entry(bound_node(pod).expect("holds_capacity means bound").to_owned()).or_default().push(pod);
    }
    for node in &nodes.items {
        let name = node.name_any();
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
        let on_node = by_node.get(&name).map(Vec::as_slice).unwrap_or_default();
        let (extra_cpu, extra_memory) = extra.get(&name).copied().unwrap_or((0, 0));
        for (resource, extra) in [("cpu", extra_cpu), ("memory", extra_memory)] {
            let used: i64 = on_node.iter().map(|p| pod_request(p, resource)).sum::<i64>() + extra;
            let limit = allocatable.get(resource).map(|q| quantity(resource, &q.0)).unwrap_or(0);
            assert!(
                used <= limit,
                "node {name} is over-committed on {resource}: {used} requested (including {extra} reserved) > \
                 {limit} allocatable; pods there: {:?}",
                on_node.iter().map(|p| describe_pod(p)).collect::<Vec<_>>()
            );
        }
        let pod_limit = allocatable.get("pods").map(|q| quantity("pods", &q.0)).unwrap_or(i64::MAX);
        assert!(on_node.len() as i64 <= pod_limit, "node {name} holds {} pods > {pod_limit}", on_node.len());
    }
    by_node.into_iter().map(|(node, pods)| (node, pods.iter().map(|p| p.name_any()).collect())).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// A continuous record of where pods are bound
// ---------------------------------------------------------------------------------------------------------------

/// One observed change of a pod's node.
#[derive(Clone, Debug)]
pub struct Transition {
    /// Since the history started.
    pub at: Duration,
    pub pod: String,
    /// The gang the pod names: its `muster.dev/pod-group` label, else its `spark-app-selector` label.
    pub gang: Option<String>,
    /// The node after the change; `None` when the pod was deleted (or seen first unbound, which is not recorded).
    pub node: Option<String>,
    pub deleted: bool,
}

/// Watches the pods of a namespace from before a test creates them to its end, recording every change of
/// `spec.nodeName` (and deletions of bound pods) with its time, so tests check invariants over the whole run
/// rather than at the end only. Stops watching on drop.
pub struct PodHistory {
    start: Instant,
    pods: Api<Pod>,
    transitions: Arc<Mutex<Vec<Transition>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodHistory {
    /// Starts watching and returns once the watch's initial listing is done.
    pub async fn start(client: &Client, namespace: &str) -> PodHistory {
        let start = Instant::now();
        let transitions = Arc::new(Mutex::new(Vec::new()));
        let api = Api::<Pod>::namespaced(client.clone(), namespace);
        let pods = api.clone();
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let task = {
            let transitions = transitions.clone();
            tokio::spawn(async move {
                let mut listed = Some(listed_tx);
                let mut nodes: HashMap<String, Option<String>> = HashMap::new();
                let mut stream = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = stream.next().await {
                    let (pod, deleted) = match event {
                        Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                        Ok(watcher::Event::Delete(pod)) => (pod, true),
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = listed.take() {
                                let _ = tx.send(());
                            }
                            continue;
                        }
                        Ok(watcher::Event::Init) => continue,
                        Err(e) => {
                            // The watcher re-lists after an error; note it, in case a test then fails.
                            eprintln!("PodHistory: watch error (retrying): {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    let name = pod.name_any();
                    let node = if deleted { None } else { bound_node(&pod).map(str::to_owned) };
                    let previous = if deleted {
                        nodes.remove(&name).flatten()
                    } else {
                        nodes.insert(name.clone(), node.clone()).flatten()
                    };
                    // Unbound pods coming and going are of no interest; nodeName never changes once set.
                    if previous == node {
                        continue;
                    }
                    let labels = pod.labels();
                    let gang = labels
                        .get(names::POD_GROUP_LABEL)
                        .or_else(|| labels.get(names::SPARK_APP_SELECTOR_LABEL))
                        .cloned();
                    let transition = Transition { at: start.elapsed(), pod: name, gang, node, deleted };
                    transitions.lock().expect("history lock").push(transition);
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(30), listed_rx)
            .await
            .expect("the pod watch did not list within 30 s")
            .expect("the pod watch task ended before listing");
        PodHistory { start, pods, transitions, task }
    }

    /// Time since the history started (the clock of [`Transition::at`]).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Every transition so far, in order.
    pub fn transitions(&self) -> Vec<Transition> {
        self.transitions.lock().expect("history lock").clone()
    }

    /// Transitions of pods for which `select` holds.
    pub fn of(&self, select: impl Fn(&Transition) -> bool) -> Vec<Transition> {
        self.transitions().into_iter().filter(|t| select(t)).collect()
    }

    /// Transitions that bound `pod` to a node.
    pub fn bindings_of(&self, pod: &str) -> Vec<Transition> {
        self.of(|t| t.pod == pod && t.node.is_some())
    }

    /// Waits until the history has seen what a list of the pods shows now: every pod bound where it is bound.
    /// The watch runs behind the API server's answers to the test's own reads; call this before asserting on
    /// the history what those reads established.
    pub async fn caught_up(&self) {
        wait_until("the pod history catches up with the API server", DEFAULT_TIMEOUT, || async {
            let listed = self.pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let seen = self.transitions();
            for pod in &listed.items {
                let Some(node) = bound_node(pod) else { continue };
                let name = pod.name_any();
                let last = seen.iter().rev().find(|t| t.pod == name).and_then(|t| t.node.as_deref());
                if last != Some(node) {
                    return Err(format!("{name} is bound to {node}; the history has {last:?}"));
                }
            }
            Ok(())
        })
        .await;
    }
}

impl Drop for PodHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A Service in front of replicas, and the kubelet for terminating pods
// ---------------------------------------------------------------------------------------------------------------

/// How often [`ReadyProxy`] probes each replica's `/readyz`. A real Service follows readiness probes (seconds
/// apart) through EndpointSlices; probing faster only shortens the tests.
const PROXY_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// How long one probe may take before the replica counts as not ready.
const PROXY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a new connection waits for some replica to be ready before it is closed.
const PROXY_WAIT_FOR_READY: Duration = Duration::from_secs(1);

/// A loopback TCP proxy standing in for a Kubernetes Service whose endpoints are muster's replicas, as kube-proxy
/// routes it: only to endpoints that pass their readiness probe. It probes each replica's `/readyz` every 100 ms
/// and hands each new client connection to a replica that last answered 200 (round robin), copying bytes both
/// ways. Established connections stay where they are: when their replica dies they just break, and the client
/// (kube-scheduler) reconnects, through the proxy, to a ready replica. A connection arriving while no replica is
/// ready waits up to 1 s for one, then is closed. Point kube-scheduler at [`ReadyProxy::extender_url`]. Stops
/// (closing every connection) on drop.
pub struct ReadyProxy {
    addr: SocketAddr,
    backends: Arc<Vec<Listeners>>,
    shared: Arc<ProxyShared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct ProxyShared {
    /// Per backend: whether its last probe answered 200.
    ready: Vec<AtomicBool>,
    /// Per backend: connections handed to it.
    connections: Vec<AtomicU64>,
    /// Connections closed because no replica was ready (or the chosen one refused).
    dropped: AtomicU64,
}

impl ReadyProxy {
    /// Starts the proxy on a free loopback port in front of `backends` (replicas' listeners, fixed for the life
    /// of the proxy: a restarted replica comes back on its addresses) and returns after the first round of probes.
    /// Connections go to each replica's extender listener (TLS passes through untouched); `/readyz` is probed on
    /// its health listener.
    pub async fn start(backends: &[Listeners]) -> ReadyProxy {
        assert!(!backends.is_empty(), "a proxy needs at least one backend");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("cannot bind a loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let backends = Arc::new(backends.to_vec());
        let shared = Arc::new(ProxyShared {
            ready: backends.iter().map(|_| AtomicBool::new(false)).collect(),
            connections: backends.iter().map(|_| AtomicU64::new(0)).collect(),
            dropped: AtomicU64::new(0),
        });
        probe_backends(&backends, &shared).await;
        let prober = {
            let (backends, shared) = (backends.clone(), shared.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PROXY_PROBE_INTERVAL).await;
                    probe_backends(&backends, &shared).await;
                }
            })
        };
        let acceptor = {
            let (backends, shared) = (backends.clone(), shared.clone());
            tokio::spawn(async move {
                // Dropping the set (when this task is aborted) aborts every connection task.
                let mut connections = tokio::task::JoinSet::new();
                let mut next = 0usize;
                loop {
                    let client = match listener.accept().await {
                        Ok((client, _)) => client,
                        Err(e) => {
                            eprintln!("ReadyProxy: accept failed (retrying): {e}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    while connections.try_join_next().is_some() {}
                    let first_choice = next;
                    next = next.wrapping_add(1);
                    let (backends, shared) = (backends.clone(), shared.clone());
                    connections.spawn(async move { forward(client, &backends, &shared, first_choice).await });
                }
            })
        };
        ReadyProxy { addr, backends, shared, tasks: vec![prober, acceptor] }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What kube-scheduler's extender `urlPrefix` must be to reach the replicas through the proxy (the replicas'
    /// certificate is for 127.0.0.1, where the proxy listens too).
    pub fn extender_url(&self) -> String {
        format!("https://{}{URL_PREFIX}", self.addr)
    }

    /// The extender addresses of the backends whose last probe answered 200.
    pub fn ready_backends(&self) -> Vec<SocketAddr> {
        self.backends
            .iter()
            .zip(&self.shared.ready)
            .filter(|(_, ready)| ready.load(Ordering::Acquire))
            .map(|(listeners, _)| listeners.extender)
            .collect()
    }

    /// Connections handed to each backend so far, in the order of `start`'s `backends`.
    pub fn connections(&self) -> Vec<u64> {
        self.shared.connections.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// Connections closed because no replica was ready (or the chosen one refused the connection).
    pub fn dropped_connections(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for ReadyProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One round of readiness probes, all backends at once.
async fn probe_backends(backends: &[Listeners], shared: &ProxyShared) {
    let answers = futures::future::join_all(backends.iter().map(|backend| {
        tokio::time::timeout(
            PROXY_PROBE_TIMEOUT,
            one_request(backend.health, hyper::Method::GET, "/readyz", Bytes::new()),
        )
    }))
    .await;
    for (ready, answer) in shared.ready.iter().zip(answers) {
        ready.store(matches!(answer, Ok(Ok((200, _)))), Ordering::Release);
    }
}

/// Hands `client` to a ready backend (trying them round robin from `first_choice`) and copies bytes both ways
/// until either side closes or breaks.
async fn forward(mut client: tokio::net::TcpStream, backends: &[Listeners], shared: &ProxyShared, first_choice: usize) {
    let deadline = Instant::now() + PROXY_WAIT_FOR_READY;
    let chosen = loop {
        let ready = (0..backends.len())
            .map(|k| (first_choice + k) % backends.len())
            .find(|&i| shared.ready[i].load(Ordering::Acquire));
        match ready {
            Some(i) => break i,
            None if Instant::now() >= deadline => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let connect =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(backends[chosen].extender)).await;
    let Ok(Ok(mut backend)) = connect else {
        // A replica that died since its last probe: the client's connection just breaks, as through kube-proxy.
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    shared.connections[chosen].fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}

/// Plays the kubelet for pods being deleted. Nothing runs the pods of these tests, so a graceful deletion (an
/// eviction through the Eviction API, a delete without grace 0) leaves a pod terminating forever, holding its
/// node's capacity. This force-deletes (grace 0, the pod's UID as precondition) every pod of a namespace that has a
/// `deletionTimestamp`, polling every 200 ms; API errors (an API server outage) are retried on the next round. It
/// records what it deleted. Stops on drop.
pub struct TerminatingPodKubelet {
    start: Instant,
    deleted: Arc<Mutex<Vec<(Duration, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TerminatingPodKubelet {
    pub fn start(client: &Client, namespace: &str) -> TerminatingPodKubelet {
        let start = Instant::now();
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let api = Api::<Pod>::namespaced(client.clone(), namespace);
        let task = {
            let deleted = deleted.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(list) = api.list(&ListParams::default()).await {
                        for pod in list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
                            let name = pod.name_any();
                            let params = DeleteParams {
                                grace_period_seconds: Some(0),
                                preconditions: Some(Preconditions {
                                    uid: pod.metadata.uid.clone(),
                                    resource_version: None,
                                }),
                                ..DeleteParams::default()
                            };
                            match api.delete(&name, &params).await {
                                Ok(_) => deleted.lock().expect("kubelet lock").push((start.elapsed(), name)),
                                // Gone meanwhile, or a new pod of the same name: not ours to delete.
                                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                                Err(e) => eprintln!("TerminatingPodKubelet: cannot delete {name} (retrying): {e}"),
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        TerminatingPodKubelet { start, deleted, task }
    }

    /// The pods it force-deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.deleted.lock().expect("kubelet lock").iter().map(|(_, name)| name.clone()).collect()
    }

    /// The pods it force-deleted, each with the time since [`TerminatingPodKubelet::start`].
    pub fn deleted_at(&self) -> Vec<(Duration, String)> {
        self.deleted.lock().expect("kubelet lock").clone()
    }
}

impl Drop for TerminatingPodKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring (benchmarks)
// ---------------------------------------------------------------------------------------------------------------

/// For benchmarks: CPU seconds (user + system) used so far by the processes whose command line contains `pattern`.
pub fn process_cpu_seconds(pattern: &str) -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(pattern))
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .map(|stat| stat_cpu_seconds(&stat))
        .sum()
}

/// For benchmarks: resident memory (VmRSS) in bytes of the processes whose command line contains `pattern`.
pub fn process_rss_bytes(pattern: &str) -> u64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(pattern))
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .sum()
}

pub fn self_cpu_seconds() -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat"))
}

/// utime + stime of a /proc/<pid>/stat line (fields 14 and 15, counted after the parenthesised command name).
pub fn stat_cpu_seconds(stat: &str) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 1)..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (field(14) + field(15)) / ticks
}

/// The value of the sample `name{labels}` in a Prometheus text exposition (0 when absent).
pub fn prometheus_sample(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `names` (in `namespace`) are all bound, within `timeout`; returns name -> node.
pub async fn wait_all_bound_within(
    client: &Client,
    namespace: &str,
    names: &[String],
    timeout: Duration,
) -> BTreeMap<String, String> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    wait_until(&format!("pods {names:?} are all bound"), timeout, || {
        let pods = pods.clone();
        async move {
            let mut bound = BTreeMap::new();
            let mut seen = Vec::new();
            for name in names {
                let pod = pods.get(name).await.map_err(|e| format!("{name}: {e}"))?;
                if let Some(node) = bound_node(&pod) {
                    bound.insert(name.clone(), node.to_owned());
                }
                seen.push(describe_pod(&pod));
            }
            if bound.len() == names.len() { Ok(bound) } else { Err(seen.join("; ")) }
        }
    })
    .await
}
