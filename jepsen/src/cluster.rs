//! Real `synod` processes for a run: each on its own ports and data dir,
//! logs captured, every directed Raft link through its own [`Proxy`]
//! (node i dials node j at the i→j proxy, by `cluster.peer_addr_overrides`
//! in i's config file), every process killed when the cluster is dropped,
//! even when the run fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use synod_testkit::free_port;
use synod_testkit::process::{NodeProcess, node_command};

use crate::proxy::{Fault, Proxy};

pub struct Node {
    /// The Raft node id (1-based, given with `--node-id`).
    pub id: u64,
    pub http: String,
    pub grpc: String,
    pub raft: String,
    pub log: PathBuf,
    /// The node's data dir (`--data-dir`).
    pub data_dir: PathBuf,
    /// The libfaketime offset file of this node's clock (see
    /// [`Cluster::set_clock`]).
    clock_file: PathBuf,
    args: Vec<String>,
    process: std::sync::Mutex<Option<NodeProcess>>,
}

pub struct Cluster {
    bin: PathBuf,
    pub nodes: Vec<Node>,
    /// (from id, to id) → the proxy `from` dials `to` through.
    pub links: BTreeMap<(u64, u64), Proxy>,
    secret: String,
    password: String,
    token: Option<String>,
    /// Nodes (ids) found to have exited on their own, not by the harness.
    died: std::sync::Mutex<Vec<u64>>,
    /// libfaketime, preloaded into every node when the run skews clocks.
    faketime: Option<PathBuf>,
}

/// Debian's libfaketime (package `libfaketime`, which `make deps`
/// installs): the thread-safe variant, for multi-threaded nodes.
pub fn libfaketime() -> Option<PathBuf> {
    let lib = std::fs::read_dir("/usr/lib").ok()?.filter_map(|e| e.ok()).find_map(|e| {
        let p = e.path().join("faketime/libfaketimeMT.so.1");
        p.is_file().then_some(p)
    });
    lib.or_else(|| Some(PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")).filter(|p| p.is_file()))
}

/// How an HTTP call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// An answer: the status, the JSON body (Null if none) and the `ETag`.
    Answer { status: u16, body: Value, etag: Option<String> },
    /// The connection was refused: the request never left.
    NotSent,
    /// Sent, then no whole answer within the timeout (or the connection
    /// broke): the server may or may not have acted on it.
    NoAnswer,
}

impl Reply {
    pub fn outcome(&self) -> crate::history::Outcome {
        match self {
            Reply::Answer { status, .. } => crate::history::Outcome::Status(*status),
            Reply::NotSent => crate::history::Outcome::NotSent,
            Reply::NoAnswer => crate::history::Outcome::NoAnswer,
        }
    }
}

/// One HTTP/1.1 request with extra headers and a deadline (the harness
/// stays free of the server's client stack).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
    timeout: Duration,
) -> Reply {
    let Ok(Ok(mut s)) = tokio::time::timeout(timeout, TcpStream::connect(addr)).await else {
        return Reply::NotSent;
    };
    let body = body.unwrap_or("");
    let ctype = if body.starts_with('{') || body.starts_with('[') {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ctype}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    let exchange = async {
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(raw)) if !raw.is_empty() => raw,
        _ => return Reply::NoAnswer,
    };
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let Some(status) = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()) else {
        return Reply::NoAnswer;
    };
    let lower = head.to_ascii_lowercase();
    let json = if lower.contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    let etag = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("etag")).map(|(_, v)| v.trim()))
        .map(|v| v.trim_matches('"').to_string());
    Reply::Answer { status, body: serde_json::from_str(&json).unwrap_or(Value::Null), etag }
}

/// A GET whose answer is text (`/metrics`), with a 10 s deadline.
pub async fn text_get(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await??;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    let raw = tokio::time::timeout(Duration::from_secs(10), async {
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    })
    .await??;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.split_whitespace().nth(1).is_some_and(|c| c.starts_with('2')) {
        return Err(std::io::Error::other(format!("GET {path}: {}", head.lines().next().unwrap_or(""))));
    }
    Ok(if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() })
}

