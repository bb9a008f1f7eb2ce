//! Fixed-width resource vectors.
//!
//! Every resource amount the core handles is a `Resources`: a small array of `u64` in each resource's integer unit
//! (cpu in millicores, memory and ephemeral-storage in bytes, pods and extended resources in whole units). The first
//! four slots are fixed; the rest are assigned to extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...) by a
//! [`ResourceNames`] registry the first time a name is seen. Fixed width keeps a fit check to a handful of
//! branch-free compares, which is what the packer's inner loop does millions of times a second.

use std::collections::BTreeMap;
use std::fmt;

use super::quantity::{QuantityError, Unit, format_amount, parse_amount};

/// Number of resource slots: cpu, memory, pods, ephemeral-storage and up to eight extended resources.
pub const SLOTS: usize = 12;
pub const CPU: usize = 0;
pub const MEMORY: usize = 1;
pub const PODS: usize = 2;
pub const EPHEMERAL_STORAGE: usize = 3;
const FIXED: [&str; 4] = ["cpu", "memory", "pods", "ephemeral-storage"];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Resources(pub [u64; SLOTS]);

impl Resources {
    pub const ZERO: Resources = Resources([0; SLOTS]);
    /// "No limit": the identity of component-wise `min`.
    pub const UNLIMITED: Resources = Resources([u64::MAX; SLOTS]);

    pub fn cpu_mem(millicores: u64, bytes: u64) -> Resources {
        let mut r = Resources::ZERO;
        r.0[CPU] = millicores;
        r.0[MEMORY] = bytes;
        r
    }

    pub fn with(mut self, slot: usize, amount: u64) -> Resources {
        self.0[slot] = amount;
        self
    }

    #[inline]
    pub fn get(&self, slot: usize) -> u64 {
        self.0[slot]
    }

    /// True when every component of `self` is <= the same component of `other`.
    #[inline]
    pub fn fits_in(&self, other: &Resources) -> bool {
        // A non-short-circuiting fold lets the compiler vectorise the compare.
        self.0.iter().zip(other.0.iter()).fold(true, |ok, (a, b)| ok & (a <= b))
    }

    #[inline]
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&v| v == 0)
    }

    #[inline]
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
        r
    }

    #[inline]
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_sub(*b);
        }
        r
    }

    /// `self * n`, saturating.
    #[inline]
    pub fn times(&self, n: u64) -> Resources {
        let mut r = *self;
        for a in r.0.iter_mut() {
            *a = a.saturating_mul(n);
        }
        r
    }

    #[inline]
    pub fn min(&self, other: &Resources) -> Resources {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(other.0.iter()) {
            *a = (*a).min(*b);
        }
        r
    }

    #[inline]
    pub fn max(&self, other: &Resources) -> Resources {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(other.0.iter()) {
            *a = (*a).max(*b);
        }
        r
    }

    /// How many copies of `request` fit into `self` (u64::MAX when the request is all zeros).
    #[inline]
    pub fn count_fitting(&self, request: &Resources) -> u64 {
        let mut n = u64::MAX;
        for (free, req) in self.0.iter().zip(request.0.iter()) {
            if *req > 0 {
                n = n.min(free / req);
            }
        }
        n
    }

    /// Slots where `self` is non-zero.
    pub fn nonzero_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().filter(|(_, v)| **v > 0).map(|(i, _)| i)
    }

    /// The dominant share of `self` relative to `of`: max over slots of self/of; slots where `of` is zero count as
    /// fully used when `self` is not zero there.
    pub fn dominant_share(&self, of: &Resources) -> f64 {
        let mut share: f64 = 0.0;
        for (a, b) in self.0.iter().zip(of.0.iter()) {
            if *a == 0 {
                continue;
            }
            let s = if *b == 0 { f64::INFINITY } else { *a as f64 / *b as f64 };
            share = share.max(s);
        }
        share
    }

    /// Sum of resources.
    pub fn sum<'a>(items: impl IntoIterator<Item = &'a Resources>) -> Resources {
        items.into_iter().fold(Resources::ZERO, |acc, r| acc.saturating_add(r))
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (i, v) in self.0.iter().enumerate() {
            if *v != 0 && *v != u64::MAX {
                m.entry(&i, v);
            }
        }
        m.finish()
    }
}

