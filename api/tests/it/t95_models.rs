//! The real embedding model on real nodes: model tasks placed only where
//! the model is installed, a text collection embedded with all-MiniLM-L6-v2,
//! Hugging Face tokens and batched `texts` through the task API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

async fn post(t: &TestCluster, i: usize, path: &str, body: Value) -> (u16, Value) {
    let r = t.http.post(format!("{}{path}", t.nodes[i].url())).json(&body).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn must_run(t: &TestCluster, via: usize, task: Value) -> Value {
    let (code, v) = post(t, via, "/tasks/submit", task.clone()).await;
    assert_eq!(code, 200, "{task}: {v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (code, r) = t.get(via, &format!("/tasks/{id}/result?wait=60")).await.unwrap();
    assert_eq!((code, r["state"].as_str()), (200, Some("succeeded")), "{task}: {r}");
    let (_, status) = t.get(via, &format!("/tasks/{id}/status")).await.unwrap();
    json!({"result": r["result"], "status": status})
}

async fn node_id(t: &TestCluster, i: usize) -> u64 {
    t.get(i, "/health").await.unwrap().1["node_id"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_tasks_run_only_on_the_node_that_has_the_model() {
    // Nodes 0 and 1 have no models; node 2 has all-MiniLM-L6-v2.
    let mut t = must_three(&fast_args()).await;
    t.kill(2);
    let mut args = fast_args();
    args.extend(model_args());
    t.nodes[2].args.extend(args);
    t.start(2).unwrap();
    t.wait_ready(2, READY).await.unwrap();
    let with_model = node_id(&t, 2).await;

    // Its heartbeat advertises the model; node 0 sees it in the registry.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, reg) = t.get(0, "/agents/registry").await.unwrap();
        let offering: Vec<u64> = reg["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["capabilities"].as_array().unwrap().contains(&json!("model:all-MiniLM-L6-v2")))
            .map(|n| n["id"].as_u64().unwrap())
            .collect();
        if offering == [with_model] {
            break;
        }
        assert!(Instant::now() < deadline, "the registry never showed the model on node {with_model} alone: {reg}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // GET /models through a node without it names the node that has it; the
    // node that has it shows its install too. gRPC says the same.
    let (code, v) = t.get(0, "/models").await.unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["models"], json!([{"name": "all-MiniLM-L6-v2", "nodes_ready": [with_model]}]));
    let (_, v) = t.get(2, "/models").await.unwrap();
    assert_eq!(v["models"][0]["here"]["dimension"], 384, "{v}");
    let mut grpc =
        synod_api::pb::plugins_client::PluginsClient::with_interceptor(must_channel(&t, 1).await, AdminAuth::of(&t));
    let models = grpc.list_models(synod_api::pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(models.len(), 1);
    assert_eq!((models[0].name.as_str(), models[0].nodes_ready.as_slice()), ("all-MiniLM-L6-v2", &[with_model][..]));
    assert!(models[0].here_json.is_empty(), "node 1 has no install");

    // Submitted through a node without the model, run on the one with it.
    for i in 0..6 {
        let text = format!("sentence number {i}");
        let out = must_run(&t, i % 2, json!({"type": "vectorize", "payload": {"text": text}})).await;
        assert_eq!(out["result"]["model"], "all-MiniLM-L6-v2");
        let ran_on: Vec<u64> =
            out["status"]["attempts"].as_array().unwrap().iter().map(|a| a["node_id"].as_u64().unwrap()).collect();
        assert_eq!(ran_on, [with_model], "{out}");
    }
    // Control: a hashing-v1 task needs no model; it may run anywhere.
    must_run(&t, 0, json!({"type": "vectorize", "payload": {"text": "h", "model": "hashing-v1"}})).await;

    // With the model's node gone, a new model task is refused, not queued.
    t.kill(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = post(&t, 0, "/tasks/submit", json!({"type": "vectorize", "payload": {"text": "x"}})).await;
        if code == 400 {
            assert!(v["error"]["message"].as_str().unwrap().contains("not installed on any live node"), "{v}");
            break;
        }
        // Accepted while node 2 was not yet declared dead: it waits in the queue.
        assert_eq!(code, 200, "{v}");
        assert!(Instant::now() < deadline, "a model task was still accepted 30 s after its only node died");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_minilm_text_collection_finds_the_cat_sentence() {
    let t = must_single(&model_args()).await;
    let (code, v) = post(
        &t,
        0,
        "/collections",
        json!({"name": "sentences", "dimension": 384, "vectorizer": "all-MiniLM-L6-v2", "metric": "cosine"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let texts = [
        ("cat", "A cat is sleeping on the mat."),
        ("stocks", "The stock market fell sharply today."),
        ("raft", "Raft elects a leader that replicates the log."),
        ("guitar", "A man is playing the guitar."),
        ("pasta", "She cooked pasta with tomato sauce."),
    ];
    let points: Vec<Value> = texts.iter().map(|(id, s)| json!({"id": id, "text": s})).collect();
    let (code, v) = post(&t, 0, "/collections/sentences/points", json!({"points": points})).await;
    assert_eq!(code, 200, "{v}");
    for (query, want) in [("a cat on a mat", "cat"), ("shares dropped on wall street", "stocks"), ("consensus", "raft")]
    {
        let (code, v) =
            post(&t, 0, "/vector/search", json!({"collection": "sentences", "text": query, "top_k": 2})).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["results"][0]["id"], want, "{query:?}: {v}");
    }
    let (_, p) = t.get(0, "/collections/sentences/points/cat").await.unwrap();
    let stored: Vec<f32> = serde_json::from_value(p["vector"].clone()).unwrap();
    assert_eq!(stored.len(), 384);

    // A model with another dimension, and a model nobody has, are refused.
    let (code, v) =
        post(&t, 0, "/collections", json!({"name": "bad", "dimension": 64, "vectorizer": "all-MiniLM-L6-v2"})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = post(&t, 0, "/collections", json!({"name": "bad", "dimension": 64, "vectorizer": "nope"})).await;
    assert_eq!(code, 400, "{v}");
}

#[tokio::test]
async fn tokens_and_batches_through_the_task_api() {
    let t = must_single(&model_args()).await;
    let fixture: Value =
        serde_json::from_str(include_str!("../../../plugins/tests/fixtures/minilm-tokens.json")).unwrap();
    let case = &fixture["cases"][0];
    let out = must_run(
        &t,
        0,
        json!({"type": "tokenize", "payload": {"text": case["text"], "tokenizer": "all-MiniLM-L6-v2"}}),
    )
    .await;
    assert_eq!(out["result"]["ids"], case["ids"], "{out}");
    assert_eq!(out["result"]["tokens"], case["tokens"], "{out}");
    assert_eq!(out["result"]["offsets"], case["offsets"], "{out}");

    let texts = ["hello world", "What is the capital of France?"];
    let out = must_run(&t, 0, json!({"type": "vectorize", "payload": {"texts": texts}})).await;
    assert_eq!(out["result"]["count"], 2, "{out}");
    for (i, text) in texts.iter().enumerate() {
        let v: Vec<f32> = serde_json::from_value(out["result"]["vectors"][i].clone()).unwrap();
        assert!(cosine(&v, &reference_vector(text)) >= 0.9999, "{text:?}");
    }
}
