//! Vector collections in the service layer: create, list, get, delete;
//! upsert, get and delete points; search one query or a batch. Collections
//! belong to the caller's tenant. This layer checks the caller, the limits
//! and the shapes, embeds text with the collection's vectorizer, and hands
//! the rest to the collection's [`VectorStore`]: the built-in one (Raft and
//! HNSW or flat search), or [`External`] for a collection whose points live
//! in Qdrant, Pinecone or Milvus.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use synod_store::pb::{IndexKind, Metric, Quantization};
use synod_store::vector_search::Filter;

use crate::auth::AuthContext;
use crate::error::{ApiError, Result};
use crate::service::backends::{External, new_backend};
use crate::service::vector_store::{
    Builtin, CollectionInfo, CollectionSpec, Match, PointId, PointRecord, VectorQuery, VectorStore,
};
use crate::service::{Consistency, Node};

#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HnswRequest {
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    pub ef: Option<u32>,
    /// none (the default) or int8: the graph holds each vector as int8
    /// codes (a quarter of its f32 bytes) and a search rescores its
    /// candidates with the stored vectors, so scores stay exact.
    pub quantization: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionRequest {
    pub name: String,
    pub dimension: u32,
    pub metric: Option<String>,
    #[serde(default)]
    pub hnsw: HnswRequest,
    pub vectorizer: Option<String>,
    /// hnsw (default) or flat: exact search over every point.
    pub index: Option<String>,
    /// An external database for the points instead of this cluster.
    pub backend: Option<BackendRequest>,
}

/// `"backend"` of a new collection: a provider of `external.providers`
/// of kind qdrant, pinecone or milvus, named, or found by its kind and
/// URL. Synod calls only the databases its configuration names, with the
/// key its configuration gives: a tenant cannot point a node at a URL or
/// at an environment variable of its choosing.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendRequest {
    pub provider: Option<String>,
    /// qdrant, pinecone or milvus.
    pub kind: Option<String>,
    pub url: Option<String>,
    /// When given, must be the variable the provider's configuration names.
    pub api_key_env: Option<String>,
}

/// Where a collection's points live, when not in the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BackendView {
    pub provider: String,
    pub kind: String,
    /// The backend's own name for the collection.
    pub remote_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CollectionView {
    pub name: String,
    pub dimension: u32,
    pub metric: String,
    pub hnsw: HnswRequest,
    pub vectorizer: Option<String>,
    /// hnsw or flat.
    pub index: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendView>,
    pub points: u64,
    pub created_at_ms: u64,
    /// The index on the node that answers (none for a backend collection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_stats: Option<IndexStatsView>,
}

/// A collection's index on one node: the points not yet in a graph, the
/// graphs (segments), the deleted points still in them, and the memory it
/// takes (estimated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IndexStatsView {
    pub growing: u64,
    pub segments: u64,
    pub tombstones: u64,
    pub bytes: u64,
}

/// The store of a collection: where its points live.
fn store_of<'a>(node: &'a Node, coll: &CollectionInfo) -> Result<Box<dyn VectorStore + 'a>> {
    Ok(match &coll.spec.backend {
        None => Box::new(Builtin { node }),
        Some(b) => Box::new(External::new(node, b, coll.spec.metric)?),
    })
}

/// The provider a collection's `"backend"` names (see [`BackendRequest`]).
fn backend_provider(node: &Node, b: &BackendRequest) -> Result<String> {
    let providers = &node.cfg.external.providers;
    let name = match (&b.provider, &b.kind, &b.url) {
        (Some(p), _, _) => p.clone(),
        (None, Some(kind), Some(url)) => {
            let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
            providers
                .iter()
                .find(|(_, p)| {
                    serde_json::to_value(p.kind).ok().and_then(|k| k.as_str().map(|k| k == kind)).unwrap_or(false)
                        && same(&p.base_url, url)
                })
                .map(|(n, _)| n.clone())
                .ok_or_else(|| {
                    ApiError::InvalidArgument(format!(
                        "no provider of kind {kind} at {url} is configured (external.providers): Synod calls only \
                         the databases an operator declared"
                    ))
                })?
        }
        _ => {
            return Err(ApiError::InvalidArgument(
                "backend: name a \"provider\", or give its \"kind\" and \"url\"".into(),
            ));
        }
    };
    let Some(cfg) = providers.get(&name) else {
        return Err(ApiError::InvalidArgument(format!("backend: no provider named {name:?} (external.providers)")));
    };
    if let Some(kind) = &b.kind
        && serde_json::to_value(cfg.kind).ok().and_then(|k| k.as_str().map(|k| k != kind)).unwrap_or(true)
    {
        return Err(ApiError::InvalidArgument(format!("backend: provider {name} is not of kind {kind}")));
    }
    if let Some(var) = &b.api_key_env
        && cfg.api_key_env.as_deref() != Some(var.as_str())
    {
        return Err(ApiError::InvalidArgument(format!(
            "backend: provider {name} takes its key from its own configuration, not from {var}"
        )));
    }
    Ok(name)
}

