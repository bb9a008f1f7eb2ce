//! The invariants of design.md, as checks over a [`Cluster`]. The admission cycle asserts the ones that hold
//! whatever the outside world does in debug builds; property tests assert all of them on generated workloads.

use super::cluster::{Claim, Cluster, Gang, GangPhase, NodeId, PodRole};
use super::resources::Resources;

impl Cluster {
    /// Incremental aggregates equal a recomputation from scratch (node usage and reservations, queue allocation,
    /// gang member counts).
    pub fn check_accounting(&self) -> Result<(), String> {
        let mut used = vec![Resources::ZERO; self.nodes.capacity()];
        let mut managed = vec![Resources::ZERO; self.nodes.capacity()];
        let mut reserved = vec![Resources::ZERO; self.nodes.capacity()];
        let mut allocated = vec![Resources::ZERO; self.queues.capacity()];
        for (_, pod) in self.pods() {
            if let Some(n) = pod.node {
                used[n.index()] = used[n.index()].saturating_add(&pod.spec.request);
                if pod.role != PodRole::Foreign {
                    managed[n.index()] = managed[n.index()].saturating_add(&pod.spec.request);
                }
            }
            let queue = pod.spec.member.and_then(|(g, _)| self.gang(g)).map(|g| g.spec.queue);
            if let (Some(q), Some(_), true) = (queue, pod.node, pod.role != PodRole::Foreign) {
                allocated[q.index()] = allocated[q.index()].saturating_add(&pod.spec.request);
            }
            if let Some(Claim::Elastic { node, .. }) = pod.claim {
                reserved[node.index()] = reserved[node.index()].saturating_add(&pod.spec.request);
                if let Some(q) = queue {
                    allocated[q.index()] = allocated[q.index()].saturating_add(&pod.spec.request);
                }
            }
        }
        for (gid, g) in self.gangs() {
            for s in &g.slots {
                let r = g.spec.templates[s.template as usize].request;
                reserved[s.node.index()] = reserved[s.node.index()].saturating_add(&r);
                allocated[g.spec.queue.index()] = allocated[g.spec.queue.index()].saturating_add(&r);
            }
            let mut min = vec![0u32; g.spec.templates.len()];
            let mut elastic = vec![0u32; g.spec.templates.len()];
            for p in &g.pods {
                let pod = self.pod(*p).ok_or_else(|| format!("gang {} lists a removed pod", g.spec.name))?;
                if pod.spec.member.map(|m| m.0) != Some(gid) {
                    return Err(format!("gang {} lists pod {} of another gang", g.spec.name, pod.spec.name));
                }
                let t = pod.spec.member.expect("checked").1 as usize;
                match (pod.node, pod.role) {
                    (Some(_), PodRole::Min) => min[t] += 1,
                    (Some(_), PodRole::Elastic) => elastic[t] += 1,
                    _ => {}
                }
            }
            let unbound = g.pods.iter().filter(|p| self.pod(**p).is_some_and(|p| p.node.is_none())).count() as u32;
            if unbound != g.unbound {
                return Err(format!("gang {}: {} unbound members, recorded {}", g.spec.name, unbound, g.unbound));
            }
            if min != g.bound_min || elastic != g.bound_elastic {
                return Err(format!(
                    "gang {}: counted min {:?} elastic {:?}, recorded {:?} {:?}",
                    g.spec.name, min, elastic, g.bound_min, g.bound_elastic
                ));
            }
        }
        // Per-node capacity that gangs keep out of others' reach, summed over the gangs' own lists.
        let per_node = |list: fn(&Gang) -> &Vec<(NodeId, Resources)>| {
            let mut sum = vec![Resources::ZERO; self.nodes.capacity()];
            for (_, g) in self.gangs() {
                for (node, r) in list(g) {
                    if let Some(s) = sum.get_mut(node.index()) {
                        *s = s.saturating_add(r);
                    }
                }
            }
            sum
        };
        let held = per_node(|g| &g.hold);
        let unreleased = per_node(|g| &g.unreleased);
        for (id, n) in self.nodes() {
            for (what, recorded, summed) in
                [("held", n.held, held[id.index()]), ("unreleased", n.unreleased, unreleased[id.index()])]
            {
                if recorded != summed {
                    return Err(format!(
                        "node {}: {what} {recorded:?}, its gangs' lists add up to {summed:?}",
                        n.spec.name
                    ));
                }
            }
            let by_queue = n.managed_by_queue.iter().fold(Resources::ZERO, |acc, (_, r)| acc.saturating_add(r));
            if by_queue != n.managed || n.managed_by_queue.iter().any(|(_, r)| r.is_zero()) {
                return Err(format!(
                    "node {}: managed {:?} but by queue {:?}",
                    n.spec.name, n.managed, n.managed_by_queue
                ));
            }
            if n.used != used[id.index()] || n.reserved != reserved[id.index()] || n.managed != managed[id.index()] {
                return Err(format!(
                    "node {}: used {:?}/{:?} reserved {:?}/{:?} managed {:?}/{:?} (recorded/recomputed)",
                    n.spec.name,
                    n.used,
                    used[id.index()],
                    n.reserved,
                    reserved[id.index()],
                    n.managed,
                    managed[id.index()]
                ));
            }
        }
        for (id, q) in self.queues() {
            if q.allocated != allocated[id.index()] {
                return Err(format!(
                    "queue {}: allocated {:?}, recomputed {:?}",
                    q.spec.name,
                    q.allocated,
                    allocated[id.index()]
                ));
            }
        }
        Ok(())
    }

