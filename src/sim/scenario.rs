//! The scenario file of `muster simulate`: node pools, queues and a workload trace, in YAML.
//!
//! Every quantity and duration is validated while parsing, so a mistake is reported with the line and column it
//! is on. Generators expand into concrete applications with a seeded generator, so a scenario and a seed always
//! give the same trace.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::core::quantity::{Unit, parse_amount};
use crate::duration::HumanDuration;

/// A malformed scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {source_name}: {message}")]
    Parse { source_name: String, message: String },
    #[error("scenario {source_name}: {message}")]
    Invalid { source_name: String, message: String },
}

/// `name -> quantity`, each quantity checked at parse time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceMap(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for ResourceMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: BTreeMap<String, QuantityText> = BTreeMap::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (name, q) in raw {
            parse_amount(&q.0, Unit::for_resource(&name)).map_err(|e| de::Error::custom(format!("{name}: {e}")))?;
            out.insert(name, q.0);
        }
        Ok(ResourceMap(out))
    }
}

/// A quantity written as a YAML string or number.
struct QuantityText(String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            U(u64),
            F(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::U(u) => u.to_string(),
            Raw::F(f) => f.to_string(),
        };
        // Check the syntax here, on the scalar itself, so the error carries this line.
        crate::core::quantity::Quantity::parse(&text).map_err(de::Error::custom)?;
        Ok(QuantityText(text))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaintSpec {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TolerationSpec {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub effect: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pool {
    pub name: String,
    pub count: u32,
    pub allocatable: ResourceMap,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<TaintSpec>,
    /// What one node of the pool costs, in dollars per node-hour (a finite number, 0 or more). Price every
    /// pool or none: with prices the report attributes the cluster's cost to queues (see `Report::cost_total`).
    #[serde(default)]
    pub price_per_hour: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueDef {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u64,
    #[serde(default)]
    pub capability: Option<ResourceMap>,
    #[serde(default)]
    pub guarantee: Option<ResourceMap>,
    #[serde(default = "yes")]
    pub reclaimable: bool,
    #[serde(default)]
    pub parent: Option<String>,
}

fn one() -> u64 {
    1
}
fn yes() -> bool {
    true
}

/// A pod shape: requests and node constraints.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodShape {
    pub resources: ResourceMap,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<TolerationSpec>,
}

/// An inclusive range `[lo, hi]` or a single value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range<T>(pub T, pub T);

impl<'de, T: Deserialize<'de> + Copy + PartialOrd + fmt::Debug> Deserialize<'de> for Range<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            One(T),
            Two([T; 2]),
        }
        match Raw::<T>::deserialize(d)? {
            Raw::One(v) => Ok(Range(v, v)),
            Raw::Two([lo, hi]) if lo <= hi => Ok(Range(lo, hi)),
            Raw::Two([lo, hi]) => Err(de::Error::custom(format!("range [{lo:?}, {hi:?}] has its bounds reversed"))),
        }
    }
}

/// One Spark application: a driver, executors (minimum and maximum), a run time.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppDef {
    pub at: HumanDuration,
    pub queue: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub priority: i32,
    pub driver: PodShape,
    pub executor: PodShape,
    pub min_executors: u32,
    #[serde(default)]
    pub max_executors: Option<u32>,
    /// Spark dynamic allocation: scale from the minimum towards the maximum while busy, back when idle.
    #[serde(default)]
    pub dynamic_allocation: bool,
    pub run_time: HumanDuration,
}

/// Many applications drawn at random (seeded) between `start` and `end`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GeneratorDef {
    pub queue: String,
    pub count: u32,
    pub start: HumanDuration,
    pub end: HumanDuration,
    #[serde(default)]
    pub priority: i32,
    pub driver: PodShape,
    /// Executor shapes to choose from, uniformly.
    pub executors: Vec<PodShape>,
    pub min_executors: Range<u32>,
    #[serde(default)]
    pub max_executors: Option<Range<u32>>,
    #[serde(default)]
    pub dynamic_allocation: bool,
    pub run_time: Range<HumanDuration>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    #[serde(default)]
    pub applications: Vec<AppDef>,
    #[serde(default)]
    pub generators: Vec<GeneratorDef>,
}

