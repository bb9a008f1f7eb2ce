//! Nodes: their capacity and usage, and adding, changing and removing them.

use std::collections::BTreeMap;

use super::super::placement::{NodeFacts, Taint};
use super::{Claim, Cluster, CoreError, GangId, NodeId, PodId, PodRole, QueueId, Resources, Slot};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub allocatable: Resources,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub spec: NodeSpec,
    /// Requests of pods bound here, of any scheduler, including pods being deleted.
    pub used: Resources,
    /// The part of `used` that belongs to pods already being deleted (it will free up).
    pub terminating: Resources,
    /// The part of `used` that belongs to gang members (muster's own pods; the rest is foreign).
    pub managed: Resources,
    /// `managed` by queue (queues with members bound here only): draining a head asks what its own queue runs
    /// on every node, which would otherwise mean walking every pod of the queue.
    pub(crate) managed_by_queue: Vec<(QueueId, Resources)>,
    /// Gang slots and elastic claims.
    pub reserved: Resources,
    /// Capacity held back for blocked gangs (draining or reclaiming); rebuilt every admission cycle.
    pub held: Resources,
    /// Capacity the model has given back (a slot moved away, an admission released) that a gang's durable record
    /// still claims until the write saying otherwise lands: nobody may take it, or a restart in between would
    /// restore two gangs onto it. See [`Gang::unreleased`](crate::core::Gang::unreleased).
    pub unreleased: Resources,
    /// What-if capacity during reclaim planning only; always zero outside it.
    pub bonus: Resources,
    /// What a gang could use here if every muster-managed pod, slot and hold were gone (allocatable less foreign
    /// pods and unreleased capacity), as last published by `touch_node`: when it changes anywhere, verdicts of
    /// the form "could it ever fit?" must be recomputed ([`Cluster::static_epoch`]).
    pub(crate) static_available: Resources,
    pub pods: Vec<PodId>,
}

impl Node {
    /// allocatable - used - reserved - unreleased.
    #[inline]
    pub fn free(&self) -> Resources {
        self.spec.allocatable.saturating_sub(&self.used).saturating_sub(&self.reserved).saturating_sub(&self.unreleased)
    }
    /// What a gang without a hold here may use.
    #[inline]
    pub fn available(&self) -> Resources {
        self.free().saturating_sub(&self.held).saturating_add(&self.bonus)
    }
    /// What a gang could use here if every muster-managed pod, slot and hold were gone: `available()` with
    /// managed usage, reservations and holds given back (the never-fits check packs against this).
    #[inline]
    pub fn available_without_managed(&self) -> Resources {
        self.free()
            .saturating_sub(&self.held)
            .saturating_add(&self.managed.saturating_add(&self.reserved).saturating_add(&self.held))
    }
    /// What members of queue `q` bound here request.
    pub fn managed_of(&self, q: QueueId) -> Resources {
        self.managed_by_queue.iter().find(|(id, _)| *id == q).map(|(_, r)| *r).unwrap_or_default()
    }
    pub(super) fn add_managed(&mut self, q: QueueId, r: &Resources) {
        self.managed = self.managed.saturating_add(r);
        match self.managed_by_queue.iter_mut().find(|(id, _)| *id == q) {
            Some((_, total)) => *total = total.saturating_add(r),
            None => self.managed_by_queue.push((q, *r)),
        }
    }
    pub(super) fn sub_managed(&mut self, q: QueueId, r: &Resources) {
        self.managed = self.managed.saturating_sub(r);
        if let Some(i) = self.managed_by_queue.iter().position(|(id, _)| *id == q) {
            let total = &mut self.managed_by_queue[i].1;
            *total = total.saturating_sub(r);
            if total.is_zero() {
                self.managed_by_queue.swap_remove(i);
            }
        }
    }
    pub fn facts(&self) -> NodeFacts<'_> {
        NodeFacts {
            name: &self.spec.name,
            labels: &self.spec.labels,
            taints: &self.spec.taints,
            unschedulable: self.spec.unschedulable,
        }
    }
}

