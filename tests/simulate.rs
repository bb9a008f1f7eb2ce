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
