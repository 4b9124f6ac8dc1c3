//! The service layer: every capability as a `do_*` function over [`Node`].
//! REST handlers, gRPC methods and the CLI (through REST) are thin adapters
//! over these (invariant 5).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_config::Config;
use synod_raft::{ClusterView, RaftNode};
use synod_store::pb::{self, command::Kind, command_result::Outcome};

use crate::error::{ApiError, Result};

pub mod authn;
pub mod backends;
pub mod backup;
pub mod cluster;
pub mod embeddings;
pub mod external;
pub mod history;
mod host;
pub mod identity;
pub mod leader_ops;
pub mod plugins;
pub mod tasks;
pub mod vector_form;
pub mod vector_store;
pub mod vectors;

/// One running node: its Raft, its settings and how it describes itself.
pub struct Node {
    pub raft: RaftNode,
    pub cfg: Arc<Config>,
    pub info: pb::NodeInfo,
    pub plugins: synod_plugins::Registry,
    /// This node's embedding models (the registry's `vectorize` and
    /// `tokenize` run them; text searches embed with them).
    pub models: Arc<synod_plugins::Models>,
    /// The WASM plugin versions compiled here (see [`crate::service::plugins`]).
    pub compiled: Arc<std::sync::Mutex<crate::service::plugins::Compiled>>,
    pub supervisor: std::sync::Arc<crate::supervisor::Supervisor>,
    /// Current worker pool size (between scaling.min_workers and max_workers).
    pub pool_size: std::sync::atomic::AtomicUsize,
    /// The cluster autoscaler's desired node count (leader only; 0 = not computed).
    pub desired_nodes: std::sync::atomic::AtomicUsize,
    pub started: Instant,
    /// Set when the node begins to stop: it is not ready from then on.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Readiness's view of the apply lag (see `cluster::do_health`): has
    /// this process applied everything committed once, and since when is
    /// it behind.
    pub caught_up: std::sync::atomic::AtomicBool,
    pub behind_since: std::sync::Mutex<Option<(u64, Instant)>>,
    /// Token keys and login limits (see [`crate::service::identity`]).
    pub security: crate::service::authn::Security,
    /// API key id -> last use seen here, flushed to the store now and then.
    pub key_uses: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Signs the leader operations this node sends and checks the ones it
    /// receives (see [`crate::service::leader_ops`]).
    pub(crate) sealer: crate::service::leader_ops::Sealer,
    /// Searches computed at once (`vector_db.search_concurrency`).
    pub search_slots: Arc<tokio::sync::Semaphore>,
    /// Open watch streams per tenant.
    pub watch_slots: crate::service::tasks::WatchSlots,
    /// The external providers (`external.providers`); none until set.
    pub external: Arc<synod_plugins::external::Providers>,
    /// The wire formats of the vector databases collections live in.
    pub backends: crate::service::backends::Wires,
    /// The last hour of this node's metric samples, for the dashboard.
    pub history: crate::service::history::History,
}

pub type SharedNode = Arc<Node>;

pub use synod_scheduler::now_ms;

pub fn command(kind: Kind) -> pb::Command {
    pb::Command { format_version: synod_store::COMMAND_FORMAT_BASE, stamped_at_ms: now_ms(), kind: Some(kind) }
}

/// Read consistency of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Whatever this node has applied.
    #[default]
    Local,
    /// What the leader has committed, confirmed by its lease instead of a
    /// quorum round; this node waits until it has applied that much.
    Leader,
    /// Through the leader's read index: reflects every write acknowledged
    /// before the read started.
    Linearizable,
}

impl Consistency {
    pub fn parse(s: Option<&str>) -> Result<Self> {
        match s.unwrap_or("local") {
            "" | "local" => Ok(Consistency::Local),
            "leader" => Ok(Consistency::Leader),
            "linearizable" => Ok(Consistency::Linearizable),
            other => Err(ApiError::InvalidArgument(format!(
                "unknown consistency {other:?} (use local, leader or linearizable)"
            ))),
        }
    }

    /// Waits until this node can answer at this consistency, and returns
    /// how many committed entries it had not applied (0 unless `local`).
    pub async fn barrier(self, node: &Node) -> Result<u64> {
        match self {
            Consistency::Linearizable => node.raft.read_barrier().await.map(|_| 0).map_err(Into::into),
            Consistency::Leader => node.raft.leader_read_barrier().await.map(|_| 0).map_err(Into::into),
            Consistency::Local => {
                let v = node.raft.view();
                Ok(v.commit_index.saturating_sub(v.applied_index))
            }
        }
    }
}

fn rejection_to_error(r: pb::Rejection) -> ApiError {
    match pb::RejectCode::try_from(r.code).unwrap_or(pb::RejectCode::Unspecified) {
        pb::RejectCode::NotFound => ApiError::NotFound(r.message),
        pb::RejectCode::VersionMismatch => ApiError::FailedPrecondition {
            message: r.message,
            details: r.current_version.map(|v| serde_json::json!({"current_version": v})),
        },
        pb::RejectCode::Invalid => ApiError::InvalidArgument(r.message),
        pb::RejectCode::StaleEpoch | pb::RejectCode::AlreadyDone | pb::RejectCode::LeaseLive => {
            ApiError::FailedPrecondition { message: r.message, details: None }
        }
        pb::RejectCode::QuotaExceeded => ApiError::RateLimited { message: r.message, retry_after_s: 1 },
        pb::RejectCode::Unsupported | pb::RejectCode::Unspecified => ApiError::Internal(r.message),
    }
}

