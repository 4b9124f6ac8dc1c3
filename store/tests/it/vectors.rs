use synod_store::pb::{self, Metric, RejectCode, command::Kind, command_result::Outcome};
use synod_store::vectors::{decode_vector, encode_vector, point_id_key};

use crate::util::*;

fn create(name: &str, dimension: u32) -> Kind {
    Kind::CreateCollection(pb::CreateCollection {
        collection: Some(pb::CollectionRecord {
            tenant: "acme".into(),
            name: name.into(),
            dimension,
            metric: Metric::Cosine as i32,
            ..Default::default()
        }),
    })
}

fn point(id: &str, v: &[f32]) -> pb::Point {
    pb::Point { id: id.into(), vector: encode_vector(v), metadata_json: r#"{"k":1}"#.into(), ..Default::default() }
}

fn upsert(coll: &str, points: Vec<pb::Point>) -> Kind {
    Kind::UpsertPoints(pb::UpsertPoints {
        tenant: "acme".into(),
        collection: coll.into(),
        points,
        max_vectors: 0,
        max_storage_bytes: 0,
    })
}

fn code(r: &pb::CommandResult) -> Option<RejectCode> {
    match &r.outcome {
        Some(Outcome::Rejected(x)) => RejectCode::try_from(x.code).ok(),
        _ => None,
    }
}

#[test]
fn points_are_checked_counted_replaced_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let r = must_apply(
        &store,
        1,
        &[
            cmd(1, create("docs", 3)),
            cmd(2, create("docs", 3)),
            cmd(3, upsert("docs", vec![point("a", &[1.0, 0.0, 0.0]), point("b", &[0.0, 1.0, 0.0])])),
            cmd(4, upsert("docs", vec![point("a", &[0.0, 0.0, 1.0])])),
            cmd(5, upsert("docs", vec![point("c", &[1.0, 2.0, 3.0]), point("d", &[1.0, 2.0])])),
            cmd(6, upsert("docs", vec![point("e", &[f32::NAN, 0.0, 0.0])])),
            cmd(7, upsert("nope", vec![point("a", &[1.0, 0.0, 0.0])])),
        ],
    );
    assert_eq!(code(&r[0]), None);
    assert_eq!(code(&r[1]), Some(RejectCode::AlreadyDone));
    assert_eq!(code(&r[4]), Some(RejectCode::Invalid), "a wrong dimension refuses the whole batch");
    assert_eq!(code(&r[5]), Some(RejectCode::Invalid), "NaN");
    assert_eq!(code(&r[6]), Some(RejectCode::NotFound));
    let coll = store.get_collection("acme", "docs").unwrap().unwrap();
    assert_eq!(coll.points, 2, "a and b; the upsert of a replaced it; c was refused with d");
    let a = store.get_point(&coll, &point_id_key("a", false)).unwrap().unwrap();
    assert_eq!(decode_vector(&a.vector).unwrap(), vec![0.0, 0.0, 1.0]);
    assert!(store.get_point(&coll, &point_id_key("c", false)).unwrap().is_none());

    must_apply(
        &store,
        8,
        &[cmd(
            8,
            Kind::DeletePoints(pb::DeletePoints {
                tenant: "acme".into(),
                collection: "docs".into(),
                ids: vec![point_id_key("a", false), point_id_key("zz", false)],
            }),
        )],
    );
    let coll = store.get_collection("acme", "docs").unwrap().unwrap();
    assert_eq!(coll.points, 1);
    let mut ids = Vec::new();
    store
        .for_each_point(&coll, |p| {
            ids.push(p.id);
            true
        })
        .unwrap();
    assert_eq!(ids, ["b"]);
}

