//! The config sections: one struct per top-level key of `config.yaml`.
//!
//! Every struct is `#[serde(default, deny_unknown_fields)]`: a missing key
//! takes its default, a misspelt one is an error. The root `config.yaml`
//! documents every field; a test keeps it equal to these defaults.
//!
//! Cross-field rules (min < max, both-or-neither) live in `validate.rs`, not
//! here, so that a file or a `--set` may pass through a temporary state.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::units::{ByteSize, Dur};

/// `node:` — who this process is and where it listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft node id; `None` lets the node pick one when it first starts.
    pub id: Option<u64>,
    /// RocksDB, snapshots and the node identity live here.
    pub data_dir: PathBuf,
    /// REST API listen address (`ip:port`).
    #[serde(deserialize_with = "socket_addr")]
    pub http_addr: SocketAddr,
    /// gRPC API listen address (`ip:port`).
    #[serde(deserialize_with = "socket_addr")]
    pub grpc_addr: SocketAddr,
    /// Raft RPC listen address (`ip:port`).
    #[serde(deserialize_with = "socket_addr")]
    pub raft_addr: SocketAddr,
    /// `host:port` other nodes and clients use to reach `http_addr`;
    /// `None` means `http_addr` itself.
    pub advertise_http: Option<String>,
    /// `host:port` others use to reach `grpc_addr`; `None` means `grpc_addr`.
    pub advertise_grpc: Option<String>,
    /// `host:port` peers use to reach `raft_addr`; `None` means `raft_addr`.
    pub advertise_raft: Option<String>,
    /// HTTP URL of any member of an existing cluster to join, e.g.
    /// `http://10.0.0.1:7700`; `None` starts (or restarts) on its own.
    pub join: Option<String>,
    /// Free-form labels reported with the node (zone, rack, ...).
    pub labels: BTreeMap<String, String>,
    /// Largest accepted HTTP / gRPC request body.
    pub max_body_size: ByteSize,
    /// Largest answer of one list request: a page that would be larger
    /// ends early, with a cursor to the rest.
    pub max_response_size: ByteSize,
    /// Watch streams one tenant may hold open on one node.
    pub max_watch_streams_per_tenant: usize,
    /// How long a shutdown waits for in-flight work before it stops anyway.
    pub shutdown_grace: Dur,
}

impl NodeConfig {
    /// `advertise_http`, or `http_addr` when unset.
    pub fn advertised_http(&self) -> String {
        self.advertise_http.clone().unwrap_or_else(|| self.http_addr.to_string())
    }

    /// `advertise_grpc`, or `grpc_addr` when unset.
    pub fn advertised_grpc(&self) -> String {
        self.advertise_grpc.clone().unwrap_or_else(|| self.grpc_addr.to_string())
    }

    /// `advertise_raft`, or `raft_addr` when unset.
    pub fn advertised_raft(&self) -> String {
        self.advertise_raft.clone().unwrap_or_else(|| self.raft_addr.to_string())
    }
}

const fn localhost(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: None,
            data_dir: PathBuf::from("./synod-data"),
            http_addr: localhost(7700),
            grpc_addr: localhost(7701),
            raft_addr: localhost(7702),
            advertise_http: None,
            advertise_grpc: None,
            advertise_raft: None,
            join: None,
            labels: BTreeMap::new(),
            max_body_size: ByteSize::mib(2),
            max_response_size: ByteSize::mib(16),
            max_watch_streams_per_tenant: 100,
            shutdown_grace: Dur::from_secs(10),
        }
    }
}

