//! Answering for one pending pod: where it goes among the nodes kube-scheduler offers.
//!
//! These never admit a gang: admission happens only in the cycle, in fair order. They direct a pod to capacity
//! its gang already holds (a slot), move a slot when kube-scheduler does not offer its node (re-planning within
//! the offered nodes), or place an elastic member on free capacity. Each answer is *claimed* (assumed) so that
//! two pods never get the same capacity while their binds are in flight.

use std::collections::HashMap;

use super::capacity::ClassId;
use super::cluster::{Claim, Cluster, GangId, GangPhase, Millis, NodeId, PodId, PodRole};
use super::resources::Resources;

/// A set of node ids (the nodes offered in one extender call).
#[derive(Debug, Clone, Default)]
pub struct NodeSet {
    words: Vec<u64>,
    members: Vec<NodeId>,
}

impl NodeSet {
    pub fn new(nodes: impl IntoIterator<Item = NodeId>) -> NodeSet {
        let mut set = NodeSet::default();
        for n in nodes {
            set.insert(n);
        }
        set
    }
    pub fn insert(&mut self, n: NodeId) {
        let (w, b) = (n.index() / 64, n.index() % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        if self.words[w] & (1 << b) == 0 {
            self.words[w] |= 1 << b;
            self.members.push(n);
        }
    }
    #[inline]
    pub fn contains(&self, n: NodeId) -> bool {
        self.words.get(n.index() / 64).is_some_and(|w| w & (1 << (n.index() % 64)) != 0)
    }
    /// Members in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().copied()
    }
    pub fn len(&self) -> usize {
        self.members.len()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Why a pod gets no node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("pod is not a member of any gang muster manages")]
    NotManaged,
    #[error("unknown pod")]
    UnknownPod,
    #[error("gang {gang} is not admitted yet: {reason}")]
    NotAdmitted { gang: String, reason: String },
    #[error("gang {gang}: its reservations expired before members bound; delete and resubmit it")]
    Expired { gang: String },
    #[error("gang {gang} has finished; its PodGroup admits no new members")]
    Finished { gang: String },
    #[error("pod is already bound to {node}")]
    AlreadyBound { node: String },
    #[error("gang {gang}: no offered node has room for this member ({detail})")]
    NoRoom { gang: String, detail: String },
    #[error("gang {gang}: template {template:?} already has its maximum of {max} members")]
    AtMaximum { gang: String, template: String, max: u32 },
    #[error("gang {gang}: queue capability leaves no room for another elastic member")]
    QueueCapability { gang: String },
}

impl Refusal {
    /// A short form for answers repeated once per candidate node (the full reason goes to Events and status).
    pub fn summary(&self) -> String {
        match self {
            Refusal::NotAdmitted { gang, .. } => format!("gang {gang} waits for admission"),
            other => other.to_string(),
        }
    }
}

impl Cluster {
    /// The node this pending pod would be directed to without looking further: the node it already claimed, or
    /// that of a free slot of its template. Lets the extender check one name instead of indexing every offered
    /// node.
    pub fn directed_node(&self, id: PodId) -> Option<NodeId> {
        let pod = self.pod(id)?;
        if let Some(claim) = pod.claim {
            return Some(claim.node());
        }
        let (gang, template) = pod.spec.member?;
        let gang = self.gang(gang)?;
        if !matches!(gang.phase, GangPhase::Admitted | GangPhase::Running) {
            return None;
        }
        gang.slots.iter().find(|s| s.template == template && s.claim.is_none()).map(|s| s.node)
    }

    /// The node [`Cluster::place`] would choose for a pending elastic member (no claim, no free slot of its
    /// template) if every node were offered. Tightest fit is a minimum over the offered nodes that fit, so
    /// whenever this node is among those offered, `place` chooses it: a caller that knows this node passes its
    /// own filters may offer it alone instead of filtering every node.
    pub fn elastic_preference(&mut self, id: PodId) -> Option<NodeId> {
        let pod = self.pod(id)?;
        let (Some((gang_id, template)), None, None) = (pod.spec.member, pod.node, pod.claim) else { return None };
        let request = pod.spec.request;
        let gang = self.gang(gang_id)?;
        if !matches!(gang.phase, GangPhase::Admitted | GangPhase::Running)
            || gang.slots.iter().any(|s| s.template == template && s.claim.is_none())
            || self.elastic_refusal(gang_id, template, &request).is_some()
        {
            return None;
        }
        let class = gang.classes[template as usize];
        self.refresh_capacity();
        self.tightest_fit(class, &request, self.nodes().map(|(id, _)| id))
    }

