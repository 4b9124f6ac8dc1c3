//! `external.ai`: the same call as `POST /external/ai`, as a durable task,
//! so long or bulk calls get the queue's retries, idempotency keys, fair
//! share and dead letter. Registered on a node that has providers.
//!
//! Payload: `{"provider", "operation", "model", "input", "parameters"}`;
//! output: `{"provider", "model", "operation", "output", "usage",
//! "attempts"}`. A failure worth another attempt (the provider unavailable,
//! its breaker open, its slots full) fails the attempt as retryable; a
//! refused request, and a chat or completion whose outcome is unknown
//! (sending it again could run it twice), fail the task for good.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{AiRequest, ExternalError, Operation, Providers};
use crate::{Plugin, PluginError, PluginInfo, TaskContext};

pub const TASK_TYPE: &str = "external.ai";

pub struct ExternalAiPlugin {
    providers: Arc<Providers>,
}

impl ExternalAiPlugin {
    pub fn new(providers: Arc<Providers>) -> Self {
        ExternalAiPlugin { providers }
    }

    fn parse(&self, payload: &Value) -> Result<(String, AiRequest), String> {
        let obj = payload.as_object().ok_or("the payload must be a JSON object")?;
        if let Some(k) =
            obj.keys().find(|k| !["provider", "operation", "model", "input", "parameters"].contains(&k.as_str()))
        {
            return Err(format!("unknown field {k:?} (provider, operation, model, input, parameters)"));
        }
        let text = |k: &str| obj.get(k).and_then(Value::as_str).ok_or_else(|| format!("{k} must be a string"));
        let provider = text("provider")?.to_owned();
        self.providers.get(&provider).map_err(|e| e.to_string())?;
        let operation = Operation::parse(text("operation")?).map_err(|e| e.to_string())?;
        let model = text("model")?.to_owned();
        if model.is_empty() || model.len() > 256 {
            return Err("model must be 1 to 256 bytes".into());
        }
        let input = obj.get("input").cloned().ok_or("input is missing")?;
        let parameters = match obj.get("parameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err("parameters must be a JSON object".into()),
        };
        Ok((provider, AiRequest { operation, model, input, parameters, idempotency_key: None }))
    }
}

impl Plugin for ExternalAiPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(TASK_TYPE, "a call through a configured external AI provider (POST /external/ai as a task)")
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        self.parse(payload).map(|_| ())
    }

    fn run(&self, payload: &Value, ctx: &TaskContext) -> Result<Value, PluginError> {
        let (provider, mut req) = self.parse(payload).map_err(PluginError::InvalidInput)?;
        // One key per task: a provider that takes idempotency keys runs a
        // retried attempt of the same task once.
        req.idempotency_key = Some(format!("synod-{}", ctx.task_id));
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| PluginError::failed_permanent("external.ai runs only inside a node's runtime"))?;
        let cancel = ctx.cancel.clone();
        let result = handle.block_on(async {
            tokio::select! {
                r = self.providers.call(&ctx.tenant, &provider, &req) => Some(r),
                () = async {
                    while !cancel.is_cancelled() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                } => None,
            }
        });
        match result {
            None => Err(PluginError::Cancelled),
            Some(Ok(r)) => Ok(json!({
                "provider": r.provider,
                "model": r.model,
                "operation": r.operation,
                "output": r.output,
                "usage": r.usage,
                "attempts": r.attempts,
            })),
            Some(Err(e)) => Err(match e {
                ExternalError::Unavailable { .. }
                | ExternalError::BreakerOpen { .. }
                | ExternalError::Busy { .. }
                | ExternalError::BudgetSpent { .. } => PluginError::failed_retryable(e.to_string()),
                ExternalError::Invalid(m) => PluginError::InvalidInput(m),
                ExternalError::UnknownProvider(_)
                | ExternalError::Rejected { .. }
                | ExternalError::Indeterminate { .. } => PluginError::failed_permanent(e.to_string()),
            }),
        }
    }
}
