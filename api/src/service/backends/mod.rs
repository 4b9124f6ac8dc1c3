//! Collections whose points live in an external vector database: created
//! with `"backend": {"provider": ...}`, a provider of `external.providers`
//! of kind `qdrant` (its REST API), `pinecone` (an index's data plane) or
//! `milvus` (its gRPC API).
//!
//! Only the collection's definition goes through Raft: its name,
//! dimension, metric, vectorizer, the provider's name and the backend's
//! own name for it ([`synod_store::pb::Backend`]). The points live in the
//! backend, whose consistency then applies (see README). Synod stays in
//! front of every call: the caller's authentication and tenant, the limits
//! and shapes [`crate::service::vectors`] checks, text embedded by the
//! collection's vectorizer, the tenant's vector quota, audit events, and
//! the provider's timeout, concurrency slots, retries and circuit breaker
//! ([`synod_plugins::external::Provider::guarded`]).
//!
//! [`External`] is the [`VectorStore`] of such a collection; underneath,
//! each database's wire format is a [`Wire`].

mod milvus;
mod pinecone;
mod qdrant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use synod_plugins::external::{Provider, ProviderKind};
use synod_store::pb::{self, Metric};
use synod_store::vector_search::Filter;

use crate::error::{ApiError, Result};
use crate::service::external::api_error;
use crate::service::vector_store::{
    Builtin, CollectionInfo, CollectionSpec, Match, Matches, PointId, PointRecord, VectorQuery, VectorStore,
};
use crate::service::{Consistency, Node};

/// One vector database's wire format. `name` is the backend's own name for
/// the collection ([`pb::Backend::remote_name`]).
#[tonic::async_trait]
pub(crate) trait Wire: Send + Sync {
    /// Creates it; an existing one of the same shape is fine.
    async fn create(&self, name: &str, dimension: u32, metric: Metric) -> Result<()>;
    /// Drops it and its points; one that is not there is fine.
    async fn drop_collection(&self, name: &str) -> Result<()>;
    async fn count(&self, name: &str) -> Result<u64>;
    /// Inserts or replaces every point.
    async fn upsert(&self, name: &str, points: &[PointRecord]) -> Result<()>;
    /// Ids that are not there are skipped.
    async fn delete(&self, name: &str, ids: &[PointId]) -> Result<()>;
    async fn get(&self, name: &str, id: &PointId) -> Result<Option<PointRecord>>;
    /// The best `q.top_k` points, best first, scored as Synod scores:
    /// higher is closer (cosine similarity, dot product, negated Euclidean
    /// distance).
    async fn search(&self, name: &str, metric: Metric, q: &VectorQuery) -> Result<Vec<Match>>;
}

/// The wire of each provider this node has used, kept so that connections
/// (Milvus's gRPC channel) are reused.
#[derive(Default)]
pub struct Wires {
    by_provider: Mutex<HashMap<String, Arc<dyn Wire>>>,
}

impl Wires {
    fn get(&self, node: &Node, provider: &str) -> Result<Arc<dyn Wire>> {
        let mut map = self.by_provider.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = map.get(provider) {
            return Ok(w.clone());
        }
        let p = node.external.get(provider).map_err(api_error)?;
        let wire: Arc<dyn Wire> = match p.spec().kind {
            ProviderKind::Qdrant => Arc::new(qdrant::Qdrant::new(p)),
            ProviderKind::Pinecone => Arc::new(pinecone::Pinecone::new(p)),
            ProviderKind::Milvus => Arc::new(milvus::Milvus::new(p)?),
            other => return Err(not_a_vector_store(provider, other)),
        };
        map.insert(provider.to_owned(), wire.clone());
        Ok(wire)
    }
}

fn not_a_vector_store(provider: &str, kind: ProviderKind) -> ApiError {
    ApiError::InvalidArgument(format!(
        "provider {provider} is an AI provider ({}), not a vector database (qdrant, pinecone or milvus)",
        kind.as_str()
    ))
}

/// The backend of a collection about to be created on `provider`: its
/// kind, and a fresh name there that no other collection uses (so a
/// collection created again under a deleted one's name never sees its old
/// points, as for built-in collections).
pub(crate) fn new_backend(node: &Node, provider: &str, tenant: &str, name: &str) -> Result<pb::Backend> {
    let p = node.external.get(provider).map_err(api_error)?;
    let kind = p.spec().kind;
    if !kind.is_vector_store() {
        return Err(not_a_vector_store(provider, kind));
    }
    // Letters, digits and '_' suit every backend (Milvus's rule, the strictest).
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    let remote_name = format!("synod_{}_{}_{:08x}", clean(tenant), clean(name), rand::random::<u32>());
    Ok(pb::Backend { provider: provider.to_owned(), kind: kind.as_str().to_owned(), remote_name })
}

