use prost::Message;
use synod_store::pb::{self, command::Kind};
use synod_store::{ApplyEntry, Store, StoreOptions};

pub fn must_open(dir: &std::path::Path) -> Store {
    Store::open(dir, &StoreOptions::default()).expect("open store")
}

pub fn cmd(at: u64, kind: Kind) -> Vec<u8> {
    pb::Command { format_version: 1, stamped_at_ms: at, kind: Some(kind) }.encode_to_vec()
}

pub fn register(id: u64) -> Kind {
    Kind::RegisterNode(pb::RegisterNode {
        info: Some(pb::NodeInfo { id, raft_addr: format!("127.0.0.1:{}", 7000 + id), ..Default::default() }),
        labels_set: false,
    })
}

/// Applies commands as consecutive entries starting at `first_index`.
pub fn must_apply(store: &Store, first_index: u64, cmds: &[Vec<u8>]) -> Vec<pb::CommandResult> {
    let ids: Vec<Vec<u8>> = (0..cmds.len()).map(|i| format!("log-{}", first_index + i as u64).into_bytes()).collect();
    let entries: Vec<ApplyEntry<'_>> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| ApplyEntry { index: first_index + i as u64, log_id: &ids[i], membership: None, command: Some(c) })
        .collect();
    store.apply(&entries).expect("apply")
}
