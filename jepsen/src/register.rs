//! The register workload's checker: compare-and-set registers whose every
//! write makes a new version (node records: labels written with
//! `If-Match`, the record version as `ETag`). Operations, per `key`:
//!
//! - `read`: ok `{"key", "value", "version"}` (`value` null if unset);
//! - `write`: invoke `{"key", "value"}`; ok adds `"version"`, the version
//!   it made;
//! - `cas`: invoke `{"key", "value", "expect"}` (the version it requires);
//!   ok adds `"version"`; fail means refused, with its `"status"` (412:
//!   another version; 404: the record is gone, removed with its node).
//!
//! Values are unique per write, so a read names the write it saw. Versions
//! are the register's total order, which makes checking linearizability
//! cheap (Wing and Gong's search becomes a sweep): a history is
//! linearizable iff the versions order every operation consistently with
//! real time and with the values read. The checks:
//!
//! - two writes never made the same version (a lost update);
//! - a CAS from version p made version p + 1;
//! - an operation invoked after another completed sees at least its
//!   version, and a write makes a greater one (no stale read, no write
//!   ordered before one that had already completed);
//! - a read at version v sees the value of the write that made v, and a
//!   value is never read before its write was invoked nor from a write
//!   that definitely failed;
//! - a refused CAS overlapped some evidence that the version had moved on.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::{History, Kind};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub errors: Vec<String>,
    pub reads: usize,
    pub writes: usize,
    pub cas_ok: usize,
    pub cas_refused: usize,
    pub indeterminate: usize,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// One completed operation on one key.
#[derive(Debug, Clone)]
struct Done {
    f: String,
    kind: Kind,
    invoked: u64,
    completed: u64,
    value: Option<String>,
    expect: Option<u64>,
    version: Option<u64>,
    /// The HTTP status of a refusal, when recorded.
    status: Option<u64>,
}

/// A value for a message: `"a"`, or `null` when unset.
fn show(v: &Option<String>) -> String {
    v.as_ref().map_or("null".into(), |s| format!("{s:?}"))
}

