//! Clusters that form from a seed list (`--seeds`, `--bootstrap-expect`):
//! nodes started together with identical flags, in any order, form exactly
//! one cluster; restarted in any order, they come back as that cluster; a
//! node started later with the same flags joins it.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::Value;
use synod_testkit::LocalCluster;

use crate::util::*;

/// How many times each size is formed from scratch.
const TRIALS: usize = 20;

/// Defines `n` nodes whose seeds are all of them (the first by name,
/// `localhost:PORT`, to go through name resolution), not started.
fn define(t: &mut LocalCluster, n: usize, expect: usize) -> Vec<usize> {
    let ids: Vec<usize> = (0..n).map(|_| t.define_node(None, &fast_args()).expect("define")).collect();
    let seeds: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let http = &t.nodes[i].http;
            match k {
                0 => format!("localhost:{}", http.rsplit_once(':').expect("host:port").1),
                _ => http.clone(),
            }
        })
        .collect();
    for &i in &ids {
        t.nodes[i].args.extend(["--seeds".into(), seeds.join(","), "--bootstrap-expect".into(), expect.to_string()]);
    }
    ids
}

/// Starts `nodes` in a random order, each after a random 0–400 ms.
async fn start_shuffled(t: &mut LocalCluster, nodes: &[usize]) {
    let mut order = nodes.to_vec();
    order.shuffle(&mut rand::rng());
    for i in order {
        let pause = rand::rng().random_range(0..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        t.start(i).expect("start");
    }
}

/// The members (by HTTP address) node `i` has in its Raft membership, once
/// it serves the API; `None` while it is still looking for its cluster.
async fn members(t: &LocalCluster, i: usize) -> Option<BTreeSet<String>> {
    let s = t.status(i).await.ok()?;
    let ids: BTreeSet<u64> = ["voters", "learners"]
        .iter()
        .flat_map(|k| s[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_u64())
        .collect();
    let addrs: BTreeSet<String> = s["nodes"]
        .as_array()?
        .iter()
        .filter(|n| n["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .filter_map(|n| n["http_addr"].as_str().map(str::to_owned))
        .collect();
    (addrs.len() == ids.len()).then_some(addrs)
}

/// Whether every one of `nodes` counts all of `nodes` as its members: one
/// cluster. Nodes in two clusters never list each other.
async fn one_cluster(t: &LocalCluster, nodes: &[usize]) -> bool {
    let all: BTreeSet<String> = nodes.iter().map(|&i| t.nodes[i].http.clone()).collect();
    for &i in nodes {
        if members(t, i).await.as_ref() != Some(&all) {
            return false;
        }
    }
    true
}

fn bootstraps(t: &LocalCluster, nodes: &[usize]) -> usize {
    nodes.iter().map(|&i| t.log_text(i).matches("bootstrapped a new one-node cluster").count()).sum()
}

async fn must_form(t: &LocalCluster, nodes: &[usize], what: &str) {
    let formed = t.wait_for(what, READY, || async { one_cluster(t, nodes).await.then_some(()) }).await;
    if let Err(e) = formed {
        for &i in nodes {
            eprintln!("node {i}: {:?}", members(t, i).await);
        }
        panic!("{e}");
    }
}

async fn trials(n: usize) {
    for trial in 0..TRIALS {
        let mut t = must_new();
        let nodes = define(&mut t, n, n);
        start_shuffled(&mut t, &nodes).await;
        must_form(&t, &nodes, &format!("trial {trial}: {n} nodes in one cluster")).await;
        assert_eq!(bootstraps(&t, &nodes), 1, "trial {trial}: exactly one node bootstraps");
        // Distinct ids, allocated by the cluster.
        let mut ids = BTreeSet::new();
        for &i in &nodes {
            ids.insert(t.node_id(i).await.expect("id"));
        }
        assert_eq!(ids.len(), n, "trial {trial}: distinct node ids {ids:?}");
        eprintln!("trial {trial}: {n} nodes formed one cluster");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_started_together_form_one_cluster_every_time() {
    trials(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn five_nodes_started_together_form_one_cluster_every_time() {
    trials(5).await;
}

/// The check above can tell two clusters from one: two nodes bootstrapped
/// on their own (no seeds) are not one cluster; and nodes waiting for a
/// third that never comes form nothing until it does.
#[tokio::test(flavor = "multi_thread")]
async fn control_two_clusters_and_a_missing_node_are_noticed() {
    let mut t = must_new();
    let a = t.add_node(None, &fast_args()).expect("a");
    let b = t.add_node(None, &fast_args()).expect("b");
    t.wait_ready(a, READY).await.expect("a ready");
    t.wait_ready(b, READY).await.expect("b ready");
    assert!(!one_cluster(&t, &[a, b]).await, "two lone bootstraps are two clusters");
    assert!(one_cluster(&t, &[a]).await && one_cluster(&t, &[b]).await);

    let mut t = must_new();
    let nodes = define(&mut t, 3, 3);
    t.start(nodes[0]).expect("start");
    t.start(nodes[1]).expect("start");
    // Both answer as waiting, and stay so: 2 of the 3 expected.
    for &i in &nodes[..2] {
        t.wait_for("waiting answer", READY, || async {
            let (code, v) = t.get(i, "/health").await.ok()?;
            (code == 200 && v["status"] == "discovering").then_some(())
        })
        .await
        .expect("discovering");
    }
    let (code, v) = t.get(nodes[0], "/health/ready").await.expect("ready probe");
    assert_eq!(code, 503, "a waiting node is not ready: {v}");
    let (code, v) = t.get(nodes[0], "/tasks").await.expect("api");
    assert_eq!((code, v["error"]["code"].as_str()), (503, Some("unavailable")), "{v}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bootstraps(&t, &nodes), 0, "no cluster from 2 of 3 expected nodes");
    for &i in &nodes[..2] {
        assert_eq!(t.get(i, "/health").await.expect("health").1["status"], "discovering");
    }
    t.start(nodes[2]).expect("start the third");
    must_form(&t, &nodes, "the three in one cluster").await;
    assert_eq!(bootstraps(&t, &nodes), 1);
}

/// Formed from seeds, then: the leader stops (SIGTERM) and hands off its
/// leadership; all are killed (-9) and restarted in a random order: the same
/// cluster comes back with no new bootstrap; a fourth node started later with
/// the same flags joins it.
#[tokio::test(flavor = "multi_thread")]
async fn restarts_in_any_order_rejoin_and_a_late_node_joins() {
    let mut t = must_new();
    let nodes = define(&mut t, 3, 3);
    start_shuffled(&mut t, &nodes).await;
    must_form(&t, &nodes, "three in one cluster").await;
    t.wait_voters(nodes[0], 3, READY).await.expect("three voters");
    let ids: Vec<u64> = {
        let mut v = Vec::new();
        for &i in &nodes {
            v.push(t.node_id(i).await.expect("id"));
        }
        v
    };

    let leader = must_leader(&t, &nodes).await;
    t.stop(leader).expect("SIGTERM the leader");
    assert!(
        t.log_text(leader).contains("leadership handed off before stopping"),
        "the stopping leader hands off:\n{}",
        t.log_text(leader)
    );
    let rest: Vec<usize> = nodes.iter().copied().filter(|&i| i != leader).collect();
    t.wait_for("a new leader", READY, || async {
        let l = t.leader_index(rest[0]).await?;
        (l != leader).then_some(())
    })
    .await
    .expect("new leader");

    for &i in &rest {
        t.kill(i);
    }
    start_shuffled(&mut t, &nodes).await;
    must_form(&t, &nodes, "the same three again").await;
    assert_eq!(bootstraps(&t, &nodes), 1, "a restart bootstraps nothing");
    for (k, &i) in nodes.iter().enumerate() {
        assert_eq!(t.node_id(i).await.expect("id"), ids[k], "node {i} keeps its id");
    }

    // A node started later with the same seeds joins (scale-up).
    let late = t.define_node(None, &fast_args()).expect("define");
    let args = t.nodes[nodes[0]].args.clone();
    let seeds_at = args.iter().position(|a| a == "--seeds").expect("seeds flag");
    t.nodes[late].args.extend(args[seeds_at..seeds_at + 4].iter().cloned());
    t.start(late).expect("start late");
    let mut all = nodes.clone();
    all.push(late);
    must_form(&t, &all, "four in one cluster").await;
    assert_eq!(bootstraps(&t, &all), 1);
    let joined: Value = t.status(late).await.expect("status");
    assert!(joined["leader_id"].as_u64().is_some(), "{joined}");
}

const ENTRYPOINT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/docker/entrypoint.sh");

/// The container image's entrypoint, run as a StatefulSet runs it: three
/// pods `synod-0..2` with identical environment (seeds and bootstrap_expect
/// as env vars, the node id from the pod name's ordinal) form one cluster
/// with ids 1, 2, 3, and the lowest id bootstraps it.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_entrypoint_forms_a_cluster_with_ids_from_ordinals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let creds =
        synod_testkit::Credentials::generate(|secret| Ok(synod_api::auth::first_admin_token(secret.as_bytes())?))
            .expect("credentials");
    let mut t = LocalCluster::new(std::path::Path::new("/bin/sh"), dir.path(), creds).expect("cluster");
    let nodes: Vec<usize> = (0..3).map(|_| t.define_node(None, &fast_args()).expect("define")).collect();
    let seeds: Vec<String> = nodes.iter().map(|&i| t.nodes[i].http.clone()).collect();
    for (ordinal, &i) in nodes.iter().enumerate() {
        t.nodes[i].args.insert(0, ENTRYPOINT.into());
        t.nodes[i].env = [
            ("SYNOD_BIN", BIN.to_string()),
            ("SYNOD_POD_NAME", format!("synod-{ordinal}")),
            ("SYNOD_NODE_ID_FROM_ORDINAL", "true".into()),
            ("SYNOD_CLUSTER_SEEDS", seeds.join(",")),
            ("SYNOD_CLUSTER_BOOTSTRAP_EXPECT", "3".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    }
    start_shuffled(&mut t, &nodes).await;
    must_form(&t, &nodes, "the three pods in one cluster").await;
    for (ordinal, &i) in nodes.iter().enumerate() {
        assert_eq!(t.node_id(i).await.expect("id"), ordinal as u64 + 1, "pod synod-{ordinal}");
    }
    assert_eq!(bootstraps(&t, &nodes[..1]), 1, "node id 1 (synod-0) bootstraps");
    assert_eq!(bootstraps(&t, &nodes), 1);

    // Control: a pod name without an ordinal stops before synod starts.
    let out = std::process::Command::new("/bin/sh")
        .arg(ENTRYPOINT)
        .env("SYNOD_BIN", BIN)
        .env("SYNOD_POD_NAME", "synod")
        .env("SYNOD_NODE_ID_FROM_ORDINAL", "true")
        .output()
        .expect("run the entrypoint");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no -<ordinal> suffix"), "{out:?}");
}
