//! Scenario tests of the core's decisions: each builds a small cluster, runs admission cycles and checks what
//! muster decided and why.

use muster::core::testkit::{
    GI, gang, labelled, node, request, selecting, start_members, tainted, template, tolerating,
};
use muster::core::{
    Cluster, GangPhase, NodeSet, PodExit, PodSpec, Policy, QueueSpec, Refusal, Resources, WaitReason, WaitsFor,
};

fn policy() -> Policy {
    Policy { drain_after: 60_000, ..Policy::default() }
}

fn all_nodes(c: &Cluster) -> NodeSet {
    NodeSet::new(c.nodes().map(|(id, _)| id).collect::<Vec<_>>())
}

#[test]
fn a_gang_that_fits_is_reserved_on_nodes_with_room() {
    let mut c = Cluster::new();
    for i in 0..3 {
        c.add_node(node(&format!("n{i}"), 4000, 16 * GI)).unwrap();
    }
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let g = c
        .add_gang(gang(
            "app",
            q,
            0,
            vec![template("driver", 1000, 2 * GI, 1, 1), template("exec", 2000, 5 * GI, 4, 10)],
        ))
        .unwrap();
    let out = c.run_cycle(0, &policy());
    assert_eq!(out.admitted, vec![g]);
    assert_eq!(c.gang(g).unwrap().slots.len(), 5);
    c.check_invariants().unwrap();
    start_members(&mut c, g, 1);
    assert_eq!(c.gang(g).unwrap().phase, GangPhase::Running);
    c.check_invariants().unwrap();
}

#[test]
fn fragmentation_that_passes_the_sum_check_is_not_admitted() {
    // scheduler-plugins#429: free 6/2/2/2 CPU, gang of 3 x 4 CPU. The sum (12) fits; no packing does.
    let mut c = Cluster::new();
    for (i, cpu) in [6000, 2000, 2000, 2000].into_iter().enumerate() {
        c.add_node(node(&format!("n{i}"), cpu, 64 * GI)).unwrap();
    }
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let g = c.add_gang(gang("big", q, 0, vec![template("w", 4000, GI, 3, 3)])).unwrap();
    let out = c.run_cycle(0, &policy());
    assert!(out.admitted.is_empty());
    let reason = &out.waiting.iter().find(|(id, _)| *id == g).unwrap().1;
    assert!(reason.message().contains("only 1 of 3"), "reason names the shortfall: {}", reason.message());
    assert!(c.gang(g).unwrap().slots.is_empty(), "nothing is held by a gang that does not fit");
}

#[test]
fn driver_waits_while_the_spot_pool_cannot_take_the_executors() {
    let mut c = Cluster::new();
    c.add_node(labelled(node("od-0", 8000, 32 * GI), "pool", "on-demand")).unwrap();
    for i in 0..2 {
        c.add_node(tainted(labelled(node(&format!("spot-{i}"), 8000, 32 * GI), "pool", "spot"), "spot", "true"))
            .unwrap();
    }
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let driver = selecting(template("driver", 1000, 4 * GI, 1, 1), "pool", "on-demand");
    let exec = tolerating(selecting(template("exec", 4000, 10 * GI, 5, 5), "pool", "spot"), "spot", "true");
    let g = c.add_gang(gang("etl", q, 0, vec![driver.clone(), exec.clone()])).unwrap();
    let out = c.run_cycle(0, &policy());
    assert!(out.admitted.is_empty(), "5 executors need 3 spot nodes; only 2 exist");
    assert!(c.gang(g).unwrap().slots.is_empty());

    // A third spot node arrives: the whole gang is admitted, driver on on-demand, executors on spot.
    c.add_node(tainted(labelled(node("spot-2", 8000, 32 * GI), "pool", "spot"), "spot", "true")).unwrap();
    let out = c.run_cycle(1, &policy());
    assert_eq!(out.admitted, vec![g]);
    let gang = c.gang(g).unwrap();
    for s in &gang.slots {
        let pool = &c.node(s.node).unwrap().spec.labels["pool"];
        assert_eq!(pool, if s.template == 0 { "on-demand" } else { "spot" });
    }
    c.check_invariants().unwrap();
}

