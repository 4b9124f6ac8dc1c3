//! A short history of this node's metrics, kept in memory so the dashboard
//! draws its charts without Prometheus: every `observability.history_interval`
//! a sample goes into a ring of `observability.history_samples` (an hour at
//! the defaults), served by `GET /metrics/history`.
//!
//! Task counts are the cluster's (the replicated per-tenant counters, read
//! from this node's applied state), so any node draws the same task charts;
//! latency, CPU and memory are this node's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::auth::AuthContext;
use crate::error::Result;
use crate::service::Node;

/// One sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sample {
    /// On the cluster's timeline.
    pub at_ms: u64,
    /// Tasks ever submitted to the cluster (all tenants, purged ones too).
    pub tasks_submitted: u64,
    /// Tasks kept in succeeded, and in failed or dead-lettered (purging
    /// finished tasks lowers these; the rates below then read 0).
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
    /// Queued tasks per tenant now.
    pub queued: BTreeMap<String, u64>,
    /// Per second since the previous sample (0 in the first).
    pub submitted_per_s: f64,
    pub succeeded_per_s: f64,
    pub failed_per_s: f64,
    /// Submit-to-finish latency of the tasks this node saw finish since
    /// the previous sample (seconds, from the histogram's buckets; `None`
    /// when none finished).
    pub latency_p50_s: Option<f64>,
    pub latency_p99_s: Option<f64>,
    /// This process: resident memory, and CPU used since the previous
    /// sample as a share of one core.
    pub rss_bytes: u64,
    pub cpu_share: f64,
    pub raft_term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
}

/// The ring, and what the next sample needs of the previous one.
#[derive(Default)]
pub struct History {
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    samples: VecDeque<Sample>,
    /// The latency histogram's cumulative buckets at the last sample.
    buckets: Vec<(f64, u64)>,
    cpu_ticks: u64,
}

/// The answer of `GET /metrics/history`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub interval_s: f64,
    pub capacity: usize,
    pub samples: Vec<Sample>,
}

/// Cumulative `(le, count)` buckets of histogram `name` in Prometheus text,
/// summed over label sets, by bound.
fn buckets(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{");
    let mut by_le: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else { continue };
        if le.is_nan() {
            continue;
        }
        by_le.entry(le.to_bits()).or_insert((le, 0)).1 += count as u64;
    }
    let mut out: Vec<(f64, u64)> = by_le.into_values().collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile of what fell into the buckets between `before` and
/// `now` (cumulative counts): the upper bound of the bucket it falls in,
/// the last finite bound for the overflow bucket. `None` when nothing fell.
fn quantile(before: &[(f64, u64)], now: &[(f64, u64)], q: f64) -> Option<f64> {
    let earlier = |le: f64| before.iter().find(|(b, _)| *b == le).map_or(0, |(_, c)| *c);
    let delta: Vec<(f64, u64)> = now.iter().map(|(le, c)| (*le, c.saturating_sub(earlier(*le)))).collect();
    let total = delta.last().map(|(_, c)| *c)?;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let last_finite = delta.iter().rev().find(|(le, _)| le.is_finite()).map(|(le, _)| *le);
    delta.iter().find(|(_, c)| *c >= rank).map(|(le, _)| if le.is_finite() { *le } else { last_finite.unwrap_or(0.0) })
}

/// This process's resident memory (bytes) and CPU ticks (user + system).
fn process_usage() -> (u64, u64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<u64>().ok()))
        .map_or(0, |kib| kib * 1024);
    // Fields 14 and 15 of /proc/self/stat, after the command in parentheses.
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (rss, ticks)
}

/// Clock ticks per second of `/proc/self/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

