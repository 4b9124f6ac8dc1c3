//! Public gRPC `synod.v1.Vectors`: thin adapters over [`crate::service::vectors`].
//! Request messages are destructured exhaustively.

use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::grpc::{authorize, timed};
use crate::pb::vectors_server::Vectors;
use crate::pb::{self, *};
use crate::service::SharedNode;
use crate::service::vectors::{self as v, CollectionView};

pub struct VectorsGrpc {
    node: SharedNode,
}

impl VectorsGrpc {
    pub fn new(node: SharedNode) -> Self {
        VectorsGrpc { node }
    }
}

fn collection(c: CollectionView) -> pb::Collection {
    pb::Collection {
        name: c.name,
        dimension: c.dimension,
        metric: c.metric,
        hnsw_m: c.hnsw.m.unwrap_or(0),
        hnsw_ef_construction: c.hnsw.ef_construction.unwrap_or(0),
        hnsw_ef: c.hnsw.ef.unwrap_or(0),
        hnsw_quantization: c.hnsw.quantization.unwrap_or_default(),
        vectorizer: c.vectorizer.unwrap_or_default(),
        points: c.points,
        created_at_ms: c.created_at_ms,
        index: c.index,
        backend: c.backend.map(|b| pb::CollectionBackend {
            provider: b.provider,
            kind: b.kind,
            remote_name: b.remote_name,
        }),
        index_stats: c.index_stats.map(|s| pb::IndexStats {
            growing: s.growing,
            segments: s.segments,
            tombstones: s.tombstones,
            bytes: s.bytes,
        }),
    }
}

fn id_json(id: String, numeric: bool) -> Result<Value, ApiError> {
    if numeric {
        id.parse::<u64>().map(Value::from).map_err(|_| ApiError::InvalidArgument(format!("numeric id {id:?}")))
    } else {
        Ok(Value::String(id))
    }
}

fn id_ref(id: &Value) -> PointRef {
    match id {
        Value::Number(n) => PointRef { id: n.to_string(), numeric_id: true },
        Value::String(s) => PointRef { id: s.clone(), numeric_id: false },
        other => PointRef { id: other.to_string(), numeric_id: false },
    }
}

fn json_or_none(s: &str, what: &str) -> Result<Option<Value>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(s).map(Some).map_err(|e| ApiError::InvalidArgument(format!("{what} is not JSON: {e}")))
}

