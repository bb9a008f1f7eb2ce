//! A real etcd + kube-apiserver (+ kube-scheduler on demand) on loopback, in a temporary directory, per test.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tempfile::TempDir;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::objects::TestNode;
use super::process::{ManagedProcess, print_log_tails, stop_all};
use super::tools::control_plane_binaries;

/// At most this many control planes run at once in one test process; the others wait in `start` (see the
/// measurements in `support`'s module documentation for why 4).
const MAX_CONCURRENT_CONTROL_PLANES: usize = 4;
static CONTROL_PLANE_SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_CONTROL_PLANES);

/// How long etcd + kube-apiserver get to report ready (warm: about 2 s; generous for a loaded CI machine).
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long kube-scheduler gets to sync its informers and report ready (warm: well under 1 s).
const SCHEDULER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Free ports are picked by binding port 0 and releasing it, so another process can take one before the
/// component binds it; a start that fails that way is retried on fresh ports.
const START_ATTEMPTS: u32 = 3;

/// The user every fixture helper acts as: a member of `system:masters`, so RBAC allows it everything.
pub const ADMIN_USER: &str = "muster-test-admin";
/// The user kube-scheduler runs as, so RBAC mode grants it exactly the stock bootstrap role.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";

/// The stock kube-scheduler with its default profile (`default-scheduler`) and no extender.
pub const STOCK_SCHEDULER_CONFIG: &str = "\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
";

/// Who may do what on the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// Every authenticated user may do everything. (kube-apiserver turns anonymous access off in this mode, so
    /// clients still present a token; the fixture's clients and kubeconfigs always do.)
    AlwaysAllow,
    /// Real RBAC: users get only what (Cluster)RoleBindings grant them; the bootstrap roles exist as in any cluster.
    Rbac,
}

/// Options of a control plane; finish with [`ControlPlaneBuilder::start`].
pub struct ControlPlaneBuilder {
    authorization: Authorization,
    users: Vec<StaticUser>,
}

/// A user of the static token file: the API server knows it from start to end.
struct StaticUser {
    name: String,
    groups: Vec<String>,
    token: String,
}

impl ControlPlaneBuilder {
    /// Use RBAC authorization instead of AlwaysAllow.
    pub fn rbac(mut self) -> Self {
        self.authorization = Authorization::Rbac;
        self
    }

    /// Declares a user (with its groups) that tests can act as through [`ControlPlane::client_for_user`] and
    /// [`ControlPlane::kubeconfig_for_user`]. Users are fixed when the API server starts (a token file is read
    /// once). To act as a ServiceAccount, for example the one muster's shipped RBAC binds, declare the user
    /// `system:serviceaccount:<namespace>:<name>` with groups `system:serviceaccounts` and
    /// `system:serviceaccounts:<namespace>`: RBAC matches ServiceAccount subjects by exactly that user name.
    pub fn user(mut self, name: &str, groups: &[&str]) -> Self {
        assert!(self.users.iter().all(|u| u.name != name), "user {name} is declared twice");
        self.users.push(StaticUser {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            token: random_token(),
        });
        self
    }

