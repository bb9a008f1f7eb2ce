//! The monitoring the chart ships (`deploy/helm/muster/files/`): the Prometheus rules (`alerts.yaml`), their unit
//! tests (`alerts_test.yaml`) and the Grafana dashboard (`dashboard.json`).
//!
//! - the rules pass `promtool check rules` and their unit tests pass `promtool test rules`; every alert follows the
//!   conventions (severity, summary, description, a runbook anchor in `docs/troubleshooting.md`) and has a case
//!   where it fires and one where it must not;
//! - the dashboard is a well-formed Grafana dashboard (unique panel ids, titles, targets with queries that
//!   Prometheus parses, no overlapping panels, only the template variables it defines);
//! - every `muster_*` metric either file names is one muster exports.
//!
//! promtool is built from its pinned Go module by `tests/controlplane/ops-tools.sh` (cached outside the checkout;
//! located by `tests/support/ops_tools.rs`). As with the control plane, nothing is skipped: if promtool cannot be
//! built, these tests fail, locally and under CI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod support;

use support::ops_tools;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_dir() -> PathBuf {
    repo().join("deploy/helm/muster/files")
}

fn read(name: &str) -> String {
    let path = files_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(name: &str) -> Value {
    serde_norway::from_str(&read(name)).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboard.json")).unwrap_or_else(|e| panic!("dashboard.json is not valid JSON: {e}"))
}

fn run_promtool(args: &[&str]) -> Output {
    let promtool = ops_tools::promtool_bin();
    Command::new(&promtool)
        .args(args)
        .current_dir(files_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()))
}

fn assert_success(what: &str, output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", output.status);
    println!("{what}:\n{stdout}{stderr}");
}

// ----- the rules -----

/// Every rule of alerts.yaml, with its group's name.
fn rules() -> Vec<(String, Value)> {
    let file = yaml("alerts.yaml");
    let groups = file["groups"].as_array().expect("alerts.yaml has a list of groups");
    let mut rules = Vec::new();
    for group in groups {
        let name = group["name"].as_str().expect("every group has a name").to_string();
        for rule in group["rules"].as_array().unwrap_or_else(|| panic!("group {name} has a list of rules")) {
            rules.push((name.clone(), rule.clone()));
        }
    }
    rules
}

fn alert_names() -> BTreeSet<String> {
    rules().iter().filter_map(|(_, r)| r["alert"].as_str().map(str::to_string)).collect()
}

#[test]
fn promtool_checks_the_rules() {
    let output = run_promtool(&["check", "rules", "--lint=all", "--lint-fatal", "alerts.yaml"]);
    assert_success("promtool check rules alerts.yaml", &output);
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let output = run_promtool(&["test", "rules", "alerts_test.yaml"]);
    assert_success("promtool test rules alerts_test.yaml", &output);
}

#[test]
fn every_alert_has_severity_summary_description_and_runbook() {
    let mut problems = Vec::new();
    let runbooks = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/troubleshooting.md"))
        .expect("docs/troubleshooting.md is readable");
    let alerts: Vec<_> = rules().into_iter().filter(|(_, r)| r["alert"].is_string()).collect();
    assert!(!alerts.is_empty(), "alerts.yaml defines no alert");
    for (_, rule) in &alerts {
        let name = rule["alert"].as_str().unwrap();
        if !name.starts_with("Muster") {
            problems.push(format!("{name}: alert names start with Muster"));
        }
        match rule["labels"]["severity"].as_str() {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!("{name}: severity must be critical, warning or info, is {other:?}")),
        }
        for key in ["summary", "description"] {
            if rule["annotations"][key].as_str().is_none_or(|s| s.trim().is_empty()) {
                problems.push(format!("{name}: annotation {key} missing"));
            }
        }
        let runbook = format!("docs/troubleshooting.md#{}", name.to_lowercase());
        // The anchor GitHub makes for the heading `### <AlertName>`.
        if !runbooks.lines().any(|l| l.trim_start_matches('#').trim() == name && l.starts_with('#')) {
            problems.push(format!("{name}: docs/troubleshooting.md has no section headed {name}"));
        }
        if rule["annotations"]["runbook_url"].as_str() != Some(runbook.as_str()) {
            problems.push(format!(
                "{name}: runbook_url must be {runbook}, is {:?}",
                rule["annotations"]["runbook_url"].as_str()
            ));
        }
    }
    assert!(problems.is_empty(), "alert conventions broken:\n{}", problems.join("\n"));
}

