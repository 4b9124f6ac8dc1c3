use prost::Message;
use synod_store::pb::{self, RejectCode, TaskState, command::Kind, command_result::Outcome};
use synod_store::tasks::backoff_ms;

use crate::util::*;

fn spec(id: &str, key: &str, max_attempts: u32) -> pb::TaskSpec {
    pb::TaskSpec {
        id: id.into(),
        tenant: "acme".into(),
        task_type: "echo".into(),
        payload: br#"{"text":"hi"}"#.to_vec(),
        priority: 5,
        idempotency_key: key.into(),
        max_attempts,
        backoff: Some(pb::Backoff { initial_ms: 100, multiplier: 2.0, max_ms: 1000 }),
        timeout_ms: 1000,
        labels: Default::default(),
        requires: Vec::new(),
        plugin_version: String::new(),
    }
}

fn items(r: &pb::CommandResult) -> Vec<pb::ItemResult> {
    match &r.outcome {
        Some(Outcome::Batch(b)) => b.items.clone(),
        other => panic!("not a batch result: {other:?}"),
    }
}

fn tref(id: &str, epoch: u64) -> pb::TaskRef {
    pb::TaskRef { tenant: "acme".into(), id: id.into(), epoch }
}

fn assign(id: &str, node: u64) -> Kind {
    Kind::AssignTasks(pb::AssignTasks {
        assignments: vec![pb::Assignment {
            tenant: "acme".into(),
            id: id.into(),
            node_id: node,
            lease_deadline_ms: 10_000,
            lease_ms: 0,
        }],
    })
}

/// An assignment as today's leader proposes it: a lease length, not a deadline.
fn assign_for(id: &str, node: u64, lease_ms: u64) -> Kind {
    Kind::AssignTasks(pb::AssignTasks {
        assignments: vec![pb::Assignment {
            tenant: "acme".into(),
            id: id.into(),
            node_id: node,
            lease_deadline_ms: 0,
            lease_ms,
        }],
    })
}

fn renew_for(id: &str, node: u64, epoch: u64, lease_ms: u64) -> Kind {
    Kind::RenewLeases(pb::RenewLeases {
        node_id: node,
        renewals: vec![pb::LeaseRenewal { task: Some(tref(id, epoch)), lease_deadline_ms: 0, lease_ms }],
    })
}

/// A requeue as today's leader proposes it: checked by apply.
fn checked_requeue(id: &str, epoch: u64, reason: pb::RequeueReason, max_lost: u32) -> Kind {
    Kind::RequeueTasks(pb::RequeueTasks {
        tasks: vec![tref(id, epoch)],
        reason: reason as i32,
        checked: true,
        node_silence_ms: 5_000,
        drain_deadline_ms: 60_000,
        max_lost,
    })
}

fn submit(specs: Vec<pb::TaskSpec>) -> Kind {
    Kind::SubmitTasks(pb::SubmitTasks { tasks: specs, max_queued: 0, max_storage_bytes: 0, placements: vec![] })
}

fn code(r: &pb::CommandResult) -> Option<RejectCode> {
    items(r)[0].rejected.as_ref().map(|x| RejectCode::try_from(x.code).unwrap())
}

fn complete(id: &str, node: u64, epoch: u64, result: Option<&str>, retryable: bool) -> Kind {
    Kind::CompleteTasks(pb::CompleteTasks {
        node_id: node,
        completions: vec![pb::Completion {
            task: Some(tref(id, epoch)),
            result: result.map(|r| r.as_bytes().to_vec()),
            error: if result.is_none() { "boom".into() } else { String::new() },
            retryable,
        }],
    })
}

fn must_state(store: &synod_store::Store, id: &str) -> (TaskState, pb::TaskRecord) {
    let rec = store.get_task("acme", id).unwrap().expect("task exists");
    (TaskState::try_from(rec.state).unwrap(), rec)
}

#[test]
fn idempotent_submit_yields_one_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let submit = |id: &str| {
        cmd(
            1,
            Kind::SubmitTasks(pb::SubmitTasks {
                tasks: vec![spec(id, "k1", 3)],
                max_queued: 0,
                max_storage_bytes: 0,
                placements: vec![],
            }),
        )
    };
    let r = must_apply(&store, 1, &[submit("a"), submit("b")]);
    assert_eq!(items(&r[0])[0].id, "a");
    let second = &items(&r[1])[0];
    assert_eq!((second.id.as_str(), second.duplicate), ("a", true));
    assert!(store.get_task("acme", "b").unwrap().is_none());
    assert_eq!(store.queued_tasks(100).unwrap().len(), 1);
}

