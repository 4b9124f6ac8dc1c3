//! The defaults, and the root `config.yaml` that documents them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;
use synod_config::{ByteSize, Compression, Config, Dur, LogFormat, Metric};

use crate::util::must_parse;

const ROOT_CONFIG: &str = include_str!("../../../config.yaml");

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap_or_else(|e| panic!("defaults must validate: {e}"));
}

#[test]
fn defaults_match_the_documented_values() {
    let c = Config::default();
    let addr = |s: &str| s.parse::<SocketAddr>().expect("test address");
    assert_eq!(c.node.id, None);
    assert_eq!(c.node.data_dir, PathBuf::from("./synod-data"));
    assert_eq!(c.node.http_addr, addr("127.0.0.1:7700"));
    assert_eq!(c.node.grpc_addr, addr("127.0.0.1:7701"));
    assert_eq!(c.node.raft_addr, addr("127.0.0.1:7702"));
    assert_eq!(c.node.advertised_raft(), "127.0.0.1:7702");
    assert_eq!(c.node.max_body_size, ByteSize::mib(2));
    assert_eq!(c.node.shutdown_grace, Dur::from_secs(10));
    assert_eq!(c.cluster.voters, 3);
    assert_eq!(c.cluster.heartbeat_interval, Dur::from_millis(40));
    assert_eq!(c.cluster.election_timeout_min, Dur::from_millis(100));
    assert_eq!(c.cluster.election_timeout_max, Dur::from_millis(200));
    assert_eq!(c.cluster.dead_after, Dur::from_secs(10));
    assert_eq!(c.cluster.snapshot_logs_threshold, 10_000);
    assert_eq!(c.cluster.snapshot_chunk_size, ByteSize::mib(1));
    assert!(c.cluster.auto_promote);
    assert!(c.storage.fsync);
    assert_eq!(c.storage.block_cache_size, ByteSize::mib(64));
    assert_eq!(c.storage.compression, Compression::Lz4);
    assert!(c.security.enabled);
    assert_eq!(c.security.jwt_algorithm, "HS256");
    assert_eq!(c.security.token_ttl, Dur::from_secs(3600));
    assert!(!c.security.tls.is_enabled());
    assert_eq!(c.scaling.min_workers, 16);
    assert_eq!(c.scaling.max_workers, 32);
    assert_eq!(c.scaling.cpu_high, 0.85);
    assert_eq!(c.scaling.task_lease, Dur::from_secs(30));
    assert_eq!(c.vector_db.max_dimension, 4096);
    assert_eq!(c.vector_db.default_metric, Metric::Cosine);
    assert_eq!(c.vector_db.default_consistency, "leader");
    assert_eq!(c.plugins.wasm_max_module_size, ByteSize::mib(16));
    assert_eq!(c.plugins.wasm_fuel, 1_000_000_000);
    assert!(c.plugins.subprocess.is_empty());
    assert!(c.external.providers.is_empty());
    assert_eq!(c.observability.log_format, LogFormat::Json);
    assert_eq!(c.observability.log_level, "info");
}

#[test]
fn root_config_yaml_equals_the_defaults() {
    let parsed = Config::from_yaml_str(ROOT_CONFIG, "config.yaml")
        .unwrap_or_else(|e| panic!("the root config.yaml must parse: {e}"));
    assert_eq!(parsed, Config::default());
}

/// Every key path of `tree`, mappings descended into.
fn key_paths(tree: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = tree {
        for (k, v) in map {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            out.insert(path.clone());
            key_paths(v, &path, out);
        }
    }
}

/// Proves the root file spells out every key (it would equal the defaults
/// with keys missing too).
#[test]
fn root_config_yaml_lists_every_key() {
    let file: Value = serde_saphyr::from_str(ROOT_CONFIG).expect("the root config.yaml is YAML");
    let defaults = serde_json::to_value(Config::default()).expect("defaults serialize");
    let (mut in_file, mut in_defaults) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&file, "", &mut in_file);
    key_paths(&defaults, "", &mut in_defaults);
    assert_eq!(in_file, in_defaults);
}

#[test]
fn root_config_yaml_comments_every_key() {
    let mut previous = "";
    for (i, line) in ROOT_CONFIG.lines().enumerate() {
        let trimmed = line.trim_start();
        let is_key = !trimmed.is_empty() && !trimmed.starts_with('#');
        let is_section = is_key && !line.starts_with(' ');
        if is_key && !is_section {
            assert!(
                previous.trim_start().starts_with('#'),
                "config.yaml line {}: `{trimmed}` has no comment above it",
                i + 1
            );
        }
        previous = line;
    }
}