fn text(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Pairs invocations with completions (one operation at a time per
/// process), grouped by key. An invocation without a completion is
/// indeterminate until the end of the run.
fn pair(h: &History) -> BTreeMap<String, Vec<Done>> {
    let mut open: BTreeMap<u64, (u64, &Value)> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<Done>> = BTreeMap::new();
    let end = h.ops.last().map_or(0, |o| o.time_ns);
    for op in &h.ops {
        if !matches!(op.f.as_str(), "read" | "write" | "cas") {
            continue;
        }
        if op.kind == Kind::Invoke {
            if let Some((t, v)) = open.insert(op.process, (op.time_ns, &op.value)) {
                push(&mut by_key, &op.f, Kind::Info, t, end, v, v);
            }
            continue;
        }
        let Some((t, inv)) = open.remove(&op.process) else { continue };
        push(&mut by_key, &op.f, op.kind, t, op.time_ns, inv, &op.value);
    }
    for (t, v) in open.into_values() {
        let f = if v.get("expect").is_some() {
            "cas"
        } else if v.get("value").is_some() {
            "write"
        } else {
            "read"
        };
        push(&mut by_key, f, Kind::Info, t, u64::MAX, v, v);
    }
    by_key
}

fn push(by_key: &mut BTreeMap<String, Vec<Done>>, f: &str, kind: Kind, inv: u64, comp: u64, iv: &Value, cv: &Value) {
    let Some(key) = text(iv, "key") else { return };
    by_key.entry(key).or_default().push(Done {
        f: f.to_string(),
        kind,
        invoked: inv,
        completed: comp,
        value: text(cv, "value").or_else(|| text(iv, "value")),
        expect: iv.get("expect").and_then(Value::as_u64),
        version: cv.get("version").and_then(Value::as_u64),
        status: cv.get("status").and_then(Value::as_u64),
    });
}

pub fn check(h: &History) -> Report {
    let mut r = Report::default();
    for (key, ops) in pair(h) {
        check_key(&key, &ops, &mut r);
    }
    r
}

fn check_key(key: &str, ops: &[Done], r: &mut Report) {
    let is_write = |d: &Done| d.f != "read";
    for d in ops {
        match (d.f.as_str(), d.kind) {
            ("read", Kind::Ok) => r.reads += 1,
            ("write", Kind::Ok) => r.writes += 1,
            ("cas", Kind::Ok) => r.cas_ok += 1,
            ("cas", Kind::Fail) => r.cas_refused += 1,
            (_, Kind::Info) if d.f != "read" => r.indeterminate += 1,
            _ => {}
        }
    }
    // Every acknowledged operation that carries a version.
    let seen: Vec<&Done> = ops.iter().filter(|d| d.kind == Kind::Ok && d.version.is_some()).collect();
    let mut made: BTreeMap<u64, &Done> = BTreeMap::new();
    for w in seen.iter().filter(|d| is_write(d)) {
        let v = w.version.unwrap_or_default();
        if let Some(other) = made.insert(v, w) {
            r.errors.push(format!(
                "key {key}: two writes both made version {v} ({} and {}): a lost update",
                show(&other.value),
                show(&w.value)
            ));
        }
        if w.f == "cas"
            && let Some(p) = w.expect
            && v != p + 1
        {
            r.errors.push(format!("key {key}: a CAS from version {p} made version {v}, not {}", p + 1));
        }
    }
    // Real time: sweep the operations by invocation, keeping the greatest
    // version of those already completed.
    let mut by_completion = seen.clone();
    by_completion.sort_by_key(|d| d.completed);
    let mut by_invocation = seen.clone();
    by_invocation.sort_by_key(|d| d.invoked);
    let (mut i, mut floor): (usize, Option<&Done>) = (0, None);
    for b in by_invocation {
        while i < by_completion.len() && by_completion[i].completed < b.invoked {
            let a = by_completion[i];
            if floor.is_none_or(|f| a.version > f.version) {
                floor = Some(a);
            }
            i += 1;
        }
        let Some(a) = floor else { continue };
        let (va, vb) = (a.version.unwrap_or_default(), b.version.unwrap_or_default());
        if vb < va || (is_write(b) && vb == va) {
            let what = if is_write(b) { "a write ordered before" } else { "a stale read: it missed" };
            r.errors.push(format!(
                "key {key}: {what} a {} that had completed: version {vb} after version {va} (value {} after {})",
                a.f,
                show(&b.value),
                show(&a.value)
            ));
        }
    }
    // Values: who wrote what, and when.
    let mut writer: BTreeMap<&str, &Done> = BTreeMap::new();
    for w in ops.iter().filter(|d| is_write(d)) {
        if let Some(v) = &w.value {
            writer.insert(v, w);
        }
    }
    // One value per version, whoever saw it.
    let mut at: BTreeMap<u64, &Option<String>> = BTreeMap::new();
    for d in &seen {
        let v = d.version.unwrap_or_default();
        if let Some(other) = at.insert(v, &d.value)
            && *other != d.value
        {
            r.errors.push(format!(
                "key {key}: version {v} was seen with two values, {} and {}",
                show(other),
                show(&d.value)
            ));
        }
    }
    for rd in seen.iter().filter(|d| d.f == "read") {
        let v = rd.version.unwrap_or_default();
        if let Some(w) = made.get(&v)
            && w.value != rd.value
        {
            r.errors.push(format!(
                "key {key}: a read at version {v} saw {}, but the write that made {v} wrote {}",
                show(&rd.value),
                show(&w.value)
            ));
        }
        // Null: never written, or the record registered again.
        let Some(x) = &rd.value else { continue };
        let Some(w) = writer.get(x.as_str()) else {
            r.errors.push(format!("key {key}: a read saw {x:?}, which no client wrote"));
            continue;
        };
        // A value written at version vw is read at vw, or later only if no
        // other write made a version in between.
        if w.kind == Kind::Ok
            && let Some(vw) = w.version
        {
            if v < vw {
                r.errors.push(format!("key {key}: a read at version {v} saw {x:?}, which was written at version {vw}"));
            } else if v > vw
                && let Some((vo, _)) = made.range(vw + 1..=v).next()
            {
                r.errors.push(format!(
                    "key {key}: a read at version {v} saw {x:?}, written at version {vw} and overwritten at version {vo}"
                ));
            }
        }
        if w.kind == Kind::Fail {
            r.errors.push(format!("key {key}: a read saw {x:?}, written by a write that was refused"));
        }
        if w.invoked > rd.completed {
            r.errors.push(format!("key {key}: a read saw {x:?} before its write was invoked (from the future)"));
        }
    }
    // A refused CAS needs the version to have moved past `expect` by the
    // time it completed: an operation at a later version, or a write in
    // flight, invoked before then. Only a version mismatch (412) says
    // that: not a CAS never sent, nor a 404 (the record removed with its
    // node by the membership nemesis).
    for c in ops.iter().filter(|d| d.f == "cas" && d.kind == Kind::Fail && d.status == Some(412)) {
        let Some(p) = c.expect else { continue };
        let moved = ops.iter().any(|d| {
            d.invoked < c.completed
                && ((d.kind == Kind::Ok && d.version.is_some_and(|v| v > p)) || (is_write(d) && d.kind == Kind::Info))
        });
        let existed = seen.iter().any(|d| d.version == Some(p));
        if existed && !moved {
            r.errors.push(format!(
                "key {key}: a CAS expecting version {p} was refused while nothing had moved the register past {p}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::history::{Step, from_steps as history};

    fn good() -> Vec<Step> {
        vec![
            (1, Kind::Invoke, "read", json!({"key": "1"})),
            (1, Kind::Ok, "read", json!({"key": "1", "value": null, "version": 1})),
            (1, Kind::Invoke, "write", json!({"key": "1", "value": "a"})),
            (1, Kind::Ok, "write", json!({"key": "1", "value": "a", "version": 2})),
            (2, Kind::Invoke, "cas", json!({"key": "1", "value": "b", "expect": 2})),
            (3, Kind::Invoke, "cas", json!({"key": "1", "value": "c", "expect": 2})),
            (2, Kind::Ok, "cas", json!({"key": "1", "value": "b", "version": 3})),
            (3, Kind::Fail, "cas", json!({"key": "1", "value": "c", "status": 412})),
            (1, Kind::Invoke, "write", json!({"key": "1", "value": "d"})),
            (1, Kind::Info, "write", json!({"key": "1", "value": "d"})),
            (2, Kind::Invoke, "read", json!({"key": "1"})),
            (2, Kind::Ok, "read", json!({"key": "1", "value": "d", "version": 4})),
        ]
    }

    #[test]
    fn a_linearizable_history_passes_and_is_counted() {
        let r = check(&history(&good()));
        assert!(r.valid(), "{:?}", r.errors);
        assert_eq!((r.reads, r.writes, r.cas_ok, r.cas_refused, r.indeterminate), (2, 1, 1, 1, 1));
    }

    /// Each bad history must be rejected, naming what it caught.
    #[test]
    fn every_kind_of_bad_history_is_rejected() {
        let mut cases: Vec<(&str, Vec<Step>)> = Vec::new();
        let mut lost = good();
        lost[6].3 = json!({"key": "1", "value": "b", "version": 2});
        cases.push(("lost update", lost));
        let mut skipped = good();
        skipped[6].3 = json!({"key": "1", "value": "b", "version": 5});
        cases.push(("not 3", skipped));
        let mut stale = good();
        stale[11].3 = json!({"key": "1", "value": "a", "version": 2});
        cases.push(("stale read", stale));
        let mut wrong = good();
        wrong[11].3 = json!({"key": "1", "value": "a", "version": 4});
        wrong[9].1 = Kind::Ok;
        wrong[9].3 = json!({"key": "1", "value": "d", "version": 4});
        cases.push(("wrote \"d\"", wrong));
        let mut future = good();
        future.insert(2, (4, Kind::Invoke, "read", json!({"key": "1"})));
        future.insert(3, (4, Kind::Ok, "read", json!({"key": "1", "value": "d", "version": 4})));
        cases.push(("from the future", future));
        let mut refused = good();
        refused[9].1 = Kind::Fail;
        cases.push(("refused", refused));
        let mut cas = good();
        cas.remove(6);
        cas.remove(4);
        cases.push(("nothing had moved", cas));
        // The same refusal as a 404 (record removed) is not judged.
        let mut gone = good();
        gone.remove(6);
        gone.remove(4);
        gone[5].3 = json!({"key": "1", "value": "c", "status": 404});
        let r = check(&history(&gone));
        assert!(r.valid(), "a 404 refusal was judged: {:?}", r.errors);
        let mut unwritten = good();
        unwritten[11].3 = json!({"key": "1", "value": "zz", "version": 4});
        cases.push(("which no client wrote", unwritten));
        let mut overwritten = good();
        overwritten[11].3 = json!({"key": "1", "value": "a", "version": 3});
        cases.push(("overwritten at version 3", overwritten));
        let mut two = good();
        two.push((3, Kind::Invoke, "read", json!({"key": "1"})));
        two.push((3, Kind::Ok, "read", json!({"key": "1", "value": "b", "version": 4})));
        cases.push(("two values", two));
        let mut reordered = good();
        reordered[3].3 = json!({"key": "1", "value": "a", "version": 4});
        reordered[11].3 = json!({"key": "1", "value": "d", "version": 5});
        cases.push(("a write ordered before", reordered));
        for (what, steps) in cases {
            let r = check(&history(&steps));
            assert!(!r.valid(), "{what}: accepted");
            assert!(r.errors.iter().any(|e| e.contains(what)), "{what}: {:?}", r.errors);
        }
    }
}
