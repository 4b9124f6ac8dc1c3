//! How the layers are merged: every layer becomes a `serde_json::Value` tree
//! first, so that overrides are edits of that tree and every typed error can
//! be traced back to a dotted key.
//!
//! ```text
//!  config.yaml ──parse──▶ Value ──typed──▶ Config ─┐
//!                                                  │  for each SYNOD_* var, then each --set:
//!                    ┌─────────────────────────────┘
//!                    ▼
//!   Config ──to_value──▶ Value ──put(key, scalar)──▶ Value ──typed──▶ Config
//! ```
//!
//! `typed` is `serde_path_to_error` over the derived `Deserialize`, which
//! yields the path of the failing key; `deny_unknown_fields` turns typos into
//! errors at every level.

use serde_json::{Map, Value};

use crate::Config;
use crate::error::{ConfigError, Result};

/// Origin named in errors from [`Config::set`].
pub(crate) const OVERRIDE_ORIGIN: &str = "override";

/// Prefix of the environment variables this crate reads.
pub const ENV_PREFIX: &str = "SYNOD_";

/// `SYNOD_*` variables that are not config keys: read elsewhere in Synod,
/// so [`Config::load`] skips them instead of rejecting them.
pub const IGNORED_ENV_VARS: &[&str] = &[
    "SYNOD_ADMIN_PASSWORD",
    "SYNOD_LOG",
    "SYNOD_CONFIG",
    // Read by the CLI's client commands, not by the server.
    "SYNOD_TOKEN",
    "SYNOD_TOKEN_FILE",
    "SYNOD_API_KEY",
    "SYNOD_PASSWORD",
    "SYNOD_CA_CERT",
    // Read by the test suites: where `make test` installed the models and
    // the milvus-lite server.
    "SYNOD_TEST_MODELS_DIR",
    "SYNOD_TEST_MILVUS",
    "SYNOD_TEST_OPENAPI_VALIDATOR",
    "SYNOD_TEST_GRPCURL",
    // The CLI's --addr and the Python client's node address.
    "SYNOD_ADDR",
    // Read by the container entrypoint (deploy/docker/entrypoint.sh), and
    // still in the environment of a `synod` run by `kubectl exec`.
    "SYNOD_NODE_ID_FROM_ORDINAL",
    "SYNOD_POD_NAME",
    "SYNOD_BIN",
];

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // YAML 1.2 booleans: `off`, `no` stay strings (a log level may be `off`).
    options.strict_booleans = true;
    // Our message carries the line and column; a source snippet would make
    // the one-line error span many.
    options.with_snippet = false;
    options
}

/// Parses YAML text into a tree; an empty document is an empty mapping.
pub(crate) fn parse_yaml(text: &str, origin: &str) -> Result<Value> {
    let value: Value = serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| {
        let location = e.location();
        let line = location.map(|l| l.line()).filter(|&l| l > 0);
        let column = location.map(|l| l.column()).filter(|&c| c > 0);
        let mut message = e.without_snippet().to_string();
        // The parser repeats the location at the end; ours leads.
        if let (Some(l), Some(c)) = (line, column) {
            let suffix = format!(" at line {l}, column {c}");
            if let Some(kept) = message.strip_suffix(&suffix) {
                message = kept.to_owned();
            }
        }
        ConfigError::Syntax { origin: origin.to_owned(), line, column, message }
    })?;
    match value {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(value),
        _ => Err(ConfigError::Syntax {
            origin: origin.to_owned(),
            line: None,
            column: None,
            message: "the top level must be a mapping of sections (node:, cluster:, ...)".to_owned(),
        }),
    }
}

/// The defaults as a tree: the schema used to resolve env var names and to
/// tell struct-valued keys from scalar ones.
pub(crate) fn defaults_tree() -> Value {
    to_tree(&Config::default())
}

fn to_tree(config: &Config) -> Value {
    serde_json::to_value(config).expect("a Config always serializes: every map key is a string or an integer")
}

/// Deserializes a tree into a `Config`, naming the failing key.
pub(crate) fn to_config(mut tree: Value, origin: &str) -> Result<Config> {
    drop_null_mappings(&mut tree, &defaults_tree());
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let key = e.path().to_string();
        let message = e.into_inner().to_string();
        typed_error(origin, key, message)
    })
}

/// `node:` with nothing under it (a section whose keys are all commented
/// out) is YAML null; read it as "all defaults" rather than as a type error.
/// Only where the default is a mapping: a null scalar still means `None`.
fn drop_null_mappings(tree: &mut Value, defaults: &Value) {
    let (Value::Object(map), Value::Object(defaults)) = (tree, defaults) else {
        return;
    };
    map.retain(|k, v| !(v.is_null() && defaults.get(k).is_some_and(Value::is_object)));
    for (k, v) in map.iter_mut() {
        if let Some(d) = defaults.get(k) {
            drop_null_mappings(v, d);
        }
    }
}

