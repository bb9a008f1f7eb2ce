//! The index: Kubernetes objects in, core updates out.
//!
//! Watch events (apply / delete) for Nodes, Pods, PodGroups, Queues and PriorityClasses are turned into changes
//! of the core's [`Cluster`], with Kubernetes identities (names, UIDs) mapped to the core's dense ids. Nothing
//! here talks to the API server, so all of it is tested by feeding objects in. What the index needs done in the
//! cluster (create an automatic PodGroup for a Spark driver, create the default Queue, report a malformed
//! object) it queues as [`ClusterWrite`]s for the controller.
//!
//! Pod to gang (design.md): label `muster.dev/pod-group`, Volcano's annotation `scheduling.k8s.io/group-name`,
//! Spark's `spark-app-selector` (a driver with no PodGroup becomes a gang of the driver and the minimum
//! executors its annotations declare, and muster creates that PodGroup), otherwise a gang of one. A pod whose
//! PodGroup does not exist yet waits, with that as its reason.

pub mod convert;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{self, PodGroup, PodGroupPhase, PodGroupStatus, Queue, names};
use crate::core::{
    Cluster, GangId, GangPhase, GangSpec, Millis, NodeId, PodExit, PodId, PodSpec, QueueId, QueueSpec, TemplateSpec,
};
use convert::spark::{SparkConfFiles, SparkConfSources};
use convert::{ConvertError, GangSource};

/// Names the index needs from muster's configuration.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    /// Pods with this `spec.schedulerName` are muster's.
    pub scheduler_name: String,
    /// Queue of gangs that name none.
    pub default_queue: String,
}

/// A Kubernetes object, as named in logs and Events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: &'static str,
    /// Set for objects that are not what `kind` names by default: Volcano's Queue and PodGroup.
    pub api_version: Option<&'static str>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

/// A write to the cluster the index needs, made by the controller (an Event, a PodGroup, a Queue).
#[derive(Debug, Clone)]
pub enum ClusterWrite {
    /// A malformed object was skipped: log it and record an Event on it.
    Problem { object: ObjectRef, reason: &'static str, message: String },
    /// Create this automatic PodGroup (a Spark driver's).
    CreatePodGroup(Box<PodGroup>),
    /// Create this Queue (the default queue, first used before anyone created it).
    CreateQueue(Box<Queue>),
    /// Read this Spark driver's configuration ConfigMaps and hand them back with [`Index::apply_spark_conf`].
    FetchSparkConf { namespace: String, driver: String, driver_uid: String, sources: SparkConfSources },
}

/// What the index knows of a Spark driver's configuration (drivers that mount one).
#[derive(Debug, Clone)]
enum SparkConfState {
    /// Asked for; the driver waits for it.
    Fetching(Arc<Pod>),
    Loaded(Arc<SparkConfFiles>),
    /// Could not be read: the reason, shown on the driver until it is deleted.
    Unreadable(String),
}

/// A gang's identity: its PodGroup (`namespace/name`) or, for a gang of one, its pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GangKey {
    PodGroup { namespace: String, name: String },
    Pod { namespace: String, name: String },
}

impl GangKey {
    /// `namespace/name`, the gang's name in the core and in logs.
    pub fn qualified_name(&self) -> String {
        let (GangKey::PodGroup { namespace, name } | GangKey::Pod { namespace, name }) = self;
        format!("{namespace}/{name}")
    }
}

impl std::fmt::Display for GangKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GangKey::PodGroup { namespace, name } => write!(f, "podgroup {namespace}/{name}"),
            GangKey::Pod { namespace, name } => write!(f, "pod {namespace}/{name}"),
        }
    }
}

/// A gang the index knows, in the core or not (yet).
#[derive(Debug, Clone)]
pub struct GangEntry {
    pub key: GangKey,
    /// The gang in the core; `None` while it waits for something outside muster (its queue, its pods).
    pub id: Option<GangId>,
    pub podgroup: Option<Arc<PodGroup>>,
    /// Spark driver's automatic gang: the driver pod's UID (the gang goes when the driver goes).
    pub spark_driver: Option<String>,
    /// Why it is not in the core, when it is not.
    pub waiting: Option<String>,
    /// Member pods (UIDs) that wait for this gang to exist, with their objects to re-resolve them.
    pub waiting_pods: BTreeMap<String, Arc<Pod>>,
    /// Succeeded / failed members seen (for PodGroup status).
    pub succeeded: u32,
    pub failed: u32,
}

impl GangEntry {
    fn new(key: GangKey) -> GangEntry {
        GangEntry {
            key,
            id: None,
            podgroup: None,
            spark_driver: None,
            waiting: None,
            waiting_pods: BTreeMap::new(),
            succeeded: 0,
            failed: 0,
        }
    }
}

/// What the index keeps per pod (not the object: 100,000 pods must fit in little memory).
#[derive(Debug, Clone)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    pub id: Option<PodId>,
    pub gang: Option<GangKey>,
    pub node: Option<String>,
    pub managed: bool,
    pub request: crate::core::Resources,
    pub priority: i32,
    /// Why this pod of muster's cannot be placed although it is not in a gang yet.
    pub waiting: Option<String>,
    /// It carries muster's scheduling gate ([`api::names::ADMISSION_GATE`]): kube-scheduler ignores it until
    /// muster removes the gate.
    pub gated: bool,
    /// It carries Karpenter's `karpenter.sh/do-not-disrupt` annotation (any value: a user's choice is kept).
    pub disruption_annotated: bool,
}

/// The whole model behind `muster serve`.
#[derive(Debug)]
pub struct Index {
    pub config: IndexConfig,
    pub core: Cluster,
    nodes: HashMap<String, Arc<Node>>,
    pods: HashMap<String, PodEntry>,
    /// UIDs of the pods whose schedulerName is muster's (a small part of all pods, which count as usage).
    managed_pods: HashSet<String>,
    pods_by_name: HashMap<(String, String), String>,
    /// Pods bound to a node the index has not seen yet, by node name.
    pods_on_unknown_nodes: HashMap<String, BTreeSet<String>>,
    gangs: BTreeMap<GangKey, GangEntry>,
    gang_keys: HashMap<GangId, GangKey>,
    queues: HashMap<String, Arc<Queue>>,
    priority_classes: HashMap<String, i32>,
    writes: Vec<ClusterWrite>,
    /// Spark drivers' configurations, by driver UID.
    spark_confs: HashMap<String, SparkConfState>,
    /// Queue CRs already asked for, so a missing default queue is requested once.
    requested_queues: BTreeSet<String>,
    /// The caller's clock (milliseconds since the Unix epoch), set with [`Index::set_now`].
    now: Millis,
    /// Until [`Index::finish_initial_sync`], recorded admissions are noted here instead of restored: a record
    /// can only be restored exactly once every node and every bound member is known.
    deferred_restores: Option<Vec<GangKey>>,
}

