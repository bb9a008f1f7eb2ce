//! Reclaim planning: a minimal set of victims that lets a gang of an under-served queue fit.
//!
//! Candidates come only from *other*, reclaimable queues whose allocation exceeds their deserved share in some
//! resource (the resources it *borrows*). A candidate is taken only if it frees a borrowed resource the gang
//! asks for, and only while its queue is still above its deserved share in every borrowed resource the victim
//! frees: a victim queue therefore ends less than one victim below its share, never more (Volcano's rule,
//! applied per resource). What a queue borrows is fixed when the cycle begins, so several reclaims in one
//! cycle cannot walk a queue further down one resource at a time. A strict
//! floor would make reclaim impossible whenever pod sizes do not divide the difference, and leave the
//! under-served queue below its share forever. (Pods bundle resources, so an eviction also frees resources the
//! victim does not borrow; judging those would forbid every reclaim whenever one resource, say memory, is
//! uncontended or generously shared.) Order: elastic members first, then whole gangs (a gang is never left below its minimum), each
//! by lowest priority then youngest; pods younger than `min_runtime` are protected.
//!
//! 1. Capacity already being freed (pods terminating) counts first; if that suffices, nobody new is evicted —
//!    this is what keeps repeated cycles from evicting again while earlier evictions are in flight.
//! 2. Greedy: add candidates in order (only those on nodes the gang could use) until the gang packs.
//! 3. Prune, newest first: drop every victim the gang still fits without. The result is inclusion-minimal.
//!
//! Convergence: a beneficiary's gang must fit within its queue's deserved share, so the beneficiary never ends
//! above its share and can never become a victim of the queue it took from; a victim queue ends short by less
//! than one pod, which is not enough for any of its gangs to count as "within its share" and reclaim back
//! while shares hold still. No ping-pong.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::admission::{Eviction, Reclaimed};
use super::cluster::{Cluster, GangId, GangPhase, Millis, NodeId, PodId, PodRole, Policy, QueueId};
use super::pack::Placed;
use super::resources::Resources;

/// (whole gang?, priority, youngest first, pod or gang id): sorts into the order victims are considered.
type Candidate = (bool, i32, Reverse<Millis>, u32);

struct Unit {
    victim: GangId,
    queue: QueueId,
    pods: Vec<PodId>,
    /// Capacity freed per node (pods, plus slots for a whole gang).
    frees: Vec<(NodeId, Resources)>,
    total: Resources,
    whole_gang: bool,
}

impl Cluster {
    pub(crate) fn plan_reclaim(
        &mut self,
        head: GangId,
        now: Millis,
        policy: &Policy,
    ) -> Option<(Vec<Eviction>, Vec<Reclaimed>, Vec<Placed>)> {
        let demands = self.demands(head);
        let head_queue = self.gang(head)?.spec.queue;
        let head_classes = self.gang(head)?.classes.clone();
        let asks = self.gang(head)?.missing_request();

        // 1. Pods already on their way out.
        let terminating: Vec<(NodeId, Resources)> =
            self.nodes().filter(|(_, n)| !n.terminating.is_zero()).map(|(id, n)| (id, n.terminating)).collect();
        self.add_bonus(&terminating, true);
        if let Ok(placement) = self.pack(&demands, policy.exact_search_budget) {
            self.add_bonus(&terminating, false);
            return Some((Vec::new(), Vec::new(), placement));
        }

        // 2. Greedy over candidates in victim order.
        // A heap, not a sort: the greedy pass usually stops after a few dozen of many thousand candidates.
        let mut candidates: BinaryHeap<Reverse<Candidate>> =
            self.reclaim_candidates(head_queue, now, policy).into_iter().map(Reverse).collect();
        let candidates = std::iter::from_fn(move || candidates.pop().map(|Reverse(c)| c));
        let useful = |c: &Cluster, u: &Unit| {
            u.frees.iter().any(|(n, _)| head_classes.iter().any(|k| c.capacity().contains(*k, n.0)))
        };
        let mut taken: HashMap<QueueId, Resources> = HashMap::new();
        // Units are built only when the greedy pass reaches them; `chosen` indexes the ones it kept.
        let mut units: Vec<Unit> = Vec::new();
        let mut chosen: Vec<usize> = Vec::new();
        let mut fits = None;
        for candidate in candidates {
            let Some(u) = self.unit_of(candidate, now, policy) else { continue };
            if !useful(self, &u) {
                continue;
            }
            let q = self.queue(u.queue).expect("live queue");
            // Judged: the resources the queue was borrowing when this cycle began (fixed for the whole cycle,
            // so several reclaims in one cycle cannot walk a queue down resource by resource).
            let judged: Vec<usize> = (0..q.allocated.0.len()).filter(|&s| q.borrowing & (1 << s) != 0).collect();
            let helps = judged.iter().any(|&s| u.total.get(s) > 0 && asks.get(s) > 0);
            let still_above = judged.iter().filter(|&&s| u.total.get(s) > 0).all(|&s| {
                q.allocated.get(s).saturating_sub(taken.get(&u.queue).map_or(0, |t| t.get(s))) > q.deserved.get(s)
            });
            if !helps || !still_above {
                continue;
            }
            if u.whole_gang {
                // The whole gang includes any of its elastic members chosen earlier: count them once.
                let superseded: Vec<usize> =
                    chosen.iter().copied().filter(|&j| units[j].victim == u.victim && !units[j].whole_gang).collect();
                for j in superseded {
                    self.add_bonus(&units[j].frees, false);
                    let t = taken.entry(units[j].queue).or_default();
                    *t = t.saturating_sub(&units[j].total);
                    chosen.retain(|&c| c != j);
                }
            }
            let t = taken.entry(u.queue).or_default();
            *t = t.saturating_add(&u.total);
            self.add_bonus(&u.frees, true);
            units.push(u);
            chosen.push(units.len() - 1);
            if let Ok(placement) = self.pack(&demands, policy.exact_search_budget) {
                fits = Some(placement);
                break;
            }
        }
        let Some(mut placement) = fits else {
            for &i in &chosen {
                self.add_bonus(&units[i].frees, false);
            }
            self.add_bonus(&terminating, false);
            return None;
        };

        // 3. Prune to an inclusion-minimal set.
        let mut k = chosen.len();
        while k > 0 {
            k -= 1;
            let i = chosen[k];
            self.add_bonus(&units[i].frees, false);
            match self.pack(&demands, policy.exact_search_budget) {
                Ok(p) => {
                    placement = p;
                    chosen.remove(k);
                }
                Err(_) => self.add_bonus(&units[i].frees, true),
            }
        }
        for &i in &chosen {
            self.add_bonus(&units[i].frees, false);
        }
        self.add_bonus(&terminating, false);

        let mut evictions = Vec::new();
        let mut reclaimed = Vec::new();
        for &i in &chosen {
            let u = &units[i];
            if u.whole_gang {
                let _ = self.evict_gang(u.victim);
            }
            for &pod in &u.pods {
                evictions.push(Eviction { pod, victim: u.victim, beneficiary: head, whole_gang: u.whole_gang });
            }
            reclaimed.push(Reclaimed { victim: u.victim, beneficiary: head, whole_gang: u.whole_gang, frees: u.total });
        }
        Some((evictions, reclaimed, placement))
    }