#[test]
fn completion_is_exactly_once_and_fenced_by_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(
        &store,
        1,
        &[
            cmd(
                1,
                Kind::SubmitTasks(pb::SubmitTasks {
                    tasks: vec![spec("t", "", 3)],
                    max_queued: 0,
                    max_storage_bytes: 0,
                    placements: vec![],
                }),
            ),
            cmd(2, assign("t", 7)),
        ],
    );
    let (s, rec) = must_state(&store, "t");
    assert_eq!((s, rec.lease_epoch, rec.node_id), (TaskState::Assigned, 1, 7));
    assert_eq!(store.leased_tasks(Some(7)).unwrap().len(), 1);

    // The node is lost; the leader requeues with epoch 1 and reassigns (epoch 2).
    let requeue = Kind::RequeueTasks(pb::RequeueTasks {
        tasks: vec![tref("t", 1)],
        reason: pb::RequeueReason::NodeLost as i32,
        ..Default::default()
    });
    must_apply(&store, 3, &[cmd(3, requeue), cmd(4, assign("t", 8))]);
    let (s, rec) = must_state(&store, "t");
    assert_eq!((s, rec.lease_epoch, rec.node_id), (TaskState::Assigned, 2, 8));
    assert!(store.leased_tasks(Some(7)).unwrap().is_empty());

    // The old worker finishes late: rejected. The new one completes; a repeat is rejected.
    let r = must_apply(
        &store,
        5,
        &[
            cmd(5, complete("t", 7, 1, Some("\"old\""), false)),
            cmd(6, complete("t", 8, 2, Some("\"new\""), false)),
            cmd(7, complete("t", 8, 2, Some("\"again\""), false)),
        ],
    );
    let codes: Vec<Option<i32>> = r.iter().map(|r| items(r)[0].rejected.as_ref().map(|x| x.code)).collect();
    assert_eq!(codes, vec![Some(RejectCode::StaleEpoch as i32), None, Some(RejectCode::AlreadyDone as i32)]);
    let (s, rec) = must_state(&store, "t");
    assert_eq!(s, TaskState::Succeeded);
    assert_eq!(rec.result, b"\"new\"");
    assert_eq!(rec.attempts.len(), 2);
    assert!(store.leased_tasks(None).unwrap().is_empty());
}

#[test]
fn retries_with_backoff_then_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(
        &store,
        1,
        &[
            cmd(
                1000,
                Kind::SubmitTasks(pb::SubmitTasks {
                    tasks: vec![spec("t", "", 2)],
                    max_queued: 0,
                    max_storage_bytes: 0,
                    placements: vec![],
                }),
            ),
            cmd(1000, assign("t", 1)),
        ],
    );
    must_apply(&store, 3, &[cmd(2000, complete("t", 1, 1, None, true))]);
    let (s, rec) = must_state(&store, "t");
    assert_eq!(s, TaskState::Queued);
    assert_eq!(rec.not_before_ms, 2000 + 100, "first retry waits initial_ms");
    must_apply(&store, 4, &[cmd(3000, assign("t", 1)), cmd(4000, complete("t", 1, 2, None, true))]);
    let (s, rec) = must_state(&store, "t");
    assert_eq!(s, TaskState::DeadLettered);
    assert_eq!(rec.attempts.len(), 2);
    assert!(store.queued_tasks(10).unwrap().is_empty());
    assert_eq!(backoff_ms(Some(&pb::Backoff { initial_ms: 100, multiplier: 2.0, max_ms: 1000 }), 3), 400);
    assert_eq!(backoff_ms(Some(&pb::Backoff { initial_ms: 100, multiplier: 2.0, max_ms: 1000 }), 30), 1000);
    // Integers only (issue 13, defect 9: no f64::powi in apply): each step rounds down.
    let b = pb::Backoff { initial_ms: 100, multiplier: 1.5, max_ms: 0 };
    let steps: Vec<u64> = (1..=5).map(|a| backoff_ms(Some(&b), a)).collect();
    assert_eq!(steps, [100, 150, 225, 337, 505]);
    let huge = pb::Backoff { initial_ms: u64::MAX / 2, multiplier: 1e300, max_ms: 0 };
    assert_eq!(backoff_ms(Some(&huge), 64), u64::MAX, "saturates, never wraps");
}

#[test]
fn non_retryable_failure_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(
        &store,
        1,
        &[
            cmd(
                1,
                Kind::SubmitTasks(pb::SubmitTasks {
                    tasks: vec![spec("t", "", 5)],
                    max_queued: 0,
                    max_storage_bytes: 0,
                    placements: vec![],
                }),
            ),
            cmd(1, assign("t", 1)),
            cmd(2, complete("t", 1, 1, None, false)),
        ],
    );
    assert_eq!(must_state(&store, "t").0, TaskState::Failed);
}

#[test]
fn cancel_queued_and_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let cancel = |id: &str| Kind::CancelTask(pb::CancelTask { tenant: "acme".into(), id: id.into() });
    must_apply(
        &store,
        1,
        &[
            cmd(
                1,
                Kind::SubmitTasks(pb::SubmitTasks {
                    tasks: vec![spec("q", "", 3), spec("r", "", 3)],
                    max_queued: 0,
                    max_storage_bytes: 0,
                    placements: vec![],
                }),
            ),
            cmd(1, assign("r", 4)),
            cmd(1, Kind::StartTasks(pb::StartTasks { node_id: 4, tasks: vec![tref("r", 1)] })),
        ],
    );
    must_apply(&store, 4, &[cmd(2, cancel("q")), cmd(2, cancel("r"))]);
    assert_eq!(must_state(&store, "q").0, TaskState::Cancelled);
    let (s, rec) = must_state(&store, "r");
    assert_eq!(s, TaskState::Running);
    assert!(rec.cancel_requested);
    assert!(store.leased_tasks(Some(4)).unwrap()[0].entry.cancel_requested, "the worker sees the request");
    // The worker stops it: a retryable error still ends in cancelled.
    must_apply(&store, 6, &[cmd(3, complete("r", 4, 1, None, true))]);
    assert_eq!(must_state(&store, "r").0, TaskState::Cancelled);
    let r = must_apply(&store, 7, &[cmd(4, cancel("r"))]);
    assert!(matches!(r[0].outcome, Some(Outcome::Rejected(_))));
}