/// What muster keeps of a Node (to parse it again when a new extended resource appears): the fields that
/// matter for placement, without managedFields, images, conditions and the rest (most of a real Node's size).
fn slim_node(node: &Node) -> Arc<Node> {
    use k8s_openapi::api::core::v1::{NodeSpec as K8sNodeSpec, NodeStatus};
    Arc::new(Node {
        metadata: ObjectMeta {
            name: node.metadata.name.clone(),
            uid: node.metadata.uid.clone(),
            labels: node.metadata.labels.clone(),
            ..Default::default()
        },
        spec: node.spec.as_ref().map(|s| K8sNodeSpec {
            taints: s.taints.clone(),
            unschedulable: s.unschedulable,
            ..Default::default()
        }),
        status: node.status.as_ref().map(|s| NodeStatus {
            allocatable: s.allocatable.clone(),
            capacity: s.capacity.clone(),
            ..Default::default()
        }),
    })
}

fn ms(ts: Option<&Timestamp>) -> Millis {
    ts.map(|t| t.as_millisecond().max(0) as Millis).unwrap_or(0)
}

fn object_ref(kind: &'static str, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        kind,
        api_version: api::volcano::is_volcano(meta).then_some(api::volcano::API_VERSION),
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
    }
}

impl Index {
    pub fn new(config: IndexConfig) -> Index {
        Index {
            config,
            core: Cluster::new(),
            nodes: HashMap::new(),
            pods: HashMap::new(),
            managed_pods: HashSet::new(),
            pods_by_name: HashMap::new(),
            pods_on_unknown_nodes: HashMap::new(),
            gangs: BTreeMap::new(),
            gang_keys: HashMap::new(),
            queues: HashMap::new(),
            priority_classes: HashMap::new(),
            writes: Vec::new(),
            spark_confs: HashMap::new(),
            requested_queues: BTreeSet::new(),
            now: 0,
            deferred_restores: Some(Vec::new()),
        }
    }

    /// The initial lists of every kind have been applied: restores the admissions recorded in PodGroup status
    /// (by an earlier muster, before a restart or a failover), now that bound members count. Returns the gangs
    /// restored with the admission time of their record, which is durable by definition.
    pub fn finish_initial_sync(&mut self) -> Vec<(GangKey, Millis)> {
        let now = self.now;
        let mut restored = Vec::new();
        for key in self.deferred_restores.take().unwrap_or_default() {
            let Some(entry) = self.gangs.get(&key) else { continue };
            let (Some(id), Some(pg)) = (entry.id, entry.podgroup.clone()) else { continue };
            if entry.succeeded > 0 {
                continue; // its members completed while muster was away: nothing to hold for it
            }
            if let Some(at) = self.restore(id, &pg, now) {
                restored.push((key, at));
            }
        }
        restored
    }

    /// Whether [`Index::finish_initial_sync`] has run.
    pub fn is_synced(&self) -> bool {
        self.deferred_restores.is_none()
    }

    /// Advances the clock that stamps binds and removals (time is passed in; the index reads no clock).
    pub fn set_now(&mut self, now: Millis) {
        self.now = self.now.max(now);
    }

    /// The writes the index needs, since the last call.
    pub fn take_writes(&mut self) -> Vec<ClusterWrite> {
        std::mem::take(&mut self.writes)
    }

    fn problem(&mut self, object: ObjectRef, reason: &'static str, message: String) {
        self.writes.push(ClusterWrite::Problem { object, reason, message });
    }

    pub fn pod(&self, uid: &str) -> Option<&PodEntry> {
        self.pods.get(uid)
    }

    /// The pods of muster's (its schedulerName), by UID.
    pub fn managed_pods(&self) -> impl Iterator<Item = (&String, &PodEntry)> {
        self.managed_pods.iter().filter_map(|uid| self.pods.get_key_value(uid))
    }

    pub fn pod_uid(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods_by_name.get(&(namespace.to_string(), name.to_string())).map(String::as_str)
    }

    /// A Queue object as last seen by the watch.
    /// A Volcano Queue was deleted: forgotten unless muster's Queue of that name is the one in use.
    pub fn delete_volcano_queue(&mut self, name: &str) {
        if self.queue_is_volcano(name) {
            self.delete_queue(name);
        }
    }

    /// A Volcano PodGroup was deleted: forgotten unless muster's PodGroup of that name is the one in use.
    pub fn delete_volcano_podgroup(&mut self, namespace: &str, name: &str) {
        let key = GangKey::PodGroup { namespace: namespace.to_string(), name: name.to_string() };
        if self
            .gangs
            .get(&key)
            .and_then(|g| g.podgroup.as_ref())
            .is_some_and(|pg| api::volcano::is_volcano(&pg.metadata))
        {
            self.delete_podgroup(namespace, name);
        }
    }

    /// Whether the Queue in use under `name` is Volcano's (its status is written there, in Volcano's shape).
    pub fn queue_is_volcano(&self, name: &str) -> bool {
        self.queues.get(name).is_some_and(|q| api::volcano::is_volcano(&q.metadata))
    }

    /// Whether the PodGroup in use under `namespace/name` is Volcano's.
    pub fn podgroup_is_volcano(&self, namespace: &str, name: &str) -> bool {
        let key = GangKey::PodGroup { namespace: namespace.to_string(), name: name.to_string() };
        self.gangs.get(&key).and_then(|g| g.podgroup.as_ref()).is_some_and(|pg| api::volcano::is_volcano(&pg.metadata))
    }

    /// Whether muster made a gang of the PodGroup `namespace/name` (its pods are muster's).
    pub fn podgroup_has_gang(&self, namespace: &str, name: &str) -> bool {
        let key = GangKey::PodGroup { namespace: namespace.to_string(), name: name.to_string() };
        self.gangs.get(&key).is_some_and(|g| g.id.is_some())
    }

    /// The names of the queues that hold at least one of muster's gangs.
    pub fn queues_with_gangs(&self) -> HashSet<String> {
        self.core.gangs().filter_map(|(_, g)| self.core.queue(g.spec.queue).map(|q| q.spec.name.clone())).collect()
    }

    fn podgroup_is_musters(&self, key: &GangKey) -> bool {
        self.gangs.get(key).and_then(|g| g.podgroup.as_ref()).is_some_and(|pg| !api::volcano::is_volcano(&pg.metadata))
    }

    pub fn queue_object(&self, name: &str) -> Option<&Arc<Queue>> {
        self.queues.get(name)
    }

