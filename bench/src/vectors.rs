//! `synod-bench vectors`: the HNSW index measured directly (build time,
//! memory, recall@10 and QPS at several ef, rebuild after reopen), then the
//! same queries through REST and gRPC of one node, so the API overhead per
//! query is visible. Seeded data; `--save` writes it for hnswlib.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message;
use serde_json::{Value, json};
use synod_store::pb::{self, Metric, command::Kind};
use synod_store::vector_index::Query;
use synod_store::vector_search::{exact_search, random_vectors};
use synod_store::vectors::encode_vector;
use synod_store::{ApplyEntry, Store, StoreOptions};

use crate::cluster::percentile;
use synod_api::service::vector_form::encode;

pub struct Params {
    pub n: usize,
    pub dim: usize,
    pub metric: String,
    pub queries: usize,
    pub ef: Vec<usize>,
    pub save: Option<PathBuf>,
    pub index_only: bool,
    pub dir: Option<PathBuf>,
    /// A saved data set (`--save`, or `synod-bench embed-set`) instead of
    /// random vectors: `n` and `queries` come from its files.
    pub data: Option<PathBuf>,
    /// none or int8.
    pub quantization: String,
}

const K: usize = 10;
/// The collection that measures API overhead, and its ef.
const SMALL: usize = 1000;
const SMALL_EF: usize = 64;
const BATCH: usize = 1000;
/// Points per REST upsert: 400 vectors of up to 1024 floats in the base64
/// form stay under the default `node.max_body_size` (2 MiB).
const REST_BATCH: usize = 400;
/// Queries per request of the batch endpoint.
const BATCH_QUERIES: usize = 100;

fn quantization(s: &str) -> anyhow::Result<pb::Quantization> {
    Ok(match s {
        "none" => pb::Quantization::None,
        "int8" => pb::Quantization::Int8,
        other => anyhow::bail!("unknown quantization {other:?} (none or int8)"),
    })
}

fn metric(s: &str) -> anyhow::Result<Metric> {
    Ok(match s {
        "cosine" => Metric::Cosine,
        "l2" => Metric::L2,
        "dot" => Metric::Dot,
        other => anyhow::bail!("unknown metric {other:?} (cosine, l2 or dot)"),
    })
}

/// Waits until the node at `url` has every point of every collection in a
/// graph (its `synod_vector_index_growing_points` is 0).
pub(crate) async fn wait_indexed(
    c: &synod_testkit::LocalCluster,
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<()> {
    c.wait_for("the node's index to hold every point", Duration::from_secs(3600), || {
        let (http, url) = (http.clone(), url.to_string());
        async move {
            let text = http.get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
            let growing = text
                .lines()
                .find(|l| l.starts_with("synod_vector_index_growing_points "))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()?;
            (growing == 0.0).then_some(())
        }
    })
    .await?;
    Ok(())
}

/// This process's resident memory, from /proc (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Exact top-K ids (as `u64`) of every query, on both cores.
pub(crate) fn truth(m: Metric, base: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<Vec<u64>> {
    let ids: Vec<String> = (0..base.len()).map(|i| i.to_string()).collect();
    let meta = Value::Null;
    let one = |q: &Vec<f32>| -> Vec<u64> {
        let cands = ids.iter().zip(base).map(|(i, v)| (i.as_str(), v.as_slice(), &meta));
        exact_search(m, q, K, None, cands).into_iter().filter_map(|h| h.id.parse().ok()).collect()
    };
    let half = queries.len() / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| queries[..half].iter().map(one).collect::<Vec<_>>());
        let mut out = queries[half..].iter().map(one).collect::<Vec<_>>();
        let mut first = a.join().expect("truth thread");
        first.append(&mut out);
        first
    })
}

fn recall(truth: &[Vec<u64>], got: &[Vec<u64>]) -> f64 {
    let found: usize = truth.iter().zip(got).map(|(t, g)| g.iter().filter(|x| t.contains(x)).count()).sum();
    found as f64 / (K * truth.len()) as f64
}

