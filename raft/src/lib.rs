//! Synod's Raft layer: openraft over the RocksDB store of `synod-store`.
//!
//! It holds the openraft type configuration ([`TypeConfig`]), the log store
//! ([`LogStore`], fsync before "flushed"), the state-machine adapter
//! ([`StateMachine`]), the internal tonic transport ([`Peers`] as client,
//! [`service`] as server), and [`RaftNode`]: writes forwarded to the leader
//! transparently, linearizable reads through the leader's read index, and
//! membership changes. It knows nothing of HTTP, JSON envelopes or auth.
//!
//! Key types: [`RaftNode`], [`RaftConfig`], [`WriteOutcome`], [`Error`].

pub mod clock;
pub mod codec;
mod error;
pub mod failpoints;
mod impl_raft_log_storage;
mod impl_raft_state_machine;
mod metrics;
mod network;
mod node;
pub mod service;
mod snapshot_policy;
mod types;
mod view;

/// Generated types of the internal `synod.raft.v1` service.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("synod.raft.v1");
}

pub use clock::{ClusterClock, wall_ms};
pub use error::{Error, Result};
pub use impl_raft_log_storage::LogStore;
pub use impl_raft_state_machine::StateMachine;
pub use network::{ClusterTls, Peers, TransportToken, send_leader_op};
pub use node::{Changes, LeaderOps, ProposalHook, RaftConfig, RaftNode, WriteOutcome};
pub use openraft::ServerState;
pub use types::*;
pub use view::{ClusterView, Role};

/// The highest commit index this node knows: the cluster's commit frontier
/// when the leader has told it, else its own.
pub fn commit_index(m: &RaftMetrics) -> u64 {
    let local = m.local_committed.as_ref().map(|l| l.index).unwrap_or(0);
    let cluster = m.cluster_committed.as_ref().map(|l| l.index).unwrap_or(0);
    local.max(cluster)
}

/// The index of the last entry applied to this node's state machine.
pub fn applied_index(m: &RaftMetrics) -> u64 {
    m.last_applied.as_ref().map(|l| l.index).unwrap_or(0)
}
