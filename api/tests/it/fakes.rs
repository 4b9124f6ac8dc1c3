//! Contract fakes of the vector databases these machines cannot run:
//! Qdrant's REST API and a Pinecone index's data plane, written from their
//! public API references (paths, bodies, status codes, score conventions)
//! and nothing of Synod's code. Brute-force search; one in-memory store.
//! `failing` makes every request answer 503, as an overloaded server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

/// What every fake shares: its address, the key it wants, the switch that
/// makes it fail, and how many requests it answered.
pub struct Fake<S> {
    pub addr: std::net::SocketAddr,
    pub failing: AtomicBool,
    pub requests: AtomicU64,
    api_key: Option<String>,
    pub state: Mutex<S>,
}

impl<S> Fake<S> {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// 503 while failing, 401 without the right key (`header`), else None.
    fn gate(&self, headers: &HeaderMap, header: &str) -> Option<Response> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Some((StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response());
        }
        let given = headers.get(header).and_then(|v| v.to_str().ok());
        if self.api_key.is_some() && given != self.api_key.as_deref() {
            return Some(
                (StatusCode::UNAUTHORIZED, Json(json!({"message": "wrong or missing API key"}))).into_response(),
            );
        }
        None
    }
}

async fn start<S: Send + 'static>(
    state: S,
    api_key: Option<&str>,
    app: impl FnOnce(Arc<Fake<S>>) -> Router,
) -> Arc<Fake<S>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Arc::new(Fake {
        addr: listener.local_addr().unwrap(),
        failing: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        api_key: api_key.map(str::to_owned),
        state: Mutex::new(state),
    });
    let router = app(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    fake
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?.iter().map(|x| x.as_f64().map(|f| f as f32)).collect()
}

// ---- Qdrant -------------------------------------------------------------

#[derive(Default)]
pub struct QdrantState {
    pub collections: BTreeMap<String, QdrantCollection>,
}

pub struct QdrantCollection {
    size: usize,
    distance: String,
    /// By the id's JSON text.
    points: BTreeMap<String, (Value, Vec<f32>, Value)>,
}

type Q = Arc<Fake<QdrantState>>;

pub async fn qdrant(api_key: Option<&str>) -> Q {
    start(QdrantState::default(), api_key, |f| {
        Router::new()
            .route("/collections/{name}", put(q_create).delete(q_drop))
            .route("/collections/{name}/points", put(q_upsert).post(q_retrieve))
            .route("/collections/{name}/points/delete", post(q_delete))
            .route("/collections/{name}/points/count", post(q_count))
            .route("/collections/{name}/points/search", post(q_search))
            .with_state(f)
    })
    .await
}

fn q_ok(result: Value) -> Response {
    Json(json!({"result": result, "status": "ok", "time": 0.0001})).into_response()
}

fn q_err(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({"status": {"error": message}, "time": 0.0}))).into_response()
}

fn q_missing(name: &str) -> Response {
    q_err(StatusCode::NOT_FOUND, &format!("Not found: Collection `{name}` doesn't exist!"))
}

/// Qdrant's ids: unsigned integers or UUIDs (8-4-4-4-12 hex).
fn q_valid_id(id: &Value) -> bool {
    match id {
        Value::Number(n) => n.is_u64(),
        Value::String(s) => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
                && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        }
        _ => false,
    }
}

async fn q_create(State(f): State<Q>, h: HeaderMap, Path(name): Path<String>, Json(b): Json<Value>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let mut st = f.state.lock().unwrap();
    if st.collections.contains_key(&name) {
        return q_err(StatusCode::CONFLICT, &format!("Wrong input: Collection `{name}` already exists!"));
    }
    let (Some(size), Some(distance)) = (b["vectors"]["size"].as_u64(), b["vectors"]["distance"].as_str()) else {
        return q_err(StatusCode::BAD_REQUEST, "vectors.size and vectors.distance are required");
    };
    if !["Cosine", "Euclid", "Dot", "Manhattan"].contains(&distance) {
        return q_err(StatusCode::BAD_REQUEST, "unknown distance");
    }
    let c = QdrantCollection { size: size as usize, distance: distance.to_owned(), points: BTreeMap::new() };
    st.collections.insert(name, c);
    q_ok(json!(true))
}

async fn q_drop(State(f): State<Q>, h: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let existed = f.state.lock().unwrap().collections.remove(&name).is_some();
    q_ok(json!(existed))
}