/// Turns serde's message into our error class. serde reports unknown keys
/// and enum values only as text, in a stable form: "unknown field `x`,
/// expected one of `a`, `b`".
fn typed_error(origin: &str, key: String, message: String) -> ConfigError {
    let quoted = || -> Vec<String> { message.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    if message.starts_with("unknown field `") {
        let expected = quoted().into_iter().skip(1).collect();
        return ConfigError::UnknownKey { origin: origin.to_owned(), key, expected };
    }
    // A map key that does not parse (`peer_addr_overrides: {x: ...}`) has
    // no path segment of its own.
    if let Some(map) = key.strip_suffix(".?") {
        return ConfigError::InvalidValue {
            origin: origin.to_owned(),
            key: map.to_owned(),
            message: format!("invalid map key: {message}"),
        };
    }
    if message.starts_with("unknown variant `") {
        let mut quoted = quoted().into_iter();
        let given = quoted.next().unwrap_or_default();
        let expected: Vec<String> = quoted.collect();
        return ConfigError::InvalidValue {
            origin: origin.to_owned(),
            key,
            message: format!("unknown value {given:?} (expected one of: {})", expected.join(", ")),
        };
    }
    ConfigError::InvalidValue { origin: origin.to_owned(), key, message }
}

/// Maps `SYNOD_<SECTION>_<KEY>` to a dotted key, or `None` for variables
/// that are not ours. The section is the longest known one that prefixes the
/// name (`VECTOR_DB_MAX_DIMENSION` is `vector_db.max_dimension`); below it, a
/// name that starts with a sub-section (`SECURITY_TLS_CERT`) descends into it.
/// Keys of free-form maps (`node.labels.zone`) cannot be told apart from
/// field names this way: those come from the file or `--set`.
pub(crate) fn env_key(var: &str, defaults: &Value) -> Result<Option<String>> {
    let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
        return Ok(None);
    };
    if IGNORED_ENV_VARS.contains(&var) {
        return Ok(None);
    }
    let rest = rest.to_ascii_lowercase();
    let sections = defaults.as_object().expect("the defaults tree is a mapping of sections");
    let Some((section, mut rest)) = split_known(&rest, sections, false) else {
        return Err(ConfigError::UnknownEnvVar { var: var.to_owned(), expected: sections.keys().cloned().collect() });
    };
    let mut key = section.to_owned();
    let mut level = &sections[section];
    while let Some(rest_now) = rest {
        let Some(fields) = level.as_object() else {
            key = format!("{key}.{rest_now}");
            break;
        };
        match split_known(rest_now, fields, true) {
            Some((field, next)) => {
                key = format!("{key}.{field}");
                level = &fields[field];
                rest = next;
            }
            None => {
                key = format!("{key}.{rest_now}");
                break;
            }
        }
    }
    Ok(Some(key))
}

/// Splits `name` into a known key of `level` and what follows its `_`.
/// An exact match wins; otherwise the longest key that is followed by `_`
/// and names a sub-section (a non-empty mapping in the defaults), or at the
/// top level any section.
fn split_known<'n, 'l>(
    name: &'n str,
    level: &'l Map<String, Value>,
    below_top: bool,
) -> Option<(&'l str, Option<&'n str>)> {
    if let Some((k, _)) = level.get_key_value(name) {
        return Some((k, None));
    }
    level
        .iter()
        .filter(|(_, v)| !below_top || v.as_object().is_some_and(|m| !m.is_empty()))
        .filter_map(|(k, _)| {
            let tail = name.strip_prefix(k.as_str())?.strip_prefix('_')?;
            (!tail.is_empty()).then_some((k.as_str(), Some(tail)))
        })
        .max_by_key(|(k, _)| k.len())
}

