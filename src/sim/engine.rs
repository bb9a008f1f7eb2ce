//! The discrete-event simulation behind `muster simulate`.
//!
//! A simulated clock drives Spark applications through their life: arrival (driver pod), driver start-up,
//! executors created in batches, dynamic allocation scaling up and back down, completion; evicted pods
//! terminate after a grace period and a whole evicted application is resubmitted. Placement is done by one of
//! two schedulers over the same trace:
//! - `Gang`: muster's core: admission cycles, then each pending pod placed where muster directs it (what the
//!   stock kube-scheduler does when it calls the extender);
//! - `PerPod`: kube-scheduler alone: each pending pod, in queue order, onto the feasible node with the most
//!   free capacity (LeastAllocated), with no notion of gangs or queues.
//!
//! When the pools carry prices, a `CostMeter` follows every bind and delete to attribute each node's cost to
//! queues, exactly, in simulated time (the model is described on [`Report::cost_total`]).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use crate::core::fairshare::{ShareInput, deserved_shares};
use crate::core::placement::{NodeFacts, Placement, Taint, TaintEffect, Toleration, TolerationOperator};
use crate::core::resources::{CPU, MEMORY, PODS, ResourceNames, Resources};
use crate::core::{
    Cluster, GangId, GangSpec, Millis, NodeId, NodeSet, NodeSpec, PodExit, PodId, PodSpec, Policy, QueueId, QueueSpec,
    TemplateSpec,
};

use super::report::{QueueReport, Report, Series};
use super::scenario::{AppDef, PodShape, Scenario, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// muster's gang admission.
    Gang,
    /// kube-scheduler alone: per-pod greedy placement.
    PerPod,
}

/// A scenario that cannot be simulated (a shape that names too many extended resources, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot simulate: {0}")]
pub struct SimError(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrive(usize),
    DriverReady(usize, u32),
    ExecutorBatch(usize, u32),
    ScaleUp(usize, u32),
    ScaleDown(usize, u32),
    Finish(usize, u32),
    Terminated(usize),
    Resubmit(usize),
    Sample,
    Tick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Driver,
    Executor,
}

#[derive(Debug, Clone)]
struct SimPod {
    app: usize,
    attempt: u32,
    role: Role,
    request: Resources,
    placement_class: usize,
    node: Option<usize>,
    core: Option<PodId>,
    terminating: bool,
    created_at: Millis,
    /// Capacity version at which placement last failed: no retry until capacity changes.
    failed_at: Option<u64>,
    /// Deleted: it leaves `settled`/`fresh` lazily (removing it from a long list at once would cost O(pending)).
    deleted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppState {
    Waiting,
    Running,
    Restarting,
    Done,
}

#[derive(Debug, Clone)]
struct App {
    def: AppDef,
    queue: usize,
    attempt: u32,
    state: AppState,
    gang: Option<GangId>,
    pods: Vec<usize>,
    /// Executors Spark currently wants.
    target: u32,
    /// When the driver and minimum executors were first guaranteed (admission, or all bound for per-pod).
    admitted_at: Option<Millis>,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    executors_requested: bool,
    ever_partial: bool,
    /// Since when the application has been partially started without progress.
    partial_since: Option<Millis>,
    ever_deadlocked: bool,
    reclaimed: u32,
    driver_shape: usize,
    executor_shape: usize,
    driver_request: Resources,
    executor_request: Resources,
}

struct World {
    mode: Mode,
    now: Millis,
    seq: u64,
    events: BinaryHeap<Reverse<(Millis, u64, Event)>>,
    names: ResourceNames,
    /// Node specs by dense index (both modes); per-pod mode keeps usage here, gang mode in the core.
    nodes: Vec<NodeSpec>,
    used: Vec<Resources>,
    core: Cluster,
    core_nodes: Vec<NodeId>,
    core_queues: Vec<QueueId>,
    policy: Policy,
    placements: Vec<Placement>,
    /// placements[class] allows node i.
    allowed: Vec<Vec<bool>>,
    apps: Vec<App>,
    pods: Vec<SimPod>,
    /// kube-scheduler's queue, in order: `settled` (each failed at `settled_version` when last tried) then
    /// `fresh` (not tried since they joined). While capacity has not changed since `settled_version`, only the
    /// fresh pods can get anywhere, so a pass tries only them: the result is what a pass over every pending pod
    /// would give, without touching tens of thousands of pods after every event at scale.
    settled: Vec<usize>,
    fresh: Vec<usize>,
    settled_version: Option<u64>,
    capacity_version: u64,
    /// Applications in state Done (the run ends when all are).
    done: usize,
    /// Applications waiting with their executors requested: the only ones that can be partially started.
    requesting: BTreeSet<usize>,
    /// Applications not yet due, latest first (popped as the clock reaches them), and those due and not done:
    /// samples walk only the latter.
    not_due: Vec<usize>,
    due: BTreeSet<usize>,
    /// Reverse lookups of ids the core hands back.
    app_of_gang: HashMap<GangId, usize>,
    pod_of_core: HashMap<PodId, usize>,
    /// Dense node index by the core's `NodeId` index.
    node_of_core: Vec<usize>,
    evictions: u64,
    queue_names: Vec<String>,
    queue_weights: Vec<u64>,
    samples: Vec<Sample>,
    stranded_cpu_ms: u128,
    /// Present when the pools carry prices.
    cost: Option<CostMeter>,
    last_arrival: Millis,
    settings: Settings,
    /// Applications that had a pod bound since their start condition was last checked.
    touched: Vec<usize>,
}

/// Node-hours priced and attributed as pods come and go (the model: [`Report::cost_total`]).
///
/// Each node's cost accrues in intervals between changes of what is bound to it: `price × interval × D` to the
/// queues of the bound pods and `price × interval × (1 − D)` to idle, where `D` is the node's dominant used
/// fraction. A pod's part of the queues' share is its own dominant fraction `d` of the node, scaled by `D / S`
/// (`S` the sum of the bound pods' `d`), which is 1 unless the pods on the node are dominant in different
/// resources (then `S > D` and the scaling keeps the node from being attributed more than it costs).
#[derive(Debug, Clone)]
struct CostMeter {
    /// Dollars per hour, by node.
    price: Vec<f64>,
    /// By node: the time its cost has been accrued up to.
    since: Vec<Millis>,
    /// By node, by queue: the sum of the bound pods' dominant fractions `d`.
    held: Vec<Vec<f64>>,
    /// By node: bound pods (when none are left, `held` is reset to exact zeros).
    bound: Vec<u32>,
    /// Dollars accrued, by queue, and to idle capacity.
    queue: Vec<f64>,
    idle: f64,
    /// Dollars of capacity held by partially started applications (sampled, like `stranded_cpu_ms`).
    stranded: f64,
}

/// The largest fraction of the node's allocatable that `r` takes, over every resource but the pod count.
fn dominant_fraction(r: &Resources, allocatable: &Resources) -> f64 {
    (0..r.0.len())
        .filter(|&s| s != PODS && allocatable.get(s) > 0)
        .map(|s| r.get(s) as f64 / allocatable.get(s) as f64)
        .fold(0.0, f64::max)
}

const MS_PER_HOUR: f64 = 3_600_000.0;

impl CostMeter {
    fn new(price: Vec<f64>, queues: usize) -> CostMeter {
        let n = price.len();
        CostMeter {
            price,
            since: vec![0; n],
            held: vec![vec![0.0; queues]; n],
            bound: vec![0; n],
            queue: vec![0.0; queues],
            idle: 0.0,
            stranded: 0.0,
        }
    }

