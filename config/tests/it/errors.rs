//! Every error class names the offending key and where it came from.

use crate::util::must_fail;

#[test]
fn unknown_top_level_key() {
    let e = must_fail("clustr:\n  voters: 3\n", "unknown_key");
    assert_eq!(e.key(), Some("clustr"));
    assert_eq!(
        e.to_string(),
        "config.yaml: unknown key `clustr` (expected one of: node, cluster, storage, security, \
         scaling, vector_db, plugins, external, observability)"
    );
}

#[test]
fn unknown_nested_key() {
    let e = must_fail("cluster:\n  votrs: 3\n", "unknown_key");
    assert_eq!(e.key(), Some("cluster.votrs"));
    assert_eq!(e.kind(), "invalid_argument");
    assert!(
        e.to_string()
            .starts_with("config.yaml: unknown key `cluster.votrs` (expected one of: voters, heartbeat_interval, "),
        "{e}"
    );
}

#[test]
fn unknown_key_two_levels_down_and_in_a_list() {
    let e = must_fail("security:\n  tls:\n    crt: a.pem\n", "unknown_key");
    assert_eq!(e.to_string(), "config.yaml: unknown key `security.tls.crt` (expected one of: cert, key, ca)");
    let e = must_fail("plugins:\n  subprocess:\n    - name: a\n      cmd: b\n", "unknown_key");
    assert_eq!(e.key(), Some("plugins.subprocess[0].cmd"), "{e}");
}

