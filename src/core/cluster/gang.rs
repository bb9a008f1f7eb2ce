//! Gangs: their templates and reservations (slots), and their lifecycle from added to admitted, expired and
//! finished.

use std::sync::Arc;

use super::super::capacity::ClassId;
use super::super::pack::Demand;
use std::collections::HashMap;

use super::super::placement::Placement;
use super::{Claim, Cluster, CoreError, GangId, Millis, NodeId, Nodes, PodId, PodRole, Policy, QueueId, Resources};

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    pub name: String,
    /// Per-member requests; `pods` is counted (1 per member) by whoever builds the spec.
    pub request: Resources,
    pub placement: Placement,
    /// Members that must start together (the gang minimum for this role).
    pub min: u32,
    /// Upper bound on members (elastic ones included); `u32::MAX` when unbounded.
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GangSpec {
    /// Stable external name (namespace/name); breaks ties in ordering.
    pub name: String,
    pub queue: QueueId,
    pub priority: i32,
    pub created: Millis,
    pub templates: Vec<TemplateSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GangPhase {
    /// Nothing reserved, nothing bound (or restored bindings below the minimum with nothing reserved).
    Pending,
    /// Every missing minimum member has a slot; some members may be bound.
    Admitted,
    /// Every minimum member is bound.
    Running,
    /// Reservations timed out before members bound; remaining slots were released.
    Expired,
    /// Its members are finishing: nothing more is reserved for it until a new member appears.
    Finished,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub template: u16,
    pub node: NodeId,
    /// A pending pod that was directed to this slot and whose bind has not been observed yet.
    pub claim: Option<(PodId, Millis)>,
    /// When this slot was reserved (admission or re-reservation); drives the reservation timeout.
    pub since: Millis,
}

/// Why a gang is not admitted; rendered for Events and PodGroup conditions.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitReason {
    QueueClosed,
    QueueCapability {
        detail: Arc<str>,
    },
    GuaranteeOfOtherQueues {
        detail: Arc<str>,
    },
    OverDeserved {
        detail: Arc<str>,
    },
    /// The nodes that match lack the capacity in total.
    Insufficient {
        detail: Arc<str>,
    },
    /// The matching nodes have the capacity in total, but no node has room for the members that remain: it is
    /// spread in pieces too small.
    Fragmented {
        detail: Arc<str>,
    },
    /// Cannot fit even if every muster-managed pod were gone: waiting will not help.
    NeverFits {
        detail: Arc<str>,
    },
    Draining {
        detail: Arc<str>,
    },
    Reclaiming {
        detail: Arc<str>,
    },
    /// Some of its members are being evicted or deleted: it waits for them to go before it may be admitted again.
    MembersTerminating,
    BehindHead {
        head: Arc<str>,
    },
}

/// What a waiting gang waits for, as an autoscaler needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitsFor {
    /// Its queue's share, capability or turn: more nodes would not admit it.
    Quota,
    /// Nodes: its queue would admit it, but the nodes that exist cannot hold its members.
    Capacity,
    /// Its own members (terminating ones to go).
    Members,
}

impl WaitReason {
    /// Whether adding nodes would help (capacity) or not (quota, members).
    pub fn waits_for(&self) -> WaitsFor {
        match self {
            WaitReason::Insufficient { .. }
            | WaitReason::Fragmented { .. }
            | WaitReason::NeverFits { .. }
            | WaitReason::Draining { .. } => WaitsFor::Capacity,
            WaitReason::QueueClosed
            | WaitReason::QueueCapability { .. }
            | WaitReason::GuaranteeOfOtherQueues { .. }
            | WaitReason::OverDeserved { .. }
            | WaitReason::Reclaiming { .. }
            | WaitReason::BehindHead { .. } => WaitsFor::Quota,
            WaitReason::MembersTerminating => WaitsFor::Members,
        }
    }