#[test]
fn queues_are_served_in_order_of_their_share() {
    // One node of 12 CPU; queue a (weight 2) and b (weight 1) each submit six 1-CPU gangs at once... and more.
    let mut c = Cluster::new();
    c.add_node(node("n", 12_000, 100 * GI)).unwrap();
    let a = c.upsert_queue(QueueSpec::new("a", 2));
    let b = c.upsert_queue(QueueSpec::new("b", 1));
    for i in 0..12 {
        c.add_gang(gang(&format!("a{i}"), a, i, vec![template("w", 1000, GI, 1, 1)])).unwrap();
        c.add_gang(gang(&format!("b{i}"), b, i, vec![template("w", 1000, GI, 1, 1)])).unwrap();
    }
    c.run_cycle(0, &policy());
    let cpu = |q| c.queue(q).unwrap().allocated.get(0);
    assert_eq!((cpu(a), cpu(b)), (8000, 4000), "12 CPU split 2:1");
    let deserved = |q| c.queue(q).unwrap().deserved.get(0);
    assert_eq!((deserved(a), deserved(b)), (8000, 4000));
}

#[test]
fn a_head_that_can_never_fit_blocks_nobody() {
    let mut c = Cluster::new();
    c.add_node(node("n", 8000, 32 * GI)).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let huge = c.add_gang(gang("huge", q, 0, vec![template("w", 16_000, GI, 1, 1)])).unwrap();
    let small = c.add_gang(gang("small", q, 1, vec![template("w", 1000, GI, 1, 1)])).unwrap();
    let out = c.run_cycle(0, &policy());
    assert_eq!(out.admitted, vec![small]);
    let reason = &out.waiting.iter().find(|(id, _)| *id == huge).unwrap().1;
    assert!(matches!(reason, WaitReason::NeverFits { .. }), "{reason:?}");
}

#[test]
fn a_gang_that_can_never_fit_claims_no_share_of_the_cluster() {
    // One 8-CPU node. Queue "dreamer" holds only a gang of 16 CPU; queue "worker" may not borrow (not
    // reclaimable), so it is held to its deserved share. Counting the impossible gang's demand would split the
    // node 4:4 and leave half of it idle for ever.
    let mut c = Cluster::new();
    c.add_node(node("n", 8000, 32 * GI)).unwrap();
    let dreamer = c.upsert_queue(QueueSpec::new("dreamer", 1));
    let mut worker = QueueSpec::new("worker", 1);
    worker.reclaimable = false;
    let worker = c.upsert_queue(worker);
    let huge = c.add_gang(gang("huge", dreamer, 0, vec![template("w", 16_000, GI, 1, 1)])).unwrap();
    for i in 0..8 {
        c.add_gang(gang(&format!("w{i}"), worker, i + 1, vec![template("w", 1000, GI, 1, 1)])).unwrap();
    }
    // The first cycle finds out that `huge` can never fit, and the shares it leaves behind no longer count it.
    c.run_cycle(0, &policy());
    let deserved = |c: &Cluster, q| c.queue(q).unwrap().deserved.get(0);
    assert_eq!((deserved(&c, dreamer), deserved(&c, worker)), (0, 8000));
    let out = c.run_cycle(1, &policy());
    assert_eq!((deserved(&c, dreamer), deserved(&c, worker)), (0, 8000));
    assert_eq!(c.queue(worker).unwrap().allocated.get(0), 8000, "the whole node goes to the queue that can use it");
    let reason = &out.waiting.iter().find(|(id, _)| *id == huge).expect("huge still waits").1;
    assert!(matches!(reason, WaitReason::NeverFits { .. }), "{reason:?}");
    // A node that can hold it arrives: its demand counts again, and it is admitted there.
    c.add_node(node("big", 16_000, 64 * GI)).unwrap();
    c.run_cycle(2, &policy());
    assert!(deserved(&c, dreamer) > 0, "a gang that fits now claims its share");
    assert_eq!(c.gang(huge).unwrap().phase, GangPhase::Admitted);
    c.check_invariants().unwrap();
}

