//! Property-based fuzzing of the extender's whole handler path: the router [`extender_router`] builds (its bounds,
//! the body limit, decoding, the four verbs) over [`Plans`] holding published plans, driven in-process with
//! `tower::ServiceExt::oneshot`.
//!
//! Inputs: arbitrary bytes; structurally valid but hostile requests (pods with missing, unknown or retyped fields,
//! node names with duplicates, escapes and unicode, `Nodes` of every shape, lists past the node limit, keys in
//! other letter cases); and mutations of those (a key dropped, duplicated, renamed or retyped, bytes truncated or
//! changed). Each goes to one of four routers: serving, serving with a 4 KiB body limit, a standby replica, and
//! (for bodies that never end) a 100 ms request deadline.
//!
//! Properties: no panic; the status is 200, 400, 408, 413 or 503; a refusal is JSON with a non-empty `Error`
//! (also the 413 for a body sent without a length that passes the limit while it is read); and the answer
//! is the one the published plans call for, checked against the request as the wire decoder reads it: filter
//! passes only names it was sent (exactly the directed node when it was offered), prioritize scores only names
//! it was sent within 0..=10, bind refuses in `Error` every bind muster did not plan, preempt keeps exactly the
//! proposals the admission task allowed. Generators also say whether a request is certainly valid or invalid,
//! and the answer must agree (200 or 400), so a decoder that refuses valid requests fails too.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseResult, TestRunner};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::server::{Extender, RequestLimits, extender_router};
use super::wire::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult, ExtenderPreemptionArgs,
    ExtenderPreemptionResult, HostPriorityList, MAX_BODY_BYTES, MAX_EXTENDER_PRIORITY, MetaPod, MetaVictims, NodeNames,
    decode, decode_with_node_limit,
};
use crate::metrics::Metrics;
use crate::plan::{Feedback, Health, Plans, PodPlan};

// ----- the routers under test -----

const SCHEDULER: &str = "muster";
const PREFIX: &str = "/muster";
/// Nodes the plans say muster knows: the body limit is 2 MiB + 3 × 16 KiB, the node limit 1,000.
const NODE_COUNT: usize = 3;
const NODE_LIMIT: usize = 1_000;
const ROOMY_BODY: usize = (2 << 20) + NODE_COUNT * (16 << 10);
const TIGHT_BODY: usize = 4 << 10;
const SLOW_TIMEOUT: Duration = Duration::from_millis(100);

/// Node names the generators favour (one needs JSON escapes, one is refused by the preemption responder).
const NODES: [&str; 6] = ["node-a", "node-b", "ñode-ü", "esc\"aped\\node", "z-node", ""];
/// Pod UIDs the generators favour: the published ones, one unknown, and the empty one.
const UIDS: [&str; 8] = [
    "uid-directed-a",
    "uid-directed-u",
    "uid-directed-esc",
    "uid-directed-z",
    "uid-waiting",
    "uid-bound",
    "uid-unknown",
    "",
];

fn published() -> Vec<(&'static str, PodPlan)> {
    vec![
        ("uid-directed-a", PodPlan::Directed("node-a".into())),
        ("uid-directed-u", PodPlan::Directed("ñode-ü".into())),
        ("uid-directed-esc", PodPlan::Directed("esc\"aped\\node".into())),
        ("uid-directed-z", PodPlan::Directed("z-node".into())),
        ("uid-waiting", PodPlan::Waiting("gang default/g waits for 2 more members".into())),
        ("uid-bound", PodPlan::Bound("node-b".into())),
    ]
}

fn plan_of(uid: &str) -> Option<PodPlan> {
    published().into_iter().find(|(u, _)| *u == uid).map(|(_, plan)| plan)
}

/// What the stand-in admission task allows of a preemption proposal.
fn preemption_allowed(node: &str) -> bool {
    !node.contains('z')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// Leader and synced, bounds that never bite.
    Serving,
    /// As `Serving`, with a 4 KiB body limit.
    Tight,
    /// A standby replica (not the leader).
    Standby,
    /// As `Serving`, with a 100 ms request deadline (only for bodies that never end).
    Slow,
}

impl Setup {
    fn body_limit(self) -> usize {
        if self == Setup::Tight { TIGHT_BODY } else { ROOMY_BODY }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Filter,
    Prioritize,
    Bind,
    Preempt,
}

const VERBS: [Verb; 4] = [Verb::Filter, Verb::Prioritize, Verb::Bind, Verb::Preempt];

impl Verb {
    fn path(self) -> &'static str {
        match self {
            Verb::Filter => "/muster/filter",
            Verb::Prioritize => "/muster/prioritize",
            Verb::Bind => "/muster/bind",
            Verb::Preempt => "/muster/preempt",
        }
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    serving: Router,
    tight: Router,
    standby: Router,
    slow: Router,
}

/// One set of routers for every test of the module (they run on parallel threads; the runtime's worker answers
/// the feedback and runs the kube client).
static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let _entered = runtime.enter();
        // An API server that is never there: a bind muster planned fails creating the Binding.
        let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().expect("a URL")))
            .expect("a kube client");
        let metrics = Arc::new(Metrics::new());
        let plans = |leader: bool| {
            let (feedback, mut inbox) = tokio::sync::mpsc::channel(4096);
            tokio::spawn(async move {
                while let Some(feedback) = inbox.recv().await {
                    if let Feedback::Preempt { proposals, reply } = feedback {
                        let allowed = proposals.into_iter().map(|(node, _)| node).filter(|n| preemption_allowed(n));
                        let _ = reply.send(allowed.collect());
                    }
                }
            });
            let plans = Plans::new(Health::new(Duration::from_secs(60)), feedback);
            plans.health.set_leader(leader);
            plans.health.set_synced();
            plans.set_node_count(NODE_COUNT);
            for (uid, plan) in published() {
                plans.set_pod(uid, plan);
            }
            Arc::new(plans)
        };
        let (leader, standby) = (plans(true), plans(false));
        let router = |plans: &Arc<Plans>, max_body_bytes: usize, request_timeout: Duration| {
            let extender = Extender {
                plans: plans.clone(),
                client: client.clone(),
                metrics: metrics.clone(),
                scheduler_name: SCHEDULER.into(),
            };
            let limits = RequestLimits { max_concurrent_requests: 64, request_timeout, max_body_bytes };
            extender_router(Arc::new(extender), PREFIX, limits)
        };
        let long = Duration::from_secs(60);
        Fixture {
            serving: router(&leader, MAX_BODY_BYTES, long),
            tight: router(&leader, TIGHT_BODY, long),
            standby: router(&standby, MAX_BODY_BYTES, long),
            slow: router(&leader, MAX_BODY_BYTES, SLOW_TIMEOUT),
            runtime,
        }
    }

    fn router(&self, setup: Setup) -> Router {
        match setup {
            Setup::Serving => self.serving.clone(),
            Setup::Tight => self.tight.clone(),
            Setup::Standby => self.standby.clone(),
            Setup::Slow => self.slow.clone(),
        }
    }
}

