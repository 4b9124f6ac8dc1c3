//! The Grafana dashboard (`deploy/grafana/synod.json`) queries only metric
//! names a real node exports: a three-node cluster does the work every
//! panel counts (tasks, a collection and a search, a call through an
//! external provider's breaker, gRPC), then every `synod_*` name in the
//! dashboard's queries must be in `/metrics`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::fakes;
use crate::util::*;

/// The `synod_*` names in a PromQL expression.
fn names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("synod_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/synod.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let wanted: BTreeSet<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().filter_map(|t| t["expr"].as_str()).flat_map(names))
        .collect();
    assert!(wanted.len() >= 20, "{wanted:?}");

    let qdrant = fakes::qdrant(None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.yaml");
    std::fs::write(
        &config,
        format!("external:\n  providers:\n    qd:\n      kind: qdrant\n      base_url: {}\n", qdrant.url()),
    )
    .unwrap();
    let t = must_three(&["--config".to_string(), config.display().to_string()]).await;
    let post = |i: usize, path: &str, body: Value| {
        let (url, http) = (format!("{}{path}", t.nodes[i].url()), t.http.clone());
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Tasks, run to the end on whichever nodes take them.
    let mut ids = Vec::new();
    for i in 0..6 {
        let (code, v) = post(i % 3, "/tasks/submit", json!({"type": "echo", "payload": {"i": i}})).await;
        assert_eq!(code, 200, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let (code, r) = t.get(0, &format!("/tasks/{id}/result?wait=30")).await.unwrap();
        assert_eq!((code, r["state"].as_str()), (200, Some("succeeded")), "{r}");
    }
    // A built-in collection with points and a search on every node; one in
    // the external provider (calls through its breaker).
    assert_eq!(post(0, "/collections", json!({"name": "m", "dimension": 2})).await.0, 200);
    let pts = json!({"points": [{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0]}]});
    assert_eq!(post(0, "/collections/m/points", pts).await.0, 200);
    for i in 0..3 {
        let q = json!({"collection": "m", "vector": [1.0, 0.0], "consistency": "linearizable"});
        assert_eq!(post(i, "/vector/search", q).await.0, 200);
    }
    let (code, v) = post(0, "/collections", json!({"name": "x", "dimension": 2, "backend": {"provider": "qd"}})).await;
    assert_eq!(code, 200, "{v}");
    // gRPC.
    let mut grpc =
        synod_api::pb::cluster_client::ClusterClient::with_interceptor(must_channel(&t, 0).await, AdminAuth::of(&t));
    grpc.status(synod_api::pb::StatusRequest {}).await.unwrap();

    // Every name, on some node (the leader exports leader-only metrics).
    let exported = std::sync::Mutex::new(BTreeSet::new());
    let missing = t
        .wait_for("every metric the dashboard queries", READY, || async {
            for i in 0..3 {
                let text = t.http.get(format!("{}/metrics", t.nodes[i].url())).send().await.ok()?.text().await.ok()?;
                let mut seen = exported.lock().unwrap();
                for line in text.lines().filter(|l| !l.starts_with('#')) {
                    seen.insert(line.split(['{', ' ']).next().unwrap_or("").to_owned());
                }
            }
            let seen = exported.lock().unwrap();
            wanted.iter().all(|w| seen.contains(w)).then_some(())
        })
        .await;
    let seen = exported.lock().unwrap();
    assert!(
        missing.is_ok(),
        "the dashboard queries names no node exports: {:?}",
        wanted.iter().filter(|w| !seen.contains(*w)).collect::<Vec<_>>()
    );
    // Control: a name no node exports is noticed.
    assert!(!seen.contains("synod_no_such_metric_total"));
}
