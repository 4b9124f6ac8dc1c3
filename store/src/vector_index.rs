//! The per-node vector search index: derived state, like the task index
//! mirror. Built from the replicated points at open, updated after each
//! applied batch is written, rebuilt after a snapshot install. apply()
//! never reads it, and two nodes may hold different graphs for the same
//! points (HNSW insertion runs in parallel); they hold the same points.
//!
//! ```text
//!   apply() ──► growing segment ──(builder thread)──► indexed segments
//!               exact scan          insert in batches   HNSW (hnsw.rs), one open
//!               key -> vector                           for appends, closed at
//!                                                       vector_db.segment_size
//! ```
//!
//! - A point first lands in the growing segment, which every search scans
//!   exactly. A background thread moves the growing points into the open
//!   indexed segment in batches; a point is in exactly one place at a time
//!   for any one epoch (each applied batch is an epoch; a search reads as of
//!   the epoch it started at, without holding the lock while it runs).
//! - Deletes and replaced versions are tombstones in their segment, excluded
//!   during graph traversal. A segment whose tombstones pass
//!   `vector_db.compaction_tombstone_ratio` is rebuilt from its live points.
//! - Every metric becomes a squared Euclidean distance on prepared vectors:
//!   cosine on unit vectors; dot product as maximum inner product through
//!   one extra component, `sqrt(B² - |x|²)` with `B` a norm bound per
//!   segment (queries get 0 there). Scores are recomputed from the vectors,
//!   so they equal what [`crate::vector_search::score`] gives.
//! - Filters run inside the traversal (`crate::hnsw`), so a selective
//!   filter still finds its matches; when the graph yields fewer than `k`
//!   matches, the segment is scanned exactly instead.
//! - With `"quantization": "int8"` the graphs hold int8 codes (a quarter of
//!   the f32 vector's bytes; see `crate::hnsw`) and order candidates by
//!   approximate distances; a segment takes [`RESCORE_FACTOR`] × k of them
//!   (within ef) and rescores them with the f32 vectors stored in RocksDB
//!   ([`Originals`]), so the scores returned are exact.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;

use crate::hnsw::{Distance, Encoding, Graph, dot};
use crate::pb::{CollectionRecord, Metric, Point, Quantization};
use crate::vector_search::{Filter, score};
use crate::vectors::{decode_vector, point_id_key};

/// Most points moved from the growing segment into a graph in one step.
const FLUSH_BATCH: usize = 4096;
/// Threads that plan graph inserts (the machine this was tuned on has 2).
const BUILD_THREADS: usize = 2;
/// Below this many points a batch is inserted on the builder thread alone.
const PARALLEL_INSERT_MIN: usize = 512;
/// Segments smaller than this are rebuilt at open rather than written out.
const PERSIST_MIN: usize = 1000;
/// A written segment is written again once it has grown by this factor.
const PERSIST_GROWTH: f64 = 1.1;
/// Headroom over the largest norm of a dot-product segment's first batch.
const DOT_BOUND_SLACK: f32 = 1.25;
/// Candidates an int8 segment rescores per hit asked for (never more than
/// the search's ef): each costs a RocksDB read.
const RESCORE_FACTOR: usize = 4;

/// Reads the stored f32 vectors of points of a collection (tenant, uid, key
/// forms), in order: `None` for a point no longer stored. An int8 segment's
/// candidates are rescored with them.
pub type Originals = Arc<dyn Fn(&str, u64, &[&str]) -> Vec<Option<Vec<f32>>> + Send + Sync>;

/// How the index is cut into segments and when they are compacted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexOptions {
    /// Points per indexed segment before it is closed to appends.
    pub segment_size: usize,
    /// Share of tombstones that triggers a segment's rebuild.
    pub compaction_tombstone_ratio: f64,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions { segment_size: 1_000_000, compaction_tombstone_ratio: 0.2 }
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = dot(v, v).sqrt();
    if n == 0.0 { v.to_vec() } else { v.iter().map(|x| x / n).collect() }
}

/// A stored vector as its segment's graph holds it: unit length for
/// cosine, as given otherwise.
fn prepare_stored(metric: Metric, v: &[f32]) -> Vec<f32> {
    match metric {
        Metric::Cosine => unit(v),
        _ => v.to_vec(),
    }
}

/// A query as one segment compares it: unit length for cosine; for the
/// dot product scaled to the segment's bound (the order is unchanged).
fn prepare_query(metric: Metric, q: &[f32], bound: f32) -> Vec<f32> {
    match metric {
        Metric::Cosine => unit(q),
        Metric::Dot | Metric::Unspecified => unit(q).into_iter().map(|x| x * bound).collect(),
        Metric::L2 => q.to_vec(),
    }
}

/// One search of one collection.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub vector: &'a [f32],
    pub k: usize,
    /// Candidate list size in the graph (raised to `k` when smaller).
    pub ef: usize,
    pub filter: Option<&'a Filter>,
}

/// A search result: the point's key-form id, its score and metadata.
#[derive(Debug, Clone)]
pub struct IndexHit {
    pub key: Arc<str>,
    pub score: f32,
    pub metadata: Arc<Value>,
}

/// Point counts and memory of the whole index, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IndexStats {
    pub collections: usize,
    /// Live points (indexed or growing).
    pub points: usize,
    /// Points waiting in growing segments.
    pub growing: usize,
    pub segments: usize,
    /// Deleted points still in a graph.
    pub tombstones: usize,
    /// Estimated bytes held by the index (graphs, vectors, ids, metadata).
    pub bytes: u64,
}

/// `deleted` while the point's version is live.
const LIVE: u64 = u64::MAX;

/// One version of a point in a segment. Every batch apply() hands the index
/// is one epoch; a search reads the index as of the epoch it started at, so
/// it sees a batch whole or not at all (issue 13, defect 6).
struct Entry {
    key: Arc<str>,
    metadata: Arc<Value>,
    /// The epoch of the batch that wrote this version.
    added: u64,
    /// The epoch of the batch that deleted or replaced it; [`LIVE`] until
    /// then.
    deleted: AtomicU64,
}

impl Entry {
    fn new(key: Arc<str>, metadata: Arc<Value>, added: u64, live: bool) -> Entry {
        // Not live from the start: replaced before it reached this segment,
        // and every search that could see it saw it where it was before.
        Entry { key, metadata, added, deleted: AtomicU64::new(if live { LIVE } else { added }) }
    }

    fn live(&self) -> bool {
        self.deleted.load(Relaxed) == LIVE
    }

