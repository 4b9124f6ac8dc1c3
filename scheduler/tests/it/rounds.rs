//! Rule 6 and 7: limits, determinism, odd inputs and scale.

use std::collections::BTreeMap;

use synod_scheduler::{Decision, Liveness, NodeView, Params, QueuedTask, View, decide};

use crate::util::*;

#[test]
fn max_assignments_caps_a_round() {
    // (max_assignments, expected assignments) with 10 free slots and 20 tasks
    for (max, expected) in [(0, 0), (1, 1), (7, 7), (10, 10), (256, 10), (usize::MAX, 10)] {
        let params = Params { max_assignments: max, ..Params::default() };
        let decisions = decide(&view(vec![node(1, 10)], tasks("acme", "t", 20), vec![]), NOW, &params);
        assert_eq!(assigned(&decisions).len(), expected, "max_assignments {max}");
    }
}

#[test]
fn stops_when_slots_run_out() {
    let decisions = decide_now(&view(vec![node(1, 2), node(2, 3)], tasks("acme", "t", 100), vec![]));
    assert_eq!(assigned(&decisions).len(), 5);
}

#[test]
fn lease_deadline_is_now_plus_lease_ms() {
    // (now, lease_ms, expected deadline)
    for (now, lease_ms, expected) in [(NOW, 30_000, NOW + 30_000), (NOW, 0, NOW), (u64::MAX, 1, u64::MAX)] {
        let mut n = node(1, 1);
        n.last_heartbeat_ms = now;
        let params = Params { lease_ms, ..Params::default() };
        let decisions = decide(&view(vec![n], vec![task("acme", "t1")], vec![]), now, &params);
        match decisions.as_slice() {
            [Decision::Assign { lease_deadline_ms, .. }] => {
                assert_eq!(*lease_deadline_ms, expected, "now {now} lease {lease_ms}")
            }
            other => panic!("expected one assignment, got {other:?}"),
        }
    }
}

#[test]
fn empty_and_degenerate_views_decide_nothing() {
    let params = Params::default();
    let cases: Vec<(&str, View)> = vec![
        ("empty", View::default()),
        ("nodes, no tasks", view(vec![node(1, 4)], vec![], vec![])),
        ("tasks, no nodes", view(vec![], tasks("acme", "t", 3), vec![])),
        ("zero-slot nodes", view(vec![node(1, 0), node(2, 0)], tasks("acme", "t", 3), vec![])),
    ];
    for (case, v) in cases {
        assert_eq!(decide(&v, NOW, &params), [], "{case}");
        assert_eq!(decide(&v, 0, &params), [], "{case} at time 0");
        assert_eq!(decide(&v, u64::MAX, &Params::default()).len(), 0, "{case} at the end of time");
    }
}

#[test]
fn extreme_values_do_not_panic() {
    let mut n = node(u64::MAX, u32::MAX);
    n.cpu_load = f64::NAN;
    let mut other = node(0, 1);
    other.cpu_load = f64::INFINITY;
    let queued = vec![
        QueuedTask { priority: u8::MAX, enqueued_at_ms: u64::MAX, not_before_ms: 0, ..task("", "") },
        QueuedTask { enqueued_at_ms: 0, ..task("acme", "old") },
    ];
    let mut v = view(vec![n, other], queued, vec![lease("acme", "x", u64::MAX)]);
    v.tenant_weights = BTreeMap::from([("".to_string(), 0), ("acme".to_string(), u32::MAX)]);
    let params = Params {
        lease_ms: u64::MAX,
        aging_ms_per_level: 1,
        max_assignments: usize::MAX,
        recovery_timeout_ms: 0,
        prefetch: 1,
    };
    for now in [0, 1, NOW, u64::MAX] {
        let decisions = decide(&v, now, &params);
        assert!(decisions.len() <= 3, "at {now}: {decisions:?}");
    }
    let decisions = decide(&v, NOW, &params);
    assert_eq!(assigned(&decisions).len(), 2, "both tasks placed: {decisions:?}");
}