#[test]
fn a_large_head_is_not_starved_by_a_stream_of_small_gangs() {
    let mut c = Cluster::new();
    c.add_node(node("n", 8000, 64 * GI)).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let p = policy();
    // Fill the node with small gangs, then a big gang arrives, then small gangs keep arriving.
    let mut running: Vec<(muster::core::GangId, u64)> = Vec::new();
    let mut t = 0;
    for i in 0..8 {
        let g = c.add_gang(gang(&format!("s{i}"), q, t, vec![template("w", 1000, GI, 1, 1)])).unwrap();
        c.run_cycle(t, &p);
        start_members(&mut c, g, t);
        running.push((g, t + 30_000 + i * 5_000));
    }
    let big = c.add_gang(gang("big", q, 1, vec![template("w", 1000, GI, 6, 6)])).unwrap();
    let mut admitted_at = None;
    let mut small_seq = 100;
    while t < 600_000 && admitted_at.is_none() {
        t += 5_000;
        // Finish small gangs whose time is up.
        let done: Vec<_> = running.iter().filter(|(_, end)| *end <= t).map(|(g, _)| *g).collect();
        running.retain(|(_, end)| *end > t);
        for g in done {
            let pods = c.gang(g).unwrap().pods.clone();
            c.remove_gang(g).unwrap();
            for pod in pods {
                c.remove_pod(pod, PodExit::Succeeded, t).unwrap();
            }
        }
        // A new small gang arrives every step (younger than big, so behind it in the line).
        let s = c.add_gang(gang(&format!("s{small_seq}"), q, t, vec![template("w", 1000, GI, 1, 1)])).unwrap();
        small_seq += 1;
        let out = c.run_cycle(t, &p);
        if std::env::var("MUSTER_DEBUG").is_ok() {
            eprintln!(
                "t={t} admitted={:?} big={:?} free={:?}",
                out.admitted,
                c.gang(big).unwrap().reason,
                c.nodes().next().unwrap().1.free()
            );
        }
        for g in out.admitted {
            if g == big {
                admitted_at = Some(t);
            } else {
                start_members(&mut c, g, t);
                running.push((g, t + 30_000));
            }
        }
        let _ = s;
        c.check_invariants().unwrap();
    }
    let at = admitted_at.expect("the big gang must be admitted despite the stream of small ones");
    assert!(at >= p.drain_after, "small gangs backfill until the head has waited drain_after ({at})");
}

#[test]
fn reclaim_takes_elastic_members_first_and_stops_at_the_victims_share() {
    let mut c = Cluster::new();
    for i in 0..4 {
        c.add_node(node(&format!("n{i}"), 4000, 16 * GI)).unwrap();
    }
    let a = c.upsert_queue(QueueSpec::new("a", 1));
    let b = c.upsert_queue(QueueSpec::new("b", 1));
    let p = policy();
    // Queue a borrows the whole cluster: one gang of 4 min members plus 12 elastic ones (1 CPU each).
    let ga = c.add_gang(gang("a-app", a, 0, vec![template("exec", 1000, GI, 4, 16)])).unwrap();
    c.run_cycle(0, &p);
    start_members(&mut c, ga, 0);
    let all = all_nodes(&c);
    for i in 0..12 {
        let pod = c
            .add_pod(
                PodSpec {
                    name: format!("a-extra-{i}"),
                    request: request(1000, GI),
                    member: Some((ga, 0)),
                    priority: 0,
                },
                None,
                1,
            )
            .unwrap();
        let n = c.place(pod, &all, 1).unwrap();
        c.bind_pod(pod, n, 1).unwrap();
    }
    assert_eq!(c.queue(a).unwrap().allocated.get(0), 16_000);

    // Queue b wants 6 CPU in one gang: its deserved share is 8, so it may reclaim.
    let gb = c.add_gang(gang("b-app", b, 10, vec![template("exec", 1000, GI, 6, 6)])).unwrap();
    let out = c.run_cycle(10, &p);
    assert_eq!(out.evictions.len(), 6, "a minimal victim set: exactly the 6 CPU needed");
    assert!(out.evictions.iter().all(|e| !e.whole_gang && e.victim == ga), "elastic members go first");
    assert!(matches!(c.gang(gb).unwrap().reason, Some(WaitReason::Reclaiming { .. })));

    // The next cycle, with the victims still terminating, evicts nobody else.
    let out = c.run_cycle(11, &p);
    assert!(out.evictions.is_empty(), "no new victims while earlier evictions are in flight");

    // Victims terminate; b is admitted onto the freed capacity.
    for e in c.pods().filter(|(_, p)| p.terminating).map(|(id, _)| id).collect::<Vec<_>>() {
        c.remove_pod(e, PodExit::Deleted, 12).unwrap();
    }
    let out = c.run_cycle(12, &p);
    assert_eq!(out.admitted, vec![gb]);
    start_members(&mut c, gb, 12);
    assert_eq!(c.queue(a).unwrap().allocated.get(0), 10_000);
    assert!(c.queue(a).unwrap().allocated.get(0) >= c.queue(a).unwrap().deserved.get(0));

    // Steady state: many more cycles evict nothing (no ping-pong).
    for t in 13..40 {
        assert!(c.run_cycle(t, &p).evictions.is_empty());
    }
    c.check_invariants().unwrap();
}

#[test]
fn capability_caps_a_queue() {
    let mut c = Cluster::new();
    c.add_node(node("n", 10_000, 100 * GI)).unwrap();
    let mut capped = QueueSpec::new("capped", 1);
    capped.capability = Resources::UNLIMITED.with(0, 3000);
    let capped = c.upsert_queue(capped);
    for i in 0..5 {
        c.add_gang(gang(&format!("c{i}"), capped, i, vec![template("w", 1000, GI, 1, 1)])).unwrap();
    }
    let out = c.run_cycle(0, &policy());
    assert_eq!(c.queue(capped).unwrap().allocated.get(0), 3000, "capability 3 CPU on an idle 10-CPU cluster");
    assert_eq!(out.waiting.len(), 2);
    assert!(out.waiting.iter().all(|(_, r)| matches!(r, WaitReason::QueueCapability { .. })));
    c.check_invariants().unwrap();
}