// ----- requests and answers -----

/// A request body, shown as text when it is UTF-8.
#[derive(Clone)]
struct Payload(Vec<u8>);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "{text:?}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

/// How the body travels.
#[derive(Clone, Debug)]
enum Delivery {
    /// In one piece.
    Whole { content_length: bool },
    /// In pieces of `size` bytes.
    Chunks { size: usize, content_length: bool },
    /// The first bytes, then nothing ever again.
    Stalled { prefix: Index, content_length: bool },
}

/// Whether a generated request is certainly decodable, certainly not, or either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Validity {
    Valid,
    Invalid,
    Unknown,
}

impl Validity {
    fn and(self, other: Validity) -> Validity {
        use Validity::*;
        match (self, other) {
            (Invalid, _) | (_, Invalid) => Invalid,
            (Unknown, _) | (_, Unknown) => Unknown,
            (Valid, Valid) => Valid,
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    verb: Verb,
    setup: Setup,
    delivery: Delivery,
    body: Payload,
    validity: Validity,
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Bytes,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.body);
        let shown: String = text.chars().take(600).collect();
        write!(f, "{} ({}) {shown:?}", self.status, self.content_type)
    }
}

fn send(case: &Case) -> Answer {
    let fixture = &*FIXTURE;
    let bytes = case.body.0.clone();
    let (body, content_length) = match &case.delivery {
        Delivery::Whole { content_length } => (Body::from(bytes.clone()), *content_length),
        Delivery::Chunks { size, content_length } => {
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                bytes.chunks((*size).max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            (Body::from_stream(futures::stream::iter(chunks)), *content_length)
        }
        Delivery::Stalled { prefix, content_length } => {
            let cut = prefix.index(bytes.len() + 1);
            let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(&bytes[..cut]))]);
            (Body::from_stream(first.chain(futures::stream::pending())), *content_length)
        }
    };
    let mut request = Request::post(case.verb.path());
    if content_length {
        request = request.header(header::CONTENT_LENGTH, bytes.len());
    }
    let request = request.body(body).expect("a valid request");
    let router = fixture.router(case.setup);
    fixture.runtime.block_on(async move {
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the answer's body");
        Answer { status, content_type, body }
    })
}

// ----- the properties -----

/// How often each interesting outcome was reached (the generators must reach them all).
#[derive(Default, Debug)]
struct Coverage(RefCell<BTreeMap<&'static str, usize>>);

impl Coverage {
    fn hit(&self, what: &'static str) {
        *self.0.borrow_mut().entry(what).or_default() += 1;
    }

    fn count(&self, what: &str) -> usize {
        self.0.borrow().get(what).copied().unwrap_or_default()
    }
}

/// A refusal in the wire format's shape: `status`, JSON, an `Error` that is not empty and contains `needle`.
fn json_error(answer: &Answer, status: u16, needle: &str) -> Result<String, TestCaseError> {
    prop_assert_eq!(answer.status.as_u16(), status, "{:?}", answer);
    prop_assert_eq!(answer.content_type.as_str(), "application/json", "{:?}", answer);
    let value: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("a refusal that is not JSON ({e}): {answer:?}")))?;
    let object = value.as_object().ok_or_else(|| TestCaseError::fail(format!("not an object: {answer:?}")))?;
    prop_assert_eq!(object.len(), 1, "only Error: {:?}", answer);
    let error = object.get("Error").and_then(Value::as_str).unwrap_or_default();
    prop_assert!(!error.is_empty(), "an empty Error: {:?}", answer);
    prop_assert!(error.contains(needle), "Error without {:?}: {:?}", needle, answer);
    Ok(error.to_owned())
}

fn ok_json(answer: &Answer) -> TestCaseResult {
    prop_assert_eq!(answer.status, StatusCode::OK, "{:?}", answer);
    prop_assert_eq!(answer.content_type.as_str(), "application/json", "{:?}", answer);
    Ok(())
}

fn check(case: &Case, answer: &Answer, coverage: &Coverage) -> TestCaseResult {
    let status = answer.status.as_u16();
    prop_assert!([200, 400, 408, 413, 503].contains(&status), "status {}: {:?}", status, answer);
    let body = &case.body.0;
    let declared = match case.delivery {
        Delivery::Whole { content_length } | Delivery::Chunks { content_length, .. } => content_length,
        Delivery::Stalled { .. } => {
            json_error(answer, 408, &format!("the request was not completed within {SLOW_TIMEOUT:?}"))?;
            coverage.hit("408");
            return Ok(());
        }
    };
    let limit = case.setup.body_limit();
    if body.len() > limit {
        if declared {
            json_error(
                answer,
                413,
                &format!("request body of {} bytes exceeds the limit of {limit} bytes", body.len()),
            )?;
            coverage.hit("413 from Content-Length");
        } else {
            // The body is cut off by the limit while it is read; the refusal says the limit all the same.
            json_error(answer, 413, &format!("request body exceeds the limit of {limit} bytes"))?;
            coverage.hit("413 while reading");
        }
        return Ok(());
    }
    let standby = case.setup == Setup::Standby;
    // The request as the handler reads it (the decoder is fuzzed on its own in tests/input_fuzz.rs): a refusal
    // must carry exactly the decoder's message, an answer must be the one the plans call for.
    macro_rules! decoded {
        ($decoded:expr) => {
            match $decoded {
                Err(e) => {
                    prop_assert!(case.validity != Validity::Valid, "a valid request refused: {e}");
                    let error = json_error(answer, 400, "")?;
                    prop_assert_eq!(error, e.to_string());
                    coverage.hit("400");
                    return Ok(());
                }
                Ok(args) => {
                    prop_assert!(case.validity != Validity::Invalid, "an invalid request decoded: {:?}", args);
                    args
                }
            }
        };
    }
    match case.verb {
        Verb::Filter | Verb::Prioritize => {
            let args: ExtenderArgs<'_> = decoded!(decode_with_node_limit(body, NODE_LIMIT));
            match case.verb {
                Verb::Filter if standby => {
                    json_error(answer, 503, "muster is not serving: not the leader")?;
                    coverage.hit("503 standby");
                    Ok(())
                }
                Verb::Filter => check_filter(&args, answer, coverage),
                _ => check_prioritize(&args, answer, coverage),
            }
        }
        Verb::Bind => {
            let args: ExtenderBindingArgs = decoded!(decode(body));
            check_bind(&args, standby, answer, coverage)
        }
        Verb::Preempt => {
            let args: ExtenderPreemptionArgs = decoded!(decode_with_node_limit(body, NODE_LIMIT));
            if standby {
                json_error(answer, 503, "muster is not serving: not the leader")?;
                return Ok(());
            }
            check_preempt(&args, answer, coverage)
        }
    }
}

