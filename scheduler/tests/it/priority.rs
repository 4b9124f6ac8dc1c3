//! Rule 3: priority within a tenant, aging, backoff, and skipping the unplaceable.

use synod_scheduler::{Params, QueuedTask, decide};

use crate::util::*;

fn prio(id: &str, priority: u8, enqueued_at_ms: u64) -> QueuedTask {
    QueuedTask { priority, enqueued_at_ms, ..task("acme", id) }
}

#[test]
fn order_within_a_tenant_table() {
    let params = Params::default(); // one level per 10 s
    // (case, queued tasks, expected assignment order)
    let cases: Vec<(&str, Vec<QueuedTask>, Vec<&str>)> = vec![
        (
            "higher priority first",
            vec![prio("low", 1, NOW), prio("high", 9, NOW), prio("mid", 5, NOW)],
            vec!["high", "mid", "low"],
        ),
        ("equal priority: older first", vec![prio("new", 3, NOW), prio("old", 3, NOW - 1)], vec!["old", "new"]),
        ("equal priority and age: id order", vec![prio("b", 3, NOW), prio("a", 3, NOW)], vec!["a", "b"]),
        (
            "aged priority 0 beats fresh priority 5",
            vec![prio("fresh5", 5, NOW), prio("aged0", 0, NOW - 60_000)],
            vec!["aged0", "fresh5"],
        ),
        (
            "aging one level short loses",
            vec![prio("fresh5", 5, NOW), prio("aged0", 0, NOW - 49_999)],
            vec!["fresh5", "aged0"],
        ),
        (
            "aged to an equal level: the older wins the tie",
            vec![prio("fresh5", 5, NOW), prio("aged0", 0, NOW - 50_000)],
            vec!["aged0", "fresh5"],
        ),
        (
            "aging past 9 keeps counting",
            vec![prio("fresh9", 9, NOW - 1), prio("aged0", 0, NOW - 100_000)],
            vec!["aged0", "fresh9"],
        ),
    ];
    for (case, queued, expected) in cases {
        let decisions = decide(&view(vec![node(1, 10)], queued, vec![]), NOW, &params);
        assert_eq!(assigned_ids(&decisions), expected, "{case}");
    }
}

#[test]
fn aging_disabled_when_zero() {
    let params = Params { aging_ms_per_level: 0, ..Params::default() };
    let queued = vec![prio("fresh5", 5, NOW), prio("aged0", 0, 0)];
    let decisions = decide(&view(vec![node(1, 10)], queued, vec![]), NOW, &params);
    assert_eq!(assigned_ids(&decisions), ["fresh5", "aged0"]);
}

#[test]
fn low_priority_eventually_runs_under_a_stream_of_urgent_work() {
    // One slot; every round one priority-5 task finishes and a fresh one arrives.
    let params = Params::default();
    let mut sim = Sim::new(view(vec![node(1, 1)], vec![prio("patient", 0, NOW)], vec![]));
    let mut ran_at = None;
    for round in 0..20u64 {
        let now = NOW + round * 10_000;
        sim.heartbeat_all(now);
        sim.submit(prio(&format!("urgent-{round:02}"), 5, now));
        let decisions = sim.must_round(now, &params);
        if assigned_ids(&decisions).contains(&"patient".to_string()) {
            ran_at = Some(round);
            break;
        }
        sim.complete_oldest(1);
    }
    // Fresh work is always level 5; the patient task reaches level 5 after
    // 50 s and wins the tie by age.
    assert_eq!(ran_at, Some(5));
}

#[test]
fn backoff_not_before_table() {
    // (not_before, expected assigned)
    let cases = [(0, true), (NOW - 1, true), (NOW, true), (NOW + 1, false), (u64::MAX, false)];
    for (not_before_ms, expected) in cases {
        let t = QueuedTask { not_before_ms, ..task("acme", "t1") };
        let decisions = decide_now(&view(vec![node(1, 1)], vec![t], vec![]));
        assert_eq!(assigned(&decisions).len(), usize::from(expected), "not_before {not_before_ms}");
    }
}

#[test]
fn backed_off_task_does_not_take_the_slot_from_an_eligible_one() {
    let waiting = QueuedTask { not_before_ms: NOW + 1, priority: 9, ..task("acme", "waiting") };
    let decisions = decide_now(&view(vec![node(1, 1)], vec![waiting, task("acme", "ready")], vec![]));
    assert_eq!(assigned_ids(&decisions), ["ready"]);
}

#[test]
fn unplaceable_head_does_not_block_later_tasks_of_the_tenant() {
    let mut gpu = prio("gpu", 9, NOW - 100_000);
    gpu.required_labels = labels(&[("gpu", "a100")]);
    let mut gpu2 = prio("gpu2", 9, NOW - 100_000);
    gpu2.required_labels = labels(&[("gpu", "a100")]);
    let decisions = decide_now(&view(vec![node(1, 2)], vec![gpu, gpu2, prio("plain", 0, NOW)], vec![]));
    assert_eq!(assigned_ids(&decisions), ["plain"]);
}

#[test]
fn task_skipped_for_a_full_class_does_not_block_another_class() {
    // The GPU node has one slot: the first GPU task takes it, the second is
    // skipped, and the plain tasks still fill the CPU node.
    let mut gpu_node = node(1, 1);
    gpu_node.labels = labels(&[("gpu", "a100")]);
    let mut queued: Vec<QueuedTask> = (0..3)
        .map(|i| {
            let mut t = prio(&format!("gpu{i}"), 9, NOW);
            t.required_labels = labels(&[("gpu", "a100")]);
            t
        })
        .collect();
    queued.extend([prio("plain0", 0, NOW), prio("plain1", 0, NOW)]);
    let decisions = decide_now(&view(vec![gpu_node, node(2, 2)], queued, vec![]));
    assert_eq!(
        assigned(&decisions),
        [("acme".into(), "gpu0".into(), 1), ("acme".into(), "plain0".into(), 2), ("acme".into(), "plain1".into(), 2),]
    );
}
