//! The index fed with objects, no API server: membership, waiting reasons, Spark automatic gangs, restore,
//! malformed objects.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use super::*;
use crate::core::{GangPhase, NodeSet, Policy};

fn index() -> Index {
    let mut i = Index::new(IndexConfig { scheduler_name: "muster".into(), default_queue: "default".into() });
    i.set_now(1_000);
    i
}

fn node(name: &str, cpu: &str, memory: &str) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
        }))
        .unwrap(),
    )
}

fn pod(name: &str, uid: &str, cpu: &str, labels: serde_json::Value, annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": "1",
                     "labels": labels, "annotations": annotations,
                     "creationTimestamp": "2026-11-26T10:00:00Z"},
        "spec": {"schedulerName": "muster",
                 "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}
    }))
    .unwrap()
}

fn podgroup(name: &str, templates: serde_json::Value) -> Arc<PodGroup> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "scheduling.muster.dev/v1alpha1", "kind": "PodGroup",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("pg-{name}"), "generation": 1,
                         "creationTimestamp": "2026-11-26T09:00:00Z"},
            "spec": {"memberTemplates": templates}
        }))
        .unwrap(),
    )
}

fn key(name: &str) -> GangKey {
    GangKey::PodGroup { namespace: "ns".into(), name: name.into() }
}

#[test]
fn a_pod_waits_for_its_podgroup_then_joins_it() {
    let mut i = index();
    i.apply_node(node("n1", "8", "32Gi"));
    i.apply_pod(Arc::new(pod("w-0", "u0", "1", json!({"muster.dev/pod-group": "job"}), json!({}))));
    let entry = i.pod("u0").unwrap();
    assert!(entry.waiting.as_deref().unwrap().contains("PodGroup ns/job does not exist yet"), "{entry:?}");
    assert!(entry.id.is_none());

    i.apply_podgroup(podgroup(
        "job",
        json!([{"name": "w", "minMember": 2, "resources": {"cpu": "1", "memory": "1Gi"}}]),
    ));
    let gang = i.gang(&key("job")).unwrap();
    let id = gang.id.expect("gang in the core");
    assert!(i.pod("u0").unwrap().waiting.is_none());
    assert_eq!(i.core.gang(id).unwrap().pods.len(), 1, "the waiting pod joined");
    let writes = i.take_writes();
    assert!(
        writes
            .iter()
            .any(|r| matches!(r, ClusterWrite::CreateQueue(q) if q.metadata.name.as_deref() == Some("default")))
    );

    // Admission reserves both members; the pod is directed to its slot.
    let out = i.core.run_cycle(2_000, &Policy::default());
    assert_eq!(out.admitted, vec![id]);
    let all = NodeSet::new(i.core.nodes().map(|(n, _)| n).collect::<Vec<_>>());
    let pod_id = i.pod("u0").unwrap().id.unwrap();
    assert!(i.core.place(pod_id, &all, 2_001).is_ok());
}

#[test]
fn pods_without_a_group_are_gangs_of_one_in_their_queue() {
    let mut i = index();
    i.apply_node(node("n1", "8", "32Gi"));
    i.apply_queue(Arc::new(
        serde_json::from_value(json!({"metadata": {"name": "team"}, "spec": {"weight": 3}})).unwrap(),
    ));
    i.apply_pod(Arc::new(pod("solo", "u1", "500m", json!({}), json!({"muster.dev/queue": "team"}))));
    let entry = i.pod("u1").unwrap();
    let gang = i.gang(entry.gang.as_ref().unwrap()).unwrap();
    let core_gang = i.core.gang(gang.id.unwrap()).unwrap();
    assert_eq!(i.core.queue(core_gang.spec.queue).unwrap().spec.name, "team");
    assert_eq!(core_gang.spec.templates[0].min, 1);
    // The pod goes: so does its gang.
    i.delete_pod("u1");
    assert_eq!(i.core.gang_count(), 0);
}

