//! Backups: the whole replicated state (tasks, identities, collections and
//! points, plugins) of one node, at an index at least as new as every write
//! acknowledged before the request, as one checksummed file.
//!
//! The file is built from one RocksDB snapshot (a consistent view, so
//! writes go on meanwhile) into `<data-dir>/backups/`, streamed to the
//! caller and deleted. Its format is the snapshot format (FORMAT.md) with a
//! last record naming the state's digest; `synod restore` checks both.

use std::path::PathBuf;

use serde::Serialize;

use crate::auth::AuthContext;
use crate::error::{ApiError, Result};
use crate::service::Node;

/// A backup built and waiting to be sent; the file goes when this drops.
pub struct BackupFile {
    pub file: tempfile::TempPath,
    pub about: BackupView,
}

/// What a backup holds, sent ahead of it (REST: headers; gRPC: the first
/// message).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupView {
    pub node_id: u64,
    /// The index of the last entry applied to the state in the file.
    pub applied_index: u64,
    /// The state digest (as `/debug/digest` gives it) of that state.
    pub digest: String,
    pub bytes: u64,
    pub records: u64,
}

pub async fn do_backup(ctx: &AuthContext, node: &Node) -> Result<BackupFile> {
    // Everything acknowledged before this call is applied here first.
    node.raft.read_barrier().await?;
    let dir = node.cfg.node.data_dir.join("backups");
    let store = node.raft.store.clone();
    let (file, info) = tokio::task::spawn_blocking(move || -> Result<_> {
        std::fs::create_dir_all(&dir).map_err(|e| ApiError::Internal(format!("{}: {e}", dir.display())))?;
        let file = tempfile::Builder::new()
            .prefix("backup-")
            .suffix(".synodbak")
            .tempfile_in(&dir)
            .map_err(|e| ApiError::Internal(format!("a backup file in {}: {e}", dir.display())))?
            .into_temp_path();
        let path: PathBuf = file.to_path_buf();
        let info = store.build_backup(&path).map_err(|e| ApiError::Internal(format!("building the backup: {e}")))?;
        Ok((file, info))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("backup task: {e}")))??;
    let applied_index = match &info.applied {
        Some(b) => synod_raft::RaftNode::log_index(b)?,
        None => 0,
    };
    let about = BackupView {
        node_id: node.id(),
        applied_index,
        digest: format!("{:016x}", info.digest),
        bytes: info.bytes,
        records: info.records,
    };
    crate::service::authn::audit(
        "backup",
        &ctx.subject,
        &format!("index {applied_index}, {} bytes, digest {}", about.bytes, about.digest),
    );
    Ok(BackupFile { file, about })
}
