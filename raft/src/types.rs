//! The openraft type configuration of Synod and the small types it names.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How other nodes reach a node. Stored in the Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynodNode {
    pub raft_addr: String,
    pub http_addr: String,
    pub grpc_addr: String,
}

/// A replicated request: an encoded `synod.store.v1.Command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request(pub Vec<u8>);

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Request({} bytes)", self.0.len())
    }
}

/// The state machine's answer: an encoded `synod.store.v1.CommandResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response(pub Vec<u8>);

/// A snapshot on disk (see `store/FORMAT.md` for its layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

openraft::declare_raft_types!(
    /// Synod's Raft types: u64 node ids and terms, protobuf commands.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = SynodNode,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;
pub type Raft = openraft::Raft<TypeConfig, crate::StateMachine>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
