//! The `synod` command line: `serve`, `config check`, cluster administration
//! and benchmarks. Administration commands are REST clients of a node.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    name = "synod",
    version,
    about = "Synod: a Raft-replicated task queue, scheduler and vector database in one binary"
)]
pub struct Cli {
    /// Log format: json (default, for machines) or text (for humans).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node. With an empty data dir and no --join it bootstraps a one-node cluster.
    Serve(ServeArgs),
    /// Validate configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Cluster status and membership.
    Cluster(ClusterArgs),
    /// List the node registry (GET /agents/registry).
    Registry(RegistryArgs),
    /// Node records: labels.
    Node(NodeArgs),
    /// Submit and follow tasks.
    Task(TaskArgs),
    /// Benchmarks on a local 3-node cluster of this binary.
    #[command(subcommand)]
    Bench(crate::bench::BenchCmd),
}

#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// config.yaml to read (defaults apply for everything it does not set).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub node_id: Option<u64>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub http_addr: Option<String>,
    #[arg(long)]
    pub grpc_addr: Option<String>,
    #[arg(long)]
    pub raft_addr: Option<String>,
    /// URL of any node of the cluster to join, e.g. http://10.0.0.1:7700.
    #[arg(long)]
    pub join: Option<String>,
    /// Any other setting, as dotted key=value (repeatable), e.g. --set cluster.voters=5.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate FILE (with SYNOD_* environment overrides); exit non-zero on the first error.
    Check { file: PathBuf },
    /// Print the effective configuration as JSON.
    Show {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct Target {
    /// Any node's HTTP address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:7700")]
    pub addr: String,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: ClusterCmd,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Leader, term, commit index and every member (GET /cluster/status).
    Status,
    /// Add a node as a learner (POST /cluster/add-learner).
    AddLearner {
        id: u64,
        #[arg(long)]
        raft_addr: String,
        #[arg(long)]
        http_addr: String,
        #[arg(long, default_value = "")]
        grpc_addr: String,
    },
    /// Make a learner a voter.
    Promote { id: u64 },
    /// Make a voter a learner.
    Demote {
        id: u64,
        #[arg(long)]
        force: bool,
    },
    /// Remove a node; refused if the remaining voters would lack a live quorum, unless --force.
    Remove {
        id: u64,
        #[arg(long)]
        force: bool,
    },
    /// Hand leadership to a voter.
    TransferLeader { id: u64 },
    /// Mark a node draining (no new work is placed on it).
    Drain { id: u64 },
    /// Clear the draining mark.
    Undrain { id: u64 },
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub target: Target,
    /// local (default) or linearizable.
    #[arg(long, default_value = "local")]
    pub consistency: String,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: NodeCmd,
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Show one node's record and its ETag.
    Get { id: u64 },
    /// Replace a node's labels: synod node labels 2 zone=a gpu=true [--if-match 3].
    Labels {
        id: u64,
        labels: Vec<String>,
        /// Only if the record is still at this version (its ETag).
        #[arg(long)]
        if_match: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(flatten)]
    pub target: Target,
    /// The tenant to act in (sent as X-Synod-Tenant); the server's default
    /// tenant when absent.
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    #[command(subcommand)]
    pub cmd: TaskCmd,
}

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Submit a task: synod task submit vectorize --payload '{"text": "hello world"}'.
    Submit {
        #[arg(value_name = "TYPE")]
        task_type: String,
        /// The payload, as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long)]
        priority: Option<u32>,
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        max_attempts: Option<u32>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// A label the executing node must carry: KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Wait up to this many seconds for the result and print it.
        #[arg(long)]
        wait: Option<f64>,
    },
    Status {
        id: String,
    },
    /// The result, waiting up to --wait seconds for it.
    Result {
        id: String,
        #[arg(long, default_value_t = 0.0)]
        wait: f64,
    },
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long = "type")]
        task_type: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        cursor: Option<String>,
    },
    Cancel {
        id: String,
    },
}

/// Builds the effective config of `serve`: file < SYNOD_* env < flags.
pub fn serve_config(args: &ServeArgs) -> anyhow::Result<synod_config::Config> {
    let mut cfg = synod_config::Config::load(args.config.as_deref(), std::env::vars())?;
    let flags: [(&str, &str, Option<String>); 6] = [
        ("--node-id", "node.id", args.node_id.map(|v| v.to_string())),
        ("--data-dir", "node.data_dir", args.data_dir.as_ref().map(|p| p.display().to_string())),
        ("--http-addr", "node.http_addr", args.http_addr.clone()),
        ("--grpc-addr", "node.grpc_addr", args.grpc_addr.clone()),
        ("--raft-addr", "node.raft_addr", args.raft_addr.clone()),
        ("--join", "node.join", args.join.clone()),
    ];
    for (flag, key, value) in flags {
        if let Some(v) = value {
            cfg.set_with_origin(key, &v, flag)?;
        }
    }
    for kv in &args.set {
        let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        cfg.set_with_origin(k.trim(), v, "--set")?;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// A small REST client for the admin commands.
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Headers sent with every call (the tenant).
    always: Vec<(&'static str, String)>,
}

impl Client {
    pub fn new(base: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), http, always: Vec::new() })
    }

    /// Acts in `tenant` on every call.
    pub fn with_tenant(mut self, tenant: Option<String>) -> Client {
        if let Some(t) = tenant {
            self.always.push((crate::auth::TENANT_HEADER, t));
        }
        self
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<(Value, Option<String>)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in self.always.iter().chain(headers) {
            req = req.header(*k, v);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = value["error"]["code"].as_str().unwrap_or("error");
            let message = value["error"]["message"].as_str().unwrap_or("");
            bail!("{status} {code}: {message}");
        }
        Ok((value, etag))
    }
}

