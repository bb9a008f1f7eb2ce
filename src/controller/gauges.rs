//! The Prometheus gauges that mirror the model, refreshed with every `/state` snapshot.

use crate::core::GangPhase;
use crate::core::quantity::Unit;
use crate::index::Index;
use crate::metrics::Metrics;

/// Refreshes the gauges that mirror the model.
pub fn observe_model(metrics: &Metrics, index: &Index) {
    let core = &index.core;
    metrics.queue_deserved.reset();
    metrics.queue_allocated.reset();
    metrics.queue_pending_gangs.reset();
    for (_, q) in core.queues() {
        for slot in 0..core.resources.len() {
            let name = core.resources.name(slot);
            let value = |v: u64| if Unit::for_resource(name) == Unit::Milli { v as f64 / 1000.0 } else { v as f64 };
            if q.deserved.get(slot) != 0 {
                metrics.queue_deserved.with_label_values(&[&q.spec.name, name]).set(value(q.deserved.get(slot)));
            }
            if q.allocated.get(slot) != 0 {
                metrics.queue_allocated.with_label_values(&[&q.spec.name, name]).set(value(q.allocated.get(slot)));
            }
        }
        let pending = q
            .gangs
            .iter()
            .filter(|g| core.gang(**g).is_some_and(|g| matches!(g.phase, GangPhase::Pending | GangPhase::Expired)))
            .count();
        metrics.queue_pending_gangs.with_label_values(&[&q.spec.name]).set(pending as i64);
    }
    metrics.reservations.set(core.gangs().map(|(_, g)| g.slots.len() as i64).sum());
    for (kind, n) in index.cache_sizes() {
        metrics.cache_objects.with_label_values(&[kind]).set(n as i64);
    }
}
