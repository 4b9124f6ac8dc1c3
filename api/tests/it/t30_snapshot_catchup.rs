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