/// Knobs of the simulated world and of muster's policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    /// How long a driver takes to start before it asks for executors.
    pub driver_startup: HumanDuration,
    /// Spark creates executors in batches of this size...
    pub executor_batch_size: u32,
    /// ...every this long.
    pub executor_batch_delay: HumanDuration,
    /// Spark deletes and recreates an executor pod pending longer than this
    /// (`spark.kubernetes.allocation.executor.timeout`, default 600s).
    pub executor_allocation_timeout: HumanDuration,
    /// A partially started application that makes no progress for this long counts as deadlocked.
    pub deadlock_after: HumanDuration,
    /// With dynamic allocation: how long after starting the application asks for more executors.
    pub scale_up_after: HumanDuration,
    /// With dynamic allocation: the fraction of the run time after which it is idle and returns extra executors.
    pub scale_down_at: f64,
    /// Grace period of an evicted pod.
    pub termination_grace: HumanDuration,
    /// A whole application evicted by reclaim is resubmitted after this long.
    pub resubmit_after: HumanDuration,
    /// How long the simulation may run past the last arrival before it stops.
    pub drain_limit: HumanDuration,
    /// Sampling interval of the shares plotted and averaged.
    pub sample_every: HumanDuration,
    pub drain_after: HumanDuration,
    pub reservation_timeout: HumanDuration,
    pub min_runtime: HumanDuration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            driver_startup: HumanDuration(10_000),
            executor_batch_size: 5,
            executor_batch_delay: HumanDuration(1_000),
            executor_allocation_timeout: HumanDuration(600_000),
            deadlock_after: HumanDuration(1_800_000),
            scale_up_after: HumanDuration(60_000),
            scale_down_at: 0.7,
            termination_grace: HumanDuration(30_000),
            resubmit_after: HumanDuration(30_000),
            drain_limit: HumanDuration(12 * 3_600_000),
            sample_every: HumanDuration(60_000),
            drain_after: HumanDuration(120_000),
            reservation_timeout: HumanDuration(600_000),
            min_runtime: HumanDuration(300_000),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub seed: u64,
    pub pools: Vec<Pool>,
    pub queues: Vec<QueueDef>,
    pub workload: Workload,
    #[serde(default)]
    pub settings: Settings,
}

/// The scenario `muster simulate` runs when given none: three teams (weights 3/2/1) sharing an on-demand
/// pool for drivers and a tainted spot pool for executors, through a contended day of Spark applications.
pub const DEFAULT_SCENARIO: &str = include_str!("../../config/simulate-default.yaml");

