//! `muster explain` and `muster status` end to end: real etcd + kube-apiserver, the stock kube-scheduler calling
//! `muster serve` as its extender, fake nodes, and the `muster` binary reading the cluster through the test's
//! kubeconfig as a user would. Each test builds gangs that wait for one reason each (quota, capacity,
//! fragmentation, a blocked head, reclaim in flight) or are admitted, waits until muster's status settles (by
//! polling `explain -o json`), then checks the JSON fields and the key words of the text form.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use muster::api::MemberTemplate;
use serde_json::Value;
use support::{
    E2E_TIMEOUT, ExtenderMode, MusterConfig, MusterEnv, PodPhase, TerminatingPodKubelet, TestNode, gang_pod,
    member_template, muster_pod, pod_group, quantity, queue, set_pod_phase, wait_until, with_node_selector,
};

const MEMORY: &str = "1Gi";

// ---------------------------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------------------------

/// `muster <args> --kubeconfig <kubeconfig>`, off the async runtime. `KUBECONFIG` is removed so that only the flag
/// can point it at the cluster.
async fn muster_cli(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
    command.args(args).arg("--kubeconfig").arg(kubeconfig).env_remove("KUBECONFIG");
    let shown = format!("muster {}", args.join(" "));
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task does not panic")
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn describe_output(output: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

/// `muster explain <object> -o json`: the parsed answer, or what went wrong instead.
async fn explain_json(kubeconfig: &Path, object: &str) -> Result<Value, String> {
    let output = muster_cli(kubeconfig, &["explain", object, "-o", "json"]).await;
    if !output.status.success() {
        return Err(describe_output(&output));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("not JSON ({e}): {}", describe_output(&output)))
}

/// Polls `muster explain <object> -o json` until `settled` holds (muster writes status every few hundred
/// milliseconds, and kube-scheduler binds in its own time), and returns that answer.
async fn wait_explained(kubeconfig: &Path, object: &str, what: &str, settled: impl Fn(&Value) -> bool) -> Value {
    let settled = &settled;
    wait_until(&format!("`muster explain {object}` says {what}"), E2E_TIMEOUT, || async move {
        let json = explain_json(kubeconfig, object).await?;
        if settled(&json) { Ok(json) } else { Err(json.to_string()) }
    })
    .await
}

/// [`wait_explained`] until the category is `category` (and, when given, the reason `reason`).
async fn wait_for_category(kubeconfig: &Path, object: &str, category: &str, reason: Option<&str>) -> Value {
    let what = format!("category {category:?}, reason {reason:?}");
    wait_explained(kubeconfig, object, &what, |e| e["category"] == category && reason.is_none_or(|r| e["reason"] == r))
        .await
}

/// `muster explain <object>` for people.
async fn explain_text(kubeconfig: &Path, object: &str) -> String {
    let output = muster_cli(kubeconfig, &["explain", object]).await;
    assert!(output.status.success(), "muster explain {object}: {}", describe_output(&output));
    String::from_utf8(output.stdout).expect("the text form is UTF-8")
}

/// The fields every waiting or admitted gang's answer has.
fn assert_explained(
    e: &Value,
    object: &str,
    gang: &str,
    queue: Option<&str>,
    category: &str,
    reason: &str,
    admitted: bool,
) {
    assert_eq!(e["object"], object, "{e:#}");
    assert_eq!(e["gang"], gang, "{e:#}");
    assert_eq!(e["queue"].as_str(), queue, "{e:#}");
    assert_eq!(e["category"], category, "{e:#}");
    assert_eq!(e["reason"], reason, "{e:#}");
    assert_eq!(e["admitted"], admitted, "{e:#}");
}

fn message(e: &Value) -> &str {
    e["message"].as_str().unwrap_or_default()
}

fn assert_text_has(text: &str, words: &[&str]) {
    for word in words {
        assert!(text.contains(word), "the text form lacks {word:?}:\n{text}");
    }
}

/// `muster status -o json`, polled until `settled` holds; returns the rows.
async fn wait_for_status(kubeconfig: &Path, what: &str, settled: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let settled = &settled;
    wait_until(&format!("`muster status -o json` shows {what}"), E2E_TIMEOUT, || async move {
        let output = muster_cli(kubeconfig, &["status", "-o", "json"]).await;
        if !output.status.success() {
            return Err(describe_output(&output));
        }
        let rows: Vec<Value> =
            serde_json::from_slice(&output.stdout).map_err(|e| format!("not a JSON list ({e}): {output:?}"))?;
        if settled(&rows) { Ok(rows) } else { Err(Value::from(rows).to_string()) }
    })
    .await
}

fn row<'a>(rows: &'a [Value], queue: &str) -> &'a Value {
    rows.iter().find(|r| r["name"] == queue).unwrap_or_else(|| panic!("queue {queue} missing from {rows:#?}"))
}

