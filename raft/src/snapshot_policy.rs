//! When this node builds a snapshot of its state machine.
//!
//! openraft's own policy counts entries only: a snapshot every N entries
//! since the last. A snapshot writes the whole state, so with a large state
//! (200,000 queued tasks) that rewrote every task every couple of seconds
//! under load, on every node: a cost per entry that grew with the state
//! (submits fell from 10,000/s to 6,500/s, `perf` on the leader showed the
//! snapshot writer on top). Here a snapshot is due once `threshold` entries
//! *and* log bytes of at least half the last snapshot's size have been
//! appended since the last one, so writing snapshots costs at most about
//! twice the bytes the log took, whatever the state's size. A small state
//! (a 1 KB snapshot) snapshots every `threshold` entries, as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use openraft::rt::WatchReceiver;

/// A request to build that has not shown up in the metrics within this
/// long is asked for again (a build refused or lost to a restart).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// True when a snapshot is due: `entries` and `log_bytes` appended since
/// the last snapshot, which was `snapshot_bytes` long (0: none known).
pub(crate) fn due(entries: u64, log_bytes: u64, snapshot_bytes: u64, threshold: u64) -> bool {
    entries >= threshold.max(1) && log_bytes.saturating_mul(2) >= snapshot_bytes
}

/// Follows the applied index and asks openraft for a snapshot when one is
/// [`due`]. `log_bytes` counts the bytes appended to the log, ever;
/// `snapshot_bytes` is the size of the last snapshot built or installed.
pub(crate) async fn run(raft: crate::Raft, log_bytes: Arc<AtomicU64>, snapshot_bytes: Arc<AtomicU64>, threshold: u64) {
    let mut rx = raft.metrics();
    // The last snapshot's index, and the log's byte count when it appeared.
    let mut since: (Option<u64>, u64) = (None, log_bytes.load(Relaxed));
    let mut asked: Option<Instant> = None;
    loop {
        let (applied, snapshot) = {
            let m = rx.borrow_watched();
            (m.last_applied.as_ref().map_or(0, |l| l.index), m.snapshot.as_ref().map(|s| s.index))
        };
        if snapshot != since.0 {
            since = (snapshot, log_bytes.load(Relaxed));
            asked = None;
        }
        let entries = applied.saturating_sub(snapshot.unwrap_or(0));
        let bytes = log_bytes.load(Relaxed).saturating_sub(since.1);
        let waiting = asked.is_some_and(|at| at.elapsed() < ASK_AGAIN_AFTER);
        if !waiting && due(entries, bytes, snapshot_bytes.load(Relaxed), threshold) {
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            asked = Some(Instant::now());
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_state_waits_for_log_bytes_and_a_small_one_for_entries_alone() {
        // A 1 KB state: every `threshold` entries, as openraft's own policy.
        assert!(!due(9_999, 1_000_000, 1_300, 10_000));
        assert!(due(10_000, 1_000_000, 1_300, 10_000));
        // A 60 MB state: 10,000 entries of 300 bytes are not enough...
        assert!(!due(10_000, 3_000_000, 60_000_000, 10_000));
        // ...30 MB of log since the last snapshot are.
        assert!(due(100_000, 30_000_000, 60_000_000, 10_000));
        // No snapshot yet: entries alone decide.
        assert!(due(10_000, 0, 0, 10_000));
    }
}
