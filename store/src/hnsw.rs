//! A hierarchical navigable small world graph (Malkov and Yashunin, 2016),
//! laid out for the cache: one block per node holding its layer-0 links
//! (fixed slots) and then its vector, all blocks in one array; upper layers
//! (one node in `m`) in small vectors. Searches run under a read lock. An
//! insert plans under the read lock (several nodes in parallel with
//! [`Graph::link_all`]) and links under a short write lock, so searches
//! proceed between inserts.
//!
//! Node ids are dense `u32`s in insertion order: [`Graph::reserve`] appends
//! vectors (unreachable until linked), [`Graph::link`] connects one and
//! [`Graph::link_all`] many.
//!
//! A graph holds its vectors as f32 ([`Encoding::F32`]) or as int8 codes
//! ([`Encoding::Int8`]): one byte per component, scaled by the vector's
//! largest magnitude (no training, so a vector is encoded the same
//! whenever and wherever it arrives), and beside the codes that scale and
//! the squared norm of the vector they stand for. An int8 graph holds a
//! 384-d vector in 392 bytes where f32 takes 1,536; its distances are
//! those of the decoded vectors, so its order is approximate and the
//! caller rescores its candidates with the exact vectors.
//!
//! Why not hnsw_rs (DESIGN §5's choice): measured on 20,000 random 128-d
//! vectors, m 32, ef 200, on this 2-core machine, hnsw_rs answered 312
//! queries/s (p50 3.2 ms) where hnswlib answers about 4,000, built at
//! 1,400 points/s, and held about 3.5 KiB per point: each neighbour is an
//! `Arc`, every point has its own heap vector and sixteen neighbour lists,
//! every search hashes the points it visits. This layout is a few hundred
//! lines and keeps both the speed and the memory near hnswlib's.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{LazyLock, RwLock};

/// The distance a graph is built on; smaller is closer, never negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distance {
    SquaredL2,
    /// `bound² - a·b`: never negative while every vector (and the query,
    /// scaled) has a norm of at most `bound`.
    InnerProduct {
        bound: f32,
    },
}

impl Distance {
    pub fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        match *self {
            Distance::SquaredL2 => squared_l2(a, b),
            Distance::InnerProduct { bound } => (bound * bound - dot(a, b)).max(0.0),
        }
    }
}

/// How a graph holds its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// As given: distances are exact.
    #[default]
    F32,
    /// Scalar quantization to int8 codes (see the module's documentation).
    Int8,
}

/// Words of an int8 vector before its codes: the scale (the largest
/// magnitude / 127) and the squared norm of the decoded vector.
const INT8_HEAD: usize = 2;

impl Encoding {
    /// The u32 words one vector of `dim` components takes.
    pub fn words(self, dim: usize) -> usize {
        match self {
            Encoding::F32 => dim,
            Encoding::Int8 => INT8_HEAD + dim.div_ceil(4),
        }
    }

    fn encode(self, v: &[f32]) -> Vec<u32> {
        match self {
            Encoding::F32 => v.iter().map(|x| x.to_bits()).collect(),
            Encoding::Int8 => {
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 && max.is_finite() { max / 127.0 } else { 0.0 };
                let mut out = vec![0u32; self.words(v.len())];
                let codes = &mut bytemuck::cast_slice_mut::<u32, i8>(&mut out[INT8_HEAD..])[..v.len()];
                if scale > 0.0 {
                    for (c, x) in codes.iter_mut().zip(v) {
                        *c = (x / scale).round().clamp(-127.0, 127.0) as i8;
                    }
                }
                let sum: i64 = codes.iter().map(|c| i64::from(*c) * i64::from(*c)).sum();
                out[0] = scale.to_bits();
                out[1] = (scale * scale * sum as f32).to_bits();
                out
            }
        }
    }

    fn decode(self, w: &[u32], dim: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(dim);
        self.decode_into(w, dim, &mut out);
        out
    }

    fn decode_into(self, w: &[u32], dim: usize, out: &mut Vec<f32>) {
        out.clear();
        match self {
            Encoding::F32 => out.extend(w.iter().map(|x| f32::from_bits(*x))),
            Encoding::Int8 => {
                let scale = f32::from_bits(w[0]);
                let codes = &bytemuck::cast_slice::<u32, i8>(&w[INT8_HEAD..])[..dim];
                out.extend(codes.iter().map(|c| f32::from(*c) * scale));
            }
        }
    }

    /// Whether stored words `a` and `b` hold the same vector. For int8,
    /// the same codes with scales within a few ulps: a segment compacted
    /// from decoded vectors codes them again, and its scale (the largest
    /// magnitude / 127) may come back an ulp off.
    fn same(self, a: &[u32], b: &[u32]) -> bool {
        match self {
            Encoding::F32 => a == b,
            Encoding::Int8 => {
                let (sa, sb) = (f32::from_bits(a[0]), f32::from_bits(b[0]));
                a.len() == b.len()
                    && a[INT8_HEAD..] == b[INT8_HEAD..]
                    && (sa - sb).abs() <= 4.0 * f32::EPSILON * sa.abs()
            }
        }
    }

