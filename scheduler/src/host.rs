//! What the leader loop, the worker and the autoscaler need of the node
//! they run on. The `synod` binary implements [`Host`] over its Raft node;
//! this crate never sees Raft, HTTP or gRPC.

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use synod_config::Config;
use synod_plugins::Registry;
use synod_store::Store;
use synod_store::pb::{self, command::Kind};

pub trait Host: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> u64;
    /// The replicated state, as applied on this node.
    fn store(&self) -> &Store;
    /// The task types this node runs.
    fn plugins(&self) -> &Registry;
    fn config(&self) -> &Config;
    /// Whether this node is the Raft leader now.
    fn is_leader(&self) -> bool;
    /// The leader's term, once this node leads and has applied an entry of
    /// its own term (so everything earlier leaders committed); else `None`.
    fn leader_term_applied(&self) -> Option<u64>;
    /// Now on the cluster's timeline, the one every replicated time is on:
    /// the leader's stamping clock on the leader, this node's estimate of
    /// it elsewhere. Compare replicated times with this, never with
    /// [`now_ms`].
    fn cluster_now_ms(&self) -> u64;
    /// The last log index applied on this node.
    fn applied_index(&self) -> u64;
    /// Returns once the applied index differs from `seen`, or after `max`.
    fn wait_applied(&self, seen: u64, max: Duration) -> impl Future<Output = ()> + Send;
    /// Members (voters and learners) of the cluster.
    fn member_count(&self) -> usize;
    /// Proposes a command (stamped by the host with its clock) and returns
    /// its result once applied. An error may be indeterminate: callers
    /// retry only what apply() fences (epochs, idempotency keys).
    fn propose(&self, kind: Kind) -> impl Future<Output = anyhow::Result<pb::CommandResult>> + Send;
    /// Writes `point` into `collection` of `tenant` through the node's
    /// vector store: the same path (and checks) a client's upsert takes.
    fn store_point(
        &self,
        tenant: &str,
        collection: &str,
        point: VectorPoint,
    ) -> impl Future<Output = Result<(), StorePointError>> + Send;
    /// One-minute load average over the CPU count.
    fn cpu_load(&self) -> f64;
    /// The worker pool size, which the node's heartbeat advertises.
    fn pool_size(&self) -> &AtomicUsize;
    /// The autoscaler's desired node count (0 on followers).
    fn desired_nodes(&self) -> &AtomicUsize;
}

/// A point a task result asks to store (see [`Host::store_point`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorPoint {
    pub id: String,
    pub vector: Vec<f32>,
    pub text: Option<String>,
    /// A JSON object, or `None`.
    pub metadata: Option<serde_json::Value>,
}

/// Why a point was not stored, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePointError {
    pub message: String,
    pub retryable: bool,
}

/// Milliseconds since the Unix epoch on this node's own clock: for
/// generating ids and the like. The leader stamps commands on the cluster's
/// timeline ([`Host::cluster_now_ms`]); apply() never reads a clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Liveness from the leader-stamped heartbeat time and the cluster's
/// `suspect_after` / `dead_after`.
pub fn liveness(cfg: &Config, last_heartbeat_ms: u64, now: u64) -> crate::Liveness {
    let age = now.saturating_sub(last_heartbeat_ms);
    if age < cfg.cluster.suspect_after.get().as_millis() as u64 {
        crate::Liveness::Alive
    } else if age < cfg.cluster.dead_after.get().as_millis() as u64 {
        crate::Liveness::Suspect
    } else {
        crate::Liveness::Dead
    }
}

/// How many tasks a node takes now: the pool size its heartbeat reported,
/// else the capacity it registered with.
pub fn worker_slots(rec: &pb::NodeRecord) -> u32 {
    rec.load
        .map(|l| l.worker_slots)
        .filter(|s| *s > 0)
        .unwrap_or_else(|| rec.info.as_ref().and_then(|i| i.capacity).map(|c| c.worker_slots).unwrap_or(0))
}
