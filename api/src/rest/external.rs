//! REST adapters of external AI (`/external/ai`, `/external/providers`)
//! and of OpenAI's embeddings API (`/v1/embeddings`) served by this node.

use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Json, ok};
use crate::auth::AuthContext;
use crate::error::{ApiError, Result};
use crate::service::SharedNode;
use crate::service::embeddings::{EmbedRequest, do_embed};
use crate::service::external::{ExternalAiRequest, do_external_ai, do_list_providers};

pub(super) async fn external_ai(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<ExternalAiRequest>,
) -> Result<Response> {
    Ok(ok(do_external_ai(&ctx, &node, req).await?))
}

pub(super) async fn list_providers(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(json!({"providers": do_list_providers(&ctx, &node)?})))
}

/// `POST /v1/embeddings`, as OpenAI's API takes it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenAiEmbeddingsRequest {
    model: String,
    /// A string or a list of strings (token arrays are not taken).
    input: Value,
    /// float (default) or base64: little-endian f32s, base64-encoded.
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    /// An end-user id for the provider's abuse tracking; ignored.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

pub(super) async fn openai_embeddings(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<OpenAiEmbeddingsRequest>,
) -> Result<Response> {
    let texts = match req.input {
        Value::String(s) => vec![s],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.into_iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
        }
        Value::Array(_) => {
            return Err(ApiError::InvalidArgument(
                "input: token arrays are not taken; send a string or a list of strings".into(),
            ));
        }
        _ => return Err(ApiError::InvalidArgument("input must be a string or a list of strings".into())),
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::InvalidArgument(format!("encoding_format {other:?}: use float or base64")));
        }
    };
    let r = do_embed(&ctx, &node, EmbedRequest { model: req.model, texts, dimensions: req.dimensions }).await?;
    let data: Vec<Value> = r
        .embeddings
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(ok(json!({
        "object": "list",
        "data": data,
        "model": r.model,
        "usage": {"prompt_tokens": r.prompt_tokens, "total_tokens": r.prompt_tokens},
    })))
}