    /// Whether a search taken at `epoch` sees this version.
    fn visible(&self, epoch: u64) -> bool {
        self.added <= epoch && epoch < self.deleted.load(Relaxed)
    }

    /// Marks it deleted at `epoch`; false if it already was.
    fn bury(&self, epoch: u64) -> bool {
        self.deleted.compare_exchange(LIVE, epoch, Relaxed, Relaxed).is_ok()
    }
}

/// A segment's entries by offset, in chunks appended whole (one per move
/// into its graph): a search clones the list of chunks under a short lock
/// and reads them with none, while later chunks are appended.
#[derive(Clone, Default)]
struct Entries {
    chunks: Vec<Arc<[Entry]>>,
    /// The offset of each chunk's first entry.
    starts: Vec<usize>,
    len: usize,
    /// The newest `added` of any entry.
    newest: u64,
    /// Bytes the entries hold (keys, metadata, the entries themselves),
    /// counted as chunks are appended, so stats need not walk them.
    bytes: u64,
}

impl Entries {
    fn get(&self, offset: usize) -> Option<&Entry> {
        if offset >= self.len {
            return None;
        }
        let c = self.starts.partition_point(|s| *s <= offset).checked_sub(1)?;
        self.chunks[c].get(offset - self.starts[c])
    }

    fn push_chunk(&mut self, chunk: Vec<Entry>) {
        if chunk.is_empty() {
            return;
        }
        self.newest = chunk.iter().map(|e| e.added).fold(self.newest, u64::max);
        self.bytes += chunk.iter().map(|e| 56 + e.key.len() as u64 + json_bytes(&e.metadata)).sum::<u64>();
        self.starts.push(self.len);
        self.len += chunk.len();
        self.chunks.push(chunk.into());
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

/// An HNSW graph over an append-only set of points. Node ids in the graph
/// are offsets into `entries`.
struct Segment {
    id: u32,
    graph: Graph,
    /// By offset. A point is in the graph before it is here: offsets past
    /// `entries.len` are still being moved and are skipped by searches.
    entries: RwLock<Entries>,
    tombstones: AtomicUsize,
    /// The dot-product norm bound (1 for other metrics).
    bound: f32,
    closed: AtomicBool,
    /// Graph size when last written to its file (0: never).
    written: AtomicUsize,
}

impl Segment {
    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).len
    }

    /// The entries as they are now (reference counts only).
    fn entries(&self) -> Entries {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every point of the graph by offset, with its prepared vector.
    fn vectors(&self) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(self.graph.len());
        self.graph.for_each(|_, v| out.push(v.to_vec()));
        out
    }

    /// This segment's best points for the query as of `epoch`. Holds no
    /// lock of the collection's (the graph's own read lock, which only the
    /// builder waits on).
    fn search(&self, c: &CollectionIndex, query: &Query<'_>, epoch: u64) -> Vec<IndexHit> {
        let q = &prepare_query(c.metric, query.vector, self.bound)[..];
        let entries = self.entries();
        let n = entries.len;
        if n == 0 {
            return Vec::new();
        }
        let tombstones = self.tombstones.load(Relaxed);
        let live = n.saturating_sub(tombstones);
        let accept = |id: u32| {
            entries
                .get(id as usize)
                .is_some_and(|e| e.visible(epoch) && query.filter.is_none_or(|f| f.matches(&e.metadata)))
        };
        let ef = query.ef.max(query.k);
        // An int8 graph's order is approximate: more candidates, rescored.
        let int8 = self.graph.encoding() == Encoding::Int8;
        let pool = if int8 { ef.min(query.k * RESCORE_FACTOR).max(query.k) } else { query.k };
        let exhaustive = query.filter.is_some() || tombstones > 0 || self.graph.len() > n || entries.newest > epoch;
        let found = self.graph.search(q, pool, ef, if exhaustive { Some(&accept) } else { None });
        // The score of the graph's vector: exact for f32 (cosine on unit
        // vectors is the same cosine), approximate for int8.
        let hit = |id: u32, v: &[f32]| {
            let e = entries.get(id as usize).filter(|_| accept(id))?;
            Some(IndexHit { key: e.key.clone(), score: score(c.metric, query.vector, v), metadata: e.metadata.clone() })
        };
        let mut hits: Vec<IndexHit> = found.iter().filter_map(|(id, _, v)| hit(*id, v)).collect();
        if exhaustive && hits.len() < query.k.min(live) {
            // The graph ran out of matches before k: the filter is selective
            // (or the matches sit where the graph does not lead). Scan.
            let mut all = Vec::new();
            self.graph.for_each(|id, v| all.extend(hit(id, v)));
            hits = best(all, pool);
        }
        if int8 {
            hits = best(c.rescore(hits, query.vector), query.k);
        }
        hits
    }

    /// Bytes held: the graph, and per point its key, metadata and entry.
    fn bytes(&self) -> u64 {
        self.graph.bytes() + self.entries.read().unwrap_or_else(PoisonError::into_inner).bytes
    }
}

fn json_bytes(v: &Value) -> u64 {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len() as u64,
        Value::Array(a) => a.iter().map(|x| 32 + json_bytes(x)).sum(),
        Value::Object(o) => o.iter().map(|(k, x)| 64 + k.len() as u64 + json_bytes(x)).sum(),
    }
}

/// The `k` best hits, best first; ties by key, duplicates (a point seen in
/// two places while it moves) kept once.
fn best(mut hits: Vec<IndexHit>, k: usize) -> Vec<IndexHit> {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
    let mut seen = std::collections::HashSet::new();
    hits.retain(|h| seen.insert(h.key.clone()));
    hits.truncate(k);
    hits
}

/// A point on its way into a graph: from the growing segment (`from` is
/// its sequence number there) or from a segment being compacted (`from` is
/// its offset there).
struct Moving {
    key: Arc<str>,
    from: u64,
    vector: Arc<[f32]>,
    metadata: Arc<Value>,
    added: u64,
}

struct Pending {
    seq: u64,
    vector: Arc<[f32]>,
    metadata: Arc<Value>,
    /// The epoch of the batch that wrote it.
    added: u64,
}

/// One point a batch wrote (its vector and metadata) or deleted (`None`).
type Change = (Arc<str>, Option<(Vec<f32>, Value)>);

