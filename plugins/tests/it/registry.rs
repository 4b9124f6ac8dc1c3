//! Registration, lookup and listing.

use std::collections::BTreeSet;

use serde_json::json;
use synod_plugins::{EchoPlugin, PluginError, RegisterError, Registry};

use crate::util::FnPlugin;

const BUILTINS: [&str; 7] = ["echo", "fail", "normalize", "pipeline", "sleep", "tokenize", "vectorize"];

#[test]
fn new_is_empty() {
    let registry = Registry::new();
    assert!(registry.names().is_empty());
    assert!(registry.list().is_empty());
    assert!(registry.get("echo").is_none());
}

#[test]
fn with_builtins_holds_every_builtin() {
    let registry = Registry::with_builtins();
    let expected: BTreeSet<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
    assert_eq!(registry.names(), expected);
    for info in registry.list() {
        assert_eq!(info.kind, "builtin", "{info:?}");
        assert!(!info.version.is_empty() && !info.description.is_empty(), "{info:?}");
    }
}

#[test]
fn list_is_sorted_by_name_whatever_the_registration_order() {
    let registry = Registry::new();
    for name in ["zeta", "alpha", "mid.dle", "beta"] {
        registry.register(FnPlugin::new(name, |p, _| Ok(p.clone()))).expect("distinct valid names");
    }
    let listed: Vec<_> = registry.list().into_iter().map(|i| i.name).collect();
    assert_eq!(listed, ["alpha", "beta", "mid.dle", "zeta"]);
}

#[test]
fn duplicate_name_is_refused_and_the_first_plugin_stays() {
    let registry = Registry::with_builtins();
    let err = registry.register(FnPlugin::new("echo", |_, _| Ok(json!("impostor")))).expect_err("echo is taken");
    assert_eq!(err, RegisterError::AlreadyRegistered { name: "echo".into() });
    assert_eq!(err.kind(), "already_exists");
    assert_eq!(err.to_string(), "plugin `echo` is already registered");
    let echo = registry.get("echo").expect("echo is still registered");
    assert_eq!(echo.info().kind, "builtin");
    assert_eq!(registry.register(std::sync::Arc::new(EchoPlugin)).map_err(|e| e.kind()), Err("already_exists"));
}

#[test]
fn invalid_names_are_refused() {
    let registry = Registry::new();
    for name in ["", "Upper", "with space", "9lives"] {
        let err = registry.register(FnPlugin::new(name, |p, _| Ok(p.clone()))).expect_err("invalid name");
        assert!(matches!(err, RegisterError::InvalidName { .. }), "{name:?}: {err:?}");
        assert_eq!(err.kind(), "invalid_argument");
    }
    assert!(registry.names().is_empty());
}

#[test]
fn clones_share_their_plugins() {
    let registry = Registry::new();
    let clone = registry.clone();
    clone.register(FnPlugin::new("custom", |p, _| Ok(p.clone()))).expect("free name");
    assert!(registry.get("custom").is_some(), "a clone's registration is visible to the original");
    assert_eq!(format!("{registry:?}"), r#"Registry { plugins: {"custom"} }"#);
}

#[test]
fn validate_of_an_unknown_type_says_so() {
    let registry = Registry::with_builtins();
    let err = registry.validate("embed-everything", &json!({})).expect_err("no such plugin");
    assert_eq!(err, PluginError::UnknownType("embed-everything".into()));
    assert_eq!(err.kind(), "invalid_argument");
    assert!(!err.retryable());
}