/// A resource name the registry could not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error(transparent)]
    Quantity(#[from] QuantityError),
    #[error(
        "resource {name:?}: muster tracks at most {} extended resources and these are taken: {taken:?}",
        SLOTS - FIXED.len()
    )]
    TooManyExtended { name: String, taken: Vec<String> },
}

/// Maps resource names to slots. Fixed resources have fixed slots; extended ones are assigned on first use.
#[derive(Debug, Clone, Default)]
pub struct ResourceNames {
    extended: Vec<String>,
}

impl ResourceNames {
    pub fn slot(&self, name: &str) -> Option<usize> {
        FIXED
            .iter()
            .position(|f| *f == name)
            .or_else(|| self.extended.iter().position(|e| e == name).map(|p| p + FIXED.len()))
    }

    /// The slot of `name`, assigning one if this extended resource is new.
    pub fn intern(&mut self, name: &str) -> Result<usize, ResourceError> {
        if let Some(slot) = self.slot(name) {
            return Ok(slot);
        }
        if FIXED.len() + self.extended.len() >= SLOTS {
            return Err(ResourceError::TooManyExtended { name: name.to_string(), taken: self.extended.clone() });
        }
        self.extended.push(name.to_string());
        Ok(FIXED.len() + self.extended.len() - 1)
    }

    pub fn name(&self, slot: usize) -> &str {
        if slot < FIXED.len() { FIXED[slot] } else { &self.extended[slot - FIXED.len()] }
    }

    pub fn len(&self) -> usize {
        FIXED.len() + self.extended.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses a `name -> quantity` map (a pod's requests, a node's allocatable) into a vector.
    ///
    /// Names that are not requested anywhere may still be allocatable on nodes; `intern_new` says whether an unseen
    /// extended name gets a slot (requests: yes, a pod cannot be placed without it) or is skipped (allocatable: a
    /// resource nobody requests cannot constrain placement).
    pub fn parse_map<'a>(
        &mut self,
        map: impl IntoIterator<Item = (&'a str, &'a str)>,
        intern_new: bool,
    ) -> Result<Resources, ResourceError> {
        let mut r = Resources::ZERO;
        for (name, quantity) in map {
            let slot = if intern_new { Some(self.intern(name)?) } else { self.slot(name) };
            if let Some(slot) = slot {
                r.0[slot] = parse_amount(quantity, Unit::for_resource(name))?;
            }
        }
        Ok(r)
    }

    /// Renders a vector as `name -> quantity`, skipping zero and unlimited slots.
    pub fn render(&self, r: &Resources) -> BTreeMap<String, String> {
        (0..self.len())
            .filter(|&i| r.0[i] != 0 && r.0[i] != u64::MAX)
            .map(|i| (self.name(i).to_string(), format_amount(r.0[i], Unit::for_resource(self.name(i)))))
            .collect()
    }

    /// A compact human rendering, e.g. `cpu=4, memory=10Gi`.
    pub fn describe(&self, r: &Resources) -> String {
        let parts: Vec<String> = self.render(r).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        if parts.is_empty() { "nothing".to_string() } else { parts.join(", ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_and_counts() {
        let free = Resources::cpu_mem(4000, 16 << 30).with(PODS, 10);
        let exec = Resources::cpu_mem(1000, 5 << 30).with(PODS, 1);
        assert!(exec.fits_in(&free));
        assert_eq!(free.count_fitting(&exec), 3);
        assert!(!free.fits_in(&exec));
        assert_eq!(free.saturating_sub(&exec.times(3)), Resources::cpu_mem(1000, 1 << 30).with(PODS, 7));
    }

    #[test]
    fn registry_assigns_extended_slots_and_refuses_overflow() {
        let mut names = ResourceNames::default();
        assert_eq!(names.intern("cpu").unwrap(), CPU);
        let gpu = names.intern("nvidia.com/gpu").unwrap();
        assert_eq!(gpu, 4);
        assert_eq!(names.intern("nvidia.com/gpu").unwrap(), gpu);
        for i in 0..7 {
            names.intern(&format!("example.com/r{i}")).unwrap();
        }
        let err = names.intern("one.too/many").unwrap_err();
        assert!(err.to_string().contains("one.too/many"));
        let r = names.parse_map([("cpu", "1500m"), ("memory", "2Gi"), ("unknown.io/x", "3")], false).unwrap();
        assert_eq!(r, Resources::cpu_mem(1500, 2 << 30));
        assert_eq!(names.describe(&r), "cpu=1500m, memory=2Gi");
    }
}
