//! Public gRPC `synod.v1.External`: thin adapters over
//! [`crate::service::external`]. Request messages are destructured
//! exhaustively.

use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::grpc::{authorize, timed};
use crate::pb::external_server::External;
use crate::pb::{ExternalAiReply, ExternalAiRequest, ProviderInfo, ProviderList, ProvidersRequest};
use crate::service::SharedNode;
use crate::service::external::{self, ProviderView};

pub struct ExternalGrpc {
    node: SharedNode,
}

impl ExternalGrpc {
    pub fn new(node: SharedNode) -> Self {
        ExternalGrpc { node }
    }
}

fn json_field(text: &str, what: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::InvalidArgument(format!("{what} is not JSON: {e}")))
}

fn provider(p: ProviderView) -> ProviderInfo {
    let ProviderView { name, kind, base_url, has_api_key, max_concurrency, in_flight, breaker, usage } = p;
    ProviderInfo {
        name,
        kind,
        base_url,
        has_api_key,
        max_concurrency: max_concurrency as u32,
        in_flight: in_flight as u32,
        breaker_state: breaker.state,
        consecutive_failures: breaker.consecutive_failures,
        window_calls: breaker.window_calls,
        window_failures: breaker.window_failures,
        opened: breaker.opened,
        retry_after_s: breaker.retry_after_s.unwrap_or(0),
        usage_calls: usage.calls,
        usage_tokens: usage.tokens,
        tenant_daily_calls: usage.tenant_daily_calls,
        tenant_daily_tokens: usage.tenant_daily_tokens,
    }
}

#[tonic::async_trait]
impl External for ExternalGrpc {
    async fn call(&self, req: Request<ExternalAiRequest>) -> Result<Response<ExternalAiReply>, Status> {
        let ctx = authorize(&self.node, &req, "External.Call")?;
        let ExternalAiRequest { provider, operation, model, input_json, parameters_json, raw, idempotency_key } =
            req.into_inner();
        timed("External.Call", async {
            let input = json_field(&input_json, "input_json")?;
            let parameters = match parameters_json.trim() {
                "" => serde_json::Map::new(),
                text => match json_field(text, "parameters_json")? {
                    serde_json::Value::Object(m) => m,
                    _ => return Err(ApiError::InvalidArgument("parameters_json must be a JSON object".into())),
                },
            };
            let req = external::ExternalAiRequest {
                provider,
                operation,
                model,
                input,
                parameters,
                raw,
                idempotency_key: (!idempotency_key.is_empty()).then_some(idempotency_key),
            };
            let r = external::do_external_ai(&ctx, &self.node, req).await?;
            Ok(ExternalAiReply {
                provider: r.provider,
                model: r.model,
                operation: r.operation,
                output_json: r.output.to_string(),
                prompt_tokens: r.usage.prompt_tokens,
                completion_tokens: r.usage.completion_tokens,
                total_tokens: r.usage.total_tokens,
                attempts: r.attempts,
                raw_json: r.raw.map(|v| v.to_string()).unwrap_or_default(),
            })
        })
        .await
    }

    async fn providers(&self, req: Request<ProvidersRequest>) -> Result<Response<ProviderList>, Status> {
        let ctx = authorize(&self.node, &req, "External.Providers")?;
        let ProvidersRequest {} = req.into_inner();
        timed("External.Providers", async {
            Ok(ProviderList {
                providers: external::do_list_providers(&ctx, &self.node)?.into_iter().map(provider).collect(),
            })
        })
        .await
    }
}
