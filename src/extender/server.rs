//! The HTTP layer: kube-scheduler's extender verbs, plus health, readiness, metrics and a read-only state dump.
//!
//! Handlers decode, lock the model for microseconds, and answer; the only one that waits on the API server is
//! bind, and it never holds the lock while it does. Bad input gets a 400 with the wire format's `Error` field
//! set; nothing a client sends can panic a handler.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Api, PostParams};
use serde::Serialize;
use tracing::{info, warn};

use super::wire::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, ExtenderPreemptionArgs,
    ExtenderPreemptionResult, HostPriority, MAX_BODY_BYTES, MAX_EXTENDER_PRIORITY, MetaPod, MetaVictims, NodeNames,
    WireError, decode,
};
use crate::controller::{Shared, is_ready, now_ms};
use crate::core::{NodeSet, PodId};
use crate::index::Index;
use crate::metrics::render_amount;

/// The router: extender verbs under `prefix`, the rest at the root.
pub fn router(shared: Arc<Shared>, prefix: &str) -> Router {
    let prefix = prefix.trim_end_matches('/');
    Router::new()
        .route(&format!("{prefix}/filter"), post(filter))
        .route(&format!("{prefix}/prioritize"), post(prioritize))
        .route(&format!("{prefix}/bind"), post(bind))
        .route(&format!("{prefix}/preempt"), post(preempt))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/state", get(state))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")).into_response(),
    }
}

/// A 400 in the wire format's shape: `{"Error": "..."}`.
fn bad_request(e: WireError) -> Response {
    json(StatusCode::BAD_REQUEST, &serde_json::json!({ "Error": e.to_string() }))
}

fn unavailable() -> Response {
    json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({ "Error": "muster is still loading its cache; retry" }))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if is_ready(&shared) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "cache not synced").into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    {
        let index = shared.lock();
        shared.metrics.observe(&index);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render()).into_response()
}

/// Makes sure the model knows the pod kube-scheduler asks about (the watch may lag), and brings admission up to
/// date with everything seen so far. Returns the pod's core id, or why muster will not place it.
fn prepare(shared: &Shared, index: &mut Index, pod: Pod) -> Result<Option<PodId>, String> {
    let uid = pod.metadata.uid.clone().ok_or_else(|| "the pod has no metadata.uid".to_string())?;
    let now = now_ms();
    index.set_now(now);
    index.apply_pod(Arc::new(pod));
    shared.forward_requests(index);
    if index.core.is_dirty() {
        shared.cycle(index, now);
    }
    let entry = index.pod(&uid).ok_or_else(|| "muster has no record of this pod".to_string())?;
    if !entry.managed {
        return Ok(None);
    }
    if let Some(w) = &entry.waiting {
        return Err(w.clone());
    }
    entry.id.map(Some).ok_or_else(|| "muster has not placed this pod in a gang".to_string())
}

async fn filter(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let start = Instant::now();
    let args: ExtenderArgs<'_> = match decode(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    if !is_ready(&shared) {
        return unavailable();
    }
    let ExtenderArgs { pod, nodes, node_names } = args;
    // The candidates, by name, in either mode (borrowed from the request when it carries names: no copy).
    let from_nodes: Vec<Cow<'_, str>> = match (&node_names, &nodes) {
        (None, Some(list)) => list.items.iter().filter_map(|n| n.metadata.name.clone().map(Cow::Owned)).collect(),
        _ => Vec::new(),
    };
    let names: &[Cow<'_, str>] = match &node_names {
        Some(n) => &n.0,
        None => &from_nodes,
    };
    let decision: Result<Option<String>, String> = {
        let mut index = shared.lock();
        match prepare(&shared, &mut index, pod) {
            Ok(None) => Ok(None),
            Err(reason) => Err(reason),
            Ok(Some(id)) => {
                // Fast path: the node this member is directed to is among the candidates (the usual case).
                let directed = index.core.directed_node(id).filter(|n| {
                    let name = index.node_name(*n).unwrap_or_default();
                    names.iter().any(|candidate| candidate == name)
                });
                let offered = match directed {
                    Some(n) => NodeSet::new([n]),
                    None => NodeSet::new(names.iter().filter_map(|n| index.core.node_id(n))),
                };
                match index.core.place(id, &offered, now_ms()) {
                    Ok(node) => Ok(Some(index.node_name(node).unwrap_or_default().to_string())),
                    Err(refusal) => Err(refusal.summary()),
                }
            }
        }
    };
    let mut result = ExtenderFilterResult::default();
    match decision {
        // Not muster's pod: every candidate passes.
        Ok(None) => {
            result.node_names = node_names;
            result.nodes = nodes;
        }
        // The member's reserved node alone. kube-scheduler drops the candidates an extender leaves out, and a
        // pod that fits triggers no preemption, so listing the other 4,999 nodes would only cost time.
        Ok(Some(chosen)) => {
            if node_names.is_some() {
                result.node_names = Some(NodeNames(vec![Cow::Owned(chosen)]));
            } else if let Some(mut list) = nodes {
                list.items.retain(|n| n.metadata.name.as_deref() == Some(chosen.as_str()));
                result.nodes = Some(list);
            }
        }
        // Every candidate fails as unresolvable, so kube-scheduler does not preempt on a gang's behalf; one short
        // reason shared by all of them (it is repeated once per node in the answer).
        Err(reason) => {
            let reason: Cow<'_, str> = Cow::Owned(format!("muster: {reason}"));
            if node_names.is_some() {
                result.node_names = Some(NodeNames(Vec::new()));
            } else if let Some(mut list) = nodes {
                list.items.clear();
                result.nodes = Some(list);
            }
            for n in names {
                result.failed_and_unresolvable_nodes.push(n.clone(), reason.clone());
            }
        }
    }
    shared.metrics.extender_latency.with_label_values(&["filter"]).observe(start.elapsed().as_secs_f64());
    json(StatusCode::OK, &result)
}