#[test]
fn a_guarantee_stays_free_for_its_idle_queue() {
    let mut c = Cluster::new();
    c.add_node(node("n", 10_000, 100 * GI)).unwrap();
    let mut guaranteed = QueueSpec::new("guaranteed", 1);
    guaranteed.guarantee = Resources::ZERO.with(0, 4000);
    let guaranteed = c.upsert_queue(guaranteed);
    let other = c.upsert_queue(QueueSpec::new("other", 1));
    for i in 0..8 {
        c.add_gang(gang(&format!("o{i}"), other, i, vec![template("w", 1000, GI, 1, 1)])).unwrap();
    }
    let out = c.run_cycle(0, &policy());
    assert_eq!(c.queue(other).unwrap().allocated.get(0), 6000, "10 CPU minus 4 guaranteed to an idle queue");
    assert!(out.waiting.iter().all(|(_, r)| matches!(r, WaitReason::GuaranteeOfOtherQueues { .. })));
    // The guaranteed queue gets its share at once when it asks.
    let g = c.add_gang(gang("mine", guaranteed, 9, vec![template("w", 1000, GI, 4, 4)])).unwrap();
    let out = c.run_cycle(1, &policy());
    assert_eq!(out.admitted, vec![g]);
    c.check_invariants().unwrap();
}

#[test]
fn reservations_follow_the_assume_bind_forget_lifecycle() {
    let mut c = Cluster::new();
    c.add_node(node("n0", 4000, 16 * GI)).unwrap();
    c.add_node(node("n1", 4000, 16 * GI)).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let p = Policy { reservation_timeout: 100_000, claim_ttl: 10_000, ..policy() };
    let g = c
        .add_gang(gang("app", q, 0, vec![template("driver", 1000, GI, 1, 1), template("exec", 1000, GI, 2, 4)]))
        .unwrap();
    c.run_cycle(0, &p);
    let all = all_nodes(&c);

    // The driver is placed onto its slot; a retry gets the same answer; it binds and consumes the slot.
    let driver = c
        .add_pod(
            PodSpec { name: "driver".into(), request: request(1000, GI), member: Some((g, 0)), priority: 0 },
            None,
            1,
        )
        .unwrap();
    let n = c.place(driver, &all, 1).unwrap();
    assert_eq!(c.place(driver, &all, 2).unwrap(), n);
    c.bind_pod(driver, n, 3).unwrap();
    assert_eq!(c.gang(g).unwrap().slots.len(), 2);

    // A claim that is never bound is forgotten after claim_ttl and the slot goes to the next pod.
    let e1 = c
        .add_pod(PodSpec { name: "e1".into(), request: request(1000, GI), member: Some((g, 1)), priority: 0 }, None, 4)
        .unwrap();
    c.place(e1, &all, 4).unwrap();
    c.run_cycle(20_000, &p);
    assert!(c.pod(e1).unwrap().claim.is_none());

    // Re-planning: kube-scheduler offers only a node without the slot; the slot moves there.
    let slot_nodes: Vec<_> = c.gang(g).unwrap().slots.iter().map(|s| s.node).collect();
    let other = c.nodes().map(|(id, _)| id).find(|id| !slot_nodes.contains(id));
    if let Some(other) = other {
        let placed = c.place(e1, &NodeSet::new([other]), 21_000).unwrap();
        assert_eq!(placed, other);
        c.check_invariants().unwrap();
    }

    // A failed minimum member is replaced by a slot on its node; an unconsumed slot expires.
    let e = c.pod(e1).unwrap().claim.unwrap().node();
    c.bind_pod(e1, e, 21_500).unwrap();
    c.remove_pod(e1, PodExit::Failed, 22_000).unwrap();
    let slots = &c.gang(g).unwrap().slots;
    assert!(slots.iter().any(|s| s.node == e && s.template == 1), "replacement slot on the failed pod's node");
    let out = c.run_cycle(200_000, &p);
    assert_eq!(out.expired, vec![g]);
    assert_eq!(c.gang(g).unwrap().phase, GangPhase::Expired);
    assert!(matches!(c.place(driver, &all, 200_001), Err(Refusal::AlreadyBound { .. })));
    c.check_accounting().unwrap();
}

