//! Column families and key prefixes: the one place that names them.
//!
//! See `store/FORMAT.md` for the value encodings behind each key.

/// Raft log entries, keyed by the big-endian `u64` log index.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft metadata: vote, committed and last purged log ids.
pub const CF_RAFT_META: &str = "raft_meta";
/// State-machine data: every replicated record.
pub const CF_SM_DATA: &str = "sm_data";
/// State-machine metadata: applied log id, membership, snapshot metadata.
pub const CF_SM_META: &str = "sm_meta";
/// Large task payloads and results, kept out of the records the scheduler
/// scans (state-machine data, in snapshots).
pub const CF_BLOBS: &str = "blobs";

/// Every column family, in the order they are opened.
pub const ALL_CFS: [&str; 5] = [CF_RAFT_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META, CF_BLOBS];

/// State-machine column families: what a snapshot holds.
pub const SM_CFS: [&str; 3] = [CF_SM_DATA, CF_SM_META, CF_BLOBS];

/// Payloads and results larger than this live in [`CF_BLOBS`].
pub const INLINE_LIMIT: usize = 16 * 1024;

/// `t/<tenant>/blob/<id>/<part>` in [`CF_BLOBS`]; part is `payload` or `result`.
pub fn blob_key(tenant: &str, id: &str, part: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(b"blob/");
    k.extend_from_slice(id.as_bytes());
    k.push(b'/');
    k.extend_from_slice(part.as_bytes());
    k
}

// ---- keys in CF_RAFT_META

pub const KEY_VOTE: &[u8] = b"vote";
pub const KEY_COMMITTED: &[u8] = b"committed";
pub const KEY_LAST_PURGED: &[u8] = b"last_purged";

// ---- keys in CF_SM_META

/// The log id of the last entry applied, written in the same WriteBatch as
/// the data that entry changed.
pub const KEY_APPLIED: &[u8] = b"applied";
/// The last membership config applied, same WriteBatch as `KEY_APPLIED`.
pub const KEY_MEMBERSHIP: &[u8] = b"membership";
/// Metadata of the current snapshot file.
pub const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
/// The path of a snapshot file whose install has begun and not finished
/// (UTF-8): a node that restarts with it set installs that file again
/// before anything else (issue 13, defect 5). Local, never in a snapshot.
pub const KEY_INSTALLING: &[u8] = b"snapshot_installing";
/// Only in backup files (`Store::build_backup`), the last record: JSON
/// [`crate::BackupInfo`] of the state before it. Never stored.
pub const KEY_BACKUP_INFO: &[u8] = b"backup_info";
/// The state-machine format version, a big-endian `u32`.
pub const KEY_FORMAT_VERSION: &[u8] = b"format_version";

/// The state-machine format this build writes and understands.
pub const SM_FORMAT_VERSION: u32 = 1;

// ---- keys in CF_SM_DATA
//
// Cluster-level records live under the reserved `_sys/` prefix; tenant data
// will live under `t/<tenant>/` (tenant names cannot start with `_`).

/// Prefix of registry records; followed by the big-endian node id.
pub const PREFIX_NODE: &[u8] = b"_sys/nodes/";
/// Prefix of removed nodes' last record versions (big-endian `u64`);
/// followed by the big-endian node id. A record registered again continues
/// from there, so its ETags never repeat one a client may still hold.
pub const PREFIX_NODE_REMOVED: &[u8] = b"_sys/nodes-removed/";
/// The highest node id ever allocated, a big-endian `u64`.
pub const KEY_NODE_ID_SEQ: &[u8] = b"_sys/seq/node_id";

/// Key of a removed node's last record version.
pub fn node_removed_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX_NODE_REMOVED.len() + 8);
    k.extend_from_slice(PREFIX_NODE_REMOVED);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Key of one registry record.
pub fn node_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX_NODE.len() + 8);
    k.extend_from_slice(PREFIX_NODE);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Prefix of tenants' use of external providers:
/// `_sys/external-usage/<tenant>\0<provider>`.
pub const PREFIX_EXTERNAL_USAGE: &[u8] = b"_sys/external-usage/";

/// `_sys/external-usage/<tenant>\0<provider>` in [`CF_SM_DATA`].
pub fn external_usage_key(tenant: &str, provider: &str) -> Vec<u8> {
    let mut k = PREFIX_EXTERNAL_USAGE.to_vec();
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(provider.as_bytes());
    k
}

/// Prefix of loaded plugins' records: `_sys/plugins/<name>`.
pub const PREFIX_PLUGIN: &[u8] = b"_sys/plugins/";