#[derive(Default)]
struct State {
    /// Points not yet in a graph, searched exactly.
    growing: HashMap<Arc<str>, Pending>,
    /// [`growing_bytes`] summed over `growing`, kept as points come and go
    /// so that stats (in every upsert's answer) do not walk the set.
    growing_bytes: u64,
    /// Where each indexed point lives: (segment id, offset).
    indexed: HashMap<Arc<str>, (u32, u32)>,
    segments: Vec<Arc<Segment>>,
    next_seq: u64,
    next_segment: u32,
    /// The last batch applied (see [`Entry`]).
    epoch: u64,
}

/// What a growing point costs beside its vector (the map entry, the key,
/// the metadata).
fn growing_bytes(key: &str, p: &Pending) -> u64 {
    104 + key.len() as u64 + json_bytes(&p.metadata)
}

impl State {
    fn put_growing(&mut self, key: Arc<str>, p: Pending) {
        self.growing_bytes += growing_bytes(&key, &p);
        if let Some(old) = self.growing.insert(key.clone(), p) {
            self.growing_bytes -= growing_bytes(&key, &old);
        }
    }

    fn take_growing(&mut self, key: &str) {
        if let Some(old) = self.growing.remove(key) {
            self.growing_bytes -= growing_bytes(key, &old);
        }
    }

    fn segment(&self, id: u32) -> Option<&Arc<Segment>> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Tombstones the indexed copy of `key`, if there is one, at `epoch`.
    fn bury(&mut self, key: &str, epoch: u64) {
        if let Some((seg, off)) = self.indexed.remove(key)
            && let Some(s) = self.segment(seg)
            && s.entries.read().unwrap_or_else(PoisonError::into_inner).get(off as usize).is_some_and(|e| e.bury(epoch))
        {
            s.tombstones.fetch_add(1, Relaxed);
        }
    }
}

/// The index of one collection.
pub struct CollectionIndex {
    pub uid: u64,
    pub tenant: String,
    pub name: String,
    pub dimension: usize,
    pub metric: Metric,
    m: usize,
    ef_construction: usize,
    pub default_ef: usize,
    /// `"index": "flat"`: every point stays in the growing set and every
    /// search is exact; no graph, no segment files.
    pub flat: bool,
    /// How the graphs hold vectors (`"quantization"`).
    pub encoding: Encoding,
    /// Where int8 candidates find their exact vectors.
    originals: Option<Originals>,
    options: IndexOptions,
    state: RwLock<State>,
    /// One builder step (flush, compaction or write-out) at a time.
    building: Mutex<()>,
    /// Where this node keeps its segment files.
    files: Option<PathBuf>,
    /// Called by a search once it has taken its view, before it reads it.
    #[cfg(test)]
    after_view: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

impl CollectionIndex {
    fn new(
        c: &CollectionRecord,
        options: IndexOptions,
        files: Option<PathBuf>,
        originals: Option<Originals>,
    ) -> CollectionIndex {
        let h = c.hnsw.unwrap_or_default();
        let encoding = match Quantization::try_from(h.quantization) {
            Ok(Quantization::Int8) => Encoding::Int8,
            _ => Encoding::F32,
        };
        CollectionIndex {
            uid: c.uid,
            tenant: c.tenant.clone(),
            name: c.name.clone(),
            dimension: c.dimension as usize,
            metric: Metric::try_from(c.metric).unwrap_or(Metric::Cosine),
            m: (h.m as usize).clamp(2, 128),
            ef_construction: (h.ef_construction as usize).max(1),
            default_ef: (h.ef as usize).max(1),
            flat: c.index == crate::pb::IndexKind::Flat as i32,
            encoding,
            originals,
            options,
            state: RwLock::new(State::default()),
            building: Mutex::new(()),
            files,
            #[cfg(test)]
            after_view: Mutex::new(None),
        }
    }

    /// Writes each segment that holds at least [`PERSIST_MIN`] points and
    /// grew by [`PERSIST_GROWTH`] since it was last written. Returns how
    /// many it wrote.
    fn persist(&self) -> std::io::Result<usize> {
        let Some(dir) = &self.files else { return Ok(0) };
        let _one = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        let segments = self.state.read().unwrap_or_else(PoisonError::into_inner).segments.clone();
        let mut wrote = 0;
        for s in segments {
            let n = s.graph.len();
            if n < PERSIST_MIN || (n as f64) < s.written.load(Relaxed) as f64 * PERSIST_GROWTH {
                continue;
            }
            let keys: Vec<Arc<str>> = s.entries().iter().map(|e| e.key.clone()).collect();
            if keys.len() != n {
                continue;
            }
            write_segment(dir, self.uid, &s, &keys)?;
            s.written.store(n, Relaxed);
            wrote += 1;
        }
        Ok(wrote)
    }

    /// This collection's index from its stored points, reusing the graphs
    /// of its segment files: a point whose key and vector a file holds is
    /// taken from there, every other point goes to the growing segment, and
    /// a file entry no stored point claims is a tombstone.
    fn load(
        c: &CollectionRecord,
        options: IndexOptions,
        files: Option<PathBuf>,
        originals: Option<Originals>,
        points: Vec<Point>,
    ) -> Self {
        let idx = CollectionIndex::new(c, options, files, originals);
        let mut loaded =
            idx.files.as_deref().filter(|_| !idx.flat).map(|d| read_segments(d, idx.uid)).unwrap_or_default();
        loaded.retain(|l| {
            let ip = matches!(l.graph.distance(), Distance::InnerProduct { .. });
            l.graph.dim() == idx.dimension && ip == (idx.metric == Metric::Dot) && l.graph.encoding() == idx.encoding
        });
        let mut owner: HashMap<Arc<str>, (usize, u32)> = HashMap::new();
        for (li, l) in loaded.iter().enumerate() {
            for (off, k) in l.keys.iter().enumerate() {
                owner.insert(k.clone(), (li, off as u32));
            }
        }
        let mut metadata: Vec<Vec<Option<Arc<Value>>>> = loaded.iter().map(|l| vec![None; l.keys.len()]).collect();
        let mut rest = Vec::new();
        for p in points {
            let Some((key, vector, meta)) = point_parts(&idx, &p) else { continue };
            if let Some(&(li, off)) = owner.get(key.as_ref())
                && metadata[li][off as usize].is_none()
                && loaded[li].graph.same_vector(off, &prepare_stored(idx.metric, &vector))
            {
                metadata[li][off as usize] = Some(shared(meta));
                continue;
            }
            rest.push((key, Some((vector, meta))));
        }
        idx.apply(rest);
        {
            let mut st = idx.state.write().unwrap_or_else(PoisonError::into_inner);
            for (l, metas) in loaded.into_iter().zip(metadata) {
                let mut tombstones = 0;
                let mut chunk = Vec::with_capacity(l.keys.len());
                for (off, (key, meta)) in l.keys.into_iter().zip(metas).enumerate() {
                    match meta {
                        Some(m) => {
                            st.indexed.insert(key.clone(), (l.id, off as u32));
                            chunk.push(Entry::new(key, m, 0, true));
                        }
                        None => {
                            tombstones += 1;
                            chunk.push(Entry::new(key, Arc::new(Value::Null), 0, false));
                        }
                    }
                }
                let n = chunk.len();
                let mut entries = Entries::default();
                entries.push_chunk(chunk);
                let bound = match l.graph.distance() {
                    Distance::InnerProduct { bound } => bound,
                    Distance::SquaredL2 => 1.0,
                };
                st.next_segment = st.next_segment.max(l.id);
                st.segments.push(Arc::new(Segment {
                    id: l.id,
                    graph: l.graph,
                    entries: RwLock::new(entries),
                    tombstones: AtomicUsize::new(tombstones),
                    bound,
                    closed: AtomicBool::new(l.closed),
                    written: AtomicUsize::new(n),
                }));
            }
        }
        idx
    }

