//! The capacity index: for every distinct [`Placement`] in use, the nodes it allows (its *class*), arranged in a
//! segment tree whose inner nodes hold the component-wise maximum of their leaves' available capacity.
//!
//! `first_fit(class, request)` descends the tree, pruning every subtree whose maximum cannot hold the request, to
//! the leftmost node that can: O(log n) in the common case, never worse than a scan. Component-wise maxima
//! over-approximate (cpu from one node, memory from another), so a subtree can look feasible and not be; the
//! descent then backtracks, and the leaf check is exact.
//!
//! Classes are evaluated lazily and rebuilt after a node's labels, taints or the node set change.

use std::collections::HashMap;

use super::placement::Placement;
use super::resources::Resources;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassId(pub u32);

/// A segment tree of component-wise maxima over a fixed sequence of leaves.
#[derive(Debug, Clone, Default)]
pub struct MaxTree {
    leaves: usize,
    width: usize,
    data: Vec<Resources>,
}

impl MaxTree {
    pub fn new(values: impl ExactSizeIterator<Item = Resources>) -> MaxTree {
        let leaves = values.len();
        let width = leaves.next_power_of_two().max(1);
        let mut data = vec![Resources::ZERO; 2 * width];
        for (i, v) in values.enumerate() {
            data[width + i] = v;
        }
        for i in (1..width).rev() {
            data[i] = data[2 * i].max(&data[2 * i + 1]);
        }
        MaxTree { leaves, width, data }
    }

    #[inline]
    pub fn get(&self, pos: usize) -> Resources {
        self.data[self.width + pos]
    }

    pub fn set(&mut self, pos: usize, value: Resources) {
        let mut i = self.width + pos;
        self.data[i] = value;
        while i > 1 {
            i /= 2;
            let m = self.data[2 * i].max(&self.data[2 * i + 1]);
            if self.data[i] == m {
                break;
            }
            self.data[i] = m;
        }
    }

    /// The leftmost leaf at or after `from` whose value holds `request`.
    pub fn first_fit(&self, request: &Resources, from: usize) -> Option<usize> {
        if from >= self.leaves || !request.fits_in(&self.data[1]) {
            return None;
        }
        self.descend(1, 0, self.width, request, from)
    }

    fn descend(&self, node: usize, lo: usize, hi: usize, request: &Resources, from: usize) -> Option<usize> {
        if hi <= from || !request.fits_in(&self.data[node]) {
            return None;
        }
        if node >= self.width {
            return Some(lo);
        }
        let mid = (lo + hi) / 2;
        self.descend(2 * node, lo, mid, request, from).or_else(|| self.descend(2 * node + 1, mid, hi, request, from))
    }

    pub fn len(&self) -> usize {
        self.leaves
    }

    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }
}

#[derive(Debug, Clone)]
pub struct Class {
    pub placement: Placement,
    /// Allowed nodes (dense node indices) in ascending order; position i is leaf i of the tree.
    pub nodes: Vec<u32>,
    pub tree: MaxTree,
    /// Sum of the leaves: a cheap necessary condition before any packing attempt.
    pub total_available: Resources,
    /// Gang templates using this class; the class is dropped when this reaches zero.
    users: u32,
}

/// All classes, plus for every node the (class, leaf) pairs it appears in.
#[derive(Debug, Clone, Default)]
pub struct CapacityIndex {
    classes: Vec<Option<Class>>,
    by_placement: HashMap<Placement, ClassId>,
    free_ids: Vec<u32>,
    /// node index -> [(class, leaf position)]
    memberships: Vec<Vec<(ClassId, u32)>>,
    /// Classes no gang uses any more, oldest first. Kept (up to `MAX_IDLE_CLASSES`) because the next gang of the
    /// same shape is likely: rebuilding a class evaluates its constraints on every node.
    idle: Vec<ClassId>,
    stale: bool,
}

const MAX_IDLE_CLASSES: usize = 64;

/// What the index needs to know about nodes when (re)building a class.
pub trait NodeView {
    fn node_count(&self) -> usize;
    /// None for a free (deleted) node slot.
    fn allows(&self, node: u32, placement: &Placement) -> Option<bool>;
    fn available(&self, node: u32) -> Resources;
}

impl CapacityIndex {
    pub fn class(&self, id: ClassId) -> &Class {
        self.classes[id.0 as usize].as_ref().expect("live class")
    }

    /// Registers one more user of `placement`, creating its class if needed.
    pub fn acquire(&mut self, placement: &Placement, nodes: &dyn NodeView) -> ClassId {
        if let Some(&id) = self.by_placement.get(placement) {
            let class = self.classes[id.0 as usize].as_mut().expect("live class");
            if class.users == 0 {
                self.idle.retain(|c| *c != id);
            }
            class.users += 1;
            return id;
        }
        let id = match self.free_ids.pop() {
            Some(i) => ClassId(i),
            None => {
                self.classes.push(None);
                ClassId(self.classes.len() as u32 - 1)
            }
        };
        let mut class = Class {
            placement: placement.clone(),
            nodes: Vec::new(),
            tree: MaxTree::default(),
            total_available: Resources::ZERO,
            users: 1,
        };
        self.build_class(id, &mut class, nodes);
        self.classes[id.0 as usize] = Some(class);
        self.by_placement.insert(placement.clone(), id);
        id
    }