/// Reads an override value the way YAML would read it after `key: `, so
/// `true`, `3`, `[a, b]` and `{zone: a}` are typed; text that is not YAML
/// is taken as a plain string.
fn parse_scalar(raw: &str) -> Value {
    serde_saphyr::from_str_with_options(raw, yaml_options()).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// Returns `config` with `key` set to `raw`, parsed like a YAML scalar.
///
/// A value YAML types as non-text (`12345`, `off`, `a: b`) but that the key
/// does not accept is retried as a plain string: a secret or a URL must not
/// need quotes in an env var.
pub(crate) fn apply_override(config: &Config, key: &str, raw: &str, origin: &str) -> Result<Config> {
    let path: Vec<&str> = key.split('.').collect();
    if path.iter().any(|segment| segment.is_empty()) {
        return Err(ConfigError::UnknownKey { origin: origin.to_owned(), key: key.to_owned(), expected: Vec::new() });
    }
    let base = to_tree(config);
    let attempt = |value: Value| -> Result<Config> {
        let mut tree = base.clone();
        put(&mut tree, &path, value, key, origin)?;
        to_config(tree, origin)
    };
    let typed = parse_scalar(raw);
    if typed.is_string() {
        return attempt(typed);
    }
    match attempt(typed) {
        Err(first) if blames(&first, key) => attempt(Value::String(raw.to_owned())).map_err(|_| first),
        result => result,
    }
}

/// Whether `e` is about `key` or something inside it.
fn blames(e: &ConfigError, key: &str) -> bool {
    let ConfigError::InvalidValue { key: at, .. } = e else {
        return false;
    };
    at == key || at.strip_prefix(key).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Sets `path` in `tree`, creating missing mappings on the way (a typo in
/// them is then reported by the typed pass, with the list of valid keys).
fn put(tree: &mut Value, path: &[&str], value: Value, key: &str, origin: &str) -> Result<()> {
    let not_a_section = |depth: usize| ConfigError::InvalidValue {
        origin: origin.to_owned(),
        key: key.to_owned(),
        message: format!("`{}` is a single value, it has no keys below it", path[..depth].join(".")),
    };
    let (last, parents) = path.split_last().expect("a key has at least one segment");
    let mut node = tree;
    for (depth, segment) in parents.iter().enumerate() {
        node = match node {
            Value::Object(map) => map.entry(segment.to_string()).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => {
                let len = items.len();
                segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(|| index_error(key, origin, segment, len))?
            }
            _ => return Err(not_a_section(depth)),
        };
    }
    match node {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
        }
        Value::Array(items) => {
            let len = items.len();
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| index_error(key, origin, last, len))?;
            *slot = value;
        }
        _ => return Err(not_a_section(parents.len())),
    }
    Ok(())
}

fn index_error(key: &str, origin: &str, segment: &str, len: usize) -> ConfigError {
    ConfigError::InvalidValue {
        origin: origin.to_owned(),
        key: key.to_owned(),
        message: format!("`{segment}` is not an index of a list of {len} entries"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn must_env_key(var: &str) -> Option<String> {
        env_key(var, &defaults_tree()).unwrap_or_else(|e| panic!("{var}: {e}"))
    }

    #[test]
    fn env_names_map_to_dotted_keys() {
        let cases = [
            ("SYNOD_NODE_HTTP_ADDR", Some("node.http_addr")),
            ("SYNOD_VECTOR_DB_MAX_DIMENSION", Some("vector_db.max_dimension")),
            ("SYNOD_SECURITY_TLS_CERT", Some("security.tls.cert")),
            ("SYNOD_SECURITY_CLUSTER_TLS_CA", Some("security.cluster_tls.ca")),
            ("SYNOD_SECURITY_TLS", Some("security.tls")),
            ("SYNOD_CLUSTER_VOTRS", Some("cluster.votrs")),
            ("SYNOD_NODE_LABELS_ZONE", Some("node.labels_zone")),
            ("SYNOD_NODE", Some("node")),
            ("SYNOD_LOG", None),
            ("SYNOD_ADMIN_PASSWORD", None),
            ("HOME", None),
        ];
        for (var, want) in cases {
            assert_eq!(must_env_key(var).as_deref(), want, "{var}");
        }
    }

    #[test]
    fn env_name_with_unknown_section_is_rejected() {
        for var in ["SYNOD_NODES_ID", "SYNOD_", "SYNOD_VECTOR_MAX_DIMENSION"] {
            let e = env_key(var, &defaults_tree()).expect_err(var);
            assert_eq!(e.code(), "unknown_env_var", "{var}: {e}");
            assert!(e.to_string().starts_with(var), "{e}");
        }
    }

    #[test]
    fn scalars_are_typed_like_yaml() {
        assert_eq!(parse_scalar("3"), Value::from(3));
        assert_eq!(parse_scalar("true"), Value::Bool(true));
        assert_eq!(parse_scalar("off"), Value::from("off"));
        assert_eq!(parse_scalar("127.0.0.1:7800"), Value::from("127.0.0.1:7800"));
        assert_eq!(parse_scalar("64MiB"), Value::from("64MiB"));
        assert_eq!(parse_scalar("[a, b]"), serde_json::json!(["a", "b"]));
    }
}