/// The names of the candidate nodes, as the handlers read them: `NodeNames` if present, else `Nodes`' names.
fn candidates(args: &ExtenderArgs<'_>) -> Vec<String> {
    match (&args.node_names, &args.nodes) {
        (Some(names), _) => names.iter().map(|n| n.to_string()).collect(),
        (None, Some(list)) => list.items.iter().filter_map(|n| n.metadata.name.clone()).collect(),
        (None, None) => Vec::new(),
    }
}

fn check_filter(args: &ExtenderArgs<'_>, answer: &Answer, coverage: &Coverage) -> TestCaseResult {
    ok_json(answer)?;
    let result: ExtenderFilterResult<'_> = decode(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("undecodable filter answer ({e}): {answer:?}")))?;
    let names = candidates(args);
    prop_assert!(result.error.is_empty(), "{:?}", answer);
    prop_assert!(result.failed_nodes.is_empty(), "{:?}", answer);
    // Whatever the pod: only what was sent comes back.
    if let Some(passed) = &result.node_names {
        prop_assert!(args.node_names.is_some(), "NodeNames answered to a request without: {:?}", answer);
        for name in passed.iter() {
            prop_assert!(names.iter().any(|n| n == name), "{:?} was not sent: {:?}", name, answer);
        }
    }
    if let Some(passed) = &result.nodes {
        let sent: &[Node] = args.nodes.as_ref().map(|l| &l.items[..]).unwrap_or_default();
        prop_assert!(args.nodes.is_some(), "Nodes answered to a request without: {:?}", answer);
        for node in &passed.items {
            prop_assert!(sent.contains(node), "a node that was not sent: {:?}", answer);
        }
    }
    for (name, _) in &result.failed_and_unresolvable_nodes.0 {
        prop_assert!(names.iter().any(|n| n == name), "{:?} was not sent: {:?}", name, answer);
    }
    let ours = args.pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()) == Some(SCHEDULER);
    let uid = args.pod.metadata.uid.as_deref().unwrap_or_default();
    match plan_of(uid) {
        _ if !ours => {
            // Not muster's pod: every candidate passes, as sent.
            prop_assert_eq!(&result.node_names, &args.node_names, "{:?}", answer);
            prop_assert_eq!(&result.nodes, &args.nodes, "{:?}", answer);
            prop_assert!(result.failed_and_unresolvable_nodes.is_empty(), "{:?}", answer);
            coverage.hit("filter: not muster's pod");
        }
        Some(PodPlan::Directed(node)) if names.iter().any(|n| *n == *node) => {
            // The directed node alone.
            if args.node_names.is_some() {
                let only = NodeNames(vec![node.to_string().into()]);
                prop_assert_eq!(result.node_names.as_ref(), Some(&only), "{:?}", answer);
                prop_assert!(result.nodes.is_none(), "{:?}", answer);
            } else {
                let sent = &args.nodes.as_ref().expect("names came from Nodes").items;
                let chosen: Vec<&Node> = sent.iter().filter(|n| n.metadata.name.as_deref() == Some(&*node)).collect();
                let passed: Vec<&Node> = result.nodes.iter().flat_map(|l| &l.items).collect();
                prop_assert_eq!(passed, chosen, "{:?}", answer);
                prop_assert!(result.node_names.is_none(), "{:?}", answer);
            }
            prop_assert!(result.failed_and_unresolvable_nodes.is_empty(), "{:?}", answer);
            coverage.hit("filter: the directed node offered");
        }
        _ => {
            // Every candidate fails, unresolvable, for one reason.
            prop_assert_eq!(result.node_names.as_ref().map(|n| n.len()), args.node_names.as_ref().map(|_| 0));
            let nodes_expected = args.node_names.is_none() && args.nodes.is_some();
            prop_assert_eq!(result.nodes.as_ref().map(|l| l.items.len()), nodes_expected.then_some(0));
            let failed: Vec<&str> = result.failed_and_unresolvable_nodes.0.iter().map(|(n, _)| &**n).collect();
            prop_assert_eq!(failed, names.iter().map(String::as_str).collect::<Vec<_>>(), "{:?}", answer);
            let reasons: Vec<&str> = result.failed_and_unresolvable_nodes.0.iter().map(|(_, r)| &**r).collect();
            prop_assert!(
                reasons.iter().all(|r| r.len() > "muster: ".len() && r.starts_with("muster: ")),
                "{:?}",
                answer
            );
            prop_assert!(reasons.windows(2).all(|w| w[0] == w[1]), "one reason for all: {:?}", answer);
            coverage.hit("filter: refused");
        }
    }
    Ok(())
}

fn check_prioritize(args: &ExtenderArgs<'_>, answer: &Answer, coverage: &Coverage) -> TestCaseResult {
    ok_json(answer)?;
    let scores: HostPriorityList =
        decode(&answer.body).map_err(|e| TestCaseError::fail(format!("undecodable scores ({e}): {answer:?}")))?;
    let names = candidates(args);
    let directed = match args.pod.metadata.uid.as_deref().and_then(plan_of) {
        Some(PodPlan::Directed(node)) => Some(node.to_string()),
        _ => None,
    };
    prop_assert_eq!(scores.len(), names.len(), "one score per name sent: {:?}", answer);
    for (score, name) in scores.iter().zip(&names) {
        prop_assert_eq!(&score.host, name, "{:?}", answer);
        prop_assert!((0..=MAX_EXTENDER_PRIORITY).contains(&score.score), "{:?}", answer);
        let expected = if directed.as_ref() == Some(name) { MAX_EXTENDER_PRIORITY } else { 0 };
        prop_assert_eq!(score.score, expected, "{:?}", answer);
        if expected > 0 {
            coverage.hit("prioritize: the directed node scored");
        }
    }
    coverage.hit("prioritize");
    Ok(())
}

