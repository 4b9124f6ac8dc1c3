//! Opening the RocksDB instance and the Raft-log half of it.
//!
//! The log and the state machine share one RocksDB instance (one WAL), in
//! separate column families. Log writes are synced before they return, and
//! because the WAL is shared, a synced log write also makes every earlier
//! state-machine write durable.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions,
};

use crate::error::{Error, Result};
use crate::schema::*;

/// Tuning knobs taken from the `storage` section of the config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// fsync every Raft log and vote write (never turn off outside benchmarks).
    pub fsync: bool,
    pub block_cache_bytes: u64,
    pub write_buffer_bytes: u64,
    /// Once the write-ahead log holds this much, the column families that
    /// pin its oldest file are flushed. Without it RocksDB lets the log
    /// grow to 4x all memtables (2.5 GiB at the defaults) when one column
    /// family is written rarely.
    pub max_wal_bytes: u64,
    pub compression: Compression,
    /// How the per-node vector index is segmented and compacted.
    pub vector_index: crate::vector_index::IndexOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: true,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 64 << 20,
            max_wal_bytes: 64 << 20,
            compression: Compression::Lz4,
            vector_index: Default::default(),
        }
    }
}

/// The RocksDB instance behind one node. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<DB>,
    pub(crate) fsync: bool,
    /// The live queue and lease index entries (see `index_mirror`).
    pub(crate) mirror: Arc<crate::index_mirror::IndexMirror>,
    /// The vector search index (see `vector_index`).
    pub(crate) vectors: crate::vector_index::VectorIndexes,
    /// `stamped_at_ms` of the last command applied (0 before any): the
    /// Raft layer reads it to follow the leader's timeline.
    pub(crate) last_stamp: Arc<std::sync::atomic::AtomicU64>,
    /// Held for writing while a snapshot install swaps the state (between
    /// clearing the old and ingesting the new), for reading by every read
    /// of the state: no read sees the empty state in between.
    pub(crate) install_gate: Arc<std::sync::RwLock<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.db.path()).finish()
    }
}

