//! Packing a gang's missing members onto concrete nodes.
//!
//! 1. Aggregate bound: if a template's eligible nodes together lack the capacity, stop (necessary, not sufficient;
//!    the peers stop here and call it a fit).
//! 2. Greedy first-fit decreasing: templates by descending size, each member onto the leftmost eligible node
//!    with room (O(log n) per node through the capacity index), as many members per node as fit.
//! 3. If the greedy pass fails on a small instance (few candidate nodes and members), a bounded exact search:
//!    depth-first over members, with identical members placed in non-decreasing node order and nodes with an
//!    identical (free capacity, eligibility) pair tried once per level. It finds a packing whenever one exists
//!    within its budget, which covers every instance the brute-force oracle in the tests can check.
//!
//! Nothing is reserved here: the caller reserves the returned placements.

use std::collections::HashMap;

use super::capacity::ClassId;
use super::cluster::{Cluster, GangId, NodeId};
use super::resources::Resources;

/// Members of one template still to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub template: u16,
    pub class: ClassId,
    pub request: Resources,
    pub count: u32,
}

/// `count` members of `template` on `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub template: u16,
    pub node: NodeId,
    pub count: u32,
}

/// Why packing failed, for a human.
#[derive(Debug, Clone, PartialEq)]
pub struct PackFailure {
    pub template: u16,
    pub placed: u32,
    pub needed: u32,
    pub eligible_nodes: usize,
    /// True when the aggregate capacity of the eligible nodes is already short.
    pub aggregate_short: bool,
}

/// Limits of the exact fallback.
const EXACT_MAX_CANDIDATES: usize = 512;
const EXACT_MAX_MEMBERS: u32 = 128;

impl Cluster {
    /// Finds nodes for every demand on currently available capacity (see [`crate::core::cluster::Node::available`]).
    pub(crate) fn pack(&mut self, demands: &[Demand], budget: u64) -> Result<Vec<Placed>, PackFailure> {
        self.refresh_capacity();
        if let Some(failure) = self.aggregate_shortfall(demands) {
            return Err(failure);
        }
        let order = self.packing_order(demands);
        match self.greedy(&order) {
            Ok(placed) => Ok(placed),
            Err(failure) => self.exact(&order, budget).ok_or(failure),
        }
    }

    /// A template whose eligible nodes together cannot hold its members (counting other templates sharing the
    /// same class), if any.
    fn aggregate_shortfall(&self, demands: &[Demand]) -> Option<PackFailure> {
        let mut per_class: HashMap<ClassId, Resources> = HashMap::new();
        for d in demands {
            let need = per_class.entry(d.class).or_default();
            *need = need.saturating_add(&d.request.times(u64::from(d.count)));
        }
        for d in demands {
            let class = self.capacity().class(d.class);
            if d.count > 0 && !per_class[&d.class].fits_in(&class.total_available) {
                return Some(PackFailure {
                    template: d.template,
                    placed: 0,
                    needed: d.count,
                    eligible_nodes: class.nodes.len(),
                    aggregate_short: true,
                });
            }
        }
        None
    }

    fn greedy(&mut self, order: &[&Demand]) -> Result<Vec<Placed>, PackFailure> {
        let (placed, short) = self.first_fit_decreasing(order, true);
        match short.into_iter().next() {
            None => Ok(placed),
            Some(failure) => Err(failure),
        }
    }

    /// Per template of gang `g`, how many of its missing minimum members find no room in the capacity available
    /// now, when as many as fit are placed first-fit decreasing (admission's first pass): what capacity would
    /// have to be added for the gang to fit. All zeros when the greedy pass places every member. Nothing is
    /// reserved.
    pub fn shortfall(&mut self, g: GangId) -> Vec<u32> {
        let templates = self.gang(g).map_or(0, |gang| gang.spec.templates.len());
        let mut short = vec![0; templates];
        let demands = self.demands(g);
        if demands.is_empty() {
            return short;
        }
        // Capacity held for the gang (a draining head) is the gang's to use.
        let own_hold = std::mem::take(&mut self.gang_mut(g).hold);
        self.unhold(&own_hold);
        self.refresh_capacity();
        let order = self.packing_order(&demands);
        let (_, failures) = self.first_fit_decreasing(&order, false);
        self.hold(&own_hold);
        self.gang_mut(g).hold = own_hold;
        for f in failures {
            short[f.template as usize] = f.needed - f.placed;
        }
        short
    }