fn check_bind(args: &ExtenderBindingArgs, standby: bool, answer: &Answer, coverage: &Coverage) -> TestCaseResult {
    ok_json(answer)?;
    let result: ExtenderBindingResult =
        decode(&answer.body).map_err(|e| TestCaseError::fail(format!("undecodable bind answer ({e}): {answer:?}")))?;
    let error = result.error.as_str();
    let plan = if args.pod_uid.is_empty() { None } else { plan_of(&args.pod_uid) };
    let planned_here = matches!(&plan, Some(PodPlan::Directed(n) | PodPlan::Bound(n)) if **n == *args.node);
    if !planned_here || standby {
        prop_assert!(!error.is_empty(), "a bind muster did not plan was not refused: {:?}", answer);
    }
    let expected = if standby {
        "muster is not serving: not the leader".to_owned()
    } else {
        match &plan {
            None => format!("muster does not know pod {}/{}", args.pod_namespace, args.pod_name),
            Some(PodPlan::Bound(node)) if **node == *args.node => String::new(),
            Some(PodPlan::Bound(node)) => format!("the pod is already bound to {node}"),
            Some(PodPlan::Waiting(_)) => "muster has not directed this pod to a node".to_owned(),
            Some(PodPlan::Directed(node)) if **node != *args.node => {
                format!("muster planned {node} for this pod, not {}", args.node)
            }
            // The plan allows it; the API server is unreachable.
            Some(PodPlan::Directed(_)) => "creating the binding failed".to_owned(),
        }
    };
    if expected.is_empty() {
        prop_assert!(error.is_empty(), "a retried bind onto the node the pod is bound to: {:?}", answer);
        coverage.hit("bind: already bound there");
    } else {
        prop_assert!(error.contains(&expected), "expected {:?}: {:?}", expected, answer);
        coverage.hit(if planned_here && !standby { "bind: planned" } else { "bind: refused" });
    }
    Ok(())
}

fn check_preempt(args: &ExtenderPreemptionArgs, answer: &Answer, coverage: &Coverage) -> TestCaseResult {
    ok_json(answer)?;
    let result: ExtenderPreemptionResult = decode(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("undecodable preempt answer ({e}): {answer:?}")))?;
    let mut proposed = args.node_name_to_meta_victims.clone();
    for (node, victims) in &args.node_name_to_victims {
        proposed.entry(node.clone()).or_insert_with(|| MetaVictims {
            pods: victims.pods.iter().filter_map(|p| p.metadata.uid.clone()).map(|uid| MetaPod { uid }).collect(),
            num_pdb_violations: victims.num_pdb_violations,
        });
    }
    let any_refused = proposed.keys().any(|n| !preemption_allowed(n));
    proposed.retain(|node, _| preemption_allowed(node));
    prop_assert_eq!(&result.node_name_to_meta_victims, &proposed, "{:?}", answer);
    if !proposed.is_empty() {
        coverage.hit("preempt: allowed");
    }
    if any_refused {
        coverage.hit("preempt: some refused");
    }
    Ok(())
}

// ----- generators -----

/// A string a node name, pod name or UID might be: the favourites, DNS-like, any printable text, any characters
/// at all (controls, NUL, JSON escapes), empty.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(&NODES[..]).prop_map(str::to_owned),
        2 => "[a-z0-9.-]{0,12}",
        1 => "\\PC{0,10}",
        1 => prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
        1 => Just("\u{0}\u{1f}\\\"/\u{2028}\u{fffd}\u{10ffff}".to_owned()),
    ]
    .boxed()
}

fn uid() -> BoxedStrategy<String> {
    prop_oneof![4 => select(&UIDS[..]).prop_map(str::to_owned), 1 => text()].boxed()
}

fn scheduler_name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just(SCHEDULER.to_owned()),
        1 => Just("default-scheduler".to_owned()),
        1 => Just("Muster".to_owned()),
        1 => Just("muster ".to_owned()),
        1 => text(),
    ]
    .boxed()
}

/// A field of a generated object: left out, `null`, a value of its type, or one of another type.
#[derive(Clone, Debug)]
enum Field {
    Absent,
    Null,
    Good(Value),
    Bad(Value),
}

impl Field {
    /// Puts the field into `object` under `key`; a `required` field left out or `null` is invalid.
    fn put(self, object: &mut Map<String, Value>, key: &str, required: bool) -> Validity {
        let (value, validity) = match self {
            Field::Absent => return if required { Validity::Invalid } else { Validity::Valid },
            Field::Null => (Value::Null, if required { Validity::Invalid } else { Validity::Valid }),
            Field::Good(v) => (v, Validity::Valid),
            Field::Bad(v) => (v, Validity::Invalid),
        };
        object.insert(key.to_owned(), value);
        validity
    }
}

fn values(list: Vec<Value>) -> BoxedStrategy<Value> {
    select(list).boxed()
}

fn not_a_string() -> BoxedStrategy<Value> {
    values(vec![json!(7), json!(-1.5), json!(true), json!([]), json!({}), json!(["x"])])
}

fn not_a_list() -> BoxedStrategy<Value> {
    values(vec![json!(7), json!("node-a"), json!({}), json!(false), json!({"items": []})])
}

fn not_an_object() -> BoxedStrategy<Value> {
    values(vec![json!(7), json!("x"), json!(true), json!([]), json!([{}])])
}

fn not_an_i64() -> BoxedStrategy<Value> {
    values(vec![json!("3"), json!(1.5), json!(true), json!([]), json!({}), json!(u64::MAX), json!(-1e300)])
}

fn field(good: BoxedStrategy<Value>, bad: BoxedStrategy<Value>) -> BoxedStrategy<Field> {
    prop_oneof![
        2 => Just(Field::Absent),
        2 => Just(Field::Null),
        25 => good.prop_map(Field::Good),
        1 => bad.prop_map(Field::Bad),
    ]
    .boxed()
}

fn string_field(s: BoxedStrategy<String>) -> BoxedStrategy<Field> {
    field(s.prop_map(Value::String).boxed(), not_a_string())
}

