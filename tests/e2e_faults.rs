//! Faults end to end: real etcd + kube-apiserver, the stock kube-scheduler calling `muster serve` as its extender,
//! fake nodes, and the test playing every kubelet. Each test breaks something muster depends on and checks that
//! gangs stay all-or-nothing, no node is ever over-committed, and muster recovers by itself:
//!
//! - a. ghosts: filter calls for pods muster never saw through its watch (never created, deleted, a stale copy of
//!   a bound pod) fail every node and write nothing into muster's model;
//! - b. a PodDisruptionBudget refuses reclaim's evictions: muster stays up, says why the beneficiary waits, evicts
//!   nothing, and completes the reclaim once the budget goes;
//! - c. `kill -9` of muster at seeded random moments of a burst of gangs, 20 rounds: a restarted muster restores
//!   exactly the reservations recorded in PodGroup status before it is ready, and every gang completes whole;
//! - d. two replicas under leader election behind a Service-like proxy: SIGKILL of the leader mid-burst, the
//!   standby takes over (failover time measured), 5 rounds;
//! - e. kube-apiserver killed and restarted mid-run (etcd kept): muster stays up and answers, reports not ready
//!   while its watches are broken, and resyncs;
//! - f. an admitted gang whose members never come loses its reservation after `reservationTimeout`, its capacity
//!   goes to others, and it is admitted again once its pods appear.
//!
//! The checks run over the whole run, from a watch of every binding ([`PodHistory`]) and the test kubelet's
//! record of when it finished each pod: a node over-committed at any moment, a gang partially bound for longer
//! than [`BIND_WINDOW`], a member bound twice, a gang that never completes, all fail with what was seen.
//!
//! Randomness (kill moments, gang shapes, run times) comes from one seed, printed at the start of each test; set
//! `MUSTER_FAULT_SEED` to replay it. `MUSTER_KILL_ROUNDS` and `MUSTER_FAILOVER_ROUNDS` override the number of
//! rounds of tests c and d.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use muster::api::{ConditionStatus, PodGroup, names};
use muster::index::convert::spark_pod_group_name;
use serde_json::{Value, json};
use support::muster::{create_pod, delete_pod_now, prometheus_sample};
use support::{
    ControlPlane, DEFAULT_TIMEOUT, E2E_TIMEOUT, ExtenderMode, HOLD, LeaderElectionConfig, MusterConfig, MusterEnv,
    MusterServe, MusterState, PodHistory, PodPhase, ReadyProxy, ServeOptions, TerminatingPodKubelet, TestNode,
    Transition, assert_no_node_overcommitted, bound_node, describe_pod, gang_pod, install_crds, member_template,
    muster_pod, pod_group, quantity, queue, set_pod_phase, start_muster_scheduler_at, state_quantity,
    try_set_pod_phase, wait_all_bound_within, wait_until, with_node_selector,
};

/// The longest a gang may stay partially bound: kube-scheduler binds a gang's members one after another (well
/// under a second warm), plus a restart of muster or a failover, plus kube-scheduler's retry backoff (up to
/// 10 s), with a wide margin for a loaded 2-core machine. A gang that never completes fails whatever the margin.
const BIND_WINDOW: Duration = Duration::from_secs(30);
/// The longest one burst of gangs (tests c, d, e) may take to complete entirely.
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);
/// Every node of the burst tests: 4 cpu, room in memory (cpu is the contended resource).
const NODE_CPU: &str = "4";
const NODE_MEMORY: &str = "16Gi";
const FILTER: &str = "/muster/filter";

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------------------------------------------

