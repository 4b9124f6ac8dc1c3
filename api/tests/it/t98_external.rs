//! External AI end to end, no mock on the happy path: node B serves
//! OpenAI's embeddings API with its real model; node A, a cluster of its
//! own, has B configured as an `openai` provider and calls it through
//! `/external/ai`. Then B is killed (A's breaker opens and A fails fast
//! with 503 and Retry-After) and started again (the breaker closes).

use std::time::Instant;

use base64::Engine;
use serde_json::{Value, json};

use crate::util::*;

const MODEL: &str = "all-MiniLM-L6-v2";
const TEXTS: [&str; 2] = ["The weather is lovely today.", "He drove to the stadium."];

/// A POST with `bearer` as the only credential (an OpenAI client's way).
async fn post_as(t: &TestCluster, i: usize, path: &str, bearer: &str, body: Value) -> (u16, Value, Option<String>) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", t.nodes[i].url()))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (code, r.json().await.unwrap_or(Value::Null), retry)
}

fn vectors(embeddings: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(embeddings.clone()).unwrap()
}

async fn providers(t: &TestCluster, i: usize) -> Value {
    let (code, v) = t.get(i, "/external/providers").await.unwrap();
    assert_eq!(code, 200, "{v}");
    v["providers"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_embeds_through_another_synod_as_an_openai_provider_behind_a_breaker() {
    // Node B (index 0): the model, and an API key an OpenAI client would use.
    let mut t = must_single(&model_args()).await;
    let (code, key) =
        call(&t, 0, "POST", "/apikeys", &Auth::Bearer(&t.admin_token), Some(json!({"name": "client"}))).await;
    assert_eq!(code, 200, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();

    // B speaks OpenAI's wire format, with its real model.
    let body = json!({"model": MODEL, "input": TEXTS});
    let (code, direct, _) = post_as(&t, 0, "/v1/embeddings", &key, body.clone()).await;
    assert_eq!(code, 200, "{direct}");
    assert_eq!(direct["object"], "list");
    assert!(direct["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{direct}");
    let floats: Vec<Vec<f32>> = direct["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect();
    for (v, text) in floats.iter().zip(TEXTS) {
        assert_eq!(v.len(), 384);
        assert!(cosine(v, &reference_vector(text)) >= 0.9999, "{text:?}");
    }
    // base64, as OpenAI's Python client asks by default: the same floats.
    let mut b64 = body.clone();
    b64["encoding_format"] = json!("base64");
    let (code, packed, _) = post_as(&t, 0, "/v1/embeddings", &key, b64).await;
    assert_eq!(code, 200, "{packed}");
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(packed["data"][1]["embedding"].as_str().unwrap()).unwrap();
    let unpacked: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(unpacked, floats[1]);
    // Clear errors: an unknown model, token arrays, a wrong dimension.
    for (bad, want) in [
        (json!({"model": "gpt-x", "input": "a"}), 404),
        (json!({"model": MODEL, "input": [[1, 2]]}), 400),
        (json!({"model": MODEL, "input": "a", "dimensions": 10}), 400),
        (json!({"model": MODEL, "input": "a", "surprise": 1}), 400),
    ] {
        let (code, v, _) = post_as(&t, 0, "/v1/embeddings", &key, bad.clone()).await;
        assert_eq!(code, want, "{bad}: {v}");
    }

    // Node A (index 1), its own cluster, with B as provider "synod-b".
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("b.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let config = dir.path().join("a.yaml");
    std::fs::write(
        &config,
        format!(
            "external:\n  providers:\n    synod-b:\n      kind: openai\n      base_url: http://{}/v1\n      \
             api_key_file: {}\n      timeout: 5s\n      max_retries: 0\n      breaker_failure_threshold: 3\n      \
             breaker_cooldown: 2s\n",
            t.nodes[0].http,
            key_file.display()
        ),
    )
    .unwrap();
    let a = t.add_node(None, &["--config".to_string(), config.display().to_string()]).unwrap();
    t.wait_ready(a, READY).await.unwrap();
    let p = providers(&t, a).await;
    assert_eq!((p["name"].as_str(), p["breaker"]["state"].as_str()), (Some("synod-b"), Some("closed")), "{p}");
    assert_eq!(p["has_api_key"], true);
    assert!(!p.to_string().contains(&key), "the key is never shown: {p}");

    let ai = json!({"provider": "synod-b", "operation": "embeddings", "model": MODEL, "input": TEXTS});
    let admin_token = t.admin_token.clone();
    let admin = Auth::Bearer(&admin_token);
    let (code, v) = call(&t, a, "POST", "/external/ai", &admin, Some(ai.clone())).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!((v["attempts"].as_u64(), v["output"]["dimension"].as_u64()), (Some(1), Some(384)), "{v}");
    assert_eq!(vectors(&v["output"]["embeddings"]), floats, "the same vectors as asking B directly");
    assert_eq!(v["usage"]["prompt_tokens"], direct["usage"]["prompt_tokens"]);

    // The same call as a durable task.
    let task = json!({"type": "external.ai", "payload": {"provider": "synod-b", "operation": "embeddings",
        "model": MODEL, "input": TEXTS}});
    let (code, v) = call(&t, a, "POST", "/tasks/submit", &admin, Some(task)).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (code, r) = t.get(a, &format!("/tasks/{id}/result?wait=30")).await.unwrap();
    assert_eq!((code, r["state"].as_str()), (200, Some("succeeded")), "{r}");
    assert_eq!(vectors(&r["result"]["output"]["embeddings"]), floats);
    // A payload naming no configured provider is refused at submit.
    let bad = json!({"type": "external.ai", "payload": {"provider": "nope", "operation": "embeddings",
        "model": MODEL, "input": "a"}});
    assert_eq!(call(&t, a, "POST", "/tasks/submit", &admin, Some(bad)).await.0, 400);

    // B goes away: calls fail (503), three failures open A's breaker, and
    // from then on A answers 503 with Retry-After at once.
    t.kill(0);
    let mut failures = 0;
    let deadline = Instant::now() + READY;
    let (open, retry_after) = loop {
        let (code, v, retry) = post_as(&t, a, "/external/ai", &t.admin_token, ai.clone()).await;
        assert_eq!(code, 503, "{v}");
        if v["error"]["message"].as_str().unwrap().contains("circuit breaker is open") {
            break (v, retry);
        }
        failures += 1;
        assert!(Instant::now() < deadline, "the breaker never opened");
    };
    assert_eq!(failures, 3, "breaker_failure_threshold: {open}");
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let p = providers(&t, a).await;
    assert_eq!(p["breaker"]["state"], "open", "{p}");
    assert_eq!(p["breaker"]["opened"], 1, "{p}");
    let (_, metrics) = {
        let r = t.http.get(format!("{}/metrics", t.nodes[a].url())).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert!(metrics.contains("synod_breaker_state{provider=\"synod-b\"} 1"), "{metrics}");
    // A reader may not spend a provider's budget.
    let (code, _) = call(&t, a, "POST", "/external/ai", &Auth::None, Some(ai.clone())).await;
    assert_eq!(code, 401);

    // B is back: after the cooldown a probe goes through and closes it.
    t.start(0).unwrap();
    t.wait_ready(0, READY).await.unwrap();
    let v = t
        .wait_for("A to reach B again", READY, || async {
            let (code, v) = call(&t, a, "POST", "/external/ai", &admin, Some(ai.clone())).await;
            (code == 200).then_some(v)
        })
        .await
        .unwrap();
    assert_eq!(vectors(&v["output"]["embeddings"]), floats);
    assert_eq!(providers(&t, a).await["breaker"]["state"], "closed");
}

/// A tenant's daily budget of a provider is counted by the cluster: calls
/// through either node of A's two-node cluster count, and once spent both
/// answer 429 with Retry-After until the next day, without calling out.
/// Control: another tenant still calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_daily_budget_is_counted_by_the_cluster() {
    let mut t = must_single(&model_args()).await;
    let (code, key) =
        call(&t, 0, "POST", "/apikeys", &Auth::Bearer(&t.admin_token), Some(json!({"name": "client"}))).await;
    assert_eq!(code, 200, "{key}");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("b.key");
    std::fs::write(&key_file, format!("{}\n", key["key"].as_str().unwrap())).unwrap();
    let config = dir.path().join("a.yaml");
    std::fs::write(
        &config,
        format!(
            "external:\n  providers:\n    synod-b:\n      kind: openai\n      base_url: http://{}/v1\n      \
             api_key_file: {}\n      tenant_daily_calls: 2\n",
            t.nodes[0].http,
            key_file.display()
        ),
    )
    .unwrap();
    let args = ["--config".to_string(), config.display().to_string()];
    let a1 = t.add_node(None, &args).unwrap();
    t.wait_ready(a1, READY).await.unwrap();
    let a2 = t.add_node(Some(a1), &args).unwrap();
    t.wait_voters(a1, 2, READY).await.unwrap();
    t.wait_ready(a2, READY).await.unwrap();

    let ai = json!({"provider": "synod-b", "operation": "embeddings", "model": MODEL, "input": "one"});
    let as_tenant = |i: usize, tenant: &'static str| {
        let (url, http, ai) = (t.nodes[i].url(), t.http.clone(), ai.clone());
        async move {
            let r = http.post(format!("{url}/external/ai")).header("x-synod-tenant", tenant).json(&ai).send().await;
            let r = r.unwrap();
            let code = r.status().as_u16();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (code, retry, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(as_tenant(a1, "acme").await.0, 200);
    assert_eq!(as_tenant(a2, "acme").await.0, 200);
    t.wait_for("node a1 to count both calls", READY, || async {
        let r = t.http.get(format!("{}/external/providers", t.nodes[a1].url())).header("x-synod-tenant", "acme");
        let v: Value = r.send().await.ok()?.json().await.ok()?;
        (v["providers"][0]["usage"]["calls"] == 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let served = metric(&t, 0, "synod_http_requests_total").await;
    for i in [a1, a2] {
        let (code, retry, v) = as_tenant(i, "acme").await;
        assert_eq!(code, 429, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("daily budget"), "{v}");
        assert!((1..=86_400).contains(&retry.expect("Retry-After")), "{retry:?}");
    }
    assert_eq!(metric(&t, 0, "synod_http_requests_total").await, served + 1.0, "only the metric read reached B");
    assert_eq!(as_tenant(a1, "other").await.0, 200, "another tenant has its own budget");
}
