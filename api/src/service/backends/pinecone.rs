//! Pinecone over an index's data-plane API (the provider's `base_url` is
//! the index's host; the API key goes in `Api-Key`).
//!
//! A Pinecone index has one dimension and one metric, fixed when it was
//! made in Pinecone's console: a collection on it must declare the same
//! (the dimension is checked against the index's stats; the metric cannot
//! be read from the data plane). Each collection is a namespace of the
//! index. Ids are Synod's key form (`u:7`, `s:doc-1`); the text is kept in
//! the metadata under `_synod_text`. Pinecone's metadata is flat: values
//! are strings, numbers, booleans or lists of strings; anything else is
//! refused before it is sent. Pinecone is eventually consistent: a search
//! right after an upsert may not see it yet (see README).

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Map, Value, json};
use synod_plugins::external::Provider;
use synod_store::pb::Metric;

use super::{Wire, number, scalar_filter, score, unexpected, vector_of};
use crate::error::{ApiError, Result};
use crate::service::vector_store::{Match, PointId, PointRecord, VectorQuery};

const NAME: &str = "pinecone";
/// The API version the requests are written against.
const API_VERSION: &str = "2024-07";
const TEXT_KEY: &str = "_synod_text";

pub(super) struct Pinecone {
    p: Arc<Provider>,
}

/// Pinecone's metadata for a point: its metadata object, checked to be
/// flat, plus its text.
fn metadata(p: &PointRecord) -> Result<Map<String, Value>> {
    let mut m = match &p.metadata {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in &m {
        let flat = match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => true,
            Value::Array(a) => a.iter().all(Value::is_string),
            _ => false,
        };
        if !flat || k == TEXT_KEY {
            return Err(ApiError::InvalidArgument(format!(
                "point {}: metadata key {k:?}: Pinecone keeps strings, numbers, booleans and lists of strings \
                 (and {TEXT_KEY} is Synod's)",
                p.id.key()
            )));
        }
    }
    if let Some(t) = &p.text {
        m.insert(TEXT_KEY.into(), Value::String(t.clone()));
    }
    Ok(m)
}

/// Splits Pinecone's metadata back into Synod's metadata and text.
fn split(meta: &Value) -> (Value, Option<String>) {
    let mut m = meta.as_object().cloned().unwrap_or_default();
    let text = m.remove(TEXT_KEY).and_then(|t| t.as_str().map(str::to_owned));
    (Value::Object(m), text)
}

/// Synod's filter in Pinecone's filter language.
fn filter(q: &VectorQuery) -> Result<Option<Value>> {
    let conds = scalar_filter(NAME, q.filter.as_ref())?;
    let mut all = Vec::with_capacity(conds.len());
    for c in conds {
        let op = match (&c.equals, &c.one_of, &c.range) {
            (Some(v), _, _) => json!({ "$eq": v }),
            (_, Some(vs), _) => json!({ "$in": vs }),
            (_, _, Some(r)) => {
                let mut op = json!({});
                if let Some(g) = r.gte {
                    op["$gte"] = json!(g);
                }
                if let Some(l) = r.lte {
                    op["$lte"] = json!(l);
                }
                op
            }
            _ => continue,
        };
        all.push(json!({ c.key.clone(): op }));
    }
    Ok(match all.len() {
        0 => None,
        1 => all.pop(),
        _ => Some(json!({ "$and": all })),
    })
}

impl Pinecone {
    pub(super) fn new(p: Arc<Provider>) -> Pinecone {
        Pinecone { p }
    }

    async fn call(&self, op: &'static str, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let version = [("X-Pinecone-API-Version", API_VERSION)];
        super::rest_call(&self.p, op, method, path, body, "Api-Key", &version).await
    }

    async fn stats(&self) -> Result<Value> {
        self.call("stats", Method::POST, "describe_index_stats", Some(json!({}))).await
    }
}

#[tonic::async_trait]
impl Wire for Pinecone {
    /// Namespaces come into being with their first point: this only checks
    /// that the index has the collection's dimension.
    async fn create(&self, _name: &str, dimension: u32, _metric: Metric) -> Result<()> {
        let stats = self.stats().await?;
        let have = number(NAME, &stats["dimension"], "dimension")? as u32;
        if have != dimension {
            return Err(ApiError::InvalidArgument(format!(
                "the Pinecone index {} has dimension {have}, not {dimension}",
                self.p.spec().base_url
            )));
        }
        Ok(())
    }

