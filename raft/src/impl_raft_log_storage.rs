//! openraft's log storage over the `raft_log` / `raft_meta` column families.
//!
//! Every append and vote is fsynced before openraft hears it is flushed
//! (invariant 1: an acknowledged write is never lost).
//!
//! Appends do not wait for their fsync. [`LogStore::append`] puts the
//! entries in an in-memory tail that readers see at once, hands them to one
//! writer thread and returns; the writer takes every append queued since its
//! last write, writes them in one synced batch (group commit), then tells
//! openraft, in order, that they are flushed, and drops them from the tail.
//! So a leader sends a new entry to its followers while its own fsync runs,
//! instead of after it, and under load many appends share one fsync.
//! Votes, truncations and purges first wait for the writer to catch up, so
//! they reach the disk in the order openraft asked for them.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use synod_store::Store;
use synod_store::schema::{KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE};

use crate::codec::{decode, encode};
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// Most entries one replication read returns.
const MAX_ENTRIES_PER_READ: u64 = 4096;

/// The Raft log of one node. Cheap to clone; clones share the RocksDB and
/// the writer.
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Store,
    writer: Arc<Writer>,
    /// Bytes of entries appended by this process, ever (the snapshot
    /// policy weighs them against the state's size).
    appended: Arc<std::sync::atomic::AtomicU64>,
}

/// Entries handed to the writer and not yet durable: the log's tail, by
/// index. Each carries the number of the append that wrote it, so the
/// writer drops only its own entries.
#[derive(Debug, Default)]
struct Tail {
    entries: BTreeMap<u64, (u64, Arc<[u8]>)>,
    appends: u64,
}

enum Job {
    Append {
        append: u64,
        entries: Vec<(u64, Arc<[u8]>)>,
        callback: IOFlushed<TypeConfig>,
        submitted: Instant,
    },
    /// Answered once every job queued before it is on disk.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The writer thread and the tail it drains. Dropping the last clone of a
/// [`LogStore`] stops the thread and waits for it: nothing queued is lost,
/// and the store is not held open behind the caller's back.
struct Writer {
    tail: Arc<Mutex<Tail>>,
    /// The number of the last append on disk (or failed).
    done: tokio::sync::watch::Receiver<u64>,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer { .. }")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(tail: &Mutex<Tail>) -> MutexGuard<'_, Tail> {
    // Nothing panics while the lock is held; a poisoned map is still whole.
    tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stopped() -> io::Error {
    io::Error::other("the Raft log writer has stopped")
}

impl Writer {
    fn start(store: Store) -> io::Result<Writer> {
        let tail: Arc<Mutex<Tail>> = Arc::default();
        let (jobs, queue) = mpsc::channel();
        let (report, done) = tokio::sync::watch::channel(0);
        let drained = tail.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || write_loop(store, queue, drained, report))?;
        Ok(Writer { tail, done, jobs: Some(jobs), thread: Some(thread) })
    }

    fn send(&self, job: Job) -> io::Result<()> {
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())
    }

    /// Waits until everything appended so far is on disk (or failed).
    async fn caught_up(&self) -> io::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Job::Barrier(done))?;
        wait.await.map_err(|_| stopped())
    }
}