    /// Applies what one batch wrote to this collection, under one write
    /// lock and as one epoch: a search sees all of it or none of it.
    fn apply(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        st.epoch += 1;
        let epoch = st.epoch;
        for (key, point) in changes {
            st.bury(&key, epoch);
            match point {
                Some((vector, metadata)) => {
                    st.next_seq += 1;
                    let pending =
                        Pending { seq: st.next_seq, vector: vector.into(), metadata: shared(metadata), added: epoch };
                    st.put_growing(key, pending);
                }
                None => {
                    st.take_growing(&key);
                }
            }
        }
    }

    /// The `k` best points for the query, best first, as of the last batch
    /// applied when it started. The collection's lock is held only to take
    /// that view (the epoch, reference counts of the growing points and
    /// the segment list), so a long search never holds up apply() (issue
    /// 13, defect 6).
    pub fn search(&self, query: &Query<'_>) -> Vec<IndexHit> {
        type Growing = (Arc<str>, Arc<[f32]>, Arc<Value>);
        let (epoch, growing, segments): (u64, Vec<Growing>, Vec<Arc<Segment>>) = {
            let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
            let growing = st.growing.iter().map(|(k, p)| (k.clone(), p.vector.clone(), p.metadata.clone())).collect();
            (st.epoch, growing, st.segments.clone())
        };
        #[cfg(test)]
        if let Some(f) = self.after_view.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            f();
        }
        let hits: Vec<IndexHit> = growing
            .into_iter()
            .filter(|(_, _, metadata)| query.filter.is_none_or(|f| f.matches(metadata)))
            .map(|(key, vector, metadata)| IndexHit { key, score: score(self.metric, query.vector, &vector), metadata })
            .collect();
        let mut hits = best(hits, query.k);
        for s in &segments {
            hits.extend(s.search(self, query, epoch));
        }
        best(hits, query.k)
    }

    /// `hits` scored with their stored vectors; a hit whose point is no
    /// longer stored (deleted since the search's view), or any hit when
    /// this index has no [`Originals`], keeps the score it has.
    fn rescore(&self, mut hits: Vec<IndexHit>, query: &[f32]) -> Vec<IndexHit> {
        let Some(originals) = &self.originals else { return hits };
        let vectors = {
            let keys: Vec<&str> = hits.iter().map(|h| &*h.key).collect();
            originals(&self.tenant, self.uid, &keys)
        };
        for (h, v) in hits.iter_mut().zip(vectors) {
            if let Some(v) = v.filter(|v| v.len() == self.dimension) {
                h.score = score(self.metric, query, &v);
            }
        }
        hits
    }

    /// Moves up to [`FLUSH_BATCH`] growing points into the open segment.
    /// Returns whether it moved any.
    fn flush(&self) -> bool {
        if self.flat {
            return false;
        }
        let _one = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        let size = self.options.segment_size.max(1);
        let (open, batch): (Option<Arc<Segment>>, Vec<Moving>) = {
            let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
            let open = st.segments.last().filter(|s| !s.closed.load(Relaxed) && s.graph.len() < size).cloned();
            let room = open.as_ref().map_or(size, |s| size - s.graph.len());
            let batch = st
                .growing
                .iter()
                .take(FLUSH_BATCH.min(room))
                .map(|(k, p)| Moving {
                    key: k.clone(),
                    from: p.seq,
                    vector: p.vector.clone(),
                    metadata: p.metadata.clone(),
                    added: p.added,
                })
                .collect();
            (open, batch)
        };
        if batch.is_empty() {
            return false;
        }
        let max_norm = batch.iter().map(|m| dot(&m.vector, &m.vector).sqrt()).fold(0.0f32, f32::max);
        let seg = match open.filter(|s| self.metric != Metric::Dot || max_norm <= s.bound) {
            Some(s) => s,
            None => {
                let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
                if let Some(last) = st.segments.last() {
                    last.closed.store(true, Relaxed);
                }
                let seg = self.new_segment(&mut st, max_norm * DOT_BOUND_SLACK);
                st.segments.push(seg.clone());
                seg
            }
        };
        let prepared: Vec<Vec<f32>> = batch.iter().map(|m| prepare_stored(self.metric, &m.vector)).collect();
        let base = insert(&seg.graph, &prepared);
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let mut chunk = Vec::with_capacity(batch.len());
        for (i, Moving { key, from: seq, metadata, added, .. }) in batch.into_iter().enumerate() {
            let current = st.growing.get(&key).is_some_and(|p| p.seq == seq);
            if current {
                st.take_growing(&key);
                st.indexed.insert(key.clone(), (seg.id, (base + i) as u32));
            } else {
                seg.tombstones.fetch_add(1, Relaxed);
            }
            chunk.push(Entry::new(key, metadata, added, current));
        }
        let mut entries = seg.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.push_chunk(chunk);
        if entries.len >= self.options.segment_size {
            seg.closed.store(true, Relaxed);
        }
        true
    }