async fn prioritize(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let start = Instant::now();
    let args: ExtenderArgs<'_> = match decode(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    let names: Vec<String> = match (&args.node_names, &args.nodes) {
        (Some(n), _) => n.0.iter().map(|s| s.to_string()).collect(),
        (None, Some(list)) => list.items.iter().filter_map(|n| n.metadata.name.clone()).collect(),
        (None, None) => Vec::new(),
    };
    let uid = args.pod.metadata.uid.clone().unwrap_or_default();
    let scores: Vec<HostPriority> = {
        let index = shared.lock();
        let id = index.pod(&uid).and_then(|e| e.id);
        let offered = NodeSet::new(names.iter().filter_map(|n| index.core.node_id(n)));
        let by_node: std::collections::HashMap<_, _> =
            id.map(|id| index.core.scores(id, &offered)).unwrap_or_default().into_iter().collect();
        names
            .iter()
            .map(|n| {
                let score = index.core.node_id(n).and_then(|id| by_node.get(&id)).copied().unwrap_or(0);
                HostPriority { host: n.clone(), score: i64::from(score).min(MAX_EXTENDER_PRIORITY) }
            })
            .collect()
    };
    shared.metrics.extender_latency.with_label_values(&["prioritize"]).observe(start.elapsed().as_secs_f64());
    json(StatusCode::OK, &scores)
}

