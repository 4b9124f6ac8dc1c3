//! Nodes talk to each other over the cluster channel only: a node's
//! credential is never a token a client route accepts, and a leader
//! operation is accepted once, signed with the cluster's secret, within a
//! minute of its sending.

use std::time::Duration;

use synod_api::auth::{DEFAULT_TENANT, Role, TokenKeys};
use synod_api::error::ApiError;
use synod_api::service::leader_ops::{LeaderOp, Sealer};

use crate::util::*;

async fn status_with(t: &TestCluster, authorization: &str) -> u16 {
    let url = format!("{}/cluster/status", t.nodes[0].url());
    t.fresh_http().get(url).header("authorization", authorization).send().await.unwrap().status().as_u16()
}

/// Before, a follower forwarded membership changes and heartbeats over
/// REST with an hour-long admin token of subject `node:<id>`, which public
/// routes took without checking a user behind it. Such a token (signed
/// with the real secret, as a sniffer would have captured it) is now worth
/// nothing; neither are the transport token and a sealed envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sniffed_node_credential_cannot_call_a_public_route() {
    let t = must_single(&[]).await;
    let now_s = synod_raft::wall_ms() / 1000;
    let keys = TokenKeys::hs256(t.secret.as_bytes(), Duration::from_secs(3600));
    let node_token = keys.issue("node:1", DEFAULT_TENANT, Role::Admin, now_s).unwrap();
    assert_eq!(status_with(&t, &format!("Bearer {node_token}")).await, 401, "the old node token is refused");
    let transport = synod_api::server::transport_token_of(t.secret.as_bytes());
    assert_eq!(status_with(&t, &format!("Bearer {transport}")).await, 401);
    let sealed = sealer(&t).seal(1, synod_raft::wall_ms(), 1, &LeaderOp::Promote { id: 9 });
    assert_eq!(status_with(&t, &format!("Bearer {}", String::from_utf8(sealed).unwrap())).await, 401);
    // Control: a user's token of the same secret and role is taken.
    assert_eq!(status_with(&t, &format!("Bearer {}", t.admin_token)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_operation_needs_the_cluster_secret_and_is_accepted_once() {
    let t = must_single(&[]).await;
    let op = LeaderOp::Promote { id: 99 };
    let sealed = sealer(&t).seal(5, synod_raft::wall_ms(), 1, &op);

    // Carried out: node 99 is no learner, which only the leader could tell.
    match send_leader_op(&t, 0, sealed.clone(), true).await {
        Err(ApiError::NotFound(m)) => assert!(m.contains("not a learner"), "{m}"),
        other => panic!("the first delivery was not carried out: {other:?}"),
    }
    // The same bytes again.
    match send_leader_op(&t, 0, sealed, true).await {
        Err(ApiError::Unauthenticated(m)) => assert!(m.contains("replayed"), "{m}"),
        other => panic!("a replay was not refused: {other:?}"),
    }
    // Signed with another secret.
    let foreign = Sealer::new(Some(b"not this cluster's secret at all")).seal(5, synod_raft::wall_ms(), 1, &op);
    match send_leader_op(&t, 0, foreign, true).await {
        Err(ApiError::Unauthenticated(m)) => assert!(m.contains("bad MAC"), "{m}"),
        other => panic!("a foreign signature was not refused: {other:?}"),
    }
    // Two minutes old.
    let stale = sealer(&t).seal(5, synod_raft::wall_ms() - 120_000, 1, &op);
    match send_leader_op(&t, 0, stale, true).await {
        Err(ApiError::Unauthenticated(m)) => assert!(m.contains("away from this node's clock"), "{m}"),
        other => panic!("a stale envelope was not refused: {other:?}"),
    }
    // Without the transport token the Raft port takes nothing at all.
    let fresh = sealer(&t).seal(5, synod_raft::wall_ms(), 1, &op);
    match send_leader_op(&t, 0, fresh, false).await {
        Err(ApiError::Unavailable(m)) => assert!(m.contains("refused"), "{m}"),
        other => panic!("a call without the transport token was not refused: {other:?}"),
    }
    // Control: a fresh envelope with everything right is carried out again.
    let fresh = sealer(&t).seal(5, synod_raft::wall_ms(), 1, &op);
    assert!(matches!(send_leader_op(&t, 0, fresh, true).await, Err(ApiError::NotFound(_))));
}
