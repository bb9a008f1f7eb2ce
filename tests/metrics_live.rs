//! muster's `/metrics` and its JSON log against the real control plane (kube-apiserver, and the stock
//! kube-scheduler calling `muster serve` as its extender), in one scenario:
//!
//! - two queues: `analytics` (weight 2, a guarantee and a capability) and `batch` (weight 1, unbounded); two nodes
//!   of 4 cpu;
//! - PodGroup `etl` in `analytics`, labelled `team: data` and `cost-center: cc-42`, is admitted and binds (2 x 1 cpu);
//! - PodGroup `wide` in `batch` (2 x 3.5 cpu) waits for capacity: whichever node `etl` took, no two nodes have
//!   3.5 cpu free; its pods are filtered by the extender (kube-scheduler marks them unschedulable).
//!
//! `muster serve` runs with `--log-format json --cost-labels team,cost-center`. Checked:
//!
//! - (a) `promtool check metrics --lint=all` accepts the scrape: exit 0, nothing printed;
//! - (b) the series exist with the values the scenario implies: the per-queue resource gauges with
//!   `queue`/`resource`/`unit` labels (cpu in cores, unit `core`; memory in bytes, unit `byte`), the queue weights,
//!   gangs by phase and by wait reason, the wait histogram, the extender's request counter, the pods watch's
//!   timestamp, `muster_ready` and `muster_leader`; the per-gang cost counter with `label_team` and
//!   `label_cost_center` grows while `etl` runs, and its queue's counter is never below it;
//! - (c) every log line is a JSON object (no duplicate keys) with a level and a message, and there is exactly one
//!   "admission decision" event `Admitted` for `etl` and one naming `wide`'s current reason code;
//! - (d) `muster serve --cost-labels 'bad key!'` exits non-zero naming the key (muster checks the keys after it has
//!   reached the API server, so this runs against the same control plane).
//!
//! Nothing is skipped: without a control plane or promtool (built by `tests/controlplane/*.sh`), the test fails.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use muster::api::{Guarantee, PodGroup};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use support::ops_tools::promtool_bin;
use support::{
    E2E_TIMEOUT, ExtenderMode, MusterConfig, MusterEnv, MusterState, PodPhase, ServeOptions, TestNode, gang_pod,
    member_template, pod_condition, pod_group, queue, set_pod_phase, state_quantity, wait_until,
};

const NAMESPACE: &str = "metrics";
const ADMITTED: &str = "etl";
const WAITING: &str = "wide";
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------------------------
// The Prometheus text format
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        write!(f, "{}{{{}}} {}", self.name, labels.join(","), self.value)
    }
}

/// One scrape: its samples and the `# TYPE` of each family.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line:?}"));
                types.insert(name.to_owned(), kind.trim().to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Scrape { text, samples, types }
    }

    /// The samples of `name` carrying every label of `labels`.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect()
    }

    /// The value of the one sample of `name` with `labels`, or what the family holds instead.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        match self.matching(name, labels).as_slice() {
            [one] => Ok(one.value),
            [] => Err(format!("no {name} with {labels:?}; the family: [{}]", self.describe(name))),
            many => Err(format!(
                "{} samples of {name} with {labels:?}: [{}]",
                many.len(),
                many.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; ")
            )),
        }
    }

    fn family(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    fn describe(&self, name: &str) -> String {
        self.family(name).iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; ")
    }
}

/// `name{k="v",...} value [timestamp]` or `name value [timestamp]`.
fn parse_sample(line: &str) -> Sample {
    let bad = || -> ! { panic!("not a Prometheus sample line: {line:?}") };
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad());
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '}' {
                end = Some(i);
                break;
            }
            if c == ',' || c == ' ' {
                continue;
            }
            let mut key = String::from(c);
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                bad();
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => bad(),
                    },
                    Some(c) => value.push(c),
                    None => bad(),
                }
            }
            labels.insert(key.trim().to_owned(), value);
        }
        rest = &inner[end.unwrap_or_else(|| bad()) + 1..];
    }
    let value = rest.split_whitespace().next().unwrap_or_else(|| bad());
    let value = value.parse::<f64>().unwrap_or_else(|_| bad());
    Sample { name, labels, value }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON log lines