    fn new_segment(&self, st: &mut State, bound: f32) -> Arc<Segment> {
        st.next_segment += 1;
        let bound = if self.metric == Metric::Dot { bound.max(f32::MIN_POSITIVE) } else { 1.0 };
        let distance = match self.metric {
            Metric::Dot => Distance::InnerProduct { bound },
            _ => Distance::SquaredL2,
        };
        Arc::new(Segment {
            id: st.next_segment,
            graph: Graph::new(self.dimension, self.m, self.ef_construction, distance, self.encoding),
            entries: RwLock::new(Entries::default()),
            tombstones: AtomicUsize::new(0),
            bound,
            closed: AtomicBool::new(false),
            written: AtomicUsize::new(0),
        })
    }

    /// Rebuilds the first segment whose tombstones pass the ratio from its
    /// live points. Returns whether it rebuilt one.
    fn compact(&self) -> bool {
        let _one = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        let ratio = self.options.compaction_tombstone_ratio;
        let old = {
            let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
            st.segments
                .iter()
                .find(|s| {
                    let (n, t) = (s.len(), s.tombstones.load(Relaxed));
                    t > 0 && (t == n || t as f64 >= ratio * n as f64)
                })
                .cloned()
        };
        let Some(old) = old else { return false };
        let vectors = old.vectors();
        let live: Vec<Moving> = old
            .entries()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live())
            .filter_map(|(i, e)| {
                Some(Moving {
                    key: e.key.clone(),
                    from: i as u64,
                    vector: vectors.get(i)?.as_slice().into(),
                    metadata: e.metadata.clone(),
                    added: e.added,
                })
            })
            .collect();
        drop(vectors);
        let max_norm = live.iter().map(|m| dot(&m.vector, &m.vector).sqrt()).fold(0.0f32, f32::max);
        let new = {
            let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
            self.new_segment(&mut st, max_norm * DOT_BOUND_SLACK)
        };
        // The graph's vectors are prepared already; preparing them again
        // (unit length for cosine) would move an int8 vector's scale, and
        // its segment file would no longer match the stored point at open.
        let prepared: Vec<Vec<f32>> = live.iter().map(|m| m.vector.to_vec()).collect();
        insert(&new.graph, &prepared);
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        {
            let mut chunk = Vec::with_capacity(live.len());
            for (i, Moving { key, from, metadata, added, .. }) in live.into_iter().enumerate() {
                // Deleted or replaced while we rebuilt: a tombstone here too
                // (searches that began before see the old segment).
                let current = st.indexed.get(&key) == Some(&(old.id, from as u32));
                if current {
                    st.indexed.insert(key.clone(), (new.id, i as u32));
                } else {
                    new.tombstones.fetch_add(1, Relaxed);
                }
                chunk.push(Entry::new(key, metadata, added, current));
            }
            let mut entries = new.entries.write().unwrap_or_else(PoisonError::into_inner);
            entries.push_chunk(chunk);
            new.closed.store(old.closed.load(Relaxed) || entries.len >= self.options.segment_size, Relaxed);
        }
        let empty = new.len() == new.tombstones.load(Relaxed);
        st.segments.retain(|s| s.id != old.id);
        if let Some(dir) = &self.files {
            let _ = std::fs::remove_file(segment_path(dir, self.uid, old.id));
        }
        if !empty {
            // Back where the old one was; the open segment stays last.
            let at = st.segments.iter().position(|s| s.id > old.id).unwrap_or(st.segments.len());
            st.segments.insert(at, new);
        }
        true
    }

    /// Counts and estimated memory of this collection's index.
    /// Points not yet in a graph, which every search scans exactly.
    pub fn growing_len(&self) -> usize {
        self.state.read().unwrap_or_else(PoisonError::into_inner).growing.len()
    }

    pub fn stats(&self) -> IndexStats {
        let dim = self.dimension as u64;
        // The segments are measured after the lock is released.
        let (growing, growing_bytes, indexed, segments) = {
            let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
            let bytes = st.growing.len() as u64 * dim * 4 + st.growing_bytes;
            (st.growing.len(), bytes, st.indexed.len(), st.segments.clone())
        };
        IndexStats {
            collections: 1,
            points: growing + indexed,
            growing,
            segments: segments.len(),
            tombstones: segments.iter().map(|s| s.tombstones.load(Relaxed)).sum(),
            bytes: growing_bytes + indexed as u64 * 48 + segments.iter().map(|s| s.bytes()).sum::<u64>(),
        }
    }

    fn busy(&self) -> bool {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let ratio = self.options.compaction_tombstone_ratio;
        (!self.flat && !st.growing.is_empty())
            || st.segments.iter().any(|s| {
                let (n, t) = (s.len(), s.tombstones.load(Relaxed));
                t > 0 && (t == n || t as f64 >= ratio * n as f64)
            })
    }
}

/// Adds `prepared` to the graph (two threads for a large batch) and returns
/// the id of the first.
fn insert(graph: &Graph, prepared: &[Vec<f32>]) -> usize {
    let first = graph.reserve(prepared);
    let threads = if prepared.len() < PARALLEL_INSERT_MIN { 1 } else { BUILD_THREADS };
    graph.link_all(first..first + prepared.len() as u32, threads);
    first as usize
}

struct Shared {
    options: IndexOptions,
    /// Where segment files are written (`<data-dir>/vector-index`), if
    /// anywhere.
    files: Option<PathBuf>,
    originals: Option<Originals>,
    collections: RwLock<HashMap<u64, Arc<CollectionIndex>>>,
    wake: Mutex<Sender<()>>,
    /// Set while a wake-up is queued, so apply() sends at most one.
    woken: AtomicBool,
}

/// Every collection's index on this node. Cheap to clone.
#[derive(Clone)]
pub struct VectorIndexes {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for VectorIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndexes").field("options", &self.shared.options).finish()
    }
}

impl VectorIndexes {
    /// An empty index set and its builder thread (which ends when the last
    /// clone is dropped); segment files go to `files`.
    pub fn new(options: IndexOptions, files: Option<PathBuf>) -> VectorIndexes {
        VectorIndexes::with_originals(options, files, None)
    }

    /// As [`VectorIndexes::new`], rescoring int8 candidates with the
    /// vectors `originals` reads.
    pub fn with_originals(
        options: IndexOptions,
        files: Option<PathBuf>,
        originals: Option<Originals>,
    ) -> VectorIndexes {
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            options,
            files,
            originals,
            collections: RwLock::new(HashMap::new()),
            wake: Mutex::new(tx),
            woken: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("synod-vector-index".into())
            .spawn(move || builder(weak, rx))
            .expect("spawn the vector index builder");
        VectorIndexes { shared }
    }