#[test]
fn elastic_members_use_free_capacity_within_the_maximum() {
    let mut c = Cluster::new();
    c.add_node(node("n", 4000, 16 * GI)).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let g = c.add_gang(gang("app", q, 0, vec![template("exec", 1000, GI, 1, 2)])).unwrap();
    c.run_cycle(0, &policy());
    start_members(&mut c, g, 0);
    let all = all_nodes(&c);
    let mk = |c: &mut Cluster, name: &str| {
        c.add_pod(PodSpec { name: name.into(), request: request(1000, GI), member: Some((g, 0)), priority: 0 }, None, 1)
            .unwrap()
    };
    let e1 = mk(&mut c, "e1");
    c.place(e1, &all, 1).unwrap();
    let e2 = mk(&mut c, "e2");
    assert!(matches!(c.place(e2, &all, 1), Err(Refusal::AtMaximum { max: 2, .. })));

    // A pod of a gang that is not admitted gets a reason a person can act on.
    let blocked = c.add_gang(gang("blocked", q, 5, vec![template("w", 64_000, GI, 1, 1)])).unwrap();
    c.run_cycle(2, &policy());
    let bp = c
        .add_pod(
            PodSpec { name: "b".into(), request: request(64_000, GI), member: Some((blocked, 0)), priority: 0 },
            None,
            3,
        )
        .unwrap();
    let refusal = c.place(bp, &all, 3).unwrap_err();
    assert!(refusal.to_string().contains("can never fit"), "{refusal}");
}

#[test]
fn an_elastic_member_goes_to_its_preferred_node_whenever_that_node_is_offered() {
    // Nodes of different sizes, some partly used by foreign pods: the tightest fit is not the first node.
    let mut c = Cluster::new();
    let sizes = [(8000, 32), (4000, 16), (16_000, 64), (4000, 16), (8000, 32)];
    let nodes: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, (cpu, mem))| c.add_node(node(&format!("n{i}"), *cpu, mem * GI)).unwrap())
        .collect();
    c.add_pod(PodSpec { name: "f".into(), request: request(2500, GI), member: None, priority: 0 }, Some(nodes[1]), 0)
        .unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let g = c.add_gang(gang("app", q, 0, vec![template("exec", 1000, GI, 1, 8)])).unwrap();
    c.run_cycle(0, &policy());
    start_members(&mut c, g, 0);
    for i in 0..6 {
        let e = c
            .add_pod(
                PodSpec { name: format!("e{i}"), request: request(1000, GI), member: Some((g, 0)), priority: 0 },
                None,
                1,
            )
            .unwrap();
        let preferred = c.elastic_preference(e).expect("room for an elastic member");
        // Offered with any other nodes (here: all but one of the rest), it is still the one chosen.
        let others: Vec<_> = nodes.iter().copied().filter(|n| *n != preferred).skip(i % 2).collect();
        let offered = NodeSet::new(others.into_iter().chain([preferred]).collect::<Vec<_>>());
        assert_eq!(c.place(e, &offered, 1).unwrap(), preferred, "member {i}");
    }
}

#[test]
fn preemption_never_breaks_a_gang_below_its_minimum() {
    let mut c = Cluster::new();
    c.add_node(node("n", 8000, 32 * GI)).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let g = c.add_gang(gang("app", q, 0, vec![template("exec", 1000, GI, 2, 4)])).unwrap();
    c.run_cycle(0, &policy());
    let min_pods = start_members(&mut c, g, 0);
    let all = all_nodes(&c);
    let extra = c
        .add_pod(PodSpec { name: "x".into(), request: request(1000, GI), member: Some((g, 0)), priority: 0 }, None, 1)
        .unwrap();
    let n = c.place(extra, &all, 1).unwrap();
    c.bind_pod(extra, n, 1).unwrap();
    let foreign = c
        .add_pod(PodSpec { name: "f".into(), request: request(1000, GI), member: None, priority: 0 }, Some(n), 1)
        .unwrap();

    // One minimum member may go (the elastic one takes its place); the second may not.
    let allowed = c.allowed_victims(&[min_pods[0], min_pods[1], foreign]);
    assert_eq!(allowed, vec![min_pods[0], foreign]);
    // With the elastic pod itself among the victims, no minimum member may go.
    let allowed = c.allowed_victims(&[extra, min_pods[0]]);
    assert_eq!(allowed, vec![extra]);
}

