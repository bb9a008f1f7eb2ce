//! The Prometheus gauges that mirror the model, refreshed with every `/state` snapshot, and the cost counters
//! that integrate the allocation between two snapshots.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::quantity::Unit;
use crate::core::{Cluster, Gang, GangPhase, Resources, WaitReason};
use crate::index::Index;
use crate::metrics::{Metrics, resource_unit};

/// The phase label of `muster_gangs`: the PodGroup phase names.
pub fn phase_label(phase: GangPhase) -> &'static str {
    match phase {
        GangPhase::Pending => "Pending",
        GangPhase::Admitted => "Inqueue",
        GangPhase::Running => "Running",
        GangPhase::Expired => "Expired",
        GangPhase::Finished => "Completed",
    }
}

/// Whether a waiting gang waits for nodes (its queue's share would admit it): the demand the cluster lacks.
pub fn waits_for_capacity(reason: &WaitReason) -> bool {
    matches!(reason, WaitReason::Insufficient { .. } | WaitReason::Fragmented { .. })
}

/// The gauges that mirror the model, refreshed in place: a series is set to its new value and only series that
/// no longer exist are removed, so a scrape during a refresh never misses a series that exists (clearing the
/// vectors first would let it).
#[derive(Debug, Default)]
pub struct ModelGauges {
    /// Label values of the series each labelled gauge held after the last refresh, by gauge.
    series: BTreeMap<&'static str, BTreeSet<Vec<String>>>,
    cost: CostMeter,
}

/// The new series of one labelled gauge.
struct Refresh<'a, G> {
    gauge: &'a G,
    values: BTreeMap<Vec<String>, f64>,
}

impl<'a, G> Refresh<'a, G> {
    fn new(gauge: &'a G) -> Self {
        Refresh { gauge, values: BTreeMap::new() }
    }

    fn add(&mut self, labels: &[&str], v: f64) {
        *self.values.entry(labels.iter().map(|s| s.to_string()).collect()).or_default() += v;
    }

    /// One series per non-zero resource of `amount` (and `keep`ing it), labelled (queue, resource, unit).
    fn add_resources(&mut self, core: &Cluster, queue: &str, amount: &Resources, keep: impl Fn(u64) -> bool) {
        for slot in 0..core.resources.len() {
            let (name, v) = (core.resources.name(slot), amount.get(slot));
            if v != 0 && keep(v) {
                self.add(&[queue, name, resource_unit(name)], metric_value(name, v));
            }
        }
    }
}

