//! Milvus over its gRPC API (`milvus.proto.milvus.MilvusService`, the
//! subset in `api/proto/milvus/milvus.proto`); the provider's `base_url` is
//! the server (`http://host:19530`), its key goes in `authorization`.
//!
//! Each collection is a Milvus collection of four fields: `pk` (VarChar,
//! Synod's key form `u:7` / `s:doc-1`), `vector` (FloatVector), `text`
//! (VarChar) and `metadata` (JSON), indexed with the collection's metric
//! and loaded at creation. Reads and searches ask for Strong consistency:
//! they see every write acknowledged before them. Filters become Milvus
//! boolean expressions on `metadata["<key>"]`.

use std::sync::Arc;

use prost::Message;
use serde_json::Value;
use synod_plugins::external::{Attempt, ExternalError, Provider};
use synod_store::pb::Metric;
use tonic::transport::{Channel, Endpoint};

use super::{Wire, scalar_filter, score, unexpected};
use crate::error::{ApiError, Result};
use crate::service::external::api_error;
use crate::service::vector_store::{Match, PointId, PointRecord, VectorQuery};

#[allow(clippy::all, clippy::pedantic)]
mod pb {
    tonic::include_proto!("milvus.proto.milvus");
}

use pb::milvus_service_client::MilvusServiceClient;

const NAME: &str = "milvus";
/// Longest id in key form Synod makes: `s:` and 256 bytes.
const PK_MAX: &str = "300";
/// Longest text kept with a point (Milvus's VarChar limit).
const TEXT_MAX: usize = 65_535;

pub(super) struct Milvus {
    p: Arc<Provider>,
    channel: Channel,
}

fn kv(key: &str, value: impl Into<String>) -> pb::KeyValuePair {
    pb::KeyValuePair { key: key.to_owned(), value: value.into() }
}

fn metric_type(metric: Metric) -> &'static str {
    match metric {
        Metric::L2 => "L2",
        Metric::Dot => "IP",
        _ => "COSINE",
    }
}

