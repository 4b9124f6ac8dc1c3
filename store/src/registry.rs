//! The node registry: one record per node, under `_sys/nodes/<id>`.

use prost::Message;
use rocksdb::{Direction, IteratorMode};

use crate::Store;
use crate::error::{Error, Result};
use crate::pb::{self, CommandResult, NodeRecord, RejectCode, command_result::Outcome};
use crate::schema::*;
use crate::state_machine::{BatchCtx, ok, rejected};

fn node_result(rec: NodeRecord) -> CommandResult {
    CommandResult { outcome: Some(Outcome::Node(rec)) }
}

fn not_found(id: u64) -> CommandResult {
    rejected(RejectCode::NotFound, format!("node {id} is not registered"))
}

fn put_node(ctx: &mut BatchCtx<'_>, rec: &NodeRecord) -> Result<()> {
    let id = rec.info.as_ref().map(|i| i.id).ok_or_else(|| Error::corrupt("node record", "missing info"))?;
    ctx.put(node_key(id), rec.encode_to_vec());
    Ok(())
}

fn bump_seq(ctx: &mut BatchCtx<'_>, at_least: u64) -> Result<u64> {
    let cur = match ctx.get(KEY_NODE_ID_SEQ)? {
        None => 0,
        Some(b) => {
            u64::from_be_bytes(b.as_slice().try_into().map_err(|_| Error::corrupt("node id sequence", "not 8 bytes"))?)
        }
    };
    let next = cur.max(at_least);
    if next != cur {
        ctx.put(KEY_NODE_ID_SEQ.to_vec(), next.to_be_bytes().to_vec());
    }
    Ok(next)
}

pub(crate) fn register(ctx: &mut BatchCtx<'_>, c: pb::RegisterNode, now: u64) -> Result<CommandResult> {
    let Some(info) = c.info else {
        return Ok(rejected(RejectCode::Invalid, "register without node info"));
    };
    if info.id == 0 {
        return Ok(rejected(RejectCode::Invalid, "node id 0 is reserved"));
    }
    bump_seq(ctx, info.id)?;
    let key = node_key(info.id);
    let rec = match ctx.get_msg::<NodeRecord>(&key, "node record")? {
        None => {
            // A node removed before continues its old record's versions.
            let removed = node_removed_key(info.id);
            let last = match ctx.get(&removed)? {
                Some(b) => {
                    ctx.delete(removed);
                    u64::from_be_bytes(
                        b.as_slice().try_into().map_err(|_| Error::corrupt("removed node", "not 8 bytes"))?,
                    )
                }
                None => 0,
            };
            NodeRecord {
                info: Some(info),
                registered_at_ms: now,
                last_heartbeat_ms: now,
                version: last + 1,
                ..Default::default()
            }
        }
        Some(mut rec) => {
            let old = rec.info.take().unwrap_or_default();
            let labels = if c.labels_set { info.labels.clone() } else { old.labels.clone() };
            let new_info = pb::NodeInfo { labels, ..info };
            if new_info != old {
                rec.version += 1;
            }
            rec.info = Some(new_info);
            rec.last_heartbeat_ms = rec.last_heartbeat_ms.max(now);
            rec
        }
    };
    put_node(ctx, &rec)?;
    Ok(node_result(rec))
}

pub(crate) fn heartbeat(ctx: &mut BatchCtx<'_>, c: pb::NodeHeartbeat, now: u64) -> Result<CommandResult> {
    let key = node_key(c.node_id);
    let Some(mut rec) = ctx.get_msg::<NodeRecord>(&key, "node record")? else {
        return Ok(not_found(c.node_id));
    };
    // Leader clocks may step back across a failover: never move time backwards.
    rec.last_heartbeat_ms = rec.last_heartbeat_ms.max(now);
    rec.applied_index = rec.applied_index.max(c.applied_index);
    rec.load = c.load;
    put_node(ctx, &rec)?;
    Ok(ok())
}

pub(crate) fn set_labels(ctx: &mut BatchCtx<'_>, c: pb::SetNodeLabels) -> Result<CommandResult> {
    let key = node_key(c.node_id);
    let Some(mut rec) = ctx.get_msg::<NodeRecord>(&key, "node record")? else {
        return Ok(not_found(c.node_id));
    };
    if let Some(expected) = c.expected_version
        && expected != rec.version
    {
        return Ok(CommandResult {
            outcome: Some(Outcome::Rejected(pb::Rejection {
                code: RejectCode::VersionMismatch as i32,
                message: format!("node {} is at version {}, not {expected}", c.node_id, rec.version),
                current_version: Some(rec.version),
            })),
        });
    }
    let info = rec.info.get_or_insert_with(Default::default);
    info.labels = c.labels;
    rec.version += 1;
    put_node(ctx, &rec)?;
    Ok(node_result(rec))
}

pub(crate) fn set_draining(ctx: &mut BatchCtx<'_>, c: pb::SetNodeDraining, now: u64) -> Result<CommandResult> {
    let key = node_key(c.node_id);
    let Some(mut rec) = ctx.get_msg::<NodeRecord>(&key, "node record")? else {
        return Ok(not_found(c.node_id));
    };
    if rec.draining != c.draining {
        rec.draining = c.draining;
        rec.draining_since_ms = if c.draining { now } else { 0 };
        rec.version += 1;
        put_node(ctx, &rec)?;
    }
    Ok(node_result(rec))
}

pub(crate) fn remove(ctx: &mut BatchCtx<'_>, c: pb::RemoveNode) -> Result<CommandResult> {
    let key = node_key(c.node_id);
    let Some(rec) = ctx.get_msg::<NodeRecord>(&key, "node record")? else {
        return Ok(not_found(c.node_id));
    };
    ctx.delete(key);
    // Kept so that registering the node again never reuses a version (an
    // ETag a client may hold for a compare-and-set).
    ctx.put(node_removed_key(c.node_id), rec.version.to_be_bytes().to_vec());
    Ok(ok())
}

pub(crate) fn allocate_id(ctx: &mut BatchCtx<'_>) -> Result<CommandResult> {
    let cur = bump_seq(ctx, 0)?;
    // Also step over every registered id, for data dirs written before the
    // sequence existed or ids given by hand with --node-id.
    let next = bump_seq(ctx, cur.max(1) + 1)?;
    Ok(CommandResult { outcome: Some(Outcome::NodeId(next)) })
}

impl Store {
    /// Every registry record, ordered by node id.
    pub fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        let mut out = Vec::new();
        let _read = self.read_gate();
        let it = self.db.iterator_cf_opt(
            self.cf(CF_SM_DATA),
            crate::db::bounded(PREFIX_NODE),
            IteratorMode::From(PREFIX_NODE, Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(Error::rocks("scan registry"))?;
            if !k.starts_with(PREFIX_NODE) {
                break;
            }
            out.push(NodeRecord::decode(&*v).map_err(|e| Error::corrupt("node record", e))?);
        }
        Ok(out)
    }

    /// One registry record.
    pub fn get_node(&self, id: u64) -> Result<Option<NodeRecord>> {
        match self.get(CF_SM_DATA, &node_key(id))? {
            None => Ok(None),
            Some(v) => NodeRecord::decode(v.as_slice()).map(Some).map_err(|e| Error::corrupt("node record", e)),
        }
    }
}
