//! All three nodes stopped (SIGTERM, then kill -9) and started again keep
//! every acknowledged write.

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restarts_keep_every_acknowledged_write() {
    let mut t = must_three(&fast_args()).await;
    let ids: Vec<u64> =
        futures::future::join_all((0..3).map(|i| t.node_id(i))).await.into_iter().map(|r| r.unwrap()).collect();

    // Acknowledged writes on every record, through every node.
    for n in 0..30u64 {
        let via = (n % 3) as usize;
        must_put_labels(&t, via, ids[(n % 3) as usize], seq_labels(n)).await;
    }
    let expect = |k: usize| seq_labels(27 + k as u64);

    for i in 0..3 {
        let status = t.stop(i).unwrap();
        assert!(status.success(), "node {i} SIGTERM exit: {status}");
    }
    for i in 0..3 {
        t.start(i).unwrap();
    }
    for i in 0..3 {
        t.wait_ready(i, READY).await.unwrap();
    }
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(must_get_record(&t, k, *id, "linearizable").await["labels"], expect(k));
    }

    // Once more, with kill -9 right after the last acknowledged write.
    must_put_labels(&t, 0, ids[0], seq_labels(100)).await;
    for i in 0..3 {
        t.kill(i);
    }
    for i in 0..3 {
        t.start(i).unwrap();
    }
    for i in 0..3 {
        t.wait_ready(i, READY).await.unwrap();
    }
    assert_eq!(must_get_record(&t, 2, ids[0], "linearizable").await["labels"], seq_labels(100));
    for i in 0..3 {
        assert!(!t.log_text(i).contains("panicked at"), "node {i} panicked");
    }
}