fn parse_labels(labels: Vec<String>) -> anyhow::Result<BTreeMap<String, String>> {
    labels
        .into_iter()
        .map(|l| {
            let (k, v) = l.split_once('=').with_context(|| format!("label {l:?}: expected KEY=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn run_admin(cmd: Command) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        Command::Cluster(ClusterArgs { target, cmd }) => {
            let c = Client::new(&target.addr)?;
            let (v, _) = match cmd {
                ClusterCmd::Status => c.call(Method::GET, "/cluster/status", None, &[]).await?,
                ClusterCmd::AddLearner { id, raft_addr, http_addr, grpc_addr } => {
                    let body = serde_json::json!({"id": id, "raft_addr": raft_addr, "http_addr": http_addr, "grpc_addr": grpc_addr});
                    c.call(Method::POST, "/cluster/add-learner", Some(body), &[]).await?
                }
                ClusterCmd::Promote { id } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/promote"), None, &[]).await?
                }
                ClusterCmd::Demote { id, force } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/demote?force={force}"), None, &[]).await?
                }
                ClusterCmd::Remove { id, force } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/remove?force={force}"), None, &[]).await?
                }
                ClusterCmd::TransferLeader { id } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/transfer-leader"), None, &[]).await?
                }
                ClusterCmd::Drain { id } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/drain"), None, &[]).await?
                }
                ClusterCmd::Undrain { id } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/undrain"), None, &[]).await?
                }
            };
            print(&v);
        }
        Command::Registry(RegistryArgs { target, consistency }) => {
            let c = Client::new(&target.addr)?;
            let (v, _) = c.call(Method::GET, &format!("/agents/registry?consistency={consistency}"), None, &[]).await?;
            print(&v);
        }
        Command::Node(NodeArgs { target, cmd }) => {
            let c = Client::new(&target.addr)?;
            let (v, etag) = match cmd {
                NodeCmd::Get { id } => c.call(Method::GET, &format!("/cluster/nodes/{id}"), None, &[]).await?,
                NodeCmd::Labels { id, labels, if_match } => {
                    let map = parse_labels(labels)?;
                    let headers: Vec<(&str, String)> =
                        if_match.map(|v| ("if-match", format!("\"{v}\""))).into_iter().collect();
                    c.call(
                        Method::PUT,
                        &format!("/cluster/nodes/{id}/labels"),
                        Some(serde_json::to_value(map)?),
                        &headers,
                    )
                    .await?
                }
            };
            print(&v);
            if let Some(e) = etag {
                eprintln!("ETag: {e}");
            }
        }
        Command::Task(TaskArgs { target, tenant, cmd }) => {
            let c = Client::new(&target.addr)?.with_tenant(tenant);
            let (v, _) = match cmd {
                TaskCmd::Submit {
                    task_type,
                    payload,
                    priority,
                    idempotency_key,
                    max_attempts,
                    timeout_ms,
                    labels,
                    wait,
                } => {
                    let payload: Value = serde_json::from_str(&payload).context("--payload is not JSON")?;
                    let mut body = serde_json::json!({"type": task_type, "payload": payload});
                    if !labels.is_empty() {
                        body["labels"] = serde_json::to_value(parse_labels(labels)?)?;
                    }
                    for (k, v) in [
                        ("priority", priority.map(Value::from)),
                        ("idempotency_key", idempotency_key.map(Value::from)),
                        ("max_attempts", max_attempts.map(Value::from)),
                        ("timeout_ms", timeout_ms.map(Value::from)),
                    ] {
                        if let Some(v) = v {
                            body[k] = v;
                        }
                    }
                    let (submitted, _) = c.call(Method::POST, "/tasks/submit", Some(body), &[]).await?;
                    match wait {
                        None => (submitted, None),
                        Some(w) => {
                            let id = submitted["id"].as_str().context("submit answer without id")?.to_string();
                            c.call(Method::GET, &format!("/tasks/{id}/result?wait={w}"), None, &[]).await?
                        }
                    }
                }
                TaskCmd::Status { id } => c.call(Method::GET, &format!("/tasks/{id}/status"), None, &[]).await?,
                TaskCmd::Result { id, wait } => {
                    c.call(Method::GET, &format!("/tasks/{id}/result?wait={wait}"), None, &[]).await?
                }
                TaskCmd::List { state, task_type, limit, cursor } => {
                    let mut q = Vec::new();
                    for (k, v) in [
                        ("state", state),
                        ("type", task_type),
                        ("limit", limit.map(|l| l.to_string())),
                        ("cursor", cursor),
                    ] {
                        if let Some(v) = v {
                            q.push(format!("{k}={v}"));
                        }
                    }
                    c.call(Method::GET, &format!("/tasks?{}", q.join("&")), None, &[]).await?
                }
                TaskCmd::Cancel { id } => c.call(Method::POST, &format!("/tasks/{id}/cancel"), None, &[]).await?,
            };
            print(&v);
        }
        Command::Serve(_) | Command::Config(_) | Command::Bench(_) => unreachable!("dispatched by main"),
    }
    Ok(())
}
