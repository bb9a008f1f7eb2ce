//! The admission cycle: which waiting gangs get capacity, in fair order, all or nothing.
//!
//! Order: admitted gangs that lost a slot or a member (node removed) are repaired first; one that cannot be
//! repaired stops its queue while its replacements may still come. Then, repeatedly, the queue with the
//! lowest share (dominant `allocated / deserved`) offers its next gang (priority, then age, then name). A gang is
//! admitted when its queue is Open, the admission stays within the queue's capability, leaves every other queue's
//! unused guarantee untouched, keeps a non-reclaimable queue within its deserved share, and every missing minimum
//! member packs onto a concrete node. Admission reserves a slot per missing member.
//!
//! Head-of-line rule. The first gang of a queue that fails (its *head*) is treated by where its queue stands:
//! - A head that could not fit even if every muster-managed pod in the cluster were gone *never fits*: it is
//!   reported and skipped and blocks nobody.
//! - A head whose admission keeps its queue within its deserved share may take back borrowed capacity: a minimal
//!   reclaim plan evicts from reclaimable queues above their share, and the freed capacity is held for the head.
//! - Otherwise, once the head has waited `drain_after`, it *drains*: the capacity it would use if the
//!   muster-managed pods on those nodes finished is held for it as it frees, and nothing behind it in its queue
//!   is admitted. Gangs of other queues still run, but not on held capacity.
//! - Before `drain_after`, and for heads of queues over their share (borrowers), smaller gangs behind the head
//!   backfill freely.
//!
//! So a large head is never starved by a stream of small gangs (after `drain_after` it holds capacity as it
//! frees), and small gangs are never blocked forever by a head that cannot fit (it is set aside as NeverFits).

use std::collections::HashMap;
use std::sync::Arc;

use super::cluster::{
    Cluster, GangId, GangPhase, GangSpec, Millis, NodeId, PodId, Policy, QueueId, StaticVerdict, WaitReason,
};
use super::fairshare::{ShareInput, deserved_shares};
use super::pack::{Demand, PackFailure, Placed};
use super::resources::{Resources, SLOTS};

/// Whether `new` holds less than `old` somewhere (capacity was given back).
fn released_any(old: &[(NodeId, Resources)], new: &[(NodeId, Resources)]) -> bool {
    old.iter().any(|(n, r)| new.iter().find(|(m, _)| m == n).is_none_or(|(_, s)| !r.fits_in(s)))
}

/// Why an attempt failed, and whether anything was re-evaluated.
enum Failure {
    /// Evaluated now.
    Fresh(WaitReason),
    /// Skipped: capacity has not grown since the last failed attempt.
    Unchanged(WaitReason),
}

/// A pod to evict so that a gang below its queue's deserved share can start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub pod: PodId,
    /// The gang the pod belongs to.
    pub victim: GangId,
    /// The gang the capacity is reclaimed for.
    pub beneficiary: GangId,
    /// True when the whole victim gang goes (its elastic members alone were not enough).
    pub whole_gang: bool,
}

/// One victim of a reclaim: an elastic pod or a whole gang, and what it frees (pods and reservations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    pub victim: GangId,
    pub beneficiary: GangId,
    pub whole_gang: bool,
    pub frees: Resources,
}

/// What one cycle decided.
#[derive(Debug, Clone, Default)]
pub struct CycleOutcome {
    pub admitted: Vec<GangId>,
    pub evictions: Vec<Eviction>,
    /// The victims behind `evictions`, one entry per elastic pod or whole gang.
    pub reclaimed: Vec<Reclaimed>,
    /// Gangs whose reservations timed out this cycle.
    pub expired: Vec<GangId>,
    /// Every gang still waiting, with the reason it waits.
    pub waiting: Vec<(GangId, WaitReason)>,
    /// Problems in the input the cycle worked around (e.g. a queue naming an unknown parent).
    pub warnings: Vec<String>,
}

