//! [`RaftNode`]: one node's Raft, its store, and the write/read paths the
//! service layer uses.
//!
//! ```text
//!  write(cmd) ──► local Raft leader? ──yes──► client_write ──► applied ──► result
//!                    │ no (leader L known)
//!                    └──► ClientWrite RPC to L ──► L's client_write ──► result
//!  errors: not proposed (no leader, refused before sending) ─► Unavailable
//!          sent but no answer / leader lost mid-flight      ─► Indeterminate
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::errors::{ClientWriteError, LinearizableReadError};
use openraft::rt::WatchReceiver;
use openraft::{ChangeMembers, ReadPolicy, ServerState};
use prost::Message;
use synod_store::pb::{self, CommandResult};
use synod_store::{Store, StoreOptions};

use crate::error::{Error, Result};
use crate::network::{Peers, TokenCheck, TransportToken, never_sent};
use crate::pb::raft_service_server::RaftServiceServer;
use crate::pb::{Blob, Empty, ReadIndexRequest};
use crate::service::{LEADER_HINT, LocalWrite, RaftServiceImpl};
use crate::types::{Raft, RaftMetrics, Request, SynodNode};
use crate::{LogStore, StateMachine};
use tonic::service::interceptor::InterceptedService;

/// Everything needed to start one node's Raft.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub id: u64,
    pub node: SynodNode,
    pub data_dir: PathBuf,
    pub store: StoreOptions,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    pub snapshot_logs_threshold: u64,
    pub logs_to_keep: u64,
    pub snapshot_chunk_size: usize,
    pub write_timeout: Duration,
    pub peer_addr_overrides: BTreeMap<u64, String>,
    /// Mutual TLS on the Raft transport (`security.cluster_tls`).
    pub tls: Option<crate::network::ClusterTls>,
    /// The token every internal RPC must carry (see [`TransportToken`]).
    pub transport_token: Option<String>,
}

type MembershipResult = std::result::Result<
    openraft::raft::ClientWriteResponse<crate::TypeConfig>,
    openraft::errors::RaftError<crate::TypeConfig, ClientWriteError<crate::TypeConfig>>,
>;

/// A committed write: the state machine's answer and the entry's index.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub result: CommandResult,
    pub log_index: u64,
}

/// One node's Raft. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    pub id: u64,
    pub(crate) raft: Raft,
    pub store: Store,
    pub(crate) sm: StateMachine,
    peers: Peers,
    write_timeout: Duration,
    metrics_task: Arc<tokio::task::JoinHandle<()>>,
    token: TransportToken,
    /// The handler of [`crate::pb::raft_service_server::RaftService::leader_op`], set
    /// once the layer above is up.
    pub(crate) leader_ops: Arc<std::sync::OnceLock<Arc<dyn LeaderOps>>>,
    /// See [`ProposalHook`]; set once the layer above is up.
    proposal_hook: Arc<std::sync::OnceLock<Arc<dyn ProposalHook>>>,
    /// When a leader last reached this node (an append or a snapshot it
    /// did not refuse for a stale term).
    pub(crate) leader_contact: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// What a node does with a leader operation it receives over the cluster
/// channel. The layer above defines the operations, signs and checks them;
/// Raft only carries the bytes (it knows nothing of auth or JSON).
pub trait LeaderOps: Send + Sync + 'static {
    /// Answers the encoded outcome of the encoded operation `data`.
    fn handle(&self, data: Vec<u8>) -> futures::future::BoxFuture<'static, Vec<u8>>;
}

/// Sees every command this node proposes as leader (its own and those
/// forwarded to it) just before it goes into the log: the one place where
/// the leader may add what only it knows (the scheduler places a submit's
/// tasks there).
pub trait ProposalHook: Send + Sync + 'static {
    /// May append protobuf fields to the encoded `pb::Command` in `data`
    /// (a later field replaces a scalar and merges into a message, as the
    /// leader's stamp does). What it returns is dropped when the write is
    /// over, committed or not.
    fn before_propose(&self, data: &mut Vec<u8>) -> Option<Box<dyn Send>>;
}

