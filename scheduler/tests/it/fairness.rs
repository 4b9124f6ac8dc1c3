//! Rule 4: weighted fair share across tenants.

use std::collections::BTreeMap;

use synod_scheduler::{Params, QueuedTask, decide};

use crate::util::*;

#[test]
fn big_backlog_does_not_delay_a_small_tenant() {
    let mut queued = tasks("a-big", "a", 10_000);
    queued.extend(tasks("b-small", "b", 10));
    let decisions = decide_now(&view(vec![node(1, 2)], queued, vec![]));
    let counts = per_tenant(&decisions);
    assert_eq!(counts.get("b-small"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("a-big"), Some(&1), "{counts:?}");
}

#[test]
fn small_tenant_gets_the_only_free_slot_when_the_big_one_is_running() {
    let mut queued = tasks("a-big", "a", 10_000);
    queued.extend(tasks("b-small", "b", 10));
    let leases = (0..3).map(|i| lease("a-big", &format!("running-{i}"), 1)).collect();
    let decisions = decide_now(&view(vec![node(1, 4)], queued, leases));
    assert_eq!(per_tenant(&decisions), BTreeMap::from([("b-small".to_string(), 1)]));
}

#[test]
fn round_robin_between_equal_tenants() {
    let mut queued = tasks("acme", "a", 5);
    queued.extend(tasks("bolt", "b", 5));
    queued.extend(tasks("core", "c", 5));
    let decisions = decide_now(&view(vec![node(1, 6)], queued, vec![]));
    let tenants: Vec<String> = assigned(&decisions).into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(tenants, ["acme", "bolt", "core", "acme", "bolt", "core"]);
}

#[test]
fn running_counts_include_existing_leases() {
    // acme already runs 2, bolt 0: bolt gets the next two slots before acme.
    let mut queued = tasks("acme", "a", 5);
    queued.extend(tasks("bolt", "b", 5));
    let leases = vec![lease("acme", "r1", 1), lease("acme", "r2", 1)];
    let decisions = decide_now(&view(vec![node(1, 5)], queued, leases));
    let tenants: Vec<String> = assigned(&decisions).into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(tenants, ["bolt", "bolt", "acme"]);
}

#[test]
fn weights_split_slots_in_one_round_table() {
    // (acme weight, bolt weight, free slots, expected acme, expected bolt)
    let cases: &[(u32, u32, u32, usize, usize)] = &[
        (1, 1, 8, 4, 4),
        (3, 1, 8, 6, 2),
        (1, 3, 8, 2, 6),
        (0, 1, 8, 4, 4), // weight 0 counts as 1
        (u32::MAX, 1, 8, 7, 1),
    ];
    for &(wa, wb, slots, want_a, want_b) in cases {
        let mut queued = tasks("acme", "a", 50);
        queued.extend(tasks("bolt", "b", 50));
        let mut v = view(vec![node(1, slots)], queued, vec![]);
        v.tenant_weights = BTreeMap::from([("acme".to_string(), wa), ("bolt".to_string(), wb)]);
        let counts = per_tenant(&decide_now(&v));
        let got = (counts.get("acme").copied().unwrap_or(0), counts.get("bolt").copied().unwrap_or(0));
        assert_eq!(got, (want_a, want_b), "weights {wa}:{wb} over {slots} slots");
    }
}

#[test]
fn missing_weight_counts_as_one() {
    let mut queued = tasks("acme", "a", 50);
    queued.extend(tasks("bolt", "b", 50));
    let mut v = view(vec![node(1, 8)], queued, vec![]);
    v.tenant_weights = BTreeMap::from([("acme".to_string(), 3)]);
    assert_eq!(per_tenant(&decide_now(&v)), BTreeMap::from([("acme".into(), 6), ("bolt".into(), 2)]));
}

#[test]
fn weights_three_to_one_hold_over_many_rounds() {
    // Both tenants have an endless backlog; every round the two oldest leases
    // finish, so new slots free up continually and fair share decides who gets them.
    let params = Params::default();
    let mut v = view(vec![node(1, 4), node(2, 4)], vec![], vec![]);
    v.tenant_weights = BTreeMap::from([("heavy".to_string(), 3), ("light".to_string(), 1)]);
    let mut sim = Sim::new(v);
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..400u64 {
        let now = NOW + round * 100;
        sim.heartbeat_all(now);
        for tenant in ["heavy", "light"] {
            while sim.view.queued.iter().filter(|t| t.tenant == tenant).count() < 8 {
                sim.submit(QueuedTask {
                    enqueued_at_ms: now,
                    ..task(tenant, &format!("{tenant}-{round}-{}", sim.view.queued.len()))
                });
            }
        }
        for (tenant, n) in per_tenant(&sim.must_round(now, &params)) {
            *totals.entry(tenant).or_default() += n;
        }
        sim.complete_oldest(2);
    }
    let heavy = totals["heavy"] as f64;
    let light = totals["light"] as f64;
    let ratio = heavy / light;
    assert!(heavy + light >= 800.0, "the cluster kept working: {totals:?}");
    assert!((2.8..=3.2).contains(&ratio), "heavy:light = {ratio:.2} ({totals:?})");
}

#[test]
fn tenant_with_only_unplaceable_tasks_does_not_block_others() {
    // "aaa" sorts first and has the highest priorities, but needs a GPU no node has.
    let mut queued: Vec<QueuedTask> = (0..100)
        .map(|i| {
            let mut t = QueuedTask { priority: 9, ..task("aaa", &format!("gpu{i}")) };
            t.required_labels = labels(&[("gpu", "a100")]);
            t
        })
        .collect();
    queued.extend(tasks("zzz", "z", 3));
    let decisions = decide(&view(vec![node(1, 3)], queued, vec![]), NOW, &Params::default());
    assert_eq!(per_tenant(&decisions), BTreeMap::from([("zzz".into(), 3)]));
}

#[test]
fn tenant_fully_backed_off_does_not_block_others() {
    let mut queued: Vec<QueuedTask> =
        (0..10).map(|i| QueuedTask { not_before_ms: NOW + 1, ..task("aaa", &format!("w{i}")) }).collect();
    queued.extend(tasks("bbb", "b", 2));
    let decisions = decide_now(&view(vec![node(1, 2)], queued, vec![]));
    assert_eq!(per_tenant(&decisions), BTreeMap::from([("bbb".into(), 2)]));
}
