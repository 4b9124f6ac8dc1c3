//! WASM plugins on a real 3-node cluster: loaded through one node, ready and
//! run on every node, replaced by a new version, present on a restarted node
//! and on one that joins later, unloaded everywhere; a bad module is refused
//! and stores nothing; a runaway plugin fails its task and leaves the node
//! healthy.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::util::*;

const GREET: &str = include_str!("../../../plugins/examples/wasm/greet.wat");

async fn post(t: &TestCluster, i: usize, path: &str, body: Value) -> (u16, Value) {
    let r = t.http.post(format!("{}{path}", t.nodes[i].url())).json(&body).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn load_body(name: &str, version: &str, wat: &str, extra: Value) -> Value {
    let mut manifest = json!({"name": name, "version": version, "description": "test plugin"});
    if let (Some(m), Some(e)) = (manifest.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    json!({"manifest": manifest, "module_base64": base64::engine::general_purpose::STANDARD.encode(wat)})
}

async fn node_ids(t: &TestCluster) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..t.nodes.len() {
        if let Ok((200, h)) = t.get(i, "/health").await {
            ids.push(h["node_id"].as_u64().unwrap());
        }
    }
    ids
}

/// Runs a task of `task_type` pinned to the node labelled `pin=<label>`.
async fn must_run_on(t: &TestCluster, via: usize, task_type: &str, label: &str, payload: Value) -> Value {
    let body = json!({"type": task_type, "payload": payload, "labels": {"pin": label}});
    let (code, v) = post(t, via, "/tasks/submit", body).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, r) = t.get(via, &format!("/tasks/{id}/result?wait=30")).await.unwrap();
    r
}

async fn must_label(t: &TestCluster, ids: &[u64]) {
    for (i, id) in ids.iter().enumerate() {
        must_put_labels(t, 0, *id, json!({"pin": i.to_string()})).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_plugin_loads_runs_everywhere_is_replaced_survives_restarts_and_unloads() {
    let mut t = must_three(&fast_args()).await;
    let ids = node_ids(&t).await;
    must_label(&t, &ids).await;

    // A bad module is refused by the node that receives it; nothing is stored.
    let (code, v) = post(&t, 1, "/plugins/load", load_body("greet", "0", "(module)", json!({}))).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("does not export"), "{v}");
    let (code, v) = post(&t, 1, "/plugins/load", load_body("echo", "1", GREET, json!({}))).await;
    assert_eq!(code, 400, "a built-in's name: {v}");
    let (_, list) = t.get(0, "/plugins/list").await.unwrap();
    assert!(!list["plugins"].as_array().unwrap().iter().any(|p| p["kind"] == "wasm"), "{list}");

    // Loaded through node 1, ready and running on every node.
    let (code, v) = post(&t, 1, "/plugins/load", load_body("greet", "1.0.0", GREET, json!({}))).await;
    assert_eq!(code, 200, "{v}");
    let v1 = v["sha256"].as_str().unwrap().to_string();
    assert_eq!((v["kind"].as_str(), v["version"].as_str()), (Some("wasm"), Some("1.0.0")));
    must_plugin_ready(&t, 0, "greet", Some(&v1), &ids).await;
    for (i, _) in ids.iter().enumerate() {
        let r = must_run_on(&t, i, "greet", &i.to_string(), json!({"n": i})).await;
        assert_eq!(r["state"], "succeeded", "{r}");
        assert_eq!(r["result"], json!({"greeting": "hello", "input": {"n": i}}), "{r}");
    }

    // A new version replaces it everywhere; the old one is kept as previous.
    let v2_wat = GREET.replace("\\\"hello\\\"", "\\\"howdy\\\"");
    assert_ne!(v2_wat, GREET);
    let (code, v) = post(&t, 2, "/plugins/load", load_body("greet", "2.0.0", &v2_wat, json!({}))).await;
    assert_eq!(code, 200, "{v}");
    let v2 = v["sha256"].as_str().unwrap().to_string();
    assert_eq!(v["previous"][0]["sha256"], v1.as_str(), "{v}");
    must_plugin_ready(&t, 0, "greet", Some(&v2), &ids).await;
    for (i, _) in ids.iter().enumerate() {
        let r = must_run_on(&t, 0, "greet", &i.to_string(), json!({})).await;
        assert_eq!(r["result"]["greeting"], "howdy", "node {i}: {r}");
    }

    // A restarted node and a node that joins later compile it from the store.
    t.kill(2);
    t.start(2).unwrap();
    t.wait_ready(2, READY).await.unwrap();
    let joined = t.add_node(Some(0), &fast_args()).unwrap();
    t.wait_ready(joined, READY).await.unwrap();
    let all = node_ids(&t).await;
    assert_eq!(all.len(), 4);
    must_plugin_ready(&t, 0, "greet", Some(&v2), &all).await;
    must_put_labels(&t, 0, all[3], json!({"pin": "3"})).await;
    for label in ["2", "3"] {
        let r = must_run_on(&t, 0, "greet", label, json!({"after": "restart"})).await;
        assert_eq!(r["result"]["greeting"], "howdy", "node pinned {label}: {r}");
    }

    // Unloaded everywhere: gone from the list, and a submit names it unknown.
    let (code, v) = post(&t, 0, "/plugins/greet/unload", json!({})).await;
    assert_eq!(code, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..t.nodes.len() {
        loop {
            let (code, _) = t.get(i, "/plugins/greet").await.unwrap();
            if code == 404 {
                break;
            }
            assert!(Instant::now() < deadline, "node {i} still lists greet");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (code, v) = post(&t, 1, "/tasks/submit", json!({"type": "greet", "payload": {}})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = post(&t, 1, "/plugins/greet/unload", json!({})).await;
    assert_eq!(code, 404, "{v}");
}

#[tokio::test]
async fn a_runaway_plugin_fails_its_task_and_the_node_stays_healthy() {
    let t = must_single(&[]).await;
    let spin = r#"(module (memory (export "memory") 1)
        (func (export "synod_alloc") (param i32) (result i32) i32.const 1024)
        (func (export "synod_run") (param i32 i32) (result i64) (loop $l (br $l)) i64.const 0))"#;
    let (code, v) = post(&t, 0, "/plugins/load", load_body("spin", "1", spin, json!({"timeout_ms": 300}))).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = post(&t, 0, "/tasks/submit", json!({"type": "spin", "payload": {}, "max_attempts": 3})).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, r) = t.get(0, &format!("/tasks/{id}/result?wait=30")).await.unwrap();
    assert_eq!(r["state"], "failed", "{r}");
    let (_, status) = t.get(0, &format!("/tasks/{id}/status")).await.unwrap();
    assert_eq!(status["attempts"].as_array().unwrap().len(), 1, "not retried: {status}");
    assert!(status["error"].as_str().unwrap().contains("wall-clock limit"), "{status}");
    // Healthy: the node is (or within a moment becomes: applied catches up
    // with commit) ready, and runs another plugin.
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.get(0, "/health/ready").await.unwrap().0 != 200 {
        assert!(Instant::now() < deadline, "the node did not become ready after the runaway task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, v) = post(&t, 0, "/plugins/load", load_body("greet", "1", GREET, json!({}))).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = post(&t, 0, "/tasks/submit", json!({"type": "greet", "payload": {"ok": true}})).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, r) = t.get(0, &format!("/tasks/{id}/result?wait=30")).await.unwrap();
    assert_eq!(r["result"], json!({"greeting": "hello", "input": {"ok": true}}), "{r}");
}
