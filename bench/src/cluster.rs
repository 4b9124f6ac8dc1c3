//! `synod-bench failover|writes|tasks`: measurements on a local 3-node
//! cluster of the `synod` binary beside this one, with fsync on.
//! Benchmarks are commands, never test assertions.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use synod_testkit::LocalCluster;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Kill -9 the leader RUNS times; print p50/p99 ms from the kill to the next committed write.
    Failover {
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Where the nodes keep their data (default: a fresh temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Tasks: submit throughput, end-to-end latency and rate, worker-loss recovery.
    Tasks {
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Vector search: build time, memory, recall@10 and QPS at several ef,
    /// on the index directly and through REST and gRPC of one node.
    Vectors {
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        #[arg(long, default_value_t = 128)]
        dim: usize,
        /// cosine, l2 or dot.
        #[arg(long, default_value = "l2")]
        metric: String,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        #[arg(long, value_delimiter = ',', default_value = "32,64,128,200,400")]
        ef: Vec<usize>,
        /// Also write base.f32, queries.f32 and truth.u32 here, for
        /// bench/hnswlib_compare.py (the same data in hnswlib).
        #[arg(long)]
        save: Option<PathBuf>,
        /// Skip the REST and gRPC part.
        #[arg(long)]
        index_only: bool,
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Read the data set here (written by --save or `embed-set`)
        /// instead of making random vectors; --dim must match it.
        #[arg(long)]
        data: Option<PathBuf>,
        /// none or int8: how the graphs hold vectors (`"quantization"`).
        #[arg(long, default_value = "none")]
        quantization: String,
    },
    /// A data set of real sentence embeddings for `vectors --data`: the
    /// built-in model embeds the lines of SENTENCES (bench/sentences.py
    /// finds them on the machine); the last QUERIES lines are the queries.
    EmbedSet {
        #[arg(long)]
        sentences: PathBuf,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "all-MiniLM-L6-v2")]
        model: String,
        #[command(flatten)]
        models: synod_api::cli::ModelsDirArgs,
    },
    /// The built-in embedding model in this process: sentences/s at batch 1
    /// and 32, latency, resident memory (bench/embed_compare.py runs
    /// sentence-transformers beside it).
    Embed {
        #[arg(long, default_value = "all-MiniLM-L6-v2")]
        model: String,
        /// One sentence per line (default: 512 generated sentences).
        #[arg(long)]
        sentences: Option<std::path::PathBuf>,
        /// How many sentences to time one at a time.
        #[arg(long, default_value_t = 200)]
        single: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: synod_api::cli::ModelsDirArgs,
    },
    /// Back up a three-node cluster holding TASKS tasks and POINTS points
    /// (synod backup), restore it (synod restore) and start a new
    /// three-node cluster on it: sizes and the time of each step.
    Backup {
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 50_000)]
        points: usize,
        #[arg(long, default_value_t = 384)]
        dim: usize,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The server time of each dashboard page on one node holding TASKS
    /// tasks and POINTS points.
    Dashboard {
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 50_000)]
        points: usize,
        #[arg(long, default_value_t = 384)]
        dim: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Points acknowledged per second in each form a client can send them:
    /// REST with JSON numbers (json), REST with base64 vectors (base64),
    /// gRPC (grpc); then the time until the HNSW index holds them all.
    Ingest {
        #[arg(long, default_value_t = 50_000)]
        n: usize,
        #[arg(long, default_value_t = 384)]
        dim: usize,
        #[arg(long, value_delimiter = ',', default_value = "json,base64,grpc")]
        forms: Vec<String>,
        /// Points per request (JSON numbers: at most 200, under the body cap).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Nodes in the cluster (1: the default `make run` node).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The peer of `writes` and `failover`: a 3-member etcd cluster on
    /// loopback, written through its HTTP/JSON gateway by the same client
    /// and loops (bench/peers/etcd.sh installs etcd).
    Etcd {
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Leader kills to time (0: none).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// The etcd binary.
        #[arg(long, default_value = "etcd")]
        etcd: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The queue peer of `tasks`'s submits: NATS JetStream, a stream of 3
    /// replicas on 3 servers on loopback, acknowledged publishes per second
    /// at each client count (bench/peers/nats.sh installs nats-server).
    Nats {
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The nats-server binary.
        #[arg(long, default_value = "nats-server")]
        nats: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Throughput and p50/p99 against clients (at each cluster size),
    /// stored tasks and stored points: OUT/scaling.csv and one SVG chart
    /// per axis (clients.svg, stored-tasks.svg, stored-points.svg).
    Scaling {
        #[arg(long, default_value = "scaling")]
        out: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,256")]
        clients: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "3,5")]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Queued tasks at the last step of the stored-tasks sweep (0: skip).
        #[arg(long, default_value_t = 1_000_000)]
        tasks: u64,
        /// Points at the last step of the stored-points sweep (0: skip).
        #[arg(long, default_value_t = 1_000_000)]
        points: u64,
        /// Steps of each stored-data sweep after the empty one.
        #[arg(long, default_value_t = 4)]
        steps: u64,
        /// Dimension of the stored points (random unit vectors).
        #[arg(long, default_value_t = 64)]
        dim: usize,
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Draw the charts of this scaling.csv again; measure nothing.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Committed label writes per second through the leader (or a
    /// follower) at each client count.
    Writes {
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Send the writes to a follower, which forwards them to the leader
        /// and answers once it has applied them too.
        #[arg(long)]
        via_follower: bool,
        /// Also print where a write's time goes, stage by stage, from the
        /// histograms of the node written to (/metrics before and after).
        #[arg(long)]
        breakdown: bool,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// How long one write may take while a failover is timed, on both sides
/// (here and in `crate::etcd`): a write still waiting for the election is
/// abandoned and sent again, so the time measured is at most this much
/// later than the first write that could have committed.
pub(crate) const FAILOVER_ATTEMPT: Duration = Duration::from_millis(200);

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn three_nodes(dir: Option<PathBuf>) -> anyhow::Result<(LocalCluster, Option<tempfile::TempDir>)> {
    let (root, guard) = crate::work_dir(dir)?;
    let mut c = crate::local_cluster(&root)?;
    c.add_node(None, &[])?;
    c.wait_ready(0, Duration::from_secs(30)).await?;
    c.add_node(Some(0), &[])?;
    c.add_node(Some(0), &[])?;
    c.wait_voters(0, 3, Duration::from_secs(60)).await?;
    for i in 0..3 {
        c.wait_ready(i, Duration::from_secs(30)).await?;
    }
    Ok((c, guard))
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Failover { runs, dir } => failover(runs, dir).await,
        BenchCmd::Writes { clients, seconds, via_follower, breakdown, dir } => {
            writes(clients, seconds, via_follower, breakdown, dir).await
        }
        BenchCmd::Tasks { clients, seconds, dir } => tasks(clients, seconds, dir).await,
        BenchCmd::Scaling { out, clients, nodes, seconds, tasks, points, steps, dim, dir, from } => {
            let p = crate::scaling::Params { out, clients, nodes, seconds, tasks, points, steps, dim, dir, from };
            crate::scaling::run(p).await
        }
        BenchCmd::Etcd { clients, seconds, runs, etcd, dir } => {
            crate::etcd::run(etcd, clients, seconds, runs, dir).await
        }
        BenchCmd::Nats { clients, seconds, nats, dir } => crate::nats::run(nats, clients, seconds, dir).await,
        BenchCmd::Embed { model, sentences, single, json, dir } => {
            let models_dir = dir.resolve()?;
            tokio::task::spawn_blocking(move || {
                crate::embed::run(crate::embed::Params { models_dir, model, sentences, single, json })
            })
            .await?
        }
        BenchCmd::Backup { tasks, points, dim, dir } => {
            crate::backup::run(crate::backup::Params { tasks, points, dim, dir }).await
        }
        BenchCmd::Dashboard { tasks, points, dim, rounds, dir } => {
            crate::dashboard::run(crate::dashboard::Params { tasks, points, dim, rounds, dir }).await
        }
        BenchCmd::Ingest { n, dim, forms, batch, in_flight, nodes, dir } => {
            for f in &forms {
                anyhow::ensure!(
                    matches!(f.as_str(), "json" | "base64" | "grpc"),
                    "unknown form {f:?} (json, base64, grpc)"
                );
            }
            crate::ingest::run(crate::ingest::Params { n, dim, forms, batch, in_flight, nodes, dir }).await
        }
        BenchCmd::Vectors { n, dim, metric, queries, ef, save, index_only, dir, data, quantization } => {
            crate::vectors::run(crate::vectors::Params {
                n,
                dim,
                metric,
                queries,
                ef,
                save,
                index_only,
                dir,
                data,
                quantization,
            })
            .await
        }
        BenchCmd::EmbedSet { sentences, queries, out, model, models } => {
            let models_dir = models.resolve()?;
            tokio::task::spawn_blocking(move || crate::embed::embed_set(&models_dir, &model, &sentences, queries, &out))
                .await?
        }
    }
}

async fn failover(runs: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (mut c, _guard) = three_nodes(dir).await?;
    let record = c.node_id(0).await?;
    let quick = c.client_builder()?.timeout(FAILOVER_ATTEMPT).build()?;
    let mut samples = Vec::new();
    for run in 0..runs {
        let leader = c
            .wait_for("a leader", Duration::from_secs(10), || c.leader_index(0))
            .await
            .or(c.wait_for("a leader", Duration::from_secs(10), || c.leader_index(1)).await)?;
        let survivor = (leader + 1) % 3;
        let url = format!("{}/cluster/nodes/{record}/labels", c.nodes[survivor].url());
        let killed_at = Instant::now();
        c.kill(leader);
        loop {
            let body = json!({"bench": format!("failover-{run}")});
            if let Ok(r) = quick.put(&url).json(&body).send().await
                && r.status().is_success()
            {
                break;
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("no write committed within 30 s of killing the leader");
            }
        }
        let ms = killed_at.elapsed().as_secs_f64() * 1000.0;
        println!("run {run}: leader (node index {leader}) killed; next write committed after {ms:.0} ms");
        samples.push(ms);
        c.start(leader)?;
        c.wait_ready(leader, Duration::from_secs(30)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    print_failover("failover", samples);
    Ok(())
}

/// The summary line of a failover benchmark (Synod's or its peer's: the
/// same words, which bench/compare.py reads).
pub(crate) fn print_failover(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{label}: {} runs; kill -9 leader -> next committed write: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN)
    );
}

async fn writes(
    clients: Vec<usize>,
    seconds: u64,
    via_follower: bool,
    breakdown: bool,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (c, _guard) = three_nodes(dir).await?;
    let leader = c.wait_for("a leader", Duration::from_secs(10), || c.leader_index(0)).await?;
    let record = c.node_id(leader).await?;
    let via = if via_follower { (leader + 1) % 3 } else { leader };
    let url = format!("{}/cluster/nodes/{record}/labels", c.nodes[via].url());
    for n in clients {
        let http = c.client_builder()?.pool_max_idle_per_host(n.max(1)).timeout(Duration::from_secs(10)).build()?;
        let before = if breakdown { Some(scrape(&c, via).await?) } else { None };
        let url = url.clone();
        // The same loops as the etcd peer's (crate::etcd): one label write
        // per call, counted once its answer says it committed.
        let (all, errors, elapsed) = load(n, seconds, move |client, i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let body = json!({"client": client.to_string(), "seq": i.to_string()});
                match http.put(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.json::<serde_json::Value>().await.is_ok_and(|v| v["record_version"].is_u64())
                    }
                    _ => false,
                }
            }
        })
        .await;
        println!(
            "writes through the {}: {n} clients, {seconds} s: {:.0} committed writes/s, p50 {:.2} ms, p99 {:.2} ms, \
             {errors} errors",
            if via_follower { "follower" } else { "leader" },
            all.len() as f64 / elapsed,
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );
        if let Some(before) = before {
            let after = scrape(&c, via).await?;
            print_breakdown(&before, &after, all.len() as f64);
        }
    }
    Ok(())
}

