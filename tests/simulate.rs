//! `muster simulate`: the default scenario, the per-pod baseline, determinism, fairness, and the CLI surface.

use std::process::Command;

use muster::sim::{Mode, Scenario, simulate};

fn muster() -> Command {
    Command::new(env!("CARGO_BIN_EXE_muster"))
}

#[test]
fn gang_admission_never_partially_starts_while_per_pod_deadlocks() {
    let scenario = Scenario::default_scenario();
    let gang = simulate(&scenario, Mode::Gang).unwrap();
    let per_pod = simulate(&scenario, Mode::PerPod).unwrap();
    assert_eq!(gang.partially_started_gangs, 0, "{}", gang.to_table());
    assert_eq!(gang.deadlocked_gangs, 0, "{}", gang.to_table());
    assert_eq!(gang.stranded_cpu_core_hours, 0.0);
    assert_eq!(gang.gangs_completed, gang.gangs_submitted, "every application finishes under muster");
    assert!(per_pod.partially_started_gangs > 0, "{}", per_pod.to_table());
    assert!(per_pod.deadlocked_gangs > 0, "{}", per_pod.to_table());
    assert!(per_pod.stranded_cpu_core_hours > 0.0);
    assert_eq!(per_pod.evictions, 0, "the baseline has no reclaim");
}

#[test]
fn the_same_scenario_and_seed_give_the_same_report() {
    let scenario = Scenario::default_scenario();
    let a = simulate(&scenario, Mode::Gang).unwrap().to_json();
    let b = simulate(&scenario, Mode::Gang).unwrap().to_json();
    assert_eq!(a, b);
    let mut reseeded = scenario.clone();
    reseeded.seed += 1;
    assert_ne!(simulate(&reseeded, Mode::Gang).unwrap().to_json(), a, "the seed drives the trace");
}

/// Two queues, weights 2:1, both with far more demand than the cluster for hours: mean shares follow 2:1.
#[test]
fn weighted_queues_converge_to_their_weights_under_contention() {
    let text = r#"
name: two-to-one
seed: 3
pools:
  - {name: n, count: 8, allocatable: {cpu: "16", memory: 64Gi}}
queues:
  - {name: heavy, weight: 2}
  - {name: light, weight: 1}
workload:
  generators:
    - queue: heavy
      count: 300
      start: 0m
      end: 6h
      driver: {resources: {cpu: "1", memory: 2Gi}}
      executors: [{resources: {cpu: "2", memory: 4Gi}}]
      minExecutors: [2, 6]
      runTime: [10m, 30m]
    - queue: light
      count: 300
      start: 0m
      end: 6h
      driver: {resources: {cpu: "1", memory: 2Gi}}
      executors: [{resources: {cpu: "2", memory: 4Gi}}]
      minExecutors: [2, 6]
      runTime: [10m, 30m]
settings: {drainLimit: 1h}
"#;
    let scenario = Scenario::parse(text, "two-to-one").unwrap();
    let report = simulate(&scenario, Mode::Gang).unwrap();
    let share = |name: &str| report.queues.iter().find(|q| q.name == name).unwrap().mean_share;
    let ratio = share("heavy") / share("light");
    assert!(
        (1.8..=2.2).contains(&ratio),
        "shares {:.3} / {:.3} = {ratio:.2}, want 2 +- 10%\n{}",
        share("heavy"),
        share("light"),
        report.to_table()
    );
}

#[test]
fn the_cli_prints_a_table_json_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("shares.svg");
    let out = muster().args(["simulate", "--plot"]).arg(&plot).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    for needle in ["data-engineering", "analytics", "ml", "partially started", "deadlocked", "utilisation"] {
        assert!(table.contains(needle), "table lacks {needle:?}:\n{table}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.contains("data-engineering"));

    let out = muster().args(["simulate", "--json", "--baseline", "per-pod"]).output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["mode"], "per-pod");
    for field in [
        "utilisation_cpu",
        "utilisation_memory",
        "partially_started_gangs",
        "deadlocked_gangs",
        "stranded_cpu_core_hours",
        "evictions",
        "gangs_submitted",
        "gangs_completed",
    ] {
        assert!(json[field].is_number(), "missing {field}");
    }
    for field in [
        "name",
        "weight",
        "deserved_share",
        "mean_share",
        "gangs_admitted",
        "admission_wait_p50_s",
        "admission_wait_p99_s",
    ] {
        assert!(json["queues"][0].get(field).is_some(), "queue report lacks {field}");
    }
}

