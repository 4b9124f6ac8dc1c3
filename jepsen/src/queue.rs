//! The queue workload's checker. Operations (values are JSON objects):
//!
//! - `submit`: invoke `{"key"}` (its idempotency key); ok `{"key", "task"}`.
//! - `lease`: a worker was handed a task: ok `{"task", "epoch"}`.
//! - `complete`: a worker's completion: ok `{"task", "epoch"}` when the
//!   cluster accepted it, fail when it refused it (a stale epoch).
//! - `read`: the final read after heal: ok `{"tasks": [{"task", "key",
//!   "state", "lease_epoch", "attempts"}]}`, every task the cluster holds;
//!   `attempts` (`[{"epoch", "ended_at_ms", "error"}]`) is the cluster's
//!   own record of each lease, for workers the harness cannot watch (they
//!   run inside the nodes): it is checked like `lease` and `complete`.
//!
//! It fails a history on: an acknowledged submit whose task did not
//! succeed (lost); a task nobody submitted (unexpected); two accepted
//! completions of one task; an accepted completion with a stale epoch; a
//! task handed out after it completed; two tasks for one idempotency key.
//! Running a task more than once is allowed (at-least-once) and counted.
//!
//! A run whose faults never take a node away (clock skew only) is held to
//! more, through [`Expect`]: the probe's tasks (`scheduled` ops, from
//! acknowledgement to leaving `queued`, in harness time) must be scheduled
//! within a bound, and no lease may be taken back (an attempt ended as
//! "lease expired", "node lost" or "node drained" is a healthy lease burnt).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::history::{History, Kind};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Every violation found; empty means the history is valid.
    pub errors: Vec<String>,
    pub acknowledged: usize,
    pub indeterminate_submits: usize,
    pub succeeded: usize,
    /// Tasks handed out more than once (retries after a lease was lost).
    pub executed_more_than_once: usize,
    pub refused_completions: usize,
    /// Probe tasks watched until they left `queued`, and their waits.
    pub probes: usize,
    pub probe_wait_p50_ms: u64,
    pub probe_wait_max_ms: u64,
    /// Attempts the cluster took back (requeued).
    pub requeued_attempts: usize,
    /// Acknowledged tasks the final read lacks because retention deleted
    /// them (see [`Expect::retention_ms`]).
    pub purged: usize,
}

/// What a run's faults allow beyond the invariants every run must keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    /// Every probe task leaves `queued` within this many ms of its
    /// acknowledgement (workers are free: the workload keeps them so).
    pub max_queue_wait_ms: Option<u64>,
    /// No node is ever down or cut off: no lease may be taken back.
    pub no_requeues: bool,
    /// Finished tasks are deleted this long after they end (a soak's short
    /// retention). An acknowledged task may then be missing from the final
    /// read if it was acknowledged longer than this before the read, and if
    /// the cluster's count of purged tasks (the `purged` operation, read
    /// after the final read; purging deletes finished tasks only) covers
    /// every missing one. A task acknowledged within the window is still
    /// lost when missing.
    pub retention_ms: Option<u64>,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.errors.is_empty()
    }
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k)?.as_str().map(str::to_string)
}

fn n(v: &Value, k: &str) -> Option<u64> {
    v.get(k)?.as_u64()
}

pub fn check(h: &History) -> Report {
    check_with(h, Expect::default())
}