async fn bind(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let start = Instant::now();
    let args: ExtenderBindingArgs = match decode(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    let answer = bind_pod(&shared, &args).await;
    shared.metrics.extender_latency.with_label_values(&["bind"]).observe(start.elapsed().as_secs_f64());
    let error = match answer {
        Ok(()) => String::new(),
        Err(e) => {
            warn!(pod = %format!("{}/{}", args.pod_namespace, args.pod_name), node = %args.node, error = %e, "bind refused");
            e
        }
    };
    json(StatusCode::OK, &ExtenderBindingResult { error })
}

/// Binds only a pod muster manages, only onto the node it planned, and only once (a repeated bind of a pod
/// already bound there succeeds without a second write).
async fn bind_pod(shared: &Shared, args: &ExtenderBindingArgs) -> Result<(), String> {
    {
        let index = shared.lock();
        let uid = index
            .pod_uid(&args.pod_namespace, &args.pod_name)
            .map(str::to_string)
            .ok_or_else(|| format!("muster does not know pod {}/{}", args.pod_namespace, args.pod_name))?;
        if !args.pod_uid.is_empty() && args.pod_uid != uid {
            return Err(format!("pod {}/{} has uid {uid}, not {}", args.pod_namespace, args.pod_name, args.pod_uid));
        }
        let entry = index.pod(&uid).expect("indexed");
        if !entry.managed {
            return Err("muster binds only the pods it manages".into());
        }
        let id = entry.id.ok_or_else(|| "the pod is not in an admitted gang".to_string())?;
        let pod = index.core.pod(id).ok_or_else(|| "the pod is not in the model".to_string())?;
        if let Some(bound) = pod.node {
            return if index.node_name(bound) == Some(args.node.as_str()) {
                Ok(()) // already bound there: idempotent
            } else {
                Err(format!("the pod is already bound to {}", index.node_name(bound).unwrap_or("another node")))
            };
        }
        let planned = pod.claim.map(|c| c.node()).and_then(|n| index.node_name(n));
        if planned != Some(args.node.as_str()) {
            return Err(format!(
                "muster planned {} for this pod, not {}",
                planned.unwrap_or("no node (it was not filtered through muster)"),
                args.node
            ));
        }
    }
    let binding = Binding {
        metadata: kube::api::ObjectMeta {
            name: Some(args.pod_name.clone()),
            namespace: Some(args.pod_namespace.clone()),
            uid: (!args.pod_uid.is_empty()).then(|| args.pod_uid.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(args.node.clone()),
            ..Default::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &args.pod_namespace);
    let created = pods
        .create_subresource::<_, serde_json::Value>("binding", &args.pod_name, &PostParams::default(), &binding)
        .await;
    match created {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Bound already (a retried bind after a timeout, kubernetes#96579): fine if it is bound there.
            let current = pods.get(&args.pod_name).await.map_err(|e| e.to_string())?;
            if current.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(args.node.as_str()) {
                return Err(format!("binding conflict: {}", e.message));
            }
        }
        Err(e) => return Err(format!("creating the binding failed: {e}")),
    }
    let mut index = shared.lock();
    index.set_now(now_ms());
    index.assume_bound(&args.pod_namespace, &args.pod_name, &args.node);
    info!(pod = %format!("{}/{}", args.pod_namespace, args.pod_name), node = %args.node, "bound");
    Ok(())
}

async fn preempt(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let start = Instant::now();
    let args: ExtenderPreemptionArgs = match decode(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    // Victims by UID, per node, in whichever form kube-scheduler sent them.
    let mut proposed: Vec<(String, Vec<String>, i64)> = args
        .node_name_to_meta_victims
        .iter()
        .map(|(node, v)| (node.clone(), v.pods.iter().map(|p| p.uid.clone()).collect(), v.num_pdb_violations))
        .collect();
    for (node, v) in &args.node_name_to_victims {
        if !args.node_name_to_meta_victims.contains_key(node) {
            let uids = v.pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
            proposed.push((node.clone(), uids, v.num_pdb_violations));
        }
    }
    let mut result = ExtenderPreemptionResult::default();
    {
        let index = shared.lock();
        for (node, uids, pdb) in proposed {
            let ids: Vec<PodId> = uids.iter().filter_map(|u| index.pod(u).and_then(|e| e.id)).collect();
            // A node stays a candidate only if none of its victims would break a gang below its minimum.
            if index.core.allowed_victims(&ids).len() == ids.len() {
                result.node_name_to_meta_victims.insert(
                    node,
                    MetaVictims {
                        pods: uids.into_iter().map(|uid| MetaPod { uid }).collect(),
                        num_pdb_violations: pdb,
                    },
                );
            }
        }
    }
    shared.metrics.extender_latency.with_label_values(&["preempt"]).observe(start.elapsed().as_secs_f64());
    json(StatusCode::OK, &result)
}

#[derive(Serialize)]
struct StateDump {
    ready: bool,
    queues: Vec<QueueDump>,
    gangs: Vec<GangDump>,
}

#[derive(Serialize)]
struct QueueDump {
    name: String,
    weight: u64,
    open: bool,
    deserved: std::collections::BTreeMap<String, String>,
    allocated: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GangDump {
    namespace: String,
    name: String,
    kind: &'static str,
    queue: String,
    phase: String,
    reason: Option<String>,
    min_member: u32,
    bound: u32,
    reservations: Vec<ReservationDump>,
}

#[derive(Serialize)]
struct ReservationDump {
    template: String,
    node: String,
    count: u32,
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    use crate::index::GangKey;
    let index = shared.lock();
    let core = &index.core;
    let render = |r: &crate::core::Resources| {
        (0..core.resources.len())
            .filter(|&s| r.get(s) != 0 && r.get(s) != u64::MAX)
            .map(|s| (core.resources.name(s).to_string(), render_amount(core.resources.name(s), r.get(s))))
            .collect()
    };
    let queues = core
        .queues()
        .map(|(_, q)| QueueDump {
            name: q.spec.name.clone(),
            weight: q.spec.weight,
            open: q.spec.open,
            deserved: render(&q.deserved),
            allocated: render(&q.allocated),
        })
        .collect();
    let gangs = index
        .gangs()
        .map(|entry| {
            let (namespace, name, kind) = match &entry.key {
                GangKey::PodGroup { namespace, name } => (namespace.clone(), name.clone(), "PodGroup"),
                GangKey::Pod { namespace, name } => (namespace.clone(), name.clone(), "Pod"),
            };
            match entry.id.and_then(|id| core.gang(id)) {
                Some(g) => {
                    let mut reservations: std::collections::BTreeMap<(String, String), u32> = Default::default();
                    for s in &g.slots {
                        let key = (
                            g.spec.templates[s.template as usize].name.clone(),
                            index.node_name(s.node).unwrap_or_default().to_string(),
                        );
                        *reservations.entry(key).or_default() += 1;
                    }
                    GangDump {
                        namespace,
                        name,
                        kind,
                        queue: core.queue(g.spec.queue).map(|q| q.spec.name.clone()).unwrap_or_default(),
                        phase: format!("{:?}", g.phase),
                        reason: g.reason.as_ref().map(|r| format!("{}: {}", r.code(), r.message())),
                        min_member: g.min_total(),
                        bound: g.bound_total(),
                        reservations: reservations
                            .into_iter()
                            .map(|((template, node), count)| ReservationDump { template, node, count })
                            .collect(),
                    }
                }
                None => GangDump {
                    namespace,
                    name,
                    kind,
                    queue: String::new(),
                    phase: "Waiting".into(),
                    reason: entry.waiting.clone(),
                    min_member: 0,
                    bound: 0,
                    reservations: Vec::new(),
                },
            }
        })
        .collect();
    json(StatusCode::OK, &StateDump { ready: is_ready(&shared), queues, gangs })
}
