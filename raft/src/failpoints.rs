//! Failpoints for the chaos suite: crash the process (abort, no cleanup, as
//! kill -9 would) at a chosen storage step, to test recovery from exactly
//! that point. Off unless `observability.failpoints` names some; set once
//! per process, before Raft starts.
//!
//! A spec is comma-separated `POINT@N`: crash on the Nth time POINT is
//! reached since the process started. The points, each right after the
//! step has reached RocksDB and before anyone hears of it:
//!
//! - `log_append`: entries appended and synced; openraft not yet told;
//! - `vote_save`: the vote saved; the vote request not yet answered;
//! - `apply`: a batch applied; its clients not yet answered;
//! - `snapshot_install`: a snapshot's state installed from its file (kept
//!   under its final name); not yet recorded as this node's current
//!   snapshot.
//!
//! A counter, not a clock or a random draw, decides, so `apply` stays
//! deterministic about everything but whether the process lives on.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const POINTS: [&str; 4] = ["log_append", "vote_save", "apply", "snapshot_install"];

struct Armed {
    /// (crash on this hit, hits so far) per point, in [`POINTS`] order.
    at: [(u64, AtomicU64); 4],
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// Parses a spec; an empty one arms nothing.
pub fn parse(spec: &str) -> Result<[u64; 4], String> {
    let mut at = [0u64; 4];
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (point, n) =
            part.split_once('@').ok_or_else(|| format!("failpoint {part:?}: expected POINT@N, e.g. log_append@20"))?;
        let i = POINTS.iter().position(|p| *p == point).ok_or_else(|| {
            format!("failpoint {part:?}: unknown point {point:?} (expected one of: {})", POINTS.join(", "))
        })?;
        at[i] = n
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("failpoint {part:?}: N must be a whole number above 0"))?;
    }
    Ok(at)
}

/// Arms the failpoints of `spec` for this process (the first call wins).
pub fn arm(spec: &str) -> Result<(), String> {
    let at = parse(spec)?;
    if at.iter().any(|n| *n > 0) {
        tracing::warn!(spec, "failpoints armed: this process will crash on purpose");
        let _ = ARMED.set(Armed { at: at.map(|n| (n, AtomicU64::new(0))) });
    }
    Ok(())
}

/// Counts a pass through `point` and aborts the process on its armed hit.
pub(crate) fn hit(point: &str) {
    let Some(armed) = ARMED.get() else { return };
    let Some(i) = POINTS.iter().position(|p| *p == point) else { return };
    let (crash_at, hits) = &armed.at[i];
    if *crash_at > 0 && hits.fetch_add(1, Ordering::SeqCst) + 1 == *crash_at {
        eprintln!("failpoint {point}@{crash_at}: crashing on purpose");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(parse("").unwrap(), [0, 0, 0, 0]);
        assert_eq!(parse("apply@3, log_append@20").unwrap(), [20, 0, 3, 0]);
        assert!(parse("append@3").unwrap_err().contains("unknown point"));
        assert!(parse("apply").unwrap_err().contains("POINT@N"));
        assert!(parse("apply@0").unwrap_err().contains("above 0"));
        assert!(parse("apply@x").unwrap_err().contains("above 0"));
    }
}
