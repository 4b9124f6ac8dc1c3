//! Rule 1: leases on lost nodes and expired leases go back to the queue first.

use synod_scheduler::{Decision, Liveness, Params, RequeueReason, decide};

use crate::util::*;

#[test]
fn requeue_rules_table() {
    use RequeueReason::{LeaseExpired, NodeLost};
    let params = Params::default();
    let silent_ms = NOW - params.recovery_timeout_ms;
    /// (case, liveness, last heartbeat, node present, lease deadline, expected)
    type Case = (&'static str, Liveness, u64, bool, u64, Option<RequeueReason>);
    let cases: &[Case] = &[
        ("alive, lease running", Liveness::Alive, NOW, true, NOW + 1, None),
        ("alive, lease ends exactly now", Liveness::Alive, NOW, true, NOW, None),
        ("alive, lease ended", Liveness::Alive, NOW, true, NOW - 1, Some(LeaseExpired)),
        ("suspect keeps its lease", Liveness::Suspect, NOW, true, NOW + 1, None),
        ("suspect, lease ended", Liveness::Suspect, NOW, true, NOW - 1, Some(LeaseExpired)),
        ("dead", Liveness::Dead, NOW, true, NOW + 1, Some(NodeLost)),
        ("dead beats expired", Liveness::Dead, NOW, true, NOW - 1, Some(NodeLost)),
        ("missing node", Liveness::Alive, NOW, false, NOW + 1, Some(NodeLost)),
        ("silent exactly the timeout", Liveness::Alive, silent_ms, true, NOW + 1, None),
        ("silent past the timeout", Liveness::Alive, silent_ms - 1, true, NOW + 1, Some(NodeLost)),
        ("silent beats expired", Liveness::Suspect, silent_ms - 1, true, NOW - 1, Some(NodeLost)),
    ];
    for &(case, liveness, heartbeat, present, deadline, expected) in cases {
        let mut n = node(7, 4);
        n.liveness = liveness;
        n.last_heartbeat_ms = heartbeat;
        let mut l = lease("acme", "t1", 7);
        l.lease_deadline_ms = deadline;
        l.epoch = 42;
        let v = view(if present { vec![n] } else { vec![] }, vec![], vec![l]);
        let decisions = decide(&v, NOW, &params);
        let want: Vec<Decision> = expected
            .into_iter()
            .map(|reason| Decision::Requeue { tenant: "acme".into(), id: "t1".into(), epoch: 42, reason })
            .collect();
        assert_eq!(decisions, want, "{case}");
    }
}

#[test]
fn requeues_are_sorted_by_tenant_then_id_and_come_before_assignments() {
    let v = view(
        vec![node(1, 4)],
        vec![task("aaa", "q1")],
        vec![lease("zeta", "b", 9), lease("acme", "z", 9), lease("zeta", "a", 9), lease("acme", "m", 9)],
    );
    let decisions = decide_now(&v);
    let keys: Vec<(&str, &str)> = decisions.iter().map(Decision::task).collect();
    assert_eq!(keys, [("acme", "m"), ("acme", "z"), ("zeta", "a"), ("zeta", "b"), ("aaa", "q1")]);
    assert!(matches!(decisions[4], Decision::Assign { .. }), "assignment last: {decisions:?}");
}

#[test]
fn requeued_task_is_not_reassigned_in_the_same_round() {
    let mut dead = node(1, 4);
    dead.liveness = Liveness::Dead;
    let mut sim = Sim::new(view(vec![dead, node(2, 4)], vec![], vec![]));
    sim.submit(task("acme", "t1"));
    sim.view.queued.clear(); // t1 is leased to the dead node, not queued
    sim.view.leased.push(lease("acme", "t1", 1));
    let params = Params::default();

    let first = sim.must_round(NOW, &params);
    assert_eq!(requeued(&first), [("acme".into(), "t1".into(), RequeueReason::NodeLost)]);
    assert_eq!(assigned(&first), [], "requeued this round, so not placed this round");

    let second = sim.must_round(NOW + 1, &params);
    assert_eq!(assigned(&second), [("acme".into(), "t1".into(), 2)], "placed on the live node next round");
}

#[test]
fn task_both_leased_and_queued_in_a_stale_view_is_not_assigned() {
    // The view lists t1 as queued too (a stale read); it must not be placed
    // while its lease is being requeued, nor while its lease is still live.
    let mut dead = node(1, 4);
    dead.liveness = Liveness::Dead;
    for (case, lease_node) in [("requeued lease", 1), ("live lease", 2)] {
        let v = view(vec![dead.clone(), node(2, 4)], vec![task("acme", "t1")], vec![lease("acme", "t1", lease_node)]);
        let decisions = decide_now(&v);
        assert_eq!(assigned(&decisions), [], "{case}: {decisions:?}");
    }
}

#[test]
fn expired_lease_frees_its_slot_for_another_task() {
    let mut expired = lease("acme", "old", 1);
    expired.lease_deadline_ms = NOW - 1;
    let v = view(vec![node(1, 1)], vec![task("acme", "new")], vec![expired]);
    let decisions = decide_now(&v);
    assert_eq!(requeued(&decisions), [("acme".into(), "old".into(), RequeueReason::LeaseExpired)]);
    assert_eq!(assigned(&decisions), [("acme".into(), "new".into(), 1)]);
}

#[test]
fn live_lease_holds_its_slot() {
    let v = view(vec![node(1, 1)], vec![task("acme", "new")], vec![lease("acme", "old", 1)]);
    assert_eq!(decide_now(&v), []);
}

#[test]
fn requeues_are_not_limited_by_max_assignments() {
    let params = Params { max_assignments: 0, ..Params::default() };
    let leases = (0..5).map(|i| lease("acme", &format!("t{i}"), 99)).collect();
    let v = view(vec![node(1, 8)], tasks("acme", "q", 3), leases);
    let decisions = decide(&v, NOW, &params);
    assert_eq!(requeued(&decisions).len(), 5);
    assert_eq!(assigned(&decisions), []);
}

#[test]
fn duplicate_lease_entries_requeue_once() {
    let mut again = lease("acme", "t1", 9);
    again.epoch = 2;
    let v = view(vec![], vec![], vec![lease("acme", "t1", 9), again]);
    assert_eq!(requeued(&decide_now(&v)).len(), 1);
}