#[test]
fn queue_scan_is_fair_per_tenant_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let mut specs = Vec::new();
    for i in 0..50 {
        let mut s = spec(&format!("big-{i:03}"), "", 1);
        s.tenant = "big".into();
        specs.push(s);
    }
    let mut urgent = spec("small-urgent", "", 1);
    urgent.tenant = "small".into();
    urgent.priority = 9;
    let mut lazy = spec("small-lazy", "", 1);
    lazy.tenant = "small".into();
    lazy.priority = 0;
    specs.push(lazy);
    specs.push(urgent);
    must_apply(
        &store,
        1,
        &[cmd(
            1,
            Kind::SubmitTasks(pb::SubmitTasks {
                tasks: specs,
                max_queued: 0,
                max_storage_bytes: 0,
                placements: vec![],
            }),
        )],
    );
    let q = store.queued_tasks(5).unwrap();
    let big = q.iter().filter(|t| t.tenant == "big").count();
    let small: Vec<&str> = q.iter().filter(|t| t.tenant == "small").map(|t| t.id.as_str()).collect();
    assert_eq!(big, 5, "at most per_tenant from a big tenant");
    assert_eq!(small, vec!["small-urgent", "small-lazy"], "the small tenant is seen, most urgent first");
}

#[test]
fn counters_follow_every_transition() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(
        &store,
        1,
        &[
            cmd(
                1,
                Kind::SubmitTasks(pb::SubmitTasks {
                    tasks: vec![spec("a", "", 2), spec("b", "", 1)],
                    max_queued: 0,
                    max_storage_bytes: 0,
                    placements: vec![],
                }),
            ),
            cmd(2, assign("a", 1)),
            cmd(3, complete("a", 1, 1, None, true)),
            cmd(4, assign("a", 1)),
            cmd(5, complete("a", 1, 2, Some("1"), false)),
        ],
    );
    let counters: std::collections::BTreeMap<String, u64> =
        store.task_counters().unwrap().into_iter().map(|(t, n, v)| (format!("{t}/{n}"), v)).collect();
    assert_eq!(counters.get("acme/queued"), Some(&1), "{counters:?}");
    assert_eq!(counters.get("acme/succeeded"), Some(&1), "{counters:?}");
    assert_eq!(counters.get("acme/assigned"), Some(&0), "{counters:?}");
    assert_eq!(counters.get("acme/attempts"), Some(&2), "{counters:?}");
    assert_eq!(counters.get("acme/retries"), Some(&1), "{counters:?}");
}

#[test]
fn large_payloads_and_results_live_in_the_blob_cf_and_travel_in_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(40_000));
    let mut s = spec("big", "", 1);
    s.payload = big.clone().into_bytes();
    must_apply(
        &store,
        1,
        &[
            cmd(
                1,
                Kind::SubmitTasks(pb::SubmitTasks {
                    tasks: vec![s, spec("small", "", 1)],
                    max_queued: 0,
                    max_storage_bytes: 0,
                    placements: vec![],
                }),
            ),
            cmd(2, assign("big", 1)),
        ],
    );
    let (_, rec) = must_state(&store, "big");
    assert!(rec.payload_in_blob);
    assert!(rec.spec.as_ref().unwrap().payload.is_empty(), "the record stays small");
    assert_eq!(store.task_payload(&rec).unwrap(), big.as_bytes());
    let (_, small) = must_state(&store, "small");
    assert!(!small.payload_in_blob);
    assert_eq!(store.task_payload(&small).unwrap(), br#"{"text":"hi"}"#);

    must_apply(&store, 3, &[cmd(3, complete("big", 1, 1, Some(&big), false))]);
    let (state, rec) = must_state(&store, "big");
    assert_eq!(state, TaskState::Succeeded);
    assert!(rec.result_in_blob && rec.result.is_empty());
    assert_eq!(store.task_result(&rec).unwrap(), big.as_bytes());

    // A snapshot carries the blobs.
    let path = dir.path().join("snap");
    store.build_snapshot(&path).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = must_open(other_dir.path());
    other.install_snapshot(&path).unwrap();
    let rec = other.get_task("acme", "big").unwrap().unwrap();
    assert_eq!(other.task_result(&rec).unwrap(), big.as_bytes());
    assert_eq!(other.task_payload(&rec).unwrap(), big.as_bytes());
    assert_eq!(other.state_digest().unwrap(), store.state_digest().unwrap());
}

