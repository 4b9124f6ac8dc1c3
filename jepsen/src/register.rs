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
/// indeterminate until the end of the run. A process that invokes again
/// before its operation completed is a malformed history (the harness
/// records a completion, Info at worst, for every invocation): reported in
/// `errors`, and the first operation kept as indeterminate.
fn pair(h: &History, errors: &mut Vec<String>) -> BTreeMap<String, Vec<Done>> {
    let mut open: BTreeMap<u64, (u64, &Value)> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<Done>> = BTreeMap::new();
    let end = h.ops.last().map_or(0, |o| o.time_ns);
    for op in &h.ops {
        if !matches!(op.f.as_str(), "read" | "write" | "cas") {
            continue;
        }
        if op.kind == Kind::Invoke {
            if let Some((t, v)) = open.insert(op.process, (op.time_ns, &op.value)) {
                errors.push(format!(
                    "process {} invoked {} {} before its operation {v} completed: a malformed history",
                    op.process, op.f, op.value
                ));
                push(&mut by_key, invoked_f(v), Kind::Info, t, end, v, v);
            }
            continue;
        }
        let Some((t, inv)) = open.remove(&op.process) else { continue };
        push(&mut by_key, &op.f, op.kind, t, op.time_ns, inv, &op.value);
    }
    for (t, v) in open.into_values() {
        push(&mut by_key, invoked_f(v), Kind::Info, t, u64::MAX, v, v);
    }
    by_key
}