    /// Invariants 1-3 of design.md plus accounting. They hold for every state muster's own decisions produce;
    /// the outside world can break them (a foreign pod bound onto reserved capacity), which is why the cycle only
    /// asserts [`Cluster::check_accounting`].
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_accounting()?;
        // 1. No node over-committed.
        for (_, n) in self.nodes() {
            if !n.used.saturating_add(&n.reserved).fits_in(&n.spec.allocatable) {
                return Err(format!(
                    "node {} over-committed: used {} + reserved {} > allocatable {}",
                    n.spec.name,
                    self.resources.describe(&n.used),
                    self.resources.describe(&n.reserved),
                    self.resources.describe(&n.spec.allocatable)
                ));
            }
        }
        // 1b. No two records on the same capacity: what a restart would restore (each gang's recorded slots still
        // missing members, whether reserved now or given back but not yet released by a write) fits beside what is
        // bound, so a restart restores every record where it was written.
        for (_, n) in self.nodes() {
            if !n.used.saturating_add(&n.reserved).saturating_add(&n.unreleased).fits_in(&n.spec.allocatable) {
                return Err(format!(
                    "node {}: used {} + reserved {} + unreleased {} > allocatable {}: two records claim its capacity",
                    n.spec.name,
                    self.resources.describe(&n.used),
                    self.resources.describe(&n.reserved),
                    self.resources.describe(&n.unreleased),
                    self.resources.describe(&n.spec.allocatable)
                ));
            }
        }
        // 2. All or nothing. A gang being evicted is exempt: its members leave one by one, and an eviction the
        // API server refuses (a disruption budget) can leave some of them running for good.
        for (_, g) in self.gangs() {
            let being_evicted = g.pods.iter().any(|p| self.pod(*p).is_some_and(|p| p.terminating && p.node.is_some()));
            if being_evicted {
                continue;
            }
            let holds_something = !g.slots.is_empty() || g.bound_min.iter().any(|b| *b > 0);
            if g.phase != GangPhase::Expired && holds_something && g.missing_total() > 0 {
                return Err(format!(
                    "gang {} holds part of its minimum: bound {:?}, {} slots, missing {:?}",
                    g.spec.name,
                    g.bound_min,
                    g.slots.len(),
                    g.missing()
                ));
            }
            if g.phase == GangPhase::Pending && holds_something {
                return Err(format!("gang {} is pending but holds capacity", g.spec.name));
            }
        }
        // 3. Capability.
        for (_, q) in self.queues() {
            if !q.allocated.fits_in(&q.spec.capability) {
                return Err(format!(
                    "queue {} allocated {} beyond capability {}",
                    q.spec.name,
                    self.resources.describe(&q.allocated),
                    self.resources.describe(&q.spec.capability)
                ));
            }
        }
        Ok(())
    }
}
