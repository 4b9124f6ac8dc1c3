//! Membership through REST, gRPC and the CLI: remove and replace a node,
//! refuse a removal that breaks quorum, demote, promote, transfer leadership.

use std::process::Command;

use serde_json::{Value, json};

use synod_api::pb::cluster_client::ClusterClient;
use synod_api::pb::{NodeRef, SetLabelsRequest, StatusRequest};

use crate::util::*;

async fn voters(t: &TestCluster, via: usize) -> Vec<u64> {
    let mut v: Vec<u64> =
        t.status(via).await.unwrap()["voters"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_a_node_then_add_a_fresh_one() {
    let mut t = must_three(&fast_args()).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let victim = (leader + 1) % 3;
    let victim_id = t.node_id(victim).await.unwrap();

    // Through the CLI, against a node that is not the leader.
    let via = (leader + 2) % 3;
    let out = Command::new(BIN)
        .args(["cluster", "remove", &victim_id.to_string(), "--addr", &t.nodes[via].url()])
        .env("SYNOD_TOKEN", &t.admin_token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let audited = metric(&t, via, "synod_audit_events_total{event=\"membership_remove\"}").await;
    assert_eq!(audited, 1.0, "the removal is audited where the admin made it");
    t.kill(victim);
    let status = t.status(leader).await.unwrap();
    assert_eq!(status["voters"].as_array().unwrap().len(), 2, "{status}");
    assert!(!status["nodes"].as_array().unwrap().iter().any(|n| n["id"] == victim_id), "{status}");
    let (_, reg) = t.get(leader, "/agents/registry").await.unwrap();
    assert!(!reg["nodes"].as_array().unwrap().iter().any(|n| n["id"] == victim_id), "{reg}");
    // A removed node that still runs cannot register itself again: its
    // heartbeat, signed as a member's would be, is refused by the leader.
    let hb = serde_json::from_value(serde_json::json!({"info": {"id": victim_id, "raft_addr": "127.0.0.1:1",
        "http_addr": "127.0.0.1:1", "grpc_addr": "127.0.0.1:1", "version": "x", "labels": {},
        "capacity": {"cpus": 1, "memory_bytes": 1, "worker_slots": 1}}, "applied_index": 0, "cpu_load": 0.0}))
    .unwrap();
    let sealed =
        sealer(&t).seal(victim_id, synod_raft::wall_ms(), 1, &synod_api::service::leader_ops::LeaderOp::Heartbeat(hb));
    match send_leader_op(&t, leader, sealed, true).await {
        Err(synod_api::error::ApiError::FailedPrecondition { message, .. }) => {
            assert!(message.contains("not a member"), "{message}")
        }
        other => panic!("a removed node's heartbeat was not refused: {other:?}"),
    }

    // A fresh node joins and is promoted, since voters < cluster.voters.
    let fresh = t.add_node(Some(leader), &fast_args()).unwrap();
    t.wait_ready(fresh, READY).await.unwrap();
    let fresh_id = t.node_id(fresh).await.unwrap();
    assert_ne!(fresh_id, victim_id, "ids are never reused");
    t.wait_voters(leader, 3, READY).await.unwrap();
    assert!(voters(&t, leader).await.contains(&fresh_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_below_a_live_quorum_is_refused_unless_forced() {
    let mut t = must_three(&fast_args()).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let (down, target) = ((leader + 1) % 3, (leader + 2) % 3);
    let down_id = t.node_id(down).await.unwrap();
    let target_id = t.node_id(target).await.unwrap();
    t.kill(down);
    t.wait_for("the killed node to be suspected", READY, || async {
        let (_, v) = t.get(leader, "/agents/registry").await.ok()?;
        let n = v["nodes"].as_array()?.iter().find(|n| n["id"].as_u64() == Some(down_id))?.clone();
        (n["liveness"] != "alive").then_some(())
    })
    .await
    .unwrap();

    let resp = t.http.post(format!("{}/cluster/nodes/{target_id}/remove", t.nodes[target].url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 412);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "failed_precondition");
    assert!(body["error"]["message"].as_str().unwrap().contains("--force"), "{body}");
    assert_eq!(voters(&t, leader).await.len(), 3, "a refused removal changed the membership");

    // The CLI says the same and exits non-zero.
    let out = Command::new(BIN)
        .args(["cluster", "demote", &target_id.to_string(), "--addr", &t.nodes[leader].url()])
        .env("SYNOD_TOKEN", &t.admin_token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed_precondition"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demote_promote_and_transfer_leadership_over_rest_and_grpc() {
    let t = must_three(&fast_args()).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let other = (leader + 1) % 3;
    let other_id = t.node_id(other).await.unwrap();
    let url = t.nodes[leader].url();

    let resp = t.http.post(format!("{url}/cluster/nodes/{other_id}/demote")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
    let s = t.status(leader).await.unwrap();
    assert!(s["learners"].as_array().unwrap().iter().any(|l| l == other_id), "{s}");

    // gRPC twin of promote, through a node that is not the leader.
    let grpc_via = (leader + 2) % 3;
    let mut client = ClusterClient::with_interceptor(must_channel(&t, grpc_via).await, AdminAuth::of(&t));
    client.promote(NodeRef { id: other_id, ..Default::default() }).await.unwrap();
    assert!(voters(&t, leader).await.contains(&other_id));

    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.nodes.len(), 3);

    // A stale if_match over gRPC is FAILED_PRECONDITION.
    let err = client
        .set_labels(SetLabelsRequest { id: other_id, labels: Default::default(), if_match: Some(999) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");

    // Hand leadership to the other node.
    let resp = t.http.post(format!("{url}/cluster/nodes/{other_id}/transfer-leader")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
    let now = must_leader(&t, &[other]).await;
    assert_eq!(now, other);
}

/// Issue 13, defect 9: `storage.fsync: false` was accepted silently, also on
/// nodes of a multi-node cluster. Now it is announced at start, a leader
/// with it admits no other node, and a node with it does not join, unless
/// `storage.fsync_off_in_cluster` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_off_is_announced_and_kept_out_of_clusters() {
    let no_fsync = |force: bool| {
        let mut a = fast_args();
        a.extend(["--set".to_string(), "storage.fsync=false".to_string()]);
        a.extend(["--set".to_string(), format!("storage.fsync_off_in_cluster={force}")]);
        a
    };
    let mut t = must_single(&no_fsync(false)).await;
    assert!(t.log_text(0).contains("WARNING: storage.fsync is false"), "not announced");
    let body = serde_json::json!({"id": 7, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2", "grpc_addr": ""});
    let r = t.http.post(format!("{}/cluster/add-learner", t.nodes[0].url())).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 412);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("storage.fsync false"), "{v}");

    // A node with fsync off does not join (the leader here allows it in).
    let mut t2 = must_single(&fast_args()).await;
    let i = t2.add_node(Some(0), &no_fsync(false)).unwrap();
    t2.wait_for("the no-fsync node to refuse", READY, || async {
        t2.log_text(i).contains("set storage.fsync_off_in_cluster: true to join anyway").then_some(())
    })
    .await
    .expect("a node with fsync off went on to join a cluster");
    let (code, _) = t2.get(i, "/health").await.unwrap_or((0, serde_json::Value::Null));
    assert_eq!(code, 0, "the refusing node serves HTTP");
    // Control: forced, it joins.
    let j = t2.add_node(Some(0), &no_fsync(true)).unwrap();
    t2.wait_ready(j, READY).await.expect("a forced no-fsync node joins");
    drop(t);
    t = t2;
    assert!(t.nodes[j].is_running());
}

/// A node whose data dir was lost (its vote and log with it) comes back
/// with the id of a member: it is refused, at once and saying why, instead
/// of taking that voter's place; removed first, it joins.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_a_lost_data_dir_does_not_take_its_old_ids_place() {
    let mut t = must_three(&fast_args()).await;
    let id = t.node_id(2).await.unwrap();
    t.kill(2);
    std::fs::remove_dir_all(&t.nodes[2].data_dir).unwrap();
    t.nodes[2].args.extend(["--node-id".to_string(), id.to_string()]);
    t.start(2).unwrap();
    let log = t
        .wait_for("the refusal", READY, || async {
            let log = t.log_text(2);
            log.contains("must not take that member's place").then_some(log)
        })
        .await
        .unwrap();
    assert!(log.contains(&format!("remove node {id}")), "{log}");
    t.wait_for("the refused node to exit", READY, || async {
        let (code, _) = t.get(2, "/health").await.unwrap_or((0, Value::Null));
        (code == 0).then_some(())
    })
    .await
    .unwrap();
    assert!(t.status(0).await.unwrap()["voters"].as_array().unwrap().contains(&json!(id)), "still the old member");

    // Control: once the old member is removed, the same node joins.
    t.kill(2);
    let resp = t.http.post(format!("{}/cluster/nodes/{id}/remove?force=true", t.nodes[0].url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    std::fs::remove_dir_all(&t.nodes[2].data_dir).unwrap();
    t.start(2).unwrap();
    t.wait_ready(2, READY).await.unwrap();
}