async fn q_upsert(State(f): State<Q>, h: HeaderMap, Path(name): Path<String>, Json(b): Json<Value>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let mut st = f.state.lock().unwrap();
    let Some(c) = st.collections.get_mut(&name) else { return q_missing(&name) };
    let Some(points) = b["points"].as_array() else { return q_err(StatusCode::BAD_REQUEST, "points is required") };
    let mut batch = Vec::new();
    for p in points {
        if !q_valid_id(&p["id"]) {
            return q_err(StatusCode::BAD_REQUEST, &format!("Unable to parse point id {}", p["id"]));
        }
        match floats(&p["vector"]) {
            Some(v) if v.len() == c.size => batch.push((p["id"].to_string(), p["id"].clone(), v, p["payload"].clone())),
            _ => {
                return q_err(
                    StatusCode::BAD_REQUEST,
                    &format!("Wrong input: Vector dimension error: expected dim: {}", c.size),
                );
            }
        }
    }
    for (key, id, v, payload) in batch {
        let payload = if payload.is_object() { payload } else { json!({}) };
        c.points.insert(key, (id, v, payload));
    }
    q_ok(json!({"operation_id": 1, "status": "completed"}))
}

async fn q_delete(State(f): State<Q>, h: HeaderMap, Path(name): Path<String>, Json(b): Json<Value>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let mut st = f.state.lock().unwrap();
    let Some(c) = st.collections.get_mut(&name) else { return q_missing(&name) };
    for id in b["points"].as_array().into_iter().flatten() {
        c.points.remove(&id.to_string());
    }
    q_ok(json!({"operation_id": 2, "status": "completed"}))
}

async fn q_count(State(f): State<Q>, h: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let st = f.state.lock().unwrap();
    match st.collections.get(&name) {
        Some(c) => q_ok(json!({"count": c.points.len()})),
        None => q_missing(&name),
    }
}

async fn q_retrieve(State(f): State<Q>, h: HeaderMap, Path(name): Path<String>, Json(b): Json<Value>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let st = f.state.lock().unwrap();
    let Some(c) = st.collections.get(&name) else { return q_missing(&name) };
    let found: Vec<Value> = b["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| c.points.get(&id.to_string()))
        .map(|(id, v, payload)| {
            let mut r = json!({"id": id});
            if b["with_payload"] == true {
                r["payload"] = payload.clone();
            }
            if b["with_vector"] == true {
                r["vector"] = json!(v);
            }
            r
        })
        .collect();
    q_ok(Value::Array(found))
}

/// The payload value at a dotted path.
fn q_at<'a>(payload: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(payload, |v, k| v.get(k))
}

fn q_matches(filter: &Value, payload: &Value) -> bool {
    filter["must"].as_array().into_iter().flatten().all(|c| {
        let Some(v) = q_at(payload, c["key"].as_str().unwrap_or("")) else { return false };
        if let Some(m) = c.get("match") {
            if let Some(want) = m.get("value") {
                return v == want;
            }
            if let Some(any) = m.get("any").and_then(Value::as_array) {
                return any.contains(v);
            }
            return false;
        }
        if let Some(r) = c.get("range") {
            let Some(x) = v.as_f64() else { return false };
            let bound = |k: &str| r.get(k).and_then(Value::as_f64);
            return bound("gte").is_none_or(|b| x >= b)
                && bound("lte").is_none_or(|b| x <= b)
                && bound("gt").is_none_or(|b| x > b)
                && bound("lt").is_none_or(|b| x < b);
        }
        false
    })
}

async fn q_search(State(f): State<Q>, h: HeaderMap, Path(name): Path<String>, Json(b): Json<Value>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let st = f.state.lock().unwrap();
    let Some(c) = st.collections.get(&name) else { return q_missing(&name) };
    let Some(q) = floats(&b["vector"]).filter(|q| q.len() == c.size) else {
        return q_err(StatusCode::BAD_REQUEST, "Wrong input: Vector dimension error");
    };
    let limit = b["limit"].as_u64().unwrap_or(10) as usize;
    // Cosine and Dot: higher is closer; Euclid: the distance, lower is closer.
    let mut hits: Vec<(f64, &Value, &Value)> = c
        .points
        .values()
        .filter(|(_, _, payload)| b.get("filter").is_none_or(|flt| q_matches(flt, payload)))
        .map(|(id, v, payload)| {
            let s = match c.distance.as_str() {
                "Euclid" => q.iter().zip(v).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>().sqrt(),
                "Dot" => dot(&q, v),
                _ => dot(&q, v) / (dot(&q, &q).sqrt() * dot(v, v).sqrt()).max(1e-30),
            };
            (s, id, payload)
        })
        .collect();
    let euclid = c.distance == "Euclid";
    hits.sort_by(|a, b| if euclid { a.0.total_cmp(&b.0) } else { b.0.total_cmp(&a.0) });
    let with_payload = b["with_payload"] == true;
    let out: Vec<Value> = hits
        .into_iter()
        .take(limit)
        .map(|(s, id, payload)| {
            json!({"id": id, "version": 0, "score": s, "payload": if with_payload { payload.clone() } else { Value::Null }})
        })
        .collect();
    q_ok(Value::Array(out))
}