/// The operation an invocation's value names, for one never completed.
fn invoked_f(v: &Value) -> &'static str {
    if v.get("expect").is_some() {
        "cas"
    } else if v.get("value").is_some() {
        "write"
    } else {
        "read"
    }
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
    for (key, ops) in pair(h, &mut r.errors) {
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
    // Every value seen at each version.
    let mut values_at: BTreeMap<u64, Vec<&Option<String>>> = BTreeMap::new();
    for d in &seen {
        values_at.entry(d.version.unwrap_or_default()).or_default().push(&d.value);
    }
    // The lowest version each value was read at.
    let mut first_read: BTreeMap<&str, u64> = BTreeMap::new();
    for rd in seen.iter().filter(|d| d.f == "read") {
        if let (Some(x), Some(v)) = (&rd.value, rd.version) {
            let e = first_read.entry(x.as_str()).or_insert(v);
            *e = (*e).min(v);
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
        // other write made a version in between. A CAS from p whose answer
        // was lost, once its value is read, made p + 1; a plain write whose
        // answer was lost, at most the lowest version its value was read at.
        let made_at = match w.kind {
            Kind::Ok => w.version,
            Kind::Info if w.f == "cas" => w.expect.map(|p| p + 1),
            Kind::Info => first_read.get(x.as_str()).copied(),
            _ => None,
        };
        if let Some(vw) = made_at {
            // Placed by its value, a write whose answer was lost still made a
            // version above every one completed before it began.
            let before = seen.iter().filter(|d| d.completed < w.invoked).filter_map(|d| d.version).max();
            if w.kind == Kind::Info
                && let Some(va) = before.filter(|va| vw <= *va)
            {
                r.errors.push(format!(
                    "key {key}: a read saw {x:?} at version {v}, from a write that began after version {va} \
                     had completed, so it made at most version {vw}: a write ordered before one that had completed"
                ));
            }
            if w.kind == Kind::Info
                && let Some(other) =
                    values_at.get(&vw).and_then(|vals| vals.iter().find(|o| o.as_deref() != Some(x.as_str())))
            {
                r.errors.push(format!(
                    "key {key}: a read saw {x:?}, whose CAS would have made version {vw}, seen with {}: a lost update",
                    show(other)
                ));
            }
            if v < vw {
                r.errors.push(format!("key {key}: a read at version {v} saw {x:?}, which was written at version {vw}"));
            } else if v > vw
                && let Some((vo, _)) =
                    values_at.range(vw + 1..=v).find(|(_, vals)| vals.iter().any(|o| o.as_deref() != Some(x.as_str())))
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
        // Versions never go back (a node registered again continues its
        // old record's): if the register had reached `p` before the CAS
        // began, its refusal puts it past `p` for good. Nothing begun after
        // the refusal may then read `p` or below, succeed from it, or write
        // `p + 1` or below (a write whose answer was lost is placed by the
        // highest version its value was read at).
        let reached = seen.iter().any(|d| d.completed < c.invoked && d.version.is_some_and(|v| v >= p));
        if !reached {
            continue;
        }
        for d in ops.iter().filter(|d| d.invoked > c.completed) {
            let (at, least) = match (d.f.as_str(), d.kind) {
                ("read", Kind::Ok) => (d.version, p + 1),
                ("cas", Kind::Ok) => (d.expect, p + 1),
                ("write", Kind::Ok) => (d.version, p + 2),
                (_, Kind::Info) if is_write(d) => {
                    let read_at = seen.iter().filter(|s| s.f == "read" && s.value.is_some() && s.value == d.value);
                    (read_at.filter_map(|s| s.version).max(), p + 2)
                }
                _ => (None, 0),
            };
            if let Some(v) = at.filter(|v| *v < least) {
                r.errors.push(format!(
                    "key {key}: a {} at version {v} began after a CAS expecting {p} was refused, \
                     which put the register past {p}",
                    d.f
                ));
            }
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

    /// A read by `p` that returns `value` at `version`: its invocation and
    /// completion.
    fn read(p: u64, value: Value, version: u64) -> [Step; 2] {
        [
            (p, Kind::Invoke, "read", json!({"key": "1"})),
            (p, Kind::Ok, "read", json!({"key": "1", "value": value, "version": version})),
        ]
    }

    /// A write by `p` of `value` that made `version`.
    fn write(p: u64, value: &str, version: u64) -> [Step; 2] {
        [
            (p, Kind::Invoke, "write", json!({"key": "1", "value": value})),
            (p, Kind::Ok, "write", json!({"key": "1", "value": value, "version": version})),
        ]
    }

    /// Rejected, with an error that contains `what`.
    fn rejected(steps: &[Step], what: &str) {
        let r = check(&history(steps));
        assert!(!r.valid(), "{what}: accepted {steps:?}");
        assert!(r.errors.iter().any(|e| e.contains(what)), "{what}: {:?}", r.errors);
    }

    fn accepted(steps: &[Step]) -> Report {
        let r = check(&history(steps));
        assert!(r.valid(), "{:?} in {steps:?}", r.errors);
        r
    }

    #[test]
    fn a_read_below_the_version_of_a_write_completed_before_it_began_is_stale() {
        // Control: a read after the write sees it.
        accepted(&[write(1, "a", 2), read(2, json!("a"), 2)].concat());
        // Control: a read that overlaps the write may miss it.
        let [w_inv, w_ok] = write(1, "a", 2);
        let [r_inv, r_ok] = read(2, json!(null), 1);
        accepted(&[w_inv.clone(), r_inv.clone(), w_ok.clone(), r_ok.clone()]);
        // Begun after the write completed, it must not.
        rejected(
            &[w_inv, w_ok, r_inv, r_ok],
            "a stale read: it missed a write that had completed: version 1 after version 2",
        );
        // Nor an older written value, at its older version.
        accepted(&[write(1, "a", 2), write(1, "b", 3), read(2, json!("b"), 3)].concat());
        rejected(
            &[write(1, "a", 2), write(1, "b", 3), read(2, json!("a"), 2)].concat(),
            "a stale read: it missed a write that had completed: version 2 after version 3",
        );
    }

    /// Found by the brute-force comparison below: a refused CAS at a
    /// version the register had reached puts it past that version for good.
    #[test]
    fn nothing_begun_after_a_refused_cas_sees_its_version_again() {
        let open_b: Step = (1, Kind::Invoke, "cas", json!({"key": "1", "value": "b", "expect": 2}));
        let refused: [Step; 2] = [
            (2, Kind::Invoke, "cas", json!({"key": "1", "value": "c", "expect": 2})),
            (2, Kind::Fail, "cas", json!({"key": "1", "value": "c", "expect": 2, "status": 412})),
        ];
        let from_2: [Step; 2] = [
            (3, Kind::Invoke, "cas", json!({"key": "1", "value": "d", "expect": 2})),
            (3, Kind::Ok, "cas", json!({"key": "1", "value": "d", "expect": 2, "version": 3})),
        ];
        let before = &write(1, "a", 2)[..];
        // Control: without the refusal, the CAS from 2 is fine (b never
        // happened).
        accepted(&[before, std::slice::from_ref(&open_b), &from_2].concat());
        rejected(
            &[before, std::slice::from_ref(&open_b), &refused, &from_2].concat(),
            "a cas at version 2 began after a CAS expecting 2 was refused",
        );
        rejected(
            &[before, std::slice::from_ref(&open_b), &refused, &read(3, json!("a"), 2)].concat(),
            "a read at version 2 began after a CAS expecting 2 was refused",
        );
        // Control: the register had not reached 2 when the CAS began (it
        // expected a version ahead), so 2 may come later.
        let ahead: [Step; 2] = [
            (2, Kind::Invoke, "cas", json!({"key": "1", "value": "c", "expect": 5})),
            (2, Kind::Fail, "cas", json!({"key": "1", "value": "c", "expect": 5, "status": 412})),
        ];
        accepted(&[before, &ahead, &write(1, "e", 3)].concat());
    }

    #[test]
    fn a_second_invoke_before_the_first_completed_is_rejected_as_malformed() {
        // Control: one operation at a time.
        accepted(&[write(1, "a", 2), write(1, "b", 3)].concat());
        let [a_inv, _] = write(1, "a", 2);
        let [b_inv, b_ok] = write(1, "b", 2);
        let r = check(&history(&[a_inv, b_inv, b_ok]));
        assert!(!r.valid(), "a double invoke by process 1 was accepted: {r:?}");
        assert!(r.errors.iter().any(|e| e.contains("process 1")), "{:?}", r.errors);
    }

    #[test]
    fn operations_never_completed_are_indeterminate_and_the_rest_is_still_checked() {
        let open_d: Step = (1, Kind::Invoke, "write", json!({"key": "1", "value": "d"}));
        // It may have happened: its value is read, by two reads.
        let happened =
            [&write(1, "a", 2)[..], std::slice::from_ref(&open_d), &read(2, json!("d"), 3), &read(3, json!("d"), 3)]
                .concat();
        let r = accepted(&happened);
        assert_eq!((r.writes, r.indeterminate, r.reads), (1, 1, 2));
        // Or not: the reads after it see the version before it.
        accepted(&[&write(1, "a", 2)[..], std::slice::from_ref(&open_d), &read(2, json!("a"), 2)].concat());
        // A CAS is told from its `expect`, and may have happened too.
        let open_cas: Step = (1, Kind::Invoke, "cas", json!({"key": "1", "value": "e", "expect": 2}));
        let r = accepted(&[&write(1, "a", 2)[..], &[open_cas], &read(2, json!("e"), 3)].concat());
        assert_eq!((r.writes, r.cas_ok, r.indeterminate), (1, 0, 1));
        // An open read is nothing.
        let open_read: Step = (3, Kind::Invoke, "read", json!({"key": "1"}));
        let r = accepted(&[&write(1, "a", 2)[..], &[open_read]].concat());
        assert_eq!((r.reads, r.indeterminate), (0, 0));
        // It may have moved the register before a refused CAS ...
        let refused: [Step; 2] = [
            (2, Kind::Invoke, "cas", json!({"key": "1", "value": "f", "expect": 2})),
            (2, Kind::Fail, "cas", json!({"key": "1", "value": "f", "expect": 2, "status": 412})),
        ];
        accepted(&[&write(1, "a", 2)[..], std::slice::from_ref(&open_d), &refused].concat());
        // ... which without it is judged.
        rejected(&[write(1, "a", 2), refused.clone()].concat(), "nothing had moved the register past 2");
        // The rest of the history is still checked: a stale read after the
        // read of its value,
        let mut stale = happened.clone();
        stale.extend(read(3, json!("a"), 2));
        rejected(&stale, "a stale read: it missed a read that had completed: version 2 after version 3");
        // its value read before it was invoked,
        rejected(
            &[&write(1, "a", 2)[..], &read(2, json!("d"), 3), std::slice::from_ref(&open_d)].concat(),
            "before its write was invoked (from the future)",
        );
        // and its value at a version another write made.
        rejected(
            &[&write(1, "a", 2)[..], std::slice::from_ref(&open_d), &read(2, json!("d"), 2)].concat(),
            "a read at version 2 saw \"d\", but the write that made 2 wrote \"a\"",
        );
    }

    /// The checker against a brute-force linearizability search, on small
    /// histories of a simulated register, correct or faulty.
    mod brute_force {
        use std::collections::{BTreeMap, HashSet};

        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::super::*;
        use crate::history::{Step, from_steps as history};

        /// A stream of choices; proptest shrinks it toward zeros, the
        /// plainest run (no fault, every operation completed).
        struct Choices<'a> {
            bytes: &'a [u8],
            at: usize,
        }

        impl Choices<'_> {
            fn pick(&mut self, n: usize) -> usize {
                let b = self.bytes.get(self.at).copied().unwrap_or(0);
                self.at += 1;
                usize::from(b) % n
            }

            fn one_in(&mut self, n: usize) -> bool {
                self.pick(n) == n - 1
            }
        }

        /// The simulated register: versions from 1, every write one more.
        struct Register {
            value: Option<String>,
            version: u64,
            past: Vec<(Option<String>, u64)>,
        }

        impl Register {
            fn set(&mut self, value: &str) -> u64 {
                self.past.push((self.value.take(), self.version));
                self.value = Some(value.to_string());
                self.version += 1;
                self.version
            }
        }

        struct Flight {
            p: u64,
            f: &'static str,
            invoke: Value,
            /// The completion, once the register has applied it.
            outcome: Option<(Kind, Value)>,
        }

        fn with(invoke: &Value, k: &str, v: Value) -> Value {
            let mut v2 = invoke.clone();
            v2[k] = v;
            v2
        }

        /// Applies an operation, faulty or not: a stale or torn read, a
        /// lost write, a CAS refused though it matched, a CAS that ignored
        /// its `expect`, a write refused that took effect.
        fn apply(fl: &Flight, reg: &mut Register, faulty: bool, c: &mut Choices) -> (Kind, Value) {
            let fault = (faulty && c.one_in(3)).then(|| c.pick(4));
            let version = |v: u64| with(&fl.invoke, "version", json!(v));
            if fl.f == "read" {
                let (value, v) = match (fault, reg.past.len()) {
                    (Some(0 | 1), n @ 1..) => {
                        let (old, v) = reg.past[c.pick(n)].clone();
                        if fault == Some(0) { (old, v) } else { (reg.value.clone(), v) }
                    }
                    _ => (reg.value.clone(), reg.version),
                };
                return (Kind::Ok, json!({"key": "1", "value": value, "version": v}));
            }
            let value = fl.invoke["value"].as_str().expect("a written value").to_string();
            let matches = fl.invoke["expect"].as_u64().is_none_or(|e| e == reg.version);
            let refused = || with(&fl.invoke, "status", json!(412));
            match fault {
                Some(0) if matches => (Kind::Ok, version(reg.version + 1)),
                Some(1) if matches && fl.f == "cas" => (Kind::Fail, refused()),
                Some(2) if !matches => {
                    let v = reg.set(&value);
                    (Kind::Ok, version(v))
                }
                Some(3) if matches => {
                    reg.set(&value);
                    (Kind::Fail, with(&fl.invoke, "status", json!(400)))
                }
                _ if matches => {
                    let v = reg.set(&value);
                    (Kind::Ok, version(v))
                }
                _ => (Kind::Fail, refused()),
            }
        }

        /// A run of 2 or 3 clients, at most 8 operations in all (with a
        /// final read by process 0, sometimes), some left indeterminate or
        /// open at the end.
        fn simulate(bytes: &[u8]) -> Vec<Step> {
            let c = &mut Choices { bytes, at: 0 };
            let faulty = c.one_in(2);
            let procs = 2 + c.pick(2) as u64;
            let final_read = c.one_in(2);
            let budget = 3 + c.pick(6) - usize::from(final_read);
            let mut reg = Register { value: None, version: 1, past: Vec::new() };
            let mut steps: Vec<Step> = Vec::new();
            let (mut flying, mut lingering): (Vec<Flight>, Vec<Flight>) = (Vec::new(), Vec::new());
            let mut last_seen: BTreeMap<u64, u64> = BTreeMap::new();
            let (mut invoked, mut n) = (0, 0);
            enum Act {
                Invoke,
                Apply(usize),
                Complete(usize),
                Linger(usize),
                Stop,
            }
            loop {
                let idle: Vec<u64> = (1..=procs).filter(|p| flying.iter().all(|f| f.p != *p)).collect();
                let mut acts = Vec::new();
                if invoked < budget && !idle.is_empty() {
                    acts.push(Act::Invoke);
                }
                for (i, f) in flying.iter().enumerate() {
                    acts.push(if f.outcome.is_none() { Act::Apply(i) } else { Act::Complete(i) });
                    if f.outcome.is_none() {
                        acts.push(Act::Complete(i));
                    }
                }
                acts.extend((0..lingering.len()).map(Act::Linger));
                if invoked == budget {
                    acts.push(Act::Stop);
                }
                if acts.is_empty() {
                    break;
                }
                match acts.swap_remove(c.pick(acts.len())) {
                    Act::Invoke => {
                        let p = idle[c.pick(idle.len())];
                        invoked += 1;
                        n += 1;
                        let value = format!("{p}-{n}");
                        let (f, invoke) = match (c.pick(3), last_seen.get(&p)) {
                            (0, _) => ("read", json!({"key": "1"})),
                            (2, Some(e)) => ("cas", json!({"key": "1", "value": value, "expect": e})),
                            _ => ("write", json!({"key": "1", "value": value})),
                        };
                        steps.push((p, Kind::Invoke, f, invoke.clone()));
                        flying.push(Flight { p, f, invoke, outcome: None });
                    }
                    Act::Apply(i) => flying[i].outcome = Some(apply(&flying[i], &mut reg, faulty, c)),
                    Act::Complete(i) => {
                        let mut fl = flying.remove(i);
                        let no_answer = with(&fl.invoke, "error", json!("NoAnswer"));
                        let (kind, v) = match fl.outcome.take() {
                            // An answer lost on the way back.
                            Some(_) if fl.f != "read" && c.one_in(4) => (Kind::Info, no_answer),
                            Some(done) => done,
                            None if fl.f == "read" => (Kind::Fail, with(&fl.invoke, "error", json!("NotSent"))),
                            // Never sent: it never happens.
                            None if c.one_in(3) => (Kind::Fail, with(&fl.invoke, "error", json!("NotSent"))),
                            // Sent, no answer: it may still happen.
                            None => {
                                steps.push((fl.p, Kind::Info, fl.f, no_answer));
                                lingering.push(fl);
                                continue;
                            }
                        };
                        if kind == Kind::Ok
                            && let Some(version) = v["version"].as_u64()
                        {
                            last_seen.insert(fl.p, version);
                        }
                        steps.push((fl.p, kind, fl.f, v));
                    }
                    Act::Linger(i) => {
                        let fl = lingering.swap_remove(i);
                        apply(&fl, &mut reg, faulty, c);
                    }
                    Act::Stop => break,
                }
            }
            if final_read {
                steps.push((0, Kind::Invoke, "read", json!({"key": "1"})));
                steps.push((0, Kind::Ok, "read", json!({"key": "1", "value": reg.value, "version": reg.version})));
            }
            steps
        }

        /// What an operation did, for the search: a refused CAS (412)
        /// observed another version.
        #[derive(Debug, Clone)]
        enum Effect {
            Read(Option<String>, u64),
            Write(String, Option<u64>),
            Cas(String, u64, Option<u64>),
            Refused(u64),
        }

        #[derive(Debug, Clone)]
        struct Lin {
            effect: Effect,
            invoked: usize,
            /// `usize::MAX` for an indeterminate one: it may take effect
            /// at any time after its invocation, or never.
            completed: usize,
            happened: bool,
        }

        /// The operations that happened or may have, paired by process
        /// (independently of the checker's own pairing).
        fn lins(steps: &[Step]) -> Vec<Lin> {
            let mut open: BTreeMap<u64, (usize, &str, &Value)> = BTreeMap::new();
            let mut out = Vec::new();
            let effect = |f: &str, iv: &Value, cv: Option<&Value>| {
                let value = iv["value"].as_str().map(str::to_string);
                let version = cv.and_then(|v| v["version"].as_u64());
                match f {
                    "write" => Some(Effect::Write(value?, version)),
                    "cas" => Some(Effect::Cas(value?, iv["expect"].as_u64()?, version)),
                    _ => None,
                }
            };
            for (i, (p, kind, f, v)) in steps.iter().enumerate() {
                if *kind == Kind::Invoke {
                    assert!(open.insert(*p, (i, f, v)).is_none(), "a double invoke by {p}");
                    continue;
                }
                let (invoked, f, iv) = open.remove(p).expect("a completion without its invocation");
                let e = match (f, kind) {
                    ("read", Kind::Ok) => {
                        Some(Effect::Read(v["value"].as_str().map(str::to_string), v["version"].as_u64().unwrap()))
                    }
                    ("cas", Kind::Fail) if v["status"] == 412 => Some(Effect::Refused(iv["expect"].as_u64().unwrap())),
                    (_, Kind::Ok) => effect(f, iv, Some(v)),
                    (_, Kind::Info) => effect(f, iv, None),
                    _ => None,
                };
                let happened = *kind != Kind::Info;
                out.extend(e.map(|effect| Lin {
                    effect,
                    invoked,
                    completed: if happened { i } else { usize::MAX },
                    happened,
                }));
            }
            for (invoked, f, iv) in open.into_values() {
                out.extend(effect(f, iv, None).map(|effect| Lin {
                    effect,
                    invoked,
                    completed: usize::MAX,
                    happened: false,
                }));
            }
            out
        }

        /// How the record's version may move besides the clients' writes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Model {
            /// Only by writes; a write may skip versions (a plain write
            /// makes some greater version, a CAS from `expect` makes
            /// `expect` + 1).
            Strict,
            /// Also by itself, at any time: a greater version with the
            /// same value, or with none (the record registered again).
            /// The checker allows this where a read shows it (a value read
            /// at a later version than its write's, or null), and it makes
            /// any refused CAS explicable.
            Bumps,
        }

        struct Search {
            ops: Vec<Lin>,
            /// The versions a write may have made.
            versions: Vec<u64>,
            model: Model,
            dead: HashSet<(u32, Option<String>, u64)>,
        }

        /// Wing and Gong's search, by brute force: some order of the
        /// operations that happened (and of any of those that may have),
        /// consistent with real time, is a run of the sequential register
        /// under `model`, from a null value at some version.
        fn linearizable(steps: &[Step], model: Model) -> bool {
            let ops = lins(steps);
            assert!(ops.len() <= 32);
            let versions: Vec<u64> = ops
                .iter()
                .flat_map(|o| match o.effect {
                    Effect::Read(_, v) | Effect::Refused(v) => vec![v],
                    Effect::Write(_, v) => v.into_iter().collect(),
                    Effect::Cas(_, e, v) => [e, e + 1].into_iter().chain(v).collect(),
                })
                .collect();
            let top = versions.iter().copied().max().unwrap_or(1);
            let mut s = Search { ops, versions, model, dead: HashSet::new() };
            (0..=top + 1).any(|v0| s.search(0, None, v0))
        }

        impl Search {
            fn search(&mut self, done: u32, value: Option<String>, version: u64) -> bool {
                let left = |j: usize| done & (1 << j) == 0;
                let ops = &self.ops;
                if (0..ops.len()).all(|j| !left(j) || !ops[j].happened) {
                    return true;
                }
                if self.dead.contains(&(done, value.clone(), version)) {
                    return false;
                }
                let bumps = self.model == Model::Bumps;
                for i in 0..self.ops.len() {
                    let ops = &self.ops;
                    let o = &ops[i];
                    if !left(i) || (0..ops.len()).any(|j| left(j) && ops[j].happened && ops[j].completed < o.invoked) {
                        continue;
                    }
                    let next: Vec<(Option<String>, u64)> = match &o.effect {
                        Effect::Read(v, n) => {
                            let exact = *v == value && *n == version;
                            let bumped = bumps && *n > version && (*v == value || v.is_none());
                            if exact || bumped { vec![(v.clone(), *n)] } else { vec![] }
                        }
                        Effect::Write(v, Some(n)) if *n > version => vec![(Some(v.clone()), *n)],
                        Effect::Write(_, Some(_)) => vec![],
                        // Indeterminate: the next version, or one seen.
                        Effect::Write(v, None) => {
                            let later = self.versions.iter().copied().filter(|n| *n > version + 1);
                            [version + 1].into_iter().chain(later).map(|n| (Some(v.clone()), n)).collect()
                        }
                        Effect::Cas(v, e, n) => {
                            let at = *e == version || (bumps && *e > version);
                            if at && n.is_none_or(|n| n == e + 1) { vec![(Some(v.clone()), e + 1)] } else { vec![] }
                        }
                        Effect::Refused(e) if *e != version => vec![(value.clone(), version)],
                        // Refused at `expect`: only if the version moved by itself.
                        Effect::Refused(_) if bumps => vec![(value.clone(), version + 1)],
                        Effect::Refused(_) => vec![],
                    };
                    for (v, n) in next {
                        if self.search(done | 1 << i, v, n) {
                            return true;
                        }
                    }
                }
                self.dead.insert((done, value, version));
                false
            }
        }

        /// The checker's verdict, if it lies outside its slack: rejecting
        /// what linearizes strictly, or accepting what does not even with
        /// bumps.
        fn disagrees(steps: &[Step]) -> Option<(bool, bool)> {
            let ok = check(&history(steps)).valid();
            if !ok && linearizable(steps, Model::Strict) {
                return Some((false, true));
            }
            if ok && !linearizable(steps, Model::Bumps) {
                return Some((true, false));
            }
            None
        }

        /// Control: the simulator's faults make histories that no order
        /// explains, and the checker rejects each of them; without this the
        /// property above could hold of a checker that accepts everything.
        #[test]
        fn the_simulated_faults_make_histories_the_checker_rejects() {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let (mut total, mut bad) = (0, 0);
            for _ in 0..2_000 {
                let bytes: Vec<u8> = (0..48)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let steps = simulate(&bytes);
                total += 1;
                if !linearizable(&steps, Model::Bumps) {
                    bad += 1;
                    assert!(!check(&history(&steps)).valid(), "accepted: {steps:#?}");
                }
                assert_eq!(disagrees(&steps), None, "{:?} in {steps:#?}", check(&history(&steps)).errors);
            }
            assert!(bad >= 50, "only {bad} of {total} simulated histories are not linearizable");
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn the_checker_agrees_with_a_brute_force_search(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
                let steps = simulate(&bytes);
                let r = check(&history(&steps));
                prop_assert_eq!(disagrees(&steps), None, "checker: {:?}\nhistory: {:#?}", r.errors, steps);
            }
        }
    }
}
