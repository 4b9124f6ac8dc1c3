use synod_store::pb::{self, RejectCode, Role, command::Kind, command_result::Outcome};

use crate::util::*;

fn code(r: &pb::CommandResult) -> Option<RejectCode> {
    match &r.outcome {
        Some(Outcome::Rejected(x)) => RejectCode::try_from(x.code).ok(),
        _ => None,
    }
}

fn tenant(name: &str) -> Kind {
    Kind::PutTenant(pb::PutTenant { name: name.into() })
}

fn user(name: &str, tenant: &str, role: Role, replace: bool) -> Kind {
    Kind::PutUser(pb::PutUser {
        user: Some(pb::UserRecord {
            name: name.into(),
            tenant: tenant.into(),
            role: role as i32,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            ..Default::default()
        }),
        replace,
        ..Default::default()
    })
}

fn key(id: &str, tenant: &str) -> Kind {
    Kind::PutApiKey(pb::PutApiKey {
        key: Some(pb::ApiKeyRecord {
            id: id.into(),
            tenant: tenant.into(),
            role: Role::User as i32,
            owner: "ann".into(),
            secret_sha256: vec![7; 32],
            ..Default::default()
        }),
        expires_in_ms: 0,
    })
}

#[test]
fn users_need_an_existing_tenant_and_unique_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let r = must_apply(
        &store,
        1,
        &[
            cmd(10, user("ann", "acme", Role::User, false)),
            cmd(11, tenant("acme")),
            cmd(12, tenant("acme")),
            cmd(13, user("ann", "acme", Role::User, false)),
            cmd(14, user("ann", "acme", Role::Reader, false)),
            cmd(15, user("ann", "acme", Role::Reader, true)),
            cmd(16, user("bad/name", "acme", Role::User, false)),
            cmd(17, user("bob", "acme", Role::Unspecified, false)),
        ],
    );
    assert_eq!(code(&r[0]), Some(RejectCode::NotFound), "no tenant yet");
    assert_eq!(code(&r[1]), None);
    assert!(
        matches!(&r[2].outcome, Some(Outcome::Tenant(t)) if t.created_at_ms == 11),
        "creating twice keeps the first"
    );
    assert_eq!(code(&r[3]), None);
    assert_eq!(code(&r[4]), Some(RejectCode::AlreadyDone), "a second create is refused");
    assert_eq!(code(&r[5]), None, "replace is allowed");
    assert_eq!(code(&r[6]), Some(RejectCode::Invalid));
    assert_eq!(code(&r[7]), Some(RejectCode::Invalid));
    let ann = store.get_user("ann").unwrap().unwrap();
    assert_eq!((ann.role, ann.created_at_ms, ann.updated_at_ms), (Role::Reader as i32, 13, 15));
    assert_eq!(store.list_users().unwrap().len(), 1);
    assert_eq!(store.list_tenants().unwrap().len(), 1);

    let r = must_apply(
        &store,
        9,
        &[
            cmd(20, Kind::DeleteUser(pb::DeleteUser { name: "ann".into() })),
            cmd(21, user("ann", "acme", Role::User, true)),
        ],
    );
    assert_eq!(code(&r[1]), Some(RejectCode::NotFound), "a replace does not revive a deleted user");
    assert!(store.get_user("ann").unwrap().is_none());
}

#[test]
fn api_keys_are_found_by_id_revoked_and_touched() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let r = must_apply(
        &store,
        1,
        &[
            cmd(10, tenant("acme")),
            cmd(11, key("k1", "acme")),
            cmd(12, key("k1", "acme")),
            cmd(13, key("k2", "nowhere")),
            cmd(14, Kind::TouchApiKeys(pb::TouchApiKeys { uses: vec![pb::ApiKeyUse { id: "k1".into(), at_ms: 50 }] })),
            cmd(15, Kind::TouchApiKeys(pb::TouchApiKeys { uses: vec![pb::ApiKeyUse { id: "k1".into(), at_ms: 40 }] })),
        ],
    );
    assert_eq!(code(&r[1]), None);
    assert_eq!(code(&r[2]), Some(RejectCode::AlreadyDone), "ids are unique");
    assert_eq!(code(&r[3]), Some(RejectCode::NotFound));
    let k = store.get_api_key("k1").unwrap().unwrap();
    assert_eq!((k.tenant.as_str(), k.created_at_ms, k.last_used_ms, k.revoked_at_ms), ("acme", 11, 50, 0));
    assert!(store.get_api_key("k2").unwrap().is_none());

    let r = must_apply(
        &store,
        7,
        &[
            cmd(20, Kind::RevokeApiKey(pb::RevokeApiKey { tenant: "other".into(), id: "k1".into() })),
            cmd(21, Kind::RevokeApiKey(pb::RevokeApiKey { tenant: "acme".into(), id: "k1".into() })),
            cmd(22, Kind::RevokeApiKey(pb::RevokeApiKey { tenant: "acme".into(), id: "k1".into() })),
        ],
    );
    assert_eq!(code(&r[0]), Some(RejectCode::NotFound), "another tenant cannot revoke it");
    assert_eq!(store.get_api_key("k1").unwrap().unwrap().revoked_at_ms, 21, "revoking again keeps the first time");
    assert_eq!(store.list_api_keys("acme").unwrap().len(), 1);
    assert!(store.list_api_keys("other").unwrap().is_empty());
}