/// The queue and lease views (served from memory) after a reopen and after
/// a snapshot install are those of the store that wrote them.
#[test]
fn queue_and_lease_views_survive_reopen_and_snapshot_install() {
    let views = |s: &synod_store::Store| {
        let q: Vec<String> = s.queued_tasks(100).unwrap().into_iter().map(|t| t.id).collect();
        let l: Vec<(u64, String, u64)> =
            s.leased_tasks(None).unwrap().into_iter().map(|t| (t.node_id, t.id, t.entry.epoch)).collect();
        (q, l)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let expected = {
        let store = must_open(&dir.path().join("a"));
        let specs = (0..6).map(|i| spec(&format!("t{i}"), "", 2)).collect();
        must_apply(
            &store,
            1,
            &[
                cmd(
                    1,
                    Kind::SubmitTasks(pb::SubmitTasks {
                        tasks: specs,
                        max_queued: 0,
                        max_storage_bytes: 0,
                        placements: vec![],
                    }),
                ),
                cmd(2, assign("t0", 3)),
                cmd(3, assign("t1", 4)),
                cmd(4, complete("t1", 4, 1, Some("{}"), false)),
                cmd(5, Kind::CancelTask(pb::CancelTask { tenant: "acme".into(), id: "t2".into() })),
            ],
        );
        let v = views(&store);
        assert_eq!(v.0, ["t3", "t4", "t5"], "queued: t0 is leased, t1 done, t2 cancelled");
        assert_eq!(v.1, [(3, "t0".to_string(), 1)], "leased");
        store.build_snapshot(&path).unwrap();
        v
    };
    assert_eq!(views(&must_open(&dir.path().join("a"))), expected, "after reopen");
    let other = must_open(&dir.path().join("b"));
    must_apply(
        &other,
        1,
        &[cmd(
            1,
            Kind::SubmitTasks(pb::SubmitTasks {
                tasks: vec![spec("stale", "", 1)],
                max_queued: 0,
                max_storage_bytes: 0,
                placements: vec![],
            }),
        )],
    );
    other.install_snapshot(&path).unwrap();
    assert_eq!(views(&other), expected, "after a snapshot install (the stale task is gone)");
}

#[test]
fn a_batch_that_could_pass_the_queue_quota_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let submit = |ids: &[&str]| {
        cmd(
            1,
            Kind::SubmitTasks(pb::SubmitTasks {
                tasks: ids.iter().map(|i| spec(i, "", 1)).collect(),
                max_queued: 3,
                max_storage_bytes: 0,
                placements: vec![],
            }),
        )
    };
    let r = must_apply(&store, 1, &[submit(&["a", "b"]), submit(&["c", "d"])]);
    assert!(items(&r[0]).iter().all(|i| i.rejected.is_none()));
    let refused = items(&r[1]);
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|i| i.rejected.as_ref().is_some_and(|x| x.code == RejectCode::QuotaExceeded as i32)));
    assert!(store.get_task("acme", "c").unwrap().is_none(), "nothing of a refused batch is stored");
    // A task leaves the queue: now c and d fit (b, c, d queued; a assigned).
    let r = must_apply(&store, 3, &[cmd(2, assign("a", 1)), submit(&["c", "d"]), submit(&["e"])]);
    assert!(items(&r[1]).iter().all(|i| i.rejected.is_none()));
    assert!(items(&r[2])[0].rejected.is_some(), "the quota of 3 is full");
}

/// Issue 13, defect 7: a task cancelled while assigned (its node has not
/// reported it started) ends at once and loses its lease, so its node never
/// starts it. On the old main it stayed assigned with its lease, and the
/// node started it.
#[test]
fn a_task_cancelled_while_assigned_ends_at_once_and_its_lease_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let cancel = Kind::CancelTask(pb::CancelTask { tenant: "acme".into(), id: "a".into() });
    must_apply(&store, 1, &[cmd(1, submit(vec![spec("a", "", 3)])), cmd(1, assign_for("a", 4, 30_000))]);
    assert_eq!(store.leased_tasks(Some(4)).unwrap().len(), 1, "control: the node holds the lease");
    must_apply(&store, 3, &[cmd(2, cancel)]);
    let (s, rec) = must_state(&store, "a");
    assert_eq!(s, TaskState::Cancelled);
    assert!(store.leased_tasks(Some(4)).unwrap().is_empty(), "no lease left for the node to start");
    assert_eq!(rec.attempts.len(), 1);
    assert_eq!(rec.attempts[0].error, "cancelled before it started");
    // A start or completion the node still sends changes nothing.
    let start = Kind::StartTasks(pb::StartTasks { node_id: 4, tasks: vec![tref("a", 1)] });
    let r = must_apply(&store, 4, &[cmd(3, start), cmd(3, complete("a", 4, 1, Some("1"), false))]);
    assert_eq!(code(&r[0]), Some(RejectCode::AlreadyDone));
    assert_eq!(code(&r[1]), Some(RejectCode::AlreadyDone));
    assert_eq!(must_state(&store, "a").0, TaskState::Cancelled);
}

/// Issue 13, defect 2: lease deadlines are the applying leader's stamp plus
/// the lease length; a proposer's own clock (an absolute deadline in the
/// command) does not count when a length is given.
#[test]
fn lease_deadlines_are_the_leaders_stamp_plus_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(&store, 1, &[cmd(5_000, submit(vec![spec("a", "", 3)])), cmd(5_000, assign_for("a", 4, 30_000))]);
    assert_eq!(must_state(&store, "a").1.lease_deadline_ms, 35_000);
    assert_eq!(store.leased_tasks(Some(4)).unwrap()[0].entry.deadline_ms, 35_000);
    // A renewal from a node whose clock is an hour ahead: it sends a length.
    let mut skewed = renew_for("a", 4, 1, 30_000);
    if let Kind::RenewLeases(r) = &mut skewed {
        r.renewals[0].lease_deadline_ms = 3_600_000 + 40_000;
    }
    must_apply(&store, 3, &[cmd(10_000, skewed)]);
    assert_eq!(must_state(&store, "a").1.lease_deadline_ms, 40_000, "stamp 10 s + lease 30 s");
    // A renewal never shortens a lease.
    must_apply(&store, 4, &[cmd(6_000, renew_for("a", 4, 1, 1_000))]);
    assert_eq!(must_state(&store, "a").1.lease_deadline_ms, 40_000);
    // Control: an older proposer's absolute deadline is still honoured.
    must_apply(&store, 5, &[cmd(1, submit(vec![spec("b", "", 3)])), cmd(1, assign("b", 4))]);
    assert_eq!(must_state(&store, "b").1.lease_deadline_ms, 10_000);
}

