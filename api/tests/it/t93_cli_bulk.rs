//! The CLI for bulk work, as a user runs it: `synod vector import` of a
//! 50,000-line file killed half way and run again (exactly 50,000 points
//! in the end), `.npy` input with ids from a file, `synod task submit
//! --file` that never submits a line twice, `--output table`, shell
//! completions, and ids with `/` and `:` in URL paths.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

fn synod(t: &TestCluster, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).arg("--addr").arg(t.nodes[0].url()).env("SYNOD_TOKEN", &t.admin_token).env_remove("SYNOD_ADDR");
    c
}

fn ok(out: Output) -> (String, String) {
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(out.status.success(), "synod failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

async fn points(t: &TestCluster, name: &str) -> u64 {
    let (code, v) = t.get(0, &format!("/collections/{name}")).await.expect("GET collection");
    assert_eq!(code, 200, "{v}");
    v["points"].as_u64().expect("points")
}

async fn create(t: &TestCluster, name: &str, dimension: u32) {
    let r = t
        .http
        .post(format!("{}/collections", t.nodes[0].url()))
        .json(&json!({"name": name, "dimension": dimension, "metric": "l2"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

fn progress(file: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(file).ok()?).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_import_of_50k_points_killed_half_way_resumes_to_exactly_50k() {
    let t = must_single(&[]).await;
    create(&t, "bulk", 8).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("points.jsonl");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
    const N: u64 = 50_000;
    for i in 0..N {
        let v: Vec<f32> = (0..8).map(|d| ((i * 31 + d * 7) % 97) as f32 / 97.0).collect();
        writeln!(w, "{}", json!({"id": i, "vector": v, "metadata": {"i": i}})).expect("write");
    }
    w.flush().expect("flush");
    drop(w);
    let file_arg = file.to_str().expect("utf-8");
    let progress_file = dir.path().join("points.jsonl.collection-bulk-tenant-own.synod-progress");

    // The first run, killed (-9) once some 10,000 points are stored.
    let mut first = synod(&t, &["vector", "import", "bulk", file_arg, "--batch", "250", "--concurrency", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stored_at_kill = t
        .wait_for("10,000 points stored", Duration::from_secs(120), || {
            let p = progress(&progress_file);
            async move { p.and_then(|p| p["done"].as_u64()).filter(|d| *d >= 10_000) }
        })
        .await
        .expect("progress");
    first.kill().expect("kill -9");
    let out = first.wait_with_output().expect("wait");
    let said = String::from_utf8_lossy(&out.stderr);
    let done = progress(&progress_file).and_then(|p| p["done"].as_u64()).expect("a progress file");
    assert!(done < N, "the import finished before it could be interrupted (done {done}); the test needs more points");
    assert!(done >= stored_at_kill);
    let now = points(&t, "bulk").await;
    assert!(now >= done && now < N, "{now} points after the kill, {done} acknowledged");
    // Not a terminal: plain progress lines, no carriage returns.
    assert!(!said.contains('\r'), "{said}");

    // The second run resumes after what is stored and ends with every point once.
    let (stdout, stderr) =
        ok(synod(&t, &["vector", "import", "bulk", file_arg, "--batch", "250"]).output().expect("run"));
    assert!(stderr.contains(&format!("resuming: {done} of {N} points are stored")), "{stderr}");
    assert!(stderr.contains(&format!("{N} points stored ({} sent now)", N - done)), "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(answer["points"], N, "{answer}");
    assert_eq!(answer["sent"], N - done);
    assert_eq!(points(&t, "bulk").await, N);
    // A point from either run is whole.
    let (_, p) = t.get(0, "/collections/bulk/points/49999").await.expect("GET");
    assert_eq!(p["metadata"]["i"], 49_999, "{p}");

    // A third run has nothing to send; --restart sends it all again, and
    // the upserts by id leave the count where it is.
    let (_, stderr) = ok(synod(&t, &["vector", "import", "bulk", file_arg]).output().expect("run"));
    assert!(stderr.contains("already stored"), "{stderr}");
    ok(synod(&t, &["vector", "import", "bulk", file_arg, "--restart"]).output().expect("run"));
    assert_eq!(points(&t, "bulk").await, N);

    // The collection dropped and created again holds none of the points:
    // the progress file of its earlier life does not skip them.
    let r = t.http.delete(format!("{}/collections/bulk", t.nodes[0].url())).send().await.expect("DELETE");
    assert_eq!(r.status(), 200);
    create(&t, "bulk", 8).await;
    let (_, stderr) = ok(synod(&t, &["vector", "import", "bulk", file_arg]).output().expect("run"));
    assert!(stderr.contains("created again"), "{stderr}");
    assert_eq!(points(&t, "bulk").await, N);

    // A bad line is named, and what came before it is kept.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": \"a\", \"vector\": [0,0,0,0,0,0,0,1]}\n{\"id\": \"b\"}\n").expect("write");
    let out =
        synod(&t, &["vector", "import", "bulk", bad.to_str().expect("utf-8"), "--batch", "1", "--concurrency", "1"])
            .output()
            .expect("run");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("line 2: neither"), "{said}");
    assert_eq!(points(&t, "bulk").await, N + 1);
}

/// A `.npy` file as numpy's `np.save` writes it (version 1, float32).
fn npy(rows: &[[f32; 4]]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 4), }}", rows.len());
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for r in rows {
        for x in r {
            out.extend(x.to_le_bytes());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npy_import_with_ids_that_need_encoding_in_a_path() {
    let t = must_single(&[]).await;
    create(&t, "arr", 4).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("v.npy");
    std::fs::write(&file, npy(&[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])).expect("write");
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "s:a/b\nx y?#%\n7\n").expect("write");
    let (stdout, _) = ok(synod(
        &t,
        &["vector", "import", "arr", file.to_str().expect("utf-8"), "--ids", ids.to_str().expect("utf-8")],
    )
    .output()
    .expect("run"));
    assert_eq!(serde_json::from_str::<Value>(&stdout).expect("JSON")["points"], 3);

    // `get-point` with ids that hold `/`, `:`, `?`, `#`, `%` and a space.
    for (id, want) in [("s:a/b", json!([1.0, 0.0, 0.0, 0.0])), ("x y?#%", json!([0.0, 1.0, 0.0, 0.0]))] {
        let (stdout, _) = ok(synod(&t, &["vector", "get-point", "arr", id]).output().expect("run"));
        let p: Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!((p["id"].clone(), p["vector"].clone()), (json!(id), want), "{p}");
    }
    let (stdout, _) = ok(synod(&t, &["vector", "get-point", "arr", "7"]).output().expect("run"));
    assert_eq!(serde_json::from_str::<Value>(&stdout).expect("JSON")["id"], 7);
    // Control: the same id unencoded is another path, which has no point.
    let (code, _) = t.get(0, "/collections/arr/points/s:a/b").await.expect("GET");
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_submit_from_a_file_never_submits_a_line_twice_and_lists_as_a_table() {
    let t = must_single(&[]).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tasks.jsonl");
    let lines: Vec<String> = (0..300).map(|i| json!({"type": "echo", "payload": {"n": i}}).to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let file_arg = file.to_str().expect("utf-8");

    let (stdout, stderr) =
        ok(synod(&t, &["task", "submit", "--file", file_arg, "--batch", "64"]).output().expect("run"));
    let answers: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(answers.len(), 300, "{stderr}");
    assert_eq!(answers[0]["line"], 1);
    assert!(answers.iter().all(|a| a["id"].is_string() && a["duplicate"] == false));

    // Everything again: every line finds its task.
    let (stdout, stderr) = ok(synod(&t, &["task", "submit", "--file", file_arg, "--restart"]).output().expect("run"));
    let again: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert!(again.iter().all(|a| a["duplicate"] == true), "{stderr}");
    assert_eq!(
        again.iter().map(|a| a["id"].clone()).collect::<Vec<_>>(),
        answers.iter().map(|a| a["id"].clone()).collect::<Vec<_>>()
    );
    let (_, list) = t.get(0, "/tasks?limit=1000").await.expect("list");
    assert_eq!(list["tasks"].as_array().expect("tasks").len(), 300, "no line was submitted twice");

    // Lines appended: the progress file no longer matches the file, and
    // --restart sends everything; the first 300 lines keep their keys.
    let more: Vec<String> = (300..320).map(|i| json!({"type": "echo", "payload": {"n": i}}).to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n" + &more.join("\n") + "\n").expect("append");
    let out = synod(&t, &["task", "submit", "--file", file_arg]).output().expect("run");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--restart"));
    let (stdout, _) = ok(synod(&t, &["task", "submit", "--file", file_arg, "--restart"]).output().expect("run"));
    let third: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(third.iter().filter(|a| a["duplicate"] == false).count(), 20);
    let (_, list) = t.get(0, "/tasks?limit=1000").await.expect("list");
    assert_eq!(list["tasks"].as_array().expect("tasks").len(), 320, "appended lines only");

    // --output table on a listing.
    let (table, _) = ok(synod(&t, &["task", "list", "--limit", "5", "--output", "table"]).output().expect("run"));
    let header = table.lines().next().expect("a header");
    assert!(header.starts_with("ID") && header.contains("STATE") && header.contains("TYPE"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains("echo")).count(), 5, "{table}");
    // Control: the default stays JSON.
    let (json_out, _) = ok(synod(&t, &["task", "list", "--limit", "5"]).output().expect("run"));
    assert!(serde_json::from_str::<Value>(&json_out).is_ok(), "{json_out}");
}

#[test]
fn shell_completions_cover_the_commands() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef synod"), ("fish", "complete -c synod")] {
        let out = Command::new(BIN).args(["completions", shell]).output().expect("run");
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: no {marker}");
        assert!(script.contains("import") && script.contains("completions"), "{shell}: commands missing");
    }
    // Control: an unknown shell is refused.
    assert!(!Command::new(BIN).args(["completions", "tcsh"]).output().expect("run").status.success());

    // `synod completions bash | head -1`: the reader goes away after a few
    // bytes; the command ends quietly, no panic.
    let mut child = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut head = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().expect("stdout"), &mut head).expect("a first line");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("panicked"), "{said}");
    assert!(out.status.success() || out.status.code() == Some(141), "{:?}: {said}", out.status);
}