/// A cluster-mode driver pod as spark-submit makes it: it mounts its configuration (and an executor template).
fn mounted_driver(uid: &str) -> Pod {
    let labels = json!({"spark-app-selector": "spark-conf1", "spark-role": "driver"});
    let mut driver = pod("conf-driver", uid, "1", labels, json!({}));
    driver.spec.as_mut().unwrap().volumes = Some(
        serde_json::from_value(json!([
            {"name": "spark-conf-volume-driver", "configMap": {"name": "spark-drv-1-conf-map"}},
            {"name": "pod-template-volume", "configMap": {"name": "conf-driver-podspec-conf-map"}}
        ]))
        .unwrap(),
    );
    driver
}

fn fetches(i: &mut Index) -> Vec<(String, SparkConfSources)> {
    i.take_writes()
        .into_iter()
        .filter_map(|w| match w {
            ClusterWrite::FetchSparkConf { driver_uid, sources, .. } => Some((driver_uid, sources)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_spark_driver_waits_for_its_configuration_and_becomes_the_gang_it_describes() {
    let mut i = index();
    i.apply_node(node("n1", "16", "64Gi"));
    i.apply_pod(Arc::new(mounted_driver("d1")));
    let asked = fetches(&mut i);
    assert_eq!(asked.len(), 1, "one read of the configuration");
    assert_eq!(asked[0].1.properties, "spark-drv-1-conf-map");
    assert_eq!(asked[0].1.pod_template.as_deref(), Some("conf-driver-podspec-conf-map"));
    let waiting = i.pod("d1").unwrap().waiting.clone().unwrap();
    assert!(waiting.contains("waiting for muster to read the Spark configuration"), "{waiting}");
    let k = key(&convert::spark_pod_group_name("spark-conf1"));
    assert!(i.gang(&k).and_then(|g| g.id).is_none(), "no gang of the driver alone meanwhile");

    // The driver changes while the read is in flight: no second read.
    let mut again = mounted_driver("d1");
    again.metadata.resource_version = Some("2".into());
    i.apply_pod(Arc::new(again));
    assert!(fetches(&mut i).is_empty());

    let conf = SparkConfFiles {
        properties: "spark.executor.instances=3\nspark.executor.cores=2\nspark.executor.memory=2g\n".into(),
        pod_template: Some("spec:\n  nodeSelector: {pool: spot}\n".into()),
        operator_executor: None,
    };
    i.apply_spark_conf("d1", Ok(conf));
    let gang = i.gang(&k).expect("the automatic gang");
    let core_gang = i.core.gang(gang.id.unwrap()).unwrap();
    let shapes: Vec<_> = core_gang.spec.templates.iter().map(|t| (t.name.as_str(), t.min, t.max)).collect();
    assert_eq!(shapes, vec![("driver", 1, 1), ("executor", 3, 3)]);
    let executor = &core_gang.spec.templates[1];
    assert_eq!(executor.request.0[0], 2000, "cpu");
    assert_eq!(executor.placement.node_selector.get("pool").map(String::as_str), Some("spot"));
    assert!(i.pod("d1").unwrap().waiting.is_none());
    let pg = i
        .take_writes()
        .into_iter()
        .find_map(|w| match w {
            ClusterWrite::CreatePodGroup(pg) => Some(pg),
            _ => None,
        })
        .expect("the automatic PodGroup");
    let t = &pg.spec.member_templates[1];
    assert_eq!(t.resources["memory"].0, "2432Mi", "2g + 384m");
    assert_eq!(t.node_selector.get("pool").map(String::as_str), Some("spot"));
    // The driver's labels name its PodGroup too (cost labels, selectors).
    assert_eq!(pg.metadata.labels, mounted_driver("d1").metadata.labels);
    assert!(pg.metadata.labels.as_ref().is_some_and(|l| l.contains_key("spark-app-selector")), "{:?}", pg.metadata);
}

#[test]
fn a_resource_only_the_spark_configuration_names_is_counted_on_nodes() {
    let mut i = index();
    let fpga_node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", "example.com/fpga": "4"}}
    }))
    .unwrap();
    i.apply_node(Arc::new(fpga_node));
    i.apply_pod(Arc::new(mounted_driver("d1")));
    assert_eq!(fetches(&mut i).len(), 1);
    let properties = "spark.executor.instances=1\nspark.executor.resource.fpga.amount=1\n\
                      spark.executor.resource.fpga.vendor=example.com\n";
    i.apply_spark_conf(
        "d1",
        Ok(SparkConfFiles { properties: properties.into(), pod_template: None, operator_executor: None }),
    );
    let slot = i.core.resources.slot("example.com/fpga").expect("interned from the configuration");
    let n1 = i.core.node_id("n1").unwrap();
    assert_eq!(i.core.node(n1).unwrap().spec.allocatable.0[slot], 4, "nodes re-read with the new resource");
}

#[test]
fn a_spark_driver_whose_configuration_is_unusable_waits_with_the_reason_and_an_event() {
    let mut i = index();
    i.apply_node(node("n1", "16", "64Gi"));
    i.apply_pod(Arc::new(mounted_driver("d1")));
    assert_eq!(fetches(&mut i).len(), 1);
    i.apply_spark_conf("d1", Err("ConfigMap spark/spark-drv-1-conf-map does not exist".into()));
    let waiting = i.pod("d1").unwrap().waiting.clone().unwrap();
    assert!(waiting.contains("cannot be read: ConfigMap spark/spark-drv-1-conf-map does not exist"), "{waiting}");
    let writes = i.take_writes();
    let shown = writes.iter().find_map(|w| match w {
        ClusterWrite::CreatePodGroup(pg) => Some(pg.clone()),
        _ => None,
    });
    let shown = shown.expect("the automatic PodGroup is created to show the reason");
    assert!(shown.spec.member_templates.is_empty() && shown.spec.min_member.is_none(), "{:?}", shown.spec);
    // Its echo from the watch, and later updates of the driver, change nothing.
    i.apply_podgroup(Arc::new(PodGroup {
        metadata: ObjectMeta { uid: Some("pg1".into()), ..shown.metadata.clone() },
        ..*shown
    }));
    let mut again = mounted_driver("d1");
    again.metadata.resource_version = Some("5".into());
    i.apply_pod(Arc::new(again));
    assert!(i.pod("d1").unwrap().waiting.clone().unwrap().contains("cannot be read"));
    assert!(i.pod("d1").unwrap().id.is_none(), "the driver is not placed");
    let problems: Vec<_> = writes
        .into_iter()
        .filter_map(|w| match w {
            ClusterWrite::Problem { reason, object, .. } => Some((reason, object.name)),
            _ => None,
        })
        .collect();
    assert_eq!(problems, vec![("SparkConfUnreadable", "conf-driver".to_string())]);
    // Its automatic PodGroup shows why, and declares no member: the driver is no gang of one.
    let k = key(&convert::spark_pod_group_name("spark-conf1"));
    let gang = i.gang(&k).expect("an entry for the PodGroup");
    assert!(gang.id.is_none(), "not in the core");
    assert!(gang.waiting.as_deref().unwrap().contains("does not exist"));

    // A configuration Spark itself would refuse: the key and the problem, on the pod and in an Event.
    let mut i = index();
    i.apply_node(node("n1", "16", "64Gi"));
    i.apply_pod(Arc::new(mounted_driver("d2")));
    let bad = SparkConfFiles {
        properties: "spark.executor.memory=1.5g\n".into(),
        pod_template: None,
        operator_executor: None,
    };
    i.apply_spark_conf("d2", Ok(bad));
    let waiting = i.pod("d2").unwrap().waiting.clone().unwrap();
    assert!(waiting.contains("Spark conf spark.executor.memory: \"1.5g\""), "{waiting}");
    assert!(i.take_writes().iter().any(|w| matches!(w, ClusterWrite::Problem { reason: "InvalidSparkConf", .. })));
    // Reported once: later updates of the driver keep the reason without another Event.
    let mut again = mounted_driver("d2");
    again.metadata.resource_version = Some("3".into());
    i.apply_pod(Arc::new(again));
    assert!(i.pod("d2").unwrap().waiting.clone().unwrap().contains("spark.executor.memory"));
    assert!(i.take_writes().is_empty());
    // An answer for a driver that is gone is dropped.
    i.delete_pod("d2");
    i.apply_spark_conf("d2", Err("late".into()));
    assert!(i.pod("d2").is_none());
}

#[test]
fn a_spark_driver_becomes_a_gang_with_its_declared_executors() {
    let mut i = index();
    i.apply_node(node("n1", "16", "64Gi"));
    let labels = json!({"spark-app-selector": "spark-abc123", "spark-role": "driver"});
    let annotations = json!({
        "muster.dev/min-executors": "2",
        "muster.dev/max-executors": "4",
        "muster.dev/executor-resources": "{\"cpu\":\"2\",\"memory\":\"5Gi\"}"
    });
    // An executor seen before its driver waits; the driver defines the gang.
    let exec_labels = json!({"spark-app-selector": "spark-abc123", "spark-role": "executor", "spark-exec-id": "1"});
    let mut exec = pod("exec-1", "e1", "2", exec_labels, json!({}));
    exec.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap()
        .requests
        .as_mut()
        .unwrap()
        .insert("memory".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("5Gi".into()));
    i.apply_pod(Arc::new(exec));
    assert!(i.pod("e1").unwrap().waiting.is_some());
    i.apply_pod(Arc::new(pod("driver", "d1", "1", labels, annotations)));

    let k = key(&convert::spark_pod_group_name("spark-abc123"));
    let gang = i.gang(&k).expect("automatic gang");
    let core_gang = i.core.gang(gang.id.unwrap()).unwrap();
    let mins: Vec<_> = core_gang.spec.templates.iter().map(|t| (t.name.as_str(), t.min, t.max)).collect();
    assert_eq!(mins, vec![("driver", 1, 1), ("executor", 2, 4)]);
    assert!(i.pod("e1").unwrap().waiting.is_none(), "the executor joined once the driver came");
    let created: Vec<_> = i
        .take_writes()
        .into_iter()
        .filter_map(|r| match r {
            ClusterWrite::CreatePodGroup(pg) => Some(pg),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].metadata.owner_references.as_ref().unwrap()[0].uid, "d1");
    assert_eq!(created[0].spec.min_member, Some(3));

    // The driver ends: the application's gang goes with it.
    let mut done =
        pod("driver", "d1", "1", json!({"spark-app-selector": "spark-abc123", "spark-role": "driver"}), json!({}));
    done.metadata.resource_version = Some("2".into());
    done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
    i.apply_pod(Arc::new(done));
    assert_eq!(i.core.gang_count(), 0);
}

#[test]
fn a_restart_restores_recorded_reservations() {
    let mut i = index();
    i.apply_node(node("n1", "4", "16Gi"));
    i.apply_node(node("n2", "4", "16Gi"));
    let mut pg =
        (*podgroup("job", json!([{"name": "w", "minMember": 3, "resources": {"cpu": "2", "memory": "1Gi"}}]))).clone();
    pg.status = Some(
        serde_json::from_value(json!({
            "phase": "Inqueue", "observedGeneration": 1, "admittedAt": "2026-11-26T09:30:00Z",
            "reservations": [{"template": "w", "node": "n1", "count": 2}, {"template": "w", "node": "n2", "count": 1}]
        }))
        .unwrap(),
    );
    i.apply_podgroup(Arc::new(pg));
    let id = i.gang(&key("job")).unwrap().id.unwrap();
    // Nothing is restored before the initial sync is complete (bound members may still arrive).
    assert!(i.core.gang(id).unwrap().slots.is_empty());
    let restored = i.finish_initial_sync();
    assert_eq!(restored.len(), 1);
    let gang = i.core.gang(id).unwrap();
    assert_eq!(gang.phase, GangPhase::Admitted);
    let n1 = i.core.node_id("n1").unwrap();
    assert_eq!(gang.slots.iter().filter(|s| s.node == n1).count(), 2);
    // The restored reservation is respected: a newcomer cannot take n1's reserved capacity.
    i.apply_pod(Arc::new(pod("other", "o1", "2", json!({}), json!({}))));
    i.core.run_cycle(2_000, &Policy::default());
    i.core.check_invariants().unwrap();
}

#[test]
fn malformed_objects_are_skipped_with_a_problem() {
    let mut i = index();
    let bad: Node =
        serde_json::from_value(json!({"metadata": {"name": "bad"}, "status": {"allocatable": {"cpu": "lots"}}}))
            .unwrap();
    i.apply_node(Arc::new(bad));
    assert_eq!(i.core.node_count(), 0);
    let bad_pod = pod("p", "u9", "-1", json!({}), json!({}));
    i.apply_pod(Arc::new(bad_pod));
    let problems: Vec<_> = i
        .take_writes()
        .into_iter()
        .filter_map(|r| match r {
            ClusterWrite::Problem { object, reason, message } => Some((object.kind, reason, message)),
            _ => None,
        })
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].2.contains("lots"));
    assert!(i.pod("u9").unwrap().waiting.as_deref().unwrap().contains("cannot read"));
}

