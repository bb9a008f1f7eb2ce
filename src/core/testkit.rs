//! Small builders for tests, benchmarks and the simulator's generated clusters.

use std::collections::BTreeMap;

use super::cluster::{Cluster, GangId, GangSpec, Millis, NodeId, NodeSpec, PodId, PodSpec, TemplateSpec};
use super::place::NodeSet;
use super::placement::{Placement, Taint, TaintEffect, Toleration, TolerationOperator};
use super::resources::{CPU, MEMORY, PODS, Resources};

pub const GI: u64 = 1 << 30;

/// A request or capacity of `cpu` millicores and `mem` bytes (plus one pod slot for requests).
pub fn request(cpu: u64, mem: u64) -> Resources {
    Resources::ZERO.with(CPU, cpu).with(MEMORY, mem).with(PODS, 1)
}

pub fn node(name: &str, cpu: u64, mem: u64) -> NodeSpec {
    NodeSpec {
        name: name.to_string(),
        allocatable: Resources::ZERO.with(CPU, cpu).with(MEMORY, mem).with(PODS, 110),
        ..NodeSpec::default()
    }
}

pub fn labelled(mut n: NodeSpec, key: &str, value: &str) -> NodeSpec {
    n.labels.insert(key.to_string(), value.to_string());
    n
}

pub fn tainted(mut n: NodeSpec, key: &str, value: &str) -> NodeSpec {
    n.taints.push(Taint { key: key.to_string(), value: value.to_string(), effect: TaintEffect::NoSchedule });
    n
}

pub fn template(name: &str, cpu: u64, mem: u64, min: u32, max: u32) -> TemplateSpec {
    TemplateSpec { name: name.to_string(), request: request(cpu, mem), placement: Placement::default(), min, max }
}

pub fn selecting(mut t: TemplateSpec, key: &str, value: &str) -> TemplateSpec {
    t.placement.node_selector = BTreeMap::from([(key.to_string(), value.to_string())]);
    t.placement = t.placement.canonical();
    t
}

pub fn tolerating(mut t: TemplateSpec, key: &str, value: &str) -> TemplateSpec {
    t.placement.tolerations.push(Toleration {
        key: key.to_string(),
        operator: TolerationOperator::Equal,
        value: value.to_string(),
        effect: Some(TaintEffect::NoSchedule),
    });
    t.placement = t.placement.canonical();
    t
}

pub fn gang(name: &str, queue: super::cluster::QueueId, created: Millis, templates: Vec<TemplateSpec>) -> GangSpec {
    GangSpec { name: name.to_string(), queue, priority: 0, created, templates }
}

/// Plays kube-scheduler and the kubelet for an admitted gang: creates one pod per missing minimum member,
/// places it (offering every node) and binds it where muster directed it. Returns the pods.
pub fn start_members(c: &mut Cluster, g: GangId, now: Millis) -> Vec<PodId> {
    let all = NodeSet::new(c.nodes().map(|(id, _)| id).collect::<Vec<NodeId>>());
    let gang = c.gang(g).expect("live gang");
    let mut wanted: Vec<(u16, Resources)> = Vec::new();
    for s in &gang.slots {
        if s.claim.is_none() {
            wanted.push((s.template, gang.spec.templates[s.template as usize].request));
        }
    }
    let name = gang.spec.name.clone();
    let mut pods = Vec::new();
    for (i, (t, req)) in wanted.into_iter().enumerate() {
        let pod = c
            .add_pod(
                PodSpec { name: format!("{name}-{t}-{i}"), request: req, member: Some((g, t)), priority: 0 },
                None,
                now,
            )
            .expect("valid pod");
        let node = c.place(pod, &all, now).expect("an admitted gang's member has a slot");
        c.bind_pod(pod, node, now).expect("bind");
        pods.push(pod);
    }
    pods
}
