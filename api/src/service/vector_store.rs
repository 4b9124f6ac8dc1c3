//! One interface over every vector backend (the seed's `BaseVectorDB`).
//!
//! [`crate::service::vectors`] (the service layer under REST, gRPC and the CLI)
//! checks the caller, the limits and the shapes, turns text into vectors
//! with the collection's vectorizer, and then calls a [`VectorStore`]. The
//! built-in one, [`Builtin`], replicates through Raft and searches this
//! node's index; [`crate::service::backends::External`] implements the
//! same trait for a collection whose points live in Qdrant or Pinecone
//! (each collection is its own collection or namespace there), and no
//! caller changes.

use std::sync::Arc;

use serde_json::Value;
use synod_store::pb::{self, Metric, command::Kind, command_result::Outcome};
use synod_store::vector_index::{IndexHit, Query};
use synod_store::vector_search::{Filter, exact_search};
use synod_store::vectors::{decode_vector, encode_vector, point_id_key};

use crate::error::{ApiError, Result};
use crate::service::{Consistency, Node};

/// A point id: an unsigned integer or a string (distinct namespaces: `7`
/// and `"7"` are two points).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PointId {
    Num(u64),
    Str(String),
}

impl PointId {
    /// The stored key form, `u:<n>` or `s:<string>`.
    pub fn key(&self) -> String {
        match self {
            PointId::Num(n) => point_id_key(&n.to_string(), true),
            PointId::Str(s) => point_id_key(s, false),
        }
    }

    /// Back from the key form.
    pub fn from_key(key: &str) -> Option<PointId> {
        match key.split_once(':')? {
            ("u", n) => n.parse().ok().map(PointId::Num),
            ("s", s) => Some(PointId::Str(s.to_string())),
            _ => None,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            PointId::Num(n) => Value::from(*n),
            PointId::Str(s) => Value::String(s.clone()),
        }
    }
}

/// What a collection is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSpec {
    pub name: String,
    pub dimension: u32,
    pub metric: Metric,
    pub m: u32,
    pub ef_construction: u32,
    pub ef: u32,
    /// How the HNSW graph holds vectors.
    pub quantization: pb::Quantization,
    /// A task type that turns `{"text"}` into `{"vector"}`.
    pub vectorizer: Option<String>,
    /// HNSW or flat (exact) search, for built-in collections.
    pub index: pb::IndexKind,
    /// The external database its points live in, if any.
    pub backend: Option<pb::Backend>,
}

/// A collection as a backend reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    pub spec: CollectionSpec,
    /// The record's uid, which names its index on every node.
    pub uid: u64,
    pub points: u64,
    pub created_at_ms: u64,
}

/// A point with its vector (text already embedded by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct PointRecord {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub text: Option<String>,
    /// A JSON object, or `None`.
    pub metadata: Option<Value>,
}

/// One query of a (batch) search.
#[derive(Debug, Clone)]
pub struct VectorQuery {
    pub vector: Vec<f32>,
    pub top_k: usize,
    pub filter: Option<Filter>,
    /// Candidate list size; `None` for the collection's default.
    pub ef: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Match {
    pub id: PointId,
    pub score: f32,
    pub metadata: Arc<Value>,
}

/// The answers of a batch search, one list per query, and how far behind
/// the answering replica was (0 unless read at `local`).
#[derive(Debug, Clone)]
pub struct Matches {
    pub results: Vec<Vec<Match>>,
    pub behind_by: u64,
}

/// A vector database as Synod's service layer uses it. Every method acts
/// in one tenant, already authorized; inputs are already checked against
/// the collection (dimension, finite components, batch size).
#[tonic::async_trait]
pub trait VectorStore: Send + Sync {
    /// The backend's name in logs and errors: `builtin`, `pinecone`, ...
    fn backend(&self) -> &'static str;
    async fn create_collection(&self, tenant: &str, spec: CollectionSpec) -> Result<CollectionInfo>;
    /// `None` when there is no such collection.
    async fn get_collection(&self, tenant: &str, name: &str, read: Consistency) -> Result<Option<CollectionInfo>>;
    async fn list_collections(&self, tenant: &str) -> Result<Vec<CollectionInfo>>;
    async fn delete_collection(&self, tenant: &str, name: &str) -> Result<()>;
    /// Inserts or replaces, all or nothing.
    async fn upsert_points(&self, tenant: &str, collection: &str, points: Vec<PointRecord>) -> Result<CollectionInfo>;
    /// Ids that do not exist are skipped.
    async fn delete_points(&self, tenant: &str, collection: &str, ids: Vec<PointId>) -> Result<CollectionInfo>;
    async fn get_point(&self, tenant: &str, collection: &str, id: &PointId) -> Result<Option<PointRecord>>;
    async fn search(
        &self,
        tenant: &str,
        collection: &str,
        queries: &[VectorQuery],
        read: Consistency,
    ) -> Result<Matches>;
}

/// The built-in store: points replicated through Raft into RocksDB,
/// searched in this node's HNSW index.
pub struct Builtin<'a> {
    pub node: &'a Node,
}