/// `cluster:` — Raft timing, membership and failure detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How many nodes vote (the rest are learners); 1..=7.
    pub voters: usize,
    /// Raft leader heartbeat period.
    pub heartbeat_interval: Dur,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min: Dur,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max: Dur,
    /// How often a node reports liveness and load to the leader.
    pub node_heartbeat_interval: Dur,
    /// Silence after which a node is marked suspect (no new tasks).
    pub suspect_after: Dur,
    /// Silence after which a node is dead and its tasks are reassigned.
    pub dead_after: Dur,
    /// Log entries since the last snapshot that trigger a new one (once the
    /// log has also grown by half the last snapshot's size).
    pub snapshot_logs_threshold: u64,
    /// Log entries kept behind a snapshot for slow followers.
    pub logs_to_keep: u64,
    /// Size of one snapshot chunk sent to a follower.
    pub snapshot_chunk_size: ByteSize,
    /// How long a client write waits to be committed.
    pub write_timeout: Dur,
    /// Promote learners to voters until `voters` is reached.
    pub auto_promote: bool,
    /// Node id -> Raft address to dial instead of the advertised one (for
    /// test proxies that inject faults).
    pub peer_addr_overrides: BTreeMap<u64, String>,
    /// HTTP addresses (`host:port` or URLs) of the nodes a new node looks
    /// for its cluster at; names are resolved again on every round. A list,
    /// or one comma-separated string (as an env var gives it).
    #[serde(deserialize_with = "string_list")]
    pub seeds: Vec<String>,
    /// With `seeds`: this many uninitialized nodes seen together form a new
    /// cluster (the lowest boot order bootstraps, the rest join it). 0 = never
    /// bootstrap from seeds, only join a cluster one of them is in.
    pub bootstrap_expect: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            voters: 3,
            heartbeat_interval: Dur::from_millis(40),
            election_timeout_min: Dur::from_millis(100),
            election_timeout_max: Dur::from_millis(200),
            node_heartbeat_interval: Dur::from_secs(1),
            suspect_after: Dur::from_secs(3),
            dead_after: Dur::from_secs(10),
            snapshot_logs_threshold: 10_000,
            logs_to_keep: 1_000,
            snapshot_chunk_size: ByteSize::mib(1),
            write_timeout: Dur::from_secs(5),
            auto_promote: true,
            peer_addr_overrides: BTreeMap::new(),
            seeds: Vec::new(),
            bootstrap_expect: 0,
        }
    }
}

/// Block compression of the RocksDB store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    #[default]
    Lz4,
    Zstd,
}

/// `storage:` — the RocksDB store under `node.data_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// fsync every committed write; off only for tests and benchmarks.
    pub fsync: bool,
    /// Let a node with `fsync: false` join a cluster or admit other nodes.
    pub fsync_off_in_cluster: bool,
    /// RocksDB block cache.
    pub block_cache_size: ByteSize,
    /// RocksDB memtable size per column family.
    pub write_buffer_size: ByteSize,
    /// Write-ahead log size that makes RocksDB flush the column families
    /// pinning its oldest file.
    pub max_wal_size: ByteSize,
    /// Block compression: none, lz4 or zstd.
    pub compression: Compression,
    /// Largest task payload accepted.
    pub max_payload_size: ByteSize,
    /// How long finished tasks are kept.
    pub retention: RetentionConfig,
}

/// `storage.retention:` — what is deleted when, so state stays bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished tasks (succeeded, failed, cancelled, dead-lettered) are
    /// deleted, with their payloads, results and idempotency keys, this long
    /// after they ended. 0 = kept for ever.
    pub finished_tasks: Dur,
    /// Most tasks one retention command deletes (the leader proposes them
    /// back to back until nothing is due).
    pub purge_batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { finished_tasks: Dur::from_secs(7 * 86_400), purge_batch: 1_000 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: true,
            fsync_off_in_cluster: false,
            block_cache_size: ByteSize::mib(64),
            write_buffer_size: ByteSize::mib(64),
            max_wal_size: ByteSize::mib(64),
            compression: Compression::Lz4,
            max_payload_size: ByteSize::mib(1),
            retention: RetentionConfig::default(),
        }
    }
}

/// `security.tls:` — TLS for the client-facing HTTP and gRPC listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// PEM CA that signed the nodes' certificates: nodes trust it when they
    /// call each other over HTTPS (join, forwarding to the leader).
    pub ca: Option<PathBuf>,
}

impl TlsConfig {
    /// Both files are set (validation rejects exactly one).
    pub fn is_enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// `security.cluster_tls:` — mutual TLS between nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// PEM CA that signs every node certificate.
    pub ca: Option<PathBuf>,
    /// PEM certificate of this node.
    pub cert: Option<PathBuf>,
    /// PEM private key of this node.
    pub key: Option<PathBuf>,
}

