//! State-machine snapshots as files.
//!
//! A snapshot is built from a RocksDB snapshot (a consistent point-in-time
//! view), so apply() may go on while it is written. Layout (see FORMAT.md):
//!
//! ```text
//! "SYNODSNP" | u32 format | records... | 0x00 | u64 FNV-1a of everything before
//! record = u8 cf (1 = sm_data, 2 = sm_meta, 3 = blobs) | u32 key len | key | u32 value len | value
//! ```
//!
//! Installing verifies the whole file first, then streams its records into
//! SST files beside the database (memory does not grow with the snapshot),
//! then swaps them in: a marker naming the file, the old state deleted, the
//! files ingested, the meta records written and the marker removed. Reads
//! of the state wait out the swap (`Store::install_gate`): none sees the
//! empty state between the delete and the ingest. A crash
//! after the marker leaves it set, and the node installs the same file
//! again at its next start ([`Store::interrupted_install`]) before it
//! applies anything.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use rocksdb::{IteratorMode, ReadOptions, WriteBatch};

use crate::Store;
use crate::error::{Error, Result};
use crate::schema::*;

const MAGIC: &[u8; 8] = b"SYNODSNP";
const SNAPSHOT_FORMAT: u32 = 1;
const TAG_END: u8 = 0;
const TAG_DATA: u8 = 1;
const TAG_META: u8 = 2;
const TAG_BLOB: u8 = 3;

/// What a built snapshot covers: the opaque applied log id and membership
/// read from the same consistent view as the data.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInfo {
    pub applied: Option<Vec<u8>>,
    pub membership: Option<Vec<u8>>,
    pub bytes: u64,
    pub records: u64,
    /// [`Store::state_digest`] of the state written (built files only).
    pub digest: u64,
}

/// What a backup file says of itself in its last record, checked against
/// the records before it when the file is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupInfo {
    /// [`Store::state_digest`] of the state in the file.
    pub digest: u64,
    /// Records of state in the file (the info record not counted).
    pub records: u64,
    /// The opaque log id of the last entry applied to that state.
    #[serde(skip)]
    pub applied: Option<Vec<u8>>,
    /// The file's size in bytes.
    #[serde(skip)]
    pub bytes: u64,
}

/// 64-bit FNV-1a, enough to catch truncation and corruption in transit.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

struct HashWriter<W: Write> {
    inner: W,
    hash: Fnv,
    bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// An SST file being staged is closed at this size and another begun.
const STAGED_FILE_BYTES: u64 = 256 << 20;

/// Meta keys that belong to this node, not to the replicated state.
fn is_local_meta(key: &[u8]) -> bool {
    key == KEY_SNAPSHOT_META || key == KEY_FORMAT_VERSION || key == KEY_INSTALLING || key == KEY_BACKUP_INFO
}

/// The SST files of an install, per column family, written in key order.
struct Staging<'a> {
    dir: &'a Path,
    opts: &'a rocksdb::Options,
    open: Option<(u8, rocksdb::SstFileWriter<'a>)>,
    files: Vec<(u8, std::path::PathBuf)>,
}

impl<'a> Staging<'a> {
    fn put(&mut self, tag: u8, k: &[u8], v: &[u8]) -> Result<()> {
        let full = self.open.as_ref().is_some_and(|(t, w)| *t != tag || w.file_size() >= STAGED_FILE_BYTES);
        if full {
            self.finish()?;
        }
        if self.open.is_none() {
            let path = self.dir.join(format!("{:06}.sst", self.files.len()));
            let w = rocksdb::SstFileWriter::create(self.opts);
            w.open(&path).map_err(Error::rocks("stage snapshot"))?;
            self.files.push((tag, path));
            self.open = Some((tag, w));
        }
        let (_, w) = self.open.as_mut().expect("opened above");
        w.put(k, v).map_err(Error::rocks("stage snapshot"))
    }

    fn finish(&mut self) -> Result<()> {
        if let Some((_, mut w)) = self.open.take() {
            w.finish().map_err(Error::rocks("stage snapshot"))?;
        }
        Ok(())
    }
}

impl Store {
    /// Writes a snapshot of the state machine to `path` (fsynced) and
    /// returns what it covers.
    pub fn build_snapshot(&self, path: &Path) -> Result<SnapshotInfo> {
        self.write_state(path, false)
    }