/// `_sys/plugins/<name>` in [`CF_SM_DATA`].
pub fn plugin_key(name: &str) -> Vec<u8> {
    let mut k = PREFIX_PLUGIN.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// `_sys/plugin-modules/<name>/<sha256>` in [`CF_BLOBS`]: a module's bytes.
pub fn plugin_module_key(name: &str, sha256: &str) -> Vec<u8> {
    let mut k = b"_sys/plugin-modules/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k.push(b'/');
    k.extend_from_slice(sha256.as_bytes());
    k
}

/// Prefix of the queue index: `_sys/queued/<tenant>\0<9 - priority><enqueued_at be64><id>`,
/// so a scan within one tenant yields the most urgent, then the oldest task first.
pub const PREFIX_QUEUED: &[u8] = b"_sys/queued/";
/// Prefix of the lease index: `_sys/leased/<node be64><tenant>\0<id>`.
pub const PREFIX_LEASED: &[u8] = b"_sys/leased/";

/// Prefix of the finished-task index, for retention:
/// `_sys/finished/<ended_at be64><tenant>\0<id>`, oldest first.
pub const PREFIX_FINISHED: &[u8] = b"_sys/finished/";

pub fn finished_key(ended_at_ms: u64, tenant: &str, id: &str) -> Vec<u8> {
    let mut k = PREFIX_FINISHED.to_vec();
    k.extend_from_slice(&ended_at_ms.to_be_bytes());
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `(ended_at_ms, tenant, id)` of a finished-index key.
pub fn parse_finished_key(k: &[u8]) -> Option<(u64, String, String)> {
    let rest = k.strip_prefix(PREFIX_FINISHED)?;
    let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let rest = &rest[8..];
    let nul = rest.iter().position(|b| *b == 0)?;
    Some((at, String::from_utf8(rest[..nul].to_vec()).ok()?, String::from_utf8(rest[nul + 1..].to_vec()).ok()?))
}

/// Prefix of the task state index: `_sys/task-state/<tenant>\0<state u8><id>`,
/// so one tenant's tasks in one state list in id order, as the records do,
/// without scanning the others (`GET /tasks?state=failed`).
pub const PREFIX_TASK_STATE: &[u8] = b"_sys/task-state/";

/// Present once the task state index covers every stored task: a data dir
/// or snapshot of an older version gets its index built when opened or
/// installed.
pub const KEY_TASK_STATE_INDEXED: &[u8] = b"_sys/task-state-indexed";

pub fn task_state_prefix(tenant: &str, state: i32) -> Vec<u8> {
    let mut k = PREFIX_TASK_STATE.to_vec();
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.push(state as u8);
    k
}

pub fn task_state_key(tenant: &str, state: i32, id: &str) -> Vec<u8> {
    let mut k = task_state_prefix(tenant, state);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The replicated counter of a tenant's stored bytes (task payloads and
/// results, points).
pub const STORAGE_BYTES_COUNTER: &str = "storage_bytes";

/// Prefix of the replicated task counters: `_sys/stats/<tenant>\0<name>` →
/// big-endian u64, where name is a state (`queued`, ...) or an event
/// (`attempts`, `retries`, `dead_letters`, `requeues`).
pub const PREFIX_STATS: &[u8] = b"_sys/stats/";

pub fn stats_key(tenant: &str, name: &str) -> Vec<u8> {
    let mut k = PREFIX_STATS.to_vec();
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Prefix of every key of one tenant.
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + tenant.len());
    k.extend_from_slice(b"t/");
    k.extend_from_slice(tenant.as_bytes());
    k.push(b'/');
    k
}

/// Prefix of one tenant's task records.
pub fn task_prefix(tenant: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(b"task/");
    k
}

/// `t/<tenant>/task/<id>`: one task record.
pub fn task_key(tenant: &str, id: &str) -> Vec<u8> {
    let mut k = task_prefix(tenant);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `t/<tenant>/idem/<key>`: the task id an idempotency key produced.
pub fn idem_key(tenant: &str, key: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(b"idem/");
    k.extend_from_slice(key.as_bytes());
    k
}

/// Prefix of one tenant's queue index entries.
pub fn queued_tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut k = PREFIX_QUEUED.to_vec();
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k
}

pub fn queued_key(tenant: &str, priority: u32, enqueued_at_ms: u64, id: &str) -> Vec<u8> {
    let mut k = queued_tenant_prefix(tenant);
    k.push(9u8.saturating_sub(priority.min(9) as u8));
    k.extend_from_slice(&enqueued_at_ms.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// Splits a queue index key into (tenant, id).
pub fn parse_queued_key(key: &[u8]) -> Option<(String, String)> {
    let rest = key.strip_prefix(PREFIX_QUEUED)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let tenant = std::str::from_utf8(&rest[..nul]).ok()?;
    let id = std::str::from_utf8(rest.get(nul + 1 + 1 + 8..)?).ok()?;
    Some((tenant.to_string(), id.to_string()))
}

pub fn leased_node_prefix(node: u64) -> Vec<u8> {
    let mut k = PREFIX_LEASED.to_vec();
    k.extend_from_slice(&node.to_be_bytes());
    k
}

pub fn leased_key(node: u64, tenant: &str, id: &str) -> Vec<u8> {
    let mut k = leased_node_prefix(node);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Splits a lease index key into (node, tenant, id).
pub fn parse_leased_key(key: &[u8]) -> Option<(u64, String, String)> {
    let rest = key.strip_prefix(PREFIX_LEASED)?;
    let node = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let rest = &rest[8..];
    let nul = rest.iter().position(|b| *b == 0)?;
    Some((
        node,
        std::str::from_utf8(&rest[..nul]).ok()?.to_string(),
        std::str::from_utf8(&rest[nul + 1..]).ok()?.to_string(),
    ))
}

/// Key of one Raft log entry.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Parses a key written by [`log_key`].
pub fn parse_log_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// An upper bound above every key Synod writes (all keys start with ASCII).
pub const KEY_UPPER_BOUND: &[u8] = &[0xff; 8];

/// The highest collection uid ever assigned, a big-endian `u64`.
pub const KEY_COLLECTION_UID_SEQ: &[u8] = b"_sys/seq/collection_uid";

/// Prefix of one tenant's collection records.
pub fn collection_prefix(tenant: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(b"coll/");
    k
}

/// `t/<tenant>/coll/<name>`: a collection record.
pub fn collection_key(tenant: &str, name: &str) -> Vec<u8> {
    let mut k = collection_prefix(tenant);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Prefix of one collection's points: `t/<tenant>/pt/<uid: u64 BE>/`.
pub fn points_prefix(tenant: &str, uid: u64) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(b"pt/");
    k.extend_from_slice(&uid.to_be_bytes());
    k.push(b'/');
    k
}

/// `t/<tenant>/pt/<uid>/<id>`: a point (ids are `s:<string>` or `u:<decimal>`).
pub fn point_key(tenant: &str, uid: u64, id: &str) -> Vec<u8> {
    let mut k = points_prefix(tenant, uid);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `_sys/tenants/<name>`: a tenant record.
pub const PREFIX_TENANT: &[u8] = b"_sys/tenants/";
/// `_sys/users/<name>`: a user record. User names are global: a login
/// names a user before any tenant is known.
pub const PREFIX_USER: &[u8] = b"_sys/users/";
/// `_sys/apikey-ids/<id>`: the tenant an API key id belongs to (a key is
/// presented before any tenant is known).
pub const PREFIX_APIKEY_ID: &[u8] = b"_sys/apikey-ids/";
/// The last user id apply assigned, a big-endian `u64`.
pub const KEY_USER_ID_SEQ: &[u8] = b"_sys/seq/user_id";
/// Present once the cluster's first admin was created (or found to be
/// unnecessary): the password hash it was created with (empty if none).
pub const KEY_FIRST_ADMIN: &[u8] = b"_sys/first-admin";

fn join(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn tenant_key(name: &str) -> Vec<u8> {
    join(PREFIX_TENANT, name)
}

pub fn user_key(name: &str) -> Vec<u8> {
    join(PREFIX_USER, name)
}

pub fn apikey_id_key(id: &str) -> Vec<u8> {
    join(PREFIX_APIKEY_ID, id)
}

/// Prefix of one tenant's API keys.
pub fn apikey_prefix(tenant: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(b"apikey/");
    k
}

/// `t/<tenant>/apikey/<id>`: an API key record.
pub fn apikey_key(tenant: &str, id: &str) -> Vec<u8> {
    let mut k = apikey_prefix(tenant);
    k.extend_from_slice(id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_index() {
        let mut keys: Vec<_> = [300u64, 2, 1 << 40, 0, 256].iter().map(|i| log_key(*i)).collect();
        keys.sort();
        let back: Vec<_> = keys.iter().map(|k| parse_log_key(k).expect("8 bytes")).collect();
        assert_eq!(back, vec![0, 2, 256, 300, 1 << 40]);
    }

    #[test]
    fn queue_keys_sort_by_priority_then_age_and_parse_back() {
        let a = queued_key("acme", 9, 500, "x");
        let b = queued_key("acme", 5, 100, "y");
        let c = queued_key("acme", 5, 200, "a");
        assert!(a < b && b < c);
        assert_eq!(parse_queued_key(&c), Some(("acme".to_string(), "a".to_string())));
        assert!(queued_key("acme", 0, 0, "z") < queued_tenant_prefix("acmf"));
        let l = leased_key(7, "acme", "t1");
        assert_eq!(parse_leased_key(&l), Some((7, "acme".to_string(), "t1".to_string())));
    }

    #[test]
    fn node_keys_sort_by_id_and_share_prefix() {
        assert!(node_key(2) < node_key(10));
        assert!(node_key(255) < node_key(256));
        assert!(node_key(7).starts_with(PREFIX_NODE));
        assert!(node_key(u64::MAX).as_slice() < KEY_UPPER_BOUND);
    }
}
