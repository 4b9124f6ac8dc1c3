//! `synod bench ...`: measurements on a local 3-node cluster of this very
//! binary, with fsync on. Benchmarks are commands, never test assertions.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use crate::local_cluster::LocalCluster;

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
    /// Committed label writes per second through the leader at each client count.
    Writes {
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn three_nodes(dir: Option<PathBuf>) -> anyhow::Result<(LocalCluster, Option<tempfile::TempDir>)> {
    let bin = std::env::current_exe().context("locating the synod binary")?;
    let (root, guard) = match dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut c = LocalCluster::new(&bin, &root)?;
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
        BenchCmd::Writes { clients, seconds, dir } => writes(clients, seconds, dir).await,
    }
}

async fn failover(runs: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (mut c, _guard) = three_nodes(dir).await?;
    let record = c.node_id(0).await?;
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(1000)).build()?;
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
    samples.sort_by(f64::total_cmp);
    println!(
        "failover: {} runs; kill -9 leader -> next committed write: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

async fn writes(clients: Vec<usize>, seconds: u64, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (c, _guard) = three_nodes(dir).await?;
    let leader = c.wait_for("a leader", Duration::from_secs(10), || c.leader_index(0)).await?;
    let record = c.node_id(leader).await?;
    let url = format!("{}/cluster/nodes/{record}/labels", c.nodes[leader].url());
    for n in clients {
        let http =
            reqwest::Client::builder().pool_max_idle_per_host(n.max(1)).timeout(Duration::from_secs(10)).build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..n.max(1) {
            let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let body = json!({"client": client.to_string(), "seq": i.to_string()});
                    match http.put(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        _ => errors += 1,
                    }
                    i += 1;
                }
                (lat, errors)
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await?;
            all.extend(lat);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort_by(f64::total_cmp);
        println!(
            "writes: {n} clients, {seconds} s: {:.0} committed writes/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors",
            all.len() as f64 / elapsed,
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );
    }
    Ok(())
}