    /// Writes a backup of the state machine to `path` (fsynced): a snapshot
    /// file (same format, same checksum) whose last record is a
    /// [`BackupInfo`] with the state's digest, read back by [`read_backup`].
    pub fn build_backup(&self, path: &Path) -> Result<SnapshotInfo> {
        self.write_state(path, true)
    }

    fn write_state(&self, path: &Path, backup: bool) -> Result<SnapshotInfo> {
        let snap = {
            let _read = self.read_gate();
            self.db.snapshot()
        };
        let mut info = SnapshotInfo::default();
        let file = File::create(path).map_err(Error::io("create snapshot", path))?;
        let mut w = HashWriter { inner: BufWriter::new(file), hash: Fnv::new(), bytes: 0 };
        let io = |e| Error::io("write snapshot", path)(e);
        w.write_all(MAGIC).map_err(io)?;
        w.write_all(&SNAPSHOT_FORMAT.to_be_bytes()).map_err(io)?;
        // The state digest: data then blobs, as `state_digest_applied` reads them.
        let mut digest = Fnv::new();
        for (tag, cf) in [(TAG_DATA, CF_SM_DATA), (TAG_META, CF_SM_META), (TAG_BLOB, CF_BLOBS)] {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snap);
            for item in self.db.iterator_cf_opt(self.cf(cf), ro, IteratorMode::Start) {
                let (k, v) = item.map_err(Error::rocks("snapshot scan"))?;
                if tag == TAG_META {
                    if is_local_meta(&k) {
                        continue;
                    }
                    if &*k == KEY_APPLIED {
                        info.applied = Some(v.to_vec());
                    } else if &*k == KEY_MEMBERSHIP {
                        info.membership = Some(v.to_vec());
                    }
                } else {
                    digest_record(&mut digest, &k, &v);
                }
                w.write_all(&[tag]).map_err(io)?;
                w.write_all(&(k.len() as u32).to_be_bytes()).map_err(io)?;
                w.write_all(&k).map_err(io)?;
                w.write_all(&(v.len() as u32).to_be_bytes()).map_err(io)?;
                w.write_all(&v).map_err(io)?;
                info.records += 1;
            }
        }
        info.digest = digest.0;
        if backup {
            let about = BackupInfo { digest: info.digest, records: info.records, ..Default::default() };
            let v = serde_json::to_vec(&about).map_err(|e| Error::corrupt("backup info", e.to_string()))?;
            w.write_all(&[TAG_META]).map_err(io)?;
            w.write_all(&(KEY_BACKUP_INFO.len() as u32).to_be_bytes()).map_err(io)?;
            w.write_all(KEY_BACKUP_INFO).map_err(io)?;
            w.write_all(&(v.len() as u32).to_be_bytes()).map_err(io)?;
            w.write_all(&v).map_err(io)?;
        }
        w.write_all(&[TAG_END]).map_err(io)?;
        let digest = w.hash.0;
        let mut inner = w.inner.into_inner().map_err(|e| Error::io("flush snapshot", path)(e.into_error()))?;
        inner.write_all(&digest.to_be_bytes()).map_err(io)?;
        inner.sync_all().map_err(io)?;
        info.bytes = w.bytes + 8;
        Ok(info)
    }

    /// Replaces the state machine with the snapshot in `path`. Memory stays
    /// flat whatever the snapshot's size: records stream from the file into
    /// SST files, which RocksDB then takes in whole. `path` must stay until
    /// this returns and, if it fails or the node dies first, until the
    /// install has been run again ([`Store::interrupted_install`]).
    pub fn install_snapshot(&self, path: &Path) -> Result<SnapshotInfo> {
        self.install_until(path, InstallStep::Done)
    }

    /// The snapshot file whose install was interrupted, if one was: it must
    /// be installed again before anything is applied.
    pub fn interrupted_install(&self) -> Result<Option<std::path::PathBuf>> {
        Ok(self.get(CF_SM_META, KEY_INSTALLING)?.map(|b| String::from_utf8_lossy(&b).into_owned().into()))
    }

