//! Rules 2 and 5: which nodes may take a task, and which of them does.

use synod_scheduler::Liveness;

use crate::util::*;

#[test]
fn node_eligibility_table() {
    // (case, node tweak, expected to receive the task)
    type Tweak = fn(&mut synod_scheduler::NodeView);
    let cases: &[(&str, Tweak, bool)] = &[
        ("alive and idle", |_| {}, true),
        ("suspect", |n| n.liveness = Liveness::Suspect, false),
        ("dead", |n| n.liveness = Liveness::Dead, false),
        ("draining", |n| n.draining = true, false),
        ("silent past the recovery timeout", |n| n.last_heartbeat_ms = NOW - 5_001, false),
        ("silent exactly the recovery timeout", |n| n.last_heartbeat_ms = NOW - 5_000, true),
        ("zero worker slots", |n| n.worker_slots = 0, false),
        ("plugin missing", |n| n.task_types = ["embed".to_string()].into(), false),
        ("no plugins at all", |n| n.task_types.clear(), false),
        ("overloaded cpu is still eligible", |n| n.cpu_load = 3.0, true),
    ];
    for &(case, tweak, expected) in cases {
        let mut n = node(1, 2);
        tweak(&mut n);
        let decisions = decide_now(&view(vec![n], vec![task("acme", "t1")], vec![]));
        assert_eq!(assigned(&decisions).len(), usize::from(expected), "{case}: {decisions:?}");
    }
}

#[test]
fn ineligible_nodes_are_skipped_for_an_eligible_one() {
    let mut suspect = node(1, 8);
    suspect.liveness = Liveness::Suspect;
    let mut dead = node(2, 8);
    dead.liveness = Liveness::Dead;
    let mut draining = node(3, 8);
    draining.draining = true;
    let v = view(vec![suspect, dead, draining, node(4, 1)], tasks("acme", "t", 3), vec![]);
    let decisions = decide_now(&v);
    let nodes: Vec<u64> = assigned(&decisions).into_iter().map(|(_, _, n)| n).collect();
    assert_eq!(nodes, [4], "only node 4, and only its one slot");
}

