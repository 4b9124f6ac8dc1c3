//! One node: the embedded default. Bootstraps alone, answers health and
//! errors as documented, and keeps writes across SIGTERM and kill -9.

use serde_json::{Value, json};

use crate::util::*;

#[tokio::test]
async fn bootstraps_alone_and_is_ready() {
    let t = must_single(&[]).await;
    let (code, h) = t.get(0, "/health").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(h["node_id"], 1);
    assert_eq!(h["role"], "leader");
    assert_eq!(h["leader_id"], 1);
    assert!(h["commit_index"].as_u64().unwrap() >= 1);
    let (code, r) = t.get(0, "/health/ready").await.unwrap();
    assert_eq!(code, 200, "{r}");
    let names: Vec<&str> = r["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["autoscaler", "heartbeats", "history", "membership", "plugins", "retention", "scheduler", "worker"],
        "{r}"
    );
    assert!(r["components"].as_array().unwrap().iter().all(|c| c["running"] == true && c["restarts"] == 0), "{r}");

    let s = t.status(0).await.unwrap();
    assert_eq!(s["leader_id"], 1);
    for key in ["term", "commit_index"] {
        assert!(s[key].as_u64().is_some(), "{key} in {s}");
    }
    let node = &s["nodes"][0];
    for key in ["id", "role", "raft_addr", "http_addr", "liveness", "applied_index"] {
        assert!(!node[key].is_null(), "{key} in {node}");
    }

    // The node registered itself; its heartbeats are leader-stamped.
    let reg = t
        .wait_for("self registration", READY, || async {
            let (_, v) = t.get(0, "/agents/registry").await.ok()?;
            (v["nodes"].as_array()?.len() == 1).then_some(v)
        })
        .await
        .unwrap();
    let me = &reg["nodes"][0];
    assert_eq!(me["role"], "leader");
    assert_eq!(me["liveness"], "alive");
    assert!(me["last_heartbeat_ms"].as_u64().unwrap() > 0);

    let text = t.http.get(format!("{}/metrics", t.nodes[0].url())).send().await.unwrap().text().await.unwrap();
    for name in ["synod_raft_term", "synod_raft_commit_index", "synod_raft_applied_index", "synod_http_requests_total"]
    {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn bad_requests_get_the_json_error_body_and_change_nothing() {
    let t = must_single(&[]).await;
    let url = t.nodes[0].url();
    let before = must_get_record(&t, 0, 1, "local").await;

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            t.http
                .put(format!("{url}/cluster/nodes/1/labels"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "invalid_argument",
        ),
        (t.http.put(format!("{url}/cluster/nodes/1/labels")).json(&json!({"zone": 7})), 400, "invalid_argument"),
        (t.http.put(format!("{url}/cluster/nodes/1/labels")).json(&json!({"": "x"})), 400, "invalid_argument"),
        (
            t.http.put(format!("{url}/cluster/nodes/1/labels")).header("if-match", "\"abc\"").json(&json!({})),
            400,
            "invalid_argument",
        ),
        (t.http.put(format!("{url}/cluster/nodes/99/labels")).json(&json!({"a": "b"})), 404, "not_found"),
        (t.http.put(format!("{url}/cluster/nodes/x/labels")).json(&json!({"a": "b"})), 400, "invalid_argument"),
        (t.http.get(format!("{url}/no/such/route")), 404, "not_found"),
        // Off unless observability.debug_endpoints is set.
        (t.http.get(format!("{url}/debug/digest")), 404, "not_found"),
        (t.http.get(format!("{url}/agents/registry?consistency=eventual")), 400, "invalid_argument"),
        (t.http.post(format!("{url}/cluster/nodes/42/promote")), 404, "not_found"),
        (t.http.post(format!("{url}/cluster/nodes/1/remove")), 412, "failed_precondition"),
        (
            t.http.put(format!("{url}/cluster/nodes/1/labels")).json(&json!({"big": "x".repeat(3 << 20)})),
            413,
            "resource_exhausted",
        ),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        let got = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    // The oversize body made the server drop that connection: read on a fresh one.
    let fresh = t.fresh_http();
    let after: serde_json::Value =
        fresh.get(format!("{url}/cluster/nodes/1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(before["record_version"], after["record_version"], "a rejected request changed the record");
    assert_eq!(before["labels"], after["labels"]);
}

#[tokio::test]
async fn sigterm_exits_zero_and_writes_survive_restarts() {
    let mut t = must_single(&[]).await;
    for n in 0..20 {
        must_put_labels(&t, 0, 1, seq_labels(n)).await;
    }
    let status = t.stop(0).unwrap();
    assert!(status.success(), "SIGTERM exit status: {status}");
    t.start(0).unwrap();
    t.wait_ready(0, READY).await.unwrap();
    assert_eq!(must_get_record(&t, 0, 1, "linearizable").await["labels"], seq_labels(19));

    must_put_labels(&t, 0, 1, seq_labels(20)).await;
    t.kill(0);
    t.start(0).unwrap();
    t.wait_ready(0, READY).await.unwrap();
    assert_eq!(must_get_record(&t, 0, 1, "linearizable").await["labels"], seq_labels(20));
    assert!(!t.log_text(0).contains("panicked at"));
}

/// The in-memory metrics history: before any task, samples show none and
/// rates of 0 (the control); after 20 echo tasks, a sample counts them
/// submitted and succeeded, with a rate and a latency; the ring keeps at
/// most `history_samples`; the gRPC twin answers the same samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_history_samples_tasks_cpu_and_memory() {
    let args: Vec<String> = ["observability.history_interval=200ms", "observability.history_samples=8"]
        .iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect();
    let t = must_single(&args).await;
    let history = || async {
        let (code, v) = t.get(0, "/metrics/history").await.unwrap();
        assert_eq!(code, 200, "{v}");
        v
    };
    let first = t
        .wait_for("two samples", READY, || async {
            let v = history().await;
            (v["samples"].as_array()?.len() >= 2).then_some(v)
        })
        .await
        .unwrap();
    let s = &first["samples"][1];
    assert_eq!((s["tasks_submitted"].as_u64(), s["submitted_per_s"].as_f64()), (Some(0), Some(0.0)), "{s}");
    assert!(s["rss_bytes"].as_u64().unwrap() > 1 << 20, "{s}");
    assert!(s["latency_p50_s"].is_null(), "{s}");

    let tasks: Vec<Value> = (0..20).map(|i| json!({"type": "echo", "payload": {"i": i}})).collect();
    for task in &tasks {
        let r = t.http.post(format!("{}/tasks/submit", t.nodes[0].url())).json(task).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let seen = t
        .wait_for("a sample with the 20 tasks succeeded", READY, || async {
            let v = history().await;
            let samples = v["samples"].as_array()?.clone();
            samples.iter().any(|s| s["tasks_succeeded"].as_u64() == Some(20)).then_some(samples)
        })
        .await
        .unwrap();
    assert!(seen.len() <= 8, "the ring keeps at most history_samples: {}", seen.len());
    assert!(seen.iter().any(|s| s["submitted_per_s"].as_f64().unwrap() > 0.0), "{seen:?}");
    assert!(seen.iter().any(|s| s["succeeded_per_s"].as_f64().unwrap() > 0.0), "{seen:?}");
    assert!(seen.iter().any(|s| s["latency_p50_s"].as_f64().is_some()), "{seen:?}");
    let last = seen.last().unwrap();
    assert!(last["raft_term"].as_u64() >= Some(1) && last["applied_index"].as_u64() > Some(20), "{last}");

    // gRPC: the same samples, as JSON.
    let mut grpc =
        synod_api::pb::cluster_client::ClusterClient::with_interceptor(must_channel(&t, 0).await, AdminAuth::of(&t));
    let since = seen[0]["at_ms"].as_u64().unwrap();
    let reply =
        grpc.metrics_history(synod_api::pb::MetricsHistoryRequest { since_ms: since }).await.unwrap().into_inner();
    let samples: Vec<Value> = serde_json::from_str(&reply.samples_json).unwrap();
    assert_eq!((reply.capacity, reply.interval_s), (8, 0.2));
    assert!(!samples.is_empty() && samples.iter().all(|s| s["at_ms"].as_u64().unwrap() >= since));
}

/// `curl -X POST .../tasks/submit -d '{...}'` sends its JSON labelled as a
/// form: the JSON routes read JSON whatever the label; a body that is not
/// JSON still gets the JSON error body.
#[tokio::test]
async fn a_json_body_is_json_whatever_its_content_type() {
    let t = must_single(&[]).await;
    let url = format!("{}/tasks/submit", t.nodes[0].url());
    let body = r#"{"type": "echo", "payload": {"text": "hello world"}}"#;
    for content_type in [Some("application/x-www-form-urlencoded"), Some("text/plain"), None] {
        let mut req = t.http.post(&url).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(code, 200, "{content_type:?}: {v}");
        assert!(v["id"].as_str().is_some_and(|id| !id.is_empty()), "{content_type:?}: {v}");
    }
    // Control: a real form is not JSON, and says so.
    let resp = t.http.post(&url).header("content-type", "application/x-www-form-urlencoded").body("type=echo").send();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("malformed JSON body"), "{v}");
}