/// A string literal of a Milvus expression.
fn literal(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A JSON scalar as a Milvus expression literal.
fn value_literal(v: &Value) -> String {
    match v {
        Value::String(s) => literal(s),
        other => other.to_string(),
    }
}

/// Synod's filter as a Milvus boolean expression.
fn expression(q: &VectorQuery) -> Result<String> {
    let conds = scalar_filter(NAME, q.filter.as_ref())?;
    let mut parts = Vec::with_capacity(conds.len());
    for c in conds {
        let field = format!("metadata[{}]", literal(&c.key));
        match (&c.equals, &c.one_of, &c.range) {
            (Some(v), _, _) => parts.push(format!("{field} == {}", value_literal(v))),
            // As equalities: milvus-lite takes `in` only on a whole field.
            (_, Some(vs), _) if vs.is_empty() => parts.push("false".to_owned()),
            (_, Some(vs), _) => {
                let any: Vec<String> = vs.iter().map(|v| format!("{field} == {}", value_literal(v))).collect();
                parts.push(format!("({})", any.join(" || ")));
            }
            (_, _, Some(r)) => {
                if let Some(g) = r.gte {
                    parts.push(format!("{field} >= {g}"));
                }
                if let Some(l) = r.lte {
                    parts.push(format!("{field} <= {l}"));
                }
            }
            _ => {}
        }
    }
    Ok(parts.join(" && "))
}

/// Milvus's codes for a collection not loaded and an index that exists.
const NOT_LOADED: i32 = 101;
const INDEX_EXISTS: i32 = 35;

/// Whether `e` is Milvus's refusal with `code` (see [`failure`]).
fn has_code(e: &ApiError, code: i32) -> bool {
    e.to_string().contains(&format!("(code {code})"))
}

/// The Milvus failure of `status`, if it is one.
fn failure(status: Option<&pb::Status>) -> Option<String> {
    let s = status?;
    (s.code != 0 || s.legacy_code != 0).then(|| format!("{} (code {})", s.reason, s.code.max(s.legacy_code)))
}

fn column(name: &str, rows: &[pb::FieldData]) -> Option<pb::field_data::Field> {
    rows.iter().find(|f| f.field_name == name).and_then(|f| f.field.clone())
}

fn strings(f: Option<pb::field_data::Field>) -> Vec<String> {
    match f {
        Some(pb::field_data::Field::Scalars(pb::ScalarField { data: Some(pb::scalar_field::Data::StringData(s)) })) => {
            s.data
        }
        _ => Vec::new(),
    }
}

fn jsons(f: Option<pb::field_data::Field>) -> Vec<Value> {
    match f {
        Some(pb::field_data::Field::Scalars(pb::ScalarField { data: Some(pb::scalar_field::Data::JsonData(j)) })) => {
            j.data.iter().map(|b| serde_json::from_slice(b).unwrap_or(Value::Null)).collect()
        }
        _ => Vec::new(),
    }
}

impl Milvus {
    pub(super) fn new(p: Arc<Provider>) -> Result<Milvus> {
        let url = p.spec().base_url.clone();
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| ApiError::InvalidArgument(format!("provider {}: base_url {url}: {e}", p.spec().name)))?
            .connect_timeout(p.spec().timeout.min(std::time::Duration::from_secs(10)));
        Ok(Milvus { channel: endpoint.connect_lazy(), p })
    }

    fn client(&self) -> MilvusServiceClient<Channel> {
        MilvusServiceClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(key) = &self.p.spec().api_key {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(key);
            if let Ok(v) = token.parse() {
                req.metadata_mut().insert("authorization", v);
            }
        }
        req
    }

    /// One RPC under the provider's slots, breaker, timeout and retries.
    /// Every RPC Synod sends is safe to repeat. A Milvus error status in the
    /// answer is a refusal, not a failure of the server.
    async fn call<R, F, Fut>(&self, op: &'static str, status: fn(&R) -> Option<&pb::Status>, send: F) -> Result<R>
    where
        F: Fn(MilvusServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let name = self.p.spec().name.clone();
        let (answer, _) = self
            .p
            .guarded(op, true, || {
                let fut = send(self.client());
                let name = name.clone();
                async move {
                    match fut.await {
                        Ok(r) => {
                            let r = r.into_inner();
                            match failure(status(&r)) {
                                None => Attempt::Answer(r),
                                Some(reason) => Attempt::Final(ExternalError::Rejected {
                                    provider: name,
                                    status: 400,
                                    message: reason,
                                }),
                            }
                        }
                        Err(s) => self.grpc_failure(s),
                    }
                }
            })
            .await
            .map_err(api_error)?;
        Ok(answer)
    }

    fn grpc_failure<R>(&self, s: tonic::Status) -> Attempt<R> {
        use tonic::Code;
        let message = format!("{}: {}", s.code(), s.message());
        match s.code() {
            // Not connected, or turned away before doing anything.
            Code::Unavailable | Code::ResourceExhausted => self.p.failed(message, true, false, None),
            Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Internal | Code::Aborted => {
                self.p.failed(message, false, true, None)
            }
            _ => Attempt::Final(ExternalError::Rejected { provider: self.p.spec().name.clone(), status: 400, message }),
        }
    }

    async fn query(&self, name: &str, expr: String, output: &[&str]) -> Result<pb::QueryResults> {
        let req = pb::QueryRequest {
            collection_name: name.to_owned(),
            expr,
            output_fields: output.iter().map(|s| (*s).to_owned()).collect(),
            consistency_level: pb::ConsistencyLevel::Strong as i32,
            use_default_consistency: false,
            ..Default::default()
        };
        let run = || {
            self.call(
                "query",
                |r: &pb::QueryResults| r.status.as_ref(),
                |mut c| {
                    let req = self.request(req.clone());
                    async move { c.query(req).await }
                },
            )
        };
        self.loading(name, run).await
    }

    /// Loads the collection into the server's memory (a restarted server
    /// has it on disk only; loading a loaded one does nothing).
    async fn load(&self, name: &str) -> Result<()> {
        let load = pb::LoadCollectionRequest { collection_name: name.to_owned(), ..Default::default() };
        self.call(
            "collection_load",
            |r: &pb::Status| Some(r),
            |mut c| {
                let req = self.request(load.clone());
                async move { c.load_collection(req).await }
            },
        )
        .await
        .map(drop)
    }

    /// `run`, and once more after loading the collection if the server
    /// answered that it is not loaded (it restarted since).
    async fn loading<R, Fut>(&self, name: &str, run: impl Fn() -> Fut) -> Result<R>
    where
        Fut: std::future::Future<Output = Result<R>>,
    {
        match run().await {
            Err(e) if has_code(&e, NOT_LOADED) => {
                self.load(name).await?;
                run().await
            }
            other => other,
        }
    }
}

#[tonic::async_trait]
impl Wire for Milvus {
    async fn create(&self, name: &str, dimension: u32, metric: Metric) -> Result<()> {
        let field = |id: i64, fname: &str, t: pb::DataType, params: Vec<pb::KeyValuePair>, pk: bool| pb::FieldSchema {
            field_id: id,
            name: fname.to_owned(),
            is_primary_key: pk,
            data_type: t as i32,
            type_params: params,
            ..Default::default()
        };
        let schema = pb::CollectionSchema {
            name: name.to_owned(),
            description: "a Synod collection".to_owned(),
            fields: vec![
                field(100, "pk", pb::DataType::VarChar, vec![kv("max_length", PK_MAX)], true),
                field(101, "vector", pb::DataType::FloatVector, vec![kv("dim", dimension.to_string())], false),
                field(102, "text", pb::DataType::VarChar, vec![kv("max_length", TEXT_MAX.to_string())], false),
                field(103, "metadata", pb::DataType::Json, vec![], false),
            ],
            ..Default::default()
        };
        let has = pb::HasCollectionRequest { collection_name: name.to_owned(), ..Default::default() };
        let exists = self
            .call(
                "collection_create",
                |r: &pb::BoolResponse| r.status.as_ref(),
                |mut c| {
                    let req = self.request(has.clone());
                    async move { c.has_collection(req).await }
                },
            )
            .await?
            .value;
        if !exists {
            let create = pb::CreateCollectionRequest {
                collection_name: name.to_owned(),
                schema: schema.encode_to_vec(),
                shards_num: 1,
                consistency_level: pb::ConsistencyLevel::Strong as i32,
                ..Default::default()
            };
            self.call(
                "collection_create",
                |r: &pb::Status| Some(r),
                |mut c| {
                    let req = self.request(create.clone());
                    async move { c.create_collection(req).await }
                },
            )
            .await?;
        }
        let index = pb::CreateIndexRequest {
            collection_name: name.to_owned(),
            field_name: "vector".to_owned(),
            extra_params: vec![
                kv("index_type", "AUTOINDEX"),
                kv("metric_type", metric_type(metric)),
                kv("params", "{}"),
            ],
            index_name: "vector".to_owned(),
            ..Default::default()
        };
        let indexed = self
            .call(
                "collection_create",
                |r: &pb::Status| Some(r),
                |mut c| {
                    let req = self.request(index.clone());
                    async move { c.create_index(req).await }
                },
            )
            .await;
        match indexed {
            // A create tried again after it got this far.
            Err(e) if has_code(&e, INDEX_EXISTS) => {}
            other => {
                other?;
            }
        }
        self.load(name).await
    }

    async fn drop_collection(&self, name: &str) -> Result<()> {
        let req = pb::DropCollectionRequest { collection_name: name.to_owned(), ..Default::default() };
        let r = self
            .call(
                "collection_drop",
                |r: &pb::Status| Some(r),
                |mut c| {
                    let req = self.request(req.clone());
                    async move { c.drop_collection(req).await }
                },
            )
            .await;
        match r {
            Err(ApiError::InvalidArgument(m)) if m.contains("not") && m.contains("exist") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn count(&self, name: &str) -> Result<u64> {
        let r = self.query(name, String::new(), &["count(*)"]).await?;
        match column("count(*)", &r.fields_data) {
            Some(pb::field_data::Field::Scalars(pb::ScalarField {
                data: Some(pb::scalar_field::Data::LongData(l)),
            })) => Ok(l.data.first().copied().unwrap_or(0).max(0) as u64),
            _ => Err(unexpected(NAME, "count(*) did not come back as a number")),
        }
    }

    async fn upsert(&self, name: &str, points: &[PointRecord]) -> Result<()> {
        let dim = points.first().map_or(0, |p| p.vector.len());
        let mut vectors = Vec::with_capacity(points.len() * dim);
        for p in points {
            vectors.extend_from_slice(&p.vector);
            if p.text.as_ref().is_some_and(|t| t.len() > TEXT_MAX) {
                return Err(ApiError::InvalidArgument(format!(
                    "point {}: Milvus keeps texts of at most {TEXT_MAX} bytes",
                    p.id.key()
                )));
            }
        }
        let scalar =
            |data: pb::scalar_field::Data| Some(pb::field_data::Field::Scalars(pb::ScalarField { data: Some(data) }));
        let columns = vec![
            pb::FieldData {
                r#type: pb::DataType::VarChar as i32,
                field_name: "pk".into(),
                field: scalar(pb::scalar_field::Data::StringData(pb::StringArray {
                    data: points.iter().map(|p| p.id.key()).collect(),
                })),
                ..Default::default()
            },
            pb::FieldData {
                r#type: pb::DataType::FloatVector as i32,
                field_name: "vector".into(),
                field: Some(pb::field_data::Field::Vectors(pb::VectorField {
                    dim: dim as i64,
                    data: Some(pb::vector_field::Data::FloatVector(pb::FloatArray { data: vectors })),
                })),
                ..Default::default()
            },
            pb::FieldData {
                r#type: pb::DataType::VarChar as i32,
                field_name: "text".into(),
                field: scalar(pb::scalar_field::Data::StringData(pb::StringArray {
                    data: points.iter().map(|p| p.text.clone().unwrap_or_default()).collect(),
                })),
                ..Default::default()
            },
            pb::FieldData {
                r#type: pb::DataType::Json as i32,
                field_name: "metadata".into(),
                field: scalar(pb::scalar_field::Data::JsonData(pb::JsonArray {
                    data: points.iter().map(|p| super::metadata_of(p).to_string().into_bytes()).collect(),
                })),
                ..Default::default()
            },
        ];
        let req = pb::UpsertRequest {
            collection_name: name.to_owned(),
            fields_data: columns,
            num_rows: points.len() as u32,
            ..Default::default()
        };
        self.call(
            "upsert",
            |r: &pb::MutationResult| r.status.as_ref(),
            |mut c| {
                let req = self.request(req.clone());
                async move { c.upsert(req).await }
            },
        )
        .await
        .map(drop)
    }

    async fn delete(&self, name: &str, ids: &[PointId]) -> Result<()> {
        let keys: Vec<String> = ids.iter().map(|id| literal(&id.key())).collect();
        let req = pb::DeleteRequest {
            collection_name: name.to_owned(),
            expr: format!("pk in [{}]", keys.join(", ")),
            consistency_level: pb::ConsistencyLevel::Strong as i32,
            ..Default::default()
        };
        self.call(
            "delete",
            |r: &pb::MutationResult| r.status.as_ref(),
            |mut c| {
                let req = self.request(req.clone());
                async move { c.delete(req).await }
            },
        )
        .await
        .map(drop)
    }

    async fn get(&self, name: &str, id: &PointId) -> Result<Option<PointRecord>> {
        let r =
            self.query(name, format!("pk == {}", literal(&id.key())), &["pk", "vector", "text", "metadata"]).await?;
        if strings(column("pk", &r.fields_data)).is_empty() {
            return Ok(None);
        }
        let vector = match column("vector", &r.fields_data) {
            Some(pb::field_data::Field::Vectors(pb::VectorField {
                data: Some(pb::vector_field::Data::FloatVector(f)),
                ..
            })) => f.data,
            _ => return Err(unexpected(NAME, "a point came back without its vector")),
        };
        let text = strings(column("text", &r.fields_data)).into_iter().next().filter(|t| !t.is_empty());
        let metadata = jsons(column("metadata", &r.fields_data)).into_iter().next().filter(Value::is_object);
        Ok(Some(PointRecord { id: id.clone(), vector, text, metadata }))
    }

    async fn search(&self, name: &str, metric: Metric, q: &VectorQuery) -> Result<Vec<Match>> {
        let bytes: Vec<u8> = q.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        let group = pb::PlaceholderGroup {
            placeholders: vec![pb::PlaceholderValue {
                tag: "$0".into(),
                r#type: pb::PlaceholderType::FloatVector as i32,
                values: vec![bytes],
            }],
        };
        let mut params = serde_json::json!({});
        if let Some(ef) = q.ef {
            params["ef"] = ef.into();
        }
        let req = pb::SearchRequest {
            collection_name: name.to_owned(),
            dsl: expression(q)?,
            dsl_type: pb::DslType::BoolExprV1 as i32,
            placeholder_group: group.encode_to_vec(),
            output_fields: vec!["metadata".into()],
            search_params: vec![
                kv("anns_field", "vector"),
                kv("topk", q.top_k.to_string()),
                kv("metric_type", metric_type(metric)),
                kv("params", params.to_string()),
            ],
            nq: 1,
            consistency_level: pb::ConsistencyLevel::Strong as i32,
            use_default_consistency: false,
            ..Default::default()
        };
        let run = || {
            self.call(
                "search",
                |r: &pb::SearchResults| r.status.as_ref(),
                |mut c| {
                    let req = self.request(req.clone());
                    async move { c.search(req).await }
                },
            )
        };
        let r = self.loading(name, run).await?;
        let Some(data) = r.results else { return Ok(Vec::new()) };
        let ids = match data.ids.and_then(|i| i.id_field) {
            Some(pb::ids::IdField::StrId(s)) => s.data,
            None => Vec::new(),
            Some(_) => return Err(unexpected(NAME, "the ids are not strings")),
        };
        let metadata = jsons(column("metadata", &data.fields_data));
        ids.into_iter()
            .zip(data.scores)
            .enumerate()
            .map(|(i, (key, s))| {
                let id =
                    PointId::from_key(&key).ok_or_else(|| unexpected(NAME, format!("id {key:?} is not Synod's")))?;
                let meta = metadata.get(i).cloned().filter(Value::is_object).unwrap_or_else(|| serde_json::json!({}));
                // Milvus's L2 is the squared distance.
                Ok(Match { id, score: score(metric, f64::from(s), true), metadata: Arc::new(meta) })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use synod_store::vector_search::{Condition, Filter, Range};

    #[test]
    fn filters_become_expressions_on_the_metadata_field() {
        let c = |key: &str, equals: Option<Value>, one_of: Option<Vec<Value>>, range: Option<Range>| Condition {
            key: key.into(),
            equals,
            one_of,
            range,
        };
        let f = Filter {
            must: vec![
                c("tag", Some(json!("a \"b\"")), None, None),
                c("even", Some(json!(true)), None, None),
                c("n", None, Some(vec![json!(1), json!(2)]), None),
                c("x", None, None, Some(Range { gte: Some(1.5), lte: Some(3.0) })),
            ],
        };
        let q = VectorQuery { vector: vec![], top_k: 1, filter: Some(f), ef: None };
        assert_eq!(
            expression(&q).unwrap(),
            r#"metadata["tag"] == "a \"b\"" && metadata["even"] == true && (metadata["n"] == 1 || metadata["n"] == 2) && metadata["x"] >= 1.5 && metadata["x"] <= 3"#
        );
    }
}