    /// Demands in the order packing places them: largest dominant share first, then by template.
    fn packing_order<'a>(&self, demands: &'a [Demand]) -> Vec<&'a Demand> {
        let mut order: Vec<&Demand> = demands.iter().filter(|d| d.count > 0).collect();
        let total = self.total();
        order.sort_by(|a, b| {
            b.request
                .dominant_share(&total)
                .total_cmp(&a.request.dominant_share(&total))
                .then(a.template.cmp(&b.template))
        });
        order
    }

    /// Places each demand's members onto the leftmost eligible node with room, as many per node as fit. With
    /// `stop_at_first`, stops at the first demand that does not fit entirely; otherwise places what fits of every
    /// demand. Returns the placements and, per demand left short, how far it got.
    fn first_fit_decreasing(&mut self, order: &[&Demand], stop_at_first: bool) -> (Vec<Placed>, Vec<PackFailure>) {
        let mut taken: HashMap<NodeId, Resources> = HashMap::new();
        let mut placed = Vec::new();
        let mut failures = Vec::new();
        for d in order {
            let mut remaining = d.count;
            let mut from = 0;
            while remaining > 0 {
                let Some((pos, node)) = self.capacity().first_fit(d.class, &d.request, from) else {
                    failures.push(PackFailure {
                        template: d.template,
                        placed: d.count - remaining,
                        needed: d.count,
                        eligible_nodes: self.capacity().class(d.class).nodes.len(),
                        aggregate_short: false,
                    });
                    break;
                };
                let node = NodeId(node);
                let already = taken.get(&node).copied().unwrap_or_default();
                let available = self.node(node).expect("indexed node").available().saturating_sub(&already);
                let k = u64::from(remaining).min(available.count_fitting(&d.request)).max(1) as u32;
                let used = already.saturating_add(&d.request.times(u64::from(k)));
                taken.insert(node, used);
                self.capacity.update(node.0, available.saturating_sub(&d.request.times(u64::from(k))));
                placed.push(Placed { template: d.template, node, count: k });
                remaining -= k;
                from = pos + 1;
            }
            if stop_at_first && !failures.is_empty() {
                break;
            }
        }
        // The index must describe real capacity again; the caller reserves what it keeps.
        for node in taken.keys() {
            self.touch_node(*node);
        }
        (placed, failures)
    }

    /// Bounded exact search on small instances. None when no packing was found within the limits.
    fn exact(&self, order: &[&Demand], budget: u64) -> Option<Vec<Placed>> {
        let members: u32 = order.iter().map(|d| d.count).sum();
        if members > EXACT_MAX_MEMBERS || budget == 0 {
            return None;
        }
        // Candidates: nodes eligible for some demand with room for at least one of its members.
        let mut candidates: Vec<u32> = Vec::new();
        for d in order {
            for &n in &self.capacity().class(d.class).nodes {
                let free = self.node(NodeId(n)).expect("indexed node").available();
                if d.request.fits_in(&free) {
                    candidates.push(n);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        if candidates.is_empty() || candidates.len() > EXACT_MAX_CANDIDATES {
            return None;
        }
        let mut free: Vec<Resources> =
            candidates.iter().map(|&n| self.node(NodeId(n)).expect("indexed node").available()).collect();
        // eligible[d][j]: demand d may use candidate j.
        let eligible: Vec<Vec<bool>> =
            order.iter().map(|d| candidates.iter().map(|&n| self.capacity().contains(d.class, n)).collect()).collect();
        let signature: Vec<u64> = (0..candidates.len())
            .map(|j| eligible.iter().enumerate().fold(0u64, |m, (d, e)| m | (u64::from(e[j]) << (d % 64))))
            .collect();
        let items: Vec<usize> =
            order.iter().enumerate().flat_map(|(d, dem)| std::iter::repeat_n(d, dem.count as usize)).collect();
        let mut assignment = vec![0usize; items.len()];
        let mut search = Search { order, items: &items, eligible: &eligible, signature: &signature, budget };
        if !search.place(0, &mut free, &mut assignment) {
            return None;
        }
        let mut placed: Vec<Placed> = Vec::new();
        for (i, &d) in items.iter().enumerate() {
            let node = NodeId(candidates[assignment[i]]);
            match placed.last_mut() {
                Some(p) if p.template == order[d].template && p.node == node => p.count += 1,
                _ => placed.push(Placed { template: order[d].template, node, count: 1 }),
            }
        }
        Some(placed)
    }
}

struct Search<'a> {
    order: &'a [&'a Demand],
    items: &'a [usize],
    eligible: &'a [Vec<bool>],
    signature: &'a [u64],
    budget: u64,
}

impl Search<'_> {
    fn place(&mut self, i: usize, free: &mut [Resources], assignment: &mut [usize]) -> bool {
        if i == self.items.len() {
            return true;
        }
        let d = self.items[i];
        let request = self.order[d].request;
        // Members of one template are interchangeable: only non-decreasing node order.
        let start = if i > 0 && self.items[i - 1] == d { assignment[i - 1] } else { 0 };
        let mut tried: Vec<(Resources, u64)> = Vec::new();
        for j in start..free.len() {
            if self.budget == 0 {
                return false;
            }
            self.budget -= 1;
            if !self.eligible[d][j] || !request.fits_in(&free[j]) {
                continue;
            }
            // A node identical to one already tried at this level leads to the same subtree.
            let key = (free[j], self.signature[j]);
            if tried.contains(&key) {
                continue;
            }
            free[j] = free[j].saturating_sub(&request);
            assignment[i] = j;
            if self.place(i + 1, free, assignment) {
                return true;
            }
            free[j] = free[j].saturating_add(&request);
            tried.push(key);
        }
        false
    }
}
