//! `apply()`: the deterministic heart of the replicated state machine.
//!
//! ```text
//!   committed entries ──► apply(entries) ──► one WriteBatch ──► RocksDB
//!                            │                 (data + applied log id
//!                            │                  + membership, atomically)
//!                            └──► Vec<CommandResult> (after the write)
//! ```
//!
//! apply() reads no clock, draws no random number and does no I/O but its
//! own batch: "now" is `Command::stamped_at_ms`, stamped by the leader.
//! Business rejections (unknown node, version mismatch) are results, never
//! errors; an error here is I/O or corruption and stops the node.

use std::collections::BTreeMap;

use prost::Message;
use rocksdb::WriteBatch;

use crate::Store;
use crate::error::{Error, Result};
use crate::pb::{self, CommandResult, RejectCode, command::Kind, command_result::Outcome};
use crate::schema::*;

/// The newest command format this build applies.
///
/// 2 adds `SubmitTasks.placements`. Commands that use nothing newer are
/// stamped [`COMMAND_FORMAT_BASE`], so a node of an older build still
/// applies them; the leader uses format 2 only once every member
/// advertises it (`NodeInfo.command_format`).
pub const COMMAND_FORMAT_VERSION: u32 = 2;

/// The format commands are stamped with unless they use a newer feature.
pub const COMMAND_FORMAT_BASE: u32 = 1;

/// One committed log entry, as the state machine sees it. The log id and
/// the membership are opaque bytes encoded by the Raft layer.
#[derive(Debug, Clone, Copy)]
pub struct ApplyEntry<'a> {
    pub index: u64,
    pub log_id: &'a [u8],
    pub membership: Option<&'a [u8]>,
    /// The encoded [`pb::Command`] of a normal entry; `None` for blank and
    /// membership entries.
    pub command: Option<&'a [u8]>,
}

/// The opaque applied log id and membership of the state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedState {
    pub applied: Option<Vec<u8>>,
    pub membership: Option<Vec<u8>>,
}

/// A WriteBatch with a read-your-writes overlay, so later commands of one
/// batch see what earlier ones wrote.
pub(crate) struct BatchCtx<'s> {
    store: &'s Store,
    batch: WriteBatch,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'s> BatchCtx<'s> {
    fn new(store: &'s Store) -> Self {
        BatchCtx { store, batch: WriteBatch::default(), overlay: BTreeMap::new() }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.store.get(CF_SM_DATA, key),
        }
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.put_cf(self.store.cf(CF_SM_DATA), &key, &value);
        self.overlay.insert(key, Some(value));
    }

    /// Writes a blob (no read-your-writes: blobs are only read after apply).
    pub(crate) fn put_blob(&mut self, key: Vec<u8>, value: &[u8]) {
        self.batch.put_cf(self.store.cf(CF_BLOBS), key, value);
    }

    /// Deletes a blob.
    pub(crate) fn delete_blob(&mut self, key: Vec<u8>) {
        self.batch.delete_cf(self.store.cf(CF_BLOBS), key);
    }

    /// Deletes `start..end` in the batch only: for prefixes no later command
    /// can address (a deleted collection's points, keyed by its uid).
    pub(crate) fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        self.batch.delete_range_cf(self.store.cf(CF_SM_DATA), start, end);
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.batch.delete_cf(self.store.cf(CF_SM_DATA), &key);
        self.overlay.insert(key, None);
    }

    /// Every key and value under `prefix` as this batch sees it: RocksDB
    /// with this batch's writes laid over it, in key order. Reads RocksDB
    /// itself (never the mirrors), so it is as deterministic as `get`.
    pub(crate) fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let cf = self.store.cf(CF_SM_DATA);
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in self.store.db.iterator_cf_opt(cf, crate::db::bounded(prefix), mode) {
            let (k, v) = item.map_err(Error::rocks("scan in apply"))?;
            merged.insert(k.into_vec(), Some(v.into_vec()));
        }
        for (k, v) in self.overlay.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
    }

    /// The first `limit` keys and values under `prefix` as this batch sees
    /// them (RocksDB with this batch's writes laid over it), in key order,
    /// reading no more of RocksDB than that needs.
    pub(crate) fn scan_prefix_first(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let overlay: Vec<(&Vec<u8>, &Option<Vec<u8>>)> =
            self.overlay.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).collect();
        // The overlay can hide at most its own number of stored entries.
        let want = limit.saturating_add(overlay.len());
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let cf = self.store.cf(CF_SM_DATA);
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in self.store.db.iterator_cf_opt(cf, crate::db::bounded(prefix), mode).take(want) {
            let (k, v) = item.map_err(Error::rocks("scan in apply"))?;
            merged.insert(k.into_vec(), Some(v.into_vec()));
        }
        for (k, v) in overlay {
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged.into_iter().filter_map(|(k, v)| Some((k, v?))).take(limit).collect())
    }

    pub(crate) fn get_msg<M: Message + Default>(&self, key: &[u8], what: &'static str) -> Result<Option<M>> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => M::decode(bytes.as_slice()).map(Some).map_err(|e| Error::corrupt(what, e)),
        }
    }
}

pub(crate) fn rejected(code: RejectCode, message: impl Into<String>) -> CommandResult {
    CommandResult {
        outcome: Some(Outcome::Rejected(pb::Rejection {
            code: code as i32,
            message: message.into(),
            current_version: None,
        })),
    }
}