fn quantization_name(q: Quantization) -> &'static str {
    match q {
        Quantization::None => "none",
        Quantization::Int8 => "int8",
    }
}

fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::Cosine => "cosine",
        Metric::L2 => "l2",
        Metric::Dot => "dot",
        Metric::Unspecified => "unknown",
    }
}

/// A collection as clients see it. One in a backend is indexed there: its
/// `index` is the backend's kind and it has no HNSW parameters of Synod's.
fn collection_view(node: &Node, c: CollectionInfo) -> CollectionView {
    let index_stats = match &c.spec.backend {
        None => node.raft.store.vector_index().get(c.uid).map(|i| {
            let s = i.stats();
            IndexStatsView {
                growing: s.growing as u64,
                segments: s.segments as u64,
                tombstones: s.tombstones as u64,
                bytes: s.bytes,
            }
        }),
        Some(_) => None,
    };
    let hnsw = match &c.spec.backend {
        None => HnswRequest {
            m: Some(c.spec.m),
            ef_construction: Some(c.spec.ef_construction),
            ef: Some(c.spec.ef),
            quantization: Some(quantization_name(c.spec.quantization).to_string()),
        },
        Some(_) => HnswRequest::default(),
    };
    CollectionView {
        metric: metric_name(c.spec.metric).to_string(),
        index: match (&c.spec.backend, c.spec.index) {
            (Some(b), _) => b.kind.clone(),
            (None, IndexKind::Flat) => "flat".to_string(),
            (None, IndexKind::Hnsw | IndexKind::Unspecified) => "hnsw".to_string(),
        },
        backend: c.spec.backend.map(|b| BackendView { provider: b.provider, kind: b.kind, remote_name: b.remote_name }),
        name: c.spec.name,
        dimension: c.spec.dimension,
        hnsw,
        vectorizer: c.spec.vectorizer,
        points: c.points,
        created_at_ms: c.created_at_ms,
        index_stats,
    }
}

pub async fn do_create_collection(ctx: &AuthContext, node: &Node, req: CollectionRequest) -> Result<CollectionView> {
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
    if let Some(v) = &req.vectorizer {
        check_vectorizer(node, v, req.dimension)?;
    }
    let index = match req.index.as_deref() {
        None | Some("hnsw") => IndexKind::Hnsw,
        Some("flat") => IndexKind::Flat,
        Some(other) => return Err(ApiError::InvalidArgument(format!("unknown index {other:?} (hnsw or flat)"))),
    };
    let quantization = match req.hnsw.quantization.as_deref() {
        None | Some("none") => Quantization::None,
        Some("int8") => Quantization::Int8,
        Some(other) => {
            return Err(ApiError::InvalidArgument(format!("unknown hnsw.quantization {other:?} (none or int8)")));
        }
    };
    if index == IndexKind::Flat && quantization != Quantization::None {
        return Err(ApiError::InvalidArgument(
            "hnsw.quantization applies to the hnsw index; a flat index searches the f32 vectors exactly".into(),
        ));
    }
    let hnsw_given =
        req.hnsw.m.or(req.hnsw.ef_construction).or(req.hnsw.ef).is_some() || req.hnsw.quantization.is_some();
    let backend = match &req.backend {
        None => None,
        Some(_) if req.index.is_some() || hnsw_given => {
            return Err(ApiError::InvalidArgument(
                "index and hnsw apply to built-in collections; a backend indexes its own".into(),
            ));
        }
        Some(b) => Some(new_backend(node, &backend_provider(node, b)?, &ctx.tenant, &req.name)?),
    };
    let spec = CollectionSpec {
        name: req.name,
        dimension: req.dimension,
        metric,
        m,
        ef_construction,
        ef,
        quantization,
        vectorizer: req.vectorizer,
        index,
        backend: backend.clone(),
    };
    let what = format!("{} in {}", spec.name, ctx.tenant);
    let created = match &backend {
        None => Builtin { node }.create_collection(&ctx.tenant, spec).await?,
        Some(b) => {
            let created = External::new(node, b, metric)?.create_collection(&ctx.tenant, spec).await?;
            crate::service::authn::audit(
                "collection_created",
                &ctx.subject,
                &format!("{what} on {} ({}: {})", b.provider, b.kind, b.remote_name),
            );
            created
        }
    };
    Ok(collection_view(node, created))
}