#[test]
fn recording_rules_are_named_and_used_consistently() {
    let rules = rules();
    let recorded: BTreeSet<String> =
        rules.iter().filter_map(|(_, r)| r["record"].as_str().map(str::to_string)).collect();
    let mut problems = Vec::new();
    for name in &recorded {
        // level:metric:operations, with muster as the level.
        let parts: Vec<&str> = name.split(':').collect();
        if parts.len() != 3 || parts[0] != "muster" || parts.iter().any(|p| p.is_empty()) {
            problems.push(format!("recording rule {name} is not named muster:<metric>:<operations>"));
        }
    }
    for (group, rule) in &rules {
        let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("a rule of group {group} has no expr"));
        for token in tokens(expr).filter(|t| t.contains(':')) {
            if !recorded.contains(token) {
                problems.push(format!("{group}: {token} is used but no rule records it"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let alerts = alert_names();
    let tests = yaml("alerts_test.yaml");
    let files: Vec<&str> =
        tests["rule_files"].as_array().expect("rule_files").iter().filter_map(Value::as_str).collect();
    assert_eq!(files, ["alerts.yaml"], "alerts_test.yaml must test alerts.yaml");
    let mut fires: BTreeMap<String, usize> = BTreeMap::new();
    let mut quiet: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for group in tests["tests"].as_array().expect("alerts_test.yaml has a list of tests") {
        let group_name = group["name"].as_str().unwrap_or("(unnamed)");
        for case in group["alert_rule_test"].as_array().into_iter().flatten() {
            let alert = case["alertname"].as_str().expect("every alert_rule_test names its alert");
            if !alerts.contains(alert) {
                // promtool passes an expectation of no alerts for an alert that does not exist.
                problems.push(format!("test {group_name:?} checks {alert}, which alerts.yaml does not define"));
            }
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            *(if expected > 0 { &mut fires } else { &mut quiet }).entry(alert.to_string()).or_default() += 1;
        }
    }
    for alert in &alerts {
        if !fires.contains_key(alert) {
            problems.push(format!("{alert} has no unit test in which it fires"));
        }
        if !quiet.contains_key(alert) {
            problems.push(format!("{alert} has no unit test in which it must not fire"));
        }
    }
    assert!(problems.is_empty(), "alerts_test.yaml:\n{}", problems.join("\n"));
}

// ----- the dashboard -----

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("the dashboard has a list of panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every query of the dashboard: (panel title, refId, expr).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let ref_id = target["refId"].as_str().unwrap_or_default();
            let expr = target["expr"].as_str().unwrap_or_default();
            queries.push((title.to_string(), ref_id.to_string(), expr.to_string()));
        }
    }
    queries
}

#[test]
fn the_dashboard_is_well_formed() {
    let dashboard = dashboard();
    let mut problems = Vec::new();
    assert_eq!(dashboard["schemaVersion"], 39, "schemaVersion");
    for key in ["title", "uid"] {
        if dashboard[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("the dashboard has no {key}"));
        }
    }

    // Template variables: a Prometheus data source and the queues.
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    match variable("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        other => problems.push(format!("variable datasource must be a prometheus data source, is {other:?}")),
    }
    match variable("queue") {
        Some(v)
            if v["type"] == "query"
                && v["query"]["query"] == "label_values(muster_queue_weight, queue)"
                && v["datasource"]["uid"] == "${datasource}" => {}
        other => problems.push(format!(
            "variable queue must query label_values(muster_queue_weight, queue) on ${{datasource}}, is {other:?}"
        )),
    }
    let defined: BTreeSet<String> = variables.iter().filter_map(|v| v["name"].as_str().map(str::to_string)).collect();

    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        let kind = panel["type"].as_str().unwrap_or_default();
        match panel["id"].as_i64() {
            Some(id) if ids.insert(id) => {}
            Some(id) => problems.push(format!("panel {title:?}: id {id} is not unique")),
            None => problems.push(format!("panel {title:?} has no numeric id")),
        }
        if title.trim().is_empty() {
            problems.push(format!("panel {} has no title", panel["id"]));
        }
        let pos = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| pos[k].as_i64().unwrap_or(-1));
        if x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > 24 {
            problems.push(format!("panel {title:?}: gridPos {pos} is outside the 24-column grid"));
        }
        for (other, other_box) in &boxes {
            let [ox, oy, ow, oh] = *other_box;
            if x < ox + ow && ox < x + w && y < oy + oh && oy < y + h {
                problems.push(format!("panel {title:?} overlaps panel {other:?}"));
            }
        }
        boxes.push((title.to_string(), [x, y, w, h]));
        if kind == "row" {
            continue;
        }
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("panel {title:?} does not use the datasource variable"));
        }
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title:?} has no targets"));
        }
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            let ref_id = target["refId"].as_str().unwrap_or_default();
            if ref_id.is_empty() || !ref_ids.insert(ref_id) {
                problems.push(format!("panel {title:?}: refId {ref_id:?} missing or repeated"));
            }
            let expr = target["expr"].as_str().unwrap_or_default();
            if expr.trim().is_empty() {
                problems.push(format!("panel {title:?} target {ref_id}: empty expr"));
            }
            for name in variable_references(expr) {
                if !defined.contains(&name) && !GRAFANA_BUILTINS.contains(&name.as_str()) {
                    problems.push(format!("panel {title:?} target {ref_id}: ${name} is not a variable"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "dashboard.json:\n{}", problems.join("\n"));
}

const GRAFANA_BUILTINS: [&str; 3] = ["__rate_interval", "__range", "__interval"];

/// The names of `$name` and `${name}` in a query.
fn variable_references(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let end = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
        names.push(body[..end].to_string());
    }
    names
}

/// Prometheus parses every query of the dashboard: each becomes a recording rule (Grafana's variables replaced by
/// what Grafana would put there) and `promtool check rules` checks them.
#[test]
fn prometheus_parses_every_dashboard_query() {
    let queries = dashboard_queries(&dashboard());
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, ref_id, expr))| {
            let expr = expr
                .replace("$__rate_interval", "2m")
                .replace("$__range", "6h")
                .replace("$__interval", "30s")
                .replace("${queue}", ".*")
                .replace("$queue", ".*");
            serde_json::json!({"record": format!("dashboard:query_{i}_{ref_id}:check"), "expr": expr})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&path, serde_norway::to_string(&file).expect("YAML")).expect("write the queries");
    let output = run_promtool(&["check", "rules", "--lint=none", path.to_str().expect("UTF-8 path")]);
    if !output.status.success() {
        let listing: Vec<String> = queries
            .iter()
            .enumerate()
            .map(|(i, (title, ref_id, expr))| format!("{i} {title:?} {ref_id}: {expr}"))
            .collect();
        panic!(
            "promtool rejects dashboard queries:\n{}{}\nqueries (rule index, panel, refId):\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            listing.join("\n")
        );
    }
}

