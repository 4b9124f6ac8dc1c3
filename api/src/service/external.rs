//! External AI: `POST /external/ai` through a configured provider
//! (`external.providers`), and the providers' state. The machinery
//! (timeouts, slots, retries, breaker) is `synod_plugins::external`'s; this
//! adds Synod's caller, tenant accounting and error mapping.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use synod_plugins::external::{AiRequest, ExternalError, Operation, ProviderKind, ProviderSpec, Providers};

use super::Node;
use crate::auth::AuthContext;
use crate::error::{ApiError, Result};

/// The body of `POST /external/ai`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAiRequest {
    pub provider: String,
    /// embeddings, chat, completions or inference.
    pub operation: String,
    pub model: String,
    pub input: Value,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Also return the provider's answer as it came.
    #[serde(default)]
    pub raw: bool,
    /// Sent as the provider's idempotency key, when it takes one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// The answer of `POST /external/ai`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalAiResponse {
    pub provider: String,
    pub model: String,
    pub operation: String,
    pub output: Value,
    pub usage: UsageView,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageView {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// One provider in `GET /external/providers` (never its key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderView {
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub has_api_key: bool,
    pub max_concurrency: usize,
    pub in_flight: usize,
    pub breaker: BreakerStateView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakerStateView {
    /// closed, open or half_open.
    pub state: String,
    pub consecutive_failures: u32,
    pub window_calls: u32,
    pub window_failures: u32,
    /// Times it has opened since the node started.
    pub opened: u64,
    /// While open: seconds until probes go through.
    pub retry_after_s: Option<u64>,
}

/// The providers of `cfg`, their keys read from the environment or files.
pub fn providers(cfg: &synod_config::Config) -> anyhow::Result<Providers> {
    use anyhow::Context;
    let mut specs = Vec::new();
    for (name, p) in &cfg.external.providers {
        let at = format!("external.providers.{name}");
        let api_key = match (&p.api_key_env, &p.api_key_file) {
            (Some(var), _) => Some(std::env::var(var).with_context(|| {
                format!("{at}.api_key_env names {var}, which is not set (or not UTF-8) in this node's environment")
            })?),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("{at}.api_key_file: reading {}", file.display()))?;
                let key = text.lines().next().unwrap_or("").trim().to_owned();
                anyhow::ensure!(!key.is_empty(), "{at}.api_key_file: {} is empty", file.display());
                Some(key)
            }
            (None, None) => None,
        };
        let breaker = synod_plugins::external::BreakerConfig {
            failure_threshold: p.breaker_failure_threshold,
            error_rate: f64::from(p.breaker_error_rate_percent) / 100.0,
            min_calls: p.breaker_min_calls,
            window: p.breaker_window.get(),
            cooldown: p.breaker_cooldown.get(),
            half_open_probes: p.breaker_half_open_probes,
        };
        specs.push(ProviderSpec {
            name: name.clone(),
            kind: match p.kind {
                synod_config::ProviderKind::Openai => ProviderKind::OpenAi,
                synod_config::ProviderKind::Huggingface => ProviderKind::HuggingFace,
            },
            base_url: p.base_url.clone(),
            api_key,
            timeout: p.timeout.get(),
            max_concurrency: p.max_concurrency as usize,
            queue_wait: p.queue_wait.get(),
            max_retries: p.max_retries,
            retry_backoff: p.retry_backoff.get(),
            retry_max_backoff: p.retry_max_backoff.get(),
            breaker,
            idempotency_header: p.idempotency_header.clone(),
            ca_file: p.ca_file.clone(),
        });
    }
    Providers::new(specs).map_err(|e| anyhow::anyhow!("{e}"))
}

fn api_error(e: ExternalError) -> ApiError {
    let secs = |d: std::time::Duration| d.as_secs_f64().ceil().max(1.0) as u64;
    match e {
        ExternalError::UnknownProvider(_) => ApiError::NotFound(e.to_string()),
        ExternalError::Invalid(m) => ApiError::InvalidArgument(m),
        // The provider refused Synod's key: the caller cannot fix that.
        ExternalError::Rejected { status: 401 | 403, ref provider, .. } => ApiError::FailedPrecondition {
            message: format!("provider {provider} refused the API key it was configured with: {e}"),
            details: None,
        },
        ExternalError::Rejected { .. } => ApiError::InvalidArgument(e.to_string()),
        ExternalError::BreakerOpen { retry_after, .. } => {
            ApiError::UnavailableFor { message: e.to_string(), retry_after_s: secs(retry_after) }
        }
        ExternalError::Busy { retry_after, .. } => {
            ApiError::RateLimited { message: e.to_string(), retry_after_s: secs(retry_after) }
        }
        ExternalError::Unavailable { retry_after: Some(d), .. } => {
            ApiError::UnavailableFor { message: e.to_string(), retry_after_s: secs(d) }
        }
        ExternalError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
        ExternalError::Indeterminate { .. } => ApiError::Indeterminate(e.to_string()),
    }
}

/// Calls a provider for the caller's tenant.
pub async fn do_external_ai(ctx: &AuthContext, node: &Node, req: ExternalAiRequest) -> Result<ExternalAiResponse> {
    let provider = node.external.get(&req.provider).map_err(api_error)?;
    let operation = Operation::parse(&req.operation).map_err(api_error)?;
    if req.model.is_empty() || req.model.len() > 256 {
        return Err(ApiError::InvalidArgument("model must be 1 to 256 bytes".into()));
    }
    if req.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 256) {
        return Err(ApiError::InvalidArgument("idempotency_key must be 1 to 256 bytes".into()));
    }
    let call = AiRequest {
        operation,
        model: req.model,
        input: req.input,
        parameters: req.parameters,
        idempotency_key: req.idempotency_key,
    };
    let result = provider.call(&call).await;
    crate::metrics::external_tenant_call(&ctx.tenant, &req.provider, &result);
    let r = result.map_err(api_error)?;
    Ok(ExternalAiResponse {
        provider: r.provider,
        model: r.model,
        operation: r.operation.to_owned(),
        output: r.output,
        usage: UsageView {
            prompt_tokens: r.usage.prompt_tokens,
            completion_tokens: r.usage.completion_tokens,
            total_tokens: r.usage.total_tokens,
        },
        attempts: r.attempts,
        raw: req.raw.then_some(r.raw),
    })
}

/// The configured providers and their breakers.
pub fn do_list_providers(_ctx: &AuthContext, node: &Node) -> Result<Vec<ProviderView>> {
    let now = Instant::now();
    Ok(node
        .external
        .iter()
        .map(|p| {
            let s = p.spec();
            let b = p.breaker(now);
            ProviderView {
                name: s.name.clone(),
                kind: s.kind.as_str().to_owned(),
                base_url: s.base_url.clone(),
                has_api_key: s.api_key.is_some(),
                max_concurrency: s.max_concurrency,
                in_flight: p.in_flight(),
                breaker: BreakerStateView {
                    state: b.state.as_str().to_owned(),
                    consecutive_failures: b.consecutive_failures,
                    window_calls: b.window_calls,
                    window_failures: b.window_failures,
                    opened: b.opened,
                    retry_after_s: b.retry_after.map(|d| d.as_secs_f64().ceil() as u64),
                },
            }
        })
        .collect())
}