    /// Starts etcd and kube-apiserver and waits until the API server reports ready. Panics (failing the test)
    /// with the components' log tails if they do not come up.
    pub async fn start(self) -> ControlPlane {
        let slot = CONTROL_PLANE_SLOTS.acquire().await.expect("the control-plane semaphore is never closed");
        let dir = tempfile::Builder::new()
            .prefix("muster-controlplane-")
            .tempdir()
            .expect("cannot create a temporary directory for the control plane");
        let token_file = dir.path().join("tokens.csv");
        std::fs::write(&token_file, token_file_contents(&self.users)).expect("cannot write the token file");
        let service_account_key = dir.path().join("service-account.key");
        generate_service_account_key(&service_account_key);

        for attempt in 1..=START_ATTEMPTS {
            let [etcd_client_port, etcd_peer_port, apiserver_port] = free_loopback_ports();
            let server_url = format!("https://127.0.0.1:{apiserver_port}");
            let kubeconfigs: Vec<PathBuf> =
                self.users.iter().map(|user| write_kubeconfig(dir.path(), &server_url, user)).collect();
            let admin = client_from_kubeconfig(&kubeconfigs[0]).await;
            let apiserver =
                self.apiserver_command(dir.path(), etcd_client_port, apiserver_port, &token_file, &service_account_key);
            // Kept, so that `restart_apiserver` starts it again exactly as it was.
            let apiserver_args: Vec<OsString> = apiserver.get_args().map(OsStr::to_owned).collect();
            let mut processes = vec![
                ManagedProcess::spawn("etcd", etcd_command(dir.path(), etcd_client_port, etcd_peer_port), dir.path()),
                ManagedProcess::spawn("kube-apiserver", apiserver, dir.path()),
            ];
            let Err(failure) = wait_until_ready(&admin, &mut processes, APISERVER_READY_TIMEOUT).await else {
                return ControlPlane {
                    processes,
                    admin,
                    server_url,
                    authorization: self.authorization,
                    users: self.users,
                    kubeconfigs,
                    schedulers_started: 0,
                    scheduler_ports: Vec::new(),
                    apiserver_args,
                    apiserver_starts: 1,
                    apiserver_stopped: false,
                    dir,
                    _slot: slot,
                };
            };
            let port_taken = processes.iter().any(|p| p.log().contains("address already in use"));
            if !port_taken || attempt == START_ATTEMPTS {
                print_log_tails(&processes, 40);
                stop_all(&mut processes, Duration::ZERO);
                panic!("the control plane did not start: {failure} (log tails above)");
            }
            stop_all(&mut processes, Duration::ZERO);
        }
        unreachable!("the last attempt returns or panics")
    }

    fn apiserver_command(
        &self,
        dir: &Path,
        etcd_client_port: u16,
        apiserver_port: u16,
        token_file: &Path,
        service_account_key: &Path,
    ) -> Command {
        let mut command = Command::new(&control_plane_binaries().kube_apiserver);
        command
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_client_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={apiserver_port}"))
            // A self-signed serving certificate for 127.0.0.1 and localhost, generated here at start.
            .arg(format!("--cert-dir={}", dir.join("apiserver-certs").display()))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", service_account_key.display()))
            .arg(format!("--service-account-signing-key-file={}", service_account_key.display()))
            // ServiceAccount would wait for token Secrets that no controller-manager creates;
            // TaintNodesByCondition would taint every new Node not-ready, and no kubelet would clear it.
            .arg("--disable-admission-plugins=ServiceAccount,TaintNodesByCondition")
            // Nothing serves the `kubernetes` Service, so do not publish Endpoints for it.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--token-auth-file={}", token_file.display()))
            .arg(match self.authorization {
                Authorization::AlwaysAllow => "--authorization-mode=AlwaysAllow",
                Authorization::Rbac => "--authorization-mode=RBAC",
            });
        command
    }
}

fn etcd_command(dir: &Path, client_port: u16, peer_port: u16) -> Command {
    let data_dir = dir.join("etcd-data");
    // A start attempt that lost a port race may have initialised a member with the old peer URL.
    let _ = std::fs::remove_dir_all(&data_dir);
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut command = Command::new(&control_plane_binaries().etcd);
    command
        .arg("--name=n0")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=n0={peer_url}"))
        // The data is thrown away with the test: durability would only cost time.
        .arg("--unsafe-no-fsync")
        // Its info lines (raft elections, compactions) would crowd the log tail printed for a failing test.
        .arg("--log-level=warn");
    command
}

