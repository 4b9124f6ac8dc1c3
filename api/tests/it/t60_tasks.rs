//! Tasks end to end on real processes: the seed's example, validation,
//! idempotency, cancel, retries, timeouts, dead letters, and node failures
//! under a stream of work (every task ends succeeded exactly once).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

async fn submit(t: &TestCluster, via: usize, body: Value) -> (u16, Value) {
    let resp = t.http.post(format!("{}/tasks/submit", t.nodes[via].url())).json(&body).send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn must_submit(t: &TestCluster, via: usize, body: Value) -> String {
    let (code, v) = submit(t, via, body).await;
    assert_eq!(code, 200, "{v}");
    v["id"].as_str().expect("id").to_string()
}

async fn must_result(t: &TestCluster, via: usize, id: &str) -> Value {
    let r = t
        .wait_for(&format!("task {id} to finish"), READY, || async {
            let (code, v) = t.get(via, &format!("/tasks/{id}/result?wait=2")).await.ok()?;
            (code == 200).then_some(v)
        })
        .await;
    match r {
        Ok(v) => v,
        Err(e) => {
            let status = t.get(via, &format!("/tasks/{id}/status")).await.map(|x| x.1).unwrap_or_default();
            let cluster = t.get(via, "/agents/registry").await.map(|x| x.1).unwrap_or_default();
            panic!("{e}\ntask: {status}\nregistry: {cluster}");
        }
    }
}

async fn must_status(t: &TestCluster, via: usize, id: &str) -> Value {
    let (code, v) = t.get(via, &format!("/tasks/{id}/status")).await.unwrap();
    assert_eq!(code, 200, "{v}");
    v
}

#[tokio::test]
async fn the_seed_example_runs_and_bad_submits_store_nothing() {
    let t = must_single(&model_args()).await;
    let id = must_submit(&t, 0, json!({"type": "vectorize", "payload": {"text": "hello world"}})).await;
    let r = must_result(&t, 0, &id).await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["result"]["model"], "all-MiniLM-L6-v2", "{r}");
    let v: Vec<f32> = serde_json::from_value(r["result"]["vector"].clone()).unwrap();
    let sim = cosine(&v, &reference_vector("hello world"));
    assert!(sim >= 0.9999, "the seed's request gives sentence-transformers' vector: cosine {sim}");
    let text = t.http.get(format!("{}/metrics", t.nodes[0].url())).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("synod_tasks{") && l.contains("state=\"succeeded\"") && l.contains("tenant=\"default\"")
        })
        .unwrap_or_else(|| panic!("no succeeded gauge in:\n{text}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(metric(&t, 0, "synod_tasks_end_to_end_seconds_count").await >= 1.0);

    let before = t.get(0, "/tasks?limit=1000").await.unwrap().1["tasks"].as_array().unwrap().len();
    let bad = [
        (json!({"type": "no-such-type", "payload": {}}), 400),
        (json!({"type": "vectorize", "payload": {"text": 5}}), 400),
        (json!({"type": "vectorize"}), 400),
        (json!({"type": "vectorize", "payload": {"text": "x", "model": "no-such-model"}}), 400),
        (json!({"type": "tokenize", "payload": {"text": "x", "tokenizer": "no-such-model"}}), 400),
        (json!({"type": "echo", "payload": {}, "priority": 10}), 400),
        (json!({"type": "echo", "payload": {}, "bogus": 1}), 400),
        (json!({"type": "echo", "payload": {"blob": "x".repeat(1_100_000)}}), 413),
        (json!({"tasks": [{"type": "echo", "payload": {}}, {"type": "nope"}]}), 400),
    ];
    for (body, status) in bad {
        let (code, v) = submit(&t, 0, body).await;
        assert_eq!(code, status, "{v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let fresh = t.fresh_http();
    let after: Value =
        fresh.get(format!("{}/tasks?limit=1000", t.nodes[0].url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(after["tasks"].as_array().unwrap().len(), before, "a refused submit stored something");
}

#[tokio::test]
async fn large_payloads_round_trip_through_the_blob_store() {
    let t = must_single(&[]).await;
    let blob = "é".repeat(100_000);
    let id = must_submit(&t, 0, json!({"type": "echo", "payload": {"blob": blob}})).await;
    let r = must_result(&t, 0, &id).await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["result"]["blob"].as_str().unwrap(), blob);
    assert_eq!(must_status(&t, 0, &id).await["payload"]["blob"].as_str().unwrap(), blob);
}

#[tokio::test]
async fn idempotent_submits_give_one_task() {
    let t = must_single(&[]).await;
    let a = must_submit(&t, 0, json!({"type": "echo", "payload": {"n": 1}, "idempotency_key": "order-42"})).await;
    let resp = t
        .http
        .post(format!("{}/tasks/submit", t.nodes[0].url()))
        .header("Idempotency-Key", "order-42")
        .json(&json!({"type": "echo", "payload": {"n": 2}}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], a.as_str());
    assert_eq!(v["duplicate"], true);
    let all = t.get(0, "/tasks?type=echo").await.unwrap().1;
    assert_eq!(all["tasks"].as_array().unwrap().len(), 1, "{all}");
}

#[tokio::test]
async fn cancel_retry_timeout_and_dead_letter() {
    let t = must_single(&[]).await;
    // A long task is cancelled while it runs.
    let long = must_submit(&t, 0, json!({"type": "sleep", "payload": {"ms": 60000}})).await;
    t.wait_for("the sleep to run", READY, || async {
        (must_status(&t, 0, &long).await["state"] == "running").then_some(())
    })
    .await
    .unwrap();
    let resp = t.http.post(format!("{}/tasks/{long}/cancel", t.nodes[0].url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(must_result(&t, 0, &long).await["state"], "cancelled");

    // Retryable failures are retried with backoff, then dead-lettered.
    let flaky = must_submit(
        &t,
        0,
        json!({"type": "fail", "payload": {"message": "flaky"}, "max_attempts": 3, "backoff": {"initial_ms": 50, "multiplier": 2.0}}),
    )
    .await;
    assert_eq!(must_result(&t, 0, &flaky).await["state"], "dead_lettered");
    let s = must_status(&t, 0, &flaky).await;
    assert_eq!(s["attempts"].as_array().unwrap().len(), 3, "{s}");

    // A permanent failure fails at once.
    let bad = must_submit(
        &t,
        0,
        json!({"type": "fail", "payload": {"message": "no", "retryable": false}, "max_attempts": 3}),
    )
    .await;
    assert_eq!(must_result(&t, 0, &bad).await["state"], "failed");
    assert_eq!(must_status(&t, 0, &bad).await["attempts"].as_array().unwrap().len(), 1);

    // A timeout is a retryable failure.
    let slow = must_submit(
        &t,
        0,
        json!({"type": "sleep", "payload": {"ms": 5000}, "timeout_ms": 100, "max_attempts": 2, "backoff": {"initial_ms": 10}}),
    )
    .await;
    let r = must_result(&t, 0, &slow).await;
    assert_eq!(r["state"], "dead_lettered", "{r}");
    assert!(r["error"].as_str().unwrap().contains("timed out"), "{r}");

    // A panicking plugin fails its attempt only; the node keeps working.
    let boom = must_submit(&t, 0, json!({"type": "fail", "payload": {"panic": true}, "max_attempts": 1})).await;
    assert_ne!(must_result(&t, 0, &boom).await["state"], "succeeded");
    let ok = must_submit(&t, 0, json!({"type": "echo", "payload": {"still": "alive"}})).await;
    assert_eq!(must_result(&t, 0, &ok).await["result"], json!({"still": "alive"}));

    // Not finished yet: 202 with the state.
    let pending = must_submit(&t, 0, json!({"type": "sleep", "payload": {"ms": 3000}})).await;
    let (code, v) = t.get(0, &format!("/tasks/{pending}/result")).await.unwrap();
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["finished"], false);
}

static SUBMIT_RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Submits `n` tasks in batches through every node and returns their ids.
async fn submit_many(t: &TestCluster, via: &[usize], n: usize, sleep_ms: u64) -> Vec<String> {
    let run = SUBMIT_RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut ids = Vec::new();
    for (b, chunk) in (0..n).collect::<Vec<_>>().chunks(100).enumerate() {
        let tasks: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"type": "sleep", "payload": {"ms": sleep_ms}, "idempotency_key": format!("run{run}-k{i}")}))
            .collect();
        let node = via[b % via.len()];
        let (code, v) = submit(t, node, json!({"tasks": tasks})).await;
        assert_eq!(code, 200, "{v}");
        ids.extend(v["tasks"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()));
    }
    ids
}

async fn must_all_succeed(t: &TestCluster, via: usize, ids: &[String]) -> BTreeMap<String, usize> {
    let mut attempts = BTreeMap::new();
    for id in ids {
        let r = must_result(t, via, id).await;
        assert_eq!(r["state"], "succeeded", "{r}");
        let s = must_status(t, via, id).await;
        let a = s["attempts"].as_array().unwrap();
        // Exactly one attempt succeeded: the last one, with no error.
        assert!(a.last().unwrap()["error"].is_null(), "{s}");
        assert!(a[..a.len() - 1].iter().all(|x| !x["error"].is_null()), "{s}");
        attempts.insert(id.clone(), a.len());
    }
    attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_succeeds_once_when_a_worker_and_then_the_leader_die() {
    let mut t = must_three(&fast_args()).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let worker = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // 200 ms each: long enough that tasks are still running on the worker
    // when the submits are done (1,000 of 20 ms could all finish first).
    let ids = submit_many(&t, &[leader, worker, other], 1000, 200).await;
    // Kill a worker while tasks are running on it.
    let worker_id = t.node_id(worker).await.unwrap();
    t.wait_for("tasks running on the worker", READY, || async {
        let (_, v) = t.get(leader, "/tasks?state=running&limit=1000").await.ok()?;
        v["tasks"].as_array()?.iter().any(|x| x["node_id"] == worker_id).then_some(())
    })
    .await
    .unwrap();
    t.kill(worker);
    let attempts = must_all_succeed(&t, leader, &ids).await;
    let rerun = attempts.values().filter(|a| **a > 1).count();
    eprintln!("1000 tasks succeeded; {rerun} ran again after the worker was killed");
    assert!(rerun > 0, "the killed worker had tasks in flight, they must have been rerun");
    let lost = metric(&t, leader, "synod_tasks_requeued_total{reason=\"node_lost\"}").await;
    assert!(lost >= 1.0, "the leader counts the tasks it took back from the lost node: {lost}");

    // Now the leader dies mid-run.
    t.start(worker).unwrap();
    t.wait_ready(worker, READY).await.unwrap();
    let more = submit_many(&t, &[worker, other], 1000, 20).await;
    assert!(more.iter().all(|id| !ids.contains(id)), "the second run's tasks are new ones");
    t.kill(leader);
    let survivor = t
        .wait_for("a new leader", READY, || async {
            for v in [worker, other] {
                if let Some(l) = t.leader_index(v).await
                    && l != leader
                {
                    return Some(l);
                }
            }
            None
        })
        .await
        .unwrap();
    must_all_succeed(&t, survivor, &more).await;
    for i in [worker, other] {
        assert!(!t.log_text(i).contains("panicked at"), "node {i} panicked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_gets_no_new_work() {
    let t = must_three(&fast_args()).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let drained = (leader + 1) % 3;
    let drained_id = t.node_id(drained).await.unwrap();
    let resp = t.http.post(format!("{}/cluster/nodes/{drained_id}/drain", t.nodes[leader].url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ids = submit_many(&t, &[leader], 200, 1).await;
    must_all_succeed(&t, leader, &ids).await;
    for id in &ids {
        let s = must_status(&t, leader, id).await;
        for a in s["attempts"].as_array().unwrap() {
            assert_ne!(a["node_id"], drained_id, "a drained node got work: {s}");
        }
    }
}

#[tokio::test]
async fn grpc_tasks_submit_watch_and_refuse() {
    use synod_api::pb::tasks_client::TasksClient;
    use synod_api::pb::{ResultRequest, SubmitTaskRequest, TaskId};

    let t = must_single(&[]).await;
    let mut client = TasksClient::with_interceptor(must_channel(&t, 0).await, AdminAuth::of(&t));
    let req = |ty: &str, payload: &str| SubmitTaskRequest {
        r#type: ty.into(),
        payload_json: payload.into(),
        priority: None,
        idempotency_key: None,
        max_attempts: None,
        timeout_ms: None,
        labels: Default::default(),
        backoff: None,
    };
    let id = client.submit(req("sleep", r#"{"ms": 300}"#)).await.unwrap().into_inner().id;
    let mut stream = client.watch(TaskId { id: id.clone() }).await.unwrap().into_inner();
    let mut states = Vec::new();
    while let Some(task) = stream.message().await.unwrap() {
        states.push(task.state);
    }
    assert_eq!(states.last().map(String::as_str), Some("succeeded"), "{states:?}");
    assert!(states.len() >= 2, "the stream follows state changes: {states:?}");

    let r = client.result(ResultRequest { id, wait_ms: 0 }).await.unwrap().into_inner();
    assert!(r.finished);
    assert_eq!(serde_json::from_str::<Value>(&r.result_json).unwrap()["slept_ms"], 300);

    let err = client.submit(req("vectorize", r#"{"text": 1}"#)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = client.status(TaskId { id: "nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_hands_its_tasks_back_after_the_deadline() {
    let mut extra = fast_args();
    extra.extend(["--set".to_string(), "scaling.drain_deadline=1s".to_string()]);
    let t = must_three(&extra).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let drained = (leader + 1) % 3;
    let drained_id = t.node_id(drained).await.unwrap();
    let tasks: Vec<Value> = (0..12).map(|_| json!({"type": "sleep", "payload": {"ms": 60000}})).collect();
    let (code, v) = submit(&t, leader, json!({"tasks": tasks})).await;
    assert_eq!(code, 200, "{v}");
    let ids: Vec<String> =
        v["tasks"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect();
    let on_drained = t
        .wait_for("tasks running on the node to drain", READY, || async {
            let mut on = Vec::new();
            for id in &ids {
                let s = must_status(&t, leader, id).await;
                if s["state"] == "running" && s["node_id"] == drained_id {
                    on.push(id.clone());
                }
            }
            (!on.is_empty()).then_some(on)
        })
        .await
        .unwrap();
    let resp = t.http.post(format!("{}/cluster/nodes/{drained_id}/drain", t.nodes[leader].url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    for id in &on_drained {
        let s = t
            .wait_for("the task to run elsewhere", READY, || async {
                let s = must_status(&t, leader, id).await;
                (s["state"] == "running" && s["node_id"] != drained_id).then_some(s)
            })
            .await
            .unwrap();
        let first = &s["attempts"][0];
        assert_eq!(first["node_id"], drained_id, "{s}");
        assert!(first["error"].as_str().unwrap().contains("drained"), "{s}");
    }
    for id in &ids {
        t.http.post(format!("{}/tasks/{id}/cancel", t.nodes[leader].url())).send().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_grows_the_worker_pool_and_the_desired_node_count() {
    let hook_dir = tempfile::tempdir().unwrap();
    let hook_file = hook_dir.path().join("desired");
    let set = |kv: String| ["--set".to_string(), kv];
    let mut extra = fast_args();
    for kv in [
        "scaling.min_workers=2".to_string(),
        "scaling.max_workers=8".to_string(),
        "scaling.cooldown=1s".to_string(),
        // The machine running the suite is busy: judge the pool by backlog only.
        "scaling.cpu_high=1".to_string(),
        "scaling.max_nodes=3".to_string(),
        format!("scaling.hook=echo >> {}", hook_file.display()),
    ] {
        extra.extend(set(kv));
    }
    let t = must_single(&extra).await;
    let (_, h) = t.get(0, "/health").await.unwrap();
    assert_eq!(h["worker_pool_size"], 2, "{h}");

    let tasks: Vec<Value> = (0..100).map(|_| json!({"type": "sleep", "payload": {"ms": 2000}})).collect();
    let (code, v) = submit(&t, 0, json!({"tasks": tasks})).await;
    assert_eq!(code, 200, "{v}");
    let ids: Vec<String> =
        v["tasks"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect();

    t.wait_for("the pool to grow", READY, || async {
        let (_, h) = t.get(0, "/health").await.ok()?;
        (h["worker_pool_size"].as_u64()? > 2).then_some(())
    })
    .await
    .unwrap();
    t.wait_for("the desired node count to reach max_nodes", READY, || async {
        let s = t.status(0).await.ok()?;
        (s["desired_nodes"] == 3).then_some(())
    })
    .await
    .unwrap();
    t.wait_for("the scale hook to run with 3", READY, || async {
        let text = std::fs::read_to_string(&hook_file).ok()?;
        text.lines().any(|l| l.trim() == "3").then_some(())
    })
    .await
    .unwrap();
    for id in &ids {
        t.http.post(format!("{}/tasks/{id}/cancel", t.nodes[0].url())).send().await.unwrap();
    }
}

/// A worker that stops (SIGSTOP) longer than the recovery timeout loses its
/// tasks; when it resumes, its completions carry stale epochs and apply()
/// refuses them: every task still succeeds exactly once, elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_from_a_paused_worker_are_fenced_off() {
    let t = must_three(&fast_args()).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let paused = (leader + 1) % 3;
    let paused_id = t.node_id(paused).await.unwrap();
    let ids = submit_many(&t, &[leader], 48, 2000).await;
    let victims = t
        .wait_for("tasks running on the worker to pause", READY, || async {
            let mut on = Vec::new();
            for id in &ids {
                let s = must_status(&t, leader, id).await;
                if s["state"] == "running" && s["node_id"] == paused_id {
                    on.push(id.clone());
                }
            }
            (!on.is_empty()).then_some(on)
        })
        .await
        .unwrap();
    t.signal(paused, "STOP").unwrap();
    for id in &victims {
        t.wait_for("the task to move on", READY, || async {
            let s = must_status(&t, leader, id).await;
            (s["node_id"] != paused_id || s["state"] == "succeeded").then_some(())
        })
        .await
        .unwrap();
    }
    t.signal(paused, "CONT").unwrap();
    must_all_succeed(&t, leader, &ids).await;
    for id in &victims {
        let s = must_status(&t, leader, id).await;
        let attempts = s["attempts"].as_array().unwrap();
        // The paused attempt was superseded, and the task succeeded by the
        // attempt holding the current epoch (possibly on the resumed node).
        assert_eq!(attempts[0]["node_id"], paused_id, "{s}");
        assert!(attempts[0]["error"].as_str().unwrap_or("").contains("node lost"), "{s}");
        assert_eq!(attempts.last().unwrap()["epoch"], s["lease_epoch"], "{s}");
        assert!(attempts.len() >= 2, "{s}");
    }
    t.wait_for("the paused worker's stale reports to be refused", READY, || async {
        (metric(&t, paused, "synod_tasks_stale_reports_total").await >= 1.0).then_some(())
    })
    .await
    .unwrap();
}

/// Sends `req` as `tenant` (the X-Synod-Tenant header) and returns the
/// status and JSON body.
async fn as_tenant(tenant: &str, req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.header("x-synod-tenant", tenant).send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// The gauge `synod_tasks{tenant, state}` on node `i`, 0 when absent.
async fn tenant_gauge(t: &TestCluster, i: usize, tenant: &str, state: &str) -> f64 {
    let text = t.http.get(format!("{}/metrics", t.nodes[i].url())).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("synod_tasks{")
                && l.contains(&format!("tenant=\"{tenant}\""))
                && l.contains(&format!("state=\"{state}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_tasks_and_share_the_workers_fairly() {
    let t = must_single(&[]).await;
    let url = t.nodes[0].url();
    let post = |path: &str| t.http.post(format!("{url}{path}"));
    let get = |path: &str| t.http.get(format!("{url}{path}"));

    // A big tenant queues 4,000 tasks of 50 ms: seconds of work for the pool.
    const BIG: usize = 4000;
    for b in 0..BIG / 1000 {
        let tasks: Vec<Value> = (0..1000)
            .map(|i| json!({"type": "sleep", "payload": {"ms": 50}, "idempotency_key": format!("big-{b}-{i}")}))
            .collect();
        let (code, v) = as_tenant("big", post("/tasks/submit").json(&json!({"tasks": tasks}))).await;
        assert_eq!(code, 200, "{v}");
    }
    // A small tenant's ten tasks do not wait for the big one's backlog.
    let mut small = Vec::new();
    for i in 0..10 {
        let (code, v) =
            as_tenant("small", post("/tasks/submit").json(&json!({"type": "echo", "payload": {"i": i}}))).await;
        assert_eq!(code, 200, "{v}");
        small.push(v["id"].as_str().unwrap().to_string());
    }
    for id in &small {
        let (code, v) = as_tenant("small", get(&format!("/tasks/{id}/result?wait=30"))).await;
        assert_eq!((code, v["state"].as_str()), (200, Some("succeeded")), "{v}");
    }
    let mut unfinished = 0.0;
    for state in ["queued", "assigned", "running"] {
        unfinished += tenant_gauge(&t, 0, "big", state).await;
    }
    assert!(
        unfinished >= (BIG / 2) as f64,
        "the small tenant finished only after the big one had run most of its backlog ({unfinished} of {BIG} left)"
    );

    // Isolation: another tenant's task is as absent as one that never was.
    let id = &small[0];
    for (method, path) in [("GET", "status"), ("GET", "result"), ("POST", "cancel")] {
        let req =
            if method == "GET" { get(&format!("/tasks/{id}/{path}")) } else { post(&format!("/tasks/{id}/{path}")) };
        let (code, v) = as_tenant("big", req).await;
        assert_eq!(code, 404, "{method} {path} across tenants: {v}");
        assert_eq!(v["error"]["code"], "not_found", "{v}");
    }
    let (_, listed) = as_tenant("small", get("/tasks?limit=1000")).await;
    let listed = listed["tasks"].as_array().unwrap();
    assert_eq!(listed.len(), 10, "small lists its own ten tasks only");
    assert!(listed.iter().all(|x| x["tenant"] == "small"));
    let (_, default_list) = (200, t.get(0, "/tasks?limit=10").await.unwrap().1);
    assert!(default_list["tasks"].as_array().unwrap().is_empty(), "the default tenant has no tasks: {default_list}");
    // The same idempotency key in two tenants is two tasks.
    let (_, a) = as_tenant(
        "small",
        post("/tasks/submit").json(&json!({"type": "echo", "payload": {}, "idempotency_key": "big-0-0"})),
    )
    .await;
    assert_eq!(a["duplicate"], false, "{a}");

    // A bad tenant name is refused before anything is stored.
    let (code, v) = as_tenant("a/b", post("/tasks/submit").json(&json!({"type": "echo", "payload": {}}))).await;
    assert_eq!(code, 400, "{v}");

    // gRPC: the tenant comes from the x-synod-tenant metadata.
    use synod_api::pb::TaskId;
    use synod_api::pb::tasks_client::TasksClient;
    let mut client = TasksClient::with_interceptor(must_channel(&t, 0).await, AdminAuth::of(&t));
    let mut req = tonic::Request::new(TaskId { id: id.clone() });
    req.metadata_mut().insert("x-synod-tenant", "small".parse().unwrap());
    assert_eq!(client.status(req).await.unwrap().into_inner().state, "succeeded");
    let mut req = tonic::Request::new(TaskId { id: id.clone() });
    req.metadata_mut().insert("x-synod-tenant", "big".parse().unwrap());
    assert_eq!(client.status(req).await.unwrap_err().code(), tonic::Code::NotFound);

    // Every task ran exactly once: no run repeats while its completion is
    // still on its way through Raft.
    t.wait_for("the big backlog to drain", Duration::from_secs(120), || async {
        (tenant_gauge(&t, 0, "big", "succeeded").await == BIG as f64).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        metric(&t, 0, "synod_plugin_runs_total").await,
        (BIG + 11) as f64,
        "plugin runs: 4,000 big and 11 small tasks"
    );
    assert_eq!(metric(&t, 0, "synod_tasks_stale_reports_total").await, 0.0);
}

#[tokio::test]
async fn a_model_no_live_node_has_is_refused_and_hashing_needs_none() {
    let t = must_single(&[]).await; // no models installed
    let (code, v) = submit(&t, 0, json!({"type": "vectorize", "payload": {"text": "hello world"}})).await;
    assert_eq!(code, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("all-MiniLM-L6-v2") && message.contains("not installed"), "{v}");
    assert_eq!(t.get(0, "/tasks?limit=10").await.unwrap().1["tasks"].as_array().map(Vec::len), Some(0));
    // Control: the hashing vectorizer needs no model and runs.
    let id =
        must_submit(&t, 0, json!({"type": "vectorize", "payload": {"text": "hello world", "model": "hashing-v1"}}))
            .await;
    let r = must_result(&t, 0, &id).await;
    assert_eq!((r["state"].as_str(), r["result"]["model"].as_str()), (Some("succeeded"), Some("hashing-v1")), "{r}");
}

/// Issue 13, defect 8, end to end: with a 1 s retention a finished task is
/// deleted (404), its idempotency key is free again, the purge shows in
/// /metrics; an unfinished one stays. And a submit past the tenant's
/// storage quota gets 429 and stores nothing.
#[tokio::test]
async fn finished_tasks_are_deleted_after_retention_and_the_storage_quota_holds() {
    let args: Vec<String> = ["storage.retention.finished_tasks=1s", "security.tenant_max_storage_bytes=2KiB"]
        .iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect();
    let t = must_single(&args).await;
    let done = must_submit(&t, 0, json!({"type": "echo", "payload": {"n": 1}, "idempotency_key": "once"})).await;
    must_result(&t, 0, &done).await;
    let waiting = must_submit(
        &t,
        0,
        json!({"type": "echo", "payload": {"n": 2}, "labels": {"zone": "nowhere"}, "idempotency_key": "stuck"}),
    )
    .await;
    t.wait_for("the finished task to be purged", READY, || async {
        let (code, _) = t.get(0, &format!("/tasks/{done}/status")).await.ok()?;
        (code == 404).then_some(())
    })
    .await
    .expect("purged after retention");
    assert_eq!(must_status(&t, 0, &waiting).await["state"], "queued", "an unfinished task is kept");
    assert!(metric(&t, 0, "synod_tasks_purged_total").await >= 1.0);
    assert!(metric(&t, 0, "synod_tenant_storage_bytes").await > 0.0, "the queued task's payload is counted");
    // The key is free again: a new task, not the purged one.
    let again = must_submit(&t, 0, json!({"type": "echo", "payload": {"n": 3}, "idempotency_key": "once"})).await;
    assert_ne!(again, done);
    // 2 KiB of storage: a 3 KiB payload is refused with 429 and leaves nothing.
    let (code, v) = submit(&t, 0, json!({"type": "echo", "payload": {"x": "y".repeat(3_000)}})).await;
    assert_eq!(code, 429, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("tenant_max_storage_bytes"), "{v}");
    let listed = t.get(0, "/tasks?type=echo").await.unwrap().1;
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(2), "{listed}");
}

/// A node told to stop (SIGTERM) while it runs a task first drains: the
/// task finishes there, once, not cut off and retried elsewhere; the node
/// takes no new task meanwhile; started again, it takes tasks again.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_node_finishes_its_running_task_and_takes_tasks_again_after_restart() {
    let mut t = must_three(&fast_args()).await;
    let id = must_submit(&t, 0, json!({"type": "sleep", "payload": {"ms": 3000}})).await;
    let on = t
        .wait_for("the sleep to run", READY, || async {
            let s = must_status(&t, 0, &id).await;
            (s["state"] == "running").then(|| s["node_id"].as_u64()).flatten()
        })
        .await
        .unwrap();
    let mut index = None;
    for i in 0..3 {
        if t.node_id(i).await.unwrap() == on {
            index = Some(i);
        }
    }
    let i = index.expect("the running node is one of ours");
    let other = (i + 1) % 3;
    let status = t.stop(i).expect("SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(t.log_text(i).contains("drained for the stop"), "{}", t.log_text(i));
    let done = must_result(&t, other, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let s = must_status(&t, other, &id).await;
    assert_eq!(s["attempts"].as_array().map(Vec::len), Some(1), "finished by the stopping node, once: {s}");

    t.start(i).expect("restart");
    t.wait_ready(i, READY).await.unwrap();
    let marker = t.nodes[i].data_dir.join("drained-at-stop");
    t.wait_for("the restarted node undrained", READY, || async {
        let (_, v) = t.get(other, &format!("/cluster/nodes/{on}")).await.ok()?;
        (v["draining"] == false && !marker.exists()).then_some(())
    })
    .await
    .unwrap();
}

/// A task submitted while a worker slot is free is leased in the submit's
/// own log entry: the submit answers `assigned`, and its attempt carries
/// the entry's stamp, the same as its creation time. A task that finds
/// every slot taken is queued and placed by a later scheduler round once a
/// slot frees (the control: the test sees the other path), and one no
/// node can run is never placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_slot_is_taken_in_the_submits_own_entry_and_a_full_node_queues() {
    let args: Vec<String> = ["scaling.min_workers=2", "scaling.max_workers=2", "scaling.prefetch=1"]
        .iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect();
    let t = must_single(&args).await;
    // The scheduler's first rounds after start fill the ledger of free slots.
    let (first, answer) = t
        .wait_for("a submit placed at once", READY, || async {
            let (code, v) = submit(&t, 0, json!({"type": "echo", "payload": {"n": 0}})).await;
            (code == 200 && v["state"] == "assigned").then(|| (v["id"].as_str().unwrap().to_string(), v))
        })
        .await
        .expect("an idle node places a submit at once");
    must_result(&t, 0, &first).await;
    let s = must_status(&t, 0, &first).await;
    let attempts = s["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{s}");
    assert_eq!(attempts[0]["assigned_at_ms"], s["created_at_ms"], "placed in the submit's entry: {answer} {s}");
    assert!(metric(&t, 0, "synod_tasks_placed_at_submit_total").await >= 1.0);

    // Two sleepers take both slots.
    let sleepers: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..2 {
            ids.push(
                must_submit(
                    &t,
                    0,
                    json!({"type": "sleep", "payload": {"ms": 1_500}, "idempotency_key": format!("s{i}")}),
                )
                .await,
            );
        }
        ids
    };
    t.wait_for("both sleepers running", READY, || async {
        for id in &sleepers {
            let (_, v) = t.get(0, &format!("/tasks/{id}/status")).await.ok()?;
            if v["state"] != "running" {
                return None;
            }
        }
        Some(())
    })
    .await
    .expect("the sleepers run");
    let placed_before = metric(&t, 0, "synod_tasks_placed_at_submit_total").await;
    let (code, v) = submit(&t, 0, json!({"type": "echo", "payload": {"n": 1}})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "queued", "no slot free, yet placed: {v}");
    let late = v["id"].as_str().unwrap().to_string();
    let (code, v) = submit(&t, 0, json!({"type": "echo", "payload": {"n": 2}, "labels": {"zone": "nowhere"}})).await;
    assert_eq!((code, v["state"].as_str()), (200, Some("queued")), "{v}");
    let stuck = v["id"].as_str().unwrap().to_string();
    assert_eq!(metric(&t, 0, "synod_tasks_placed_at_submit_total").await, placed_before);

    must_result(&t, 0, &late).await;
    let s = must_status(&t, 0, &late).await;
    let assigned = s["attempts"][0]["assigned_at_ms"].as_u64().unwrap();
    let created = s["created_at_ms"].as_u64().unwrap();
    assert!(assigned > created, "placed by a later round, after a sleeper ended: {s}");
    for id in &sleepers {
        must_result(&t, 0, id).await;
    }
    // Slots are free again; the unplaceable task still waits.
    let again = must_submit(&t, 0, json!({"type": "echo", "payload": {"n": 3}})).await;
    must_result(&t, 0, &again).await;
    assert_eq!(must_status(&t, 0, &stuck).await["state"], "queued");
}

/// With `scaling.prefetch` 2 a node of one worker holds two tasks: the
/// second is leased while the first runs, waits on the node, and starts
/// as soon as the first ends. With prefetch 1 (the control) the second
/// stays queued until the first's completion is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetched_task_waits_on_its_node_and_starts_when_the_worker_frees() {
    for prefetch in [2, 1] {
        let (t, first) = one_busy_worker(prefetch).await;
        let second =
            must_submit(&t, 0, json!({"type": "sleep", "payload": {"ms": 10}, "idempotency_key": "second"})).await;
        let expected = if prefetch == 2 { "assigned" } else { "queued" };
        let s = t
            .wait_for(&format!("the second task {expected}"), READY, || async {
                let (_, v) = t.get(0, &format!("/tasks/{second}/status")).await.ok()?;
                (v["state"] == expected).then_some(v)
            })
            .await
            .expect("the second task's state");
        // Still waiting while the first runs: the node has one worker.
        let (_, f) = t.get(0, &format!("/tasks/{first}/status")).await.unwrap();
        assert_eq!(f["state"], "running", "prefetch {prefetch}: {f} / {s}");
        must_result(&t, 0, &second).await;
        let f = must_status(&t, 0, &first).await;
        let s = must_status(&t, 0, &second).await;
        let first_ended = f["attempts"][0]["ended_at_ms"].as_u64().unwrap();
        let second_assigned = s["attempts"][0]["assigned_at_ms"].as_u64().unwrap();
        if prefetch == 2 {
            assert!(second_assigned < first_ended, "leased while the first ran: {f} / {s}");
        } else {
            assert!(second_assigned >= first_ended, "leased only once the first ended: {f} / {s}");
        }
    }
}

/// A one-node cluster with one worker and `prefetch`, its worker busy
/// with a 1.5 s task (returned with the cluster) that is running.
async fn one_busy_worker(prefetch: u32) -> (TestCluster, String) {
    let args: Vec<String> = [
        "scaling.min_workers=1".to_string(),
        "scaling.max_workers=1".to_string(),
        format!("scaling.prefetch={prefetch}"),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect();
    let t = must_single(&args).await;
    let first =
        must_submit(&t, 0, json!({"type": "sleep", "payload": {"ms": 1_500}, "idempotency_key": "first"})).await;
    t.wait_for("the first task running", READY, || async {
        let (_, v) = t.get(0, &format!("/tasks/{first}/status")).await.ok()?;
        (v["state"] == "running").then_some(())
    })
    .await
    .expect("the first task runs");
    (t, first)
}

/// Prefetched leases waiting on a node start highest priority first: with
/// one worker busy, a priority-0 task and then a priority-9 one are both
/// leased to the node; when the worker frees, the priority-9 one runs
/// first. Control: at equal priorities the one leased first runs first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_leases_start_in_priority_order() {
    for later_priority in [9, 0] {
        let (t, first) = one_busy_worker(3).await;
        let mut ids = Vec::new();
        for (key, priority) in [("earlier", 0), ("later", later_priority)] {
            let body = json!({"type": "sleep", "payload": {"ms": 50}, "priority": priority, "idempotency_key": key});
            let id = must_submit(&t, 0, body).await;
            t.wait_for(&format!("the {key} task leased to the node"), READY, || async {
                let (_, v) = t.get(0, &format!("/tasks/{id}/status")).await.ok()?;
                (v["state"] == "assigned").then_some(())
            })
            .await
            .expect("leased while the first runs");
            ids.push(id);
        }
        let (_, f) = t.get(0, &format!("/tasks/{first}/status")).await.unwrap();
        assert_eq!(f["state"], "running", "both leased while the first still runs: {f}");
        for id in &ids {
            must_result(&t, 0, id).await;
        }
        let earlier = must_status(&t, 0, &ids[0]).await;
        let later = must_status(&t, 0, &ids[1]).await;
        let at = |v: &Value, field: &str| v["attempts"][0][field].as_u64().unwrap();
        if later_priority == 9 {
            assert!(
                at(&later, "ended_at_ms") <= at(&earlier, "started_at_ms"),
                "the priority-9 task ran first: {later} / {earlier}"
            );
        } else {
            assert!(
                at(&earlier, "ended_at_ms") <= at(&later, "started_at_ms"),
                "equal priorities: the one leased first ran first: {earlier} / {later}"
            );
        }
    }
}
