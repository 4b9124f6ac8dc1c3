//! Vector collections on a real cluster: points written through one node
//! are found by a linearizable search on another; filters, deletes,
//! replacement, bad input, tenants, and a whole-cluster restart.

use serde_json::{Value, json};

use crate::util::*;

async fn post(t: &TestCluster, i: usize, path: &str, body: Value) -> (u16, Value) {
    let r = t.http.post(format!("{}{path}", t.nodes[i].url())).json(&body).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<Value> {
    v["results"].as_array().unwrap().iter().map(|h| h["id"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_written_on_one_node_are_searched_on_another() {
    let mut t = must_three(&[]).await;
    let (code, v) = post(&t, 0, "/collections", json!({"name": "docs", "dimension": 2, "metric": "l2"})).await;
    assert_eq!(code, 200, "{v}");
    // 100 points on a line; even ones tagged.
    let points: Vec<Value> = (0..100u64)
        .map(|i| json!({"id": i, "vector": [i as f32, 0.0], "metadata": {"even": i % 2 == 0, "n": i}}))
        .collect();
    let (code, v) = post(&t, 1, "/collections/docs/points", json!({"points": points})).await;
    assert_eq!((code, v["points"].as_u64()), (200, Some(100)), "{v}");

    let search = json!({"collection": "docs", "vector": [41.2, 0.0], "top_k": 3, "consistency": "linearizable"});
    let (code, v) = post(&t, 2, "/vector/search", search).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ids(&v), [json!(41), json!(42), json!(40)], "{v}");
    assert!(v["results"][0]["score"].as_f64().unwrap() > v["results"][1]["score"].as_f64().unwrap());

    // The gRPC twin answers the same.
    let mut grpc =
        synod_api::pb::vectors_client::VectorsClient::with_interceptor(must_channel(&t, 1).await, AdminAuth::of(&t));
    let reply = grpc
        .search(synod_api::pb::SearchRequest {
            collection: "docs".into(),
            vector: vec![41.2, 0.0],
            text: String::new(),
            top_k: 3,
            filter_json: String::new(),
            consistency: "linearizable".into(),
            ef: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<String> = reply.results.iter().map(|h| h.id.as_ref().unwrap().id.clone()).collect();
    assert_eq!(got, ["41", "42", "40"]);
    assert!(reply.results.iter().all(|h| h.id.as_ref().unwrap().numeric_id));

    // A batch: one list per query, in order, over REST and gRPC.
    let batch = json!({"collection": "docs", "consistency": "leader", "queries": [
        {"vector": [10.1, 0.0], "top_k": 2},
        {"vector": [77.2, 0.0], "top_k": 1, "ef": 500, "filter": {"must": [{"key": "even", "match": true}]}}
    ]});
    let (code, v) = post(&t, 2, "/vector/search/batch", batch).await;
    assert_eq!(code, 200, "{v}");
    let lists: Vec<Vec<Value>> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_array().unwrap().iter().map(|h| h["id"].clone()).collect())
        .collect();
    assert_eq!(lists, [vec![json!(10), json!(11)], vec![json!(78)]], "{v}");
    let reply = grpc
        .search_batch(synod_api::pb::SearchBatchRequest {
            collection: "docs".into(),
            queries: vec![synod_api::pb::Query { vector: vec![3.2, 0.0], top_k: 2, ..Default::default() }],
            consistency: "local".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<String> = reply.results[0].hits.iter().map(|h| h.id.as_ref().unwrap().id.clone()).collect();
    assert_eq!(got, ["3", "4"]);
    // Every consistency answers; a local read says how far behind it was.
    for c in ["local", "leader", "linearizable"] {
        let (code, v) = post(
            &t,
            1,
            "/vector/search",
            json!({"collection": "docs", "vector": [5.0, 0.0], "top_k": 1, "consistency": c}),
        )
        .await;
        assert_eq!((code, ids(&v)), (200, vec![json!(5)]), "{c}: {v}");
        assert!(v["behind_by"].is_u64(), "{c}: {v}");
    }
    for (body, what) in [
        (json!({"collection": "docs", "vector": [1.0], "top_k": 1}), "query of the wrong dimension"),
        (json!({"collection": "docs", "vector": [1.0, 0.0], "top_k": 0}), "top_k 0"),
        (json!({"collection": "docs", "vector": [1.0, 0.0], "ef": 0}), "ef 0"),
        (json!({"collection": "docs", "vector": [1.0, 0.0], "consistency": "eventual"}), "unknown consistency"),
        (json!({"collection": "docs", "vector": [1.0, 0.0], "filter": {"should": []}}), "unknown filter clause"),
        (json!({"collection": "docs", "vector": [1.0, 0.0], "filter": {"must": [{"key": "n"}]}}), "empty condition"),
        (json!({"collection": "docs", "vector": [1.0, 0.0], "text": "x"}), "vector and text"),
        (json!({"collection": "docs"}), "no query"),
    ] {
        let (code, v) = post(&t, 0, "/vector/search", body).await;
        assert_eq!(code, 400, "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
    }
    let (code, v) = post(&t, 0, "/vector/search/batch", json!({"collection": "docs", "queries": []})).await;
    assert_eq!(code, 400, "empty batch: {v}");
    let (code, v) = post(&t, 0, "/vector/search", json!({"collection": "nope", "vector": [1.0, 0.0]})).await;
    assert_eq!(code, 404, "{v}");

    let filtered = json!({"collection": "docs", "vector": [41.2, 0.0], "top_k": 3,
        "filter": {"must": [{"key": "even", "match": false}, {"key": "n", "range": {"gte": 50}}]}});
    let (_, v) = post(&t, 2, "/vector/search", filtered).await;
    assert_eq!(ids(&v), [json!(51), json!(53), json!(55)], "{v}");

    // Replace 41, delete 42: a search no longer returns them where they were.
    let (code, _) =
        post(&t, 0, "/collections/docs/points", json!({"points": [{"id": 41, "vector": [1000.0, 0.0]}]})).await;
    assert_eq!(code, 200);
    let r = t
        .http
        .delete(format!("{}/collections/docs/points", t.nodes[0].url()))
        .json(&json!({"ids": [42]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let search = json!({"collection": "docs", "vector": [41.2, 0.0], "top_k": 3, "consistency": "linearizable"});
    let (_, before) = post(&t, 1, "/vector/search", search.clone()).await;
    assert_eq!(ids(&before), [json!(40), json!(43), json!(39)], "{before}");
    let (code, p) = t.get(2, "/collections/docs/points/41").await.unwrap();
    assert_eq!((code, p["vector"][0].as_f64()), (200, Some(1000.0)), "{p}");
    // Stored without metadata: read back as `{}`, the shape a search hit
    // gives it; a point with metadata keeps its own (the control).
    assert_eq!(p["metadata"], json!({}), "{p}");
    let (_, p) = t.get(2, "/collections/docs/points/40").await.unwrap();
    assert_eq!(p["metadata"], json!({"even": true, "n": 40}), "{p}");

    // Bad input changes nothing.
    for (body, what) in [
        (json!({"points": [{"id": 1, "vector": [1.0]}]}), "wrong dimension"),
        (json!({"points": [{"id": -1, "vector": [1.0, 0.0]}]}), "negative id"),
        (json!({"points": [{"id": 7, "vector": [1.0, 0.0], "metadata": [1]}]}), "metadata not an object"),
        (json!({"points": []}), "empty batch"),
    ] {
        let (code, v) = post(&t, 0, "/collections/docs/points", body).await;
        assert_eq!(code, 400, "{what}: {v}");
    }
    let (code, _) = post(&t, 0, "/collections/nope/points", json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]})).await;
    assert_eq!(code, 404);
    let (_, c) = t.get(0, "/collections/docs").await.unwrap();
    assert_eq!(c["points"], 99, "{c}");

    // The compact form: a vector as base64 of its little-endian f32s
    // ([3.0, 0.5] here, written out by hand), in upserts and in searches.
    for (body, what, says) in [
        (json!({"points": [{"id": 7, "vector": "AABAQA=="}]}), "one f32 for dimension 2", "dimension 2"),
        (json!({"points": [{"id": 7, "vector": "AABAQAAAAA"}]}), "not whole f32s", "whole number of f32s"),
        (json!({"points": [{"id": 7, "vector": "AAB!QAAAAD8="}]}), "not base64", "base64"),
        (json!({"points": [{"id": 7, "vector": "AADAfwAAAD8="}]}), "a NaN", "NaN"),
    ] {
        let (code, v) = post(&t, 0, "/collections/docs/points", body).await;
        assert_eq!(code, 400, "{what}: {v}");
        assert!(v["error"]["message"].as_str().unwrap_or_default().contains(says), "{what}: {v}");
    }
    let (_, c) = t.get(0, "/collections/docs").await.unwrap();
    assert_eq!(c["points"], 99, "bad compact vectors changed nothing: {c}");
    let (code, v) =
        post(&t, 0, "/collections/docs/points", json!({"points": [{"id": 500, "vector": "AABAQAAAAD8="}]})).await;
    assert_eq!(code, 200, "{v}");
    let (code, p) = t.get(1, "/collections/docs/points/500").await.unwrap();
    assert_eq!((code, &p["vector"]), (200, &json!([3.0, 0.5])), "{p}");
    let compact = json!({"collection": "docs", "vector": "AABAQAAAAD8=", "top_k": 1, "consistency": "linearizable"});
    let (code, v) = post(&t, 2, "/vector/search", compact).await;
    assert_eq!((code, ids(&v)), (200, vec![json!(500)]), "{v}");
    let r = t
        .http
        .delete(format!("{}/collections/docs/points", t.nodes[0].url()))
        .json(&json!({"ids": [500]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Another tenant sees nothing of it.
    let r = t
        .http
        .get(format!("{}/collections/docs", t.nodes[0].url()))
        .header("x-synod-tenant", "other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = t
        .http
        .post(format!("{}/vector/search", t.nodes[1].url()))
        .header("x-synod-tenant", "other")
        .json(&json!({"collection": "docs", "vector": [1.0, 0.0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "nor search it");

    // Text in: a collection with a vectorizer embeds texts and queries.
    let (code, v) =
        post(&t, 0, "/collections", json!({"name": "texts", "dimension": 64, "vectorizer": "hashing-v1"})).await;
    assert_eq!(code, 200, "{v}");
    let texts = ["the cat sat on the mat", "dogs bark at night", "quantum fields and particles"];
    let points: Vec<Value> = texts.iter().enumerate().map(|(i, s)| json!({"id": format!("t{i}"), "text": s})).collect();
    let (code, v) = post(&t, 1, "/collections/texts/points", json!({"points": points})).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) =
        post(&t, 2, "/vector/search", json!({"collection": "texts", "text": "a cat sat", "top_k": 1})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(ids(&v), [json!("t0")], "{v}");
    let (code, v) = post(&t, 2, "/vector/search", json!({"collection": "docs", "text": "a cat"})).await;
    assert_eq!(code, 400, "no vectorizer: {v}");

    // Tasks write here: a vectorize task naming a collection stores its vector.
    let task = json!({"type": "vectorize", "payload": {"text": "a tabby cat sat down", "dimension": 64, "model": "hashing-v1",
        "collection": "texts", "id": "from-task", "metadata": {"src": "task"}}});
    let (code, v) = post(&t, 1, "/tasks/submit", task).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, r) = t.get(1, &format!("/tasks/{id}/result?wait=30")).await.unwrap();
    assert_eq!(r["state"], "succeeded", "{r}");
    let (_, v) = post(&t, 2, "/vector/search", json!({"collection": "texts", "text": "tabby cat", "top_k": 1})).await;
    assert_eq!(ids(&v), [json!("from-task")], "{v}");
    assert_eq!(v["results"][0]["metadata"]["src"], "task", "{v}");
    let bad = json!({"type": "vectorize", "payload": {"text": "x", "dimension": 64, "model": "hashing-v1", "collection": "missing"}});
    let (_, v) = post(&t, 1, "/tasks/submit", bad).await;
    let id = v["id"].as_str().unwrap().to_string();
    let (_, r) = t.get(1, &format!("/tasks/{id}/result?wait=30")).await.unwrap();
    assert_eq!(r["state"], "failed", "a vector for a missing collection fails its task: {r}");

    // A whole-cluster restart: the same answer.
    for i in 0..3 {
        t.kill(i);
    }
    for i in 0..3 {
        t.start(i).unwrap();
    }
    for i in 0..3 {
        t.wait_ready(i, READY).await.unwrap();
    }
    let (code, after) = post(&t, 2, "/vector/search", search).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(ids(&after), ids(&before), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_caught_up_by_snapshot_searches_the_same() {
    let mut extra = fast_args();
    for s in ["cluster.snapshot_logs_threshold=50", "cluster.logs_to_keep=0"] {
        extra.extend(["--set".to_string(), s.to_string()]);
    }
    let mut t = must_three(&extra).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let (lagging, other) = ((leader + 1) % 3, (leader + 2) % 3);
    let (code, v) = post(&t, other, "/collections", json!({"name": "snap", "dimension": 4, "metric": "l2"})).await;
    assert_eq!(code, 200, "{v}");
    t.kill(lagging);
    let down_at_index = t.status(leader).await.unwrap()["last_log_index"].as_u64().unwrap();
    // Batches of 10 points, one log entry each, until the leader's log is
    // purged past where the killed node stopped.
    let mut batch = 0u64;
    t.wait_for("the leader to purge its log past the killed node", READY, || {
        batch += 1;
        let b = batch;
        let t = &t;
        async move {
            let points: Vec<Value> = (0..10u64)
                .map(|j| {
                    let i = b * 10 + j;
                    json!({"id": i, "vector": [i as f32, (i % 7) as f32, (i % 3) as f32, 1.0], "metadata": {"b": b}})
                })
                .collect();
            let (code, v) = post(t, other, "/collections/snap/points", json!({"points": points})).await;
            assert_eq!(code, 200, "{v}");
            let purged = t.status(leader).await.ok()?["purged_index"].as_u64()?;
            (b >= 60 && purged > down_at_index + 1).then_some(())
        }
    })
    .await
    .unwrap();
    let stored = batch * 10;
    t.start(lagging).unwrap();
    t.wait_ready(lagging, READY).await.unwrap();
    t.wait_for("the lagging node to hold every point", READY, || async {
        let (_, c) = t.get(lagging, "/collections/snap").await.ok()?;
        (c["points"].as_u64()? == stored).then_some(())
    })
    .await
    .unwrap();
    assert!(metric(&t, lagging, "synod_raft_snapshots_installed_total").await >= 1.0, "caught up by snapshot");
    for q in [[3.3, 1.0, 0.0, 1.0], [250.0, 6.0, 2.0, 1.0], [-10.0, 0.0, 0.0, 0.0]] {
        let body = |c: &str| json!({"collection": "snap", "vector": q, "top_k": 5, "ef": 2000, "consistency": c});
        let (_, want) = post(&t, leader, "/vector/search", body("linearizable")).await;
        let (code, got) = post(&t, lagging, "/vector/search", body("local")).await;
        assert_eq!(code, 200, "{got}");
        assert_eq!(got["results"], want["results"], "query {q:?}");
        assert_eq!(ids(&got).len(), 5);
    }
}

/// `"hnsw": {"quantization": "int8"}` from REST, gRPC and the CLI: the
/// graph holds int8 codes, and the answers carry the exact scores a flat
/// (exact) collection of the same points gives, at nearly its recall. Bad
/// values are refused and create nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_int8_collection_answers_with_exact_scores_from_rest_grpc_and_the_cli() {
    let t = must_single(&[]).await;
    for (name, hnsw, index) in [("q8", json!({"quantization": "int8"}), "hnsw"), ("ex", json!({}), "flat")] {
        let body = json!({"name": name, "dimension": 16, "metric": "cosine", "hnsw": hnsw, "index": index});
        let (code, v) = post(&t, 0, "/collections", body).await;
        assert_eq!(code, 200, "{v}");
    }
    let (_, v) = t.get(0, "/collections/q8").await.unwrap();
    assert_eq!(v["hnsw"]["quantization"], "int8", "{v}");
    let (_, v) = t.get(0, "/collections/ex").await.unwrap();
    assert_eq!(v["hnsw"]["quantization"], "none", "{v}");
    for (body, why) in [
        (json!({"name": "bad", "dimension": 4, "hnsw": {"quantization": "int4"}}), "unknown hnsw.quantization"),
        (json!({"name": "bad", "dimension": 4, "index": "flat", "hnsw": {"quantization": "int8"}}), "flat index"),
    ] {
        let (code, v) = post(&t, 0, "/collections", body).await;
        assert_eq!(code, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap_or_default().contains(why), "{v}");
    }
    let (code, _) = t.get(0, "/collections/bad").await.unwrap();
    assert_eq!(code, 404, "a refused create leaves nothing");

    // 2,000 points in 23 clusters (no two alike), the same in both.
    let vector = |i: u64| -> Vec<f32> {
        (0..16u64).map(|d| ((i % 23) * 7 + d * 13) as f32 % 11.0 + ((i * 31 + d * 17) % 101) as f32 / 101.0).collect()
    };
    for name in ["q8", "ex"] {
        for chunk in (0..2_000u64).collect::<Vec<_>>().chunks(500) {
            let points: Vec<Value> = chunk.iter().map(|&i| json!({"id": i, "vector": vector(i)})).collect();
            let (code, v) = post(&t, 0, &format!("/collections/{name}/points"), json!({"points": points})).await;
            assert_eq!(code, 200, "{v}");
        }
    }
    t.wait_for("the int8 graph to take every point", READY, || async {
        let (_, v) = t.get(0, "/collections/q8").await.ok()?;
        (v["index_stats"]["growing"] == 0 && v["index_stats"]["segments"] == 1).then_some(())
    })
    .await
    .unwrap();
    let (mut found, mut asked) = (0, 0);
    for qi in 0..30u64 {
        let q = vector(qi * 97 + 5).iter().map(|x| x + 0.05).collect::<Vec<f32>>();
        let search = |c: &str| json!({"collection": c, "vector": q, "top_k": 10, "ef": 64});
        let (code, hnsw) = post(&t, 0, "/vector/search", search("q8")).await;
        assert_eq!(code, 200, "{hnsw}");
        let (code, exact) = post(&t, 0, "/vector/search", search("ex")).await;
        assert_eq!(code, 200, "{exact}");
        let exact: Vec<(Value, f64)> = exact["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["id"].clone(), h["score"].as_f64().unwrap()))
            .collect();
        // Exact scores: every hit's score is its cosine, as the flat index computes it.
        for h in hnsw["results"].as_array().unwrap() {
            let id = h["id"].as_u64().unwrap();
            let want = cosine(&vector(id), &q);
            let got = h["score"].as_f64().unwrap();
            assert!((got - want).abs() < 1e-5, "point {id}: score {got}, its cosine is {want}");
        }
        asked += exact.len();
        found += exact.iter().filter(|(id, _)| ids(&hnsw).contains(id)).count();
    }
    let recall = found as f64 / asked as f64;
    assert!(recall >= 0.9, "recall@10 of the int8 collection against the exact one: {recall}");

    // gRPC: created and shown with its quantization; a bad value refused.
    let mut grpc =
        synod_api::pb::vectors_client::VectorsClient::with_interceptor(must_channel(&t, 0).await, AdminAuth::of(&t));
    let req = |name: &str, q: &str| synod_api::pb::CreateCollectionRequest {
        name: name.into(),
        dimension: 8,
        hnsw_quantization: q.into(),
        ..Default::default()
    };
    let c = grpc.create_collection(req("g8", "int8")).await.unwrap().into_inner();
    assert_eq!(c.hnsw_quantization, "int8");
    let e = grpc.create_collection(req("g4", "int4")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // The CLI.
    let out = std::process::Command::new(BIN)
        .args(["vector", "create", "c8", "--dimension", "8", "--quantization", "int8", "--addr", &t.nodes[0].url()])
        .env("SYNOD_TOKEN", &t.admin_token)
        .env_remove("SYNOD_ADDR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, v) = t.get(0, "/collections/c8").await.unwrap();
    assert_eq!(v["hnsw"]["quantization"], "int8", "{v}");

    // HNSW flags beside --backend reach the server, which refuses the pair
    // (the CLI used to drop them and create the collection without them).
    let url = t.nodes[0].url();
    let create = |extra: &[&str]| {
        let mut args = vec!["vector", "create", "b8", "--dimension", "8", "--backend", "nosuch"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--addr", &url]);
        let out = std::process::Command::new(BIN)
            .args(&args)
            .env("SYNOD_TOKEN", &t.admin_token)
            .env_remove("SYNOD_ADDR")
            .output();
        let out = out.unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = create(&["--m", "8"]);
    assert!(err.contains("index and hnsw apply to built-in collections"), "{err}");
    // Control: without them the same command fails on the provider instead.
    let err = create(&[]);
    assert!(err.contains("no provider named"), "{err}");
}