    fn wake(&self) {
        if !self.shared.woken.swap(true, Relaxed) {
            let _ = self.shared.wake.lock().unwrap_or_else(PoisonError::into_inner).send(());
        }
    }

    /// The index of the collection with this uid, if this node has it.
    pub fn get(&self, uid: u64) -> Option<Arc<CollectionIndex>> {
        self.shared.collections.read().unwrap_or_else(PoisonError::into_inner).get(&uid).cloned()
    }

    /// Replaces every index with the given collections and their points
    /// (at open and after a snapshot install), reusing segment files, and
    /// removes the files of collections that no longer exist.
    pub(crate) fn reset(&self, collections: Vec<(CollectionRecord, Vec<Point>)>) {
        let mut fresh = HashMap::new();
        for (c, points) in collections {
            let s = &self.shared;
            let idx = CollectionIndex::load(&c, s.options, s.files.clone(), s.originals.clone(), points);
            fresh.insert(c.uid, Arc::new(idx));
        }
        if let Some(dir) = &self.shared.files {
            remove_segment_files(dir, |uid| !fresh.contains_key(&uid));
        }
        *self.shared.collections.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        self.wake();
    }

    /// Writes every segment due for it now (the builder does it when idle);
    /// returns how many it wrote.
    pub fn persist_now(&self) -> std::io::Result<usize> {
        let all: Vec<_> =
            self.shared.collections.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        all.iter().map(|c| c.persist()).sum()
    }

    /// Applies what one written batch changed: collection records first,
    /// then points, each collection's under one lock (a point of a
    /// collection dropped in the same batch is ignored). Points are decoded
    /// before the lock is taken.
    pub(crate) fn update<'a>(&self, changes: impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + Clone) {
        let mut touched = false;
        for (k, v) in changes.clone() {
            let Some((tenant, name)) = parse_collection_key(k) else { continue };
            let mut map = self.shared.collections.write().unwrap_or_else(PoisonError::into_inner);
            let record = v.as_deref().and_then(|b| CollectionRecord::decode(b).ok());
            match record {
                Some(c) if map.contains_key(&c.uid) => {}
                Some(c) => {
                    self.drop_where(&mut map, |i| i.tenant == c.tenant && i.name == c.name);
                    let s = &self.shared;
                    let idx = CollectionIndex::new(&c, s.options, s.files.clone(), s.originals.clone());
                    map.insert(c.uid, Arc::new(idx));
                }
                None => self.drop_where(&mut map, |i| i.tenant == tenant && i.name == name),
            }
        }
        type Written<'b> = (&'b str, &'b Option<Vec<u8>>);
        let mut by_collection: BTreeMap<u64, Vec<Written<'a>>> = BTreeMap::new();
        for (k, v) in changes {
            if let Some((uid, key)) = parse_point_key(k) {
                by_collection.entry(uid).or_default().push((key, v));
            }
        }
        for (uid, points) in by_collection {
            let Some(idx) = self.get(uid) else { continue };
            let changes: Vec<Change> = points
                .into_iter()
                .filter_map(|(key, v)| match v.as_deref().map(Point::decode) {
                    Some(Ok(p)) => point_parts(&idx, &p).map(|(key, vector, meta)| (key, Some((vector, meta)))),
                    Some(Err(_)) => None,
                    None => Some((Arc::from(key), None)),
                })
                .collect();
            idx.apply(changes);
            touched = true;
        }
        if touched {
            self.wake();
        }
    }

    /// Drops the indexes `gone` picks, and their segment files.
    fn drop_where(&self, map: &mut HashMap<u64, Arc<CollectionIndex>>, gone: impl Fn(&CollectionIndex) -> bool) {
        let uids: Vec<u64> = map.values().filter(|i| gone(i)).map(|i| i.uid).collect();
        for uid in &uids {
            map.remove(uid);
        }
        if let Some(dir) = &self.shared.files
            && !uids.is_empty()
        {
            remove_segment_files(dir, |uid| uids.contains(&uid));
        }
    }

    /// Counts and memory over every collection.
    pub fn stats(&self) -> IndexStats {
        let all: Vec<_> =
            self.shared.collections.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        all.iter().map(|c| c.stats()).fold(IndexStats::default(), |a, b| IndexStats {
            collections: a.collections + b.collections,
            points: a.points + b.points,
            growing: a.growing + b.growing,
            segments: a.segments + b.segments,
            tombstones: a.tombstones + b.tombstones,
            bytes: a.bytes + b.bytes,
        })
    }

    /// Waits until every growing point is in a graph and no segment waits
    /// for compaction; false on timeout. For tests and benchmarks.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let all: Vec<_> =
                self.shared.collections.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
            if !all.iter().any(|c| c.busy()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.wake();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Metadata as the index holds it: one shared allocation for every point
/// without any (most points of many collections), one each otherwise.
fn shared(metadata: Value) -> Arc<Value> {
    static EMPTY: std::sync::LazyLock<Arc<Value>> =
        std::sync::LazyLock::new(|| Arc::new(Value::Object(Default::default())));
    match &metadata {
        Value::Object(o) if o.is_empty() => EMPTY.clone(),
        _ => Arc::new(metadata),
    }
}

/// A stored point's key, vector and metadata, if its vector fits.
fn point_parts(idx: &CollectionIndex, p: &Point) -> Option<(Arc<str>, Vec<f32>, Value)> {
    let vector = decode_vector(&p.vector).filter(|v| v.len() == idx.dimension)?;
    let metadata = if p.metadata_json.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_str(&p.metadata_json).unwrap_or_else(|_| Value::Object(Default::default()))
    };
    Some((point_id_key(&p.id, p.numeric_id).into(), vector, metadata))
}

// ---- segment files: `<data-dir>/vector-index/<uid:016x>-<segment:08x>.seg`
//
// A cache of the graphs, never the truth: at open every point is checked
// against RocksDB (key and vector), so a stale or missing file costs a
// rebuild, never a wrong answer. Layout (little-endian): magic, collection
// uid (u64), segment id (u32), closed (u8), key count (u32), each key
// (u16 length, UTF-8), then the graph (`hnsw::Graph::write_to`).

const SEGMENT_MAGIC: &[u8; 8] = b"SYNSEG01";

fn segment_path(dir: &Path, uid: u64, segment: u32) -> PathBuf {
    dir.join(format!("{uid:016x}-{segment:08x}.seg"))
}

