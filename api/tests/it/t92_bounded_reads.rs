//! A reader cannot exhaust a node: searches are capped (hits, filter size,
//! answer size, metadata size) and computed off the async threads under a
//! deadline, so writes on the same node keep committing while the worst a
//! reader may ask runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::util::*;

async fn post(t: &TestCluster, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", t.nodes[0].url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn vector(i: u64, dim: usize) -> Vec<f32> {
    // A cheap deterministic spread over the sphere's neighbourhood.
    (0..dim).map(|d| (((i * 31 + d as u64 * 17) % 101) as f32 / 101.0) - 0.5).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_readers_worst_case_searches_are_bounded_and_writes_keep_committing() {
    let args: Vec<String> =
        ["vector_db.search_timeout=5s"].iter().flat_map(|s| ["--set".to_string(), s.to_string()]).collect();
    let t = must_single(&args).await;
    let admin = t.admin_token.clone();
    let dim = 64;
    let (code, v) = post(&t, &admin, "/collections", &json!({"name": "big", "dimension": dim})).await;
    assert_eq!(code, 200, "{v}");
    for batch in 0..20u64 {
        let points: Vec<Value> = (batch * 1000..(batch + 1) * 1000)
            .map(|i| json!({"id": i, "vector": vector(i, dim), "metadata": {"g": i % 100}}))
            .collect();
        let (code, v) = post(&t, &admin, "/collections/big/points", &json!({"points": points})).await;
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = post(
        &t,
        &admin,
        "/users",
        &json!({"username": "rob", "password": "password-1", "tenant": "default", "role": "reader"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (_, v) = post(&t, "", "/login", &json!({"username": "rob", "password": "password-1"})).await;
    let reader = v["access_token"].as_str().unwrap().to_string();

    // Refused before any work: too many hits, too large a filter, too
    // large a metadata object.
    let query = |top_k: u64, filter: Value| json!({"vector": vector(7, dim), "top_k": top_k, "filter": filter});
    let many: Vec<Value> = (0..1000).map(|_| query(1000, json!({"must": []}))).collect();
    let (code, v) = post(&t, &reader, "/vector/search/batch", &json!({"collection": "big", "queries": many})).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_search_hits"), "{v}");
    let conditions: Vec<Value> = (0..17).map(|i| json!({"key": format!("k{i}"), "match": 1})).collect();
    let body = json!({"collection": "big", "vector": vector(1, dim), "filter": {"must": conditions}});
    let (code, v) = post(&t, &reader, "/vector/search", &body).await;
    assert_eq!(code, 400, "{v}");
    let values: Vec<u64> = (0..1025).collect();
    let body = json!({"collection": "big", "vector": vector(1, dim), "filter": {"must": [{"key": "g", "in": values}]}});
    let (code, v) = post(&t, &reader, "/vector/search", &body).await;
    assert_eq!(code, 400, "{v}");
    let fat = json!({"points": [{"id": "fat", "vector": vector(1, dim), "metadata": {"x": "y".repeat(70_000)}}]});
    let (code, v) = post(&t, &admin, "/collections/big/points", &fat).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_metadata_size"), "{v}");

    // The worst allowed: batches of 1000 selective filtered queries with a
    // large ef, six at once, while an admin keeps submitting tasks on the
    // same node.
    let searching = Arc::new(AtomicBool::new(true));
    let writer = {
        let searching = searching.clone();
        let url = format!("{}/tasks/submit", t.nodes[0].url());
        let admin = admin.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut during = Vec::new();
            while searching.load(Ordering::Acquire) {
                let started = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&admin)
                    .json(&json!({"type": "echo", "payload": {}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
                if searching.load(Ordering::Acquire) {
                    during.push(started.elapsed());
                }
            }
            during
        })
    };
    let worst: Vec<Value> =
        (0..1000u64).map(|i| json!({"vector": vector(i, dim), "top_k": 10, "ef": 2000, "filter": {"must": [{"key": "g", "match": 7}]}})).collect();
    let body = json!({"collection": "big", "queries": worst});
    let started = Instant::now();
    let searches: Vec<_> = (0..6)
        .map(|_| {
            let url = format!("{}/vector/search/batch", t.nodes[0].url());
            let (reader, body) = (reader.clone(), body.clone());
            tokio::spawn(async move {
                let r = reqwest::Client::new().post(url).bearer_auth(reader).json(&body).send().await.unwrap();
                let code = r.status().as_u16();
                (code, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut codes = Vec::new();
    for s in searches {
        let (code, v) = s.await.unwrap();
        assert!(code == 200 || code == 503, "a search answered {code}: {v}");
        if code == 503 {
            assert!(v["error"]["message"].as_str().unwrap().contains("search_timeout"), "{v}");
        }
        codes.push(code);
    }
    let searched = started.elapsed();
    searching.store(false, Ordering::Release);
    let mut during = writer.await.unwrap();
    during.sort();
    let p50 = during.get(during.len() / 2).copied().unwrap_or_default();
    let max = during.last().copied().unwrap_or_default();
    eprintln!(
        "searches {codes:?} over {searched:?}; {} writes committed meanwhile, latency p50 {p50:?} max {max:?}",
        during.len()
    );
    // Before, searches ran on the async threads: six of them held both of
    // this machine's cores' worth of them, and writes waited them out.
    assert!(during.len() >= 10, "only {} writes committed while the searches ran ({searched:?})", during.len());
}

/// `/metrics` is public, but names tenants only to an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_scrape_names_no_tenant_and_a_task_list_leaves_payloads_out() {
    let t = must_single(&[]).await;
    let admin = t.admin_token.clone();
    let (code, v) = post(&t, &admin, "/tasks/submit", &json!({"type": "echo", "payload": {"secret": "s3"}})).await;
    assert_eq!(code, 200, "{v}");
    let url = format!("{}/metrics", t.nodes[0].url());
    let as_admin = t.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(as_admin.contains("tenant=\"default\""), "control: an admin sees the tenant series");
    let anonymous = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(!anonymous.contains("tenant="), "an anonymous scrape names tenants");
    assert!(anonymous.contains("synod_http_requests"), "an anonymous scrape still has the rest");

    let list: Value = t.http.get(format!("{}/tasks", t.nodes[0].url())).send().await.unwrap().json().await.unwrap();
    assert!(list["tasks"][0].get("payload").is_none(), "{list}");
    let list: Value =
        t.http.get(format!("{}/tasks?payloads=true", t.nodes[0].url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["tasks"][0]["payload"]["secret"], "s3", "{list}");
}
