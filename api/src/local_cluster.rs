//! Real `synod` processes on 127.0.0.1, for benchmarks and cluster tests.
//! Every process it starts is killed when the [`LocalCluster`] is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// One node's addresses, data dir and process.
pub struct LocalNode {
    pub http: String,
    pub grpc: String,
    pub raft: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
    /// Serves REST over TLS.
    pub https: bool,
    child: Option<Child>,
}

impl LocalNode {
    pub fn url(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.http)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct LocalCluster {
    bin: PathBuf,
    root: PathBuf,
    pub nodes: Vec<LocalNode>,
    /// Sends `admin_token` with every request.
    pub http: reqwest::Client,
    /// The cluster secret every node is given (SYNOD_SECURITY_JWT_SECRET).
    pub secret: String,
    /// The first admin's password (SYNOD_ADMIN_PASSWORD).
    pub admin_password: String,
    /// An admin token of tenant `default`, signed with `secret`.
    pub admin_token: String,
    /// With TLS: the CA the harness trusts; new nodes serve HTTPS.
    ca: Option<PathBuf>,
}

/// A port that was free a moment ago and that this process has not handed
/// out before: the kernel may give a just-released port to the next
/// `bind(0)`, and two nodes on one port means one of them never starts.
fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("port list lock is never poisoned");
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no fresh free port after 100 tries")
}

impl LocalCluster {
    /// Nodes will keep their data dirs and logs under `root`.
    pub fn new(bin: &Path, root: &Path) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(root)?;
        crate::tls::install_provider();
        let secret = crate::auth::random_token(32);
        let admin_password = format!("admin-{}", crate::auth::random_token(9));
        let keys = crate::auth::TokenKeys::hs256(secret.as_bytes(), Duration::from_secs(7 * 86_400));
        // The first admin is the cluster's first user: user id 1, its
        // tokens of generation 0 (until its password changes).
        let now_s = crate::service::now_ms() / 1000;
        let admin_token = keys
            .issue_for("admin", crate::auth::DEFAULT_TENANT, crate::auth::Role::Admin, now_s, Some((1, 0)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut c = LocalCluster {
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            nodes: Vec::new(),
            http: reqwest::Client::new(),
            secret,
            admin_password,
            admin_token,
            ca: None,
        };
        c.http = c.client()?;
        Ok(c)
    }

    /// From now on nodes serve REST over TLS (their `extra` arguments must
    /// name the certificates) and the harness trusts `ca`.
    pub fn use_tls(&mut self, ca: &Path) -> anyhow::Result<()> {
        self.ca = Some(ca.to_path_buf());
        self.http = self.client()?;
        Ok(())
    }

    /// A new client (its own connections) that sends the admin token.
    pub fn fresh_http(&self) -> reqwest::Client {
        self.client().expect("a client with a valid header and CA builds")
    }

    fn client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(self.client_builder()?.timeout(Duration::from_secs(5)).build()?)
    }

