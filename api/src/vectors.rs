//! Vector collections in the service layer: create, list, get, delete;
//! upsert, get and delete points; search. Collections belong to the
//! caller's tenant. Search is exact for now (every point is scored); the
//! HNSW index is the next step and will answer the same way.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use synod_store::pb::{self, Metric, command::Kind, command_result::Outcome};
use synod_store::vector_search::{Filter, exact_search};
use synod_store::vectors::{decode_vector, encode_vector, point_id_key};

use crate::auth::AuthContext;
use crate::error::{ApiError, Result};
use crate::service::{Consistency, Node};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HnswRequest {
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    pub ef: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionRequest {
    pub name: String,
    pub dimension: u32,
    pub metric: Option<String>,
    #[serde(default)]
    pub hnsw: HnswRequest,
    pub vectorizer: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionView {
    pub name: String,
    pub dimension: u32,
    pub metric: String,
    pub hnsw: HnswRequest,
    pub vectorizer: Option<String>,
    pub points: u64,
    pub created_at_ms: u64,
}

fn metric_name(m: i32) -> &'static str {
    match Metric::try_from(m) {
        Ok(Metric::Cosine) => "cosine",
        Ok(Metric::L2) => "l2",
        Ok(Metric::Dot) => "dot",
        _ => "unknown",
    }
}

fn collection_view(c: pb::CollectionRecord) -> CollectionView {
    let h = c.hnsw.unwrap_or_default();
    CollectionView {
        metric: metric_name(c.metric).to_string(),
        name: c.name,
        dimension: c.dimension,
        hnsw: HnswRequest { m: Some(h.m), ef_construction: Some(h.ef_construction), ef: Some(h.ef) },
        vectorizer: Some(c.vectorizer).filter(|v| !v.is_empty()),
        points: c.points,
        created_at_ms: c.created_at_ms,
    }
}

fn collection_of(out: Outcome) -> Result<CollectionView> {
    match out {
        Outcome::Collection(c) => Ok(collection_view(c)),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn do_create_collection(ctx: &AuthContext, node: &Node, req: CollectionRequest) -> Result<CollectionView> {
    ctx.require_write()?;
    let cfg = &node.cfg.vector_db;
    if !synod_store::vectors::valid_collection_name(&req.name) {
        return Err(ApiError::InvalidArgument(format!(
            "collection name {:?}: 1 to 64 ASCII letters, digits, '-', '_' or '.'",
            req.name
        )));
    }
    if req.dimension == 0 || req.dimension as usize > cfg.max_dimension {
        return Err(ApiError::InvalidArgument(format!(
            "dimension {} is out of range 1..={} (vector_db.max_dimension)",
            req.dimension, cfg.max_dimension
        )));
    }
    let metric = match req.metric.as_deref() {
        None => match cfg.default_metric {
            synod_config::Metric::Cosine => Metric::Cosine,
            synod_config::Metric::L2 => Metric::L2,
            synod_config::Metric::Dot => Metric::Dot,
        },
        Some("cosine") => Metric::Cosine,
        Some("l2") => Metric::L2,
        Some("dot") => Metric::Dot,
        Some(other) => return Err(ApiError::InvalidArgument(format!("unknown metric {other:?} (cosine, l2 or dot)"))),
    };
    let m = req.hnsw.m.unwrap_or(cfg.hnsw_m as u32);
    let ef_construction = req.hnsw.ef_construction.unwrap_or(cfg.hnsw_ef_construction as u32);
    let ef = req.hnsw.ef.unwrap_or(cfg.hnsw_ef as u32);
    if !(2..=128).contains(&m) || !(1..=10_000).contains(&ef_construction) || !(1..=10_000).contains(&ef) {
        return Err(ApiError::InvalidArgument(
            "hnsw: m within 2..=128, ef_construction and ef within 1..=10000".into(),
        ));
    }
    if let Some(v) = &req.vectorizer
        && !node.plugins.names().into_iter().any(|n| n == *v)
    {
        return Err(ApiError::InvalidArgument(format!("vectorizer {v:?} is not a task type of this cluster")));
    }
    let rec = pb::CollectionRecord {
        tenant: ctx.tenant.clone(),
        name: req.name,
        dimension: req.dimension,
        metric: metric as i32,
        hnsw: Some(pb::HnswParams { m, ef_construction, ef }),
        vectorizer: req.vectorizer.unwrap_or_default(),
        ..Default::default()
    };
    collection_of(node.propose(Kind::CreateCollection(pb::CreateCollection { collection: Some(rec) })).await?.0)
}

fn load(ctx: &AuthContext, node: &Node, name: &str) -> Result<pb::CollectionRecord> {
    node.raft
        .store
        .get_collection(&ctx.tenant, name)?
        .ok_or_else(|| ApiError::NotFound(format!("collection {name} not found")))
}

/// As [`load`], but a collection this node has not applied yet (created
/// through another node a moment ago) is waited for: writes never fail on
/// a lagging node's view.
async fn load_fresh(ctx: &AuthContext, node: &Node, name: &str) -> Result<pb::CollectionRecord> {
    match load(ctx, node, name) {
        Err(ApiError::NotFound(_)) => {
            node.raft.read_barrier().await?;
            load(ctx, node, name)
        }
        other => other,
    }
}

pub fn do_get_collection(ctx: &AuthContext, node: &Node, name: &str) -> Result<CollectionView> {
    Ok(collection_view(load(ctx, node, name)?))
}

pub fn do_list_collections(ctx: &AuthContext, node: &Node) -> Result<Vec<CollectionView>> {
    Ok(node.raft.store.list_collections(&ctx.tenant)?.into_iter().map(collection_view).collect())
}

pub async fn do_delete_collection(ctx: &AuthContext, node: &Node, name: &str) -> Result<()> {
    ctx.require_write()?;
    node.propose(Kind::DeleteCollection(pb::DeleteCollection { tenant: ctx.tenant.clone(), name: name.into() }))
        .await?;
    Ok(())
}

/// A point as clients send and see it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PointBody {
    /// A string or an unsigned integer.
    pub id: Value,
    pub vector: Option<Vec<f32>>,
    pub text: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    pub points: Vec<PointBody>,
}

/// (key-form id, numeric?) of a client's id.
fn parse_id(id: &Value) -> Result<(String, bool)> {
    match id {
        Value::String(s) if !s.is_empty() && s.len() <= 256 => Ok((s.clone(), false)),
        Value::Number(n) if n.is_u64() => Ok((n.to_string(), true)),
        other => Err(ApiError::InvalidArgument(format!(
            "point id {other}: a non-empty string (at most 256 bytes) or an unsigned integer"
        ))),
    }
}

fn id_value(p: &pb::Point) -> Value {
    if p.numeric_id { p.id.parse::<u64>().map(Value::from).unwrap_or(Value::Null) } else { Value::String(p.id.clone()) }
}

pub async fn do_upsert_points(
    ctx: &AuthContext,
    node: &Node,
    name: &str,
    req: UpsertRequest,
) -> Result<CollectionView> {
    ctx.require_write()?;
    let coll = load_fresh(ctx, node, name).await?;
    let max = node.cfg.vector_db.max_batch;
    if req.points.is_empty() || req.points.len() > max {
        return Err(ApiError::InvalidArgument(format!(
            "{} points in one upsert; 1 to {max} (vector_db.max_batch)",
            req.points.len()
        )));
    }
    let mut points = Vec::with_capacity(req.points.len());
    for (i, p) in req.points.into_iter().enumerate() {
        let at = |m: String| ApiError::InvalidArgument(format!("points[{i}]: {m}"));
        let (id, numeric_id) = parse_id(&p.id).map_err(|e| at(e.to_string()))?;
        let vector = match (p.vector, &p.text) {
            (Some(v), _) => v,
            (None, Some(text)) => embed(ctx, node, &coll, text).await.map_err(|e| at(e.to_string()))?,
            (None, None) => return Err(at("a point needs a vector or a text".into())),
        };
        if vector.len() != coll.dimension as usize {
            return Err(at(format!(
                "the vector has {} components; the collection has dimension {}",
                vector.len(),
                coll.dimension
            )));
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(at("the vector has a NaN or infinite component".into()));
        }
        let metadata_json = match p.metadata {
            None | Some(Value::Null) => String::new(),
            Some(m @ Value::Object(_)) => m.to_string(),
            Some(_) => return Err(at("metadata must be a JSON object".into())),
        };
        points.push(pb::Point {
            id,
            numeric_id,
            vector: encode_vector(&vector),
            text: p.text.unwrap_or_default(),
            metadata_json,
        });
    }
    let kind = Kind::UpsertPoints(pb::UpsertPoints {
        tenant: ctx.tenant.clone(),
        collection: name.into(),
        points,
        max_vectors: node.cfg.security.tenant_max_vectors,
    });
    collection_of(node.propose(kind).await?.0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletePointsRequest {
    pub ids: Vec<Value>,
}

pub async fn do_delete_points(
    ctx: &AuthContext,
    node: &Node,
    name: &str,
    req: DeletePointsRequest,
) -> Result<CollectionView> {
    ctx.require_write()?;
    load_fresh(ctx, node, name).await?;
    if req.ids.len() > node.cfg.vector_db.max_batch {
        return Err(ApiError::InvalidArgument("too many ids in one delete (vector_db.max_batch)".into()));
    }
    let ids = req.ids.iter().map(|v| parse_id(v).map(|(id, n)| point_id_key(&id, n))).collect::<Result<Vec<_>>>()?;
    let kind = Kind::DeletePoints(pb::DeletePoints { tenant: ctx.tenant.clone(), collection: name.into(), ids });
    collection_of(node.propose(kind).await?.0)
}

/// The vector of `text` from the collection's vectorizer (a plugin that
/// takes `{"text", "dimension"}` and answers `{"vector"}`).
async fn embed(ctx: &AuthContext, node: &Node, coll: &pb::CollectionRecord, text: &str) -> Result<Vec<f32>> {
    if coll.vectorizer.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "collection {} has no vectorizer: send vectors, or create it with \"vectorizer\"",
            coll.name
        )));
    }
    let run = synod_plugins::TaskContext {
        task_id: format!("embed:{}", coll.name),
        tenant: ctx.tenant.clone(),
        attempt: 1,
        cancel: synod_plugins::CancelToken::new(),
    };
    let payload = serde_json::json!({"text": text, "dimension": coll.dimension});
    let out = node
        .plugins
        .execute(&coll.vectorizer, payload, run, std::time::Duration::from_secs(30))
        .await
        .map_err(|e| ApiError::InvalidArgument(format!("vectorizer {}: {e}", coll.vectorizer)))?;
    let v: Vec<f32> = out["vector"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect())
        .unwrap_or_default();
    if v.len() != coll.dimension as usize || v.iter().any(|x| !x.is_finite()) {
        return Err(ApiError::Internal(format!(
            "vectorizer {} answered {} components for dimension {}",
            coll.vectorizer,
            v.len(),
            coll.dimension
        )));
    }
    Ok(v)
}

