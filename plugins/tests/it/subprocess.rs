//! Subprocess plugins with real processes: the README's Python example runs
//! in a kept worker; a worker that dies mid-task fails that call retryably
//! and is replaced; a timeout or cancel kills the process (and its
//! children); an oversized answer, an error answer and stray output are
//! handled; a plugin is ready only where its executable is.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synod_plugins::{Plugin, PluginError, SubprocessLimits, SubprocessManifest, SubprocessPlugin, TaskContext};

const TEXTSTATS: &str = include_str!("../../examples/subprocess/textstats.py");

/// A stand-in for the README example's knobs that cannot be asked of it: a
/// worker that exits, floods, chats on stdout or leaves a child behind.
const MISCHIEF: &str = r#"#!/usr/bin/env python3
import json, os, subprocess, sys
for line in sys.stdin:
    req = json.loads(line)
    p = req["payload"]
    if p.get("exit"):
        os._exit(3)
    if p.get("flood"):
        sys.stdout.write("x" * p["flood"] + "\n"); sys.stdout.flush(); continue
    if p.get("child_pid_file"):
        child = subprocess.Popen(["sleep", "600"])
        open(p["child_pid_file"], "w").write(str(child.pid))
        child.wait()
    print("a stray line that is not the answer", flush=True)
    print(json.dumps({"id": req["id"] + 1000, "result": "not mine"}), flush=True)
    print(json.dumps({"id": req["id"], "result": {"pid": os.getpid()}}), flush=True)
"#;

fn install(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

fn manifest(command: &str) -> SubprocessManifest {
    SubprocessManifest {
        name: "stats".to_owned(),
        version: "1".to_owned(),
        description: String::new(),
        command: command.to_owned(),
        args: Vec::new(),
        workers: None,
        timeout_ms: Some(20_000),
        max_payload_bytes: None,
    }
}

fn limits(dir: &Path) -> SubprocessLimits {
    SubprocessLimits { dir: Some(dir.to_owned()), max_output_bytes: 4096, ..SubprocessLimits::default() }
}

fn plugin(dir: &Path, m: SubprocessManifest) -> SubprocessPlugin {
    SubprocessPlugin::new(vec![(m, "a".repeat(64))], &limits(dir)).unwrap()
}

fn ctx(attempt: u32) -> TaskContext {
    TaskContext::new("task-1", "acme", attempt)
}

fn must_run(p: &SubprocessPlugin, payload: Value) -> Value {
    p.validate(&payload).unwrap();
    p.run(&payload, &ctx(1)).unwrap_or_else(|e| panic!("{payload}: {e:?}"))
}

fn alive(pid: u64) -> bool {
    // A killed process that was reaped is gone; a zombie would show state Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Polls `f` until it is true; panics after a generous deadline.
fn must_become(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_example_runs_in_a_kept_worker_and_reports_errors_as_permanent_failures() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "textstats.py", TEXTSTATS);
    let p = plugin(dir.path(), manifest("textstats.py"));
    assert_eq!(p.ready(), Ok(()));
    assert_eq!(p.info().kind, "subprocess");

    let first = must_run(&p, json!({"text": "The cat sat. The cat ran!", "top": 2}));
    assert_eq!(first["words"], 6);
    assert_eq!(first["chars"], 25);
    assert_eq!(first["top"], json!([["the", 2], ["cat", 2]]));
    assert_eq!(first["attempt"], 1);
    let second = must_run(&p, json!({"text": "again"}));
    assert_eq!(second["pid"], first["pid"], "the worker is kept between tasks");

    let e = p.run(&json!({"text": 5}), &ctx(1)).unwrap_err();
    assert_eq!(e, PluginError::failed_permanent("plugin stats: payload.text must be a string"));
    assert!(!e.retryable());
    // An error answer is not a crash: the same worker serves the next task.
    assert_eq!(must_run(&p, json!({"text": "x"}))["pid"], first["pid"]);
}

#[test]
fn a_worker_that_dies_mid_task_fails_it_retryably_and_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "mischief.py", MISCHIEF);
    let p = plugin(dir.path(), manifest("mischief.py"));
    let before = must_run(&p, json!({}))["pid"].as_u64().unwrap();

    let e = p.run(&json!({"exit": true}), &ctx(1)).unwrap_err();
    assert!(e.retryable(), "{e:?}");
    assert!(e.to_string().contains("exited during the task"), "{e}");
    must_become("the dead worker reaped", || !alive(before));

    // The retry (the scheduler's next attempt) gets a new process.
    let after = must_run(&p, json!({}))["pid"].as_u64().unwrap();
    assert_ne!(after, before);
}

#[test]
fn stray_stdout_lines_and_answers_to_other_ids_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "mischief.py", MISCHIEF);
    let p = plugin(dir.path(), manifest("mischief.py"));
    let out = must_run(&p, json!({}));
    assert!(out["pid"].is_u64(), "{out}");
}