/// Histograms of a node's `/metrics`: series (name and labels, without
/// `le`) -> (sum, count, [(le, cumulative count)]).
type Histograms = std::collections::BTreeMap<String, (f64, f64, Vec<(f64, f64)>)>;

async fn scrape(c: &LocalCluster, i: usize) -> anyhow::Result<Histograms> {
    let text = c.http.get(format!("{}/metrics", c.nodes[i].url())).send().await?.text().await?;
    let mut out = Histograms::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = series.split_once('{').map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
        let (kind, base) = if let Some(b) = name.strip_suffix("_bucket") {
            ("bucket", b)
        } else if let Some(b) = name.strip_suffix("_sum") {
            ("sum", b)
        } else if let Some(b) = name.strip_suffix("_count") {
            ("count", b)
        } else {
            continue;
        };
        let mut le = None;
        let rest: Vec<&str> = labels
            .split(',')
            .filter(|l| match l.strip_prefix("le=\"") {
                Some(v) => {
                    le = Some(v.trim_end_matches('"').parse::<f64>().unwrap_or(f64::INFINITY));
                    false
                }
                None => !l.is_empty(),
            })
            .collect();
        let e = out.entry(format!("{base}{{{}}}", rest.join(","))).or_default();
        match (kind, le) {
            ("sum", _) => e.0 = value,
            ("count", _) => e.1 = value,
            (_, Some(le)) => e.2.push((le, value)),
            _ => {}
        }
    }
    Ok(out)
}