#[test]
fn required_labels_table() {
    let mut gpu = node(1, 4);
    gpu.labels = labels(&[("gpu", "a100"), ("zone", "eu")]);
    let mut cpu = node(2, 4);
    cpu.labels = labels(&[("zone", "us")]);
    /// (required labels, expected node or none)
    type Case = (&'static [(&'static str, &'static str)], Option<u64>);
    let cases: &[Case] = &[
        (&[("gpu", "a100")], Some(1)),
        (&[("gpu", "a100"), ("zone", "eu")], Some(1)),
        (&[("zone", "us")], Some(2)),
        (&[("gpu", "h100")], None),                 // value must match
        (&[("gpu", "a100"), ("zone", "us")], None), // all keys on one node
        (&[("ssd", "yes")], None),                  // key must exist
    ];
    for &(required, expected) in cases {
        let mut t = task("acme", "t1");
        t.required_labels = labels(required);
        let decisions = decide_now(&view(vec![gpu.clone(), cpu.clone()], vec![t], vec![]));
        let got = assigned(&decisions).first().map(|(_, _, n)| *n);
        assert_eq!(got, expected, "required {required:?}");
    }
}

#[test]
fn task_type_routes_to_the_node_with_the_plugin() {
    let mut embedder = node(5, 1);
    embedder.task_types = ["embed".to_string()].into();
    let mut t = task("acme", "e1");
    t.task_type = "embed".into();
    let decisions = decide_now(&view(vec![node(1, 4), embedder], vec![t], vec![]));
    assert_eq!(assigned(&decisions), [("acme".into(), "e1".into(), 5)]);
}

#[test]
fn least_busy_fraction_wins() {
    // node 1: 2 of 4 busy (0.5); node 2: 1 of 4 busy (0.25); node 3: 3 of 8 (0.375)
    let leases = vec![
        lease("x", "a", 1),
        lease("x", "b", 1),
        lease("x", "c", 2),
        lease("x", "d", 3),
        lease("x", "e", 3),
        lease("x", "f", 3),
    ];
    let v = view(vec![node(1, 4), node(2, 4), node(3, 8)], vec![task("acme", "t1")], leases);
    assert_eq!(assigned(&decide_now(&v)), [("acme".into(), "t1".into(), 2)]);
}

#[test]
fn equal_busy_fraction_falls_back_to_cpu_then_id() {
    let mut hot = node(1, 4);
    hot.cpu_load = 0.9;
    let mut cool = node(2, 4);
    cool.cpu_load = 0.2;
    let v = view(vec![hot.clone(), cool], vec![task("acme", "t1")], vec![]);
    assert_eq!(assigned(&decide_now(&v))[0].2, 2, "cooler node first");

    let mut twin = node(3, 4);
    twin.cpu_load = 0.9;
    let v = view(vec![twin, hot], vec![task("acme", "t1")], vec![]);
    assert_eq!(assigned(&decide_now(&v))[0].2, 1, "lowest id among equals, whatever the input order");
}

#[test]
fn assignments_spread_across_nodes_by_load() {
    // 6 tasks over a 2-slot and a 4-slot node: the loads stay balanced, so
    // the big node takes 4 and the small one 2, alternating by fraction.
    let v = view(vec![node(1, 2), node(2, 4)], tasks("acme", "t", 6), vec![]);
    let nodes: Vec<u64> = assigned(&decide_now(&v)).into_iter().map(|(_, _, n)| n).collect();
    // 0/2=0/4 -> id 1; then 1/2 vs 0/4 -> 2; 1/2 vs 1/4 -> 2; 1/2 = 2/4 -> 1; 2/2 full -> 2, 2.
    assert_eq!(nodes, [1, 2, 2, 1, 2, 2]);
}

#[test]
fn slots_are_never_overcommitted() {
    let v = view(vec![node(1, 3)], tasks("acme", "t", 10), vec![lease("acme", "running", 1)]);
    assert_eq!(assigned(&decide_now(&v)).len(), 2, "3 slots, 1 leased");
}

#[test]
fn node_already_overcommitted_gets_nothing() {
    let leases = (0..5).map(|i| lease("acme", &format!("l{i}"), 1)).collect();
    let v = view(vec![node(1, 2), node(2, 1)], tasks("acme", "t", 3), leases);
    assert_eq!(assigned(&decide_now(&v)), [("acme".into(), "t-00000".into(), 2)]);
}

#[test]
fn duplicate_node_ids_count_once_first_wins() {
    let mut second = node(1, 10);
    second.task_types.clear();
    let v = view(vec![node(1, 1), second], tasks("acme", "t", 5), vec![]);
    assert_eq!(assigned(&decide_now(&v)).len(), 1, "the first entry's single slot");
}

#[test]
fn a_task_needing_a_model_goes_only_to_a_node_that_has_it() {
    let with_model = |id| {
        let mut n = node(id, 4);
        n.capabilities = ["model:all-MiniLM-L6-v2".to_string()].into();
        n
    };
    let mut embed = task("acme", "embed");
    embed.requires = ["model:all-MiniLM-L6-v2".to_string()].into();
    // Node 1 is idle but lacks the model; node 2 is busier and has it.
    let mut busy = with_model(2);
    busy.cpu_load = 0.9;
    let decisions = decide_now(&view(vec![node(1, 4), busy], vec![embed.clone(), task("acme", "plain")], vec![]));
    let placed: Vec<(String, u64)> = assigned(&decisions).into_iter().map(|(_, id, n)| (id, n)).collect();
    assert!(placed.contains(&("embed".to_string(), 2)), "{placed:?}");
    assert!(placed.contains(&("plain".to_string(), 1)), "the plain task prefers the idle node: {placed:?}");
    // Control: with no node offering the model the task waits.
    let decisions = decide_now(&view(vec![node(1, 4)], vec![embed], vec![]));
    assert!(assigned(&decisions).is_empty(), "{decisions:?}");
}
