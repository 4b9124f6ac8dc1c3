//! Panicking helpers shared by the tests.

use synod_config::{Config, ConfigError};

/// Parses and validates `yaml`, panicking with the error.
pub fn must_parse(yaml: &str) -> Config {
    Config::from_yaml_str(yaml, "config.yaml").unwrap_or_else(|e| panic!("{yaml:?}: {e}"))
}

/// Parses `yaml`, which must be refused with error class `code`; returns
/// the error for further checks.
pub fn must_fail(yaml: &str, code: &str) -> ConfigError {
    match Config::from_yaml_str(yaml, "config.yaml") {
        Ok(config) => panic!("{yaml:?} was accepted: {config:?}"),
        Err(e) => {
            assert_eq!(e.code(), code, "{yaml:?}: {e}");
            e
        }
    }
}

/// An environment of `(name, value)` pairs for [`Config::load`].
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Loads defaults plus `pairs` as the environment, panicking on error.
pub fn must_load_env(pairs: &[(&str, &str)]) -> Config {
    Config::load(None, env(pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
}

/// Loads defaults plus `pairs`, which must be refused with class `code`.
pub fn must_fail_env(pairs: &[(&str, &str)], code: &str) -> ConfigError {
    match Config::load(None, env(pairs)) {
        Ok(config) => panic!("{pairs:?} was accepted: {config:?}"),
        Err(e) => {
            assert_eq!(e.code(), code, "{pairs:?}: {e}");
            e
        }
    }
}