#[test]
fn the_same_inputs_give_the_same_decisions() {
    let run = || {
        let mut c = Cluster::new();
        for i in 0..6 {
            c.add_node(node(&format!("n{i}"), 4000 + 1000 * (i % 3), 16 * GI)).unwrap();
        }
        let qs: Vec<_> = (0..3).map(|i| c.upsert_queue(QueueSpec::new(&format!("q{i}"), 1 + i))).collect();
        for i in 0..20u64 {
            c.add_gang(gang(
                &format!("g{i}"),
                qs[(i % 3) as usize],
                i,
                vec![template("w", 500 + 250 * (i % 4), GI, 1 + (i % 3) as u32, 4)],
            ))
            .unwrap();
        }
        let out = c.run_cycle(0, &policy());
        let slots: Vec<_> =
            c.gangs().map(|(id, g)| (id, g.slots.iter().map(|s| (s.template, s.node)).collect::<Vec<_>>())).collect();
        (out.admitted, format!("{:?}", out.waiting), slots)
    };
    assert_eq!(run(), run());
}

#[test]
fn refused_evictions_are_re_planned_until_one_succeeds() {
    // Two 4-CPU nodes, queue silver borrows both (two gangs of 2 x 2 CPU); gold (same weight) wants 2 x 2 CPU.
    // Every eviction is refused (a disruption budget), one victim at a time, then allowed again.
    let mut c = Cluster::new();
    for i in 0..2 {
        c.add_node(node(&format!("n{i}"), 4000, 16 * GI)).unwrap();
    }
    let silver = c.upsert_queue(QueueSpec::new("silver", 1));
    let gold = c.upsert_queue(QueueSpec::new("gold", 1));
    let p = Policy { min_runtime: 0, ..policy() };
    let victims: Vec<_> = (0..2)
        .map(|i| c.add_gang(gang(&format!("silver-{i}"), silver, i, vec![template("w", 2000, GI, 2, 2)])).unwrap())
        .collect();
    c.run_cycle(0, &p);
    for g in &victims {
        start_members(&mut c, *g, 0);
    }
    let g = c.add_gang(gang("gold", gold, 10, vec![template("w", 2000, GI, 2, 2)])).unwrap();
    let mut t = 10;
    let mut refused = 0;
    // Refuse whatever is planned, pod by pod, for a while: each refusal leads to a new plan, never to silence.
    while refused < 12 {
        c.run_cycle(t, &p);
        t += 1;
        let terminating: Vec<_> = c.pods().filter(|(_, p)| p.terminating).map(|(id, _)| id).collect();
        assert!(!terminating.is_empty(), "after {refused} refusals muster no longer plans any eviction for gold");
        let reason = c.gang(g).unwrap().reason.clone();
        for v in &victims {
            let victim = c.gang(*v).unwrap();
            assert!(victim.hold.is_empty(), "victim {} holds capacity while being evicted", victim.spec.name);
        }
        assert!(matches!(reason, Some(WaitReason::Reclaiming { .. })), "after {refused} refusals: {reason:?}");
        assert!(c.cancel_termination(terminating[0]).unwrap());
        refused += 1;
        c.check_invariants().unwrap();
    }
    // Whatever is still terminating is refused too: both victims are whole and running again.
    for pod in c.pods().filter(|(_, p)| p.terminating).map(|(id, _)| id).collect::<Vec<_>>() {
        c.cancel_termination(pod).unwrap();
    }
    for v in &victims {
        assert_eq!(c.gang(*v).unwrap().phase, GangPhase::Running);
    }
    c.check_invariants().unwrap();
    // The budget is gone: the next plan's victims terminate and gold is admitted.
    let out = c.run_cycle(t, &p);
    assert!(!out.evictions.is_empty(), "reclaim is planned again once every eviction was refused");
    t += 1;
    for e in c.pods().filter(|(_, p)| p.terminating).map(|(id, _)| id).collect::<Vec<_>>() {
        c.remove_pod(e, PodExit::Deleted, t).unwrap();
    }
    let out = c.run_cycle(t + 1, &p);
    assert_eq!(out.admitted, vec![g]);
    c.check_invariants().unwrap();
}

#[test]
fn members_that_succeed_one_by_one_leave_a_completing_gang_nothing_to_repair() {
    let mut c = Cluster::new();
    c.add_node(node("n", 8000, 32 * GI)).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let p = policy();
    let g = c.add_gang(gang("job", q, 0, vec![template("w", 2000, GI, 3, 3)])).unwrap();
    assert_eq!(c.run_cycle(0, &p).admitted, vec![g]);
    start_members(&mut c, g, 0);
    let members = c.gang(g).unwrap().pods.clone();
    // The first member succeeds while the others still run: no replacement is reserved, the gang keeps running.
    c.remove_pod(members[0], PodExit::Succeeded, 5).unwrap();
    let out = c.run_cycle(6, &p);
    assert!(out.admitted.is_empty(), "a completing gang is not re-admitted for a member that succeeded");
    let gang_now = c.gang(g).unwrap();
    assert!(gang_now.slots.is_empty(), "nothing reserved for a member that is done: {:?}", gang_now.slots);
    assert_eq!(gang_now.phase, GangPhase::Running);
    assert_eq!(c.queue(q).unwrap().allocated.get(0), 4000, "the queue is charged for the two members still running");
    c.check_invariants().unwrap();
    // A member that fails instead is replaced: its capacity is reserved for the pod its controller creates.
    c.remove_pod(members[1], PodExit::Failed, 7).unwrap();
    assert_eq!(c.gang(g).unwrap().slots.len(), 1, "a failed member's capacity is kept for its replacement");
    c.check_invariants().unwrap();
}