#[tonic::async_trait]
impl Vectors for VectorsGrpc {
    async fn create_collection(
        &self,
        req: Request<CreateCollectionRequest>,
    ) -> Result<Response<pb::Collection>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.CreateCollection")?;
        let CreateCollectionRequest {
            name,
            dimension,
            metric,
            hnsw_m,
            hnsw_ef_construction,
            hnsw_ef,
            vectorizer,
            index,
            backend,
            hnsw_quantization,
        } = req.into_inner();
        timed("Vectors.CreateCollection", async {
            let r = v::CollectionRequest {
                name,
                dimension,
                metric: Some(metric).filter(|m| !m.is_empty()),
                hnsw: v::HnswRequest {
                    m: hnsw_m,
                    ef_construction: hnsw_ef_construction,
                    ef: hnsw_ef,
                    quantization: Some(hnsw_quantization).filter(|s| !s.is_empty()),
                },
                vectorizer: Some(vectorizer).filter(|s| !s.is_empty()),
                index: Some(index).filter(|s| !s.is_empty()),
                backend: backend.map(|b| {
                    let set = |s: String| Some(s).filter(|s| !s.is_empty());
                    v::BackendRequest {
                        provider: set(b.provider),
                        kind: set(b.kind),
                        url: set(b.url),
                        api_key_env: set(b.api_key_env),
                    }
                }),
            };
            Ok(collection(v::do_create_collection(&ctx, &self.node, r).await?))
        })
        .await
    }

    async fn list_collections(&self, req: Request<ListCollectionsRequest>) -> Result<Response<CollectionList>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.ListCollections")?;
        let ListCollectionsRequest {} = req.into_inner();
        timed("Vectors.ListCollections", async {
            let collections = v::do_list_collections(&ctx, &self.node).await?.into_iter().map(collection).collect();
            Ok(CollectionList { collections })
        })
        .await
    }

    async fn get_collection(&self, req: Request<CollectionName>) -> Result<Response<pb::Collection>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.GetCollection")?;
        let CollectionName { name } = req.into_inner();
        timed("Vectors.GetCollection", async { Ok(collection(v::do_get_collection(&ctx, &self.node, &name).await?)) })
            .await
    }

    async fn delete_collection(&self, req: Request<CollectionName>) -> Result<Response<DeleteCollectionReply>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.DeleteCollection")?;
        let CollectionName { name } = req.into_inner();
        timed("Vectors.DeleteCollection", async {
            v::do_delete_collection(&ctx, &self.node, &name).await?;
            Ok(DeleteCollectionReply {})
        })
        .await
    }

    async fn upsert_points(&self, req: Request<UpsertPointsRequest>) -> Result<Response<pb::Collection>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.UpsertPoints")?;
        let UpsertPointsRequest { collection: name, points } = req.into_inner();
        timed("Vectors.UpsertPoints", async {
            let points = points
                .into_iter()
                .map(|p| {
                    let VectorPoint { id, numeric_id, vector, text, metadata_json } = p;
                    Ok(v::PointBody {
                        id: id_json(id, numeric_id)?,
                        vector: Some(vector).filter(|v| !v.is_empty()),
                        text: Some(text).filter(|t| !t.is_empty()),
                        metadata: json_or_none(&metadata_json, "metadata_json")?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok(collection(v::do_upsert_points(&ctx, &self.node, &name, v::UpsertRequest { points }).await?))
        })
        .await
    }

    async fn delete_points(&self, req: Request<DeletePointsRequest>) -> Result<Response<pb::Collection>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.DeletePoints")?;
        let DeletePointsRequest { collection: name, ids } = req.into_inner();
        timed("Vectors.DeletePoints", async {
            let ids = ids.into_iter().map(|r| id_json(r.id, r.numeric_id)).collect::<Result<Vec<_>, _>>()?;
            Ok(collection(v::do_delete_points(&ctx, &self.node, &name, v::DeletePointsRequest { ids }).await?))
        })
        .await
    }

    async fn get_point(&self, req: Request<GetPointRequest>) -> Result<Response<VectorPoint>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.GetPoint")?;
        let GetPointRequest { collection: name, id } = req.into_inner();
        timed("Vectors.GetPoint", async {
            let p = v::do_get_point(&ctx, &self.node, &name, &id).await?;
            let r = id_ref(&p.id);
            Ok(VectorPoint {
                id: r.id,
                numeric_id: r.numeric_id,
                vector: p.vector.unwrap_or_default(),
                text: p.text.unwrap_or_default(),
                metadata_json: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
            })
        })
        .await
    }

    async fn search(&self, req: Request<pb::SearchRequest>) -> Result<Response<SearchReply>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.Search")?;
        let pb::SearchRequest { collection: name, vector, text, top_k, filter_json, consistency, ef } =
            req.into_inner();
        timed("Vectors.Search", async {
            let q = query_body(pb::Query { vector, text, top_k, filter_json, ef })?;
            let r = v::SearchRequest {
                collection: name,
                vector: q.vector,
                text: q.text,
                top_k: q.top_k,
                filter: q.filter,
                ef: q.ef,
                consistency: Some(consistency).filter(|c| !c.is_empty()),
            };
            let out = v::do_search(&ctx, &self.node, r).await?;
            Ok(SearchReply { results: hits(out.results), behind_by: out.behind_by })
        })
        .await
    }

    async fn search_batch(&self, req: Request<SearchBatchRequest>) -> Result<Response<SearchBatchReply>, Status> {
        let ctx = authorize(&self.node, &req, "Vectors.SearchBatch")?;
        let SearchBatchRequest { collection, queries, consistency } = req.into_inner();
        timed("Vectors.SearchBatch", async {
            let r = v::BatchSearchRequest {
                collection,
                queries: queries.into_iter().map(query_body).collect::<Result<Vec<_>, _>>()?,
                consistency: Some(consistency).filter(|c| !c.is_empty()),
            };
            let out = v::do_search_batch(&ctx, &self.node, r).await?;
            Ok(SearchBatchReply {
                results: out.results.into_iter().map(|r| HitList { hits: hits(r) }).collect(),
                behind_by: out.behind_by,
            })
        })
        .await
    }
}

fn query_body(q: pb::Query) -> Result<v::QueryBody, ApiError> {
    let pb::Query { vector, text, top_k, filter_json, ef } = q;
    let filter = match json_or_none(&filter_json, "filter_json")? {
        None => None,
        Some(f) => Some(serde_json::from_value(f).map_err(|e| ApiError::InvalidArgument(format!("filter_json: {e}")))?),
    };
    Ok(v::QueryBody {
        vector: Some(vector).filter(|v| !v.is_empty()),
        text: Some(text).filter(|t| !t.is_empty()),
        top_k: Some(top_k as usize).filter(|k| *k != 0),
        filter,
        ef: Some(ef as usize).filter(|e| *e != 0),
    })
}

fn hits(results: Vec<v::SearchHit>) -> Vec<pb::SearchHit> {
    results
        .into_iter()
        .map(|h| pb::SearchHit { id: Some(id_ref(&h.id)), score: h.score, metadata_json: h.metadata.to_string() })
        .collect()
}
