//! The harness against real processes: three nodes whose Raft links all
//! run through the harness's proxies. Isolating the leader (every link to
//! and from it blackholed) makes the other two elect a new one; healing
//! brings the old one back as a follower of the same leader.

use std::time::Duration;

use serde_json::json;
use synod_jepsen::cluster::Cluster;
use synod_jepsen::proxy::Fault;

/// The `synod` binary of this build (cargo builds every workspace binary
/// before the tests run): `target/<profile>/synod`, next to `deps/`.
fn synod_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>").join("synod")
}

/// Regression test for the harness's first finding: the runner took three
/// voters for a finished join while the last change was still joint
/// ({1,2} and {1,2,3}), so isolating node 1 left 2 and 3 without a quorum
/// of the old set, and no leader, in about 3 of 40 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolating_the_leader_after_a_finished_joint_change_elects_another_and_healing_rejoins_it() {
    let root = tempfile::tempdir().unwrap();
    let c = Cluster::start(&synod_bin(), root.path(), 3, 42).await.expect("three nodes through proxies");
    let leader = c.wait(Duration::from_secs(20), "a leader", |c| c.leader_seen_by(0)).await.unwrap();
    let others: Vec<usize> = (0..3).filter(|i| c.nodes[*i].id != leader).collect();
    // Writes pass through the proxies while they pass.
    let (code, v) = c.post(others[0], "/tasks/submit", &json!({"type": "echo", "payload": {"n": 1}})).await.unwrap();
    assert_eq!(code, 200, "{v}");

    c.isolate(leader, Fault::Blackhole);
    let new = c
        .wait(Duration::from_secs(20), "the majority to elect another leader", |c| {
            let i = others[0];
            async move { c.leader_seen_by(i).await.filter(|l| *l != leader) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log_tails(30)));
    let (code, v) = c.post(others[1], "/tasks/submit", &json!({"type": "echo", "payload": {"n": 2}})).await.unwrap();
    assert_eq!(code, 200, "the majority side takes writes: {v}");

    c.isolate(leader, Fault::Pass);
    let old = (0..3).find(|i| c.nodes[*i].id == leader).unwrap();
    c.wait(Duration::from_secs(20), "the old leader to follow the new one", |c| async move {
        c.leader_seen_by(old).await.filter(|l| *l == new)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.log_tails(30)));
}