#[test]
fn an_answer_over_the_output_limit_fails_permanently_and_the_worker_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "mischief.py", MISCHIEF);
    let p = plugin(dir.path(), manifest("mischief.py"));
    let before = must_run(&p, json!({}))["pid"].as_u64().unwrap();
    let e = p.run(&json!({"flood": 100_000}), &ctx(1)).unwrap_err();
    assert!(!e.retryable() && e.to_string().contains("output limit of 4096"), "{e:?}");
    must_become("the flooding worker killed", || !alive(before));
    // Control: an answer under the limit still passes.
    assert!(must_run(&p, json!({}))["pid"].as_u64().is_some_and(|pid| pid != before));
}

#[test]
fn a_timeout_kills_the_worker_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "mischief.py", MISCHIEF);
    let mut m = manifest("mischief.py");
    m.timeout_ms = Some(1500);
    let p = plugin(dir.path(), m);
    let worker = must_run(&p, json!({}))["pid"].as_u64().unwrap();
    let pid_file = dir.path().join("child.pid");

    let started = Instant::now();
    let e = p.run(&json!({"child_pid_file": pid_file}), &ctx(1)).unwrap_err();
    assert_eq!(e, PluginError::Timeout(Duration::from_millis(1500)));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let child: u64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    must_become("the worker killed", || !alive(worker));
    must_become("the worker's own child killed", || !alive(child));
    assert_ne!(must_run(&p, json!({}))["pid"].as_u64(), Some(worker));
}

#[test]
fn cancelling_a_task_kills_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "mischief.py", MISCHIEF);
    let p = std::sync::Arc::new(plugin(dir.path(), manifest("mischief.py")));
    let worker = must_run(&p, json!({}))["pid"].as_u64().unwrap();
    let pid_file = dir.path().join("child.pid");
    let ctx = ctx(1);
    let cancel = ctx.cancel.clone();
    let runner = {
        let (p, payload) = (p.clone(), json!({"child_pid_file": pid_file}));
        std::thread::spawn(move || p.run(&payload, &ctx))
    };
    // The worker is inside the task once its child's pid is written.
    must_become("the task running", || std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.is_empty()));
    cancel.cancel();
    assert_eq!(runner.join().unwrap(), Err(PluginError::Cancelled));
    must_become("the cancelled worker killed", || !alive(worker));
}

#[test]
fn a_plugin_is_ready_only_where_its_executable_is() {
    let dir = tempfile::tempdir().unwrap();
    let p = plugin(dir.path(), manifest("textstats.py"));
    let why = p.ready().unwrap_err();
    assert!(why.contains("textstats.py"), "{why}");
    let e = p.run(&json!({"text": "x"}), &ctx(1)).unwrap_err();
    assert!(e.retryable(), "a missing executable is this node's problem: {e:?}");

    // Installed later: ready, and runs.
    install(dir.path(), "textstats.py", TEXTSTATS);
    assert_eq!(p.ready(), Ok(()));
    must_become("a worker started after the backoff", || {
        p.run(&json!({"text": "now"}), &ctx(2)).is_ok_and(|v| v["words"] == 1)
    });

    // Not executable: not ready.
    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("textstats.py");
    std::fs::write(&path, TEXTSTATS).unwrap();
    assert!(plugin(other.path(), manifest("textstats.py")).ready().unwrap_err().contains("not an executable"));
}

#[test]
fn manifests_are_checked_against_the_node_limits() {
    use synod_plugins::check_subprocess_manifest;
    let l = SubprocessLimits { max_workers: 2, ..SubprocessLimits::default() };
    assert_eq!(check_subprocess_manifest(&manifest("bin/tool"), &l), Ok(()));
    let mut m = manifest("../escape.sh");
    assert!(check_subprocess_manifest(&m, &l).unwrap_err().contains("inside plugins.dir"));
    m = manifest("/usr/bin/python3");
    assert!(check_subprocess_manifest(&m, &l).is_err());
    m = manifest("x");
    m.workers = Some(3);
    assert!(check_subprocess_manifest(&m, &l).unwrap_err().contains("at most 2"));
    m.workers = Some(0);
    assert!(check_subprocess_manifest(&m, &l).is_err());
    m = manifest("x");
    m.name = "Bad Name".to_owned();
    assert!(check_subprocess_manifest(&m, &l).is_err());
}

#[test]
fn a_task_runs_the_version_it_was_submitted_for() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "textstats.py", TEXTSTATS);
    let mut old = manifest("textstats.py");
    old.version = "0".to_owned();
    let new = manifest("textstats.py");
    let p = SubprocessPlugin::new(vec![(new, "b".repeat(64)), (old, "a".repeat(64))], &limits(dir.path())).unwrap();
    let mut c = ctx(1);
    c.plugin_version = Some("a".repeat(64));
    assert_eq!(p.run(&json!({"text": "old one"}), &c).unwrap()["words"], 2);
    c.plugin_version = Some("c".repeat(64));
    let e = p.run(&json!({"text": "x"}), &c).unwrap_err();
    assert!(!e.retryable() && e.to_string().contains("is gone"), "{e:?}");
}
