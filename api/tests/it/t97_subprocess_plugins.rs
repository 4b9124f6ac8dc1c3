//! Subprocess plugins on a real 3-node cluster, with the README's Python
//! example: loaded through a node that lacks the executable, run only where
//! it is, advertised once it is installed; a worker killed mid-task gets
//! its task retried to success; a timeout kills the worker and fails the
//! task cleanly; unload removes it everywhere.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

const TEXTSTATS: &str = include_str!("../../../plugins/examples/subprocess/textstats.py");

fn install(dir: &Path) {
    let path = dir.join("textstats.py");
    std::fs::write(&path, TEXTSTATS).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
}

async fn post(t: &TestCluster, i: usize, path: &str, body: Value) -> (u16, Value) {
    let r = t.http.post(format!("{}{path}", t.nodes[i].url())).json(&body).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn load_body(name: &str, extra: Value) -> Value {
    let mut manifest = json!({"kind": "subprocess", "name": name, "version": "1", "command": "textstats.py"});
    if let (Some(m), Some(e)) = (manifest.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    json!({"manifest": manifest})
}

async fn must_submit(t: &TestCluster, via: usize, body: Value) -> String {
    let (code, v) = post(t, via, "/tasks/submit", body).await;
    assert_eq!(code, 200, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn must_finish(t: &TestCluster, via: usize, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, r) = t.get(via, &format!("/tasks/{id}/result?wait=10")).await.unwrap();
        if r["finished"] == true {
            return r;
        }
        assert!(Instant::now() < deadline, "task {id} never finished: {r}");
    }
}

/// Pids of the live processes running the example from `dir`.
fn workers_in(dir: &Path) -> Vec<u32> {
    let script = dir.join("textstats.py").canonicalize().unwrap_or_else(|_| dir.join("textstats.py"));
    let script = script.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).split('\0').any(|arg| arg == script) {
            pids.push(pid);
        }
    }
    pids
}

