//! The extender wire format against bodies shaped like the ones kube-scheduler sends (Go's `encoding/json` output
//! of the `k8s.io/kube-scheduler/extender/v1` structs), plus a fuzz of the decoders.

use std::borrow::Cow;

use muster::extender::wire::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, ExtenderPreemptionArgs,
    ExtenderPreemptionResult, HostPriority, HostPriorityList, MAX_BODY_BYTES, MetaPod, MetaVictims, NodeNames,
    WireError, WireMessage, decode,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A pending Spark executor as kube-scheduler's informer holds it and Go marshals it: no apiVersion/kind (typed
/// objects drop their TypeMeta), `creationTimestamp` set, empty structs as `{}`.
fn go_pod() -> Value {
    json!({
        "metadata": {
            "name": "pi-exec-1", "namespace": "spark", "uid": "6a1f0f4c-3f3e-4a57-9d2e-1c1f9b1e2a10",
            "resourceVersion": "1234", "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"spark-app-selector": "spark-0b6b", "spark-role": "executor", "spark-exec-id": "1"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "pi-driver",
                                 "uid": "0f0e", "controller": true}],
            "managedFields": [{"manager": "fabric8", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]
        },
        "spec": {
            "containers": [{"name": "spark-kubernetes-executor", "image": "apache/spark:3.5.1",
                            "resources": {"limits": {"memory": "5Gi"}, "requests": {"cpu": "1", "memory": "5Gi"}},
                            "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Never", "schedulerName": "muster", "securityContext": {},
            "tolerations": [{"key": "workload", "operator": "Equal", "value": "spark-executor",
                             "effect": "NoSchedule"}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {"phase": "Pending", "qosClass": "Burstable",
                   "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": null,
                                   "lastTransitionTime": "2026-01-01T00:00:01Z", "reason": "Unschedulable"}]}
    })
}

fn go_node(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "7",
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"kubernetes.io/hostname": name, "pool": "spot"}},
        "spec": {"taints": [{"key": "workload", "value": "spark-executor", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
            "allocatable": {"cpu": "15900m", "memory": "62Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                            "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                         "containerRuntimeVersion": "", "kubeletVersion": "v1.35.4", "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64"}
        }
    })
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn node_cache_capable_filter_request() {
    let names: Vec<String> = (0..5000).map(|i| format!("node-{i:04}")).collect();
    let request = json!({"Pod": go_pod(), "Nodes": null, "NodeNames": names});
    let request = body(&request);
    let args: ExtenderArgs = decode(&request).unwrap();
    assert_eq!(args.pod.metadata.name.as_deref(), Some("pi-exec-1"));
    assert!(args.nodes.is_none());
    let node_names = args.node_names.as_ref().expect("NodeNames");
    assert_eq!(node_names.len(), 5000);
    assert_eq!(node_names[4999], "node-4999");
    assert!(node_names.iter().all(|n| matches!(n, Cow::Borrowed(_))), "names are borrowed from the body");

    // An answer borrows the names again, and one reason serves every failed node.
    let reason = String::from("gang spark/etl is not admitted: queue team-a is at its capability");
    let mut answer = ExtenderFilterResult { node_names: Some(NodeNames::default()), ..Default::default() };
    for name in node_names.iter() {
        answer.failed_and_unresolvable_nodes.push(name.clone(), reason.as_str());
    }
    let answer = serde_json::to_vec(&answer).unwrap();
    let read_back: ExtenderFilterResult = decode(&answer).unwrap();
    assert_eq!(read_back.failed_and_unresolvable_nodes.len(), 5000);
    assert_eq!(read_back.failed_and_unresolvable_nodes.reason("node-0042"), Some(reason.as_str()));

    // Written back in PascalCase, and read again to the same value.
    let written = serde_json::to_value(&args).unwrap();
    let keys: Vec<&str> = written.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3);
    for key in ["Pod", "Nodes", "NodeNames"] {
        assert!(keys.contains(&key), "{keys:?}");
    }
    assert_eq!(decode::<ExtenderArgs>(&body(&written)).unwrap(), args);
}

#[test]
fn full_node_filter_request() {
    let request = json!({
        "Pod": go_pod(),
        "Nodes": {"metadata": {}, "items": [go_node("spot-1"), go_node("spot-2")]},
        "NodeNames": null
    });
    let request = body(&request);
    let args: ExtenderArgs = decode(&request).unwrap();
    let nodes = args.nodes.as_ref().expect("Nodes");
    assert_eq!(nodes.items.len(), 2);
    assert_eq!(nodes.items[1].metadata.name.as_deref(), Some("spot-2"));
    assert!(args.node_names.is_none());
    let written = serde_json::to_vec(&args).unwrap();
    let round_trip: ExtenderArgs = decode(&written).unwrap();
    assert_eq!(round_trip, args);

    let empty = json!({"Pod": go_pod(), "Nodes": {"metadata": {}, "items": null}, "NodeNames": null});
    assert!(decode::<ExtenderArgs>(&body(&empty)).unwrap().nodes.unwrap().items.is_empty());
}