fn ms(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

impl RaftNode {
    /// Opens the store under `data_dir` and starts Raft (not yet a member
    /// of anything if the data dir is new).
    pub async fn start(cfg: RaftConfig) -> Result<RaftNode> {
        let store = Store::open(&cfg.data_dir, &cfg.store)?;
        let sm = StateMachine::new(store.clone(), &cfg.data_dir.join("snapshots"))
            .map_err(|e| Error::Internal(format!("snapshot dir: {e}")))?;
        let raft_cfg = openraft::Config {
            cluster_name: "synod".to_string(),
            heartbeat_interval: ms(cfg.heartbeat_interval),
            election_timeout_min: ms(cfg.election_timeout_min),
            election_timeout_max: ms(cfg.election_timeout_max),
            install_snapshot_timeout: 30_000,
            // crate::snapshot_policy asks for snapshots (entries and bytes).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: cfg.logs_to_keep,
            snapshot_max_chunk_size: cfg.snapshot_chunk_size as u64,
            enable_pre_vote: Some(true),
            ..Default::default()
        };
        let raft_cfg = Arc::new(raft_cfg.validate().map_err(|e| Error::Internal(format!("raft config: {e}")))?);
        let token = TransportToken::new(cfg.transport_token.as_deref()).map_err(Error::Internal)?;
        let peers =
            Peers::new(cfg.peer_addr_overrides.clone(), cfg.snapshot_chunk_size, cfg.tls.clone(), token.clone());
        let log = LogStore::new(store.clone()).map_err(|e| Error::Internal(format!("raft log writer: {e}")))?;
        let log_bytes = log.appended_bytes();
        let raft = Raft::new(cfg.id, raft_cfg, peers.clone(), log, sm.clone())
            .await
            .map_err(|e| Error::Internal(format!("start raft: {e}")))?;
        let policy = crate::snapshot_policy::run(
            raft.clone(),
            log_bytes,
            sm.snapshot_bytes.clone(),
            cfg.snapshot_logs_threshold,
        );
        let watch = crate::metrics::watch(raft.clone(), store.clone());
        // One task for both: shutdown aborts it.
        let metrics_task = Arc::new(tokio::spawn(async move {
            tokio::join!(watch, policy);
        }));
        Ok(RaftNode {
            id: cfg.id,
            raft,
            store,
            sm,
            peers,
            write_timeout: cfg.write_timeout,
            metrics_task,
            token,
            leader_ops: Default::default(),
            proposal_hook: Default::default(),
            leader_contact: Default::default(),
        })
    }

    /// The tonic service other nodes call; it refuses calls without the
    /// cluster's transport token.
    pub fn service(&self) -> InterceptedService<RaftServiceServer<RaftServiceImpl>, TokenCheck> {
        let server = RaftServiceServer::new(RaftServiceImpl::new(self.clone()))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        InterceptedService::new(server, TokenCheck(self.token.clone()))
    }

    /// The digest of the replicated state and the index of the last entry
    /// applied to it, read together from one store snapshot: two nodes at
    /// the same index must have the same digest.
    pub fn state_digest(&self) -> Result<(Option<u64>, u64)> {
        let (applied, digest) = self.store.state_digest_applied()?;
        let index = match applied {
            Some(b) => Some(
                crate::codec::decode::<crate::types::LogId>(&b, "applied log id")
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .index,
            ),
            None => None,
        };
        Ok((index, digest))
    }

    /// The index of an opaque applied log id (as the store keeps it).
    pub fn log_index(applied: &[u8]) -> Result<u64> {
        crate::codec::decode::<crate::types::LogId>(applied, "applied log id")
            .map(|id| id.index)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Builds a snapshot of everything applied now and purges the log up to
    /// it, so a node that joins from here on gets that snapshot instead of
    /// the log: how a cluster started over restored state hands that state
    /// to its new members, which the log does not hold. Waits up to `within`.
    pub async fn snapshot_and_purge(&self, within: Duration) -> Result<u64> {
        let applied = self.view().applied_index;
        self.raft.trigger().snapshot().await.map_err(|e| Error::Stopped(e.to_string()))?;
        let mut rx = self.raft.metrics();
        let deadline = Instant::now() + within;
        loop {
            let at = rx.borrow_watched().snapshot.as_ref().map(|s| s.index);
            if at.is_some_and(|i| i >= applied) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(format!("no snapshot at index {applied} within {within:?}")));
            }
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
        self.raft.trigger().purge_log(applied).await.map_err(|e| Error::Stopped(e.to_string()))?;
        // The purge is queued, not done: wait until it is.
        loop {
            if rx.borrow_watched().purged.as_ref().is_some_and(|p| p.index >= applied) {
                return Ok(applied);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(format!("the log not purged to {applied} within {within:?}")));
            }
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }

    /// True once this node has a vote, a log or a membership.
    pub async fn is_initialized(&self) -> Result<bool> {
        self.raft.is_initialized().await.map_err(|e| Error::Stopped(e.to_string()))
    }

    /// Makes this node a one-voter cluster. Only for a pristine node.
    pub async fn bootstrap(&self, node: SynodNode) -> Result<()> {
        let members = BTreeMap::from([(self.id, node)]);
        self.raft.initialize(members).await.map_err(|e| Error::Internal(format!("initialize: {e}")))
    }

    pub(crate) fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// `f` of the current metrics, without copying them (a copy allocates:
    /// membership, replication maps), for the per-write checks.
    fn with_metrics<T>(&self, f: impl FnOnce(&RaftMetrics) -> T) -> T {
        f(&self.raft.metrics().borrow_watched())
    }

    /// How long ago this node was last in touch with a leader: on the
    /// leader, since a quorum last acknowledged it (zero when it is the
    /// only voter); elsewhere, since a leader's last append or snapshot.
    /// None: never, since this process started. Unlike a write's latency
    /// this does not grow with load: appends and heartbeats flow while the
    /// state machine is busy.
    pub fn leader_contact_age(&self) -> Option<Duration> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state == ServerState::Leader {
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            if voters == [self.id] {
                return Some(Duration::ZERO);
            }
            return m.last_quorum_acked.map(|t| openraft::Instant::elapsed(&t.into_inner()));
        }
        (*self.leader_contact.lock().unwrap_or_else(|e| e.into_inner())).map(|t| t.elapsed())
    }

    pub(crate) fn touched_by_leader(&self) {
        *self.leader_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }

    /// What this node knows of the cluster now.
    pub fn view(&self) -> crate::ClusterView {
        crate::ClusterView::of(&self.raft.metrics().borrow_watched())
    }

    /// A handle that wakes on every change of this node's view (an entry
    /// applied, a new leader, a membership change) from now on: take it
    /// before checking the condition it waits for, and no change is missed.
    pub fn changes(&self) -> Changes {
        Changes(self.raft.metrics())
    }

    /// Waits until this node has applied `index`, at most `max`; false if
    /// it has not by then.
    pub async fn wait_applied(&self, index: u64, max: Duration) -> bool {
        if self.with_metrics(|m| m.last_applied.as_ref().is_some_and(|l| l.index >= index)) {
            return true;
        }
        self.raft.wait(Some(max)).applied_index_at_least(Some(index), "applied").await.is_ok()
    }

    /// Waits until node `id` leads, at most `max`.
    pub async fn wait_leader(&self, id: u64, max: Duration) -> Result<()> {
        self.raft
            .wait(Some(max))
            .current_leader(id, "leader")
            .await
            .map(|_| ())
            .map_err(|e| Error::Unavailable(format!("node {id} did not become the leader: {e}")))
    }

    /// The current leader and how to reach it, as this node knows it.
    pub fn leader(&self) -> Option<(u64, SynodNode)> {
        self.with_metrics(|m| {
            let id = m.current_leader?;
            let node = m.membership_config.membership().get_node(&id).cloned()?;
            Some((id, node))
        })
    }

    pub fn is_leader(&self) -> bool {
        self.with_metrics(|m| m.state == ServerState::Leader && m.current_leader == Some(self.id))
    }

    /// Replicates `cmd` through the leader, wherever it is, and returns the
    /// state machine's answer once the entry is committed and applied.
    pub async fn write(&self, cmd: &pb::Command) -> Result<WriteOutcome> {
        let data = cmd.encode_to_vec();
        let deadline = Instant::now() + self.write_timeout;
        let mut hint: Option<u64> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Unavailable(format!(
                    "no leader accepted the write within {:?}",
                    self.write_timeout
                )));
            }
            let leader = hint.take().or_else(|| self.with_metrics(|m| m.current_leader));
            let started = Instant::now();
            let forwarded = leader.is_some_and(|l| l != self.id);
            let attempt = match leader {
                Some(l) if l != self.id => self.write_forward(l, data.clone(), remaining).await,
                _ => match tokio::time::timeout(remaining, self.write_local(data.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Indeterminate(format!("not committed within {:?}", self.write_timeout))),
                },
            };
            match attempt? {
                LocalWrite::Done { result, log_index } => {
                    crate::metrics::write_done(forwarded, started.elapsed());
                    let result = CommandResult::decode(result.as_slice())
                        .map_err(|e| Error::Internal(format!("undecodable command result: {e}")))?;
                    return Ok(WriteOutcome { result, log_index });
                }
                LocalWrite::NotLeader(next) => {
                    hint = next.filter(|n| Some(*n) != leader);
                    if hint.is_none() {
                        // No (new) leader known yet: an election is under way.
                        tokio::time::sleep(Duration::from_millis(20).min(remaining)).await;
                    }
                }
            }
        }
    }

    /// The term this node leads, once it has applied an entry of that term
    /// (the blank entry a new leader commits first): from then on its state
    /// holds everything earlier leaders committed.
    pub fn leader_term_applied(&self) -> Option<u64> {
        self.with_metrics(|m| {
            let leading = m.state == ServerState::Leader && m.current_leader == Some(self.id);
            let applied_term = m.last_applied.as_ref().map(|l| l.leader_id.term)?;
            (leading && applied_term == m.current_term).then_some(m.current_term)
        })
    }

    /// Now on the cluster's timeline (see [`crate::clock`]): the leader's
    /// stamping clock on the leader, this node's estimate of it elsewhere.
    pub fn cluster_now_ms(&self) -> u64 {
        let term = self.with_metrics(|m| {
            (m.state == ServerState::Leader && m.current_leader == Some(self.id)).then_some(m.current_term)
        });
        match term {
            Some(term) => self.sm.clock.leader_now(term),
            None => self.sm.clock.now(),
        }
    }

    /// A write on this node's own Raft; `NotLeader` if it is not the leader.
    /// The leader stamps the command here, whoever proposed it: every time
    /// in the replicated state is on the leader's timeline.
    pub(crate) async fn write_local(&self, mut data: Vec<u8>) -> Result<LocalWrite> {
        let (leading, leader, term) =
            self.with_metrics(|m| (m.state == ServerState::Leader, m.current_leader, m.current_term));
        if !leading {
            return Ok(LocalWrite::NotLeader(leader.filter(|l| *l != self.id)));
        }
        let _hooked = self.proposal_hook.get().and_then(|h| h.before_propose(&mut data));
        restamp(&mut data, self.sm.clock.leader_now(term));
        match self.raft.client_write(Request(data)).await {
            Ok(resp) => Ok(LocalWrite::Done { result: resp.data.0, log_index: resp.log_id.index }),
            Err(e) => match e.api_error() {
                Some(ClientWriteError::ForwardToLeader(f)) => Ok(LocalWrite::NotLeader(f.leader_id)),
                Some(ClientWriteError::LogEntryDiscarded(f)) => Err(Error::Indeterminate(format!(
                    "entry discarded on leader change (new leader {:?})",
                    f.leader_id
                ))),
                Some(ClientWriteError::ChangeMembershipError(m)) => Err(Error::Membership(m.to_string())),
                Some(ClientWriteError::PreconditionFailed(p)) => Err(Error::Membership(p.to_string())),
                None => Err(Error::Indeterminate(format!("raft stopped while writing: {e}"))),
            },
        }
    }

    async fn write_forward(&self, leader: u64, data: Vec<u8>, timeout: Duration) -> Result<LocalWrite> {
        let Some(node) = self.metrics().membership_config.membership().get_node(&leader).cloned() else {
            return Ok(LocalWrite::NotLeader(None));
        };
        let mut client = self.peers.client(leader, &node.raft_addr).map_err(Error::Unavailable)?;
        let mut req = tonic::Request::new(Blob { data });
        req.set_timeout(timeout);
        match client.client_write(req).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                Ok(LocalWrite::Done { result: reply.result, log_index: reply.log_index })
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                let hint = status.metadata().get(LEADER_HINT).and_then(|v| v.to_str().ok()?.parse().ok());
                Ok(LocalWrite::NotLeader(hint))
            }
            Err(status) if never_sent(&status) => {
                // The leader we know is unreachable: wait for a new election.
                tokio::time::sleep(Duration::from_millis(50).min(timeout)).await;
                Ok(LocalWrite::NotLeader(None))
            }
            Err(status) if status.code() == tonic::Code::Aborted && status.message().starts_with("unavailable") => {
                Err(Error::Unavailable(status.message().to_string()))
            }
            Err(status) => Err(Error::Indeterminate(format!("forwarded to leader {leader}: {}", status.message()))),
        }
    }

    /// Sets the handler of leader operations other nodes send here (once;
    /// a second call changes nothing). Until then they are refused.
    pub fn set_leader_ops(&self, ops: Arc<dyn LeaderOps>) {
        let _ = self.leader_ops.set(ops);
    }

    /// Sets the [`ProposalHook`] (once; a second call changes nothing).
    pub fn set_proposal_hook(&self, hook: Arc<dyn ProposalHook>) {
        let _ = self.proposal_hook.set(hook);
    }

    /// Sends a leader operation to member `target` over the cluster channel
    /// and answers its encoded outcome.
    pub async fn send_leader_op(&self, target: u64, data: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
        let Some(node) = self.metrics().membership_config.membership().get_node(&target).cloned() else {
            return Err(Error::Unavailable(format!("node {target} is not a member")));
        };
        crate::network::send_leader_op(&self.peers, target, &node.raft_addr, data, timeout).await
    }

    /// A linearizable read barrier: returns once this node has applied
    /// everything committed before the call (read index through the leader).
    pub async fn read_barrier(&self) -> Result<u64> {
        self.barrier(false).await
    }

    /// A read barrier at the leader's word: the leader answers from its
    /// lease, without a quorum round, while the lease lasts (a full read
    /// index otherwise). Returns once this node has applied everything the
    /// leader had committed; weaker than [`Self::read_barrier`] only if
    /// clocks drift more than the lease allows.
    pub async fn leader_read_barrier(&self) -> Result<u64> {
        self.barrier(true).await
    }

    async fn barrier(&self, lease: bool) -> Result<u64> {
        let deadline = Instant::now() + self.write_timeout;
        let mut last = String::from("no leader confirmed a read index");
        loop {
            // A leader that did not hear from a quorum in time (followers
            // busy installing a snapshot, a leader change under way) is
            // asked again until the deadline: a read changes nothing.
            match self.read_index_local(lease).await {
                Ok(Some(idx)) => return Ok(idx),
                Ok(None) => {}
                Err(Error::Unavailable(e)) => last = e,
                Err(e) => return Err(e),
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Unavailable(last));
            }
            let Some((leader, node)) = self.leader().filter(|(l, _)| *l != self.id) else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let mut client = self.peers.client(leader, &node.raft_addr).map_err(Error::Unavailable)?;
            let mut req = tonic::Request::new(ReadIndexRequest { lease });
            req.set_timeout(remaining);
            match client.read_index(req).await {
                Ok(r) => {
                    let idx = r.into_inner().read_index;
                    self.raft
                        .wait(Some(deadline.saturating_duration_since(Instant::now())))
                        .applied_index_at_least(Some(idx), "read barrier")
                        .await
                        .map_err(|e| Error::Unavailable(format!("waiting to apply up to {idx}: {e}")))?;
                    return Ok(idx);
                }
                Err(status) => {
                    last = format!("leader {leader}: {}", status.message());
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            }
        }
    }

    /// Read index on this node if it is the leader (`None` otherwise); waits
    /// for the local state machine to apply up to it. With `lease`, a valid
    /// leader lease stands in for the quorum round. A quorum that did not
    /// answer in time is `Unavailable` (worth asking again); a stopped Raft
    /// is `Stopped`.
    pub(crate) async fn read_index_local(&self, lease: bool) -> Result<Option<u64>> {
        if lease && let Ok(read) = self.raft.ensure_linearizable(ReadPolicy::LeaseRead).await {
            return Ok(Some(read.index()));
        }
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(Some(read.index())),
            Err(e) => match e.api_error() {
                Some(LinearizableReadError::ForwardToLeader(_)) => Ok(None),
                Some(LinearizableReadError::QuorumNotEnough(q)) => Err(Error::Unavailable(format!(
                    "no quorum confirmed the leader in time (answered: nodes {:?})",
                    q.got
                ))),
                None => Err(Error::Stopped(e.to_string())),
            },
        }
    }

    // ---- membership: leader only; callers forward to the leader otherwise.

    fn membership_err(e: openraft::errors::RaftError<crate::TypeConfig, ClientWriteError<crate::TypeConfig>>) -> Error {
        match e.api_error() {
            Some(ClientWriteError::ForwardToLeader(_)) => Error::Unavailable("this node is not the leader".into()),
            Some(ClientWriteError::LogEntryDiscarded(_)) => Error::Indeterminate(e.to_string()),
            Some(ClientWriteError::ChangeMembershipError(m)) => Error::Membership(m.to_string()),
            Some(ClientWriteError::PreconditionFailed(p)) => Error::Membership(p.to_string()),
            None => Error::Stopped(e.to_string()),
        }
    }

    /// Runs a membership change, waiting (up to the write timeout) while an
    /// earlier change is still in its joint phase instead of failing.
    async fn change<F, Fut>(&self, f: F) -> Result<u64>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = MembershipResult>,
    {
        let deadline = Instant::now() + self.write_timeout;
        loop {
            match f().await {
                Ok(r) => return Ok(r.log_id.index),
                Err(e) => {
                    let in_progress = matches!(
                        e.api_error(),
                        Some(ClientWriteError::ChangeMembershipError(
                            openraft::errors::ChangeMembershipError::InProgress(_)
                        ))
                    );
                    if in_progress && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    return Err(Self::membership_err(e));
                }
            }
        }
    }

    /// Checks that node `id` answers on the Raft transport at `addr` (with
    /// cluster TLS on, that its certificate is signed by the cluster CA).
    /// A node of an older version without `Ping` counts as unreachable.
    pub async fn probe(&self, id: u64, addr: &str) -> Result<()> {
        let mut client = self.peers.client(id, addr).map_err(Error::Unavailable)?;
        let unreachable = |why: String| {
            Error::Membership(format!("node {id} is not reachable over the Raft transport at {addr}: {why}"))
        };
        match tokio::time::timeout(Duration::from_secs(3), client.ping(tonic::Request::new(Empty {}))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(unreachable(s.message().to_string())),
            Err(_) => Err(unreachable("no answer within 3 s".into())),
        }
    }

    pub async fn add_learner(&self, id: u64, node: SynodNode) -> Result<u64> {
        self.change(|| self.raft.add_learner(id, node.clone(), false)).await
    }

    pub async fn promote(&self, id: u64) -> Result<u64> {
        self.change(|| self.raft.change_membership(ChangeMembers::AddVoterIds([id].into()), true)).await
    }

    /// Turns a voter into a learner.
    pub async fn demote(&self, id: u64) -> Result<u64> {
        self.change(|| self.raft.change_membership(ChangeMembers::RemoveVoters([id].into()), true)).await
    }

    /// Removes a node from the cluster, voter or learner.
    pub async fn remove(&self, id: u64) -> Result<u64> {
        let m = self.metrics();
        let is_voter = m.membership_config.membership().voter_ids().any(|v| v == id);
        let mut index = 0;
        if is_voter {
            index =
                self.change(|| self.raft.change_membership(ChangeMembers::RemoveVoters([id].into()), false)).await?;
        }
        let still_there = self.metrics().membership_config.membership().get_node(&id).is_some();
        if still_there {
            index = self.change(|| self.raft.change_membership(ChangeMembers::RemoveNodes([id].into()), false)).await?;
        }
        Ok(index)
    }

    pub async fn transfer_leader(&self, id: u64) -> Result<()> {
        self.raft.trigger().transfer_leader(id).await.map_err(|e| Error::Stopped(e.to_string()))
    }

    /// Stops Raft and flushes the store.
    pub async fn shutdown(&self) -> Result<()> {
        self.metrics_task.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.store.flush()?;
        Ok(())
    }
}