/// A running control plane. Dropping it stops every process it started (SIGTERM, then SIGKILL after a short
/// grace) and deletes its directory; when the test is failing, it first prints the tail of each process's log.
pub struct ControlPlane {
    /// etcd, kube-apiserver, then any kube-schedulers, in start order.
    processes: Vec<ManagedProcess>,
    admin: Client,
    server_url: String,
    authorization: Authorization,
    /// Parallel to `kubeconfigs`; `[0]` is the admin, `[1]` the scheduler.
    users: Vec<StaticUser>,
    kubeconfigs: Vec<PathBuf>,
    schedulers_started: usize,
    /// The loopback port of each kube-scheduler that started, in start order (`[0]` is `kube-scheduler-1`).
    scheduler_ports: Vec<u16>,
    /// kube-apiserver's arguments (ports, certificates, token file, etcd), for [`ControlPlane::start_apiserver`].
    apiserver_args: Vec<OsString>,
    /// How many kube-apiserver processes were started (1 + restarts): names each one's log file.
    apiserver_starts: u32,
    /// Between [`ControlPlane::stop_apiserver`] and [`ControlPlane::start_apiserver`].
    apiserver_stopped: bool,
    dir: TempDir,
    /// Released only after `drop` has stopped the processes (fields drop after `Drop::drop`).
    _slot: SemaphorePermit<'static>,
}

