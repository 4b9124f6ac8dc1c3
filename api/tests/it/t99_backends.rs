//! One collection suite, run on every backend a collection can have:
//! built-in (HNSW and flat), Milvus on a real server (PyPI's milvus-lite,
//! which `make test` installs), and Qdrant and Pinecone through contract
//! fakes of their wire formats (`fakes.rs`). Each run: a three-node cluster, the definition created through
//! one node and used through the others, points, scores, filters, text
//! through the collection's vectorizer, get, replace, delete, bad input,
//! tenant isolation, the gRPC twin, and a delete that empties the backend.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::fakes;
use crate::util::*;

async fn post(t: &TestCluster, i: usize, path: &str, body: Value) -> (u16, Value) {
    let r = t.http.post(format!("{}{path}", t.nodes[i].url())).json(&body).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn send(t: &TestCluster, i: usize, method: &str, path: &str, tenant: Option<&str>) -> (u16, Value) {
    let mut rb = t.http.request(method.parse().unwrap(), format!("{}{path}", t.nodes[i].url()));
    if let Some(tenant) = tenant {
        rb = rb.header("x-synod-tenant", tenant);
    }
    let r = rb.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<Value> {
    v["results"].as_array().unwrap_or_else(|| panic!("no results: {v}")).iter().map(|h| h["id"].clone()).collect()
}

async fn search(t: &TestCluster, i: usize, body: Value) -> Value {
    let (code, v) = post(t, i, "/vector/search", body.clone()).await;
    assert_eq!(code, 200, "{body}: {v}");
    v
}

async fn points(t: &TestCluster, i: usize) -> u64 {
    let (code, v) = send(t, i, "GET", "/collections/docs", None).await;
    assert_eq!(code, 200, "{v}");
    v["points"].as_u64().unwrap()
}

/// A cluster whose nodes have `config` (YAML) as their configuration file.
async fn cluster_with(config: &str) -> (TestCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.yaml");
    std::fs::write(&path, config).unwrap();
    let t = must_three(&["--config".to_string(), path.display().to_string()]).await;
    (t, dir)
}

/// The suite. `create` is the body of `POST /collections` without name,
/// dimension, metric and vectorizer.
async fn collection_suite(t: &TestCluster, create: Value) {
    let mut body = json!({"name": "docs", "dimension": 2, "metric": "l2", "vectorizer": "hashing-v1"});
    body.as_object_mut().unwrap().extend(create.as_object().unwrap().clone());
    let (code, v) = post(t, 0, "/collections", body.clone()).await;
    assert_eq!(code, 200, "{body}: {v}");
    assert_eq!(v["points"], 0, "{v}");

    // Written through node 1 (which may not have applied the definition
    // yet: it waits), searched through node 2.
    let batch: Vec<Value> = (0..100u64)
        .map(|i| json!({"id": i, "vector": [i as f32, 0.0], "metadata": {"even": i % 2 == 0, "n": i, "tag": format!("t{}", i % 3)}}))
        .collect();
    let (code, v) = post(t, 1, "/collections/docs/points", json!({ "points": batch })).await;
    assert_eq!((code, v["points"].as_u64()), (200, Some(100)), "{v}");

    let near = |x: f32, k: usize, filter: Option<Value>| {
        let mut q = json!({"collection": "docs", "vector": [x, 0.0], "top_k": k, "consistency": "linearizable"});
        if let Some(f) = filter {
            q["filter"] = f;
        }
        q
    };
    let v = search(t, 2, near(41.2, 3, None)).await;
    assert_eq!(ids(&v), [json!(41), json!(42), json!(40)], "{v}");
    // Scores as built-in collections give them: the negated distance.
    let scores: Vec<f64> = v["results"].as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
    for (got, want) in scores.iter().zip([-0.2, -0.8, -1.2]) {
        assert!((got - want).abs() < 1e-3, "scores {scores:?}");
    }
    assert_eq!(v["results"][0]["metadata"], json!({"even": false, "n": 41, "tag": "t2"}), "{v}");

    // Filters: match, in, range.
    let even = json!({"must": [{"key": "even", "match": true}]});
    assert_eq!(ids(&search(t, 2, near(41.2, 3, Some(even))).await), [json!(42), json!(40), json!(44)]);
    let tag = json!({"must": [{"key": "tag", "in": ["t0"]}]});
    assert_eq!(ids(&search(t, 1, near(41.2, 3, Some(tag))).await), [json!(42), json!(39), json!(45)]);
    let range = json!({"must": [{"key": "n", "range": {"gte": 10, "lte": 12}}]});
    assert_eq!(ids(&search(t, 0, near(0.0, 10, Some(range))).await), [json!(10), json!(11), json!(12)]);

    // Get by id, numeric and string; text through the vectorizer.
    let (code, v) = send(t, 2, "GET", "/collections/docs/points/41", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!((v["id"].clone(), v["vector"].clone()), (json!(41), json!([41.0, 0.0])), "{v}");
    let texts = json!({"points": [
        {"id": "doc-a", "text": "the cat sat on the mat", "metadata": {"kind": "pet"}},
        {"id": "doc-b", "text": "stock markets fell sharply"},
    ]});
    let (code, v) = post(t, 0, "/collections/docs/points", texts).await;
    assert_eq!((code, v["points"].as_u64()), (200, Some(102)), "{v}");
    let by_text = json!({"collection": "docs", "text": "the cat sat on the mat", "top_k": 1});
    let v = search(t, 1, by_text).await;
    assert_eq!((ids(&v), v["results"][0]["metadata"].clone()), (vec![json!("doc-a")], json!({"kind": "pet"})));
    let (code, v) = send(t, 2, "GET", "/collections/docs/points/doc-a", None).await;
    assert_eq!((code, v["text"].as_str()), (200, Some("the cat sat on the mat")), "{v}");
    let (code, _) = send(t, 2, "GET", "/collections/docs/points/doc-z", None).await;
    assert_eq!(code, 404);

    // Delete and replace.
    let (code, v) = t
        .http
        .delete(format!("{}/collections/docs/points", t.nodes[1].url()))
        .json(&json!({"ids": [41, "no-such-point"]}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    let v: Value = v.json().await.unwrap();
    assert_eq!((code, v["points"].as_u64()), (200, Some(101)), "{v}");
    assert_eq!(ids(&search(t, 2, near(41.2, 1, None)).await), [json!(42)]);
    let moved = json!({"points": [{"id": 40, "vector": [1000.0, 0.0]}]});
    let (code, v) = post(t, 0, "/collections/docs/points", moved).await;
    assert_eq!((code, v["points"].as_u64()), (200, Some(101)), "a replacement adds nothing: {v}");
    assert_eq!(ids(&search(t, 2, near(40.0, 1, None)).await), [json!(39)]);

    // Bad input changes nothing.
    let bad = json!({"points": [{"id": 5, "vector": [1.0, 0.0]}, {"id": 6, "vector": [1.0, 2.0, 3.0]}]});
    let (code, v) = post(t, 0, "/collections/docs/points", bad).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(points(t, 1).await, 101);
    assert_eq!(ids(&search(t, 0, near(5.0, 1, None)).await), [json!(5)]);

    // Another tenant does not see it.
    let (code, _) = send(t, 1, "GET", "/collections/docs", Some("beta")).await;
    assert_eq!(code, 404);
    let (code, _) = send(t, 1, "GET", "/collections/docs/points/5", Some("beta")).await;
    assert_eq!(code, 404);

    // The gRPC twin answers the same.
    let mut grpc =
        synod_api::pb::vectors_client::VectorsClient::with_interceptor(must_channel(t, 1).await, AdminAuth::of(t));
    let reply = grpc
        .search(synod_api::pb::SearchRequest {
            collection: "docs".into(),
            vector: vec![41.2, 0.0],
            text: String::new(),
            top_k: 2,
            filter_json: String::new(),
            consistency: String::new(),
            ef: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<String> = reply.results.iter().map(|h| h.id.as_ref().unwrap().id.clone()).collect();
    assert_eq!(got, ["42", "43"]);

    let (code, v) = send(t, 2, "DELETE", "/collections/docs", None).await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = send(t, 0, "GET", "/collections/docs", None).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_suite_passes_on_builtin_hnsw_and_flat_collections() {
    let t = must_three(&[]).await;
    collection_suite(&t, json!({})).await;
    collection_suite(&t, json!({"index": "flat"})).await;
    let (_, v) = send(&t, 0, "GET", "/collections", None).await;
    assert_eq!(v["collections"].as_array().map(Vec::len), Some(0), "{v}");
}

fn provider_config(name: &str, kind: &str, url: &str, key_file: &std::path::Path) -> String {
    format!(
        "    {name}:\n      kind: {kind}\n      base_url: {url}\n      api_key_file: {}\n      timeout: 5s\n      \
         max_retries: 1\n      retry_backoff: 50ms\n      breaker_failure_threshold: 3\n      breaker_cooldown: 1s\n",
        key_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_suite_passes_on_qdrant_and_its_breaker_fails_fast() {
    let qdrant = fakes::qdrant(Some("qd-secret")).await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("qd.key");
    std::fs::write(&key, "qd-secret\n").unwrap();
    let config = format!("external:\n  providers:\n{}", provider_config("qd", "qdrant", &qdrant.url(), &key));
    let (t, _dir) = cluster_with(&config).await;

    // By kind and URL, as a user who knows the database would write it.
    collection_suite(&t, json!({"backend": {"kind": "qdrant", "url": qdrant.url()}})).await;
    assert!(fakes::qdrant_collections(&qdrant).is_empty(), "the backend's collection is dropped");

    // Synod calls only what its configuration names.
    for (backend, why) in [
        (json!({"kind": "qdrant", "url": "http://169.254.169.254"}), "no provider of kind qdrant"),
        (json!({"provider": "qd", "api_key_env": "HOME"}), "not from HOME"),
        (json!({"provider": "nope"}), "no provider named"),
    ] {
        let body = json!({"name": "x", "dimension": 2, "backend": backend});
        let (code, v) = post(&t, 0, "/collections", body).await;
        assert_eq!(code, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{v}");
    }
    for both in [
        json!({"name": "x", "dimension": 2, "index": "flat", "backend": {"provider": "qd"}}),
        json!({"name": "x", "dimension": 2, "hnsw": {"ef": 10}, "backend": {"provider": "qd"}}),
    ] {
        assert_eq!(post(&t, 0, "/collections", both).await.0, 400);
    }
    assert!(fakes::qdrant_collections(&qdrant).is_empty(), "refused creations leave nothing behind");

    // The breaker: failures open it, then calls fail at once without
    // reaching the database; healed, a probe closes it.
    let (code, v) =
        post(&t, 0, "/collections", json!({"name": "b", "dimension": 2, "backend": {"provider": "qd"}})).await;
    assert_eq!(code, 200, "{v}");
    let q = json!({"collection": "b", "vector": [1.0, 0.0]});
    assert_eq!(post(&t, 0, "/vector/search", q.clone()).await.0, 200);
    qdrant.failing.store(true, Ordering::Relaxed);
    let mut last = (0, Value::Null);
    for _ in 0..3 {
        last = post(&t, 0, "/vector/search", q.clone()).await;
        assert_eq!(last.0, 503, "{}", last.1);
    }
    let sent = qdrant.requests.load(Ordering::Relaxed);
    let (code, v) = post(&t, 0, "/vector/search", q.clone()).await;
    assert_eq!(code, 503, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("circuit breaker is open"), "{v} (before: {})", last.1);
    assert_eq!(qdrant.requests.load(Ordering::Relaxed), sent, "an open breaker sends nothing");
    let (_, p) = send(&t, 0, "GET", "/external/providers", None).await;
    assert_eq!(
        (p["providers"][0]["kind"].as_str(), p["providers"][0]["breaker"]["state"].as_str()),
        (Some("qdrant"), Some("open"))
    );
    let (_, h) = send(&t, 0, "GET", "/health", None).await;
    assert_eq!(
        (h["external"][0]["provider"].as_str(), h["external"][0]["breaker"].as_str()),
        (Some("qd"), Some("open")),
        "{h}"
    );
    assert_eq!(h["ready"], true, "a failing provider leaves the node ready: {h}");
    qdrant.failing.store(false, Ordering::Relaxed);
    t.wait_for("the breaker to close", READY, || async {
        (post(&t, 0, "/vector/search", q.clone()).await.0 == 200).then_some(())
    })
    .await
    .unwrap();
    // Control: node 1's breaker is its own and never opened.
    let (_, p) = send(&t, 1, "GET", "/external/providers", None).await;
    assert_eq!(p["providers"][0]["breaker"]["opened"], 0, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_suite_passes_on_pinecone() {
    let pinecone = fakes::pinecone(Some("pc-secret"), 2, "euclidean").await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("pc.key");
    std::fs::write(&key, "pc-secret\n").unwrap();
    let config = format!("external:\n  providers:\n{}", provider_config("pc", "pinecone", &pinecone.url(), &key));
    let (t, _dir) = cluster_with(&config).await;

    collection_suite(&t, json!({"backend": {"provider": "pc"}})).await;
    assert!(fakes::pinecone_namespaces(&pinecone).is_empty(), "the namespace is emptied");

    // Refused before anything is sent: a dimension the index does not
    // have, metadata Pinecone cannot keep.
    let body = json!({"name": "d3", "dimension": 3, "backend": {"provider": "pc"}});
    let (code, v) = post(&t, 0, "/collections", body).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("dimension 2"), "{v}");
    let (code, v) =
        post(&t, 0, "/collections", json!({"name": "m", "dimension": 2, "backend": {"provider": "pc"}})).await;
    assert_eq!(code, 200, "{v}");
    let nested = json!({"points": [{"id": 1, "vector": [1.0, 0.0], "metadata": {"a": {"b": 1}}}]});
    let (code, v) = post(&t, 0, "/collections/m/points", nested).await;
    assert_eq!(code, 400, "{v}");
    assert!(pinecone_is_empty(&pinecone), "nothing was written");
}

fn pinecone_is_empty(f: &std::sync::Arc<fakes::Fake<fakes::PineconeState>>) -> bool {
    f.state.lock().unwrap().namespaces.values().all(|n| n.is_empty())
}

/// A milvus-lite server (`SYNOD_TEST_MILVUS`, which `make test` sets to
/// the one it installs), stopped when dropped.
struct MilvusLite {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for MilvusLite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MilvusLite {
    async fn start() -> MilvusLite {
        let dir = tempfile::tempdir().unwrap();
        let port = synod_testkit::free_port().unwrap();
        let child = MilvusLite::spawn(dir.path(), port).await;
        MilvusLite { child, port, dir }
    }

    async fn spawn(dir: &std::path::Path, port: u16) -> std::process::Child {
        let bin = std::env::var("SYNOD_TEST_MILVUS")
            .unwrap_or_else(|_| panic!("SYNOD_TEST_MILVUS is not set: run `make test` (it installs milvus-lite)"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("milvus.log")).unwrap();
        let child = std::process::Command::new(&bin)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--data-dir"])
            .arg(dir.join("data"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "milvus-lite did not listen on {port} within 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        child
    }

    /// Stops it (SIGTERM) and starts it again on the same data.
    async fn restart(&mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
        self.child = MilvusLite::spawn(self.dir.path(), self.port).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_suite_passes_on_a_real_milvus_server() {
    let mut milvus = MilvusLite::start().await;
    let config = format!(
        "external:\n  providers:\n    mv:\n      kind: milvus\n      base_url: http://127.0.0.1:{}\n      \
         timeout: 20s\n      max_retries: 1\n      breaker_failure_threshold: 3\n      breaker_cooldown: 60s\n",
        milvus.port
    );
    let (t, _dir) = cluster_with(&config).await;
    collection_suite(&t, json!({"backend": {"provider": "mv"}})).await;
    // Created again under the same name: a new Milvus collection, empty.
    let body = json!({"name": "docs", "dimension": 2, "metric": "cosine", "backend": {"provider": "mv"}});
    let (code, v) = post(&t, 0, "/collections", body).await;
    assert_eq!((code, v["points"].as_u64()), (200, Some(0)), "{v}");
    assert_eq!(
        (v["index"].as_str(), v["backend"]["kind"].as_str(), &v["hnsw"]["m"]),
        (Some("milvus"), Some("milvus"), &Value::Null)
    );
    // Cosine and dot scores come back as Synod's.
    let pts = json!({"points": [{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [1.0, 1.0]}]});
    assert_eq!(post(&t, 1, "/collections/docs/points", pts).await.0, 200);
    let v = search(&t, 2, json!({"collection": "docs", "vector": [2.0, 0.0], "top_k": 2})).await;
    assert_eq!(ids(&v), [json!(1), json!(2)], "{v}");
    let s: Vec<f64> = v["results"].as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!((s[0] - 1.0).abs() < 1e-3 && (s[1] - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3, "{s:?}");

    // A restarted server has the collection on disk, not loaded: Synod
    // loads it again on the first search that is refused for it.
    milvus.restart().await;
    let v = search(&t, 0, json!({"collection": "docs", "vector": [2.0, 0.0], "top_k": 2})).await;
    assert_eq!(ids(&v), [json!(1), json!(2)], "{v}");

    // The server gone: 503, and the breaker opens and fails fast.
    drop(milvus);
    let q = json!({"collection": "docs", "vector": [2.0, 0.0]});
    for _ in 0..2 {
        let (code, v) = post(&t, 0, "/vector/search", q.clone()).await;
        assert_eq!(code, 503, "{v}");
    }
    let (code, v) = post(&t, 0, "/vector/search", q).await;
    assert_eq!(code, 503, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("circuit breaker is open"), "{v}");
}