    /// Short machine-readable reason (PodGroup condition reason, metrics label).
    pub fn code(&self) -> &'static str {
        match self {
            WaitReason::QueueClosed => "QueueClosed",
            WaitReason::QueueCapability { .. } => "QueueCapability",
            WaitReason::GuaranteeOfOtherQueues { .. } => "GuaranteeOfOtherQueues",
            WaitReason::OverDeserved { .. } => "OverDeserved",
            WaitReason::Insufficient { .. } => "NotEnoughResources",
            WaitReason::Fragmented { .. } => "Fragmented",
            WaitReason::NeverFits { .. } => "NeverFits",
            WaitReason::Draining { .. } => "Draining",
            WaitReason::Reclaiming { .. } => "Reclaiming",
            WaitReason::MembersTerminating => "MembersTerminating",
            WaitReason::BehindHead { .. } => "BehindHeadOfQueue",
        }
    }

    pub fn message(&self) -> String {
        match self {
            WaitReason::QueueClosed => "queue is Closed: it admits no new gangs".to_string(),
            WaitReason::QueueCapability { detail } => format!("queue capability would be exceeded: {detail}"),
            WaitReason::GuaranteeOfOtherQueues { detail } => {
                format!("admitting would take capacity guaranteed to other queues: {detail}")
            }
            WaitReason::OverDeserved { detail } => {
                format!("queue is not reclaimable and at its deserved share: {detail}")
            }
            WaitReason::Insufficient { detail } | WaitReason::Fragmented { detail } => {
                format!("waiting for capacity: {detail}")
            }
            WaitReason::NeverFits { detail } => format!("gang can never fit this cluster: {detail}"),
            WaitReason::Draining { detail } => format!("head of its queue, holding capacity as it frees: {detail}"),
            WaitReason::Reclaiming { detail } => format!("reclaiming borrowed capacity: {detail}"),
            WaitReason::MembersTerminating => {
                "members are terminating (evicted to reclaim capacity, or deleted); the gang waits for them to go"
                    .to_string()
            }
            WaitReason::BehindHead { head } => format!("waiting behind the head of its queue, {head}"),
        }
    }
}

/// Whether a gang's missing members could fit with every muster-managed pod gone, and the inputs of that
/// verdict: it depends only on them, so while they are unchanged the packing over every node is not redone.
#[derive(Debug, Clone)]
pub(crate) struct StaticVerdict {
    /// [`Cluster::static_epoch`] when it was computed.
    pub epoch: u64,
    pub demands: Vec<Demand>,
    pub budget: u64,
    /// `Some` when the gang never fits.
    pub never_fits: Option<WaitReason>,
}

#[derive(Debug, Clone)]
pub struct Gang {
    pub spec: GangSpec,
    pub phase: GangPhase,
    pub classes: Vec<ClassId>,
    /// Bound members that count towards the minimum, per template.
    pub bound_min: Vec<u32>,
    /// Bound members beyond the minimum, per template.
    pub bound_elastic: Vec<u32>,
    /// Minimum members that ran and succeeded, per template: they still count towards the minimum (a gang
    /// whose members finish one by one is completing, not missing members), until a new wave requeues it.
    pub completed: Vec<u32>,
    pub slots: Vec<Slot>,
    pub pods: Vec<PodId>,
    /// How many of `pods` are not bound (so scans for pending members skip gangs with none).
    pub unbound: u32,
    pub admitted_at: Option<Millis>,
    /// Bumped whenever a reservation is placed or moved to another node: a record of the gang's reservations
    /// (PodGroup status) made at an older value no longer describes them.
    pub placement: u64,
    /// First time an admission attempt failed since the gang became pending.
    pub waiting_since: Option<Millis>,
    pub reason: Option<WaitReason>,
    /// Capacity epoch of the last failed packing attempt: no retry until capacity grew.
    pub tried_epoch: Option<u64>,
    /// The last never-fits verdict and what it was computed from; reused while neither changed.
    pub(crate) static_verdict: Option<StaticVerdict>,
    /// Capacity held for this gang while it is the head of its queue and waits (draining or reclaiming):
    /// others may not use it; the gang itself may. Re-applied at the start of every cycle.
    pub hold: Vec<(NodeId, Resources)>,
    /// The slots (template, node) the gang's durable record lists, as the caller last saw it written
    /// ([`Cluster::set_recorded`]); empty when nothing is recorded (or the caller keeps no records).
    pub recorded: Vec<(u16, NodeId)>,
    /// Per node, the capacity of recorded slots the gang no longer holds there (neither a slot nor a member bound
    /// there): given back in the model but not yet in the record, so a restart could restore it. Kept out of
    /// everyone's reach ([`Node::unreleased`](crate::core::Node::unreleased)) until a status write gives it up.
    pub unreleased: Vec<(NodeId, Resources)>,
}