impl ClusterTlsConfig {
    /// All three files are set (validation rejects a partial set).
    pub fn is_enabled(&self) -> bool {
        self.ca.is_some() && self.cert.is_some() && self.key.is_some()
    }
}

/// `security:` — authentication and TLS.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Require a token on every API call.
    pub enabled: bool,
    /// Secret for HS256, or a path to the key for EdDSA / RS256.
    pub jwt_secret: Option<String>,
    /// HS256, EdDSA or RS256.
    pub jwt_algorithm: String,
    /// Lifetime of an issued token.
    pub token_ttl: Dur,
    /// Require a token on `/metrics` too.
    pub metrics_auth: bool,
    /// TLS for the client-facing listeners.
    pub tls: TlsConfig,
    /// Mutual TLS between nodes.
    pub cluster_tls: ClusterTlsConfig,
    /// Failed logins allowed per user and minute, counted by the whole
    /// cluster; and ten times as many attempts per client address and node.
    pub login_rate_per_minute: u32,
    /// Longest lifetime of an API key; a key asked for without an expiry
    /// gets this one. 0 = no cap (keys may never expire).
    pub api_key_max_ttl: Dur,
    /// Most tasks one tenant may have queued; 0 = no limit.
    pub tenant_max_queued_tasks: u64,
    /// Requests per second one tenant may make to one node; 0 = no limit.
    pub tenant_requests_per_second: u32,
    /// Most vectors one tenant may store over all its collections; 0 = no limit.
    pub tenant_max_vectors: u64,
    /// Most bytes one tenant may store (task payloads and results, points);
    /// 0 = no limit.
    pub tenant_max_storage_bytes: ByteSize,
}

/// Hand-written so that `{:?}` of a config never prints the secret.
impl fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("enabled", &self.enabled)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<redacted>"))
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("token_ttl", &self.token_ttl)
            .field("metrics_auth", &self.metrics_auth)
            .field("tls", &self.tls)
            .field("cluster_tls", &self.cluster_tls)
            .field("login_rate_per_minute", &self.login_rate_per_minute)
            .field("api_key_max_ttl", &self.api_key_max_ttl)
            .field("tenant_max_queued_tasks", &self.tenant_max_queued_tasks)
            .field("tenant_requests_per_second", &self.tenant_requests_per_second)
            .field("tenant_max_vectors", &self.tenant_max_vectors)
            .field("tenant_max_storage_bytes", &self.tenant_max_storage_bytes)
            .finish()
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            enabled: true,
            jwt_secret: None,
            jwt_algorithm: "HS256".to_owned(),
            token_ttl: Dur::from_secs(3600),
            metrics_auth: false,
            tls: TlsConfig::default(),
            cluster_tls: ClusterTlsConfig::default(),
            login_rate_per_minute: 10,
            api_key_max_ttl: Dur::from_secs(0),
            tenant_max_queued_tasks: 1_000_000,
            tenant_requests_per_second: 20_000,
            tenant_max_vectors: 10_000_000,
            tenant_max_storage_bytes: ByteSize::gib(64),
        }
    }
}