/// Every node's histograms, added up series by series.
async fn scrape_all(c: &LocalCluster) -> anyhow::Result<Histograms> {
    let mut out = Histograms::new();
    for i in 0..c.nodes.len() {
        for (k, (sum, count, buckets)) in scrape(c, i).await? {
            let e = out.entry(k).or_default();
            e.0 += sum;
            e.1 += count;
            for (le, n) in buckets {
                match e.2.iter_mut().find(|(l, _)| *l == le) {
                    Some((_, m)) => *m += n,
                    None => e.2.push((le, n)),
                }
            }
        }
    }
    Ok(out)
}

/// The stages of one request on the node that took it, after its route's
/// own series: the access check, its Raft write and that write's parts.
const REQUEST_STAGES: [(&str, &str); 5] = [
    ("synod_http_auth_seconds{", "  access check (token)"),
    ("synod_raft_write_seconds{via=\"local\"", "  Raft write: propose to applied"),
    ("synod_raft_log_append_seconds{", "    log append to on disk"),
    ("synod_raft_rpc_seconds{rpc=\"append\",outcome=\"ok\"", "    replication round trip"),
    ("synod_raft_apply_seconds{", "    apply (a batch)"),
];

/// Work beside a request that each write may wake.
const BESIDE_STAGES: [(&str, &str); 2] = [
    ("synod_worker_scan_seconds{", "  beside: the worker's lease scan"),
    ("synod_scheduler_round_seconds{", "  beside: a scheduler round"),
];

