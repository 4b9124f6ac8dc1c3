//! `synod-bench etcd`: the peer of `synod-bench writes` and `failover`, run
//! the same way: a 3-member etcd cluster on loopback (the `etcd` binary of
//! Debian's etcd-server, `bench/peers/etcd.sh` installs it), fsync on as
//! etcd always does, written through its HTTP/JSON gateway (`/v3/kv/put`)
//! by the same HTTP client, the same loops and the same clocks as Synod's
//! label writes, so neither side carries a per-call cost the other does not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

use crate::cluster::{load, percentile};

struct Member {
    name: String,
    client: String,
    peer: String,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

struct Etcd {
    bin: PathBuf,
    members: Vec<Member>,
    initial: String,
}

impl Etcd {
    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log)?;
        let child = Command::new(&self.bin)
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data)
            .args(["--listen-client-urls", &m.client, "--advertise-client-urls", &m.client])
            .args(["--listen-peer-urls", &m.peer, "--initial-advertise-peer-urls", &m.peer])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "synod-bench", "--logger", "zap", "--log-outputs", "stderr"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        m.child = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(synod_testkit::free_port()?)
}

async fn three(bin: &Path, root: &Path) -> anyhow::Result<Etcd> {
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(Member {
            name: format!("m{i}"),
            client: format!("http://127.0.0.1:{}", free_port()?),
            peer: format!("http://127.0.0.1:{}", free_port()?),
            data: root.join(format!("m{i}")),
            log: root.join(format!("m{i}.log")),
            child: None,
        });
    }
    let initial = members.iter().map(|m| format!("{}={}", m.name, m.peer)).collect::<Vec<_>>().join(",");
    let mut e = Etcd { bin: bin.to_path_buf(), members, initial };
    for i in 0..3 {
        e.start(i)?;
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in &e.members {
        loop {
            let ok = http.get(format!("{}/health", m.client)).send().await.ok();
            let body: Option<Value> = match ok {
                Some(r) => r.json().await.ok(),
                None => None,
            };
            if body.is_some_and(|b| b["health"] == "true") {
                break;
            }
            if Instant::now() > deadline {
                bail!("etcd member {} not healthy within 30 s (log: {})", m.name, m.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(e)
}

/// The index of the member that leads, as the members say.
async fn leader(http: &reqwest::Client, e: &Etcd) -> Option<usize> {
    for (i, m) in e.members.iter().enumerate() {
        if m.child.is_none() {
            continue;
        }
        let Ok(r) = http.post(format!("{}/v3/maintenance/status", m.client)).json(&json!({})).send().await else {
            continue;
        };
        let Ok(v) = r.json::<Value>().await else { continue };
        if v["leader"].is_string() && v["leader"] == v["header"]["member_id"] {
            return Some(i);
        }
    }
    None
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One put, acknowledged once committed by a quorum and applied.
async fn put(http: &reqwest::Client, url: &str, key: &str, value: &str) -> bool {
    match http.post(url).json(&json!({"key": b64(key), "value": b64(value)})).send().await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.is_ok_and(|v| v["header"]["revision"].is_string()),
        _ => false,
    }
}

pub async fn run(
    bin: PathBuf,
    clients: Vec<usize>,
    seconds: u64,
    runs: usize,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (root, _guard) = crate::work_dir(dir)?;
    let mut e = three(&bin, &root).await?;
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    println!("etcd: 3 members on loopback ({version}), writes through the leader's HTTP/JSON gateway");
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let l = loop {
        if let Some(l) = leader(&probe, &e).await {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let url = format!("{}/v3/kv/put", e.members[l].client);
    for n in clients {
        let http =
            reqwest::Client::builder().pool_max_idle_per_host(n.max(1)).timeout(Duration::from_secs(10)).build()?;
        let url = url.clone();
        let (all, errors, elapsed) = load(n, seconds, move |client, i| {
            let (http, url) = (http.clone(), url.clone());
            async move { put(&http, &url, &format!("bench/{client}"), &i.to_string()).await }
        })
        .await;
        println!(
            "etcd writes through the leader: {n} clients, {seconds} s: {:.0} committed writes/s, p50 {:.2} ms, \
             p99 {:.2} ms, {errors} errors",
            all.len() as f64 / elapsed,
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );
    }
    if runs == 0 {
        return Ok(());
    }
    let quick = reqwest::Client::builder().timeout(crate::cluster::FAILOVER_ATTEMPT).build()?;
    let mut samples = Vec::new();
    for run in 0..runs {
        let l = loop {
            if let Some(l) = leader(&probe, &e).await {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let survivor = (l + 1) % 3;
        let url = format!("{}/v3/kv/put", e.members[survivor].client);
        let killed_at = Instant::now();
        e.kill(l);
        loop {
            if put(&quick, &url, "bench/failover", &run.to_string()).await {
                break;
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                bail!("no etcd write committed within 30 s of killing the leader");
            }
        }
        let ms = killed_at.elapsed().as_secs_f64() * 1000.0;
        println!("run {run}: etcd leader (member {l}) killed; next write committed after {ms:.0} ms");
        samples.push(ms);
        e.start(l)?;
        // Back in the cluster: it answers health through a quorum.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !probe.get(format!("{}/health", e.members[l].client)).send().await.is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("etcd member {l} did not come back");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    crate::cluster::print_failover("etcd failover", samples);
    Ok(())
}