    /// Among `candidates`, the node of `class` with room for `request` that it leaves least room on (elastic
    /// members pack onto busy nodes and leave whole nodes for gangs); ties by node id.
    fn tightest_fit(
        &self,
        class: ClassId,
        request: &Resources,
        candidates: impl Iterator<Item = NodeId>,
    ) -> Option<NodeId> {
        candidates
            .filter(|&n| {
                self.capacity().contains(class, n.0)
                    && self.node(n).is_some_and(|node| request.fits_in(&node.available()))
            })
            .min_by_key(|&n| {
                let left = self.node(n).expect("live").available().saturating_sub(request);
                (left.get(super::resources::CPU), left.get(super::resources::MEMORY), n)
            })
    }

    /// Why one more elastic member of `template` may not be placed anywhere, if it may not: the template is at
    /// its maximum, or the queue's capability leaves no room.
    fn elastic_refusal(&self, gang_id: GangId, template: u16, request: &Resources) -> Option<Refusal> {
        let gang = self.gang(gang_id).expect("live");
        let t = &gang.spec.templates[template as usize];
        let claimed = gang
            .pods
            .iter()
            .filter(|p| {
                self.pod(**p).is_some_and(|p| {
                    p.node.is_none() && p.claim.is_some() && p.spec.member.map(|m| m.1) == Some(template)
                })
            })
            .count() as u32;
        let members = gang.bound_min[template as usize] + gang.bound_elastic[template as usize] + claimed;
        if members >= t.max {
            return Some(Refusal::AtMaximum { gang: gang.spec.name.clone(), template: t.name.clone(), max: t.max });
        }
        let queue = self.queue(gang.spec.queue).expect("live queue");
        if !queue.allocated.saturating_add(request).fits_in(&queue.spec.capability) {
            return Some(Refusal::QueueCapability { gang: gang.spec.name.clone() });
        }
        None
    }

    /// Whether [`Cluster::place`] could choose a node for `id` at all: false when it refuses whatever nodes are
    /// offered (unknown, bound or unmanaged pod; a gang not admitted; an elastic member at its maximum, beyond
    /// its queue's capability, or with no node of its placement that has room). Lets a caller skip working out
    /// which nodes to offer.
    pub fn placeable(&mut self, id: PodId) -> bool {
        let Some(pod) = self.pod(id) else { return false };
        let (Some((gang_id, template)), None) = (pod.spec.member, pod.node) else { return false };
        if pod.claim.is_some() {
            return true;
        }
        let request = pod.spec.request;
        let Some(gang) = self.gang(gang_id) else { return false };
        if !matches!(gang.phase, GangPhase::Admitted | GangPhase::Running) {
            return false;
        }
        if gang.slots.iter().any(|s| s.template == template && s.claim.is_none()) {
            return true; // a free slot, moved to an offered node if need be: that needs the offered nodes
        }
        if self.elastic_refusal(gang_id, template, &request).is_some() {
            return false;
        }
        let class = gang.classes[template as usize];
        self.refresh_capacity();
        self.capacity().first_fit(class, &request, 0).is_some()
    }

    /// Chooses and claims a node for pending pod `id` among `offered`.
    pub fn place(&mut self, id: PodId, offered: &NodeSet, now: Millis) -> Result<NodeId, Refusal> {
        let pod = self.pod(id).ok_or(Refusal::UnknownPod)?;
        if let Some(node) = pod.node {
            return Err(Refusal::AlreadyBound {
                node: self.node(node).map(|n| n.spec.name.clone()).unwrap_or_default(),
            });
        }
        let (gang_id, template) = pod.spec.member.ok_or(Refusal::NotManaged)?;
        let request = pod.spec.request;
        if let Some(claim) = pod.claim {
            if offered.contains(claim.node()) {
                return Ok(claim.node()); // a retry of the same pod: same answer
            }
            self.forget_claim(id);
        }
        let gang = self.gang(gang_id).expect("member of a live gang");
        let name = gang.spec.name.clone();
        match gang.phase {
            GangPhase::Pending => {
                let reason = gang
                    .reason
                    .as_ref()
                    .map(|r| r.message())
                    .unwrap_or_else(|| "waiting for the next admission cycle".into());
                return Err(Refusal::NotAdmitted { gang: name, reason });
            }
            GangPhase::Expired => return Err(Refusal::Expired { gang: name }),
            GangPhase::Finished => return Err(Refusal::Finished { gang: name }),
            GangPhase::Admitted | GangPhase::Running => {}
        }
        let class = gang.classes[template as usize];
        let fits = |c: &Cluster, n: NodeId| {
            c.capacity().contains(class, n.0) && c.node(n).is_some_and(|node| request.fits_in(&node.available()))
        };

        // A free slot of this template: on an offered node if possible, else moved to an offered node.
        let free_slots: Vec<usize> = gang
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.template == template && s.claim.is_none())
            .map(|(i, _)| i)
            .collect();
        if !free_slots.is_empty() {
            self.refresh_capacity();
            let on_offered =
                free_slots.iter().copied().find(|&i| offered.contains(self.gang(gang_id).expect("live").slots[i].node));
            let slot = match on_offered {
                Some(i) => i,
                None => {
                    // Give the slot's capacity back, then look for room among the offered nodes.
                    let i = free_slots[0];
                    let old = self.gang(gang_id).expect("live").slots[i].node;
                    self.move_slot_reservation(gang_id, i, None);
                    match offered.iter().find(|&n| fits(self, n)) {
                        Some(n) => {
                            self.move_slot_reservation(gang_id, i, Some(n));
                            i
                        }
                        None => {
                            self.move_slot_reservation(gang_id, i, Some(old));
                            return Err(Refusal::NoRoom {
                                gang: name,
                                detail: format!("its reserved node is not among the {} offered", offered.len()),
                            });
                        }
                    }
                }
            };
            let g = self.gang_mut(gang_id);
            g.slots[slot].claim = Some((id, now));
            let node = g.slots[slot].node;
            self.set_claim(id, Claim::Slot { node, at: now });
            return Ok(node);
        }