/// A data set [`save`] wrote: base vectors, queries, and the true top K.
#[allow(clippy::type_complexity)]
fn load(dir: &Path, dim: usize) -> anyhow::Result<(Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<u64>>)> {
    let words = |name: &str| -> anyhow::Result<Vec<[u8; 4]>> {
        let bytes = std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))?;
        let (words, rest) = bytes.as_chunks::<4>();
        anyhow::ensure!(rest.is_empty(), "{name}: not a whole number of 4-byte words");
        Ok(words.to_vec())
    };
    let rows = |name: &str| -> anyhow::Result<Vec<Vec<f32>>> {
        let w = words(name)?;
        anyhow::ensure!(w.len() % dim == 0, "{name}: not a whole number of {dim}-d rows (--dim)");
        Ok(w.chunks(dim).map(|r| r.iter().map(|b| f32::from_le_bytes(*b)).collect()).collect())
    };
    let (base, queries) = (rows("base.f32")?, rows("queries.f32")?);
    let truth: Vec<Vec<u64>> =
        words("truth.u32")?.chunks(K).map(|r| r.iter().map(|b| u64::from(u32::from_le_bytes(*b))).collect()).collect();
    anyhow::ensure!(truth.len() == queries.len(), "truth.u32 has {} rows for {} queries", truth.len(), queries.len());
    println!("loaded {} base vectors and {} queries of {dim}-d from {}", base.len(), queries.len(), dir.display());
    Ok((base, queries, truth))
}

pub(crate) fn save(dir: &Path, base: &[Vec<f32>], queries: &[Vec<f32>], truth: &[Vec<u64>]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let floats = |name: &str, rows: &[Vec<f32>]| -> anyhow::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(name))?);
        for r in rows {
            for x in r {
                f.write_all(&x.to_le_bytes())?;
            }
        }
        Ok(f.flush()?)
    };
    floats("base.f32", base)?;
    floats("queries.f32", queries)?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("truth.u32"))?);
    for r in truth {
        for x in r {
            f.write_all(&(*x as u32).to_le_bytes())?;
        }
    }
    f.flush()?;
    println!(
        "saved base.f32 ({} x {}), queries.f32, truth.u32 (top {K}) in {}",
        base.len(),
        base[0].len(),
        dir.display()
    );
    Ok(())
}

fn upsert_command(collection: &str, i0: usize, rows: &[Vec<f32>]) -> Vec<u8> {
    let points = rows
        .iter()
        .enumerate()
        .map(|(j, v)| pb::Point {
            id: (i0 + j).to_string(),
            numeric_id: true,
            vector: encode_vector(v),
            ..Default::default()
        })
        .collect();
    let kind = Kind::UpsertPoints(pb::UpsertPoints {
        tenant: "bench".into(),
        collection: collection.into(),
        points,
        max_vectors: 0,
        max_storage_bytes: 0,
    });
    pb::Command { format_version: 1, stamped_at_ms: 1, kind: Some(kind) }.encode_to_vec()
}

fn apply_one(store: &Store, index: u64, cmd: &[u8]) -> anyhow::Result<()> {
    let log_id = format!("bench-{index}").into_bytes();
    store.apply(&[ApplyEntry { index, log_id: &log_id, membership: None, command: Some(cmd) }])?;
    Ok(())
}