    pub fn gang(&self, key: &GangKey) -> Option<&GangEntry> {
        self.gangs.get(key)
    }

    pub fn gangs(&self) -> impl Iterator<Item = &GangEntry> {
        self.gangs.values()
    }

    pub fn gang_key(&self, id: GangId) -> Option<&GangKey> {
        self.gang_keys.get(&id)
    }

    pub fn node_name(&self, id: NodeId) -> Option<&str> {
        self.core.node(id).map(|n| n.spec.name.as_str())
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Counts of cached objects by kind (for metrics).
    pub fn cache_sizes(&self) -> [(&'static str, usize); 4] {
        [
            ("nodes", self.nodes.len()),
            ("pods", self.pods.len()),
            ("gangs", self.gangs.len()),
            ("queues", self.queues.len()),
        ]
    }

    // ----- nodes -----

    pub fn apply_node(&mut self, node: Arc<Node>) {
        let node = slim_node(&node);
        let name = node.name_any();
        let spec = match convert::node_spec(&node, &self.core.resources) {
            Ok(spec) => spec,
            Err(e) => return self.problem(object_ref("Node", &node.metadata), "MalformedNode", e.to_string()),
        };
        let known = self.core.node_id(&name);
        match known {
            Some(id) => {
                let _ = self.core.update_node(id, spec);
            }
            None => {
                let _ = self.core.add_node(spec);
            }
        }
        self.nodes.insert(name.clone(), node);
        if known.is_none() {
            // Pods that were bound to this node before we saw it now count.
            for uid in self.pods_on_unknown_nodes.remove(&name).unwrap_or_default() {
                self.rebind_pod(&uid);
            }
        }
    }

    pub fn delete_node(&mut self, name: &str) {
        self.nodes.remove(name);
        if let Some(id) = self.core.node_id(name) {
            let _ = self.core.remove_node(id);
        }
    }

    /// Re-parses every node (a new extended resource became known, so allocatable gains a slot).
    fn reparse_nodes(&mut self) {
        let nodes: Vec<Arc<Node>> = self.nodes.values().cloned().collect();
        for n in nodes {
            self.apply_node(n);
        }
    }

    // ----- queues and priority classes -----

    pub fn apply_queue(&mut self, queue: Arc<Queue>) {
        let name = queue.name_any();
        if api::volcano::is_volcano(&queue.metadata)
            && self.queues.get(&name).is_some_and(|q| !api::volcano::is_volcano(&q.metadata))
        {
            let message = format!("muster's Queue {name} exists too; it is the one muster uses");
            return self.problem(object_ref("Queue", &queue.metadata), "ShadowedByMusterQueue", message);
        }
        match convert::queue_spec(&queue, &mut self.core.resources) {
            Ok(spec) => {
                self.core.upsert_queue(spec);
                self.queues.insert(name.clone(), queue);
                self.retry_gangs_waiting_for_queue(&name);
            }
            Err(e) => self.problem(object_ref("Queue", &queue.metadata), "MalformedQueue", e.to_string()),
        }
    }

    pub fn delete_queue(&mut self, name: &str) {
        self.queues.remove(name);
        if let Some(id) = self.core.queue_id(name)
            && self.core.remove_queue(id).is_err()
        {
            // Gangs still live in it: it admits nothing new until they are gone.
            let mut spec = self.core.queue(id).expect("live queue").spec.clone();
            spec.open = false;
            self.core.upsert_queue(spec);
        }
    }

    pub fn apply_priority_class(&mut self, pc: &PriorityClass) {
        if let Some(name) = &pc.metadata.name {
            self.priority_classes.insert(name.clone(), pc.value);
        }
    }

    pub fn delete_priority_class(&mut self, name: &str) {
        self.priority_classes.remove(name);
    }

    /// The core queue for `name`, creating the default queue on first use.
    fn queue_for(&mut self, name: &str) -> Option<QueueId> {
        if let Some(id) = self.core.queue_id(name) {
            return Some(id);
        }
        if name != self.config.default_queue {
            return None;
        }
        let id = self.core.upsert_queue(QueueSpec::new(name, 1));
        if self.requested_queues.insert(name.to_string()) && !self.queues.contains_key(name) {
            let q = Queue::new(name, api::QueueSpec::default());
            self.writes.push(ClusterWrite::CreateQueue(Box::new(q)));
        }
        Some(id)
    }

    fn retry_gangs_waiting_for_queue(&mut self, queue: &str) {
        let waiting: Vec<Arc<PodGroup>> = self
            .gangs
            .values()
            .filter(|g| g.id.is_none())
            .filter_map(|g| g.podgroup.clone())
            .filter(|pg| self.queue_name_of(pg) == queue)
            .collect();
        for pg in waiting {
            self.apply_podgroup(pg);
        }
    }

    fn queue_name_of(&self, pg: &PodGroup) -> String {
        if pg.spec.queue.is_empty() { self.config.default_queue.clone() } else { pg.spec.queue.clone() }
    }

    /// The queue a pod names (muster's annotation, else Volcano's), else the default queue.
    fn annotated_queue(&self, meta: &ObjectMeta) -> String {
        convert::queue_annotation(meta).map_or_else(|| self.config.default_queue.clone(), str::to_string)
    }

    /// The core's spec of a gang, with its queue resolved (the default queue is created on first use); the
    /// reason it must wait when the queue does not exist.
    fn gang_spec(
        &mut self,
        key: &GangKey,
        queue_name: &str,
        priority: i32,
        meta: &ObjectMeta,
        templates: Vec<TemplateSpec>,
    ) -> Result<GangSpec, String> {
        let queue = self.queue_for(queue_name).ok_or_else(|| format!("queue {queue_name:?} does not exist"))?;
        let created = ms(meta.creation_timestamp.as_ref().map(|t| &t.0));
        Ok(GangSpec { name: key.qualified_name(), queue, priority, created, templates })
    }

    /// [`Index::gang_spec`] of a PodGroup: its queue and priority class.
    fn podgroup_gang_spec(
        &mut self,
        key: &GangKey,
        pg: &PodGroup,
        templates: Vec<TemplateSpec>,
    ) -> Result<GangSpec, String> {
        let queue_name = self.queue_name_of(pg);
        let priority = self.priority_of(pg.spec.priority_class_name.as_deref(), None);
        self.gang_spec(key, &queue_name, priority, &pg.metadata, templates)
    }

    fn priority_of(&self, class: Option<&str>, explicit: Option<i32>) -> i32 {
        explicit.or_else(|| class.and_then(|c| self.priority_classes.get(c).copied())).unwrap_or(0)
    }

    // ----- podgroups -----

    /// A PodGroup was created or changed.
    pub fn apply_podgroup(&mut self, pg: Arc<PodGroup>) {
        let now = self.now;
        let namespace = pg.namespace().unwrap_or_default();
        let name = pg.name_any();
        let key = GangKey::PodGroup { namespace: namespace.clone(), name: name.clone() };
        if api::volcano::is_volcano(&pg.metadata) && self.podgroup_is_musters(&key) {
            let message = format!("muster's PodGroup {namespace}/{name} exists too; it is the one muster uses");
            return self.problem(object_ref("PodGroup", &pg.metadata), "ShadowedByMusterPodGroup", message);
        }
        let entry = self.gangs.entry(key.clone()).or_insert_with(|| GangEntry::new(key.clone()));
        entry.podgroup = Some(pg.clone());
        if entry.spark_driver.is_some() {
            // muster's own PodGroup for a Spark driver, echoed back by the watch: the gang is already defined.
            return;
        }
        let templates = match convert::podgroup_templates(&pg, &mut self.core.resources) {
            Ok(t) => t,
            Err(e) => {
                let message = e.to_string();
                self.gangs.get_mut(&key).expect("just inserted").waiting = Some(message.clone());
                return self.problem(object_ref("PodGroup", &pg.metadata), "MalformedPodGroup", message);
            }
        };
        let existing = self.gangs[&key].id;
        if templates.is_empty() {
            // Volcano style: no templates; the shapes come from the first minMember pods (see resolve_gang).
            let entry = self.gangs.get_mut(&key).expect("entry");
            if existing.is_none() {
                let need = pg.spec.min_member.unwrap_or(1).max(1);
                entry.waiting = Some(format!(
                    "waiting for {need} member pods to exist (the PodGroup declares no memberTemplates, so their shapes \
                     come from the pods)"
                ));
            }
            self.retry_waiting_pods(&key);
            return;
        }
        let spec = match self.podgroup_gang_spec(&key, &pg, templates) {
            Ok(spec) => spec,
            Err(waiting) => {
                self.gangs.get_mut(&key).expect("entry").waiting = Some(waiting);
                return;
            }
        };
        match existing {
            Some(id) => {
                if let Err(e) = self.core.update_gang(id, spec) {
                    self.problem(object_ref("PodGroup", &pg.metadata), "PodGroupChangeRejected", e.to_string());
                }
            }
            None => match self.core.add_gang(spec) {
                Ok(id) => {
                    let entry = self.gangs.get_mut(&key).expect("entry");
                    entry.id = Some(id);
                    entry.waiting = None;
                    self.gang_keys.insert(id, key.clone());
                    match self.deferred_restores.as_mut() {
                        Some(later) => later.push(key.clone()),
                        None => {
                            // A PodGroup first seen after the initial sync with an admission recorded (written
                            // by a muster that admitted it during a watch gap): honour it.
                            let _ = self.restore(id, &pg, now);
                        }
                    }
                    self.retry_waiting_pods(&key);
                }
                Err(e) => {
                    let message = e.to_string();
                    self.gangs.get_mut(&key).expect("entry").waiting = Some(message.clone());
                    self.problem(object_ref("PodGroup", &pg.metadata), "MalformedPodGroup", message);
                }
            },
        }
    }

    /// Restores the reservations a previous muster recorded in the PodGroup's status (restart, failover).
    /// Returns the recorded admission time when there was an admission to restore.
    fn restore(&mut self, id: GangId, pg: &PodGroup, now: Millis) -> Option<Millis> {
        let (slots, admitted_at) = self.recorded_admission(id, pg.metadata.generation, pg.status.as_ref()?)?;
        let restored = self.core.restore_admission(id, &slots, admitted_at, now).ok().map(|()| admitted_at);
        // After restoring (the record's own capacity is its to restore): what could not be restored where it was
        // recorded stays claimed by the record until a write gives it up.
        let _ = self.core.set_recorded(id, slots);
        restored
    }

    /// A PodGroup status write of muster's landed: from now on that is what a restart would restore, so capacity
    /// it still names stays out of others' reach until a later write gives it up
    /// ([`crate::core::Cluster::set_recorded`]).
    pub fn note_status_written(&mut self, key: &GangKey, status: &serde_json::Value) {
        let Some(entry) = self.gangs.get(key) else { return };
        let (Some(id), Some(pg)) = (entry.id, entry.podgroup.as_ref()) else { return };
        let generation = pg.metadata.generation;
        // muster's own serialisation of a PodGroupStatus: it parses back.
        let Ok(status) = serde_json::from_value::<PodGroupStatus>(status.clone()) else { return };
        let slots = self.recorded_admission(id, generation, &status).map(|(slots, _)| slots).unwrap_or_default();
        let _ = self.core.set_recorded(id, slots);
    }

    /// The admission a PodGroup status records for gang `id`: its slots as (template, node) and when it was
    /// admitted. None unless the status says admitted, for the current generation, with an admission time.
    fn recorded_admission(
        &self,
        id: GangId,
        generation: Option<i64>,
        status: &PodGroupStatus,
    ) -> Option<(Vec<(u16, NodeId)>, Millis)> {
        let admitted = matches!(status.phase, Some(PodGroupPhase::Inqueue) | Some(PodGroupPhase::Running));
        let current = status.observed_generation.is_none() || status.observed_generation == generation;
        if !admitted || !current || status.admitted_at.is_none() {
            return None;
        }
        let gang = self.core.gang(id)?;
        let mut slots = Vec::new();
        // A status without a placement (written by an older muster) records the reservations alone.
        let placed = if status.placement.is_empty() { &status.reservations } else { &status.placement };
        for r in placed {
            let template = gang.spec.templates.iter().position(|t| t.name == r.template);
            if let (Some(t), Some(node)) = (template, self.core.node_id(&r.node)) {
                slots.extend(std::iter::repeat_n((t as u16, node), r.count.max(0) as usize));
            }
        }
        Some((slots, ms(status.admitted_at.as_ref().map(|t| &t.0))))
    }

    pub fn delete_podgroup(&mut self, namespace: &str, name: &str) {
        let key = GangKey::PodGroup { namespace: namespace.to_string(), name: name.to_string() };
        let Some(entry) = self.gangs.get_mut(&key) else { return };
        if entry.spark_driver.is_some() {
            // An automatic gang lives as long as its driver; its PodGroup is only its public face.
            entry.podgroup = None;
            return;
        }
        let entry = self.gangs.remove(&key).expect("present");
        if let Some(id) = entry.id {
            self.gang_keys.remove(&id);
            let members: Vec<PodId> = self.core.gang(id).map(|g| g.pods.clone()).unwrap_or_default();
            let _ = self.core.remove_gang(id);
            // Its pods are no longer gang members; pending ones wait for a PodGroup of that name again.
            for p in members {
                if let Some(uid) = self.uid_of(p) {
                    let e = self.pods.get_mut(&uid).expect("indexed pod");
                    e.gang = None;
                    e.resource_version.clear(); // re-resolve at the next sight of the pod
                    if e.node.is_none() {
                        e.waiting = Some(format!("PodGroup {namespace}/{name} was deleted"));
                    }
                }
            }
        }
    }

    /// The UID of the pod behind a core pod id.
    pub fn uid_of(&self, pod: PodId) -> Option<String> {
        let p = self.core.pod(pod)?;
        let (ns, name) = p.spec.name.split_once('/')?;
        self.pods_by_name.get(&(ns.to_string(), name.to_string())).cloned()
    }

    fn retry_waiting_pods(&mut self, key: &GangKey) {
        let waiting = std::mem::take(&mut self.gangs.get_mut(key).expect("entry").waiting_pods);
        for (_, pod) in waiting {
            self.reapply(pod);
        }
    }

    /// Applies a pod again although its resourceVersion is unchanged (what it depends on changed).
    fn reapply(&mut self, pod: Arc<Pod>) {
        if let Some(e) = pod.metadata.uid.as_ref().and_then(|uid| self.pods.get_mut(uid)) {
            e.resource_version.clear();
        }
        self.apply_pod(pod);
    }

    // ----- pods -----

    /// A pod was created or changed (as the watch reports it: nothing else ever writes pods into the model).
    pub fn apply_pod(&mut self, pod: Arc<Pod>) {
        let now = self.now;
        let Some(uid) = pod.metadata.uid.clone() else {
            return self.problem(object_ref("Pod", &pod.metadata), "MalformedPod", "pod has no metadata.uid".into());
        };
        let rv = pod.metadata.resource_version.clone().unwrap_or_default();
        if self.pods.get(&uid).is_some_and(|e| !rv.is_empty() && e.resource_version == rv) {
            return; // nothing new
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if phase == "Succeeded" || phase == "Failed" {
            let exit = if phase == "Succeeded" { PodExit::Succeeded } else { PodExit::Failed };
            return self.remove_pod(&uid, exit, now);
        }
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
        let managed =
            pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()) == Some(self.config.scheduler_name.as_str());
        if node.is_none() && !managed {
            // Pending pods of other schedulers use nothing yet.
            return self.remove_pod(&uid, PodExit::Deleted, now);
        }
        let known_resources = self.core.resources.len();
        let request = match convert::pod_requests(&pod, &mut self.core.resources) {
            Ok(r) => r,
            Err(e) => return self.malformed_pod(&pod, &uid, e),
        };
        let priority = self.priority_of(
            pod.spec.as_ref().and_then(|s| s.priority_class_name.as_deref()),
            pod.spec.as_ref().and_then(|s| s.priority),
        );
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let gated = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|gates| gates.iter().any(|g| g.name == api::names::ADMISSION_GATE));
        let disruption_annotated =
            pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(api::names::DO_NOT_DISRUPT));

        // Membership, for muster's own pods that are not yet bound or already in a gang.
        let (member, gang_key, waiting) = if managed {
            match self.resolve_gang(&pod, &uid, &request, priority) {
                Ok((id, t, key)) => (Some((id, t)), Some(key), None),
                Err(reason) => (None, None, reason),
            }
        } else {
            (None, None, None)
        };
        // A resource first named by this pod, or by the members its gang declares (a Spark driver's executors):
        // nodes were parsed without it.
        if self.core.resources.len() != known_resources {
            self.reparse_nodes();
        }

        let entry = self.pods.get(&uid).cloned();
        let core_id = entry.as_ref().and_then(|e| e.id);
        let node_id = node.as_deref().and_then(|n| self.core.node_id(n));
        if let Some(n) = node.as_deref()
            && node_id.is_none()
        {
            self.pods_on_unknown_nodes.entry(n.to_string()).or_default().insert(uid.clone());
        }
        let same_membership = core_id.and_then(|id| self.core.pod(id)).is_some_and(|p| p.spec.member == member);
        let id = match core_id {
            Some(id) if same_membership => {
                if let (Some(n), None) = (node_id, self.core.pod(id).and_then(|p| p.node)) {
                    let _ = self.core.bind_pod(id, n, now);
                }
                Some(id)
            }
            _ => {
                if let Some(old) = core_id {
                    let _ = self.core.remove_pod(old, PodExit::Deleted, now);
                }
                if member.is_none() && node_id.is_none() {
                    None // waiting outside the core, or bound to a node not seen yet
                } else {
                    let spec = PodSpec { name: format!("{namespace}/{name}"), request, member, priority };
                    self.core.add_pod(spec, node_id, now).ok()
                }
            }
        };
        if let (Some(id), true) = (id, terminating) {
            let _ = self.core.set_terminating(id);
        }
        if let Some(key) = &gang_key
            && let Some(g) = self.gangs.get(key).and_then(|g| g.id)
            && self.core.gang(g).is_some_and(|g| matches!(g.phase, GangPhase::Finished | GangPhase::Expired))
            && node.is_none()
        {
            // A new member of a finished gang: a new wave (a Job's next pods, say). Of an expired one: the members
            // it waited for have come after all, so it goes back in line.
            let _ = self.core.requeue(g);
        }
        self.pods_by_name.insert((namespace.clone(), name.clone()), uid.clone());
        if managed {
            self.managed_pods.insert(uid.clone());
        } else {
            self.managed_pods.remove(&uid);
        }
        self.pods.insert(
            uid,
            PodEntry {
                namespace,
                name,
                resource_version: rv,
                id,
                gang: gang_key,
                node,
                managed,
                request,
                priority,
                waiting,
                gated,
                disruption_annotated,
            },
        );
    }

