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

fn submit(id: &str, task_type: &str, requires: &[String]) -> Kind {
    Kind::SubmitTasks(pb::SubmitTasks {
        tasks: vec![pb::TaskSpec {
            id: id.into(),
            tenant: "acme".into(),
            task_type: task_type.into(),
            payload: b"{}".to_vec(),
            max_attempts: 3,
            timeout_ms: 1000,
            requires: requires.to_vec(),
            ..Default::default()
        }],
        max_queued: 0,
        max_storage_bytes: 0,
        placements: vec![],
    })
}

fn task_state(store: &synod_store::Store, id: &str) -> (pb::TaskState, String) {
    let rec = store.get_task("acme", id).unwrap().unwrap_or_else(|| panic!("no task {id}"));
    (pb::TaskState::try_from(rec.state).unwrap(), rec.error)
}

#[test]
fn unloading_a_plugin_fails_its_queued_tasks_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let cap = format!("plugin:greet@{}", sha(b"v1"));
    must_apply(
        &store,
        1,
        &[
            cmd(1, load("greet", "1", b"v1", 1)),
            cmd(2, submit("g1", "greet", std::slice::from_ref(&cap))),
            cmd(3, submit("e1", "echo", &[])),
        ],
    );
    // Submitted in the same batch as the unload: the scan sees the batch's own writes.
    let r = must_apply(
        &store,
        4,
        &[
            cmd(4, submit("g2", "greet", std::slice::from_ref(&cap))),
            cmd(5, Kind::UnloadPlugin(pb::UnloadPlugin { name: "greet".into() })),
        ],
    );
    assert!(matches!(r[1].outcome, Some(Outcome::Ok(_))), "{r:?}");
    for id in ["g1", "g2"] {
        assert_eq!(task_state(&store, id), (pb::TaskState::Failed, "plugin greet was unloaded".into()), "{id}");
    }
    assert_eq!(task_state(&store, "e1").0, pb::TaskState::Queued, "another type's task is untouched");
    let queued: Vec<String> = store.queued_tasks(100).unwrap().into_iter().map(|q| q.id).collect();
    assert_eq!(queued, ["e1"], "the failed tasks left the queue index (and its mirror)");
}

#[test]
fn a_dropped_version_fails_the_queued_tasks_that_require_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = must_open(dir.path());
    let cap = |v: &[u8]| vec![format!("plugin:greet@{}", sha(v))];
    must_apply(
        &store,
        1,
        &[
            cmd(1, load("greet", "1", b"v1", 1)),
            cmd(2, submit("on-v1", "greet", &cap(b"v1"))),
            cmd(3, load("greet", "2", b"v2", 1)),
            cmd(4, submit("on-v2", "greet", &cap(b"v2"))),
        ],
    );
    // v1 is still kept (keep_previous 1): its task waits.
    assert_eq!(task_state(&store, "on-v1").0, pb::TaskState::Queued);
    must_apply(&store, 5, &[cmd(5, load("greet", "3", b"v3", 1))]);
    let (state, error) = task_state(&store, "on-v1");
    assert_eq!(state, pb::TaskState::Failed);
    assert!(error.contains("version was dropped"), "{error}");
    assert_eq!(task_state(&store, "on-v2").0, pb::TaskState::Queued, "v2 is kept");
}