#[test]
fn a_restored_record_skips_the_slots_its_bound_members_consumed() {
    // Recorded: slots on n0 and n1. Since then the member directed to n0 bound there; one member is missing.
    let mut c = Cluster::new();
    let n0 = c.add_node(node("n0", 4000, 16 * GI)).unwrap();
    let n1 = c.add_node(node("n1", 4000, 16 * GI)).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let g = c.add_gang(gang("app", q, 0, vec![template("w", 2000, GI, 2, 2)])).unwrap();
    let spec = PodSpec { name: "ns/app-0".into(), request: request(2000, GI), member: Some((g, 0)), priority: 0 };
    c.add_pod(spec, Some(n0), 1).unwrap();
    c.restore_admission(g, &[(0, n0), (0, n1)], 0, 2).unwrap();
    let restored: Vec<_> = c.gang(g).unwrap().slots.iter().map(|s| s.node).collect();
    assert_eq!(restored, vec![n1], "the missing member's slot is the one on n1; n0's went to the bound member");
    c.check_invariants().unwrap();
}

/// Found by `tests/input_fuzz.rs`: a gang whose templates change while its members are pending keeps them as
/// members, and a change to an invalid spec is refused without touching the gang.
#[test]
fn changing_a_pending_gangs_templates_keeps_its_members_and_refuses_an_invalid_spec() {
    let mut c = Cluster::new();
    c.add_node(node("n0", 4000, 16 * GI)).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let g = c.add_gang(gang("pg", q, 0, vec![template("shape-0", 1000, GI, 1, u32::MAX)])).unwrap();
    let spec = PodSpec { name: "w-0".into(), request: request(1000, GI), member: Some((g, 0)), priority: 0 };
    let p = c.add_pod(spec, None, 1).unwrap();

    c.update_gang(g, gang("pg", q, 0, vec![template("t0", 1000, GI, 1, 1)])).unwrap();
    assert_eq!(c.pod(p).unwrap().spec.member, Some((g, 0)), "the pending pod is still a member");
    assert_eq!(c.gang(g).unwrap().pods, vec![p]);
    c.run_cycle(1_000, &policy());
    c.check_invariants().unwrap();

    let err = c.update_gang(g, gang("pg", q, 0, vec![template("t0", 1000, GI, 0, 1)])).unwrap_err();
    assert!(err.to_string().contains("minimum is zero"), "{err}");
    assert_eq!(c.gang(g).unwrap().spec.templates[0].min, 1, "the gang is unchanged");
    assert_eq!(c.pod(p).unwrap().spec.member, Some((g, 0)));
    c.check_invariants().unwrap();
}

#[test]
fn the_shortfall_is_what_the_nodes_that_exist_cannot_hold_not_the_whole_gang() {
    // One on-demand node with room for the driver and 2 of 8 executors; no spot capacity.
    let mut c = Cluster::new();
    c.add_node(labelled(node("od-0", 4000, 16 * GI), "pool", "on-demand")).unwrap();
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    let driver = selecting(template("driver", 1000, 2 * GI, 1, 1), "pool", "on-demand");
    let exec = template("exec", 1500, 2 * GI, 8, 8);
    let g = c.add_gang(gang("etl", q, 0, vec![driver, exec])).unwrap();
    let out = c.run_cycle(0, &policy());
    assert!(out.admitted.is_empty());
    let reason = &out.waiting.iter().find(|(id, _)| *id == g).unwrap().1;
    assert_eq!(reason.waits_for(), WaitsFor::Capacity, "{reason:?}");
    // The driver (1 cpu) and 2 executors (3 cpu) fit the 4 cpu node; 6 executors are missing.
    assert_eq!(c.shortfall(g), vec![0, 6]);
    // Computing it reserves nothing and leaves the capacity index describing real capacity.
    assert!(c.gang(g).unwrap().slots.is_empty());
    c.check_invariants().unwrap();

    // Capacity arrives in part: the request shrinks.
    c.add_node(labelled(node("spot-0", 8000, 32 * GI), "pool", "spot")).unwrap();
    assert_eq!(c.shortfall(g), vec![0, 1], "5 more executors fit the new 8 cpu node");
    c.add_node(labelled(node("spot-1", 2000, 32 * GI), "pool", "spot")).unwrap();
    assert_eq!(c.shortfall(g), vec![0, 0]);
    let out = c.run_cycle(1, &policy());
    assert_eq!(out.admitted, vec![g]);
    assert_eq!(c.shortfall(g), vec![0, 0], "an admitted gang misses nothing");
}