// ---------------------------------------------------------------------------------------------------------------

/// A JSON object's members in order, duplicates kept (a `serde_json::Value` would keep only the last).
struct Members(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// One log line, parsed: its members (first of each name) and the names that appear more than once.
struct LogLine {
    line: String,
    fields: serde_json::Map<String, Value>,
    duplicates: Vec<String>,
}

impl LogLine {
    fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// The event's message: flattened (`flatten_event(true)`) or under `fields`.
    fn message(&self) -> Option<&str> {
        self.str("message").or_else(|| self.fields.get("fields")?.get("message")?.as_str())
    }

    /// A field of the event: flattened or under `fields`.
    fn field(&self, key: &str) -> Option<&str> {
        self.str(key).or_else(|| self.fields.get("fields")?.get(key)?.as_str())
    }
}

fn parse_log_line(line: &str) -> Result<LogLine, String> {
    let members: Members = serde_json::from_str(line).map_err(|e| format!("not a JSON object ({e}): {line}"))?;
    let mut fields = serde_json::Map::new();
    let mut duplicates = Vec::new();
    for (key, value) in members.0 {
        if fields.contains_key(&key) {
            duplicates.push(key);
        } else {
            fields.insert(key, value);
        }
    }
    Ok(LogLine { line: line.to_owned(), fields, duplicates })
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs_f64()
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
}

/// The `unit` label kube-state-metrics would give a resource.
fn expected_unit(resource: &str) -> &'static str {
    match resource {
        "cpu" => "core",
        "memory" | "ephemeral-storage" => "byte",
        r if r.starts_with("hugepages-") => "byte",
        _ => "integer",
    }
}

/// The `muster_gangs` phase label for a `/state` phase.
fn phase_label(state_phase: &str) -> &str {
    match state_phase {
        "Admitted" => "Inqueue",
        other => other,
    }
}

/// Collects failed expectations, so one poll reports all of them.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn value(&mut self, scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        scrape.value(name, labels).map_err(|e| self.0.push(e)).ok()
    }

    /// The one sample of `name` with `labels` equals `expected` (within a part in a million).
    fn equals(&mut self, scrape: &Scrape, name: &str, labels: &[(&str, &str)], expected: f64) {
        if let Some(v) = self.value(scrape, name, labels) {
            self.check((v - expected).abs() <= expected.abs() * 1e-6, || {
                format!("{name} {labels:?} is {v}, expected {expected}")
            });
        }
    }

    fn into_result(self) -> Result<(), String> {
        if self.0.is_empty() { Ok(()) } else { Err(format!("\n  - {}", self.0.join("\n  - "))) }
    }
}

/// A child process killed when dropped (a muster that did not exit as it should must not outlive the test).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn metrics_cost_labels_and_json_log_of_a_live_muster() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    // The scenario runs on this thread (block_on), so the fixtures' processes follow it (PR_SET_PDEATHSIG).
    runtime.block_on(scenario());
}