/// An extra field of an object (`None` for none), with whether it keeps the object decodable.
fn extra(options: Vec<(&'static str, Value, Validity)>) -> BoxedStrategy<Option<(&'static str, Value, Validity)>> {
    prop_oneof![4 => Just(None), 1 => select(options).prop_map(Some)].boxed()
}

fn put_extra(object: &mut Map<String, Value>, extra: Option<(&'static str, Value, Validity)>) -> Validity {
    match extra {
        None => Validity::Valid,
        Some((key, value, validity)) => {
            object.insert(key.to_owned(), value);
            validity
        }
    }
}

fn metadata_extra() -> BoxedStrategy<Option<(&'static str, Value, Validity)>> {
    use Validity::*;
    extra(vec![
        ("creationTimestamp", json!("2024-01-01T00:00:00Z"), Valid),
        ("creationTimestamp", json!("yesterday"), Invalid),
        ("generation", json!(-1), Valid),
        ("generation", json!(1.5), Invalid),
        ("finalizers", json!(["a", "ü", ""]), Valid),
        ("finalizers", json!([1]), Invalid),
        ("annotations", json!(null), Valid),
        ("annotations", json!({"k": "\u{0}", "": ""}), Valid),
        ("ownerReferences", json!([{"uid": 5}]), Invalid),
        // Not the UID (keys inside Kubernetes objects match exactly): the plan of this one must not be found.
        ("UID", json!("uid-directed-a"), Valid),
        ("x-unknown", json!({"deep": [[[{"a": null}]]]}), Valid),
        ("managedFields", json!("x"), Invalid),
    ])
}

fn pod_extra() -> BoxedStrategy<Option<(&'static str, Value, Validity)>> {
    use Validity::*;
    extra(vec![
        ("apiVersion", json!("v1"), Valid),
        ("apiVersion", json!("apps/v1"), Invalid),
        ("kind", json!("Pod"), Valid),
        ("kind", json!("Node"), Invalid),
        ("status", json!({"phase": "Running", "podIP": "::1", "conditions": []}), Valid),
        ("status", json!(5), Invalid),
        ("Spec", json!({"schedulerName": SCHEDULER}), Valid),
    ])
}

fn containers() -> BoxedStrategy<(Option<Value>, Validity)> {
    use Validity::*;
    let container =
        |cpu: String| json!([{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]);
    prop_oneof![
        1 => Just((None, Valid)),
        1 => Just((Some(Value::Null), Valid)),
        1 => Just((Some(json!([])), Valid)),
        3 => text().prop_map(move |cpu| (Some(container(cpu)), Valid)),
        1 => prop_oneof![Just((Some(json!([{"name": 5}])), Invalid)), Just((Some(json!({})), Invalid))],
    ]
    .boxed()
}

/// A Pod: UID, names and scheduler name present, `null`, missing or retyped; labels; extra fields valid or not;
/// a spec of every shape.
fn pod() -> BoxedStrategy<(Value, Validity)> {
    let labels = prop::option::of(prop::collection::btree_map(text(), text(), 0..3));
    (
        string_field(uid()),
        string_field(text()),
        string_field(text()),
        string_field(scheduler_name()),
        labels,
        metadata_extra(),
        pod_extra(),
        prop_oneof![1 => Just(0u8), 1 => Just(1u8), 18 => Just(2u8), 1 => prop_oneof![Just(3u8), Just(4u8)]],
        containers(),
        prop::option::of(text()),
    )
        .prop_map(|(uid, name, namespace, scheduler, labels, meta_extra, pod_extra, shape, containers, node_name)| {
            let mut validity = Validity::Valid;
            let mut metadata = Map::new();
            validity = validity.and(uid.put(&mut metadata, "uid", false));
            validity = validity.and(name.put(&mut metadata, "name", false));
            validity = validity.and(namespace.put(&mut metadata, "namespace", false));
            if let Some(labels) = labels {
                metadata.insert("labels".into(), json!(labels));
            }
            validity = validity.and(put_extra(&mut metadata, meta_extra));
            let mut pod = Map::new();
            pod.insert("metadata".into(), Value::Object(metadata));
            validity = validity.and(put_extra(&mut pod, pod_extra));
            match shape {
                0 => {}
                1 => {
                    pod.insert("spec".into(), Value::Null);
                }
                2 => {
                    let mut spec = Map::new();
                    validity = validity.and(scheduler.put(&mut spec, "schedulerName", false));
                    let (containers, v) = containers;
                    if let Some(containers) = containers {
                        spec.insert("containers".into(), containers);
                    }
                    validity = validity.and(v);
                    if let Some(node) = node_name {
                        spec.insert("nodeName".into(), Value::String(node));
                    }
                    pod.insert("spec".into(), Value::Object(spec));
                }
                3 => {
                    pod.insert("spec".into(), json!("x"));
                    validity = Validity::Invalid;
                }
                _ => {
                    // The pod's metadata retyped.
                    pod.insert("metadata".into(), json!(["x"]));
                    validity = Validity::Invalid;
                }
            }
            (Value::Object(pod), validity)
        })
        .boxed()
}

/// A key of a wire struct as a client may spell it: Go matches keys in any letter case.
fn spelled(spellings: &'static [&'static str]) -> BoxedStrategy<&'static str> {
    prop_oneof![4 => Just(spellings[0]), 1 => select(spellings)].boxed()
}

/// Names added to a list, to reach and pass the node limit.
fn padding() -> BoxedStrategy<(usize, bool)> {
    (prop_oneof![14 => Just(0usize), 1 => 995usize..1006, 1 => 30usize..300], any::<bool>()).boxed()
}

fn padded(mut names: Vec<String>, (extra, same): (usize, bool)) -> Vec<String> {
    names.extend((0..extra).map(|i| if same { "node-a".to_owned() } else { format!("pad-{i}") }));
    names
}

/// A Node as kube-scheduler sends it: named (any name), unnamed, or with labels and status.
fn node_item() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => text().prop_map(|n| json!({"metadata": {"name": n}})),
        1 => Just(json!({})),
        1 => text().prop_map(|n| json!({
            "metadata": {"name": n, "labels": {"zone": "ü"}},
            "status": {"capacity": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True"}]},
        })),
    ]
    .boxed()
}

/// An item of `Nodes` that is not a Node.
fn not_a_node() -> BoxedStrategy<(Value, Validity)> {
    use Validity::*;
    select(vec![
        (json!({"metadata": {"name": 42}}), Invalid),
        (Value::Null, Unknown),
        (json!("node-a"), Invalid),
        (json!({"kind": "Pod"}), Invalid),
    ])
    .boxed()
}

/// The candidates of a filter or prioritize request: `NodeNames`, `Nodes`, both or neither, valid or not.
fn candidate_fields() -> BoxedStrategy<(Field, Field, Validity)> {
    use Validity::*;
    let names = (prop::collection::vec(text(), 0..12), padding()).prop_map(|(names, pad)| {
        let names = padded(names, pad);
        let validity = if names.len() > NODE_LIMIT { Invalid } else { Valid };
        (json!(names), validity)
    });
    let hostile = prop::option::weighted(0.1, (any::<Index>(), not_a_node()));
    let nodes = (prop::collection::vec(node_item(), 0..8), hostile, padding(), 0u8..4).prop_map(
        |(mut list, hostile, (extra, _), wrapper)| {
            let mut validity = Valid;
            if let Some((at, (item, v))) = hostile {
                list.insert(at.index(list.len() + 1), item);
                validity = v;
            }
            list.extend((0..extra).map(|i| json!({"metadata": {"name": format!("pad-{i}")}})));
            if list.len() > NODE_LIMIT {
                validity = Invalid;
            }
            let value = match wrapper {
                0 => json!({"items": list}),
                1 => json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": list}),
                // `items` null: no nodes.
                2 => return (json!({"items": null}), Valid),
                // The derived NodeList also reads the sequence form.
                _ => return (json!([list]), Unknown),
            };
            (value, validity)
        },
    );
    let wrong_names = not_a_list().prop_map(|v| (v, Invalid));
    let names = prop_oneof![16 => names, 1 => Just((json!([1]), Invalid)), 1 => wrong_names].boxed();
    let nodes = prop_oneof![16 => nodes, 1 => Just((json!("x"), Invalid))].boxed();
    let absent = || prop_oneof![Just(Field::Absent), Just(Field::Null)];
    let good_or_bad = |(value, validity): (Value, Validity)| match validity {
        Invalid => Field::Bad(value),
        _ => Field::Good(value),
    };
    let unknown = |validity: Validity| if validity == Unknown { Unknown } else { Valid };
    prop_oneof![
        6 => (names.clone(), absent()).prop_map(move |(n, absent)| (good_or_bad(n.clone()), absent, unknown(n.1))),
        3 => (absent(), nodes.clone()).prop_map(move |(absent, n)| (absent, good_or_bad(n.clone()), unknown(n.1))),
        1 => (names, nodes).prop_map(move |(a, b)| (good_or_bad(a.clone()), good_or_bad(b.clone()), unknown(a.1).and(unknown(b.1)))),
        1 => (absent(), absent()).prop_map(|(a, b)| (a, b, Valid)),
    ]
    .boxed()
}

