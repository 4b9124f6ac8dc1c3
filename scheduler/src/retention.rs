//! Retention: the leader deletes finished tasks once they are older than
//! `storage.retention.finished_tasks`, so the replicated state (and every
//! snapshot) stays bounded under steady load.
//!
//! ```text
//!  every 2 s, while leading: oldest finished task ended before now - retention?
//!      └─ yes ─► PurgeFinished { retention_ms, max_tasks } ─► again while `more`
//! ```
//!
//! The leader only proposes; apply() decides what goes, from the command's
//! stamp, so every node deletes exactly the same tasks.

use std::sync::Arc;
use std::time::Duration;

use synod_store::pb::{self, command::Kind};

use crate::host::Host;

/// How often the leader looks for finished tasks past retention.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The loop; runs on every node and works while this node leads.
pub async fn run<H: Host>(host: Arc<H>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let retention = host.config().storage.retention.clone();
        let retention_ms = retention.finished_tasks.get().as_millis() as u64;
        if retention_ms == 0 || host.leader_term_applied().is_none() {
            continue;
        }
        loop {
            let due = match host.store().oldest_finished_ms() {
                Ok(Some(ended)) => ended.saturating_add(retention_ms) < host.cluster_now_ms(),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the finished-task index");
                    false
                }
            };
            if !due {
                break;
            }
            let cmd = Kind::PurgeFinished(pb::PurgeFinished { retention_ms, max_tasks: retention.purge_batch.max(1) });
            match host.propose(cmd).await {
                Ok(pb::CommandResult { outcome: Some(pb::command_result::Outcome::Purge(p)) }) => {
                    metrics::counter!("synod_tasks_purged_total").increment(p.purged);
                    metrics::counter!("synod_retention_freed_bytes_total").increment(p.bytes);
                    tracing::debug!(purged = p.purged, bytes = p.bytes, more = p.more, "finished tasks purged");
                    if !p.more {
                        break;
                    }
                }
                Ok(other) => {
                    tracing::warn!(outcome = ?other.outcome, "unexpected answer to a retention purge");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "proposing a retention purge");
                    break;
                }
            }
        }
    }
}