async fn scenario() {
    let started = Instant::now();
    let promtool = promtool_bin();
    let started_unix = unix_now();
    // drainAfter far away: the waiting gang keeps waiting for capacity instead of draining nodes.
    let config = MusterConfig::for_tests().drain_after("1h");
    let options = ServeOptions {
        args: ["--log-format", "json", "--cost-labels", "team,cost-center"].map(String::from).to_vec(),
        ..ServeOptions::default()
    };
    let env = MusterEnv::start_with(NAMESPACE, &config, ExtenderMode::NodeNames, options).await;
    let client = env.client();
    for name in ["node-1", "node-2"] {
        env.control_plane.create_node(&TestNode::new(name, "4", "8Gi")).await;
    }
    let mut analytics = queue("analytics", 2);
    analytics.spec.guarantee = Some(Guarantee { resource: quantities(&[("cpu", "1"), ("memory", "1Gi")]) });
    analytics.spec.capability = quantities(&[("cpu", "6"), ("memory", "12Gi")]);
    env.create_queue(&analytics).await;
    env.create_queue(&queue("batch", 1)).await;

    // The admitted gang, with the cost labels (and one muster is not asked to copy).
    let mut etl: PodGroup = pod_group(ADMITTED, "analytics", vec![member_template("worker", 2, "1", "1Gi")]);
    etl.metadata.labels = Some(BTreeMap::from([
        ("team".to_owned(), "data".to_owned()),
        ("cost-center".to_owned(), "cc-42".to_owned()),
        ("pipeline".to_owned(), "nightly".to_owned()),
    ]));
    env.create_pod_group(&etl).await;
    let etl_pods: Vec<String> = (0..2).map(|i| format!("{ADMITTED}-{i}")).collect();
    for pod in &etl_pods {
        env.create_pod(&gang_pod(pod, ADMITTED, None, "1", "1Gi")).await;
    }
    let placement = env.wait_all_bound(&etl_pods).await;
    for pod in &etl_pods {
        set_pod_phase(&client, NAMESPACE, pod, PodPhase::Running).await;
    }

    // The waiting gang: 2 x 3.5 cpu fits the empty nodes (so it is not NeverFits) but not beside etl.
    env.create_pod_group(&pod_group(WAITING, "batch", vec![member_template("worker", 2, "3500m", "1Gi")])).await;
    let wide_pods: Vec<String> = (0..2).map(|i| format!("{WAITING}-{i}")).collect();
    for pod in &wide_pods {
        env.create_pod(&gang_pod(pod, WAITING, None, "3500m", "1Gi")).await;
    }
    let wait_reason = env
        .wait_for_state(&format!("gang {WAITING} waits with a reason"), |state| {
            let g = state.gang(NAMESPACE, WAITING).ok_or_else(|| format!("gang {WAITING} not in /state"))?;
            match &g.reason {
                Some(reason) if g.is_pending() && !reason.starts_with("Waiting") => Ok(reason.clone()),
                _ => Err(g.describe()),
            }
        })
        .await;
    let wait_code = wait_reason.split(':').next().unwrap_or_default().trim().to_owned();
    assert!(
        ["NotEnoughResources", "Fragmented"].contains(&wait_code.as_str()),
        "gang {WAITING} should wait for capacity (NotEnoughResources or Fragmented), but waits with {wait_reason:?}"
    );
    // The extender filtered its pods: kube-scheduler tried each and recorded muster's refusal.
    for pod in env.wait_all_unschedulable(&wide_pods).await {
        let condition = pod_condition(&pod, "PodScheduled").expect("waited for it");
        let message = condition.message.as_deref().unwrap_or_default();
        assert!(message.contains("muster"), "{WAITING}'s pod was not refused by the extender: {condition:?}");
    }

    // ----- (b) the series, once the model has settled -----
    let scrape = wait_until("muster's /metrics shows the scenario", E2E_TIMEOUT, || async {
        let scrape = Scrape::parse(env.muster.metrics().await);
        let state = env.muster.state().await;
        check_series(&scrape, &state, &wait_code, started_unix).map(|()| scrape)
    })
    .await;

    // ----- (a) promtool's lint -----
    let (status, stdout, stderr) = promtool_check_metrics(&promtool, &scrape.text);
    assert!(
        status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool check metrics --lint=all: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}\nthe scrape:\n{}",
        scrape.text
    );

    // ----- (b) the cost counters grow while etl runs -----
    let gang_cost = [
        ("queue", "analytics"),
        ("resource", "cpu"),
        ("unit", "core"),
        ("label_team", "data"),
        ("label_cost_center", "cc-42"),
    ];
    let queue_cost = [("queue", "analytics"), ("resource", "cpu"), ("unit", "core")];
    let cost_name = "muster_gang_allocated_resource_seconds_total";
    let queue_cost_name = "muster_queue_allocated_resource_seconds_total";
    let cost_probe = |above: f64| {
        let muster = &env.muster;
        async move {
            let scrape = Scrape::parse(muster.metrics().await);
            let gang = scrape.value(cost_name, &gang_cost)?;
            let queue = scrape.value(queue_cost_name, &queue_cost)?;
            if gang <= above {
                return Err(format!("{cost_name} {gang_cost:?} = {gang}, not above {above} yet"));
            }
            // Both are incremented by one observation, the gang's first: a scrape between the two may see the
            // gang's increment alone, so this is polled as well (a counter that stays below fails on timeout).
            if queue < gang {
                return Err(format!("{queue_cost_name} {queue_cost:?} = {queue} < {cost_name} = {gang}"));
            }
            Ok((gang, queue, scrape))
        }
    };
    let (first_gang_cost, first_queue_cost, _) =
        wait_until("etl's cost counter counts", E2E_TIMEOUT, || cost_probe(0.0)).await;
    let (second_gang_cost, second_queue_cost, cost_scrape) =
        wait_until("etl's cost counter grows", E2E_TIMEOUT, || cost_probe(first_gang_cost)).await;
    assert!(
        second_queue_cost >= first_queue_cost,
        "{queue_cost_name} went down: {first_queue_cost} -> {second_queue_cost}"
    );
    // Every per-gang series carries both cost labels (and not the label muster was not asked to copy), and the
    // memory of the same gangs is counted in byte-seconds.
    for sample in cost_scrape.family(cost_name) {
        let keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["label_cost_center", "label_team", "queue", "resource", "unit"],
            "the labels of {sample} are not those --cost-labels names"
        );
        assert_eq!(sample.labels["unit"], expected_unit(&sample.labels["resource"]), "{sample}");
    }
    let memory_cost = cost_scrape
        .value(cost_name, &[("label_team", "data"), ("resource", "memory")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(memory_cost > 0.0, "etl's memory is not counted: {memory_cost}");

    // ----- (c) the JSON log -----
    // A waiting gang's decision is logged when muster next writes statuses (every statusInterval, 2 s by default).
    let wanted = format!("\"gang\":\"podgroup {NAMESPACE}/{WAITING}\"");
    let log = wait_until(&format!("muster logs a decision for {WAITING}"), E2E_TIMEOUT, || async {
        let log = env.muster.log();
        let found = log.lines().any(|l| l.contains("admission decision") && l.contains(&wanted));
        if found { Ok(log) } else { Err(format!("{} log lines, none about {WAITING}", log.lines().count())) }
    })
    .await;
    let lines: Vec<LogLine> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_log_line(l).unwrap_or_else(|e| panic!("muster's log is not JSON lines: {e}")))
        .collect();
    assert!(!lines.is_empty(), "muster logged nothing");
    let mut problems = Vec::new();
    for line in &lines {
        if !line.duplicates.is_empty() {
            problems.push(format!("duplicate keys {:?} in {}", line.duplicates, line.line));
        }
        if !matches!(line.str("level"), Some("TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR")) {
            problems.push(format!("no level in {}", line.line));
        }
        if line.message().is_none() {
            problems.push(format!("no message in {}", line.line));
        }
    }
    let decisions = |gang: &str| -> Vec<&LogLine> {
        let key = format!("podgroup {NAMESPACE}/{gang}");
        lines.iter().filter(|l| l.message() == Some("admission decision") && l.field("gang") == Some(&key)).collect()
    };
    let admitted: Vec<&LogLine> =
        decisions(ADMITTED).into_iter().filter(|l| l.field("reason") == Some("Admitted")).collect();
    match admitted.as_slice() {
        [one] => {
            if one.field("queue") != Some("analytics") || one.field("note").is_none_or(str::is_empty) {
                problems.push(format!("the Admitted decision lacks queue=analytics or a note: {}", one.line));
            }
        }
        other => problems.push(format!(
            "{} Admitted decisions for {ADMITTED} (expected exactly one): {:?}",
            other.len(),
            other.iter().map(|l| &l.line).collect::<Vec<_>>()
        )),
    }
    let waiting = decisions(WAITING);
    match waiting.last() {
        Some(last) => {
            if last.field("queue") != Some("batch") || last.field("reason") != Some(wait_code.as_str()) {
                problems.push(format!(
                    "the last decision for {WAITING} is not queue=batch reason={wait_code}: {}",
                    last.line
                ));
            }
            // Why it waits, in a field of its own (as `note` says what an admission reserved): not in a second
            // `message`, which the event's own message would shadow or be shadowed by.
            if ["note", "detail"].iter().all(|k| last.field(k).is_none_or(str::is_empty)) {
                problems
                    .push(format!("the decision for {WAITING} has no `note` (or `detail`) saying why: {}", last.line));
            }
        }
        None => problems.push(format!("no admission decision for {WAITING}")),
    }
    // Once each: a gang's decision is logged again only when it changes.
    for pair in waiting.windows(2) {
        if pair[0].fields.get("reason") == pair[1].fields.get("reason")
            && pair[0].fields.get("message") == pair[1].fields.get("message")
        {
            problems.push(format!("the same decision logged twice:\n    {}\n    {}", pair[0].line, pair[1].line));
        }
    }
    assert!(problems.is_empty(), "muster's JSON log ({} lines):\n  - {}", lines.len(), problems.join("\n  - "));

    // ----- (d) a bad cost label key -----
    let (code, message) = serve_with_bad_cost_label(env.control_plane.kubeconfig()).await;
    assert!(
        code != Some(0) && message.contains("bad key!") && message.contains("--cost-labels"),
        "muster serve --cost-labels 'bad key!' should exit non-zero naming the key; exit {code:?}, stderr:\n{message}"
    );

    println!("etl bound at {placement:?}; {WAITING} waits: {wait_reason}");
    println!("muster_gangs: {}", scrape.describe("muster_gangs"));
    println!("muster_gangs_waiting: {}", scrape.describe("muster_gangs_waiting"));
    for name in [
        "muster_queue_deserved",
        "muster_queue_allocated",
        "muster_queue_guarantee",
        "muster_queue_capability",
        "muster_queue_pending_demand",
        "muster_capacity_shortfall",
        "muster_queue_weight",
        "muster_queue_pending_gangs",
        "muster_gang_wait_seconds_count",
        "muster_extender_requests_total",
        "muster_watch_last_event_timestamp_seconds",
        "muster_ready",
        "muster_leader",
    ] {
        println!("{name}: {}", scrape.describe(name));
    }
    println!(
        "{cost_name} cpu: {first_gang_cost} -> {second_gang_cost}; {queue_cost_name} cpu: {first_queue_cost} -> \
         {second_queue_cost}"
    );
    println!("{cost_name}: {}", cost_scrape.describe(cost_name));
    println!("{queue_cost_name}: {}", cost_scrape.describe(queue_cost_name));
    println!("admission decisions: {:?}", admitted.iter().chain(&waiting).map(|l| &l.line).collect::<Vec<_>>());
    let error = message.lines().find(|l| l.starts_with("Error:")).unwrap_or(message.trim());
    println!("{} log lines, all JSON; (d): exit {code:?}: {error}", lines.len());
    println!("wall time: {:.1} s", started.elapsed().as_secs_f64());
}