    /// A client builder that sends the admin token (and trusts the CA).
    pub fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", self.admin_token).parse()?);
        let b = reqwest::Client::builder().default_headers(headers);
        Ok(match &self.ca {
            Some(ca) => b.use_preconfigured_tls(crate::tls::client_config(ca)?),
            None => b,
        })
    }

    /// Adds and starts a node; `join` is the index of a node to join through
    /// (None bootstraps). `extra` are more `synod serve` arguments.
    pub fn add_node(&mut self, join: Option<usize>, extra: &[String]) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        let data_dir = self.root.join(format!("node{i}"));
        let (http, grpc, raft) = (
            format!("127.0.0.1:{}", free_port()?),
            format!("127.0.0.1:{}", free_port()?),
            format!("127.0.0.1:{}", free_port()?),
        );
        let mut args = vec![
            "serve".to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--http-addr".into(),
            http.clone(),
            "--grpc-addr".into(),
            grpc.clone(),
            "--raft-addr".into(),
            raft.clone(),
        ];
        if let Some(j) = join {
            args.push("--join".into());
            args.push(self.nodes[j].url());
        }
        args.extend(extra.iter().cloned());
        self.nodes.push(LocalNode {
            http,
            grpc,
            raft,
            log: self.root.join(format!("node{i}.log")),
            data_dir,
            args,
            https: self.ca.is_some(),
            child: None,
        });
        self.start(i)?;
        Ok(i)
    }

    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        if n.child.is_some() {
            bail!("node {i} is already running");
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&n.log)?;
        let mut cmd = Command::new(&self.bin);
        // An empty admin_password: the node generates one.
        match self.admin_password.is_empty() {
            true => cmd.env_remove("SYNOD_ADMIN_PASSWORD"),
            false => cmd.env("SYNOD_ADMIN_PASSWORD", &self.admin_password),
        };
        let child = cmd
            .args(&n.args)
            .env_remove("SYNOD_LOG")
            .env("SYNOD_SECURITY_JWT_SECRET", &self.secret)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        n.child = Some(child);
        Ok(())
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...) to node `i`'s process.
    pub fn signal(&self, i: usize, sig: &str) -> anyhow::Result<()> {
        let Some(c) = &self.nodes[i].child else { bail!("node {i} is not running") };
        let status = Command::new("kill").arg(format!("-{sig}")).arg(c.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{sig} failed for node {i}");
        Ok(())
    }

    /// SIGTERM, then wait for the exit status.
    pub fn stop(&mut self, i: usize) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut c) = self.nodes[i].child.take() else { bail!("node {i} is not running") };
        Command::new("kill").arg("-TERM").arg(c.id().to_string()).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("node {i} did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    pub async fn get(&self, i: usize, path: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self.http.get(format!("{}{path}", self.nodes[i].url())).send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    pub async fn status(&self, i: usize) -> anyhow::Result<Value> {
        let (code, v) = self.get(i, "/cluster/status").await?;
        if code != 200 {
            bail!("status of node {i}: {code} {v}");
        }
        Ok(v)
    }

    /// The index (in `nodes`) of the node that node `via` calls leader.
    pub async fn leader_index(&self, via: usize) -> Option<usize> {
        let s = self.status(via).await.ok()?;
        let leader = s["leader_id"].as_u64()?;
        let http = s["nodes"].as_array()?.iter().find(|n| n["id"].as_u64() == Some(leader))?["http_addr"]
            .as_str()?
            .to_string();
        self.nodes.iter().position(|n| n.http == http)
    }

    /// The Raft id of node `i`.
    pub async fn node_id(&self, i: usize) -> anyhow::Result<u64> {
        let (_, v) = self.get(i, "/health").await?;
        v["node_id"].as_u64().context("health without node_id")
    }

    /// Polls `f` every 50 ms until it yields `Some` or `within` passes.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, within: Duration, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f().await {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("timed out after {within:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ready, and the first admin (whom `admin_token` names) exists there:
    /// a token of a user that does not exist yet is refused.
    pub async fn wait_ready(&self, i: usize, within: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("node {i} ready"), within, || async move {
            matches!(self.get(i, "/health/ready").await, Ok((200, _))).then_some(())
        })
        .await?;
        self.wait_for(&format!("the first admin on node {i}"), within, || async move {
            let (code, v) = self.get(i, "/users").await.ok()?;
            let missing = code == 401 && v["error"]["message"].as_str().is_some_and(|m| m.contains("deleted user"));
            (!missing).then_some(())
        })
        .await
    }

    /// Waits until node `via` reports `voters` voters and a leader, with
    /// the membership change finished (not in its joint phase, where the
    /// old voter set must still agree).
    pub async fn wait_voters(&self, via: usize, voters: usize, within: Duration) -> anyhow::Result<Value> {
        self.wait_for(&format!("{voters} voters"), within, || async move {
            let s = self.status(via).await.ok()?;
            (s["voters"].as_array()?.len() == voters
                && s["membership_joint"] == false
                && s["leader_id"].as_u64().is_some())
            .then_some(s)
        })
        .await
    }

    /// PUT labels on node record `record` through node `via`.
    pub async fn put_labels(
        &self,
        via: usize,
        record: u64,
        labels: &Value,
        if_match: Option<u64>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.put(format!("{}/cluster/nodes/{record}/labels", self.nodes[via].url())).json(labels);
        if let Some(v) = if_match {
            req = req.header("if-match", format!("\"{v}\""));
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
