//! An in-memory copy of the queue and lease indexes.
//!
//! Both indexes see a delete for every insert, so a RocksDB scan of them
//! steps over tombstones until compaction drops them: with a busy queue the
//! scheduler's and the workers' scans spent most of their time there. The
//! mirror holds just the live entries. It is derived state, like a vector
//! index: loaded from RocksDB at open, updated after each applied batch is
//! written (never before, so it is never ahead of RocksDB), and reloaded
//! after a snapshot install. apply() never reads it.

use std::collections::BTreeMap;
use std::sync::RwLock;

use rocksdb::{DB, Direction, IteratorMode};

use crate::db::bounded;
use crate::error::{Error, Result};
use crate::schema::{CF_SM_DATA, PREFIX_LEASED, PREFIX_QUEUED};

#[derive(Debug, Default)]
pub(crate) struct IndexMirror {
    entries: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

pub(crate) fn is_mirrored(key: &[u8]) -> bool {
    key.starts_with(PREFIX_QUEUED) || key.starts_with(PREFIX_LEASED)
}

impl IndexMirror {
    /// Replaces the mirror with what RocksDB holds.
    pub(crate) fn load(&self, db: &DB) -> Result<()> {
        let cf = db.cf_handle(CF_SM_DATA).expect("every column family is created at open");
        let mut fresh = BTreeMap::new();
        for prefix in [PREFIX_QUEUED, PREFIX_LEASED] {
            for item in db.iterator_cf_opt(cf, bounded(prefix), IteratorMode::From(prefix, Direction::Forward)) {
                let (k, v) = item.map_err(Error::rocks("load task indexes"))?;
                if !k.starts_with(prefix) {
                    break;
                }
                fresh.insert(k.to_vec(), v.to_vec());
            }
        }
        *self.entries.write().expect("index mirror lock is never poisoned") = fresh;
        Ok(())
    }

    /// Applies the puts (`Some`) and deletes (`None`) of a written batch.
    pub(crate) fn update<'a>(&self, changes: impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>) {
        let mut changes = changes.filter(|(k, _)| is_mirrored(k)).peekable();
        if changes.peek().is_none() {
            return;
        }
        let mut entries = self.entries.write().expect("index mirror lock is never poisoned");
        for (k, v) in changes {
            match v {
                Some(v) => entries.insert(k.clone(), v.clone()),
                None => entries.remove(k),
            };
        }
    }

    /// Calls `f` on the entries from `start` on while they start with
    /// `prefix`, until `f` returns false.
    pub(crate) fn scan(
        &self,
        prefix: &[u8],
        start: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let entries = self.entries.read().expect("index mirror lock is never poisoned");
        for (k, v) in entries.range(start.to_vec()..) {
            if !k.starts_with(prefix) || !f(k, v)? {
                break;
            }
        }
        Ok(())
    }
}
