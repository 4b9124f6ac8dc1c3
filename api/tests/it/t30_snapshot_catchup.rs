//! A node that was down while the log was compacted past it catches up by
//! snapshot install.

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_purged_log_catches_up_by_snapshot() {
    let mut extra = fast_args();
    for s in ["cluster.snapshot_logs_threshold=50", "cluster.logs_to_keep=0", "observability.debug_endpoints=true"] {
        extra.extend(["--set".to_string(), s.to_string()]);
    }
    let mut t = must_three(&extra).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let lagging = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let record = t.node_id(leader).await.unwrap();
    t.kill(lagging);
    // Where the killed node's log ends, at most.
    let down_at_index = t.status(leader).await.unwrap()["last_log_index"].as_u64().unwrap();

    for n in 0..150 {
        must_put_labels(&t, other, record, seq_labels(n)).await;
    }
    // The leader has snapshotted and purged its log past where the lagging node stopped.
    let mut n = 150;
    t.wait_for("the leader to purge its log past the killed node", READY, || {
        n += 1;
        let n = n;
        let t = &t;
        async move {
            must_put_labels(t, other, record, seq_labels(n)).await;
            let purged = t.status(leader).await.ok()?["purged_index"].as_u64()?;
            (purged > down_at_index + 1).then_some(())
        }
    })
    .await
    .unwrap();
    let last = n;

    t.start(lagging).unwrap();
    t.wait_ready(lagging, READY).await.unwrap();
    t.wait_for("the lagging node to catch up", READY, || async {
        let v = must_get_record(&t, lagging, record, "local").await;
        (v["labels"] == seq_labels(last)).then_some(())
    })
    .await
    .unwrap();
    let installed = metric(&t, lagging, "synod_raft_snapshots_installed_total").await;
    assert!(installed >= 1.0, "the lagging node caught up without installing a snapshot");
    assert!(t.log_text(lagging).contains("snapshot installed"));
    // The installed state is the leader's: equal digests at one applied index.
    t.wait_for("equal state digests at one applied index", READY, || async {
        let (_, a) = t.get(leader, "/debug/digest").await.ok()?;
        let (_, b) = t.get(lagging, "/debug/digest").await.ok()?;
        (a["applied_index"].as_u64()? == b["applied_index"].as_u64()?).then_some((a, b))
    })
    .await
    .map(|(a, b)| assert_eq!(a["digest"], b["digest"], "{a} {b}"))
    .unwrap();
}

/// Flips one byte in the middle of every snapshot file in `dir`.
fn damage_snapshots(dir: &std::path::Path) -> usize {
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "snap") {
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    damaged
}

/// Issue 13, defect 1: the leader sent its snapshot file unchecked, and a
/// follower installed a damaged one into a checksum failure that openraft
/// treats as fatal, so a bad block on the leader took down every lagging
/// follower. Now the leader checks its file, rebuilds a damaged one, and the
/// follower checks what it receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_leader_snapshot_is_rebuilt_and_the_lagging_node_catches_up() {
    let mut extra = fast_args();
    for s in ["cluster.snapshot_logs_threshold=50", "cluster.logs_to_keep=0", "observability.debug_endpoints=true"] {
        extra.extend(["--set".to_string(), s.to_string()]);
    }
    let mut t = must_three(&extra).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let lagging = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let record = t.node_id(leader).await.unwrap();
    t.kill(lagging);
    let down_at_index = t.status(leader).await.unwrap()["last_log_index"].as_u64().unwrap();
    let mut n = 0;
    t.wait_for("the leader to purge its log past the killed node", READY, || {
        n += 1;
        let n = n;
        let t = &t;
        async move {
            must_put_labels(t, other, record, seq_labels(n)).await;
            let purged = t.status(leader).await.ok()?["purged_index"].as_u64()?;
            (purged > down_at_index + 1).then_some(())
        }
    })
    .await
    .unwrap();
    let last = n;

    // No more writes, so no new snapshot: the damaged one is what the leader has.
    let damaged = damage_snapshots(&t.nodes[leader].data_dir.join("snapshots"));
    assert!(damaged >= 1, "the leader has no snapshot file to damage");

    t.start(lagging).unwrap();
    t.wait_ready(lagging, READY).await.unwrap();
    t.wait_for("the lagging node to catch up", READY, || async {
        let v = must_get_record(&t, lagging, record, "local").await;
        (v["labels"] == seq_labels(last)).then_some(())
    })
    .await
    .unwrap();
    assert!(t.log_text(leader).contains("current snapshot file is damaged"), "the damage went unnoticed");
    for i in 0..3 {
        assert!(t.nodes[i].is_running(), "node {i} is down");
        let (code, _) = t.get(i, "/health").await.unwrap();
        assert_eq!(code, 200, "node {i} unhealthy");
    }
    t.wait_for("equal state digests at one applied index", READY, || async {
        let (_, a) = t.get(leader, "/debug/digest").await.ok()?;
        let (_, b) = t.get(lagging, "/debug/digest").await.ok()?;
        (a["applied_index"].as_u64()? == b["applied_index"].as_u64()?).then_some((a, b))
    })
    .await
    .map(|(a, b)| assert_eq!(a["digest"], b["digest"], "{a} {b}"))
    .unwrap();
}

/// Issue 13, defect 1, the receiving side: a snapshot that arrives damaged
/// (a bad block, or a stream cut short) is refused before install with an
/// error the sender retries; the node stays up.
#[tokio::test]
async fn a_damaged_snapshot_stream_is_refused_before_install() {
    use synod_raft::pb::SnapshotChunk;
    use synod_raft::pb::raft_service_client::RaftServiceClient;

    // Security off: no cluster token, so the test can speak Raft to the node.
    let mut args = fast_args();
    args.extend(["--set".to_string(), "security.enabled=false".to_string()]);
    let t = must_single(&args).await;
    let mut client = RaftServiceClient::connect(format!("http://{}", t.nodes[0].raft)).await.unwrap();
    let (_, status) = t.get(0, "/cluster/status").await.unwrap();
    let term = status["term"].as_u64().unwrap();
    // A vote newer than the node's, so only the file's check can refuse it.
    let vote = synod_raft::Vote::new_committed(term + 1, 99);
    let first = SnapshotChunk {
        vote: synod_raft::codec::encode(&vote),
        meta: synod_raft::codec::encode(&synod_raft::SnapshotMeta::default()),
        data: b"SYNODSNP\0\0\0\x01".to_vec(),
    };
    let cut = SnapshotChunk { vote: Vec::new(), meta: Vec::new(), data: vec![0x42; 4096] };
    let err = client.install_snapshot(tokio_stream::iter([first, cut])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(err.message().contains("refused before install"), "{err:?}");
    let (code, _) = t.get(0, "/health").await.unwrap();
    assert_eq!(code, 200);
    assert!(t.nodes[0].is_running());
    assert!(t.log_text(0).contains("received snapshot refused before install"));
}