fn write_segment(dir: &Path, uid: u64, s: &Segment, keys: &[Arc<str>]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = segment_path(dir, uid, s.id);
    let tmp = path.with_extension("seg.tmp");
    let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
    w.write_all(SEGMENT_MAGIC)?;
    w.write_all(&uid.to_le_bytes())?;
    w.write_all(&s.id.to_le_bytes())?;
    w.write_all(&[s.closed.load(Relaxed) as u8])?;
    w.write_all(&(keys.len() as u32).to_le_bytes())?;
    for k in keys {
        w.write_all(&(k.len() as u16).to_le_bytes())?;
        w.write_all(k.as_bytes())?;
    }
    s.graph.write_to(&mut w)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, &path)?;
    // The rename is durable only once the directory is synced.
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

struct LoadedSegment {
    id: u32,
    closed: bool,
    keys: Vec<Arc<str>>,
    graph: Graph,
}

fn read_segment(path: &Path, uid: u64) -> std::io::Result<LoadedSegment> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut head = [0u8; 25];
    r.read_exact(&mut head)?;
    if &head[..8] != SEGMENT_MAGIC || u64::from_le_bytes(head[8..16].try_into().expect("8 bytes")) != uid {
        return Err(bad("not a segment of this collection"));
    }
    let id = u32::from_le_bytes(head[16..20].try_into().expect("4 bytes"));
    let closed = head[20] != 0;
    let n = u32::from_le_bytes(head[21..25].try_into().expect("4 bytes")) as usize;
    let mut keys = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        let mut len = [0u8; 2];
        r.read_exact(&mut len)?;
        let mut k = vec![0u8; u16::from_le_bytes(len) as usize];
        r.read_exact(&mut k)?;
        keys.push(Arc::<str>::from(String::from_utf8(k).map_err(|_| bad("a key is not UTF-8"))?));
    }
    let graph = Graph::read_from(&mut r)?;
    if graph.len() != keys.len() {
        return Err(bad("keys and graph differ in length"));
    }
    Ok(LoadedSegment { id, closed, keys, graph })
}

