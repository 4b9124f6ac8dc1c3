//! External AI: `POST /external/ai` through a configured provider
//! (`external.providers`), and the providers' state. The machinery
//! (timeouts, slots, retries, breaker) is `synod_plugins::external`'s; this
//! adds Synod's caller, tenant accounting and error mapping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use synod_plugins::external::{AiRequest, ExternalError, Operation, ProviderKind, ProviderSpec, Providers};
use synod_store::identity::DAY_MS;

use super::Node;
use crate::auth::AuthContext;
use crate::error::{ApiError, Result};

/// The body of `POST /external/ai`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UsageView {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// One provider in `GET /external/providers` (never its key).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderView {
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub has_api_key: bool,
    pub max_concurrency: usize,
    pub in_flight: usize,
    pub breaker: BreakerStateView,
    /// The caller's tenant's use of it today (UTC), as the cluster counts.
    pub usage: TenantUsageView,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantUsageView {
    pub calls: u64,
    pub tokens: u64,
    /// The daily budgets (0: none).
    pub tenant_daily_calls: u64,
    pub tenant_daily_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
                synod_config::ProviderKind::Qdrant => ProviderKind::Qdrant,
                synod_config::ProviderKind::Pinecone => ProviderKind::Pinecone,
                synod_config::ProviderKind::Milvus => ProviderKind::Milvus,
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
            tenant_daily_calls: p.tenant_daily_calls,
            tenant_daily_tokens: p.tenant_daily_tokens,
        });
    }
    Providers::new(specs).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) fn api_error(e: ExternalError) -> ApiError {
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
        ExternalError::BudgetSpent { retry_after, .. } => {
            ApiError::RateLimited { message: e.to_string(), retry_after_s: secs(retry_after) }
        }
    }
}

/// The node's [`synod_plugins::external::Meter`]: usage is replicated
/// (`RecordExternalUsage`), so a tenant's budget is the cluster's. A call
/// is admitted on the usage this node has applied plus its own calls not
/// yet applied; calls in flight on other nodes at that moment can pass the
/// budget by as many calls.
pub struct UsageMeter {
    raft: synod_raft::RaftNode,
    pending: Arc<Mutex<Pending>>,
}

/// (tenant, provider) -> (calls, tokens) recorded here, not yet applied.
type Pending = HashMap<(String, String), (u64, u64)>;

impl UsageMeter {
    pub fn new(raft: synod_raft::RaftNode) -> UsageMeter {
        UsageMeter { raft, pending: Default::default() }
    }
}

impl synod_plugins::external::Meter for UsageMeter {
    fn admit(&self, tenant: &str, spec: &ProviderSpec) -> std::result::Result<(), ExternalError> {
        if spec.tenant_daily_calls == 0 && spec.tenant_daily_tokens == 0 {
            return Ok(());
        }
        let now = self.raft.cluster_now_ms();
        let used = self.raft.store.external_usage(tenant, &spec.name, now).map_err(|e| ExternalError::Unavailable {
            provider: spec.name.clone(),
            message: format!("reading the tenant's usage: {e}"),
            retry_after: None,
        })?;
        let (calls, tokens) = {
            let pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (c, t) = pending.get(&(tenant.to_owned(), spec.name.clone())).copied().unwrap_or((0, 0));
            (used.calls + c, used.tokens + t)
        };
        let spent = |used: u64, budget: u64, what: &str| {
            (budget > 0 && used >= budget).then(|| format!("{used} of {budget} {what}"))
        };
        let what = spent(calls, spec.tenant_daily_calls, "calls (tenant_daily_calls)")
            .or_else(|| spent(tokens, spec.tenant_daily_tokens, "tokens (tenant_daily_tokens)"));
        match what {
            None => Ok(()),
            Some(what) => Err(ExternalError::BudgetSpent {
                provider: spec.name.clone(),
                tenant: tenant.to_owned(),
                what,
                retry_after: std::time::Duration::from_millis(DAY_MS - now % DAY_MS),
            }),
        }
    }

    fn record(&self, tenant: &str, spec: &ProviderSpec, tokens: u64) {
        let key = (tenant.to_owned(), spec.name.clone());
        {
            let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let e = pending.entry(key.clone()).or_default();
            e.0 += 1;
            e.1 += tokens;
        }
        let kind = synod_store::pb::command::Kind::RecordExternalUsage(synod_store::pb::RecordExternalUsage {
            tenant: key.0.clone(),
            provider: key.1.clone(),
            calls: 1,
            tokens,
        });
        let (raft, pending) = (self.raft.clone(), self.pending.clone());
        // Off the caller's path; the pending count stands in until applied.
        tokio::spawn(async move {
            if let Err(e) = raft.write(&super::command(kind)).await {
                tracing::warn!(tenant = %key.0, provider = %key.1, error = %e, "external usage not recorded");
            }
            let mut p = pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(e) = p.get_mut(&key) {
                e.0 = e.0.saturating_sub(1);
                e.1 = e.1.saturating_sub(tokens);
                if *e == (0, 0) {
                    p.remove(&key);
                }
            }
        });
    }
}

/// Calls a provider for the caller's tenant.
pub async fn do_external_ai(ctx: &AuthContext, node: &Node, req: ExternalAiRequest) -> Result<ExternalAiResponse> {
    node.external.get(&req.provider).map_err(api_error)?;
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
    let result = node.external.call(&ctx.tenant, &req.provider, &call).await;
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
pub fn do_list_providers(ctx: &AuthContext, node: &Node) -> Result<Vec<ProviderView>> {
    let now = Instant::now();
    let today = node.raft.cluster_now_ms();
    node.external
        .iter()
        .map(|p| {
            let s = p.spec();
            let b = p.breaker(now);
            let used = node.raft.store.external_usage(&ctx.tenant, &s.name, today)?;
            Ok(ProviderView {
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
                usage: TenantUsageView {
                    calls: used.calls,
                    tokens: used.tokens,
                    tenant_daily_calls: s.tenant_daily_calls,
                    tenant_daily_tokens: s.tenant_daily_tokens,
                },
            })
        })
        .collect()
}
