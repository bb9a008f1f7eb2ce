//! The HTTP layer: kube-scheduler's extender verbs, plus health, readiness, metrics and a read-only state dump.
//!
//! Handlers read what the admission task published ([`Plans`]): a concurrent map of pod UID to its plan, and a
//! snapshot for `/state`. No handler takes a lock on the model, runs a cycle or writes anything into the model;
//! what they learn (a bind made, nodes not offered, a preemption question) goes to the admission task as
//! [`Feedback`]. The only handler that waits on the API server is bind (it creates the Binding). Bad input gets
//! a 400 with the wire format's `Error` field set; nothing a client sends can panic a handler.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Api, PostParams};
use serde::Serialize;
use tower::ServiceBuilder;
use tracing::{info, warn};

use super::access::{StateAccess, StateView};
use super::wire::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, ExtenderPreemptionArgs,
    ExtenderPreemptionResult, MAX_EXTENDER_PRIORITY, MetaPod, MetaVictims, NodeNames, WireError, decode,
    decode_with_node_limit,
};
use crate::metrics::Metrics;
use crate::plan::{Feedback, Plans, PodPlan};

/// What the handlers share.
pub struct Extender {
    pub plans: Arc<Plans>,
    pub client: kube::Client,
    pub metrics: Arc<Metrics>,
    /// Pods with this `spec.schedulerName` are muster's; others (another profile of the same kube-scheduler)
    /// pass every node.
    pub scheduler_name: String,
}

/// How long preempt waits for the admission task's answer before it proposes nothing (the safe answer).
const PREEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Request-level bounds of the extender listener.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Requests handled at once; more are answered 503 at once (load shedding: kube-scheduler retries the pod
    /// later) rather than queued behind the ones in flight.
    pub max_concurrent_requests: usize,
    /// A request (its body read, decoded and answered) not done by then gets 408 and is dropped.
    pub request_timeout: Duration,
    /// The request body never exceeds this, whatever the cluster's size.
    pub max_body_bytes: usize,
}

/// Body bytes allowed per node muster knows: a full Node object (with its images and conditions) when
/// kube-scheduler is not `nodeCacheCapable`; a name takes a few dozen.
const BODY_BYTES_PER_NODE: usize = 16 << 10;
/// Body bytes allowed whatever the node count: the pod (an object in etcd is at most 1.5 MiB) and the envelope.
const BODY_BYTES_BASE: usize = 2 << 20;
/// Node names or objects accepted in one request whatever the node count (a cluster still being discovered).
const NODES_PER_REQUEST_BASE: usize = 1_000;

impl Extender {
    /// The request body limit: sized by the nodes muster knows (kube-scheduler never sends more than the
    /// cluster has), never above the configured ceiling.
    pub fn body_limit(&self, ceiling: usize) -> usize {
        BODY_BYTES_BASE.saturating_add(self.plans.node_count().saturating_mul(BODY_BYTES_PER_NODE)).min(ceiling)
    }

    /// Node names or objects accepted in one request: twice the nodes known (the watch may lag behind
    /// kube-scheduler's cache), at least [`NODES_PER_REQUEST_BASE`].
    fn node_limit(&self) -> usize {
        self.plans.node_count().saturating_mul(2).max(NODES_PER_REQUEST_BASE)
    }
}

/// The extender verbs under `prefix` (`POST <prefix>/filter|prioritize|bind|preempt`), for the extender
/// listener, with its bounds: body size by [`Extender::body_limit`], at most `max_concurrent_requests` in
/// flight, each within `request_timeout`.
pub fn extender_router(extender: Arc<Extender>, prefix: &str, limits: RequestLimits) -> Router {
    let prefix = prefix.trim_end_matches('/');
    let shed = extender.metrics.http_rejected_requests.clone();
    let bounds = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |error: tower::BoxError| {
            let shed = shed.clone();
            async move { refusal(&shed, "extender", &error, limits.request_timeout) }
        }))
        .load_shed()
        // One semaphore for the listener: `Router::layer` wraps each route apart, and a per-route limit would let
        // four times as many requests in.
        .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(Arc::new(tokio::sync::Semaphore::new(
            limits.max_concurrent_requests,
        ))))
        .timeout(limits.request_timeout);
    Router::new()
        .route(&format!("{prefix}/filter"), post(filter))
        .route(&format!("{prefix}/prioritize"), post(prioritize))
        .route(&format!("{prefix}/bind"), post(bind))
        .route(&format!("{prefix}/preempt"), post(preempt))
        .fallback(no_such_verb)
        .layer(middleware::from_fn_with_state((extender.clone(), limits.max_body_bytes), bound_body))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(bounds)
        .layer(middleware::from_fn_with_state(extender.metrics.clone(), count_request))
        .with_state(extender)
}