/// [`check`], holding the history to `expect` as well.
pub fn check_with(h: &History, expect: Expect) -> Report {
    let mut r = Report::default();
    let mut waits: Vec<u64> = Vec::new();
    let mut invoked_keys = BTreeSet::new();
    let mut acked: BTreeMap<String, String> = BTreeMap::new(); // task -> key
    let mut task_of_key: BTreeMap<String, String> = BTreeMap::new();
    let mut max_epoch: BTreeMap<String, u64> = BTreeMap::new();
    let mut leases: BTreeMap<String, usize> = BTreeMap::new();
    let mut completed: BTreeMap<String, u64> = BTreeMap::new(); // task -> epoch
    let mut acked_at: BTreeMap<String, u64> = BTreeMap::new(); // task -> ns
    let mut final_read: Option<&Value> = None;
    let mut read_at_ns = 0;
    let mut purged_count: Option<u64> = None;
    for op in &h.ops {
        let v = &op.value;
        match (op.f.as_str(), op.kind) {
            ("submit", Kind::Invoke) => {
                if let Some(k) = s(v, "key") {
                    invoked_keys.insert(k);
                }
            }
            ("submit", Kind::Info) => r.indeterminate_submits += 1,
            ("submit", Kind::Ok) => {
                let (Some(key), Some(task)) = (s(v, "key"), s(v, "task")) else {
                    r.errors.push(format!("a submit ok without key and task: {v}"));
                    continue;
                };
                if let Some(other) = task_of_key.get(&key)
                    && *other != task
                {
                    r.errors.push(format!("idempotency key {key} made two tasks: {other} and {task}"));
                }
                task_of_key.insert(key.clone(), task.clone());
                acked_at.entry(task.clone()).or_insert(op.time_ns);
                acked.insert(task, key);
            }
            ("lease", Kind::Ok) => {
                let (Some(task), Some(epoch)) = (s(v, "task"), n(v, "epoch")) else { continue };
                if let Some(done) = completed.get(&task) {
                    r.errors.push(format!("task {task} handed out (epoch {epoch}) after it completed at epoch {done}"));
                }
                *leases.entry(task.clone()).or_default() += 1;
                let m = max_epoch.entry(task).or_default();
                *m = (*m).max(epoch);
            }
            ("complete", Kind::Fail) => r.refused_completions += 1,
            ("complete", Kind::Ok) => {
                let (Some(task), Some(epoch)) = (s(v, "task"), n(v, "epoch")) else { continue };
                if let Some(first) = completed.get(&task) {
                    r.errors.push(format!("task {task} completed twice (epochs {first} and {epoch})"));
                }
                if let Some(m) = max_epoch.get(&task)
                    && epoch < *m
                {
                    r.errors.push(format!(
                        "task {task}: a completion with stale epoch {epoch} was accepted (lease epoch {m})"
                    ));
                }
                completed.insert(task, epoch);
            }
            ("read", Kind::Ok) => {
                final_read = Some(v);
                read_at_ns = op.time_ns;
            }
            ("purged", Kind::Ok) => purged_count = n(v, "count"),
            ("scheduled", Kind::Ok) => {
                let wait = n(v, "wait_ms").unwrap_or(0);
                waits.push(wait);
                if let Some(bound) = expect.max_queue_wait_ms
                    && wait > bound
                {
                    r.errors.push(format!(
                        "task {} submitted through node {} waited {wait} ms in queued (bound {bound} ms, every node up)",
                        s(v, "task").unwrap_or_default(),
                        n(v, "node").unwrap_or(0)
                    ));
                }
            }
            ("scheduled", Kind::Info) if expect.max_queue_wait_ms.is_some() => r.errors.push(format!(
                "task {} submitted through node {} never left queued ({}; every node up)",
                s(v, "task").unwrap_or_default(),
                n(v, "node").unwrap_or(0),
                s(v, "error").unwrap_or_default()
            )),
            _ => {}
        }
    }
    waits.sort_unstable();
    r.probes = waits.len();
    r.probe_wait_p50_ms = waits.get(waits.len() / 2).copied().unwrap_or(0);
    r.probe_wait_max_ms = waits.last().copied().unwrap_or(0);
    r.acknowledged = acked.len();
    r.executed_more_than_once = leases.values().filter(|c| **c > 1).count();
    r.refused_completions += h
        .ops
        .iter()
        .filter(|o| o.f == "stale_reports" && o.kind == Kind::Ok)
        .filter_map(|o| o.value.get("refused").and_then(Value::as_u64))
        .sum::<u64>() as usize;
    let Some(read) = final_read else {
        r.errors.push("no final read: the run is unknown".into());
        return r;
    };
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    let mut keys_seen: BTreeMap<String, String> = BTreeMap::new();
    for t in read.get("tasks").and_then(Value::as_array).into_iter().flatten() {
        let (Some(task), Some(st)) = (s(t, "task"), s(t, "state")) else { continue };
        if let Some(key) = s(t, "key") {
            if !invoked_keys.contains(&key) {
                r.errors.push(format!("task {task} has key {key}, which no client submitted (unexpected)"));
            }
            if let Some(other) = keys_seen.insert(key.clone(), task.clone()) {
                r.errors.push(format!("idempotency key {key} made two tasks: {other} and {task}"));
            }
        } else {
            r.errors.push(format!("task {task} has no idempotency key: no client submitted it (unexpected)"));
        }
        check_attempts(&task, &st, t, &mut r);
        check_requeues(&task, t, expect, &mut r);
        state.insert(task, st);
    }
    for (task, key) in &acked {
        match state.get(task).map(String::as_str) {
            Some("succeeded") => r.succeeded += 1,
            Some(other) => r.errors.push(format!("acknowledged task {task} ({key}) ended {other}, not succeeded")),
            None => {
                let age_ms = read_at_ns.saturating_sub(acked_at.get(task).copied().unwrap_or(0)) / 1_000_000;
                match expect.retention_ms {
                    Some(ret) if age_ms > ret => r.purged += 1,
                    Some(_) => r.errors.push(format!(
                        "acknowledged task {task} ({key}) is lost: acknowledged {age_ms} ms before the final read, \
                         too recently for retention to have deleted it"
                    )),
                    None => r.errors.push(format!("acknowledged task {task} ({key}) is lost: the final read lacks it")),
                }
            }
        }
    }
    if r.purged > 0 {
        match purged_count {
            Some(count) if count >= r.purged as u64 => {}
            Some(count) => r.errors.push(format!(
                "{} acknowledged tasks are missing from the final read but the cluster purged only {count}: \
                 {} are lost",
                r.purged,
                r.purged as u64 - count
            )),
            None => r.errors.push(format!(
                "{} acknowledged tasks are missing from the final read and no purge count was read",
                r.purged
            )),
        }
    }
    r
}