// ----- metric names -----

/// Maximal runs of `[A-Za-z0-9_:]`: metric names, recording rule names, label names, words.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).filter(|t| !t.is_empty())
}

/// The `muster_*` metric names a text mentions (recording rule names, which contain `:`, excluded).
fn metric_names_in(text: &str) -> BTreeSet<String> {
    tokens(text).filter(|t| t.starts_with("muster_") && !t.contains(':')).map(str::to_string).collect()
}

#[test]
fn every_metric_the_rules_and_dashboard_use_is_exported() {
    let exported: BTreeSet<String> = muster::metrics::Metrics::new().names().iter().map(ToString::to_string).collect();
    let is_exported = |name: &str| {
        exported.contains(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(|base| exported.contains(base)))
    };
    let mut missing: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut used = 0;
    for file in ["alerts.yaml", "dashboard.json"] {
        let names = metric_names_in(&read(file));
        assert!(!names.is_empty(), "{file} names no muster_ metric");
        used += names.len();
        for name in names {
            if !is_exported(&name) {
                missing.entry(name).or_default().push(file);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics used but not exported by muster (Metrics::names() lists {} names; {used} uses checked):\n{}",
        exported.len(),
        missing
            .iter()
            .map(|(name, files)| format!("  {name} (in {})", files.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_token_scanner_finds_metric_names_only() {
    let text = "sum without (pod) (rate(muster_gang_wait_seconds_bucket{queue=~\"$queue\"}[1h])) / \
                muster:extender_requests_5xx:ratio_rate5m and muster_leader==1 # muster-system muster_ready=0";
    let names: Vec<String> = metric_names_in(text).into_iter().collect();
    assert_eq!(names, ["muster_gang_wait_seconds_bucket", "muster_leader", "muster_ready"]);
    assert_eq!(
        variable_references("x{q=~\"$queue\"}[$__rate_interval] ${datasource}"),
        ["queue", "__rate_interval", "datasource"]
    );
}
