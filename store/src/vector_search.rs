//! What a vector search means, independent of the index that answers it:
//! scores per metric (higher is always closer), metadata filters, and the
//! exact (brute-force) search that small segments, tests and recall
//! measurements use.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hnsw::{dot, squared_l2};
use crate::pb::Metric;

/// The score of `v` for `query`: cosine similarity, the dot product, or the
/// negated Euclidean distance, so that higher is closer for every metric.
pub fn score(metric: Metric, query: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::Dot | Metric::Unspecified => dot(query, v),
        Metric::Cosine => {
            let (nq, nv) = (dot(query, query).sqrt(), dot(v, v).sqrt());
            // Clamped: rounding can put a vector's score against itself
            // a hair above 1.
            if nq == 0.0 || nv == 0.0 { 0.0 } else { (dot(query, v) / (nq * nv)).clamp(-1.0, 1.0) }
        }
        Metric::L2 => -squared_l2(query, v).sqrt(),
    }
}

/// One condition on a metadata key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub key: String,
    /// Equal to this value.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// Equal to one of these.
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// A number within these bounds (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub gte: Option<f64>,
    pub lte: Option<f64>,
}

/// `{"must": [conditions]}`: all of them hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    pub must: Vec<Condition>,
}

impl Filter {
    /// Checks the filter's shape: each condition names a key and exactly
    /// one of `match`, `in`, `range` (with at least one bound).
    pub fn validate(&self) -> Result<(), String> {
        for (i, c) in self.must.iter().enumerate() {
            if c.key.is_empty() {
                return Err(format!("filter.must[{i}]: a condition needs a key"));
            }
            let kinds = [c.equals.is_some(), c.one_of.is_some(), c.range.is_some()].iter().filter(|b| **b).count();
            if kinds != 1 {
                return Err(format!("filter.must[{i}]: exactly one of match, in, range"));
            }
            if let Some(r) = c.range
                && r.gte.is_none()
                && r.lte.is_none()
            {
                return Err(format!("filter.must[{i}]: a range needs gte or lte"));
            }
        }
        Ok(())
    }

    /// Whether `metadata` (a JSON object) satisfies every condition.
    pub fn matches(&self, metadata: &Value) -> bool {
        self.must.iter().all(|c| {
            let Some(v) = metadata.get(&c.key) else { return false };
            if let Some(want) = &c.equals {
                return same(v, want);
            }
            if let Some(set) = &c.one_of {
                return set.iter().any(|w| same(v, w));
            }
            if let Some(r) = c.range {
                let Some(x) = v.as_f64() else { return false };
                return r.gte.is_none_or(|g| x >= g) && r.lte.is_none_or(|l| x <= l);
            }
            true
        })
    }
}

/// JSON equality where numbers compare by value (1 == 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A search result: the point's key-form id and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub score: f32,
}

struct Ranked(Hit);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
/// Reversed, so the heap's top is the worst kept hit; ties by id.
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.score.total_cmp(&self.0.score).then_with(|| self.0.id.cmp(&other.0.id))
    }
}

/// The `k` best of `candidates` (id, vector, metadata) that pass `filter`,
/// best first; exact, for growing segments, tests and recall.
pub fn exact_search<'a>(
    metric: Metric,
    query: &[f32],
    k: usize,
    filter: Option<&Filter>,
    candidates: impl IntoIterator<Item = (&'a str, &'a [f32], &'a Value)>,
) -> Vec<Hit> {
    let mut heap = BinaryHeap::with_capacity(k + 1);
    if k == 0 {
        return Vec::new();
    }
    for (id, v, meta) in candidates {
        if filter.is_some_and(|f| !f.matches(meta)) {
            continue;
        }
        heap.push(Ranked(Hit { id: id.to_string(), score: score(metric, query, v) }));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut out: Vec<Hit> = heap.into_iter().map(|r| r.0).collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    out
}

/// Seeded vectors uniform in [-1, 1) (SplitMix64), the same on every
/// machine: the data of the recall tests, `synod-bench vectors` and
/// `bench/hnswlib_compare.py`, which reimplements it.
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n).map(|_| (0..dim).map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0).collect()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn higher_scores_are_closer_for_every_metric() {
        let q = [1.0, 0.0];
        let (near, far) = ([0.9, 0.1], [-1.0, 0.0]);
        for m in [Metric::Cosine, Metric::L2, Metric::Dot] {
            assert!(score(m, &q, &near) > score(m, &q, &far), "{m:?}");
        }
        assert!((score(Metric::Cosine, &q, &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert_eq!(score(Metric::L2, &q, &q), 0.0);
        assert_eq!(score(Metric::Cosine, &q, &[0.0, 0.0]), 0.0, "a zero vector scores 0, not NaN");
        let v = [0.1f32, 0.7, -0.3, 0.9, 0.33];
        assert!(score(Metric::Cosine, &v, &v) <= 1.0, "never above 1");
    }

    #[test]
    fn filters_match_equality_sets_ranges_and_their_conjunction() {
        let f: Filter = serde_json::from_value(json!({"must": [
            {"key": "lang", "match": "en"},
            {"key": "tag", "in": ["a", "b"]},
            {"key": "year", "range": {"gte": 2000, "lte": 2010}}
        ]}))
        .unwrap();
        f.validate().unwrap();
        assert!(f.matches(&json!({"lang": "en", "tag": "b", "year": 2005})));
        assert!(f.matches(&json!({"lang": "en", "tag": "a", "year": 2000.0})));
        assert!(!f.matches(&json!({"lang": "de", "tag": "b", "year": 2005})));
        assert!(!f.matches(&json!({"lang": "en", "tag": "c", "year": 2005})));
        assert!(!f.matches(&json!({"lang": "en", "tag": "a", "year": 2011})));
        assert!(!f.matches(&json!({"lang": "en", "tag": "a", "year": "2005"})), "a range needs a number");
        assert!(!f.matches(&json!({"tag": "a", "year": 2005})), "a missing key fails");
        assert!(Filter::default().matches(&json!({})));
        for bad in [
            json!({"must": [{"key": "x"}]}),
            json!({"must": [{"key": "x", "match": 1, "in": [1]}]}),
            json!({"must": [{"key": "", "match": 1}]}),
            json!({"must": [{"key": "x", "range": {}}]}),
        ] {
            let f: Filter = serde_json::from_value(bad.clone()).unwrap();
            assert!(f.validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<Filter>(json!({"should": []})).is_err(), "unknown clauses are refused");
    }

    #[test]
    fn exact_search_keeps_the_k_best_that_pass_the_filter() {
        let pts: Vec<(String, Vec<f32>, Value)> =
            (0..100).map(|i| (format!("s:{i}"), vec![i as f32, 1.0], json!({"even": i % 2 == 0}))).collect();
        let cands = pts.iter().map(|(id, v, m)| (id.as_str(), v.as_slice(), m));
        let hits = exact_search(Metric::L2, &[50.2, 1.0], 3, None, cands);
        assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["s:50", "s:51", "s:49"]);
        let even: Filter = serde_json::from_value(json!({"must": [{"key": "even", "match": false}]})).unwrap();
        let cands = pts.iter().map(|(id, v, m)| (id.as_str(), v.as_slice(), m));
        let hits = exact_search(Metric::L2, &[50.2, 1.0], 2, Some(&even), cands);
        assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["s:51", "s:49"]);
    }
}
