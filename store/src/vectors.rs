//! Vector collections and their points, replicated like everything else.
//! The search index (HNSW) is derived state each node builds from these
//! records; apply() only stores and checks them.

use prost::Message;
use rocksdb::{Direction, IteratorMode};

use crate::Store;
use crate::db::bounded;
use crate::error::{Error, Result};
use crate::pb::{self, CollectionRecord, CommandResult, Metric, Point, RejectCode, command_result::Outcome};
use crate::schema::*;
use crate::state_machine::{BatchCtx, ok, rejected};
use crate::tasks::{bump, counter};

/// The replicated per-tenant counter of stored points (`_sys/stats/`).
pub const VECTORS_COUNTER: &str = "vectors";

/// Largest dimension apply() accepts (the API enforces the configured one).
pub const MAX_DIMENSION: u32 = 65_536;

/// Collection names: like tenant names, 1 to 64 ASCII letters, digits,
/// `-`, `_` and `.`.
pub fn valid_collection_name(s: &str) -> bool {
    crate::identity::valid_name(s)
}

/// The key form of a point id: `u:<decimal>` or `s:<string>`.
pub fn point_id_key(id: &str, numeric: bool) -> String {
    format!("{}:{id}", if numeric { "u" } else { "s" })
}

/// The f32s of a stored vector (little-endian), if its length fits.
pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn collection_result(c: CollectionRecord) -> CommandResult {
    CommandResult { outcome: Some(Outcome::Collection(c)) }
}

fn load_collection(ctx: &BatchCtx<'_>, tenant: &str, name: &str) -> Result<Option<CollectionRecord>> {
    ctx.get_msg::<CollectionRecord>(&collection_key(tenant, name), "collection record")
}

fn next_uid(ctx: &mut BatchCtx<'_>) -> Result<u64> {
    let cur = match ctx.get(KEY_COLLECTION_UID_SEQ)? {
        None => 0,
        Some(b) => u64::from_be_bytes(
            b.as_slice().try_into().map_err(|_| Error::corrupt("collection uid sequence", "not 8 bytes"))?,
        ),
    };
    ctx.put(KEY_COLLECTION_UID_SEQ.to_vec(), (cur + 1).to_be_bytes().to_vec());
    Ok(cur + 1)
}

pub(crate) fn create_collection(ctx: &mut BatchCtx<'_>, c: pb::CreateCollection, now: u64) -> Result<CommandResult> {
    let Some(mut coll) = c.collection else {
        return Ok(rejected(RejectCode::Invalid, "create collection without a collection"));
    };
    let metric_ok = matches!(Metric::try_from(coll.metric), Ok(Metric::Cosine | Metric::L2 | Metric::Dot));
    if !crate::identity::valid_name(&coll.tenant)
        || !valid_collection_name(&coll.name)
        || !(1..=MAX_DIMENSION).contains(&coll.dimension)
        || !metric_ok
    {
        return Ok(rejected(RejectCode::Invalid, "a collection needs a tenant, a name, a dimension and a metric"));
    }
    if pb::IndexKind::try_from(coll.index).is_err() {
        return Ok(rejected(RejectCode::Invalid, format!("unknown index kind {}", coll.index)));
    }
    if coll.backend.as_ref().is_some_and(|b| b.provider.is_empty() || b.kind.is_empty() || b.remote_name.is_empty()) {
        return Ok(rejected(RejectCode::Invalid, "a backend needs a provider, a kind and a remote name"));
    }
    if load_collection(ctx, &coll.tenant, &coll.name)?.is_some() {
        return Ok(rejected(RejectCode::AlreadyDone, format!("collection {} already exists", coll.name)));
    }
    coll.uid = next_uid(ctx)?;
    coll.created_at_ms = now;
    coll.points = 0;
    ctx.put(collection_key(&coll.tenant, &coll.name), coll.encode_to_vec());
    Ok(collection_result(coll))
}

pub(crate) fn delete_collection(ctx: &mut BatchCtx<'_>, c: pb::DeleteCollection) -> Result<CommandResult> {
    let Some(coll) = load_collection(ctx, &c.tenant, &c.name)? else {
        return Ok(rejected(RejectCode::NotFound, format!("collection {} not found", c.name)));
    };
    let start = points_prefix(&coll.tenant, coll.uid);
    let mut end = start.clone();
    *end.last_mut().expect("the prefix ends with '/'") += 1;
    ctx.delete_range(&start, &end);
    ctx.delete(collection_key(&coll.tenant, &coll.name));
    bump(ctx, &coll.tenant, VECTORS_COUNTER, -(coll.points as i64))?;
    bump(ctx, &coll.tenant, STORAGE_BYTES_COUNTER, -(coll.bytes as i64))?;
    Ok(ok())
}

