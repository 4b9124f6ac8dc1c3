//! Qdrant over its REST API (`/collections/...`, API key in `api-key`).
//!
//! Qdrant takes unsigned integers and UUIDs as point ids: a numeric id goes
//! as it is, a string id as a UUID derived from it (SHA-256), and the
//! payload keeps Synod's id (`_synod_id`), the text (`_synod_text`) and the
//! metadata object (`metadata`), so filters address `metadata.<key>`.
//! Writes wait for Qdrant to apply them (`wait=true`): a search after an
//! acknowledged upsert sees it.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use synod_plugins::external::Provider;
use synod_store::pb::Metric;

use super::{Wire, cannot_filter, metadata_of, number, scalar_filter, score, unexpected, vector_of};
use crate::error::Result;
use crate::service::vector_store::{Match, PointId, PointRecord, VectorQuery};

const NAME: &str = "qdrant";

pub(super) struct Qdrant {
    p: Arc<Provider>,
}

/// Qdrant's id for a Synod point id.
fn qdrant_id(id: &PointId) -> Value {
    match id {
        PointId::Num(n) => Value::from(*n),
        PointId::Str(s) => {
            let h = Sha256::digest(s.as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&h[..16]);
            // A version-5-like layout, so Qdrant reads it as a UUID.
            b[6] = (b[6] & 0x0f) | 0x50;
            b[8] = (b[8] & 0x3f) | 0x80;
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Value::String(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
        }
    }
}

fn distance(metric: Metric) -> &'static str {
    match metric {
        Metric::L2 => "Euclid",
        Metric::Dot => "Dot",
        _ => "Cosine",
    }
}

/// Synod's filter as Qdrant's: every condition on `metadata.<key>`.
fn filter(q: &VectorQuery) -> Result<Option<Value>> {
    let conds = scalar_filter(NAME, q.filter.as_ref())?;
    if conds.is_empty() {
        return Ok(None);
    }
    let mut must = Vec::with_capacity(conds.len());
    for c in conds {
        if c.key.contains(['.', '[', ']']) {
            return Err(cannot_filter(NAME, format!("key {:?}: Qdrant reads '.' and '[]' as a path", c.key)));
        }
        let key = format!("metadata.{}", c.key);
        // Qdrant matches keywords, integers and booleans; a float is
        // matched as the range [v, v].
        let matchable = |v: &Value| v.is_string() || v.is_boolean() || v.is_i64() || v.is_u64();
        let cond = match (&c.equals, &c.one_of, &c.range) {
            (Some(v), _, _) if matchable(v) => json!({"key": key, "match": {"value": v}}),
            (Some(v), _, _) => json!({"key": key, "range": {"gte": v, "lte": v}}),
            (_, Some(vs), _) if vs.iter().all(matchable) => json!({"key": key, "match": {"any": vs}}),
            (_, Some(_), _) => return Err(cannot_filter(NAME, format!("{}: `in` takes strings and integers", c.key))),
            (_, _, Some(r)) => {
                let mut range = json!({});
                if let Some(g) = r.gte {
                    range["gte"] = json!(g);
                }
                if let Some(l) = r.lte {
                    range["lte"] = json!(l);
                }
                json!({"key": key, "range": range})
            }
            _ => continue,
        };
        must.push(cond);
    }
    Ok(Some(json!({ "must": must })))
}

/// A point from Qdrant's record (`{id, payload, vector}`).
fn point(r: &Value) -> Result<PointRecord> {
    let payload = &r["payload"];
    let id = payload["_synod_id"]
        .as_str()
        .and_then(PointId::from_key)
        .ok_or_else(|| unexpected(NAME, "a point has no _synod_id in its payload"))?;
    Ok(PointRecord {
        id,
        vector: vector_of(NAME, &r["vector"])?,
        text: payload["_synod_text"].as_str().map(str::to_owned),
        metadata: Some(payload["metadata"].clone()).filter(Value::is_object),
    })
}

impl Qdrant {
    pub(super) fn new(p: Arc<Provider>) -> Qdrant {
        Qdrant { p }
    }

    async fn call(&self, op: &'static str, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        super::rest_call(&self.p, op, method, path, body, "api-key", &[]).await
    }
}