/// Counts every extender request by verb and the status code answered, those refused by a bound included
/// (`muster_extender_requests_total`: the extender's error rate).
async fn count_request(
    State(metrics): State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let verb: &'static str = match request.uri().path().rsplit('/').next() {
        Some("filter") => "filter",
        Some("prioritize") => "prioritize",
        Some("bind") => "bind",
        Some("preempt") => "preempt",
        _ => "other",
    };
    let response = next.run(request).await;
    metrics.extender_requests.with_label_values(&[verb, response.status().as_str()]).inc();
    response
}

/// `/healthz` and `/readyz`, for the health listener (kubelet's probes).
pub fn health_router(extender: Arc<Extender>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(0))
        .with_state(extender)
}

/// `/metrics` and `/state`, for the metrics listener; `/state` answers what its caller may see
/// ([`StateAccess`]).
pub fn metrics_router(extender: Arc<Extender>, access: Arc<StateAccess>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/state", get(state))
        .layer(DefaultBodyLimit::max(0))
        .with_state((extender, access))
}

/// The answer to a request a bound refused: 503 when over the concurrency limit, 408 past the deadline.
fn refusal(
    counter: &prometheus::IntCounterVec,
    listener: &str,
    error: &tower::BoxError,
    timeout: Duration,
) -> Response {
    let (status, message) = if error.is::<tower::load_shed::error::Overloaded>() {
        (StatusCode::SERVICE_UNAVAILABLE, "muster is handling as many requests as it allows; retry".to_owned())
    } else if error.is::<tower::timeout::error::Elapsed>() {
        (StatusCode::REQUEST_TIMEOUT, format!("the request was not completed within {timeout:?}"))
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("request failed: {error}"))
    };
    counter.with_label_values(&[listener, status.as_str()]).inc();
    json(status, &serde_json::json!({ "Error": message }))
}

/// Refuses a body over [`Extender::body_limit`] from its Content-Length before reading it, and stops reading
/// one sent without a length as soon as it passes the limit. Every refusal leaves in the wire format's shape
/// (`{"Error": ...}`), including those axum makes itself (a body cut at the limit, a malformed chunked body, an
/// unknown path or method).
async fn bound_body(
    State((x, ceiling)): State<(Arc<Extender>, usize)>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let limit = x.body_limit(ceiling);
    let too_large = |size: Option<u64>| {
        x.metrics.http_rejected_requests.with_label_values(&["extender", "413"]).inc();
        let size = size.map(|s| format!(" of {s} bytes")).unwrap_or_default();
        json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &serde_json::json!({ "Error": format!(
                "request body{size} exceeds the limit of {limit} bytes (sized by the {} nodes muster knows)",
                x.plans.node_count()
            ) }),
        )
    };
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large(declared);
    }
    let request = request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes() == b"application/json");
    if status == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        too_large(None)
    } else if status.is_client_error() && !is_json {
        let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let message =
            if text.trim().is_empty() { status.canonical_reason().unwrap_or("bad request") } else { text.trim() };
        json(status, &serde_json::json!({ "Error": message }))
    } else {
        response
    }
}

/// Anything but the four verbs.
async fn no_such_verb(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "Error": format!(
            "no extender verb at {method} {}: POST <urlPrefix>/filter, /prioritize, /bind or /preempt",
            uri.path()
        ) }),
    )
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

/// A 503 in the wire format's shape when this replica must not answer: a standby, or still loading its cache.
/// kube-scheduler retries the pod; the Service in front of the replicas routes only to the ready one.
fn not_serving(x: &Extender) -> Option<Response> {
    if x.plans.health.is_serving() {
        return None;
    }
    x.plans.health.readiness().err().map(|why| {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "Error": format!("muster is not serving: {why}; retry") }),
        )
    })
}

