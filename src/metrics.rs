//! Prometheus metrics of `muster serve` (all prefixed `muster_`), rendered at `GET /metrics`.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub queue_deserved: GaugeVec,
    pub queue_allocated: GaugeVec,
    pub queue_pending_gangs: IntGaugeVec,
    pub admission_wait: Histogram,
    pub extender_latency: HistogramVec,
    pub reservations: IntGauge,
    pub reclaim_evictions: IntCounter,
    pub cache_objects: IntGaugeVec,
    pub cycles: IntCounter,
    pub cycle_duration: Histogram,
    pub leader: IntGauge,
    pub watch_restarts: IntCounterVec,
    pub action_failures: IntCounterVec,
    pub actions_completed: IntCounterVec,
    pub action_queue_depth: IntGauge,
    pub evictions_refused: IntCounter,
    pub expired_gangs: IntCounter,
    /// The HTTP edge, by listener (`extender`, `health`, `metrics`).
    pub http_connections: IntGaugeVec,
    pub http_connections_refused: IntCounterVec,
    pub http_rejected_requests: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub tls_reloads: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let resource = ["queue", "resource"];
        let m = Metrics {
            queue_deserved: GaugeVec::new(
                Opts::new("muster_queue_deserved", "Deserved share of a queue (cpu in cores, others in units)"),
                &resource,
            )
            .expect("valid metric"),
            queue_allocated: GaugeVec::new(
                Opts::new("muster_queue_allocated", "Requests of a queue's bound members plus its reservations"),
                &resource,
            )
            .expect("valid metric"),
            queue_pending_gangs: IntGaugeVec::new(
                Opts::new("muster_queue_pending_gangs", "Gangs of a queue waiting for admission"),
                &["queue"],
            )
            .expect("valid metric"),
            admission_wait: Histogram::with_opts(
                HistogramOpts::new("muster_admission_wait_seconds", "From a gang's creation to its admission")
                    .buckets(vec![0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]),
            )
            .expect("valid metric"),
            extender_latency: HistogramVec::new(
                HistogramOpts::new("muster_extender_request_duration_seconds", "Extender request latency by verb")
                    .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0]),
                &["verb"],
            )
            .expect("valid metric"),
            reservations: IntGauge::new("muster_reservations", "Reserved member slots not yet consumed by a bind")
                .expect("valid metric"),
            reclaim_evictions: IntCounter::new("muster_reclaim_evictions_total", "Pods evicted to reclaim capacity")
                .expect("valid metric"),
            cache_objects: IntGaugeVec::new(Opts::new("muster_cache_objects", "Objects in muster's cache"), &["kind"])
                .expect("valid metric"),
            cycles: IntCounter::new("muster_admission_cycles_total", "Admission cycles run").expect("valid metric"),
            cycle_duration: Histogram::with_opts(
                HistogramOpts::new("muster_admission_cycle_duration_seconds", "Duration of an admission cycle")
                    .buckets(vec![0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0]),
            )
            .expect("valid metric"),
            leader: IntGauge::new("muster_leader", "1 while this replica holds the leader Lease (admits and writes)")
                .expect("valid metric"),
            watch_restarts: IntCounterVec::new(
                Opts::new("muster_watch_restarts_total", "Watch failures by kind (each is retried with backoff)"),
                &["kind"],
            )
            .expect("valid metric"),
            action_failures: IntCounterVec::new(
                Opts::new(
                    "muster_action_failures_total",
                    "Failed attempts of writes to the cluster by kind (retried with backoff unless permanent)",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            actions_completed: IntCounterVec::new(
                Opts::new(
                    "muster_actions_completed_total",
                    "Writes to the cluster completed by kind (made, or found unnecessary: the object gone or already so)",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            action_queue_depth: IntGauge::new(
                "muster_action_queue_depth",
                "Writes to the cluster waiting to be made or retried, plus those in flight",
            )
            .expect("valid metric"),
            evictions_refused: IntCounter::new(
                "muster_evictions_refused_total",
                "Reclaim evictions given up after the API server kept refusing them (PodDisruptionBudget, errors)",
            )
            .expect("valid metric"),
            expired_gangs: IntCounter::new(
                "muster_expired_gangs_total",
                "Admitted gangs whose reservations timed out before their members bound",
            )
            .expect("valid metric"),
            http_connections: IntGaugeVec::new(
                Opts::new("muster_http_connections", "Open connections by listener"),
                &["listener"],
            )
            .expect("valid metric"),
            http_connections_refused: IntCounterVec::new(
                Opts::new(
                    "muster_http_connections_refused_total",
                    "Connections closed on arrival because the listener had its maximum open",
                ),
                &["listener"],
            )
            .expect("valid metric"),
            http_rejected_requests: IntCounterVec::new(
                Opts::new(
                    "muster_http_rejected_requests_total",
                    "Requests refused by a bound: body too large (413), over the concurrency limit (503), timed out \
                     (408), unauthorized (401/403)",
                ),
                &["listener", "code"],
            )
            .expect("valid metric"),
            tls_handshake_failures: IntCounterVec::new(
                Opts::new(
                    "muster_tls_handshake_failures_total",
                    "TLS handshakes that failed or timed out (no, expired or untrusted client certificate; not TLS)",
                ),
                &["listener"],
            )
            .expect("valid metric"),
            tls_reloads: IntCounterVec::new(
                Opts::new(
                    "muster_tls_reloads_total",
                    "Certificate files found changed on disk, by outcome (loaded, or refused and the previous kept)",
                ),
                &["listener", "result"],
            )
            .expect("valid metric"),
            registry,
        };
        for c in [
            Box::new(m.queue_deserved.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.queue_allocated.clone()),
            Box::new(m.queue_pending_gangs.clone()),
            Box::new(m.admission_wait.clone()),
            Box::new(m.extender_latency.clone()),
            Box::new(m.reservations.clone()),
            Box::new(m.reclaim_evictions.clone()),
            Box::new(m.cache_objects.clone()),
            Box::new(m.cycles.clone()),
            Box::new(m.cycle_duration.clone()),
            Box::new(m.leader.clone()),
            Box::new(m.watch_restarts.clone()),
            Box::new(m.action_failures.clone()),
            Box::new(m.actions_completed.clone()),
            Box::new(m.action_queue_depth.clone()),
            Box::new(m.evictions_refused.clone()),
            Box::new(m.expired_gangs.clone()),
            Box::new(m.http_connections.clone()),
            Box::new(m.http_connections_refused.clone()),
            Box::new(m.http_rejected_requests.clone()),
            Box::new(m.tls_handshake_failures.clone()),
            Box::new(m.tls_reloads.clone()),
        ] {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