impl ControlPlane {
    /// A control plane with AlwaysAllow authorization and only the built-in users.
    pub async fn start() -> ControlPlane {
        ControlPlane::builder().start().await
    }

    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder { authorization: Authorization::AlwaysAllow, users: Vec::new() }
            .user(ADMIN_USER, &["system:masters"])
            .user(SCHEDULER_USER, &[])
    }

    /// The bearer token of [`ADMIN_USER`] (for muster's `/state`, which asks the API server who a token is).
    pub fn admin_token(&self) -> &str {
        &self.users[0].token
    }

    /// The bearer token of a user declared with [`ControlPlaneBuilder::user`] (or a built-in one).
    pub fn token_for_user(&self, name: &str) -> &str {
        let user = self.users.iter().find(|u| u.name == name);
        &user.unwrap_or_else(|| panic!("no user {name}: declare it with ControlPlane::builder().user(..)")).token
    }

    /// A client acting as [`ADMIN_USER`].
    pub fn client(&self) -> Client {
        self.admin.clone()
    }

    /// A kubeconfig file acting as [`ADMIN_USER`], for other processes (`muster serve`, Spark, kubectl).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfigs[0]
    }

    /// `https://127.0.0.1:<port>`. The serving certificate is self-signed: clients skip verification (loopback).
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    pub fn authorization(&self) -> Authorization {
        self.authorization
    }

    /// The control plane's temporary directory (logs, kubeconfigs, configs); deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kubeconfig file acting as a user declared with [`ControlPlaneBuilder::user`] (or a built-in one).
    pub fn kubeconfig_for_user(&self, name: &str) -> &Path {
        let index = self
            .users
            .iter()
            .position(|u| u.name == name)
            .unwrap_or_else(|| panic!("no user {name}: declare it with ControlPlane::builder().user(..)"));
        &self.kubeconfigs[index]
    }

    /// A client acting as a user declared with [`ControlPlaneBuilder::user`] (or a built-in one).
    pub async fn client_for_user(&self, name: &str) -> Client {
        client_from_kubeconfig(self.kubeconfig_for_user(name)).await
    }

    /// Starts a kube-scheduler with the given KubeSchedulerConfiguration (YAML) and waits until it has synced
    /// its informers. When the configuration leaves them out, the fixture fills in `clientConnection.kubeconfig`
    /// (acting as [`SCHEDULER_USER`]) and `leaderElection.leaderElect: false`. Several schedulers may run at
    /// once (for example one per profile). The scheduler listens on a loopback port for its /readyz (without it,
    /// `--secure-port=0`, nothing tells when it is ready, and a bad configuration would show up only as pods that
    /// never bind) and its /metrics ([`ControlPlane::scheduler_metrics`]), both open without credentials.
    pub async fn start_scheduler(&mut self, config_yaml: &str) {
        let config = complete_scheduler_config(config_yaml, self.kubeconfig_for_user(SCHEDULER_USER));
        self.schedulers_started += 1;
        let name = format!("kube-scheduler-{}", self.schedulers_started);
        let config_path = self.dir().join(format!("{name}-config.yaml"));
        std::fs::write(&config_path, config).expect("cannot write the scheduler configuration");

        for attempt in 1..=START_ATTEMPTS {
            let [port] = free_loopback_ports();
            let mut command = Command::new(&control_plane_binaries().kube_scheduler);
            command
                .arg(format!("--config={}", config_path.display()))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--secure-port={port}"))
                // No authorization kubeconfig is given, so every path not listed here is forbidden; the default
                // list plus /metrics, which benchmarks read (the port is loopback only).
                .arg("--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics");
            let mut scheduler = vec![ManagedProcess::spawn(&name, command, self.dir())];
            let probe = unauthenticated_client(&format!("https://127.0.0.1:{port}"));
            let Err(failure) = wait_until_ready(&probe, &mut scheduler, SCHEDULER_READY_TIMEOUT).await else {
                self.processes.append(&mut scheduler);
                self.scheduler_ports.push(port);
                return;
            };
            let port_taken = scheduler[0].log().contains("address already in use");
            if !port_taken || attempt == START_ATTEMPTS {
                print_log_tails(&scheduler, 40);
                stop_all(&mut scheduler, Duration::ZERO);
                panic!("{name} did not start: {failure} (log tail above)");
            }
            stop_all(&mut scheduler, Duration::ZERO);
        }
    }

    /// The Prometheus text of the `n`-th kube-scheduler started (1-based, as its log and configuration files are
    /// named: `kube-scheduler-<n>`), e.g. `scheduler_schedule_attempts_total`. Panics if it does not answer.
    pub async fn scheduler_metrics(&self, n: usize) -> String {
        let port = *self
            .scheduler_ports
            .get(n.wrapping_sub(1))
            .unwrap_or_else(|| panic!("no kube-scheduler-{n}: {} started", self.scheduler_ports.len()));
        let client = unauthenticated_client(&format!("https://127.0.0.1:{port}"));
        let request = http::Request::get("/metrics").body(Vec::new()).expect("a constant request is valid");
        client.request_text(request).await.unwrap_or_else(|e| panic!("GET /metrics from kube-scheduler-{n}: {e}"))
    }

    /// Kills kube-apiserver (SIGKILL, no graceful shutdown: a crash or a lost machine) and starts it again with
    /// the same flags, on the same port, against the same etcd (kept running, so every object survives), then
    /// waits until it reports ready. Clients (this fixture's, `muster serve`, kube-scheduler) see their
    /// connections break and must reconnect on their own. Panics with the log tails if it does not come back.
    pub async fn restart_apiserver(&mut self) {
        self.stop_apiserver();
        self.start_apiserver().await;
    }

    /// The first half of [`ControlPlane::restart_apiserver`], for a test that keeps the API server down a while:
    /// kills kube-apiserver (SIGKILL) and reaps it. etcd keeps running.
    pub fn stop_apiserver(&mut self) {
        assert!(!self.apiserver_stopped, "kube-apiserver is already stopped");
        self.processes[APISERVER].kill();
        self.apiserver_stopped = true;
    }

    /// The second half of [`ControlPlane::restart_apiserver`]: starts kube-apiserver again exactly as it was
    /// first started (same port, certificates, tokens, etcd) and waits until it reports ready. Its output goes to
    /// `kube-apiserver-<n>.log`, next to the earlier ones.
    pub async fn start_apiserver(&mut self) {
        assert!(self.apiserver_stopped, "kube-apiserver is running: stop it first");
        // The port is fixed now: if another process took it meanwhile (unlikely: the kernel hands out ephemeral
        // ports in order), waiting a little does not help either, so one attempt plus a short retry for a port
        // still held by the kernel.
        for attempt in 1..=START_ATTEMPTS {
            self.apiserver_starts += 1;
            let name = format!("kube-apiserver-{}", self.apiserver_starts);
            let mut command = Command::new(&control_plane_binaries().kube_apiserver);
            command.args(&self.apiserver_args);
            self.processes[APISERVER] = ManagedProcess::spawn(&name, command, self.dir.path());
            let failure =
                match wait_until_ready(&self.admin, &mut self.processes[..=APISERVER], APISERVER_READY_TIMEOUT).await {
                    Ok(()) => {
                        self.apiserver_stopped = false;
                        return;
                    }
                    Err(failure) => failure,
                };
            let port_taken = self.processes[APISERVER].log().contains("address already in use");
            if !port_taken || attempt == START_ATTEMPTS {
                print_log_tails(&self.processes[..=APISERVER], 40);
                panic!("kube-apiserver did not come back: {failure} (log tails above)");
            }
            self.processes[APISERVER].kill();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Whether the current kube-apiserver process is alive (false between stop and start, or after a crash).
    pub fn apiserver_running(&mut self) -> bool {
        !self.apiserver_stopped && self.processes[APISERVER].exit_status().is_none()
    }

    /// Creates a namespace (tests share nothing else, so each uses its own).
    pub async fn create_namespace(&self, name: &str) {
        let namespace = Namespace {
            metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    }

    /// Creates a Node through the API, status (capacity, allocatable, Ready) included, and returns it as stored.
    pub async fn create_node(&self, node: &TestNode) -> Node {
        let node = node.to_node();
        let name = node.metadata.name.clone().unwrap_or_default();
        Api::<Node>::all(self.client())
            .create(&PostParams::default(), &node)
            .await
            .unwrap_or_else(|e| panic!("cannot create node {name}: {e}"))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(&self.processes, 40);
        }
        // kube-apiserver's graceful shutdown can take 2 s and more, and none of it matters once the test is over.
        stop_all(&mut self.processes, Duration::from_secs(1));
    }
}

/// Index of kube-apiserver in [`ControlPlane::processes`] (etcd is 0).
const APISERVER: usize = 1;

/// Why a component did not become ready.
#[derive(Debug)]
enum StartFailure {
    Exited { name: String, status: String },
    Timeout { after: Duration, last_error: String },
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartFailure::Exited { name, status } => write!(f, "{name} exited ({status})"),
            StartFailure::Timeout { after, last_error } => {
                write!(f, "not ready after {after:?}; last /readyz answer: {last_error}")
            }
        }
    }
}

