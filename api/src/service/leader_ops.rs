//! Operations only the leader carries out that are not plain log entries:
//! membership changes, node heartbeats (which the leader stamps) and a
//! joining node's id. A node that does not lead sends them to the leader
//! over the cluster channel (the Raft transport: its transport token and,
//! when `security.cluster_tls` is on, mutual TLS), as a typed [`LeaderOp`]
//! in a signed [`Sealed`] envelope:
//!
//! ```text
//!  follower / joiner                         leader
//!  LeaderOp ─► Envelope{from, issued_at_ms,  ─► MAC ok? within 60 s of the
//!              nonce, hops, op} + HMAC          leader's clock? nonce unseen?
//!              (key derived from the            ─► run(op) ─► Result<LeaderReply, ApiError>
//!               cluster secret)                     (JSON: every error kind and
//!                                                    its Retry-After survive)
//! ```
//!
//! No REST path and no bearer token: nothing a node sends here is accepted
//! on a public route, and a captured envelope is refused when replayed,
//! altered, or older than a minute. A joining node sends to the member it
//! was pointed at (`hops` 0), which passes it on to the leader (`hops` 1);
//! a node that gets a forwarded operation and does not lead refuses it, so
//! nothing loops.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use synod_raft::SynodNode;
use synod_store::pb::{self, command::Kind};

use crate::error::{ApiError, Result};
use crate::service::Node;
use crate::service::cluster::{Heartbeat, JoinRequest, MembershipReply};

/// How far an envelope's time may be from the receiver's clock (on the
/// cluster's timeline) and how long its nonce is remembered.
pub const WINDOW_MS: u64 = 60_000;

/// Nonces remembered at most; beyond, new envelopes are refused (only a
/// holder of the cluster secret can make them, so this bounds a bug, not
/// an attacker).
const MAX_REMEMBERED: usize = 100_000;

/// Every operation a node may ask of the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderOp {
    /// A fresh node id for a node about to join.
    AllocateNodeId,
    AddLearner(JoinRequest),
    /// May this node join with this id? Asked before its Raft port serves,
    /// so a node whose data dir was lost never talks Raft as the member it
    /// replaces.
    CheckJoin(JoinRequest),
    Promote {
        id: u64,
    },
    Demote {
        id: u64,
        force: bool,
    },
    Remove {
        id: u64,
        force: bool,
    },
    TransferLeader {
        id: u64,
    },
    /// A node's heartbeat, stamped with the leader's clock.
    Heartbeat(Heartbeat),
}

impl LeaderOp {
    fn name(&self) -> &'static str {
        match self {
            LeaderOp::AllocateNodeId => "allocate_node_id",
            LeaderOp::AddLearner(_) => "add_learner",
            LeaderOp::CheckJoin(_) => "check_join",
            LeaderOp::Promote { .. } => "promote",
            LeaderOp::Demote { .. } => "demote",
            LeaderOp::Remove { .. } => "remove",
            LeaderOp::TransferLeader { .. } => "transfer_leader",
            LeaderOp::Heartbeat(_) => "heartbeat",
        }
    }
}

/// What the leader answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderReply {
    Membership(MembershipReply),
    NodeId(u64),
}

