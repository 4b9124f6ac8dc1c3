//! Backup and restore with real processes: `synod backup` of a three-node
//! cluster while writes run, `synod restore` into a new data dir, a new
//! three-node cluster started on it; the state is the backup's.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::util::*;

fn debug_args() -> Vec<String> {
    let mut a = fast_args();
    a.extend(["--set".into(), "observability.debug_endpoints=true".into()]);
    a
}

/// Runs the `synod` CLI; its stdout as JSON.
fn cli(args: &[&str], token: &str) -> Value {
    let out = std::process::Command::new(BIN).args(args).env("SYNOD_TOKEN", token).output().expect("run synod");
    assert!(out.status.success(), "synod {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("synod {args:?} printed no JSON ({e}): {out:?}"))
}

async fn post(t: &synod_testkit::LocalCluster, i: usize, path: &str, body: Value) -> (u16, Value) {
    let resp = t.http.post(format!("{}{path}", t.nodes[i].url())).json(&body).send().await.expect("post");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn digests_equal(t: &synod_testkit::LocalCluster, nodes: &[usize]) -> Option<(u64, String)> {
    let mut seen = Vec::new();
    for &i in nodes {
        let (code, v) = t.get(i, "/debug/digest").await.ok()?;
        if code != 200 {
            return None;
        }
        seen.push((v["applied_index"].as_u64()?, v["digest"].as_str()?.to_string()));
    }
    seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_under_load_restores_into_an_identical_fresh_cluster() {
    let src = must_three(&debug_args()).await;
    let (code, v) = post(&src, 0, "/collections", json!({"name": "docs", "dimension": 4, "metric": "cosine"})).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = post(
        &src,
        0,
        "/users",
        json!({"username": "ada", "password": "ada-password-1", "tenant": "default", "role": "user"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");

    // Writes through all three nodes while the backup runs: tasks and points.
    let stop = Arc::new(AtomicBool::new(false));
    // (sent, acknowledged, task id, point id) of every acknowledged pair.
    type Acked = (std::time::Instant, std::time::Instant, String, u64);
    let acked: Arc<std::sync::Mutex<Vec<Acked>>> = Default::default();
    let mut load = Vec::new();
    for via in 0..3usize {
        let (http, url, stop, acked) = (src.http.clone(), src.nodes[via].url(), stop.clone(), acked.clone());
        load.push(tokio::spawn(async move {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = via as u64 * 1_000_000 + k;
                k += 1;
                let sent = std::time::Instant::now();
                let t = http
                    .post(format!("{url}/tasks/submit"))
                    .json(&json!({"type": "echo", "payload": {"n": id}}))
                    .send()
                    .await;
                let p = http
                    .post(format!("{url}/collections/docs/points"))
                    .json(&json!({"points": [{"id": id, "vector": [1.0, id as f32, 0.5, 0.25]}]}))
                    .send()
                    .await;
                if let (Ok(t), Ok(p)) = (&t, &p)
                    && (!t.status().is_success() || !p.status().is_success())
                    && k == 1
                {
                    eprintln!("write through node {via} refused: {} {}", t.status(), p.status());
                }
                if let (Ok(t), Ok(p)) = (t, p)
                    && t.status().is_success()
                    && p.status().is_success()
                {
                    let task: Value = t.json().await.unwrap_or(Value::Null);
                    let task = task["id"].as_str().unwrap_or_default().to_string();
                    acked.lock().unwrap().push((sent, std::time::Instant::now(), task, id));
                }
            }
        }));
    }
    src.wait_for("writes under way", READY, || async { (acked.lock().unwrap().len() >= 50).then_some(()) })
        .await
        .expect("load");

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cluster.synodbak");
    let before = std::time::Instant::now();
    let (bin_file, url) = (file.display().to_string(), src.nodes[1].url());
    let token = src.admin_token.clone();
    let backup =
        tokio::task::spawn_blocking(move || cli(&["backup", &bin_file, "--addr", &url], &token)).await.expect("backup");
    let after = std::time::Instant::now();
    // More writes after the backup, then the load stops.
    src.wait_for("writes after the backup", READY, || async {
        (acked.lock().unwrap().iter().filter(|(sent, ..)| *sent > after).count() >= 20).then_some(())
    })
    .await
    .expect("load goes on");
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load task");
    }
    let index = backup["applied_index"].as_u64().expect("index");
    let digest = backup["digest"].as_str().expect("digest").to_string();
    let size = backup["bytes"].as_u64().expect("bytes");
    eprintln!("backup under load: {backup}");
    assert_eq!(std::fs::metadata(&file).expect("file").len(), size);

    // Control: a backup's digest is the node's own state digest at that
    // index (/debug/digest read just before and after it, when nothing was
    // applied in between; heartbeats still write, so it may take tries).
    let rest_file = dir.path().join("rest.synodbak");
    let mut compared = 0;
    for _ in 0..50 {
        let (_, before) = src.get(2, "/debug/digest").await.expect("digest");
        let rest = cli(&["backup", &rest_file.display().to_string(), "--addr", &src.nodes[2].url()], &src.admin_token);
        let (_, after) = src.get(2, "/debug/digest").await.expect("digest");
        if before["applied_index"] != after["applied_index"] || rest["applied_index"] != after["applied_index"] {
            continue;
        }
        assert_eq!(rest["digest"], after["digest"], "a quiet backup: {rest} vs {after}");
        assert_ne!(rest["digest"].as_str(), Some(digest.as_str()), "the backup under load is an earlier state");
        compared += 1;
        if compared == 3 {
            break;
        }
    }
    assert!(compared > 0, "no quiet moment to compare a backup with the node's digest in 50 tries");

    // A damaged file is refused before anything is written.
    let bad = dir.path().join("bad.synodbak");
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&bad, &bytes).expect("write");
    let out = std::process::Command::new(BIN)
        .args(["restore", &bad.display().to_string(), "--data-dir", &dir.path().join("bad").display().to_string()])
        .output()
        .expect("restore");
    assert!(!out.status.success(), "a damaged backup must be refused");
    assert!(!dir.path().join("bad").join("restored-backup.json").exists());

    // Restore into a new data dir and start a new cluster on it.
    let mut dst = must_new();
    let first = dst.define_node(None, &debug_args()).expect("define");
    let restored = cli(
        &["restore", &file.display().to_string(), "--data-dir", &dst.nodes[first].data_dir.display().to_string()],
        "",
    );
    eprintln!("restore: {restored}");
    assert_eq!(restored["digest"].as_str(), Some(digest.as_str()), "the restored store's own digest");
    assert_eq!(restored["applied_index"].as_u64(), Some(index));
    dst.start(first).expect("start");
    dst.wait_ready(first, READY).await.expect("restored node ready");
    dst.add_node(Some(first), &debug_args()).expect("second");
    dst.add_node(Some(first), &debug_args()).expect("third");
    dst.wait_voters(first, 3, READY).await.expect("three voters");
    dst.wait_for("equal digests on the new cluster", READY, || digests_equal(&dst, &[0, 1, 2])).await.expect("digests");

    // Every write acknowledged before the backup began is there, on every
    // node; none sent after it ended is.
    let acked = acked.lock().unwrap().clone();
    let (early, late): (Vec<_>, Vec<_>) = (
        acked.iter().filter(|(_, at, ..)| *at < before).cloned().collect(),
        acked.iter().filter(|(sent, ..)| *sent > after).cloned().collect(),
    );
    assert!(early.len() >= 50 && late.len() >= 20, "early {} late {}", early.len(), late.len());
    for i in 0..3 {
        for (_, _, task, point) in &early {
            let (code, v) = dst.get(i, &format!("/tasks/{task}/status")).await.expect("task");
            assert_eq!(code, 200, "task {task} on node {i}: {v}");
            let (code, v) = dst.get(i, &format!("/collections/docs/points/{point}")).await.expect("point");
            assert_eq!(code, 200, "point {point} on node {i}: {v}");
        }
    }
    for (_, _, task, point) in &late {
        let (code, _) = dst.get(0, &format!("/tasks/{task}/status")).await.expect("task");
        assert_eq!(code, 404, "task {task} came after the backup");
        let (code, _) = dst.get(0, &format!("/collections/docs/points/{point}")).await.expect("point");
        assert_eq!(code, 404, "point {point} came after the backup");
    }
    // Identities came along: the user logs in on the new cluster.
    let resp = dst
        .fresh_http()
        .post(format!("{}/login", dst.nodes[2].url()))
        .form(&[("grant_type", "password"), ("username", "ada"), ("password", "ada-password-1")])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    assert!(!Path::new(&dst.nodes[first].data_dir).join("restored-backup.json").exists(), "the marker is consumed");

    // The gRPC twin streams the same kind of file: what it says first, then
    // bytes that check out whole.
    let mut grpc = synod_api::pb::cluster_client::ClusterClient::with_interceptor(
        must_channel(&dst, 1).await,
        AdminAuth::of(&dst),
    );
    let mut stream = grpc.backup(synod_api::pb::StatusRequest {}).await.expect("Cluster.Backup").into_inner();
    let (mut about, mut data) = (None, Vec::new());
    while let Some(chunk) = stream.message().await.expect("a chunk") {
        if chunk.about.is_some() {
            assert!(about.is_none() && data.is_empty(), "what the file holds comes first, once");
            about = chunk.about;
        }
        data.extend_from_slice(&chunk.data);
    }
    let about = about.expect("about");
    let grpc_file = dir.path().join("grpc.synodbak");
    std::fs::write(&grpc_file, &data).expect("write");
    let read = synod_store::read_backup(&grpc_file).expect("a whole backup");
    assert_eq!((data.len() as u64, format!("{:016x}", read.digest)), (about.bytes, about.digest.clone()));
    assert!(about.applied_index > 0 && about.node_id > 0, "{about:?}");
}

/// A restore cut off halfway leaves its marker saying so, and no node starts
/// on that data dir.
#[test]
fn a_node_refuses_a_data_dir_whose_restore_did_not_finish() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("restored-backup.json"), r#"{"complete": false, "file": "x.synodbak"}"#)
        .expect("marker");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir", &dir.path().display().to_string()])
        .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"])
        .env("SYNOD_SECURITY_JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .output()
        .expect("run synod serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not finish"), "{err}");
    assert!(!dir.path().join("node_id").exists(), "nothing started there");
}
