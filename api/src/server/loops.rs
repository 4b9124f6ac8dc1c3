//! The background loops every node runs (plugin sync, heartbeats) and the
//! leader's (automatic promotion).

use std::time::Duration;

use crate::service::SharedNode;
use crate::service::cluster::{Heartbeat, NodeInfoJson};

/// Every node: compile the WASM plugins the store holds (and drop unloaded
/// ones), twice a second; cheap when nothing changed.
pub(super) async fn plugin_sync_loop(node: SharedNode) {
    loop {
        crate::service::plugins::sync_now(&node).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every node: a metrics sample into the in-memory history, every
/// `observability.history_interval`.
pub(super) async fn history_loop(node: SharedNode) {
    let cfg = &node.cfg.observability;
    let every = cfg.history_interval.get().max(Duration::from_millis(100));
    loop {
        let n = node.clone();
        let (secs, keep) = (every.as_secs_f64(), cfg.history_samples);
        // Reads the store and renders the metrics: off the async threads.
        let _ = tokio::task::spawn_blocking(move || n.history.sample(&n, secs, keep)).await;
        tokio::time::sleep(every).await;
    }
}

/// Every node: register, then heartbeat to the leader, which stamps it.
pub(super) async fn heartbeat_loop(node: SharedNode) {
    let every = node.cfg.cluster.node_heartbeat_interval.get();
    let mut failures = 0u32;
    loop {
        let applied = node.raft.view().applied_index;
        // Models installed (or found broken) since the last beat change what
        // this node offers; the leader re-registers it when its info differs.
        let models = node.models.clone();
        let _ = tokio::task::spawn_blocking(move || models.rescan()).await;
        let mut info = NodeInfoJson::from(&node.info);
        info.capabilities = node.capabilities();
        // Loaded plugins are task types too.
        info.task_types = node.plugins.names().into_iter().collect();
        let hb = Heartbeat {
            info,
            applied_index: applied,
            cpu_load: super::cpu_load(),
            worker_slots: node.pool_size.load(std::sync::atomic::Ordering::Relaxed) as u32,
            running_tasks: node.raft.store.leased_tasks(Some(node.id())).map(|l| l.len() as u32).unwrap_or(0),
        };
        match node.heartbeat(hb).await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, failures, "heartbeat not delivered");
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The leader only: promote caught-up live learners while voters are fewer
/// than `cluster.voters`.
pub(super) async fn leader_loop(node: SharedNode) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !node.cfg.cluster.auto_promote || !node.raft.is_leader() {
            continue;
        }
        let view = node.raft.view();
        let voters = view.voters.len();
        if voters >= node.cfg.cluster.voters || view.joint {
            continue;
        }
        let now = node.raft.cluster_now_ms();
        let candidate = view.learners.iter().copied().find(|id| {
            let caught_up = view.matched.get(id).copied().flatten().is_some_and(|i| i + 100 >= view.commit_index);
            let alive = node
                .raft
                .store
                .get_node(*id)
                .ok()
                .flatten()
                .map(|r| node.liveness(r.last_heartbeat_ms, now) == "alive")
                .unwrap_or(false);
            caught_up && alive
        });
        if let Some(id) = candidate {
            match node.raft.promote(id).await {
                Ok(_) => {
                    tracing::info!(node = id, voters = voters + 1, "learner promoted automatically");
                    crate::service::authn::audit(
                        "membership_promote",
                        &format!("node:{}", node.id()),
                        &format!("node {id}"),
                    );
                }
                Err(e) => tracing::warn!(node = id, error = %e, "automatic promotion failed"),
            }
        }
    }
}
