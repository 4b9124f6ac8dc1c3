//! Three nodes: writes through followers, compare-and-set, leader kill -9,
//! recovery of the killed node.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_the_loss_of_their_leader() {
    let mut t = must_three(&fast_args()).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    let record = t.node_id(follower).await.unwrap();

    // A write sent to a follower is forwarded to the leader and succeeds.
    let body = must_put_labels(&t, follower, record, json!({"zone": "a"})).await;
    let version = body["record_version"].as_u64().unwrap();

    // Compare-and-set: the current version wins, a stale one gets 412 and changes nothing.
    let (code, body) = t.put_labels(follower, record, &json!({"zone": "b"}), Some(version)).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = t.put_labels(leader, record, &json!({"zone": "stale"}), Some(version)).await.unwrap();
    assert_eq!(code, 412, "{body}");
    assert_eq!(body["error"]["code"], "failed_precondition");
    assert_eq!(must_get_record(&t, leader, record, "linearizable").await["labels"], json!({"zone": "b"}));

    // kill -9 the leader: a new one is elected and writes continue.
    let killed_id = t.node_id(leader).await.unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let killed_at = Instant::now();
    t.kill(leader);
    let new_leader = t
        .wait_for("a new leader", Duration::from_secs(10), || async {
            for s in &survivors {
                if let Some(l) = t.leader_index(*s).await
                    && l != leader
                {
                    return Some(l);
                }
            }
            None
        })
        .await
        .unwrap();
    eprintln!("new leader after {:?}", killed_at.elapsed());
    for n in 0..10 {
        must_put_labels(&t, survivors[n as usize % 2], record, seq_labels(n)).await;
    }
    eprintln!("writes committed again after {:?}", killed_at.elapsed());

    // The killed node shows up as suspect/dead in the registry.
    t.wait_for("the killed node to be suspected", READY, || async {
        let (_, v) = t.get(new_leader, "/agents/registry").await.ok()?;
        let n = v["nodes"].as_array()?.iter().find(|n| n["id"].as_u64() == Some(killed_id))?.clone();
        (n["liveness"] != "alive").then_some(())
    })
    .await
    .unwrap();

    // It restarts and catches up with everything it missed.
    t.start(leader).unwrap();
    t.wait_ready(leader, READY).await.unwrap();
    t.wait_for("the restarted node to catch up", READY, || async {
        let v = must_get_record(&t, leader, record, "local").await;
        (v["labels"] == seq_labels(9)).then_some(())
    })
    .await
    .unwrap();
    for i in 0..3 {
        assert!(!t.log_text(i).contains("panicked at"), "node {i} panicked");
    }
}

/// A linearizable read on the leader waits while its followers are slow to
/// confirm its leadership (here: paused for five leader leases), up to the
/// write timeout, instead of failing after one lease. Control: followers
/// paused past the write timeout make the same read fail with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_wait_out_a_slow_quorum() {
    let mut args = fast_args();
    args.extend(["--set".to_string(), "cluster.write_timeout=3s".to_string()]);
    let t = must_three(&args).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let record = t.node_id(leader).await.unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let path = format!("/cluster/nodes/{record}?consistency=linearizable");

    // Paused for 1 s (the lease is 200 ms): the read is still waiting when
    // they resume, and then answers.
    let done = std::sync::atomic::AtomicBool::new(false);
    for f in &followers {
        t.signal(*f, "STOP").unwrap();
    }
    let read = async {
        let r = t.get(leader, &path).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let resume = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let waiting = !done.load(std::sync::atomic::Ordering::SeqCst);
        for f in &followers {
            t.signal(*f, "CONT").unwrap();
        }
        waiting
    };
    let (read, waiting) = tokio::join!(read, resume);
    let (code, body) = read.unwrap();
    assert!(waiting, "the read finished while no quorum could answer: {code} {body}");
    assert_eq!(code, 200, "{body}");
    assert!(body["record_version"].is_u64(), "{body}");

    // Control: paused past the write timeout, the read fails, clearly.
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for f in &followers {
        t.signal(*f, "STOP").unwrap();
    }
    let (code, body) = t.get(leader, &path).await.unwrap();
    for f in &followers {
        t.signal(*f, "CONT").unwrap();
    }
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
}