    fn malformed_pod(&mut self, pod: &Pod, uid: &str, e: ConvertError) {
        self.problem(object_ref("Pod", &pod.metadata), "MalformedPod", e.to_string());
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        self.pods_by_name.insert((namespace.clone(), name.clone()), uid.to_string());
        self.managed_pods.insert(uid.to_string());
        self.pods.insert(
            uid.to_string(),
            PodEntry {
                namespace,
                name,
                resource_version: pod.metadata.resource_version.clone().unwrap_or_default(),
                id: None,
                gang: None,
                node: None,
                managed: true,
                request: crate::core::Resources::ZERO,
                priority: 0,
                gated: false,
                disruption_annotated: false,
                waiting: Some(format!("muster cannot read this pod: {e}")),
            },
        );
    }

    /// A pod bound to a node we had not seen: its usage counts now that the node exists.
    fn rebind_pod(&mut self, uid: &str) {
        let Some(e) = self.pods.get(uid).cloned() else { return };
        let Some(node) = e.node.as_deref().and_then(|n| self.core.node_id(n)) else { return };
        let now = self.now;
        match e.id {
            Some(id) => {
                let _ = self.core.bind_pod(id, node, now);
            }
            None => {
                let spec = PodSpec {
                    name: format!("{}/{}", e.namespace, e.name),
                    request: e.request,
                    member: None,
                    priority: e.priority,
                };
                let id = self.core.add_pod(spec, Some(node), now).ok();
                self.pods.get_mut(uid).expect("entry").id = id;
            }
        }
    }

