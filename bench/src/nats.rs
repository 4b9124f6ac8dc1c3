//! `synod-bench nats`: the queue peer of `synod-bench tasks`'s submits,
//! run the same way: NATS JetStream with a stream of 3 replicas on 3
//! servers on loopback (the `nats-server` of Debian's package,
//! `bench/peers/nats.sh` unpacks it), file storage, each publish counted
//! once JetStream acknowledges it (a quorum of the stream's replicas has
//! it). The client speaks NATS's text protocol over one TCP connection per
//! client, to the server that leads the stream, with the same loops and
//! clocks as Synod's submits ([`crate::cluster::load`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use crate::cluster::{load, percentile};

/// The stream the benchmark publishes to, and its subjects.
const STREAM: &str = "BENCH";
/// What one publish carries: the body of one of Synod's task submits.
const PAYLOAD: &[u8] = br#"{"type":"echo","payload":{"n":1}}"#;
/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Server {
    name: String,
    client_port: u16,
    child: Option<Child>,
}

struct Cluster {
    servers: Vec<Server>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            if let Some(mut c) = s.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Three servers, one JetStream cluster; returns once every one accepts
/// connections.
async fn three(bin: &Path, root: &Path) -> anyhow::Result<Cluster> {
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| Ok((synod_testkit::free_port()?, synod_testkit::free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let mut c = Cluster { servers: Vec::new() };
    for (i, (client, route)) in ports.iter().enumerate() {
        let name = format!("n{i}");
        let routes: Vec<String> = ports.iter().map(|(_, r)| format!("nats-route://127.0.0.1:{r}")).collect();
        let store = root.join(&name);
        std::fs::create_dir_all(&store)?;
        let conf = root.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\njetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{ name: bench, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                store.display(),
                routes.join(", ")
            ),
        )?;
        let log = std::fs::File::create(root.join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        c.servers.push(Server { name, client_port: *client, child: Some(child) });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for s in &c.servers {
        while Conn::open(s.client_port).await.is_err() {
            if Instant::now() > deadline {
                bail!("nats server {} not accepting connections within 30 s (log in {})", s.name, root.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(c)
}

/// One client connection: requests go out as `PUB subject reply`, and the
/// answer is the message that arrives on that reply subject.
struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    inbox: String,
    sent: u64,
}

impl Conn {
    async fn open(port: u16) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let inbox = format!("_INBOX.{}.{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut c = Conn { r: BufReader::new(r), w, inbox, sent: 0 };
        let mut line = String::new();
        c.r.read_line(&mut line).await?;
        anyhow::ensure!(line.starts_with("INFO"), "not a NATS server: {line:?}");
        let hello = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":false,\"protocol\":1,\"name\":\"synod-bench\"}}\r\n\
             SUB {}.* 1\r\nPING\r\n",
            c.inbox
        );
        c.w.write_all(hello.as_bytes()).await?;
        loop {
            line.clear();
            if c.r.read_line(&mut line).await? == 0 {
                bail!("connection closed during the handshake");
            }
            match line.trim_end() {
                "PONG" => return Ok(c),
                l if l.starts_with("-ERR") => bail!("handshake refused: {l}"),
                _ => {}
            }
        }
    }

    /// Publishes `payload` to `subject` and returns the reply's payload.
    async fn request(&mut self, subject: &str, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.sent += 1;
        let reply = format!("{}.{}", self.inbox, self.sent);
        let mut out = format!("PUB {subject} {reply} {}\r\n", payload.len()).into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.w.write_all(&out).await?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.r.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            let l = line.trim_end();
            if l == "PING" {
                self.w.write_all(b"PONG\r\n").await?;
            } else if let Some(rest) = l.strip_prefix("MSG ") {
                // MSG <subject> <sid> [reply-to] <bytes>
                let parts: Vec<&str> = rest.split(' ').collect();
                let len: usize = parts.last().and_then(|n| n.parse().ok()).context("a MSG without a size")?;
                let mut body = vec![0; len + 2];
                self.r.read_exact(&mut body).await?;
                body.truncate(len);
                // A late answer to an earlier, timed-out request is skipped.
                if parts.first() == Some(&reply.as_str()) {
                    return Ok(body);
                }
            } else if l.starts_with("-ERR") {
                bail!("server error: {l}");
            }
        }
    }

    /// A JetStream API call: the reply as JSON, an error reply as an error.
    async fn api(&mut self, subject: &str, body: &str) -> anyhow::Result<Value> {
        let reply = tokio::time::timeout(Duration::from_secs(2), self.request(subject, body.as_bytes()))
            .await
            .context("no answer within 2 s")??;
        let v: Value = serde_json::from_slice(&reply)?;
        if !v["error"].is_null() {
            bail!("{}", v["error"]);
        }
        Ok(v)
    }
}

/// Creates the stream (3 replicas, file storage) once JetStream's cluster
/// accepts it, and returns the index of the server that leads it.
async fn create_stream(c: &Cluster) -> anyhow::Result<usize> {
    let config = format!(r#"{{"name":"{STREAM}","subjects":["bench.>"],"num_replicas":3,"storage":"file"}}"#);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let mut conn = Conn::open(c.servers[0].client_port).await?;
            let info = match conn.api(&format!("$JS.API.STREAM.INFO.{STREAM}"), "").await {
                Ok(info) => info,
                Err(_) => conn.api(&format!("$JS.API.STREAM.CREATE.{STREAM}"), &config).await?,
            };
            let leader = info["cluster"]["leader"].as_str().unwrap_or_default().to_string();
            let current = info["cluster"]["replicas"]
                .as_array()
                .map_or(0, |r| r.iter().filter(|x| x["current"].as_bool() == Some(true)).count());
            match c.servers.iter().position(|s| s.name == leader) {
                Some(i) if current == 2 => anyhow::Ok(i),
                _ => bail!("stream leader {leader:?}, {current} of 2 replicas current"),
            }
        };
        match attempt.await {
            Ok(i) => return Ok(i),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no JetStream stream with 3 current replicas within 60 s: {last}")
}

pub async fn run(bin: PathBuf, clients: Vec<usize>, seconds: u64, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (root, _guard) = crate::work_dir(dir)?;
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let c = three(&bin, &root).await?;
    let leader = create_stream(&c).await?;
    println!(
        "nats: JetStream ({version}), 3 servers on loopback, stream of 3 replicas on file storage, published \
         to the stream leader; no fsync per message (this version writes to the OS and syncs on a timer)"
    );
    for n in clients {
        let mut conns = Vec::new();
        for _ in 0..n.max(1) {
            conns.push(Mutex::new(Conn::open(c.servers[leader].client_port).await?));
        }
        let conns = Arc::new(conns);
        let (all, errors, elapsed) = load(n, seconds, move |client, _| {
            let conns = conns.clone();
            async move {
                let mut conn = conns[client].lock().await;
                let subject = format!("bench.{client}");
                match tokio::time::timeout(REQUEST_TIMEOUT, conn.request(&subject, PAYLOAD)).await {
                    Ok(Ok(ack)) => serde_json::from_slice::<Value>(&ack).is_ok_and(|v| v["seq"].is_u64()),
                    _ => false,
                }
            }
        })
        .await;
        println!(
            "nats jetstream publishes: {n} clients, {seconds} s: {:.0} acked publishes/s, p50 {:.2} ms, p99 {:.2} ms, \
             {errors} errors",
            all.len() as f64 / elapsed,
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );
    }
    Ok(())
}