impl LeaderReply {
    pub fn membership(self) -> Result<MembershipReply> {
        match self {
            LeaderReply::Membership(m) => Ok(m),
            other => Err(ApiError::Internal(format!("leader answered {other:?} to a membership change"))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    /// The sending node's id (0: a node that has none yet).
    from: u64,
    /// When it was sent, on the sender's estimate of the cluster timeline.
    issued_at_ms: u64,
    nonce: String,
    /// 0 from the node that made it; 1 once a member passed it on.
    hops: u8,
    op: LeaderOp,
}

/// The bytes on the wire: the envelope as JSON and its HMAC-SHA256.
#[derive(Serialize, Deserialize)]
pub struct Sealed {
    envelope: String,
    mac: String,
}

/// Signs and checks envelopes with a key derived from the cluster secret;
/// with security off there is no key, and nothing is signed or checked
/// beyond the transport itself.
pub struct Sealer {
    key: Option<hmac::Key>,
    seen: Mutex<HashMap<String, u64>>,
}

impl Sealer {
    /// `material` is the cluster secret (`None` with security off).
    pub fn new(material: Option<&[u8]>) -> Sealer {
        let key = material.map(|m| {
            let mut input = b"synod leader operations v1\0".to_vec();
            input.extend_from_slice(m);
            hmac::Key::new(hmac::HMAC_SHA256, &crate::auth::sha256(&input))
        });
        Sealer { key, seen: Mutex::new(HashMap::new()) }
    }

    fn mac(&self, text: &str) -> String {
        match &self.key {
            Some(k) => hex(hmac::sign(k, text.as_bytes()).as_ref()),
            None => String::new(),
        }
    }

    /// The wire form of `op` sent by node `from` at `now_ms`.
    pub fn seal(&self, from: u64, now_ms: u64, hops: u8, op: &LeaderOp) -> Vec<u8> {
        let env = Envelope { from, issued_at_ms: now_ms, nonce: crate::auth::random_token(18), hops, op: op.clone() };
        let envelope = serde_json::to_string(&env).expect("plain data serializes");
        let mac = self.mac(&envelope);
        serde_json::to_vec(&Sealed { envelope, mac }).expect("plain data serializes")
    }

    /// The envelope in `data` if its MAC is right, it is within
    /// [`WINDOW_MS`] of `now_ms`, and its nonce was not seen before.
    fn open(&self, data: &[u8], now_ms: u64) -> Result<Envelope> {
        let refused = |why: &str| ApiError::Unauthenticated(format!("leader operation refused: {why}"));
        let sealed: Sealed = serde_json::from_slice(data).map_err(|_| refused("not a sealed envelope"))?;
        if let Some(k) = &self.key {
            let tag = unhex(&sealed.mac).ok_or_else(|| refused("malformed MAC"))?;
            hmac::verify(k, sealed.envelope.as_bytes(), &tag)
                .map_err(|_| refused("bad MAC (not signed with this cluster's secret, or altered)"))?;
        }
        let env: Envelope = serde_json::from_str(&sealed.envelope).map_err(|_| refused("malformed envelope"))?;
        if env.issued_at_ms.abs_diff(now_ms) > WINDOW_MS {
            return Err(refused(&format!(
                "issued at {} ms, {} ms away from this node's clock (at most {WINDOW_MS} ms)",
                env.issued_at_ms,
                env.issued_at_ms.abs_diff(now_ms)
            )));
        }
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= 1024 {
            seen.retain(|_, at| at.abs_diff(now_ms) <= WINDOW_MS);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(ApiError::Unavailable("too many leader operations in flight; retry".into()));
        }
        if seen.insert(env.nonce.clone(), env.issued_at_ms).is_some() {
            return Err(refused("replayed (this envelope was accepted before)"));
        }
        Ok(env)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The encoded outcome of an operation: lossless for every [`ApiError`].
pub fn encode_reply(r: &Result<LeaderReply>) -> Vec<u8> {
    serde_json::to_vec(r).expect("plain data serializes")
}

pub fn decode_reply(bytes: &[u8], from: &str) -> Result<LeaderReply> {
    serde_json::from_slice::<Result<LeaderReply>>(bytes)
        // It may have run: the answer was lost, not the operation.
        .map_err(|e| ApiError::Indeterminate(format!("undecodable answer from {from}: {e}")))?
}

impl Node {
    /// Runs `op` where the leader is: here if this node leads, else sent to
    /// the leader over the cluster channel.
    pub async fn on_leader(&self, op: LeaderOp) -> Result<LeaderReply> {
        self.route(op, 0).await
    }

    async fn route(&self, op: LeaderOp, hops: u8) -> Result<LeaderReply> {
        let timeout = self.cfg.cluster.write_timeout.get();
        let deadline = Instant::now() + timeout;
        loop {
            if self.raft.is_leader() {
                return run(self, op).await;
            }
            if hops > 0 {
                return Err(ApiError::Unavailable(format!("node {} is not the leader", self.id())));
            }
            if let Some((leader, _)) = self.raft.leader().filter(|(l, _)| *l != self.id()) {
                let data = self.sealer.seal(self.id(), self.raft.cluster_now_ms(), hops + 1, &op);
                let bytes = self.raft.send_leader_op(leader, data, timeout + Duration::from_secs(2)).await?;
                return decode_reply(&bytes, &format!("leader {leader}"));
            }
            if Instant::now() >= deadline {
                return Err(ApiError::Unavailable("no leader elected".into()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A heartbeat of this node, to the leader.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<MembershipReply> {
        self.on_leader(LeaderOp::Heartbeat(hb)).await?.membership()
    }
}

/// A received operation: checked, then routed (run here if this node
/// leads; passed on once if the sender is a joining node).
async fn receive(node: &Node, data: Vec<u8>) -> Result<LeaderReply> {
    let env = node.sealer.open(&data, node.raft.cluster_now_ms()).inspect_err(|e| {
        crate::service::authn::audit("internal_refused", "cluster channel", &e.to_string());
    })?;
    tracing::debug!(from = env.from, op = env.op.name(), hops = env.hops, "leader operation received");
    node.route(env.op, env.hops).await
}

/// The Raft transport's handle on this node's leader operations. Weak, so
/// the node (which owns its Raft) is not kept alive by its own transport.
pub struct Handler(pub Weak<Node>);

impl synod_raft::LeaderOps for Handler {
    fn handle(&self, data: Vec<u8>) -> futures::future::BoxFuture<'static, Vec<u8>> {
        let node = self.0.clone();
        Box::pin(async move {
            let r = match node.upgrade() {
                Some(node) => receive(&node, data).await,
                None => Err(ApiError::Unavailable("this node is stopping".into())),
            };
            encode_reply(&r)
        })
    }
}

/// Sends `op` from a node that is not a member yet (no id, no Raft) to the
/// member whose Raft address is `addr`, which passes it on to the leader.
/// `now_ms` dates it (the cluster's time, as the member told it).
pub async fn send_as_joiner(
    peers: &synod_raft::Peers,
    sealer: &Sealer,
    addr: &str,
    now_ms: u64,
    op: &LeaderOp,
    timeout: Duration,
) -> Result<LeaderReply> {
    let data = sealer.seal(0, now_ms, 0, op);
    let bytes = synod_raft::send_leader_op(peers, 0, addr, data, timeout).await?;
    decode_reply(&bytes, addr)
}

/// Carries out `op` on this node, the leader.
async fn run(node: &Node, op: LeaderOp) -> Result<LeaderReply> {
    let membership = |r: Result<MembershipReply>| r.map(LeaderReply::Membership);
    match op {
        LeaderOp::AllocateNodeId => match node.propose(Kind::AllocateNodeId(pb::AllocateNodeId {})).await? {
            (pb::command_result::Outcome::NodeId(id), _) => Ok(LeaderReply::NodeId(id)),
            (other, _) => Err(ApiError::Internal(format!("unexpected allocate outcome {other:?}"))),
        },
        LeaderOp::AddLearner(req) => membership(add_learner(node, req).await),
        LeaderOp::CheckJoin(req) => membership(
            check_join(node, &req)
                .map(|()| MembershipReply { log_index: 0, message: format!("node {} may join", req.id) }),
        ),
        LeaderOp::Promote { id } => membership(promote(node, id).await),
        LeaderOp::Demote { id, force } => membership(demote(node, id, force).await),
        LeaderOp::Remove { id, force } => membership(remove(node, id, force).await),
        LeaderOp::TransferLeader { id } => membership(transfer_leader(node, id).await),
        LeaderOp::Heartbeat(hb) => membership(heartbeat(node, hb).await),
    }
}

/// A member of this id with another data dir (incarnation) is not the
/// node asking: refused, or a node that lost its vote and log would count
/// as that voter.
fn check_join(node: &Node, req: &JoinRequest) -> Result<()> {
    if !node.raft.view().is_member(req.id) || req.incarnation == 0 {
        return Ok(());
    }
    let theirs = node.raft.store.get_node(req.id)?.and_then(|r| r.info).map(|i| i.incarnation).unwrap_or(0);
    if theirs == 0 || theirs == req.incarnation {
        return Ok(());
    }
    Err(ApiError::FailedPrecondition {
        message: format!(
            "node {id} is a member of this cluster with another data dir; this node's data dir is new \
             (its vote and log are gone), so it must not take that member's place: remove node {id} \
             first (synod cluster remove {id}), then start this node again, or give it another id",
            id = req.id
        ),
        details: None,
    })
}

async fn add_learner(node: &Node, req: JoinRequest) -> Result<MembershipReply> {
    crate::service::cluster::check_join_request(&req)?;
    if !node.cfg.storage.fsync && !node.cfg.storage.fsync_off_in_cluster {
        return Err(ApiError::FailedPrecondition {
            message: "this leader runs with storage.fsync false, so a crash can lose writes the cluster \
                      acknowledged: turn fsync on, or set storage.fsync_off_in_cluster: true"
                .into(),
            details: None,
        });
    }
    check_join(node, &req)?;
    if node.raft.view().is_voter(req.id) {
        return Ok(MembershipReply { log_index: 0, message: format!("node {} is already a voter", req.id) });
    }
    let synod_node = SynodNode {
        raft_addr: req.raft_addr.clone(),
        http_addr: req.http_addr.clone(),
        grpc_addr: req.grpc_addr.clone(),
    };
    // A node that cannot be reached (or, with cluster TLS, whose
    // certificate is not the cluster CA's) never becomes a member.
    node.raft.probe(req.id, &req.raft_addr).await?;
    let log_index = node.raft.add_learner(req.id, synod_node).await?;
    tracing::info!(node = req.id, raft_addr = %req.raft_addr, "learner added");
    Ok(MembershipReply { log_index, message: format!("node {} added as a learner", req.id) })
}

async fn promote(node: &Node, id: u64) -> Result<MembershipReply> {
    let view = node.raft.view();
    if view.is_voter(id) {
        return Ok(MembershipReply { log_index: 0, message: format!("node {id} is already a voter") });
    }
    if !view.is_learner(id) {
        return Err(ApiError::NotFound(format!("node {id} is not a learner of this cluster")));
    }
    let log_index = node.raft.promote(id).await?;
    tracing::info!(node = id, "learner promoted to voter");
    Ok(MembershipReply { log_index, message: format!("node {id} promoted to voter") })
}

async fn demote(node: &Node, id: u64, force: bool) -> Result<MembershipReply> {
    if !node.raft.view().is_voter(id) {
        return Err(ApiError::NotFound(format!("node {id} is not a voter of this cluster")));
    }
    check_quorum_after_removing(node, id, force)?;
    let log_index = node.raft.demote(id).await?;
    tracing::info!(node = id, "voter demoted to learner");
    Ok(MembershipReply { log_index, message: format!("node {id} demoted to learner") })
}

async fn remove(node: &Node, id: u64, force: bool) -> Result<MembershipReply> {
    let member = node.raft.view().is_member(id);
    let registered = node.raft.store.get_node(id)?.is_some();
    if !member && !registered {
        return Err(ApiError::NotFound(format!("node {id} is not part of this cluster")));
    }
    check_quorum_after_removing(node, id, force)?;
    let mut log_index = 0;
    if member {
        log_index = node.raft.remove(id).await?;
    }
    if registered {
        let (_, idx) = node.propose(Kind::RemoveNode(pb::RemoveNode { node_id: id })).await?;
        log_index = idx;
    }
    tracing::info!(node = id, force, "node removed");
    Ok(MembershipReply { log_index, message: format!("node {id} removed") })
}

async fn transfer_leader(node: &Node, id: u64) -> Result<MembershipReply> {
    if !node.raft.view().is_voter(id) {
        return Err(ApiError::NotFound(format!("node {id} is not a voter of this cluster")));
    }
    if id == node.id() {
        return Ok(MembershipReply { log_index: 0, message: format!("node {id} already leads") });
    }
    node.raft.transfer_leader(id).await?;
    // Wait for the handover so the caller sees the new leader.
    match node.raft.wait_leader(id, node.cfg.cluster.write_timeout.get()).await {
        Ok(()) => Ok(MembershipReply { log_index: 0, message: format!("node {id} is now the leader") }),
        Err(e) => Err(ApiError::Unavailable(format!("leadership transfer to {id} not confirmed: {e}"))),
    }
}

/// Refuses to take voter `id` out when the remaining voters would not hold
/// a quorum of live nodes.
fn check_quorum_after_removing(node: &Node, id: u64, force: bool) -> Result<()> {
    let voters = node.raft.view().voters;
    if !voters.contains(&id) {
        return Ok(());
    }
    let remaining: Vec<u64> = voters.iter().copied().filter(|v| *v != id).collect();
    if remaining.is_empty() {
        return Err(ApiError::FailedPrecondition {
            message: format!("node {id} is the last voter; a cluster cannot remove its last voter"),
            details: None,
        });
    }
    let liveness = node.liveness_map()?;
    let live: Vec<u64> =
        remaining.iter().copied().filter(|v| *v == node.id() || liveness.get(v).copied() == Some("alive")).collect();
    let quorum = remaining.len() / 2 + 1;
    if live.len() < quorum && !force {
        return Err(ApiError::FailedPrecondition {
            message: format!(
                "removing voter {id} would leave {} live of {} voters, below the quorum of {quorum}; pass --force (force=true) to do it anyway",
                live.len(),
                remaining.len()
            ),
            details: Some(serde_json::json!({"remaining_voters": remaining, "live_voters": live, "quorum": quorum})),
        });
    }
    Ok(())
}

/// Registers the node, or refreshes its record, stamped with the leader's
/// clock.
async fn heartbeat(node: &Node, hb: Heartbeat) -> Result<MembershipReply> {
    let info: pb::NodeInfo = hb.info.clone().into();
    // A removed node that has not stopped yet must not register itself
    // again: only members of the cluster heartbeat.
    if !node.raft.view().is_member(info.id) {
        return Err(ApiError::FailedPrecondition {
            message: format!("node {} is not a member of this cluster", info.id),
            details: None,
        });
    }
    let known = node.raft.store.get_node(info.id)?;
    let needs_register = match &known {
        None => true,
        Some(rec) => {
            let mut old = rec.info.clone().unwrap_or_default();
            old.labels = info.labels.clone();
            old != info
        }
    };
    let kind = if needs_register {
        Kind::RegisterNode(pb::RegisterNode { labels_set: known.is_none(), info: Some(info) })
    } else {
        Kind::Heartbeat(pb::NodeHeartbeat {
            node_id: info.id,
            applied_index: hb.applied_index,
            load: Some(pb::NodeLoad {
                cpu_load: hb.cpu_load,
                running_tasks: hb.running_tasks,
                worker_slots: hb.worker_slots,
            }),
        })
    };
    let (_, log_index) = node.propose(kind).await?;
    Ok(MembershipReply { log_index, message: "ok".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> LeaderOp {
        LeaderOp::Promote { id: 3 }
    }

    #[test]
    fn an_envelope_is_accepted_once_and_refused_when_replayed_altered_stale_or_foreign() {
        let sealer = Sealer::new(Some(b"cluster secret of sixteen bytes+"));
        let now = 1_000_000_000;
        let sent = sealer.seal(2, now, 1, &op());
        let env = sealer.open(&sent, now + 5).expect("a fresh envelope is accepted");
        assert!(matches!(env.op, LeaderOp::Promote { id: 3 }));
        assert_eq!((env.from, env.hops), (2, 1));

        // The same bytes again: a replay.
        let e = sealer.open(&sent, now + 10).unwrap_err().to_string();
        assert!(e.contains("replayed"), "{e}");

        // Altered: promote another node with the captured MAC.
        let mut sealed: Sealed = serde_json::from_slice(&sealer.seal(2, now, 1, &op())).unwrap();
        sealed.envelope = sealed.envelope.replace("\"id\":3", "\"id\":4");
        let e = sealer.open(&serde_json::to_vec(&sealed).unwrap(), now).unwrap_err().to_string();
        assert!(e.contains("bad MAC"), "{e}");

        // Older (or newer) than the window.
        let old = sealer.seal(2, now - WINDOW_MS - 1, 1, &op());
        let e = sealer.open(&old, now).unwrap_err().to_string();
        assert!(e.contains("away from this node's clock"), "{e}");
        // Control: at the edge of the window it is accepted.
        assert!(sealer.open(&sealer.seal(2, now - WINDOW_MS, 1, &op()), now).is_ok());

        // Signed with another cluster's secret.
        let other = Sealer::new(Some(b"another cluster's secret, 32 b.."));
        let e = sealer.open(&other.seal(2, now, 1, &op()), now).unwrap_err();
        assert!(matches!(e, ApiError::Unauthenticated(_)), "{e:?}");
    }

    #[test]
    fn every_error_survives_the_trip_back_from_the_leader() {
        use axum::response::IntoResponse;
        let limited = ApiError::RateLimited { message: "tenant a is over its rate".into(), retry_after_s: 7 };
        let back = decode_reply(&encode_reply(&Err(limited)), "leader 1").unwrap_err();
        let resp = back.into_response();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
        let precondition = ApiError::FailedPrecondition {
            message: "below quorum".into(),
            details: Some(serde_json::json!({"quorum": 2})),
        };
        match decode_reply(&encode_reply(&Err(precondition)), "leader 1").unwrap_err() {
            ApiError::FailedPrecondition { message, details } => {
                assert_eq!(message, "below quorum");
                assert_eq!(details, Some(serde_json::json!({"quorum": 2})));
            }
            other => panic!("{other:?}"),
        }
        for e in [
            ApiError::PayloadTooLarge("big".into()),
            ApiError::Indeterminate("lost".into()),
            ApiError::NotFound("gone".into()),
        ] {
            let status = e.http_status();
            assert_eq!(decode_reply(&encode_reply(&Err(e)), "l").unwrap_err().http_status(), status);
        }
        // An answer that cannot be read may hide an operation that ran.
        assert!(matches!(decode_reply(b"\xff", "l"), Err(ApiError::Indeterminate(_))));
    }
}
