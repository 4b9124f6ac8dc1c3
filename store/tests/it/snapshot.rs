use synod_store::pb::{self, command::Kind};

use crate::util::*;

#[test]
fn snapshot_round_trip_replaces_state() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let src = must_open(src_dir.path());
    let dst = must_open(dst_dir.path());
    must_apply(&src, 1, &[cmd(1, register(1)), cmd(1, register(2))]);
    // The destination has state of its own that the snapshot must replace.
    must_apply(&dst, 1, &[cmd(1, register(7))]);

    let path = src_dir.path().join("snap");
    let built = src.build_snapshot(&path).unwrap();
    assert_eq!(built.applied.as_deref(), Some(&b"log-2"[..]));
    let installed = dst.install_snapshot(&path).unwrap();
    assert_eq!(installed.applied, built.applied);
    let ids: Vec<u64> = dst.list_nodes().unwrap().iter().map(|n| n.info.as_ref().unwrap().id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(src.state_digest().unwrap(), dst.state_digest().unwrap());
}

#[test]
fn snapshot_is_a_consistent_view() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(&store, 1, &[cmd(1, register(1))]);
    let path = dir.path().join("snap");
    store.build_snapshot(&path).unwrap();
    must_apply(&store, 2, &[cmd(2, Kind::RemoveNode(pb::RemoveNode { node_id: 1 }))]);
    let other_dir = tempfile::tempdir().unwrap();
    let other = must_open(other_dir.path());
    other.install_snapshot(&path).unwrap();
    assert_eq!(other.list_nodes().unwrap().len(), 1, "the snapshot holds the state at build time");
    assert_eq!(store.list_nodes().unwrap().len(), 0);
}

#[test]
fn corrupt_snapshot_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(&store, 1, &[cmd(1, register(1))]);
    let path = dir.path().join("snap");
    store.build_snapshot(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let before = store.state_digest().unwrap();
    let err = store.install_snapshot(&path).unwrap_err();
    assert!(err.to_string().contains("corrupt snapshot"), "{err}");
    assert_eq!(store.state_digest().unwrap(), before);

    std::fs::write(&path, &bytes[..mid]).unwrap();
    assert!(store.install_snapshot(&path).is_err(), "a truncated snapshot must be refused");
}

#[test]
fn verify_snapshot_finds_what_install_would_refuse_without_installing() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(&store, 1, &[cmd(1, register(1)), cmd(2, register(2))]);
    let path = dir.path().join("snap");
    let built = store.build_snapshot(&path).unwrap();
    assert_eq!(synod_store::verify_snapshot(&path).unwrap(), built.records, "a good file passes, every record read");

    let bytes = std::fs::read(&path).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x55;
    std::fs::write(&path, &flipped).unwrap();
    assert!(synod_store::verify_snapshot(&path).is_err(), "a flipped byte is found");
    for cut in [bytes.len() - 1, bytes.len() / 2, 3] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(synod_store::verify_snapshot(&path).is_err(), "a file cut at {cut} is found");
    }
}