/// The `Pod` of a request: under its key (spelled as Go would read it), missing, `null` or not an object.
fn pod_field() -> BoxedStrategy<(&'static str, Field)> {
    (
        spelled(&["Pod", "pod", "POD"]),
        prop_oneof![
            28 => pod().prop_map(|(pod, validity)| if validity == Validity::Invalid { Field::Bad(pod) } else { Field::Good(pod) }),
            1 => Just(Field::Absent),
            1 => Just(Field::Null),
            1 => not_an_object().prop_map(Field::Bad),
        ],
    )
        .boxed()
}

fn validity_of(field: &Field, nested: Validity) -> Validity {
    match field {
        Field::Good(_) => nested,
        _ => Validity::Valid,
    }
}

/// An unknown top-level key (ignored), or none.
fn top_extra() -> BoxedStrategy<Option<(&'static str, Value, Validity)>> {
    use Validity::*;
    extra(vec![
        ("Error", json!("x"), Valid),
        ("NodeNamesX", json!([1]), Valid),
        ("Pods", json!(5), Valid),
        ("", json!(null), Valid),
    ])
}

/// A filter or prioritize request.
fn extender_args() -> BoxedStrategy<(Value, Validity)> {
    (
        pod_field(),
        candidate_fields(),
        spelled(&["NodeNames", "nodeNames", "NODENAMES", "NodeNameſ"]),
        spelled(&["Nodes", "nodes", "NODES"]),
        top_extra(),
    )
        .prop_map(|((pod_key, pod_field), (names, nodes, nested), names_key, nodes_key, extra)| {
            let mut args = Map::new();
            let mut validity = pod_field.put(&mut args, pod_key, true);
            validity = validity.and(names.put(&mut args, names_key, false));
            validity = validity.and(nodes.put(&mut args, nodes_key, false));
            validity = validity.and(nested).and(put_extra(&mut args, extra));
            (Value::Object(args), validity)
        })
        .boxed()
}

/// A bind request: each field present, `null`, missing or retyped, under any spelling; UIDs and nodes mostly the
/// published ones, so planned, refused and already-bound binds all happen.
fn binding_args() -> BoxedStrategy<(Value, Validity)> {
    // A pod and the node of its plan (the one it is bound to, directed to, or any for a waiting one).
    let planned = select(published()).prop_map(|(uid, plan)| {
        let node = match plan {
            PodPlan::Directed(node) | PodPlan::Bound(node) => node.to_string(),
            PodPlan::Waiting(_) => "node-a".to_owned(),
        };
        (json!({"PodUID": uid, "Node": node, "PodName": "p", "PodNamespace": "default"}), Validity::Valid)
    });
    let any = (
        (spelled(&["PodUID", "poduid", "PodUid", "PODUID"]), string_field(uid())),
        (spelled(&["Node", "node", "NODE"]), string_field(node_key())),
        (spelled(&["PodName", "podName", "podname"]), string_field(text())),
        (spelled(&["PodNamespace", "podNamespace", "PODNAMESPACE"]), string_field(text())),
        top_extra(),
    )
        .prop_map(|(uid, node, name, namespace, extra)| {
            let mut args = Map::new();
            let mut validity = Validity::Valid;
            for (key, field) in [uid, node, name, namespace] {
                validity = validity.and(field.put(&mut args, key, false));
            }
            validity = validity.and(put_extra(&mut args, extra));
            (Value::Object(args), validity)
        });
    prop_oneof![1 => planned, 3 => any].boxed()
}

fn pdb_field() -> BoxedStrategy<Field> {
    field(prop_oneof![Just(0i64), any::<i64>()].prop_map(|n| json!(n)).boxed(), not_an_i64())
}

fn node_key() -> BoxedStrategy<String> {
    prop_oneof![4 => select(&NODES[..]).prop_map(str::to_owned), 1 => text()].boxed()
}

/// A preempt request: victims as full pods and as UIDs, per node, with PDB violation counts of every size.
fn preemption_args() -> BoxedStrategy<(Value, Validity)> {
    let victims = (prop::collection::vec(pod(), 0..3), pdb_field()).prop_map(|(pods, pdb)| {
        let mut object = Map::new();
        let mut validity = Validity::Valid;
        // Victims are read for their UIDs alone (a decoder may skip the rest): an invalid pod may pass.
        let pods: Vec<Value> = pods
            .into_iter()
            .map(|(pod, v)| {
                validity = validity.and(if v == Validity::Invalid { Validity::Unknown } else { v });
                pod
            })
            .collect();
        object.insert("Pods".into(), json!(pods));
        validity = validity.and(pdb.put(&mut object, "NumPDBViolations", false));
        (Value::Object(object), validity)
    });
    let meta_victims = (prop::collection::vec(string_field(uid()), 0..3), pdb_field()).prop_map(|(uids, pdb)| {
        let mut object = Map::new();
        let mut validity = Validity::Valid;
        let pods: Vec<Value> = uids
            .into_iter()
            .map(|uid| {
                let mut pod = Map::new();
                validity = validity.and(uid.put(&mut pod, "UID", false));
                Value::Object(pod)
            })
            .collect();
        object.insert("Pods".into(), json!(pods));
        validity = validity.and(pdb.put(&mut object, "NumPDBViolations", false));
        (Value::Object(object), validity)
    });
    let map = |entries: BoxedStrategy<(Value, Validity)>| {
        prop::collection::btree_map(node_key(), entries, 0..4).prop_map(|entries| {
            let mut validity = Validity::Valid;
            let object: Map<String, Value> = entries
                .into_iter()
                .map(|(node, (value, v))| {
                    validity = validity.and(v);
                    (node, value)
                })
                .collect();
            (Value::Object(object), validity)
        })
    };
    let map_field = |entries: BoxedStrategy<(Value, Validity)>| {
        prop_oneof![
            1 => Just((Field::Absent, Validity::Valid)),
            1 => Just((Field::Null, Validity::Valid)),
            8 => map(entries).prop_map(|(m, v)| (Field::Good(m), v)),
            1 => not_an_object().prop_map(|v| (Field::Bad(v), Validity::Valid)),
        ]
    };
    (
        pod_field(),
        map_field(victims.boxed()),
        map_field(meta_victims.boxed()),
        spelled(&["NodeNameToVictims", "nodeNameToVictims", "NODENAMETOVICTIMS"]),
        spelled(&["NodeNameToMetaVictims", "nodeNameToMetaVictims", "nodenametometavictims"]),
    )
        .prop_map(|((pod_key, pod), (victims, v1), (meta, v2), victims_key, meta_key)| {
            let mut args = Map::new();
            let mut validity = pod.put(&mut args, pod_key, true);
            validity = validity.and(validity_of(&victims, v1)).and(victims.put(&mut args, victims_key, false));
            validity = validity.and(validity_of(&meta, v2)).and(meta.put(&mut args, meta_key, false));
            (Value::Object(args), validity)
        })
        .boxed()
}