impl Cluster {
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeId, CoreError> {
        if self.node_by_name.contains_key(&spec.name) {
            return Err(CoreError::DuplicateNode(spec.name));
        }
        self.total = self.total.saturating_add(&spec.allocatable);
        let name = spec.name.clone();
        let static_available = spec.allocatable;
        let id = NodeId(self.nodes.insert(Node {
            spec,
            used: Resources::ZERO,
            terminating: Resources::ZERO,
            managed: Resources::ZERO,
            managed_by_queue: Vec::new(),
            reserved: Resources::ZERO,
            held: Resources::ZERO,
            unreleased: Resources::ZERO,
            bonus: Resources::ZERO,
            static_available,
            pods: Vec::new(),
        }));
        self.node_by_name.insert(name, id);
        self.capacity.invalidate();
        self.static_epoch += 1;
        self.capacity_grew();
        Ok(id)
    }

    /// Replaces a node's allocatable, labels, taints and cordon state (its name is its identity).
    pub fn update_node(&mut self, id: NodeId, spec: NodeSpec) -> Result<(), CoreError> {
        let node = self.nodes.get_mut(id.0).ok_or(CoreError::Unknown { kind: "node", id: id.0 })?;
        if node.spec == spec {
            return Ok(());
        }
        let constraints_changed = node.spec.labels != spec.labels
            || node.spec.taints != spec.taints
            || node.spec.unschedulable != spec.unschedulable;
        self.total = self.total.saturating_sub(&node.spec.allocatable).saturating_add(&spec.allocatable);
        node.spec.allocatable = spec.allocatable;
        node.spec.labels = spec.labels;
        node.spec.taints = spec.taints;
        node.spec.unschedulable = spec.unschedulable;
        if constraints_changed {
            node.static_available = node.available_without_managed();
            self.capacity.invalidate();
            self.static_epoch += 1;
        } else {
            self.touch_node(id);
        }
        self.capacity_grew();
        Ok(())
    }

    /// Removes a node. Pods bound there stop counting; slots there are dropped, which leaves their gangs short:
    /// the next admission cycle re-places them ([`crate::core::admission`] repairs admitted gangs first).
    pub fn remove_node(&mut self, id: NodeId) -> Result<(), CoreError> {
        let node = self.nodes.remove(id.0).ok_or(CoreError::Unknown { kind: "node", id: id.0 })?;
        self.static_epoch += 1;
        self.node_by_name.remove(&node.spec.name);
        self.total = self.total.saturating_sub(&node.spec.allocatable);
        for pod_id in node.pods {
            let pod = self.pod_mut(pod_id);
            pod.node = None;
            let (request, role, member) = (pod.spec.request, pod.role, pod.spec.member);
            pod.role = PodRole::Foreign;
            pod.bound_at = None;
            if let Some((gang, template)) = member {
                self.unbind_member(gang, template, role, &request);
                if let Some(g) = self.gangs.get_mut(gang.0) {
                    g.unbound += 1;
                }
            }
        }
        let gang_ids: Vec<GangId> = self.gangs().map(|(g, _)| g).collect();
        for g in gang_ids {
            let gang = self.gang_mut(g);
            let (lost, kept): (Vec<Slot>, Vec<Slot>) = gang.slots.drain(..).partition(|s| s.node == id);
            gang.slots = kept;
            // A record naming the node cannot be restored there (and the id may be reused by a new node).
            gang.recorded.retain(|(_, n)| *n != id);
            gang.unreleased.retain(|(n, _)| *n != id);
            if lost.is_empty() {
                continue;
            }
            let queue = gang.spec.queue;
            let released = lost.iter().fold(Resources::ZERO, |acc, s| {
                acc.saturating_add(&self.gangs.get(g.0).unwrap().spec.templates[s.template as usize].request)
            });
            for s in &lost {
                if let Some((pod, _)) = s.claim
                    && let Some(p) = self.pods.get_mut(pod.0)
                {
                    p.claim = None;
                }
            }
            let q = self.queue_mut(queue);
            q.allocated = q.allocated.saturating_sub(&released);
            self.refresh_phase(g);
        }
        // Elastic claims on the node vanish with it.
        let claimed: Vec<PodId> = self
            .pods()
            .filter(|(_, p)| matches!(p.claim, Some(Claim::Elastic { node, .. }) if node == id))
            .map(|(p, _)| p)
            .collect();
        for p in claimed {
            let pod = self.pod_mut(p);
            pod.claim = None;
            let (request, member) = (pod.spec.request, pod.spec.member);
            if let Some((gang, _)) = member {
                let queue = self.gangs.get(gang.0).expect("live gang").spec.queue;
                let q = self.queue_mut(queue);
                q.allocated = q.allocated.saturating_sub(&request);
            }
        }
        self.capacity.invalidate();
        self.dirty = true;
        Ok(())
    }
}
