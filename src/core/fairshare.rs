//! Deserved shares by weighted water-filling, with Volcano's `proportion` semantics, over a queue hierarchy.
//!
//! Among the queues that have demand, each round hands every unsatisfied queue `remaining * w / W` (W: weights of
//! the unsatisfied queues), then caps it at its real capability and its request and floors it at its guarantee.
//! A queue is satisfied when its request fits in its deserved share or its share stopped growing; the loop ends
//! when nothing remains or a round changed nothing. `realCapability = min(capability, total - all guarantees +
//! own guarantee)`. Arithmetic is exact integer (u128 intermediates), so results are deterministic everywhere.
//!
//! Hierarchy: the roots divide the cluster; every parent then divides its own deserved share among its children
//! the same way. A parent's request is the sum of its subtree's; its guarantee is at least the sum of its
//! children's guarantees.

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};

use super::resources::{Resources, SLOTS};

#[derive(Debug, Clone)]
pub struct ShareInput {
    pub weight: u64,
    /// `Resources::UNLIMITED` in slots without a cap.
    pub capability: Resources,
    pub guarantee: Resources,
    /// allocated + pending demand of this queue itself (gangs live in leaf queues).
    pub request: Resources,
    /// Index of the parent queue in the same slice.
    pub parent: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FairShareError {
    #[error("queue hierarchy has a cycle through queue #{0}")]
    Cycle(usize),
    #[error("queue #{queue} names parent #{parent}, which does not exist")]
    UnknownParent { queue: usize, parent: usize },
}

/// One water-filling problem: divide `total` among `entries`.
struct Entry {
    weight: u64,
    capability: Resources,
    guarantee: Resources,
    request: Resources,
}

fn water_fill(total: &Resources, entries: &[Entry]) -> Vec<Resources> {
    let all_guarantees = Resources::sum(entries.iter().map(|e| &e.guarantee));
    let unguaranteed = total.saturating_sub(&all_guarantees);
    let real_capability: Vec<Resources> =
        entries.iter().map(|e| e.capability.min(&unguaranteed.saturating_add(&e.guarantee))).collect();

    let mut deserved = vec![Resources::ZERO; entries.len()];
    // Only queues with demand take part (Volcano: queues with jobs).
    let mut satisfied: Vec<bool> = entries.iter().map(|e| e.request.is_zero() || e.weight == 0).collect();
    let mut remaining = *total;
    loop {
        let total_weight: u128 =
            entries.iter().zip(&satisfied).filter(|(_, s)| !**s).map(|(e, _)| u128::from(e.weight)).sum();
        if total_weight == 0 {
            break;
        }
        let before = remaining;
        let mut increased = Resources::ZERO;
        let mut decreased = Resources::ZERO;
        for (i, e) in entries.iter().enumerate() {
            if satisfied[i] {
                continue;
            }
            let old = deserved[i];
            let mut d = old;
            let mut offered = false;
            for s in 0..SLOTS {
                let add = (u128::from(before.0[s]) * u128::from(e.weight) / total_weight) as u64;
                offered |= add > 0;
                d.0[s] = d.0[s].saturating_add(add);
            }
            d = d.min(&real_capability[i]).min(&e.request).max(&e.guarantee);
            deserved[i] = d;
            // "Stopped growing" only counts when something was offered: a share that rounds down to zero this
            // round (a tiny weight against a large total weight) is not a reason to stop offering more.
            if e.request.fits_in(&d) || (offered && d == old) {
                satisfied[i] = true;
            }
            increased = increased.saturating_add(&d.saturating_sub(&old));
            decreased = decreased.saturating_add(&old.saturating_sub(&d));
        }
        remaining = remaining.saturating_sub(&increased).saturating_add(&decreased);
        if remaining.is_zero() || remaining == before {
            break;
        }
    }
    // Queues without demand still keep their guarantee (it is reserved for them, never lent).
    for (i, e) in entries.iter().enumerate() {
        deserved[i] = deserved[i].max(&e.guarantee);
    }
    deserved
}

/// Deserved share of every queue (leaves and parents) of the hierarchy described by `queues`.
pub fn deserved_shares(total: &Resources, queues: &[ShareInput]) -> Result<Vec<Resources>, FairShareError> {
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(queues.len(), queues.len());
    let nodes: Vec<NodeIndex> = (0..queues.len()).map(|i| graph.add_node(i)).collect();
    for (i, q) in queues.iter().enumerate() {
        if let Some(p) = q.parent {
            if p >= queues.len() {
                return Err(FairShareError::UnknownParent { queue: i, parent: p });
            }
            graph.add_edge(nodes[p], nodes[i], ());
        }
    }
    let order = toposort(&graph, None).map_err(|cycle| FairShareError::Cycle(graph[cycle.node_id()]))?;

    // Subtree aggregates, children before parents.
    let mut request: Vec<Resources> = queues.iter().map(|q| q.request).collect();
    let mut guarantee: Vec<Resources> = queues.iter().map(|q| q.guarantee).collect();
    for &n in order.iter().rev() {
        let i = graph[n];
        let (mut child_request, mut child_guarantee) = (Resources::ZERO, Resources::ZERO);
        for c in graph.neighbors(n) {
            child_request = child_request.saturating_add(&request[graph[c]]);
            child_guarantee = child_guarantee.saturating_add(&guarantee[graph[c]]);
        }
        request[i] = request[i].saturating_add(&child_request);
        guarantee[i] = guarantee[i].max(&child_guarantee);
    }

    let entry = |i: usize| Entry {
        weight: queues[i].weight,
        capability: queues[i].capability,
        guarantee: guarantee[i],
        request: request[i],
    };
    let mut deserved = vec![Resources::ZERO; queues.len()];
    // Divide the cluster among the roots, then each parent's share among its children, top down.
    let roots: Vec<usize> = (0..queues.len()).filter(|&i| queues[i].parent.is_none()).collect();
    for (i, d) in roots.iter().zip(water_fill(total, &roots.iter().map(|&i| entry(i)).collect::<Vec<_>>())) {
        deserved[*i] = d;
    }
    for &n in &order {
        let mut children: Vec<usize> = graph.neighbors(n).map(|c| graph[c]).collect();
        if children.is_empty() {
            continue;
        }
        children.sort_unstable();
        let shares = water_fill(&deserved[graph[n]], &children.iter().map(|&i| entry(i)).collect::<Vec<_>>());
        for (c, d) in children.into_iter().zip(shares) {
            deserved[c] = d;
        }
    }
    Ok(deserved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resources::CPU;

    fn cpu(n: u64) -> Resources {
        Resources::ZERO.with(CPU, n * 1000)
    }
    fn q(weight: u64, request: u64) -> ShareInput {
        ShareInput {
            weight,
            capability: Resources::UNLIMITED,
            guarantee: Resources::ZERO,
            request: cpu(request),
            parent: None,
        }
    }

    #[test]
    fn volcano_worked_example_12_cpu() {
        // reference/peers.md: 12 CPU; Q1 (w1, requests 2), Q2 (w2, requests 20), Q3 (w3, requests 3) -> 2, 7, 3.
        let d = deserved_shares(&cpu(12), &[q(1, 2), q(2, 20), q(3, 3)]).unwrap();
        assert_eq!(d, vec![cpu(2), cpu(7), cpu(3)]);
    }

    #[test]
    fn weights_split_contended_capacity() {
        let d = deserved_shares(&cpu(30), &[q(2, 100), q(1, 100)]).unwrap();
        assert_eq!(d, vec![cpu(20), cpu(10)]);
        let d = deserved_shares(&cpu(30), &[q(2, 100), q(1, 100), q(5, 0)]).unwrap();
        assert_eq!(d[2], Resources::ZERO, "a queue without demand takes no share");
    }

    #[test]
    fn capability_caps_and_guarantee_floors() {
        let mut capped = q(10, 100);
        capped.capability = cpu(5);
        let d = deserved_shares(&cpu(30), &[capped, q(1, 100)]).unwrap();
        assert_eq!(d, vec![cpu(5), cpu(25)]);

        let mut guaranteed = q(1, 100);
        guaranteed.guarantee = cpu(20);
        let d = deserved_shares(&cpu(30), &[guaranteed, q(9, 100)]).unwrap();
        assert_eq!(d[0], cpu(20));
        assert_eq!(d[1], cpu(10), "real capability excludes other queues' guarantees");

        let mut idle_guaranteed = q(1, 0);
        idle_guaranteed.guarantee = cpu(4);
        let d = deserved_shares(&cpu(30), &[idle_guaranteed, q(1, 100)]).unwrap();
        assert_eq!(d, vec![cpu(4), cpu(26)], "a guarantee is never lent, even when idle");
    }

    #[test]
    fn hierarchy_divides_the_parents_share() {
        // root A (w1) with children A1 (w3), A2 (w1); root B (w1).
        let mut qs = vec![q(1, 0), q(3, 100), q(1, 100), q(1, 100)];
        qs[1].parent = Some(0);
        qs[2].parent = Some(0);
        let d = deserved_shares(&cpu(40), &qs).unwrap();
        assert_eq!(d, vec![cpu(20), cpu(15), cpu(5), cpu(20)]);
    }

    #[test]
    fn cycles_are_rejected() {
        let mut qs = vec![q(1, 1), q(1, 1)];
        qs[0].parent = Some(1);
        qs[1].parent = Some(0);
        assert!(matches!(deserved_shares(&cpu(4), &qs), Err(FairShareError::Cycle(_))));
    }

    proptest::proptest! {
        /// Shares never exceed the total, a request or a capability, and with demand beyond the cluster the whole
        /// cluster is handed out (up to integer rounding of one unit per queue per round).
        #[test]
        fn shares_are_bounded_and_complete(reqs in proptest::collection::vec((1u64..10, 0u64..50), 1..8), total in 1u64..100) {
            let qs: Vec<ShareInput> = reqs.iter().map(|&(w, r)| q(w, r)).collect();
            let d = deserved_shares(&cpu(total), &qs).unwrap();
            let sum: u64 = d.iter().map(|r| r.get(CPU)).sum();
            proptest::prop_assert!(sum <= total * 1000);
            for (share, input) in d.iter().zip(&qs) {
                proptest::prop_assert!(share.fits_in(&input.request));
            }
            let demand: u64 = reqs.iter().map(|r| r.1 * 1000).sum();
            let slack = 64 * qs.len() as u64;
            proptest::prop_assert!(sum + slack >= demand.min(total * 1000), "sum {} demand {} total {}", sum, demand, total);
        }
    }
}
