//! Prometheus metrics of `muster serve` (all prefixed `muster_`), rendered at `GET /metrics`.
//!
//! Resource quantities follow kube-state-metrics: one series per (queue, resource) with a `unit` label, `core`
//! for cpu, `byte` for memory and storage, `integer` for counted resources (pods, GPUs). docs/operations.md lists
//! every metric with the question it answers.

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Labels of the per-queue resource series.
const QUEUE_RESOURCE: [&str; 3] = ["queue", "resource", "unit"];

pub struct Metrics {
    registry: Registry,
    // ----- queues: the fair-share model -----
    pub queue_deserved: GaugeVec,
    pub queue_allocated: GaugeVec,
    pub queue_guarantee: GaugeVec,
    pub queue_capability: GaugeVec,
    pub queue_pending_demand: GaugeVec,
    pub capacity_shortfall: GaugeVec,
    pub queue_weight: IntGaugeVec,
    pub queue_pending_gangs: IntGaugeVec,
    pub gangs: IntGaugeVec,
    pub gangs_waiting: IntGaugeVec,
    // ----- cost attribution -----
    pub queue_allocated_resource_seconds: CounterVec,
    pub gang_allocated_resource_seconds: CounterVec,
    /// The PodGroup/driver label keys copied onto `gang_allocated_resource_seconds`, in label order.
    pub cost_labels: Vec<String>,
    // ----- admission -----
    pub gang_wait: HistogramVec,
    pub reservations: IntGauge,
    pub reclaim_evictions: IntCounterVec,
    pub reclaimed_gangs: IntCounterVec,
    pub cycles: IntCounter,
    pub cycle_duration: Histogram,
    pub evictions_refused: IntCounter,
    pub expired_gangs: IntCounter,
    // ----- the process -----
    pub leader: IntGauge,
    pub ready: IntGauge,
    pub cache_objects: IntGaugeVec,
    pub watch_restarts: IntCounterVec,
    pub watch_last_event: GaugeVec,
    pub action_failures: IntCounterVec,
    pub actions_completed: IntCounterVec,
    pub action_queue_depth: IntGauge,
    // ----- the HTTP edge, by listener (`extender`, `health`, `metrics`, `webhook`) -----
    pub extender_latency: HistogramVec,
    pub extender_requests: IntCounterVec,
    pub http_connections: IntGaugeVec,
    pub http_connections_refused: IntCounterVec,
    pub http_rejected_requests: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub tls_reloads: IntCounterVec,
    // ----- the admission webhook -----
    pub webhook_requests: IntCounterVec,
    pub webhook_gated_pods: IntCounter,
    names: Vec<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The Prometheus label name a PodGroup label key is copied to: `label_` and the key with every character
/// outside `[a-zA-Z0-9_]` replaced by `_` (kube-state-metrics' rule), e.g. `cost-center` → `label_cost_center`.
pub fn cost_label_name(key: &str) -> String {
    let sanitized: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    format!("label_{sanitized}")
}

/// The `unit` label of a resource's series.
pub fn resource_unit(resource: &str) -> &'static str {
    match resource {
        "cpu" => "core",
        "memory" | "ephemeral-storage" => "byte",
        r if r.starts_with("hugepages-") => "byte",
        _ => "integer",
    }
}

/// Registers collectors as they are built, so a metric cannot be declared and forgotten.
struct Builder {
    registry: Registry,
    names: std::cell::RefCell<Vec<String>>,
}

impl Builder {
    fn add<C: Collector + Clone + 'static>(&self, c: Result<C, prometheus::Error>) -> C {
        let c = c.expect("valid metric");
        self.names.borrow_mut().extend(c.desc().iter().map(|d| d.fq_name.clone()));
        self.registry.register(Box::new(c.clone())).expect("metric names are unique");
        c
    }
}

impl Metrics {
    /// Metrics without cost labels.
    pub fn new() -> Metrics {
        Metrics::with_cost_labels(&[])
    }