impl Scenario {
    /// Parses and validates a scenario; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = serde_norway::from_str(text).map_err(|e| ScenarioError::Parse {
            source_name: source_name.to_string(),
            message: describe_yaml_error(&e),
        })?;
        scenario
            .validate()
            .map_err(|message| ScenarioError::Invalid { source_name: source_name.to_string(), message })?;
        Ok(scenario)
    }

    pub fn default_scenario() -> Scenario {
        Scenario::parse(DEFAULT_SCENARIO, "(embedded default)").expect("the embedded default scenario is valid")
    }

    fn validate(&self) -> Result<(), String> {
        if self.pools.is_empty() {
            return Err("pools: at least one node pool is needed".into());
        }
        let queue_names: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
        for (i, q) in self.queues.iter().enumerate() {
            if queue_names[..i].contains(&q.name.as_str()) {
                return Err(format!("queues: {:?} is defined twice", q.name));
            }
            if !(1..=65535).contains(&q.weight) {
                return Err(format!("queues: {:?} has weight {}; weights are 1..65535", q.name, q.weight));
            }
            if let Some(p) = &q.parent
                && !queue_names.contains(&p.as_str())
            {
                return Err(format!("queues: {:?} names unknown parent {p:?}", q.name));
            }
        }
        let known = |q: &str, what: &str| {
            if queue_names.contains(&q) {
                Ok(())
            } else {
                Err(format!("{what}: unknown queue {q:?} (known: {queue_names:?})"))
            }
        };
        for (i, a) in self.workload.applications.iter().enumerate() {
            known(&a.queue, &format!("workload.applications[{i}]"))?;
            if a.max_executors.is_some_and(|m| m < a.min_executors) {
                return Err(format!("workload.applications[{i}]: maxExecutors is below minExecutors"));
            }
        }
        for (i, g) in self.workload.generators.iter().enumerate() {
            known(&g.queue, &format!("workload.generators[{i}]"))?;
            if g.end < g.start {
                return Err(format!("workload.generators[{i}]: end {} is before start {}", g.end, g.start));
            }
            if g.executors.is_empty() {
                return Err(format!("workload.generators[{i}]: executors needs at least one shape"));
            }
            if g.max_executors.is_some_and(|m| m.1 < g.min_executors.0) {
                return Err(format!("workload.generators[{i}]: maxExecutors is below minExecutors"));
            }
        }
        if !(0.0..=1.0).contains(&self.settings.scale_down_at) {
            return Err("settings.scaleDownAt must be between 0 and 1".into());
        }
        if self.settings.executor_batch_size == 0 {
            return Err("settings.executorBatchSize must be at least 1".into());
        }
        self.priced()?;
        Ok(())
    }

    /// Whether the pools carry prices: `Ok(true)` when every pool has a `pricePerHour`, `Ok(false)` when none
    /// has, an error naming the pool when a price is negative or not finite, or when only some pools have one.
    pub fn priced(&self) -> Result<bool, String> {
        for p in &self.pools {
            if let Some(price) = p.price_per_hour
                && !(price.is_finite() && price >= 0.0)
            {
                return Err(format!(
                    "pools: {:?} has pricePerHour {price}; a price is dollars per node-hour, a finite number >= 0",
                    p.name
                ));
            }
        }
        let unpriced: Vec<&str> =
            self.pools.iter().filter(|p| p.price_per_hour.is_none()).map(|p| p.name.as_str()).collect();
        match unpriced.len() {
            0 => Ok(true),
            n if n == self.pools.len() => Ok(false),
            _ => {
                Err(format!("pools: {unpriced:?} have no pricePerHour while other pools do; price every pool or none"))
            }
        }
    }

    /// Sets the price of one pool (dollars per node-hour); an unknown pool is an error that lists the known ones.
    /// Check the result with [`Scenario::priced`].
    pub fn set_price(&mut self, pool: &str, dollars_per_hour: f64) -> Result<(), String> {
        match self.pools.iter_mut().find(|p| p.name == pool) {
            Some(p) => {
                p.price_per_hour = Some(dollars_per_hour);
                Ok(())
            }
            None => {
                let known: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
                Err(format!("no pool {pool:?} to price (pools: {known:?})"))
            }
        }
    }

    /// The concrete applications: explicit ones plus the generators' draws, ordered by arrival.
    pub fn applications(&self) -> Vec<AppDef> {
        let mut rng = SplitMix64(self.seed ^ 0x6d75_7374_6572);
        let mut apps = self.workload.applications.clone();
        for (gi, g) in self.workload.generators.iter().enumerate() {
            for i in 0..g.count {
                let at = HumanDuration(rng.between(g.start.0, g.end.0));
                let min = rng.between(u64::from(g.min_executors.0), u64::from(g.min_executors.1)) as u32;
                let max = g.max_executors.map(|m| (rng.between(u64::from(m.0), u64::from(m.1)) as u32).max(min));
                let executor = g.executors[rng.between(0, g.executors.len() as u64 - 1) as usize].clone();
                apps.push(AppDef {
                    at,
                    queue: g.queue.clone(),
                    name: Some(format!("{}-{gi}-{i}", g.queue)),
                    priority: g.priority,
                    driver: g.driver.clone(),
                    executor,
                    min_executors: min,
                    max_executors: max,
                    dynamic_allocation: g.dynamic_allocation,
                    run_time: HumanDuration(rng.between(g.run_time.0.0, g.run_time.1.0)),
                });
            }
        }
        for (i, a) in apps.iter_mut().enumerate() {
            if a.name.is_none() {
                a.name = Some(format!("{}-app-{i}", a.queue));
            }
        }
        apps.sort_by(|a, b| a.at.cmp(&b.at).then(a.name.cmp(&b.name)));
        apps
    }
}