/// Issue 13, defect 3: apply checks a requeue against the state at its
/// stamp, not the leader's view: a lease renewed after the leader decided
/// stays, a node heard from stays. On the old main both were requeued.
#[test]
fn a_checked_requeue_of_a_live_lease_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(
        &store,
        1,
        &[
            cmd(1_000, register(4)),
            cmd(1_000, submit(vec![spec("a", "", 3), spec("b", "", 3)])),
            cmd(1_000, assign_for("a", 4, 10_000)),
            cmd(1_000, assign_for("b", 4, 10_000)),
        ],
    );
    // The leader saw a's lease run out at 11 000, but a renewal landed first.
    must_apply(&store, 5, &[cmd(9_000, renew_for("a", 4, 1, 10_000))]);
    let heartbeat = |at| cmd(at, Kind::Heartbeat(pb::NodeHeartbeat { node_id: 4, applied_index: 0, load: None }));
    let r = must_apply(
        &store,
        6,
        &[
            cmd(12_000, checked_requeue("a", 1, pb::RequeueReason::LeaseExpired, 10)),
            heartbeat(12_000),
            cmd(15_000, checked_requeue("b", 1, pb::RequeueReason::NodeLost, 10)),
        ],
    );
    assert_eq!(code(&r[0]), Some(RejectCode::LeaseLive), "renewed until 19 000");
    assert_eq!(code(&r[2]), Some(RejectCode::LeaseLive), "heard from 3 s ago, within 5 s");
    assert_eq!(must_state(&store, "a").0, TaskState::Assigned);
    assert_eq!(must_state(&store, "b").0, TaskState::Assigned);
    // Control: once the lease has run out / the node is silent, they go.
    let r = must_apply(
        &store,
        9,
        &[
            cmd(19_001, checked_requeue("a", 1, pb::RequeueReason::LeaseExpired, 10)),
            cmd(17_001, checked_requeue("b", 1, pb::RequeueReason::NodeLost, 10)),
        ],
    );
    assert_eq!((code(&r[0]), code(&r[1])), (None, None));
    assert_eq!(must_state(&store, "a").0, TaskState::Queued);
    assert_eq!(must_state(&store, "b").0, TaskState::Queued);
    // A drain requeue needs a node draining past its deadline.
    must_apply(&store, 11, &[cmd(20_000, assign_for("a", 4, 10_000))]);
    let r = must_apply(&store, 12, &[cmd(21_000, checked_requeue("a", 2, pb::RequeueReason::Drained, 10))]);
    assert_eq!(code(&r[0]), Some(RejectCode::LeaseLive), "node 4 is not draining");
}

/// Issue 13, defect 3: an attempt lost with its node does not count against
/// max_attempts (on the old main a max_attempts=1 task was dead-lettered by
/// one lost node without ever failing); `max_lost` still bounds a task that
/// takes every node down.
#[test]
fn lost_attempts_do_not_count_against_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(&store, 1, &[cmd(1, submit(vec![spec("a", "", 1), spec("c", "", 1)]))]);
    // Node 9 is not registered: lost for sure.
    let mut index = 2;
    let mut step = |cmds: &[Vec<u8>]| {
        let r = must_apply(&store, index, cmds);
        index += cmds.len() as u64;
        r
    };
    for epoch in 1..=2 {
        step(&[
            cmd(10, assign_for("a", 9, 1_000)),
            cmd(20, checked_requeue("a", epoch, pb::RequeueReason::NodeLost, 3)),
        ]);
        let (s, rec) = must_state(&store, "a");
        assert_eq!(s, TaskState::Queued, "lost {epoch} times, max_attempts 1: still queued");
        assert!(rec.attempts.iter().all(|a| a.lost));
        assert_eq!(rec.not_before_ms, 20, "no backoff for a lost attempt");
    }
    // The third loss reaches max_lost = 3.
    step(&[cmd(30, assign_for("a", 9, 1_000)), cmd(40, checked_requeue("a", 3, pb::RequeueReason::NodeLost, 3))]);
    let (s, rec) = must_state(&store, "a");
    assert_eq!(s, TaskState::DeadLettered);
    assert!(rec.error.contains("lost 3 times"), "{}", rec.error);
    // A real failure still counts: max_attempts 1 after a lost attempt.
    step(&[cmd(50, assign_for("c", 9, 1_000)), cmd(60, checked_requeue("c", 1, pb::RequeueReason::NodeLost, 3))]);
    step(&[cmd(70, assign_for("c", 8, 1_000)), cmd(80, complete("c", 8, 2, None, true))]);
    assert_eq!(must_state(&store, "c").0, TaskState::DeadLettered, "one real failure of max_attempts 1");
    // Control: an unchecked requeue (an older leader) burns the attempt.
    step(&[cmd(90, submit(vec![spec("d", "", 1)])), cmd(90, assign("d", 9))]);
    let unchecked = Kind::RequeueTasks(pb::RequeueTasks {
        tasks: vec![tref("d", 1)],
        reason: pb::RequeueReason::NodeLost as i32,
        ..Default::default()
    });
    step(&[cmd(100, unchecked)]);
    assert_eq!(must_state(&store, "d").0, TaskState::DeadLettered);
}