/// Everything (b) expects of one scrape, given `/state` for the values muster mirrors; the failures, listed.
fn check_series(scrape: &Scrape, state: &MusterState, wait_code: &str, started_unix: f64) -> Result<(), String> {
    let mut f = Failures::default();
    let a = ("queue", "analytics");
    let b = ("queue", "batch");
    let cpu = [("resource", "cpu"), ("unit", "core")];
    let memory = [("resource", "memory"), ("unit", "byte")];
    let with = |q: (&'static str, &'static str), r: [(&'static str, &'static str); 2]| [q, r[0], r[1]];

    // Types, as promtool and PromQL's functions expect them.
    for (name, kind) in [
        ("muster_queue_deserved", "gauge"),
        ("muster_queue_allocated", "gauge"),
        ("muster_queue_guarantee", "gauge"),
        ("muster_queue_capability", "gauge"),
        ("muster_queue_pending_demand", "gauge"),
        ("muster_capacity_shortfall", "gauge"),
        ("muster_queue_weight", "gauge"),
        ("muster_queue_pending_gangs", "gauge"),
        ("muster_gangs", "gauge"),
        ("muster_gangs_waiting", "gauge"),
        ("muster_gang_wait_seconds", "histogram"),
        ("muster_extender_requests_total", "counter"),
        ("muster_extender_request_duration_seconds", "histogram"),
        ("muster_watch_last_event_timestamp_seconds", "gauge"),
        ("muster_ready", "gauge"),
        ("muster_leader", "gauge"),
        ("muster_gang_allocated_resource_seconds_total", "counter"),
        ("muster_queue_allocated_resource_seconds_total", "counter"),
        ("muster_admission_cycles_total", "counter"),
        ("muster_admission_cycle_duration_seconds", "histogram"),
    ] {
        f.check(scrape.types.get(name).map(String::as_str) == Some(kind), || {
            format!("{name} should be a {kind}: TYPE {:?}", scrape.types.get(name))
        });
    }

    // The per-queue resource gauges: exactly the labels queue, resource, unit, the unit kube-state-metrics' own.
    let resource_gauges = [
        "muster_queue_deserved",
        "muster_queue_allocated",
        "muster_queue_guarantee",
        "muster_queue_capability",
        "muster_queue_pending_demand",
        "muster_capacity_shortfall",
        "muster_queue_allocated_resource_seconds_total",
    ];
    for name in resource_gauges {
        for s in scrape.family(name) {
            let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
            f.check(keys == ["queue", "resource", "unit"], || format!("{s}: labels should be queue, resource, unit"));
            f.check(
                s.labels.get("unit").map(String::as_str) == s.labels.get("resource").map(|r| expected_unit(r)),
                || format!("{s}: wrong unit"),
            );
            f.check(s.value.is_finite() && s.value >= 0.0, || format!("{s}: not a non-negative number"));
        }
    }
    // etl: 2 x (1 cpu, 1Gi), bound.
    f.equals(scrape, "muster_queue_allocated", &with(a, cpu), 2.0);
    f.equals(scrape, "muster_queue_allocated", &with(a, memory), 2.0 * GIB);
    f.equals(scrape, "muster_queue_guarantee", &with(a, cpu), 1.0);
    f.equals(scrape, "muster_queue_guarantee", &with(a, memory), GIB);
    f.equals(scrape, "muster_queue_capability", &with(a, cpu), 6.0);
    f.equals(scrape, "muster_queue_capability", &with(a, memory), 12.0 * GIB);
    f.check(scrape.matching("muster_queue_guarantee", &[b]).is_empty(), || {
        format!("batch has no guarantee: {}", scrape.describe("muster_queue_guarantee"))
    });
    f.check(scrape.matching("muster_queue_capability", &[b]).is_empty(), || {
        format!("batch is unbounded, so no capability series: {}", scrape.describe("muster_queue_capability"))
    });
    // wide: 2 x (3.5 cpu, 1Gi), waiting for capacity.
    f.equals(scrape, "muster_queue_pending_demand", &with(b, cpu), 7.0);
    f.equals(scrape, "muster_queue_pending_demand", &with(b, memory), 2.0 * GIB);
    f.check(scrape.matching("muster_queue_pending_demand", &[a]).is_empty(), || {
        format!("analytics has no waiting gang: {}", scrape.describe("muster_queue_pending_demand"))
    });
    f.equals(scrape, "muster_capacity_shortfall", &with(b, cpu), 7.0);
    // Deserved: what /state says, in cores and bytes; at least analytics' guarantee; within the cluster.
    for q in &state.queues {
        for (resource, quantity) in &q.deserved {
            let expected = state_quantity(resource, quantity) as f64 / if resource == "cpu" { 1000.0 } else { 1.0 };
            if expected != 0.0 {
                let labels = [("queue", q.name.as_str()), ("resource", resource.as_str())];
                f.equals(scrape, "muster_queue_deserved", &labels, expected);
            }
        }
    }
    if let Some(deserved) = f.value(scrape, "muster_queue_deserved", &with(a, cpu)) {
        f.check(deserved >= 1.0, || format!("analytics deserves {deserved} cpu, below its guarantee of 1"));
    }
    let total: f64 = scrape.matching("muster_queue_deserved", &cpu).iter().map(|s| s.value).sum();
    f.check(total > 0.0 && total <= 8.0 + 1e-9, || format!("deserved cpu over all queues is {total} of 8"));
    f.equals(scrape, "muster_queue_weight", &[a], 2.0);
    f.equals(scrape, "muster_queue_weight", &[b], 1.0);
    f.equals(scrape, "muster_queue_pending_gangs", &[a], 0.0);
    f.equals(scrape, "muster_queue_pending_gangs", &[b], 1.0);

    // Gangs by phase (as /state has them) and by reason.
    match state.gang(NAMESPACE, ADMITTED) {
        Some(g) if g.is_admitted() => f.equals(scrape, "muster_gangs", &[a, ("phase", phase_label(&g.phase))], 1.0),
        other => f.0.push(format!("gang {ADMITTED} is not admitted in /state: {:?}", other.map(|g| g.describe()))),
    }
    f.equals(scrape, "muster_gangs", &[b, ("phase", "Pending")], 1.0);
    let gang_count: f64 = scrape.family("muster_gangs").iter().map(|s| s.value).sum();
    f.check(gang_count == 2.0, || format!("2 gangs in all: {}", scrape.describe("muster_gangs")));
    f.equals(scrape, "muster_gangs_waiting", &[b, ("reason", wait_code)], 1.0);
    f.check(scrape.family("muster_gangs_waiting").len() == 1, || {
        format!("only {WAITING} waits: {}", scrape.describe("muster_gangs_waiting"))
    });
    if let Some(n) = f.value(scrape, "muster_gang_wait_seconds_count", &[a]) {
        f.check(n >= 1.0, || format!("muster_gang_wait_seconds_count{{queue=analytics}} is {n}"));
    }

    // The extender, the watches, the process.
    if let Some(n) = f.value(scrape, "muster_extender_requests_total", &[("verb", "filter"), ("code", "200")]) {
        f.check(n > 0.0, || format!("no filter request counted: {n}"));
    }
    if let Some(n) = f.value(scrape, "muster_extender_request_duration_seconds_count", &[("verb", "filter")]) {
        f.check(n > 0.0, || format!("no filter latency observed: {n}"));
    }
    if let Some(t) = f.value(scrape, "muster_watch_last_event_timestamp_seconds", &[("kind", "pods")]) {
        let now = unix_now();
        f.check(t >= started_unix - 1.0 && t <= now + 1.0, || {
            format!("the pods watch's last event at {t} is not between the test's start {started_unix} and now {now}")
        });
    }
    f.equals(scrape, "muster_ready", &[], 1.0);
    f.equals(scrape, "muster_leader", &[], 1.0);
    f.into_result()
}

