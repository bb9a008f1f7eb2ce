//! Pods: members and foreign pods, claims, binds, termination and removal.

use super::{Cluster, CoreError, GangId, GangPhase, Millis, NodeId, PodId, Resources};

#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    /// Stable external name (namespace/name).
    pub name: String,
    pub request: Resources,
    /// The gang and template this pod belongs to; `None` for pods muster does not manage.
    pub member: Option<(GangId, u16)>,
    pub priority: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRole {
    /// Not muster's: only its usage counts.
    Foreign,
    /// Counts towards its gang's minimum.
    Min,
    /// Beyond its template's minimum: first to go in a reclaim.
    Elastic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Directed to slot `index` of its gang (the slot's capacity is already reserved).
    Slot { node: NodeId, at: Millis },
    /// Elastic member placed on free capacity; `request` is reserved on `node` until bind.
    Elastic { node: NodeId, at: Millis },
}

impl Claim {
    pub fn node(&self) -> NodeId {
        match *self {
            Claim::Slot { node, .. } | Claim::Elastic { node, .. } => node,
        }
    }
    pub fn at(&self) -> Millis {
        match *self {
            Claim::Slot { at, .. } | Claim::Elastic { at, .. } => at,
        }
    }
}

/// How a pod left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodExit {
    Deleted,
    Succeeded,
    /// Failed: its controller (Spark, a Job) is expected to create a replacement.
    Failed,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub spec: PodSpec,
    pub node: Option<NodeId>,
    pub role: PodRole,
    pub bound_at: Option<Millis>,
    pub terminating: bool,
    pub claim: Option<Claim>,
}

impl Cluster {
    /// Adds a pod, bound (`node` set) or pending.
    pub fn add_pod(&mut self, spec: PodSpec, node: Option<NodeId>, now: Millis) -> Result<PodId, CoreError> {
        if let Some((gang, template)) = spec.member {
            let g = self.gangs.get(gang.0).ok_or(CoreError::Unknown { kind: "gang", id: gang.0 })?;
            if template as usize >= g.spec.templates.len() {
                return Err(CoreError::InvalidPod {
                    pod: spec.name,
                    reason: format!("template #{template} out of range"),
                });
            }
        }
        if let Some(n) = node
            && self.nodes.get(n.0).is_none()
        {
            return Err(CoreError::Unknown { kind: "node", id: n.0 });
        }
        let member = spec.member;
        let id = PodId(self.pods.insert(Pod {
            spec,
            node: None,
            role: PodRole::Foreign,
            bound_at: None,
            terminating: false,
            claim: None,
        }));
        if let Some((gang, _)) = member {
            let g = self.gang_mut(gang);
            g.pods.push(id);
            g.unbound += 1;
        }
        if let Some(n) = node {
            self.bind_pod(id, n, now)?;
        }
        self.dirty = true;
        Ok(id)
    }

    /// Records that a pending pod is now bound to `node` (observed from the API server or simulated).
    pub fn bind_pod(&mut self, id: PodId, node: NodeId, now: Millis) -> Result<(), CoreError> {
        let pod = self.pods.get(id.0).ok_or(CoreError::Unknown { kind: "pod", id: id.0 })?;
        if self.nodes.get(node.0).is_none() {
            return Err(CoreError::Unknown { kind: "node", id: node.0 });
        }
        if let Some(current) = pod.node {
            if current == node {
                return Ok(());
            }
            return Err(CoreError::InvalidPod { pod: pod.spec.name.clone(), reason: "already bound elsewhere".into() });
        }
        let (request, member, claim) = (pod.spec.request, pod.spec.member, pod.claim);
        // An elastic claim's reservation is replaced by the pod's usage; a slot claim is consumed below.
        if let Some(Claim::Elastic { node: claimed, .. }) = claim {
            self.unreserve_elastic(member, claimed, &request);
        }
        let role = match member {
            None => PodRole::Foreign,
            Some((gang, template)) => {
                let g = self.gang_mut(gang);
                g.unbound = g.unbound.saturating_sub(1);
                self.consume_slot(gang, template, id, node, &request)
            }
        };
        let queue = self.member_queue(member);
        let pod = self.pod_mut(id);
        pod.claim = None;
        pod.node = Some(node);
        pod.role = role;
        pod.bound_at = Some(now);
        let terminating = pod.terminating;
        let n = self.node_mut(node);
        n.used = n.used.saturating_add(&request);
        if terminating {
            n.terminating = n.terminating.saturating_add(&request);
        }
        if role != PodRole::Foreign {
            n.add_managed(queue.expect("a member's gang is live"), &request);
        }
        n.pods.push(id);
        self.touch_node(node);
        if let Some((gang, _)) = member {
            self.refresh_unreleased(gang);
        }
        self.dirty = true;
        Ok(())
    }