    /// Candidate victims as compact keys (100,000 running pods make building every unit up front the expensive
    /// part); in ascending order they are elastic members, then whole gangs, each by lowest priority, then
    /// youngest, then id.
    fn reclaim_candidates(&self, beneficiary_queue: QueueId, now: Millis, policy: &Policy) -> Vec<Candidate> {
        let old_enough = |since: Option<Millis>| since.is_some_and(|t| now.saturating_sub(t) >= policy.min_runtime);
        let mut out: Vec<Candidate> = Vec::new();
        for (qid, q) in self.queues() {
            if qid == beneficiary_queue || !q.spec.reclaimable || q.borrowing == 0 {
                continue;
            }
            for &gid in &q.gangs {
                let g = self.gang(gid).expect("live gang");
                // A gang admitted in this very cycle is not taken back in it: that would be churn.
                if !matches!(g.phase, GangPhase::Admitted | GangPhase::Running) || g.admitted_at == Some(now) {
                    continue;
                }
                let mut gang_old_enough = old_enough(g.admitted_at);
                for &pid in &g.pods {
                    let Some(pod) = self.pod(pid) else { continue };
                    if pod.node.is_none() || pod.terminating {
                        continue;
                    }
                    gang_old_enough &= old_enough(pod.bound_at);
                    if pod.role == PodRole::Elastic && old_enough(pod.bound_at) {
                        out.push((false, g.spec.priority, Reverse(pod.bound_at.unwrap_or(0)), pid.0));
                    }
                }
                if gang_old_enough {
                    out.push((true, g.spec.priority, Reverse(g.admitted_at.unwrap_or(0)), gid.0));
                }
            }
        }
        out
    }

    /// The victim unit a candidate stands for: one elastic pod, or a whole gang (pods and reservations).
    fn unit_of(&self, (whole, _, _, id): Candidate, _now: Millis, _policy: &Policy) -> Option<Unit> {
        if !whole {
            let pod = self.pod(PodId(id))?;
            let (gid, _) = pod.spec.member?;
            let queue = self.gang(gid)?.spec.queue;
            return Some(Unit {
                victim: gid,
                queue,
                pods: vec![PodId(id)],
                frees: vec![(pod.node?, pod.spec.request)],
                total: pod.spec.request,
                whole_gang: false,
            });
        }
        let gid = GangId(id);
        let g = self.gang(gid)?;
        let mut pods = Vec::new();
        let mut frees: Vec<(NodeId, Resources)> = Vec::new();
        for &pid in &g.pods {
            let Some(pod) = self.pod(pid) else { continue };
            let Some(node) = pod.node else { continue };
            if !pod.terminating {
                pods.push(pid);
                frees.push((node, pod.spec.request));
            }
        }
        for s in &g.slots {
            frees.push((s.node, g.spec.templates[s.template as usize].request));
        }
        let total = frees.iter().fold(Resources::ZERO, |acc, (_, r)| acc.saturating_add(r));
        Some(Unit { victim: gid, queue: g.spec.queue, pods, frees, total, whole_gang: true })
    }

    /// Adds (or with `add == false` removes) what-if capacity on nodes.
    fn add_bonus(&mut self, amounts: &[(NodeId, Resources)], add: bool) {
        for (node, r) in amounts {
            if let Some(n) = self.nodes.get_mut(node.0) {
                n.bonus = if add { n.bonus.saturating_add(r) } else { n.bonus.saturating_sub(r) };
                self.touch_node(*node);
            }
        }
    }
}