    /// Whether `w` can be a stored vector of this encoding.
    fn valid(self, w: &[u32]) -> bool {
        let ok = |x: &u32| f32::from_bits(*x).is_finite();
        match self {
            Encoding::F32 => w.iter().all(ok),
            Encoding::Int8 => w[..INT8_HEAD].iter().all(|x| ok(x) && f32::from_bits(*x) >= 0.0),
        }
    }
}

/// The widest instruction set this CPU has for the distance loops (AVX2
/// with FMA where present, else the baseline SSE2), detected once. The
/// binary stays portable x86-64; compiled for the baseline alone, the loops
/// ran at half the width, and a profile of an ingest showed the graph
/// build spending 70 % of its time in them.
static ARCH: LazyLock<pulp::Arch> = LazyLock::new(pulp::Arch::new);

/// Squared Euclidean distance.
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    ARCH.dispatch(Kernel::<true> { a, b })
}

/// The dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    ARCH.dispatch(Kernel::<false> { a, b })
}

/// The dot product of two int8 code arrays.
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    ARCH.dispatch(KernelI8 { a, b })
}

/// Written plainly: inlined into the dispatcher's function, which is
/// compiled for the detected instruction set, the compiler widens it
/// (multiply-adds of 16-bit pairs, 16 or 32 bytes at a time).
struct KernelI8<'a> {
    a: &'a [i8],
    b: &'a [i8],
}

impl pulp::WithSimd for KernelI8<'_> {
    type Output = i32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> i32 {
        let n = self.a.len().min(self.b.len());
        let (a, b) = (&self.a[..n], &self.b[..n]);
        let mut sum = 0i32;
        for (x, y) in a.chunks(256).zip(b.chunks(256)) {
            // i16 products of a chunk cannot overflow an i32 sum.
            sum += x.iter().zip(y).map(|(p, q)| i32::from(i16::from(*p) * i16::from(*q))).sum::<i32>();
        }
        sum
    }
}

/// One pass over two vectors of equal length: the sum of squared
/// differences (`L2`) or of products, in two accumulators of the
/// machine's width (two fused multiply-adds in flight).
struct Kernel<'a, const L2: bool> {
    a: &'a [f32],
    b: &'a [f32],
}

impl<const L2: bool> pulp::WithSimd for Kernel<'_, L2> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        let n = self.a.len().min(self.b.len());
        let (ha, ta) = S::as_simd_f32s(&self.a[..n]);
        let (hb, tb) = S::as_simd_f32s(&self.b[..n]);
        let (mut acc0, mut acc1) = (simd.splat_f32s(0.0), simd.splat_f32s(0.0));
        let term = |x: S::f32s, y: S::f32s| if L2 { simd.sub_f32s(x, y) } else { x };
        let other = |x: S::f32s, y: S::f32s| if L2 { simd.sub_f32s(x, y) } else { y };
        let mut pairs_a = ha.chunks_exact(2);
        let mut pairs_b = hb.chunks_exact(2);
        for (x, y) in (&mut pairs_a).zip(&mut pairs_b) {
            acc0 = simd.mul_add_e_f32s(term(x[0], y[0]), other(x[0], y[0]), acc0);
            acc1 = simd.mul_add_e_f32s(term(x[1], y[1]), other(x[1], y[1]), acc1);
        }
        for (x, y) in pairs_a.remainder().iter().zip(pairs_b.remainder()) {
            acc0 = simd.mul_add_e_f32s(term(*x, *y), other(*x, *y), acc0);
        }
        let mut sum = simd.reduce_sum_f32s(simd.add_f32s(acc0, acc1));
        for (x, y) in ta.iter().zip(tb) {
            sum += if L2 { (x - y) * (x - y) } else { x * y };
        }
        sum
    }
}

/// Nodes linked one at a time before [`Graph::link_all`] plans in chunks.
const SEQUENTIAL_UNTIL: usize = 1024;
/// Nodes planned together under one read lock.
const CHUNK: u32 = 64;

/// Highest layer a node can have (P = m^-16: never, in practice).
const MAX_LEVEL: u8 = 16;

/// A node and its distance to the query; ordered by distance, then id.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Near {
    d: f32,
    id: u32,
}

impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d.total_cmp(&other.d).then(self.id.cmp(&other.id))
    }
}

/// Generation-stamped visited marks, one array per thread, reused by
/// every search on it.
struct Visited {
    generation: u32,
    marks: Vec<u32>,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// Marks `id`; false if it was marked already.
    fn insert(&mut self, id: u32) -> bool {
        let m = &mut self.marks[id as usize];
        if *m == self.generation {
            return false;
        }
        *m = self.generation;
        true
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { generation: 0, marks: Vec::new() }) };
}

struct Data {
    dim: usize,
    m0: usize,
    /// Words of one stored vector ([`Encoding::words`]).
    words: usize,
    /// One block of `1 + m0 + words` words per node: its layer-0 link
    /// count, `m0` link slots, and its vector (f32 bits or int8 codes).
    /// Links next to the vector: the walk that measures a node finds its
    /// links in cache after.
    nodes: Vec<u32>,
    levels: Vec<u8>,
    /// Layers 1..=level of each node: `upper[i][l - 1]`.
    upper: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
    top: u8,
}

impl Data {
    fn len(&self) -> usize {
        self.levels.len()
    }

    fn block(&self, id: u32) -> usize {
        id as usize * (1 + self.m0 + self.words)
    }