fn structured(verb: Verb) -> BoxedStrategy<(Value, Validity)> {
    match verb {
        Verb::Filter | Verb::Prioritize => extender_args(),
        Verb::Bind => binding_args(),
        Verb::Preempt => preemption_args(),
    }
}

// ----- mutations -----

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    At(usize),
}

/// Every position in `value` (not the root), depth first.
fn positions(value: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(Seg::Key(key.clone()));
                out.push(path.clone());
                positions(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Seg::At(i));
                out.push(path.clone());
                positions(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'v>(value: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, seg| match (v, seg) {
        (Value::Object(map), Seg::Key(key)) => map.get_mut(key),
        (Value::Array(items), Seg::At(i)) => items.get_mut(*i),
        _ => None,
    })
}

/// A key in another spelling: lower case, upper case, Go's non-ASCII folds (ſ for s, the Kelvin sign for k), or
/// one that matches nothing.
fn respell(key: &str, how: u8) -> String {
    match how {
        0 => key.to_lowercase(),
        1 => key.to_uppercase(),
        2 => key.replace(['s', 'S'], "ſ").replace(['k', 'K'], "\u{212A}"),
        _ => format!("{key}_"),
    }
}

/// A change to the tree of a valid request.
#[derive(Clone, Debug)]
enum TreeEdit {
    Replace(Index, Value),
    Remove(Index),
    Respell(Index, u8),
    /// An array element repeated, or an object entry copied under another spelling of its key.
    Duplicate(Index, u8),
}

fn retyped() -> BoxedStrategy<Value> {
    values(vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("node-a"),
        json!("uid-directed-a"),
        json!(SCHEDULER),
        json!([]),
        json!({}),
        json!(["node-a", "node-a"]),
    ])
}

fn tree_edit() -> BoxedStrategy<TreeEdit> {
    prop_oneof![
        3 => (any::<Index>(), retyped()).prop_map(|(at, v)| TreeEdit::Replace(at, v)),
        2 => any::<Index>().prop_map(TreeEdit::Remove),
        2 => (any::<Index>(), 0u8..4).prop_map(|(at, how)| TreeEdit::Respell(at, how)),
        2 => (any::<Index>(), 0u8..4).prop_map(|(at, how)| TreeEdit::Duplicate(at, how)),
    ]
    .boxed()
}

fn apply(root: &mut Value, edit: &TreeEdit) {
    let mut all = Vec::new();
    positions(root, &mut Vec::new(), &mut all);
    let at = match edit {
        TreeEdit::Replace(at, _) | TreeEdit::Remove(at) | TreeEdit::Respell(at, _) | TreeEdit::Duplicate(at, _) => at,
    };
    if all.is_empty() {
        return;
    }
    let path = &all[at.index(all.len())];
    let (last, parent) = path.split_last().expect("not the root");
    let Some(parent) = at_mut(root, parent) else { return };
    match (parent, last) {
        (Value::Object(map), Seg::Key(key)) => match edit {
            TreeEdit::Replace(_, value) => {
                map.insert(key.clone(), value.clone());
            }
            TreeEdit::Remove(_) => {
                map.remove(key);
            }
            TreeEdit::Respell(_, how) => {
                if let Some(value) = map.remove(key) {
                    map.insert(respell(key, *how), value);
                }
            }
            TreeEdit::Duplicate(_, how) => {
                if let Some(value) = map.get(key).cloned() {
                    map.insert(respell(key, *how), value);
                }
            }
        },
        (Value::Array(items), Seg::At(i)) => match edit {
            TreeEdit::Replace(_, value) => items[*i] = value.clone(),
            TreeEdit::Remove(_) => {
                items.remove(*i);
            }
            TreeEdit::Respell(..) => {}
            TreeEdit::Duplicate(..) => {
                let item = items[*i].clone();
                items.insert(*i, item);
            }
        },
        _ => {}
    }
}

/// Pieces of JSON text spliced into bodies.
const TOKENS: [&str; 24] = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "0",
    "-0",
    "1e999",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"Pod\"",
    "\"NodeNames\"",
    "\"Nodes\"",
    "\"PodUID\"",
    "\"uid\"",
    "\"node-a\"",
    " ",
    "\u{feff}",
    "\u{0}",
];

/// Keys inserted into bodies: the fields the decoders look for, in several spellings.
const KEYS: [&str; 16] = [
    "Pod",
    "pod",
    "NodeNames",
    "nodenames",
    "Nodes",
    "uid",
    "UID",
    "name",
    "schedulerName",
    "items",
    "Pods",
    "NumPDBViolations",
    "PodUID",
    "Node",
    "metadata",
    "spec",
];