/// A collection whose points live in a backend.
pub(crate) struct External<'a> {
    node: &'a Node,
    wire: Arc<dyn Wire>,
    backend: pb::Backend,
    metric: Metric,
}

impl<'a> External<'a> {
    pub(crate) fn new(node: &'a Node, backend: &pb::Backend, metric: Metric) -> Result<External<'a>> {
        Ok(External { node, wire: node.backends.get(node, &backend.provider)?, backend: backend.clone(), metric })
    }

    fn remote(&self) -> &str {
        &self.backend.remote_name
    }

    /// The definition from the replicated state, its point count from the
    /// backend.
    async fn counted(&self, tenant: &str, name: &str) -> Result<CollectionInfo> {
        let mut info = Builtin { node: self.node }
            .get_collection(tenant, name, Consistency::Local)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("collection {name} not found")))?;
        info.points = self.wire.count(self.remote()).await?;
        Ok(info)
    }

    /// `security.tenant_max_vectors` over the tenant's built-in points and
    /// this collection's points in the backend (other backend collections
    /// of the tenant are not counted: that would cost a call to each).
    async fn check_quota(&self, tenant: &str, more: usize) -> Result<()> {
        let max = self.node.cfg.security.tenant_max_vectors;
        if max == 0 {
            return Ok(());
        }
        let here = (self.node.raft.store.task_counters()?.into_iter())
            .find(|(t, n, _)| t == tenant && n == synod_store::vectors::VECTORS_COUNTER)
            .map_or(0, |(_, _, v)| v);
        let there = self.wire.count(self.remote()).await?;
        if here + there + more as u64 > max {
            // As the built-in collections answer a quota (429).
            return Err(ApiError::RateLimited {
                message: format!(
                    "tenant {tenant} stores {here} vectors here and {there} in {}; {more} more would pass its quota \
                     of {max} (security.tenant_max_vectors)",
                    self.backend.provider
                ),
                retry_after_s: 1,
            });
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl VectorStore for External<'_> {
    fn backend(&self) -> &'static str {
        match self.backend.kind.as_str() {
            "qdrant" => "qdrant",
            "pinecone" => "pinecone",
            _ => "milvus",
        }
    }

    async fn create_collection(&self, tenant: &str, spec: CollectionSpec) -> Result<CollectionInfo> {
        self.wire.create(self.remote(), spec.dimension, spec.metric).await?;
        match (Builtin { node: self.node }).create_collection(tenant, spec).await {
            Ok(info) => Ok(info),
            Err(e) => {
                // Refused (the name is taken, say): the fresh backend
                // collection is nobody's. An unknown outcome keeps it.
                if !matches!(e, ApiError::Indeterminate(_))
                    && let Err(e2) = self.wire.drop_collection(self.remote()).await
                {
                    tracing::warn!(backend = %self.remote(), error = %e2, "could not drop an unused backend collection");
                }
                Err(e)
            }
        }
    }

    async fn get_collection(&self, tenant: &str, name: &str, _read: Consistency) -> Result<Option<CollectionInfo>> {
        self.counted(tenant, name).await.map(Some)
    }

    async fn list_collections(&self, tenant: &str) -> Result<Vec<CollectionInfo>> {
        Builtin { node: self.node }.list_collections(tenant).await
    }

    /// The backend's collection goes first: if that fails, nothing changed.
    async fn delete_collection(&self, tenant: &str, name: &str) -> Result<()> {
        self.wire.drop_collection(self.remote()).await?;
        Builtin { node: self.node }.delete_collection(tenant, name).await
    }

    async fn upsert_points(&self, tenant: &str, collection: &str, points: Vec<PointRecord>) -> Result<CollectionInfo> {
        self.check_quota(tenant, points.len()).await?;
        self.wire.upsert(self.remote(), &points).await?;
        self.counted(tenant, collection).await
    }

    async fn delete_points(&self, tenant: &str, collection: &str, ids: Vec<PointId>) -> Result<CollectionInfo> {
        self.wire.delete(self.remote(), &ids).await?;
        self.counted(tenant, collection).await
    }

    async fn get_point(&self, _tenant: &str, _collection: &str, id: &PointId) -> Result<Option<PointRecord>> {
        self.wire.get(self.remote(), id).await
    }

    /// The backend answers at its own consistency: `read` does not apply.
    async fn search(
        &self,
        _tenant: &str,
        _collection: &str,
        queries: &[VectorQuery],
        _read: Consistency,
    ) -> Result<Matches> {
        let mut results = Vec::with_capacity(queries.len());
        for q in queries {
            results.push(self.wire.search(self.remote(), self.metric, q).await?);
        }
        Ok(Matches { results, behind_by: 0 })
    }
}