/// `scaling:` — the worker pool of each node and the cluster autoscaler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalingConfig {
    /// Workers kept even when idle.
    pub min_workers: usize,
    /// Upper bound on workers.
    pub max_workers: usize,
    /// Tasks the scheduler leases to a node per worker (0 counts as 1):
    /// those past its pool wait on the node and start the moment a worker
    /// frees, without waiting for a scheduler round and its Raft write.
    pub prefetch: u32,
    /// Queued tasks per worker that trigger adding a worker.
    pub scale_up_queue_depth: usize,
    /// Idle time after which a worker above `min_workers` is stopped.
    pub scale_down_idle: Dur,
    /// CPU use (0..=1) above which no worker is added.
    pub cpu_high: f64,
    /// Minimum time between two scaling decisions.
    pub cooldown: Dur,
    /// How long a crashed worker's task waits before it is retried.
    pub recovery_timeout: Dur,
    /// How long a draining node waits for its running tasks.
    pub drain_deadline: Dur,
    /// Lease on an assigned task; the worker renews it every third of this
    /// while the task runs, and a task whose lease runs out is re-queued.
    pub task_lease: Dur,
    /// A task whose node is lost (or whose lease runs out, or whose node
    /// drains past its deadline) this many times is dead-lettered; such
    /// attempts do not count against its `max_attempts`. 0 = no limit.
    pub max_lost_attempts: u32,
    /// Fewest nodes the cluster autoscaler asks for.
    pub min_nodes: usize,
    /// Most nodes the cluster autoscaler asks for.
    pub max_nodes: usize,
    /// Command run (through `sh -c`, with the desired node count appended as
    /// an argument) when the desired node count changes; none by default.
    pub hook: Option<String>,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            min_workers: 16,
            max_workers: 32,
            prefetch: 2,
            scale_up_queue_depth: 4,
            scale_down_idle: Dur::from_secs(30),
            cpu_high: 0.85,
            cooldown: Dur::from_secs(5),
            recovery_timeout: Dur::from_secs(5),
            drain_deadline: Dur::from_secs(60),
            task_lease: Dur::from_secs(30),
            max_lost_attempts: 10,
            min_nodes: 1,
            max_nodes: 7,
            hook: None,
        }
    }
}

/// Vector distance metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    #[default]
    Cosine,
    L2,
    Dot,
}

/// `vector_db:` — collections and the HNSW index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorDbConfig {
    /// Largest vector dimension a collection may declare.
    pub max_dimension: usize,
    /// Metric of a collection that names none: cosine, l2 or dot.
    pub default_metric: Metric,
    /// HNSW links per node.
    pub hnsw_m: usize,
    /// HNSW candidate list size while building.
    pub hnsw_ef_construction: usize,
    /// HNSW candidate list size while searching (default per query).
    pub hnsw_ef: usize,
    /// Most points in one upsert or delete.
    pub max_batch: usize,
    /// Points per HNSW segment; a full segment takes no more points and
    /// new ones start the next.
    pub segment_size: usize,
    /// Share of deleted points in a segment (0..=1) that triggers compaction.
    pub compaction_tombstone_ratio: f64,
    /// Read consistency of a query that names none: linearizable, leader
    /// or local.
    pub default_consistency: String,
    /// Largest metadata object of one point, as JSON.
    pub max_metadata_size: ByteSize,
    /// Most conditions in one filter.
    pub max_filter_conditions: usize,
    /// Most values over all `in` lists of one filter.
    pub max_filter_values: usize,
    /// Most hits one search request may ask for: the sum of `top_k` over
    /// its queries.
    pub max_search_hits: usize,
    /// Largest answer of one search request (hits with their metadata).
    pub max_search_response_size: ByteSize,
    /// How long one search request may compute before it is given up.
    pub search_timeout: Dur,
    /// Search requests computed at once on one node (the others wait);
    /// 0 = one per CPU core.
    pub search_concurrency: usize,
}

impl Default for VectorDbConfig {
    fn default() -> Self {
        VectorDbConfig {
            max_dimension: 4096,
            default_metric: Metric::Cosine,
            hnsw_m: 32,
            hnsw_ef_construction: 200,
            hnsw_ef: 200,
            max_batch: 1000,
            segment_size: 1_000_000,
            compaction_tombstone_ratio: 0.2,
            default_consistency: "leader".to_owned(),
            max_metadata_size: ByteSize::kib(64),
            max_filter_conditions: 16,
            max_filter_values: 1024,
            max_search_hits: 10_000,
            max_search_response_size: ByteSize::mib(16),
            search_timeout: Dur::from_secs(30),
            search_concurrency: 0,
        }
    }
}

/// A subprocess plugin declared in this node's config (the cluster-wide way
/// is `POST /plugins/load`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubprocessPlugin {
    /// Name tasks use to select the plugin; unique.
    pub name: String,
    /// The executable, relative to `plugins.dir`.
    pub command: String,
    /// Arguments passed to `command`.
    pub args: Vec<String>,
    /// A call running longer is killed.
    pub timeout: Dur,
    /// Worker processes kept (at most `plugins.subprocess_max_workers`).
    pub workers: u32,
}

