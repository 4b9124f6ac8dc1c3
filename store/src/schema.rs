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

/// Every column family, in the order they are opened.
pub const ALL_CFS: [&str; 4] = [CF_RAFT_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META];

/// State-machine column families: what a snapshot holds.
pub const SM_CFS: [&str; 2] = [CF_SM_DATA, CF_SM_META];

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
/// The highest node id ever allocated, a big-endian `u64`.
pub const KEY_NODE_ID_SEQ: &[u8] = b"_sys/seq/node_id";

/// Key of one registry record.
pub fn node_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX_NODE.len() + 8);
    k.extend_from_slice(PREFIX_NODE);
    k.extend_from_slice(&id.to_be_bytes());
    k
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
    fn node_keys_sort_by_id_and_share_prefix() {
        assert!(node_key(2) < node_key(10));
        assert!(node_key(255) < node_key(256));
        assert!(node_key(7).starts_with(PREFIX_NODE));
        assert!(node_key(u64::MAX).as_slice() < KEY_UPPER_BOUND);
    }
}