/// One JSON-over-HTTP call of a REST backend (Qdrant, Pinecone) through
/// the provider's guarded path. The key goes in `key_header`; `headers`
/// are sent as they are. Every call Synod makes of these backends is safe
/// to repeat.
async fn rest_call(
    p: &Provider,
    op: &'static str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    key_header: &'static str,
    headers: &[(&'static str, &'static str)],
) -> Result<Value> {
    let url = format!("{}/{path}", p.spec().base_url.trim_end_matches('/'));
    let (v, _) = p
        .guarded(op, true, || {
            let mut rb = p.http().request(method.clone(), &url);
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            if let Some(b) = &body {
                rb = rb.json(b);
            }
            if let Some(key) = &p.spec().api_key {
                rb = rb.header(key_header, key);
            }
            p.http_attempt(rb)
        })
        .await
        .map_err(api_error)?;
    Ok(v)
}

/// A filter condition a backend cannot express: 400, nothing sent.
fn cannot_filter(backend: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidArgument(format!("this collection's backend ({backend}) cannot run the filter: {why}"))
}

/// The filter's conditions with their values checked to be scalars
/// (strings, numbers, booleans), which every backend compares.
fn scalar_filter<'f>(backend: &str, f: Option<&'f Filter>) -> Result<&'f [synod_store::vector_search::Condition]> {
    let Some(f) = f else { return Ok(&[]) };
    for c in &f.must {
        let values = c.equals.iter().chain(c.one_of.iter().flatten());
        for v in values {
            if !(v.is_string() || v.is_number() || v.is_boolean()) {
                return Err(cannot_filter(
                    backend,
                    format!("{}: only strings, numbers and booleans match, not {v}", c.key),
                ));
            }
        }
    }
    Ok(&f.must)
}

/// Synod's score for a backend's answer: higher is closer. `squared`: the
/// backend reports L2 as the squared distance.
fn score(metric: Metric, raw: f64, l2_squared: bool) -> f32 {
    match metric {
        Metric::L2 if l2_squared => -(raw.max(0.0).sqrt()) as f32,
        Metric::L2 => -(raw.abs()) as f32,
        _ => raw as f32,
    }
}

/// A point's metadata as stored with it: an object, never null.
fn metadata_of(p: &PointRecord) -> Value {
    p.metadata.clone().unwrap_or_else(|| Value::Object(Default::default()))
}

/// The answer's JSON number at `v`, or an error naming the backend.
fn number(backend: &str, v: &Value, what: &str) -> Result<f64> {
    v.as_f64().ok_or_else(|| unexpected(backend, format!("{what} is not a number: {v}")))
}

fn unexpected(backend: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("the {backend} backend answered in an unexpected shape: {what}"))
}

/// A vector in a backend's answer.
fn vector_of(backend: &str, v: &Value) -> Result<Vec<f32>> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect::<Vec<f32>>())
        .filter(|x| x.len() == v.as_array().map_or(0, Vec::len))
        .ok_or_else(|| unexpected(backend, "a point's vector is not a list of numbers"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_store::vector_search::{Condition, Range};

    #[test]
    fn l2_scores_are_negated_distances_whatever_the_backend_reports() {
        assert_eq!(score(Metric::L2, 4.0, true), -2.0);
        assert_eq!(score(Metric::L2, 2.0, false), -2.0);
        assert_eq!(score(Metric::Cosine, 0.5, true), 0.5);
        assert_eq!(score(Metric::Dot, -3.0, false), -3.0);
    }

    #[test]
    fn only_scalar_values_reach_a_backend_filter() {
        let cond = |v: Value| Condition { key: "k".into(), equals: Some(v), one_of: None, range: None };
        let ok = Filter { must: vec![cond(Value::from("a")), cond(Value::from(2.5)), cond(Value::from(true))] };
        assert_eq!(scalar_filter("qdrant", Some(&ok)).unwrap().len(), 3);
        let bad = Filter { must: vec![cond(serde_json::json!({"a": 1}))] };
        let e = scalar_filter("qdrant", Some(&bad)).unwrap_err();
        assert!(e.to_string().contains("cannot run the filter"), "{e}");
        let range = Filter {
            must: vec![Condition {
                key: "n".into(),
                equals: None,
                one_of: None,
                range: Some(Range { gte: Some(1.0), lte: None }),
            }],
        };
        assert!(scalar_filter("pinecone", Some(&range)).is_ok());
    }
}