impl Default for SubprocessPlugin {
    fn default() -> Self {
        SubprocessPlugin {
            name: String::new(),
            command: String::new(),
            args: Vec::new(),
            timeout: Dur::from_secs(30),
            workers: 1,
        }
    }
}

/// `plugins:` — WASM and subprocess task handlers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder of installed embedding models (`synod model install`);
    /// `None` is `<node.data_dir>/models`.
    pub models_dir: Option<PathBuf>,
    /// The model `vectorize` uses when its payload names none.
    pub default_model: String,
    /// Most texts one forward pass of a model embeds together.
    pub embed_batch_max_texts: usize,
    /// How long a request waits for others to share its forward pass; 0
    /// batches only what queued while the model was busy.
    pub embed_batch_max_wait: Dur,
    /// Most texts one `/v1/embeddings` request may carry.
    pub embeddings_max_inputs: u32,
    /// Folder of subprocess plugin executables; `None` runs none.
    pub dir: Option<PathBuf>,
    /// Most worker processes one subprocess plugin keeps on a node.
    pub subprocess_max_workers: u32,
    /// Longest answer line a subprocess plugin worker may write.
    pub subprocess_max_output: ByteSize,
    /// Largest WASM module loaded.
    pub wasm_max_module_size: ByteSize,
    /// WASM fuel (instructions, roughly) per call: the default and ceiling
    /// of a manifest's `fuel`.
    pub wasm_fuel: u64,
    /// Linear memory one WASM call may grow to (default and ceiling of a
    /// manifest's `memory_bytes`).
    pub wasm_max_memory: ByteSize,
    /// Largest result one WASM call may return.
    pub wasm_max_output: ByteSize,
    /// Wall-clock limit of one WASM call (default and ceiling of a
    /// manifest's `timeout_ms`).
    pub wasm_max_timeout: Dur,
    /// Host permissions a WASM manifest may be granted (`clock`); none by default.
    pub wasm_allowed_permissions: Vec<String>,
    /// Subprocess plugins declared on this node only.
    pub subprocess: Vec<SubprocessPlugin>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            models_dir: None,
            default_model: "all-MiniLM-L6-v2".to_owned(),
            embed_batch_max_texts: 64,
            embed_batch_max_wait: Dur::from_millis(0),
            embeddings_max_inputs: 2048,
            dir: None,
            subprocess_max_workers: 4,
            subprocess_max_output: ByteSize::mib(1),
            wasm_max_module_size: ByteSize::mib(16),
            wasm_fuel: 1_000_000_000,
            wasm_max_memory: ByteSize::mib(64),
            wasm_max_output: ByteSize::mib(1),
            wasm_max_timeout: Dur::from_secs(30),
            wasm_allowed_permissions: Vec::new(),
            subprocess: Vec::new(),
        }
    }
}

/// `external:` — services Synod calls: AI providers (`POST /external/ai`)
/// and vector databases that back collections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalConfig {
    /// The providers, by the name calls use.
    pub providers: BTreeMap<String, ProviderConfig>,
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI's API: OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp's
    /// server, text-embeddings-inference, another Synod node.
    #[default]
    Openai,
    /// Hugging Face's Inference API and Inference Endpoints.
    Huggingface,
    /// Vector databases that collections name as their backend
    /// (`"backend": {"provider": ...}`): Qdrant's REST API, a Pinecone
    /// index's data plane, Milvus's gRPC API.
    Qdrant,
    Pinecone,
    Milvus,
}

