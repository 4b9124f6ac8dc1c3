//! openraft's state machine over [`synod_store::Store::apply`], with file
//! snapshots under `<data dir>/snapshots/`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use prost::Message;
use synod_store::schema::KEY_SNAPSHOT_META;
use synod_store::{ApplyEntry, Store};

use crate::codec::{decode, encode};
use crate::types::{LogId, Response, Snapshot, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig};

/// Snapshot files kept besides the current one, for senders still
/// streaming an older snapshot.
const KEEP_OLD_SNAPSHOTS: usize = 2;

/// The replicated state machine of one node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: Store,
    dir: PathBuf,
    seq: Arc<AtomicU64>,
    /// Serializes moves of the current-snapshot pointer: a build runs on a
    /// clone of this state machine, beside installs.
    current: Arc<std::sync::Mutex<()>>,
    /// Follows the leader's timeline from the stamps applied here.
    pub clock: Arc<crate::clock::ClusterClock>,
    /// Size of the last snapshot this process built or installed (0: none
    /// yet); the snapshot policy weighs the log against it.
    pub(crate) snapshot_bytes: Arc<AtomicU64>,
}

impl StateMachine {
    /// `dir` holds snapshot files; it is created if missing.
    pub fn new(store: Store, dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // Leftovers of snapshots that were being received or built at a crash.
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "part") {
                let _ = std::fs::remove_file(&path);
            }
        }
        let sm = StateMachine {
            store,
            dir: dir.to_path_buf(),
            seq: Arc::new(AtomicU64::new(0)),
            current: Arc::new(std::sync::Mutex::new(())),
            clock: Default::default(),
            snapshot_bytes: Default::default(),
        };
        // A snapshot install the node died in: its state machine is part
        // old, part new. Install the same file again before anything else.
        if let Some(path) = sm.store.interrupted_install()? {
            tracing::warn!(snapshot = %path.display(), "a snapshot install was interrupted; installing it again");
            let info = sm.store.install_snapshot(&path)?;
            let meta = meta_from(info.applied, info.membership)?;
            sm.save_current(&meta, &path)?;
        }
        Ok(sm)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A fresh path in the snapshot dir for a file being written.
    pub fn part_path(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{what}-{}-{n}.part", std::process::id()))
    }

    fn final_path(&self, meta: &SnapshotMeta) -> PathBuf {
        let (term, index) = meta.last_log_id.as_ref().map(|l| (l.leader_id.term, l.index)).unwrap_or((0, 0));
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("snapshot-{term}-{index}-{n}.snap"))
    }

    /// Makes `path` the current snapshot, unless the current one is newer:
    /// a build that started before an install and finished after it must not
    /// move the pointer back to a snapshot older than the purged log.
    /// Returns whether it moved.
    fn save_current(&self, meta: &SnapshotMeta, path: &Path) -> io::Result<bool> {
        let _moving = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bytes) = self.store.sm_meta_get(KEY_SNAPSHOT_META)? {
            let (current, _): (SnapshotMeta, String) = decode(&bytes, "snapshot meta")?;
            if current.last_log_id > meta.last_log_id {
                tracing::info!(
                    built = ?meta.last_log_id,
                    current = ?current.last_log_id,
                    "snapshot is older than the current one; the current one stays"
                );
                return Ok(false);
            }
        }
        let record = (meta.clone(), path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        self.store.sm_meta_put(KEY_SNAPSHOT_META, &encode(&record))?;
        self.prune_old(path);
        Ok(true)
    }

    fn build_snapshot_blocking(&self) -> io::Result<Snapshot> {
        let started = std::time::Instant::now();
        let part = self.part_path("build");
        let info = match self.store.build_snapshot(&part) {
            Ok(info) => info,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e.into());
            }
        };
        let meta = meta_from(info.applied, info.membership)?;
        let path = self.final_path(&meta);
        std::fs::rename(&part, &path)?;
        // The rename is durable only once the directory is synced.
        sync_dir(&self.dir)?;
        self.save_current(&meta, &path)?;
        crate::metrics::snapshot_built(info.bytes, started.elapsed());
        self.snapshot_bytes.store(info.bytes, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = info.bytes, records = info.records, "snapshot built");
        Ok(Snapshot { meta, snapshot: SnapshotFile { path } })
    }

    fn install_snapshot_blocking(&self, meta: &SnapshotMeta, snapshot: &SnapshotFile) -> io::Result<()> {
        let started = std::time::Instant::now();
        // The file moves to its final name first: it will be this node's
        // current snapshot, and until the install completes it is what a
        // restart installs again (a `.part` is removed at start).
        let path = self.final_path(meta);
        if snapshot.path.starts_with(&self.dir) && snapshot.path.extension().is_some_and(|e| e == "part") {
            std::fs::rename(&snapshot.path, &path)?;
        } else {
            std::fs::copy(&snapshot.path, &path)?;
            std::fs::File::open(&path)?.sync_all()?;
        }
        sync_dir(&self.dir)?;
        let info = self.store.install_snapshot(&path)?;
        crate::failpoints::hit("snapshot_install");
        self.save_current(meta, &path)?;
        crate::metrics::snapshot_installed(info.bytes, started.elapsed());
        self.snapshot_bytes.store(info.bytes, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = info.bytes, records = info.records, "snapshot installed");
        Ok(())
    }

    fn prune_old(&self, current: &Path) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return };
        let mut snaps: Vec<(std::time::SystemTime, PathBuf)> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "snap") && p != current)
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        snaps.sort();
        let excess = snaps.len().saturating_sub(KEEP_OLD_SNAPSHOTS);
        for (_, p) in snaps.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// fsyncs a directory, so the renames and creations in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn meta_from(applied: Option<Vec<u8>>, membership: Option<Vec<u8>>) -> io::Result<SnapshotMeta> {
    let last_log_id: Option<LogId> = applied.map(|b| decode(&b, "applied log id")).transpose()?;
    let last_membership: StoredMembership = match membership {
        Some(b) => decode(&b, "membership")?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta { last_log_id, last_membership })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // A snapshot is background work: its scan, hashing and fsync run on
        // a thread of their own at a lower CPU priority, so on a busy node
        // apply, replication and the workers come first (it still gets a
        // share: the log is purged only behind a snapshot).
        let this = self.clone();
        let (done, built) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("snapshot-builder".into()).spawn(move || {
            lower_this_threads_priority();
            let _ = done.send(this.build_snapshot_blocking());
        })?;
        built.await.map_err(|_| io::Error::other("the snapshot builder thread died"))?
    }
}