async fn readyz(State(x): State<Arc<Extender>>) -> Response {
    match x.plans.health.readiness() {
        Ok(()) => "ok".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics(State((x, _)): State<(Arc<Extender>, Arc<StateAccess>)>) -> Response {
    x.metrics.ready.set(i64::from(x.plans.health.readiness().is_ok()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], x.metrics.render()).into_response()
}

async fn filter(State(x): State<Arc<Extender>>, body: Bytes) -> Response {
    let start = Instant::now();
    let args: ExtenderArgs<'_> = match decode_with_node_limit(&body, x.node_limit()) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    if let Some(refusal) = not_serving(&x) {
        return refusal;
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
    let ours = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()) == Some(x.scheduler_name.as_str());
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    // The request's pod is used only to look up its published plan: the watch, not the request, is the truth.
    let decision: Result<Option<Arc<str>>, Cow<'static, str>> = if !ours {
        Ok(None)
    } else if uid.is_empty() {
        Err(Cow::Borrowed("the pod has no metadata.uid"))
    } else {
        match x.plans.pod(uid) {
            Some(PodPlan::Directed(node)) => {
                if names.iter().any(|candidate| candidate.as_ref() == node.as_ref()) {
                    Ok(Some(node))
                } else {
                    x.plans.send(Feedback::NotOffered {
                        uid: uid.to_string(),
                        offered: names.iter().map(|n| n.to_string()).collect(),
                    });
                    Err(Cow::Owned(format!(
                        "its reserved node {node} is not among the {} nodes kube-scheduler offered; muster directs it \
                         again among those",
                        names.len()
                    )))
                }
            }
            Some(PodPlan::Waiting(reason)) => Err(Cow::Owned(reason.to_string())),
            Some(PodPlan::Bound(node)) => Err(Cow::Owned(format!("pod is already bound to {node}"))),
            None => Err(Cow::Owned(format!(
                "pod {}/{} is not yet known to muster (its watch has not delivered it, or it no longer exists); \
                 retry",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            ))),
        }
    };
    if decision.is_err() && !uid.is_empty() && ours {
        x.plans.note_refused(uid);
    }
    let mut result = ExtenderFilterResult::default();
    match decision {
        // Not muster's pod: every candidate passes.
        Ok(None) => {
            result.node_names = node_names;
            result.nodes = nodes;
        }
        // The member's directed node alone. kube-scheduler drops the candidates an extender leaves out, and a
        // pod that fits triggers no preemption, so listing the other 4,999 nodes would only cost time.
        Ok(Some(chosen)) => {
            if node_names.is_some() {
                result.node_names = Some(NodeNames(vec![Cow::Owned(chosen.to_string())]));
            } else if let Some(mut list) = nodes {
                list.items.retain(|n| n.metadata.name.as_deref() == Some(chosen.as_ref()));
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
    x.metrics.extender_latency.with_label_values(&["filter"]).observe(start.elapsed().as_secs_f64());
    json(StatusCode::OK, &result)
}

async fn prioritize(State(x): State<Arc<Extender>>, body: Bytes) -> Response {
    let start = Instant::now();
    let args: ExtenderArgs<'_> = match decode_with_node_limit(&body, x.node_limit()) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    // Names borrowed from the request: scoring allocates nothing per node.
    let names: Vec<&str> = match (&args.node_names, &args.nodes) {
        (Some(n), _) => n.0.iter().map(|s| s.as_ref()).collect(),
        (None, Some(list)) => list.items.iter().filter_map(|n| n.metadata.name.as_deref()).collect(),
        (None, None) => Vec::new(),
    };
    // The directed node scores the maximum; filter normally leaves it alone, so this is a tie-breaker.
    let directed = match args.pod.metadata.uid.as_deref().and_then(|uid| x.plans.pod(uid)) {
        Some(PodPlan::Directed(node)) => Some(node),
        _ => None,
    };
    /// [`super::wire::HostPriority`], borrowing its name.
    #[derive(Serialize)]
    struct Score<'a> {
        #[serde(rename = "Host")]
        host: &'a str,
        #[serde(rename = "Score")]
        score: i64,
    }
    let scores: Vec<Score<'_>> = names
        .into_iter()
        .map(|host| {
            let score = if directed.as_deref() == Some(host) { MAX_EXTENDER_PRIORITY } else { 0 };
            Score { host, score }
        })
        .collect();
    x.metrics.extender_latency.with_label_values(&["prioritize"]).observe(start.elapsed().as_secs_f64());
    json(StatusCode::OK, &scores)
}

async fn bind(State(x): State<Arc<Extender>>, body: Bytes) -> Response {
    let start = Instant::now();
    let args: ExtenderBindingArgs = match decode(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    let serving = if x.plans.health.is_serving() { Ok(()) } else { x.plans.health.readiness() };
    let answer = match serving {
        Ok(()) => bind_pod(&x, &args).await,
        Err(why) => Err(format!("muster is not serving: {why}")),
    };
    x.metrics.extender_latency.with_label_values(&["bind"]).observe(start.elapsed().as_secs_f64());
    let error = match answer {
        Ok(()) => String::new(),
        Err(e) => {
            x.metrics.action_failures.with_label_values(&["bind"]).inc();
            warn!(pod = %format!("{}/{}", args.pod_namespace, args.pod_name), node = %args.node, error = %e, "bind refused");
            e
        }
    };
    json(StatusCode::OK, &ExtenderBindingResult { error })
}

/// Binds only a pod muster manages, only onto the node it directed the pod to, and only once (a repeated bind of
/// a pod already bound there succeeds without a second write).
async fn bind_pod(x: &Extender, args: &ExtenderBindingArgs) -> Result<(), String> {
    let unknown = || format!("muster does not know pod {}/{}", args.pod_namespace, args.pod_name);
    if args.pod_uid.is_empty() {
        return Err(unknown());
    }
    match x.plans.pod(&args.pod_uid) {
        None => return Err(unknown()),
        Some(PodPlan::Bound(node)) if node.as_ref() == args.node => return Ok(()), // a retried bind
        Some(PodPlan::Bound(node)) => return Err(format!("the pod is already bound to {node}")),
        Some(PodPlan::Waiting(reason)) => return Err(format!("muster has not directed this pod to a node: {reason}")),
        Some(PodPlan::Directed(node)) if node.as_ref() != args.node => {
            return Err(format!("muster planned {node} for this pod, not {}", args.node));
        }
        Some(PodPlan::Directed(_)) => {}
    }
    let binding = Binding {
        metadata: kube::api::ObjectMeta {
            name: Some(args.pod_name.clone()),
            namespace: Some(args.pod_namespace.clone()),
            uid: Some(args.pod_uid.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(args.node.clone()),
            ..Default::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(x.client.clone(), &args.pod_namespace);
    let created = pods
        .create_subresource::<_, serde_json::Value>("binding", &args.pod_name, &PostParams::default(), &binding)
        .await;
    match created {
        Ok(_) => {}
        Err(e) if crate::api::errors::is_conflict(&e) => {
            // Bound already (a retried bind after a timeout, kubernetes#96579): fine if it is bound there.
            let current = pods.get(&args.pod_name).await.map_err(|e| e.to_string())?;
            if current.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(args.node.as_str()) {
                return Err(format!("binding conflict: {e}"));
            }
        }
        Err(e) => return Err(format!("creating the binding failed: {e}")),
    }
    x.plans.send(Feedback::Bound {
        namespace: args.pod_namespace.clone(),
        name: args.pod_name.clone(),
        uid: args.pod_uid.clone(),
        node: args.node.clone(),
    });
    info!(pod = %format!("{}/{}", args.pod_namespace, args.pod_name), node = %args.node, "bound");
    Ok(())
}

async fn preempt(State(x): State<Arc<Extender>>, body: Bytes) -> Response {
    let start = Instant::now();
    let args: ExtenderPreemptionArgs = match decode_with_node_limit(&body, x.node_limit()) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    if let Some(refusal) = not_serving(&x) {
        return refusal;
    }
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
    // A node stays a candidate only if none of its victims would break a gang below its minimum; the admission
    // task, which owns the gangs, decides. Without its answer in time, nothing is proposed (never a broken gang).
    let (reply, answer) = tokio::sync::oneshot::channel();
    let proposals = proposed.iter().map(|(node, uids, _)| (node.clone(), uids.clone())).collect();
    let allowed: Vec<String> = if x.plans.send(Feedback::Preempt { proposals, reply }) {
        tokio::time::timeout(PREEMPT_TIMEOUT, answer).await.ok().and_then(Result::ok).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut result = ExtenderPreemptionResult::default();
    for (node, uids, pdb) in proposed {
        if allowed.contains(&node) {
            result.node_name_to_meta_victims.insert(
                node,
                MetaVictims { pods: uids.into_iter().map(|uid| MetaPod { uid }).collect(), num_pdb_violations: pdb },
            );
        }
    }
    x.metrics.extender_latency.with_label_values(&["preempt"]).observe(start.elapsed().as_secs_f64());
    json(StatusCode::OK, &result)
}

/// `/state`: the last published snapshot, with this replica's role and readiness; the gangs limited to what the
/// caller may see (`?namespace=` asks for one namespace).
async fn state(
    State((x, access)): State<(Arc<Extender>, Arc<StateAccess>)>,
    Query(query): Query<StateQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    #[derive(Serialize)]
    struct StateDump<'a> {
        ready: bool,
        leader: bool,
        queues: &'a [crate::plan::QueueState],
        gangs: Vec<&'a crate::plan::GangState>,
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let view = match access.authorize(authorization, query.namespace.as_deref()).await {
        Ok(view) => view,
        Err(denied) => {
            let status = StatusCode::from_u16(denied.status).unwrap_or(StatusCode::FORBIDDEN);
            x.metrics.http_rejected_requests.with_label_values(&["metrics", status.as_str()]).inc();
            return json(status, &serde_json::json!({ "Error": denied.message }));
        }
    };
    let snapshot = x.plans.state();
    let gangs = snapshot
        .gangs
        .iter()
        .filter(|g| match &view {
            StateView::All => true,
            StateView::Namespace(ns) => &g.namespace == ns,
        })
        .collect();
    let health = &x.plans.health;
    json(
        StatusCode::OK,
        &StateDump { ready: health.readiness().is_ok(), leader: health.is_leader(), queues: &snapshot.queues, gangs },
    )
}

#[derive(Debug, serde::Deserialize)]
struct StateQuery {
    namespace: Option<String>,
}