/// The collection's definition read at `read`; one in a backend has its
/// point count from there.
async fn load(ctx: &AuthContext, node: &Node, name: &str, read: Consistency) -> Result<CollectionInfo> {
    let info = definition(ctx, node, name, read).await?;
    match &info.spec.backend {
        None => Ok(info),
        Some(_) => store_of(node, &info)?
            .get_collection(&ctx.tenant, name, read)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("collection {name} not found"))),
    }
}

/// The definition only, without asking a backend for its count.
///
/// A collection in a backend is never used from a stale definition: one
/// read at `local` that names a backend is read again at `leader`, so a
/// lagging node never calls a backend collection that was dropped and
/// replaced (the built-in store resolves the name in apply instead).
async fn definition(ctx: &AuthContext, node: &Node, name: &str, read: Consistency) -> Result<CollectionInfo> {
    let get = |read| async move {
        Builtin { node }
            .get_collection(&ctx.tenant, name, read)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("collection {name} not found")))
    };
    match get(read).await? {
        info if info.spec.backend.is_some() && read == Consistency::Local => get(Consistency::Leader).await,
        info => Ok(info),
    }
}

/// As [`definition`], but a collection this node has not applied yet
/// (created through another node a moment ago) is waited for: writes never
/// fail on a lagging node's view.
async fn definition_fresh(ctx: &AuthContext, node: &Node, name: &str) -> Result<CollectionInfo> {
    match definition(ctx, node, name, Consistency::Local).await {
        Err(ApiError::NotFound(_)) => definition(ctx, node, name, Consistency::Linearizable).await,
        other => other,
    }
}

/// Read at `vector_db.default_consistency`, as searches are: a point count
/// through any node includes what was acknowledged through another.
pub async fn do_get_collection(ctx: &AuthContext, node: &Node, name: &str) -> Result<CollectionView> {
    Ok(collection_view(node, load(ctx, node, name, consistency(node, None)?).await?))
}

/// Every collection of the tenant; one in a backend that cannot be reached
/// now is listed with 0 points rather than failing the list.
pub async fn do_list_collections(ctx: &AuthContext, node: &Node) -> Result<Vec<CollectionView>> {
    let all = Builtin { node }.list_collections(&ctx.tenant).await?;
    let counted = all.into_iter().map(|c| async move {
        if c.spec.backend.is_none() {
            return c;
        }
        let name = c.spec.name.clone();
        match store_of(node, &c) {
            Ok(s) => match s.get_collection(&ctx.tenant, &name, Consistency::Local).await {
                Ok(Some(counted)) => counted,
                _ => c,
            },
            Err(_) => c,
        }
    });
    Ok(futures::future::join_all(counted).await.into_iter().map(|c| collection_view(node, c)).collect())
}

pub async fn do_delete_collection(ctx: &AuthContext, node: &Node, name: &str) -> Result<()> {
    let coll = definition(ctx, node, name, Consistency::Linearizable).await?;
    store_of(node, &coll)?.delete_collection(&ctx.tenant, name).await?;
    crate::service::authn::audit("collection_deleted", &ctx.subject, &format!("{name} in {}", ctx.tenant));
    Ok(())
}

/// A point as clients send and see it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointBody {
    /// A string or an unsigned integer.
    pub id: Value,
    /// Numbers, or a string: base64 of little-endian f32s.
    #[serde(default, deserialize_with = "crate::service::vector_form::optional")]
    #[schema(schema_with = crate::service::vector_form::schema)]
    pub vector: Option<Vec<f32>>,
    pub text: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    pub points: Vec<PointBody>,
}

fn parse_id(id: &Value) -> Result<PointId> {
    match id {
        Value::String(s) if !s.is_empty() && s.len() <= 256 => Ok(PointId::Str(s.clone())),
        Value::Number(n) if n.is_u64() => Ok(PointId::Num(n.as_u64().unwrap_or_default())),
        other => Err(ApiError::InvalidArgument(format!(
            "point id {other}: a non-empty string (at most 256 bytes) or an unsigned integer"
        ))),
    }
}