    fn install_until(&self, path: &Path, stop: InstallStep) -> Result<SnapshotInfo> {
        verify_snapshot(path)?;
        let dir = self.db.path().with_file_name("snapshot-install");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(Error::io("clear snapshot staging", &dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(Error::io("create snapshot staging", &dir))?;
        let mut info =
            SnapshotInfo { bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0), ..Default::default() };
        let opts = rocksdb::Options::default();
        let mut staging = Staging { dir: &dir, opts: &opts, open: None, files: Vec::new() };
        let mut meta_records = Vec::new();
        scan_snapshot(path, true, |(tag, k, v)| {
            info.records += 1;
            if tag != TAG_META {
                return staging.put(tag, &k, &v);
            }
            if k == KEY_APPLIED {
                info.applied = Some(v.clone());
            } else if k == KEY_MEMBERSHIP {
                info.membership = Some(v.clone());
            }
            if !is_local_meta(&k) {
                meta_records.push((k, v));
            }
            Ok(())
        })?;
        staging.finish()?;
        let files = std::mem::take(&mut staging.files);
        drop(staging);

        let meta = self.cf(CF_SM_META);
        // From the clear to the new state's meta records, no read runs.
        let swapping = self.install_gate.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut mark = WriteBatch::default();
        mark.put_cf(meta, KEY_INSTALLING, path.to_string_lossy().as_bytes());
        self.write(mark, true)?;
        let mut clear = WriteBatch::default();
        clear.delete_range_cf(self.cf(CF_SM_DATA), &b""[..], KEY_UPPER_BOUND);
        clear.delete_range_cf(self.cf(CF_BLOBS), &b""[..], KEY_UPPER_BOUND);
        for key in [KEY_APPLIED, KEY_MEMBERSHIP] {
            clear.delete_cf(meta, key);
        }
        self.write(clear, true)?;
        #[cfg(test)]
        match stop {
            InstallStep::Cleared => return Ok(info),
            InstallStep::PauseAfterClear(pause) => pause(self),
            InstallStep::Done => {}
        }
        #[cfg(not(test))]
        let InstallStep::Done = stop;
        let mut ingest = rocksdb::IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        for (tag, cf) in [(TAG_DATA, CF_SM_DATA), (TAG_BLOB, CF_BLOBS)] {
            let these: Vec<&std::path::PathBuf> = files.iter().filter(|(t, _)| *t == tag).map(|(_, p)| p).collect();
            if !these.is_empty() {
                self.db
                    .ingest_external_file_cf_opts(self.cf(cf), &ingest, these)
                    .map_err(Error::rocks("ingest snapshot"))?;
            }
        }
        let mut done = WriteBatch::default();
        for (k, v) in &meta_records {
            done.put_cf(meta, k, v);
        }
        done.delete_cf(meta, KEY_INSTALLING);
        self.write(done, true)?;
        drop(swapping);
        let _ = std::fs::remove_dir_all(&dir);
        self.ensure_task_state_index()?;
        self.mirror.load(&self.db)?;
        self.load_vector_index()?;
        Ok(info)
    }

    /// A digest of the replicated state (data and blobs), equal on every
    /// node that applied the same log prefix.
    pub fn state_digest(&self) -> Result<u64> {
        Ok(self.state_digest_applied()?.1)
    }

    /// [`Store::state_digest`] and the opaque id of the last applied entry,
    /// read from one RocksDB snapshot, so the pair is consistent while
    /// entries are being applied.
    pub fn state_digest_applied(&self) -> Result<(Option<Vec<u8>>, u64)> {
        let snap = {
            let _read = self.read_gate();
            self.db.snapshot()
        };
        let applied = snap.get_cf(self.cf(CF_SM_META), KEY_APPLIED).map_err(Error::rocks("digest applied"))?;
        let mut h = Fnv::new();
        for cf in [CF_SM_DATA, CF_BLOBS] {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snap);
            for item in self.db.iterator_cf_opt(self.cf(cf), ro, IteratorMode::Start) {
                let (k, v) = item.map_err(Error::rocks("digest scan"))?;
                digest_record(&mut h, &k, &v);
            }
        }
        Ok((applied, h.0))
    }
}

fn digest_record(h: &mut Fnv, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u32).to_be_bytes());
    h.update(k);
    h.update(&(v.len() as u32).to_be_bytes());
    h.update(v);
}