impl History {
    /// Takes a sample now and keeps at most `capacity`.
    pub fn sample(&self, node: &Node, interval_s: f64, capacity: usize) {
        let counters = node.raft.store.task_counters().unwrap_or_default();
        let sum = |names: &[&str]| -> u64 {
            counters.iter().filter(|(_, n, _)| names.contains(&n.as_str())).map(|(_, _, v)| *v).sum()
        };
        // Every task is in exactly one state, or purged.
        let submitted =
            sum(&["queued", "assigned", "running", "succeeded", "failed", "dead_lettered", "cancelled", "purged"]);
        let queued = counters
            .iter()
            .filter(|(_, n, v)| n == "queued" && *v > 0)
            .map(|(t, _, v)| (t.clone(), *v))
            .collect::<BTreeMap<_, _>>();
        let now_buckets = buckets(&crate::metrics::render(), "synod_tasks_end_to_end_seconds");
        let (rss, ticks) = process_usage();
        let view = node.raft.view();
        let mut ring = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let prev = ring.samples.back().cloned();
        let mut s = Sample {
            at_ms: node.raft.cluster_now_ms(),
            tasks_submitted: submitted,
            tasks_succeeded: sum(&["succeeded"]),
            tasks_failed: sum(&["failed", "dead_lettered"]),
            queued,
            latency_p50_s: quantile(&ring.buckets, &now_buckets, 0.5),
            latency_p99_s: quantile(&ring.buckets, &now_buckets, 0.99),
            rss_bytes: rss,
            raft_term: view.term,
            commit_index: view.commit_index,
            applied_index: view.applied_index,
            ..Default::default()
        };
        if let Some(p) = prev {
            let secs = (s.at_ms.saturating_sub(p.at_ms) as f64 / 1000.0).max(interval_s.min(1.0)).max(0.001);
            let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
            s.submitted_per_s = rate(s.tasks_submitted, p.tasks_submitted);
            s.succeeded_per_s = rate(s.tasks_succeeded, p.tasks_succeeded);
            s.failed_per_s = rate(s.tasks_failed, p.tasks_failed);
            s.cpu_share = ticks.saturating_sub(ring.cpu_ticks) as f64 / TICKS_PER_S / secs;
        }
        ring.buckets = now_buckets;
        ring.cpu_ticks = ticks;
        ring.samples.push_back(s);
        while ring.samples.len() > capacity.max(1) {
            ring.samples.pop_front();
        }
    }

    /// The samples taken at or after `since_ms`, oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<Sample> {
        let ring = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.samples.iter().filter(|s| s.at_ms >= since_ms).cloned().collect()
    }
}

/// `GET /metrics/history`: this node's samples since `since_ms` (all kept
/// when 0).
pub fn do_metrics_history(_ctx: &AuthContext, node: &Node, since_ms: u64) -> Result<HistoryView> {
    let cfg = &node.cfg.observability;
    Ok(HistoryView {
        interval_s: cfg.history_interval.get().as_secs_f64(),
        capacity: cfg.history_samples,
        samples: node.history.since(since_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
synod_tasks_end_to_end_seconds_bucket{le=\"0.1\"} 2
synod_tasks_end_to_end_seconds_bucket{le=\"0.5\"} 6
synod_tasks_end_to_end_seconds_bucket{le=\"1\"} 9
synod_tasks_end_to_end_seconds_bucket{le=\"+Inf\"} 10
synod_tasks_end_to_end_seconds_sum 4.2
synod_tasks_end_to_end_seconds_count 10
";

    #[test]
    fn quantiles_come_from_the_buckets_filled_since_the_last_sample() {
        let now = buckets(TEXT, "synod_tasks_end_to_end_seconds");
        assert_eq!(now.len(), 4);
        assert_eq!(quantile(&[], &now, 0.5), Some(0.5));
        assert_eq!(quantile(&[], &now, 0.99), Some(1.0), "the overflow bucket reads as the last bound");
        // Since a sample that had seen 2 (both under 0.1): 8 new, 4 under 0.5.
        let before = vec![(0.1, 2), (0.5, 2), (1.0, 2), (f64::INFINITY, 2)];
        assert_eq!(quantile(&before, &now, 0.5), Some(0.5));
        assert_eq!(quantile(&before, &now, 0.1), Some(0.5));
        assert_eq!(quantile(&now, &now, 0.5), None, "nothing finished since");
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let (rss, _) = process_usage();
        assert!(rss > 1 << 20, "{rss}");
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(process_usage().1 > 0);
    }
}