#[test]
fn foreign_pods_count_as_usage_even_before_their_node_is_seen() {
    let mut i = index();
    let mut p = pod("f", "f1", "3", json!({}), json!({}));
    p.spec.as_mut().unwrap().scheduler_name = Some("default-scheduler".into());
    p.spec.as_mut().unwrap().node_name = Some("n1".into());
    i.apply_pod(Arc::new(p));
    i.apply_node(node("n1", "4", "16Gi"));
    let n1 = i.core.node_id("n1").unwrap();
    assert_eq!(i.core.node(n1).unwrap().used.get(0), 3000);
}

#[test]
fn a_restart_restores_only_the_unbound_members_and_never_over_commits() {
    let mut i = index();
    i.apply_node(node("n1", "4", "16Gi"));
    i.apply_node(node("n2", "4", "16Gi"));
    let mut pg =
        (*podgroup("job", json!([{"name": "w", "minMember": 3, "resources": {"cpu": "2", "memory": "1Gi"}}]))).clone();
    // Recorded at admission, before the first member bound: n1 x2, n2 x1.
    pg.status = Some(
        serde_json::from_value(json!({
            "phase": "Inqueue", "observedGeneration": 1, "admittedAt": "2026-11-26T09:30:00Z",
            "reservations": [{"template": "w", "node": "n1", "count": 2}, {"template": "w", "node": "n2", "count": 1}]
        }))
        .unwrap(),
    );
    i.apply_podgroup(Arc::new(pg));
    // One member bound to n2 before the restart (the record does not say so), a foreign pod took 3 cpu of n1.
    let mut member = pod("w-0", "w0", "2", json!({"muster.dev/pod-group": "job"}), json!({}));
    member.spec.as_mut().unwrap().node_name = Some("n2".into());
    i.apply_pod(Arc::new(member));
    let mut foreign = pod("f", "f1", "3", json!({}), json!({}));
    foreign.spec.as_mut().unwrap().scheduler_name = Some("default-scheduler".into());
    foreign.spec.as_mut().unwrap().node_name = Some("n1".into());
    i.apply_pod(Arc::new(foreign));
    i.finish_initial_sync();
    let id = i.gang(&key("job")).unwrap().id.unwrap();
    let gang = i.core.gang(id).unwrap();
    // The bound member took the slot recorded on n2 (where it bound); the two missing members' slots were
    // recorded on n1, which has no room left: none is restored (n2's free room is not theirs by the record), the
    // gang stays admitted and the cycle repairs what it can.
    assert_eq!(gang.bound_min[0], 1);
    assert!(gang.slots.is_empty(), "{:?}", gang.slots);
    assert_eq!(gang.phase, GangPhase::Admitted);
    // The outside world broke all-or-nothing while muster was away (the foreign pod took reserved capacity), so
    // only accounting and capacity are checked: no node is over-committed, before or after the repair attempt.
    let no_overcommit = |c: &crate::core::Cluster| {
        c.check_accounting().unwrap();
        for (_, n) in c.nodes() {
            assert!(n.used.saturating_add(&n.reserved).fits_in(&n.spec.allocatable), "{} over-committed", n.spec.name);
        }
    };
    no_overcommit(&i.core);
    i.core.run_cycle(2_000, &Policy::default());
    no_overcommit(&i.core);
}