/// A status row's `deserved` or `allocated` cpu in millicores (0 when absent).
fn cpu_of(row: &Value, field: &str) -> i64 {
    row[field]["cpu"].as_str().map_or(0, |q| quantity("cpu", q))
}

/// `muster status` for people: checks the header and that every queue has its line; returns the text.
async fn assert_status_table(kubeconfig: &Path, queues: &[&str]) -> String {
    let output = muster_cli(kubeconfig, &["status"]).await;
    assert!(output.status.success(), "muster status: {}", describe_output(&output));
    let text = String::from_utf8(output.stdout).expect("the text form is UTF-8");
    let header = text.lines().next().unwrap_or_default();
    for column in ["QUEUE", "WEIGHT", "DESERVED", "ALLOCATED"] {
        assert!(header.contains(column), "the header lacks {column}:\n{text}");
    }
    assert!(header.starts_with("QUEUE"), "{text}");
    for queue in queues {
        assert!(
            text.lines().skip(1).any(|l| l.split_whitespace().next() == Some(queue)),
            "no line for queue {queue}:\n{text}"
        );
    }
    text
}

// ---------------------------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------------------------

/// A node of `pool` (label `pool=<pool>`), so each scenario's gangs see only their own nodes.
fn pool_node(name: &str, pool: &str, cpu: &str) -> TestNode {
    TestNode::new(name, cpu, "64Gi").label("pool", pool)
}

fn pool_template(min: i32, cpu: &str, pool: &str) -> MemberTemplate {
    let mut template = member_template("worker", min, cpu, MEMORY);
    template.node_selector.insert("pool".to_owned(), pool.to_owned());
    template
}

/// A PodGroup of `size` members of `cpu` on the nodes of `pool`, and its member pods `<name>-0..`.
async fn create_pool_gang(env: &MusterEnv, name: &str, queue: &str, size: i32, cpu: &str, pool: &str) -> Vec<String> {
    env.create_pod_group(&pod_group(name, queue, vec![pool_template(size, cpu, pool)])).await;
    let mut members = Vec::new();
    for i in 0..size {
        let member = format!("{name}-{i}");
        let mut pod = gang_pod(&member, name, None, cpu, MEMORY);
        with_node_selector(&mut pod, "pool", pool);
        env.create_pod(&pod).await;
        members.push(member);
    }
    members
}