/// All or nothing: one bad point refuses the batch.
pub(crate) fn upsert_points(ctx: &mut BatchCtx<'_>, c: pb::UpsertPoints) -> Result<CommandResult> {
    let Some(mut coll) = load_collection(ctx, &c.tenant, &c.collection)? else {
        return Ok(rejected(RejectCode::NotFound, format!("collection {} not found", c.collection)));
    };
    if let Some(why) = external(&coll) {
        return Ok(rejected(RejectCode::Invalid, why));
    }
    for (i, p) in c.points.iter().enumerate() {
        if let Some(why) = check_point(&coll, p) {
            return Ok(rejected(RejectCode::Invalid, format!("points[{i}]: {why}")));
        }
    }
    let stored = counter(ctx, &coll.tenant, VECTORS_COUNTER)?;
    if c.max_vectors > 0 && stored + c.points.len() as u64 > c.max_vectors {
        return Ok(rejected(
            RejectCode::QuotaExceeded,
            format!(
                "tenant {} stores {stored} vectors; {} more would pass its quota of {}",
                coll.tenant,
                c.points.len(),
                c.max_vectors
            ),
        ));
    }
    if c.max_storage_bytes > 0 {
        let stored = counter(ctx, &coll.tenant, STORAGE_BYTES_COUNTER)?;
        let more: u64 = c.points.iter().map(|p| p.encoded_len() as u64).sum();
        if stored.saturating_add(more) > c.max_storage_bytes {
            return Ok(rejected(
                RejectCode::QuotaExceeded,
                format!(
                    "tenant {} stores {stored} bytes; {more} more would pass its quota of {} \
                     (security.tenant_max_storage_bytes)",
                    coll.tenant, c.max_storage_bytes
                ),
            ));
        }
    }
    let mut added = 0;
    let mut delta: i64 = 0;
    for p in c.points {
        let key = point_key(&coll.tenant, coll.uid, &point_id_key(&p.id, p.numeric_id));
        match ctx.get(&key)? {
            None => added += 1,
            Some(old) => delta -= old.len() as i64,
        }
        let value = p.encode_to_vec();
        delta += value.len() as i64;
        ctx.put(key, value);
    }
    coll.points += added;
    coll.bytes = coll.bytes.saturating_add_signed(delta);
    bump(ctx, &coll.tenant, VECTORS_COUNTER, added as i64)?;
    bump(ctx, &coll.tenant, STORAGE_BYTES_COUNTER, delta)?;
    ctx.put(collection_key(&coll.tenant, &coll.name), coll.encode_to_vec());
    Ok(collection_result(coll))
}

fn check_point(coll: &CollectionRecord, p: &Point) -> Option<String> {
    if p.id.is_empty() || p.id.len() > 256 {
        return Some("an id has 1 to 256 bytes".into());
    }
    if p.numeric_id && p.id.parse::<u64>().is_err() {
        return Some(format!("numeric id {:?} is not an unsigned integer", p.id));
    }
    let Some(v) = decode_vector(&p.vector) else {
        return Some("the vector is not a whole number of f32s".into());
    };
    if v.len() != coll.dimension as usize {
        return Some(format!("the vector has {} components; the collection has dimension {}", v.len(), coll.dimension));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Some("the vector has a NaN or infinite component".into());
    }
    if !p.metadata_json.is_empty() && !p.metadata_json.starts_with('{') {
        return Some("metadata must be a JSON object".into());
    }
    None
}

/// Why points of `coll` cannot be written here: they live in a backend.
fn external(coll: &CollectionRecord) -> Option<String> {
    coll.backend.as_ref().map(|b| format!("collection {}'s points live in {} ({})", coll.name, b.provider, b.kind))
}

pub(crate) fn delete_points(ctx: &mut BatchCtx<'_>, c: pb::DeletePoints) -> Result<CommandResult> {
    let Some(mut coll) = load_collection(ctx, &c.tenant, &c.collection)? else {
        return Ok(rejected(RejectCode::NotFound, format!("collection {} not found", c.collection)));
    };
    if let Some(why) = external(&coll) {
        return Ok(rejected(RejectCode::Invalid, why));
    }
    for id in c.ids {
        let key = point_key(&coll.tenant, coll.uid, &id);
        if let Some(old) = ctx.get(&key)? {
            ctx.delete(key);
            coll.points = coll.points.saturating_sub(1);
            coll.bytes = coll.bytes.saturating_sub(old.len() as u64);
            bump(ctx, &coll.tenant, VECTORS_COUNTER, -1)?;
            bump(ctx, &coll.tenant, STORAGE_BYTES_COUNTER, -(old.len() as i64))?;
        }
    }
    ctx.put(collection_key(&coll.tenant, &coll.name), coll.encode_to_vec());
    Ok(collection_result(coll))
}