fn bootstrap(name: &str, hash: &str) -> Kind {
    Kind::PutUser(pb::PutUser {
        user: Some(pb::UserRecord {
            name: name.into(),
            tenant: "default".into(),
            role: Role::Admin as i32,
            password_hash: hash.into(),
            ..Default::default()
        }),
        bootstrap: true,
        ..Default::default()
    })
}

fn owned_key(id: &str, owner: &str) -> Kind {
    Kind::PutApiKey(pb::PutApiKey {
        key: Some(pb::ApiKeyRecord {
            id: id.into(),
            tenant: "acme".into(),
            role: Role::User as i32,
            owner: owner.into(),
            secret_sha256: vec![7; 32],
            ..Default::default()
        }),
        expires_in_ms: 0,
    })
}

#[test]
fn a_name_created_again_is_another_user_and_deleting_one_revokes_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    must_apply(
        &store,
        1,
        &[
            cmd(10, tenant("acme")),
            cmd(11, user("ann", "acme", Role::User, false)),
            cmd(12, user("bob", "acme", Role::User, false)),
            cmd(13, owned_key("k-ann", "ann")),
            cmd(14, owned_key("k-bob", "bob")),
        ],
    );
    let first = store.get_user("ann").unwrap().unwrap();
    assert_eq!((first.user_id, store.get_user("bob").unwrap().unwrap().user_id), (1, 2));
    assert_eq!(first.tokens_not_before_ms, 11, "nothing issued before the user existed is theirs");
    assert_eq!(store.get_api_key("k-ann").unwrap().unwrap().owner_id, 1);

    // Deleted and created again in one batch: the batch's own writes count.
    let r = must_apply(
        &store,
        6,
        &[
            cmd(20, Kind::DeleteUser(pb::DeleteUser { name: "ann".into() })),
            cmd(21, user("ann", "acme", Role::User, false)),
            cmd(22, owned_key("k-ann-2", "ann")),
        ],
    );
    assert!(r.iter().all(|r| code(r).is_none()), "{r:?}");
    let again = store.get_user("ann").unwrap().unwrap();
    assert_eq!(again.user_id, 3, "ids are never reused");
    assert_eq!(store.get_api_key("k-ann").unwrap().unwrap().revoked_at_ms, 20, "the deleted ann's key");
    assert_eq!(store.get_api_key("k-ann-2").unwrap().unwrap().owner_id, 3);
    assert_eq!(store.get_api_key("k-bob").unwrap().unwrap().revoked_at_ms, 0, "bob's key is not ann's");

    // A new password revokes the keys of that user only.
    let mut rec = again.clone();
    rec.password_hash = "$argon2id$new".into();
    let put =
        pb::PutUser { user: Some(rec), replace: true, revoke_tokens: true, revoke_api_keys: true, bootstrap: false };
    must_apply(&store, 9, &[cmd(30, Kind::PutUser(put))]);
    assert_eq!(store.get_api_key("k-ann-2").unwrap().unwrap().revoked_at_ms, 30);
    assert_eq!(store.get_api_key("k-bob").unwrap().unwrap().revoked_at_ms, 0);
}

#[test]
fn the_first_admin_is_created_once_per_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    assert_eq!(store.first_admin().unwrap(), None);
    let r = must_apply(&store, 1, &[cmd(10, tenant("default")), cmd(11, bootstrap("admin", "$argon2id$first"))]);
    assert_eq!(code(&r[1]), None);
    assert_eq!(store.first_admin().unwrap().as_deref(), Some(&b"$argon2id$first"[..]));
    let r = must_apply(
        &store,
        3,
        &[
            cmd(20, Kind::DeleteUser(pb::DeleteUser { name: "admin".into() })),
            cmd(21, bootstrap("admin", "$argon2id$second")),
        ],
    );
    assert_eq!(code(&r[1]), Some(RejectCode::AlreadyDone), "deleted stays deleted");
    assert!(store.get_user("admin").unwrap().is_none());

    // A cluster of an older version: users, no marker. Marked, not created.
    let dir = tempfile::tempdir().unwrap();
    let old = must_open(dir.path());
    must_apply(&old, 1, &[cmd(10, tenant("default")), cmd(11, user("root", "default", Role::Admin, false))]);
    let r = must_apply(&old, 3, &[cmd(12, bootstrap("admin", "$argon2id$x"))]);
    assert_eq!(code(&r[0]), Some(RejectCode::AlreadyDone));
    assert!(old.get_user("admin").unwrap().is_none());
    assert_eq!(old.first_admin().unwrap().as_deref(), Some(&b""[..]));
}

#[test]
fn failed_logins_are_counted_in_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let fail = |name: &str| Kind::RecordLoginFailure(pb::RecordLoginFailure { name: name.into(), window_ms: 60_000 });
    let r = must_apply(
        &store,
        1,
        &[
            cmd(10, tenant("acme")),
            cmd(11, user("ann", "acme", Role::User, false)),
            cmd(1_000, fail("ann")),
            cmd(2_000, fail("ann")),
            cmd(3_000, fail("nobody")),
        ],
    );
    assert_eq!(code(&r[4]), Some(RejectCode::NotFound), "an unknown name stores nothing");
    let ann = store.get_user("ann").unwrap().unwrap();
    assert_eq!((ann.failed_logins, ann.failed_logins_since_ms), (2, 1_000));
    // The window is over: the count starts again.
    must_apply(&store, 6, &[cmd(61_000, fail("ann"))]);
    let ann = store.get_user("ann").unwrap().unwrap();
    assert_eq!((ann.failed_logins, ann.failed_logins_since_ms), (1, 61_000));
}