pub(crate) fn ok() -> CommandResult {
    CommandResult { outcome: Some(Outcome::Ok(pb::Empty {})) }
}

impl Store {
    /// Applies committed entries in order and returns one result per entry.
    ///
    /// The data they change, the last applied log id and the last membership
    /// are written in one WriteBatch: after a crash the state machine is
    /// either before or after the whole batch.
    pub fn apply(&self, entries: &[ApplyEntry<'_>]) -> Result<Vec<CommandResult>> {
        let mut ctx = BatchCtx::new(self);
        let mut results = Vec::with_capacity(entries.len());
        let mut last_stamp = 0;
        let meta = self.cf(CF_SM_META);
        for e in entries {
            let result = match e.command {
                None => ok(),
                Some(bytes) => match pb::Command::decode(bytes) {
                    Err(err) => {
                        rejected(RejectCode::Unsupported, format!("undecodable command at index {}: {err}", e.index))
                    }
                    Ok(cmd) => {
                        last_stamp = cmd.stamped_at_ms;
                        apply_command(&mut ctx, cmd)?
                    }
                },
            };
            results.push(result);
            if let Some(m) = e.membership {
                ctx.batch.put_cf(meta, KEY_MEMBERSHIP, m);
            }
        }
        if let Some(last) = entries.last() {
            ctx.batch.put_cf(meta, KEY_APPLIED, last.log_id);
        }
        self.write(ctx.batch, false)?;
        self.mirror.update(ctx.overlay.iter());
        self.vectors.update(ctx.overlay.iter());
        if last_stamp > 0 {
            self.last_stamp.store(last_stamp, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(results)
    }

    /// `stamped_at_ms` of the last command applied since this store was
    /// opened (0 before any).
    pub fn last_applied_stamp(&self) -> u64 {
        self.last_stamp.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The opaque log id of the last applied entry and the last applied
    /// membership, as written by [`Store::apply`] or a snapshot install.
    pub fn applied_state(&self) -> Result<AppliedState> {
        Ok(AppliedState {
            applied: self.get(CF_SM_META, KEY_APPLIED)?,
            membership: self.get(CF_SM_META, KEY_MEMBERSHIP)?,
        })
    }

    /// A state-machine metadata value (e.g. the snapshot metadata).
    pub fn sm_meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(CF_SM_META, key)
    }

    pub fn sm_meta_put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put(CF_SM_META, key, value, true)
    }
}

fn apply_command(ctx: &mut BatchCtx<'_>, cmd: pb::Command) -> Result<CommandResult> {
    if cmd.format_version > COMMAND_FORMAT_VERSION {
        return Ok(rejected(
            RejectCode::Unsupported,
            format!(
                "command format {} is newer than this node understands ({COMMAND_FORMAT_VERSION})",
                cmd.format_version
            ),
        ));
    }
    let now = cmd.stamped_at_ms;
    let Some(kind) = cmd.kind else {
        return Ok(rejected(RejectCode::Unsupported, "command of an unknown kind"));
    };
    match kind {
        Kind::RegisterNode(c) => crate::registry::register(ctx, c, now),
        Kind::Heartbeat(c) => crate::registry::heartbeat(ctx, c, now),
        Kind::SetLabels(c) => crate::registry::set_labels(ctx, c),
        Kind::RemoveNode(c) => crate::registry::remove(ctx, c),
        Kind::SetDraining(c) => crate::registry::set_draining(ctx, c, now),
        Kind::AllocateNodeId(_) => crate::registry::allocate_id(ctx),
        Kind::SubmitTasks(c) => crate::tasks::submit(ctx, c, now),
        Kind::AssignTasks(c) => crate::tasks::assign(ctx, c, now),
        Kind::StartTasks(c) => crate::tasks::start(ctx, c, now),
        Kind::RenewLeases(c) => crate::tasks::renew(ctx, c, now),
        Kind::CompleteTasks(c) => crate::tasks::complete(ctx, c, now),
        Kind::CancelTask(c) => crate::tasks::cancel(ctx, c, now),
        Kind::RequeueTasks(c) => crate::tasks::requeue(ctx, c, now),
        Kind::PurgeFinished(c) => crate::tasks::purge_finished(ctx, c, now),
        Kind::PutTenant(c) => crate::identity::put_tenant(ctx, c, now),
        Kind::PutUser(c) => crate::identity::put_user(ctx, c, now),
        Kind::DeleteUser(c) => crate::identity::delete_user(ctx, c, now),
        Kind::PutApiKey(c) => crate::identity::put_api_key(ctx, c, now),
        Kind::RevokeApiKey(c) => crate::identity::revoke_api_key(ctx, c, now),
        Kind::TouchApiKeys(c) => crate::identity::touch_api_keys(ctx, c),
        Kind::RecordLoginFailure(c) => crate::identity::record_login_failure(ctx, c, now),
        Kind::RecordExternalUsage(c) => crate::identity::record_external_usage(ctx, c, now),
        Kind::CreateCollection(c) => crate::vectors::create_collection(ctx, c, now),
        Kind::DeleteCollection(c) => crate::vectors::delete_collection(ctx, c),
        Kind::UpsertPoints(c) => crate::vectors::upsert_points(ctx, c),
        Kind::DeletePoints(c) => crate::vectors::delete_points(ctx, c),
        Kind::LoadPlugin(c) => crate::plugins::load(ctx, c, now),
        Kind::UnloadPlugin(c) => crate::plugins::unload(ctx, c, now),
    }
}