#[test]
fn a_restart_restores_from_the_placement_what_no_member_bound_since() {
    let mut i = index();
    for n in ["n1", "n2", "n3"] {
        i.apply_node(node(n, "4", "16Gi"));
    }
    let mut pg =
        (*podgroup("job", json!([{"name": "w", "minMember": 4, "resources": {"cpu": "2", "memory": "1Gi"}}]))).clone();
    // Written after w-0 bound on n1: its placement lists every member, its reservations the three unbound ones.
    pg.status = Some(
        serde_json::from_value(json!({
            "phase": "Inqueue", "observedGeneration": 1, "admittedAt": "2026-11-26T09:30:00Z", "running": 1,
            "reservations": [{"template": "w", "node": "n1", "count": 1}, {"template": "w", "node": "n2", "count": 2}],
            "placement": [{"template": "w", "node": "n1", "count": 2}, {"template": "w", "node": "n2", "count": 2}]
        }))
        .unwrap(),
    );
    i.apply_podgroup(Arc::new(pg));
    // w-0 bound on n1 before the write, w-1 on n2 after it.
    for (name, uid, at) in [("w-0", "w0", "n1"), ("w-1", "w1", "n2")] {
        let mut member = pod(name, uid, "2", json!({"muster.dev/pod-group": "job"}), json!({}));
        member.spec.as_mut().unwrap().node_name = Some(at.into());
        i.apply_pod(Arc::new(member));
    }
    i.finish_initial_sync();
    let id = i.gang(&key("job")).unwrap().id.unwrap();
    let gang = i.core.gang(id).unwrap();
    let on = |name: &str| {
        let n = i.core.node_id(name).unwrap();
        gang.slots.iter().filter(|s| s.node == n).count()
    };
    // Exactly the two members not bound, where the placement put them: one on n1, one on n2.
    assert_eq!((on("n1"), on("n2"), on("n3")), (1, 1, 0), "{:?}", gang.slots);
    assert_eq!(gang.phase, GangPhase::Admitted);
    assert!(gang.unreleased.is_empty(), "everything recorded is accounted for: {:?}", gang.unreleased);
    i.core.check_invariants().unwrap();
}