impl Cluster {
    /// Runs one admission cycle at time `now`.
    pub fn run_cycle(&mut self, now: Millis, policy: &Policy) -> CycleOutcome {
        let mut out = CycleOutcome { expired: self.expire(now, policy), ..CycleOutcome::default() };
        self.refresh_capacity();
        // Capacity held for waiting heads (`Gang::hold`, mirrored in `Node::held`) stays held across cycles.
        self.compute_deserved(&mut out.warnings);

        // Repairs first: admitted gangs that lost members or slots (their node went away: a spot interruption,
        // consolidation) already have members running. One that cannot be repaired now stops its queue for as
        // long as its replacements may still come (`reservation_timeout`): nothing behind it is admitted, so the
        // capacity that frees or is added goes to it first.
        let mut stopped: HashMap<QueueId, GangId> = HashMap::new();
        let repairs: Vec<GangId> = self
            .gangs()
            .filter(|(_, g)| g.phase == GangPhase::Admitted && g.missing_total() > 0)
            .map(|(id, _)| id)
            .collect();
        for g in repairs {
            match self.try_pack_and_reserve(g, now, policy) {
                Ok(()) => out.admitted.push(g),
                Err(Failure::Fresh(reason) | Failure::Unchanged(reason)) => {
                    let gang = self.gang_mut(g);
                    let since = *gang.waiting_since.get_or_insert(now);
                    gang.reason = Some(reason);
                    if now.saturating_sub(since) < policy.reservation_timeout {
                        let queue = gang.spec.queue;
                        stopped.entry(queue).or_insert(g);
                    }
                }
            }
        }

        let mut lines = self.queue_lines();
        let mut unused_guarantees = self.unused_guarantees();
        // Only guarantees need the cluster-wide total in use; skip the scan over nodes when there are none.
        let any_guarantee = self.queues().any(|(_, q)| !q.spec.guarantee.is_zero());
        let mut cluster_used = if any_guarantee {
            self.nodes().fold(Resources::ZERO, |acc, (_, n)| acc.saturating_add(&n.used).saturating_add(&n.reserved))
        } else {
            Resources::ZERO
        };
        let mut head_failed: HashMap<QueueId, GangId> = HashMap::new();

        while let Some(q) = self.next_queue(&lines, &stopped) {
            let g = lines.get_mut(&q).expect("queue has a line").remove(0);
            let queue = self.queue(q).expect("live queue");
            let gang = self.gang(g).expect("live gang");
            let demand = gang.missing_request();
            // A gang being evicted waits for its pods to go (or for the eviction to be refused); it must not hold
            // or reclaim capacity meanwhile, least of all the capacity its eviction frees for someone else.
            let being_evicted =
                gang.pods.iter().any(|p| self.pod(*p).is_some_and(|p| p.terminating && p.node.is_some()));
            let verdict = if !queue.spec.open {
                Err(Failure::Fresh(WaitReason::QueueClosed))
            } else if being_evicted {
                Err(Failure::Fresh(WaitReason::MembersTerminating))
            } else if !queue.allocated.saturating_add(&demand).fits_in(&queue.spec.capability) {
                Err(Failure::Fresh(WaitReason::QueueCapability {
                    detail: format!(
                        "allocated {} + gang {} > capability {}",
                        self.resources.describe(&queue.allocated),
                        self.resources.describe(&demand),
                        self.resources.describe(&queue.spec.capability)
                    )
                    .into(),
                }))
            } else if !queue.spec.reclaimable && !queue.allocated.saturating_add(&demand).fits_in(&queue.deserved) {
                Err(Failure::Fresh(WaitReason::OverDeserved {
                    detail: format!(
                        "allocated {} + gang {} > deserved {}",
                        self.resources.describe(&queue.allocated),
                        self.resources.describe(&demand),
                        self.resources.describe(&queue.deserved)
                    )
                    .into(),
                }))
            } else if let Some(detail) = self.takes_guarantee(q, &demand, &cluster_used, &unused_guarantees) {
                Err(Failure::Fresh(WaitReason::GuaranteeOfOtherQueues { detail: detail.into() }))
            } else {
                self.try_pack_and_reserve(g, now, policy)
            };
            match verdict {
                Ok(()) => {
                    cluster_used = cluster_used.saturating_add(&demand);
                    unused_guarantees = self.unused_guarantees();
                    out.admitted.push(g);
                }
                Err(failure) => {
                    let (reason, fresh) = match failure {
                        Failure::Fresh(r) => (r, true),
                        Failure::Unchanged(r) => (r, false),
                    };
                    let waiting_since = *self.gang_mut(g).waiting_since.get_or_insert(now);
                    let is_head = !head_failed.contains_key(&q);
                    head_failed.entry(q).or_insert(g);
                    let short_of_capacity =
                        matches!(reason, WaitReason::Insufficient { .. } | WaitReason::Fragmented { .. })
                            && !being_evicted;
                    let drain_due = now.saturating_sub(waiting_since) >= policy.drain_after;
                    // Only a head short of capacity (or whose earlier verdict stands) may hold capacity; that
                    // verdict is re-evaluated when capacity changed or its drain deadline passed.
                    let may_hold = is_head && !being_evicted && (short_of_capacity || !fresh);
                    let reevaluate = fresh || (short_of_capacity && drain_due);
                    let reason = if !may_hold {
                        self.drop_hold(g, true);
                        reason
                    } else if !reevaluate {
                        // Nothing changed since it last failed: same reason, same hold.
                        if matches!(reason, WaitReason::Draining { .. }) {
                            stopped.insert(q, g);
                        }
                        reason
                    } else {
                        let old = self.drop_hold(g, false);
                        let reason = self
                            .head_of_line(g, q, &demand, waiting_since, now, policy, &mut out, &mut stopped)
                            .unwrap_or(reason);
                        if released_any(&old, &self.gang(g).expect("live").hold) {
                            self.capacity_grew();
                        }
                        reason
                    };
                    self.gang_mut(g).reason = Some(reason.clone());
                    out.waiting.push((g, reason));
                }
            }
        }
        // Gangs left in the lines of stopped queues wait behind their draining head.
        for (q, line) in lines {
            let Some(&head) = stopped.get(&q) else { continue };
            let head_name: Arc<str> = self.gang(head).expect("live gang").spec.name.as_str().into();
            for g in line {
                let reason = WaitReason::BehindHead { head: head_name.clone() };
                self.gang_mut(g).reason = Some(reason.clone());
                out.waiting.push((g, reason));
            }
        }
        self.dirty = false;
        if std::mem::take(&mut self.shares_stale) {
            if out.evictions.is_empty() && out.reclaimed.is_empty() {
                // So that what is published (Queue status) leaves out the gangs found never to fit; the
                // warnings were given by the first computation.
                self.compute_deserved(&mut Vec::new());
            } else {
                // Evictions were chosen against the shares of this cycle, which stay what is published with
                // them; the next cycle computes them without the gang.
                self.dirty = true;
            }
        }
        #[cfg(debug_assertions)]
        {
            if let Err(violation) = self.check_accounting() {
                panic!("admission cycle broke the accounting: {violation}");
            }
            for g in &out.admitted {
                let gang = self.gang(*g).expect("admitted gang is live");
                assert_eq!(gang.missing_total(), 0, "admitted gang {} is missing members", gang.spec.name);
            }
        }
        out
    }

