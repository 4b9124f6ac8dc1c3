//! Cluster operations: status, the node registry and its labels,
//! membership (carried out by the leader, see [`super::leader_ops`]),
//! draining, the state digest, and `/health`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synod_raft::{ClusterView, Role};
use synod_store::pb::{self, command::Kind, command_result::Outcome};

use super::leader_ops::{LeaderOp, LeaderReply};
use super::{Consistency, Node};
use crate::error::{ApiError, Result};

// ---- views (the JSON shapes of the API; a compatibility promise)

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodeStatusView {
    pub id: u64,
    pub role: String,
    pub raft_addr: String,
    pub http_addr: String,
    pub grpc_addr: String,
    pub liveness: String,
    pub applied_index: u64,
    /// Highest log index the leader knows this node holds (leader's view).
    pub matched_index: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClusterStatusView {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// The cluster autoscaler's desired node count (computed by the leader).
    pub desired_nodes: Option<u64>,
    /// Index of this node's latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Log entries up to here are purged on this node (behind a snapshot).
    pub purged_index: Option<u64>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// True while a membership change is in its joint phase (old and new
    /// voter sets must both agree); `voters` is then the union of the two.
    pub membership_joint: bool,
    pub nodes: Vec<NodeStatusView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct CapacityView {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub worker_slots: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RegistryEntryView {
    pub id: u64,
    pub role: String,
    pub liveness: String,
    pub raft_addr: String,
    pub http_addr: String,
    pub grpc_addr: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: CapacityView,
    /// The task types (plugins) the node runs.
    #[serde(default)]
    pub task_types: Vec<String>,
    /// What else it offers tasks: `model:<name>` per installed model.
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub cpu_load: f64,
    pub draining: bool,
    pub registered_at_ms: u64,
    pub last_heartbeat_ms: u64,
    /// Milliseconds since the last heartbeat, on the answering node's clock.
    pub last_heartbeat_age_ms: u64,
    pub applied_index: u64,
    /// Commit index minus this node's applied index.
    pub lag: u64,
    /// The record version: the ETag of label writes.
    pub record_version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryView {
    pub nodes: Vec<RegistryEntryView>,
    /// How far this answer may lag the leader, in log entries (0 for a
    /// linearizable read).
    pub behind_by: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JoinRequest {
    pub id: u64,
    pub raft_addr: String,
    pub http_addr: String,
    pub grpc_addr: String,
    /// The joining node's data dir incarnation (0: unknown, as from an
    /// admin's add-learner): a member of this id with another one is not
    /// this node.
    #[serde(default)]
    pub incarnation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MembershipReply {
    pub log_index: u64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub info: NodeInfoJson,
    pub applied_index: u64,
    pub cpu_load: f64,
    #[serde(default)]
    pub worker_slots: u32,
    #[serde(default)]
    pub running_tasks: u32,
}

/// [`pb::NodeInfo`] as JSON, for the internal heartbeat route.
#[derive(Debug, Clone, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct NodeInfoJson {
    pub id: u64,
    pub raft_addr: String,
    pub http_addr: String,
    pub grpc_addr: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: CapacityView,
    #[serde(default)]
    pub task_types: Vec<String>,
    /// `model:<name>` for each embedding model the node can run.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The data dir's incarnation (`<data-dir>/boot_id`); 0 when unknown.
    #[serde(default)]
    pub incarnation: u64,
    /// The newest command format the node applies; 0 when unknown (format 1).
    #[serde(default)]
    pub command_format: u32,
}

impl From<&pb::NodeInfo> for NodeInfoJson {
    fn from(i: &pb::NodeInfo) -> Self {
        let c = i.capacity.unwrap_or_default();
        NodeInfoJson {
            id: i.id,
            raft_addr: i.raft_addr.clone(),
            http_addr: i.http_addr.clone(),
            grpc_addr: i.grpc_addr.clone(),
            version: i.version.clone(),
            labels: i.labels.clone(),
            capacity: CapacityView { cpus: c.cpus, memory_bytes: c.memory_bytes, worker_slots: c.worker_slots },
            task_types: i.task_types.clone(),
            capabilities: i.capabilities.clone(),
            incarnation: i.incarnation,
            command_format: i.command_format,
        }
    }
}

impl From<NodeInfoJson> for pb::NodeInfo {
    fn from(i: NodeInfoJson) -> Self {
        pb::NodeInfo {
            id: i.id,
            raft_addr: i.raft_addr,
            http_addr: i.http_addr,
            grpc_addr: i.grpc_addr,
            version: i.version,
            labels: i.labels,
            capacity: Some(pb::Capacity {
                cpus: i.capacity.cpus,
                memory_bytes: i.capacity.memory_bytes,
                worker_slots: i.capacity.worker_slots,
            }),
            task_types: i.task_types,
            capabilities: i.capabilities,
            incarnation: i.incarnation,
            command_format: i.command_format,
        }
    }
}

use crate::auth::AuthContext;

/// Logs and counts a membership change where the caller made it (the
/// leader that carried it out may be another node).
fn audited(ctx: &AuthContext, event: &'static str, id: u64, r: Result<MembershipReply>) -> Result<MembershipReply> {
    if let Ok(reply) = &r {
        crate::service::authn::audit(event, &ctx.subject, &format!("node {id}: {}", reply.message));
    }
    r
}

/// This node's state digest (`observability.debug_endpoints`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DigestView {
    pub node_id: u64,
    /// The index of the last entry applied to the digested state.
    pub applied_index: u64,
    /// FNV-1a over the replicated state, as 16 hex digits: equal on every
    /// node at the same applied index.
    pub digest: String,
}

pub fn do_state_digest(_ctx: &AuthContext, node: &Node) -> Result<DigestView> {
    if !node.cfg.observability.debug_endpoints {
        return Err(ApiError::NotFound("the debug endpoints are off (set observability.debug_endpoints: true)".into()));
    }
    let (applied, digest) = node.raft.state_digest()?;
    Ok(DigestView { node_id: node.id(), applied_index: applied.unwrap_or(0), digest: format!("{digest:016x}") })
}

pub fn do_cluster_status(_ctx: &AuthContext, node: &Node) -> Result<ClusterStatusView> {
    let v = node.raft.view();
    let liveness = node.liveness_map()?;
    let registry: BTreeMap<u64, pb::NodeRecord> =
        node.raft.store.list_nodes()?.into_iter().filter_map(|r| Some((r.info.as_ref()?.id, r))).collect();
    let nodes = v
        .members
        .iter()
        .map(|(id, n)| {
            let applied_index =
                if *id == node.id() { v.applied_index } else { registry.get(id).map(|r| r.applied_index).unwrap_or(0) };
            NodeStatusView {
                id: *id,
                role: node.role_of(*id, &v).to_string(),
                raft_addr: n.raft_addr.clone(),
                http_addr: n.http_addr.clone(),
                grpc_addr: n.grpc_addr.clone(),
                liveness: if *id == node.id() { "alive" } else { liveness.get(id).copied().unwrap_or("unknown") }
                    .to_string(),
                applied_index,
                matched_index: v.matched.get(id).copied().flatten(),
            }
        })
        .collect();
    Ok(ClusterStatusView {
        node_id: node.id(),
        leader_id: v.leader,
        term: v.term,
        commit_index: v.commit_index,
        applied_index: v.applied_index,
        last_log_index: v.last_log_index,
        desired_nodes: Some(node.desired_nodes.load(std::sync::atomic::Ordering::Relaxed) as u64).filter(|d| *d != 0),
        snapshot_index: v.snapshot_index,
        purged_index: v.purged_index,
        voters: v.voters.clone(),
        learners: v.learners.clone(),
        membership_joint: v.joint,
        nodes,
    })
}

fn entry_view(node: &Node, rec: pb::NodeRecord, v: &ClusterView, now: u64) -> RegistryEntryView {
    let info = rec.info.unwrap_or_default();
    let cap = info.capacity.unwrap_or_default();
    let commit = v.commit_index;
    let applied_index = if info.id == node.id() { v.applied_index } else { rec.applied_index };
    RegistryEntryView {
        id: info.id,
        role: node.role_of(info.id, v).to_string(),
        liveness: node.liveness(rec.last_heartbeat_ms, now).to_string(),
        raft_addr: info.raft_addr,
        http_addr: info.http_addr,
        grpc_addr: info.grpc_addr,
        version: info.version,
        labels: info.labels,
        capacity: CapacityView { cpus: cap.cpus, memory_bytes: cap.memory_bytes, worker_slots: cap.worker_slots },
        task_types: info.task_types,
        capabilities: info.capabilities,
        cpu_load: rec.load.map(|l| l.cpu_load).unwrap_or(0.0),
        draining: rec.draining,
        registered_at_ms: rec.registered_at_ms,
        last_heartbeat_ms: rec.last_heartbeat_ms,
        last_heartbeat_age_ms: now.saturating_sub(rec.last_heartbeat_ms),
        applied_index,
        lag: commit.saturating_sub(applied_index),
        record_version: rec.version,
    }
}

pub async fn do_list_registry(_ctx: &AuthContext, node: &Node, consistency: Consistency) -> Result<RegistryView> {
    let behind_by = consistency.barrier(node).await?;
    let v = node.raft.view();
    let now = node.raft.cluster_now_ms();
    let nodes = node.raft.store.list_nodes()?.into_iter().map(|r| entry_view(node, r, &v, now)).collect();
    Ok(RegistryView { nodes, behind_by })
}

pub async fn do_get_node(
    _ctx: &AuthContext,
    node: &Node,
    id: u64,
    consistency: Consistency,
) -> Result<RegistryEntryView> {
    consistency.barrier(node).await?;
    let rec =
        node.raft.store.get_node(id)?.ok_or_else(|| ApiError::NotFound(format!("node {id} is not registered")))?;
    Ok(entry_view(node, rec, &node.raft.view(), node.raft.cluster_now_ms()))
}

/// Label keys and values: non-empty keys of at most 253 bytes, values of at
/// most 1 KiB, at most 64 labels.
fn validate_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > 64 {
        return Err(ApiError::InvalidArgument(format!("{} labels; at most 64 are allowed", labels.len())));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > 253 {
            return Err(ApiError::InvalidArgument(format!("label key {k:?} must be 1 to 253 bytes")));
        }
        if v.len() > 1024 {
            return Err(ApiError::InvalidArgument(format!("label {k:?}: value longer than 1024 bytes")));
        }
    }
    Ok(())
}

pub async fn do_set_labels(
    ctx: &AuthContext,
    node: &Node,
    id: u64,
    labels: BTreeMap<String, String>,
    if_match: Option<u64>,
) -> Result<RegistryEntryView> {
    validate_labels(&labels)?;
    let (outcome, _) =
        node.propose(Kind::SetLabels(pb::SetNodeLabels { node_id: id, labels, expected_version: if_match })).await?;
    match outcome {
        Outcome::Node(rec) => {
            crate::service::authn::audit(
                "node_labels_set",
                &ctx.subject,
                &format!("node {id}: version {}", rec.version),
            );
            Ok(entry_view(node, rec, &node.raft.view(), node.raft.cluster_now_ms()))
        }
        other => Err(ApiError::Internal(format!("unexpected set-labels outcome {other:?}"))),
    }
}

fn check_addr(what: &str, addr: &str) -> Result<()> {
    if addr.is_empty() || !addr.contains(':') {
        return Err(ApiError::InvalidArgument(format!("{what} {addr:?} must be HOST:PORT")));
    }
    Ok(())
}

/// The checks of a join request that need no state.
pub(crate) fn check_join_request(req: &JoinRequest) -> Result<()> {
    if req.id == 0 {
        return Err(ApiError::InvalidArgument("node id 0 is reserved".into()));
    }
    check_addr("raft_addr", &req.raft_addr)?;
    check_addr("http_addr", &req.http_addr)
}

/// Adds a node as a learner (on the leader, wherever it is). Used by
/// `--join` (over the cluster channel) and `synod cluster add-learner`.
pub async fn do_add_learner(ctx: &AuthContext, node: &Node, req: JoinRequest) -> Result<MembershipReply> {
    check_join_request(&req)?;
    let id = req.id;
    let r = node.on_leader(LeaderOp::AddLearner(req)).await.and_then(LeaderReply::membership);
    audited(ctx, "membership_add_learner", id, r)
}

pub async fn do_promote(ctx: &AuthContext, node: &Node, id: u64) -> Result<MembershipReply> {
    let r = node.on_leader(LeaderOp::Promote { id }).await.and_then(LeaderReply::membership);
    audited(ctx, "membership_promote", id, r)
}

pub async fn do_demote(ctx: &AuthContext, node: &Node, id: u64, force: bool) -> Result<MembershipReply> {
    let r = node.on_leader(LeaderOp::Demote { id, force }).await.and_then(LeaderReply::membership);
    audited(ctx, "membership_demote", id, r)
}

pub async fn do_remove(ctx: &AuthContext, node: &Node, id: u64, force: bool) -> Result<MembershipReply> {
    let r = node.on_leader(LeaderOp::Remove { id, force }).await.and_then(LeaderReply::membership);
    audited(ctx, "membership_remove", id, r)
}

pub async fn do_transfer_leader(ctx: &AuthContext, node: &Node, id: u64) -> Result<MembershipReply> {
    let r = node.on_leader(LeaderOp::TransferLeader { id }).await.and_then(LeaderReply::membership);
    audited(ctx, "leader_transfer", id, r)
}

pub async fn do_set_draining(ctx: &AuthContext, node: &Node, id: u64, draining: bool) -> Result<RegistryEntryView> {
    let what = if draining { "node_drain" } else { "node_undrain" };
    crate::service::authn::audit(what, &ctx.subject, &format!("node {id}"));
    match node.propose(Kind::SetDraining(pb::SetNodeDraining { node_id: id, draining })).await? {
        (Outcome::Node(rec), _) => Ok(entry_view(node, rec, &node.raft.view(), node.raft.cluster_now_ms())),
        (other, _) => Err(ApiError::Internal(format!("unexpected drain outcome {other:?}"))),
    }
}

/// `/health`: this node's view, always 200 while the process serves.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthView {
    pub status: String,
    pub node_id: u64,
    /// Where this node's Raft transport listens (a joining node sends its
    /// request there).
    pub raft_addr: String,
    /// Now on the cluster's timeline, as this node knows it (a joining node
    /// dates its requests by it).
    pub cluster_time_ms: u64,
    pub role: String,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub uptime_s: u64,
    pub version: String,
    pub ready: bool,
    pub reason: Option<String>,
    /// The node's long-lived components and how often they were restarted.
    pub components: Vec<crate::supervisor::ComponentView>,
    /// Current worker pool size.
    pub worker_pool_size: usize,
    /// The external providers' circuit breakers as this node sees them (a
    /// failing provider does not make the node unready).
    pub external: Vec<ExternalHealth>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExternalHealth {
    pub provider: String,
    pub kind: String,
    /// closed, open or half_open.
    pub breaker: String,
    /// While open: seconds until probes go through.
    pub retry_after_s: Option<u64>,
}

/// Why this node cannot be counted on to reach the leader, if it cannot:
/// no leader has reached it (or, on the leader, no quorum has acknowledged
/// it) within `cluster.dead_after`, when the others count it dead too. A
/// shorter bound made a busy leader flap (acknowledgements wait behind
/// the followers' log writes). A follower cut off from the others
/// still names the leader it last knew (pre-vote keeps the term), and a
/// leader without a quorum may still think it leads; neither can serve a
/// write. Raft contact, not a write's latency: a busy cluster stays ready.
fn out_of_touch(node: &Node) -> Option<String> {
    let window = node.cfg.cluster.dead_after.get();
    match node.raft.leader_contact_age() {
        None => Some("no contact with a leader yet".to_string()),
        Some(age) if age > window => Some(format!(
            "no contact with a leader (or, leading, with a quorum) for {:.1} s (cluster.dead_after is {:?})",
            age.as_secs_f64(),
            window
        )),
        Some(_) => None,
    }
}

/// Why this node's state is too far behind the log to serve, if it is:
/// until it has applied everything committed once since it started (a
/// restart replays, a new node catches up), and after that only when an
/// entry it knew committed `cluster.dead_after` ago is still not applied
/// (a stalled state machine). Under a steady stream of writes applied
/// trails committed by a few entries at every instant, on a busy follower
/// for as long as the writes last; that is no reason to take a node out of
/// a load balancer (t12 caught both "behind at this instant" and "behind
/// at every look for a while" flapping a busy follower).
fn behind(node: &Node, applied: u64, commit: u64) -> Option<String> {
    let mut mark = node.behind_since.lock().unwrap_or_else(|e| e.into_inner());
    if applied >= commit {
        *mark = None;
        node.caught_up.store(true, std::sync::atomic::Ordering::Relaxed);
        return None;
    }
    // The oldest committed entry not applied that this node has seen: once
    // it is applied, the next one is timed from now.
    let (index, since) = match *mark {
        Some((index, since)) if applied < index => (index, since),
        _ => (commit, std::time::Instant::now()),
    };
    *mark = Some((index, since));
    let window = node.cfg.cluster.dead_after.get();
    if !node.caught_up.load(std::sync::atomic::Ordering::Relaxed) || since.elapsed() > window {
        return Some(format!(
            "applying: applied {applied} < committed {commit}; entry {index}, committed {:.1} s ago, is not applied",
            since.elapsed().as_secs_f64()
        ));
    }
    None
}

pub fn do_health(node: &Node) -> HealthView {
    let v = node.raft.view();
    let (commit, applied) = (v.commit_index, v.applied_index);
    let member = v.is_member(node.id());
    let reason = if node.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        Some("stopping".to_string())
    } else if !member {
        Some("not a member of a cluster yet".to_string())
    } else if v.leader.is_none() {
        Some("no known leader".to_string())
    } else if let Some(why) = out_of_touch(node) {
        Some(why)
    } else if let Some(why) = behind(node, applied, commit) {
        Some(why)
    } else if !matches!(node.raft.store.get_node(node.id()), Ok(Some(_))) {
        Some("not yet registered in the node registry".to_string())
    } else if node.cfg.security.enabled && !matches!(node.raft.store.has_users(), Ok(true)) {
        // Ready means a login can succeed: not before the first admin exists here.
        Some("the first admin is not created yet".to_string())
    } else {
        None
    };
    let role = match v.role {
        Role::Leader => "leader",
        Role::Candidate => "candidate",
        Role::Follower => "voter",
        Role::Learner => "learner",
        Role::Shutdown => "shutdown",
    };
    HealthView {
        status: "ok".into(),
        node_id: node.id(),
        raft_addr: node.info.raft_addr.clone(),
        cluster_time_ms: node.raft.cluster_now_ms(),
        role: if member { role } else { "none" }.into(),
        term: v.term,
        leader_id: v.leader,
        commit_index: commit,
        applied_index: applied,
        uptime_s: node.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").into(),
        ready: reason.is_none(),
        reason,
        components: node.supervisor.components(),
        worker_pool_size: node.pool_size.load(std::sync::atomic::Ordering::Relaxed),
        external: {
            let now = std::time::Instant::now();
            (node.external.iter())
                .map(|p| {
                    let b = p.breaker(now);
                    ExternalHealth {
                        provider: p.spec().name.clone(),
                        kind: p.spec().kind.as_str().to_owned(),
                        breaker: b.state.as_str().to_owned(),
                        retry_after_s: b.retry_after.map(|d| d.as_secs_f64().ceil() as u64),
                    }
                })
                .collect()
        },
    }
}

/// In a data dir: this node drained itself when it was told to stop, and
/// clears the mark when it starts again.
pub const DRAINED_AT_STOP: &str = "drained-at-stop";

/// On SIGTERM: no new tasks placed here (the draining mark), then wait up
/// to `within` for the tasks running here to finish, so a stop (a rolling
/// restart, a pod moved) does not cut them off to be retried elsewhere. A
/// node an admin had drained already stays as it was; one that cannot
/// reach the leader stops without waiting. Returns how many tasks were
/// still running at the end.
pub async fn drain_for_stop(node: &Node, within: std::time::Duration) -> usize {
    let id = node.id();
    let running = || node.raft.store.leased_tasks(Some(id)).map(|l| l.len()).unwrap_or(0);
    let record = node.raft.store.get_node(id).ok().flatten();
    if record.as_ref().is_none_or(|r| r.draining) {
        return running();
    }
    let marker = node.cfg.node.data_dir.join(DRAINED_AT_STOP);
    // Written before the mark is asked for: a crash between the two must
    // still clear it at the next start.
    let written = std::fs::File::create(&marker).and_then(|f| f.sync_all()).and_then(|()| {
        let dir = node.cfg.node.data_dir.as_path();
        std::fs::File::open(dir)?.sync_all()
    });
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot record the drain; stopping without it");
        return running();
    }
    let ask = node.propose(Kind::SetDraining(pb::SetNodeDraining { node_id: id, draining: true }));
    match tokio::time::timeout((within / 2).min(std::time::Duration::from_secs(5)), ask).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "draining before stopping failed; stopping anyway");
            return running();
        }
        Err(_) => {
            tracing::warn!("draining before stopping timed out; stopping anyway");
            return running();
        }
    }
    let deadline = tokio::time::Instant::now() + within;
    let mut left = running();
    tracing::info!(node = id, running = left, "drained for the stop; waiting for the running tasks");
    while left > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = running();
    }
    left
}

/// At start: clears the draining mark this node set on itself when it last
/// stopped (retrying until the cluster takes it).
pub async fn undrain_after_restart(node: super::SharedNode) {
    let marker = node.cfg.node.data_dir.join(DRAINED_AT_STOP);
    if !marker.exists() {
        return;
    }
    let id = node.id();
    loop {
        let ask = node.propose(Kind::SetDraining(pb::SetNodeDraining { node_id: id, draining: false }));
        match ask.await {
            Ok(_) => break,
            Err(e) => tracing::debug!(error = %e, "clearing the drain of the last stop; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let _ = std::fs::remove_file(&marker);
    tracing::info!(node = id, "back from a stop: taking tasks again");
}