#[test]
fn a_malformed_scenario_is_rejected_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "name: broken\npools:\n  - name: p\n    count: 3\n    allocatable: {cpu: \"lots\"}\nqueues: []\nworkload: {}\n",
    )
    .unwrap();
    let out = muster().arg("simulate").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("broken.yaml") && err.contains("line 5") && err.contains("\"lots\""), "{err}");
    let out = muster().args(["simulate", "/nonexistent/scenario.yaml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("/nonexistent/scenario.yaml"));
}

/// `Σ count × pricePerHour` over the default scenario's pools.
fn default_dollars_per_hour() -> f64 {
    Scenario::default_scenario().pools.iter().map(|p| f64::from(p.count) * p.price_per_hour.unwrap()).sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn with_prices_queues_and_idle_add_up_to_the_total_and_only_the_baseline_strands_cost() {
    let scenario = Scenario::default_scenario();
    assert!(scenario.priced().unwrap(), "the default scenario carries prices");
    for mode in [Mode::Gang, Mode::PerPod] {
        let r = simulate(&scenario, mode).unwrap();
        let table = r.to_table();
        let total = r.cost_total.unwrap();
        assert!(close(total, default_dollars_per_hour() * r.simulated_hours), "{total} != Σ count × price × hours");
        let queues: f64 = r.queues.iter().map(|q| q.cost.unwrap()).sum();
        let idle = r.cost_idle.unwrap();
        assert!(close(queues + idle, total), "queues {queues} + idle {idle} != total {total}\n{table}");
        assert!(r.queues.iter().all(|q| q.cost.unwrap() > 0.0) && idle > 0.0, "{table}");
        let stranded = r.cost_stranded.unwrap();
        assert!(stranded <= queues, "stranded cost is part of the queues' cost\n{table}");
        match mode {
            Mode::Gang => assert_eq!(stranded, 0.0, "muster never holds capacity for a partial gang\n{table}"),
            Mode::PerPod => assert!(stranded > 0.0, "{table}"),
        }
        assert!(table.contains("cost (total / idle)") && table.contains(&format!("${total:.2}")), "{table}");
    }
}

fn simulate_json(args: &[&str]) -> serde_json::Value {
    let out = muster().arg("simulate").arg("--json").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn costs(json: &serde_json::Value) -> (f64, Vec<f64>, f64, f64) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    let queues = json["queues"].as_array().unwrap().iter().map(|q| f(&q["cost"])).collect();
    (f(&json["cost_total"]), queues, f(&json["cost_idle"]), f(&json["cost_stranded"]))
}

#[test]
fn the_cli_reports_cost_and_price_overrides_scale_it() {
    let base = simulate_json(&["--baseline", "per-pod"]);
    let (total, queues, idle, stranded) = costs(&base);
    let hours = base["simulated_hours"].as_f64().unwrap();
    assert!(close(total, default_dollars_per_hour() * hours));
    assert!(close(queues.iter().sum::<f64>() + idle, total));
    assert!(stranded > 0.0);
    assert_eq!(costs(&simulate_json(&[])).3, 0.0, "muster's stranded cost");

    // Every price doubled: every cost doubles, and nothing else changes.
    let doubled = simulate_json(&["--baseline", "per-pod", "--price", "on-demand=1.536", "--price", "spot=1.1"]);
    let (total2, queues2, idle2, stranded2) = costs(&doubled);
    assert!(close(total2, 2.0 * total) && close(idle2, 2.0 * idle) && close(stranded2, 2.0 * stranded));
    assert!(queues.iter().zip(&queues2).all(|(a, b)| close(2.0 * a, *b)), "{queues:?} {queues2:?}");
    assert_eq!(doubled["partially_started_gangs"], base["partially_started_gangs"]);

    // One pool repriced: the total moves by that pool's node-hours times the difference.
    let (total3, ..) = costs(&simulate_json(&["--baseline", "per-pod", "--price", "spot=0.75"]));
    assert!(close(total3 - total, 16.0 * (0.75 - 0.55) * hours), "{total3} - {total}");
}

const UNPRICED: &str = r#"
name: unpriced
pools:
  - {name: small, count: 2, allocatable: {cpu: "8", memory: 32Gi}}
  - {name: large, count: 2, allocatable: {cpu: "32", memory: 128Gi}}
queues: [{name: a}, {name: b, weight: 2}]
workload:
  generators:
    - {queue: a, count: 20, start: 0m, end: 1h, driver: {resources: {cpu: "1", memory: 2Gi}},
       executors: [{resources: {cpu: "2", memory: 4Gi}}], minExecutors: [1, 4], runTime: [5m, 20m]}
    - {queue: b, count: 20, start: 0m, end: 1h, driver: {resources: {cpu: "1", memory: 2Gi}},
       executors: [{resources: {cpu: "4", memory: 30Gi}}], minExecutors: [1, 4], runTime: [5m, 20m]}
"#;

#[test]
fn without_prices_no_cost_is_reported_and_prices_can_come_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unpriced.yaml");
    std::fs::write(&path, UNPRICED).unwrap();
    let path = path.to_str().unwrap();
    let json = simulate_json(&[path]);
    for field in ["cost_total", "cost_idle", "cost_stranded"] {
        assert!(json.get(field).is_none(), "{field} without prices");
    }
    assert!(json["queues"][0].get("cost").is_none());
    let out = muster().args(["simulate", path]).output().unwrap();
    assert!(!String::from_utf8(out.stdout).unwrap().contains("cost"));

    // Priced on the command line; memory-heavy and cpu-heavy pods share the large nodes, and the attribution
    // still never exceeds what the nodes cost.
    let json = simulate_json(&[path, "--price", "small=0.4", "--price", "large=1.5"]);
    let (total, queues, idle, stranded) = costs(&json);
    assert!(close(total, (2.0 * 0.4 + 2.0 * 1.5) * json["simulated_hours"].as_f64().unwrap()));
    assert!(close(queues.iter().sum::<f64>() + idle, total) && idle >= 0.0 && stranded == 0.0, "{json}");
    assert!(queues.iter().all(|&q| q > 0.0), "{queues:?}");

    let out = muster().args(["simulate", path, "--price", "small=0.4"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("\"large\"") && err.contains("price every pool or none"), "{err}");
}

#[test]
fn a_bad_price_is_rejected_naming_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("negative.yaml");
    std::fs::write(
        &path,
        UNPRICED
            .replace("count: 2, allocatable: {cpu: \"8\"", "count: 2, pricePerHour: -0.4, allocatable: {cpu: \"8\"")
            .replace("count: 2, allocatable: {cpu: \"32\"", "count: 2, pricePerHour: 1.5, allocatable: {cpu: \"32\""),
    )
    .unwrap();
    let out = muster().arg("simulate").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("negative.yaml") && err.contains("\"small\"") && err.contains("pricePerHour -0.4"), "{err}");

    for (arg, needles) in [
        ("spot=-1", &["\"spot\"", "finite number >= 0"][..]),
        ("spot=NaN", &["\"spot\"", "finite number >= 0"]),
        ("spot=cheap", &["\"spot\"", "\"cheap\""]),
        ("spot", &["POOL=DOLLARS_PER_HOUR"]),
        ("gpu=2.5", &["\"gpu\"", "\"on-demand\", \"spot\""]),
    ] {
        let out = muster().args(["simulate", "--price", arg]).output().unwrap();
        assert!(!out.status.success(), "--price {arg} accepted");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(needles.iter().all(|n| err.contains(n)), "--price {arg}: {err}");
    }
}