/// Batches applied while another thread searches without pause, against
/// the same batches with no search: apply() must not wait for searches
/// (issue 13, defect 6). The searches carry a filter no point matches, so
/// each one scans the whole collection, the longest search there is.
fn apply_while_searched(
    store: &Store,
    index: &synod_store::vector_index::CollectionIndex,
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    at: &mut u64,
) -> anyhow::Result<()> {
    const ROUNDS: usize = 20;
    let filter: synod_store::vector_search::Filter =
        serde_json::from_value(json!({"must": [{"key": "bench-none", "match": "x"}]}))?;
    let batches: Vec<&[Vec<f32>]> = base.chunks(BATCH).take(ROUNDS).collect();
    let apply_all = |at: &mut u64| -> anyhow::Result<Vec<f64>> {
        let mut lat = Vec::new();
        for (b, chunk) in batches.iter().enumerate() {
            *at += 1;
            let cmd = upsert_command("b", b * BATCH, chunk);
            let s = Instant::now();
            apply_one(store, *at, &cmd)?;
            lat.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        Ok(lat)
    };
    let alone = apply_all(at)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (searched, busy) = std::thread::scope(|s| {
        let searcher = s.spawn(|| {
            let mut lat = Vec::new();
            for q in queries.iter().cycle() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                std::hint::black_box(index.search(&Query { vector: q, k: K, ef: 64, filter: Some(&filter) }));
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat.sort_by(f64::total_cmp);
            lat
        });
        let busy = apply_all(at);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (searcher.join().expect("the search thread"), busy)
    });
    let busy = busy?;
    let max = |v: &[f64]| v.last().copied().unwrap_or(0.0);
    println!(
        "apply of {ROUNDS} batches of {BATCH} points: alone p50 {:.1} ms, max {:.1} ms; during full-scan searches \
         (p50 {:.1} ms, max {:.1} ms, {} of them) p50 {:.1} ms, max {:.1} ms",
        percentile(&alone, 0.5),
        max(&alone),
        percentile(&searched, 0.5),
        max(&searched),
        searched.len(),
        percentile(&busy, 0.5),
        max(&busy),
    );
    Ok(())
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    let m = metric(&p.metric)?;
    let q8 = quantization(&p.quantization)?;
    let cfg = synod_config::VectorDbConfig::default();
    let (base, queries, truth) = match &p.data {
        Some(dir) => load(dir, p.dim)?,
        None => {
            let base = random_vectors(p.n, p.dim, 7);
            let queries = random_vectors(p.queries, p.dim, 99);
            let t = Instant::now();
            let truth = truth(m, &base, &queries);
            println!("exact search of {} queries: {:.1} ms/query (brute force, 2 threads)", p.queries, {
                t.elapsed().as_secs_f64() * 1000.0 / p.queries as f64
            });
            (base, queries, truth)
        }
    };
    println!(
        "vectors: n {} dim {} metric {} m {} ef_construction {} ({} cores)",
        base.len(),
        p.dim,
        p.metric,
        cfg.hnsw_m,
        cfg.hnsw_ef_construction,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let Some(dir) = &p.save {
        save(dir, &base, &queries, &truth)?;
    }
    let (root, _guard) = crate::work_dir(p.dir.clone())?;

    // 1. The index directly.
    let opts = StoreOptions {
        fsync: false,
        vector_index: synod_store::vector_index::IndexOptions {
            segment_size: cfg.segment_size,
            compaction_tombstone_ratio: cfg.compaction_tombstone_ratio,
        },
        ..Default::default()
    };
    let direct_dir = root.join("direct");
    let rss0 = rss_bytes();
    let store = Store::open(&direct_dir, &opts)?;
    let create = |name: &str| {
        Kind::CreateCollection(pb::CreateCollection {
            collection: Some(pb::CollectionRecord {
                tenant: "bench".into(),
                name: name.into(),
                dimension: p.dim as u32,
                metric: m as i32,
                hnsw: Some(pb::HnswParams {
                    m: cfg.hnsw_m as u32,
                    ef_construction: cfg.hnsw_ef_construction as u32,
                    ef: cfg.hnsw_ef as u32,
                    quantization: q8 as i32,
                }),
                ..Default::default()
            }),
        })
    };
    let command = |kind: Kind| pb::Command { format_version: 1, stamped_at_ms: 1, kind: Some(kind) }.encode_to_vec();
    apply_one(&store, 1, &command(create("b")))?;
    let t = Instant::now();
    for (b, chunk) in base.chunks(BATCH).enumerate() {
        apply_one(&store, 2 + b as u64, &upsert_command("b", b * BATCH, chunk))?;
    }
    let applied = t.elapsed();
    anyhow::ensure!(store.vector_index().wait_idle(Duration::from_secs(3600)), "the index did not finish building");
    let build = t.elapsed();
    let stats = store.vector_index().stats();
    println!(
        "index build: {:.1} s for {} points ({:.0} points/s; applying took {:.1} s), {} segment(s)",
        build.as_secs_f64(),
        stats.points,
        stats.points as f64 / build.as_secs_f64(),
        applied.as_secs_f64(),
        stats.segments
    );
    println!(
        "index memory: {:.0} MiB estimated ({:.0} MiB per million vectors); process RSS grew {:.0} MiB (RocksDB included)",
        mib(stats.bytes),
        mib(stats.bytes) * 1e6 / stats.points.max(1) as f64,
        mib(rss_bytes().saturating_sub(rss0))
    );
    let coll = store.get_collection("bench", "b")?.context("the bench collection")?;
    let index = store.vector_index().get(coll.uid).context("the bench index")?;
    let mut direct_p50 = Vec::new();
    for &ef in &p.ef {
        let mut lat = Vec::with_capacity(queries.len());
        let mut got = Vec::with_capacity(queries.len());
        let t = Instant::now();
        for q in &queries {
            let s = Instant::now();
            let hits = index.search(&Query { vector: q, k: K, ef, filter: None });
            lat.push(s.elapsed().as_secs_f64() * 1e6);
            got.push(hits.iter().filter_map(|h| h.key.strip_prefix("u:")?.parse().ok()).collect::<Vec<u64>>());
        }
        let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        direct_p50.push(percentile(&lat, 0.5));
        println!(
            "index   ef {ef:>4}: recall@10 {:.4}, {qps:>7.0} QPS (1 thread), p50 {:.0} us, p99 {:.0} us",
            recall(&truth, &got),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    // A small collection: its search takes microseconds, so the REST and
    // gRPC latencies on it below show what the API adds per query.
    let mut at = 2 + base.len().div_ceil(BATCH) as u64;
    apply_while_searched(&store, &index, &base, &queries, &mut at)?;
    let small = &base[..SMALL.min(base.len())];
    apply_one(&store, at, &command(create("small")))?;
    for (b, chunk) in small.chunks(BATCH).enumerate() {
        at += 1;
        apply_one(&store, at, &upsert_command("small", b * BATCH, chunk))?;
    }
    anyhow::ensure!(store.vector_index().wait_idle(Duration::from_secs(600)), "the small index");
    let small_coll = store.get_collection("bench", "small")?.context("the small collection")?;
    let small_index = store.vector_index().get(small_coll.uid).context("the small index")?;
    let mut lat: Vec<f64> = queries
        .iter()
        .map(|q| {
            let s = Instant::now();
            std::hint::black_box(small_index.search(&Query { vector: q, k: K, ef: SMALL_EF, filter: None }));
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let small_direct = percentile(&lat, 0.5);
    println!("index   {SMALL} points, ef {SMALL_EF}: p50 {small_direct:.0} us (for the API overhead below)");
    drop(small_index);
    drop(index);
    let t = Instant::now();
    let written = store.vector_index().persist_now()?;
    println!("index write-out: {written} segment file(s) in {:.2} s", t.elapsed().as_secs_f64());
    drop(store);
    // Restart with the files (reload), then without them (rebuild).
    for reload in [true, false] {
        if !reload {
            std::fs::remove_dir_all(direct_dir.join("vector-index"))?;
        }
        let t = Instant::now();
        let store = Store::open(&direct_dir, &opts)?;
        let opened = t.elapsed();
        anyhow::ensure!(store.vector_index().wait_idle(Duration::from_secs(3600)), "the rebuild did not finish");
        let coll = store.get_collection("bench", "b")?.context("the bench collection")?;
        let index = store.vector_index().get(coll.uid).context("the bench index")?;
        let got: Vec<Vec<u64>> = queries
            .iter()
            .map(|q| {
                let hits = index.search(&Query { vector: q, k: K, ef: cfg.hnsw_ef, filter: None });
                hits.iter().filter_map(|h| h.key.strip_prefix("u:")?.parse().ok()).collect()
            })
            .collect();
        println!(
            "restart {}: open {:.2} s, every graph ready after {:.2} s, recall@10 at ef {} then {:.4}",
            if reload { "reloading the segment files" } else { "rebuilding (no files)" },
            opened.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            cfg.hnsw_ef,
            recall(&truth, &got)
        );
    }
    if p.index_only {
        return Ok(());
    }

    // 2. The same through one node's REST and gRPC.
    let mut c = crate::local_cluster(&root.join("cluster"))?;
    c.add_node(None, &[])?;
    c.wait_ready(0, Duration::from_secs(30)).await?;
    let http = c.client_builder()?.timeout(Duration::from_secs(60)).build()?;
    let url = c.nodes[0].url();
    let body = json!({"name": "b", "dimension": p.dim, "metric": p.metric, "hnsw": {"quantization": p.quantization}});
    let r = http.post(format!("{url}/collections")).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "create collection: {}", r.text().await?);
    let t = Instant::now();
    for (b, chunk) in base.chunks(REST_BATCH).enumerate() {
        let points: Vec<Value> =
            chunk.iter().enumerate().map(|(j, v)| json!({"id": b * REST_BATCH + j, "vector": encode(v)})).collect();
        let r = http.post(format!("{url}/collections/b/points")).json(&json!({"points": points})).send().await?;
        anyhow::ensure!(r.status().is_success(), "upsert: {}", r.text().await?);
    }
    let ingest = t.elapsed();
    wait_indexed(&c, &http, &url).await?;
    println!(
        "REST ingest: {} points in {:.1} s ({:.0} points/s, batches of {REST_BATCH}, 1 client, through Raft with fsync); indexed after {:.1} s",
        base.len(),
        ingest.as_secs_f64(),
        base.len() as f64 / ingest.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let body =
        json!({"name": "small", "dimension": p.dim, "metric": p.metric, "hnsw": {"quantization": p.quantization}});
    let r = http.post(format!("{url}/collections")).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "create collection: {}", r.text().await?);
    for (b, chunk) in small.chunks(REST_BATCH).enumerate() {
        let points: Vec<Value> =
            chunk.iter().enumerate().map(|(j, v)| json!({"id": b * REST_BATCH + j, "vector": encode(v)})).collect();
        let r = http.post(format!("{url}/collections/small/points")).json(&json!({"points": points})).send().await?;
        anyhow::ensure!(r.status().is_success(), "upsert: {}", r.text().await?);
    }
    wait_indexed(&c, &http, &url).await?;
    // The query loops run on a thread of their own with a single-thread
    // runtime, as one client process's loop would, over one HTTP/1.1
    // connection of hyper's ([`Lean`]): per-call costs of the bench's
    // client are on Synod's side only, and hnswlib has none.
    let wire = Wire {
        url: &url,
        grpc: &c.nodes[0].grpc,
        token: &c.admin_token,
        ef: &p.ef,
        queries: &queries,
        truth: &truth,
        direct_p50: &direct_p50,
        small_direct,
    };
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(over_the_wire(wire))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the query thread panicked")))
        })
    })?;
    let text = http.get(format!("{url}/metrics")).send().await?.text().await?;
    for l in text.lines().filter(|l| l.starts_with("synod_vector_index_bytes")) {
        println!("node metric: {l}");
    }
    Ok(())
}

/// What the query loops over the wire need.
struct Wire<'a> {
    url: &'a str,
    grpc: &'a str,
    token: &'a str,
    ef: &'a [usize],
    queries: &'a [Vec<f32>],
    truth: &'a [Vec<u64>],
    direct_p50: &'a [f64],
    small_direct: f64,
}