    /// Per queue, its waiting gangs in admission order: priority (high first), age, name.
    fn queue_lines(&self) -> HashMap<QueueId, Vec<GangId>> {
        // Sort keys are gathered once rather than looked up per comparison (this runs every cycle).
        let mut keyed: HashMap<QueueId, Vec<(GangId, &GangSpec)>> = HashMap::new();
        for (id, g) in self.gangs() {
            if g.phase == GangPhase::Pending && g.missing_total() > 0 {
                keyed.entry(g.spec.queue).or_default().push((id, &g.spec));
            }
        }
        keyed
            .into_iter()
            .map(|(q, mut line)| {
                line.sort_by(|(_, a), (_, b)| {
                    b.priority.cmp(&a.priority).then(a.created.cmp(&b.created)).then(a.name.cmp(&b.name))
                });
                (q, line.into_iter().map(|(id, _)| id).collect())
            })
            .collect()
    }

    /// The queue with the lowest share among those with gangs left to offer; ties by name.
    fn next_queue(&self, lines: &HashMap<QueueId, Vec<GangId>>, stopped: &HashMap<QueueId, GangId>) -> Option<QueueId> {
        lines
            .iter()
            .filter(|(q, line)| !line.is_empty() && !stopped.contains_key(q))
            .map(|(q, _)| {
                let queue = self.queue(*q).expect("live queue");
                (*q, queue.allocated.dominant_share(&queue.deserved), &queue.spec.name)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(b.2)))
            .map(|(q, _, _)| q)
    }

