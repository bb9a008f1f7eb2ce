//! PodGroup and Queue status as the model sees them. Pure: the status writer compares these with what it last
//! wrote and patches only the differences, so writes are idempotent.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    ConditionStatus, ObservedQueueState, PodGroupCondition, PodGroupPhase, PodGroupStatus, QueueStatus, Reservation,
};
use crate::core::{GangPhase, Millis, PodRole, Resources, WaitsFor};
use crate::index::{GangKey, Index};

fn quantities(index: &Index, r: &Resources) -> BTreeMap<String, Quantity> {
    index.core.resources.render(r).into_iter().map(|(k, v)| (k, Quantity(v))).collect()
}

/// Why a gang waits, as `(code, message)`, the way PodGroup conditions, `/state` and Events say it. `notes`
/// carries what the controller knows and the core does not (an eviction the API server keeps refusing).
pub fn waiting_reason(
    index: &Index,
    key: &GangKey,
    notes: &HashMap<GangKey, String>,
    reservation_timeout: Millis,
) -> Option<(&'static str, String)> {
    let entry = index.gang(key)?;
    let Some(gang) = entry.id.and_then(|id| index.core.gang(id)) else {
        return entry.waiting.clone().map(|w| ("Waiting", w));
    };
    match gang.phase {
        GangPhase::Pending => {
            if let Some(note) = notes.get(key) {
                let during = gang.reason.as_ref().map(|r| format!(" ({})", r.message())).unwrap_or_default();
                return Some(("EvictionRefused", format!("{note}; reclaim is re-planned and retried{during}")));
            }
            gang.reason.as_ref().map(|r| (r.code(), r.message()))
        }
        GangPhase::Expired => Some((
            "ReservationExpired",
            format!(
                "its reservations were released after {} s because {} of its minimum members never bound; it is \
                 admitted again when its members appear",
                reservation_timeout / 1000,
                gang.missing_total(),
            ),
        )),
        _ => None,
    }
}

/// Status of every PodGroup muster knows, keyed by (namespace, name), as JSON ready for a merge patch.
pub fn podgroup_statuses(
    index: &Index,
    notes: &HashMap<GangKey, String>,
    capacity: &HashMap<GangKey, String>,
    reservation_timeout: Millis,
) -> Vec<((String, String), serde_json::Value)> {
    index
        .gangs()
        .filter_map(|entry| {
            let GangKey::PodGroup { namespace, name } = &entry.key else { return None };
            let status = podgroup_status(index, &entry.key, notes, capacity, reservation_timeout)?;
            Some(((namespace.clone(), name.clone()), status))
        })
        .collect()
}