/// `route`'s series, then [`REQUEST_STAGES`], `extra` and [`BESIDE_STAGES`].
fn request_stages<'a>(route: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut stages = vec![(route, "in the node: route to answer")];
    stages.extend(REQUEST_STAGES);
    stages.extend_from_slice(extra);
    stages.extend(BESIDE_STAGES);
    stages
}

/// The stages of a write, as the node's histograms time them, over the
/// writes between two scrapes: how many, mean and median (the bucket's
/// upper bound), and how many there were per client write.
fn print_breakdown(before: &Histograms, after: &Histograms, writes: f64) {
    print_stages(
        "where the time goes (node written to; the client's p50 above includes the network and HTTP framing):",
        &request_stages("synod_http_request_seconds{route=\"/cluster/nodes/{id}/labels\"", &[]),
        before,
        after,
        (writes, "write"),
    );
}

/// Prints `stages` (series prefix, what it times) between two scrapes: how
/// many, mean and median (the bucket's upper bound), and how many per
/// client operation (`ops`: their count and what one is called).
fn print_stages(title: &str, stages: &[(&str, &str)], before: &Histograms, after: &Histograms, ops: (f64, &str)) {
    let (ops, per) = ops;
    println!("  {title}");
    for &(prefix, what) in stages {
        let Some((key, a)) = after.iter().find(|(k, _)| k.starts_with(prefix)) else {
            println!("    {what:<36} (no samples)");
            continue;
        };
        let b = before.get(key).cloned().unwrap_or_default();
        let (sum, count) = (a.0 - b.0, a.1 - b.1);
        if count <= 0.0 {
            println!("    {what:<36} (no samples)");
            continue;
        }
        let half = count / 2.0;
        let p50 =
            a.2.iter()
                .map(|(le, n)| (*le, n - b.2.iter().find(|(l, _)| l == le).map_or(0.0, |(_, m)| *m)))
                .find(|(_, n)| *n >= half)
                .map_or(f64::NAN, |(le, _)| le);
        println!(
            "    {what:<36} mean {:>7.3} ms, p50 <= {:>6.3} ms, {:>8.0} times ({:.2} per {per})",
            sum / count * 1000.0,
            p50 * 1000.0,
            count,
            count / ops.max(1.0)
        );
    }
}

