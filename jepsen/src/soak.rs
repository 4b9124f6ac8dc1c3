//! The soak: a long run at steady load (`matrix soak`, 30 minutes, not in
//! CI) that checks the nodes stay bounded once retention is at work.
//!
//! Every 30 s it samples each node's resident memory (`VmRSS` of its
//! process) and the size of its data dir (RocksDB and snapshot files), and
//! records them in the history (`soak_sample`) and in `results.json`. At the
//! end, per node and per measure, the trend over the last two thirds of the
//! run (a least-squares line, after the first third's warm-up) may rise by
//! at most [`MAX_TREND`] of the window's mean plus a little slack: state
//! kept for ever (no retention, a leak) grows steadily under steady load
//! and fails that, while compaction's and the allocator's saw-tooth do not.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::history::{Kind, Recorder};

/// The history's process id of the soak sampler.
pub const SOAK: u64 = 600_000;

/// How often the nodes are measured.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(30);

/// The node config a soak adds: a short retention, so it bites within the run.
pub const SOAK_CONFIG: &str = "storage:\n  retention:\n    finished_tasks: 30s\n";

/// [`SOAK_CONFIG`]'s retention, which the queue checker allows for.
pub const SOAK_RETENTION_MS: u64 = 30_000;

/// Largest rise of the trend line over the window, as a share of its mean.
pub const MAX_TREND: f64 = 0.25;

/// One node's measures at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub node: u64,
    pub at_s: f64,
    pub rss_bytes: u64,
    pub data_bytes: u64,
}

/// Resident memory of a process, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The samples a soak recorded in a history.
pub fn samples_of(h: &crate::history::History) -> Vec<Sample> {
    h.ops
        .iter()
        .filter(|o| o.f == "soak_sample" && o.kind == Kind::Ok)
        .filter_map(|o| {
            let v = &o.value;
            Some(Sample {
                node: v["node"].as_u64()?,
                at_s: v["at_s"].as_f64()?,
                rss_bytes: v["rss_bytes"].as_u64()?,
                data_bytes: v["data_bytes"].as_u64()?,
            })
        })
        .collect()
}

/// Samples every node every [`SAMPLE_EVERY`] until `deadline`.
pub async fn sample(c: Arc<Cluster>, rec: Arc<Recorder>, deadline: Instant) -> Vec<Sample> {
    let started = Instant::now();
    let mut out = Vec::new();
    loop {
        for (i, n) in c.nodes.iter().enumerate() {
            let Some(rss) = c.pid(i).and_then(rss_bytes) else { continue };
            let s = Sample {
                node: n.id,
                at_s: started.elapsed().as_secs_f64(),
                rss_bytes: rss,
                data_bytes: dir_bytes(&n.data_dir),
            };
            rec.record(
                SOAK,
                Kind::Ok,
                "soak_sample",
                json!({"node": s.node, "at_s": s.at_s, "rss_bytes": s.rss_bytes, "data_bytes": s.data_bytes}),
            );
            out.push(s);
        }
        let now = Instant::now();
        if now >= deadline {
            return out;
        }
        tokio::time::sleep(SAMPLE_EVERY.min(deadline - now)).await;
    }
}

/// (what, results key, how to read it, slack in MiB)
type Measure = (&'static str, &'static str, fn(&Sample) -> u64, f64);

/// The least-squares slope of `points` (x, y), per unit of x; 0 for fewer
/// than two distinct x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// The verdict on a soak's samples: errors for unbounded growth, and a
/// summary per node (mean, trend and peak over the window, in MiB).
pub fn check(samples: &[Sample], run_s: f64) -> (Vec<String>, Value) {
    let mut errors = Vec::new();
    let mut summary = Vec::new();
    let mut nodes: Vec<u64> = samples.iter().map(|s| s.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let from = run_s / 3.0;
    for node in nodes {
        let window: Vec<&Sample> = samples.iter().filter(|s| s.node == node && s.at_s >= from).collect();
        let mut row = json!({"node": node, "samples": window.len()});
        // Slack: 64 MiB of memory, 32 MiB of disk (a memtable, a snapshot).
        let measures: [Measure; 2] =
            [("resident memory", "rss", |s| s.rss_bytes, 64.0), ("data dir", "data", |s| s.data_bytes, 32.0)];
        for (what, key, get, slack_mib) in measures {
            let points: Vec<(f64, f64)> = window.iter().map(|s| (s.at_s, get(s) as f64 / f64::from(1 << 20))).collect();
            if points.len() < 3 {
                errors.push(format!("unknown: node {node} has {} {what} samples after warm-up", points.len()));
                continue;
            }
            let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
            let span = points.last().map_or(0.0, |p| p.0) - points[0].0;
            let rise = slope(&points) * span;
            let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
            if rise > MAX_TREND * mean + slack_mib {
                errors.push(format!(
                    "node {node}: {what} rose by {rise:.0} MiB over the last {span:.0} s (mean {mean:.0} MiB): not bounded"
                ));
            }
            row[format!("{key}_mean_mib")] = json!(mean.round());
            row[format!("{key}_trend_mib")] = json!(rise.round());
            row[format!("{key}_peak_mib")] = json!(peak.round());
        }
        summary.push(row);
    }
    (errors, json!(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(node: u64, f: impl Fn(f64) -> (u64, u64)) -> Vec<Sample> {
        (0..=60)
            .map(|i| {
                let at_s = i as f64 * 30.0;
                let (rss, data) = f(at_s);
                Sample { node, at_s, rss_bytes: rss, data_bytes: data }
            })
            .collect()
    }

    #[test]
    fn steady_state_passes_and_linear_growth_fails() {
        const MIB: u64 = 1 << 20;
        // Warms up, then flat with noise.
        let flat = series(1, |t| (200 * MIB + (t as u64 % 7) * MIB, (50 + (t as u64 % 5)) * MIB));
        let (errors, summary) = check(&flat, 1800.0);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(summary[0]["node"], 1);
        // Grows by 1 MiB of disk per 10 s for ever: 180 MiB more by the end.
        let leak = series(2, |t| (200 * MIB, (50 + t as u64 / 10) * MIB));
        let (errors, _) = check(&leak, 1800.0);
        assert!(errors.iter().any(|e| e.contains("node 2: data dir rose")), "{errors:?}");
        // Control: the same growth of memory is caught as memory.
        let rss_leak = series(3, |t| ((200 + t as u64 / 5) * MIB, 50 * MIB));
        let (errors, _) = check(&rss_leak, 1800.0);
        assert!(errors.iter().any(|e| e.contains("node 3: resident memory rose")), "{errors:?}");
        // A saw-tooth (compactions) around a flat level passes.
        let saw = series(4, |t| (300 * MIB, (40 + (t as u64 / 30 % 6) * 10) * MIB));
        let (errors, _) = check(&saw, 1800.0);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn rss_and_sizes_are_read_from_the_system() {
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 1 << 20));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 123);
    }
}