#[test]
fn the_index_knows_which_pods_carry_musters_gate_and_the_do_not_disrupt_annotation() {
    let mut i = index();
    i.apply_node(node("n1", "4", "16Gi"));
    let mut gated = pod("gated", "u-gated", "1", json!({}), json!({}));
    gated.spec.as_mut().unwrap().scheduling_gates = Some(vec![
        k8s_openapi::api::core::v1::PodSchedulingGate { name: "example.com/other".into() },
        k8s_openapi::api::core::v1::PodSchedulingGate { name: names::ADMISSION_GATE.into() },
    ]);
    i.apply_pod(Arc::new(gated));
    let mut other_gate = pod("other", "u-other", "1", json!({}), json!({}));
    other_gate.spec.as_mut().unwrap().scheduling_gates =
        Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate { name: "example.com/other".into() }]);
    i.apply_pod(Arc::new(other_gate));
    i.apply_pod(Arc::new(pod("marked", "u-marked", "1", json!({}), json!({names::DO_NOT_DISRUPT: "false"}))));

    assert!(i.pod("u-gated").unwrap().gated);
    assert!(!i.pod("u-other").unwrap().gated, "only muster's own gate counts");
    assert!(!i.pod("u-marked").unwrap().gated);
    assert!(i.pod("u-marked").unwrap().disruption_annotated, "any value of the annotation is the user's choice");
    assert!(!i.pod("u-gated").unwrap().disruption_annotated);

    // The gate removed (a new resourceVersion): the index sees it gone.
    let mut ungated = pod("gated", "u-gated", "1", json!({}), json!({}));
    ungated.metadata.resource_version = Some("2".into());
    i.apply_pod(Arc::new(ungated));
    assert!(!i.pod("u-gated").unwrap().gated);
}