async fn must_log_line(t: &TestCluster, i: usize, needle: &str) {
    t.wait_for(needle, Duration::from_secs(30), || async { t.log_text(i).contains(needle).then_some(()) })
        .await
        .unwrap_or_else(|_| panic!("node {i} never logged {needle:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subprocess_plugin_runs_where_its_executable_is_survives_a_killed_worker_and_times_out_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("plugins-{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    install(&dirs[0]);
    install(&dirs[1]);
    let args = |i: usize| {
        let mut a = fast_args();
        a.extend(["--set".to_owned(), format!("plugins.dir={}", dirs[i].display())]);
        a
    };
    let mut t = must_single(&args(0)).await;
    t.add_node(Some(0), &args(1)).expect("start node 1");
    t.add_node(Some(0), &args(2)).expect("start node 2");
    t.wait_voters(0, 3, READY).await.expect("three voters");
    let mut ids = Vec::new();
    for i in 0..3 {
        t.wait_ready(i, READY).await.expect("all ready");
        ids.push(t.node_id(i).await.unwrap());
    }
    for (i, id) in ids.iter().enumerate() {
        must_put_labels(&t, 0, *id, json!({"pin": i.to_string()})).await;
    }

    // Bad manifests are refused and store nothing.
    let (code, v) = post(&t, 2, "/plugins/load", load_body("textstats", json!({"command": "../textstats.py"}))).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("inside plugins.dir"), "{v}");
    let (code, v) = post(&t, 2, "/plugins/load", load_body("textstats", json!({"workers": 99}))).await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = t.get(0, "/plugins/textstats").await.unwrap();
    assert_eq!(code, 404);

    // Loaded through node 2, which does not have the executable: ready on 0 and 1 only.
    let (code, v) = post(&t, 2, "/plugins/load", load_body("textstats", json!({}))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["kind"], "subprocess");
    must_plugin_ready(&t, 2, "textstats", None, &ids[..2]).await;
    let mut tasks = Vec::new();
    for n in 0..6 {
        let body = json!({"type": "textstats", "payload": {"text": format!("one two two {n}")}});
        tasks.push(must_submit(&t, 2, body).await);
    }
    for id in &tasks {
        let r = must_finish(&t, 2, id).await;
        assert_eq!(r["state"], "succeeded", "{r}");
        assert_eq!(r["result"]["words"], 4, "{r}");
        let (_, task) = t.get(2, &format!("/tasks/{id}/status")).await.unwrap();
        let ran_on = task["node_id"].as_u64().unwrap_or_else(|| panic!("no node in {task}"));
        assert!(ids[..2].contains(&ran_on), "ran where the executable is missing: {task}");
    }

    // Installed on node 2 later: advertised there within a sync round.
    install(&dirs[2]);
    must_plugin_ready(&t, 0, "textstats", None, &ids).await;
    let id = must_submit(&t, 0, json!({"type": "textstats", "payload": {"text": "x"}, "labels": {"pin": "2"}})).await;
    assert_eq!(must_finish(&t, 0, &id).await["state"], "succeeded");

    // A worker killed mid-task: the task is retried and succeeds in a new process.
    let body = json!({
        "type": "textstats",
        "payload": {"text": "slow one", "sleep_ms": 3000},
        "labels": {"pin": "0"},
        "max_attempts": 3,
        "backoff": {"initial_ms": 100, "multiplier": 2.0, "max_ms": 500},
    });
    let id = must_submit(&t, 1, body).await;
    must_log_line(&t, 0, &format!("task {id} attempt 1 started")).await;
    let killed = workers_in(&dirs[0]);
    assert_eq!(killed.len(), 1, "one worker (workers = 1): {killed:?}");
    let status = std::process::Command::new("kill").args(["-9", &killed[0].to_string()]).status().unwrap();
    assert!(status.success());
    let r = must_finish(&t, 1, &id).await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["result"]["attempt"], 2, "{r}");
    assert_ne!(r["result"]["pid"].as_u64(), Some(u64::from(killed[0])));
    let (_, task) = t.get(1, &format!("/tasks/{id}/status")).await.unwrap();
    let first_error = task["attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(first_error.contains("exited during the task"), "{task}");

    // A timeout kills the worker and fails the task; the node runs the next one.
    let (code, v) = post(&t, 0, "/plugins/load", load_body("strict", json!({"timeout_ms": 1000}))).await;
    assert_eq!(code, 200, "{v}");
    must_plugin_ready(&t, 0, "strict", None, &ids).await;
    let body = json!({
        "type": "strict", "payload": {"text": "t", "sleep_ms": 30000}, "labels": {"pin": "1"}, "max_attempts": 1,
    });
    let id = must_submit(&t, 0, body).await;
    let r = must_finish(&t, 0, &id).await;
    // A timeout may be load, so it is retryable: with attempts used up, dead-lettered.
    assert_eq!(r["state"], "dead_lettered", "{r}");
    assert!(r["error"].as_str().unwrap().contains("timed out"), "{r}");
    let id = must_submit(&t, 0, json!({"type": "strict", "payload": {"text": "ok"}, "labels": {"pin": "1"}})).await;
    assert_eq!(must_finish(&t, 0, &id).await["state"], "succeeded");

    // Unloaded everywhere: the workers stop, and the type is unknown.
    for name in ["textstats", "strict"] {
        let (code, v) = post(&t, 1, &format!("/plugins/{name}/unload"), json!({})).await;
        assert_eq!(code, 200, "{v}");
    }
    for (i, dir) in dirs.iter().enumerate() {
        t.wait_for("workers stopped", Duration::from_secs(30), || async { workers_in(dir).is_empty().then_some(()) })
            .await
            .unwrap_or_else(|_| panic!("node {i} still runs textstats workers"));
    }
    let (code, v) = post(&t, 2, "/tasks/submit", json!({"type": "textstats", "payload": {"text": "x"}})).await;
    assert_eq!(code, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_loads_lists_and_unloads_wasm_and_subprocess_plugins() {
    use synod_api::pb::plugins_client::PluginsClient;
    use synod_api::pb::{ListPluginsRequest, LoadPluginRequest, PluginName};

    let dir = tempfile::tempdir().unwrap();
    install(dir.path());
    let mut args = fast_args();
    args.extend(["--set".to_owned(), format!("plugins.dir={}", dir.path().display())]);
    let t = must_single(&args).await;
    let mut c = PluginsClient::with_interceptor(must_channel(&t, 0).await, AdminAuth::of(&t));

    let manifest = json!({"kind": "subprocess", "name": "textstats", "version": "1", "command": "textstats.py"});
    let req = LoadPluginRequest { manifest_json: manifest.to_string(), module: Vec::new() };
    let loaded = c.load(req).await.expect("load a subprocess plugin").into_inner();
    assert_eq!((loaded.kind.as_str(), loaded.version.as_str()), ("subprocess", "1"));
    assert_eq!(loaded.nodes_ready, vec![t.node_id(0).await.unwrap()]);

    let greet = include_str!("../../../plugins/examples/wasm/greet.wat");
    let req = LoadPluginRequest {
        manifest_json: json!({"name": "greet", "version": "1"}).to_string(),
        module: greet.as_bytes().to_vec(),
    };
    assert_eq!(c.load(req).await.expect("load a WASM plugin").into_inner().kind, "wasm");

    // A subprocess manifest with a module, or a module-less WASM one, is refused.
    for (manifest, module) in [(manifest.clone(), b"x".to_vec()), (json!({"name": "g2", "version": "1"}), Vec::new())] {
        let req = LoadPluginRequest { manifest_json: manifest.to_string(), module };
        let status = c.load(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }

    let list = c.list(ListPluginsRequest {}).await.unwrap().into_inner().plugins;
    let kind = |name: &str| list.iter().find(|p| p.name == name).map(|p| p.kind.clone());
    assert_eq!(kind("textstats").as_deref(), Some("subprocess"));
    assert_eq!(kind("greet").as_deref(), Some("wasm"));
    assert_eq!(kind("echo").as_deref(), Some("builtin"));

    c.unload(PluginName { name: "textstats".into() }).await.expect("unload");
    let status = c.info(PluginName { name: "textstats".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}
