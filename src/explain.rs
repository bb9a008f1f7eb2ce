//! `muster status` and `muster explain`: what muster decided, read from the cluster like kubectl reads it (the
//! kubeconfig, the user's own permissions), for people (`-o text`) and scripts (`-o json`).
//!
//! Everything shown comes from the objects muster writes: Queue status (deserved, allocated, gang counts),
//! PodGroup status (phase, the `Unschedulable` condition whose reason is the admission decision, reservations) and
//! the Events muster records on a pod that is a gang of one. The reading is split from the rendering:
//! [`explain_podgroup`], [`explain_single_pod`] and [`queue_rows`] are pure functions of the objects, tested without
//! a cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::api::{PodGroup, PodGroupPhase, Queue};
use crate::index::convert::gang_key;

/// Why a gang waits, grouped as a person asks about it. The `reason` codes of the PodGroup condition map onto
/// these (docs/troubleshooting.md explains each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitCategory {
    /// Admitted: every minimum member is bound or has capacity reserved.
    Admitted,
    /// The queue's share (its deserved share, capability, others' guarantees, or a closed queue) stops it.
    Quota,
    /// The nodes that match its members lack the capacity in total.
    Capacity,
    /// The capacity exists in total but in pieces too small for its members.
    Fragmentation,
    /// Another gang of its queue is first in line.
    BlockedHead,
    /// Capacity is being reclaimed from queues that borrowed it.
    Reclaim,
    /// Larger than the cluster can ever hold: waiting will not help.
    NeverFits,
    /// Its reservations timed out because members never appeared.
    MembersMissing,
    /// Not yet a gang muster can decide about (its queue or Spark configuration is missing, its PodGroup is
    /// incomplete).
    NotReady,
    /// Its members completed or failed: nothing to admit.
    Finished,
    /// Nothing recorded yet (a PodGroup muster has not decided about).
    Unknown,
}

impl WaitCategory {
    pub fn of_reason(reason: &str) -> WaitCategory {
        match reason {
            "Admitted" => WaitCategory::Admitted,
            "QueueClosed" | "QueueCapability" | "GuaranteeOfOtherQueues" | "OverDeserved" => WaitCategory::Quota,
            "NotEnoughResources" | "Draining" => WaitCategory::Capacity,
            "Fragmented" => WaitCategory::Fragmentation,
            "BehindHeadOfQueue" => WaitCategory::BlockedHead,
            "Reclaiming" | "EvictionRefused" | "MembersTerminating" => WaitCategory::Reclaim,
            "NeverFits" => WaitCategory::NeverFits,
            "ReservationExpired" => WaitCategory::MembersMissing,
            "Waiting"
            | "InvalidSparkConf"
            | "SparkConfUnreadable"
            | "MalformedSparkDriver"
            | "MalformedPod"
            | "MalformedPodGroup"
            | "PodGroupChangeRejected" => WaitCategory::NotReady,
            _ => WaitCategory::Unknown,
        }
    }

    fn summary(self) -> &'static str {
        match self {
            WaitCategory::Admitted => "admitted",
            WaitCategory::Quota => "waiting for its queue's share (quota), not for nodes",
            WaitCategory::Capacity => "waiting for capacity: the nodes its members may use are too full",
            WaitCategory::Fragmentation => {
                "waiting for capacity (fragmentation): enough is free in total, but in pieces too small for its members"
            }
            WaitCategory::BlockedHead => "waiting behind the gang at the head of its queue",
            WaitCategory::Reclaim => "reclaim in flight: capacity is being taken back from queues that borrowed it",
            WaitCategory::NeverFits => "can never fit this cluster: waiting will not help",
            WaitCategory::MembersMissing => "its reservations expired: members never appeared",
            WaitCategory::NotReady => "not a gang muster can admit yet",
            WaitCategory::Finished => "finished: its members completed or failed",
            WaitCategory::Unknown => "no admission decision recorded yet",
        }
    }
}

/// One member template of a gang, as its PodGroup declares it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateNeed {
    pub name: String,
    pub min_member: i32,
    /// Requests of one member (name → quantity).
    pub resources: BTreeMap<String, String>,
    /// Minimum members neither bound nor reserved (from the placement muster recorded).
    pub missing: i32,
}

/// The queue as its status shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueRow {
    pub name: String,
    pub weight: i32,
    pub state: String,
    pub deserved: BTreeMap<String, String>,
    pub allocated: BTreeMap<String, String>,
    pub pending: i32,
    pub inqueue: i32,
    pub running: i32,
}

