//! The scheduler's [`synod_scheduler::Host`] over this node's Raft: what
//! the scheduling loop, the worker and the autoscaler read and propose.

use std::time::Duration;

use synod_config::Config;
use synod_store::pb::{self, command::Kind};

use super::{Node, command};
use crate::auth::AuthContext;
use crate::error::ApiError;

/// The scheduler's loops run on this node through [`synod_scheduler::Host`].
impl synod_scheduler::Host for Node {
    fn node_id(&self) -> u64 {
        self.id()
    }

    fn store(&self) -> &synod_store::Store {
        &self.raft.store
    }

    fn plugins(&self) -> &synod_plugins::Registry {
        &self.plugins
    }

    fn config(&self) -> &Config {
        &self.cfg
    }

    fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    fn leader_term_applied(&self) -> Option<u64> {
        self.raft.leader_term_applied()
    }

    fn cluster_now_ms(&self) -> u64 {
        self.raft.cluster_now_ms()
    }

    fn applied_index(&self) -> u64 {
        self.raft.view().applied_index
    }

    async fn wait_applied(&self, seen: u64, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        let mut changes = self.raft.changes();
        while self.raft.view().applied_index == seen {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            changes.next(left).await;
        }
    }

    fn member_count(&self) -> usize {
        self.raft.view().members.len()
    }

    async fn propose(&self, kind: Kind) -> anyhow::Result<pb::CommandResult> {
        Ok(self.raft.write(&command(kind)).await?.result)
    }

    /// A task's vector goes through the service layer's upsert, as a
    /// client's would: the same checks (dimension, metadata size), the same
    /// `VectorStore`, the same quotas.
    async fn store_point(
        &self,
        tenant: &str,
        collection: &str,
        point: synod_scheduler::VectorPoint,
    ) -> std::result::Result<(), synod_scheduler::StorePointError> {
        let ctx = AuthContext {
            subject: format!("worker:{}", self.id()),
            tenant: tenant.to_string(),
            role: crate::auth::Role::User,
        };
        let body = crate::service::vectors::PointBody {
            id: serde_json::Value::String(point.id),
            vector: Some(point.vector),
            text: point.text,
            metadata: point.metadata,
        };
        let req = crate::service::vectors::UpsertRequest { points: vec![body] };
        crate::service::vectors::do_upsert_points(&ctx, self, collection, req).await.map(|_| ()).map_err(|e| {
            let retryable = matches!(e, ApiError::Unavailable(_) | ApiError::Indeterminate(_) | ApiError::Internal(_));
            synod_scheduler::StorePointError { message: e.to_string(), retryable }
        })
    }

    fn cpu_load(&self) -> f64 {
        crate::server::cpu_load()
    }

    fn pool_size(&self) -> &std::sync::atomic::AtomicUsize {
        &self.pool_size
    }

    fn desired_nodes(&self) -> &std::sync::atomic::AtomicUsize {
        &self.desired_nodes
    }
}