    /// Turns a slot into a bound member, or counts the pod as elastic when the gang has no slot for it.
    fn consume_slot(&mut self, gang: GangId, template: u16, pod: PodId, node: NodeId, request: &Resources) -> PodRole {
        let g = self.gang_mut(gang);
        let queue = g.spec.queue;
        // Prefer the slot this pod claimed, then one on the node it landed on, then any slot of its template.
        let pick = g
            .slots
            .iter()
            .position(|s| s.claim.is_some_and(|(p, _)| p == pod))
            .or_else(|| g.slots.iter().position(|s| s.template == template && s.node == node && s.claim.is_none()))
            .or_else(|| g.slots.iter().position(|s| s.template == template && s.claim.is_none()))
            .or_else(|| g.slots.iter().position(|s| s.template == template));
        let t = template as usize;
        let role = if let Some(i) = pick {
            let slot = g.slots.swap_remove(i);
            g.bound_min[t] += 1;
            let slot_request = g.spec.templates[slot.template as usize].request;
            if let Some((other, _)) = slot.claim
                && other != pod
                && let Some(p) = self.pods.get_mut(other.0)
            {
                p.claim = None; // that pod loses its directions; it will be placed again
            }
            let n = self.node_mut(slot.node);
            n.reserved = n.reserved.saturating_sub(&slot_request);
            self.touch_node(slot.node);
            let q = self.queue_mut(queue);
            q.allocated = q.allocated.saturating_sub(&slot_request);
            PodRole::Min
        } else if g.bound_min[t] + g.completed[t] < g.spec.templates[t].min && g.phase != GangPhase::Expired {
            // Bound without a reservation (placed before muster saw it, or restored): it still counts.
            g.bound_min[t] += 1;
            PodRole::Min
        } else {
            g.bound_elastic[t] += 1;
            PodRole::Elastic
        };
        let q = self.queue_mut(queue);
        q.allocated = q.allocated.saturating_add(request);
        self.refresh_phase(gang);
        role
    }

    pub(super) fn unbind_member(&mut self, gang: GangId, template: u16, role: PodRole, request: &Resources) {
        let Some(g) = self.gangs.get_mut(gang.0) else { return };
        let t = template as usize;
        match role {
            PodRole::Min => g.bound_min[t] = g.bound_min[t].saturating_sub(1),
            PodRole::Elastic => g.bound_elastic[t] = g.bound_elastic[t].saturating_sub(1),
            PodRole::Foreign => return,
        }
        let queue = g.spec.queue;
        let q = self.queue_mut(queue);
        q.allocated = q.allocated.saturating_sub(request);
        self.refresh_phase(gang);
    }

