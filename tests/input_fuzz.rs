//! Property-based fuzzing of every input muster parses without an API server: the extender's wire decoder,
//! quantities, scenario files, and cluster objects (Nodes, Queues, PodGroups, Pods, Spark drivers with their
//! executor configuration) fed to the index. The whole HTTP handler path is fuzzed in `src/extender/handler_fuzz.rs`.
//!
//! The property is the same everywhere: no panic, whatever the input. Malformed input is an error value (a
//! `WireError`, a `QuantityError`, a `ScenarioError`, or for a cluster object a `ClusterWrite::Problem` and a
//! waiting reason), and the model stays consistent (`Cluster::check_invariants`) through an admission cycle.
//! Inputs are generated around valid ones (mutated bodies, field names the parsers look for, quantity-shaped
//! strings), so most cases reach deep into the parsers instead of failing on the first byte.
//!
//! `PROPTEST_CASES` scales every target (CI runs the defaults below); failures proptest finds are kept in
//! `tests/input_fuzz.proptest-regressions` and replayed first on every run.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use muster::api::{PodGroup, Queue, names};
use muster::core::{Policy, Unit, parse_amount};
use muster::extender::wire::{ExtenderArgs, ExtenderBindingArgs, ExtenderPreemptionArgs, decode};
use muster::index::{Index, IndexConfig};
use muster::sim::Scenario;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ----- generators -----

/// A JSON value shaped like a Kubernetes field: strings drawn from quantities, names and label keys, numbers of
/// every sign and size, and objects whose keys come from `keys` (the fields the parsers look for) or anywhere.
fn json_value(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        quantity_text().prop_map(Value::String),
        prop_oneof![
            Just("cpu"),
            Just("memory"),
            Just("nvidia.com/gpu"),
            Just("pods"),
            Just("default"),
            Just("Exists"),
            Just("Equal"),
            Just("In"),
            Just("NotIn"),
            Just("Gt"),
            Just("NoSchedule"),
            Just("NoExecute"),
            Just("driver"),
            Just("executor"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field_name(keys), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn field_name(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(keys).prop_map(str::to_string),
        1 => "[a-zA-Z./-]{0,10}",
    ]
}

/// Strings that look like quantities, and some that almost do.
fn quantity_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-+ ]?[0-9]{0,22}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{0,12})?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)? ?",
        "[0-9.eEKMGTPimnu+ -]{0,16}",
        "\\PC{0,8}",
    ]
}

/// Every key the object converters read, at any depth.
const OBJECT_KEYS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "uid",
    "labels",
    "annotations",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "spec",
    "status",
    "allocatable",
    "capacity",
    "taints",
    "unschedulable",
    "key",
    "value",
    "effect",
    "operator",
    "values",
    "tolerations",
    "nodeSelector",
    "affinity",
    "nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms",
    "matchExpressions",
    "matchFields",
    "containers",
    "initContainers",
    "resources",
    "requests",
    "limits",
    "overhead",
    "restartPolicy",
    "schedulerName",
    "nodeName",
    "priority",
    "priorityClassName",
    "phase",
    "minMember",
    "maxMember",
    "queue",
    "minTaskMember",
    "memberTemplates",
    "minResources",
    "weight",
    "capability",
    "guarantee",
    "resource",
    "reclaimable",
    "parent",
    "state",
    "reservations",
    "placement",
    "template",
    "node",
    "count",
    "admittedAt",
    "observedGeneration",
    "muster.dev/pod-group",
    "muster.dev/queue",
    "muster.dev/member-template",
    "spark-role",
    "spark-app-selector",
    "scheduling.k8s.io/group-name",
    "scheduling.volcano.sh/queue-name",
];

/// Mostly a plausible amount, sometimes anything quantity-shaped.
fn amount() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[1-9][0-9]{0,2}(m|Mi|Gi)?".prop_map(Value::String),
        1 => quantity_text().prop_map(Value::String),
        1 => json_value(OBJECT_KEYS),
    ]
}

/// Mostly nothing, sometimes an arbitrary value for a field that is usually absent.
fn sometimes(keys: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![3 => Just(None), 1 => json_value(keys).prop_map(Some)]
}