fn kubeconfig_of(env: &MusterEnv) -> PathBuf {
    env.control_plane.kubeconfig().to_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Quota, capacity, fragmentation, admitted, gangs of one, missing objects, status
// ---------------------------------------------------------------------------------------------------------------

/// One cluster, its nodes in pools so that each gang sees only its own: pool `frag` (2 nodes of 4 cpu), pool `cap`
/// (1 node of 4 cpu), pool `free` (1 node of 16 cpu). Queue `work` (weight 1) runs fillers that leave 1 cpu free on
/// every `frag` and `cap` node; queue `capped` (weight 2) has a capability of 1 cpu. Nobody borrows (every queue's
/// requests fit the cluster), so no reclaim interferes. Then:
/// - `greedy` (capped, 2 x 1 cpu) exceeds its queue's capability: quota / QueueCapability;
/// - `short` (work, 2 x 2 cpu on `cap`: 1 cpu free) lacks capacity in total: capacity / NotEnoughResources, with
///   its template's shape;
/// - `frag` (work, 1 x 2 cpu on `frag`: 1 + 1 cpu free) has it in total but in pieces: fragmentation / Fragmented;
/// - `fits` (work, 2 x 1 cpu on `free`) is admitted and bound;
/// - pods with no PodGroup (gangs of one), explained from muster's Events: `solo` is bound, `nowhere` selects no
///   node (never-fits);
/// - a name that is neither a pod nor a PodGroup, and `--kind pod` for a PodGroup's name: non-zero exit, saying so.
///
/// Fragmentation and shortage come from muster-managed fillers, not from pods muster did not place: foreign usage
/// stays when muster asks whether a gang could ever fit, so it would make these gangs NeverFits instead.
#[tokio::test(flavor = "multi_thread")]
async fn explain_tells_quota_capacity_fragmentation_and_admitted_apart() {
    let started = Instant::now();
    let ns = "explain";
    // No drain during the test: a waiting head keeps its own reason.
    let config = MusterConfig::for_tests().drain_after("10m").status_interval("500ms");
    let env = MusterEnv::start(ns, &config, ExtenderMode::NodeNames).await;
    let kubeconfig = kubeconfig_of(&env);
    let kubeconfig = kubeconfig.as_path();
    for (name, pool, cpu) in
        [("frag-1", "frag", "4"), ("frag-2", "frag", "4"), ("cap-1", "cap", "4"), ("free-1", "free", "16")]
    {
        env.control_plane.create_node(&pool_node(name, pool, cpu)).await;
    }
    env.create_queue(&queue("work", 1)).await;
    let mut capped = queue("capped", 2);
    capped.spec.capability.insert("cpu".to_owned(), Quantity("1".to_owned()));
    env.create_queue(&capped).await;

    // Fillers first: 3 of 4 cpu on each frag and cap node.
    let mut fillers = create_pool_gang(&env, "frag-filler", "work", 2, "3", "frag").await;
    fillers.extend(create_pool_gang(&env, "cap-filler", "work", 1, "3", "cap").await);
    let placed = env.wait_all_bound(&fillers).await;
    assert_ne!(placed["frag-filler-0"], placed["frag-filler-1"], "one 3-cpu filler per node: {placed:?}");

    create_pool_gang(&env, "short", "work", 2, "2", "cap").await;
    create_pool_gang(&env, "frag", "work", 1, "2", "frag").await;
    let fits = create_pool_gang(&env, "fits", "work", 2, "1", "free").await;
    create_pool_gang(&env, "greedy", "capped", 2, "1", "free").await;
    let mut solo = muster_pod("solo", "1", MEMORY);
    with_node_selector(&mut solo, "pool", "free");
    solo.metadata.annotations = Some([(muster::api::names::QUEUE_ANNOTATION.to_owned(), "work".to_owned())].into());
    env.create_pod(&solo).await;
    let mut nowhere = muster_pod("nowhere", "1", MEMORY);
    with_node_selector(&mut nowhere, "pool", "none");
    env.create_pod(&nowhere).await;

    // 1. Quota: the queue's capability, not the nodes.
    let e = wait_for_category(kubeconfig, "explain/greedy-0", "quota", Some("QueueCapability")).await;
    assert_explained(
        &e,
        "Pod explain/greedy-0",
        "PodGroup explain/greedy",
        Some("capped"),
        "quota",
        "QueueCapability",
        false,
    );
    assert_eq!(e["phase"], "Pending", "{e:#}");
    assert!(message(&e).contains("capability"), "{e:#}");
    assert_eq!(e["queue_status"]["name"], "capped", "{e:#}");
    assert_eq!(e["queue_status"]["weight"], 2, "{e:#}");
    assert_eq!(e["scheduled_by_muster"], true, "{e:#}");
    let text = explain_text(kubeconfig, "explain/greedy-0").await;
    assert_text_has(
        &text,
        &[
            "Pod explain/greedy-0",
            "PodGroup explain/greedy",
            "queue:    capped",
            "quota",
            "(QueueCapability)",
            "admitted: no",
        ],
    );
    eprintln!("quota:\n{text}");

    // 2. Capacity: 2 x 2 cpu against 1 free cpu on the only node of its pool; the shape it needs is shown.
    let e = wait_for_category(kubeconfig, "explain/short-1", "capacity", Some("NotEnoughResources")).await;
    assert_explained(
        &e,
        "Pod explain/short-1",
        "PodGroup explain/short",
        Some("work"),
        "capacity",
        "NotEnoughResources",
        false,
    );
    assert_eq!(
        e["templates"],
        serde_json::json!([{"name": "worker", "min_member": 2, "resources": {"cpu": "2", "memory": MEMORY}, "missing": 2}]),
        "{e:#}"
    );
    assert!(message(&e).contains("exceed the free capacity"), "{e:#}");
    let text = explain_text(kubeconfig, "explain/short-1").await;
    assert_text_has(
        &text,
        &["capacity", "(NotEnoughResources)", "needs:    2 x \"worker\" (cpu 2, memory 1Gi each), 2 not placed"],
    );
    eprintln!("capacity:\n{text}");

    // 3. Fragmentation, asked about by the PodGroup's name (no pod has it).
    let e = wait_for_category(kubeconfig, "explain/frag", "fragmentation", Some("Fragmented")).await;
    assert_explained(
        &e,
        "PodGroup explain/frag",
        "PodGroup explain/frag",
        Some("work"),
        "fragmentation",
        "Fragmented",
        false,
    );
    assert!(e.get("scheduled_by_muster").is_none(), "a PodGroup has no schedulerName: {e:#}");
    assert_eq!(e["templates"][0]["missing"], 1, "{e:#}");
    assert!(message(&e).contains("fragmentation"), "{e:#}");
    let by_pod = explain_json(kubeconfig, "explain/frag-0").await.expect("its member is explained too");
    assert_explained(
        &by_pod,
        "Pod explain/frag-0",
        "PodGroup explain/frag",
        Some("work"),
        "fragmentation",
        "Fragmented",
        false,
    );
    let text = explain_text(kubeconfig, "explain/frag").await;
    assert_text_has(&text, &["PodGroup explain/frag", "fragmentation", "(Fragmented)"]);
    eprintln!("fragmentation:\n{text}");

    // 6. Admitted: bound, nothing missing.
    env.wait_all_bound(&fits).await;
    let e = wait_for_category(kubeconfig, "explain/fits-0", "admitted", Some("Admitted")).await;
    assert_explained(&e, "Pod explain/fits-0", "PodGroup explain/fits", Some("work"), "admitted", "Admitted", true);
    assert!(matches!(e["phase"].as_str(), Some("Inqueue" | "Running")), "{e:#}");
    assert_eq!(e["templates"][0]["missing"], 0, "{e:#}");
    let text = explain_text(kubeconfig, "explain/fits-0").await;
    assert_text_has(&text, &["admitted: yes"]);
    assert!(!text.contains("why:") && !text.contains("not placed"), "{text}");
    eprintln!("admitted:\n{text}");

    // 7. Gangs of one: explained from the pod and muster's Events on it.
    let e = wait_for_category(kubeconfig, "explain/solo", "admitted", Some("Admitted")).await;
    assert_explained(
        &e,
        "Pod explain/solo",
        "Pod explain/solo (a gang of one)",
        Some("work"),
        "admitted",
        "Admitted",
        true,
    );
    assert_eq!(e["scheduled_by_muster"], true, "{e:#}");
    assert_eq!(e["templates"], serde_json::json!([]), "{e:#}");
    let e = wait_for_category(kubeconfig, "explain/nowhere", "never-fits", Some("NeverFits")).await;
    assert_eq!(e["gang"], "Pod explain/nowhere (a gang of one)", "{e:#}");
    assert_eq!(e["admitted"], false, "{e:#}");
    assert!(message(&e).contains("no node matches"), "{e:#}");
    let text = explain_text(kubeconfig, "explain/nowhere").await;
    assert_text_has(&text, &["a gang of one", "never fit", "(NeverFits)"]);
    eprintln!("gang of one that never fits:\n{text}");

    // Missing objects and bad arguments: a non-zero exit and a message saying what is missing.
    let output = muster_cli(kubeconfig, &["explain", "explain/ghost", "-o", "json"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "explaining a missing pod succeeded: {}", describe_output(&output));
    assert!(stderr.contains("pod or PodGroup explain/ghost not found"), "{}", describe_output(&output));
    assert!(output.stdout.is_empty(), "{}", describe_output(&output));
    let output = muster_cli(kubeconfig, &["explain", "explain/frag", "--kind", "pod"]).await;
    assert!(!output.status.success(), "{}", describe_output(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("pod explain/frag not found"),
        "{}",
        describe_output(&output)
    );
    let output = muster_cli(kubeconfig, &["explain", "explain/a/b"]).await;
    assert!(!output.status.success(), "{}", describe_output(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("expected <namespace>/<name>"),
        "{}",
        describe_output(&output)
    );

    // Status: every queue with its weight, deserved share and allocation. Work holds the fillers (9 cpu), fits
    // (2) and solo (1); capped deserves no more than its capability.
    let rows = wait_for_status(kubeconfig, "queues work, capped and default with work's 12 cpu allocated", |rows| {
        let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
        ["capped", "default", "work"].iter().all(|q| names.contains(q))
            && cpu_of(row(rows, "work"), "allocated") == 12_000
    })
    .await;
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["capped", "default", "work"], "sorted by name, every queue listed: {rows:#?}");
    let (work, capped, default) = (row(&rows, "work"), row(&rows, "capped"), row(&rows, "default"));
    assert_eq!(work["weight"], 1, "{work:#}");
    assert_eq!(capped["weight"], 2, "{capped:#}");
    assert_eq!(default["weight"], 1, "{default:#}");
    assert_eq!(cpu_of(capped, "deserved"), 1_000, "capped deserves its capability: {capped:#}");
    assert_eq!(cpu_of(capped, "allocated"), 0, "{capped:#}");
    assert!(cpu_of(work, "deserved") >= cpu_of(work, "allocated"), "work borrows nothing: {work:#}");
    assert_eq!(work["state"], "Open", "{work:#}");
    // short and frag pending; the fillers, fits and solo admitted or running.
    assert_eq!(work["pending"], 2, "{work:#}");
    assert_eq!(work["inqueue"].as_i64().unwrap() + work["running"].as_i64().unwrap(), 4, "{work:#}");
    assert_eq!(capped["pending"], 1, "{capped:#}");
    let table = assert_status_table(kubeconfig, &["capped", "default", "work"]).await;
    eprintln!("status:\n{table}");

    // As a kubectl plugin: the same binary under the name kubectl looks for on the PATH.
    let plugin_dir = tempfile::tempdir().expect("a temporary directory");
    let plugin = plugin_dir.path().join("kubectl-muster");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_muster"), &plugin).expect("a symlink named kubectl-muster");
    let mut command = Command::new(&plugin);
    command.args(["status", "-o", "json", "--kubeconfig"]).arg(kubeconfig).env_remove("KUBECONFIG");
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("kubectl-muster runs");
    assert!(output.status.success(), "kubectl-muster status: {}", describe_output(&output));
    let via_plugin: Value = serde_json::from_slice(&output.stdout).expect("kubectl-muster status -o json is JSON");
    let names: Vec<&str> = via_plugin.as_array().unwrap().iter().filter_map(|q| q["name"].as_str()).collect();
    assert!(["capped", "default", "work"].iter().all(|q| names.contains(q)), "{via_plugin:#}");
    eprintln!("explain_tells_quota_capacity_fragmentation_and_admitted_apart: {:.1}s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------------------------
// A blocked head
// ---------------------------------------------------------------------------------------------------------------

/// One 4-cpu node; queue `line` runs `runner` (3 cpu). Its next gang, `head` (2 cpu), lacks capacity; after
/// `drainAfter` (1 s here) it drains: it holds the node's capacity as it frees and stops its queue (capacity /
/// Draining). `behind` (1 cpu), created after that, would fit the free cpu but waits behind it: blocked-head /
/// BehindHeadOfQueue, naming the head.
#[tokio::test(flavor = "multi_thread")]
async fn explain_names_the_head_a_gang_waits_behind() {
    let started = Instant::now();
    let ns = "explain-line";
    let config = MusterConfig::for_tests().drain_after("1s").status_interval("500ms");
    let env = MusterEnv::start(ns, &config, ExtenderMode::NodeNames).await;
    let kubeconfig = kubeconfig_of(&env);
    let kubeconfig = kubeconfig.as_path();
    env.control_plane.create_node(&pool_node("line-1", "line", "4")).await;
    env.create_queue(&queue("line", 1)).await;

    let runner = create_pool_gang(&env, "runner", "line", 1, "3", "line").await;
    env.wait_all_bound(&runner).await;
    create_pool_gang(&env, "head", "line", 1, "2", "line").await;
    let e = wait_for_category(kubeconfig, "explain-line/head-0", "capacity", Some("Draining")).await;
    assert_explained(
        &e,
        "Pod explain-line/head-0",
        "PodGroup explain-line/head",
        Some("line"),
        "capacity",
        "Draining",
        false,
    );
    let text = explain_text(kubeconfig, "explain-line/head-0").await;
    assert_text_has(&text, &["capacity", "(Draining)"]);
    eprintln!("the draining head:\n{text}");

    // 4. A blocked head.
    create_pool_gang(&env, "behind", "line", 1, "1", "line").await;
    let e = wait_for_category(kubeconfig, "explain-line/behind-0", "blocked-head", Some("BehindHeadOfQueue")).await;
    assert_explained(
        &e,
        "Pod explain-line/behind-0",
        "PodGroup explain-line/behind",
        Some("line"),
        "blocked-head",
        "BehindHeadOfQueue",
        false,
    );
    assert!(message(&e).contains("head"), "the message names the head: {e:#}");
    assert_eq!(e["queue_status"]["name"], "line", "{e:#}");
    let text = explain_text(kubeconfig, "explain-line/behind-0").await;
    assert_text_has(&text, &["behind", "head of its queue", "(BehindHeadOfQueue)", "queue:    line"]);
    eprintln!("behind the head:\n{text}");

    let rows = wait_for_status(kubeconfig, "queue line with 2 gangs pending", |rows| {
        rows.iter().any(|r| r["name"] == "line" && r["pending"] == 2)
    })
    .await;
    let line = row(&rows, "line");
    assert_eq!(line["weight"], 1, "{line:#}");
    assert_eq!(cpu_of(line, "allocated"), 3_000, "only runner holds capacity: {line:#}");
    assert_status_table(kubeconfig, &["line"]).await;
    eprintln!("explain_names_the_head_a_gang_waits_behind: {:.1}s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------------------------
// Reclaim in flight
// ---------------------------------------------------------------------------------------------------------------

/// Two 4-cpu nodes; queues gold and silver, weight 1:1. Silver borrows the whole cluster (two running gangs of
/// 2 x 2 cpu). Gold's gang (2 x 2 cpu) deserves half: muster evicts silver pods, and since no kubelet runs, the
/// evicted pods stay terminating and the reclaim stays in flight: reclaim / Reclaiming. Once a stand-in kubelet
/// finishes the deletions, gold's gang is admitted.
#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_reclaim_in_flight_until_the_evicted_pods_are_gone() {
    let started = Instant::now();
    let ns = "explain-reclaim";
    let config = MusterConfig::for_tests().min_runtime("0s").status_interval("500ms");
    let env = MusterEnv::start(ns, &config, ExtenderMode::NodeNames).await;
    let kubeconfig = kubeconfig_of(&env);
    let kubeconfig = kubeconfig.as_path();
    let client = env.client();
    for name in ["reclaim-1", "reclaim-2"] {
        env.control_plane.create_node(&pool_node(name, "reclaim", "4")).await;
    }
    for name in ["gold", "silver"] {
        env.create_queue(&queue(name, 1)).await;
    }
    let mut silver = create_pool_gang(&env, "silver-1", "silver", 2, "2", "reclaim").await;
    silver.extend(create_pool_gang(&env, "silver-2", "silver", 2, "2", "reclaim").await);
    env.wait_all_bound(&silver).await;
    for pod in &silver {
        set_pod_phase(&client, ns, pod, PodPhase::Running).await;
    }
    for gang in ["silver-1", "silver-2"] {
        let e = wait_explained(kubeconfig, &format!("{ns}/{gang}"), "admitted and Running", |e| {
            e["category"] == "admitted" && e["phase"] == "Running"
        })
        .await;
        assert_explained(
            &e,
            &format!("PodGroup {ns}/{gang}"),
            &format!("PodGroup {ns}/{gang}"),
            Some("silver"),
            "admitted",
            "Admitted",
            true,
        );
    }

    // 5. Reclaim in flight.
    let gold = create_pool_gang(&env, "gold-1", "gold", 2, "2", "reclaim").await;
    let e = wait_for_category(kubeconfig, "explain-reclaim/gold-1-0", "reclaim", Some("Reclaiming")).await;
    assert_explained(
        &e,
        "Pod explain-reclaim/gold-1-0",
        "PodGroup explain-reclaim/gold-1",
        Some("gold"),
        "reclaim",
        "Reclaiming",
        false,
    );
    assert!(message(&e).contains("reclaiming borrowed capacity"), "{e:#}");
    assert_eq!(e["templates"][0]["missing"], 2, "{e:#}");
    let text = explain_text(kubeconfig, "explain-reclaim/gold-1-0").await;
    assert_text_has(&text, &["reclaim in flight", "(Reclaiming)", "queue:    gold"]);
    eprintln!("reclaim in flight:\n{text}");

    // Gold deserves half the cluster. Pods being evicted no longer count as allocated: silver is back at its
    // share, one gang (2 x 2 cpu) still running, although the terminating pods still occupy the nodes.
    let rows = wait_for_status(kubeconfig, "gold and silver deserving 4 cpu each, silver holding 4", |rows| {
        ["gold", "silver"].iter().all(|q| rows.iter().any(|r| r["name"] == *q && cpu_of(r, "deserved") == 4_000))
            && cpu_of(row(rows, "silver"), "allocated") == 4_000
    })
    .await;
    let gold_row = row(&rows, "gold");
    assert_eq!(cpu_of(gold_row, "allocated"), 0, "{gold_row:#}");
    assert_eq!(gold_row["pending"], 1, "{gold_row:#}");
    for gang in ["silver-1", "silver-2"] {
        let victim = explain_json(kubeconfig, &format!("{ns}/{gang}")).await.expect("silver's gangs are explained");
        eprintln!("{gang} during the reclaim: {victim}");
    }
    // The victim (the younger gang) waits for its evicted members to go, and says so: reclaim, not capacity.
    let victim = wait_for_category(kubeconfig, &format!("{ns}/silver-2"), "reclaim", Some("MembersTerminating")).await;
    assert_eq!(victim["admitted"], false, "{victim:#}");
    let table = assert_status_table(kubeconfig, &["gold", "silver"]).await;
    eprintln!("status during the reclaim:\n{table}");

    // The kubelet finishes the evictions: the reclaim completes and gold is admitted.
    let kubelet = TerminatingPodKubelet::start(&client, ns);
    env.wait_all_bound(&gold).await;
    let e = wait_for_category(kubeconfig, "explain-reclaim/gold-1-0", "admitted", Some("Admitted")).await;
    assert_eq!(e["admitted"], true, "{e:#}");
    let evicted = kubelet.deleted();
    assert!(!evicted.is_empty() && evicted.iter().all(|p| silver.contains(p)), "evicted: {evicted:?}");
    eprintln!("evicted for gold: {evicted:?}");
    eprintln!(
        "explain_shows_reclaim_in_flight_until_the_evicted_pods_are_gone: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