impl Node {
    pub fn new(
        raft: RaftNode,
        cfg: Arc<Config>,
        info: pb::NodeInfo,
        plugins: synod_plugins::Registry,
        models: Arc<synod_plugins::Models>,
        security: crate::service::authn::Security,
        sealer: crate::service::leader_ops::Sealer,
    ) -> Node {
        let pool = cfg.scaling.min_workers.clamp(1, cfg.scaling.max_workers.max(1));
        let searches = match cfg.vector_db.search_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Node {
            raft,
            cfg,
            info,
            plugins,
            models,
            compiled: Default::default(),
            supervisor: crate::supervisor::Supervisor::new(),
            pool_size: std::sync::atomic::AtomicUsize::new(pool),
            desired_nodes: std::sync::atomic::AtomicUsize::new(0),
            started: Instant::now(),
            stopping: Default::default(),
            caught_up: Default::default(),
            behind_since: Default::default(),
            security,
            key_uses: Default::default(),
            sealer,
            search_slots: Arc::new(tokio::sync::Semaphore::new(searches)),
            watch_slots: Default::default(),
            external: Default::default(),
            backends: Default::default(),
            history: Default::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.raft.id
    }

    /// Proposes a command; a business rejection becomes its API error.
    /// Answers the outcome and the entry's log index once this node has
    /// applied it too (at most a second's wait: the write is committed
    /// either way), so a client reads its own writes from the node it
    /// wrote through.
    pub(crate) async fn propose(&self, kind: Kind) -> Result<(Outcome, u64)> {
        let out = self.raft.write(&command(kind)).await?;
        self.raft.wait_applied(out.log_index, Duration::from_secs(1)).await;
        match out.result.outcome {
            Some(Outcome::Rejected(r)) => Err(rejection_to_error(r)),
            Some(o) => Ok((o, out.log_index)),
            None => Err(ApiError::Internal("empty command result".into())),
        }
    }

    fn role_of(&self, id: u64, v: &ClusterView) -> &'static str {
        if v.leader == Some(id) {
            "leader"
        } else if v.is_voter(id) {
            "voter"
        } else if v.is_learner(id) {
            "learner"
        } else {
            "none"
        }
    }

    /// alive / suspect / dead from the leader-stamped heartbeat time.
    pub fn liveness(&self, last_heartbeat_ms: u64, now: u64) -> &'static str {
        synod_scheduler::liveness(&self.cfg, last_heartbeat_ms, now).as_str()
    }

    /// What this node offers tasks besides its plugins' names:
    /// `model:<name>` per installed model, `plugin:<name>@<sha256>` per
    /// compiled plugin version.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = self.models.names().iter().map(|m| synod_plugins::model_capability(m)).collect();
        caps.extend(self.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).capabilities());
        caps
    }

    /// The registry info of every node not declared dead; this node's own
    /// from its current state, ahead of its registry record.
    pub fn live_infos(&self) -> Result<Vec<pb::NodeInfo>> {
        let now = self.raft.cluster_now_ms();
        let mut me = self.info.clone();
        me.capabilities = self.capabilities();
        me.task_types = self.plugins.names().into_iter().collect();
        let mut out = vec![me];
        for rec in self.raft.store.list_nodes()? {
            let Some(info) = rec.info else { continue };
            let dead =
                synod_scheduler::liveness(&self.cfg, rec.last_heartbeat_ms, now) == synod_scheduler::Liveness::Dead;
            if info.id != self.id() && !dead {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Refuses `requires` (capabilities a task needs, `model:<name>`) that no
    /// live node offers: such a task would wait in the queue for ever. This
    /// node's own models count before its registry record catches up.
    pub fn check_offered(&self, requires: &[String]) -> Result<()> {
        if requires.is_empty() {
            return Ok(());
        }
        let offered: std::collections::BTreeSet<String> =
            self.live_infos()?.into_iter().flat_map(|i| i.capabilities).collect();
        let Some(missing) = requires.iter().find(|r| !offered.contains(*r)) else { return Ok(()) };
        let models: Vec<&str> = offered.iter().filter_map(|c| c.strip_prefix("model:")).collect();
        let have = if models.is_empty() {
            "no live node has a model installed (synod model install all-MiniLM-L6-v2)".to_owned()
        } else {
            format!("installed on live nodes: {}", models.join(", "))
        };
        if let Some(plugin) = missing.strip_prefix("plugin:") {
            let name = plugin.split('@').next().unwrap_or(plugin);
            let why = match self.plugins.get(name).map(|p| p.info().kind) {
                Some(kind) if kind == "subprocess" => {
                    "no live node has its executable in plugins.dir (nodes check every 500 ms)"
                }
                _ => "nodes compile a new version within a second; retry shortly",
            };
            return Err(ApiError::Unavailable(format!("plugin version {plugin} is not ready on any live node: {why}")));
        }
        let what = missing.strip_prefix("model:").map_or_else(|| missing.clone(), |m| format!("model {m:?}"));
        Err(ApiError::InvalidArgument(format!("{what} is not installed on any live node; {have}")))
    }

    /// The liveness of every registered node, by id.
    pub(crate) fn liveness_map(&self) -> Result<BTreeMap<u64, &'static str>> {
        let now = self.raft.cluster_now_ms();
        Ok(self
            .raft
            .store
            .list_nodes()?
            .iter()
            .filter_map(|r| Some((r.info.as_ref()?.id, self.liveness(r.last_heartbeat_ms, now))))
            .collect())
    }
}