    /// Metrics whose per-gang cost counter carries these PodGroup/driver label keys (`--cost-labels`).
    pub fn with_cost_labels(cost_labels: &[String]) -> Metrics {
        let b = Builder { registry: Registry::new(), names: Default::default() };
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &QUEUE_RESOURCE);
        let mut gang_cost_labels: Vec<String> = QUEUE_RESOURCE.iter().map(|s| s.to_string()).collect();
        gang_cost_labels.extend(cost_labels.iter().map(|k| cost_label_name(k)));
        let gang_cost_labels: Vec<&str> = gang_cost_labels.iter().map(String::as_str).collect();
        Metrics {
            queue_deserved: b.add(gauge("muster_queue_deserved", "Fair share a queue is entitled to now")),
            queue_allocated: b.add(gauge(
                "muster_queue_allocated",
                "Requests of a queue's bound members plus the capacity reserved for its admitted gangs",
            )),
            queue_guarantee: b.add(gauge("muster_queue_guarantee", "Capacity guaranteed to a queue")),
            queue_capability: b.add(gauge(
                "muster_queue_capability",
                "Upper bound of a queue's allocation (absent for a resource the queue does not bound)",
            )),
            queue_pending_demand: b.add(gauge(
                "muster_queue_pending_demand",
                "Requests of the minimum members not yet placed of a queue's gangs waiting for admission",
            )),
            capacity_shortfall: b.add(gauge(
                "muster_capacity_shortfall",
                "Requests of the minimum members not yet placed of gangs that wait for capacity (their queue's \
                 share would admit them but the nodes cannot hold them): what the cluster lacks for them",
            )),
            queue_weight: b.add(IntGaugeVec::new(Opts::new("muster_queue_weight", "A queue's weight"), &["queue"])),
            queue_pending_gangs: b.add(IntGaugeVec::new(
                Opts::new("muster_queue_pending_gangs", "Gangs of a queue waiting for admission"),
                &["queue"],
            )),
            gangs: b.add(IntGaugeVec::new(
                Opts::new("muster_gangs", "Gangs by queue and phase (Pending, Inqueue, Running, Expired)"),
                &["queue", "phase"],
            )),
            gangs_waiting: b.add(IntGaugeVec::new(
                Opts::new("muster_gangs_waiting", "Gangs waiting for admission, by queue and the reason they wait"),
                &["queue", "reason"],
            )),
            queue_allocated_resource_seconds: b.add(CounterVec::new(
                Opts::new(
                    "muster_queue_allocated_resource_seconds_total",
                    "Integral over time of a queue's allocation (core-seconds, byte-seconds, ...), for cost",
                ),
                &QUEUE_RESOURCE,
            )),
            gang_allocated_resource_seconds: b.add(CounterVec::new(
                Opts::new(
                    "muster_gang_allocated_resource_seconds_total",
                    "Integral over time of the allocation of gangs sharing a queue and a set of cost labels \
                     (label_<key>, copied from the PodGroup; a Spark driver's labels are copied to its PodGroup)",
                ),
                &gang_cost_labels,
            )),
            cost_labels: cost_labels.to_vec(),
            gang_wait: b.add(HistogramVec::new(
                HistogramOpts::new("muster_gang_wait_seconds", "From a gang's creation to its admission, by queue")
                    .buckets(vec![
                        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 21600.0,
                    ]),
                &["queue"],
            )),
            reservations: b
                .add(IntGauge::new("muster_reservations", "Reserved member slots not yet consumed by a bind")),
            reclaim_evictions: b.add(IntCounterVec::new(
                Opts::new("muster_reclaim_evictions_total", "Pods evicted to reclaim capacity, by the evicted pod's queue"),
                &["queue"],
            )),
            reclaimed_gangs: b.add(IntCounterVec::new(
                Opts::new(
                    "muster_reclaimed_gangs_total",
                    "Gangs evicted whole to reclaim capacity (their elastic members were not enough), by queue",
                ),
                &["queue"],
            )),
            cycles: b.add(IntCounter::new("muster_admission_cycles_total", "Admission cycles run")),
            cycle_duration: b.add(Histogram::with_opts(
                HistogramOpts::new("muster_admission_cycle_duration_seconds", "Duration of an admission cycle")
                    .buckets(vec![0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
            )),
            evictions_refused: b.add(IntCounter::new(
                "muster_evictions_refused_total",
                "Reclaim evictions given up after the API server kept refusing them (PodDisruptionBudget, errors)",
            )),
            expired_gangs: b.add(IntCounter::new(
                "muster_expired_gangs_total",
                "Admitted gangs whose reservations timed out before their members bound",
            )),
            leader: b.add(IntGauge::new(
                "muster_leader",
                "1 while this replica holds the leader Lease (admits and writes)",
            )),
            ready: b.add(IntGauge::new("muster_ready", "1 while this replica's caches are synced (what /readyz answers)")),
            cache_objects: b
                .add(IntGaugeVec::new(Opts::new("muster_cache_objects", "Objects in muster's cache"), &["kind"])),
            watch_restarts: b.add(IntCounterVec::new(
                Opts::new("muster_watch_restarts_total", "Watch failures by kind (each is retried with backoff)"),
                &["kind"],
            )),
            watch_last_event: b.add(GaugeVec::new(
                Opts::new(
                    "muster_watch_last_event_timestamp_seconds",
                    "Unix time of the last event or initial list a watch delivered, by kind",
                ),
                &["kind"],
            )),
            action_failures: b.add(IntCounterVec::new(
                Opts::new(
                    "muster_action_failures_total",
                    "Failed attempts of writes to the cluster by kind (retried with backoff unless permanent)",
                ),
                &["kind"],
            )),
            actions_completed: b.add(IntCounterVec::new(
                Opts::new(
                    "muster_actions_completed_total",
                    "Writes to the cluster completed by kind (made, or found unnecessary: the object gone or already so)",
                ),
                &["kind"],
            )),
            action_queue_depth: b.add(IntGauge::new(
                "muster_action_queue_depth",
                "Writes to the cluster waiting to be made or retried, plus those in flight",
            )),
            extender_latency: b.add(HistogramVec::new(
                HistogramOpts::new("muster_extender_request_duration_seconds", "Extender request latency by verb")
                    .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0]),
                &["verb"],
            )),
            extender_requests: b.add(IntCounterVec::new(
                Opts::new(
                    "muster_extender_requests_total",
                    "Extender requests by verb and HTTP status code (including those refused by a bound)",
                ),
                &["verb", "code"],
            )),
            http_connections: b.add(IntGaugeVec::new(
                Opts::new("muster_http_connections", "Open connections by listener"),
                &["listener"],
            )),
            http_connections_refused: b.add(IntCounterVec::new(
                Opts::new(
                    "muster_http_connections_refused_total",
                    "Connections closed on arrival because the listener had its maximum open",
                ),
                &["listener"],
            )),
            http_rejected_requests: b.add(IntCounterVec::new(
                Opts::new(
                    "muster_http_rejected_requests_total",
                    "Requests refused by a bound: body too large (413), over the concurrency limit (503), timed out \
                     (408), unauthorized (401/403)",
                ),
                &["listener", "code"],
            )),
            tls_handshake_failures: b.add(IntCounterVec::new(
                Opts::new(
                    "muster_tls_handshake_failures_total",
                    "TLS handshakes that failed or timed out (no, expired or untrusted client certificate; not TLS)",
                ),
                &["listener"],
            )),
            tls_reloads: b.add(IntCounterVec::new(
                Opts::new(
                    "muster_tls_reloads_total",
                    "Certificate files found changed on disk, by outcome (loaded, or refused and the previous kept)",
                ),
                &["listener", "result"],
            )),
            webhook_requests: b.add(IntCounterVec::new(
                Opts::new("muster_webhook_requests_total", "Admission webhook requests by HTTP status code"),
                &["code"],
            )),
            webhook_gated_pods: b.add(IntCounter::new(
                "muster_webhook_gated_pods_total",
                "Pods the admission webhook answered with a patch adding the muster.dev/admission scheduling gate",
            )),
            names: {
                let mut names = b.names.take();
                names.sort();
                names
            },
            registry: b.registry,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }

    /// Every registered metric's name, including vectors with no series yet (the dashboard and alert tests check
    /// that each name they use exists).
    pub fn names(&self) -> &[String] {
        &self.names
    }
}