// ---- Pinecone -----------------------------------------------------------

pub struct PineconeState {
    dimension: usize,
    /// cosine, euclidean or dotproduct.
    metric: String,
    pub namespaces: BTreeMap<String, BTreeMap<String, (Vec<f32>, Value)>>,
}

type P = Arc<Fake<PineconeState>>;

/// One serverless index's host, of `dimension` and `metric`.
pub async fn pinecone(api_key: Option<&str>, dimension: usize, metric: &str) -> P {
    let state = PineconeState { dimension, metric: metric.to_owned(), namespaces: BTreeMap::new() };
    start(state, api_key, |f| {
        Router::new()
            .route("/describe_index_stats", post(p_stats))
            .route("/vectors/upsert", post(p_upsert))
            .route("/vectors/delete", post(p_delete))
            .route("/vectors/fetch", get(p_fetch))
            .route("/query", post(p_query))
            .with_state(f)
    })
    .await
}

fn p_err(code: StatusCode, grpc_code: u32, message: &str) -> Response {
    (code, Json(json!({"code": grpc_code, "message": message, "details": []}))).into_response()
}

async fn p_stats(State(f): State<P>, h: HeaderMap) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let st = f.state.lock().unwrap();
    let namespaces: Map<String, Value> =
        st.namespaces.iter().map(|(n, pts)| (n.clone(), json!({"vectorCount": pts.len()}))).collect();
    let total: usize = st.namespaces.values().map(BTreeMap::len).sum();
    Json(json!({"namespaces": namespaces, "dimension": st.dimension, "indexFullness": 0.0, "totalVectorCount": total}))
        .into_response()
}

/// Pinecone's metadata: values are strings, numbers, booleans or lists of
/// strings.
fn p_valid_metadata(m: &Value) -> bool {
    m.as_object().is_some_and(|o| {
        o.values().all(|v| match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => true,
            Value::Array(a) => a.iter().all(Value::is_string),
            _ => false,
        })
    })
}

async fn p_upsert(State(f): State<P>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let mut st = f.state.lock().unwrap();
    let ns = b["namespace"].as_str().unwrap_or("").to_owned();
    let mut batch = Vec::new();
    for v in b["vectors"].as_array().into_iter().flatten() {
        let Some(id) = v["id"].as_str().filter(|s| !s.is_empty()) else {
            return p_err(StatusCode::BAD_REQUEST, 3, "Invalid request: vector id must be a non-empty string");
        };
        let Some(values) = floats(&v["values"]) else { return p_err(StatusCode::BAD_REQUEST, 3, "values required") };
        if values.len() != st.dimension {
            return p_err(
                StatusCode::BAD_REQUEST,
                3,
                &format!(
                    "Vector dimension {} does not match the dimension of the index {}",
                    values.len(),
                    st.dimension
                ),
            );
        }
        let meta = v.get("metadata").cloned().unwrap_or(json!({}));
        if !p_valid_metadata(&meta) {
            return p_err(
                StatusCode::BAD_REQUEST,
                3,
                "Metadata value must be a string, number, boolean or list of strings",
            );
        }
        batch.push((id.to_owned(), values, meta));
    }
    let n = batch.len();
    let space = st.namespaces.entry(ns).or_default();
    for (id, values, meta) in batch {
        space.insert(id, (values, meta));
    }
    Json(json!({ "upsertedCount": n })).into_response()
}

async fn p_delete(State(f): State<P>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let mut st = f.state.lock().unwrap();
    let ns = b["namespace"].as_str().unwrap_or("");
    if b["deleteAll"] == true {
        return match st.namespaces.remove(ns) {
            Some(_) => Json(json!({})).into_response(),
            None => p_err(StatusCode::NOT_FOUND, 5, "Namespace not found"),
        };
    }
    if let Some(space) = st.namespaces.get_mut(ns) {
        for id in b["ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            space.remove(id);
        }
    }
    Json(json!({})).into_response()
}