#[test]
fn bad_socket_address() {
    let e = must_fail("node:\n  http_addr: localhost:abc\n", "invalid_value");
    assert_eq!(e.key(), Some("node.http_addr"));
    assert!(e.to_string().starts_with(r#"config.yaml: node.http_addr: invalid socket address "localhost:abc""#), "{e}");
}

#[test]
fn bad_size() {
    let e = must_fail("storage:\n  block_cache_size: 12XB\n", "invalid_value");
    assert_eq!(
        e.to_string(),
        r#"config.yaml: storage.block_cache_size: invalid size "12XB" (use e.g. 64MiB, 1GB, 4096)"#
    );
    let e = must_fail("storage:\n  block_cache_size: -5\n", "invalid_value");
    assert!(e.to_string().contains("must not be negative"), "{e}");
}

#[test]
fn bad_duration() {
    let e = must_fail("cluster:\n  heartbeat_interval: fast\n", "invalid_value");
    assert_eq!(
        e.to_string(),
        r#"config.yaml: cluster.heartbeat_interval: invalid duration "fast" (use e.g. 500ms, 5s, 2m)"#
    );
    let e = must_fail("cluster:\n  heartbeat_interval: 100\n", "invalid_value");
    assert!(e.to_string().contains("a unit is required"), "{e}");
}

#[test]
fn bad_enum_value() {
    let e = must_fail("storage:\n  compression: snappy\n", "invalid_value");
    assert_eq!(
        e.to_string(),
        r#"config.yaml: storage.compression: unknown value "snappy" (expected one of: none, lz4, zstd)"#
    );
    let e = must_fail("vector_db:\n  default_metric: euclid\n", "invalid_value");
    assert_eq!(e.key(), Some("vector_db.default_metric"));
}

#[test]
fn wrong_type() {
    let e = must_fail("cluster:\n  voters: many\n", "invalid_value");
    assert_eq!(e.key(), Some("cluster.voters"));
    let e = must_fail("node:\n  id: -1\n", "invalid_value");
    assert_eq!(e.key(), Some("node.id"));
    let e = must_fail("cluster: 3\n", "invalid_value");
    assert_eq!(e.key(), Some("cluster"));
}

#[test]
fn bad_map_key() {
    let e = must_fail("cluster:\n  peer_addr_overrides:\n    two: 127.0.0.1:1\n", "invalid_value");
    assert_eq!(e.key(), Some("cluster.peer_addr_overrides"), "{e}");
    assert!(e.to_string().contains("invalid map key"), "{e}");
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let e = must_fail("node:\n  http_addr: [a\n", "yaml_syntax");
    assert!(e.to_string().starts_with("config.yaml: YAML syntax error at line 2, column 14: "), "{e}");
    let e = must_fail("node:\n  - a\n  b: c\n", "yaml_syntax");
    assert!(e.to_string().contains("at line 3, column 3"), "{e}");
    let e = must_fail("node:\n\tid: 1\n", "yaml_syntax");
    assert!(e.to_string().contains("at line 2"), "{e}");
}

#[test]
fn duplicate_key_is_an_error() {
    let e = must_fail("node:\n  id: 1\n  id: 2\n", "yaml_syntax");
    assert!(e.to_string().contains("duplicate"), "{e}");
}

#[test]
fn top_level_must_be_a_mapping() {
    let e = must_fail("- node\n", "yaml_syntax");
    assert!(e.to_string().contains("top level must be a mapping"), "{e}");
}

#[test]
fn election_timeout_must_exceed_heartbeat() {
    let e = must_fail("cluster:\n  heartbeat_interval: 200ms\n  election_timeout_min: 150ms\n", "validation");
    assert_eq!(
        e.to_string(),
        "cluster.election_timeout_min (150ms) must be greater than cluster.heartbeat_interval (200ms)"
    );
    assert_eq!(e.key(), Some("cluster.election_timeout_min"));
    assert_eq!(e.kind(), "invalid_argument");
}

/// One broken rule per case: (yaml, key at fault, text the message contains).
#[test]
fn validation_rules() {
    let cases = [
        ("cluster:\n  voters: 0\n", "cluster.voters", "cluster.voters must be 1..=7"),
        ("cluster:\n  voters: 8\n", "cluster.voters", "cluster.voters must be 1..=7 (got 8)"),
        (
            "cluster:\n  bootstrap_expect: 3\n",
            "cluster.bootstrap_expect",
            "cluster.bootstrap_expect needs cluster.seeds",
        ),
        ("cluster:\n  seeds: [a:7700, nope]\n", "cluster.seeds", "cluster.seeds must be host:port"),
        ("cluster:\n  seeds: [ftp://a:7700]\n", "cluster.seeds", "cluster.seeds must be an http:// or https:// URL"),
        (
            "node:\n  join: http://a:7700\ncluster:\n  seeds: [b:7700]\n",
            "cluster.seeds",
            "node.join and cluster.seeds are two ways to find a cluster",
        ),
        (
            "cluster:\n  election_timeout_max: 100ms\n",
            "cluster.election_timeout_max",
            "cluster.election_timeout_max (100ms) must be greater than cluster.election_timeout_min (100ms)",
        ),
        ("cluster:\n  dead_after: 3s\n", "cluster.dead_after", "must be greater than cluster.suspect_after (3s)"),
        ("cluster:\n  snapshot_logs_threshold: 0\n", "cluster.snapshot_logs_threshold", "greater than 0"),
        ("cluster:\n  snapshot_chunk_size: 65MiB\n", "cluster.snapshot_chunk_size", "1B..=64MiB (got 65MiB)"),
        ("cluster:\n  peer_addr_overrides: {1: nowhere}\n", "cluster.peer_addr_overrides.1", "host:port"),
        (
            "scaling:\n  min_workers: 33\n",
            "scaling.min_workers",
            "scaling.min_workers (33) must be at most scaling.max_workers (32)",
        ),
        ("scaling:\n  cpu_high: 1.5\n", "scaling.cpu_high", "0..=1"),
        ("scaling:\n  task_lease: 1s\n", "scaling.task_lease", "at least 3s"),
        ("node:\n  join: node1:7700\n", "node.join", "http:// or https://"),
        ("node:\n  advertise_raft: node1\n", "node.advertise_raft", "host:port"),
        ("security:\n  jwt_algorithm: none\n", "security.jwt_algorithm", "HS256, EdDSA, RS256"),
        (
            "security:\n  tls:\n    cert: a.pem\n",
            "security.tls.cert",
            "security.tls.cert, security.tls.key must be set together (only security.tls.cert set)",
        ),
        (
            "security:\n  cluster_tls:\n    ca: ca.pem\n    key: k.pem\n",
            "security.cluster_tls.ca",
            "must be set together",
        ),
        (
            "vector_db:\n  default_consistency: eventual\n",
            "vector_db.default_consistency",
            "linearizable, leader, local",
        ),
        ("vector_db:\n  max_dimension: 0\n", "vector_db.max_dimension", "at least 1"),
        (
            "plugins:\n  subprocess:\n    - {name: a, command: x}\n    - {name: a, command: y}\n",
            "plugins.subprocess[1].name",
            "used twice",
        ),
        ("plugins:\n  subprocess:\n    - {name: a}\n", "plugins.subprocess[0].command", "must not be empty"),
        (
            "external:\n  providers:\n    oa:\n      base_url: api.openai.com\n",
            "external.providers.oa.base_url",
            "https://",
        ),
        (
            "external:\n  providers:\n    oa:\n      base_url: http://x\n      api_key_env: A\n      api_key_file: /k\n",
            "external.providers.oa.api_key_env",
            "not both",
        ),
        ("observability:\n  log_level: ''\n", "observability.log_level", "must not be empty"),
    ];
    for (yaml, key, text) in cases {
        let e = must_fail(yaml, "validation");
        assert_eq!(e.key(), Some(key), "{yaml:?}: {e}");
        assert!(e.to_string().contains(text), "{yaml:?}: {e}");
    }
}