#[test]
fn defaults_survive_a_yaml_round_trip() {
    let yaml = serde_saphyr::to_string(&Config::default()).expect("defaults serialize to YAML");
    assert_eq!(must_parse(&yaml), Config::default(), "{yaml}");
}

#[test]
fn a_changed_config_survives_a_yaml_round_trip() {
    let mut c = Config::default();
    c.set("node.max_body_size", "1000001").expect("set size");
    c.set("cluster.write_timeout", "1m30s").expect("set duration");
    c.set("cluster.peer_addr_overrides", "{2: '127.0.0.1:17702'}").expect("set map");
    c.set("scaling.cpu_high", "0.3").expect("set float");
    c.set("plugins.subprocess", "[{name: a, command: /bin/true}]").expect("set list");
    let yaml = serde_saphyr::to_string(&c).expect("config serializes to YAML");
    assert_eq!(must_parse(&yaml), c, "{yaml}");
}

#[test]
fn empty_and_sparse_files_fill_in_defaults() {
    assert_eq!(must_parse(""), Config::default());
    assert_eq!(must_parse("# nothing\n"), Config::default());
    assert_eq!(must_parse("node:\nsecurity:\n  tls:\n"), Config::default());
    let c = must_parse("cluster:\n  voters: 5\n");
    assert_eq!(c.cluster.voters, 5);
    assert_eq!(c.cluster.heartbeat_interval, Dur::from_millis(40));
    assert_eq!(c.node, Config::default().node);
}

#[test]
fn a_full_example_parses() {
    let c = must_parse(
        "node:
  id: 2
  http_addr: 0.0.0.0:8700
  advertise_http: node2.internal:8700
  join: http://node1.internal:8700
  labels: {zone: eu-1}
cluster:
  voters: 5
  peer_addr_overrides:
    1: 127.0.0.1:17702
storage:
  compression: zstd
  block_cache_size: 1GB
security:
  tls: {cert: /etc/synod/cert.pem, key: /etc/synod/key.pem}
plugins:
  subprocess:
    - name: resize
      command: /usr/local/bin/resize
      args: [--quality, '80']
vector_db:
  default_metric: l2
observability:
  log_format: text
  log_level: off
",
    );
    assert_eq!(c.node.id, Some(2));
    assert_eq!(c.node.advertised_http(), "node2.internal:8700");
    assert_eq!(c.node.advertised_grpc(), "127.0.0.1:7701");
    assert_eq!(c.node.labels["zone"], "eu-1");
    assert_eq!(c.cluster.peer_addr_overrides[&1], "127.0.0.1:17702");
    assert_eq!(c.storage.compression, Compression::Zstd);
    assert_eq!(c.storage.block_cache_size, ByteSize(1_000_000_000));
    assert!(c.security.tls.is_enabled());
    assert_eq!(c.plugins.subprocess[0].args, ["--quality", "80"]);
    assert_eq!(c.plugins.subprocess[0].timeout, Dur::from_secs(30));
    assert_eq!(c.vector_db.default_metric, Metric::L2);
    assert_eq!(c.observability.log_format, LogFormat::Text);
    assert_eq!(c.observability.log_level, "off", "YAML 1.2: off is a string");
}

#[test]
fn debug_output_hides_secrets() {
    let mut c = Config::default();
    c.set("security.jwt_secret", "hunter2-hunter2").expect("set secret");
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("synod-config-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join("synod.yaml");
    std::fs::write(&path, "cluster:\n  voters: 1\n").expect("write config");
    let c = Config::load(Some(&path), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cluster.voters, 1);

    std::fs::write(&path, "cluster:\n  votrs: 1\n").expect("write config");
    let e = Config::load(Some(&path), Vec::new()).expect_err("a typo must be refused");
    assert!(e.to_string().starts_with(&format!("{}: unknown key `cluster.votrs`", path.display())), "{e}");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[test]
fn load_of_a_missing_file_is_not_found() {
    let path = std::path::Path::new("/nonexistent/synod/config.yaml");
    let e = Config::load(Some(path), Vec::new()).expect_err("a missing file must be refused");
    assert_eq!((e.code(), e.kind()), ("read", "not_found"), "{e}");
    assert!(e.to_string().starts_with("/nonexistent/synod/config.yaml: cannot read"), "{e}");
}