    fn vector(&self, id: u32) -> &[u32] {
        let o = self.block(id) + 1 + self.m0;
        &self.nodes[o..o + self.words]
    }

    fn neighbours(&self, id: u32, layer: u8, _m0: usize) -> &[u32] {
        if layer == 0 {
            let o = self.block(id);
            &self.nodes[o + 1..o + 1 + self.nodes[o] as usize]
        } else {
            self.upper[id as usize].get(layer as usize - 1).map_or(&[], Vec::as_slice)
        }
    }

    fn set_neighbours(&mut self, id: u32, layer: u8, _m0: usize, list: &[u32]) {
        if layer == 0 {
            let o = self.block(id);
            self.nodes[o] = list.len() as u32;
            self.nodes[o + 1..o + 1 + list.len()].copy_from_slice(list);
        } else if let Some(l) = self.upper[id as usize].get_mut(layer as usize - 1) {
            l.clear();
            l.extend_from_slice(list);
        }
    }
}

/// One layer of an insert's plan: the new node's links, and for each of
/// them (neighbour, its list as planned from, its list after).
struct LayerPlan {
    layer: u8,
    mine: Vec<u32>,
    theirs: Vec<(u32, Vec<u32>, Vec<u32>)>,
}

/// An HNSW graph of `dim`-dimensional vectors.
pub struct Graph {
    m: usize,
    m0: usize,
    ef_construction: usize,
    level_scale: f64,
    distance: Distance,
    encoding: Encoding,
    data: RwLock<Data>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").field("m", &self.m).field("len", &self.len()).finish()
    }
}