    /// Node `n`'s attributed fraction `D` (`used`: its bound requests) and the factor `D / S` that turns a bound
    /// pod's dominant fraction `d` into its share of the node's price.
    fn attributed(&self, n: usize, used: &Resources, allocatable: &Resources) -> (f64, f64) {
        let s: f64 = self.held[n].iter().sum();
        if s > 0.0 {
            let d = dominant_fraction(used, allocatable).min(1.0);
            (d, d / s)
        } else {
            (0.0, 0.0)
        }
    }

    /// Accrues node `n`'s cost up to `now`; call before what is bound to it changes.
    fn accrue(&mut self, n: usize, now: Millis, used: &Resources, allocatable: &Resources) {
        let hours = now.saturating_sub(self.since[n]) as f64 / MS_PER_HOUR;
        self.since[n] = now;
        if hours == 0.0 {
            return;
        }
        let dollars = self.price[n] * hours;
        let (attributed, scale) = self.attributed(n, used, allocatable);
        for (q, d) in self.held[n].iter().enumerate() {
            self.queue[q] += dollars * d * scale;
        }
        self.idle += dollars * (1.0 - attributed);
    }

    /// A pod of queue `q` whose dominant fraction is `d` binds to node `n` (`bound = true`) or leaves it.
    fn update(&mut self, n: usize, q: usize, d: f64, bound: bool) {
        if bound {
            self.bound[n] += 1;
            self.held[n][q] += d;
        } else {
            self.bound[n] -= 1;
            self.held[n][q] -= d;
            if self.bound[n] == 0 {
                self.held[n].iter_mut().for_each(|h| *h = 0.0);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Sample {
    at: Millis,
    allocated: Vec<Resources>,
    deserved: Vec<Resources>,
    used: Resources,
}

pub fn simulate(scenario: &Scenario, mode: Mode) -> Result<Report, SimError> {
    let mut w = World::new(scenario, mode)?;
    w.run(scenario);
    Ok(w.report(scenario))
}

fn placement_of(shape: &PodShape) -> Result<Placement, SimError> {
    let mut p = Placement { node_selector: shape.node_selector.clone(), ..Placement::default() };
    for t in &shape.tolerations {
        let operator = match t.operator.as_deref() {
            None | Some("Equal") => TolerationOperator::Equal,
            Some("Exists") => TolerationOperator::Exists,
            Some(o) => return Err(SimError(format!("toleration operator {o:?} is not Equal or Exists"))),
        };
        let effect = match t.effect.as_deref() {
            None | Some("") => None,
            Some(e) => Some(TaintEffect::parse(e).ok_or_else(|| SimError(format!("unknown taint effect {e:?}")))?),
        };
        p.tolerations.push(Toleration { key: t.key.clone(), operator, value: t.value.clone(), effect });
    }
    Ok(p.canonical())
}

impl World {
    fn new(s: &Scenario, mode: Mode) -> Result<World, SimError> {
        let mut names = ResourceNames::default();
        let apps_defs = s.applications();
        // Intern every requested resource first, so node allocatable parses into the same slots.
        let request_of = |shape: &PodShape, names: &mut ResourceNames| -> Result<Resources, SimError> {
            let r = names
                .parse_map(shape.resources.0.iter().map(|(k, v)| (k.as_str(), v.as_str())), true)
                .map_err(|e| SimError(e.to_string()))?;
            Ok(r.with(PODS, 1))
        };
        let mut placements: Vec<Placement> = Vec::new();
        let mut class_of = |shape: &PodShape| -> Result<usize, SimError> {
            let p = placement_of(shape)?;
            Ok(match placements.iter().position(|q| *q == p) {
                Some(i) => i,
                None => {
                    placements.push(p);
                    placements.len() - 1
                }
            })
        };
        let mut apps = Vec::new();
        let queue_names: Vec<String> = s.queues.iter().map(|q| q.name.clone()).collect();
        for def in apps_defs {
            let queue = queue_names.iter().position(|q| *q == def.queue).expect("validated queue");
            let driver_request = request_of(&def.driver, &mut names)?;
            let executor_request = request_of(&def.executor, &mut names)?;
            let (driver_shape, executor_shape) = (class_of(&def.driver)?, class_of(&def.executor)?);
            apps.push(App {
                def,
                queue,
                attempt: 0,
                state: AppState::Waiting,
                gang: None,
                pods: Vec::new(),
                target: 0,
                admitted_at: None,
                started_at: None,
                finished_at: None,
                executors_requested: false,
                ever_partial: false,
                partial_since: None,
                ever_deadlocked: false,
                reclaimed: 0,
                driver_shape,
                executor_shape,
                driver_request,
                executor_request,
            });
        }
        let mut nodes = Vec::new();
        for pool in &s.pools {
            let allocatable = names
                .parse_map(pool.allocatable.0.iter().map(|(k, v)| (k.as_str(), v.as_str())), false)
                .map_err(|e| SimError(e.to_string()))?;
            let allocatable =
                if pool.allocatable.0.contains_key("pods") { allocatable } else { allocatable.with(PODS, 110) };
            let mut taints = Vec::new();
            for t in &pool.taints {
                let effect = TaintEffect::parse(&t.effect)
                    .ok_or_else(|| SimError(format!("unknown taint effect {:?}", t.effect)))?;
                taints.push(Taint { key: t.key.clone(), value: t.value.clone(), effect });
            }
            for i in 0..pool.count {
                nodes.push(NodeSpec {
                    name: format!("{}-{i}", pool.name),
                    allocatable,
                    labels: pool.labels.clone(),
                    taints: taints.clone(),
                    unschedulable: false,
                });
            }
        }
        let allowed: Vec<Vec<bool>> = placements
            .iter()
            .map(|p| {
                nodes
                    .iter()
                    .map(|n| {
                        p.allows(&NodeFacts {
                            name: &n.name,
                            labels: &n.labels,
                            taints: &n.taints,
                            unschedulable: false,
                        })
                    })
                    .collect()
            })
            .collect();
        let mut core = Cluster::new();
        core.resources = names.clone();
        let core_nodes: Vec<NodeId> =
            nodes.iter().map(|n| core.add_node(n.clone()).expect("unique node names")).collect();
        let mut node_of_core = vec![usize::MAX; core_nodes.iter().map(|n| n.index() + 1).max().unwrap_or(0)];
        for (i, n) in core_nodes.iter().enumerate() {
            node_of_core[n.index()] = i;
        }
        let mut core_queues = Vec::new();
        for q in &s.queues {
            let mut spec = QueueSpec::new(&q.name, q.weight);
            if let Some(cap) = &q.capability {
                let r = names
                    .parse_map(cap.0.iter().map(|(k, v)| (k.as_str(), v.as_str())), false)
                    .map_err(|e| SimError(e.to_string()))?;
                let mut capability = Resources::UNLIMITED;
                for name in cap.0.keys() {
                    if let Some(slot) = names.slot(name) {
                        capability.0[slot] = r.0[slot];
                    }
                }
                spec.capability = capability;
            }
            if let Some(g) = &q.guarantee {
                spec.guarantee = names
                    .parse_map(g.0.iter().map(|(k, v)| (k.as_str(), v.as_str())), false)
                    .map_err(|e| SimError(e.to_string()))?;
            }
            spec.reclaimable = q.reclaimable;
            spec.parent = q.parent.clone();
            core_queues.push(core.upsert_queue(spec));
        }
        let st = &s.settings;
        let policy = Policy {
            drain_after: st.drain_after.0,
            reservation_timeout: st.reservation_timeout.0,
            min_runtime: st.min_runtime.0,
            ..Policy::default()
        };
        let used = vec![Resources::ZERO; nodes.len()];
        let cost = if s.priced().map_err(SimError)? {
            let price: Vec<f64> = s
                .pools
                .iter()
                .flat_map(|p| std::iter::repeat_n(p.price_per_hour.unwrap_or(0.0), p.count as usize))
                .collect();
            Some(CostMeter::new(price, s.queues.len()))
        } else {
            None
        };
        Ok(World {
            mode,
            now: 0,
            seq: 0,
            events: BinaryHeap::new(),
            names,
            nodes,
            used,
            core,
            core_nodes,
            core_queues,
            policy,
            placements,
            allowed,
            apps,
            pods: Vec::new(),
            settled: Vec::new(),
            fresh: Vec::new(),
            settled_version: None,
            capacity_version: 0,
            done: 0,
            requesting: BTreeSet::new(),
            not_due: Vec::new(),
            due: BTreeSet::new(),
            app_of_gang: HashMap::new(),
            pod_of_core: HashMap::new(),
            node_of_core,
            evictions: 0,
            queue_weights: s.queues.iter().map(|q| q.weight).collect(),
            queue_names,
            samples: Vec::new(),
            stranded_cpu_ms: 0,
            cost,
            last_arrival: 0,
            settings: s.settings.clone(),
            touched: Vec::new(),
        })
    }

    fn at(&mut self, time: Millis, e: Event) {
        self.seq += 1;
        self.events.push(Reverse((time, self.seq, e)));
    }

    fn run(&mut self, s: &Scenario) {
        self.not_due = (0..self.apps.len()).collect();
        self.not_due.sort_by_key(|&a| Reverse(self.apps[a].def.at.0));
        for i in 0..self.apps.len() {
            let at = self.apps[i].def.at.0;
            self.last_arrival = self.last_arrival.max(at);
            self.at(at, Event::Arrive(i));
        }
        self.at(0, Event::Sample);
        if self.mode == Mode::Gang {
            self.at(0, Event::Tick);
        }
        let limit = self.last_arrival + s.settings.drain_limit.0;
        while let Some(Reverse((time, _, event))) = self.events.pop() {
            if time > limit {
                break;
            }
            self.now = time;
            self.handle(event);
            // Process everything due at this instant before deciding.
            if self.events.peek().is_some_and(|Reverse((t, _, _))| *t == time) {
                continue;
            }
            if self.mode == Mode::Gang && self.core.is_dirty() {
                self.admission_cycle();
            }
            self.schedule_pending();
            if self.done == self.apps.len() && self.now >= self.last_arrival {
                self.take_sample();
                break;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let st = self.settings.clone();
        match event {
            Event::Arrive(a) => self.submit(a),
            Event::Resubmit(a) if self.apps[a].state == AppState::Restarting => {
                self.submit(a);
            }
            Event::DriverReady(a, attempt) if self.apps[a].attempt == attempt => {
                let app = &mut self.apps[a];
                app.target = app.def.min_executors;
                app.executors_requested = true;
                self.sync_requesting(a);
                self.at(self.now, Event::ExecutorBatch(a, attempt));
            }
            Event::ExecutorBatch(a, attempt)
                if self.apps[a].attempt == attempt && self.apps[a].state != AppState::Done =>
            {
                let live = self.live_executors(a);
                let want = self.apps[a].target.saturating_sub(live).min(st.executor_batch_size);
                for _ in 0..want {
                    self.create_pod(a, Role::Executor);
                }
                if live + want < self.apps[a].target {
                    self.at(self.now + st.executor_batch_delay.0, Event::ExecutorBatch(a, attempt));
                }
            }
            Event::ScaleUp(a, attempt)
                if self.apps[a].attempt == attempt && self.apps[a].state == AppState::Running =>
            {
                let app = &mut self.apps[a];
                app.target = app.def.max_executors.unwrap_or(app.def.min_executors).max(app.def.min_executors);
                self.at(self.now, Event::ExecutorBatch(a, attempt));
            }
            Event::ScaleDown(a, attempt)
                if self.apps[a].attempt == attempt && self.apps[a].state == AppState::Running =>
            {
                let min = self.apps[a].def.min_executors;
                self.apps[a].target = min;
                // Spark removes idle executors: pending ones first, then the most recent.
                let mut extra: Vec<usize> = self.apps[a]
                    .pods
                    .iter()
                    .copied()
                    .filter(|&p| self.pods[p].role == Role::Executor && !self.pods[p].terminating)
                    .collect();
                extra.sort_by_key(|&p| (self.pods[p].node.is_some(), Reverse(p)));
                let surplus = (extra.len() as u32).saturating_sub(min) as usize;
                for p in extra.into_iter().take(surplus) {
                    self.delete_pod(p, PodExit::Deleted);
                }
            }
            Event::Finish(a, attempt) if self.apps[a].attempt == attempt && self.apps[a].state == AppState::Running => {
                if let Some(g) = self.apps[a].gang.take() {
                    self.core.remove_gang(g).expect("live gang");
                    self.app_of_gang.remove(&g);
                }
                for p in self.apps[a].pods.clone() {
                    self.delete_pod(p, PodExit::Succeeded);
                }
                self.done += 1;
                let app = &mut self.apps[a];
                app.state = AppState::Done;
                app.finished_at = Some(self.now);
                self.sync_requesting(a);
            }
            Event::Terminated(p) => {
                let a = self.pods[p].app;
                self.delete_pod(p, PodExit::Deleted);
                // Spark asks for a replacement of a lost executor while it still wants that many.
                let (attempt, state) = (self.apps[a].attempt, self.apps[a].state);
                if self.pods[p].attempt == attempt
                    && state == AppState::Running
                    && self.live_executors(a) < self.apps[a].target
                {
                    self.at(self.now, Event::ExecutorBatch(a, attempt));
                }
            }
            Event::Sample => {
                self.recreate_stuck_executors();
                self.take_sample();
                self.at(self.now + st.sample_every.0, Event::Sample);
            }
            Event::Tick => {
                // Timers (drain, reservation timeouts) need cycles even when nothing happens.
                self.admission_cycle();
                self.at(self.now + 10_000, Event::Tick);
            }
            _ => {} // a stale event of an earlier attempt
        }
    }

    /// Applications whose driver and minimum executors are now all bound start running.
    fn start_ready_apps(&mut self) {
        let st = self.settings.clone();
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for a in touched {
            let app = &self.apps[a];
            if app.state != AppState::Waiting || !app.executors_requested {
                continue;
            }
            let driver_bound =
                app.pods.iter().any(|&p| self.pods[p].role == Role::Driver && self.pods[p].node.is_some());
            let bound = self.bound_executors(a);
            if driver_bound && bound >= app.def.min_executors {
                let attempt = app.attempt;
                let (run, dynamic) = (app.def.run_time.0, app.def.dynamic_allocation);
                let app = &mut self.apps[a];
                app.state = AppState::Running;
                app.started_at.get_or_insert(self.now);
                app.admitted_at.get_or_insert(self.now);
                self.sync_requesting(a);
                self.at(self.now + run, Event::Finish(a, attempt));
                if dynamic {
                    self.at(self.now + st.scale_up_after.0.min(run / 2), Event::ScaleUp(a, attempt));
                    self.at(self.now + (run as f64 * st.scale_down_at) as u64, Event::ScaleDown(a, attempt));
                }
            }
        }
    }

    /// Keeps `requesting` in step with an application's state (call after changing it).
    fn sync_requesting(&mut self, a: usize) {
        let app = &mut self.apps[a];
        if app.state == AppState::Waiting && app.executors_requested {
            self.requesting.insert(a);
        } else {
            self.requesting.remove(&a);
            app.partial_since = None; // only read while it is requesting
        }
    }

    fn submit(&mut self, a: usize) {
        let app = &mut self.apps[a];
        app.attempt += 1;
        app.state = AppState::Waiting;
        app.target = 0;
        app.executors_requested = false;
        app.pods.clear();
        self.sync_requesting(a);
        let app = &mut self.apps[a];
        if self.mode == Mode::Gang {
            let def = &app.def;
            let max =
                if def.dynamic_allocation { def.max_executors.unwrap_or(def.min_executors) } else { def.min_executors };
            let spec = GangSpec {
                name: format!("{}#{}", def.name.clone().unwrap_or_default(), app.attempt),
                queue: self.core_queues[app.queue],
                priority: def.priority,
                created: def.at.0,
                templates: vec![
                    TemplateSpec {
                        name: "driver".into(),
                        request: app.driver_request,
                        placement: self.placements[app.driver_shape].clone(),
                        min: 1,
                        max: 1,
                    },
                    TemplateSpec {
                        name: "executor".into(),
                        request: app.executor_request,
                        placement: self.placements[app.executor_shape].clone(),
                        min: def.min_executors,
                        max: max.max(def.min_executors),
                    },
                ],
            };
            let g = self.core.add_gang(spec).expect("valid gang");
            self.apps[a].gang = Some(g);
            self.app_of_gang.insert(g, a);
        }
        self.create_pod(a, Role::Driver);
    }

    fn create_pod(&mut self, a: usize, role: Role) {
        let app = &self.apps[a];
        let (request, class) = match role {
            Role::Driver => (app.driver_request, app.driver_shape),
            Role::Executor => (app.executor_request, app.executor_shape),
        };
        let id = self.pods.len();
        let core = match (self.mode, app.gang) {
            (Mode::Gang, Some(g)) => {
                let template = if role == Role::Driver { 0 } else { 1 };
                let spec = PodSpec {
                    name: format!("p{id}"),
                    request,
                    member: Some((g, template)),
                    priority: app.def.priority,
                };
                Some(self.core.add_pod(spec, None, self.now).expect("valid pod"))
            }
            _ => None,
        };
        self.pods.push(SimPod {
            app: a,
            attempt: app.attempt,
            role,
            request,
            placement_class: class,
            node: None,
            core,
            terminating: false,
            created_at: self.now,
            failed_at: None,
            deleted: false,
        });
        if let Some(c) = core {
            self.pod_of_core.insert(c, id);
        }
        self.apps[a].pods.push(id);
        self.fresh.push(id);
    }

    fn delete_pod(&mut self, p: usize, exit: PodExit) {
        if let Some(node) = self.pods[p].node {
            self.meter(p, node, false);
        }
        let pod = &mut self.pods[p];
        if let Some(node) = pod.node.take() {
            self.used[node] = self.used[node].saturating_sub(&pod.request);
            self.capacity_version += 1;
        }
        pod.deleted = true;
        if let Some(c) = pod.core.take() {
            let _ = self.core.remove_pod(c, exit, self.now);
            self.pod_of_core.remove(&c);
        }
        let a = pod.app;
        self.apps[a].pods.retain(|&q| q != p);
    }

    fn live_executors(&self, a: usize) -> u32 {
        self.apps[a].pods.iter().filter(|&&p| self.pods[p].role == Role::Executor && !self.pods[p].terminating).count()
            as u32
    }

    fn bound_executors(&self, a: usize) -> u32 {
        self.apps[a]
            .pods
            .iter()
            .filter(|&&p| {
                self.pods[p].role == Role::Executor && self.pods[p].node.is_some() && !self.pods[p].terminating
            })
            .count() as u32
    }

    fn admission_cycle(&mut self) {
        let out = self.core.run_cycle(self.now, &self.policy);
        for g in &out.admitted {
            if let Some(&a) = self.app_of_gang.get(g) {
                self.apps[a].admitted_at.get_or_insert(self.now);
            }
        }
        let grace = self.settings.termination_grace.0;
        let mut whole: Vec<GangId> = Vec::new();
        for e in &out.evictions {
            self.evictions += 1;
            if let Some(&p) = self.pod_of_core.get(&e.pod) {
                self.pods[p].terminating = true;
                self.at(self.now + grace, Event::Terminated(p));
            }
            if e.whole_gang && !whole.contains(&e.victim) {
                whole.push(e.victim);
            }
        }
        for g in whole {
            // The driver is gone: the application fails and is resubmitted.
            if let Some(a) = self.app_of_gang.remove(&g) {
                let _ = self.core.remove_gang(g);
                let app = &mut self.apps[a];
                app.gang = None;
                app.state = AppState::Restarting;
                app.reclaimed += 1;
                app.attempt += 1; // stale events of the evicted attempt are ignored
                self.sync_requesting(a);
                let app = &mut self.apps[a];
                for p in app.pods.clone() {
                    if !self.pods[p].terminating {
                        self.pods[p].terminating = true;
                        self.at(self.now + grace, Event::Terminated(p));
                    }
                }
                self.at(self.now + grace.max(self.settings.resubmit_after.0), Event::Resubmit(a));
            }
        }
    }

    /// kube-scheduler: try every pending pod once, in queue order. A pod that fails an attempt is re-queued
    /// with a fresh timestamp (behind everything already waiting), which interleaves the executors of
    /// different applications just as the real scheduling queue does.
    fn schedule_pending(&mut self) {
        let fresh = std::mem::take(&mut self.fresh);
        let full_pass = self.settled_version != Some(self.capacity_version);
        let pending: Vec<usize> = if full_pass {
            let mut all = std::mem::take(&mut self.settled);
            all.extend(fresh);
            all
        } else {
            fresh
        };
        let mut waiting = if full_pass { Vec::with_capacity(pending.len()) } else { std::mem::take(&mut self.settled) };
        let mut failed = Vec::new();
        for p in pending {
            if self.pods[p].deleted || self.pods[p].terminating || self.pods[p].node.is_some() {
                continue;
            }
            if self.pods[p].failed_at == Some(self.capacity_version) {
                waiting.push(p);
                continue;
            }
            let node = match self.mode {
                Mode::Gang => self.place_with_muster(p),
                Mode::PerPod => self.place_least_allocated(p),
            };
            match node {
                Some(n) => self.bind(p, n),
                None => {
                    self.pods[p].failed_at = Some(self.capacity_version);
                    failed.push(p);
                }
            }
        }
        debug_assert!(self.fresh.is_empty(), "placing pods creates none");
        waiting.extend(failed);
        self.settled = waiting;
        self.settled_version = Some(self.capacity_version);
        self.start_ready_apps();
        self.track_partial();
    }

    fn feasible(&self, p: usize, n: usize) -> bool {
        let pod = &self.pods[p];
        self.allowed[pod.placement_class][n]
            && pod.request.fits_in(&self.nodes[n].allocatable.saturating_sub(&self.used[n]))
    }

    fn place_with_muster(&mut self, p: usize) -> Option<usize> {
        let core_pod = self.pods[p].core?;
        if !self.core.placeable(core_pod) {
            return None; // refused whatever kube-scheduler offers: no need to run its filters
        }
        // kube-scheduler's own filters (constraints, resources it sees) narrow the nodes it offers muster. When
        // the node muster directs the pod to passes them, offering only that node gets the same answer as
        // offering all (muster takes its directed node whenever it is offered), without filtering every node.
        // An elastic member goes to the tightest node that fits; the same argument applies to that node.
        let directed = self
            .core
            .directed_node(core_pod)
            .or_else(|| self.core.elastic_preference(core_pod))
            .and_then(|n| self.node_of_core.get(n.index()).copied());
        let offered = match directed {
            Some(n) if self.feasible(p, n) => NodeSet::new([self.core_nodes[n]]),
            _ => NodeSet::new((0..self.nodes.len()).filter(|&n| self.feasible(p, n)).map(|n| self.core_nodes[n])),
        };
        let node = self.core.place(core_pod, &offered, self.now).ok()?;
        self.node_of_core.get(node.index()).copied()
    }

    fn place_least_allocated(&self, p: usize) -> Option<usize> {
        let request = self.pods[p].request;
        (0..self.nodes.len()).filter(|&n| self.feasible(p, n)).max_by(|&a, &b| {
            let score = |n: usize| {
                let alloc = &self.nodes[n].allocatable;
                let after = self.used[n].saturating_add(&request);
                let free =
                    |s: usize| if alloc.get(s) == 0 { 0.0 } else { 1.0 - after.get(s) as f64 / alloc.get(s) as f64 };
                (free(CPU) + free(MEMORY)) / 2.0
            };
            score(a).total_cmp(&score(b)).then(b.cmp(&a))
        })
    }

    /// Tells the cost meter, if any, that pod `p` binds to node `n` or leaves it (before `used` changes).
    fn meter(&mut self, p: usize, n: usize, bound: bool) {
        if let Some(cost) = &mut self.cost {
            let (pod, node) = (&self.pods[p], &self.nodes[n]);
            cost.accrue(n, self.now, &self.used[n], &node.allocatable);
            cost.update(n, self.apps[pod.app].queue, dominant_fraction(&pod.request, &node.allocatable), bound);
        }
    }

    fn bind(&mut self, p: usize, n: usize) {
        self.meter(p, n, true);
        let pod = &mut self.pods[p];
        pod.node = Some(n);
        self.used[n] = self.used[n].saturating_add(&pod.request);
        if let Some(c) = pod.core {
            self.core.bind_pod(c, self.core_nodes[n], self.now).expect("bind where muster directed");
        }
        let (a, role) = (pod.app, pod.role);
        self.touched.push(a);
        if role == Role::Driver {
            let attempt = self.apps[a].attempt;
            self.at(self.now + self.settings.driver_startup.0, Event::DriverReady(a, attempt));
        }
    }

    /// An application is partially started when some members are bound while a minimum member that Spark
    /// asked for found no capacity (neither bound nor reserved): it waits while the bound ones hold theirs.
    fn partial_apps(&self) -> Vec<usize> {
        self.requesting
            .iter()
            .copied()
            .filter(|&a| {
                let app = &self.apps[a];
                if app.state != AppState::Waiting || !app.executors_requested {
                    return false;
                }
                let missing = app.def.min_executors.saturating_sub(self.bound_executors(a));
                let reserved = match (self.mode, app.gang) {
                    (Mode::Gang, Some(g)) => self.core.gang(g).is_some_and(|g| g.missing_total() == 0),
                    _ => false,
                };
                let starved = app.pods.iter().any(|&p| {
                    let pod = &self.pods[p];
                    pod.role == Role::Executor && pod.node.is_none() && pod.failed_at.is_some()
                });
                missing > 0 && !reserved && starved
            })
            .collect()
    }

    fn track_partial(&mut self) {
        let partial = self.partial_apps();
        for &a in &self.requesting {
            let app = &mut self.apps[a];
            if partial.binary_search(&a).is_ok() {
                app.ever_partial = true;
                let since = *app.partial_since.get_or_insert(self.now);
                if self.now.saturating_sub(since) >= self.settings.deadlock_after.0 {
                    app.ever_deadlocked = true;
                }
            } else {
                app.partial_since = None;
            }
        }
    }

    /// Spark gives up on executor pods pending too long: it deletes them and creates new ones, which join the
    /// back of the scheduling queue.
    fn recreate_stuck_executors(&mut self) {
        let timeout = self.settings.executor_allocation_timeout.0;
        let stuck: Vec<usize> = self
            .settled
            .iter()
            .chain(&self.fresh)
            .copied()
            .filter(|&p| {
                let pod = &self.pods[p];
                !pod.deleted
                    && !pod.terminating
                    && pod.node.is_none()
                    && pod.role == Role::Executor
                    && self.now.saturating_sub(pod.created_at) >= timeout
            })
            .collect();
        for p in stuck {
            let a = self.pods[p].app;
            self.delete_pod(p, PodExit::Deleted);
            self.create_pod(a, Role::Executor);
        }
    }

    fn queue_usage(&mut self) -> (Vec<Resources>, Vec<Resources>) {
        while let Some(&a) = self.not_due.last()
            && self.apps[a].def.at.0 <= self.now
        {
            self.not_due.pop();
            self.due.insert(a);
        }
        // Done stays done (a resubmission is a new attempt of a Restarting application, never of a Done one).
        self.due.retain(|&a| self.apps[a].state != AppState::Done);
        let nq = self.queue_names.len();
        let mut allocated = vec![Resources::ZERO; nq];
        let mut pending = vec![Resources::ZERO; nq];
        for app in self.due.iter().map(|&a| &self.apps[a]) {
            let mut bound_exec = 0;
            let mut has_driver = false;
            for &p in &app.pods {
                let pod = &self.pods[p];
                if pod.node.is_some() && !pod.terminating {
                    allocated[app.queue] = allocated[app.queue].saturating_add(&pod.request);
                    bound_exec += u32::from(pod.role == Role::Executor);
                    has_driver |= pod.role == Role::Driver;
                } else if pod.node.is_none() {
                    pending[app.queue] = pending[app.queue].saturating_add(&pod.request);
                }
            }
            // Demand not yet expressed as pods: the driver and minimum executors of an application that waits.
            if !has_driver && app.state != AppState::Running {
                let missing = u64::from(app.def.min_executors.saturating_sub(bound_exec));
                pending[app.queue] = pending[app.queue].saturating_add(&app.executor_request.times(missing));
            }
        }
        (allocated, pending)
    }

    fn take_sample(&mut self) {
        let (allocated, pending) = self.queue_usage();
        let total = self.nodes.iter().fold(Resources::ZERO, |acc, n| acc.saturating_add(&n.allocatable));
        let inputs: Vec<ShareInput> = (0..self.queue_names.len())
            .map(|q| ShareInput {
                weight: self.queue_weights[q],
                capability: Resources::UNLIMITED,
                guarantee: Resources::ZERO,
                request: allocated[q].saturating_add(&pending[q]),
                parent: None,
            })
            .collect();
        let deserved = deserved_shares(&total, &inputs).unwrap_or_else(|_| vec![Resources::ZERO; inputs.len()]);
        let used = self.used.iter().fold(Resources::ZERO, |acc, u| acc.saturating_add(u));
        if let Some(prev) = self.samples.last() {
            let dt = u128::from(self.now - prev.at);
            let mut stranded_dollars_per_hour = 0.0;
            for a in self.partial_apps() {
                let held: u64 = self.apps[a]
                    .pods
                    .iter()
                    .filter(|&&p| self.pods[p].node.is_some())
                    .map(|&p| self.pods[p].request.get(CPU))
                    .sum();
                self.stranded_cpu_ms += u128::from(held) * dt;
                if let Some(cost) = &self.cost {
                    for &p in &self.apps[a].pods {
                        if let Some(n) = self.pods[p].node {
                            let alloc = &self.nodes[n].allocatable;
                            stranded_dollars_per_hour += cost.price[n]
                                * dominant_fraction(&self.pods[p].request, alloc)
                                * cost.attributed(n, &self.used[n], alloc).1;
                        }
                    }
                }
            }
            if let Some(cost) = &mut self.cost {
                cost.stranded += stranded_dollars_per_hour * dt as f64 / MS_PER_HOUR;
            }
        }
        self.samples.push(Sample { at: self.now, allocated, deserved, used });
    }

    fn report(&self, s: &Scenario) -> Report {
        let total = self.nodes.iter().fold(Resources::ZERO, |acc, n| acc.saturating_add(&n.allocatable));
        let first = self.apps.iter().map(|a| a.def.at.0).min().unwrap_or(0);
        let last = self.apps.iter().filter_map(|a| a.finished_at).max().unwrap_or(self.now).max(self.last_arrival);
        let busy: Vec<&Sample> = self.samples.iter().filter(|x| x.at >= first && x.at <= last).collect();
        let mean = |f: &dyn Fn(&Sample) -> f64| {
            if busy.is_empty() { 0.0 } else { busy.iter().map(|x| f(x)).sum::<f64>() / busy.len() as f64 }
        };
        let share = |r: &Resources| r.dominant_share(&total).min(1.0);
        let mut queues = Vec::new();
        for (q, name) in self.queue_names.iter().enumerate() {
            let apps: Vec<&App> = self.apps.iter().filter(|a| a.queue == q).collect();
            let mut waits: Vec<f64> = apps
                .iter()
                .filter_map(|a| a.admitted_at.map(|t| (t.saturating_sub(a.def.at.0)) as f64 / 1000.0))
                .collect();
            waits.sort_by(f64::total_cmp);
            queues.push(QueueReport {
                name: name.clone(),
                weight: self.queue_weights[q],
                deserved_share: mean(&|x| share(&x.deserved[q])),
                mean_share: mean(&|x| share(&x.allocated[q])),
                gangs_submitted: apps.len() as u64,
                gangs_admitted: apps.iter().filter(|a| a.admitted_at.is_some()).count() as u64,
                gangs_completed: apps.iter().filter(|a| a.state == AppState::Done).count() as u64,
                admission_wait_p50_s: percentile(&waits, 0.50),
                admission_wait_p99_s: percentile(&waits, 0.99),
                cost: None,
            });
        }
        // The cost accrued up to the end: each node's last interval is still open.
        let cost = self.cost.clone().map(|mut c| {
            for n in 0..self.nodes.len() {
                c.accrue(n, self.now, &self.used[n], &self.nodes[n].allocatable);
            }
            c
        });
        for (q, queue) in queues.iter_mut().enumerate() {
            queue.cost = cost.as_ref().map(|c| c.queue[q]);
        }
        let partial = self.apps.iter().filter(|a| a.ever_partial).count() as u64;
        let still_partial = self.partial_apps();
        let deadlocked =
            self.apps.iter().enumerate().filter(|(a, app)| app.ever_deadlocked || still_partial.contains(a)).count()
                as u64;
        let series = self
            .queue_names
            .iter()
            .enumerate()
            .map(|(q, name)| Series {
                name: name.clone(),
                points: self.samples.iter().map(|x| (x.at as f64 / 3_600_000.0, share(&x.allocated[q]))).collect(),
            })
            .collect();
        Report {
            scenario: s.name.clone(),
            mode: match self.mode {
                Mode::Gang => "gang".into(),
                Mode::PerPod => "per-pod".into(),
            },
            seed: s.seed,
            simulated_hours: self.now as f64 / 3_600_000.0,
            nodes: self.nodes.len() as u64,
            queues,
            utilisation_cpu: mean(&|x| x.used.get(CPU) as f64 / total.get(CPU).max(1) as f64),
            utilisation_memory: mean(&|x| x.used.get(MEMORY) as f64 / total.get(MEMORY).max(1) as f64),
            gangs_submitted: self.apps.len() as u64,
            gangs_completed: self.apps.iter().filter(|a| a.state == AppState::Done).count() as u64,
            partially_started_gangs: partial,
            deadlocked_gangs: deadlocked,
            stranded_cpu_core_hours: self.stranded_cpu_ms as f64 / 1000.0 / 3_600_000.0,
            evictions: self.evictions,
            reclaimed_gangs: self.apps.iter().map(|a| u64::from(a.reclaimed)).sum(),
            cost_total: cost.as_ref().map(|c| c.price.iter().sum::<f64>() * self.now as f64 / MS_PER_HOUR),
            cost_idle: cost.as_ref().map(|c| c.idle),
            cost_stranded: cost.as_ref().map(|c| c.stranded),
            series,
            resources: self.names.clone(),
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}