    /// Per queue: guarantee not yet used, which no other queue may take.
    fn unused_guarantees(&self) -> HashMap<QueueId, Resources> {
        self.queues().map(|(id, q)| (id, q.spec.guarantee.saturating_sub(&q.allocated))).collect()
    }

    /// Why admitting `demand` for queue `q` would eat into another queue's unused guarantee, if it would.
    fn takes_guarantee(
        &self,
        q: QueueId,
        demand: &Resources,
        cluster_used: &Resources,
        unused: &HashMap<QueueId, Resources>,
    ) -> Option<String> {
        let others =
            unused.iter().filter(|(id, _)| **id != q).fold(Resources::ZERO, |acc, (_, r)| acc.saturating_add(r));
        if others.is_zero() {
            return None;
        }
        let after = cluster_used.saturating_add(demand).saturating_add(&others);
        // Only the resources the gang asks for matter.
        let short = demand.nonzero_slots().any(|s| after.get(s) > self.total().get(s));
        short.then(|| format!("{} is guaranteed to other queues and not in use", self.resources.describe(&others)))
    }

    /// What packing a gang's missing members asks for, per template.
    pub(crate) fn demands(&self, g: GangId) -> Vec<Demand> {
        let gang = self.gang(g).expect("live gang");
        gang.missing()
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| Demand {
                template: t as u16,
                class: gang.classes[t],
                request: gang.spec.templates[t].request,
                count: *n,
            })
            .collect()
    }

    /// Packs the gang's missing members (using capacity held for it, if any) and reserves them.
    fn try_pack_and_reserve(&mut self, g: GangId, now: Millis, policy: &Policy) -> Result<(), Failure> {
        let epoch = self.capacity_epoch;
        let gang = self.gang(g).expect("live gang");
        if let (Some(tried), Some(reason)) = (gang.tried_epoch, &gang.reason)
            && tried == epoch
        {
            // Nothing freed since the last failed attempt: it would fail the same way.
            return Err(Failure::Unchanged(reason.clone()));
        }
        let own_hold = std::mem::take(&mut self.gang_mut(g).hold);
        self.unhold(&own_hold);
        let demands = self.demands(g);
        match self.pack(&demands, policy.exact_search_budget) {
            Ok(placed) => {
                for p in placed {
                    for _ in 0..p.count {
                        self.reserve_slot(g, p.template, p.node, now);
                    }
                }
                let gang = self.gang_mut(g);
                gang.admitted_at.get_or_insert(now);
                gang.waiting_since = None;
                gang.reason = None;
                gang.tried_epoch = None;
                self.refresh_phase(g);
                Ok(())
            }
            Err(failure) => {
                self.hold(&own_hold);
                let gang = self.gang_mut(g);
                gang.hold = own_hold;
                gang.tried_epoch = Some(epoch);
                let detail = self.describe_failure(g, &failure).into();
                Err(Failure::Fresh(if failure.aggregate_short || failure.eligible_nodes == 0 {
                    WaitReason::Insufficient { detail }
                } else {
                    WaitReason::Fragmented { detail }
                }))
            }
        }
    }

    /// Gives up the capacity held for a gang; with `wake`, gangs that failed for lack of it may retry.
    fn drop_hold(&mut self, g: GangId, wake: bool) -> Vec<(NodeId, Resources)> {
        let hold = std::mem::take(&mut self.gang_mut(g).hold);
        if !hold.is_empty() {
            self.unhold(&hold);
            if wake {
                self.capacity_grew();
            }
        }
        hold
    }

    pub(crate) fn describe_failure(&self, g: GangId, f: &PackFailure) -> String {
        let gang = self.gang(g).expect("live gang");
        let t = &gang.spec.templates[f.template as usize];
        let each = self.resources.describe(&t.request);
        if f.eligible_nodes == 0 {
            return format!("no node matches the constraints of {:?} (node selector, affinity, tolerations)", t.name);
        }
        if f.aggregate_short {
            format!(
                "{} x {:?} ({each} each) exceed the free capacity of all {} nodes that match its constraints",
                f.needed, t.name, f.eligible_nodes
            )
        } else {
            format!(
                "only {} of {} x {:?} ({each} each) fit on the {} nodes that match its constraints (fragmentation)",
                f.placed, f.needed, t.name, f.eligible_nodes
            )
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn head_of_line(
        &mut self,
        g: GangId,
        q: QueueId,
        demand: &Resources,
        waiting_since: Millis,
        now: Millis,
        policy: &Policy,
        out: &mut CycleOutcome,
        stopped: &mut HashMap<QueueId, GangId>,
    ) -> Option<WaitReason> {
        let queue = self.queue(q).expect("live queue");
        if queue.allocated.saturating_add(demand).fits_in(&queue.deserved)
            && let Some((victims, units, placement)) = self.plan_reclaim(g, now, policy)
        {
            let new = victims.len();
            for e in victims {
                let _ = self.set_terminating(e.pod);
                out.evictions.push(e);
            }
            out.reclaimed.extend(units);
            let hold = self.placement_amounts(g, &placement);
            self.hold(&hold);
            self.gang_mut(g).hold = hold;
            let detail = if new == 0 {
                "waiting for evicted pods to terminate".to_string()
            } else {
                format!("evicting {new} pods from queues above their deserved share")
            };
            return Some(WaitReason::Reclaiming { detail: detail.into() });
        }
        // Could it ever fit? Pack against capacity minus foreign usage only. (After reclaim: a gang that a
        // reclaim plan fits obviously can, and this check touches every node.)
        let demands = self.demands(g);
        if let Some(never_fits) = self.never_fits(g, demands.clone(), policy) {
            return Some(never_fits);
        }
        let queue = self.queue(q).expect("live queue");
        let borrowing = !queue.allocated.fits_in(&queue.deserved);
        if borrowing || !demand.fits_in(&queue.deserved) || now.saturating_sub(waiting_since) < policy.drain_after {
            return None; // backfill behind it for now
        }
        // Drain: hold what the head would use once its own queue's running work on those nodes finishes (so it
        // does not take other queues' share), or failing that, once any muster-managed work there finishes.
        let drain = self
            .with_bonus(|c, n| c.node(n).map(|n| n.managed_of(q)), |c| c.pack(&demands, policy.exact_search_budget))
            .or_else(|_| {
                self.with_bonus(|c, n| c.node(n).map(|n| n.managed), |c| c.pack(&demands, policy.exact_search_budget))
            });
        let Ok(placement) = drain else {
            return None; // earlier holds cover what it needs; it waits like anyone else
        };
        let hold = self.placement_amounts(g, &placement);
        let nodes = hold.len();
        self.hold(&hold);
        self.gang_mut(g).hold = hold;
        stopped.insert(q, g);
        Some(WaitReason::Draining { detail: format!("holding capacity on {nodes} nodes as it frees").into() })
    }

    /// Why the gang could not fit even with every muster-managed pod, slot and hold gone, if so. The verdict
    /// packs over every node, so it is kept with its inputs and reused until they change.
    fn never_fits(&mut self, g: GangId, demands: Vec<Demand>, policy: &Policy) -> Option<WaitReason> {
        let (epoch, budget) = (self.static_epoch, policy.exact_search_budget);
        if let Some(v) = &self.gang(g).expect("live gang").static_verdict
            && v.epoch == epoch
            && v.budget == budget
            && v.demands == demands
        {
            let cached = v.never_fits.clone();
            // The cache must agree with the verdict it saves (property tests run debug builds).
            #[cfg(debug_assertions)]
            {
                let fresh = self.with_bonus(
                    |c, n| c.node(n).map(|n| n.managed.saturating_add(&n.reserved).saturating_add(&n.held)),
                    |c| c.pack(&demands, budget),
                );
                assert_eq!(fresh.is_err(), cached.is_some(), "stale never-fits verdict for gang {g:?}");
            }
            return cached;
        }
        let plan = self.with_bonus(
            |c, n| c.node(n).map(|n| n.managed.saturating_add(&n.reserved).saturating_add(&n.held)),
            |c| c.pack(&demands, budget),
        );
        let never_fits = plan.err().map(|f| WaitReason::NeverFits { detail: self.describe_failure(g, &f).into() });
        // Its demand no longer counts in its queue's share (`compute_deserved`); the shares are redone this cycle.
        self.shares_stale |= never_fits.is_some() && self.gang(g).is_some_and(|gang| gang.phase == GangPhase::Pending);
        debug_assert_eq!(self.static_epoch, epoch, "what-if packing changes no static capacity");
        self.gang_mut(g).static_verdict =
            Some(StaticVerdict { epoch, demands, budget, never_fits: never_fits.clone() });
        never_fits
    }

    /// Per-node amounts of a placement.
    fn placement_amounts(&self, g: GangId, placement: &[Placed]) -> Vec<(NodeId, Resources)> {
        let gang = self.gang(g).expect("live gang");
        let mut amounts: Vec<(NodeId, Resources)> = Vec::new();
        for p in placement {
            let r = gang.spec.templates[p.template as usize].request.times(u64::from(p.count));
            match amounts.iter_mut().find(|(n, _)| *n == p.node) {
                Some((_, total)) => *total = total.saturating_add(&r),
                None => amounts.push((p.node, r)),
            }
        }
        amounts
    }

    pub(crate) fn hold(&mut self, amounts: &[(NodeId, Resources)]) {
        for (node, r) in amounts {
            if let Some(n) = self.nodes.get_mut(node.0) {
                n.held = n.held.saturating_add(r);
                self.touch_node(*node);
            }
        }
    }

    pub(crate) fn unhold(&mut self, amounts: &[(NodeId, Resources)]) {
        for (node, r) in amounts {
            if let Some(n) = self.nodes.get_mut(node.0) {
                n.held = n.held.saturating_sub(r);
                self.touch_node(*node);
            }
        }
    }

    /// Runs `f` with every node's available capacity raised by `bonus(node)`, then restores it.
    pub(crate) fn with_bonus<T>(
        &mut self,
        bonus: impl Fn(&Cluster, NodeId) -> Option<Resources>,
        f: impl FnOnce(&mut Cluster) -> T,
    ) -> T {
        let ids: Vec<NodeId> = self.nodes().map(|(id, _)| id).collect();
        let mut touched = Vec::new();
        for id in ids {
            if let Some(b) = bonus(self, id)
                && !b.is_zero()
            {
                self.nodes.get_mut(id.0).expect("live").bonus = b;
                self.touch_node(id);
                touched.push(id);
            }
        }
        let result = f(self);
        for id in touched {
            self.nodes.get_mut(id.0).expect("live").bonus = Resources::ZERO;
            self.touch_node(id);
        }
        result
    }

    /// Deserved shares for every queue from current allocation and pending demand.
    fn compute_deserved(&mut self, warnings: &mut Vec<String>) {
        let ids: Vec<QueueId> = self.queues().map(|(id, _)| id).collect();
        let position: HashMap<QueueId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        // Dense by queue index: this runs over every gang, every cycle.
        let mut pending: Vec<Resources> = vec![Resources::ZERO; self.queues.capacity()];
        for (_, g) in self.gangs() {
            let pending_phase = g.phase == GangPhase::Pending;
            if !pending_phase && g.unbound == 0 {
                continue; // asks for nothing more
            }
            // A gang found unable to fit even on the empty nodes claims no share: its demand could never be
            // allocated, and counting it would hold capacity idle for ever in queues that may not borrow. The
            // verdict is the one packing already made (in this cycle or an earlier one: a cycle that finds one
            // computes the shares again); new or changed nodes void it.
            if pending_phase
                && g.static_verdict.as_ref().is_some_and(|v| v.epoch == self.static_epoch && v.never_fits.is_some())
            {
                continue;
            }
            let mut want = if pending_phase { g.missing_request() } else { Resources::ZERO };
            if g.unbound > 0 {
                // Elastic members asking for room (pending, not directed to a slot) are demand too.
                let mut free_slots: Vec<u32> = vec![0; g.spec.templates.len()];
                for s in &g.slots {
                    free_slots[s.template as usize] += u32::from(s.claim.is_none());
                }
                for p in &g.pods {
                    let Some(pod) = self.pod(*p) else { continue };
                    if pod.node.is_some() || pod.claim.is_some() {
                        continue;
                    }
                    let t = pod.spec.member.expect("gang pods are members").1 as usize;
                    if free_slots[t] > 0 {
                        free_slots[t] -= 1;
                    } else if !pending_phase {
                        want = want.saturating_add(&pod.spec.request);
                    }
                }
            }
            let e = &mut pending[g.spec.queue.index()];
            *e = e.saturating_add(&want);
        }
        let inputs: Vec<ShareInput> = ids
            .iter()
            .map(|id| {
                let q = self.queue(*id).expect("live queue");
                let parent = q.spec.parent.as_ref().and_then(|name| {
                    let p = self.queue_id(name).and_then(|p| position.get(&p).copied());
                    if p.is_none() {
                        warnings
                            .push(format!("queue {:?} names unknown parent {name:?}; treated as a root", q.spec.name));
                    }
                    p
                });
                ShareInput {
                    weight: q.spec.weight,
                    capability: q.spec.capability,
                    guarantee: q.spec.guarantee,
                    request: q.allocated.saturating_add(&pending[id.index()]),
                    parent,
                }
            })
            .collect();
        let shares = match deserved_shares(&self.total(), &inputs) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("{e}; every queue treated as a root"));
                let flat: Vec<ShareInput> = inputs
                    .iter()
                    .cloned()
                    .map(|mut i| {
                        i.parent = None;
                        i
                    })
                    .collect();
                deserved_shares(&self.total(), &flat).expect("a flat hierarchy has no cycle")
            }
        };
        for ((id, share), input) in ids.iter().zip(shares).zip(&inputs) {
            let q = self.queues.get_mut(id.0).expect("live queue");
            q.deserved = share;
            q.request = input.request;
            q.borrowing =
                (0..SLOTS).filter(|&s| q.allocated.get(s) > share.get(s)).fold(0u16, |mask, s| mask | (1 << s));
        }
    }
}