fn info(c: pb::CollectionRecord) -> CollectionInfo {
    let h = c.hnsw.unwrap_or_default();
    CollectionInfo {
        spec: CollectionSpec {
            name: c.name,
            dimension: c.dimension,
            metric: Metric::try_from(c.metric).unwrap_or(Metric::Cosine),
            m: h.m,
            ef_construction: h.ef_construction,
            ef: h.ef,
            quantization: pb::Quantization::try_from(h.quantization).unwrap_or(pb::Quantization::None),
            vectorizer: Some(c.vectorizer).filter(|v| !v.is_empty()),
            index: pb::IndexKind::try_from(c.index).unwrap_or(pb::IndexKind::Hnsw),
            backend: c.backend,
        },
        uid: c.uid,
        points: c.points,
        created_at_ms: c.created_at_ms,
    }
}

fn info_of(out: Outcome) -> Result<CollectionInfo> {
    match out {
        Outcome::Collection(c) => Ok(info(c)),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

fn record(p: pb::Point) -> PointRecord {
    let id = if p.numeric_id {
        p.id.parse().map(PointId::Num).unwrap_or(PointId::Str(p.id.clone()))
    } else {
        PointId::Str(p.id.clone())
    };
    PointRecord {
        id,
        vector: decode_vector(&p.vector).unwrap_or_default(),
        text: Some(p.text).filter(|t| !t.is_empty()),
        metadata: serde_json::from_str(&p.metadata_json).ok(),
    }
}

impl Builtin<'_> {
    fn record(&self, tenant: &str, name: &str) -> Result<pb::CollectionRecord> {
        self.node
            .raft
            .store
            .get_collection(tenant, name)?
            .ok_or_else(|| ApiError::NotFound(format!("collection {name} not found")))
    }

    /// As [`Self::record`], but a collection this node has not applied yet
    /// (created through another node a moment ago) is waited for: writes
    /// never fail on a lagging node's view.
    async fn record_fresh(&self, tenant: &str, name: &str) -> Result<pb::CollectionRecord> {
        match self.record(tenant, name) {
            Err(ApiError::NotFound(_)) => {
                self.node.raft.read_barrier().await?;
                self.record(tenant, name)
            }
            other => other,
        }
    }
}

#[tonic::async_trait]
impl VectorStore for Builtin<'_> {
    fn backend(&self) -> &'static str {
        "builtin"
    }

    async fn create_collection(&self, tenant: &str, spec: CollectionSpec) -> Result<CollectionInfo> {
        let rec = pb::CollectionRecord {
            tenant: tenant.into(),
            name: spec.name,
            dimension: spec.dimension,
            metric: spec.metric as i32,
            hnsw: Some(pb::HnswParams {
                m: spec.m,
                ef_construction: spec.ef_construction,
                ef: spec.ef,
                quantization: spec.quantization as i32,
            }),
            vectorizer: spec.vectorizer.unwrap_or_default(),
            index: spec.index as i32,
            backend: spec.backend,
            ..Default::default()
        };
        info_of(self.node.propose(Kind::CreateCollection(pb::CreateCollection { collection: Some(rec) })).await?.0)
    }

    async fn get_collection(&self, tenant: &str, name: &str, read: Consistency) -> Result<Option<CollectionInfo>> {
        read.barrier(self.node).await?;
        Ok(self.node.raft.store.get_collection(tenant, name)?.map(info))
    }

    async fn list_collections(&self, tenant: &str) -> Result<Vec<CollectionInfo>> {
        Ok(self.node.raft.store.list_collections(tenant)?.into_iter().map(info).collect())
    }

    async fn delete_collection(&self, tenant: &str, name: &str) -> Result<()> {
        self.node
            .propose(Kind::DeleteCollection(pb::DeleteCollection { tenant: tenant.into(), name: name.into() }))
            .await?;
        Ok(())
    }

    async fn upsert_points(&self, tenant: &str, collection: &str, points: Vec<PointRecord>) -> Result<CollectionInfo> {
        let points = points
            .into_iter()
            .map(|p| {
                let (id, numeric_id) = match p.id {
                    PointId::Num(n) => (n.to_string(), true),
                    PointId::Str(s) => (s, false),
                };
                pb::Point {
                    id,
                    numeric_id,
                    vector: encode_vector(&p.vector),
                    text: p.text.unwrap_or_default(),
                    metadata_json: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                }
            })
            .collect();
        let kind = Kind::UpsertPoints(pb::UpsertPoints {
            tenant: tenant.into(),
            collection: collection.into(),
            points,
            max_vectors: self.node.cfg.security.tenant_max_vectors,
            max_storage_bytes: self.node.cfg.security.tenant_max_storage_bytes.as_u64(),
        });
        info_of(self.node.propose(kind).await?.0)
    }

    async fn delete_points(&self, tenant: &str, collection: &str, ids: Vec<PointId>) -> Result<CollectionInfo> {
        self.record_fresh(tenant, collection).await?;
        let kind = Kind::DeletePoints(pb::DeletePoints {
            tenant: tenant.into(),
            collection: collection.into(),
            ids: ids.iter().map(PointId::key).collect(),
        });
        info_of(self.node.propose(kind).await?.0)
    }

    async fn get_point(&self, tenant: &str, collection: &str, id: &PointId) -> Result<Option<PointRecord>> {
        let coll = self.record(tenant, collection)?;
        Ok(self.node.raft.store.get_point(&coll, &id.key())?.map(record))
    }

    async fn search(
        &self,
        tenant: &str,
        collection: &str,
        queries: &[VectorQuery],
        read: Consistency,
    ) -> Result<Matches> {
        let behind_by = read.barrier(self.node).await?;
        let coll = self.record(tenant, collection)?;
        let cfg = &self.node.cfg.vector_db;
        let timeout = cfg.search_timeout.get();
        let bounds = SearchBounds {
            deadline: std::time::Instant::now() + timeout,
            max_bytes: cfg.max_search_response_size.as_u64(),
        };
        // Waiting for a slot counts against the deadline too.
        let permit = tokio::time::timeout(timeout, self.node.search_slots.clone().acquire_owned())
            .await
            .map_err(|_| too_slow(queries.len()))?
            .map_err(|e| ApiError::Internal(format!("search slots: {e}")))?;
        if is_short(&self.node.raft.store, &coll, queries) {
            let _permit = permit;
            let results = search_all(&self.node.raft.store, &coll, queries, bounds)?;
            return Ok(Matches { results, behind_by });
        }
        // On the blocking pool: the async threads (Raft, writes, other
        // requests) never wait behind a search.
        let store = self.node.raft.store.clone();
        let queries = queries.to_vec();
        let n = queries.len();
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            search_all(&store, &coll, &queries, bounds)
        });
        let results = match tokio::time::timeout_at(bounds.deadline.into(), work).await {
            Ok(joined) => joined.map_err(|e| ApiError::Internal(format!("search task: {e}")))??,
            // It stops at its next query; the caller is answered now.
            Err(_) => return Err(too_slow(n)),
        };
        Ok(Matches { results, behind_by })
    }
}