/// Runs `n` concurrent loops of `op` for `seconds`; returns (ok latencies ms, errors, elapsed s).
pub(crate) async fn load<F, Fut>(n: usize, seconds: u64, op: F) -> (Vec<f64>, u64, f64)
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..n.max(1) {
        let (op, stop) = (op.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if op(c, i).await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut errors) = (Vec::new(), 0);
    for h in handles {
        if let Ok((l, e)) = h.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort_by(f64::total_cmp);
    (all, errors, started.elapsed().as_secs_f64())
}

async fn tasks(clients: Vec<usize>, seconds: u64, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (mut c, _guard) = three_nodes(dir).await?;
    let leader = c.wait_for("a leader", Duration::from_secs(10), || c.leader_index(0)).await?;
    let base = c.nodes[leader].url();
    let http = c.client_builder()?.pool_max_idle_per_host(256).timeout(Duration::from_secs(30)).build()?;

    // 1. Submit throughput (single-task submits of a trivial task).
    for n in &clients {
        let before = scrape(&c, leader).await?;
        let (http, url) = (http.clone(), format!("{base}/tasks/submit"));
        let (lat, errors, secs) = load(*n, seconds, move |_, _| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let body = json!({"type": "echo", "payload": {"n": 1}});
                matches!(http.post(&url).json(&body).send().await, Ok(r) if r.status().is_success())
            }
        })
        .await;
        println!(
            "tasks submit: {n} clients: {:.0} submits/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors",
            lat.len() as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        print_stages(
            "where the time goes (the leader; each submitted task also runs meanwhile, and its report is a Raft write too):",
            &request_stages(
                "synod_http_request_seconds{route=\"/tasks/submit\"",
                &[("synod_tasks_run_seconds{", "  beside: a task run on this node")],
            ),
            &before,
            &scrape(&c, leader).await?,
            (lat.len() as f64, "submit"),
        );
    }
    // Let the backlog drain before measuring end to end (the replicated
    // per-state counters, not a scan: a scan of a large table stops early).
    c.wait_for("the backlog to drain", Duration::from_secs(900), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let pending = count_states(&http, &base, &["queued", "assigned", "running"]).await?;
            (pending == 0).then_some(())
        }
    })
    .await?;

    // 2. End to end at moderate load: 8 clients, each submit then long-poll the result.
    let before = scrape_all(&c).await?;
    let (h2, b2) = (http.clone(), base.clone());
    let (lat, errors, secs) = load(8, seconds, move |_, _| {
        let (http, base) = (h2.clone(), b2.clone());
        async move {
            let body = json!({"type": "echo", "payload": {"n": 1}});
            let Ok(r) = http.post(format!("{base}/tasks/submit")).json(&body).send().await else { return false };
            let Ok(v) = r.json::<serde_json::Value>().await else { return false };
            let Some(id) = v["id"].as_str() else { return false };
            let Ok(r) = http.get(format!("{base}/tasks/{id}/result?wait=30")).send().await else { return false };
            r.status().as_u16() == 200
        }
    })
    .await;
    println!(
        "tasks end to end (8 clients, submit + wait): {:.0} tasks/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors",
        lat.len() as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    print_stages(
        "where the time goes (every node's histograms added up; a task's stages overlap the others' rounds):",
        &[
            ("synod_http_request_seconds{route=\"/tasks/submit\"", "submit: route to answer (leader)"),
            ("synod_tasks_queue_wait_seconds{", "created -> a worker starts it"),
            ("synod_scheduler_round_seconds{", "  a scheduler round (view, decide)"),
            ("synod_raft_write_seconds{via=\"local\"", "  a Raft write (submit/assign/report)"),
            ("synod_tasks_run_seconds{", "the run itself"),
            ("synod_tasks_end_to_end_seconds{", "created -> run ended (then reported)"),
            ("synod_http_request_seconds{route=\"/tasks/{id}/result\"", "result long-poll: route to answer"),
        ],
        &before,
        &scrape_all(&c).await?,
        (lat.len() as f64, "task"),
    );

    // 3. Completion rate: 10,000 trivial tasks in batches, time until the
    //    replicated succeeded counter has counted them all.
    let before = count_states(&http, &base, &["succeeded"]).await.unwrap_or(0);
    let started = Instant::now();
    let total = 10_000u64;
    for b in 0..(total / 100) {
        let tasks: Vec<_> = (0..100).map(|i| json!({"type": "echo", "payload": {"b": b, "i": i}})).collect();
        let r = http.post(format!("{base}/tasks/submit")).json(&json!({"tasks": tasks})).send().await?;
        anyhow::ensure!(r.status().is_success(), "batch submit failed: {}", r.status());
    }
    let submitted = started.elapsed().as_secs_f64();
    c.wait_for("all tasks to succeed", Duration::from_secs(600), || {
        let (http, base) = (http.clone(), base.clone());
        async move { (count_states(&http, &base, &["succeeded"]).await? >= before + total).then_some(()) }
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "tasks completed: {total} trivial tasks (submitted in batches of 100 in {submitted:.2} s) all succeeded after {secs:.2} s: {:.0} tasks/s",
        total as f64 / secs
    );

    // 4. Worker loss: tasks running on a killed node run elsewhere.
    let victim = (leader + 1) % 3;
    let victim_id = c.node_id(victim).await?;
    let tasks: Vec<_> = (0..24)
        .map(|i| json!({"type": "sleep", "payload": {"ms": 20_000}, "idempotency_key": format!("sleep-{i}")}))
        .collect();
    let submitted: serde_json::Value =
        http.post(format!("{base}/tasks/submit")).json(&json!({"tasks": tasks})).send().await?.json().await?;
    let sleepers: Vec<String> = submitted["tasks"]
        .as_array()
        .context("batch submit answer without tasks")?
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    let on_victim = c
        .wait_for("sleep tasks running on the victim", Duration::from_secs(30), || async {
            let mut ids = Vec::new();
            for id in &sleepers {
                let (_, v) = c.get(leader, &format!("/tasks/{id}/status")).await.ok()?;
                if v["state"] == "running" && v["node_id"] == victim_id {
                    ids.push(id.clone());
                }
            }
            (!ids.is_empty()).then_some(ids)
        })
        .await?;
    let killed = Instant::now();
    c.kill(victim);
    for id in &on_victim {
        c.wait_for("the task to run elsewhere", Duration::from_secs(60), || async {
            let (_, v) = c.get(leader, &format!("/tasks/{id}/status")).await.ok()?;
            (v["state"] == "running" && v["node_id"] != victim_id).then_some(())
        })
        .await?;
    }
    println!(
        "worker loss: {} tasks running on the killed node were running elsewhere {:.2} s after kill -9 (scaling.recovery_timeout 5 s)",
        on_victim.len(),
        killed.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Tasks in the given states, from the replicated counters in `/metrics`.
pub(crate) async fn count_states(http: &reqwest::Client, base: &str, states: &[&str]) -> Option<u64> {
    let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("synod_tasks{") && states.iter().any(|s| l.contains(&format!("state=\"{s}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum(),
    )
}