        // Elastic: within the template's maximum and the queue's capability, on free capacity.
        if let Some(refusal) = self.elastic_refusal(gang_id, template, &request) {
            return Err(refusal);
        }
        self.refresh_capacity();
        let Some(node) = self.tightest_fit(class, &request, offered.iter()) else {
            return Err(Refusal::NoRoom { gang: name, detail: "no free capacity for an elastic member".into() });
        };
        self.set_claim(id, Claim::Elastic { node, at: now });
        Ok(node)
    }

    /// Moves slot `i`'s reservation off its node (`to == None`) or onto `to`.
    fn move_slot_reservation(&mut self, gang: GangId, i: usize, to: Option<NodeId>) {
        let g = self.gang(gang).expect("live gang");
        let (request, from) = (g.spec.templates[g.slots[i].template as usize].request, g.slots[i].node);
        match to {
            None => {
                if let Some(n) = self.nodes.get_mut(from.0) {
                    n.reserved = n.reserved.saturating_sub(&request);
                    self.touch_node(from);
                }
            }
            Some(to) => {
                let n = self.nodes.get_mut(to.0).expect("live node");
                n.reserved = n.reserved.saturating_add(&request);
                self.touch_node(to);
                let g = self.gang_mut(gang);
                if g.slots[i].node != to {
                    g.placement += 1;
                }
                g.slots[i].node = to;
            }
        }
        self.refresh_unreleased(gang);
    }

    /// 0..=10 per offered node: 10 for the node the pod was directed to; otherwise the tighter the fit, the
    /// higher (most-allocated), at most 5 so a directed node always wins.
    pub fn scores(&self, id: PodId, offered: &NodeSet) -> Vec<(NodeId, u8)> {
        let pod = self.pod(id);
        let directed = pod.and_then(|p| p.claim.map(|c| c.node()).or(p.node));
        let request = pod.map(|p| p.spec.request).unwrap_or_default();
        offered
            .iter()
            .map(|n| {
                if Some(n) == directed {
                    return (n, 10);
                }
                let Some(node) = self.node(n) else { return (n, 0) };
                let alloc = node.spec.allocatable;
                let used = node.used.saturating_add(&node.reserved).saturating_add(&request);
                let frac = |s: usize| {
                    if alloc.get(s) == 0 { 0.0 } else { (used.get(s) as f64 / alloc.get(s) as f64).min(1.0) }
                };
                let tight = (frac(super::resources::CPU) + frac(super::resources::MEMORY)) / 2.0;
                (n, (tight * 5.0).round() as u8)
            })
            .collect()
    }

    /// Of the pods kube-scheduler proposes to preempt, those whose eviction keeps every gang at its minimum.
    /// A minimum member may go only if an elastic member of the same template can take its place.
    pub fn allowed_victims(&self, victims: &[PodId]) -> Vec<PodId> {
        // Elastic members of a template can stand in for its minimum members, unless they are victims too.
        let mut spare: HashMap<(GangId, u16), u32> = HashMap::new();
        for p in victims.iter().filter_map(|v| self.pod(*v)) {
            if let (Some((g, t)), PodRole::Elastic, Some(gang)) =
                (p.spec.member, p.role, p.spec.member.and_then(|m| self.gang(m.0)))
            {
                let left = spare.entry((g, t)).or_insert(gang.bound_elastic[t as usize]);
                *left = left.saturating_sub(1);
            }
        }
        victims
            .iter()
            .copied()
            .filter(|&v| {
                let Some(pod) = self.pod(v) else { return true };
                let (Some((g, t)), PodRole::Min) = (pod.spec.member, pod.role) else { return true };
                let Some(gang) = self.gang(g) else { return true };
                let left = spare.entry((g, t)).or_insert(gang.bound_elastic[t as usize]);
                if *left > 0 {
                    *left -= 1;
                    true
                } else {
                    false
                }
            })
            .collect()
    }
}