/// Issue 13, defect 7: tasks waiting out a retry backoff do not count in a
/// tenant's window, so they cannot hide its ready tasks. On the old main a
/// window of 5 held the 5 backed-off tasks and no ready one.
#[test]
fn tasks_in_backoff_do_not_hide_ready_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    // Five urgent tasks fail once and wait 100 ms from t=1 000; two ready
    // tasks of lower priority come after them in queue order.
    let mut urgent: Vec<pb::TaskSpec> = (0..5).map(|i| spec(&format!("u{i}"), "", 3)).collect();
    urgent.iter_mut().for_each(|s| s.priority = 9);
    let mut index = 1;
    let mut step = |cmds: &[Vec<u8>]| {
        let r = must_apply(&store, index, cmds);
        index += cmds.len() as u64;
        r
    };
    step(&[cmd(1_000, submit(urgent))]);
    for i in 0..5 {
        let id = format!("u{i}");
        step(&[cmd(1_000, assign_for(&id, 1, 30_000)), cmd(1_000, complete(&id, 1, 1, None, true))]);
    }
    step(&[cmd(1_000, submit(vec![spec("r1", "", 3), spec("r2", "", 3)]))]);
    let ready: Vec<String> = store.ready_tasks(5, 1_050).unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ready, ["r1", "r2"], "backed-off tasks are skipped, not counted");
    let later: Vec<String> = store.ready_tasks(5, 1_100).unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(later, ["u0", "u1", "u2", "u3", "u4"], "eligible again once the backoff is over");
    // Control: the unfiltered window is full of waiting tasks.
    let all: Vec<String> = store.queued_tasks(5).unwrap().into_iter().map(|t| t.id).collect();
    assert!(all.iter().all(|id| id.starts_with('u')), "{all:?}");
}

/// Issue 13, defect 2: a revocation bumps the user's token generation in
/// apply, and a replace built from an older read cannot move it back.
#[test]
fn token_revocations_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let user = |revoke: bool, generation: u64| {
        Kind::PutUser(pb::PutUser {
            user: Some(pb::UserRecord {
                name: "ann".into(),
                tenant: "acme".into(),
                role: pb::Role::User as i32,
                password_hash: "$argon2id$x".into(),
                token_generation: generation,
                ..Default::default()
            }),
            replace: true,
            revoke_tokens: revoke,
            ..Default::default()
        })
    };
    let create = match user(false, 0) {
        Kind::PutUser(mut p) => {
            p.replace = false;
            Kind::PutUser(p)
        }
        _ => unreachable!(),
    };
    must_apply(&store, 1, &[cmd(1, Kind::PutTenant(pb::PutTenant { name: "acme".into() })), cmd(1, create)]);
    must_apply(&store, 3, &[cmd(5_000, user(true, 0)), cmd(6_000, user(true, 0))]);
    let u = store.get_user("ann").unwrap().unwrap();
    assert_eq!((u.token_generation, u.tokens_not_before_ms), (2, 6_000));
    // A plain replace from a stale read keeps the revocations.
    must_apply(&store, 5, &[cmd(7_000, user(false, 0))]);
    let u = store.get_user("ann").unwrap().unwrap();
    assert_eq!((u.token_generation, u.tokens_not_before_ms), (2, 6_000));
}

fn purge(retention_ms: u64, max_tasks: u32) -> Kind {
    Kind::PurgeFinished(pb::PurgeFinished { retention_ms, max_tasks })
}

fn purged(r: &pb::CommandResult) -> pb::PurgeResult {
    match &r.outcome {
        Some(Outcome::Purge(p)) => *p,
        other => panic!("not a purge result: {other:?}"),
    }
}

fn counter_of(store: &synod_store::Store, name: &str) -> u64 {
    store.task_counters().unwrap().into_iter().filter(|(t, n, _)| t == "acme" && n == name).map(|(_, _, v)| v).sum()
}

/// Issue 13, defect 8: finished tasks are deleted once older than the
/// retention period, measured on the stamps, with their blobs, their
/// finished-index entry and their idempotency key (which may then make a
/// new task); unfinished and younger ones stay. On the old main nothing
/// was ever deleted.
#[test]
fn finished_tasks_are_purged_after_retention_with_their_blobs_and_keys() {
    use synod_store::schema::{CF_BLOBS, blob_key};
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let mut big = spec("big", "kb", 1);
    big.payload = format!("{{\"x\":\"{}\"}}", "y".repeat(40_000)).into_bytes();
    let payload_len = big.payload.len() as u64;
    let mut index = 1;
    let mut step = |cmds: &[Vec<u8>]| {
        let r = must_apply(&store, index, cmds);
        index += cmds.len() as u64;
        r
    };
    step(&[cmd(500, submit(vec![big, spec("a", "ka", 1), spec("b", "kb2", 1), spec("q", "kq", 1)]))]);
    assert_eq!(counter_of(&store, "storage_bytes"), payload_len + 3 * 13);
    step(&[cmd(1_000, assign_for("big", 1, 30_000)), cmd(1_000, complete("big", 1, 1, Some("\"done\""), false))]);
    step(&[cmd(2_000, assign_for("a", 1, 30_000)), cmd(2_000, complete("a", 1, 1, None, false))]);
    step(&[cmd(3_000, assign_for("b", 1, 30_000)), cmd(3_000, complete("b", 1, 1, Some("1"), false))]);
    assert!(store.get(CF_BLOBS, &blob_key("acme", "big", "payload")).unwrap().is_some());
    assert_eq!(store.oldest_finished_ms().unwrap(), Some(1_000));
    // At 3 600 with 1 500 ms of retention: what ended before 2 100 goes.
    let r = step(&[cmd(3_600, purge(1_500, 100))]);
    let p = purged(&r[0]);
    assert_eq!((p.purged, p.more), (2, false));
    assert_eq!(p.bytes, payload_len + 6 + 13, "big's payload and result, a's payload");
    assert!(store.get_task("acme", "big").unwrap().is_none());
    assert!(store.get_task("acme", "a").unwrap().is_none());
    assert!(store.get(CF_BLOBS, &blob_key("acme", "big", "payload")).unwrap().is_none(), "the blob went too");
    assert_eq!(must_state(&store, "b").0, TaskState::Succeeded, "ended after the cutoff: kept");
    assert_eq!(must_state(&store, "q").0, TaskState::Queued, "unfinished: kept");
    assert_eq!(store.oldest_finished_ms().unwrap(), Some(3_000));
    assert_eq!((counter_of(&store, "succeeded"), counter_of(&store, "failed")), (1, 0));
    assert_eq!(counter_of(&store, "purged"), 2);
    assert_eq!(counter_of(&store, "storage_bytes"), 13 + 13 + 1, "b's payload and result, q's payload");
    // The purged task's idempotency key makes a new task now; a kept
    // task's key still answers with its task.
    let r = step(&[cmd(3_700, submit(vec![spec("a2", "ka", 1), spec("b2", "kb2", 1)]))]);
    let got: Vec<(String, bool)> = items(&r[0]).into_iter().map(|i| (i.id, i.duplicate)).collect();
    assert_eq!(got, [("a2".to_string(), false), ("b".to_string(), true)]);
    // Control: nothing is due yet, so nothing goes.
    let r = step(&[cmd(3_800, purge(1_500, 100))]);
    assert_eq!(purged(&r[0]).purged, 0);
    assert_eq!(must_state(&store, "b").0, TaskState::Succeeded);
}