/// The seed of this run: `MUSTER_FAULT_SEED`, or the clock.
fn base_seed() -> u64 {
    match std::env::var("MUSTER_FAULT_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("MUSTER_FAULT_SEED={text:?} is not a u64")),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    }
}

/// A number of rounds from `variable`, else `default`.
fn rounds_from_env(variable: &str, default: usize) -> usize {
    match std::env::var(variable) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{variable}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    /// A generator for one test: the run's seed mixed with a per-test constant, so tests draw independently.
    fn for_test(test: &str) -> (Rng, u64) {
        let seed = base_seed();
        println!("{test}: seed {seed} (replay with MUSTER_FAULT_SEED={seed})");
        let mixed =
            test.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3));
        (Rng(mixed | 1), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..high` (high exclusive).
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low).max(1)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.range(low, high))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Gangs, and the kubelet that runs them
// ---------------------------------------------------------------------------------------------------------------

/// One gang of a burst: a PodGroup of one template (`size` members of `cpu`/`memory`) and its member pods
/// `<name>-0..`, running for `run` once all are bound.
#[derive(Clone, Debug)]
struct GangSpec {
    name: String,
    size: usize,
    cpu: &'static str,
    memory: &'static str,
    run: Duration,
}

impl GangSpec {
    fn members(&self) -> Vec<String> {
        (0..self.size).map(|i| format!("{}-{i}", self.name)).collect()
    }

    /// One member's request: (cpu milli, memory bytes).
    fn request(&self) -> (i64, i64) {
        (quantity("cpu", self.cpu), quantity("memory", self.memory))
    }

    fn pod_group(&self) -> PodGroup {
        pod_group(&self.name, "default", vec![member_template("worker", self.size as i32, self.cpu, self.memory)])
    }
}

/// `count` gangs named `<prefix>-gNN` of 2 to 4 members of 500m, 1 or 1500m cpu (about 3 cpu a gang), running
/// 300 ms to 1.2 s.
fn random_gangs(rng: &mut Rng, prefix: &str, count: usize) -> Vec<GangSpec> {
    (0..count)
        .map(|i| GangSpec {
            name: format!("{prefix}-g{i:02}"),
            size: rng.range(2, 5) as usize,
            cpu: ["500m", "1", "1500m"][rng.range(0, 3) as usize],
            memory: "1Gi",
            run: rng.millis(300, 1200),
        })
        .collect()
}

/// Every member pod's request, by pod name.
fn requests_of(gangs: &[GangSpec]) -> HashMap<String, (i64, i64)> {
    gangs.iter().flat_map(|g| g.members().into_iter().map(move |m| (m, g.request()))).collect()
}

/// Creates each gang's PodGroup and then its pods, a few gangs at a time.
async fn create_gangs(client: Client, namespace: String, gangs: Vec<GangSpec>) {
    // Each future owns what it uses, so the whole stream can run in a spawned task.
    let creations = gangs.into_iter().map(|spec| {
        let (client, namespace) = (client.clone(), namespace.clone());
        async move {
            Api::<PodGroup>::namespaced(client.clone(), &namespace)
                .create(&PostParams::default(), &spec.pod_group())
                .await
                .unwrap_or_else(|e| panic!("cannot create PodGroup {namespace}/{}: {e}", spec.name));
            for member in spec.members() {
                create_pod(&client, &namespace, &gang_pod(&member, &spec.name, None, spec.cpu, spec.memory)).await;
            }
        }
    });
    futures::stream::iter(creations).buffer_unordered(6).collect::<Vec<()>>().await;
}

/// What the test kubelet did and saw, on the clock of the burst's [`PodHistory`].
#[derive(Clone, Debug, Default)]
struct KubeletLog {
    /// Gang -> when all its members were first seen bound (it then runs).
    started: HashMap<String, Duration>,
    /// Gang -> when its pods were Succeeded and it and its PodGroup were deleted.
    finished: HashMap<String, Duration>,
    /// Pod -> when the kubelet started writing it Succeeded: its capacity is free from then on at the latest.
    freed: HashMap<String, Duration>,
    /// What must never happen in these tests: a running gang's member gone or terminating.
    anomalies: BTreeSet<String>,
    /// API calls that failed (retried on the next round).
    api_errors: u64,
}

/// How far the kubelet is with one gang.
#[derive(Clone, Copy, Debug, PartialEq)]
enum GangRun {
    Waiting,
    Running { since: Duration },
    Finishing,
    Finished,
}

/// The test's kubelet for gangs: every 150 ms it lists the namespace's pods; a gang whose members are all bound
/// is marked Running; after its run time each member is marked Succeeded (capacity freed), then its PodGroup and
/// its pods are deleted. API errors (an API server outage) are counted and retried on the next round. Stops on drop.
struct GangKubelet {
    log: Arc<Mutex<KubeletLog>>,
    gangs: Arc<Mutex<Vec<GangSpec>>>,
    task: tokio::task::JoinHandle<()>,
}

impl GangKubelet {
    fn start(client: &Client, namespace: &str, clock: Instant, gangs: Vec<GangSpec>) -> GangKubelet {
        let log = Arc::new(Mutex::new(KubeletLog::default()));
        let gangs = Arc::new(Mutex::new(gangs));
        let task = tokio::spawn(run_kubelet(client.clone(), namespace.to_owned(), clock, gangs.clone(), log.clone()));
        GangKubelet { log, gangs, task }
    }

    /// Runs one more gang (created by the test).
    fn add(&self, gang: GangSpec) {
        self.gangs.lock().expect("kubelet lock").push(gang);
    }

    fn log(&self) -> KubeletLog {
        self.log.lock().expect("kubelet lock").clone()
    }

    /// The gangs not finished yet, with their progress, or `Ok` when all are.
    fn unfinished(&self) -> Result<(), String> {
        let log = self.log();
        let gangs = self.gangs.lock().expect("kubelet lock").clone();
        let pending: Vec<String> = gangs
            .iter()
            .filter(|g| !log.finished.contains_key(&g.name))
            .map(|g| format!("{}({})", g.name, if log.started.contains_key(&g.name) { "running" } else { "waiting" }))
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(format!("{} of {} gangs unfinished: {}", pending.len(), gangs.len(), pending.join(" ")))
        }
    }
}

impl Drop for GangKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_kubelet(
    client: Client,
    namespace: String,
    clock: Instant,
    gangs: Arc<Mutex<Vec<GangSpec>>>,
    log: Arc<Mutex<KubeletLog>>,
) {
    let pods_api = Api::<Pod>::namespaced(client.clone(), &namespace);
    let mut runs: HashMap<String, GangRun> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let specs = gangs.lock().expect("kubelet lock").clone();
        let pods: HashMap<String, Pod> = match pods_api.list(&ListParams::default()).await {
            Ok(list) => list.items.into_iter().map(|p| (p.name_any(), p)).collect(),
            Err(_) => {
                log.lock().expect("kubelet lock").api_errors += 1;
                continue;
            }
        };
        let now = clock.elapsed();
        let mut to_run = Vec::new();
        let mut to_finish = Vec::new();
        for spec in &specs {
            let run = runs.entry(spec.name.clone()).or_insert(GangRun::Waiting);
            let members = spec.members();
            match *run {
                GangRun::Waiting => {
                    if members.iter().all(|m| pods.get(m).and_then(bound_node).is_some()) {
                        *run = GangRun::Running { since: now };
                        log.lock().expect("kubelet lock").started.insert(spec.name.clone(), now);
                        to_run.extend(members);
                    }
                }
                GangRun::Running { since } => {
                    for member in &members {
                        let pod = pods.get(member);
                        if pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some()) {
                            let what = pod.map_or("gone".to_owned(), describe_pod);
                            log.lock().expect("kubelet lock").anomalies.insert(format!(
                                "gang {} was running but its member {member} is {what} (at {now:?})",
                                spec.name
                            ));
                        }
                    }
                    if now.saturating_sub(since) >= spec.run {
                        *run = GangRun::Finishing;
                        to_finish.push(spec.clone());
                    }
                }
                GangRun::Finishing => to_finish.push(spec.clone()),
                GangRun::Finished => {}
            }
        }
        let (client, namespace) = (&client, namespace.as_str());
        futures::future::join_all(to_run.iter().map(|member| async move {
            // Cosmetic (muster counts bound pods either way): a failure here is retried by nobody.
            let _ = try_set_pod_phase(client, namespace, member, PodPhase::Running).await;
        }))
        .await;
        let (clock, log_ref) = (&clock, &log);
        let finished = futures::future::join_all(to_finish.iter().map(|spec| async move {
            finish_gang(client, namespace, spec, clock, log_ref).await.then(|| spec.name.clone())
        }))
        .await;
        for name in finished.into_iter().flatten() {
            runs.insert(name.clone(), GangRun::Finished);
            log.lock().expect("kubelet lock").finished.insert(name, clock.elapsed());
        }
    }
}

/// Marks every member Succeeded, deletes the PodGroup and the pods; `false` if an API call failed (the next round
/// retries; every step is idempotent).
async fn finish_gang(
    client: &Client,
    namespace: &str,
    spec: &GangSpec,
    clock: &Instant,
    log: &Arc<Mutex<KubeletLog>>,
) -> bool {
    let members = spec.members();
    for member in &members {
        if log.lock().expect("kubelet lock").freed.contains_key(member) {
            continue;
        }
        // Taken before the call: the capacity is certainly free once the call succeeds, maybe a little earlier.
        // Counting it free from here can only hide an over-commit of a few milliseconds, never invent one.
        let at = clock.elapsed();
        match try_set_pod_phase(client, namespace, member, PodPhase::Succeeded).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(_) => {
                log.lock().expect("kubelet lock").api_errors += 1;
                return false;
            }
        }
        log.lock().expect("kubelet lock").freed.insert(member.clone(), at);
    }
    // The PodGroup first: a PodGroup whose pods vanish one by one is a gang missing members, which muster would
    // plan for again until it sees the PodGroup go. Finished pods hold nothing.
    match Api::<PodGroup>::namespaced(client.clone(), namespace).delete(&spec.name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(_) => {
            log.lock().expect("kubelet lock").api_errors += 1;
            return false;
        }
    }
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    for member in &members {
        match pods.delete(member, &now).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(_) => {
                log.lock().expect("kubelet lock").api_errors += 1;
                return false;
            }
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------------------------
// A burst of gangs in a fresh namespace, and the checks over its whole history
// ---------------------------------------------------------------------------------------------------------------

/// One burst: a fresh namespace, a watch of every binding in it, its gangs created concurrently, and the kubelet
/// running them.
struct Burst {
    namespace: String,
    /// For the API server's view in failure messages.
    client: Client,
    gangs: Vec<GangSpec>,
    history: PodHistory,
    kubelet: GangKubelet,
    creator: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Burst {
    async fn start(control_plane: &ControlPlane, namespace: &str, gangs: Vec<GangSpec>) -> Burst {
        control_plane.create_namespace(namespace).await;
        let client = control_plane.client();
        let history = PodHistory::start(&client, namespace).await;
        let clock = Instant::now() - history.now();
        let kubelet = GangKubelet::start(&client, namespace, clock, gangs.clone());
        let creator = tokio::spawn(create_gangs(client.clone(), namespace.to_owned(), gangs.clone()));
        Burst {
            namespace: namespace.to_owned(),
            client,
            gangs,
            history,
            kubelet,
            creator: Some(creator),
            started: Instant::now(),
        }
    }

    /// Waits until every gang and pod has been created (a failure there fails the test).
    async fn wait_created(&mut self) {
        if let Some(creator) = self.creator.take()
            && let Err(e) = creator.await
        {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("creating the gangs of {}: {e}", self.namespace);
        }
    }

    /// Adds a gang created by the test itself (not by the burst) to the kubelet and the checks.
    fn add(&mut self, gang: GangSpec) {
        self.kubelet.add(gang.clone());
        self.gangs.push(gang);
    }

    /// Waits until the kubelet has finished every gang, calling `alive` (e.g. "muster still runs") every round.
    /// On timeout, fails with the unfinished gangs as the muster(s) at `musters` and the API server see them.
    /// `musters`: each replica's metrics listener and the bearer token its `/state` accepts (for the failure
    /// message).
    async fn wait_finished(
        &mut self,
        context: &str,
        musters: &[(std::net::SocketAddr, String)],
        mut alive: impl FnMut(),
    ) {
        self.wait_created().await;
        let start = Instant::now();
        loop {
            alive();
            let Err(unfinished) = self.kubelet.unfinished() else { return };
            if start.elapsed() > ROUND_TIMEOUT {
                panic!(
                    "{context}: not every gang completed within {ROUND_TIMEOUT:?}: {unfinished}\n{}",
                    self.describe_unfinished(musters).await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The unfinished gangs as `/state` of each muster at `musters` and the API server (pods, PodGroup status)
    /// show them, for a failure message.
    async fn describe_unfinished(&self, musters: &[(std::net::SocketAddr, String)]) -> String {
        let log = self.kubelet.log();
        let unfinished: Vec<&GangSpec> = self.gangs.iter().filter(|g| !log.finished.contains_key(&g.name)).collect();
        let partial = self.bound_now().into_iter().filter(|(_, (bound, size))| *bound > 0 && bound < size);
        let partial: Vec<String> = partial.map(|(g, (b, s))| format!("{g} {b}/{s}")).collect();
        let mut text = format!("partially bound now: {partial:?}; kubelet anomalies: {:?}\n", log.anomalies);
        for (addr, token) in musters {
            match support::fetch_state(*addr, token).await {
                Ok(state) => {
                    for gang in &unfinished {
                        let seen = state
                            .gang(&self.namespace, &gang.name)
                            .map_or("not in /state".to_owned(), |g| g.describe());
                        text.push_str(&format!("muster {addr} (leader {:?}): {seen}\n", state.leader));
                    }
                }
                Err(e) => text.push_str(&format!("muster {addr}: no /state: {e}\n")),
            }
        }
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace).list(&ListParams::default()).await;
        let groups =
            Api::<PodGroup>::namespaced(self.client.clone(), &self.namespace).list(&ListParams::default()).await;
        for gang in &unfinished {
            let members: Vec<String> = pods
                .iter()
                .flat_map(|l| l.items.iter())
                .filter(|p| p.labels().get(names::POD_GROUP_LABEL) == Some(&gang.name))
                .map(describe_pod)
                .collect();
            let status =
                groups.iter().flat_map(|l| l.items.iter()).find(|g| g.name_any() == gang.name).map(|g| &g.status);
            text.push_str(&format!("{}: pods {members:?}; PodGroup status {status:?}\n", gang.name));
        }
        text
    }

    /// Waits until at least `count` member pods have been bound (seen by the watch), then `jitter` more: a moment in
    /// the middle of the burst, however fast this machine runs it. Returns how long after the start that was.
    async fn wait_for_progress(&self, count: usize, jitter: Duration, context: &str) -> Duration {
        let start = Instant::now();
        loop {
            let bound = self.history.transitions().iter().filter(|t| t.node.is_some()).count();
            if bound >= count {
                break;
            }
            if start.elapsed() > ROUND_TIMEOUT {
                panic!("{context}: only {bound} of the {count} bindings to wait for happened in {ROUND_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(jitter).await;
        self.started.elapsed()
    }

    /// A seeded moment in the middle of the burst, as (bindings to wait for, jitter): after 1 to 3/4 of all
    /// member pods are bound, plus up to 300 ms.
    fn random_moment(&self, rng: &mut Rng) -> (usize, Duration) {
        let pods: usize = self.gangs.iter().map(|g| g.size).sum();
        (rng.range(1, (pods * 3 / 4).max(2) as u64) as usize, rng.millis(0, 300))
    }

    /// One line: how many bindings, from when to when, and the most gangs running at once.
    fn describe_run(&self) -> String {
        let transitions = self.history.transitions();
        let bindings: Vec<Duration> = transitions.iter().filter(|t| t.node.is_some()).map(|t| t.at).collect();
        let log = self.kubelet.log();
        let mut changes: Vec<(Duration, i32)> = log.started.values().map(|at| (*at, 1)).collect();
        changes.extend(log.finished.values().map(|at| (*at, -1)));
        changes.sort();
        let (mut running, mut most) = (0, 0);
        for (_, change) in changes {
            running += change;
            most = most.max(running);
        }
        format!(
            "{} bindings from {:.2}s to {:.2}s, at most {most} gangs running at once",
            bindings.len(),
            bindings.iter().min().copied().unwrap_or_default().as_secs_f64(),
            bindings.iter().max().copied().unwrap_or_default().as_secs_f64()
        )
    }

    /// Gang -> (members bound, size) from the history so far.
    fn bound_now(&self) -> BTreeMap<String, (usize, usize)> {
        bound_at(&self.history.transitions(), &self.gangs, self.history.now())
    }

    /// Every check over the burst's whole history (see the module documentation); a gang may be partially bound
    /// for at most `bind_window`.
    fn check(&self, allocatable: &HashMap<String, (i64, i64)>, bind_window: Duration, context: &str) {
        let transitions = self.history.transitions();
        let log = self.kubelet.log();
        assert!(log.anomalies.is_empty(), "{context}: {:?}", log.anomalies);
        for gang in &self.gangs {
            let members = gang.members();
            let mut first = None;
            let mut last = Duration::ZERO;
            for member in &members {
                let bindings: Vec<&Transition> =
                    transitions.iter().filter(|t| &t.pod == member && t.node.is_some()).collect();
                assert_eq!(bindings.len(), 1, "{context}: {member} must be bound exactly once: {bindings:?}");
                let at = bindings[0].at;
                first = Some(first.map_or(at, |f: Duration| f.min(at)));
                last = last.max(at);
            }
            let first = first.expect("gangs have members");
            assert!(
                last - first <= bind_window,
                "{context}: gang {} was partially bound for {:?} (first member at {first:?}, last at {last:?}): {:?}",
                gang.name,
                last - first,
                transitions.iter().filter(|t| t.gang.as_deref() == Some(gang.name.as_str())).collect::<Vec<_>>()
            );
        }
        assert_capacity_never_exceeded(&transitions, &log.freed, &requests_of(&self.gangs), allocatable, context);
    }
}

/// Gang -> (members bound, size) at `at`, from `transitions`.
fn bound_at(transitions: &[Transition], gangs: &[GangSpec], at: Duration) -> BTreeMap<String, (usize, usize)> {
    let mut nodes: HashMap<&str, bool> = HashMap::new();
    for t in transitions.iter().filter(|t| t.at <= at) {
        nodes.insert(&t.pod, t.node.is_some());
    }
    gangs
        .iter()
        .map(|g| {
            let bound = g.members().iter().filter(|m| nodes.get(m.as_str()).copied().unwrap_or(false)).count();
            (g.name.clone(), (bound, g.size))
        })
        .collect()
}

/// Replays, in time order, every binding (from the watch) and every release of capacity (the pod's deletion seen
/// by the watch, or the moment the test kubelet began marking it Succeeded, whichever is first), and panics at the
/// first moment a node's cpu or memory requests exceed its allocatable.
///
/// One watch delivers events in the API server's order, so a binding seen after a deletion happened after it;
/// the kubelet's release times are taken before its call, so they can only make a node look emptier than it was.
/// Neither can invent an over-commit.
fn assert_capacity_never_exceeded(
    transitions: &[Transition],
    freed: &HashMap<String, Duration>,
    requests: &HashMap<String, (i64, i64)>,
    allocatable: &HashMap<String, (i64, i64)>,
    context: &str,
) {
    // (time, 0 = release / 1 = bind, pod, node)
    let mut events: Vec<(Duration, u8, String, String)> = Vec::new();
    let mut bound: HashMap<&str, (Duration, &str)> = HashMap::new();
    let mut deleted: HashMap<&str, Duration> = HashMap::new();
    for t in transitions {
        match &t.node {
            Some(node) => {
                bound.entry(&t.pod).or_insert((t.at, node.as_str()));
            }
            None if t.deleted => {
                deleted.entry(&t.pod).or_insert(t.at);
            }
            None => {}
        }
    }
    for (pod, (at, node)) in &bound {
        events.push((*at, 1, pod.to_string(), node.to_string()));
        let release = [deleted.get(pod), freed.get(*pod)].into_iter().flatten().min().copied();
        if let Some(release) = release {
            // A release seen before its binding (the kubelet listed the pod before the watch delivered it) is a
            // hold of zero length, still checked at the binding.
            events.push((release.max(*at + Duration::from_nanos(1)), 0, pod.to_string(), node.to_string()));
        }
    }
    events.sort();
    let mut used: HashMap<String, (i64, i64)> = HashMap::new();
    let mut on_node: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (at, kind, pod, node) in events {
        let (cpu, memory) =
            *requests.get(&pod).unwrap_or_else(|| panic!("{context}: bound pod {pod} of no known gang"));
        let usage = used.entry(node.clone()).or_default();
        let pods = on_node.entry(node.clone()).or_default();
        if kind == 0 {
            usage.0 -= cpu;
            usage.1 -= memory;
            pods.remove(&pod);
            continue;
        }
        usage.0 += cpu;
        usage.1 += memory;
        pods.insert(pod.clone());
        let (cpu_limit, memory_limit) =
            *allocatable.get(&node).unwrap_or_else(|| panic!("{context}: {pod} bound to unknown node {node}"));
        assert!(
            usage.0 <= cpu_limit && usage.1 <= memory_limit,
            "{context}: node {node} over-committed at {at:?} when {pod} was bound: {}m cpu / {} bytes requested > \
             {cpu_limit}m / {memory_limit} allocatable; holding it then: {pods:?}",
            usage.0,
            usage.1
        );
    }
}

/// `count` nodes `<prefix>-N` of [`NODE_CPU`] / [`NODE_MEMORY`]; returns name -> (cpu milli, memory bytes).
async fn create_nodes(control_plane: &ControlPlane, prefix: &str, count: usize) -> HashMap<String, (i64, i64)> {
    let mut allocatable = HashMap::new();
    for i in 1..=count {
        let name = format!("{prefix}-{i}");
        control_plane.create_node(&TestNode::new(&name, NODE_CPU, NODE_MEMORY)).await;
        allocatable.insert(name, (quantity("cpu", NODE_CPU), quantity("memory", NODE_MEMORY)));
    }
    allocatable
}

// ---------------------------------------------------------------------------------------------------------------
// What a killed muster left behind, and what its successor must restore
// ---------------------------------------------------------------------------------------------------------------

/// The cluster right after muster was killed (nothing binds while no muster answers: the bind verb is muster's).
struct KillSnapshot {
    /// Gang -> members bound, member -> node.
    bound: BTreeMap<String, BTreeMap<String, String>>,
    /// Gang -> node -> members' worth of capacity recorded in its PodGroup status (all templates).
    reservations: BTreeMap<String, BTreeMap<String, i32>>,
    /// Gangs whose PodGroup status records an admission (`admittedAt`).
    admitted: BTreeSet<String>,
    /// Gangs the test kubelet had seen whole by the time the lists returned: it may be finishing them (its pods
    /// Succeeded, then deleted one by one), so a list can show them partly gone, not partly bound.
    whole_once: BTreeSet<String>,
}

impl KillSnapshot {
    async fn take(client: &Client, burst: &Burst) -> KillSnapshot {
        let pods = Api::<Pod>::namespaced(client.clone(), &burst.namespace)
            .list(&ListParams::default())
            .await
            .expect("cannot list pods after the kill");
        let groups = Api::<PodGroup>::namespaced(client.clone(), &burst.namespace)
            .list(&ListParams::default())
            .await
            .expect("cannot list PodGroups after the kill");
        let mut bound: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for pod in &pods.items {
            if let (Some(node), Some(gang)) = (bound_node(pod), pod.labels().get(names::POD_GROUP_LABEL)) {
                bound.entry(gang.clone()).or_default().insert(pod.name_any(), node.to_owned());
            }
        }
        let mut reservations: BTreeMap<String, BTreeMap<String, i32>> = BTreeMap::new();
        let mut admitted = BTreeSet::new();
        for group in &groups.items {
            let Some(status) = &group.status else { continue };
            if status.admitted_at.is_some() {
                admitted.insert(group.name_any());
            }
            for r in &status.reservations {
                *reservations.entry(group.name_any()).or_default().entry(r.node.clone()).or_default() += r.count;
            }
        }
        // The kubelet keeps running while muster is down; read what it started after both lists returned.
        let whole_once = burst.kubelet.log().started.keys().cloned().collect();
        KillSnapshot { bound, reservations, admitted, whole_once }
    }

    /// One line: what was bound at the kill.
    fn describe(&self, gangs: &[GangSpec]) -> String {
        let mut whole = 0;
        let mut partial = Vec::new();
        let mut pods = 0;
        for gang in gangs {
            let bound = self.bound.get(&gang.name).map_or(0, BTreeMap::len);
            pods += bound;
            if bound == gang.size {
                whole += 1;
            } else if bound > 0 {
                partial.push(format!("{} {bound}/{}", gang.name, gang.size));
            }
        }
        format!(
            "{pods} pods bound; {whole} gangs whole, {} partial {partial:?}, {} unbound; {} gangs with reservations \
             in PodGroup status",
            partial.len(),
            gangs.len() - whole - partial.len(),
            self.reservations.len()
        )
    }

    /// Durability: a gang with some members bound was admitted, and that admission (the capacity of every member
    /// not bound yet) is in its PodGroup status, since it was written before any member was directed to a node.
    fn assert_admissions_durable(&self, gangs: &[GangSpec], context: &str) {
        for gang in gangs {
            let bound = self.bound.get(&gang.name).map_or(0, BTreeMap::len);
            if bound == 0 || bound == gang.size || self.whole_once.contains(&gang.name) {
                continue;
            }
            let recorded: i32 = self.reservations.get(&gang.name).map_or(0, |r| r.values().sum());
            assert!(
                self.admitted.contains(&gang.name) && recorded as usize >= gang.size - bound,
                "{context}: gang {} had {bound}/{} members bound when muster was killed, but its PodGroup status \
                 records {} admission and reservations for {recorded} members ({:?}): an admission must be durable \
                 before any member is directed to a node",
                gang.name,
                gang.size,
                if self.admitted.contains(&gang.name) { "an" } else { "no" },
                self.reservations.get(&gang.name)
            );
        }
    }

    /// Restore: `state` is the successor's `/state` taken the moment its `/readyz` first answered 200. Every gang
    /// whose PodGroup status held reservations at the kill (and that the test kubelet has not finished since) is
    /// admitted there, holding capacity for exactly its members not bound (reserved + bound = minimum), and only on
    /// the recorded nodes, no more per node than recorded: the recorded admission was restored before readiness,
    /// not planned anew. (Later, a slot may move if kube-scheduler does not offer its node; not checked here.)
    /// This holds because capacity a record still names is never given to another gang before a newer write gives
    /// it up: a slot moved to another node, or an admission released, keeps its old capacity out of reach until
    /// then, so no two records ever claim the same capacity.
    fn assert_restored(&self, burst: &Burst, state: &MusterState, context: &str) {
        let finished = burst.kubelet.log().finished;
        for (gang, recorded) in &self.reservations {
            // A gang whose every member was bound at the kill has nothing to restore (its status may still list the
            // reservations of its admission: the periodic write had not caught up), and the test kubelet may have
            // finished and deleted it while muster was down.
            let size = burst.gangs.iter().find(|g| &g.name == gang).map_or(usize::MAX, |g| g.size);
            if finished.contains_key(gang) || self.bound.get(gang).map_or(0, BTreeMap::len) == size {
                continue;
            }
            let Some(restored) = state.gang(&burst.namespace, gang) else {
                panic!(
                    "{context}: gang {gang} had reservations {recorded:?} recorded in its PodGroup status at the kill, \
                     but is not in the successor's /state at readiness: {}",
                    state.describe()
                );
            };
            let mut per_node: BTreeMap<&str, i32> = BTreeMap::new();
            for r in &restored.reservations {
                *per_node.entry(r.node.as_str()).or_default() += r.count as i32;
            }
            let reserved: i32 = per_node.values().sum();
            assert!(
                restored.is_admitted() && reserved as u32 + restored.bound == restored.min_member,
                "{context}: gang {gang} (recorded reservations {recorded:?}, bound at the kill {:?}) is not restored \
                 whole at readiness: {}",
                self.bound.get(gang),
                restored.describe()
            );
            for (node, count) in &per_node {
                let allowed = recorded.get(*node).copied().unwrap_or(0);
                assert!(
                    *count <= allowed,
                    "{context}: at readiness gang {gang} reserves {count} on {node}, but its PodGroup status at the \
                     kill recorded {allowed} there (reservations {recorded:?}): {}",
                    restored.describe()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------------------------

/// An extender filter request for `pod` offering `nodes` (nodeCacheCapable: names only).
fn filter_args(pod: &Value, nodes: &[&str]) -> Value {
    json!({"Pod": pod, "NodeNames": nodes})
}

/// A pod as JSON, with the namespace and UID a stored pod would have.
fn pod_json(pod: &Pod, namespace: &str, uid: &str) -> Value {
    let mut value = serde_json::to_value(pod).expect("a pod serialises");
    value["metadata"]["namespace"] = json!(namespace);
    value["metadata"]["uid"] = json!(uid);
    value
}

/// Checks a filter answer: 200, no error, no node chosen, every offered node failed as unresolvable with a reason
/// (containing `reason_part`, case-insensitive, when given). Returns the reasons.
fn assert_every_node_unresolvable(
    what: &str,
    status: u16,
    body: &str,
    nodes: &[&str],
    reason_part: Option<&str>,
) -> Vec<String> {
    assert_eq!(status, 200, "filter for {what}: {body}");
    let answer: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("filter for {what}: not JSON ({e}): {body}"));
    let error = answer["Error"].as_str().unwrap_or_default();
    assert!(error.is_empty(), "filter for {what} answered an error instead of failing the nodes: {body}");
    let chosen = answer["NodeNames"].as_array().map_or(0, Vec::len);
    assert_eq!(chosen, 0, "filter for {what} must offer no node: {body}");
    let failed = answer["FailedAndUnresolvableNodes"]
        .as_object()
        .unwrap_or_else(|| panic!("filter for {what}: no FailedAndUnresolvableNodes: {body}"));
    let mut reasons = Vec::new();
    for node in nodes {
        let reason = failed
            .get(*node)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("filter for {what}: {node} not failed as unresolvable: {body}"));
        assert!(!reason.trim().is_empty(), "filter for {what}: {node} failed without a reason: {body}");
        if let Some(part) = reason_part {
            assert!(
                reason.to_lowercase().contains(&part.to_lowercase()),
                "filter for {what}: the reason for {node} should say {part:?}: {reason:?}"
            );
        }
        reasons.push(reason.to_owned());
    }
    reasons
}

/// A queue's allocated (cpu milli, memory bytes) in `/state` (0 when absent).
fn allocated(state: &MusterState, queue_name: &str) -> (i64, i64) {
    let queue = state.queue(queue_name);
    let of = |resource: &str| queue.and_then(|q| q.allocated.get(resource)).map_or(0, |v| state_quantity(resource, v));
    (of("cpu"), of("memory"))
}

/// Whether the muster whose health listener is `addr` answers `/readyz` with 200 (within 10 s).
async fn readyz_ok(addr: std::net::SocketAddr) -> bool {
    let answer = support::muster::one_request(addr, hyper::Method::GET, "/readyz", bytes::Bytes::new()).await;
    matches!(answer, Ok((200, _)))
}

/// The median (of an even count: the mean of the middle two) and the worst of `times`.
fn median_and_worst(times: &[Duration]) -> (Duration, Duration) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let n = sorted.len();
    let median = match n {
        0 => Duration::ZERO,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    };
    (median, sorted.last().copied().unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------------------------
// a. Ghosts: filter for pods muster has not seen changes nothing.
// ---------------------------------------------------------------------------------------------------------------

/// Two 4-cpu nodes. A gang of two 1-cpu members is bound (the first member's object as created, unbound, is kept:
/// the stale copy); a pod that fits no node is created, listed by muster, deleted, and dropped from `/state`.
/// Then kube-scheduler's filter call is played for: (1) pods that never existed (a gang of one, a member of a
/// PodGroup that does not exist, a Spark driver declaring executors, for which muster would create a PodGroup),
/// (2) the deleted pod, (3) the stale copy. Each answer is 200 with every offered node failed as unresolvable
/// ("not yet known" for 1 and 2); nothing enters muster's model: no gang, no PodGroup created, the bound gang
/// unchanged, the queue's allocation unchanged. Finally a gang of six 1-cpu members, exactly the capacity left
/// (so a single ghost holding capacity would block it), is admitted and bound promptly.
#[tokio::test(flavor = "multi_thread")]
async fn a_filter_for_a_pod_muster_has_not_seen_changes_nothing() {
    let namespace = "faults-ghosts";
    let env = MusterEnv::start(namespace, &MusterConfig::for_tests(), ExtenderMode::NodeNames).await;
    let nodes = ["node-1", "node-2"];
    for name in nodes {
        env.control_plane.create_node(&TestNode::new(name, "4", "8Gi")).await;
    }
    let history = PodHistory::start(&env.client(), namespace).await;

    // (3)'s subject: a bound gang, and its first member as first created.
    env.create_pod_group(&pod_group("bound", "default", vec![member_template("worker", 2, "1", "1Gi")])).await;
    let stale = env.create_pod(&gang_pod("bound-0", "bound", None, "1", "1Gi")).await;
    env.create_pod(&gang_pod("bound-1", "bound", None, "1", "1Gi")).await;
    let bound_members = ["bound-0".to_owned(), "bound-1".to_owned()];
    let placed = env.wait_all_bound(&bound_members).await;
    env.wait_for_state("gang bound is admitted with both members bound", |state| {
        let g = state.gang(namespace, "bound").ok_or("gang bound not in /state")?;
        if g.is_admitted() && g.bound == 2 && g.reservations.is_empty() { Ok(()) } else { Err(g.describe()) }
    })
    .await;

    // (2)'s subject: muster lists it (it fits no node, so it stays pending), then it is deleted.
    let mut doomed = muster_pod("gone", "1", "1Gi");
    with_node_selector(&mut doomed, "zone", "nowhere");
    let doomed = env.create_pod(&doomed).await;
    env.wait_for_state("muster lists pod gone", |state| {
        state.gang(namespace, "gone").map(|_| ()).ok_or_else(|| "not listed yet".to_owned())
    })
    .await;
    env.delete_pod_now("gone").await;
    env.wait_for_state("muster no longer lists pod gone", |state| match state.gang(namespace, "gone") {
        None => Ok(()),
        Some(g) => Err(format!("still listed: {}", g.describe())),
    })
    .await;

    let before = env.muster.state().await;
    let allocated_before = allocated(&before, "default");

    // (1): never created. A gang of one, a member of a PodGroup nobody created, and a Spark driver.
    let never = pod_json(&muster_pod("never", "1", "1Gi"), namespace, "0f0f0f0f-0000-4000-8000-000000000001");
    let in_group = pod_json(
        &gang_pod("never-member", "ghost-group", None, "1", "1Gi"),
        namespace,
        "0f0f0f0f-0000-4000-8000-000000000002",
    );
    let spark_app = "spark-ghost0001";
    let mut driver = muster_pod("ghost-driver", "1", "1Gi");
    driver.metadata.labels = Some(BTreeMap::from([
        (names::SPARK_APP_SELECTOR_LABEL.to_owned(), spark_app.to_owned()),
        (names::SPARK_ROLE_LABEL.to_owned(), names::SPARK_ROLE_DRIVER.to_owned()),
    ]));
    driver.metadata.annotations = Some(BTreeMap::from([
        (names::MIN_EXECUTORS_ANNOTATION.to_owned(), "2".to_owned()),
        (names::MAX_EXECUTORS_ANNOTATION.to_owned(), "2".to_owned()),
        (names::EXECUTOR_RESOURCES_ANNOTATION.to_owned(), r#"{"cpu":"1","memory":"1Gi"}"#.to_owned()),
    ]));
    let driver = pod_json(&driver, namespace, "0f0f0f0f-0000-4000-8000-000000000003");
    // (2): the deleted pod as it was stored. (3): the bound member as first created, unbound.
    let deleted = serde_json::to_value(&doomed).expect("a pod serialises");
    let stale_copy = serde_json::to_value(&stale).expect("a pod serialises");
    assert!(stale.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none(), "the stale copy is unbound");

    for (what, pod, reason) in [
        ("a pod that never existed", &never, Some("not yet known")),
        ("a member of a PodGroup that does not exist", &in_group, Some("not yet known")),
        ("a Spark driver that never existed", &driver, Some("not yet known")),
        ("a deleted pod", &deleted, Some("not yet known")),
        ("a stale, unbound copy of a bound pod", &stale_copy, None),
    ] {
        // Twice: a second call must not find anything the first one left behind.
        for _ in 0..2 {
            let (status, body) = env.muster.post_json(FILTER, &filter_args(pod, &nodes)).await;
            let reasons = assert_every_node_unresolvable(what, status, &body, &nodes, reason);
            eprintln!("filter for {what}: {reasons:?}");
        }
    }

    // Several admission cycles later, nothing has changed.
    tokio::time::sleep(HOLD).await;
    let after = env.muster.state().await;
    for ghost in ["never", "ghost-group", "never-member", "ghost-driver", "gone", &spark_pod_group_name(spark_app)] {
        assert!(
            after.gang(namespace, ghost).is_none(),
            "a ghost entered muster's model as gang {ghost}: {}",
            after.describe()
        );
    }
    let gang = after.gang(namespace, "bound").expect("gang bound is still in /state");
    assert!(
        gang.is_admitted() && gang.bound == 2 && gang.reservations.is_empty(),
        "the stale copy changed gang bound: {}",
        gang.describe()
    );
    assert_eq!(
        allocated(&after, "default"),
        allocated_before,
        "the ghosts changed queue default's allocation: before {:?}, after {}",
        before.queue("default").map(|q| &q.allocated),
        after.describe()
    );
    let spark_group =
        Api::<PodGroup>::namespaced(env.client(), namespace).get_opt(&spark_pod_group_name(spark_app)).await;
    assert!(
        matches!(spark_group, Ok(None)),
        "muster created a PodGroup for a Spark driver that never existed: {spark_group:?}"
    );
    history.caught_up().await;
    for member in &bound_members {
        let bindings = history.bindings_of(member);
        assert_eq!(bindings.len(), 1, "{member} must stay where it was bound: {bindings:?}");
        assert_eq!(bindings[0].node.as_deref(), Some(placed[member].as_str()));
    }

    // Exactly the capacity left: six 1-cpu members on 8 - 2 cpu.
    let after_members = env.create_simple_gang("after", "default", 6, "1", "1Gi").await;
    wait_all_bound_within(&env.client(), namespace, &after_members, DEFAULT_TIMEOUT).await;
    assert_no_node_overcommitted(&env.client(), &HashMap::new()).await;
}

// ---------------------------------------------------------------------------------------------------------------
// b. A PodDisruptionBudget refuses reclaim's evictions.
// ---------------------------------------------------------------------------------------------------------------

/// Two 4-cpu nodes; queues gold and silver, weight 1:1, reclaimable. Silver borrows the whole cluster with two
/// running gangs of two 2-cpu members; a PodDisruptionBudget (minAvailable: all four) protects them, with the
/// status the disruption controller would write (no disruption allowed). A gold gang of two 2-cpu members
/// arrives: it deserves half the cluster and needs reclaim, which the Eviction API refuses (429). muster must stay
/// up, report the refusal (reason `EvictionRefused: ...disruption budget...` in `/state`, condition Unschedulable /
/// EvictionRefused on the PodGroup), count it in `muster_evictions_refused_total`, and delete nothing. Once the
/// budget is deleted the reclaim completes: silver pods are evicted (the test kubelet finishes their deletion) and
/// the gold gang is bound whole. No node is over-committed at any moment.
#[tokio::test(flavor = "multi_thread")]
async fn b_evictions_refused_by_a_disruption_budget_are_reported_and_retried() {
    let namespace = "faults-pdb";
    let config = MusterConfig::for_tests().eviction_timeout("3s").min_runtime("0s");
    let mut env = MusterEnv::start(namespace, &config, ExtenderMode::NodeNames).await;
    let client = env.client();
    let mut allocatable = HashMap::new();
    for name in ["node-1", "node-2"] {
        env.control_plane.create_node(&TestNode::new(name, "4", "8Gi")).await;
        allocatable.insert(name.to_owned(), (quantity("cpu", "4"), quantity("memory", "8Gi")));
    }
    for (name, weight) in [("gold", 1), ("silver", 1)] {
        env.create_queue(&queue(name, weight)).await;
    }
    let history = PodHistory::start(&client, namespace).await;
    let terminator = TerminatingPodKubelet::start(&client, namespace);

    let mut silver = Vec::new();
    for gang in ["silver-1", "silver-2"] {
        env.create_pod_group(&pod_group(gang, "silver", vec![member_template("worker", 2, "2", "1Gi")])).await;
        for i in 0..2 {
            let mut pod = gang_pod(&format!("{gang}-{i}"), gang, None, "2", "1Gi");
            pod.metadata.labels.get_or_insert_default().insert("tier".to_owned(), "silver".to_owned());
            env.create_pod(&pod).await;
            silver.push(pod.name_any());
        }
    }
    env.wait_all_bound(&silver).await;
    for pod in &silver {
        set_pod_phase(&client, namespace, pod, PodPhase::Running).await;
    }

    let budgets = Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace);
    let budget = PodDisruptionBudget {
        metadata: ObjectMeta { name: Some("silver-budget".to_owned()), ..ObjectMeta::default() },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(4)),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("tier".to_owned(), "silver".to_owned())])),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    };
    let budget = budgets.create(&PostParams::default(), &budget).await.expect("cannot create the PodDisruptionBudget");
    // What the disruption controller (kube-controller-manager, not run here) would write: 4 of 4 healthy, none may go.
    let status = json!({"status": {
        "observedGeneration": budget.metadata.generation,
        "expectedPods": 4, "currentHealthy": 4, "desiredHealthy": 4, "disruptionsAllowed": 0,
    }});
    budgets
        .patch_status("silver-budget", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("cannot write the PodDisruptionBudget's status");

    env.create_pod_group(&pod_group("gold-1", "gold", vec![member_template("worker", 2, "2", "1Gi")])).await;
    let gold: Vec<String> = (0..2).map(|i| format!("gold-1-{i}")).collect();
    for name in &gold {
        env.create_pod(&gang_pod(name, "gold-1", None, "2", "1Gi")).await;
    }

    let reason = env
        .wait_for_state("gang gold-1 waits with reason EvictionRefused naming the disruption budget", |state| {
            let g = state.gang(namespace, "gold-1").ok_or("gang gold-1 not in /state")?;
            match &g.reason {
                Some(r) if r.starts_with("EvictionRefused:") && r.to_lowercase().contains("disruption budget") => {
                    Ok(r.clone())
                }
                _ => Err(g.describe()),
            }
        })
        .await;
    eprintln!("gold-1 waits: {reason}");
    let pod_groups = env.pod_groups();
    let condition =
        wait_until("PodGroup gold-1 has condition Unschedulable=True, reason EvictionRefused", E2E_TIMEOUT, || {
            let pod_groups = pod_groups.clone();
            async move {
                let pg = pod_groups.get("gold-1").await.map_err(|e| e.to_string())?;
                let conditions = pg.status.map(|s| s.conditions).unwrap_or_default();
                conditions
                    .iter()
                    .find(|c| {
                        c.type_ == "Unschedulable"
                            && c.status == ConditionStatus::True
                            && c.reason.as_deref() == Some("EvictionRefused")
                    })
                    .cloned()
                    .ok_or_else(|| format!("conditions {conditions:?}"))
            }
        })
        .await;
    eprintln!("gold-1 condition: {condition:?}");

    // Past a few eviction timeouts: muster keeps retrying, and the budget keeps every silver pod.
    tokio::time::sleep(Duration::from_secs(7)).await;
    env.muster.assert_running();
    let refused = prometheus_sample(&env.muster.metrics().await, "muster_evictions_refused_total", "");
    assert!(refused > 0.0, "muster_evictions_refused_total is {refused} after refused evictions");
    let deletions: Vec<Transition> = history.of(|t| t.deleted);
    assert!(deletions.is_empty(), "pods were deleted despite the disruption budget: {deletions:?}");
    for name in &silver {
        let pod = env.pods().get(name).await.unwrap_or_else(|e| panic!("silver pod {name} is gone: {e}"));
        assert!(pod.metadata.deletion_timestamp.is_none(), "silver pod {name} is terminating: {}", describe_pod(&pod));
    }
    let gold_bindings = history.of(|t| gold.contains(&t.pod) && t.node.is_some());
    assert!(gold_bindings.is_empty(), "gold members were bound while silver held the cluster: {gold_bindings:?}");
    eprintln!("evictions refused so far: {refused}");

    budgets.delete("silver-budget", &DeleteParams::default()).await.expect("cannot delete the PodDisruptionBudget");
    env.wait_all_bound(&gold).await;
    let evicted = terminator.deleted();
    assert!(!evicted.is_empty(), "gold-1 was bound but no silver pod was evicted");
    assert!(evicted.iter().all(|p| silver.contains(p)), "evicted pods other than silver's: {evicted:?}");
    eprintln!("evicted once the budget was gone: {evicted:?}");
    let requests: HashMap<String, (i64, i64)> =
        silver.iter().chain(&gold).map(|p| (p.clone(), (quantity("cpu", "2"), quantity("memory", "1Gi")))).collect();
    assert_capacity_never_exceeded(&history.transitions(), &HashMap::new(), &requests, &allocatable, "reclaim");
    assert_no_node_overcommitted(&client, &HashMap::new()).await;
    env.muster.assert_running();
}

// ---------------------------------------------------------------------------------------------------------------
// c. kill -9 mid-burst, many times.
// ---------------------------------------------------------------------------------------------------------------

/// Eight 4-cpu nodes (32 cpu) and, each round, a burst of 30 gangs of 2-4 members (about 90 cpu: a third fits at
/// once) in a fresh namespace; the test kubelet runs each gang once it is whole and completes it shortly after.
/// At a seeded random moment of the burst (after a seeded number of bindings, plus up to 300 ms: mid-burst however
/// fast the machine), muster is SIGKILLed; after a seeded pause it is started again on the same address
/// (kube-scheduler's extender URL). Checked each round: at the kill, every partially bound gang's admission is in
/// its PodGroup status; when the new process first reports ready, every recorded admission is restored exactly
/// (its `/state` reservations within the recorded ones, covering its unbound members); over the whole round no
/// node is over-committed, no gang is partially bound longer than [`BIND_WINDOW`], every
/// member is bound exactly once, and every gang completes. 20 rounds (`MUSTER_KILL_ROUNDS`).
#[tokio::test(flavor = "multi_thread")]
async fn c_muster_killed_mid_burst_restores_its_reservations_and_gangs_stay_whole() {
    let (mut rng, seed) = Rng::for_test("c_kill9");
    let rounds = rounds_from_env("MUSTER_KILL_ROUNDS", 20);
    let mut env = MusterEnv::start("faults-kill", &MusterConfig::for_tests(), ExtenderMode::NodeNames).await;
    let allocatable = create_nodes(&env.control_plane, "node", 8).await;
    let client = env.client();
    let test_start = Instant::now();
    for round in 0..rounds {
        let context = format!("kill round {round} (seed {seed})");
        let gangs = random_gangs(&mut rng, &format!("k{round:02}"), 30);
        let pause = rng.millis(0, 1500);
        let mut burst = Burst::start(&env.control_plane, &format!("faults-kill-{round:02}"), gangs).await;
        let (bindings, jitter) = burst.random_moment(&mut rng);

        let kill_after = burst.wait_for_progress(bindings, jitter, &context).await;
        env.muster.kill9();
        // Requests muster sent just before dying may still land; then nothing changes bindings until it is back.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let snapshot = KillSnapshot::take(&client, &burst).await;
        snapshot.assert_admissions_durable(&burst.gangs, &context);
        tokio::time::sleep(pause).await;
        let restart = Instant::now();
        env.muster.restart().await;
        let ready_after = restart.elapsed();
        let restored = env.muster.state().await;
        snapshot.assert_restored(&burst, &restored, &context);
        println!(
            "{context}: killed {:.2}s into the burst ({bindings} bindings + {}ms): {}; restarted after a {:.2}s \
             pause, ready in {:.2}s",
            kill_after.as_secs_f64(),
            jitter.as_millis(),
            snapshot.describe(&burst.gangs),
            pause.as_secs_f64(),
            ready_after.as_secs_f64()
        );

        let muster = (env.muster.metrics_addr(), env.muster.token().to_owned());
        burst.wait_finished(&context, &[muster], || env.muster.assert_running()).await;
        burst.check(&allocatable, BIND_WINDOW, &context);
        println!(
            "{context}: all {} gangs completed whole in {:.1}s: {}",
            burst.gangs.len(),
            burst.started.elapsed().as_secs_f64(),
            burst.describe_run()
        );
    }
    assert_no_node_overcommitted(&client, &HashMap::new()).await;
    println!("{rounds} kill rounds in {:.0}s (seed {seed})", test_start.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------------------------
// d. Two replicas, leader killed mid-burst.
// ---------------------------------------------------------------------------------------------------------------

/// Checks that `standby` behaves as one: `/state` says leader=false, `/readyz` is 503 with a reason, the extender
/// verbs answer 503.
async fn assert_standby(standby: &MusterServe, context: &str) {
    // A replica just started may not serve `/state` at once; once it does, it must not lead.
    let leads = wait_until(&format!("{context}: the standby serves /state"), E2E_TIMEOUT, || standby.is_leader()).await;
    assert!(!leads, "{context}: the standby ({:?}) says it leads", standby.identity());
    let (status, body) = standby.readyz().await.unwrap_or_else(|e| panic!("{context}: standby /readyz: {e}"));
    assert!(status == 503 && !body.trim().is_empty(), "{context}: standby /readyz answered {status} {body:?}");
    let ghost = pod_json(&muster_pod("standby-probe", "1", "1Gi"), "default", "0f0f0f0f-0000-4000-8000-0000000000aa");
    let (status, body) = standby
        .try_post_json(FILTER, &filter_args(&ghost, &["node-1"]))
        .await
        .unwrap_or_else(|e| panic!("{context}: standby filter: {e}"));
    assert_eq!(status, 503, "{context}: a standby's extender verbs answer 503: {body}");
}

/// Waits until exactly one replica leads and is ready; returns its index. Cross-checks `/metrics` muster_leader.
async fn find_leader(replicas: &[MusterServe], context: &str) -> usize {
    let leader = wait_until(&format!("{context}: exactly one replica leads and is ready"), E2E_TIMEOUT, || async {
        let mut leaders = Vec::new();
        let mut seen = Vec::new();
        for (i, replica) in replicas.iter().enumerate() {
            let leads = replica.is_leader().await;
            let ready = replica.readyz().await;
            seen.push(format!("replica {i} ({:?}): leader {leads:?}, /readyz {ready:?}", replica.identity()));
            if leads == Ok(true) && matches!(ready, Ok((200, _))) {
                leaders.push(i);
            }
        }
        if leaders.len() == 1 { Ok(leaders[0]) } else { Err(seen.join("; ")) }
    })
    .await;
    for (i, replica) in replicas.iter().enumerate() {
        let metrics = replica.try_get("/metrics").await.map(|(_, body)| body).unwrap_or_default();
        let value = prometheus_sample(&metrics, "muster_leader", "");
        let expected = if i == leader { 1.0 } else { 0.0 };
        assert_eq!(value, expected, "{context}: replica {i} reports muster_leader {value}");
    }
    leader
}

/// Two replicas with leader election (Lease of 4 s renewed 1 s before expiry) behind a [`ReadyProxy`], which
/// kube-scheduler's extender URL points at. The first replica leads; the second is a standby (`/state`
/// leader=false, `/readyz` 503, extender verbs 503). Each round: a burst of 24 gangs on six 4-cpu nodes; at a
/// seeded moment of the burst (as in c) the leader is SIGKILLed; the standby must take over (its `/readyz` turns
/// 200); the killed one is started again as the new standby. Measured: failover time from the kill to the
/// standby's `/readyz` 200, and to the new leader's first binding. Checked as in c (durable admissions, the
/// recorded reservations restored by the new leader before it is ready, no over-commit, whole gangs, all
/// complete). 5 rounds (`MUSTER_FAILOVER_ROUNDS`); leadership alternates. Prints median and worst failover.
#[tokio::test(flavor = "multi_thread")]
async fn d_standby_takes_over_when_the_leader_is_killed_mid_burst() {
    let (mut rng, seed) = Rng::for_test("d_failover");
    let rounds = rounds_from_env("MUSTER_FAILOVER_ROUNDS", 5);
    let mut control_plane = ControlPlane::start().await;
    install_crds(&control_plane.client()).await;
    let allocatable = create_nodes(&control_plane, "node", 6).await;
    let config = MusterConfig::for_tests()
        .leader_election(LeaderElectionConfig::enabled("4s", "1s").lease("default", "muster-faults"));
    let first = ServeOptions { identity: Some("muster-a".to_owned()), ..ServeOptions::default() };
    let mut replicas = vec![
        MusterServe::start_with(&control_plane, &config, first).await,
        MusterServe::start_standby(&control_plane, &config, "muster-b").await,
    ];
    let proxy = ReadyProxy::start(&[replicas[0].listeners(), replicas[1].listeners()]).await;
    start_muster_scheduler_at(&mut control_plane, &proxy.extender_url(), ExtenderMode::NodeNames).await;
    let client = control_plane.client();

    let mut leader = find_leader(&replicas, "at start").await;
    assert_eq!(leader, 0, "the replica started first (and ready) leads");
    assert_standby(&replicas[1], "at start").await;
    wait_until("the proxy routes to the leader only", E2E_TIMEOUT, || async {
        let ready = proxy.ready_backends();
        if ready == [replicas[0].extender_addr()] { Ok(()) } else { Err(format!("ready backends {ready:?}")) }
    })
    .await;

    let mut to_ready = Vec::new();
    let mut to_binding = Vec::new();
    for round in 0..rounds {
        let context = format!("failover round {round} (seed {seed})");
        let standby = 1 - leader;
        let gangs = random_gangs(&mut rng, &format!("f{round:02}"), 24);
        let mut burst = Burst::start(&control_plane, &format!("faults-failover-{round:02}"), gangs).await;
        let (bindings, jitter) = burst.random_moment(&mut rng);

        let kill_after = burst.wait_for_progress(bindings, jitter, &context).await;
        let killed_at = burst.history.now();
        let killed = Instant::now();
        replicas[leader].kill9();
        // Time the takeover from a task of its own, while the snapshot is taken; take the new leader's /state the
        // moment it is ready.
        let (standby_health, standby_metrics, token) =
            (replicas[standby].health_addr(), replicas[standby].metrics_addr(), replicas[standby].token().to_owned());
        let takeover = tokio::spawn(async move {
            loop {
                if readyz_ok(standby_health).await {
                    let ready_after = killed.elapsed();
                    return Some((ready_after, support::fetch_state(standby_metrics, &token).await));
                }
                if killed.elapsed() > E2E_TIMEOUT {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let snapshot = KillSnapshot::take(&client, &burst).await;
        snapshot.assert_admissions_durable(&burst.gangs, &context);
        let takeover = takeover.await.expect("the takeover timer does not panic");
        replicas[standby].assert_running();
        let Some((ready_after, restored)) = takeover else {
            panic!(
                "{context}: the standby ({:?}) did not become ready within {E2E_TIMEOUT:?} of the leader's death; its \
                 /readyz: {:?}",
                replicas[standby].identity(),
                replicas[standby].readyz().await
            )
        };
        let restored = restored.unwrap_or_else(|e| panic!("{context}: the new leader's /state at readiness: {e}"));
        snapshot.assert_restored(&burst, &restored, &context);
        let new_leader = find_leader(&replicas[standby..=standby], &context).await;
        assert_eq!(new_leader, 0);
        replicas[leader].restart_standby().await;
        assert_standby(&replicas[leader], &format!("{context}, the restarted replica")).await;

        let addrs: Vec<(std::net::SocketAddr, String)> =
            replicas.iter().map(|r| (r.metrics_addr(), r.token().to_owned())).collect();
        burst
            .wait_finished(&context, &addrs, || {
                for replica in replicas.iter_mut() {
                    replica.assert_running();
                }
            })
            .await;
        burst.check(&allocatable, BIND_WINDOW, &context);
        // The new leader's first binding. Bindings seen between the kill and its readiness are the dead leader's
        // (in flight when it died, or reported late by the watch).
        let ready_at = killed_at + ready_after;
        let leftovers = burst.history.of(|t| t.node.is_some() && t.at > killed_at && t.at < ready_at).len();
        let next_binding = burst.history.of(|t| t.node.is_some() && t.at >= ready_at).first().map(|t| t.at - killed_at);
        println!(
            "{context}: leader {:?} killed {:.2}s into the burst ({bindings} bindings + {}ms): {}; standby {:?} ready \
             after {:.2}s, its first binding {} after the kill ({leftovers} bindings of the dead leader seen in \
             between)",
            replicas[leader].identity(),
            kill_after.as_secs_f64(),
            jitter.as_millis(),
            snapshot.describe(&burst.gangs),
            replicas[standby].identity(),
            ready_after.as_secs_f64(),
            next_binding.map_or("none (nothing left to bind)".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
        );
        to_ready.push(ready_after);
        to_binding.extend(next_binding);

        let leads_now = find_leader(&replicas, &context).await;
        assert_eq!(leads_now, standby, "{context}: the standby that took over keeps the lead");
        leader = standby;
    }
    let (median, worst) = median_and_worst(&to_ready);
    println!(
        "failover over {rounds} rounds (seed {seed}): to standby ready: median {:.2}s, worst {:.2}s",
        median.as_secs_f64(),
        worst.as_secs_f64()
    );
    assert!(!to_binding.is_empty(), "no round had a binding after the kill: the bursts did not outlast the kills");
    let (median, worst) = median_and_worst(&to_binding);
    println!(
        "failover over {} rounds with work left: to the next binding: median {:.2}s, worst {:.2}s; proxy \
         connections per replica {:?}, dropped {}",
        to_binding.len(),
        median.as_secs_f64(),
        worst.as_secs_f64(),
        proxy.connections(),
        proxy.dropped_connections()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// e. The API server restarts mid-run.
// ---------------------------------------------------------------------------------------------------------------

/// How long the API server stays down: longer than `watchStaleAfter` (3 s here), so `/readyz` must turn 503.
const OUTAGE: Duration = Duration::from_secs(8);

/// Six 4-cpu nodes, a burst of 20 gangs in flight; kube-apiserver is SIGKILLed (etcd kept) for [`OUTAGE`] and
/// started again on the same port. During the outage muster's process stays alive, `/healthz` answers 200, filter
/// calls answer 200 or 503 with a message (never a broken connection, never after 10 s), and `/readyz` turns 503
/// with a reason once the watches have been broken longer than `watchStaleAfter`. Afterwards muster is ready again,
/// counts watch restarts, admits and binds a gang created after the restart, and the burst completes with the
/// checks of c (a gang caught half bound by the outage may stay so for the outage longer than [`BIND_WINDOW`]).
#[tokio::test(flavor = "multi_thread")]
async fn e_muster_rides_out_an_api_server_restart() {
    let (mut rng, seed) = Rng::for_test("e_apiserver");
    let context = format!("API server restart (seed {seed})");
    let config = MusterConfig::for_tests().watch_stale_after("3s");
    let mut env = MusterEnv::start("faults-apiserver", &config, ExtenderMode::NodeNames).await;
    let allocatable = create_nodes(&env.control_plane, "node", 6).await;
    let gangs = random_gangs(&mut rng, "api", 20);
    let mut burst = Burst::start(&env.control_plane, "faults-apiserver-burst", gangs).await;
    burst.wait_created().await;
    // In flight: some gangs running, others waiting.
    wait_until("a first gang is running", E2E_TIMEOUT, || {
        let log = burst.kubelet.log();
        async move { if log.started.is_empty() { Err("none yet".to_owned()) } else { Ok(()) } }
    })
    .await;
    let last = burst.gangs.last().expect("a burst has gangs").clone();
    let probe_pod = Api::<Pod>::namespaced(env.client(), &burst.namespace)
        .get(&format!("{}-0", last.name))
        .await
        .expect("the last gang's first member exists");
    let probe = filter_args(&serde_json::to_value(&probe_pod).expect("a pod serialises"), &["node-1", "node-2"]);

    env.control_plane.stop_apiserver();
    let down = Instant::now();
    let mut readyz_seen: BTreeMap<u16, String> = BTreeMap::new();
    let mut filter_answers: BTreeMap<u16, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    while down.elapsed() < OUTAGE {
        env.muster.assert_running();
        // Each call is bounded by 10 s (an error then); the slowest answer is checked below.
        let asked = Instant::now();
        let health = env.muster.try_get("/healthz").await;
        slowest = slowest.max(asked.elapsed());
        assert!(matches!(health, Ok((200, _))), "{context}: /healthz during the outage: {health:?}");
        let asked = Instant::now();
        let (status, body) = env
            .muster
            .try_post_json(FILTER, &probe)
            .await
            .unwrap_or_else(|e| panic!("{context}: filter during the outage got no HTTP answer: {e}"));
        slowest = slowest.max(asked.elapsed());
        assert!(
            status == 200 || (status == 503 && !body.trim().is_empty()),
            "{context}: filter during the outage answered {status} {body:?}"
        );
        *filter_answers.entry(status).or_default() += 1;
        let asked = Instant::now();
        let (status, body) =
            env.muster.readyz().await.unwrap_or_else(|e| panic!("{context}: /readyz during the outage: {e}"));
        slowest = slowest.max(asked.elapsed());
        readyz_seen.entry(status).or_insert(body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.control_plane.start_apiserver().await;
    let outage = down.elapsed();
    println!(
        "{context}: down {:.1}s; filter answers {filter_answers:?}, slowest call {:.2}s; /readyz seen {readyz_seen:?}",
        outage.as_secs_f64(),
        slowest.as_secs_f64()
    );
    assert!(slowest < Duration::from_secs(10), "{context}: a call during the outage took {slowest:?}");
    let not_ready = readyz_seen.get(&503).unwrap_or_else(|| {
        panic!("{context}: /readyz never said 503 although the watches were broken {OUTAGE:?} > 3 s: {readyz_seen:?}")
    });
    assert!(!not_ready.trim().is_empty(), "{context}: /readyz 503 without a reason");

    env.muster.wait_ready().await;
    env.muster.assert_running();
    let restarts = prometheus_sample(&env.muster.metrics().await, "muster_watch_restarts_total", "");
    assert!(restarts > 0.0, "{context}: muster_watch_restarts_total is {restarts} after the API server restart");

    // Resynced: a gang created now is admitted and bound.
    let late =
        GangSpec { name: "api-late".to_owned(), size: 2, cpu: "1", memory: "1Gi", run: Duration::from_millis(500) };
    burst.add(late.clone());
    create_gangs(env.client(), burst.namespace.clone(), vec![late.clone()]).await;
    wait_all_bound_within(&env.client(), &burst.namespace, &late.members(), E2E_TIMEOUT).await;

    let muster = (env.muster.metrics_addr(), env.muster.token().to_owned());
    burst.wait_finished(&context, &[muster], || env.muster.assert_running()).await;
    // Nothing binds while the API server is down: a gang caught half bound by the outage gets that much longer.
    burst.check(&allocatable, BIND_WINDOW + outage, &context);
    assert_no_node_overcommitted(&env.client(), &HashMap::new()).await;
    println!("{context}: kubelet API errors during the outage: {}", burst.kubelet.log().api_errors);
}

// ---------------------------------------------------------------------------------------------------------------
// f. An admitted gang whose members never come.
// ---------------------------------------------------------------------------------------------------------------

/// Two 4-cpu nodes; `reservationTimeout` 3 s. A PodGroup of two 2-cpu members and no pods is admitted (capacity
/// reserved, charged to its queue). No member comes: after the timeout it is Pending with reason
/// `ReservationExpired: ...`, reserves nothing, and its queue's allocation is zero. The freed capacity serves
/// another gang needing the whole cluster (bound whole, then finished), and the expired gang is not admitted again
/// while its pods do not exist. Once its two pods are created it is admitted again and bound whole.
#[tokio::test(flavor = "multi_thread")]
async fn f_an_admitted_gang_whose_members_never_come_expires_and_is_admitted_again_later() {
    let namespace = "faults-expiry";
    let config = MusterConfig::for_tests().reservation_timeout("3s");
    let env = MusterEnv::start(namespace, &config, ExtenderMode::NodeNames).await;
    let client = env.client();
    let mut allocatable = HashMap::new();
    for name in ["node-1", "node-2"] {
        env.control_plane.create_node(&TestNode::new(name, "4", "8Gi")).await;
        allocatable.insert(name.to_owned(), (quantity("cpu", "4"), quantity("memory", "8Gi")));
    }
    let history = PodHistory::start(&client, namespace).await;

    let created = Instant::now();
    env.create_pod_group(&pod_group("early", "default", vec![member_template("worker", 2, "2", "1Gi")])).await;
    let admitted = env
        .wait_for_state("gang early is admitted with 2 members reserved", |state| {
            let g = state.gang(namespace, "early").ok_or("gang early not in /state")?;
            if g.is_admitted() && g.reserved("worker") == 2 {
                Ok(allocated(state, "default"))
            } else {
                Err(g.describe())
            }
        })
        .await;
    assert!(admitted.0 > 0, "the reservation of an admitted gang is charged to its queue: allocated {admitted:?}");

    let expired = env
        .wait_for_state("gang early is Pending with reason ReservationExpired and no reservations", |state| {
            let g = state.gang(namespace, "early").ok_or("gang early not in /state")?;
            let expired = g.phase.eq_ignore_ascii_case("Pending")
                && g.reason.as_deref().is_some_and(|r| r.starts_with("ReservationExpired:"))
                && g.reservations.is_empty();
            if expired { Ok(g.clone()) } else { Err(g.describe()) }
        })
        .await;
    let expired_after = created.elapsed();
    eprintln!("expired after {expired_after:?}: {}", expired.describe());
    assert!(
        expired_after >= Duration::from_secs(3),
        "gang early expired {expired_after:?} after its PodGroup was created, before reservationTimeout (3 s)"
    );
    env.wait_for_state("queue default's allocation is back to zero", |state| {
        let now = allocated(state, "default");
        if now == (0, 0) { Ok(()) } else { Err(format!("allocated {now:?}")) }
    })
    .await;

    // The whole cluster for another gang, which finishes.
    let whole = env.create_simple_gang("whole", "default", 4, "2", "1Gi").await;
    env.wait_all_bound(&whole).await;
    let state = env.muster.state().await;
    let g = state.gang(namespace, "early").expect("gang early is still in /state");
    assert!(g.is_pending() && g.reservations.is_empty(), "gang early must still wait: {}", g.describe());
    for member in &whole {
        set_pod_phase(&client, namespace, member, PodPhase::Succeeded).await;
        delete_pod_now(&client, namespace, member).await;
    }
    // Capacity is free again, but early has no pods: it is not admitted again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = env.muster.state().await;
    let g = state.gang(namespace, "early").expect("gang early is still in /state");
    assert!(
        !g.is_admitted() && g.reservations.is_empty(),
        "an expired gang is admitted again only when member pods appear: {}",
        g.describe()
    );

    let members: Vec<String> = (0..2).map(|i| format!("early-{i}")).collect();
    for member in &members {
        env.create_pod(&gang_pod(member, "early", Some("worker"), "2", "1Gi")).await;
    }
    env.wait_all_bound(&members).await;
    env.wait_for_state("gang early is admitted with both members bound", |state| {
        let g = state.gang(namespace, "early").ok_or("gang early not in /state")?;
        if g.is_admitted() && g.bound == 2 { Ok(()) } else { Err(g.describe()) }
    })
    .await;
    let requests: HashMap<String, (i64, i64)> =
        whole.iter().chain(&members).map(|p| (p.clone(), (quantity("cpu", "2"), quantity("memory", "1Gi")))).collect();
    assert_capacity_never_exceeded(&history.transitions(), &HashMap::new(), &requests, &allocatable, "expiry");
    assert_no_node_overcommitted(&client, &HashMap::new()).await;
}
