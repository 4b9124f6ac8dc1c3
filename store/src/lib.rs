//! Synod's replicated state, on RocksDB.
//!
//! This crate holds the column families, the key codec, the replicated
//! command encoding (protobuf, [`pb`]), the deterministic [`Store::apply`],
//! the registry records and file snapshots. It knows nothing of openraft,
//! tokio, tonic or axum: the Raft layer hands it opaque log ids and
//! membership bytes, and stamps time into every command.
//!
//! Key types: [`Store`] (one RocksDB instance per node), [`ApplyEntry`],
//! [`pb::Command`], [`pb::CommandResult`], [`SnapshotInfo`].
//!
//! ```no_run
//! use synod_store::{ApplyEntry, Store, StoreOptions, pb};
//! use prost::Message;
//!
//! let store = Store::open(std::path::Path::new("/tmp/synod-doc"), &StoreOptions::default())?;
//! let cmd = pb::Command {
//!     format_version: 1,
//!     stamped_at_ms: 1_700_000_000_000,
//!     kind: Some(pb::command::Kind::AllocateNodeId(pb::AllocateNodeId {})),
//! };
//! let bytes = cmd.encode_to_vec();
//! let results = store.apply(&[ApplyEntry { index: 1, log_id: b"opaque", membership: None, command: Some(&bytes) }])?;
//! assert_eq!(results.len(), 1);
//! # Ok::<(), synod_store::Error>(())
//! ```

mod db;
mod error;
pub mod hnsw;
pub mod identity;
mod index_mirror;
pub mod plugins;
mod registry;
pub mod schema;
mod snapshot;
mod state_machine;
pub mod tasks;
pub mod vector_index;
pub mod vector_search;
pub mod vectors;

/// Generated protobuf types of `proto/synod/store/v1/store.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/synod.store.v1.rs"));
}

pub use db::{Compression, Store, StoreOptions};
pub use error::{Error, Result};
pub use snapshot::{BackupInfo, SnapshotInfo, read_backup, verify_snapshot};
pub use state_machine::{AppliedState, ApplyEntry, COMMAND_FORMAT_BASE, COMMAND_FORMAT_VERSION};
