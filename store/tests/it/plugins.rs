//! Loaded plugins: versions kept and dropped with their modules, unload,
//! refusals that change nothing, and a snapshot that carries the modules.

use sha2::{Digest, Sha256};
use synod_store::pb::{self, RejectCode, command::Kind, command_result::Outcome};

use crate::util::*;

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn load(name: &str, label: &str, module: &[u8], keep: u32) -> Kind {
    Kind::LoadPlugin(pb::LoadPlugin {
        name: name.into(),
        kind: "wasm".into(),
        version: Some(pb::PluginVersion {
            version: label.into(),
            sha256: sha(module),
            manifest: br#"{"name":"x"}"#.to_vec(),
            ..Default::default()
        }),
        module: module.to_vec(),
        keep_previous: keep,
    })
}

fn record(r: &pb::CommandResult) -> pb::PluginRecord {
    match &r.outcome {
        Some(Outcome::Plugin(p)) => p.clone(),
        other => panic!("not a plugin record: {other:?}"),
    }
}

fn rejection(r: &pb::CommandResult) -> RejectCode {
    match &r.outcome {
        Some(Outcome::Rejected(x)) => RejectCode::try_from(x.code).expect("a known code"),
        other => panic!("not a rejection: {other:?}"),
    }
}

#[test]
fn versions_replace_each_other_and_old_modules_go_beyond_keep() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let r = must_apply(
        &store,
        1,
        &[
            cmd(100, load("greet", "1", b"v1", 1)),
            cmd(200, load("greet", "2", b"v2", 1)),
            cmd(300, load("greet", "3", b"v3", 1)),
        ],
    );
    let last = record(&r[2]);
    let current = last.current.as_ref().unwrap();
    assert_eq!((current.version.as_str(), current.loaded_at_ms, current.size), ("3", 300, 2));
    assert_eq!(last.previous.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["2"]);
    assert_eq!(store.plugin_module("greet", &sha(b"v3")).unwrap().as_deref(), Some(&b"v3"[..]));
    assert_eq!(store.plugin_module("greet", &sha(b"v2")).unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(store.plugin_module("greet", &sha(b"v1")).unwrap(), None, "beyond keep_previous: deleted");
    assert_eq!(store.list_plugins().unwrap(), vec![last.clone()]);

    // Loading the current version again changes nothing; an old one comes back as current.
    let r = must_apply(&store, 4, &[cmd(400, load("greet", "3", b"v3", 1)), cmd(500, load("greet", "2", b"v2", 1))]);
    assert_eq!(record(&r[0]), last);
    let back = record(&r[1]);
    assert_eq!(back.current.unwrap().version, "2");
    assert_eq!(back.previous.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["3"]);

    // Unload removes the record and every module.
    let r = must_apply(&store, 6, &[cmd(600, Kind::UnloadPlugin(pb::UnloadPlugin { name: "greet".into() }))]);
    assert!(matches!(r[0].outcome, Some(Outcome::Ok(_))), "{r:?}");
    assert!(store.list_plugins().unwrap().is_empty());
    assert_eq!(store.plugin_module("greet", &sha(b"v2")).unwrap(), None);
    assert_eq!(store.plugin_module("greet", &sha(b"v3")).unwrap(), None);
}

#[test]
fn bad_loads_and_unknown_unloads_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let mut wrong_sha = load("greet", "1", b"v1", 1);
    if let Kind::LoadPlugin(c) = &mut wrong_sha {
        c.module = b"tampered".to_vec();
    }
    let with_kind = |kind: &str| {
        let mut c = load("greet", "1", b"v1", 1);
        if let Kind::LoadPlugin(l) = &mut c {
            l.kind = kind.into();
        }
        c
    };
    let r = must_apply(
        &store,
        1,
        &[
            cmd(1, wrong_sha),
            cmd(2, load("Bad Name", "1", b"v1", 1)),
            cmd(3, Kind::UnloadPlugin(pb::UnloadPlugin { name: "nope".into() })),
            cmd(4, with_kind("docker")),
        ],
    );
    assert_eq!(
        r.iter().map(rejection).collect::<Vec<_>>(),
        [RejectCode::Invalid, RejectCode::Invalid, RejectCode::NotFound, RejectCode::Invalid]
    );
    assert!(store.list_plugins().unwrap().is_empty());
    // Control: the known kinds load.
    let r = must_apply(&store, 5, &[cmd(5, with_kind("subprocess"))]);
    assert_eq!(record(&r[0]).kind, "subprocess");
    assert_eq!(store.plugin_module("greet", &sha(b"tampered")).unwrap(), None);
}

#[test]
fn a_snapshot_carries_plugins_and_their_modules() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = must_open(a.path());
    must_apply(&src, 1, &[cmd(1, load("greet", "1", b"module-bytes", 2))]);
    let path = a.path().join("snap");
    src.build_snapshot(&path).unwrap();
    let dst = must_open(b.path());
    dst.install_snapshot(&path).unwrap();
    assert_eq!(dst.list_plugins().unwrap(), src.list_plugins().unwrap());
    assert_eq!(dst.plugin_module("greet", &sha(b"module-bytes")).unwrap().as_deref(), Some(&b"module-bytes"[..]));
}