/// Attempts the cluster took back; with [`Expect::no_requeues`] each one is
/// an error.
fn check_requeues(task: &str, t: &Value, expect: Expect, r: &mut Report) {
    let requeued = |a: &&Value| {
        a.get("lost").and_then(Value::as_bool).unwrap_or(false)
            || s(a, "error")
                .is_some_and(|e| ["lease expired", "node lost", "node drained"].iter().any(|why| e.starts_with(why)))
    };
    for a in t.get("attempts").and_then(Value::as_array).into_iter().flatten().filter(requeued) {
        r.requeued_attempts += 1;
        if expect.no_requeues {
            r.errors.push(format!(
                "task {task}: the lease of epoch {} on node {} was taken back ({}) though no node was down: a healthy lease burnt",
                n(a, "epoch").unwrap_or(0),
                n(a, "node").unwrap_or(0),
                s(a, "error").unwrap_or_default()
            ));
        }
    }
}

/// The cluster's record of one task's leases: the completion it accepted
/// (the attempt that ended without an error) must hold the last lease, be
/// the only one, and no lease may follow it.
fn check_attempts(task: &str, state: &str, t: &Value, r: &mut Report) {
    let Some(attempts) = t.get("attempts").and_then(Value::as_array) else { return };
    if attempts.len() > 1 {
        r.executed_more_than_once += 1;
    }
    let epoch = |a: &Value| n(a, "epoch").unwrap_or(0);
    let ended_ok: Vec<&Value> = attempts
        .iter()
        .filter(|a| n(a, "ended_at_ms").is_some() && a.get("error").is_none_or(Value::is_null))
        .collect();
    if state != "succeeded" {
        return;
    }
    if ended_ok.len() > 1 {
        let es: Vec<u64> = ended_ok.iter().map(|a| epoch(a)).collect();
        r.errors.push(format!("task {task} completed twice (attempts at epochs {es:?} both ended without error)"));
    }
    let Some(done) = ended_ok.last() else {
        r.errors.push(format!("task {task} succeeded with no attempt that ended without error"));
        return;
    };
    let last = attempts.iter().map(epoch).max().unwrap_or(0);
    let lease = n(t, "lease_epoch").unwrap_or(0);
    if epoch(done) < lease || epoch(done) < last {
        r.errors.push(format!(
            "task {task}: a completion with stale epoch {} was accepted (lease epoch {lease}, last attempt {last})",
            epoch(done)
        ));
    }
    if let Some(later) = attempts.iter().find(|a| epoch(a) > epoch(done)) {
        r.errors.push(format!(
            "task {task} handed out (epoch {}) after it completed at epoch {}",
            epoch(later),
            epoch(done)
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::history::{Step, from_steps as history};
    use crate::run::PROBE;

    fn good() -> Vec<Step> {
        vec![
            (1, Kind::Invoke, "submit", json!({"key": "k1"})),
            (1, Kind::Ok, "submit", json!({"key": "k1", "task": "t1"})),
            (2, Kind::Invoke, "submit", json!({"key": "k2"})),
            (2, Kind::Info, "submit", json!({"key": "k2"})),
            (9, Kind::Ok, "lease", json!({"task": "t1", "epoch": 1})),
            (9, Kind::Ok, "lease", json!({"task": "t1", "epoch": 2})),
            (9, Kind::Fail, "complete", json!({"task": "t1", "epoch": 1})),
            (9, Kind::Ok, "complete", json!({"task": "t1", "epoch": 2})),
            (
                0,
                Kind::Ok,
                "read",
                json!({"tasks": [
                    {"task": "t1", "key": "k1", "state": "succeeded"},
                    {"task": "t2", "key": "k2", "state": "succeeded"}
                ]}),
            ),
        ]
    }

    /// A task as the final read reports it, with attempts (epoch, ended,
    /// error) in order.
    fn task(id: &str, key: &str, state: &str, lease: u64, attempts: &[(u64, bool, Option<&str>)]) -> Value {
        let attempts: Vec<Value> = attempts
            .iter()
            .map(|(e, ended, err)| json!({"epoch": e, "ended_at_ms": ended.then_some(5), "error": err}))
            .collect();
        json!({"task": id, "key": key, "state": state, "lease_epoch": lease, "attempts": attempts})
    }

    #[test]
    fn the_clusters_record_of_attempts_is_checked() {
        let read = |t: Value| {
            history(&[
                (1, Kind::Invoke, "submit", json!({"key": "k1"})),
                (1, Kind::Ok, "submit", json!({"key": "k1", "task": "t1"})),
                (0, Kind::Ok, "read", json!({"tasks": [t]})),
            ])
        };
        let retried = task("t1", "k1", "succeeded", 2, &[(1, true, Some("node 2 is dead")), (2, true, None)]);
        let r = check(&read(retried));
        assert!(r.valid(), "{:?}", r.errors);
        assert_eq!(r.executed_more_than_once, 1);
        let cases = [
            ("completed twice", task("t1", "k1", "succeeded", 2, &[(1, true, None), (2, true, None)])),
            ("stale epoch", task("t1", "k1", "succeeded", 2, &[(1, true, None), (2, false, None)])),
            ("after it completed", task("t1", "k1", "succeeded", 1, &[(1, true, None), (2, false, None)])),
            ("no attempt", task("t1", "k1", "succeeded", 1, &[(1, false, None)])),
        ];
        for (what, t) in cases {
            let r = check(&read(t));
            assert!(r.errors.iter().any(|e| e.contains(what)), "{what}: {:?}", r.errors);
        }
    }

    /// The probe's waits and the cluster's requeues, held to [`Expect`]
    /// only when asked: a run with faults that take nodes away may requeue
    /// and may delay.
    #[test]
    fn strict_runs_bound_queue_waits_and_forbid_requeues() {
        let ops = |wait: u64, stuck: bool, attempt_error: Option<&str>, lost: bool| {
            let mut attempts = vec![json!({"epoch": 2, "node": 1, "ended_at_ms": 9, "error": null})];
            if let Some(e) = attempt_error {
                attempts.insert(0, json!({"epoch": 1, "node": 2, "ended_at_ms": 5, "error": e, "lost": lost}));
            }
            let read =
                json!({"task": "t1", "key": "probe-1", "state": "succeeded", "lease_epoch": 2, "attempts": attempts});
            let mut steps: Vec<Step> = vec![
                (PROBE, Kind::Invoke, "submit", json!({"key": "probe-1"})),
                (PROBE, Kind::Ok, "submit", json!({"key": "probe-1", "task": "t1"})),
                (PROBE, Kind::Invoke, "scheduled", json!({"key": "probe-1", "task": "t1", "node": 3})),
            ];
            steps.push(match stuck {
                false => (PROBE, Kind::Ok, "scheduled", json!({"task": "t1", "node": 3, "wait_ms": wait})),
                true => (PROBE, Kind::Info, "scheduled", json!({"task": "t1", "node": 3, "error": "still queued"})),
            });
            steps.push((0, Kind::Ok, "read", json!({"tasks": [read]})));
            history(&steps)
        };
        let strict = Expect { max_queue_wait_ms: Some(1_000), no_requeues: true, retention_ms: None };
        let fine = check_with(&ops(40, false, None, false), strict);
        assert!(fine.valid(), "{:?}", fine.errors);
        assert_eq!((fine.probes, fine.probe_wait_max_ms, fine.requeued_attempts), (1, 40, 0));
        let cases = [
            ("waited 4000 ms", ops(4_000, false, None, false)),
            ("never left queued", ops(0, true, None, false)),
            ("healthy lease burnt", ops(40, false, Some("lease expired (node 2)"), false)),
            ("healthy lease burnt", ops(40, false, Some("node lost (node 2)"), true)),
        ];
        for (what, h) in cases {
            let r = check_with(&h, strict);
            assert!(r.errors.iter().any(|e| e.contains(what)), "{what}: {:?}", r.errors);
            // Control: the same history passes when the faults allow it.
            let lax = check(&h);
            assert!(lax.valid(), "{what} under no expectation: {:?}", lax.errors);
        }
        assert_eq!(check(&ops(40, false, Some("lease expired (node 2)"), true)).requeued_attempts, 1);
    }

    #[test]
    fn a_good_history_passes_and_is_counted() {
        let r = check(&history(&good()));
        assert!(r.valid(), "{:?}", r.errors);
        assert_eq!((r.acknowledged, r.succeeded, r.indeterminate_submits), (1, 1, 1));
        assert_eq!((r.executed_more_than_once, r.refused_completions), (1, 1));
    }

    /// Each bad history must be rejected, naming what it caught.
    #[test]
    fn every_kind_of_bad_history_is_rejected() {
        let mut cases: Vec<(&str, Vec<Step>)> = Vec::new();
        let mut lost = good();
        lost[8].3 = json!({"tasks": [{"task": "t2", "key": "k2", "state": "succeeded"}]});
        cases.push(("lost", lost));
        let mut unfinished = good();
        unfinished[8].3 = json!({"tasks": [{"task": "t1", "key": "k1", "state": "queued"}]});
        cases.push(("not succeeded", unfinished));
        let mut unexpected = good();
        unexpected[8].3 = json!({"tasks": [
            {"task": "t1", "key": "k1", "state": "succeeded"},
            {"task": "t9", "key": "never", "state": "succeeded"}
        ]});
        cases.push(("unexpected", unexpected));
        let mut twice = good();
        twice.insert(8, (9, Kind::Ok, "complete", json!({"task": "t1", "epoch": 2})));
        cases.push(("completed twice", twice));
        let mut stale = good();
        stale[6].1 = Kind::Ok;
        stale.remove(7);
        cases.push(("stale epoch", stale));
        let mut after = good();
        after.insert(8, (9, Kind::Ok, "lease", json!({"task": "t1", "epoch": 3})));
        cases.push(("after it completed", after));
        let mut idem = good();
        idem.insert(2, (3, Kind::Ok, "submit", json!({"key": "k1", "task": "t7"})));
        cases.push(("two tasks", idem));
        let mut no_read = good();
        no_read.pop();
        cases.push(("unknown", no_read));
        for (what, ops) in cases {
            let r = check(&history(&ops));
            assert!(!r.valid(), "{what}: accepted");
            assert!(r.errors.iter().any(|e| e.contains(what)), "{what}: {:?}", r.errors);
        }
    }

    /// The good history with its final read replaced by these tasks.
    fn with_final_read(tasks: Value) -> Vec<Step> {
        let mut steps = good();
        let last = steps.len() - 1;
        assert_eq!(steps[last].2, "read");
        steps[last].3 = json!({ "tasks": tasks });
        steps
    }

    #[test]
    fn a_task_in_the_final_read_without_an_idempotency_key_is_rejected() {
        // Control: the same final read with every key present passes.
        let keyed = with_final_read(json!([
            {"task": "t1", "key": "k1", "state": "succeeded"},
            {"task": "t2", "key": "k2", "state": "succeeded"}
        ]));
        let r = check(&history(&keyed));
        assert!(r.valid(), "{:?}", r.errors);
        for keyless in
            [json!({"task": "t3", "state": "succeeded"}), json!({"task": "t3", "key": null, "state": "queued"})]
        {
            let steps = with_final_read(json!([
                {"task": "t1", "key": "k1", "state": "succeeded"},
                {"task": "t2", "key": "k2", "state": "succeeded"},
                keyless
            ]));
            let r = check(&history(&steps));
            assert!(!r.valid(), "a keyless task was accepted");
            assert!(r.errors.iter().any(|e| e.contains("task t3 has no idempotency key")), "{:?}", r.errors);
        }
    }

    #[test]
    fn two_tasks_with_one_idempotency_key_in_the_final_read_are_rejected() {
        // Control: a third task with a key of its own (submitted, not
        // acknowledged) passes.
        let mut own_key = with_final_read(json!([
            {"task": "t1", "key": "k1", "state": "succeeded"},
            {"task": "t2", "key": "k2", "state": "succeeded"},
            {"task": "t3", "key": "k3", "state": "succeeded"}
        ]));
        own_key.insert(0, (3, Kind::Invoke, "submit", json!({"key": "k3"})));
        let r = check(&history(&own_key));
        assert!(r.valid(), "{:?}", r.errors);
        // The same third task under k1: every submit acknowledged one task
        // only, so only the final read shows the duplicate.
        let mut duplicate = with_final_read(json!([
            {"task": "t1", "key": "k1", "state": "succeeded"},
            {"task": "t2", "key": "k2", "state": "succeeded"},
            {"task": "t3", "key": "k1", "state": "succeeded"}
        ]));
        duplicate.insert(0, (3, Kind::Invoke, "submit", json!({"key": "k3"})));
        let r = check(&history(&duplicate));
        assert!(!r.valid(), "a duplicate key was accepted");
        assert!(r.errors.iter().any(|e| e.contains("idempotency key k1 made two tasks: t1 and t3")), "{:?}", r.errors);
    }

    #[test]
    fn stale_reports_are_counted_as_refused_completions() {
        // Control: the good history refuses one completion itself.
        let base = check(&history(&good()));
        assert!(base.valid(), "{:?}", base.errors);
        assert_eq!(base.refused_completions, 1);
        let with = |extra: &[Step]| {
            let mut steps = good();
            let read = steps.pop().expect("final read");
            steps.extend_from_slice(extra);
            steps.push(read);
            check(&history(&steps))
        };
        let r = with(&[
            (0, Kind::Ok, "stale_reports", json!({"refused": 3})),
            (0, Kind::Ok, "stale_reports", json!({"refused": 2})),
        ]);
        assert!(r.valid(), "stale reports are not a failure: {:?}", r.errors);
        assert_eq!(r.refused_completions, 1 + 3 + 2);
        // Only completed reports with a count are counted.
        let r = with(&[
            (0, Kind::Invoke, "stale_reports", json!({"refused": 7})),
            (0, Kind::Info, "stale_reports", json!({"refused": 7})),
            (0, Kind::Ok, "stale_reports", json!({})),
            (0, Kind::Ok, "stale_reports", json!({"refused": "7"})),
        ]);
        assert!(r.valid(), "{:?}", r.errors);
        assert_eq!(r.refused_completions, 1);
    }

    /// A soak: tasks acknowledged long enough before the final read may be
    /// gone (retention), as many as the cluster says it purged; a task
    /// acknowledged within the retention window may not.
    #[test]
    fn retention_excuses_old_missing_tasks_only_as_many_as_were_purged() {
        let s = 1_000_000_000u64;
        let history = |purged: Option<u64>, t3_acked_at_s: u64| {
            let mut h = History::default();
            for (i, (task, key, at)) in
                [("t1", "k1", 0), ("t2", "k2", 0), ("t3", "k3", t3_acked_at_s)].iter().enumerate()
            {
                h.push(i as u64, Kind::Invoke, "submit", json!({"key": key}), at * s);
                h.push(i as u64, Kind::Ok, "submit", json!({"key": key, "task": task}), at * s + 1);
            }
            h.push(0, Kind::Ok, "read", json!({"tasks": [{"task": "t3", "key": "k3", "state": "succeeded"}]}), 60 * s);
            if let Some(count) = purged {
                h.push(0, Kind::Ok, "purged", json!({"count": count}), 61 * s);
            }
            h
        };
        let soak = Expect { retention_ms: Some(30_000), ..Expect::default() };
        let r = check_with(&history(Some(2), 20), soak);
        assert!(r.valid(), "{:?}", r.errors);
        assert_eq!((r.purged, r.succeeded), (2, 1));

        // The cluster purged one: the other is lost.
        let r = check_with(&history(Some(1), 20), soak);
        assert!(r.errors.iter().any(|e| e.contains("1 are lost")), "{:?}", r.errors);
        let r = check_with(&history(None, 20), soak);
        assert!(r.errors.iter().any(|e| e.contains("no purge count")), "{:?}", r.errors);
        // Without retention nothing excuses a missing task.
        let r = check_with(&history(Some(2), 20), Expect::default());
        assert_eq!(r.errors.iter().filter(|e| e.contains("is lost")).count(), 2, "{:?}", r.errors);
    }

    #[test]
    fn retention_does_not_excuse_a_task_acknowledged_within_the_window() {
        let s = 1_000_000_000u64;
        let mut h = History::default();
        h.push(1, Kind::Invoke, "submit", json!({"key": "k1"}), 45 * s);
        h.push(1, Kind::Ok, "submit", json!({"key": "k1", "task": "t1"}), 45 * s + 1);
        h.push(0, Kind::Ok, "read", json!({"tasks": []}), 60 * s);
        h.push(0, Kind::Ok, "purged", json!({"count": 100}), 61 * s);
        let r = check_with(&h, Expect { retention_ms: Some(30_000), ..Expect::default() });
        assert!(r.errors.iter().any(|e| e.contains("too recently")), "{:?}", r.errors);
    }
}
