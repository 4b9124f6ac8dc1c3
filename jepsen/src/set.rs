//! The set workload's checker: unique inserts (vector points), searched
//! for while the faults run and read back from every node at the end.
//!
//! - `add`: invoke `{"id"}`; ok when acknowledged, fail when refused,
//!   info when indeterminate.
//! - `search`: a search (linearizable unless the run says otherwise) by
//!   the vector of an added point: invoke `{"id"}` (an add of it completed
//!   before), ok `{"id", "found"}`.
//! - `read`: the final read of one node after heal: ok `{"node",
//!   "present": [ids], "count"}`, every attempted id that node holds and
//!   its point count.
//!
//! It fails on: an acknowledged add missing from any node's final read
//! (lost); a point on some nodes but not others (diverged); a search that
//! missed a point whose add had completed (a stale read); a present id
//! whose add was refused; a node holding more points than the ids it was
//! asked about (unexpected); a node with no read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::history::{History, Kind};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub errors: Vec<String>,
    pub acknowledged: usize,
    pub indeterminate: usize,
    pub searches: usize,
    /// Indeterminate adds that turned out present.
    pub indeterminate_present: usize,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.errors.is_empty()
    }
}

fn id(v: &Value) -> Option<String> {
    v.get("id")?.as_str().map(str::to_string)
}

/// Checks the history; `nodes` is how many final reads there must be.
pub fn check(h: &History, nodes: usize) -> Report {
    let mut r = Report::default();
    let mut outcome: BTreeMap<String, Kind> = BTreeMap::new();
    let mut reads: Vec<&Value> = Vec::new();
    for op in &h.ops {
        match (op.f.as_str(), op.kind) {
            ("add", Kind::Invoke) => {}
            ("add", k) => {
                if let Some(i) = id(&op.value) {
                    // An acknowledgement wins over an earlier indeterminate.
                    let e = outcome.entry(i).or_insert(k);
                    if k == Kind::Ok || *e == Kind::Fail {
                        *e = k;
                    }
                }
            }
            ("search", Kind::Ok) => {
                r.searches += 1;
                if op.value.get("found").and_then(Value::as_bool) == Some(false) {
                    r.errors.push(format!(
                        "a search missed point {}, whose add had completed: a stale read",
                        id(&op.value).unwrap_or_default()
                    ));
                }
            }
            ("read", Kind::Ok) => reads.push(&op.value),
            _ => {}
        }
    }
    r.acknowledged = outcome.values().filter(|k| **k == Kind::Ok).count();
    r.indeterminate = outcome.values().filter(|k| **k == Kind::Info).count();
    if reads.len() < nodes {
        r.errors.push(format!("only {} of {nodes} nodes have a final read: the run is unknown", reads.len()));
    }
    let mut present_somewhere = BTreeSet::new();
    for read in &reads {
        let node = read.get("node").cloned().unwrap_or_default();
        let present: BTreeSet<String> = read
            .get("present")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        for (i, k) in &outcome {
            match (k, present.contains(i)) {
                (Kind::Ok, false) => r.errors.push(format!("acknowledged point {i} is lost: node {node} lacks it")),
                (Kind::Fail, true) => r.errors.push(format!("point {i} is on node {node}, but its add was refused")),
                _ => {}
            }
        }
        let count = read.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
        if count > present.len() {
            r.errors.push(format!(
                "node {node} holds {count} points but only {} of them were added: {} unexpected",
                present.len(),
                count - present.len()
            ));
        }
        present_somewhere.extend(present);
    }
    // Every node must hold the same points: one present anywhere is
    // present everywhere (an indeterminate add included).
    for read in &reads {
        let node = read.get("node").cloned().unwrap_or_default();
        let present: BTreeSet<&str> =
            read.get("present").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        for i in present_somewhere.iter().filter(|i| !present.contains(i.as_str())) {
            if outcome.get(i) != Some(&Kind::Ok) {
                r.errors.push(format!("point {i} is on some nodes but not on node {node}: the nodes diverged"));
            }
        }
    }
    r.indeterminate_present =
        outcome.iter().filter(|(i, k)| **k == Kind::Info && present_somewhere.contains(*i)).count();
    r
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::history::{Step, from_steps as history};

    fn good() -> Vec<Step> {
        vec![
            (1, Kind::Invoke, "add", json!({"id": "a"})),
            (1, Kind::Ok, "add", json!({"id": "a"})),
            (2, Kind::Invoke, "add", json!({"id": "b"})),
            (2, Kind::Info, "add", json!({"id": "b"})),
            (3, Kind::Invoke, "add", json!({"id": "c"})),
            (3, Kind::Fail, "add", json!({"id": "c"})),
            (1, Kind::Invoke, "search", json!({"id": "a"})),
            (1, Kind::Ok, "search", json!({"id": "a", "found": true})),
            (0, Kind::Ok, "read", json!({"node": 1, "present": ["a", "b"], "count": 2})),
            (0, Kind::Ok, "read", json!({"node": 2, "present": ["a", "b"], "count": 2})),
        ]
    }

    #[test]
    fn a_good_history_passes_and_is_counted() {
        let r = check(&history(&good()), 2);
        assert!(r.valid(), "{:?}", r.errors);
        assert_eq!((r.acknowledged, r.indeterminate, r.indeterminate_present, r.searches), (1, 1, 1, 1));
    }

    #[test]
    fn every_kind_of_bad_history_is_rejected() {
        let mut cases: Vec<(&str, Vec<Step>)> = Vec::new();
        let mut lost = good();
        lost[9].3 = json!({"node": 2, "present": ["b"], "count": 1});
        cases.push(("lost", lost));
        let mut stale = good();
        stale[7].3 = json!({"id": "a", "found": false});
        cases.push(("stale read", stale));
        let mut refused = good();
        refused[8].3 = json!({"node": 1, "present": ["a", "b", "c"], "count": 3});
        cases.push(("refused", refused));
        let mut unexpected = good();
        unexpected[8].3 = json!({"node": 1, "present": ["a", "b"], "count": 3});
        cases.push(("unexpected", unexpected));
        let mut diverged = good();
        diverged[9].3 = json!({"node": 2, "present": ["a"], "count": 1});
        cases.push(("diverged", diverged));
        let mut unknown = good();
        unknown.pop();
        cases.push(("unknown", unknown));
        for (what, steps) in cases {
            let r = check(&history(&steps), 2);
            assert!(r.errors.iter().any(|e| e.contains(what)), "{what}: {:?}", r.errors);
        }
    }
}