impl Gang {
    /// Minimum members per template that are neither bound nor reserved.
    pub fn missing(&self) -> Vec<u32> {
        let mut missing: Vec<u32> = self
            .spec
            .templates
            .iter()
            .zip(self.bound_min.iter().zip(&self.completed))
            .map(|(t, (b, c))| t.min.saturating_sub(b + c))
            .collect();
        for s in &self.slots {
            missing[s.template as usize] = missing[s.template as usize].saturating_sub(1);
        }
        missing
    }

    /// `f(template, missing)` for every template, without allocating for the common small gang: the admission
    /// cycle asks this of every gang, every cycle.
    fn for_each_missing(&self, mut f: impl FnMut(usize, u32)) {
        const SMALL: usize = 8;
        let n = self.spec.templates.len();
        if n > SMALL {
            for (t, m) in self.missing().into_iter().enumerate() {
                f(t, m);
            }
            return;
        }
        let mut missing = [0u32; SMALL];
        let held = self.bound_min.iter().zip(&self.completed);
        for (m, (t, (b, c))) in missing.iter_mut().zip(self.spec.templates.iter().zip(held)) {
            *m = t.min.saturating_sub(b + c);
        }
        for s in &self.slots {
            missing[s.template as usize] = missing[s.template as usize].saturating_sub(1);
        }
        for (t, m) in missing[..n].iter().enumerate() {
            f(t, *m);
        }
    }

    pub fn missing_total(&self) -> u32 {
        let mut total = 0;
        self.for_each_missing(|_, m| total += m);
        total
    }

    /// Resources of the missing minimum members.
    pub fn missing_request(&self) -> Resources {
        let mut total = Resources::ZERO;
        self.for_each_missing(|t, m| {
            total = total.saturating_add(&self.spec.templates[t].request.times(u64::from(m)));
        });
        total
    }

    pub fn min_total(&self) -> u32 {
        self.spec.templates.iter().map(|t| t.min).sum()
    }

    pub fn bound_total(&self) -> u32 {
        self.bound_min.iter().chain(&self.bound_elastic).sum()
    }
}

impl Cluster {
    /// Why `spec` cannot be a gang, if it cannot.
    fn validate_gang(&self, spec: &GangSpec) -> Result<(), CoreError> {
        let invalid = |reason: String| CoreError::InvalidGang { gang: spec.name.clone(), reason };
        if self.queues.get(spec.queue.0).is_none() {
            return Err(invalid(format!("unknown queue #{}", spec.queue.0)));
        }
        if spec.templates.is_empty() {
            return Err(invalid("has no member templates".to_string()));
        }
        if spec.templates.len() > 64 {
            return Err(invalid(format!("has {} templates; at most 64 are supported", spec.templates.len())));
        }
        for t in &spec.templates {
            if t.max < t.min {
                return Err(invalid(format!("template {:?}: max {} is below min {}", t.name, t.max, t.min)));
            }
        }
        if spec.templates.iter().all(|t| t.min == 0) {
            return Err(invalid("minimum is zero: nothing to admit".to_string()));
        }
        Ok(())
    }