/// How much nicer than the node the snapshot builder runs: 10 gives it
/// about a tenth of the CPU of the node's other threads when both want it.
#[cfg(target_os = "linux")]
const SNAPSHOT_NICE_STEP: i32 = 10;

/// Lowers the calling thread's CPU priority by [`SNAPSHOT_NICE_STEP`] (on
/// Linux a nice value set for a thread id applies to that thread only).
/// Best effort: a snapshot built at the node's priority is still correct.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let tid = rustix::thread::gettid();
        let lowered = getpriority_process(Some(tid))
            .and_then(|now| setpriority_process(Some(tid), (now + SNAPSHOT_NICE_STEP).min(19)));
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "could not lower the snapshot builder's priority");
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.store.applied_state()?;
        let meta = meta_from(state.applied, state.membership)?;
        Ok((meta.last_log_id, meta.last_membership))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let batch: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        if batch.is_empty() {
            return Ok(());
        }
        let log_ids: Vec<Vec<u8>> = batch.iter().map(|(e, _)| encode(&e.log_id())).collect();
        let memberships: Vec<Option<Vec<u8>>> = batch
            .iter()
            .map(|(e, _)| match &e.payload {
                EntryPayload::Membership(m) => Some(encode(&StoredMembership::new(Some(e.log_id()), m.clone()))),
                _ => None,
            })
            .collect();
        let apply_entries: Vec<ApplyEntry<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, (e, _))| ApplyEntry {
                index: e.log_id().index,
                log_id: &log_ids[i],
                membership: memberships[i].as_deref(),
                command: match &e.payload {
                    EntryPayload::Normal(req) => Some(req.0.as_slice()),
                    _ => None,
                },
            })
            .collect();
        let started = std::time::Instant::now();
        let results = self.store.apply(&apply_entries)?;
        let took = started.elapsed();
        // The stamp of the last command is this batch's if it had one.
        if let Some((e, _)) = batch.iter().rev().find(|(e, _)| matches!(e.payload, EntryPayload::Normal(_))) {
            self.clock.observe(e.log_id().leader_id.term, self.store.last_applied_stamp());
        }
        crate::failpoints::hit("apply");
        crate::metrics::entries_applied(batch.len(), took);
        drop(apply_entries);
        // Answer only after the batch is in RocksDB, so a client that hears
        // "ok" can read its own write on this node.
        for ((_, responder), result) in batch.into_iter().zip(results) {
            if let Some(r) = responder {
                r.send(Response(result.encode_to_vec()));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> Result<(), io::Error> {
        let (this, meta) = (self.clone(), meta.clone());
        tokio::task::spawn_blocking(move || this.install_snapshot_blocking(&meta, &snapshot))
            .await
            .map_err(io::Error::other)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let Some(bytes) = self.store.sm_meta_get(KEY_SNAPSHOT_META)? else {
            return Ok(None);
        };
        let (meta, name): (SnapshotMeta, String) = decode(&bytes, "snapshot meta")?;
        let path = self.dir.join(name);
        if !path.exists() {
            tracing::warn!(path = %path.display(), "current snapshot file is missing");
            return Ok(None);
        }
        // Checked whole before anyone is sent it or restores from it: a bad
        // block would otherwise reach every lagging follower. A damaged one
        // is replaced by a fresh build of the current state.
        let check = path.clone();
        let verified = tokio::task::spawn_blocking(move || synod_store::verify_snapshot(&check))
            .await
            .map_err(io::Error::other)?;
        if let Err(e) = verified {
            tracing::error!(path = %path.display(), error = %e, "current snapshot file is damaged; building a new one");
            let _ = std::fs::remove_file(&path);
            return RaftSnapshotBuilder::build_snapshot(self).await.map(Some);
        }
        Ok(Some(Snapshot { meta, snapshot: SnapshotFile { path } }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_at(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::impls::leader_id_adv::LeaderId { term: 1, node_id: 1 },
                index,
            )),
            ..Default::default()
        }
    }

    /// Issue 13, defect 4: a build that finished after a newer install moved
    /// the pointer back to the older snapshot.
    #[test]
    fn the_current_snapshot_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &synod_store::StoreOptions::default()).unwrap();
        let sm = StateMachine::new(store, &dir.path().join("snapshots")).unwrap();
        let (newer, older) = (sm.dir.join("newer.snap"), sm.dir.join("older.snap"));
        std::fs::write(&newer, b"x").unwrap();
        std::fs::write(&older, b"x").unwrap();
        assert!(sm.save_current(&meta_at(20), &newer).unwrap(), "the first snapshot becomes current");
        assert!(!sm.save_current(&meta_at(10), &older).unwrap(), "an older one does not replace it");
        let bytes = sm.store.sm_meta_get(KEY_SNAPSHOT_META).unwrap().unwrap();
        let (meta, name): (SnapshotMeta, String) = decode(&bytes, "snapshot meta").unwrap();
        assert_eq!((meta.last_log_id.map(|l| l.index), name.as_str()), (Some(20), "newer.snap"));
        // Control: a newer one does.
        let newest = sm.dir.join("newest.snap");
        std::fs::write(&newest, b"x").unwrap();
        assert!(sm.save_current(&meta_at(30), &newest).unwrap());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_snapshot_builder_runs_below_the_priority_of_the_thread_that_asked() {
        let nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = nice();
        let builder = std::thread::spawn(move || {
            lower_this_threads_priority();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(builder, (before + SNAPSHOT_NICE_STEP).min(19), "the builder thread is niced");
        // Control: only that thread; the one that spawned it is unchanged.
        assert_eq!(nice(), before);
    }
}