/// `POOL=DOLLARS_PER_HOUR`, as `muster simulate --price` takes it: a pool name and a finite price >= 0.
pub fn parse_price(text: &str) -> Result<(String, f64), String> {
    const USAGE: &str = "expected POOL=DOLLARS_PER_HOUR, e.g. spot=0.55";
    let (pool, price) = text.split_once('=').filter(|(pool, _)| !pool.is_empty()).ok_or(USAGE)?;
    match price.trim().parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok((pool.to_string(), p)),
        _ => Err(format!(
            "the price of pool {pool:?} must be dollars per node-hour, a finite number >= 0, not {price:?}"
        )),
    }
}

/// serde_norway's message already carries "at line L column C"; keep it, and say so when it does not.
fn describe_yaml_error(e: &serde_norway::Error) -> String {
    match e.location() {
        Some(loc) if !e.to_string().contains("line") => format!("line {} column {}: {e}", loc.line(), loc.column()),
        _ => e.to_string(),
    }
}

/// A small, fast, seedable generator (SplitMix64): deterministic traces without a dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_parses_and_expands_deterministically() {
        let s = Scenario::default_scenario();
        assert_eq!(s.queues.iter().map(|q| q.weight).collect::<Vec<_>>(), vec![3, 2, 1]);
        let a = s.applications();
        assert!(a.len() > 100);
        assert_eq!(a, s.applications());
    }

    #[test]
    fn errors_point_at_the_line() {
        let text = "name: x\npools:\n- name: p\n  count: 2\n  allocatable: {cpu: \"4x\", memory: 1Gi}\nqueues: []\nworkload: {}\n";
        let err = Scenario::parse(text, "bad.yaml").unwrap_err().to_string();
        assert!(err.contains("bad.yaml") && err.contains("line 5") && err.contains("\"4x\""), "{err}");
        let text = "name: x\npools:\n- name: p\n  count: 2\n  allocatable: {cpu: 4}\n  colour: red\nqueues: []\nworkload: {}\n";
        let err = Scenario::parse(text, "bad.yaml").unwrap_err().to_string();
        assert!(err.contains("line 6") && err.contains("colour"), "{err}");
        let text = "name: x\npools:\n- name: p\n  count: 2\n  allocatable: {cpu: 4}\nqueues: []\nworkload:\n  applications:\n  - at: 10\n";
        let err = Scenario::parse(text, "bad.yaml").unwrap_err().to_string();
        assert!(err.contains("line 9") && err.contains("missing unit"), "{err}");
        let text = "name: x\npools:\n- name: p\n  count: 1\n  allocatable: {cpu: 4}\nqueues: [{name: a}]\nworkload:\n  applications:\n  - {at: 1m, queue: b, driver: {resources: {cpu: 1}}, executor: {resources: {cpu: 1}}, minExecutors: 1, runTime: 1m}\n";
        let err = Scenario::parse(text, "bad.yaml").unwrap_err().to_string();
        assert!(err.contains("unknown queue \"b\""), "{err}");
    }

    #[test]
    fn prices_are_finite_non_negative_and_on_every_pool_or_none() {
        let with = |a: &str, b: &str| {
            format!(
                "name: x\npools:\n- {{name: a, count: 1, allocatable: {{cpu: 4}}{a}}}\n\
                 - {{name: b, count: 1, allocatable: {{cpu: 4}}{b}}}\nqueues: []\nworkload: {{}}\n"
            )
        };
        assert!(!Scenario::parse(&with("", ""), "p.yaml").unwrap().priced().unwrap());
        let priced = Scenario::parse(&with(", pricePerHour: 0.5", ", pricePerHour: 0"), "p.yaml").unwrap();
        assert!(priced.priced().unwrap());
        for bad in ["-0.5", ".nan", ".inf"] {
            let err = Scenario::parse(&with("", &format!(", pricePerHour: {bad}")), "p.yaml").unwrap_err().to_string();
            assert!(err.contains("p.yaml") && err.contains("\"b\"") && err.contains("pricePerHour"), "{err}");
        }
        let err = Scenario::parse(&with(", pricePerHour: 1", ""), "p.yaml").unwrap_err().to_string();
        assert!(err.contains("[\"b\"] have no pricePerHour"), "{err}");
        let mut s = Scenario::parse(&with("", ""), "p.yaml").unwrap();
        assert!(s.set_price("c", 1.0).unwrap_err().contains("\"c\""));
        s.set_price("a", 1.0).unwrap();
        assert!(s.priced().is_err());
        s.set_price("b", 2.0).unwrap();
        assert!(s.priced().unwrap());
    }
}