    pub fn add_gang(&mut self, spec: GangSpec) -> Result<GangId, CoreError> {
        self.validate_gang(&spec)?;
        let classes: Vec<ClassId> = {
            let Cluster { capacity, nodes, .. } = self;
            spec.templates.iter().map(|t| capacity.acquire(&t.placement, &Nodes(nodes))).collect()
        };
        let n = spec.templates.len();
        let queue = spec.queue;
        let id = GangId(self.gangs.insert(Gang {
            spec,
            phase: GangPhase::Pending,
            classes,
            bound_min: vec![0; n],
            bound_elastic: vec![0; n],
            completed: vec![0; n],
            slots: Vec::new(),
            pods: Vec::new(),
            unbound: 0,
            admitted_at: None,
            placement: 0,
            waiting_since: None,
            reason: None,
            tried_epoch: None,
            static_verdict: None,
            hold: Vec::new(),
            recorded: Vec::new(),
            unreleased: Vec::new(),
        }));
        self.queue_mut(queue).gangs.push(id);
        self.dirty = true;
        Ok(id)
    }

    /// Changes what may change on a live gang: priority always; templates and queue only while it holds nothing.
    pub fn update_gang(&mut self, id: GangId, spec: GangSpec) -> Result<(), CoreError> {
        let gang = self.gangs.get(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        if gang.spec == spec {
            return Ok(());
        }
        // Refused before anything changes: the gang stays as it was.
        self.validate_gang(&spec)?;
        let holds_nothing =
            gang.slots.is_empty() && gang.pods.iter().all(|p| self.pods.get(p.0).is_none_or(|p| p.node.is_none()));
        if gang.spec.templates != spec.templates || gang.spec.queue != spec.queue {
            if !holds_nothing {
                return Err(CoreError::InvalidGang {
                    gang: spec.name,
                    reason: "templates and queue cannot change once members are reserved or bound".to_string(),
                });
            }
            // Removing the gang detaches its pods (all pending here), so note their templates first. A pod whose
            // template no longer exists stays detached until it is resolved again.
            let members: Vec<(PodId, u16)> = gang
                .pods
                .iter()
                .filter_map(|p| Some((*p, self.pods.get(p.0)?.spec.member?.1)))
                .filter(|(_, t)| (*t as usize) < spec.templates.len())
                .collect();
            self.remove_gang(id)?;
            let new_id = self.add_gang(spec)?;
            debug_assert_eq!(new_id, id, "a just-freed id is reused first");
            for (p, t) in members {
                let Some(pod) = self.pods.get_mut(p.0) else { continue };
                pod.spec.member = Some((new_id, t));
                let g = self.gang_mut(new_id);
                g.pods.push(p);
                g.unbound += 1;
            }
            return Ok(());
        }
        self.gang_mut(id).spec = spec;
        self.dirty = true;
        Ok(())
    }

    /// Adds a template with no minimum to a live gang (members of a shape nobody declared, such as the
    /// executors of a Spark driver that stated no minimum): they are elastic. Returns its index.
    pub fn add_elastic_template(&mut self, id: GangId, template: TemplateSpec) -> Result<u16, CoreError> {
        let gang = self.gangs.get(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        if template.min != 0 || gang.spec.templates.len() >= 64 {
            return Err(CoreError::InvalidGang {
                gang: gang.spec.name.clone(),
                reason: format!(
                    "cannot add template {:?}: only templates without a minimum can join a live gang",
                    template.name
                ),
            });
        }
        let class = {
            let Cluster { capacity, nodes, .. } = self;
            capacity.acquire(&template.placement, &Nodes(nodes))
        };
        let gang = self.gang_mut(id);
        gang.spec.templates.push(template);
        gang.classes.push(class);
        gang.bound_min.push(0);
        gang.bound_elastic.push(0);
        gang.completed.push(0);
        self.dirty = true;
        Ok(self.gang(id).expect("live").spec.templates.len() as u16 - 1)
    }

    /// Releases everything a gang holds that is not a bound pod: its slots, the capacity held for it as a waiting
    /// head, and its admission record (so a successor never restores it).
    fn give_up_capacity(&mut self, id: GangId) {
        self.gang_mut(id).recorded.clear();
        self.release_slots(id);
        let hold = std::mem::take(&mut self.gang_mut(id).hold);
        self.unhold(&hold);
    }

    /// Forgets a gang (its PodGroup was deleted or it finished): releases its slots; its pods become foreign.
    pub fn remove_gang(&mut self, id: GangId) -> Result<(), CoreError> {
        if self.gangs.get(id.0).is_none() {
            return Err(CoreError::Unknown { kind: "gang", id: id.0 });
        }
        self.give_up_capacity(id);
        let gang = self.gangs.remove(id.0).expect("checked");
        for pod_id in &gang.pods {
            let Some(pod) = self.pods.get_mut(pod_id.0) else { continue };
            pod.spec.member = None;
            let request = pod.spec.request;
            let bound_as_member = pod.node.is_some() && pod.role != PodRole::Foreign;
            pod.role = PodRole::Foreign;
            let elastic_claim = match pod.claim.take() {
                Some(Claim::Elastic { node, .. }) => Some(node),
                _ => None,
            };
            let node = pod.node;
            let q = self.queues.get_mut(gang.spec.queue.0).expect("live queue");
            if bound_as_member {
                q.allocated = q.allocated.saturating_sub(&request);
                if let Some(n) = node.and_then(|n| self.nodes.get_mut(n.0)) {
                    n.sub_managed(gang.spec.queue, &request);
                }
                // Its capacity no longer counts as muster's to give back (never-fits verdicts change).
                if let Some(n) = node {
                    self.touch_node(n);
                }
            }
            let q = self.queues.get_mut(gang.spec.queue.0).expect("live queue");
            if let Some(node) = elastic_claim {
                q.allocated = q.allocated.saturating_sub(&request);
                let n = self.node_mut(node);
                n.reserved = n.reserved.saturating_sub(&request);
                self.touch_node(node);
            }
        }
        for class in gang.classes {
            self.capacity.release(class);
        }
        self.queue_mut(gang.spec.queue).gangs.retain(|g| *g != id);
        self.capacity_grew();
        Ok(())
    }

    /// Releases every slot of a gang (timeout, removal). Claims on them are forgotten.
    pub(crate) fn release_slots(&mut self, id: GangId) {
        let gang = self.gang_mut(id);
        let slots = std::mem::take(&mut gang.slots);
        let queue = gang.spec.queue;
        let requests: Vec<Resources> = slots.iter().map(|s| gang.spec.templates[s.template as usize].request).collect();
        for (slot, request) in slots.iter().zip(&requests) {
            let node = self.node_mut(slot.node);
            node.reserved = node.reserved.saturating_sub(request);
            self.touch_node(slot.node);
            if let Some((pod, _)) = slot.claim
                && let Some(p) = self.pods.get_mut(pod.0)
            {
                p.claim = None;
            }
            let q = self.queue_mut(queue);
            q.allocated = q.allocated.saturating_sub(request);
        }
        if !slots.is_empty() {
            self.capacity_grew();
        }
        self.refresh_phase(id);
    }

    /// Reserves one slot of `template` on `node` for gang `id`.
    pub(crate) fn reserve_slot(&mut self, id: GangId, template: u16, node: NodeId, now: Millis) {
        let gang = self.gang_mut(id);
        let request = gang.spec.templates[template as usize].request;
        let queue = gang.spec.queue;
        gang.slots.push(Slot { template, node, claim: None, since: now });
        gang.placement += 1;
        let n = self.node_mut(node);
        n.reserved = n.reserved.saturating_add(&request);
        self.touch_node(node);
        let q = self.queue_mut(queue);
        q.allocated = q.allocated.saturating_add(&request);
        self.refresh_unreleased(id);
    }

    /// The slots gang `id`'s durable record lists (a PodGroup status write landed, or was read at start-up).
    /// From now on capacity the model gives back that this record still claims stays unavailable until the
    /// next record no longer lists it.
    pub fn set_recorded(&mut self, id: GangId, slots: Vec<(u16, NodeId)>) -> Result<(), CoreError> {
        let gang = self.gangs.get_mut(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        gang.recorded = slots;
        self.refresh_unreleased(id);
        Ok(())
    }

    /// Recomputes gang `id`'s unreleased capacity: the capacity of each recorded slot that neither a slot of the
    /// gang nor a member bound on that node accounts for. It covers what restoring the record now (as
    /// [`Cluster::restore_admission`] would after a restart) would reserve beyond the gang's current slots.
    pub(crate) fn refresh_unreleased(&mut self, id: GangId) {
        let Some(gang) = self.gangs.get(id.0) else { return };
        if gang.recorded.is_empty() && gang.unreleased.is_empty() {
            return; // the common case, and always so for callers that keep no records (the simulator)
        }
        let mut want: Vec<(NodeId, Resources)> = Vec::new();
        if !gang.recorded.is_empty() {
            // A recorded slot is accounted for by a slot of the gang on that node now, or by a member bound there
            // (a restart counts it consumed). Any other is held, even where a restart would not restore it today
            // (no member missing): a member that fails later would make it restorable again.
            let mut here: HashMap<(u16, NodeId), u32> = HashMap::new();
            for s in &gang.slots {
                *here.entry((s.template, s.node)).or_default() += 1;
            }
            for p in &gang.pods {
                if let Some(pod) = self.pods.get(p.0)
                    && let (Some(node), Some((_, t)), false) = (pod.node, pod.spec.member, pod.terminating)
                {
                    *here.entry((t, node)).or_default() += 1;
                }
            }
            for &(t, node) in &gang.recorded {
                if let Some(c) = here.get_mut(&(t, node))
                    && *c > 0
                {
                    *c -= 1;
                    continue;
                }
                if self.nodes.get(node.0).is_none() {
                    continue;
                }
                let request = gang.spec.templates[t as usize].request;
                match want.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, r)) => *r = r.saturating_add(&request),
                    None => want.push((node, request)),
                }
            }
        }
        if want == gang.unreleased {
            return;
        }
        let old = std::mem::replace(&mut self.gang_mut(id).unreleased, want.clone());
        for (node, r) in &old {
            if let Some(n) = self.nodes.get_mut(node.0) {
                n.unreleased = n.unreleased.saturating_sub(r);
                self.touch_node(*node);
            }
        }
        for (node, r) in &want {
            let n = self.node_mut(*node);
            n.unreleased = n.unreleased.saturating_add(r);
            self.touch_node(*node);
        }
        let released = old.iter().any(|(n, r)| want.iter().find(|(m, _)| m == n).is_none_or(|(_, w)| !r.fits_in(w)));
        if released {
            self.capacity_grew();
        }
    }