    /// The gang and template of a pod of muster's, creating the gang when the pod defines it.
    fn resolve_gang(
        &mut self,
        pod: &Arc<Pod>,
        uid: &str,
        request: &crate::core::Resources,
        priority: i32,
    ) -> Result<(GangId, u16, GangKey), Option<String>> {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let Some(gref) = convert::gang_key(pod) else {
            return self.singleton(pod, &namespace, &name, request, priority);
        };
        let key = GangKey::PodGroup { namespace: gref.namespace.clone(), name: gref.name.clone() };
        if let Some(id) = self.gangs.get(&key).and_then(|g| g.id) {
            return self.member_of(id, pod, request).map(|t| (id, t, key));
        }
        let is_driver = pod.metadata.labels.as_ref().and_then(|l| l.get(names::SPARK_ROLE_LABEL)).map(String::as_str)
            == Some(names::SPARK_ROLE_DRIVER);
        let has_podgroup = self.gangs.get(&key).is_some_and(|g| g.podgroup.is_some());
        // A driver defines its automatic gang, also when the PodGroup muster made for it (to show why its
        // configuration cannot be used) exists already.
        let drives_it = self.gangs.get(&key).is_some_and(|g| g.spark_driver.as_deref() == Some(uid));
        if let (GangSource::SparkApp { .. }, true, false) = (&gref.source, is_driver, has_podgroup && !drives_it) {
            return self.spark_gang(pod, uid, key, priority);
        }
        // Volcano style PodGroup without templates: shapes from the first minMember pods.
        if let Some(pg) = self.gangs.get(&key).and_then(|g| g.podgroup.clone()) {
            return self.form_from_pods(pg, key, uid, pod);
        }
        let entry = self.gangs.entry(key.clone()).or_insert_with(|| GangEntry::new(key.clone()));
        entry.waiting_pods.insert(uid.to_string(), pod.clone());
        Err(Some(match gref.source {
            GangSource::SparkApp { .. } => {
                format!(
                    "waiting for the Spark driver of PodGroup {}/{} (or that PodGroup) to appear",
                    gref.namespace, gref.name
                )
            }
            _ => format!("PodGroup {}/{} does not exist yet", gref.namespace, gref.name),
        }))
    }