/// `promtool check metrics --lint=all` on `text` (stdin): exit status, stdout, stderr (where it lists problems).
fn promtool_check_metrics(promtool: &Path, text: &str) -> (std::process::ExitStatus, String, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics", "--lint=all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).expect("write the scrape to promtool");
    let output = child.wait_with_output().expect("promtool's output");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `muster serve --cost-labels 'bad key!'` against the control plane; waits for it to exit (killing it if it
/// does not): its exit code and its output.
async fn serve_with_bad_cost_label(kubeconfig: &Path) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_path = dir.path().join("bad-cost-label.log");
    let log = std::fs::File::create(&log_path).expect("create the log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
    command
        .args(["serve", "--cost-labels", "bad key!", "--log-format", "text"])
        // Loopback, so nothing else can stop it first (it must never get as far as listening).
        .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("MUSTER_COST_LABELS")
        .env_remove("MUSTER_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("duplicate the log handle"))
        .stderr(log);
    let mut child = KillOnDrop(command.spawn().expect("start muster serve"));
    let status = wait_until("muster serve --cost-labels 'bad key!' exits", E2E_TIMEOUT, || {
        let polled = child.0.try_wait().map_err(|e| e.to_string());
        let log_path = &log_path;
        async move {
            match polled? {
                Some(status) => Ok(status),
                None => Err(format!(
                    "still running; output so far: {}",
                    std::fs::read_to_string(log_path).unwrap_or_default()
                )),
            }
        }
    })
    .await;
    (status.code(), std::fs::read_to_string(&log_path).unwrap_or_default())
}