    /// Restores an admission recorded before a restart: the gang's slots, as (template, node) pairs.
    pub fn restore_admission(
        &mut self,
        id: GangId,
        slots: &[(u16, NodeId)],
        admitted_at: Millis,
        now: Millis,
    ) -> Result<(), CoreError> {
        let gang = self.gangs.get(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        let mut missing = gang.missing();
        let requests: Vec<Resources> = gang.spec.templates.iter().map(|t| t.request).collect();
        // A record written before some members bound still lists the slots they consumed: a member bound on a
        // recorded node of its template accounts for one recorded slot there, which is not restored (restoring
        // it instead of the slot still missing could fill a node another gang's record needs).
        let mut consumed: HashMap<(u16, NodeId), u32> = HashMap::new();
        for p in &gang.pods {
            if let Some(pod) = self.pods.get(p.0)
                && let (Some(node), Some((_, t)), false) = (pod.node, pod.spec.member, pod.terminating)
            {
                *consumed.entry((t, node)).or_default() += 1;
            }
        }
        for &(t, node) in slots {
            if let Some(c) = consumed.get_mut(&(t, node))
                && *c > 0
            {
                *c -= 1;
                continue;
            }
            let Some(n) = self.nodes.get(node.0) else {
                continue; // the node went away while we were down; the admission cycle repairs the gang
            };
            // A record written before some members bound names more slots than are missing, and the capacity of
            // a recorded node may have been taken meanwhile: restore only what is missing and still fits. What is
            // left missing the admission cycle repairs (the gang stays admitted).
            let fits = requests.get(t as usize).is_some_and(|r| r.fits_in(&n.available()));
            if fits
                && let Some(m) = missing.get_mut(t as usize)
                && *m > 0
            {
                *m -= 1;
                self.reserve_slot(id, t, node, now);
            }
        }
        let gang = self.gang_mut(id);
        gang.admitted_at = Some(admitted_at);
        self.refresh_phase(id);
        self.dirty = true;
        Ok(())
    }

    /// Recomputes a gang's phase from its slots and bound members.
    pub(crate) fn refresh_phase(&mut self, id: GangId) {
        self.refresh_unreleased(id);
        let gang = self.gang_mut(id);
        if matches!(gang.phase, GangPhase::Expired | GangPhase::Finished) {
            return;
        }
        let missing = gang.missing_total();
        let bound_min: u32 = gang.bound_min.iter().sum();
        gang.phase = if missing == 0 && gang.slots.is_empty() {
            GangPhase::Running
        } else if missing == 0 {
            GangPhase::Admitted
        } else if gang.admitted_at.is_some() && (bound_min > 0 || !gang.slots.is_empty()) {
            // Admitted earlier and lost a slot (node removed): still admitted, the cycle repairs it.
            GangPhase::Admitted
        } else {
            GangPhase::Pending
        };
    }

    // ----- reservation timeouts and the end of a gang -----

    /// Expires claims older than the policy's TTL and slots older than the reservation timeout.
    /// Returns the gangs whose reservations expired.
    pub fn expire(&mut self, now: Millis, policy: &Policy) -> Vec<GangId> {
        // Only unbound gang members ever hold claims.
        let stale_claims: Vec<PodId> = self
            .gangs()
            .filter(|(_, g)| g.unbound > 0)
            .flat_map(|(_, g)| g.pods.iter().copied())
            .filter(|p| {
                self.pod(*p).is_some_and(|p| {
                    p.node.is_none() && p.claim.is_some_and(|c| now.saturating_sub(c.at()) >= policy.claim_ttl)
                })
            })
            .collect();
        for p in stale_claims {
            self.forget_claim(p);
        }
        let expired: Vec<GangId> = self
            .gangs()
            .filter(|(_, g)| {
                g.slots.iter().any(|s| s.claim.is_none() && now.saturating_sub(s.since) >= policy.reservation_timeout)
            })
            .map(|(id, _)| id)
            .collect();
        for &g in &expired {
            self.release_slots(g);
            let gang = self.gang_mut(g);
            gang.phase = GangPhase::Expired;
            gang.reason = None;
        }
        expired
    }

    /// Marks a gang whose members are completing: its remaining slots are released and it is neither admitted
    /// nor repaired again until [`Cluster::requeue`] (a new wave of members appears).
    pub fn finish_gang(&mut self, id: GangId) -> Result<(), CoreError> {
        if self.gangs.get(id.0).is_none() {
            return Err(CoreError::Unknown { kind: "gang", id: id.0 });
        }
        self.give_up_capacity(id);
        let gang = self.gang_mut(id);
        gang.phase = GangPhase::Finished;
        gang.reason = None;
        gang.waiting_since = None;
        self.dirty = true;
        Ok(())
    }

    /// Puts an expired or finished gang back in line (its owner retries it, or a new wave of members came).
    pub fn requeue(&mut self, id: GangId) -> Result<(), CoreError> {
        let gang = self.gangs.get_mut(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        gang.phase = GangPhase::Pending;
        gang.admitted_at = None;
        gang.waiting_since = None;
        gang.tried_epoch = None;
        // A new wave needs its whole minimum again.
        gang.completed.iter_mut().for_each(|c| *c = 0);
        self.refresh_phase(id);
        self.dirty = true;
        Ok(())
    }
}