#[test]
fn quota_waits_and_capacity_waits_are_told_apart() {
    let mut c = Cluster::new();
    c.add_node(node("n0", 4000, 16 * GI)).unwrap();
    let mut capped = QueueSpec::new("capped", 1);
    capped.capability = request(1000, 64 * GI);
    let capped = c.upsert_queue(capped);
    let open = c.upsert_queue(QueueSpec::new("open", 1));
    let over_capability = c.add_gang(gang("a", capped, 0, vec![template("w", 2000, GI, 1, 1)])).unwrap();
    let too_big_for_nodes = c.add_gang(gang("b", open, 0, vec![template("w", 3000, GI, 2, 2)])).unwrap();
    let out = c.run_cycle(0, &policy());
    let reason = |g| out.waiting.iter().find(|(id, _)| *id == g).map(|(_, r)| r.clone()).unwrap();
    assert_eq!(reason(over_capability).waits_for(), WaitsFor::Quota, "{:?}", reason(over_capability));
    assert_eq!(reason(too_big_for_nodes).waits_for(), WaitsFor::Capacity, "{:?}", reason(too_big_for_nodes));
    // More nodes would not help the gang held back by its queue's capability.
    assert_eq!(c.shortfall(over_capability), vec![0], "it fits the nodes; it waits for quota only");
}

#[test]
fn members_lost_with_their_node_are_re_reserved_before_a_newer_gang_of_the_queue() {
    let mut c = Cluster::new();
    for i in 0..3 {
        c.add_node(node(&format!("n{i}"), 4000, 16 * GI)).unwrap();
    }
    let q = c.upsert_queue(QueueSpec::new("team", 1));
    // 1 driver + 4 executors of 2 cpu: the executors fill two nodes.
    let running = c
        .add_gang(gang("running", q, 0, vec![template("driver", 1000, GI, 1, 1), template("exec", 2000, GI, 4, 4)]))
        .unwrap();
    assert_eq!(c.run_cycle(0, &policy()).admitted, vec![running]);
    let pods = start_members(&mut c, running, 1);
    assert_eq!(c.gang(running).unwrap().phase, GangPhase::Running);
    // A newer gang of the same queue that would fit the free capacity left after the loss.
    let newer = c.add_gang(gang("newer", q, 5, vec![template("w", 2000, GI, 1, 1)])).unwrap();

    // A node holding two executors is interrupted (spot): its pods are gone with it.
    let exec_node = pods
        .iter()
        .filter_map(|p| c.pod(*p).unwrap().node)
        .find(|n| pods.iter().filter(|p| c.pod(**p).unwrap().node == Some(*n)).count() == 2)
        .expect("two executors share a node");
    let lost: Vec<_> = pods.iter().copied().filter(|p| c.pod(*p).unwrap().node == Some(exec_node)).collect();
    c.remove_node(exec_node).unwrap();
    for p in &lost {
        c.remove_pod(*p, PodExit::Deleted, 10).unwrap();
    }
    assert_eq!(c.gang(running).unwrap().missing(), vec![0, 2]);
    let out = c.run_cycle(10, &policy());
    // 3 cpu are left free: room for one of the two lost executors, or for the newer gang. Neither goes: the
    // running gang is repaired first, and until it can be, its queue admits nothing behind it.
    assert!(out.admitted.is_empty(), "{out:?}");
    let gang = c.gang(running).unwrap();
    assert_eq!(gang.phase, GangPhase::Admitted, "still admitted: its driver and two executors run");
    assert_eq!(gang.reason.as_ref().map(|r| r.waits_for()), Some(WaitsFor::Capacity), "{:?}", gang.reason);
    let newer_reason = out.waiting.iter().find(|(id, _)| *id == newer).map(|(_, r)| r.clone());
    assert!(matches!(&newer_reason, Some(WaitReason::BehindHead { head }) if &**head == "running"), "{newer_reason:?}");
    assert_eq!(c.shortfall(running), vec![0, 1], "one executor fits what is left; one needs a new node");

    // A replacement node arrives: the repair goes first, then the newer gang when room remains.
    c.add_node(node("n3", 4000, 16 * GI)).unwrap();
    let out = c.run_cycle(20, &policy());
    assert_eq!(out.admitted.first(), Some(&running), "{out:?}");
    assert_eq!(c.gang(running).unwrap().missing_total(), 0);
    c.check_invariants().unwrap();
}