/// A call with a generous deadline for the harness's own bookkeeping:
/// the status and the JSON body, or an error if there was no answer.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let auth: Vec<(&str, String)> = token.map(|t| ("Authorization", format!("Bearer {t}"))).into_iter().collect();
    match request(addr, method, path, &auth, body, Duration::from_secs(30)).await {
        Reply::Answer { status, body, .. } => Ok((status, body)),
        other => Err(std::io::Error::other(format!("{method} {addr}{path}: {other:?}"))),
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Cluster {
    /// Starts `n` nodes under `root`: node 1 bootstraps, the others join
    /// it; returns once all `n` are voters. `seed` seeds the proxies.
    pub async fn start(bin: &Path, root: &Path, n: usize, seed: u64) -> std::io::Result<Cluster> {
        Cluster::start_with(bin, root, n, seed, "", false).await
    }

    /// [`Cluster::start`] with more YAML appended to every node's config
    /// file, right after the `cluster:` section's `peer_addr_overrides`:
    /// lines indented by two spaces continue the `cluster:` section, and
    /// unindented ones start other sections. With `skewable_clocks` every
    /// node runs under libfaketime, its wall clock offset by what
    /// [`Cluster::set_clock`] says (its monotonic clock untouched, as an NTP
    /// step leaves it).
    pub async fn start_with(
        bin: &Path,
        root: &Path,
        n: usize,
        seed: u64,
        extra: &str,
        skewable_clocks: bool,
    ) -> std::io::Result<Cluster> {
        std::fs::create_dir_all(root)?;
        let faketime = match skewable_clocks {
            false => None,
            true => Some(libfaketime().ok_or_else(|| {
                std::io::Error::other("libfaketime is not installed (`make deps` installs the Debian package)")
            })?),
        };
        let mut c = Cluster {
            bin: bin.to_path_buf(),
            nodes: Vec::new(),
            links: BTreeMap::new(),
            secret: format!("jepsen-secret-{seed:016x}-0123456789"),
            password: "jepsen-admin".into(),
            token: None,
            died: Default::default(),
            faketime,
        };
        let raft: Vec<String> =
            (0..n).map(|_| free_port().map(|p| format!("127.0.0.1:{p}"))).collect::<Result<_, _>>()?;
        for from in 1..=n as u64 {
            for to in 1..=n as u64 {
                if from != to {
                    let p =
                        Proxy::start("127.0.0.1:0", raft[to as usize - 1].clone(), seed ^ (from << 32) ^ to).await?;
                    c.links.insert((from, to), p);
                }
            }
        }
        for (i, raft_addr) in raft.iter().enumerate() {
            let id = i as u64 + 1;
            let dir = root.join(format!("n{id}"));
            let mut yaml = String::from("cluster:\n  peer_addr_overrides:\n");
            for ((from, to), p) in &c.links {
                if *from == id {
                    yaml.push_str(&format!("    {to}: \"{}\"\n", p.addr));
                }
            }
            yaml.push_str(extra);
            let config = root.join(format!("n{id}.yaml"));
            std::fs::write(&config, yaml)?;
            let http = format!("127.0.0.1:{}", free_port()?);
            let grpc = format!("127.0.0.1:{}", free_port()?);
            let mut args: Vec<String> = vec![
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
                "--data-dir".into(),
                dir.display().to_string(),
                "--node-id".into(),
                id.to_string(),
                "--http-addr".into(),
                http.clone(),
                "--grpc-addr".into(),
                grpc.clone(),
                "--raft-addr".into(),
                raft_addr.clone(),
            ];
            if i > 0 {
                args.extend(["--join".into(), format!("http://{}", c.nodes[0].http)]);
            }
            c.nodes.push(Node {
                id,
                http,
                grpc,
                raft: raft_addr.clone(),
                log: root.join(format!("n{id}.log")),
                data_dir: dir.clone(),
                clock_file: root.join(format!("n{id}.faketime")),
                args,
                process: Default::default(),
            });
            c.set_clock(i, 0)?;
            c.spawn(i)?;
            c.wait_ready(i, Duration::from_secs(60)).await?;
        }
        c.login().await?;
        // Every node a voter, and the last change out of its joint phase:
        // until then the old voter set must agree too, so cutting one node
        // off could leave no quorum at all (the runner's first finding).
        c.wait(Duration::from_secs(60), "every node a voter", |c| async move {
            let (_, v) = c.get(0, "/cluster/status").await.ok()?;
            (v["voters"].as_array()?.len() == n && v["membership_joint"] == false).then_some(())
        })
        .await?;
        Ok(c)
    }

    /// Starts node `i`'s process (again), without waiting for it.
    pub fn spawn(&self, i: usize) -> std::io::Result<()> {
        self.spawn_with(i, &[])
    }

    /// [`Cluster::spawn`] with more command-line arguments (e.g. `--set
    /// observability.failpoints=apply@5`) for this start only.
    pub fn spawn_with(&self, i: usize, extra: &[String]) -> std::io::Result<()> {
        let node = &self.nodes[i];
        let mut cmd = node_command(&self.bin);
        if let Some(lib) = &self.faketime {
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &node.clock_file)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        cmd.args(&node.args)
            .args(extra)
            .env("SYNOD_SECURITY_JWT_SECRET", &self.secret)
            .env("SYNOD_ADMIN_PASSWORD", &self.password);
        *node.process.lock().expect("process lock") = Some(NodeProcess::spawn(cmd, &node.log)?);
        Ok(())
    }

    /// Sets node `i`'s wall clock to run `offset_s` seconds off the real
    /// time (0 = true time); a running node sees it within a second. Only
    /// on a cluster started with skewable clocks does it change anything.
    pub fn set_clock(&self, i: usize, offset_s: i64) -> std::io::Result<()> {
        let file = &self.nodes[i].clock_file;
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset_s:+}\n"))?;
        std::fs::rename(&tmp, file)
    }

    /// kill -9. A node that had already exited on its own is recorded
    /// (see [`Cluster::died`]).
    pub fn kill(&self, i: usize) {
        if self.exited(i) {
            self.died.lock().expect("died lock").push(self.nodes[i].id);
        }
        if let Some(p) = self.nodes[i].process.lock().expect("process lock").take() {
            p.kill();
        }
    }

    /// The nodes found to have exited without the harness killing them
    /// (a crash: abort, segfault, OOM), by [`Cluster::kill`] and
    /// [`Cluster::check_alive`].
    pub fn died(&self) -> Vec<u64> {
        self.died.lock().expect("died lock").clone()
    }

    /// Records node `i` as died if its process has exited on its own.
    pub fn check_alive(&self, i: usize) {
        if self.exited(i) {
            self.died.lock().expect("died lock").push(self.nodes[i].id);
        }
    }

    /// True if node `i`'s process has exited on its own (it is reaped).
    pub fn exited(&self, i: usize) -> bool {
        let mut process = self.nodes[i].process.lock().expect("process lock");
        let gone = process.as_mut().is_some_and(NodeProcess::exited);
        if gone {
            *process = None;
        }
        gone
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].process.lock().expect("process lock").is_some()
    }

    /// Node `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].process.lock().expect("process lock").as_ref().map(NodeProcess::pid)
    }

    /// Sends a signal by name (`STOP`, `CONT`) to node `i`'s process.
    pub fn signal(&self, i: usize, sig: &str) -> std::io::Result<()> {
        match self.nodes[i].process.lock().expect("process lock").as_ref() {
            Some(p) => p.signal(sig),
            None => Ok(()),
        }
    }

    /// A request to node `i` as admin, with a deadline: see [`Reply`].
    pub async fn call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&Value>,
        timeout: Duration,
    ) -> Reply {
        let mut all: Vec<(&str, String)> = headers.to_vec();
        if let Some(t) = &self.token {
            all.push(("Authorization", format!("Bearer {t}")));
        }
        let body = body.map(Value::to_string);
        request(&self.nodes[i].http, method, path, &all, body.as_deref(), timeout).await
    }

    /// Logs in as admin. A login reads the user after a read barrier, which
    /// needs a quorum: while the nodes are still being promoted it may
    /// answer 503, and is asked again (for up to a minute).
    async fn login(&mut self) -> std::io::Result<()> {
        let body = format!("grant_type=password&username=admin&password={}", self.password);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, v) = http(&self.nodes[0].http, "POST", "/login", None, Some(&body)).await?;
            self.token = v["access_token"].as_str().map(str::to_string);
            if self.token.is_some() {
                return Ok(());
            }
            if !matches!(code, 503 | 429) || Instant::now() >= deadline {
                return Err(std::io::Error::other(format!("login: {code} {v}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A text body from node `i` as admin (`/metrics`).
    pub async fn text(&self, i: usize, path: &str) -> std::io::Result<String> {
        text_get(&self.nodes[i].http, path, self.token.as_deref()).await
    }

    pub async fn get(&self, i: usize, path: &str) -> std::io::Result<(u16, Value)> {
        http(&self.nodes[i].http, "GET", path, self.token.as_deref(), None).await
    }

    pub async fn post(&self, i: usize, path: &str, body: &Value) -> std::io::Result<(u16, Value)> {
        http(&self.nodes[i].http, "POST", path, self.token.as_deref(), Some(&body.to_string())).await
    }

    pub async fn wait_ready(&self, i: usize, within: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok((200, _)) = http(&self.nodes[i].http, "GET", "/health/ready", None, None).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(std::io::Error::other(format!("node {} not ready; log {}", self.nodes[i].id, self.nodes[i].log.display())))
    }

    /// Polls `f` until it answers, for at most `within`.
    pub async fn wait<'a, T, F, Fut>(&'a self, within: Duration, what: &str, f: F) -> std::io::Result<T>
    where
        F: Fn(&'a Cluster) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(v) = f(self).await {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(std::io::Error::other(format!("timed out waiting for {what}")))
    }

    /// The leader's id as node `i` sees it.
    pub async fn leader_seen_by(&self, i: usize) -> Option<u64> {
        let (_, v) = self.get(i, "/cluster/status").await.ok()?;
        v["leader_id"].as_u64()
    }

    /// The index of the node that running nodes name as leader (asked
    /// with short deadlines, so a paused node cannot stall the caller).
    pub async fn leader_index(&self) -> Option<usize> {
        for i in (0..self.nodes.len()).filter(|i| self.is_running(*i)) {
            if let Reply::Answer { status: 200, body, .. } =
                self.call(i, "GET", "/cluster/status", &[], None, Duration::from_millis(500)).await
                && let Some(id) = body["leader_id"].as_u64()
            {
                return self.nodes.iter().position(|n| n.id == id);
            }
        }
        None
    }

    /// The last lines of every node's log, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- node {} ({})\n", n.id, n.log.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Sets the fault of the directed link `from` → `to` (node ids).
    pub fn link(&self, from: u64, to: u64, fault: Fault) {
        if let Some(p) = self.links.get(&(from, to)) {
            p.set(fault);
        }
    }

    /// Every link back to [`Fault::Pass`].
    pub fn heal(&self) {
        for p in self.links.values() {
            p.set(Fault::Pass);
        }
    }

    /// Cuts (or heals, with [`Fault::Pass`]) every link to and from `id`.
    pub fn isolate(&self, id: u64, fault: Fault) {
        for ((from, to), p) in &self.links {
            if *from == id || *to == id {
                p.set(fault);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            // Dropping the process kills it.
            drop(n.process.lock().expect("process lock").take());
        }
    }
}

#[cfg(test)]
mod env_tests {
    /// Issue 13, defect 9: nodes inherited SYNOD_BIN and refused to start,
    /// because the config refused it; the test kit keeps it out of their
    /// environment. (The image's entrypoint reads SYNOD_BIN too, so the
    /// config now skips it; any other `SYNOD_*` it does not know is still
    /// refused, and the harness still keeps its own variables out.)
    #[test]
    fn the_harness_variable_the_config_would_refuse_is_kept_out() {
        assert!(synod_testkit::process::HARNESS_ENV.contains(&"SYNOD_BIN"));
        let load = |var: &str| synod_config::Config::load(None, [(var.to_string(), "/x".to_string())]);
        assert!(load("SYNOD_BIN").is_ok());
        let e = load("SYNOD_BINARY").unwrap_err();
        assert!(e.to_string().contains("SYNOD_BINARY"), "{e}");
    }
}