/// The answer of `muster explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// What was asked about: `Pod ns/name` or `PodGroup ns/name`.
    pub object: String,
    /// The gang: `PodGroup ns/name`, or the pod itself when it is a gang of one.
    pub gang: String,
    pub queue: Option<String>,
    pub phase: Option<String>,
    pub admitted: bool,
    pub category: WaitCategory,
    /// The machine-readable reason (PodGroup condition or Event reason).
    pub reason: Option<String>,
    pub message: Option<String>,
    pub templates: Vec<TemplateNeed>,
    pub queue_status: Option<QueueRow>,
    /// Whether the pod is muster's (its schedulerName), when a pod was asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_by_muster: Option<bool>,
}

fn quantities(
    map: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

/// The rows of `muster status`, sorted by queue name.
pub fn queue_rows(queues: &[Queue]) -> Vec<QueueRow> {
    let mut rows: Vec<QueueRow> = queues.iter().map(queue_row).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

fn queue_row(q: &Queue) -> QueueRow {
    let status = q.status.clone().unwrap_or_default();
    QueueRow {
        name: q.name_any(),
        weight: q.spec.weight,
        state: status.state.map(|s| format!("{s:?}")).unwrap_or_else(|| "Unknown".into()),
        deserved: quantities(&status.deserved),
        allocated: quantities(&status.allocated),
        pending: status.pending,
        inqueue: status.inqueue,
        running: status.running,
    }
}

/// Explains a gang from its PodGroup and its queue.
pub fn explain_podgroup(object: String, pg: &PodGroup, queue: Option<&Queue>) -> Explanation {
    let status = pg.status.clone().unwrap_or_default();
    let phase = status.phase;
    let admitted = matches!(phase, Some(PodGroupPhase::Inqueue | PodGroupPhase::Running));
    let condition = status.conditions.iter().find(|c| c.type_ == "Unschedulable");
    // True while it waits (the reason it waits), False once admitted (reason `Admitted`).
    let (reason, message) = condition.map(|c| (c.reason.clone(), c.message.clone())).unwrap_or_default();
    let category = match (&reason, phase) {
        (_, Some(PodGroupPhase::Inqueue | PodGroupPhase::Running)) => WaitCategory::Admitted,
        (_, Some(PodGroupPhase::Completed | PodGroupPhase::Failed)) => WaitCategory::Finished,
        (Some(r), _) => WaitCategory::of_reason(r),
        (None, _) => WaitCategory::Unknown,
    };
    let mut placed: BTreeMap<&str, i32> = BTreeMap::new();
    for p in &status.placement {
        *placed.entry(p.template.as_str()).or_default() += p.count;
    }
    let templates = pg
        .spec
        .member_templates
        .iter()
        .map(|t| TemplateNeed {
            name: t.name.clone(),
            min_member: t.min_member,
            resources: quantities(&t.resources),
            missing: (t.min_member - placed.get(t.name.as_str()).copied().unwrap_or(0)).max(0),
        })
        .collect();
    Explanation {
        object,
        gang: format!("PodGroup {}/{}", pg.namespace().unwrap_or_default(), pg.name_any()),
        queue: (!pg.spec.queue.is_empty()).then(|| pg.spec.queue.clone()).or_else(|| queue.map(|q| q.name_any())),
        phase: phase.map(|p| format!("{p:?}")),
        admitted,
        category,
        reason,
        message,
        templates,
        queue_status: queue.map(queue_row),
        scheduled_by_muster: None,
    }
}

/// Explains a pod that is a gang of one, from the last Event muster recorded on it.
pub fn explain_single_pod(pod: &Pod, last_event: Option<&Event>, scheduler_name: &str) -> Explanation {
    let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let reason = last_event.and_then(|e| e.reason.clone());
    let category = if bound {
        WaitCategory::Admitted
    } else {
        reason.as_deref().map(WaitCategory::of_reason).unwrap_or(WaitCategory::Unknown)
    };
    let ours = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()) == Some(scheduler_name);
    let object = format!("Pod {}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    Explanation {
        gang: format!("{object} (a gang of one)"),
        object,
        queue: crate::index::convert::queue_annotation(&pod.metadata).map(str::to_string),
        phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
        admitted: bound,
        category,
        reason,
        message: last_event.and_then(|e| e.message.clone()),
        templates: Vec::new(),
        queue_status: None,
        scheduled_by_muster: Some(ours),
    }
}

fn resources_text(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// `muster status` for people: one line per queue.
pub fn status_table(rows: &[QueueRow]) -> String {
    let mut lines = vec![[
        "QUEUE".to_string(),
        "WEIGHT".into(),
        "STATE".into(),
        "DESERVED".into(),
        "ALLOCATED".into(),
        "PENDING".into(),
        "INQUEUE".into(),
        "RUNNING".into(),
    ]];
    for r in rows {
        lines.push([
            r.name.clone(),
            r.weight.to_string(),
            r.state.clone(),
            resources_text(&r.deserved),
            resources_text(&r.allocated),
            r.pending.to_string(),
            r.inqueue.to_string(),
            r.running.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..8).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// `muster explain` for people.
pub fn explanation_text(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", e.object);
    if e.scheduled_by_muster == Some(false) {
        let _ = writeln!(out, "  not scheduled by muster: its schedulerName is not muster's");
    }
    let _ = writeln!(out, "  gang:     {}", e.gang);
    if let Some(q) = &e.queue {
        let _ = writeln!(out, "  queue:    {q}");
    }
    if let Some(qs) = &e.queue_status {
        let _ = writeln!(
            out,
            "            weight {}, deserved {}, allocated {}; gangs pending {}, inqueue {}, running {}",
            qs.weight,
            resources_text(&qs.deserved),
            resources_text(&qs.allocated),
            qs.pending,
            qs.inqueue,
            qs.running
        );
    }
    if let Some(p) = &e.phase {
        let _ = writeln!(out, "  phase:    {p}");
    }
    let _ = writeln!(out, "  admitted: {}", if e.admitted { "yes" } else { "no" });
    if !e.admitted {
        let reason = e.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        let _ = writeln!(out, "  why:      {}{reason}", e.category.summary());
        if let Some(m) = &e.message {
            let _ = writeln!(out, "            {m}");
        }
    }
    for t in &e.templates {
        let _ = writeln!(
            out,
            "  needs:    {} x {:?} ({} each){}",
            t.min_member,
            t.name,
            resources_text(&t.resources),
            if t.missing > 0 && !e.admitted { format!(", {} not placed", t.missing) } else { String::new() }
        );
    }
    out
}

/// Errors of the reading commands.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Usage(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("reading {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

fn api_error(what: &str) -> impl FnOnce(kube::Error) -> ExplainError + '_ {
    move |source| ExplainError::Api { what: what.to_string(), source }
}

/// Reads every Queue.
pub async fn read_status(client: &Client) -> Result<Vec<QueueRow>, ExplainError> {
    let queues = Api::<Queue>::all(client.clone()).list(&ListParams::default()).await.map_err(api_error("Queues"))?;
    Ok(queue_rows(&queues.items))
}

/// What `explain` was asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A pod if one has the name, else a PodGroup.
    Any,
    Pod,
    PodGroup,
}

/// Reads what explains `namespace/name`.
pub async fn read_explanation(
    client: &Client,
    namespace: &str,
    name: &str,
    target: Target,
    scheduler_name: &str,
    default_queue: &str,
) -> Result<Explanation, ExplainError> {
    let queues = Api::<Queue>::all(client.clone());
    let read_queue = |name: String| {
        let queues = queues.clone();
        async move { queues.get_opt(&name).await.map_err(api_error("the Queue")) }
    };
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let groups = Api::<PodGroup>::namespaced(client.clone(), namespace);
    let pod = match target {
        Target::PodGroup => None,
        _ => pods.get_opt(name).await.map_err(api_error("the pod"))?,
    };
    let (object, group_name) = match (&pod, target) {
        (Some(pod), _) => match gang_key(pod) {
            Some(g) => (format!("Pod {namespace}/{name}"), g.name),
            None => {
                let event = last_muster_event(client, namespace, pod).await?;
                let mut e = explain_single_pod(pod, event.as_ref(), scheduler_name);
                let queue = e.queue.get_or_insert_with(|| default_queue.to_string()).clone();
                e.queue_status = read_queue(queue).await?.as_ref().map(queue_row);
                return Ok(e);
            }
        },
        (None, Target::Pod) => return Err(ExplainError::NotFound { what: format!("pod {namespace}/{name}") }),
        (None, _) => (format!("PodGroup {namespace}/{name}"), name.to_string()),
    };
    let Some(pg) = groups.get_opt(&group_name).await.map_err(api_error("the PodGroup"))? else {
        let Some(pod) = &pod else {
            return Err(ExplainError::NotFound { what: format!("pod or PodGroup {namespace}/{name}") });
        };
        // The pod names a PodGroup that does not exist (yet): what muster said about the pod is the answer
        // (e.g. a Spark driver it cannot read), else muster has not seen it.
        let event = last_muster_event(client, namespace, pod).await?;
        let mut e = explain_single_pod(pod, event.as_ref(), scheduler_name);
        e.gang = format!("PodGroup {namespace}/{group_name} (does not exist)");
        if event.is_none() {
            e.category = WaitCategory::NotReady;
            e.message = Some(format!(
                "the pod names PodGroup {group_name}, which does not exist, and muster recorded no Event on the pod: \
                 create the PodGroup, or (a Spark driver) check that muster is running"
            ));
        }
        return Ok(e);
    };
    let queue = match pg.spec.queue.as_str() {
        "" => read_queue(default_queue.to_string()).await?,
        q => read_queue(q.to_string()).await?,
    };
    let mut e = explain_podgroup(object, &pg, queue.as_ref());
    if let Some(pod) = &pod {
        e.scheduled_by_muster =
            Some(pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()) == Some(scheduler_name));
    }
    Ok(e)
}

/// The newest Event muster recorded on a pod.
async fn last_muster_event(client: &Client, namespace: &str, pod: &Pod) -> Result<Option<Event>, ExplainError> {
    let Some(uid) = pod.uid() else { return Ok(None) };
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await
        .map_err(api_error("the pod's Events"))?;
    Ok(newest_muster_event(events.items))
}

/// The newest Event muster recorded, among a pod's Events. An Event repeated with the same reason is one Event
/// whose series advances: its newest occurrence is the series' last observation, not its creation.
fn newest_muster_event(events: Vec<Event>) -> Option<Event> {
    events
        .into_iter()
        .filter(|e| {
            (e.reporting_component.as_deref() == Some("muster")
                || e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("muster"))
                && crate::api::names::EVENT_ACTIONS.contains(&e.action.as_deref().unwrap_or_default())
        })
        .max_by_key(|e| {
            let repeated = e.series.as_ref().and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0);
            repeated.or(e.last_timestamp.as_ref().map(|t| t.0)).or(e.event_time.as_ref().map(|t| t.0))
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Event, EventSeries, Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::api::ConditionStatus;
    use crate::api::{
        MemberTemplate, ObservedQueueState, PodGroupCondition, PodGroupSpec, PodGroupStatus, QueueSpec, QueueStatus,
        Reservation, names,
    };
    use crate::core::WaitReason;

    /// The category each core reason belongs to. Exhaustive on purpose: a new [`WaitReason`] does not compile here
    /// until someone decides how `muster explain` presents it (and adds it to [`every_wait_reason`]).
    fn expected_category(reason: &WaitReason) -> WaitCategory {
        match reason {
            WaitReason::QueueClosed
            | WaitReason::QueueCapability { .. }
            | WaitReason::GuaranteeOfOtherQueues { .. }
            | WaitReason::OverDeserved { .. } => WaitCategory::Quota,
            WaitReason::Insufficient { .. } | WaitReason::Draining { .. } => WaitCategory::Capacity,
            WaitReason::Fragmented { .. } => WaitCategory::Fragmentation,
            WaitReason::NeverFits { .. } => WaitCategory::NeverFits,
            WaitReason::Reclaiming { .. } | WaitReason::MembersTerminating => WaitCategory::Reclaim,
            WaitReason::BehindHead { .. } => WaitCategory::BlockedHead,
        }
    }

    fn every_wait_reason() -> Vec<WaitReason> {
        let detail = || "detail".into();
        vec![
            WaitReason::QueueClosed,
            WaitReason::QueueCapability { detail: detail() },
            WaitReason::GuaranteeOfOtherQueues { detail: detail() },
            WaitReason::OverDeserved { detail: detail() },
            WaitReason::Insufficient { detail: detail() },
            WaitReason::Fragmented { detail: detail() },
            WaitReason::NeverFits { detail: detail() },
            WaitReason::Draining { detail: detail() },
            WaitReason::Reclaiming { detail: detail() },
            WaitReason::MembersTerminating,
            WaitReason::BehindHead { head: "team/head".into() },
        ]
    }

    #[test]
    fn every_core_wait_reason_code_has_its_category() {
        let reasons = every_wait_reason();
        let mut codes: Vec<&str> = reasons.iter().map(WaitReason::code).collect();
        for reason in &reasons {
            assert_eq!(WaitCategory::of_reason(reason.code()), expected_category(reason), "{}", reason.code());
            assert_ne!(WaitCategory::of_reason(reason.code()), WaitCategory::Unknown, "{}", reason.code());
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), reasons.len(), "two core reasons share a code: {codes:?}");
        // The codes docs/troubleshooting.md and scripts know, spelled out once.
        let by_code: Vec<(&str, WaitCategory)> =
            reasons.iter().map(|r| (r.code(), WaitCategory::of_reason(r.code()))).collect();
        assert_eq!(
            by_code,
            vec![
                ("QueueClosed", WaitCategory::Quota),
                ("QueueCapability", WaitCategory::Quota),
                ("GuaranteeOfOtherQueues", WaitCategory::Quota),
                ("OverDeserved", WaitCategory::Quota),
                ("NotEnoughResources", WaitCategory::Capacity),
                ("Fragmented", WaitCategory::Fragmentation),
                ("NeverFits", WaitCategory::NeverFits),
                ("Draining", WaitCategory::Capacity),
                ("Reclaiming", WaitCategory::Reclaim),
                ("MembersTerminating", WaitCategory::Reclaim),
                ("BehindHeadOfQueue", WaitCategory::BlockedHead),
            ]
        );
    }

    #[test]
    fn controller_status_codes_have_their_category() {
        // The codes src/controller/status.rs writes besides the core's, and the Spark problems of the index.
        for (code, category) in [
            ("Admitted", WaitCategory::Admitted),
            ("Waiting", WaitCategory::NotReady),
            ("EvictionRefused", WaitCategory::Reclaim),
            ("ReservationExpired", WaitCategory::MembersMissing),
            ("InvalidSparkConf", WaitCategory::NotReady),
            ("SparkConfUnreadable", WaitCategory::NotReady),
        ] {
            assert_eq!(WaitCategory::of_reason(code), category, "{code}");
        }
        for code in ["", "admitted", "notenoughresources", "Reclaimed", "SomethingNew"] {
            assert_eq!(WaitCategory::of_reason(code), WaitCategory::Unknown, "{code:?}");
        }
    }

    #[test]
    fn categories_serialise_as_the_stable_kebab_case_names() {
        for (category, name) in [
            (WaitCategory::Admitted, "admitted"),
            (WaitCategory::Quota, "quota"),
            (WaitCategory::Capacity, "capacity"),
            (WaitCategory::Fragmentation, "fragmentation"),
            (WaitCategory::BlockedHead, "blocked-head"),
            (WaitCategory::Reclaim, "reclaim"),
            (WaitCategory::NeverFits, "never-fits"),
            (WaitCategory::MembersMissing, "members-missing"),
            (WaitCategory::NotReady, "not-ready"),
            (WaitCategory::Unknown, "unknown"),
        ] {
            assert_eq!(serde_json::to_value(category).unwrap(), serde_json::json!(name));
        }
    }

    fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), Quantity((*v).to_string()))).collect()
    }

    fn template(name: &str, min: i32, resources: &[(&str, &str)]) -> MemberTemplate {
        MemberTemplate {
            name: name.into(),
            min_member: min,
            resources: quantities(resources),
            ..MemberTemplate::default()
        }
    }

    /// PodGroup team/wide in queue gold: one 1-cpu driver and three executors of 2 cpu / 4Gi.
    fn wide(status: Option<PodGroupStatus>) -> PodGroup {
        let mut pg = PodGroup::new(
            "wide",
            PodGroupSpec {
                min_member: Some(4),
                queue: "gold".into(),
                member_templates: vec![
                    template("driver", 1, &[("cpu", "1"), ("memory", "2Gi")]),
                    template("executor", 3, &[("cpu", "2"), ("memory", "4Gi")]),
                ],
                ..PodGroupSpec::default()
            },
        );
        pg.metadata.namespace = Some("team".into());
        pg.status = status;
        pg
    }

    fn unschedulable(status: ConditionStatus, reason: &str, message: &str) -> PodGroupCondition {
        PodGroupCondition {
            type_: "Unschedulable".into(),
            status,
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: None,
        }
    }

    fn placed(template: &str, node: &str, count: i32) -> Reservation {
        Reservation { template: template.into(), node: node.into(), count }
    }

    fn gold() -> Queue {
        let mut q = Queue::new("gold", QueueSpec { weight: 3, ..QueueSpec::default() });
        q.status = Some(QueueStatus {
            state: Some(ObservedQueueState::Open),
            deserved: quantities(&[("cpu", "8"), ("memory", "32Gi")]),
            allocated: quantities(&[("cpu", "6")]),
            pending: 1,
            inqueue: 0,
            running: 2,
        });
        q
    }

    #[test]
    fn a_pending_podgroup_is_explained_by_its_condition_with_every_minimum_member_missing() {
        let pg = wide(Some(PodGroupStatus {
            phase: Some(PodGroupPhase::Pending),
            conditions: vec![unschedulable(
                ConditionStatus::True,
                "NotEnoughResources",
                "waiting for capacity: 3 x \"executor\" (cpu 2, memory 4Gi each) exceed the free capacity of all 2 \
                 nodes that match its constraints",
            )],
            ..PodGroupStatus::default()
        }));
        let e = explain_podgroup("Pod team/wide-driver".into(), &pg, Some(&gold()));
        assert_eq!(e.object, "Pod team/wide-driver");
        assert_eq!(e.gang, "PodGroup team/wide");
        assert_eq!(e.queue.as_deref(), Some("gold"));
        assert_eq!(e.phase.as_deref(), Some("Pending"));
        assert!(!e.admitted);
        assert_eq!(e.category, WaitCategory::Capacity);
        assert_eq!(e.reason.as_deref(), Some("NotEnoughResources"));
        assert!(e.message.as_deref().is_some_and(|m| m.contains("exceed the free capacity")), "{:?}", e.message);
        assert_eq!(
            e.templates,
            vec![
                TemplateNeed {
                    name: "driver".into(),
                    min_member: 1,
                    resources: BTreeMap::from([("cpu".into(), "1".into()), ("memory".into(), "2Gi".into())]),
                    missing: 1,
                },
                TemplateNeed {
                    name: "executor".into(),
                    min_member: 3,
                    resources: BTreeMap::from([("cpu".into(), "2".into()), ("memory".into(), "4Gi".into())]),
                    missing: 3,
                },
            ]
        );
        let queue = e.queue_status.as_ref().expect("the queue was given");
        assert_eq!((queue.name.as_str(), queue.weight, queue.state.as_str()), ("gold", 3, "Open"));
        assert_eq!(queue.deserved["cpu"], "8");
        assert_eq!(queue.allocated["cpu"], "6");
        assert_eq!((queue.pending, queue.inqueue, queue.running), (1, 0, 2));
        assert_eq!(e.scheduled_by_muster, None);

        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["category"], "capacity");
        assert_eq!(json["admitted"], false);
        assert_eq!(json["templates"][1]["resources"]["memory"], "4Gi");
        assert!(json.get("scheduled_by_muster").is_none(), "left out for a PodGroup: {json}");

        let text = explanation_text(&e);
        assert!(text.starts_with("Pod team/wide-driver\n"), "{text}");
        assert!(text.contains("  gang:     PodGroup team/wide\n"), "{text}");
        assert!(text.contains("  queue:    gold\n"), "{text}");
        assert!(text.contains("weight 3, deserved cpu 8, memory 32Gi, allocated cpu 6"), "{text}");
        assert!(text.contains("  admitted: no\n"), "{text}");
        assert!(text.contains("why:      waiting for capacity") && text.contains("(NotEnoughResources)"), "{text}");
        assert!(text.contains("needs:    3 x \"executor\" (cpu 2, memory 4Gi each), 3 not placed"), "{text}");
        assert!(!text.contains("not scheduled by muster"), "{text}");
    }

    #[test]
    fn an_admitted_podgroup_with_its_placement_misses_nobody() {
        let pg = wide(Some(PodGroupStatus {
            phase: Some(PodGroupPhase::Running),
            conditions: vec![unschedulable(
                ConditionStatus::False,
                "Admitted",
                "every minimum member is bound or has capacity reserved",
            )],
            placement: vec![
                placed("driver", "node-a", 1),
                placed("executor", "node-a", 1),
                placed("executor", "node-b", 2),
            ],
            running: 3,
            ..PodGroupStatus::default()
        }));
        let e = explain_podgroup("PodGroup team/wide".into(), &pg, None);
        assert!(e.admitted);
        assert_eq!(e.category, WaitCategory::Admitted);
        assert_eq!(e.reason.as_deref(), Some("Admitted"));
        assert_eq!(e.phase.as_deref(), Some("Running"));
        assert_eq!(
            e.templates.iter().map(|t| (t.name.as_str(), t.missing)).collect::<Vec<_>>(),
            [("driver", 0), ("executor", 0)]
        );
        assert_eq!(e.queue_status, None);
        let text = explanation_text(&e);
        assert!(text.contains("  admitted: yes\n"), "{text}");
        assert!(!text.contains("why:") && !text.contains("not placed"), "{text}");
    }

    #[test]
    fn the_phase_decides_admission_and_placement_counts_per_template() {
        // Inqueue with a condition left from before: admitted all the same.
        let pg = wide(Some(PodGroupStatus {
            phase: Some(PodGroupPhase::Inqueue),
            conditions: vec![unschedulable(ConditionStatus::True, "NotEnoughResources", "stale")],
            placement: vec![placed("driver", "node-a", 1), placed("executor", "node-b", 3)],
            ..PodGroupStatus::default()
        }));
        let e = explain_podgroup("PodGroup team/wide".into(), &pg, None);
        assert!(e.admitted);
        assert_eq!(e.category, WaitCategory::Admitted);

        // Pending with part of its members placed: only the rest is missing.
        let pg = wide(Some(PodGroupStatus {
            phase: Some(PodGroupPhase::Pending),
            conditions: vec![unschedulable(ConditionStatus::True, "Fragmented", "only 1 of 3 fit")],
            placement: vec![placed("executor", "node-b", 1), placed("executor", "node-c", 1)],
            ..PodGroupStatus::default()
        }));
        let e = explain_podgroup("PodGroup team/wide".into(), &pg, None);
        assert!(!e.admitted);
        assert_eq!(e.category, WaitCategory::Fragmentation);
        assert_eq!(e.templates.iter().map(|t| t.missing).collect::<Vec<_>>(), [1, 1]);
        assert!(explanation_text(&e).contains("fragmentation"));

        // Nothing decided yet: no status at all.
        let e = explain_podgroup("PodGroup team/wide".into(), &wide(None), None);
        assert_eq!(
            (e.category, e.admitted, e.phase.as_deref(), e.reason.as_deref()),
            (WaitCategory::Unknown, false, None, None)
        );
        assert!(explanation_text(&e).contains("no admission decision recorded yet"));
    }

    fn pod(node: Option<&str>, scheduler: &str, queue: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("solo".into()),
                namespace: Some("team".into()),
                annotations: queue.map(|q| BTreeMap::from([(names::QUEUE_ANNOTATION.to_string(), q.to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                scheduler_name: Some(scheduler.into()),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn event(reason: &str, message: &str) -> Event {
        Event { reason: Some(reason.into()), message: Some(message.into()), ..Event::default() }
    }

    #[test]
    fn a_gang_of_one_is_explained_by_muster_s_last_event() {
        let waiting = event("NeverFits", "gang can never fit this cluster: no node matches");
        let e = explain_single_pod(&pod(None, "muster", Some("gold")), Some(&waiting), "muster");
        assert_eq!(e.object, "Pod team/solo");
        assert_eq!(e.gang, "Pod team/solo (a gang of one)");
        assert_eq!(e.queue.as_deref(), Some("gold"));
        assert_eq!((e.admitted, e.category), (false, WaitCategory::NeverFits));
        assert_eq!(e.reason.as_deref(), Some("NeverFits"));
        assert_eq!(e.scheduled_by_muster, Some(true));
        assert!(e.templates.is_empty());
        assert!(explanation_text(&e).contains("can never fit"));

        let admitted = event("Admitted", "admitted");
        let e = explain_single_pod(&pod(Some("node-a"), "muster", None), Some(&admitted), "muster");
        assert_eq!((e.admitted, e.category), (true, WaitCategory::Admitted));

        let e = explain_single_pod(&pod(None, "default-scheduler", None), None, "muster");
        assert_eq!((e.admitted, e.category, e.scheduled_by_muster), (false, WaitCategory::Unknown, Some(false)));
        assert!(explanation_text(&e).contains("not scheduled by muster"));
    }

    /// An Event as the core/v1 API shows one recorded through events.k8s.io, created at `second`.
    fn recorded(reporter: &str, action: &str, reason: &str, second: i64) -> Event {
        Event {
            reporting_component: Some(reporter.into()),
            action: Some(action.into()),
            reason: Some(reason.into()),
            event_time: Some(MicroTime(Timestamp::from_second(second).unwrap())),
            ..Event::default()
        }
    }

    fn reason_of(event: Option<Event>) -> Option<String> {
        event.and_then(|e| e.reason)
    }

    #[test]
    fn the_newest_muster_event_is_muster_s_own_not_kube_scheduler_s() {
        // kube-scheduler's profile for muster's pods reports under the schedulerName, `muster`.
        let events = vec![
            recorded("muster", "Admission", "NotEnoughResources", 10),
            recorded("muster", "Scheduling", "FailedScheduling", 11),
            recorded("muster", "Admission", "Admitted", 12),
            recorded("muster", "Binding", "Scheduled", 13),
            recorded("default-scheduler", "Admission", "Foreign", 14),
        ];
        assert_eq!(reason_of(newest_muster_event(events)).as_deref(), Some("Admitted"));
        assert_eq!(reason_of(newest_muster_event(vec![recorded("muster", "Binding", "Scheduled", 1)])), None);
        assert_eq!(reason_of(newest_muster_event(Vec::new())), None);
        let evicted = vec![recorded("muster", "Admission", "Admitted", 1), recorded("muster", "Evict", "Reclaimed", 2)];
        assert_eq!(reason_of(newest_muster_event(evicted)).as_deref(), Some("Reclaimed"));
    }

    #[test]
    fn a_repeated_event_counts_from_its_last_occurrence() {
        // NotEnoughResources, then Reclaiming, then NotEnoughResources again: the recorder repeats the first Event
        // (its series advances) rather than creating a new one.
        let mut again = recorded("muster", "Admission", "NotEnoughResources", 10);
        again.series = Some(EventSeries {
            count: Some(2),
            last_observed_time: Some(MicroTime(Timestamp::from_second(30).unwrap())),
        });
        let events = vec![again, recorded("muster", "Admission", "Reclaiming", 20)];
        assert_eq!(reason_of(newest_muster_event(events)).as_deref(), Some("NotEnoughResources"));
    }

    fn queue(name: &str, weight: i32, status: Option<QueueStatus>) -> Queue {
        let mut q = Queue::new(name, QueueSpec { weight, ..QueueSpec::default() });
        q.status = status;
        q
    }

    #[test]
    fn the_status_table_has_a_header_and_aligned_columns_sorted_by_queue() {
        let queues = [
            queue(
                "analytics-batch",
                10,
                Some(QueueStatus {
                    state: Some(ObservedQueueState::Open),
                    deserved: quantities(&[("cpu", "12"), ("memory", "48Gi")]),
                    allocated: quantities(&[("cpu", "4500m")]),
                    pending: 12,
                    inqueue: 1,
                    running: 3,
                }),
            ),
            queue("default", 1, None),
            queue(
                "b",
                2,
                Some(QueueStatus { state: Some(ObservedQueueState::Closing), running: 1, ..QueueStatus::default() }),
            ),
        ];
        let rows = queue_rows(&queues);
        assert_eq!(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["analytics-batch", "b", "default"]);
        assert_eq!(rows[2].state, "Unknown", "a queue muster has not written status for");
        assert_eq!(rows[1].state, "Closing");

        let table = status_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let header = ["QUEUE", "WEIGHT", "STATE", "DESERVED", "ALLOCATED", "PENDING", "INQUEUE", "RUNNING"];
        assert!(lines[0].starts_with("QUEUE "), "{table}");
        let starts: Vec<usize> = header
            .iter()
            .map(|h| lines[0].find(h).unwrap_or_else(|| panic!("{h} missing from the header: {table}")))
            .collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "header columns out of order: {table}");
        let cells = [
            ["analytics-batch", "10", "Open", "cpu 12, memory 48Gi", "cpu 4500m", "12", "1", "3"],
            ["b", "2", "Closing", "-", "-", "0", "0", "1"],
            ["default", "1", "Unknown", "-", "-", "0", "0", "0"],
        ];
        for (line, expected) in lines[1..].iter().zip(cells) {
            for ((start, cell), column) in starts.iter().zip(expected).zip(header) {
                assert_eq!(line.get(*start..*start + cell.len()), Some(cell), "{column} of {line:?}:\n{table}");
                assert!(
                    *start == 0 || line[..*start].ends_with("  "),
                    "{column} of {line:?} is not two spaces apart from the column before:\n{table}"
                );
            }
        }
        assert!(lines.iter().all(|l| l == &l.trim_end()), "trailing spaces:\n{table}");
        assert!(table.ends_with('\n'));

        let empty = status_table(&[]);
        assert_eq!(empty.lines().count(), 1);
        assert_eq!(empty.split_whitespace().collect::<Vec<_>>(), header);
    }

    #[test]
    fn a_finished_gang_is_neither_admitted_nor_waiting() {
        for phase in [PodGroupPhase::Completed, PodGroupPhase::Failed] {
            let pg = wide(Some(PodGroupStatus { phase: Some(phase), ..PodGroupStatus::default() }));
            let e = explain_podgroup("PodGroup team/wide".into(), &pg, None);
            assert_eq!((e.category, e.admitted), (WaitCategory::Finished, false), "{phase:?}");
            assert!(explanation_text(&e).contains("finished"), "{}", explanation_text(&e));
        }
    }
}