    async fn drop_collection(&self, name: &str) -> Result<()> {
        let body = json!({"deleteAll": true, "namespace": name});
        match self.call("collection_drop", Method::POST, "vectors/delete", Some(body)).await {
            Err(e) if e.to_string().contains("(404)") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn count(&self, name: &str) -> Result<u64> {
        let stats = self.stats().await?;
        Ok(stats["namespaces"][name]["vectorCount"].as_u64().unwrap_or(0))
    }

    async fn upsert(&self, name: &str, points: &[PointRecord]) -> Result<()> {
        let vectors = points
            .iter()
            .map(|p| Ok(json!({"id": p.id.key(), "values": p.vector, "metadata": metadata(p)?})))
            .collect::<Result<Vec<Value>>>()?;
        let body = json!({"vectors": vectors, "namespace": name});
        self.call("upsert", Method::POST, "vectors/upsert", Some(body)).await.map(drop)
    }

    async fn delete(&self, name: &str, ids: &[PointId]) -> Result<()> {
        let ids: Vec<String> = ids.iter().map(PointId::key).collect();
        let body = json!({"ids": ids, "namespace": name});
        match self.call("delete", Method::POST, "vectors/delete", Some(body)).await {
            Err(e) if e.to_string().contains("(404)") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn get(&self, name: &str, id: &PointId) -> Result<Option<PointRecord>> {
        let key = id.key();
        let query = serde_urlencoded::to_string([("ids", key.as_str()), ("namespace", name)])
            .map_err(|e| ApiError::Internal(format!("encoding a query: {e}")))?;
        let v = self.call("get", Method::GET, &format!("vectors/fetch?{query}"), None).await?;
        let Some(found) = v["vectors"].get(&key) else { return Ok(None) };
        let (metadata, text) = split(&found["metadata"]);
        Ok(Some(PointRecord {
            id: id.clone(),
            vector: vector_of(NAME, &found["values"])?,
            text,
            metadata: Some(metadata),
        }))
    }

    async fn search(&self, name: &str, metric: Metric, q: &VectorQuery) -> Result<Vec<Match>> {
        let mut body = json!({
            "vector": q.vector,
            "topK": q.top_k,
            "namespace": name,
            "includeMetadata": true,
            "includeValues": false,
        });
        if let Some(f) = filter(q)? {
            body["filter"] = f;
        }
        let v = self.call("search", Method::POST, "query", Some(body)).await?;
        let matches = v["matches"].as_array().ok_or_else(|| unexpected(NAME, "matches is not a list"))?;
        matches
            .iter()
            .map(|m| {
                let id = m["id"]
                    .as_str()
                    .and_then(PointId::from_key)
                    .ok_or_else(|| unexpected(NAME, format!("a match's id {} is not Synod's", m["id"])))?;
                let (metadata, _) = split(&m["metadata"]);
                // Pinecone's euclidean score is the squared distance.
                let s = score(metric, number(NAME, &m["score"], "score")?, true);
                Ok(Match { id, score: s, metadata: Arc::new(metadata) })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_store::vector_search::{Condition, Filter};

    #[test]
    fn metadata_must_be_flat_and_keeps_the_text() {
        let p =
            |m: Value| PointRecord { id: PointId::Num(1), vector: vec![], text: Some("hi".into()), metadata: Some(m) };
        let m = metadata(&p(json!({"a": 1, "b": ["x", "y"], "c": true}))).unwrap();
        assert_eq!(m[TEXT_KEY], "hi");
        assert_eq!(split(&Value::Object(m)), (json!({"a": 1, "b": ["x", "y"], "c": true}), Some("hi".into())));
        for bad in [json!({"a": {"nested": 1}}), json!({"a": [1, 2]}), json!({"a": null}), json!({TEXT_KEY: "x"})] {
            assert!(metadata(&p(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn several_conditions_are_anded() {
        let c = |k: &str, v: Value| Condition { key: k.into(), equals: Some(v), one_of: None, range: None };
        let q = VectorQuery {
            vector: vec![],
            top_k: 1,
            filter: Some(Filter { must: vec![c("a", json!("x")), c("b", json!(2))] }),
            ef: None,
        };
        assert_eq!(filter(&q).unwrap().unwrap(), json!({"$and": [{"a": {"$eq": "x"}}, {"b": {"$eq": 2}}]}));
    }
}