/// Every query of the bench through one node's REST and gRPC, then the
/// small collection's against `GET /health` on the same connection.
async fn over_the_wire(w: Wire<'_>) -> anyhow::Result<()> {
    let Wire { url, grpc, token, ef: efs, queries, truth, direct_p50, small_direct } = w;
    let mut http = Lean::connect(url, token).await?;
    let mut grpc = lean_grpc(grpc, token).await?;
    for (i, &ef) in efs.iter().enumerate() {
        let (mut lat, mut got) = (Vec::new(), Vec::new());
        let t = Instant::now();
        for q in queries {
            let s = Instant::now();
            let body = json!({"collection": "b", "vector": q, "top_k": K, "ef": ef, "consistency": "local"});
            let v = http.post("/vector/search", &body).await?;
            lat.push(s.elapsed().as_secs_f64() * 1e6);
            let ids = v["results"].as_array().context("search results")?.iter().filter_map(|h| h["id"].as_u64());
            got.push(ids.collect::<Vec<u64>>());
        }
        let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        let rest_p50 = percentile(&lat, 0.5);
        let rest_recall = recall(truth, &got);
        let (mut glat, mut ggot) = (Vec::new(), Vec::new());
        let gt = Instant::now();
        for q in queries {
            let s = Instant::now();
            let req = synod_api::pb::SearchRequest {
                collection: "b".into(),
                vector: q.clone(),
                top_k: K as u32,
                ef: ef as u32,
                consistency: "local".into(),
                ..Default::default()
            };
            let reply = grpc.search(req).await?.into_inner();
            glat.push(s.elapsed().as_secs_f64() * 1e6);
            ggot.push(reply.results.iter().filter_map(|h| h.id.as_ref()?.id.parse().ok()).collect::<Vec<u64>>());
        }
        let gqps = queries.len() as f64 / gt.elapsed().as_secs_f64();
        glat.sort_by(f64::total_cmp);
        let grpc_p50 = percentile(&glat, 0.5);
        println!(
            "REST    ef {ef:>4}: recall@10 {rest_recall:.4}, {qps:>7.0} QPS (1 client), p50 {rest_p50:.0} us (index in process: {:.0} us)",
            direct_p50[i]
        );
        println!(
            "gRPC    ef {ef:>4}: recall@10 {:.4}, {gqps:>7.0} QPS (1 client), p50 {grpc_p50:.0} us",
            recall(truth, &ggot)
        );
        // The compact form on the same connection, then the batch endpoint
        // with the whole query matrix in requests of BATCH_QUERIES.
        let (mut blat, mut bgot) = (Vec::new(), Vec::new());
        let bt = Instant::now();
        for q in queries {
            let s = Instant::now();
            let body = json!({"collection": "b", "vector": encode(q), "top_k": K, "ef": ef, "consistency": "local"});
            let v = http.post("/vector/search", &body).await?;
            blat.push(s.elapsed().as_secs_f64() * 1e6);
            let ids = v["results"].as_array().context("search results")?.iter().filter_map(|h| h["id"].as_u64());
            bgot.push(ids.collect::<Vec<u64>>());
        }
        let bqps = queries.len() as f64 / bt.elapsed().as_secs_f64();
        blat.sort_by(f64::total_cmp);
        println!(
            "REST64  ef {ef:>4}: recall@10 {:.4}, {bqps:>7.0} QPS (1 client, base64 vectors), p50 {:.0} us",
            recall(truth, &bgot),
            percentile(&blat, 0.5)
        );
        let mut mgot = Vec::new();
        let mt = Instant::now();
        for chunk in queries.chunks(BATCH_QUERIES) {
            let qs: Vec<Value> = chunk.iter().map(|q| json!({"vector": encode(q), "top_k": K, "ef": ef})).collect();
            let body = json!({"collection": "b", "queries": qs, "consistency": "local"});
            let v = http.post("/vector/search/batch", &body).await?;
            for list in v["results"].as_array().context("batch search results")? {
                let ids = list.as_array().context("one query's hits")?.iter().filter_map(|h| h["id"].as_u64());
                mgot.push(ids.collect::<Vec<u64>>());
            }
        }
        println!(
            "batch   ef {ef:>4}: recall@10 {:.4}, {:>7.0} QPS (1 client, {BATCH_QUERIES} queries per request, base64 vectors)",
            recall(truth, &mgot),
            queries.len() as f64 / mt.elapsed().as_secs_f64()
        );
    }
    // API overhead: the same queries on the small collection.
    let (mut rest, mut grpc_lat, mut health) = (Vec::new(), Vec::new(), Vec::new());
    for q in queries {
        // The cheapest request on the same connection, for what a search
        // adds over the HTTP round trip itself.
        let s = Instant::now();
        http.get("/health").await?;
        health.push(s.elapsed().as_secs_f64() * 1e6);
        let s = Instant::now();
        let body = json!({"collection": "small", "vector": q, "top_k": K, "ef": SMALL_EF, "consistency": "local"});
        http.post("/vector/search", &body).await?;
        rest.push(s.elapsed().as_secs_f64() * 1e6);
        let s = Instant::now();
        let req = synod_api::pb::SearchRequest {
            collection: "small".into(),
            vector: q.clone(),
            top_k: K as u32,
            ef: SMALL_EF as u32,
            consistency: "local".into(),
            ..Default::default()
        };
        grpc.search(req).await?;
        grpc_lat.push(s.elapsed().as_secs_f64() * 1e6);
    }
    rest.sort_by(f64::total_cmp);
    grpc_lat.sort_by(f64::total_cmp);
    health.sort_by(f64::total_cmp);
    let (rest_p50, grpc_p50, health_p50) =
        (percentile(&rest, 0.5), percentile(&grpc_lat, 0.5), percentile(&health, 0.5));
    println!(
        "API overhead per query ({SMALL} points, ef {SMALL_EF}, 1 client, token checked): REST p50 {rest_p50:.0} us, gRPC p50 {grpc_p50:.0} us; the index alone {small_direct:.0} us: +{:.0} us REST, +{:.0} us gRPC",
        rest_p50 - small_direct,
        grpc_p50 - small_direct
    );
    println!(
        "small search over REST p50 {rest_p50:.0} us, GET /health p50 {health_p50:.0} us on the same connection: +{:.0} us above /health",
        rest_p50 - health_p50
    );
    Ok(())
}