    /// Marks a pod as being deleted. From this moment it no longer counts towards its gang or queue (the
    /// decision that it goes has been made), while its capacity stays in use on its node until it is removed;
    /// reclaim planning counts that capacity as about to free.
    pub fn set_terminating(&mut self, id: PodId) -> Result<(), CoreError> {
        let pod = self.pods.get_mut(id.0).ok_or(CoreError::Unknown { kind: "pod", id: id.0 })?;
        if pod.terminating {
            return Ok(());
        }
        pod.terminating = true;
        let (node, request, role, member) = (pod.node, pod.spec.request, pod.role, pod.spec.member);
        pod.role = PodRole::Foreign;
        if pod.claim.is_some() {
            self.forget_claim(id);
        }
        if let Some(node) = node {
            let queue = self.member_queue(member);
            let n = self.node_mut(node);
            n.terminating = n.terminating.saturating_add(&request);
            if role != PodRole::Foreign {
                n.sub_managed(queue.expect("a member's gang is live"), &request);
            }
            // Its capacity no longer counts as muster's to give back (never-fits verdicts change).
            self.touch_node(node);
        }
        if let (Some(_), Some((gang, template))) = (node, member) {
            self.unbind_member(gang, template, role, &request);
            if role == PodRole::Min {
                self.promote_elastic(gang, template);
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Undoes [`Cluster::set_terminating`] for a pod that is not going after all (the API server refused its
    /// eviction): it counts towards its gang and queue again, as a minimum member while its template is below
    /// its minimum, else as an elastic one. Returns false if the pod was not marked.
    pub fn cancel_termination(&mut self, id: PodId) -> Result<bool, CoreError> {
        let pod = self.pods.get_mut(id.0).ok_or(CoreError::Unknown { kind: "pod", id: id.0 })?;
        if !pod.terminating {
            return Ok(false);
        }
        pod.terminating = false;
        let (node, request, member) = (pod.node, pod.spec.request, pod.spec.member);
        let Some(node) = node else {
            self.dirty = true;
            return Ok(true);
        };
        let role = match member.filter(|(g, _)| self.gangs.get(g.0).is_some()) {
            None => PodRole::Foreign,
            Some((gang, template)) => {
                let g = self.gang_mut(gang);
                let t = template as usize;
                let role = if g.bound_min[t] + g.completed[t] < g.spec.templates[t].min {
                    g.bound_min[t] += 1;
                    PodRole::Min
                } else {
                    g.bound_elastic[t] += 1;
                    PodRole::Elastic
                };
                let queue = g.spec.queue;
                let q = self.queue_mut(queue);
                q.allocated = q.allocated.saturating_add(&request);
                self.restore_admitted_at(gang);
                self.refresh_phase(gang);
                role
            }
        };
        self.pod_mut(id).role = role;
        let queue = self.member_queue(self.pods.get(id.0).and_then(|p| p.spec.member));
        let n = self.node_mut(node);
        n.terminating = n.terminating.saturating_sub(&request);
        if role != PodRole::Foreign {
            n.add_managed(queue.expect("a member's gang is live"), &request);
        }
        self.touch_node(node);
        // The reclaim that counted on this capacity must be planned again: gangs that failed may retry.
        self.capacity_grew();
        self.dirty = true;
        Ok(true)
    }

    /// Evicts a whole gang (reclaim): its pods start terminating, its slots are released, and it goes back to
    /// Pending; it is not admitted again before its evicted pods are gone.
    /// A whole-gang eviction clears the gang's admission; if every eviction was refused the gang is whole and
    /// running again, and must count as admitted since its members bound (reclaim's `min_runtime` and victim
    /// order read it; a gang without it would never be a reclaim candidate again).
    fn restore_admitted_at(&mut self, id: GangId) {
        let gang = self.gang(id).expect("live gang");
        if gang.admitted_at.is_some() || gang.missing_total() > 0 {
            return;
        }
        let since =
            gang.pods.iter().filter_map(|p| self.pod(*p)).filter(|p| !p.terminating).filter_map(|p| p.bound_at).min();
        self.gang_mut(id).admitted_at = Some(since.unwrap_or(0));
    }

    pub fn evict_gang(&mut self, id: GangId) -> Result<Vec<PodId>, CoreError> {
        let gang = self.gangs.get(id.0).ok_or(CoreError::Unknown { kind: "gang", id: id.0 })?;
        let bound: Vec<PodId> = gang
            .pods
            .iter()
            .copied()
            .filter(|p| self.pods.get(p.0).is_some_and(|p| p.node.is_some() && !p.terminating))
            .collect();
        for &p in &bound {
            self.set_terminating(p)?;
        }
        // A gang that is gone is not restored: its record claims nothing any more (released with its slots).
        self.gang_mut(id).recorded.clear();
        self.release_slots(id);
        let hold = std::mem::take(&mut self.gang_mut(id).hold);
        self.unhold(&hold);
        let gang = self.gang_mut(id);
        gang.admitted_at = None;
        gang.waiting_since = None;
        gang.tried_epoch = None;
        gang.phase = GangPhase::Pending;
        self.refresh_phase(id);
        Ok(bound)
    }

    /// Removes a pod that was deleted or reached a terminal phase.
    ///
    /// When a minimum member of a live gang goes, the gang must not silently drop below its minimum: an elastic
    /// member of the same template is promoted in its place, or else, if the pod *failed* (its controller will
    /// create a replacement), its capacity is re-reserved on the same node for that replacement. The
    /// reservation timeout releases that slot if no replacement comes.
    pub fn remove_pod(&mut self, id: PodId, exit: PodExit, now: Millis) -> Result<(), CoreError> {
        let pod = self.pods.remove(id.0).ok_or(CoreError::Unknown { kind: "pod", id: id.0 })?;
        let (request, member) = (pod.spec.request, pod.spec.member);
        match pod.claim {
            Some(Claim::Elastic { node, .. }) => self.unreserve_elastic(member, node, &request),
            Some(Claim::Slot { .. }) => {
                if let Some((gang, _)) = member {
                    self.clear_slot_claim(gang, id);
                }
            }
            None => {}
        }
        if let Some(node) = pod.node {
            let queue = self.member_queue(member);
            let n = self.node_mut(node);
            n.used = n.used.saturating_sub(&request);
            if pod.terminating {
                n.terminating = n.terminating.saturating_sub(&request);
            }
            if pod.role != PodRole::Foreign {
                n.sub_managed(queue.expect("a member's gang is live"), &request);
            }
            n.pods.retain(|p| *p != id);
            self.touch_node(node);
            self.capacity_grew();
        }
        if let Some((gang, template)) = member
            && self.gangs.get(gang.0).is_some()
        {
            let g = self.gang_mut(gang);
            g.pods.retain(|p| *p != id);
            if pod.node.is_none() {
                g.unbound = g.unbound.saturating_sub(1);
            }
            if let Some(node) = pod.node {
                self.unbind_member(gang, template, pod.role, &request);
                // A terminating pod already left its gang (see `set_terminating`); its role is Foreign here.
                if pod.role == PodRole::Min && !self.promote_elastic(gang, template) {
                    let g = self.gangs.get(gang.0).expect("live gang");
                    match exit {
                        PodExit::Failed if g.phase != GangPhase::Expired => {
                            self.reserve_slot(gang, template, node, now);
                        }
                        // Done, not missing: nothing is reserved for it (the gang is completing).
                        PodExit::Succeeded => self.gang_mut(gang).completed[template as usize] += 1,
                        _ => {}
                    }
                    self.refresh_phase(gang);
                }
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Makes one bound elastic member of `template` count towards the minimum instead. Returns false if none.
    fn promote_elastic(&mut self, gang: GangId, template: u16) -> bool {
        let g = self.gangs.get(gang.0).expect("live gang");
        if g.bound_elastic[template as usize] == 0 {
            return false;
        }
        let candidate = g.pods.iter().copied().find(|p| {
            self.pods
                .get(p.0)
                .is_some_and(|p| p.role == PodRole::Elastic && p.spec.member.is_some_and(|m| m.1 == template))
        });
        let Some(p) = candidate else { return false };
        self.pod_mut(p).role = PodRole::Min;
        let g = self.gang_mut(gang);
        g.bound_elastic[template as usize] -= 1;
        g.bound_min[template as usize] += 1;
        self.refresh_phase(gang);
        true
    }

    fn clear_slot_claim(&mut self, gang: GangId, pod: PodId) {
        if let Some(g) = self.gangs.get_mut(gang.0) {
            for s in &mut g.slots {
                if s.claim.is_some_and(|(p, _)| p == pod) {
                    s.claim = None;
                }
            }
        }
    }

    /// Forgets a pod's claim (bind failed or timed out).
    pub fn forget_claim(&mut self, id: PodId) {
        let Some(pod) = self.pods.get_mut(id.0) else { return };
        let (claim, request, member) = (pod.claim.take(), pod.spec.request, pod.spec.member);
        match claim {
            Some(Claim::Elastic { node, .. }) => {
                self.unreserve_elastic(member, node, &request);
                self.capacity_grew();
            }
            Some(Claim::Slot { .. }) => {
                if let Some((gang, _)) = member {
                    self.clear_slot_claim(gang, id);
                }
            }
            None => {}
        }
    }

    fn unreserve_elastic(&mut self, member: Option<(GangId, u16)>, node: NodeId, request: &Resources) {
        if let Some(n) = self.nodes.get_mut(node.0) {
            n.reserved = n.reserved.saturating_sub(request);
            self.touch_node(node);
        }
        if let Some((gang, _)) = member
            && let Some(g) = self.gangs.get(gang.0)
        {
            let queue = g.spec.queue;
            let q = self.queue_mut(queue);
            q.allocated = q.allocated.saturating_sub(request);
        }
    }

    /// Records a claim: the pod was told to go to `node`.
    pub(crate) fn set_claim(&mut self, id: PodId, claim: Claim) {
        let pod = self.pod_mut(id);
        pod.claim = Some(claim);
        let (request, member) = (pod.spec.request, pod.spec.member);
        if let Claim::Elastic { node, .. } = claim {
            let n = self.node_mut(node);
            n.reserved = n.reserved.saturating_add(&request);
            self.touch_node(node);
            if let Some((gang, _)) = member {
                let queue = self.gangs.get(gang.0).expect("live gang").spec.queue;
                let q = self.queue_mut(queue);
                q.allocated = q.allocated.saturating_add(&request);
            }
        }
    }
}