fn check_vector(v: &[f32], dimension: u32, what: &str) -> Result<()> {
    if v.len() != dimension as usize {
        return Err(ApiError::InvalidArgument(format!(
            "{what} has {} components; the collection has dimension {dimension}",
            v.len()
        )));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(ApiError::InvalidArgument(format!("{what} has a NaN or infinite component")));
    }
    Ok(())
}

pub async fn do_upsert_points(
    ctx: &AuthContext,
    node: &Node,
    name: &str,
    req: UpsertRequest,
) -> Result<CollectionView> {
    let coll = definition_fresh(ctx, node, name).await?;
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
        let id = parse_id(&p.id).map_err(|e| at(e.to_string()))?;
        let vector = match (p.vector, &p.text) {
            (Some(v), _) => v,
            (None, Some(text)) => embed(ctx, node, &coll, text).await.map_err(|e| at(e.to_string()))?,
            (None, None) => return Err(at("a point needs a vector or a text".into())),
        };
        check_vector(&vector, coll.spec.dimension, "the vector").map_err(|e| at(e.to_string()))?;
        let metadata = match p.metadata {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => Some(m),
            Some(_) => return Err(at("metadata must be a JSON object".into())),
        };
        let max_meta = node.cfg.vector_db.max_metadata_size.as_u64();
        if let Some(m) = &metadata {
            let size = serde_json::to_vec(m).map_or(0, |b| b.len() as u64);
            if size > max_meta {
                return Err(at(format!(
                    "metadata of {size} bytes is larger than vector_db.max_metadata_size ({max_meta} bytes)"
                )));
            }
        }
        points.push(PointRecord { id, vector, text: p.text, metadata });
    }
    Ok(collection_view(node, store_of(node, &coll)?.upsert_points(&ctx.tenant, name, points).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    if req.ids.is_empty() || req.ids.len() > node.cfg.vector_db.max_batch {
        return Err(ApiError::InvalidArgument(format!(
            "{} ids in one delete; 1 to {} (vector_db.max_batch)",
            req.ids.len(),
            node.cfg.vector_db.max_batch
        )));
    }
    let ids = req.ids.iter().map(parse_id).collect::<Result<Vec<_>>>()?;
    let n = ids.len();
    let coll = definition_fresh(ctx, node, name).await?;
    let view = collection_view(node, store_of(node, &coll)?.delete_points(&ctx.tenant, name, ids).await?);
    crate::service::authn::audit("points_deleted", &ctx.subject, &format!("{n} ids from {name} in {}", ctx.tenant));
    Ok(view)
}

/// A collection's `vectorizer` is a model (`all-MiniLM-L6-v2`, `hashing-v1`),
/// run by the `vectorize` built-in, or a task type whose plugin takes
/// `{"text", "dimension"}` and answers `{"vector"}`. A model must be on some
/// live node and, when this node knows it, give the collection's dimension.
fn check_vectorizer(node: &Node, vectorizer: &str, dimension: u32) -> Result<()> {
    if node.plugins.get(vectorizer).is_some() || vectorizer == synod_plugins::HASHING_MODEL {
        return Ok(());
    }
    synod_plugins::check_model_name(vectorizer).map_err(|e| {
        ApiError::InvalidArgument(format!("vectorizer {vectorizer:?} is neither a model nor a task type: {e}"))
    })?;
    node.check_offered(&[synod_plugins::model_capability(vectorizer)])?;
    match node.models.dimension(vectorizer) {
        Some(d) if d != dimension as usize => Err(ApiError::InvalidArgument(format!(
            "vectorizer {vectorizer} gives {d}-dimensional vectors; the collection's dimension is {dimension}"
        ))),
        _ => Ok(()),
    }
}

/// The vector of `text` from the collection's vectorizer (see
/// [`check_vectorizer`]), embedded on this node.
async fn embed(ctx: &AuthContext, node: &Node, coll: &CollectionInfo, text: &str) -> Result<Vec<f32>> {
    let Some(vectorizer) = &coll.spec.vectorizer else {
        return Err(ApiError::InvalidArgument(format!(
            "collection {} has no vectorizer: send vectors, or create it with \"vectorizer\"",
            coll.spec.name
        )));
    };
    let run = synod_plugins::TaskContext {
        task_id: format!("embed:{}", coll.spec.name),
        tenant: ctx.tenant.clone(),
        attempt: 1,
        plugin_version: None,
        cancel: synod_plugins::CancelToken::new(),
    };
    let (plugin, payload) = if node.plugins.get(vectorizer).is_some() {
        (vectorizer.as_str(), serde_json::json!({"text": text, "dimension": coll.spec.dimension}))
    } else {
        ("vectorize", serde_json::json!({"text": text, "dimension": coll.spec.dimension, "model": vectorizer}))
    };
    let out = node.plugins.execute(plugin, payload, run, std::time::Duration::from_secs(30)).await.map_err(|e| {
        let message = format!("vectorizer {vectorizer}: {e}");
        // A model missing on this node may be on another: the caller can retry there.
        if e.retryable() { ApiError::Unavailable(message) } else { ApiError::InvalidArgument(message) }
    })?;
    let v: Vec<f32> = out["vector"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect())
        .unwrap_or_default();
    if v.len() != coll.spec.dimension as usize || v.iter().any(|x| !x.is_finite()) {
        return Err(ApiError::Internal(format!(
            "vectorizer {vectorizer} answered {} components for dimension {}",
            v.len(),
            coll.spec.dimension
        )));
    }
    Ok(v)
}

/// A point as it is read back. Its metadata is always an object, `{}` when
/// it was stored without any, as in a search hit: one shape to read.
fn point_body(p: PointRecord) -> PointBody {
    let metadata = Some(p.metadata.unwrap_or_else(|| Value::Object(Default::default())));
    PointBody { id: p.id.to_json(), vector: Some(p.vector), text: p.text, metadata }
}

pub async fn do_get_point(ctx: &AuthContext, node: &Node, name: &str, id: &str) -> Result<PointBody> {
    // At the default consistency, as searches: a point acknowledged
    // through another node is found.
    let coll = definition(ctx, node, name, consistency(node, None)?).await?;
    let s = store_of(node, &coll)?;
    // A path id that parses as an integer names the numeric id first.
    let found = match id.parse::<u64>() {
        Ok(n) => s.get_point(&ctx.tenant, name, &PointId::Num(n)).await?,
        Err(_) => None,
    };
    let found = match found {
        Some(p) => Some(p),
        None => s.get_point(&ctx.tenant, name, &PointId::Str(id.to_string())).await?,
    };
    found.map(point_body).ok_or_else(|| ApiError::NotFound(format!("point {id} not found in {name}")))
}

/// One query of a search: a vector or a text, and what to return.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// Numbers, or a string: base64 of little-endian f32s.
    #[serde(default, deserialize_with = "crate::service::vector_form::optional")]
    #[schema(schema_with = crate::service::vector_form::schema)]
    pub vector: Option<Vec<f32>>,
    pub text: Option<String>,
    pub top_k: Option<usize>,
    pub filter: Option<Filter>,
    pub ef: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub collection: String,
    /// Numbers, or a string: base64 of little-endian f32s.
    #[serde(default, deserialize_with = "crate::service::vector_form::optional")]
    #[schema(schema_with = crate::service::vector_form::schema)]
    pub vector: Option<Vec<f32>>,
    pub text: Option<String>,
    pub top_k: Option<usize>,
    pub filter: Option<Filter>,
    pub ef: Option<usize>,
    pub consistency: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSearchRequest {
    pub collection: String,
    pub queries: Vec<QueryBody>,
    pub consistency: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub id: Value,
    pub score: f32,
    pub metadata: Value,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
    /// Committed entries this node had not applied when it answered
    /// (`local` reads; 0 otherwise).
    pub behind_by: u64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchSearchResponse {
    /// One list per query, in order.
    pub results: Vec<Vec<SearchHit>>,
    pub behind_by: u64,
}

fn hit(m: Match) -> SearchHit {
    SearchHit {
        id: m.id.to_json(),
        score: m.score,
        metadata: std::sync::Arc::try_unwrap(m.metadata).unwrap_or_else(|a| (*a).clone()),
    }
}

async fn query(ctx: &AuthContext, node: &Node, coll: &CollectionInfo, q: QueryBody, at: &str) -> Result<VectorQuery> {
    let with = |e: ApiError| match e {
        ApiError::InvalidArgument(m) if !at.is_empty() => ApiError::InvalidArgument(format!("{at}: {m}")),
        other => other,
    };
    let vector = match (q.vector, &q.text) {
        (Some(_), Some(_)) => {
            return Err(with(ApiError::InvalidArgument("a query has a vector or a text, not both".into())));
        }
        (Some(v), None) => v,
        (None, Some(text)) => embed(ctx, node, coll, text).await.map_err(with)?,
        (None, None) => return Err(with(ApiError::InvalidArgument("a search needs a vector or a text".into()))),
    };
    check_vector(&vector, coll.spec.dimension, "the query").map_err(with)?;
    let top_k = q.top_k.unwrap_or(10);
    if !(1..=1000).contains(&top_k) {
        return Err(with(ApiError::InvalidArgument(format!("top_k {top_k} is out of range 1..=1000"))));
    }
    if let Some(ef) = q.ef
        && !(1..=10_000).contains(&ef)
    {
        return Err(with(ApiError::InvalidArgument(format!("ef {ef} is out of range 1..=10000"))));
    }
    if let Some(f) = &q.filter {
        f.validate().map_err(|m| with(ApiError::InvalidArgument(m)))?;
        let cfg = &node.cfg.vector_db;
        if f.must.len() > cfg.max_filter_conditions {
            return Err(with(ApiError::InvalidArgument(format!(
                "{} filter conditions; at most {} (vector_db.max_filter_conditions)",
                f.must.len(),
                cfg.max_filter_conditions
            ))));
        }
        let values: usize = f.must.iter().filter_map(|c| c.one_of.as_ref()).map(Vec::len).sum();
        if values > cfg.max_filter_values {
            return Err(with(ApiError::InvalidArgument(format!(
                "{values} values in the filter's `in` lists; at most {} (vector_db.max_filter_values)",
                cfg.max_filter_values
            ))));
        }
    }
    Ok(VectorQuery { vector, top_k, filter: q.filter, ef: q.ef })
}

fn consistency(node: &Node, asked: Option<&str>) -> Result<Consistency> {
    Consistency::parse(Some(asked.unwrap_or(&node.cfg.vector_db.default_consistency)))
}

pub async fn do_search(ctx: &AuthContext, node: &Node, req: SearchRequest) -> Result<SearchResponse> {
    let read = consistency(node, req.consistency.as_deref())?;
    let coll = definition(ctx, node, &req.collection, read).await?;
    let body = QueryBody { vector: req.vector, text: req.text, top_k: req.top_k, filter: req.filter, ef: req.ef };
    let q = query(ctx, node, &coll, body, "").await?;
    // The barrier ran in `load`; the search reads what this node has now.
    let mut out = store_of(node, &coll)?.search(&ctx.tenant, &req.collection, &[q], Consistency::Local).await?;
    let behind_by = if read == Consistency::Local { out.behind_by } else { 0 };
    let results = out.results.pop().unwrap_or_default().into_iter().map(hit).collect();
    Ok(SearchResponse { results, behind_by })
}

pub async fn do_search_batch(ctx: &AuthContext, node: &Node, req: BatchSearchRequest) -> Result<BatchSearchResponse> {
    let read = consistency(node, req.consistency.as_deref())?;
    let max = node.cfg.vector_db.max_batch;
    if req.queries.is_empty() || req.queries.len() > max {
        return Err(ApiError::InvalidArgument(format!(
            "{} queries in one batch; 1 to {max} (vector_db.max_batch)",
            req.queries.len()
        )));
    }
    let hits: usize = req.queries.iter().map(|q| q.top_k.unwrap_or(10).min(1000)).sum();
    let max_hits = node.cfg.vector_db.max_search_hits;
    if hits > max_hits {
        return Err(ApiError::InvalidArgument(format!(
            "the batch asks for {hits} hits (top_k summed over its queries); at most {max_hits} \
             (vector_db.max_search_hits)"
        )));
    }
    let coll = definition(ctx, node, &req.collection, read).await?;
    let mut queries = Vec::with_capacity(req.queries.len());
    for (i, q) in req.queries.into_iter().enumerate() {
        queries.push(query(ctx, node, &coll, q, &format!("queries[{i}]")).await?);
    }
    let out = store_of(node, &coll)?.search(&ctx.tenant, &req.collection, &queries, Consistency::Local).await?;
    let behind_by = if read == Consistency::Local { out.behind_by } else { 0 };
    Ok(BatchSearchResponse {
        results: out.results.into_iter().map(|r| r.into_iter().map(hit).collect()).collect(),
        behind_by,
    })
}
