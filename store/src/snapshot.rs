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
//! Installing reads and verifies the whole file first, then replaces both
//! state-machine column families in one WriteBatch: a crash leaves either
//! the old state or the new one.

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

/// Meta keys that belong to this node, not to the replicated state.
fn is_local_meta(key: &[u8]) -> bool {
    key == KEY_SNAPSHOT_META || key == KEY_FORMAT_VERSION
}

impl Store {
    /// Writes a snapshot of the state machine to `path` (fsynced) and
    /// returns what it covers.
    pub fn build_snapshot(&self, path: &Path) -> Result<SnapshotInfo> {
        let snap = self.db.snapshot();
        let mut info = SnapshotInfo::default();
        let file = File::create(path).map_err(Error::io("create snapshot", path))?;
        let mut w = HashWriter { inner: BufWriter::new(file), hash: Fnv::new(), bytes: 0 };
        let io = |e| Error::io("write snapshot", path)(e);
        w.write_all(MAGIC).map_err(io)?;
        w.write_all(&SNAPSHOT_FORMAT.to_be_bytes()).map_err(io)?;
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
                }
                w.write_all(&[tag]).map_err(io)?;
                w.write_all(&(k.len() as u32).to_be_bytes()).map_err(io)?;
                w.write_all(&k).map_err(io)?;
                w.write_all(&(v.len() as u32).to_be_bytes()).map_err(io)?;
                w.write_all(&v).map_err(io)?;
                info.records += 1;
            }
        }
        w.write_all(&[TAG_END]).map_err(io)?;
        let digest = w.hash.0;
        let mut inner = w.inner.into_inner().map_err(|e| Error::io("flush snapshot", path)(e.into_error()))?;
        inner.write_all(&digest.to_be_bytes()).map_err(io)?;
        inner.sync_all().map_err(io)?;
        info.bytes = w.bytes + 8;
        Ok(info)
    }

    /// Replaces the state machine with the snapshot in `path`, atomically.
    pub fn install_snapshot(&self, path: &Path) -> Result<SnapshotInfo> {
        let records = read_snapshot(path)?;
        let mut info = SnapshotInfo::default();
        let mut b = WriteBatch::default();
        let data = self.cf(CF_SM_DATA);
        let meta = self.cf(CF_SM_META);
        let blobs = self.cf(CF_BLOBS);
        b.delete_range_cf(data, &b""[..], KEY_UPPER_BOUND);
        b.delete_range_cf(blobs, &b""[..], KEY_UPPER_BOUND);
        for key in [KEY_APPLIED, KEY_MEMBERSHIP] {
            b.delete_cf(meta, key);
        }
        for (tag, k, v) in records {
            if tag == TAG_META {
                if is_local_meta(&k) {
                    continue;
                }
                if k == KEY_APPLIED {
                    info.applied = Some(v.clone());
                } else if k == KEY_MEMBERSHIP {
                    info.membership = Some(v.clone());
                }
                b.put_cf(meta, &k, &v);
            } else if tag == TAG_BLOB {
                b.put_cf(blobs, &k, &v);
            } else {
                b.put_cf(data, &k, &v);
            }
            info.records += 1;
        }
        info.bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.write(b, true)?;
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
        let snap = self.db.snapshot();
        let applied = snap.get_cf(self.cf(CF_SM_META), KEY_APPLIED).map_err(Error::rocks("digest applied"))?;
        let mut h = Fnv::new();
        for cf in [CF_SM_DATA, CF_BLOBS] {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snap);
            for item in self.db.iterator_cf_opt(self.cf(cf), ro, IteratorMode::Start) {
                let (k, v) = item.map_err(Error::rocks("digest scan"))?;
                h.update(&(k.len() as u32).to_be_bytes());
                h.update(&k);
                h.update(&(v.len() as u32).to_be_bytes());
                h.update(&v);
            }
        }
        Ok((applied, h.0))
    }
}

/// One snapshot record: column-family tag, key, value.
type Record = (u8, Vec<u8>, Vec<u8>);

/// Checks a snapshot file whole (magic, format, every record, checksum)
/// without keeping its records, and returns how many it holds: what a node
/// runs on a received snapshot before installing it, and on its own before
/// sending it. A file that fails here would fail [`Store::install_snapshot`].
pub fn verify_snapshot(path: &Path) -> Result<u64> {
    let mut records = 0;
    scan_snapshot(path, |_| records += 1)?;
    Ok(records)
}

/// Reads and verifies a snapshot file: magic, format, records, checksum.
fn read_snapshot(path: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    scan_snapshot(path, |r| out.push(r))?;
    Ok(out)
}

/// Reads a snapshot file record by record into `visit`, verifying it;
/// an error may come after some records were visited.
fn scan_snapshot(path: &Path, mut visit: impl FnMut(Record)) -> Result<()> {
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
            let mut v = vec![0u8; n as usize];
            read_exact(r, &mut v, hash)?;
            Ok(v)
        };
        let k = field(&mut r, &mut hash)?;
        let v = field(&mut r, &mut hash)?;
        visit((tag[0], k, v));
    }
    let mut digest = [0u8; 8];
    r.read_exact(&mut digest).map_err(|e| Error::corrupt("snapshot", format!("missing checksum: {e}")))?;
    if u64::from_be_bytes(digest) != hash.0 {
        return Err(Error::corrupt("snapshot", "checksum mismatch"));
    }
    Ok(())
}