impl Store {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(Error::io("create data dir", dir))?;
        let cache = Cache::new_lru_cache(opts.block_cache_bytes as usize);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        let compression = match opts.compression {
            Compression::None => rocksdb::DBCompressionType::None,
            Compression::Lz4 => rocksdb::DBCompressionType::Lz4,
            Compression::Zstd => rocksdb::DBCompressionType::Zstd,
        };
        let cf_opts = || {
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_compression_type(compression);
            o.set_write_buffer_size(opts.write_buffer_bytes as usize);
            o
        };
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_background_jobs(2);
        db_opts.set_max_total_wal_size(opts.max_wal_bytes.max(1 << 20));
        let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_opts()));
        let db = Arc::new(DB::open_cf_descriptors(&db_opts, dir.join("db"), cfs).map_err(Error::rocks("open"))?);
        let install_gate: Arc<std::sync::RwLock<()>> = Default::default();
        let originals = crate::vectors::originals(Arc::downgrade(&db), install_gate.clone());
        let store = Store {
            db,
            fsync: opts.fsync,
            mirror: Default::default(),
            vectors: crate::vector_index::VectorIndexes::with_originals(
                opts.vector_index,
                Some(dir.join("vector-index")),
                Some(originals),
            ),
            last_stamp: Default::default(),
            install_gate,
        };
        store.check_format_version()?;
        store.ensure_task_state_index()?;
        store.mirror.load(&store.db)?;
        store.load_vector_index()?;
        Ok(store)
    }

    fn check_format_version(&self) -> Result<()> {
        match self.get(CF_SM_META, KEY_FORMAT_VERSION)? {
            None => self.put(CF_SM_META, KEY_FORMAT_VERSION, &SM_FORMAT_VERSION.to_be_bytes(), true),
            Some(v) => {
                let v = u32::from_be_bytes(
                    v.as_slice().try_into().map_err(|_| Error::corrupt("format version", "not 4 bytes"))?,
                );
                if v > SM_FORMAT_VERSION {
                    return Err(Error::corrupt(
                        "format version",
                        format!("data dir has format {v}, this build understands up to {SM_FORMAT_VERSION}"),
                    ));
                }
                Ok(())
            }
        }
    }

    pub(crate) fn cf(&self, name: &'static str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("every column family is created at open")
    }

    fn write_opts(&self, sync: bool) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(sync && self.fsync);
        w
    }

    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        self.db.write_opt(batch, &self.write_opts(sync)).map_err(Error::rocks("write batch"))
    }

    pub fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _read = (cf != CF_RAFT_LOG).then(|| self.read_gate());
        self.db.get_cf(self.cf(cf), key).map_err(Error::rocks("get"))
    }

    /// Held by a read of the state machine's data for as long as it reads
    /// (see `install_gate`).
    pub(crate) fn read_gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.install_gate.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn put(&self, cf: &'static str, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(cf), key, value);
        self.write(b, sync)
    }

    // ---- Raft log: opaque entries keyed by index.

    /// Appends (or overwrites) log entries and syncs before returning.
    pub fn log_append<V: AsRef<[u8]>>(&self, entries: impl IntoIterator<Item = (u64, V)>) -> Result<()> {
        let cf = self.cf(CF_RAFT_LOG);
        let mut b = WriteBatch::default();
        for (index, bytes) in entries {
            b.put_cf(cf, log_key(index), bytes);
        }
        self.write(b, true)
    }

    /// Entries with `start <= index < end`, in order.
    pub fn log_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let it = self.db.iterator_cf(self.cf(CF_RAFT_LOG), IteratorMode::From(&log_key(start), Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(Error::rocks("log scan"))?;
            let index = parse_log_key(&k).ok_or_else(|| Error::corrupt("log key", format!("{k:?}")))?;
            if index >= end {
                break;
            }
            out.push((index, v.into_vec()));
        }
        Ok(out)
    }

    /// The last entry of the log, if any.
    pub fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut it = self.db.iterator_cf(self.cf(CF_RAFT_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(Error::rocks("log last"))?;
                let index = parse_log_key(&k).ok_or_else(|| Error::corrupt("log key", format!("{k:?}")))?;
                Ok(Some((index, v.into_vec())))
            }
        }
    }

    /// Number of entries currently in the log.
    pub fn log_len(&self) -> Result<u64> {
        let first = self.db.iterator_cf(self.cf(CF_RAFT_LOG), IteratorMode::Start).next();
        let Some(first) = first else { return Ok(0) };
        let (k, _) = first.map_err(Error::rocks("log first"))?;
        let first = parse_log_key(&k).ok_or_else(|| Error::corrupt("log key", format!("{k:?}")))?;
        let last = self.log_last()?.map(|(i, _)| i).unwrap_or(first);
        Ok(last - first + 1)
    }

    /// Deletes every entry with `index >= from`, synced.
    pub fn log_truncate_from(&self, from: u64) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete_range_cf(self.cf(CF_RAFT_LOG), &log_key(from)[..], KEY_UPPER_BOUND);
        // delete_range's end is exclusive: u64::MAX itself is never a real index.
        self.write(b, true)
    }

    /// Deletes every entry with `index <= upto` and records `last_purged`
    /// in the same synced batch.
    pub fn log_purge_upto(&self, upto: u64, last_purged: &[u8]) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_RAFT_META), KEY_LAST_PURGED, last_purged);
        b.delete_range_cf(self.cf(CF_RAFT_LOG), &log_key(0)[..], &log_key(upto.saturating_add(1))[..]);
        self.write(b, true)
    }

    /// Writes one Raft metadata value (vote, committed), synced.
    pub fn raft_meta_put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_RAFT_META), key, value);
        self.write(b, sync)
    }

    pub fn raft_meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(CF_RAFT_META, key)
    }

    /// Flushes memtables and syncs the WAL: used at clean shutdown.
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(Error::rocks("flush wal"))?;
        for cf in ALL_CFS {
            self.db.flush_cf(self.cf(cf)).map_err(Error::rocks("flush"))?;
        }
        Ok(())
    }
}

/// Read options bounded to keys starting with `prefix`, so a scan stops at
/// the end of its range instead of stepping through what follows (with no
/// bound, an iterator that runs out of live keys skips every tombstone
/// after the prefix looking for the next one).
pub(crate) fn bounded(prefix: &[u8]) -> ReadOptions {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            break;
        }
    }
    let mut ro = ReadOptions::default();
    if !end.is_empty() {
        ro.set_iterate_upper_bound(end);
    }
    ro
}