#[test]
fn keys_in_any_letter_case_and_nulls() {
    let lower = json!({"pod": go_pod(), "nodenames": ["a", "b"], "nodes": null, "Unknown": {"x": [1, 2]}});
    let lower = body(&lower);
    let args: ExtenderArgs = decode(&lower).unwrap();
    assert_eq!(args.node_names, Some(NodeNames::from_iter(["a", "b"])));
    let camel = format!(r#"{{"pod": {}, "nodeNames": ["c", "escaped\u002dname"]}}"#, go_pod()).into_bytes();
    let names = decode::<ExtenderArgs>(&camel).unwrap().node_names.unwrap();
    assert_eq!(names, NodeNames::from_iter(["c", "escaped-name"]), "escapes are decoded (into a copy)");

    let result: ExtenderFilterResult = decode(
        br#"{"nodes":null,"nodeNames":["a"],"failedNodes":null,"FAILEDANDUNRESOLVABLENODES":{"b":"gang waits"},
            "error":""}"#,
    )
    .unwrap();
    assert_eq!(result.node_names, Some(NodeNames::from_iter(["a"])));
    assert!(result.failed_nodes.is_empty());
    assert_eq!(result.failed_and_unresolvable_nodes.reason("b"), Some("gang waits"));

    let preempt: ExtenderPreemptionArgs = decode(&body(&json!({
        "Pod": go_pod(),
        "NodeNameToVictims": null,
        "nodeNameToMetaVictims": {"n1": {"pods": [{"uid": "u1"}, {"UID": "u2"}], "numPDBViolations": 1},
                                  "n2": {"Pods": null, "NumPDBViolations": 0}}
    })))
    .unwrap();
    assert!(preempt.node_name_to_victims.is_empty());
    let n1 = &preempt.node_name_to_meta_victims["n1"];
    assert_eq!(n1.pods, vec![MetaPod { uid: "u1".into() }, MetaPod { uid: "u2".into() }]);
    assert_eq!(n1.num_pdb_violations, 1);
    assert!(preempt.node_name_to_meta_victims["n2"].pods.is_empty());

    let bind: ExtenderBindingArgs =
        decode(br#"{"podname":"p","PodNamespace":"ns","poduid":"u","node":"n1","extra":true}"#).unwrap();
    assert_eq!(
        bind,
        ExtenderBindingArgs {
            pod_name: "p".into(),
            pod_namespace: "ns".into(),
            pod_uid: "u".into(),
            node: "n1".into()
        }
    );
}

#[test]
fn responses_are_written_in_pascal_case() {
    let mut filter = ExtenderFilterResult { node_names: Some(NodeNames::from_iter(["n1"])), ..Default::default() };
    filter.failed_and_unresolvable_nodes.push("n2", "reserved for gang spark/etl");
    assert_eq!(
        serde_json::to_value(&filter).unwrap(),
        json!({"Nodes": null, "NodeNames": ["n1"], "FailedNodes": {},
               "FailedAndUnresolvableNodes": {"n2": "reserved for gang spark/etl"}, "Error": ""})
    );
    let scores: HostPriorityList = vec![HostPriority { host: "n1".into(), score: 10 }];
    assert_eq!(serde_json::to_value(&scores).unwrap(), json!([{"Host": "n1", "Score": 10}]));
    assert_eq!(decode::<HostPriorityList>(&serde_json::to_vec(&scores).unwrap()).unwrap(), scores);
    assert_eq!(serde_json::to_value(ExtenderBindingResult::default()).unwrap(), json!({"Error": ""}));
    let preempt = ExtenderPreemptionResult {
        node_name_to_meta_victims: [(
            "n1".to_string(),
            MetaVictims { pods: vec![MetaPod { uid: "u1".into() }], num_pdb_violations: 0 },
        )]
        .into(),
    };
    let written = serde_json::to_value(&preempt).unwrap();
    assert_eq!(written, json!({"NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "u1"}], "NumPDBViolations": 0}}}));
    assert_eq!(decode::<ExtenderPreemptionResult>(&body(&written)).unwrap(), preempt);
}

fn error_of<'de, T: WireMessage<'de> + std::fmt::Debug>(body: &'de [u8]) -> String {
    decode::<T>(body).unwrap_err().to_string()
}

#[test]
fn malformed_bodies_say_what_is_wrong() {
    let e = error_of::<ExtenderArgs>(b"");
    assert!(e.contains("empty request body") && e.contains("ExtenderArgs"), "{e}");
    let e = error_of::<ExtenderArgs>(b"{\"Pod\": {}, \"NodeNames\": [\"a\"");
    assert!(e.starts_with("malformed ExtenderArgs: ") && e.contains("EOF"), "{e}");
    let e = error_of::<ExtenderArgs>(br#"{"NodeNames": ["a"]}"#);
    assert!(e.contains("`Pod` is missing or null"), "{e}");
    let e = error_of::<ExtenderArgs>(br#"{"Pod": null, "NodeNames": ["a"]}"#);
    assert!(e.contains("`Pod` is missing or null"), "{e}");
    let e = error_of::<ExtenderArgs>(br#"{"Pod": {}, "NodeNames": "a,b"}"#);
    assert!(e.contains("NodeNames: invalid type: string \"a,b\", expected a list of node names at line 1"), "{e}");
    assert_eq!(e.matches(" at line ").count(), 1, "one position only: {e}");
    let e = error_of::<ExtenderArgs>(br#"{"Pod": {"kind": "Node"}}"#);
    assert!(e.contains("Pod: invalid value: string \"Node\""), "{e}");
    let e = error_of::<ExtenderArgs>(br#"{"Pod": {"spec": {"containers": [{"name": 5}]}}}"#);
    assert!(e.contains("Pod: invalid type: integer `5`, expected a string"), "{e}");
    let e = error_of::<ExtenderArgs>(br#"[{"Pod": {}}]"#);
    assert!(e.contains("expected a JSON object (ExtenderArgs)"), "{e}");
    let e = error_of::<ExtenderArgs>(br#"{"Pod": {}} {"Pod": {}}"#);
    assert!(e.contains("trailing characters"), "{e}");
    let e =
        error_of::<ExtenderPreemptionArgs>(br#"{"Pod": {}, "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": 7}]}}}"#);
    assert!(e.contains("NodeNameToMetaVictims: Pods: UID: invalid type: integer `7`"), "{e}");
    let e = error_of::<HostPriorityList>(br#"[{"Host": "n1", "Score": "high"}]"#);
    assert!(e.starts_with("malformed HostPriorityList: Score: invalid type: string \"high\""), "{e}");

    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        decode::<ExtenderArgs>(&huge).unwrap_err(),
        WireError::TooLarge { size: MAX_BODY_BYTES + 1, limit: MAX_BODY_BYTES }
    );
    // Deep nesting is refused rather than overflowing the stack: in free-form JSON (managedFields) by the recursion
    // limit, under keys nobody reads by running out of input.
    let deep = format!(r#"{{"Pod": {{"metadata": {{"managedFields": [{{"fieldsV1": {}"#, "[".repeat(100_000));
    let e = error_of::<ExtenderArgs>(deep.as_bytes());
    assert!(e.contains("recursion limit exceeded"), "{e}");
    let deep = format!(r#"{{"Pod": {{"unknownField": {}"#, "[".repeat(100_000));
    let e = error_of::<ExtenderArgs>(deep.as_bytes());
    assert!(e.contains("malformed ExtenderArgs: Pod: "), "{e}");
}

/// Arbitrary JSON: scalars, arrays and objects whose keys are drawn partly from the wire format's own names so
/// the decoders get past the top level and into the Kubernetes objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "Pod",
            "pod",
            "Nodes",
            "NodeNames",
            "nodenames",
            "items",
            "metadata",
            "name",
            "spec",
            "containers",
            "resources",
            "requests",
            "FailedNodes",
            "Error",
            "Host",
            "Score",
            "PodName",
            "Node",
            "UID",
            "Pods",
            "NodeNameToVictims",
            "NodeNameToMetaVictims",
            "NumPDBViolations",
            "kind",
            "apiVersion",
            "tolerations",
        ])
        .prop_map(str::to_string),
        "\\PC{0,8}",
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Runs every decoder on `bytes`; the point is that none of them panics.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<ExtenderArgs>(bytes);
    let _ = decode::<ExtenderFilterResult>(bytes);
    let _ = decode::<HostPriorityList>(bytes);
    let _ = decode::<ExtenderBindingArgs>(bytes);
    let _ = decode::<ExtenderBindingResult>(bytes);
    let _ = decode::<ExtenderPreemptionArgs>(bytes);
    let _ = decode::<ExtenderPreemptionResult>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        decode_all(&body(&value));
    }

    #[test]
    fn mutated_requests_never_panic(cut in 0usize..2000, byte in any::<u8>()) {
        let mut request = body(&json!({"Pod": go_pod(), "Nodes": {"items": [go_node("n1")]}, "NodeNames": ["n1"]}));
        let at = cut % request.len();
        request[at] = byte;
        decode_all(&request);
        decode_all(&request[..at]);
    }

    #[test]
    fn wire_keys_decode_in_any_case(flips in prop::collection::vec(any::<bool>(), 9)) {
        let recase = |key: &str| -> String {
            key.chars().zip(flips.iter().cycle()).map(|(c, &flip)| {
                if flip { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() }
            }).collect()
        };
        let mut request = serde_json::Map::new();
        request.insert(recase("Pod"), go_pod());
        request.insert(recase("NodeNames"), json!(["n1", "n2"]));
        let request = body(&Value::Object(request));
        let args: ExtenderArgs = decode(&request).unwrap();
        prop_assert_eq!(args.node_names, Some(NodeNames::from_iter(["n1", "n2"])));
        prop_assert_eq!(args.pod.metadata.name.as_deref(), Some("pi-exec-1"));
    }
}