fn metadata(kind: &str, n: u8, namespaced: bool, labels: Map<String, Value>) -> Value {
    let mut metadata = json!({"name": format!("{}-{n}", kind.to_lowercase()), "uid": format!("{kind}-{n}"),
                              "resourceVersion": "1", "creationTimestamp": "2026-12-01T10:00:00Z",
                              "labels": labels});
    if namespaced {
        metadata["namespace"] = json!("ns");
    }
    metadata
}

fn node_object() -> impl Strategy<Value = Value> {
    (0u8..6, amount(), amount(), sometimes(OBJECT_KEYS), sometimes(OBJECT_KEYS)).prop_map(
        |(n, cpu, memory, taints, extra)| {
            let mut node = json!({"metadata": metadata("Node", n, false, Map::new()),
                                  "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}});
            if let Some(taints) = taints {
                node["spec"] = json!({"taints": taints});
            }
            if let Some(extra) = extra {
                node["status"]["allocatable"]["example.com/fpga"] = extra;
            }
            node
        },
    )
}

fn queue_object() -> impl Strategy<Value = Value> {
    (
        0u8..3,
        prop_oneof![Just(json!(1)), Just(json!(3)), any::<i64>().prop_map(|w| json!(w))],
        amount(),
        sometimes(OBJECT_KEYS),
    )
        .prop_map(|(n, weight, cpu, extra)| {
            let name = if n == 0 { "default".to_string() } else { format!("queue-{n}") };
            let mut spec = json!({"weight": weight, "capability": {"cpu": cpu}});
            if let Some(extra) = extra {
                spec["guarantee"] = extra;
            }
            json!({"metadata": {"name": name, "uid": format!("q-{n}"), "resourceVersion": "1"}, "spec": spec})
        })
}

fn podgroup_object() -> impl Strategy<Value = Value> {
    let template =
        (0u8..2, -1i64..4, amount(), amount(), sometimes(OBJECT_KEYS)).prop_map(|(n, min, cpu, memory, placement)| {
            let mut t = json!({"name": format!("t{n}"), "minMember": min,
                               "resources": {"cpu": cpu, "memory": memory}});
            if let Some(p) = placement {
                t["tolerations"] = p;
            }
            t
        });
    (0u8..3, prop::collection::vec(template, 0..3), sometimes(OBJECT_KEYS), prop::option::of(-1i64..6)).prop_map(
        |(n, templates, extra, min_member)| {
            let mut spec = json!({"memberTemplates": templates});
            if let Some(m) = min_member {
                spec["minMember"] = json!(m);
            }
            if let Some(extra) = extra {
                spec["queue"] = extra;
            }
            json!({"metadata": metadata("PodGroup", n, true, Map::new()), "spec": spec})
        },
    )
}

/// A pod of muster's: a member of `g-0`..`g-2`, a Spark application or a gang of one, with mostly plausible
/// requests and sometimes arbitrary placement, bound to a node or not.
fn muster_pod() -> impl Strategy<Value = Value> {
    (0u8..8, prop::sample::select(vec!["", "podgroup-0", "podgroup-1", "spark-a"]), amount(), amount(),
     sometimes(OBJECT_KEYS), prop::option::of(0u8..6), spark_driver_annotations())
        .prop_map(|(n, group, cpu, memory, placement, node, spark_annotations)| {
            let mut labels = Map::new();
            let mut annotations = Map::new();
            if group.starts_with("spark") {
                labels.insert("spark-app-selector".into(), json!(group));
                labels.insert("spark-role".into(), json!(if n == 0 { "driver" } else { "executor" }));
                if n == 0 {
                    annotations = spark_annotations;
                }
            } else if !group.is_empty() {
                labels.insert("muster.dev/pod-group".into(), json!(group));
            }
            let mut spec = json!({"schedulerName": "muster",
                                  "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]});
            if let Some(Value::Object(fields)) = placement {
                for (k, v) in fields {
                    spec[k] = v;
                }
                spec["schedulerName"] = json!("muster");
            }
            if let Some(node) = node {
                spec["nodeName"] = json!(format!("node-{node}"));
            }
            let mut metadata = metadata("Pod", n, true, labels);
            metadata["uid"] = json!(format!("pod-{n}"));
            if !annotations.is_empty() {
                metadata["annotations"] = Value::Object(annotations);
            }
            json!({"metadata": metadata, "spec": spec})
        })
}

/// The Spark configuration muster reads from a driver (its executor annotations): counts, the executor's
/// resources as JSON, its node selector and tolerations as JSON, each well-formed, mangled or arbitrary.
fn spark_driver_annotations() -> impl Strategy<Value = Map<String, Value>> {
    let count = prop_oneof!["[0-9]{1,3}", "-?[0-9]{1,12}", "\\PC{0,6}"];
    let json_text = |keys: &'static [&'static str]| {
        prop_oneof![
            json_value(keys).prop_map(|v| v.to_string()),
            json_value(keys).prop_map(|v| {
                let text = v.to_string();
                text.chars().take(text.chars().count() / 2).collect::<String>()
            }),
            "\\PC{0,16}",
        ]
    };
    (
        prop::option::of(count.clone()),
        prop::option::of(count),
        prop::option::of(json_text(&["cpu", "memory", "nvidia.com/gpu", "pods"])),
        prop::option::of(json_text(&["disktype", "pool", "zone"])),
        prop::option::of(json_text(&["key", "operator", "value", "effect", "tolerationSeconds"])),
    )
        .prop_map(|(min, max, resources, selector, tolerations)| {
            let mut annotations = Map::new();
            for (key, value) in [
                (names::MIN_EXECUTORS_ANNOTATION, min),
                (names::MAX_EXECUTORS_ANNOTATION, max),
                (names::EXECUTOR_RESOURCES_ANNOTATION, resources),
                (names::EXECUTOR_NODE_SELECTOR_ANNOTATION, selector),
                (names::EXECUTOR_TOLERATIONS_ANNOTATION, tolerations),
            ] {
                if let Some(value) = value {
                    annotations.insert(key.to_owned(), Value::String(value));
                }
            }
            annotations
        })
}

/// One watch event for the index.
#[derive(Debug, Clone)]
enum Event {
    Node(Value),
    Queue(Value),
    PodGroup(Value),
    Pod(Value),
    DeletePod(u8),
    DeletePodGroup(u8),
    DeleteNode(u8),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => node_object().prop_map(Event::Node),
        1 => queue_object().prop_map(Event::Queue),
        2 => podgroup_object().prop_map(Event::PodGroup),
        4 => muster_pod().prop_map(Event::Pod),
        1 => (0u8..8).prop_map(Event::DeletePod),
        1 => (0u8..6).prop_map(Event::DeletePodGroup),
        1 => (0u8..6).prop_map(Event::DeleteNode),
    ]
}

/// A valid filter request body (what kube-scheduler sends), to mutate.
fn filter_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "Pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
                "spec": {"schedulerName": "muster", "containers": [{"name": "c",
                         "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}},
        "Nodes": null,
        "NodeNames": ["ip-10-0-1-1.ec2.internal", "ip-10-0-1-2.ec2.internal", "node-3"]
    }))
    .expect("a constant body serialises")
}

/// Byte-level mutations of a valid body: flips, cuts, insertions and repeats.
fn mutated(body: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = body.len();
    prop::collection::vec((0..len, any::<u8>(), 0u8..4), 0..3).prop_map(move |edits| {
        let mut b = body.clone();
        for (at, byte, op) in edits {
            let at = at.min(b.len().saturating_sub(1));
            match op {
                0 if !b.is_empty() => b[at] = byte,
                1 => b.insert(at, byte),
                2 => b.truncate(at),
                _ => {
                    let piece: Vec<u8> = b[at..].iter().take(16).copied().collect();
                    b.splice(at..at, piece);
                }
            }
        }
        b
    })
}

// ----- targets -----

proptest! {
    #![proptest_config(ProptestConfig { cases: 8192, ..ProptestConfig::default() })]

    /// The wire decoder: every body is decoded or refused with a message, for each request type.
    #[test]
    fn wire_decoder_never_panics(body in prop_oneof![mutated(filter_body()), prop::collection::vec(any::<u8>(), 0..256)]) {
        for result in [
            decode::<ExtenderArgs>(&body).map(|_| ()),
            decode::<ExtenderBindingArgs>(&body).map(|_| ()),
            decode::<ExtenderPreemptionArgs>(&body).map(|_| ()),
        ] {
            if let Err(e) = result {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// Quantities: parsed into an amount that is never the core's "unlimited", or refused with the input named.
    #[test]
    fn quantity_parser_never_panics(text in quantity_text()) {
        for unit in [Unit::Milli, Unit::Whole] {
            match parse_amount(&text, unit) {
                Ok(amount) => prop_assert!(amount < u64::MAX),
                Err(e) => prop_assert!(e.to_string().contains(&format!("{:?}", text)) || text.trim().is_empty(), "{e}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Scenario files: the default scenario with lines dropped, repeated or altered parses or is refused with a
    /// message; a parsed scenario expands into applications.
    #[test]
    fn scenario_parser_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, "\\PC{0,6}"), 1..6),
    ) {
        let original = include_str!("../config/simulate-default.yaml");
        let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
        for (at, op, text) in edits {
            let i = at.index(lines.len());
            match op {
                0 => { lines.remove(i); }
                1 => { let line = lines[i].clone(); lines.insert(i, line); }
                _ => {
                    let line = &mut lines[i];
                    let cut = line.char_indices().map(|(k, _)| k).nth(line.chars().count() / 2).unwrap_or(0);
                    line.replace_range(cut.., &text);
                }
            }
            if lines.is_empty() { break; }
        }
        match Scenario::parse(&lines.join("\n"), "fuzzed.yaml") {
            Ok(scenario) => { let _ = scenario.applications(); }
            Err(e) => prop_assert!(e.to_string().contains("fuzzed.yaml"), "{e}"),
        }
    }

    /// Cluster objects: any sequence of watch events with arbitrary specs leaves the index and core consistent
    /// through admission cycles. Objects that do not decode into their type are what the watch skips.
    #[test]
    fn cluster_objects_never_panic_the_index(events in prop::collection::vec(event(), 1..40)) {
        let mut index = Index::new(IndexConfig { scheduler_name: "muster".into(), default_queue: "default".into() });
        let policy = Policy::default();
        // The invariants hold for what muster decides. Three inputs can break them from outside, and runs with
        // any of them skip the check: a pod bound by someone else (`nodeName` set) may over-commit a node, a Queue
        // changed after pods arrived may lower its capability below what it already holds, and a Node changed
        // after pods arrived may shrink below what is reserved on it.
        let bound_elsewhere = events.iter().any(|e| matches!(e, Event::Pod(p) if p["spec"].get("nodeName").is_some()));
        let first_pod = events.iter().position(|e| matches!(e, Event::Pod(_))).unwrap_or(events.len());
        let queue_changed_later = events[first_pod..].iter().any(|e| matches!(e, Event::Queue(_)));
        let node_changed_later = events[first_pod..].iter().any(|e| matches!(e, Event::Node(_)));
        let external_changes = bound_elsewhere || queue_changed_later || node_changed_later;
        let mut now = 1_000;
        index.set_now(now);
        for e in events {
            match e {
                Event::Node(v) => if let Ok(n) = serde_json::from_value::<Node>(v) { index.apply_node(Arc::new(n)) },
                Event::Queue(v) => if let Ok(q) = serde_json::from_value::<Queue>(v) { index.apply_queue(Arc::new(q)) },
                Event::PodGroup(v) => {
                    if let Ok(pg) = serde_json::from_value::<PodGroup>(v) { index.apply_podgroup(Arc::new(pg)) }
                }
                Event::Pod(v) => if let Ok(p) = serde_json::from_value::<Pod>(v) { index.apply_pod(Arc::new(p)) },
                Event::DeletePod(n) => index.delete_pod(&format!("pod-{n}")),
                Event::DeletePodGroup(n) => index.delete_podgroup("ns", &format!("podgroup-{n}")),
                Event::DeleteNode(n) => index.delete_node(&format!("node-{n}")),
            }
            if index.core.is_dirty() {
                now += 500;
                index.set_now(now);
                index.core.run_cycle(now, &policy);
            }
            if !external_changes {
                prop_assert_eq!(index.core.check_invariants(), Ok(()));
            }
        }
        let _ = index.take_writes();
    }
}