/// Polls `/readyz` through `client` until it answers `ok`, failing early if one of `processes` exits.
async fn wait_until_ready(
    client: &Client,
    processes: &mut [ManagedProcess],
    timeout: Duration,
) -> Result<(), StartFailure> {
    let start = Instant::now();
    loop {
        for process in processes.iter_mut() {
            if let Some(status) = process.exit_status() {
                return Err(StartFailure::Exited { name: process.name().to_owned(), status: status.to_string() });
            }
        }
        let request = http::Request::get("/readyz").body(Vec::new()).expect("a constant request is valid");
        // Bounded, so that a process exit is noticed promptly even when whoever holds the port never answers.
        let answer = tokio::time::timeout(Duration::from_secs(2), client.request_text(request)).await;
        let last_error = match answer {
            Ok(Ok(body)) if body.trim() == "ok" => return Ok(()),
            Ok(Ok(body)) => body,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 2 s".to_owned(),
        };
        if start.elapsed() > timeout {
            return Err(StartFailure::Timeout { after: timeout, last_error });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Distinct loopback ports that were free a moment ago (see [`START_ATTEMPTS`] for the race).
fn free_loopback_ports<const N: usize>() -> [u16; N] {
    // Hold every listener until all ports are chosen, so the N ports differ.
    let listeners: Vec<TcpListener> =
        (0..N).map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("bound listener has an address").port())
}

/// `token,user,uid,"group1,group2"` lines, the format of kube-apiserver's `--token-auth-file`.
fn token_file_contents(users: &[StaticUser]) -> String {
    let mut contents = String::new();
    for user in users {
        writeln!(contents, "{},{},{},\"{}\"", user.token, user.name, user.name, user.groups.join(","))
            .expect("writing to a String cannot fail");
    }
    contents
}

/// A random bearer token, so no process on the machine can guess its way into a test's API server.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("cannot read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key kube-apiserver signs and verifies ServiceAccount tokens with. An EC key in SEC1 form ("EC PRIVATE
/// KEY"): it takes milliseconds where RSA takes up to a second, and `--service-account-key-file` rejects the
/// PKCS#8 form that `openssl genpkey` writes.
fn generate_service_account_key(path: &Path) {
    let output = Command::new("openssl")
        .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `openssl` ({e}): the control-plane fixture needs the openssl command-line tool to \
                    make the service-account signing key (Debian: apt-get install openssl)"
            )
        });
    assert!(
        output.status.success(),
        "openssl could not generate the service-account key: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes `<dir>/kubeconfig-<user>.yaml`, acting as `user` against `server_url`.
fn write_kubeconfig(dir: &Path, server_url: &str, user: &StaticUser) -> PathBuf {
    let file_name: String = user.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let path = dir.join(format!("kubeconfig-{file_name}.yaml"));
    let contents = format!(
        "\
apiVersion: v1
kind: Config
clusters:
- name: muster-test
  cluster:
    server: {server_url}
    # The API server's certificate is self-signed, and the connection never leaves loopback.
    insecure-skip-tls-verify: true
users:
- name: {name:?}
  user:
    token: {token}
contexts:
- name: muster-test
  context:
    cluster: muster-test
    user: {name:?}
current-context: muster-test
",
        name = user.name,
        token = user.token
    );
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A client configured from a kubeconfig file, exactly as another process using the file would be.
async fn client_from_kubeconfig(path: &Path) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
    Client::try_from(config).expect("a client can be built from a valid config")
}

/// A client for a component's own HTTPS endpoint (self-signed certificate, no credentials), to read /readyz.
fn unauthenticated_client(url: &str) -> Client {
    let mut config = Config::new(url.parse().expect("a loopback URL is valid"));
    config.accept_invalid_certs = true;
    Client::try_from(config).expect("a client can be built from a valid config")
}

/// Fills in what the caller's KubeSchedulerConfiguration leaves out: the kubeconfig and leader election off.
fn complete_scheduler_config(config_yaml: &str, kubeconfig: &Path) -> String {
    use serde_norway::{Mapping, Value};
    let mut config: Value = serde_norway::from_str(config_yaml)
        .unwrap_or_else(|e| panic!("the scheduler configuration is not YAML: {e}\n{config_yaml}"));
    let root = config
        .as_mapping_mut()
        .unwrap_or_else(|| panic!("the scheduler configuration is not a YAML mapping:\n{config_yaml}"));
    let mut set_default = |section: &str, key: &str, value: Value| {
        let section = root
            .entry(section.into())
            .or_insert_with(|| Value::Mapping(Mapping::new()))
            .as_mapping_mut()
            .unwrap_or_else(|| panic!("`{section}` in the scheduler configuration is not a mapping"));
        section.entry(key.into()).or_insert(value);
    };
    set_default("clientConnection", "kubeconfig", kubeconfig.display().to_string().into());
    set_default("leaderElection", "leaderElect", false.into());
    serde_norway::to_string(&config).expect("a YAML value serialises")
}