/// A purge deletes at most `max_tasks`, oldest first, and says there is more.
#[test]
fn a_purge_is_bounded_and_goes_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let ids: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
    let mut index = 1;
    let mut step = |cmds: &[Vec<u8>]| {
        let r = must_apply(&store, index, cmds);
        index += cmds.len() as u64;
        r
    };
    step(&[cmd(1, submit(ids.iter().map(|i| spec(i, "", 1)).collect()))]);
    // t4 ends first, t0 last.
    for (n, id) in ids.iter().rev().enumerate() {
        let at = 100 + n as u64;
        step(&[cmd(at, Kind::CancelTask(pb::CancelTask { tenant: "acme".into(), id: id.clone() }))]);
    }
    let r = step(&[cmd(10_000, purge(1, 2))]);
    assert_eq!((purged(&r[0]).purged, purged(&r[0]).more), (2, true));
    let left: Vec<String> = ids.iter().filter(|i| store.get_task("acme", i).unwrap().is_some()).cloned().collect();
    assert_eq!(left, ["t0", "t1", "t2"], "the two that ended first went");
    let r = step(&[cmd(10_000, purge(1, 10))]);
    assert_eq!((purged(&r[0]).purged, purged(&r[0]).more), (3, false));
    assert_eq!(store.oldest_finished_ms().unwrap(), None);
}

/// Issue 13, defect 8: a tenant's stored bytes are counted in apply and a
/// submit that would pass its quota is refused whole; retention frees room.
#[test]
fn a_submit_past_the_storage_quota_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let with_quota = |specs: Vec<pb::TaskSpec>| {
        Kind::SubmitTasks(pb::SubmitTasks { tasks: specs, max_queued: 0, max_storage_bytes: 30, placements: vec![] })
    };
    // Each payload is 13 bytes: two fit under 30, a third does not.
    let r = must_apply(&store, 1, &[cmd(1, with_quota(vec![spec("a", "", 1), spec("b", "", 1)]))]);
    assert!(items(&r[0]).iter().all(|i| i.ok));
    let r = must_apply(&store, 2, &[cmd(2, with_quota(vec![spec("c", "", 1)]))]);
    assert_eq!(code(&r[0]), Some(RejectCode::QuotaExceeded));
    assert!(items(&r[0])[0].rejected.as_ref().unwrap().message.contains("tenant_max_storage_bytes"));
    assert!(store.get_task("acme", "c").unwrap().is_none());
    // Control: without a quota the same submit goes through.
    let r = must_apply(&store, 3, &[cmd(3, submit(vec![spec("c", "", 1)]))]);
    assert!(items(&r[0])[0].ok);
}

/// `?state=` reads the task state index, which follows every transition
/// and retention, and is built at open for a data dir that lacks it.
#[test]
fn the_state_index_lists_one_states_tasks_and_is_built_for_older_data() {
    let dir = tempfile::tempdir().unwrap();
    let indexed = |s: &synod_store::Store, st: TaskState| -> Vec<String> {
        let (recs, next) = s.list_tasks_in_state("acme", st, None, 100, 1000, |_| true).unwrap();
        assert_eq!(next, None);
        recs.into_iter().map(|r| r.spec.unwrap().id).collect()
    };
    let scanned = |s: &synod_store::Store, st: TaskState| -> Vec<String> {
        let (recs, _) = s.list_tasks("acme", None, 100, 1000, |r| r.state == st as i32).unwrap();
        recs.into_iter().map(|r| r.spec.unwrap().id).collect()
    };
    let states =
        [TaskState::Queued, TaskState::Assigned, TaskState::Succeeded, TaskState::Cancelled, TaskState::Failed];
    {
        let store = must_open(dir.path());
        let specs = (0..6).map(|i| spec(&format!("t{i}"), "", 2)).collect();
        must_apply(
            &store,
            1,
            &[
                cmd(1, submit(specs)),
                cmd(2, assign("t0", 3)),
                cmd(3, assign("t1", 4)),
                cmd(4, complete("t1", 4, 1, Some("{}"), false)),
                cmd(5, Kind::CancelTask(pb::CancelTask { tenant: "acme".into(), id: "t2".into() })),
            ],
        );
        assert_eq!(indexed(&store, TaskState::Queued), ["t3", "t4", "t5"]);
        assert_eq!(indexed(&store, TaskState::Assigned), ["t0"]);
        assert_eq!(indexed(&store, TaskState::Succeeded), ["t1"]);
        for st in states {
            assert_eq!(indexed(&store, st), scanned(&store, st), "{st:?}");
        }
        // Pages: the scan bound ends a page with a cursor to the rest.
        let (page, next) = store.list_tasks_in_state("acme", TaskState::Queued, None, 100, 2, |_| true).unwrap();
        assert_eq!((page.len(), next.as_deref()), (2, Some("t4")));
        let (page, next) = store.list_tasks_in_state("acme", TaskState::Queued, Some("t4"), 100, 2, |_| true).unwrap();
        assert_eq!(
            (page.into_iter().map(|r| r.spec.unwrap().id).collect::<Vec<_>>(), next),
            (vec!["t5".to_string()], None)
        );
        // Retention takes a purged task out of the index.
        must_apply(
            &store,
            6,
            &[cmd(100_000, Kind::PurgeFinished(pb::PurgeFinished { retention_ms: 1, max_tasks: 10 }))],
        );
        assert!(indexed(&store, TaskState::Succeeded).is_empty());
        assert!(indexed(&store, TaskState::Cancelled).is_empty());
        // A data dir of a version without the index.
        store.forget_task_state_index().unwrap();
        assert!(indexed(&store, TaskState::Queued).is_empty(), "control: the index is gone");
    }
    let store = must_open(dir.path());
    assert_eq!(indexed(&store, TaskState::Queued), ["t3", "t4", "t5"], "built again at open");
    for st in states {
        assert_eq!(indexed(&store, st), scanned(&store, st), "{st:?} after the rebuild");
    }
}