/// The readable segment files of a collection, by segment id; unreadable
/// ones are logged and removed (their points are rebuilt).
fn read_segments(dir: &Path, uid: u64) -> Vec<LoadedSegment> {
    let prefix = format!("{uid:016x}-");
    let Ok(listing) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in listing.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || !name.ends_with(".seg") {
            continue;
        }
        match read_segment(&e.path(), uid) {
            Ok(l) => out.push(l),
            Err(err) => {
                tracing::warn!(file = %e.path().display(), error = %err, "vector index file refused; rebuilding its points");
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    out.sort_by_key(|l| l.id);
    out
}

/// Removes segment files (and leftovers of interrupted writes) of the
/// collections `gone` picks by uid.
fn remove_segment_files(dir: &Path, gone: impl Fn(u64) -> bool) {
    let Ok(listing) = std::fs::read_dir(dir) else { return };
    for e in listing.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let uid = name.split('-').next().and_then(|h| u64::from_str_radix(h, 16).ok());
        if name.ends_with(".tmp") || uid.is_some_and(&gone) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `t/<tenant>/coll/<name>` → (tenant, name).
fn parse_collection_key(k: &[u8]) -> Option<(&str, &str)> {
    let rest = k.strip_prefix(b"t/")?;
    let slash = rest.iter().position(|b| *b == b'/')?;
    let name = rest[slash + 1..].strip_prefix(b"coll/")?;
    Some((std::str::from_utf8(&rest[..slash]).ok()?, std::str::from_utf8(name).ok()?))
}

/// `t/<tenant>/pt/<uid: 8 bytes>/<id key>` → (uid, id key).
fn parse_point_key(k: &[u8]) -> Option<(u64, &str)> {
    let rest = k.strip_prefix(b"t/")?;
    let slash = rest.iter().position(|b| *b == b'/')?;
    let rest = rest[slash + 1..].strip_prefix(b"pt/")?;
    if rest.len() < 10 || rest[8] != b'/' {
        return None;
    }
    let uid = u64::from_be_bytes(rest[..8].try_into().ok()?);
    Some((uid, std::str::from_utf8(&rest[9..]).ok()?))
}

/// The builder thread: moves growing points into graphs and compacts,
/// whenever woken and every half second.
fn builder(shared: Weak<Shared>, wake: Receiver<()>) {
    loop {
        match wake.recv_timeout(Duration::from_millis(500)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(shared) = shared.upgrade() else { return };
        shared.woken.store(false, Relaxed);
        // A panic while building must not end the builder, nor (through a
        // poisoned lock) every later apply(): the locks are taken poison-
        // tolerant, the round is abandoned and retried at the next wake.
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            loop {
                let all: Vec<_> =
                    shared.collections.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
                let mut worked = false;
                for c in all {
                    worked |= c.flush();
                    worked |= c.compact();
                }
                if !worked {
                    break;
                }
            }
        }));
        if round.is_err() {
            tracing::error!("the vector index builder panicked; searches stay exact for what it did not build");
            continue;
        }
        // Idle: write out the segments that grew, so a restart reloads
        // them instead of rebuilding.
        let all: Vec<_> = shared.collections.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for c in all {
            if let Err(e) = c.persist() {
                tracing::warn!(collection = %c.name, error = %e, "could not write the vector index; a restart rebuilds it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_distances_order_points_as_scores_do() {
        use crate::hnsw::Distance as SegmentDistance;
        let q = [0.5f32, 1.0, -0.25];
        let pts = [[3.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 2.0, 1.0], [-2.0, -2.0, 0.0], [0.1, 0.1, 0.1]];
        for (metric, distance) in [
            (Metric::Cosine, SegmentDistance::SquaredL2),
            (Metric::L2, SegmentDistance::SquaredL2),
            (Metric::Dot, SegmentDistance::InnerProduct { bound: 5.0 }),
        ] {
            let qp = prepare_query(metric, &q, 5.0);
            let mut by_dist: Vec<usize> = (0..pts.len()).collect();
            by_dist.sort_by(|a, b| {
                let da = distance.eval(&qp, &prepare_stored(metric, &pts[*a]));
                let db = distance.eval(&qp, &prepare_stored(metric, &pts[*b]));
                assert!(da >= 0.0 && db >= 0.0);
                da.total_cmp(&db)
            });
            let mut by_score: Vec<usize> = (0..pts.len()).collect();
            by_score.sort_by(|a, b| score(metric, &q, &pts[*b]).total_cmp(&score(metric, &q, &pts[*a])));
            assert_eq!(by_dist, by_score, "{metric:?}");
        }
    }

    /// Issue 13, defect 9: a panic while a lock was held (in the builder)
    /// poisoned it, and every later apply() panicked on it: a crash loop.
    #[test]
    fn a_poisoned_lock_does_not_fail_apply() {
        use prost::Message;
        let indexes = VectorIndexes::new(IndexOptions::default(), None);
        let c = CollectionRecord {
            tenant: "acme".into(),
            name: "docs".into(),
            dimension: 2,
            metric: crate::pb::Metric::L2 as i32,
            uid: 7,
            ..Default::default()
        };
        let key = crate::schema::collection_key("acme", "docs");
        let value = Some(c.encode_to_vec());
        indexes.update(std::iter::once((&key, &value)));
        // A thread panics holding the map's write lock, poisoning it.
        let shared = indexes.shared.clone();
        let _ = std::thread::spawn(move || {
            let _held = shared.collections.write().unwrap();
            panic!("a builder bug");
        })
        .join();
        assert!(indexes.shared.collections.is_poisoned());
        let point = crate::pb::Point {
            id: "a".into(),
            vector: [1f32, 2.0].iter().flat_map(|f| f.to_le_bytes()).collect(),
            ..Default::default()
        };
        let pkey = crate::schema::point_key("acme", 7, "s:a");
        let pvalue = Some(point.encode_to_vec());
        indexes.update(std::iter::once((&pkey, &pvalue)));
        assert_eq!(indexes.get(7).map(|i| i.stats().points), Some(1), "the point still reached the index");
    }

    /// Issue 13, defect 6: a search held the collection's read lock for its
    /// whole run (and apply() took the write lock point by point), so a
    /// long filtered search stalled apply() and every write behind it, and
    /// a search could see half a batch. Here a search is paused after it
    /// took its view: a batch must apply meanwhile, and the paused search
    /// must still answer as of before the batch, whole.
    #[test]
    fn a_paused_search_neither_holds_up_apply_nor_sees_the_batch_applied_meanwhile() {
        use std::sync::mpsc::channel;
        let indexes = VectorIndexes::new(IndexOptions::default(), None);
        let c = CollectionRecord {
            tenant: "acme".into(),
            name: "docs".into(),
            dimension: 2,
            metric: Metric::L2 as i32,
            uid: 9,
            ..Default::default()
        };
        let ckey = crate::schema::collection_key("acme", "docs");
        indexes.update(std::iter::once((&ckey, &Some(c.encode_to_vec()))));
        let point = |id: &str, x: f32, v: u32| {
            let p = Point {
                id: id.into(),
                vector: [x, 0.0f32].iter().flat_map(|f| f.to_le_bytes()).collect(),
                metadata_json: format!("{{\"v\":{v}}}"),
                ..Default::default()
            };
            (crate::schema::point_key("acme", 9, &format!("s:{id}")), Some(p.encode_to_vec()))
        };
        let batch = |ps: &[(Vec<u8>, Option<Vec<u8>>)]| indexes.update(ps.iter().map(|(k, v)| (k, v)));
        batch(&[point("a", 1.0, 1), point("b", 2.0, 1)]);
        assert!(indexes.wait_idle(Duration::from_secs(30)), "a and b into a graph");
        let idx = indexes.get(9).expect("the index");
        let seen = |hits: &[IndexHit]| -> Vec<(String, Value)> {
            let mut s: Vec<_> = hits.iter().map(|h| (h.key.to_string(), h.metadata["v"].clone())).collect();
            s.sort_by(|a, b| a.0.cmp(&b.0));
            s
        };
        let query = |idx: &CollectionIndex| idx.search(&Query { vector: &[0.0, 0.0], k: 10, ef: 16, filter: None });
        let both = |v: u32| vec![("s:a".to_string(), serde_json::json!(v)), ("s:b".to_string(), serde_json::json!(1))];

        // Control: with no batch in between, the paused search sees a and b.
        let (in_view, release) = (channel::<()>(), channel::<()>());
        let (tx_in, rx_release) = (in_view.0, Mutex::new(release.1));
        *idx.after_view.lock().unwrap() = Some(Arc::new(move || {
            tx_in.send(()).unwrap();
            let _ = rx_release.lock().unwrap().recv_timeout(Duration::from_secs(30));
        }));
        let searcher = {
            let idx = idx.clone();
            std::thread::spawn(move || query(&idx))
        };
        in_view.1.recv_timeout(Duration::from_secs(30)).expect("the search took its view");
        release.0.send(()).unwrap();
        assert_eq!(seen(&searcher.join().unwrap()), both(1));

        // Paused again; a batch replaces a, deletes b and adds c.
        let searcher = {
            let idx = idx.clone();
            std::thread::spawn(move || query(&idx))
        };
        in_view.1.recv_timeout(Duration::from_secs(30)).expect("the search took its view");
        let (applied_tx, applied) = channel();
        let writer = {
            let indexes = indexes.clone();
            let ps = [point("a", 3.0, 2), (crate::schema::point_key("acme", 9, "s:b"), None), point("c", 0.5, 2)];
            std::thread::spawn(move || {
                indexes.update(ps.iter().map(|(k, v)| (k, v)));
                applied_tx.send(()).unwrap();
            })
        };
        applied.recv_timeout(Duration::from_secs(30)).expect("the batch applied while a search was under way");
        writer.join().unwrap();
        // The builder moves the new points into the graph the paused
        // search is about to read.
        assert!(indexes.wait_idle(Duration::from_secs(30)), "the batch into a graph");
        release.0.send(()).unwrap();
        assert_eq!(seen(&searcher.join().unwrap()), both(1), "the paused search answers as of before the batch");
        *idx.after_view.lock().unwrap() = None;
        let after = vec![("s:a".to_string(), serde_json::json!(2)), ("s:c".to_string(), serde_json::json!(2))];
        assert_eq!(seen(&query(&idx)), after, "a search begun after the batch sees all of it");
    }

    #[test]
    fn keys_parse_back() {
        let k = crate::schema::point_key("acme", 0x2f2f_0000_0000_002f, "s:a/b");
        assert_eq!(parse_point_key(&k), Some((0x2f2f_0000_0000_002f, "s:a/b")), "a '/' in the uid bytes is fine");
        let c = crate::schema::collection_key("acme", "docs");
        assert_eq!(parse_collection_key(&c), Some(("acme", "docs")));
        assert_eq!(parse_point_key(&c), None);
        assert_eq!(parse_collection_key(&k), None);
    }
}
