//! Metrics of plugin runs (names: `synod_plugin_*`). The exporter lives in
//! the api crate; this only records. The `plugin` label is a registered
//! name, never a caller's unknown task type, so its cardinality is bounded.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::PluginError;

/// One finished run: `outcome` is `ok` or [`PluginError::code`].
pub(crate) fn run_finished(plugin: &str, result: &Result<serde_json::Value, PluginError>, took: Duration) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    counter!("synod_plugin_runs_total", "plugin" => plugin.to_owned(), "outcome" => outcome).increment(1);
    histogram!("synod_plugin_run_seconds", "plugin" => plugin.to_owned()).record(took.as_secs_f64());
}

pub(crate) fn panicked(plugin: &str) {
    counter!("synod_plugin_panics_total", "plugin" => plugin.to_owned()).increment(1);
}

/// One external call (`synod_external_*`): `provider` is a configured name,
/// `error` the call's failure if it failed.
pub(crate) fn external_call(
    provider: &str,
    operation: &'static str,
    error: Option<&crate::external::ExternalError>,
    took: Duration,
) {
    let outcome = error.map_or("ok", |e| e.code());
    counter!("synod_external_requests_total", "provider" => provider.to_owned(), "operation" => operation, "outcome" => outcome)
        .increment(1);
    histogram!("synod_external_request_seconds", "provider" => provider.to_owned()).record(took.as_secs_f64());
}

/// Tokens a provider says a call used.
pub(crate) fn external_tokens(provider: &str, tokens: u64) {
    counter!("synod_external_tokens_total", "provider" => provider.to_owned()).increment(tokens);
}

/// `synod_breaker_state{provider}`: 0 closed, 1 open, 2 half-open.
pub(crate) fn breaker_state(provider: &str, state: crate::external::BreakerState) {
    gauge!("synod_breaker_state", "provider" => provider.to_owned()).set(state.gauge());
}
