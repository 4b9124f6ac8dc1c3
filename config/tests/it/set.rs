//! `Config::set`: dotted-key overrides, as the CLI applies them.

use std::path::PathBuf;

use synod_config::{ByteSize, Compression, Config, Dur};

fn must_set(config: &mut Config, key: &str, value: &str) {
    config.set(key, value).unwrap_or_else(|e| panic!("set({key:?}, {value:?}): {e}"));
}

#[test]
fn set_typed_fields() {
    let mut c = Config::default();
    must_set(&mut c, "node.http_addr", "127.0.0.1:7800");
    must_set(&mut c, "node.id", "3");
    must_set(&mut c, "node.data_dir", "/var/lib/synod");
    must_set(&mut c, "cluster.auto_promote", "false");
    must_set(&mut c, "storage.compression", "zstd");
    must_set(&mut c, "storage.max_payload_size", "4096");
    must_set(&mut c, "scaling.drain_deadline", "2m");
    must_set(&mut c, "scaling.cpu_high", "1");
    assert_eq!(c.node.http_addr.to_string(), "127.0.0.1:7800");
    assert_eq!(c.node.id, Some(3));
    assert_eq!(c.node.data_dir, PathBuf::from("/var/lib/synod"));
    assert!(!c.cluster.auto_promote);
    assert_eq!(c.storage.compression, Compression::Zstd);
    assert_eq!(c.storage.max_payload_size, ByteSize::kib(4));
    assert_eq!(c.scaling.drain_deadline, Dur::from_secs(120));
    assert_eq!(c.scaling.cpu_high, 1.0);
    c.validate().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn set_nested_map_and_list_entries() {
    let mut c = Config::default();
    must_set(&mut c, "security.tls.cert", "c.pem");
    must_set(&mut c, "node.labels.zone", "eu-1");
    must_set(&mut c, "cluster.peer_addr_overrides.2", "127.0.0.1:17702");
    must_set(&mut c, "plugins.subprocess", "[{name: a, command: /bin/true}]");
    must_set(&mut c, "plugins.subprocess.0.timeout", "5s");
    assert_eq!(c.security.tls.cert, Some(PathBuf::from("c.pem")));
    assert_eq!(c.node.labels["zone"], "eu-1");
    assert_eq!(c.cluster.peer_addr_overrides[&2], "127.0.0.1:17702");
    assert_eq!(c.plugins.subprocess[0].timeout, Dur::from_secs(5));
}

#[test]
fn tilde_unsets_an_optional_key() {
    let mut c = Config::default();
    must_set(&mut c, "node.join", "http://10.0.0.1:7700");
    assert_eq!(c.node.join.as_deref(), Some("http://10.0.0.1:7700"));
    must_set(&mut c, "node.join", "~");
    assert_eq!(c.node.join, None);
}

#[test]
fn set_does_not_validate_until_asked() {
    let mut c = Config::default();
    must_set(&mut c, "cluster.election_timeout_min", "1s");
    let e = c.validate().expect_err("min above max must be refused");
    assert_eq!(e.key(), Some("cluster.election_timeout_max"));
    must_set(&mut c, "cluster.election_timeout_max", "2s");
    c.validate().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn set_errors_name_the_key_and_leave_the_config_unchanged() {
    let mut c = Config::default();
    let cases = [
        ("node.http_addr", "localhost:abc", "invalid_value", "override: node.http_addr: invalid socket address"),
        ("cluster.votrs", "3", "unknown_key", "override: unknown key `cluster.votrs` (expected one of: voters,"),
        ("clustr.voters", "3", "unknown_key", "override: unknown key `clustr`"),
        ("cluster.voters", "many", "invalid_value", "override: cluster.voters: "),
        ("storage.write_buffer_size", "12XB", "invalid_value", r#"invalid size "12XB""#),
        ("cluster.write_timeout", "5 parsecs", "invalid_value", r#"invalid duration "5 parsecs""#),
        ("node.http_addr.port", "1", "invalid_value", "`node.http_addr` is a single value"),
        ("plugins.subprocess.3.name", "x", "invalid_value", "not an index of a list of 0 entries"),
        ("node..id", "1", "unknown_key", "override: unknown key `node..id`"),
    ];
    for (key, value, code, text) in cases {
        let e = c.set(key, value).expect_err(key);
        assert_eq!(e.code(), code, "{key}: {e}");
        assert!(e.to_string().contains(text), "{key}: {e}");
    }
    assert_eq!(c, Config::default());
}

#[test]
fn set_with_origin_names_the_flag() {
    let mut c = Config::default();
    let e = c.set_with_origin("node.http_addr", "nope", "--http-addr").expect_err("a bad address must be refused");
    assert!(e.to_string().starts_with("--http-addr: node.http_addr: "), "{e}");
}
