//! `synod-bench embed`: the built-in embedding model in this process, as a
//! node runs it: sentences per second at batch 1 and batch 32, latency
//! percentiles, and the resident memory the model adds.
//!
//! `bench/embed_compare.py` runs this and sentence-transformers on the same
//! sentences, on the same machine, back to back, and prints both.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use crate::cluster::percentile;

pub struct Params {
    pub models_dir: PathBuf,
    pub model: String,
    /// One sentence per line; default: 512 generated sentences.
    pub sentences: Option<PathBuf>,
    /// Sentences timed one at a time (the first ones of the set).
    pub single: usize,
    pub json: bool,
}

pub fn run(p: Params) -> anyhow::Result<()> {
    let sentences = match &p.sentences {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect(),
        None => generated(512),
    };
    anyhow::ensure!(!sentences.is_empty(), "no sentences to embed");
    let rss_before = rss_bytes();
    let started = Instant::now();
    let model = synod_plugins::EmbeddingModel::load(&p.models_dir.join(&p.model))
        .with_context(|| format!("loading {} from {}", p.model, p.models_dir.display()))?;
    let load_s = started.elapsed().as_secs_f64();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    // Warm up: the allocator's arenas and the first-touch of the weights.
    model.embed(&texts[..texts.len().min(64)])?;

    let single = &texts[..p.single.min(texts.len())];
    let mut one = Vec::with_capacity(single.len());
    let t = Instant::now();
    for s in single {
        let t = Instant::now();
        model.embed(&[s])?;
        one.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let one_rate = single.len() as f64 / t.elapsed().as_secs_f64();
    one.sort_by(f64::total_cmp);

    // Batches of 32 in submission order, as a client sends them; the model
    // sorts each by length (sentence-transformers' encode(batch_size=32)
    // sorts the whole list first, a small advantage it keeps here).
    let mut batch = Vec::new();
    let t = Instant::now();
    for chunk in texts.chunks(32) {
        let t = Instant::now();
        model.embed(chunk)?;
        batch.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let batch_rate = texts.len() as f64 / t.elapsed().as_secs_f64();
    batch.sort_by(f64::total_cmp);
    let rss_after = rss_bytes();
    let out = json!({
        "engine": "synod (candle)",
        "model": p.model,
        "sentences": texts.len(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "load_s": load_s,
        "batch1": {"sentences_per_s": one_rate, "p50_ms": percentile(&one, 0.5), "p99_ms": percentile(&one, 0.99), "n": one.len()},
        "batch32": {"sentences_per_s": batch_rate, "p50_ms": percentile(&batch, 0.5), "p99_ms": percentile(&batch, 0.99), "batches": batch.len()},
        "rss_before_mib": rss_before as f64 / 1048576.0,
        "rss_after_mib": rss_after as f64 / 1048576.0,
        "model_rss_mib": rss_after.saturating_sub(rss_before) as f64 / 1048576.0,
    });
    if p.json {
        println!("{out}");
    } else {
        println!(
            "{} on {} sentences, {} threads (load {:.2} s)\n  batch 1:  {:>7.1} sentences/s  p50 {:.2} ms  p99 {:.2} ms\n  batch 32: {:>7.1} sentences/s  p50 {:.1} ms  p99 {:.1} ms per batch\n  resident memory: {:.0} MiB before loading, {:.0} MiB after: the model adds {:.0} MiB",
            p.model,
            texts.len(),
            out["threads"],
            load_s,
            one_rate,
            percentile(&one, 0.5),
            percentile(&one, 0.99),
            batch_rate,
            percentile(&batch, 0.5),
            percentile(&batch, 0.99),
            out["rss_before_mib"].as_f64().unwrap_or(0.0),
            out["rss_after_mib"].as_f64().unwrap_or(0.0),
            out["model_rss_mib"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}

/// Deterministic sentences of 4 to 40 words, like short documents and queries.
fn generated(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "the",
        "a",
        "cluster",
        "leader",
        "replicates",
        "log",
        "entries",
        "to",
        "its",
        "followers",
        "vector",
        "search",
        "finds",
        "similar",
        "documents",
        "quickly",
        "model",
        "embeds",
        "every",
        "sentence",
        "into",
        "numbers",
        "cat",
        "sat",
        "on",
        "mat",
        "while",
        "markets",
        "fell",
        "sharply",
        "today",
        "and",
        "engineers",
        "deploy",
        "services",
        "across",
        "machines",
        "with",
        "durable",
        "queues",
        "tasks",
        "retry",
        "after",
        "failures",
        "of",
        "nodes",
        "weather",
        "is",
        "lovely",
        "in",
        "spring",
        "river",
        "flows",
        "through",
        "old",
        "town",
        "music",
        "plays",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 4 + (next() % 37) as usize;
            let words: Vec<&str> = (0..len).map(|_| WORDS[(next() % WORDS.len() as u64) as usize]).collect();
            let mut s = words.join(" ");
            s.push('.');
            s
        })
        .collect()
}

/// This process's resident set size (Linux); 0 where unknown.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// `synod-bench embed-set`: a vector-search data set of real sentence
/// embeddings. The built-in model embeds the sentences of a file (one per
/// line, e.g. from `bench/sentences.py`); the last `queries` are the
/// queries, the rest the base; the exact cosine top 10 of each query is
/// the truth. Written as `synod-bench vectors --save` writes random data
/// (`base.f32`, `queries.f32`, `truth.u32`), for `vectors --data` and
/// `bench/hnswlib_compare.py`.
pub fn embed_set(
    models_dir: &std::path::Path,
    model: &str,
    sentences: &std::path::Path,
    queries: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(sentences).with_context(|| format!("reading {}", sentences.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(lines.len() > queries, "{} sentences: fewer than the {queries} queries", lines.len());
    let name = model;
    let model = synod_plugins::EmbeddingModel::load(&models_dir.join(name))
        .with_context(|| format!("loading {name} from {}", models_dir.display()))?;
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(lines.len());
    for (i, chunk) in lines.chunks(64).enumerate() {
        vectors.extend(model.embed(chunk)?);
        if i % 50 == 49 {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "embed-set: {} of {} sentences, {:.0}/s",
                vectors.len(),
                lines.len(),
                vectors.len() as f64 / secs
            );
        }
    }
    let split = vectors.len() - queries;
    let q = vectors.split_off(split);
    println!(
        "embed-set: {} base and {} query sentences embedded with {name} in {:.0} s",
        vectors.len(),
        q.len(),
        started.elapsed().as_secs_f64()
    );
    let truth = crate::vectors::truth(synod_store::pb::Metric::Cosine, &vectors, &q);
    crate::vectors::save(out, &vectors, &q, &truth)
}
