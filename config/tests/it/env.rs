//! `SYNOD_<SECTION>_<KEY>` environment overrides.

use std::path::PathBuf;

use synod_config::{ByteSize, Config, Dur, Metric};

use crate::util::{env, must_fail_env, must_load_env};

#[test]
fn env_overrides_a_field() {
    let c = must_load_env(&[
        ("SYNOD_NODE_HTTP_ADDR", "0.0.0.0:8700"),
        ("SYNOD_CLUSTER_VOTERS", "5"),
        ("SYNOD_STORAGE_FSYNC", "false"),
        ("SYNOD_STORAGE_BLOCK_CACHE_SIZE", "128MiB"),
        ("SYNOD_CLUSTER_HEARTBEAT_INTERVAL", "50ms"),
    ]);
    assert_eq!(c.node.http_addr.to_string(), "0.0.0.0:8700");
    assert_eq!(c.cluster.voters, 5);
    assert!(!c.storage.fsync);
    assert_eq!(c.storage.block_cache_size, ByteSize::mib(128));
    assert_eq!(c.cluster.heartbeat_interval, Dur::from_millis(50));
}

#[test]
fn env_section_with_an_underscore() {
    let c = must_load_env(&[("SYNOD_VECTOR_DB_MAX_DIMENSION", "1536"), ("SYNOD_VECTOR_DB_DEFAULT_METRIC", "dot")]);
    assert_eq!(c.vector_db.max_dimension, 1536);
    assert_eq!(c.vector_db.default_metric, Metric::Dot);
}

#[test]
fn env_reaches_sub_sections() {
    let c = must_load_env(&[
        ("SYNOD_SECURITY_TLS_CERT", "/etc/synod/cert.pem"),
        ("SYNOD_SECURITY_TLS_KEY", "/etc/synod/key.pem"),
    ]);
    assert_eq!(c.security.tls.cert, Some(PathBuf::from("/etc/synod/cert.pem")));
    assert!(c.security.tls.is_enabled());
}

#[test]
fn env_beats_the_file() {
    let dir = std::env::temp_dir().join(format!("synod-config-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join("synod.yaml");
    std::fs::write(&path, "cluster:\n  voters: 1\n  auto_promote: false\n").expect("write config");
    let c = Config::load(Some(&path), env(&[("SYNOD_CLUSTER_VOTERS", "7")])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cluster.voters, 7, "env wins");
    assert!(!c.cluster.auto_promote, "the file still applies");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[test]
fn text_values_need_no_quotes() {
    let c = must_load_env(&[
        ("SYNOD_SECURITY_JWT_SECRET", "12345"),
        ("SYNOD_OBSERVABILITY_LOG_LEVEL", "info,synod_raft=debug"),
        ("SYNOD_NODE_ADVERTISE_HTTP", "[::1]:7700"),
    ]);
    assert_eq!(c.security.jwt_secret.as_deref(), Some("12345"));
    assert_eq!(c.observability.log_level, "info,synod_raft=debug");
    assert_eq!(c.node.advertise_http.as_deref(), Some("[::1]:7700"));
}

#[test]
fn other_variables_are_ignored() {
    let c = must_load_env(&[
        ("HOME", "/root"),
        ("PATH", "/bin"),
        ("SYNOD_LOG", "debug"),
        ("SYNOD_ADMIN_PASSWORD", "secret"),
        ("synod_node_http_addr", "nonsense"),
    ]);
    assert_eq!(c, Config::default());
}

#[test]
fn invalid_env_value_names_the_variable() {
    let e = must_fail_env(&[("SYNOD_NODE_HTTP_ADDR", "localhost:abc")], "invalid_value");
    assert_eq!(e.origin(), Some("SYNOD_NODE_HTTP_ADDR"));
    assert!(
        e.to_string().starts_with(r#"SYNOD_NODE_HTTP_ADDR: node.http_addr: invalid socket address "localhost:abc""#),
        "{e}"
    );
    let e = must_fail_env(&[("SYNOD_VECTOR_DB_HNSW_M", "-3")], "invalid_value");
    assert!(e.to_string().starts_with("SYNOD_VECTOR_DB_HNSW_M: vector_db.hnsw_m: "), "{e}");
}

#[test]
fn unknown_section_names_the_variable() {
    let e = must_fail_env(&[("SYNOD_CLUSTR_VOTERS", "3")], "unknown_env_var");
    assert!(e.to_string().starts_with("SYNOD_CLUSTR_VOTERS: unknown config section"), "{e}");
    assert!(e.to_string().contains("vector_db"), "{e}");
}

#[test]
fn unknown_field_names_the_variable_and_key() {
    let e = must_fail_env(&[("SYNOD_CLUSTER_VOTRS", "3")], "unknown_key");
    assert!(
        e.to_string().starts_with("SYNOD_CLUSTER_VOTRS: unknown key `cluster.votrs` (expected one of: voters,"),
        "{e}"
    );
}

#[test]
fn env_results_are_validated() {
    let e = must_fail_env(&[("SYNOD_SCALING_MIN_WORKERS", "40")], "validation");
    assert_eq!(e.key(), Some("scaling.min_workers"));
}

#[test]
fn env_order_does_not_matter() {
    let a = [("SYNOD_SECURITY_TLS", "{cert: a.pem, key: a.key}"), ("SYNOD_SECURITY_TLS_CERT", "b.pem")];
    let mut b = a;
    b.reverse();
    assert_eq!(must_load_env(&a), must_load_env(&b));
}

#[test]
fn seeds_come_as_one_comma_separated_variable_or_a_list() {
    let c = must_load_env(&[
        ("SYNOD_CLUSTER_SEEDS", "synod-0.synod:7700, synod-1.synod:7700,http://10.0.0.3:7700"),
        ("SYNOD_CLUSTER_BOOTSTRAP_EXPECT", "3"),
    ]);
    assert_eq!(c.cluster.seeds, ["synod-0.synod:7700", "synod-1.synod:7700", "http://10.0.0.3:7700"]);
    assert_eq!(c.cluster.bootstrap_expect, 3);
    let c = must_load_env(&[("SYNOD_CLUSTER_SEEDS", "[a:1, b:2]")]);
    assert_eq!(c.cluster.seeds, ["a:1", "b:2"]);
    let c = must_load_env(&[("SYNOD_CLUSTER_SEEDS", "a:1")]);
    assert_eq!(c.cluster.seeds, ["a:1"]);
}