impl Store {
    pub fn get_collection(&self, tenant: &str, name: &str) -> Result<Option<CollectionRecord>> {
        match self.get(CF_SM_DATA, &collection_key(tenant, name))? {
            None => Ok(None),
            Some(v) => CollectionRecord::decode(v.as_slice()).map(Some).map_err(|e| Error::corrupt("collection", e)),
        }
    }

    pub fn list_collections(&self, tenant: &str) -> Result<Vec<CollectionRecord>> {
        let prefix = collection_prefix(tenant);
        let mut out = Vec::new();
        let _read = self.read_gate();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_SM_DATA),
            bounded(&prefix),
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (_, v) = item.map_err(Error::rocks("scan collections"))?;
            out.push(CollectionRecord::decode(&*v).map_err(|e| Error::corrupt("collection", e))?);
        }
        Ok(out)
    }

    /// Every tenant's collections. Tenants are found by skipping from one
    /// `t/<tenant>/` prefix to the next, never walking their records.
    pub fn list_all_collections(&self) -> Result<Vec<CollectionRecord>> {
        let mut tenants = Vec::new();
        {
            // Released before list_collections takes it again: a read
            // gate is never taken twice by one thread (a waiting install
            // would block the second and wait for the first).
            let _read = self.read_gate();
            let mut it = self.db.raw_iterator_cf(self.cf(CF_SM_DATA));
            let mut seek = b"t/".to_vec();
            loop {
                it.seek(&seek);
                let Some(key) = it.key() else { break };
                let Some(rest) = key.strip_prefix(b"t/") else { break };
                let Some(slash) = rest.iter().position(|b| *b == b'/') else { break };
                let tenant = String::from_utf8_lossy(&rest[..slash]).into_owned();
                // Past every key of this tenant: '0' follows '/'.
                seek = format!("t/{tenant}0").into_bytes();
                tenants.push(tenant);
            }
            it.status().map_err(Error::rocks("scan tenants"))?;
        }
        let mut out = Vec::new();
        for tenant in tenants {
            out.extend(self.list_collections(&tenant)?);
        }
        Ok(out)
    }

    /// This node's vector search index.
    pub fn vector_index(&self) -> &crate::vector_index::VectorIndexes {
        &self.vectors
    }

    /// Rebuilds the vector index from the stored points (at open and after
    /// a snapshot install); graphs are then built in the background.
    pub(crate) fn load_vector_index(&self) -> Result<()> {
        let mut all = Vec::new();
        for c in self.list_all_collections()? {
            let mut points = Vec::new();
            self.for_each_point(&c, |p| {
                points.push(p);
                true
            })?;
            all.push((c, points));
        }
        self.vectors.reset(all);
        Ok(())
    }

    /// One point of a collection, by its key form (see [`point_id_key`]).
    pub fn get_point(&self, coll: &CollectionRecord, id_key: &str) -> Result<Option<Point>> {
        match self.get(CF_SM_DATA, &point_key(&coll.tenant, coll.uid, id_key))? {
            None => Ok(None),
            Some(v) => Point::decode(v.as_slice()).map(Some).map_err(|e| Error::corrupt("point", e)),
        }
    }

    /// Calls `f` on every point of a collection, in key order, until it
    /// returns false (building an index).
    pub fn for_each_point(&self, coll: &CollectionRecord, mut f: impl FnMut(Point) -> bool) -> Result<()> {
        let prefix = points_prefix(&coll.tenant, coll.uid);
        let _read = self.read_gate();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_SM_DATA),
            bounded(&prefix),
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (_, v) = item.map_err(Error::rocks("scan points"))?;
            if !f(Point::decode(&*v).map_err(|e| Error::corrupt("point", e))?) {
                break;
            }
        }
        Ok(())
    }
}

/// The [`crate::vector_index::Originals`] of a store: points' stored
/// vectors, read in one batched multi-get under the install gate. It holds
/// the database weakly, so an index never keeps it open after the store
/// is dropped (a reopen would find RocksDB's lock taken); then, and for a
/// point not found, it answers `None`.
pub(crate) fn originals(
    db: std::sync::Weak<rocksdb::DB>,
    gate: std::sync::Arc<std::sync::RwLock<()>>,
) -> crate::vector_index::Originals {
    std::sync::Arc::new(move |tenant: &str, uid: u64, keys: &[&str]| {
        let Some(db) = db.upgrade() else { return vec![None; keys.len()] };
        let Some(cf) = db.cf_handle(CF_SM_DATA) else { return vec![None; keys.len()] };
        let _read = gate.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let point_keys: Vec<Vec<u8>> = keys.iter().map(|k| point_key(tenant, uid, k)).collect();
        db.batched_multi_get_cf(cf, &point_keys, false)
            .into_iter()
            .map(|r| match r {
                Ok(Some(v)) => Point::decode(&*v).ok().and_then(|p| decode_vector(&p.vector)),
                _ => None,
            })
            .collect()
    })
}