/// A change to the text of a request.
#[derive(Clone, Debug)]
enum TextEdit {
    Truncate(Index),
    Byte(Index, u8),
    Splice(Index, &'static str),
    /// A key and value inserted at the start of the n-th object: a key given twice (in any spelling), a field
    /// where it does not belong, or a trailing comma.
    Entry(Index, &'static str, Value),
}

fn text_edit() -> BoxedStrategy<TextEdit> {
    prop_oneof![
        1 => any::<Index>().prop_map(TextEdit::Truncate),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| TextEdit::Byte(at, b)),
        1 => (any::<Index>(), select(&TOKENS[..])).prop_map(|(at, t)| TextEdit::Splice(at, t)),
        3 => (any::<Index>(), select(&KEYS[..]), retyped()).prop_map(|(at, k, v)| TextEdit::Entry(at, k, v)),
    ]
    .boxed()
}

fn apply_text(body: &mut Vec<u8>, edit: &TextEdit) {
    match edit {
        TextEdit::Truncate(at) => body.truncate(at.index(body.len() + 1)),
        TextEdit::Byte(at, byte) if !body.is_empty() => {
            let at = at.index(body.len());
            body[at] = *byte;
        }
        TextEdit::Byte(..) => {}
        TextEdit::Splice(at, token) => {
            let at = at.index(body.len() + 1);
            body.splice(at..at, token.bytes());
        }
        TextEdit::Entry(at, key, value) => {
            let braces: Vec<usize> = body.iter().enumerate().filter(|(_, b)| **b == b'{').map(|(i, _)| i).collect();
            if braces.is_empty() {
                return;
            }
            let after = braces[at.index(braces.len())] + 1;
            let entry = format!("{}:{},", json!(key), value);
            body.splice(after..after, entry.into_bytes());
        }
    }
}

/// A structured request of `verb` with its tree, then its text, edited.
fn mutated(verb: Verb) -> BoxedStrategy<Vec<u8>> {
    (structured(verb), prop::collection::vec(tree_edit(), 0..3), prop::collection::vec(text_edit(), 0..2))
        .prop_filter("an edit", |(_, tree, text)| !tree.is_empty() || !text.is_empty())
        .prop_map(|((mut value, _), tree, text)| {
            for edit in &tree {
                apply(&mut value, edit);
            }
            let mut body = serde_json::to_vec(&value).expect("JSON");
            for edit in &text {
                apply_text(&mut body, edit);
            }
            body
        })
        .boxed()
}

/// Bytes of every kind: random, JSON-ish tokens, deep nesting.
fn arbitrary_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..512),
        1 => prop::collection::vec(any::<u8>(), 4000..9000),
        3 => prop::collection::vec(select(&TOKENS[..]), 0..64).prop_map(|t| t.concat().into_bytes()),
        1 => (0usize..3000, 0u8..3).prop_map(|(depth, how)| match how {
            0 => format!("{{\"Pod\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
            1 => format!("{{\"Pod\":{{\"metadata\":{{\"labels\":{}{}}}}}}}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes(),
            _ => "[".repeat(depth).into_bytes(),
        }),
        1 => Just(Vec::new()),
        1 => Just(b" \n\t ".to_vec()),
    ]
    .boxed()
}

fn setup() -> BoxedStrategy<Setup> {
    prop_oneof![6 => Just(Setup::Serving), 2 => Just(Setup::Tight), 1 => Just(Setup::Standby)].boxed()
}

fn delivery() -> BoxedStrategy<Delivery> {
    prop_oneof![
        2 => Just(Delivery::Whole { content_length: true }),
        1 => Just(Delivery::Whole { content_length: false }),
        1 => (1usize..8192, any::<bool>()).prop_map(|(size, content_length)| Delivery::Chunks { size, content_length }),
    ]
    .boxed()
}

fn case(verbs: &'static [Verb], body: fn(Verb) -> BoxedStrategy<(Vec<u8>, Validity)>) -> BoxedStrategy<Case> {
    select(verbs)
        .prop_flat_map(move |verb| (Just(verb), setup(), delivery(), body(verb)))
        .prop_map(|(verb, setup, delivery, (body, validity))| Case {
            verb,
            setup,
            delivery,
            body: Payload(body),
            validity,
        })
        .boxed()
}

/// Runs `cases` cases of `strategy` through the router and the properties; then every outcome in `reached` must
/// have happened at least once.
fn fuzz(cases: u32, strategy: BoxedStrategy<Case>, reached: &[&str]) {
    let coverage = Coverage::default();
    let config = Config { cases, source_file: Some(file!()), ..Config::default() };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, |case| check(&case, &send(&case), &coverage)) {
        panic!("{e}");
    }
    for what in reached {
        assert!(coverage.count(what) > 0, "no case reached {what:?}: {coverage:?}");
    }
}

// ----- the tests -----

#[test]
fn arbitrary_bytes_for_every_verb() {
    fuzz(
        8192,
        case(&VERBS, |_| arbitrary_bytes().prop_map(|b| (b, Validity::Unknown)).boxed()),
        &["400", "413 from Content-Length", "413 while reading"],
    );
}

#[test]
fn hostile_filter_and_prioritize_requests() {
    fuzz(
        16384,
        case(&[Verb::Filter, Verb::Prioritize], |verb| {
            structured(verb).prop_map(|(v, validity)| (serde_json::to_vec(&v).expect("JSON"), validity)).boxed()
        }),
        &[
            "400",
            "503 standby",
            "413 from Content-Length",
            "413 while reading",
            "filter: not muster's pod",
            "filter: the directed node offered",
            "filter: refused",
            "prioritize",
            "prioritize: the directed node scored",
        ],
    );
}

#[test]
fn hostile_bind_requests() {
    fuzz(
        8192,
        case(&[Verb::Bind], |verb| {
            structured(verb).prop_map(|(v, validity)| (serde_json::to_vec(&v).expect("JSON"), validity)).boxed()
        }),
        &["400", "bind: planned", "bind: refused", "bind: already bound there"],
    );
}

#[test]
fn hostile_preempt_requests() {
    fuzz(
        8192,
        case(&[Verb::Preempt], |verb| {
            structured(verb).prop_map(|(v, validity)| (serde_json::to_vec(&v).expect("JSON"), validity)).boxed()
        }),
        &["400", "preempt: allowed", "preempt: some refused"],
    );
}

#[test]
fn mutated_requests_for_every_verb() {
    fuzz(
        16384,
        case(&VERBS, |verb| mutated(verb).prop_map(|b| (b, Validity::Unknown)).boxed()),
        &["400", "filter: refused", "prioritize", "bind: refused", "preempt: allowed"],
    );
}

#[test]
fn bodies_that_never_end_time_out() {
    let strategy = (select(&VERBS[..]), any::<Index>(), any::<bool>())
        .prop_flat_map(|(verb, prefix, content_length)| {
            (Just(verb), Just(prefix), Just(content_length), structured(verb))
        })
        .prop_map(|(verb, prefix, content_length, (value, _))| Case {
            verb,
            setup: Setup::Slow,
            delivery: Delivery::Stalled { prefix, content_length },
            body: Payload(serde_json::to_vec(&value).expect("JSON")),
            validity: Validity::Unknown,
        })
        .boxed();
    fuzz(32, strategy, &["408"]);
}