async fn p_fetch(State(f): State<P>, h: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let st = f.state.lock().unwrap();
    let ns = q.iter().find(|(k, _)| k == "namespace").map_or("", |(_, v)| v.as_str());
    let mut vectors = Map::new();
    if let Some(space) = st.namespaces.get(ns) {
        for (_, id) in q.iter().filter(|(k, _)| k == "ids") {
            if let Some((values, meta)) = space.get(id) {
                vectors.insert(id.clone(), json!({"id": id, "values": values, "metadata": meta}));
            }
        }
    }
    Json(json!({"vectors": vectors, "namespace": ns, "usage": {"readUnits": 1}})).into_response()
}

/// Pinecone's filter language: `$and`, `$or`, and per key `$eq`, `$ne`,
/// `$in`, `$nin`, `$gt(e)`, `$lt(e)`, or a bare value for `$eq`.
fn p_matches(filter: &Value, meta: &Value) -> bool {
    let Some(f) = filter.as_object() else { return false };
    f.iter().all(|(k, cond)| match k.as_str() {
        "$and" => cond.as_array().is_some_and(|a| a.iter().all(|c| p_matches(c, meta))),
        "$or" => cond.as_array().is_some_and(|a| a.iter().any(|c| p_matches(c, meta))),
        key => {
            let v = meta.get(key);
            let Some(ops) = cond.as_object().filter(|o| o.keys().all(|k| k.starts_with('$'))) else {
                return v == Some(cond);
            };
            ops.iter().all(|(op, arg)| {
                let num = |x: Option<&Value>| x.and_then(Value::as_f64);
                let contains = |list: &Value| {
                    list.as_array().is_some_and(|l| match v {
                        Some(Value::Array(vs)) => vs.iter().any(|x| l.contains(x)),
                        Some(x) => l.contains(x),
                        None => false,
                    })
                };
                match op.as_str() {
                    "$eq" => v == Some(arg),
                    "$ne" => v != Some(arg),
                    "$in" => contains(arg),
                    "$nin" => !contains(arg),
                    "$gt" => num(v).zip(arg.as_f64()).is_some_and(|(x, b)| x > b),
                    "$gte" => num(v).zip(arg.as_f64()).is_some_and(|(x, b)| x >= b),
                    "$lt" => num(v).zip(arg.as_f64()).is_some_and(|(x, b)| x < b),
                    "$lte" => num(v).zip(arg.as_f64()).is_some_and(|(x, b)| x <= b),
                    _ => false,
                }
            })
        }
    })
}

async fn p_query(State(f): State<P>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if let Some(r) = f.gate(&h, "api-key") {
        return r;
    }
    let st = f.state.lock().unwrap();
    let ns = b["namespace"].as_str().unwrap_or("");
    let Some(q) = floats(&b["vector"]).filter(|q| q.len() == st.dimension) else {
        return p_err(StatusCode::BAD_REQUEST, 3, "Query vector dimension does not match the dimension of the index");
    };
    let top_k = b["topK"].as_u64().unwrap_or(10) as usize;
    let empty = BTreeMap::new();
    let space = st.namespaces.get(ns).unwrap_or(&empty);
    // cosine and dotproduct: higher is closer; euclidean: the squared
    // distance, lower is closer.
    let mut hits: Vec<(f64, &String, &Value)> = space
        .iter()
        .filter(|(_, (_, meta))| b.get("filter").is_none_or(|flt| p_matches(flt, meta)))
        .map(|(id, (v, meta))| {
            let s = match st.metric.as_str() {
                "euclidean" => q.iter().zip(v).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>(),
                "dotproduct" => dot(&q, v),
                _ => dot(&q, v) / (dot(&q, &q).sqrt() * dot(v, v).sqrt()).max(1e-30),
            };
            (s, id, meta)
        })
        .collect();
    let euclidean = st.metric == "euclidean";
    hits.sort_by(|a, b| if euclidean { a.0.total_cmp(&b.0) } else { b.0.total_cmp(&a.0) });
    let with_meta = b["includeMetadata"] == true;
    let matches: Vec<Value> = hits
        .into_iter()
        .take(top_k)
        .map(|(s, id, meta)| {
            let mut m = json!({"id": id, "score": s, "values": []});
            if with_meta {
                m["metadata"] = meta.clone();
            }
            m
        })
        .collect();
    Json(json!({"matches": matches, "namespace": ns, "usage": {"readUnits": 5}})).into_response()
}

/// Namespaces (Pinecone) or collections (Qdrant) the fake holds now.
pub fn qdrant_collections(f: &Q) -> Vec<String> {
    f.state.lock().unwrap().collections.keys().cloned().collect()
}

pub fn pinecone_namespaces(f: &P) -> Vec<String> {
    f.state.lock().unwrap().namespaces.keys().cloned().collect()
}
