use std::collections::BTreeMap;

use synod_store::pb::{self, RejectCode, command::Kind, command_result::Outcome};
use synod_store::{ApplyEntry, schema};

use crate::util::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn set_labels(id: u64, l: &[(&str, &str)], expected: Option<u64>) -> Kind {
    Kind::SetLabels(pb::SetNodeLabels { node_id: id, labels: labels(l), expected_version: expected })
}

#[test]
fn register_then_cas_labels() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let r = must_apply(&store, 1, &[cmd(10, register(1)), cmd(11, set_labels(1, &[("zone", "a")], Some(1)))]);
    let Some(Outcome::Node(rec)) = &r[1].outcome else { panic!("labels set: {r:?}") };
    assert_eq!(rec.version, 2);

    // A stale expected version is a rejection that changes nothing.
    let r = must_apply(&store, 3, &[cmd(12, set_labels(1, &[("zone", "b")], Some(1)))]);
    let Some(Outcome::Rejected(rej)) = &r[0].outcome else { panic!("stale CAS accepted: {r:?}") };
    assert_eq!(rej.code, RejectCode::VersionMismatch as i32);
    assert_eq!(rej.current_version, Some(2));
    let rec = store.get_node(1).unwrap().unwrap();
    assert_eq!(rec.info.unwrap().labels, labels(&[("zone", "a")]));
    assert_eq!(rec.version, 2);
}

/// Found by the chaos suite's register workload under the membership
/// nemesis (remove a node, add it back): the re-created record restarted
/// at version 1, so its versions repeated ETags of the old record, and a
/// compare-and-set holding an old ETag could succeed on the new one.
#[test]
fn a_node_registered_again_after_removal_never_repeats_a_record_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(
        &store,
        1,
        &[
            cmd(10, register(1)),
            cmd(11, set_labels(1, &[("v", "a")], None)),
            cmd(12, set_labels(1, &[("v", "b")], None)),
        ],
    );
    assert_eq!(store.get_node(1).unwrap().unwrap().version, 3);
    let r = must_apply(&store, 4, &[cmd(13, Kind::RemoveNode(pb::RemoveNode { node_id: 1 })), cmd(14, register(1))]);
    let Some(Outcome::Node(rec)) = &r[1].outcome else { panic!("registered again: {r:?}") };
    assert_eq!(rec.version, 4, "the new record continues after the removed one's version 3");
    // An ETag of the old record does not match the new one.
    let r = must_apply(&store, 6, &[cmd(15, set_labels(1, &[("v", "stale")], Some(3)))]);
    let Some(Outcome::Rejected(rej)) = &r[0].outcome else { panic!("an old ETag matched: {r:?}") };
    assert_eq!(rej.current_version, Some(4));
    assert!(store.get_node(1).unwrap().unwrap().info.unwrap().labels.is_empty());
}

#[test]
fn later_commands_in_one_batch_see_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let r = must_apply(
        &store,
        1,
        &[
            cmd(1, register(4)),
            cmd(2, set_labels(4, &[("a", "1")], Some(1))),
            cmd(3, set_labels(4, &[("a", "2")], Some(2))),
        ],
    );
    assert!(r.iter().all(|r| !matches!(r.outcome, Some(Outcome::Rejected(_)))), "{r:?}");
    assert_eq!(store.get_node(4).unwrap().unwrap().version, 3);
}

#[test]
fn heartbeat_never_moves_time_back_nor_bumps_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let hb = |idx| Kind::Heartbeat(pb::NodeHeartbeat { node_id: 1, applied_index: idx, load: None });
    must_apply(&store, 1, &[cmd(100, register(1)), cmd(500, hb(5)), cmd(300, hb(3))]);
    let rec = store.get_node(1).unwrap().unwrap();
    assert_eq!(rec.last_heartbeat_ms, 500);
    assert_eq!(rec.applied_index, 5);
    assert_eq!(rec.version, 1);
}

#[test]
fn unknown_node_and_garbage_are_rejections_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let garbage = vec![0xff, 0xff, 0xff];
    let r = must_apply(
        &store,
        1,
        &[cmd(1, set_labels(9, &[], None)), garbage, cmd(1, Kind::RemoveNode(pb::RemoveNode { node_id: 9 }))],
    );
    for res in &r {
        assert!(matches!(res.outcome, Some(Outcome::Rejected(_))), "{res:?}");
    }
    // The applied log id still advanced past all three.
    assert_eq!(store.applied_state().unwrap().applied.as_deref(), Some(&b"log-3"[..]));
}

#[test]
fn allocated_ids_step_over_registered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let alloc = || cmd(1, Kind::AllocateNodeId(pb::AllocateNodeId {}));
    let r = must_apply(&store, 1, &[cmd(1, register(1)), alloc(), alloc(), cmd(1, register(9)), alloc()]);
    let ids: Vec<u64> = r
        .iter()
        .filter_map(|r| match r.outcome {
            Some(Outcome::NodeId(id)) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![2, 3, 10]);
}

#[test]
fn applied_id_and_membership_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = must_open(dir.path());
        let c = cmd(1, register(1));
        store
            .apply(&[
                ApplyEntry { index: 1, log_id: b"id-1", membership: Some(b"members-1"), command: None },
                ApplyEntry { index: 2, log_id: b"id-2", membership: None, command: Some(&c) },
            ])
            .unwrap();
    }
    let store = must_open(dir.path());
    let state = store.applied_state().unwrap();
    assert_eq!(state.applied.as_deref(), Some(&b"id-2"[..]));
    assert_eq!(state.membership.as_deref(), Some(&b"members-1"[..]));
    assert_eq!(store.list_nodes().unwrap().len(), 1);
}

#[test]
fn log_append_range_truncate_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    store.log_append((1..=10).map(|i| (i, vec![i as u8]))).unwrap();
    assert_eq!(store.log_range(3, 6).unwrap().iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 4, 5]);
    store.log_truncate_from(8).unwrap();
    assert_eq!(store.log_last().unwrap().unwrap().0, 7);
    store.log_purge_upto(4, b"purged-4").unwrap();
    assert_eq!(store.log_range(0, 100).unwrap().first().unwrap().0, 5);
    assert_eq!(store.log_len().unwrap(), 3);
    assert_eq!(store.raft_meta_get(schema::KEY_LAST_PURGED).unwrap().as_deref(), Some(&b"purged-4"[..]));
}