/// The level of node `id`: geometric with ratio 1/m, from a hash of the id,
/// so every node of every replica draws the same.
fn level_of(id: u32, scale: f64) -> u8 {
    let mut z = (id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
    ((-u.ln() * scale).floor() as u64).min(MAX_LEVEL as u64) as u8
}

impl Graph {
    /// `m` links per node on the upper layers, `2m` on layer 0.
    pub fn new(dim: usize, m: usize, ef_construction: usize, distance: Distance, encoding: Encoding) -> Graph {
        let m = m.clamp(2, 128);
        Graph {
            m,
            m0: 2 * m,
            ef_construction: ef_construction.max(1),
            level_scale: 1.0 / (m as f64).ln(),
            distance,
            encoding,
            data: RwLock::new(Data {
                dim,
                m0: 2 * m,
                words: encoding.words(dim),
                nodes: Vec::new(),
                levels: Vec::new(),
                upper: Vec::new(),
                entry: None,
                top: 0,
            }),
        }
    }

    pub fn distance(&self) -> Distance {
        self.distance
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The distance of two stored (or encoded) vectors: exact for f32,
    /// that of the decoded vectors for int8.
    fn dist(&self, a: &[u32], b: &[u32]) -> f32 {
        match self.encoding {
            Encoding::F32 => self.distance.eval(bytemuck::cast_slice(a), bytemuck::cast_slice(b)),
            Encoding::Int8 => {
                let (sa, na) = (f32::from_bits(a[0]), f32::from_bits(a[1]));
                let (sb, nb) = (f32::from_bits(b[0]), f32::from_bits(b[1]));
                let codes = bytemuck::cast_slice::<u32, i8>;
                let ip = sa * sb * dot_i8(codes(&a[INT8_HEAD..]), codes(&b[INT8_HEAD..])) as f32;
                match self.distance {
                    Distance::SquaredL2 => (na + nb - 2.0 * ip).max(0.0),
                    Distance::InnerProduct { bound } => (bound * bound - ip).max(0.0),
                }
            }
        }
    }

    /// Nodes in the graph, linked or not.
    pub fn len(&self) -> usize {
        self.data.read().expect("graph lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends vectors as unlinked nodes (no search reaches them yet) and
    /// returns the id of the first.
    pub fn reserve(&self, vectors: &[Vec<f32>]) -> u32 {
        let mut d = self.data.write().expect("graph lock");
        let first = d.len() as u32;
        // Grown by an eighth at a time, not doubled: the node array is
        // most of the index's memory, and a doubled Vec holds up to twice
        // what it uses (the copies this costs are a small part of linking).
        let need = vectors.len() * (1 + self.m0 + d.words);
        if d.nodes.capacity() - d.nodes.len() < need {
            let more = need.max(d.nodes.len() / 8);
            d.nodes.reserve_exact(more);
        }
        for (i, v) in vectors.iter().enumerate() {
            let level = level_of(first + i as u32, self.level_scale);
            let slots = d.nodes.len() + 1 + self.m0;
            d.nodes.resize(slots, 0);
            d.nodes.extend(self.encoding.encode(v));
            d.levels.push(level);
            d.upper.push(vec![Vec::new(); level as usize]);
        }
        first
    }

    /// Connects a reserved node to the graph.
    pub fn link(&self, id: u32) {
        loop {
            let plan = {
                let d = self.data.read().expect("graph lock");
                d.entry.map(|ep| self.plan(&d, id, ep))
            };
            let mut d = self.data.write().expect("graph lock");
            match plan {
                None if d.entry.is_none() => {
                    d.entry = Some(id);
                    d.top = d.levels[id as usize];
                    return;
                }
                // Another insert became the entry point meanwhile: plan again.
                None => continue,
                Some(plan) => {
                    self.connect(&mut d, id, plan);
                    let level = d.levels[id as usize];
                    if level > d.top {
                        d.entry = Some(id);
                        d.top = level;
                    }
                    return;
                }
            }
        }
    }

    /// Connects reserved nodes `ids`, on `threads` threads: nodes are
    /// planned in chunks under one read lock, each thread planning a share,
    /// and a chunk's links are written under one write lock. The nodes of a
    /// chunk do not see each other while planning, so the first nodes of a
    /// graph (until [`SEQUENTIAL_UNTIL`]) are linked one by one.
    pub fn link_all(&self, ids: std::ops::Range<u32>, threads: usize) {
        let mut next = ids.start;
        while next < ids.end {
            if threads < 2 || (next as usize) < SEQUENTIAL_UNTIL {
                self.link(next);
                next += 1;
                continue;
            }
            let chunk: Vec<u32> = (next..ids.end.min(next + CHUNK)).collect();
            next += chunk.len() as u32;
            let plans: Vec<(u32, Vec<LayerPlan>)> = {
                let d = self.data.read().expect("graph lock");
                let Some(ep) = d.entry else {
                    drop(d);
                    chunk.into_iter().for_each(|id| self.link(id));
                    continue;
                };
                let d = &*d;
                let share = chunk.len().div_ceil(threads);
                std::thread::scope(|s| {
                    let handles: Vec<_> = chunk
                        .chunks(share)
                        .map(|part| {
                            s.spawn(move || part.iter().map(|&id| (id, self.plan(d, id, ep))).collect::<Vec<_>>())
                        })
                        .collect();
                    handles.into_iter().flat_map(|h| h.join().expect("a planning thread")).collect()
                })
            };
            let mut d = self.data.write().expect("graph lock");
            for (id, plan) in plans {
                self.connect(&mut d, id, plan);
                let level = d.levels[id as usize];
                if level > d.top {
                    d.entry = Some(id);
                    d.top = level;
                }
            }
        }
    }

    /// The neighbours node `id` should have on each of its layers, and the
    /// new lists of those neighbours, from searches of the graph as it is
    /// (read lock held by the caller, so plans run in parallel).
    fn plan(&self, d: &Data, id: u32, entry: u32) -> Vec<LayerPlan> {
        let q = d.vector(id);
        let level = d.levels[id as usize];
        VISITED.with(|v| {
            let v = &mut *v.borrow_mut();
            let mut cur = vec![Near { d: self.dist(q, d.vector(entry)), id: entry }];
            for layer in (level.saturating_add(1)..=d.top).rev() {
                cur = self.search_layer(d, q, &cur, 1, layer, None, v);
            }
            let mut plan = Vec::new();
            for layer in (0..=level.min(d.top)).rev() {
                let mut found = self.search_layer(d, q, &cur, self.ef_construction, layer, None, v);
                found.retain(|n| n.id != id);
                // A new node takes m links on every layer (as hnswlib does);
                // layer-0 lists may grow to 2m through later reverse links.
                let cap = if layer == 0 { self.m0 } else { self.m };
                let mine = self.select(d, &found, self.m);
                let theirs = mine
                    .iter()
                    .map(|&e| {
                        let before = d.neighbours(e, layer, self.m0).to_vec();
                        let after = self.with_link(d, e, &before, id, cap);
                        (e, before, after)
                    })
                    .collect();
                plan.push(LayerPlan { layer, mine, theirs });
                if !found.is_empty() {
                    cur = found;
                }
            }
            plan
        })
    }

    /// `e`'s list `list` with `id` added, shrunk by the heuristic when it
    /// overflows.
    fn with_link(&self, d: &Data, e: u32, list: &[u32], id: u32, cap: usize) -> Vec<u32> {
        let mut out = list.to_vec();
        if out.contains(&id) {
            return out;
        }
        out.push(id);
        if out.len() > cap {
            let ev = d.vector(e);
            let mut cands: Vec<Near> = out.iter().map(|&n| Near { d: self.dist(ev, d.vector(n)), id: n }).collect();
            cands.sort();
            out = self.select(d, &cands, cap);
        }
        out
    }

    /// Writes the planned links and the reverse ones. A neighbour whose list
    /// another insert changed since the plan gets the link the cheap way
    /// (appended, or replacing its farthest link if nearer), so the write
    /// lock is never held for a heuristic's worth of distances.
    fn connect(&self, d: &mut Data, id: u32, plan: Vec<LayerPlan>) {
        for LayerPlan { layer, mine, theirs } in plan {
            d.set_neighbours(id, layer, self.m0, &mine);
            let cap = if layer == 0 { self.m0 } else { self.m };
            for (e, before, after) in theirs {
                let now = d.neighbours(e, layer, self.m0);
                if now == before.as_slice() {
                    d.set_neighbours(e, layer, self.m0, &after);
                    continue;
                }
                if now.contains(&id) {
                    continue;
                }
                let mut list = now.to_vec();
                if list.len() < cap {
                    list.push(id);
                } else {
                    let ev = d.vector(e);
                    let dist = |n: u32| self.dist(ev, d.vector(n));
                    let (far, far_d) = list
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| (i, dist(n)))
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .expect("a full list is not empty");
                    if dist(id) < far_d {
                        list[far] = id;
                    }
                }
                d.set_neighbours(e, layer, self.m0, &list);
            }
        }
    }

    /// Malkov's heuristic: take candidates nearest first, skipping one that
    /// is closer to an already taken neighbour than to the base point.
    fn select(&self, d: &Data, sorted: &[Near], cap: usize) -> Vec<u32> {
        let mut out: Vec<Near> = Vec::with_capacity(cap);
        for c in sorted {
            if out.len() >= cap {
                break;
            }
            let cv = d.vector(c.id);
            if out.iter().all(|r| self.dist(cv, d.vector(r.id)) > c.d) {
                out.push(*c);
            }
        }
        out.into_iter().map(|n| n.id).collect()
    }

    /// Beam search of one layer from `entry`, keeping the `ef` nearest
    /// nodes that `accept` takes (all of them without it); the others are
    /// walked through but never returned. Nearest first.
    #[allow(clippy::too_many_arguments)]
    fn search_layer(
        &self,
        d: &Data,
        q: &[u32],
        entry: &[Near],
        ef: usize,
        layer: u8,
        accept: Option<&dyn Fn(u32) -> bool>,
        visited: &mut Visited,
    ) -> Vec<Near> {
        visited.reset(d.len());
        let mut cands: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
        let mut found: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
        let mut fresh: Vec<u32> = Vec::with_capacity(self.m0);
        let takes = |id: u32| accept.is_none_or(|f| f(id));
        for e in entry {
            if visited.insert(e.id) {
                cands.push(Reverse(*e));
                if takes(e.id) {
                    found.push(*e);
                }
            }
        }
        while found.len() > ef {
            found.pop();
        }
        while let Some(Reverse(c)) = cands.pop() {
            if found.len() >= ef && found.peek().is_some_and(|w| c.d > w.d) {
                break;
            }
            // Unvisited neighbours first, touching each one's vector so the
            // memory loads overlap (safe Rust has no prefetch instruction).
            fresh.clear();
            for &n in d.neighbours(c.id, layer, self.m0) {
                if visited.insert(n) {
                    // One word per 64-byte line of the vector (touching the
                    // links too, for when the node becomes a candidate, was
                    // measured slower: most never do).
                    for w in d.vector(n).iter().step_by(16) {
                        std::hint::black_box(*w);
                    }
                    fresh.push(n);
                }
            }
            for &n in fresh.iter() {
                let dn = self.dist(q, d.vector(n));
                if found.len() < ef || found.peek().is_some_and(|w| dn < w.d) {
                    cands.push(Reverse(Near { d: dn, id: n }));
                    if takes(n) {
                        found.push(Near { d: dn, id: n });
                        if found.len() > ef {
                            found.pop();
                        }
                    }
                }
            }
        }
        found.into_sorted_vec()
    }

    /// The `k` nearest nodes to `q` that `accept` takes, nearest first, as
    /// (id, distance, vector). An int8 graph measures the query's codes
    /// and returns decoded vectors: both approximate.
    pub fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32, Vec<f32>)> {
        let d = self.data.read().expect("graph lock");
        let Some(ep) = d.entry else { return Vec::new() };
        let q = self.encoding.encode(q);
        VISITED.with(|v| {
            let v = &mut *v.borrow_mut();
            let mut cur = vec![Near { d: self.dist(&q, d.vector(ep)), id: ep }];
            for layer in (1..=d.top).rev() {
                cur = self.search_layer(&d, &q, &cur, 1, layer, None, v);
            }
            let found = self.search_layer(&d, &q, &cur, ef.max(k), 0, accept, v);
            found.into_iter().take(k).map(|n| (n.id, n.d, self.encoding.decode(d.vector(n.id), d.dim))).collect()
        })
    }

    /// Whether node `id` holds `v` (its codes, in an int8 graph).
    pub fn same_vector(&self, id: u32, v: &[f32]) -> bool {
        let d = self.data.read().expect("graph lock");
        d.dim == v.len() && (id as usize) < d.len() && self.encoding.same(d.vector(id), &self.encoding.encode(v))
    }

    pub fn dim(&self) -> usize {
        self.data.read().expect("graph lock").dim
    }

    /// Calls `f` with every node's id and vector (decoded, in an int8
    /// graph), in id order.
    pub fn for_each(&self, mut f: impl FnMut(u32, &[f32])) {
        let d = self.data.read().expect("graph lock");
        let mut v = Vec::with_capacity(d.dim);
        for id in 0..d.len() as u32 {
            self.encoding.decode_into(d.vector(id), d.dim, &mut v);
            f(id, &v);
        }
    }

    /// Bytes held: vectors, layer-0 slots, levels and upper layers.
    pub fn bytes(&self) -> u64 {
        let d = self.data.read().expect("graph lock");
        let upper: usize = d.upper.iter().map(|u| 24 + u.iter().map(|l| 24 + 4 * l.capacity()).sum::<usize>()).sum();
        (4 * d.nodes.capacity() + d.levels.capacity() + upper) as u64
    }
}

/// The file form of a graph (little-endian): magic, then dim, m,
/// ef_construction (u32), the distance (u8 tag, f32 bound), the node count
/// n (u32), the entry point (u32, `u32::MAX` for none), the top layer (u8),
/// levels (n u8), layer-0 lengths (n u16), layer-0 slots (n × 2m u32),
/// vectors (n × dim f32; for an int8 graph n × (scale f32, squared norm
/// f32, dim int8 codes padded to 4 bytes)), then for every node of level >
/// 0 and each of its layers a length (u16) and the ids (u32). The magic
/// tells the encoding.
const MAGIC: &[u8; 8] = b"SYNHNSW1";
const MAGIC_INT8: &[u8; 8] = b"SYNHNSQ8";

impl Graph {
    pub fn write_to(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let d = self.data.read().expect("graph lock");
        w.write_all(match self.encoding {
            Encoding::F32 => MAGIC,
            Encoding::Int8 => MAGIC_INT8,
        })?;
        for x in [d.dim as u32, self.m as u32, self.ef_construction as u32] {
            w.write_all(&x.to_le_bytes())?;
        }
        let (tag, bound) = match self.distance {
            Distance::SquaredL2 => (0u8, 0f32),
            Distance::InnerProduct { bound } => (1, bound),
        };
        w.write_all(&[tag])?;
        w.write_all(&bound.to_le_bytes())?;
        w.write_all(&(d.len() as u32).to_le_bytes())?;
        w.write_all(&d.entry.unwrap_or(u32::MAX).to_le_bytes())?;
        w.write_all(&[d.top])?;
        w.write_all(&d.levels)?;
        let n = d.len() as u32;
        let stride = 1 + self.m0 + d.words;
        let blocks = || d.nodes.chunks_exact(stride);
        let mut buf = Vec::with_capacity(4 * d.nodes.len());
        buf.extend(blocks().flat_map(|b| (b[0] as u16).to_le_bytes()));
        w.write_all(&buf)?;
        buf.clear();
        buf.extend(blocks().flat_map(|b| b[1..1 + self.m0].iter().flat_map(|x| x.to_le_bytes())));
        w.write_all(&buf)?;
        buf.clear();
        buf.extend((0..n).flat_map(|id| d.vector(id).iter().flat_map(|x| x.to_le_bytes())));
        w.write_all(&buf)?;
        for layers in &d.upper {
            for l in layers {
                w.write_all(&(l.len() as u16).to_le_bytes())?;
                for id in l {
                    w.write_all(&id.to_le_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Reads what [`Graph::write_to`] wrote, checking every id and length,
    /// so a damaged file is refused instead of searched.
    pub fn read_from(r: &mut impl std::io::Read) -> std::io::Result<Graph> {
        use std::io::{Error, ErrorKind};
        let bad = |what: &str| Error::new(ErrorKind::InvalidData, format!("vector index file: {what}"));
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        let encoding = match &magic {
            m if m == MAGIC => Encoding::F32,
            m if m == MAGIC_INT8 => Encoding::Int8,
            _ => return Err(bad("not a graph")),
        };
        fn u32s(r: &mut impl std::io::Read, n: usize) -> std::io::Result<Vec<u32>> {
            let mut b = vec![0u8; 4 * n];
            r.read_exact(&mut b)?;
            Ok(b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        let head = u32s(r, 3)?;
        let (dim, m, ef_construction) = (head[0] as usize, head[1] as usize, head[2] as usize);
        if dim == 0 || dim > 65_536 || !(2..=128).contains(&m) {
            return Err(bad("dimension or m out of range"));
        }
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte)?;
        let bound = f32::from_bits(u32s(r, 1)?[0]);
        let distance = match byte[0] {
            0 => Distance::SquaredL2,
            1 if bound.is_finite() && bound > 0.0 => Distance::InnerProduct { bound },
            _ => return Err(bad("unknown distance")),
        };
        let nums = u32s(r, 2)?;
        let (n, entry) = (nums[0] as usize, nums[1]);
        if n.saturating_mul(dim + 2 * m) > 1 << 34 {
            return Err(bad("node count out of range"));
        }
        r.read_exact(&mut byte)?;
        let top = byte[0];
        let g = Graph::new(dim, m, ef_construction, distance, encoding);
        let (m0, words) = (g.m0, encoding.words(dim));
        let mut levels = vec![0u8; n];
        r.read_exact(&mut levels)?;
        let mut b = vec![0u8; 2 * n];
        r.read_exact(&mut b)?;
        let len0: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let links0 = u32s(r, n * m0)?;
        let vectors = u32s(r, n * words)?;
        let mut upper = Vec::with_capacity(n);
        for &level in &levels {
            if level > MAX_LEVEL {
                return Err(bad("level out of range"));
            }
            let mut layers = Vec::with_capacity(level as usize);
            for _ in 0..level {
                let mut lb = [0u8; 2];
                r.read_exact(&mut lb)?;
                let len = u16::from_le_bytes(lb) as usize;
                if len > m {
                    return Err(bad("too many links"));
                }
                layers.push(u32s(r, len)?);
            }
            upper.push(layers);
        }
        let in_range = |id: &u32| (*id as usize) < n;
        let entry = (entry != u32::MAX).then_some(entry);
        if len0.iter().any(|l| *l as usize > m0)
            || !links0.iter().all(in_range)
            || !upper.iter().flatten().flatten().all(in_range)
            || entry.is_some_and(|e| !in_range(&e) || levels[e as usize] != top)
            || (entry.is_none() && top != 0)
            || !vectors.chunks_exact(words).all(|w| encoding.valid(w))
        {
            return Err(bad("links, entry point or vectors out of range"));
        }
        let mut nodes = Vec::with_capacity(n * (1 + m0 + words));
        for i in 0..n {
            nodes.push(len0[i] as u32);
            nodes.extend_from_slice(&links0[i * m0..(i + 1) * m0]);
            nodes.extend_from_slice(&vectors[i * words..(i + 1) * words]);
        }
        *g.data.write().expect("graph lock") = Data { dim, m0, words, nodes, levels, upper, entry, top };
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|i| vec![(i % 37) as f32, (i / 37) as f32, ((i * 7) % 11) as f32]).collect()
    }

    #[test]
    fn finds_exact_neighbours_on_small_data_and_respects_the_filter() {
        let pts = grid(2_000);
        let g = Graph::new(3, 8, 64, Distance::SquaredL2, Encoding::F32);
        let first = g.reserve(&pts);
        assert_eq!(first, 0);
        for id in 0..pts.len() as u32 {
            g.link(id);
        }
        for (qi, q) in [vec![3.2f32, 10.0, 4.0], vec![30.0, 50.0, 0.0], vec![-5.0, -5.0, 20.0]].iter().enumerate() {
            let mut truth: Vec<(f32, u32)> =
                pts.iter().enumerate().map(|(i, p)| (squared_l2(q, p), i as u32)).collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got: Vec<f32> = g.search(q, 10, 2_000, None).iter().map(|h| h.1).collect();
            let want: Vec<f32> = truth.iter().take(10).map(|t| t.0).collect();
            assert_eq!(got, want, "query {qi}: an ef as large as the data is exact");
            let odd = |id: u32| id % 2 == 1;
            let got = g.search(q, 5, 2_000, Some(&odd));
            assert_eq!(got.len(), 5);
            assert!(got.iter().all(|h| h.0 % 2 == 1));
            let want: Vec<f32> = truth.iter().filter(|t| t.1 % 2 == 1).take(5).map(|t| t.0).collect();
            assert_eq!(got.iter().map(|h| h.1).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn a_written_graph_reads_back_the_same_and_a_damaged_one_is_refused() {
        let pts = grid(300);
        let g = Graph::new(3, 6, 32, Distance::InnerProduct { bound: 60.0 }, Encoding::F32);
        g.reserve(&pts);
        (0..300).for_each(|id| g.link(id));
        let mut file = Vec::new();
        g.write_to(&mut file).unwrap();
        let back = Graph::read_from(&mut file.as_slice()).unwrap();
        assert_eq!(back.distance(), g.distance());
        for q in [[1.0f32, 2.0, 3.0], [30.0, 5.0, 0.0]] {
            assert_eq!(back.search(&q, 5, 50, None), g.search(&q, 5, 50, None));
        }
        let mut again = Vec::new();
        back.write_to(&mut again).unwrap();
        assert_eq!(again, file, "a round trip is byte for byte");
        assert!(Graph::read_from(&mut &file[..file.len() - 3]).is_err(), "truncated");
        let mut bad = file.clone();
        let slots = 8 + 12 + 5 + 9 + 300 + 600; // header, levels, lengths: then layer-0 slots
        bad[slots..slots + 4].copy_from_slice(&9_999u32.to_le_bytes());
        assert!(Graph::read_from(&mut bad.as_slice()).is_err(), "a link past the end");
        assert!(Graph::read_from(&mut &b"SYNHNSW0"[..]).is_err());
    }

    /// Deterministic pseudo-random vectors around `centres` clusters, as
    /// real embeddings are (uniform noise is the case no index likes).
    fn clustered(n: usize, dim: usize, centres: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let cs: Vec<Vec<f32>> = (0..centres).map(|_| (0..dim).map(|_| next()).collect()).collect();
        (0..n).map(|i| cs[i % centres].iter().map(|c| c + 0.3 * next()).collect()).collect()
    }

    #[test]
    fn int8_codes_decode_within_half_a_step_and_measure_as_the_decoded_vectors() {
        let vs = clustered(50, 37, 5, 7);
        for (i, v) in vs.iter().enumerate() {
            let w = Encoding::Int8.encode(v);
            assert_eq!(w.len(), Encoding::Int8.words(37));
            let back = Encoding::Int8.decode(&w, 37);
            let step = v.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
            for (a, b) in v.iter().zip(&back) {
                assert!((a - b).abs() <= step / 2.0 + 1e-6, "vector {i}: {a} came back as {b}");
            }
            let other = &vs[(i + 1) % vs.len()];
            let ob = Encoding::Int8.decode(&Encoding::Int8.encode(other), 37);
            for distance in [Distance::SquaredL2, Distance::InnerProduct { bound: 10.0 }] {
                let g = Graph::new(37, 4, 8, distance, Encoding::Int8);
                let got = g.dist(&w, &Encoding::Int8.encode(other));
                let want = distance.eval(&back, &ob);
                assert!((got - want).abs() <= 1e-3 * want.max(1.0), "{distance:?}: {got} where {want}");
            }
        }
        // A zero vector has no scale: codes 0, distances still defined.
        let zero = Encoding::Int8.encode(&[0.0; 5]);
        assert_eq!(Encoding::Int8.decode(&zero, 5), vec![0.0; 5]);
        let g = Graph::new(5, 4, 8, Distance::SquaredL2, Encoding::Int8);
        let v = Encoding::Int8.encode(&[3.0, 0.0, 0.0, 0.0, 4.0]);
        let norm2: f32 = Encoding::Int8.decode(&v, 5).iter().map(|x| x * x).sum();
        assert_eq!(g.dist(&zero, &v), norm2);
        assert!((norm2 - 25.0).abs() < 0.1, "{norm2}");
    }

    #[test]
    fn an_int8_graph_finds_nearly_what_an_f32_graph_finds_in_a_third_of_the_memory() {
        let (dim, n) = (192, 3_000);
        let pts = clustered(n, dim, 40, 11);
        let queries = clustered(100, dim, 40, 12);
        let build = |e: Encoding| {
            let g = Graph::new(dim, 8, 100, Distance::SquaredL2, e);
            g.reserve(&pts);
            g.link_all(0..n as u32, 2);
            g
        };
        let (f, q) = (build(Encoding::F32), build(Encoding::Int8));
        let (mut f_hits, mut q_hits, mut q_rescored) = (0, 0, 0);
        for query in &queries {
            let mut truth: Vec<(f32, u32)> =
                pts.iter().enumerate().map(|(i, p)| (squared_l2(query, p), i as u32)).collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: Vec<u32> = truth.iter().take(10).map(|t| t.1).collect();
            let count = |ids: Vec<u32>| ids.iter().filter(|i| truth.contains(i)).count();
            f_hits += count(f.search(query, 10, 64, None).iter().map(|h| h.0).collect());
            q_hits += count(q.search(query, 10, 64, None).iter().map(|h| h.0).collect());
            // Rescored with the exact vectors, as the index does.
            let mut cands: Vec<(f32, u32)> =
                q.search(query, 30, 64, None).iter().map(|h| (squared_l2(query, &pts[h.0 as usize]), h.0)).collect();
            cands.sort_by(|a, b| a.0.total_cmp(&b.0));
            q_rescored += count(cands.iter().take(10).map(|c| c.1).collect());
        }
        let recall = |h: usize| h as f64 / (10 * queries.len()) as f64;
        let (f_r, q_r, qr_r) = (recall(f_hits), recall(q_hits), recall(q_rescored));
        assert!(f_r > 0.9, "the f32 graph's recall@10 is {f_r}");
        assert!(q_r > 0.8, "int8 without rescoring: {q_r}");
        assert!(qr_r >= f_r - 0.01, "int8 rescored {qr_r} against f32 {f_r}");
        let ratio = q.bytes() as f64 / f.bytes() as f64;
        // 192 components: 50 words for the codes where f32 takes 192, beside 17 of links.
        assert!(ratio < 0.4, "int8 holds {} bytes, f32 {}: {ratio}", q.bytes(), f.bytes());
    }

    #[test]
    fn an_int8_graph_reads_back_the_same_and_is_not_read_as_f32() {
        let pts = clustered(400, 20, 8, 3);
        let g = Graph::new(20, 6, 32, Distance::SquaredL2, Encoding::Int8);
        g.reserve(&pts);
        g.link_all(0..400, 1);
        let mut file = Vec::new();
        g.write_to(&mut file).unwrap();
        assert_eq!(&file[..8], MAGIC_INT8);
        let back = Graph::read_from(&mut file.as_slice()).unwrap();
        assert_eq!(back.encoding(), Encoding::Int8);
        assert!(back.same_vector(17, &pts[17]));
        assert!(!back.same_vector(17, &pts[18]));
        // A graph built again from decoded vectors (compaction) still holds
        // the originals: every node's codes come back the same.
        let again = Graph::new(20, 6, 32, Distance::SquaredL2, Encoding::Int8);
        let mut decoded = Vec::new();
        g.for_each(|_, v| decoded.push(v.to_vec()));
        again.reserve(&decoded);
        assert!((0..400).all(|i| again.same_vector(i, &pts[i as usize])), "decoded and coded again");
        for q in &pts[..5] {
            assert_eq!(back.search(q, 5, 50, None), g.search(q, 5, 50, None));
        }
        let mut again = Vec::new();
        back.write_to(&mut again).unwrap();
        assert_eq!(again, file);
    }

    #[test]
    fn levels_are_geometric_and_the_same_for_the_same_id() {
        let scale = 1.0 / 16f64.ln();
        let n = 100_000;
        let above: usize = (0..n).filter(|i| level_of(*i, scale) >= 1).count();
        assert!((5_000..7_500).contains(&above), "about 1 in 16 nodes has layer 1: {above}");
        assert_eq!(level_of(12_345, scale), level_of(12_345, scale));
    }

    #[test]
    fn an_empty_graph_answers_nothing_and_parallel_links_connect_everyone() {
        let g = Graph::new(2, 4, 16, Distance::SquaredL2, Encoding::F32);
        assert!(g.search(&[0.0, 0.0], 3, 10, None).is_empty());
        let pts: Vec<Vec<f32>> = (0..500).map(|i| vec![i as f32, (i % 7) as f32]).collect();
        g.reserve(&pts);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let g = &g;
                s.spawn(move || (0..500u32).filter(|i| i % 2 == t).for_each(|i| g.link(i)));
            }
        });
        for i in (0..500).step_by(50) {
            let hit = g.search(&pts[i], 1, 64, None);
            assert_eq!(hit[0].1, 0.0, "point {i} is reachable");
        }
    }
}