impl Store {
    /// Loads the state of a backup file into this store, which must be new
    /// (no log, no state): the state as it was, but not the applied log id
    /// nor the membership of the cluster it came from, so the node that
    /// opens this store next starts a new cluster over that state. Checks
    /// the state's digest after the load against the one the file names.
    pub fn restore_backup(&self, path: &Path) -> Result<BackupInfo> {
        let about = read_backup(path)?;
        if self.get(CF_SM_META, KEY_APPLIED)?.is_some() || self.get(CF_SM_META, KEY_MEMBERSHIP)?.is_some() {
            return Err(Error::corrupt("restore", "the store already holds a cluster's state"));
        }
        self.install_snapshot(path)?;
        let mut forget = WriteBatch::default();
        for key in [KEY_APPLIED, KEY_MEMBERSHIP] {
            forget.delete_cf(self.cf(CF_SM_META), key);
        }
        self.write(forget, true)?;
        let digest = self.state_digest()?;
        if digest != about.digest {
            return Err(Error::corrupt(
                "restore",
                format!("state digest after the load {digest:016x} differs from the backup's {:016x}", about.digest),
            ));
        }
        Ok(about)
    }
}

/// Reads and checks a backup file whole (the snapshot checksum, then the
/// digest its info record names against the records before it) and
/// returns that info.
pub fn read_backup(path: &Path) -> Result<BackupInfo> {
    let mut digest = Fnv::new();
    let mut about: Option<BackupInfo> = None;
    let (mut records, mut applied) = (0u64, None);
    scan_snapshot(path, true, |(tag, k, v)| {
        if about.is_some() {
            return Err(Error::corrupt("backup", "records after the backup info"));
        }
        match tag {
            TAG_META if k == KEY_BACKUP_INFO => {
                about = Some(
                    serde_json::from_slice(&v).map_err(|e| Error::corrupt("backup", format!("backup info: {e}")))?,
                );
                return Ok(());
            }
            TAG_META if k == KEY_APPLIED => applied = Some(v),
            TAG_META => {}
            _ => digest_record(&mut digest, &k, &v),
        }
        records += 1;
        Ok(())
    })?;
    let mut about = about.ok_or_else(|| Error::corrupt("backup", "no backup info: a snapshot, not a backup"))?;
    if about.digest != digest.0 || about.records != records {
        return Err(Error::corrupt(
            "backup",
            format!(
                "the file names digest {:016x} over {} records; its records give {:016x} over {records}",
                about.digest, about.records, digest.0
            ),
        ));
    }
    about.applied = applied;
    about.bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(about)
}

/// One snapshot record: column-family tag, key, value.
type Record = (u8, Vec<u8>, Vec<u8>);

/// How far [`Store::install_until`] goes: all the way, or (to test the
/// restart) up to the old state deleted.
#[derive(Debug, Clone, Copy)]
enum InstallStep {
    #[cfg(test)]
    Cleared,
    Done,
    /// All the way, calling this between the clear and the ingest.
    #[cfg(test)]
    PauseAfterClear(fn(&Store)),
}

/// Checks a snapshot file whole (magic, format, every record, checksum)
/// without keeping its records, and returns how many it holds: what a node
/// runs on a received snapshot before installing it, and on its own before
/// sending it. A file that fails here would fail [`Store::install_snapshot`].
pub fn verify_snapshot(path: &Path) -> Result<u64> {
    let mut records = 0;
    scan_snapshot(path, false, |_| {
        records += 1;
        Ok(())
    })?;
    Ok(records)
}