    /// Which template of gang `id` the pod is; members of an undeclared shape join as elastic members.
    fn member_of(&mut self, id: GangId, pod: &Pod, request: &crate::core::Resources) -> Result<u16, Option<String>> {
        let templates = &self.core.gang(id).expect("live gang").spec.templates;
        if let Some(t) = convert::template_for_pod(pod, request, templates) {
            return Ok(t);
        }
        let placement = convert::pod_placement(pod).map_err(|e| Some(e.to_string()))?;
        let role = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::SPARK_ROLE_LABEL).or_else(|| l.get(names::MEMBER_TEMPLATE_KEY)))
            .cloned()
            .unwrap_or_else(|| format!("extra-{}", templates.len()));
        // Same shape as an earlier undeclared member? Reuse its template.
        if let Some(t) = templates.iter().position(|t| t.min == 0 && t.request == *request && t.placement == placement)
        {
            return Ok(t as u16);
        }
        let spec = TemplateSpec { name: role, request: *request, placement, min: 0, max: u32::MAX };
        self.core.add_elastic_template(id, spec).map_err(|e| Some(e.to_string()))
    }

    fn singleton(
        &mut self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        request: &crate::core::Resources,
        priority: i32,
    ) -> Result<(GangId, u16, GangKey), Option<String>> {
        let key = GangKey::Pod { namespace: namespace.to_string(), name: name.to_string() };
        if let Some(id) = self.gangs.get(&key).and_then(|g| g.id) {
            return Ok((id, 0, key));
        }
        let placement = convert::pod_placement(pod).map_err(|e| Some(e.to_string()))?;
        let templates = vec![TemplateSpec { name: "pod".into(), request: *request, placement, min: 1, max: 1 }];
        let queue_name = self.annotated_queue(&pod.metadata);
        let spec = self.gang_spec(&key, &queue_name, priority, &pod.metadata, templates)?;
        let id = self.core.add_gang(spec).map_err(|e| Some(e.to_string()))?;
        self.gang_keys.insert(id, key.clone());
        self.gangs.insert(key.clone(), GangEntry { id: Some(id), ..GangEntry::new(key.clone()) });
        Ok((id, 0, key))
    }

    /// A Spark driver with no PodGroup: its automatic gang (driver + the executors its Spark configuration or
    /// annotations declare), and a request to create the PodGroup that shows it. A driver that mounts its
    /// configuration waits until muster has read it; one whose configuration cannot be used waits for ever, with
    /// the reason on the pod and in an Event (never a gang of the driver alone that its executors would miss).
    fn spark_gang(
        &mut self,
        driver: &Arc<Pod>,
        uid: &str,
        key: GangKey,
        priority: i32,
    ) -> Result<(GangId, u16, GangKey), Option<String>> {
        let GangKey::PodGroup { namespace, name } = key.clone() else { unreachable!("spark gangs are podgroups") };
        let conf = match convert::spark::spark_conf_sources(driver) {
            None => None,
            Some(sources) => match self.spark_confs.get(uid) {
                Some(SparkConfState::Loaded(files)) => Some(files.clone()),
                Some(SparkConfState::Unreadable(reason)) => {
                    let reason = reason.clone();
                    self.show_unusable_spark_conf(driver, uid, &key, &reason);
                    return Err(Some(reason));
                }
                Some(SparkConfState::Fetching(_)) | None => {
                    let waiting = format!(
                        "waiting for muster to read the Spark configuration (ConfigMap {namespace}/{}{})",
                        sources.properties,
                        sources.pod_template.as_deref().map(|t| format!(" and {namespace}/{t}")).unwrap_or_default()
                    );
                    if !self.spark_confs.contains_key(uid) {
                        self.writes.push(ClusterWrite::FetchSparkConf {
                            namespace: namespace.clone(),
                            driver: driver.name_any(),
                            driver_uid: uid.to_string(),
                            sources,
                        });
                    }
                    self.spark_confs.insert(uid.to_string(), SparkConfState::Fetching(driver.clone()));
                    return Err(Some(waiting));
                }
            },
        };
        let gang = convert::spark_driver_gang(driver, conf.as_deref(), &mut self.core.resources).map_err(|e| {
            let message = e.to_string();
            let reason = if conf.is_some() { "InvalidSparkConf" } else { "MalformedSparkDriver" };
            self.problem(object_ref("Pod", &driver.metadata), reason, message.clone());
            Some(message)
        });
        let gang = match gang {
            Ok(gang) => gang,
            Err(message) => {
                if conf.is_some() {
                    // The configuration does not change: keep the verdict instead of reporting it at every update.
                    let message = message.clone().unwrap_or_default();
                    self.spark_confs.insert(uid.to_string(), SparkConfState::Unreadable(message.clone()));
                    self.show_unusable_spark_conf(driver, uid, &key, &message);
                }
                return Err(message);
            }
        };
        if gang.templates.len() == 1 {
            // No configuration and no annotations: say so, once, rather than start the driver alone silently.
            self.problem(
                object_ref("Pod", &driver.metadata),
                "SparkExecutorsUnknown",
                format!(
                    "the driver mounts no Spark configuration ({} volume) and has no {} annotation: muster admits \
                     it alone and its executors as capacity allows",
                    convert::spark::SPARK_CONF_VOLUME,
                    names::MIN_EXECUTORS_ANNOTATION
                ),
            );
        }
        let queue_name = match (convert::queue_annotation(&driver.metadata), &gang.queue) {
            (Some(annotated), _) => annotated.to_string(),
            (None, Some(configured)) => configured.clone(),
            (None, None) => self.config.default_queue.clone(),
        };
        let spec = self.gang_spec(&key, &queue_name, priority, &driver.metadata, gang.templates.clone())?;
        let id = self.core.add_gang(spec).map_err(|e| Some(e.to_string()))?;
        self.gang_keys.insert(id, key.clone());
        let entry = self.gangs.entry(key.clone()).or_insert_with(|| GangEntry::new(key.clone()));
        entry.id = Some(id);
        entry.spark_driver = Some(uid.to_string());
        entry.waiting = None;
        let pg = self.spark_podgroup(driver, &namespace, &name, &queue_name, &gang);
        self.writes.push(ClusterWrite::CreatePodGroup(Box::new(pg)));
        self.retry_waiting_pods(&key);
        Ok((id, 0, key))
    }

    /// A driver whose configuration cannot be used gets its automatic PodGroup anyway, with no members declared,
    /// so that its status says why (condition `Waiting`) where users look; the driver stays out of the core.
    fn show_unusable_spark_conf(&mut self, driver: &Pod, uid: &str, key: &GangKey, reason: &str) {
        let GangKey::PodGroup { namespace, name } = key else { return };
        let entry = self.gangs.entry(key.clone()).or_insert_with(|| GangEntry::new(key.clone()));
        entry.waiting = Some(reason.to_string());
        if entry.spark_driver.as_deref() == Some(uid) {
            return; // asked for already
        }
        entry.spark_driver = Some(uid.to_string());
        let queue = self.annotated_queue(&driver.metadata);
        let shown = convert::SparkGang { templates: Vec::new(), executor_affinity: None, queue: None };
        let mut pg = self.spark_podgroup(driver, namespace, name, &queue, &shown);
        pg.spec.min_member = None;
        self.writes.push(ClusterWrite::CreatePodGroup(Box::new(pg)));
    }

    /// The answer to a [`ClusterWrite::FetchSparkConf`]: the configuration's text, or why it could not be read.
    /// The driver is resolved again with it.
    pub fn apply_spark_conf(&mut self, driver_uid: &str, conf: Result<SparkConfFiles, String>) {
        let Some(SparkConfState::Fetching(driver)) = self.spark_confs.get(driver_uid).cloned() else {
            return; // the driver is gone (or was answered already)
        };
        let state = match conf {
            Ok(files) => SparkConfState::Loaded(Arc::new(files)),
            Err(reason) => {
                let message = format!("its Spark configuration cannot be read: {reason}");
                self.problem(object_ref("Pod", &driver.metadata), "SparkConfUnreadable", message.clone());
                SparkConfState::Unreadable(message)
            }
        };
        self.spark_confs.insert(driver_uid.to_string(), state);
        self.reapply(driver);
    }

    /// The PodGroup muster creates for a Spark driver: owned by the driver, its templates spelled out.
    fn spark_podgroup(
        &self,
        driver: &Pod,
        namespace: &str,
        name: &str,
        queue: &str,
        gang: &convert::SparkGang,
    ) -> PodGroup {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let mut pg = PodGroup::new(name, api::PodGroupSpec::default());
        pg.metadata.namespace = Some(namespace.to_string());
        // The driver's labels (team, pipeline, the Spark app id...) name the application's PodGroup too: cost
        // attribution (`--cost-labels`) and label selectors find the gang as they find the driver.
        pg.metadata.labels = driver.metadata.labels.clone();
        pg.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: driver.name_any(),
            uid: driver.uid().unwrap_or_default(),
            controller: Some(false),
            block_owner_deletion: None,
        }]);
        pg.spec.queue = queue.to_string();
        pg.spec.min_member = Some(gang.templates.iter().map(|t| t.min as i32).sum());
        pg.spec.member_templates = gang
            .templates
            .iter()
            .map(|t| api::MemberTemplate {
                name: t.name.clone(),
                min_member: t.min as i32,
                max_member: (t.max != u32::MAX).then_some(t.max as i32),
                resources: self
                    .core
                    .resources
                    .render(&t.request)
                    .into_iter()
                    .filter(|(k, _)| k != "pods")
                    .map(|(k, v)| (k, k8s_openapi::apimachinery::pkg::api::resource::Quantity(v)))
                    .collect(),
                node_selector: t.placement.node_selector.clone(),
                tolerations: convert::tolerations_to_k8s(&t.placement.tolerations),
                affinity: (t.name == convert::SPARK_EXECUTOR_TEMPLATE)
                    .then(|| gang.executor_affinity.clone())
                    .flatten(),
            })
            .collect();
        pg
    }

    /// Volcano-style PodGroup (no memberTemplates): once minMember pods exist (and, for each task its
    /// `minTaskMember` names, that many pods with the task's `volcano.sh/task-spec` annotation), their shapes
    /// become the templates: one per task, else one per distinct shape.
    fn form_from_pods(
        &mut self,
        pg: Arc<PodGroup>,
        key: GangKey,
        uid: &str,
        pod: &Arc<Pod>,
    ) -> Result<(GangId, u16, GangKey), Option<String>> {
        let need = pg.spec.min_member.unwrap_or(1).max(1) as usize;
        let entry = self.gangs.get_mut(&key).expect("entry");
        entry.waiting_pods.insert(uid.to_string(), pod.clone());
        let task_of =
            |p: &Pod| p.metadata.annotations.as_ref().and_then(|a| a.get(api::volcano::TASK_SPEC_ANNOTATION)).cloned();
        let mut per_task: BTreeMap<String, usize> = BTreeMap::new();
        for p in entry.waiting_pods.values() {
            if let Some(task) = task_of(p) {
                *per_task.entry(task).or_default() += 1;
            }
        }
        let short_tasks: Vec<String> = pg
            .spec
            .min_task_member
            .iter()
            .filter(|(task, min)| per_task.get(*task).copied().unwrap_or(0) < (**min).max(0) as usize)
            .map(|(task, min)| format!("{task} ({} of {min})", per_task.get(task).copied().unwrap_or(0)))
            .collect();
        if entry.waiting_pods.len() < need || !short_tasks.is_empty() {
            let have = entry.waiting_pods.len();
            let tasks = if short_tasks.is_empty() {
                String::new()
            } else {
                format!("; tasks short of minTaskMember: {}", short_tasks.join(", "))
            };
            return Err(Some(format!(
                "{have} of minMember {need} pods exist{tasks} (the PodGroup declares no memberTemplates, so muster \
                 learns the members' shapes from the pods)"
            )));
        }
        let mut pods: Vec<Arc<Pod>> = entry.waiting_pods.values().cloned().collect();
        // Pods of the tasks minTaskMember names first, so that their minimums are met from the pods counted.
        pods.sort_by_key(|p| task_of(p).is_none_or(|t| !pg.spec.min_task_member.contains_key(&t)));
        let mut templates: Vec<TemplateSpec> = Vec::new();
        let mut counted = 0usize;
        for p in &pods {
            let task = task_of(p);
            let task_min = task.as_ref().and_then(|t| pg.spec.min_task_member.get(t)).map(|m| (*m).max(0) as u32);
            let request = convert::pod_requests(p, &mut self.core.resources).map_err(|e| Some(e.to_string()))?;
            let placement = convert::pod_placement(p).map_err(|e| Some(e.to_string()))?;
            let existing = match &task {
                Some(t) => templates.iter_mut().find(|s| s.name == *t),
                None => templates
                    .iter_mut()
                    .find(|s| s.name.starts_with("shape-") && s.request == request && s.placement == placement),
            };
            // A task's pods count up to its minTaskMember; the others until minMember is reached.
            let counts = match task_min {
                Some(min) => existing.as_ref().map_or(0, |t| t.min) < min,
                None => counted < need,
            };
            if !counts {
                continue;
            }
            match existing {
                Some(t) => t.min += 1,
                None => {
                    let name = task.clone().unwrap_or_else(|| format!("shape-{}", templates.len()));
                    templates.push(TemplateSpec { name, request, placement, min: 1, max: u32::MAX });
                }
            }
            counted += 1;
        }
        let spec = self.podgroup_gang_spec(&key, &pg, templates)?;
        let id = self.core.add_gang(spec).map_err(|e| Some(e.to_string()))?;
        self.gang_keys.insert(id, key.clone());
        let entry = self.gangs.get_mut(&key).expect("entry");
        entry.id = Some(id);
        entry.waiting = None;
        let waiting = std::mem::take(&mut entry.waiting_pods);
        // This pod is applied by our caller; the others now resolve into the gang.
        for (other, p) in waiting {
            if other != uid {
                self.reapply(p);
            }
        }
        let request = convert::pod_requests(pod, &mut self.core.resources).map_err(|e| Some(e.to_string()))?;
        let t = self.member_of(id, pod, &request)?;
        Ok((id, t, key))
    }

    /// Records a bind muster just made, before the watch reports it (kube-scheduler's "assume").
    pub fn assume_bound(&mut self, namespace: &str, name: &str, node: &str) {
        let Some(uid) = self.pods_by_name.get(&(namespace.to_string(), name.to_string())).cloned() else { return };
        let now = self.now;
        let node_id = self.core.node_id(node);
        let Some(entry) = self.pods.get_mut(&uid) else { return };
        entry.node = Some(node.to_string());
        if let (Some(id), Some(n)) = (entry.id, node_id) {
            let _ = self.core.bind_pod(id, n, now);
        }
    }

    /// A pod was deleted.
    pub fn delete_pod(&mut self, uid: &str) {
        self.remove_pod(uid, PodExit::Deleted, self.now);
    }

    fn remove_pod(&mut self, uid: &str, exit: PodExit, now: Millis) {
        self.spark_confs.remove(uid);
        for waiting in self.gangs.values_mut() {
            waiting.waiting_pods.remove(uid);
        }
        self.managed_pods.remove(uid);
        let Some(entry) = self.pods.remove(uid) else { return };
        self.pods_by_name.remove(&(entry.namespace.clone(), entry.name.clone()));
        if let Some(n) = &entry.node
            && let Some(set) = self.pods_on_unknown_nodes.get_mut(n)
        {
            set.remove(uid);
        }
        if let Some(id) = entry.id {
            let _ = self.core.remove_pod(id, exit, now);
        }
        let Some(key) = entry.gang else { return };
        let Some(gang) = self.gangs.get_mut(&key) else { return };
        match exit {
            PodExit::Succeeded => gang.succeeded += 1,
            PodExit::Failed => gang.failed += 1,
            PodExit::Deleted => {}
        }
        let ends_gang = match &key {
            GangKey::Pod { .. } => true,
            GangKey::PodGroup { .. } => gang.spark_driver.as_deref() == Some(uid),
        };
        if ends_gang {
            // A gang of one, or a Spark application whose driver is gone.
            let gang = self.gangs.remove(&key).expect("present");
            if let Some(id) = gang.id {
                self.gang_keys.remove(&id);
                let _ = self.core.remove_gang(id);
            }
            if let (Some(pg), GangKey::PodGroup { .. }) = (gang.podgroup, &key) {
                // Keep the PodGroup visible (its status records the end) but out of the core.
                let ended = GangEntry {
                    podgroup: Some(pg),
                    waiting: Some("its Spark driver is gone".into()),
                    succeeded: gang.succeeded,
                    failed: gang.failed,
                    ..GangEntry::new(key.clone())
                };
                self.gangs.insert(key, ended);
            }
            return;
        }
        // A PodGroup whose members have all finished (some succeeded) is done until new members come.
        if exit == PodExit::Succeeded
            && let Some(id) = gang.id
            && self.core.gang(id).is_some_and(|g| g.pods.is_empty())
        {
            let _ = self.core.finish_gang(id);
        }
    }
}

#[cfg(test)]
mod tests;