#[tonic::async_trait]
impl Wire for Qdrant {
    async fn create(&self, name: &str, dimension: u32, metric: Metric) -> Result<()> {
        let body = json!({"vectors": {"size": dimension, "distance": distance(metric)}});
        match self.call("collection_create", Method::PUT, &format!("collections/{name}"), Some(body)).await {
            Err(e) if e.to_string().contains("(409)") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn drop_collection(&self, name: &str) -> Result<()> {
        match self.call("collection_drop", Method::DELETE, &format!("collections/{name}"), None).await {
            Err(e) if e.to_string().contains("(404)") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn count(&self, name: &str) -> Result<u64> {
        let v = self
            .call("count", Method::POST, &format!("collections/{name}/points/count"), Some(json!({"exact": true})))
            .await?;
        Ok(number(NAME, &v["result"]["count"], "result.count")? as u64)
    }

    async fn upsert(&self, name: &str, points: &[PointRecord]) -> Result<()> {
        let points: Vec<Value> = points
            .iter()
            .map(|p| {
                let mut payload = json!({"_synod_id": p.id.key(), "metadata": metadata_of(p)});
                if let Some(t) = &p.text {
                    payload["_synod_text"] = Value::String(t.clone());
                }
                json!({"id": qdrant_id(&p.id), "vector": p.vector, "payload": payload})
            })
            .collect();
        let path = format!("collections/{name}/points?wait=true");
        self.call("upsert", Method::PUT, &path, Some(json!({ "points": points }))).await.map(drop)
    }

    async fn delete(&self, name: &str, ids: &[PointId]) -> Result<()> {
        let ids: Vec<Value> = ids.iter().map(qdrant_id).collect();
        let path = format!("collections/{name}/points/delete?wait=true");
        self.call("delete", Method::POST, &path, Some(json!({ "points": ids }))).await.map(drop)
    }

    async fn get(&self, name: &str, id: &PointId) -> Result<Option<PointRecord>> {
        let body = json!({"ids": [qdrant_id(id)], "with_payload": true, "with_vector": true});
        let v = self.call("get", Method::POST, &format!("collections/{name}/points"), Some(body)).await?;
        let records = v["result"].as_array().ok_or_else(|| unexpected(NAME, "result is not a list"))?;
        records.first().map(point).transpose()
    }

    async fn search(&self, name: &str, metric: Metric, q: &VectorQuery) -> Result<Vec<Match>> {
        let mut body = json!({"vector": q.vector, "limit": q.top_k, "with_payload": true});
        if let Some(f) = filter(q)? {
            body["filter"] = f;
        }
        if let Some(ef) = q.ef {
            body["params"] = json!({ "hnsw_ef": ef });
        }
        let v = self.call("search", Method::POST, &format!("collections/{name}/points/search"), Some(body)).await?;
        let hits = v["result"].as_array().ok_or_else(|| unexpected(NAME, "result is not a list"))?;
        hits.iter()
            .map(|h| {
                let id = h["payload"]["_synod_id"]
                    .as_str()
                    .and_then(PointId::from_key)
                    .ok_or_else(|| unexpected(NAME, "a hit has no _synod_id in its payload"))?;
                let metadata = Some(h["payload"]["metadata"].clone()).filter(Value::is_object).unwrap_or(json!({}));
                // Qdrant answers a Euclidean distance (lower is closer).
                let s = score(metric, number(NAME, &h["score"], "score")?, false);
                Ok(Match { id, score: s, metadata: Arc::new(metadata) })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_store::vector_search::{Condition, Filter, Range};

    #[test]
    fn string_ids_become_stable_distinct_uuids() {
        let a = qdrant_id(&PointId::Str("doc-1".into()));
        assert_eq!(a, qdrant_id(&PointId::Str("doc-1".into())));
        assert_ne!(a, qdrant_id(&PointId::Str("doc-2".into())));
        let s = a.as_str().unwrap();
        assert_eq!((s.len(), &s[14..15]), (36, "5"), "{s}");
        assert_eq!(qdrant_id(&PointId::Num(7)), json!(7));
    }

    #[test]
    fn filters_address_the_metadata_object() {
        let c = |equals: Option<Value>, one_of: Option<Vec<Value>>, range: Option<Range>| Condition {
            key: "k".into(),
            equals,
            one_of,
            range,
        };
        let q = |f: Filter| VectorQuery { vector: vec![0.0], top_k: 1, filter: Some(f), ef: None };
        let f = Filter {
            must: vec![
                c(Some(json!("a")), None, None),
                c(Some(json!(0.5)), None, None),
                c(None, Some(vec![json!(1), json!(2)]), None),
                c(None, None, Some(Range { gte: Some(1.0), lte: None })),
            ],
        };
        let got = filter(&q(f)).unwrap().unwrap();
        assert_eq!(
            got,
            json!({"must": [
                {"key": "metadata.k", "match": {"value": "a"}},
                {"key": "metadata.k", "range": {"gte": 0.5, "lte": 0.5}},
                {"key": "metadata.k", "match": {"any": [1, 2]}},
                {"key": "metadata.k", "range": {"gte": 1.0}},
            ]})
        );
        let dotted = Filter { must: vec![Condition { key: "a.b".into(), ..c(Some(json!(1)), None, None) }] };
        assert!(filter(&q(dotted)).is_err());
    }
}
