//! `synod config check FILE`: each documented class of bad file gives its
//! documented error naming the key, and a non-zero exit.

use std::process::Command;

use crate::util::BIN;

fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out =
        Command::new(BIN).args(["config", "check"]).arg(&path).env_remove("SYNOD_LOG").output().expect("run synod");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_shipped_config_yaml_is_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml");
    let out = Command::new(BIN).args(["config", "check", root]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_files_name_the_offending_key() {
    let cases = [
        ("cluster:\n  votrs: 3\n", "unknown key `cluster.votrs`"),
        ("nodee:\n  id: 1\n", "unknown key `nodee`"),
        ("node:\n  http_addr: \"localhost:abc\"\n", "node.http_addr"),
        ("storage:\n  block_cache_size: 12XB\n", "storage.block_cache_size"),
        ("cluster:\n  heartbeat_interval: fast\n", "cluster.heartbeat_interval"),
        ("cluster:\n  voters: 0\n", "cluster.voters"),
        ("node: [unclosed\n", "config.yaml"),
    ];
    for (yaml, expected) in cases {
        let (ok, out) = check(yaml);
        assert!(!ok, "{yaml:?} was accepted");
        assert!(out.contains(expected), "{yaml:?}: expected {expected:?} in:\n{out}");
    }
}

#[test]
fn bad_env_override_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .env("SYNOD_CLUSTER_WRITE_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SYNOD_CLUSTER_WRITE_TIMEOUT"), "{err}");
}

#[test]
fn serve_refuses_a_bad_flag_value_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--http-addr", "not-an-address", "--data-dir"])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--http-addr") && err.contains("node.http_addr"), "{err}");
    assert!(!dir.path().join("d").exists(), "nothing is written for a bad config");
}
