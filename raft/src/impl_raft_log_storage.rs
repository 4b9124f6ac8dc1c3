//! openraft's log storage over the `raft_log` / `raft_meta` column families.
//!
//! Every append and vote is fsynced before openraft hears it is flushed
//! (invariant 1: an acknowledged write is never lost).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use synod_store::Store;
use synod_store::schema::{KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE};

use crate::codec::{decode, encode};
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// Most entries one replication read returns.
const MAX_ENTRIES_PER_READ: u64 = 4096;

/// The Raft log of one node. Cheap to clone; clones share the RocksDB.
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        LogStore { store }
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8], what: &str) -> io::Result<Option<T>> {
        match self.store.raft_meta_get(key)? {
            None => Ok(None),
            Some(b) => decode(&b, what).map(Some),
        }
    }
}

fn range_to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_to_bounds(&range);
        self.store.log_range(start, end)?.iter().map(|(_, b)| decode(b, "log entry")).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.meta(KEY_VOTE, "vote")
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        let end = end.min(start.saturating_add(MAX_ENTRIES_PER_READ));
        self.try_get_log_entries(start..end).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.meta(KEY_LAST_PURGED, "last purged log id")?;
        let last_log_id = match self.store.log_last()? {
            Some((_, bytes)) => Some(decode::<Entry>(&bytes, "log entry")?.log_id()),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // The fsync runs on the blocking pool, not on an async thread.
        let (store, bytes) = (self.store.clone(), encode(vote));
        tokio::task::spawn_blocking(move || store.raft_meta_put(KEY_VOTE, &bytes, true))
            .await
            .map_err(io::Error::other)??;
        crate::failpoints::hit("vote_save");
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: losing it only means re-applying from the last
        // snapshot on restart, and the next synced append flushes it anyway.
        self.store.raft_meta_put(KEY_COMMITTED, &encode(&committed), false)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.meta::<Option<LogId>>(KEY_COMMITTED, "committed log id")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let encoded: Vec<(u64, Vec<u8>)> = entries.into_iter().map(|e| (e.index(), encode(&e))).collect();
        let n = encoded.len();
        // The synced write runs on the blocking pool, not on an async thread.
        let store = self.store.clone();
        let result = match tokio::task::spawn_blocking(move || store.log_append(encoded)).await {
            Ok(r) => r.map_err(io::Error::from),
            Err(e) => Err(io::Error::other(e)),
        };
        crate::metrics::log_appended(n, started.elapsed());
        crate::failpoints::hit("log_append");
        let ok = result.is_ok();
        callback.io_completed(result.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string())));
        if ok { Ok(()) } else { result }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        self.store.log_truncate_from(from)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.store.log_purge_upto(log_id.index(), &encode(&log_id))?;
        Ok(())
    }
}