/// One HTTP/1.1 connection of hyper's, with the bench's token: the REST
/// side of the search comparison. reqwest's pooled client cost about
/// 75 us more per call on the 2-core machine (a `GET /health` in 112-129
/// us against 41-54 us on one connection of hyper's, same runtime), a
/// cost of the bench's client, not of the node, that hnswlib in process
/// does not pay.
struct Lean {
    send: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    host: http::HeaderValue,
    auth: http::HeaderValue,
}

impl Lean {
    async fn connect(url: &str, token: &str) -> anyhow::Result<Lean> {
        let addr = url.strip_prefix("http://").context("the bench's node serves plain HTTP")?;
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Lean { send, host: addr.parse()?, auth: format!("Bearer {token}").parse()? })
    }

    async fn call(&mut self, method: http::Method, path: &str, body: Option<&Value>) -> anyhow::Result<bytes::Bytes> {
        use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
        use http_body_util::BodyExt;
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.auth.clone());
        let bytes = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                serde_json::to_vec(b)?
            }
            None => Vec::new(),
        };
        self.send.ready().await?;
        let resp = self.send.send_request(req.body(http_body_util::Full::new(bytes.into()))?).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status.is_success(), "{path}: {status} {}", String::from_utf8_lossy(&body));
        Ok(body)
    }

    async fn post(&mut self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.call(http::Method::POST, path, Some(body)).await?)?)
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<()> {
        self.call(http::Method::GET, path, None).await.map(drop)
    }
}

/// The gRPC side's connection: one HTTP/2 connection of hyper's under the
/// generated client, without tonic's `Channel` (a buffer task between
/// the caller and the connection, one more hand-off per call), for the
/// same reason as [`Lean`].
async fn lean_grpc(
    addr: &str,
    token: &str,
) -> anyhow::Result<
    synod_api::pb::vectors_client::VectorsClient<
        tonic::service::interceptor::InterceptedService<
            impl tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<hyper::body::Incoming>,
                Error = hyper::Error,
                Future = impl Send,
            > + Clone,
            impl tonic::service::Interceptor,
        >,
    >,
> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    let service = tower::service_fn(move |req: http::Request<tonic::body::Body>| {
        let mut send = send.clone();
        async move { send.send_request(req).await }
    });
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let intercepted =
        tonic::service::interceptor::InterceptedService::new(service, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        });
    Ok(synod_api::pb::vectors_client::VectorsClient::with_origin(intercepted, format!("http://{addr}").parse()?))
}