#[test]
fn a_collection_created_again_does_not_see_the_old_points() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(
        &store,
        1,
        &[
            cmd(1, create("docs", 2)),
            cmd(2, upsert("docs", vec![point("a", &[1.0, 0.0])])),
            cmd(3, Kind::DeleteCollection(pb::DeleteCollection { tenant: "acme".into(), name: "docs".into() })),
            cmd(4, create("docs", 2)),
        ],
    );
    let coll = store.get_collection("acme", "docs").unwrap().unwrap();
    assert_eq!(coll.points, 0);
    let mut n = 0;
    store
        .for_each_point(&coll, |_| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 0, "the old points are gone");
    assert_eq!(store.list_collections("acme").unwrap().len(), 1);
    assert!(store.list_collections("other").unwrap().is_empty());
}

#[test]
fn the_vector_quota_counts_every_collection_of_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let capped = |coll: &str, ids: &[&str]| {
        Kind::UpsertPoints(pb::UpsertPoints {
            tenant: "acme".into(),
            collection: coll.into(),
            points: ids.iter().map(|i| point(i, &[1.0, 0.0])).collect(),
            max_vectors: 3,
            max_storage_bytes: 0,
        })
    };
    let r = must_apply(
        &store,
        1,
        &[
            cmd(1, create("a", 2)),
            cmd(2, create("b", 2)),
            cmd(3, capped("a", &["1", "2"])),
            cmd(4, capped("b", &["1", "2"])),
            cmd(5, capped("b", &["1"])),
            cmd(6, Kind::DeleteCollection(pb::DeleteCollection { tenant: "acme".into(), name: "a".into() })),
            cmd(7, capped("b", &["2", "3"])),
        ],
    );
    assert_eq!(code(&r[2]), None);
    assert_eq!(code(&r[3]), Some(RejectCode::QuotaExceeded), "2 + 2 > 3 over both collections");
    assert_eq!(code(&r[4]), None, "2 + 1 fits");
    assert_eq!(code(&r[6]), None, "deleting a frees its 2: 1 + 2 fits");
    assert_eq!(store.get_collection("acme", "b").unwrap().unwrap().points, 3);
}

/// Issue 13, defect 8: points count against the tenant's stored bytes as
/// they are upserted, replaced and deleted, and an upsert past the quota is
/// refused whole.
#[test]
fn points_count_against_the_tenants_storage_bytes() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let stored = |store: &synod_store::Store| -> u64 {
        store.task_counters().unwrap().into_iter().filter(|(_, n, _)| n == "storage_bytes").map(|(_, _, v)| v).sum()
    };
    let (a, b) = (point("a", &[1.0, 0.0]), point("b", &[0.0, 1.0]));
    let (la, lb) = (a.encoded_len() as u64, b.encoded_len() as u64);
    must_apply(&store, 1, &[cmd(1, create("c", 2)), cmd(2, upsert("c", vec![a, b]))]);
    assert_eq!(stored(&store), la + lb);
    // A replacement counts the difference.
    let mut bigger = point("a", &[1.0, 0.0]);
    bigger.text = "some text".into();
    let lbig = bigger.encoded_len() as u64;
    must_apply(&store, 3, &[cmd(3, upsert("c", vec![bigger]))]);
    assert_eq!(stored(&store), lbig + lb);
    let del = Kind::DeletePoints(pb::DeletePoints {
        tenant: "acme".into(),
        collection: "c".into(),
        ids: vec![point_id_key("b", false)],
    });
    must_apply(&store, 4, &[cmd(4, del)]);
    assert_eq!(stored(&store), lbig);
    // Over the quota: refused whole, nothing stored.
    let quota = Kind::UpsertPoints(pb::UpsertPoints {
        tenant: "acme".into(),
        collection: "c".into(),
        points: vec![point("x", &[1.0, 1.0]), point("y", &[1.0, 2.0])],
        max_vectors: 0,
        max_storage_bytes: lbig + la,
    });
    let r = must_apply(&store, 5, &[cmd(5, quota)]);
    assert_eq!(code(&r[0]), Some(RejectCode::QuotaExceeded));
    assert_eq!(stored(&store), lbig);
    // Deleting the collection frees what it held.
    let drop = Kind::DeleteCollection(pb::DeleteCollection { tenant: "acme".into(), name: "c".into() });
    must_apply(&store, 6, &[cmd(6, drop)]);
    assert_eq!(stored(&store), 0);
}