fn point_body(p: pb::Point) -> PointBody {
    PointBody {
        id: id_value(&p),
        vector: decode_vector(&p.vector),
        text: Some(p.text).filter(|t| !t.is_empty()),
        metadata: serde_json::from_str(&p.metadata_json).ok(),
    }
}

pub fn do_get_point(ctx: &AuthContext, node: &Node, name: &str, id: &str) -> Result<PointBody> {
    let coll = load(ctx, node, name)?;
    // A path id that parses as an integer names the numeric id first.
    let found = match id.parse::<u64>() {
        Ok(_) => node.raft.store.get_point(&coll, &point_id_key(id, true))?,
        Err(_) => None,
    };
    let found = match found {
        Some(p) => Some(p),
        None => node.raft.store.get_point(&coll, &point_id_key(id, false))?,
    };
    found.map(point_body).ok_or_else(|| ApiError::NotFound(format!("point {id} not found in {name}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub collection: String,
    pub vector: Option<Vec<f32>>,
    pub text: Option<String>,
    pub top_k: Option<usize>,
    pub filter: Option<Filter>,
    pub ef: Option<usize>,
    pub consistency: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SearchHit {
    pub id: Value,
    pub score: f32,
    pub metadata: Value,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
    /// Entries this node had not applied yet when it answered (local reads).
    pub behind_by: u64,
}

pub async fn do_search(ctx: &AuthContext, node: &Node, req: SearchRequest) -> Result<SearchResponse> {
    let consistency = Consistency::parse(req.consistency.as_deref().or(Some(&node.cfg.vector_db.default_consistency)))?;
    if consistency == Consistency::Linearizable {
        node.raft.read_barrier().await?;
    }
    let coll = load(ctx, node, &req.collection)?;
    let query = match (req.vector, &req.text) {
        (Some(v), _) => v,
        (None, Some(text)) => embed(ctx, node, &coll, text).await?,
        (None, None) => return Err(ApiError::InvalidArgument("a search needs a vector or a text".into())),
    };
    if query.len() != coll.dimension as usize || query.iter().any(|x| !x.is_finite()) {
        return Err(ApiError::InvalidArgument(format!(
            "the query needs {} finite components; it has {}",
            coll.dimension,
            query.len()
        )));
    }
    let top_k = req.top_k.unwrap_or(10);
    if !(1..=1000).contains(&top_k) {
        return Err(ApiError::InvalidArgument(format!("top_k {top_k} is out of range 1..=1000")));
    }
    if let Some(f) = &req.filter {
        f.validate().map_err(ApiError::InvalidArgument)?;
    }
    let metric = Metric::try_from(coll.metric).unwrap_or(Metric::Cosine);
    let mut points: Vec<(String, Vec<f32>, Value, Value)> = Vec::new();
    node.raft.store.for_each_point(&coll, |p| {
        if let Some(v) = decode_vector(&p.vector) {
            let meta = serde_json::from_str(&p.metadata_json).unwrap_or(Value::Object(Default::default()));
            points.push((point_id_key(&p.id, p.numeric_id), v, meta, id_value(&p)));
        }
        true
    })?;
    let hits = exact_search(
        metric,
        &query,
        top_k,
        req.filter.as_ref(),
        points.iter().map(|(k, v, m, _)| (k.as_str(), v.as_slice(), m)),
    );
    let by_key: std::collections::HashMap<&str, (&Value, &Value)> =
        points.iter().map(|(k, _, m, id)| (k.as_str(), (id, m))).collect();
    let results = hits
        .into_iter()
        .filter_map(|h| {
            let (id, meta) = by_key.get(h.id.as_str())?;
            Some(SearchHit { id: (*id).clone(), score: h.score, metadata: (*meta).clone() })
        })
        .collect();
    let m = node.raft.metrics();
    let behind_by = match consistency {
        Consistency::Linearizable => 0,
        Consistency::Local => synod_raft::commit_index(&m).saturating_sub(synod_raft::applied_index(&m)),
    };
    Ok(SearchResponse { results, behind_by })
}