fn placed_submit(specs: Vec<pb::TaskSpec>, placements: &[(&str, u64)]) -> Vec<u8> {
    let placements = placements
        .iter()
        .map(|(id, node)| pb::Assignment {
            tenant: "acme".into(),
            id: id.to_string(),
            node_id: *node,
            lease_deadline_ms: 0,
            lease_ms: 30_000,
        })
        .collect();
    let kind = Kind::SubmitTasks(pb::SubmitTasks { tasks: specs, max_queued: 0, max_storage_bytes: 0, placements });
    pb::Command { format_version: synod_store::COMMAND_FORMAT_VERSION, stamped_at_ms: 1_000, kind: Some(kind) }
        .encode_to_vec()
}

/// A submit the leader placed is leased in its own entry: assigned to the
/// node with epoch 1 and a lease from the stamp, in the lease index and
/// not in the queue, counted as assigned — what an `AssignTasks` right
/// after it would leave. A task without a placement, a duplicate and a
/// placement on node 0 are queued (or left) as before.
#[test]
fn a_placed_submit_is_leased_in_its_own_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let r = must_apply(
        &store,
        1,
        &[placed_submit(
            vec![spec("a", "", 3), spec("b", "", 3), spec("z", "", 3)],
            &[("a", 2), ("z", 0), ("ghost", 3)],
        )],
    );
    assert!(items(&r[0]).iter().all(|i| i.ok && !i.duplicate), "{:?}", items(&r[0]));
    let placed: Vec<bool> = items(&r[0]).iter().map(|i| i.placed).collect();
    assert_eq!(placed, [true, false, false]);
    let (state, rec) = must_state(&store, "a");
    assert_eq!((state, rec.node_id, rec.lease_epoch, rec.lease_deadline_ms), (TaskState::Assigned, 2, 1, 31_000));
    assert_eq!(rec.attempts.len(), 1);
    assert_eq!((rec.attempts[0].node_id, rec.attempts[0].assigned_at_ms), (2, 1_000));
    let leased: Vec<(String, u64)> = store.leased_tasks(None).unwrap().into_iter().map(|l| (l.id, l.node_id)).collect();
    assert_eq!(leased, [("a".to_string(), 2)]);
    let queued: Vec<String> = store.queued_tasks(100).unwrap().into_iter().map(|q| q.id).collect();
    assert_eq!(queued, ["b", "z"], "unplaced tasks wait in the queue");
    assert_eq!(must_state(&store, "z").0, TaskState::Queued);
    assert!(store.get_task("acme", "ghost").unwrap().is_none(), "a placement without its task creates nothing");
    assert_eq!((counter_of(&store, "assigned"), counter_of(&store, "queued")), (1, 2));
    assert_eq!(counter_of(&store, "attempts"), 1);

    // The placed task completes like any other assigned one.
    let r = must_apply(&store, 2, &[cmd(2_000, complete("a", 2, 1, Some(r#"{"ok":true}"#), false))]);
    assert!(items(&r[0])[0].ok, "{:?}", items(&r[0]));
    assert_eq!(must_state(&store, "a").0, TaskState::Succeeded);

    // The same id again (a retried forward) is a duplicate and not placed.
    let r = must_apply(&store, 3, &[placed_submit(vec![spec("b", "", 3)], &[("b", 2)])]);
    assert!(items(&r[0])[0].duplicate);
    assert_eq!(must_state(&store, "b").0, TaskState::Queued);
}

/// Control for the format gate: a node refuses a command newer than the
/// format it applies, as a value, and changes nothing.
#[test]
fn a_command_format_newer_than_this_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let kind = submit(vec![spec("a", "", 3)]);
    let newer = pb::Command {
        format_version: synod_store::COMMAND_FORMAT_VERSION + 1,
        stamped_at_ms: 1,
        kind: Some(kind.clone()),
    };
    let r = must_apply(&store, 1, &[newer.encode_to_vec()]);
    assert!(matches!(r[0].outcome, Some(Outcome::Rejected(_))), "{:?}", r[0]);
    assert!(store.get_task("acme", "a").unwrap().is_none());
    let r = must_apply(&store, 2, &[cmd(2, kind)]);
    assert!(items(&r[0])[0].ok);
}