/// Status of one PodGroup (`None` for a gang of one or a PodGroup not seen yet). `capacity` says, per gang that
/// waits for capacity, what it misses and what was requested from the autoscaler.
pub fn podgroup_status(
    index: &Index,
    key: &GangKey,
    notes: &HashMap<GangKey, String>,
    capacity: &HashMap<GangKey, String>,
    reservation_timeout: Millis,
) -> Option<serde_json::Value> {
    let entry = index.gang(key)?;
    let (GangKey::PodGroup { .. }, Some(pg)) = (&entry.key, &entry.podgroup) else { return None };
    let mut status = PodGroupStatus {
        observed_generation: pg.metadata.generation,
        succeeded: entry.succeeded as i32,
        failed: entry.failed as i32,
        ..PodGroupStatus::default()
    };
    match entry.id.and_then(|id| index.core.gang(id)) {
        None => {
            status.phase = Some(if entry.succeeded > 0 { PodGroupPhase::Completed } else { PodGroupPhase::Pending });
            if let Some(w) = &entry.waiting {
                status.conditions.push(condition(ConditionStatus::True, "Waiting", w));
            }
        }
        Some(gang) => {
            status.phase = Some(match gang.phase {
                // An expired gang is back in its queue's pending set.
                GangPhase::Pending | GangPhase::Expired => PodGroupPhase::Pending,
                GangPhase::Admitted => PodGroupPhase::Inqueue,
                GangPhase::Running => PodGroupPhase::Running,
                GangPhase::Finished => PodGroupPhase::Completed,
            });
            status.running = gang
                .pods
                .iter()
                .filter(|p| index.core.pod(**p).is_some_and(|p| p.node.is_some() && p.role != PodRole::Foreign))
                .count() as i32;
            status.admitted_at = gang.admitted_at.and_then(|ms| Timestamp::from_millisecond(ms as i64).ok()).map(Time);
            let mut by_slot: BTreeMap<(String, String), i32> = BTreeMap::new();
            for s in &gang.slots {
                let template = gang.spec.templates[s.template as usize].name.clone();
                let node = index.node_name(s.node).unwrap_or_default().to_string();
                *by_slot.entry((template, node)).or_default() += 1;
            }
            // The placement adds the nodes of the bound minimum members (not those leaving) to the reservations.
            let mut placed = by_slot.clone();
            if gang.admitted_at.is_some() {
                for pod in gang.pods.iter().filter_map(|p| index.core.pod(*p)) {
                    if let (Some(node), Some((_, t)), PodRole::Min, false) =
                        (pod.node, pod.spec.member, pod.role, pod.terminating)
                    {
                        let template = gang.spec.templates[t as usize].name.clone();
                        let node = index.node_name(node).unwrap_or_default().to_string();
                        *placed.entry((template, node)).or_default() += 1;
                    }
                }
            }
            let entries = |m: BTreeMap<(String, String), i32>| -> Vec<Reservation> {
                m.into_iter().map(|((template, node), count)| Reservation { template, node, count }).collect()
            };
            status.reservations = entries(by_slot);
            status.placement = entries(placed);
            match gang.phase {
                GangPhase::Pending | GangPhase::Expired => {
                    if let Some((code, message)) = waiting_reason(index, &entry.key, notes, reservation_timeout) {
                        status.conditions.push(condition(ConditionStatus::True, code, &message))
                    }
                }
                GangPhase::Admitted | GangPhase::Running => status.conditions.push(condition(
                    ConditionStatus::False,
                    "Admitted",
                    "every minimum member is bound or has capacity reserved",
                )),
                GangPhase::Finished => {}
            }
            // What the gang waits for, as an autoscaler (and its owner) needs to know: more nodes, or its
            // queue's share. An admitted gang that lost members and cannot be repaired waits for capacity too.
            let waits = matches!(gang.phase, GangPhase::Pending)
                || (gang.phase == GangPhase::Admitted && gang.missing_total() > 0);
            if let (true, Some(reason)) = (waits, gang.reason.as_ref()) {
                match reason.waits_for() {
                    WaitsFor::Capacity => {
                        let message = capacity.get(key).cloned().unwrap_or_else(|| reason.message());
                        status.conditions.push(typed_condition(WAITING_FOR_CAPACITY, reason.code(), &message));
                    }
                    WaitsFor::Quota => {
                        status.conditions.push(typed_condition(WAITING_FOR_QUOTA, reason.code(), &reason.message()))
                    }
                    WaitsFor::Members => {}
                }
            }
        }
    }
    Some(serde_json::to_value(&status).expect("status serialises"))
}

/// Condition types that say what a waiting gang waits for.
pub const WAITING_FOR_CAPACITY: &str = "WaitingForCapacity";
pub const WAITING_FOR_QUOTA: &str = "WaitingForQuota";

fn typed_condition(type_: &str, reason: &str, message: &str) -> PodGroupCondition {
    PodGroupCondition { type_: type_.into(), ..condition(ConditionStatus::True, reason, message) }
}

fn condition(status: ConditionStatus, reason: &str, message: &str) -> PodGroupCondition {
    PodGroupCondition {
        type_: "Unschedulable".into(),
        status,
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: None,
    }
}

/// Status of every Queue object, keyed by name.
pub fn queue_statuses(index: &Index) -> Vec<(String, serde_json::Value)> {
    let core = &index.core;
    let mut out = Vec::new();
    for (_, q) in core.queues() {
        let mut status = QueueStatus {
            deserved: quantities(index, &q.deserved),
            allocated: quantities(index, &q.allocated),
            ..QueueStatus::default()
        };
        for g in q.gangs.iter().filter_map(|g| core.gang(*g)) {
            match g.phase {
                GangPhase::Pending | GangPhase::Expired => status.pending += 1,
                GangPhase::Admitted => status.inqueue += 1,
                GangPhase::Running => status.running += 1,
                GangPhase::Finished => {}
            }
        }
        status.state = Some(match (q.spec.open, status.inqueue + status.running) {
            (true, _) => ObservedQueueState::Open,
            (false, 0) => ObservedQueueState::Closed,
            (false, _) => ObservedQueueState::Closing,
        });
        out.push((q.spec.name.clone(), serde_json::to_value(&status).expect("status serialises")));
    }
    out
}
