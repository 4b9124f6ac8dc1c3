//! Real `synod` processes on 127.0.0.1, for the API tests and the
//! benchmarks. Every process it starts is killed when the [`LocalCluster`]
//! is dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::ports::free_port;
use crate::process::{NodeProcess, node_command};

/// One node's addresses, data dir and process.
pub struct LocalNode {
    pub http: String,
    pub grpc: String,
    pub raft: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
    /// More environment for the process (set after the harness's own).
    pub env: Vec<(String, String)>,
    /// Serves REST over TLS.
    pub https: bool,
    process: Option<NodeProcess>,
}

impl LocalNode {
    pub fn url(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.http)
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }
}

/// What a cluster's nodes are started with and what the harness calls
/// them with.
pub struct Credentials {
    /// The cluster secret every node is given (SYNOD_SECURITY_JWT_SECRET).
    pub secret: String,
    /// The first admin's password (SYNOD_ADMIN_PASSWORD); empty: the
    /// first node generates one.
    pub admin_password: String,
    /// An admin token of tenant `default`, signed with `secret`.
    pub admin_token: String,
}

impl Credentials {
    /// A random secret and password, and the token `mint` signs with the
    /// secret (the harness does not know the token format: its caller does).
    pub fn generate(mint: impl FnOnce(&str) -> anyhow::Result<String>) -> anyhow::Result<Credentials> {
        let secret = random_hex(32);
        let admin_password = format!("admin-{}", random_hex(9));
        let admin_token = mint(&secret)?;
        Ok(Credentials { secret, admin_password, admin_token })
    }
}

fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
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

impl LocalCluster {
    /// Nodes will keep their data dirs and logs under `root`.
    pub fn new(bin: &Path, root: &Path, creds: Credentials) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(root)?;
        // reqwest's rustls needs a process-wide crypto provider; another
        // part of the process may have installed it already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut c = LocalCluster {
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            nodes: Vec::new(),
            http: reqwest::Client::new(),
            secret: creds.secret,
            admin_password: creds.admin_password,
            admin_token: creds.admin_token,
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
            Some(ca) => {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                b.tls_built_in_root_certs(false).add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
            }
            None => b,
        })
    }

    /// Adds and starts a node; `join` is the index of a node to join through
    /// (None bootstraps). `extra` are more `synod serve` arguments.
    pub fn add_node(&mut self, join: Option<usize>, extra: &[String]) -> anyhow::Result<usize> {
        let i = self.define_node(join, extra)?;
        self.start(i)?;
        Ok(i)
    }

    /// Adds a node without starting it: its addresses are known (to list
    /// them as seeds of all) before any process runs. `start` starts it.
    pub fn define_node(&mut self, join: Option<usize>, extra: &[String]) -> anyhow::Result<usize> {
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
            env: Vec::new(),
            https: self.ca.is_some(),
            process: None,
        });
        Ok(i)
    }

    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        if n.process.is_some() {
            bail!("node {i} is already running");
        }
        let mut cmd = node_command(&self.bin);
        // An empty admin_password: the node generates one.
        match self.admin_password.is_empty() {
            true => cmd.env_remove("SYNOD_ADMIN_PASSWORD"),
            false => cmd.env("SYNOD_ADMIN_PASSWORD", &self.admin_password),
        };
        cmd.args(&n.args).env("SYNOD_SECURITY_JWT_SECRET", &self.secret);
        cmd.envs(n.env.iter().map(|(k, v)| (k, v)));
        n.process = Some(NodeProcess::spawn(cmd, &n.log)?);
        Ok(())
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(p) = self.nodes[i].process.take() {
            p.kill();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...) to node `i`'s process.
    pub fn signal(&self, i: usize, sig: &str) -> anyhow::Result<()> {
        let Some(p) = &self.nodes[i].process else { bail!("node {i} is not running") };
        p.signal(sig).with_context(|| format!("node {i}"))
    }

    /// SIGTERM, then wait for the exit status.
    pub fn stop(&mut self, i: usize) -> anyhow::Result<std::process::ExitStatus> {
        let Some(p) = self.nodes[i].process.take() else { bail!("node {i} is not running") };
        p.stop(Duration::from_secs(30)).with_context(|| format!("stopping node {i}"))
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