fn labels(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

/// How a refresh writes one kind of labelled gauge.
trait LabelledGauge {
    fn set(&self, labels: &[&str], v: f64);
    fn remove(&self, labels: &[&str]);
}

impl LabelledGauge for prometheus::GaugeVec {
    fn set(&self, labels: &[&str], v: f64) {
        self.with_label_values(labels).set(v);
    }
    fn remove(&self, labels: &[&str]) {
        let _ = self.remove_label_values(labels);
    }
}

impl LabelledGauge for prometheus::IntGaugeVec {
    fn set(&self, labels: &[&str], v: f64) {
        self.with_label_values(labels).set(v as i64);
    }
    fn remove(&self, labels: &[&str]) {
        let _ = self.remove_label_values(labels);
    }
}

impl ModelGauges {
    /// Refreshes the gauges from the model and advances the cost counters to `now_ms` (Unix milliseconds).
    pub fn observe(&mut self, metrics: &Metrics, index: &Index, now_ms: u64) {
        self.observe_model(metrics, index);
        self.cost.observe(metrics, index, now_ms);
    }

    fn observe_model(&mut self, metrics: &Metrics, index: &Index) {
        let core = &index.core;
        let mut deserved = Refresh::new(&metrics.queue_deserved);
        let mut allocated = Refresh::new(&metrics.queue_allocated);
        let mut guarantee = Refresh::new(&metrics.queue_guarantee);
        let mut capability = Refresh::new(&metrics.queue_capability);
        let mut pending_demand = Refresh::new(&metrics.queue_pending_demand);
        let mut shortfall = Refresh::new(&metrics.capacity_shortfall);
        let mut weight = Refresh::new(&metrics.queue_weight);
        let mut pending_gangs = Refresh::new(&metrics.queue_pending_gangs);
        let mut gangs = Refresh::new(&metrics.gangs);
        let mut waiting = Refresh::new(&metrics.gangs_waiting);
        for (_, q) in core.queues() {
            let name = q.spec.name.as_str();
            deserved.add_resources(core, name, &q.deserved, |_| true);
            allocated.add_resources(core, name, &q.allocated, |_| true);
            guarantee.add_resources(core, name, &q.spec.guarantee, |_| true);
            capability.add_resources(core, name, &q.spec.capability, |v| v != Resources::UNLIMITED.0[0]);
            weight.add(&[name], q.spec.weight as f64);
            let mut pending = 0.0;
            let mut demand = Resources::ZERO;
            let mut short = Resources::ZERO;
            for gang in q.gangs.iter().filter_map(|g| core.gang(*g)) {
                gangs.add(&[name, phase_label(gang.phase)], 1.0);
                if !matches!(gang.phase, GangPhase::Pending | GangPhase::Expired) {
                    continue;
                }
                pending += 1.0;
                let missing = gang.missing_request();
                demand = demand.saturating_add(&missing);
                if let Some(reason) = &gang.reason {
                    waiting.add(&[name, reason.code()], 1.0);
                    if waits_for_capacity(reason) {
                        short = short.saturating_add(&missing);
                    }
                }
            }
            pending_demand.add_resources(core, name, &demand, |_| true);
            shortfall.add_resources(core, name, &short, |_| true);
            pending_gangs.add(&[name], pending);
        }
        self.apply("queue_deserved", deserved);
        self.apply("queue_allocated", allocated);
        self.apply("queue_guarantee", guarantee);
        self.apply("queue_capability", capability);
        self.apply("queue_pending_demand", pending_demand);
        self.apply("capacity_shortfall", shortfall);
        self.apply("queue_weight", weight);
        self.apply("queue_pending_gangs", pending_gangs);
        self.apply("gangs", gangs);
        self.apply("gangs_waiting", waiting);
        metrics.reservations.set(core.gangs().map(|(_, g)| g.slots.len() as i64).sum());
        for (kind, n) in index.cache_sizes() {
            metrics.cache_objects.with_label_values(&[kind]).set(n as i64);
        }
    }

    /// Sets every new series, then removes those the gauge held before and no longer has.
    fn apply<G: LabelledGauge>(&mut self, name: &'static str, refresh: Refresh<'_, G>) {
        for (series, v) in &refresh.values {
            refresh.gauge.set(&labels(series), *v);
        }
        let now: BTreeSet<Vec<String>> = refresh.values.into_keys().collect();
        for gone in self.series.get(name).into_iter().flat_map(|before| before.difference(&now)) {
            refresh.gauge.remove(&labels(gone));
        }
        self.series.insert(name, now);
    }
}

/// A resource amount as the metrics show it: cpu in cores, everything else in its unit.
fn metric_value(resource: &str, v: u64) -> f64 {
    if Unit::for_resource(resource) == Unit::Milli { v as f64 / 1000.0 } else { v as f64 }
}

/// Integrates each queue's and each cost-label set's allocation over time into the
/// `*_allocated_resource_seconds_total` counters: between two observations the allocation seen at the earlier
/// one is taken to have held (the snapshot runs at least every few seconds, so the error is that small).
#[derive(Debug, Default)]
struct CostMeter {
    last: Option<Observation>,
}

/// What the cost meter saw at one snapshot.
#[derive(Debug)]
struct Observation {
    /// Unix milliseconds.
    at: u64,
    by_labels: AllocationByLabels,
    /// Allocation per queue.
    queues: Vec<(String, Resources)>,
}

/// Allocation per (queue, values of the cost labels).
type AllocationByLabels = BTreeMap<(String, Vec<String>), Resources>;

impl CostMeter {
    fn observe(&mut self, metrics: &Metrics, index: &Index, now_ms: u64) {
        let core = &index.core;
        if let Some(Observation { at: then, by_labels: allocation, queues }) = self.last.take() {
            let seconds = now_ms.saturating_sub(then) as f64 / 1000.0;
            if seconds > 0.0 {
                for ((queue, labels), amount) in &allocation {
                    for slot in 0..core.resources.len() {
                        let (name, v) = (core.resources.name(slot), amount.get(slot));
                        if v == 0 {
                            continue;
                        }
                        let inc = metric_value(name, v) * seconds;
                        let mut values: Vec<&str> = vec![queue, name, resource_unit(name)];
                        values.extend(labels.iter().map(String::as_str));
                        metrics.gang_allocated_resource_seconds.with_label_values(&values).inc_by(inc);
                    }
                }
                for (queue, amount) in &queues {
                    for slot in 0..core.resources.len() {
                        let (name, v) = (core.resources.name(slot), amount.get(slot));
                        if v != 0 {
                            metrics
                                .queue_allocated_resource_seconds
                                .with_label_values(&[queue, name, resource_unit(name)])
                                .inc_by(metric_value(name, v) * seconds);
                        }
                    }
                }
            }
        }
        let queues = core.queues().map(|(_, q)| (q.spec.name.clone(), q.allocated)).collect();
        self.last = Some(Observation { at: now_ms, by_labels: allocation_by_cost_labels(metrics, index), queues });
    }
}

/// Each gang's allocation (bound members' requests plus its reserved slots), summed per queue and values of the
/// cost labels (empty when the PodGroup lacks one).
fn allocation_by_cost_labels(metrics: &Metrics, index: &Index) -> AllocationByLabels {
    let core = &index.core;
    let mut out = AllocationByLabels::new();
    for entry in index.gangs() {
        let Some(gang) = entry.id.and_then(|id| core.gang(id)) else { continue };
        let amount = gang_allocation(core, gang);
        if amount == Resources::ZERO {
            continue;
        }
        let Some(queue) = core.queue(gang.spec.queue) else { continue };
        let labels = entry.podgroup.as_ref().and_then(|pg| pg.metadata.labels.as_ref());
        let values =
            metrics.cost_labels.iter().map(|k| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default()).collect();
        let total = out.entry((queue.spec.name.clone(), values)).or_default();
        *total = total.saturating_add(&amount);
    }
    out
}

fn gang_allocation(core: &Cluster, gang: &Gang) -> Resources {
    let mut total = Resources::ZERO;
    for s in &gang.slots {
        total = total.saturating_add(&gang.spec.templates[s.template as usize].request);
    }
    for p in gang.pods.iter().filter_map(|p| core.pod(*p)) {
        if p.node.is_some() && !p.terminating {
            total = total.saturating_add(&p.spec.request);
        }
    }
    total
}