/// `external.providers.<name>:` — one provider. Its API key comes from an
/// environment variable or a file, never from this file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// `https://api.openai.com/v1`, `http://127.0.0.1:7700/v1`,
    /// `https://api-inference.huggingface.co`; a Qdrant server
    /// (`http://host:6333`), a Pinecone index's host, a Milvus server
    /// (`http://host:19530`).
    pub base_url: String,
    /// The environment variable that holds the API key.
    pub api_key_env: Option<String>,
    /// A file that holds the API key (its first line).
    pub api_key_file: Option<PathBuf>,
    /// One attempt's time limit, answer included.
    pub timeout: Dur,
    /// Calls in flight at once; more wait `queue_wait`, then get 429.
    pub max_concurrency: u32,
    pub queue_wait: Dur,
    /// Attempts after the first, for failures that are safe to repeat.
    pub max_retries: u32,
    /// First retry backoff (doubling, with jitter) and its cap; the cap
    /// also bounds how long a provider's `Retry-After` is honoured.
    pub retry_backoff: Dur,
    pub retry_max_backoff: Dur,
    /// Consecutive failures that open the circuit breaker (0: not this way).
    pub breaker_failure_threshold: u32,
    /// Failed share of the calls in `breaker_window`, in percent, that opens
    /// it (0: not this way), once the window holds `breaker_min_calls`.
    pub breaker_error_rate_percent: u32,
    pub breaker_min_calls: u32,
    pub breaker_window: Dur,
    /// How long an open breaker fails calls at once before probing.
    pub breaker_cooldown: Dur,
    /// Probes let through when half-open; that many successes close it.
    pub breaker_half_open_probes: u32,
    /// A header the provider reads an idempotency key from; with it, calls
    /// of unknown outcome (chat, completions) are retried with the same key.
    pub idempotency_header: Option<String>,
    /// The CAs trusted for an `https://` base_url (PEM); default: the
    /// system's bundle.
    pub ca_file: Option<PathBuf>,
    /// AI calls one tenant may make through it per UTC day, counted by the
    /// cluster; beyond it, 429 until the next day (0: no limit).
    pub tenant_daily_calls: u64,
    /// Tokens (as the provider reports them) one tenant may use through
    /// it per UTC day (0: no limit).
    pub tenant_daily_tokens: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            kind: ProviderKind::Openai,
            base_url: String::new(),
            api_key_env: None,
            api_key_file: None,
            timeout: Dur::from_secs(30),
            max_concurrency: 16,
            queue_wait: Dur::from_secs(1),
            max_retries: 3,
            retry_backoff: Dur::from_millis(200),
            retry_max_backoff: Dur::from_secs(10),
            breaker_failure_threshold: 5,
            breaker_error_rate_percent: 50,
            breaker_min_calls: 20,
            breaker_window: Dur::from_secs(30),
            breaker_cooldown: Dur::from_secs(30),
            breaker_half_open_probes: 1,
            idempotency_header: None,
            ca_file: None,
            tenant_daily_calls: 0,
            tenant_daily_tokens: 0,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// `observability:` — logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// json or text.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `info,synod_raft=debug`;
    /// `SYNOD_LOG` overrides it.
    pub log_level: String,
    /// Serve Prometheus metrics on `/metrics`.
    pub metrics_enabled: bool,
    /// Serve the testing endpoints (`GET /debug/digest`, admin only).
    pub debug_endpoints: bool,
    /// Testing only: crash this process at a storage step, e.g.
    /// `log_append@20` (see `synod_raft::failpoints`). Empty: none.
    pub failpoints: String,
    /// How often a node samples its metrics into its in-memory history
    /// (`GET /metrics/history`, the dashboard's charts).
    pub history_interval: Dur,
    /// Samples kept (the oldest go first): an hour at the defaults.
    pub history_samples: usize,
    /// Audit events each node keeps in memory for `GET /audit` (the
    /// dashboard's audit page); the oldest go first. The audit log itself
    /// is unbounded: it goes to stderr with the other logs.
    pub audit_events: usize,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            log_format: LogFormat::Json,
            log_level: "info".to_owned(),
            metrics_enabled: true,
            debug_endpoints: false,
            failpoints: String::new(),
            history_interval: Dur::from_secs(10),
            history_samples: 360,
            audit_events: 1000,
        }
    }
}

/// `std`'s own `SocketAddr` error does not repeat the input; this one does.
fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format_args!(
            "invalid socket address {text:?} (use ip:port, e.g. 127.0.0.1:7700 or 0.0.0.0:7700)"
        ))
    })
}

/// A list of strings, or one comma-separated string (`a:1,b:2`), so an env
/// var can set a list without YAML's brackets.
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    })
}