/// Largest `ef` of a search short enough to run on the request's thread.
const SHORT_EF: usize = 64;
/// Most unindexed points (each measured exactly) such a search may scan.
const SHORT_GROWING: usize = 1024;
/// Largest dimension of such a search.
const SHORT_DIMENSION: u32 = 1024;

/// Whether a search is bounded well under a millisecond: one unfiltered
/// query at ef at most [`SHORT_EF`] on an HNSW index with few unindexed
/// points. Such a search runs where the request is (about 0.3 ms at ef 64
/// on 384 dimensions); handing it to the blocking pool and back cost more
/// in thread wake-ups than a small search takes (profiled: a third of the
/// node's time in the scheduler). Longer searches still go to the pool, so
/// Raft and writes never wait behind them.
fn is_short(store: &synod_store::Store, coll: &pb::CollectionRecord, queries: &[VectorQuery]) -> bool {
    let [q] = queries else { return false };
    let Some(index) = store.vector_index().get(coll.uid) else { return false };
    q.filter.is_none()
        && !index.flat
        && coll.dimension <= SHORT_DIMENSION
        && q.ef.unwrap_or(index.default_ef) <= SHORT_EF
        && q.top_k <= SHORT_EF
        && index.growing_len() <= SHORT_GROWING
}

/// One query against collection `coll` in this node's index.
fn search_one(store: &synod_store::Store, coll: &pb::CollectionRecord, q: &VectorQuery) -> Vec<IndexHit> {
    let index = store.vector_index().get(coll.uid);
    let ef = q.ef.or(index.as_ref().map(|i| i.default_ef)).unwrap_or(coll.hnsw.as_ref().map_or(64, |h| h.ef as usize));
    let query = Query { vector: &q.vector, k: q.top_k, ef, filter: q.filter.as_ref() };
    match index {
        Some(index) => index.search(&query),
        // Applied to RocksDB a moment before the index saw it: exact.
        None => exact(store, coll, &query),
    }
}