/// The writer thread: each round takes every queued job, writes their
/// entries in one synced batch, then answers them in queue order.
fn write_loop(
    store: Store,
    queue: mpsc::Receiver<Job>,
    tail: Arc<Mutex<Tail>>,
    report: tokio::sync::watch::Sender<u64>,
) {
    while let Ok(first) = queue.recv() {
        #[cfg(test)]
        let _held = tests::HOLD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter());
        let batch: Vec<(u64, Arc<[u8]>)> = jobs
            .iter()
            .flat_map(|job| match job {
                Job::Append { entries, .. } => entries.as_slice(),
                Job::Barrier(_) => &[],
            })
            .cloned()
            .collect();
        let result = if batch.is_empty() { Ok(()) } else { store.log_append(batch) };
        if result.is_ok() {
            let mut tail = lock(&tail);
            for job in &jobs {
                if let Job::Append { append, entries, .. } = job {
                    for (index, _) in entries {
                        if tail.entries.get(index).is_some_and(|(by, _)| by == append) {
                            tail.entries.remove(index);
                        }
                    }
                }
            }
        }
        let last = jobs.iter().rev().find_map(|job| match job {
            Job::Append { append, .. } => Some(*append),
            Job::Barrier(_) => None,
        });
        for job in jobs {
            match job {
                Job::Append { entries, callback, submitted, .. } => {
                    crate::metrics::log_appended(entries.len(), submitted.elapsed());
                    crate::failpoints::hit("log_append");
                    callback.io_completed(
                        result.as_ref().map(|_| ()).map_err(|e| io::Error::other(format!("appending to the log: {e}"))),
                    );
                }
                Job::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
        if let Some(last) = last {
            report.send_replace(last);
        }
    }
}

impl LogStore {
    /// Starts the log's writer thread.
    pub fn new(store: Store) -> io::Result<Self> {
        let writer = Arc::new(Writer::start(store.clone())?);
        Ok(LogStore { store, writer, appended: Default::default() })
    }

    /// The counter of bytes appended (shared with every clone).
    pub(crate) fn appended_bytes(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.appended.clone()
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
        // The tail first: an entry that leaves it is on disk before it
        // leaves, so it is found in one place or the other.
        let tail: Vec<(u64, Arc<[u8]>)> =
            lock(&self.writer.tail).entries.range(start..end).map(|(i, (_, b))| (*i, b.clone())).collect();
        let stored_end = tail.first().map_or(end, |(i, _)| *i);
        let mut out = Vec::with_capacity(tail.len());
        for (_, b) in self.store.log_range(start, stored_end)? {
            out.push(decode(&b, "log entry")?);
        }
        for (_, b) in &tail {
            out.push(decode(b, "log entry")?);
        }
        Ok(out)
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
        let pending = lock(&self.writer.tail).entries.last_key_value().map(|(_, (_, b))| b.clone());
        let last = match pending {
            Some(bytes) => Some(bytes.to_vec()),
            None => self.store.log_last()?.map(|(_, bytes)| bytes),
        };
        let last_log_id = match last {
            Some(bytes) => Some(decode::<Entry>(&bytes, "log entry")?.log_id()),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.writer.caught_up().await?;
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
        // Skipped while an entry it covers is still in the tail (a quorum
        // of followers can commit before this node's own fsync): a crash
        // then would leave a committed index pointing past the log, which
        // recovery could not re-apply. The next commit records it.
        if let Some(c) = &committed
            && lock(&self.writer.tail).entries.range(..=c.index()).next().is_some()
        {
            return Ok(());
        }
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
        let submitted = Instant::now();
        let entries: Vec<(u64, Arc<[u8]>)> = entries.into_iter().map(|e| (e.index(), encode(&e).into())).collect();
        let bytes: usize = entries.iter().map(|(_, b)| b.len()).sum();
        self.appended.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        let append = {
            let mut tail = lock(&self.writer.tail);
            tail.appends += 1;
            let append = tail.appends;
            for (index, bytes) in &entries {
                tail.entries.insert(*index, (append, bytes.clone()));
            }
            append
        };
        self.writer.send(Job::Append { append, entries, callback, submitted })?;
        // Run at most one append ahead of the disk. When the one before is
        // still being written (a busy leader), wait for it: the writes that
        // arrive meanwhile gather into the next append, one large batch
        // instead of many small ones, each of which costs CPU on this node
        // and, replicated, on every follower. Idle, nothing waits, and the
        // entries go to the followers while this node's fsync runs.
        let mut done = self.writer.done.clone();
        done.wait_for(|done| done + 1 >= append).await.map_err(|_| stopped())?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        self.writer.caught_up().await?;
        lock(&self.writer.tail).entries.split_off(&from);
        self.store.log_truncate_from(from)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.writer.caught_up().await?;
        self.store.log_purge_upto(log_id.index(), &encode(&log_id))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry;

    /// Held by a test to keep the writer from writing.
    pub(super) static HOLD: Mutex<()> = Mutex::new(());

    fn entry(index: u64) -> Entry {
        let leader = openraft::impls::leader_id_adv::LeaderId { term: 1, node_id: 1 };
        Entry::new_blank(openraft::LogId::new(leader, index))
    }

    fn on_disk(store: &Store) -> Vec<u64> {
        store.log_range(0, u64::MAX).unwrap().into_iter().map(|(i, _)| i).collect()
    }

    // The guard is a std mutex held across awaits on purpose: it stands
    // for a disk that has not finished, and only the writer thread waits on it.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn appends_are_readable_before_their_fsync_and_everything_else_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &synod_store::StoreOptions::default()).unwrap();
        let mut log = LogStore::new(store.clone()).unwrap();

        // The writer is held: the append returns, its entries are readable
        // from the tail, and neither the disk nor openraft has them yet.
        let held = HOLD.lock().unwrap();
        let (flushed, mut flushed_rx) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
        log.append((1..=5).map(entry), IOFlushed::signal(flushed)).await.unwrap();
        let read: Vec<u64> = log.try_get_log_entries(1..=5).await.unwrap().iter().map(|e| e.index()).collect();
        assert_eq!(read, vec![1, 2, 3, 4, 5]);
        assert_eq!(log.get_log_state().await.unwrap().last_log_id.map(|l| l.index()), Some(5));
        assert!(
            futures::FutureExt::now_or_never(&mut flushed_rx).is_none(),
            "reported flushed before the writer wrote"
        );
        assert_eq!(on_disk(&store), Vec::<u64>::new());
        // A commit covering entries not on disk is not recorded.
        log.save_committed(Some(entry(2).log_id())).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), None);

        // A truncation asked for meanwhile waits for the writer: the
        // entries it removes cannot reach the disk after it.
        let mut truncating = log.clone();
        let truncate = tokio::spawn(async move { truncating.truncate_after(Some(entry(2).log_id())).await });
        drop(held);
        truncate.await.unwrap().unwrap();
        flushed_rx.await.unwrap().unwrap();
        assert_eq!(on_disk(&store), vec![1, 2]);
        let read: Vec<u64> = log.try_get_log_entries(0..10).await.unwrap().iter().map(|e| e.index()).collect();
        assert_eq!(read, vec![1, 2]);

        // On disk, the commit is recorded.
        log.save_committed(Some(entry(2).log_id())).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap().map(|l| l.index()), Some(2));
    }
}