/// Reads a snapshot file record by record into `visit`, verifying it; an
/// error may come after some records were visited. Without `keep`, records
/// are hashed as they stream by and `visit` gets them empty, so a damaged
/// length costs no memory.
fn scan_snapshot(path: &Path, keep: bool, mut visit: impl FnMut(Record) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(Error::io("open snapshot", path))?;
    let len = file.metadata().map_err(Error::io("stat snapshot", path))?.len();
    let mut r = BufReader::new(file);
    let mut hash = Fnv::new();
    let read_exact = |r: &mut BufReader<File>, buf: &mut [u8], hash: &mut Fnv| -> Result<()> {
        r.read_exact(buf).map_err(|e| Error::corrupt("snapshot", format!("{}: {e}", path.display())))?;
        hash.update(buf);
        Ok(())
    };
    let mut magic = [0u8; 8];
    read_exact(&mut r, &mut magic, &mut hash)?;
    if &magic != MAGIC {
        return Err(Error::corrupt("snapshot", "bad magic"));
    }
    let mut u32b = [0u8; 4];
    read_exact(&mut r, &mut u32b, &mut hash)?;
    let format = u32::from_be_bytes(u32b);
    if format != SNAPSHOT_FORMAT {
        return Err(Error::corrupt("snapshot", format!("format {format} not understood")));
    }
    loop {
        let mut tag = [0u8; 1];
        read_exact(&mut r, &mut tag, &mut hash)?;
        match tag[0] {
            TAG_END => break,
            TAG_DATA | TAG_META | TAG_BLOB => {}
            t => return Err(Error::corrupt("snapshot", format!("bad record tag {t}"))),
        }
        let field = |r: &mut BufReader<File>, hash: &mut Fnv| -> Result<Vec<u8>> {
            let mut lb = [0u8; 4];
            read_exact(r, &mut lb, hash)?;
            let n = u64::from(u32::from_be_bytes(lb));
            if n > len {
                return Err(Error::corrupt("snapshot", "record longer than the file"));
            }
            if keep {
                let mut v = vec![0u8; n as usize];
                read_exact(r, &mut v, hash)?;
                return Ok(v);
            }
            let mut buf = [0u8; 8192];
            let mut left = n as usize;
            while left > 0 {
                let step = left.min(buf.len());
                read_exact(r, &mut buf[..step], hash)?;
                left -= step;
            }
            Ok(Vec::new())
        };
        let k = field(&mut r, &mut hash)?;
        let v = field(&mut r, &mut hash)?;
        visit((tag[0], k, v))?;
    }
    let mut digest = [0u8; 8];
    r.read_exact(&mut digest).map_err(|e| Error::corrupt("snapshot", format!("missing checksum: {e}")))?;
    if u64::from_be_bytes(digest) != hash.0 {
        return Err(Error::corrupt("snapshot", "checksum mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    /// A field of /proc/self/status, in KiB.
    fn status_kib(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let line = status.lines().find(|l| l.starts_with(field)).expect("the field");
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
    }

    /// Resets this process's peak RSS (VmHWM) to its current RSS.
    fn reset_peak() {
        std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    }

    fn open(dir: &Path) -> Store {
        Store::open(dir, &StoreOptions { fsync: false, ..Default::default() }).expect("open a store")
    }

    /// `mib` MiB of incompressible values (a quarter as blobs), 64 small
    /// records beside each, and an applied marker.
    fn fill(store: &Store, mib: usize, prefix: &str) {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ prefix.len() as u64;
        let mut value = vec![0u8; 1 << 20];
        for i in 0..mib {
            for chunk in value.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            let mut b = WriteBatch::default();
            let cf = if i % 4 == 0 { CF_BLOBS } else { CF_SM_DATA };
            b.put_cf(store.cf(cf), format!("x/{prefix}/big/{i:06}"), &value);
            for j in 0..64 {
                b.put_cf(store.cf(CF_SM_DATA), format!("x/{prefix}/small/{i:06}/{j:02}"), x.to_le_bytes());
            }
            store.write(b, false).expect("fill");
        }
        store.put(CF_SM_META, KEY_APPLIED, format!("applied-{prefix}").as_bytes(), false).expect("applied");
    }

    /// Issue 13, defect 5: an install read the whole snapshot into memory
    /// and wrote it as one WriteBatch, so a node could not take a snapshot
    /// larger than its memory. A 1 GiB snapshot must install with the
    /// process's peak RSS a small fraction of that.
    #[test]
    fn a_one_gib_snapshot_installs_in_bounded_memory() {
        const MIB: usize = 1024;
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("big.snap");
        let digest = {
            let source = open(&tmp.path().join("source"));
            fill(&source, MIB, "big");
            let info = source.build_snapshot(&file).expect("build");
            assert!(info.bytes >= (MIB as u64) << 20, "the snapshot is {} bytes", info.bytes);
            source.state_digest().expect("digest")
        };
        let target = open(&tmp.path().join("target"));
        fill(&target, 4, "old");

        reset_peak();
        let before = status_kib("VmRSS:");
        let info = target.install_snapshot(&file).expect("install");
        let grew_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
        assert_eq!(target.state_digest().expect("digest"), digest, "the installed state is the snapshot's");
        assert_eq!(info.applied.as_deref(), Some(&b"applied-big"[..]));
        assert_eq!(target.interrupted_install().expect("marker"), None);
        assert!(grew_mib < 160, "installing {} MiB raised the peak RSS by {grew_mib} MiB", info.bytes >> 20);

        // Control: holding the snapshot in memory, as the install did, is
        // seen by this measure.
        reset_peak();
        let before = status_kib("VmRSS:");
        let whole = std::fs::read(&file).expect("read");
        let held_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
        assert!(held_mib >= (whole.len() >> 20) as u64 - 16, "reading it whole showed only {held_mib} MiB");
        eprintln!(
            "install of {} MiB: RSS {} MiB before, peak +{grew_mib} MiB (reading it whole: +{held_mib} MiB)",
            info.bytes >> 20,
            before / 1024
        );
    }

    /// A node that dies in the middle of an install (its old state already
    /// deleted) finds the marker at its next start and installs the same
    /// file again.
    #[test]
    fn an_interrupted_install_is_found_and_completed_after_a_restart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("s.snap");
        let digest = {
            let source = open(&tmp.path().join("source"));
            fill(&source, 3, "new");
            source.build_snapshot(&file).expect("build");
            source.state_digest().expect("digest")
        };
        let dir = tmp.path().join("target");
        {
            let target = open(&dir);
            fill(&target, 2, "old");
            assert_eq!(target.interrupted_install().expect("marker"), None, "control: no marker before");
            target.install_until(&file, InstallStep::Cleared).expect("the first part of the install");
        }
        let target = open(&dir);
        assert_eq!(target.interrupted_install().expect("marker"), Some(file.clone()));
        assert_ne!(target.state_digest().expect("digest"), digest, "half installed");
        target.install_snapshot(&file).expect("the install again");
        assert_eq!(target.state_digest().expect("digest"), digest);
        assert_eq!(target.interrupted_install().expect("marker"), None);
        assert_eq!(target.get(CF_SM_DATA, b"x/old/small/000000/00").expect("get"), None, "the old state is gone");
    }

    /// No read sees the state between the clear and the ingest of an
    /// install: a read of a key held before and after waits for the swap
    /// and finds it. Control: a read past the gate in that window finds
    /// nothing, so the window is real.
    #[test]
    fn a_read_during_an_install_waits_for_the_new_state() {
        let dir = tempfile::tempdir().unwrap();
        let src = open(&dir.path().join("src"));
        src.put(CF_SM_DATA, b"k", b"new", false).unwrap();
        let file = dir.path().join("snap");
        src.build_snapshot(&file).unwrap();
        let target = open(&dir.path().join("target"));
        target.put(CF_SM_DATA, b"k", b"old", false).unwrap();

        type Seen = Vec<(&'static str, Option<Vec<u8>>)>;
        static SEEN: std::sync::Mutex<Seen> = std::sync::Mutex::new(Vec::new());
        fn pause(store: &Store) {
            let raw = store.db.get_cf(store.cf(CF_SM_DATA), b"k").unwrap();
            SEEN.lock().unwrap().push(("past the gate", raw));
            let reader = store.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(reader.get(CF_SM_DATA, b"k").unwrap()).unwrap());
            // The reader must still be waiting when the install goes on.
            match rx.recv_timeout(std::time::Duration::from_millis(300)) {
                Ok(v) => SEEN.lock().unwrap().push(("answered during the swap", v)),
                Err(_) => {
                    std::thread::spawn(move || {
                        let after = rx.recv().unwrap();
                        SEEN.lock().unwrap().push(("the reader", after));
                    });
                }
            }
        }
        target.install_until(&file, InstallStep::PauseAfterClear(pause)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while SEEN.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let seen = SEEN.lock().unwrap().clone();
        assert_eq!(seen, [("past the gate", None), ("the reader", Some(b"new".to_vec()))]);
    }
}