/// A mixed view: several tenants, priorities, labels, backoffs, node states and leases.
fn mixed_view() -> View {
    let mut nodes = Vec::new();
    for id in 1..=12u64 {
        let mut n = node(id, (id % 5) as u32 + 1);
        n.cpu_load = (id % 3) as f64 / 3.0;
        if id % 4 == 0 {
            n.labels = labels(&[("gpu", "a100")]);
        }
        n.liveness = match id % 7 {
            5 => Liveness::Suspect,
            6 => Liveness::Dead,
            _ => Liveness::Alive,
        };
        n.draining = id == 3;
        nodes.push(n);
    }
    let mut queued = Vec::new();
    for i in 0..300u64 {
        let mut t = task(["acme", "bolt", "core", "dyn"][(i % 4) as usize], &format!("q{i:04}"));
        t.priority = (i % 10) as u8;
        t.enqueued_at_ms = NOW - (i * 997) % 90_000;
        t.not_before_ms = if i % 11 == 0 { NOW + 1 } else { 0 };
        if i % 9 == 0 {
            t.required_labels = labels(&[("gpu", "a100")]);
        }
        queued.push(t);
    }
    let leased = (0..20u64)
        .map(|i| {
            let mut l = lease(["acme", "bolt"][(i % 2) as usize], &format!("l{i:02}"), i % 14);
            l.lease_deadline_ms = NOW + 1_000 - i * 100;
            l.epoch = i;
            l
        })
        .collect();
    let mut v = view(nodes, queued, leased);
    v.tenant_weights = BTreeMap::from([("acme".into(), 2), ("core".into(), 0)]);
    v
}

#[test]
fn same_input_same_output() {
    let v = mixed_view();
    let params = Params { max_assignments: 1_000, ..Params::default() };
    let first = decide(&v, NOW, &params);
    assert!(assigned(&first).len() >= 10 && !requeued(&first).is_empty(), "a non-trivial round: {first:?}");
    for _ in 0..5 {
        assert_eq!(decide(&v, NOW, &params), first);
    }
    let roundtrip: View = serde_json::from_str(&serde_json::to_string(&v).expect("serialize")).expect("deserialize");
    assert_eq!(decide(&roundtrip, NOW, &params), first, "a view read back from JSON decides the same");
}

#[test]
fn input_order_does_not_matter() {
    let v = mixed_view();
    let params = Params { max_assignments: 1_000, ..Params::default() };
    let expected = decide(&v, NOW, &params);
    let mut reversed = v.clone();
    reversed.nodes.reverse();
    reversed.queued.reverse();
    reversed.leased.reverse();
    assert_eq!(decide(&reversed, NOW, &params), expected);
    let mut rotated = v;
    rotated.nodes.rotate_left(5);
    rotated.queued.rotate_left(123);
    rotated.leased.rotate_left(7);
    assert_eq!(decide(&rotated, NOW, &params), expected);
}

#[test]
fn decisions_serialize_as_snake_case() {
    let decisions = vec![
        Decision::Requeue {
            tenant: "acme".into(),
            id: "t1".into(),
            epoch: 3,
            reason: synod_scheduler::RequeueReason::NodeLost,
        },
        Decision::Assign { tenant: "acme".into(), id: "t2".into(), node_id: 1, lease_deadline_ms: 9 },
    ];
    let json = serde_json::to_string(&decisions).expect("serialize");
    assert_eq!(
        json,
        r#"[{"requeue":{"tenant":"acme","id":"t1","epoch":3,"reason":"node_lost"}},{"assign":{"tenant":"acme","id":"t2","node_id":1,"lease_deadline_ms":9}}]"#
    );
    let back: Vec<Decision> = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, decisions);
}

/// 100 nodes and 100k queued tasks over 1,000 tenants, most of them needing a
/// label no node has: a scheduler that rescanned the queue or the tenants per
/// assignment would take minutes here, this one takes well under a second.
#[test]
fn hundred_thousand_tasks_on_a_hundred_nodes() {
    let nodes: Vec<NodeView> = (1..=100u64)
        .map(|id| {
            let mut n = node(id, 100);
            n.cpu_load = (id % 10) as f64 / 10.0;
            n
        })
        .collect();
    let queued: Vec<QueuedTask> = (0..100_000u64)
        .map(|i| {
            let mut t = task(&format!("tenant-{:04}", i % 1_000), &format!("t{i:06}"));
            t.priority = (i % 10) as u8;
            t.enqueued_at_ms = NOW - i % 100_000;
            if (i / 1_000) % 10 != 0 {
                t.required_labels = labels(&[("gpu", &format!("model-{}", i % 50))]);
            }
            t
        })
        .collect();
    let v = view(nodes, queued, vec![]);
    let params = Params { max_assignments: 20_000, ..Params::default() };

    // Speed is measured by benchmarks, not asserted here: this checks the
    // large case is handled correctly.
    let decisions = decide(&v, NOW, &params);

    // Only the 10k label-free tasks fit, 10 per tenant.
    assert_eq!(decisions.len(), 10_000);
    let counts = per_tenant(&decisions);
    assert!(counts.len() == 1_000 && counts.values().all(|&n| n == 10), "every tenant got its 10");
}

#[test]
fn duplicate_queued_entries_are_assigned_once_and_do_not_stop_the_tenant() {
    let queued = vec![task("acme", "dup"), task("acme", "dup"), task("acme", "other")];
    let decisions = decide_now(&view(vec![node(1, 4)], queued, vec![]));
    assert_eq!(assigned_ids(&decisions), ["dup", "other"]);
}