    pub fn release(&mut self, id: ClassId) {
        let class = self.classes[id.0 as usize].as_mut().expect("live class");
        class.users -= 1;
        if class.users == 0 {
            self.idle.push(id);
            if self.idle.len() > MAX_IDLE_CLASSES {
                let oldest = self.idle.remove(0);
                self.drop_class(oldest);
            }
        }
    }

    fn drop_class(&mut self, id: ClassId) {
        let class = self.classes[id.0 as usize].take().expect("live class");
        self.by_placement.remove(&class.placement);
        if !self.stale {
            for &n in &class.nodes {
                self.memberships[n as usize].retain(|(c, _)| *c != id);
            }
        }
        self.free_ids.push(id.0);
    }

    fn build_class(&mut self, id: ClassId, class: &mut Class, nodes: &dyn NodeView) {
        if self.memberships.len() < nodes.node_count() {
            self.memberships.resize(nodes.node_count(), Vec::new());
        }
        class.nodes =
            (0..nodes.node_count() as u32).filter(|&n| nodes.allows(n, &class.placement) == Some(true)).collect();
        for (pos, &n) in class.nodes.iter().enumerate() {
            self.memberships[n as usize].push((id, pos as u32));
        }
        class.tree = MaxTree::new(class.nodes.iter().map(|&n| nodes.available(n)));
        class.total_available =
            (0..class.nodes.len()).fold(Resources::ZERO, |sum, pos| sum.saturating_add(&class.tree.get(pos)));
    }

    /// Marks every class for re-evaluation (node added, removed, relabelled, retainted or cordoned).
    pub fn invalidate(&mut self) {
        self.stale = true;
    }

    /// Rebuilds stale classes; call before reading classes.
    pub fn refresh(&mut self, nodes: &dyn NodeView) {
        if !self.stale {
            return;
        }
        self.stale = false;
        self.memberships = vec![Vec::new(); nodes.node_count()];
        for i in 0..self.classes.len() {
            if let Some(mut class) = self.classes[i].take() {
                self.build_class(ClassId(i as u32), &mut class, nodes);
                self.classes[i] = Some(class);
            }
        }
    }

    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Records a node's new available capacity in every class it belongs to.
    pub fn update(&mut self, node: u32, available: Resources) {
        if self.stale {
            return; // rebuilt from scratch before the next read
        }
        let Some(memberships) = self.memberships.get(node as usize) else { return };
        for &(class, pos) in memberships {
            let class = self.classes[class.0 as usize].as_mut().expect("live class");
            let old = class.tree.get(pos as usize);
            class.total_available = class.total_available.saturating_sub(&old).saturating_add(&available);
            class.tree.set(pos as usize, available);
        }
    }

    /// The leftmost node of `class` with at least `request` available, at or after leaf `from`.
    pub fn first_fit(&self, class: ClassId, request: &Resources, from: usize) -> Option<(usize, u32)> {
        let c = self.class(class);
        c.tree.first_fit(request, from).map(|pos| (pos, c.nodes[pos]))
    }

    /// Whether `node` belongs to `class`.
    pub fn contains(&self, class: ClassId, node: u32) -> bool {
        self.memberships.get(node as usize).is_some_and(|m| m.iter().any(|(c, _)| *c == class))
    }

    pub fn live_classes(&self) -> usize {
        self.classes.iter().filter(|c| c.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resources::{CPU, MEMORY};

    fn r(cpu: u64, mem: u64) -> Resources {
        Resources::ZERO.with(CPU, cpu).with(MEMORY, mem)
    }

    #[test]
    fn first_fit_finds_the_leftmost_fitting_leaf() {
        let values = vec![r(1, 9), r(9, 1), r(5, 5), r(2, 2), r(6, 6)];
        let mut t = MaxTree::new(values.clone().into_iter());
        assert_eq!(t.first_fit(&r(5, 5), 0), Some(2));
        assert_eq!(t.first_fit(&r(6, 6), 0), Some(4));
        assert_eq!(t.first_fit(&r(5, 5), 3), Some(4));
        assert_eq!(t.first_fit(&r(7, 7), 0), None, "component maxima (9,9) exist but no single leaf fits");
        t.set(4, r(0, 0));
        assert_eq!(t.first_fit(&r(6, 6), 0), None);
        assert_eq!(t.first_fit(&r(1, 1), 0), Some(0));
    }

    proptest::proptest! {
        #[test]
        fn first_fit_agrees_with_a_scan(values in proptest::collection::vec((0u64..8, 0u64..8), 1..40), req in (0u64..8, 0u64..8), from in 0usize..40) {
            let leaves: Vec<Resources> = values.iter().map(|&(c, m)| r(c, m)).collect();
            let t = MaxTree::new(leaves.clone().into_iter());
            let request = r(req.0, req.1);
            let expected = leaves.iter().enumerate().skip(from).find(|(_, v)| request.fits_in(v)).map(|(i, _)| i);
            proptest::prop_assert_eq!(t.first_fit(&request, from), expected);
        }
    }
}
