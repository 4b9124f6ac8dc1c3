//! Metrics of the Raft layer (names: `synod_raft_*`). The exporter lives in
//! the api crate; this only records.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use openraft::rt::WatchReceiver;

pub(crate) fn log_appended(entries: usize, took: Duration) {
    counter!("synod_raft_log_appended_entries_total").increment(entries as u64);
    histogram!("synod_raft_log_append_seconds").record(took.as_secs_f64());
}

pub(crate) fn entries_applied(entries: usize, took: Duration) {
    counter!("synod_raft_applied_entries_total").increment(entries as u64);
    histogram!("synod_raft_apply_seconds").record(took.as_secs_f64());
}

/// One write through [`crate::RaftNode::write`], from the call to the
/// answer: proposed here (`local`) or sent to the leader (`forwarded`).
pub(crate) fn write_done(forwarded: bool, took: Duration) {
    let via = if forwarded { "forwarded" } else { "local" };
    histogram!("synod_raft_write_seconds", "via" => via).record(took.as_secs_f64());
}

pub(crate) fn snapshot_built(bytes: u64, took: Duration) {
    counter!("synod_raft_snapshots_built_total").increment(1);
    gauge!("synod_raft_snapshot_bytes").set(bytes as f64);
    histogram!("synod_raft_snapshot_build_seconds").record(took.as_secs_f64());
}

pub(crate) fn snapshot_installed(bytes: u64, took: Duration) {
    counter!("synod_raft_snapshots_installed_total").increment(1);
    gauge!("synod_raft_snapshot_bytes").set(bytes as f64);
    histogram!("synod_raft_snapshot_install_seconds").record(took.as_secs_f64());
}

pub(crate) fn rpc(kind: &'static str, ok: bool, took: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    histogram!("synod_raft_rpc_seconds", "rpc" => kind, "outcome" => outcome).record(took.as_secs_f64());
}

/// Follows openraft's metrics and mirrors them into gauges.
pub(crate) async fn watch(raft: crate::Raft, store: synod_store::Store) {
    let mut rx = raft.metrics();
    let mut last_leader = None;
    let mut last_log_poll = std::time::Instant::now() - Duration::from_secs(10);
    loop {
        {
            let m = rx.borrow_and_update().clone();
            gauge!("synod_raft_term").set(m.current_term as f64);
            let commit = crate::commit_index(&m);
            let applied = m.last_applied.as_ref().map(|l| l.index).unwrap_or(0);
            gauge!("synod_raft_commit_index").set(commit as f64);
            gauge!("synod_raft_applied_index").set(applied as f64);
            gauge!("synod_raft_apply_lag").set(commit.saturating_sub(applied) as f64);
            gauge!("synod_raft_last_log_index").set(m.last_log_index.unwrap_or(0) as f64);
            gauge!("synod_raft_is_leader").set(if m.current_leader == Some(m.id) { 1.0 } else { 0.0 });
            if m.current_leader != last_leader {
                if m.current_leader.is_some() {
                    counter!("synod_raft_leader_changes_total").increment(1);
                }
                last_leader = m.current_leader;
            }
            if last_log_poll.elapsed() > Duration::from_secs(1) {
                last_log_poll = std::time::Instant::now();
                if let Ok(n) = store.log_len() {
                    gauge!("synod_raft_log_entries").set(n as f64);
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