/// Sets `Command::stamped_at_ms` of an encoded command without decoding
/// it: protobuf takes the last occurrence of a scalar field, so appending
/// the field once more overrides whatever the proposer put there.
fn restamp(data: &mut Vec<u8>, stamp: u64) {
    prost::encoding::encode_key(2, prost::encoding::WireType::Varint, data);
    prost::encoding::encode_varint(stamp, data);
}

/// See [`RaftNode::changes`].
pub struct Changes(openraft::alias::WatchReceiverOf<crate::TypeConfig, RaftMetrics>);

impl Changes {
    /// Waits for the next change, at most `max`.
    pub async fn next(&mut self, max: Duration) {
        let _ = tokio::time::timeout(max, self.0.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restamping_overrides_the_proposers_time_and_keeps_the_command() {
        let cmd = pb::Command {
            format_version: 1,
            stamped_at_ms: 5,
            kind: Some(pb::command::Kind::CancelTask(pb::CancelTask { tenant: "t".into(), id: "x".into() })),
        };
        let mut data = cmd.encode_to_vec();
        restamp(&mut data, 1_700_000_000_123);
        let back = pb::Command::decode(data.as_slice()).expect("decodes");
        assert_eq!(back.stamped_at_ms, 1_700_000_000_123);
        assert_eq!(back.kind, cmd.kind);
        assert_eq!(back.format_version, 1);
        // Control: without restamping the proposer's time stands.
        assert_eq!(pb::Command::decode(cmd.encode_to_vec().as_slice()).expect("decodes").stamped_at_ms, 5);
    }
}