fn exact(store: &synod_store::Store, coll: &pb::CollectionRecord, q: &Query<'_>) -> Vec<IndexHit> {
    let mut points: Vec<(String, Vec<f32>, Value)> = Vec::new();
    let _ = store.for_each_point(coll, |p| {
        if let Some(v) = decode_vector(&p.vector) {
            let meta = serde_json::from_str(&p.metadata_json).unwrap_or(Value::Object(Default::default()));
            points.push((point_id_key(&p.id, p.numeric_id), v, meta));
        }
        true
    });
    let metric = Metric::try_from(coll.metric).unwrap_or(Metric::Cosine);
    let cands = points.iter().map(|(k, v, m)| (k.as_str(), v.as_slice(), m));
    let meta: std::collections::HashMap<&str, &Value> = points.iter().map(|(k, _, m)| (k.as_str(), m)).collect();
    exact_search(metric, q.vector, q.k, q.filter, cands)
        .into_iter()
        .map(|h| IndexHit {
            metadata: Arc::new(meta.get(h.id.as_str()).map(|m| (*m).clone()).unwrap_or(Value::Null)),
            key: h.id.into(),
            score: h.score,
        })
        .collect()
}

/// What bounds one search request: its deadline and its answer's size.
#[derive(Debug, Clone, Copy)]
struct SearchBounds {
    deadline: std::time::Instant,
    max_bytes: u64,
}

/// Runs `queries` one after another (on the blocking pool), giving up at
/// the deadline or once the answer would outgrow `max_bytes`.
fn search_all(
    store: &synod_store::Store,
    coll: &pb::CollectionRecord,
    queries: &[VectorQuery],
    bounds: SearchBounds,
) -> Result<Vec<Vec<Match>>> {
    let mut bytes = 0u64;
    let mut out = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        if std::time::Instant::now() >= bounds.deadline {
            return Err(too_slow(queries.len()));
        }
        let mut hits = Vec::new();
        for h in search_one(store, coll, q) {
            let Some(id) = PointId::from_key(&h.key) else { continue };
            // The hit as JSON: id, score and metadata, with a little framing.
            bytes += 48 + h.key.len() as u64 + serde_json::to_vec(&*h.metadata).map_or(0, |m| m.len() as u64);
            if bytes > bounds.max_bytes {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the answer would be larger than vector_db.max_search_response_size ({} bytes) at query {i}; \
                     ask for fewer hits (top_k) or fewer queries",
                    bounds.max_bytes
                )));
            }
            hits.push(Match { id, score: h.score, metadata: h.metadata });
        }
        out.push(hits);
    }
    Ok(out)
}

fn too_slow(of: usize) -> ApiError {
    ApiError::Unavailable(format!(
        "a search of {of} queries took longer than vector_db.search_timeout; nothing was changed: retry with fewer \
         queries, a smaller ef or a filter that matches more"
    ))
}
