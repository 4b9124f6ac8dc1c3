//! Text embedded by this node's installed models, on request: what
//! `POST /v1/embeddings` (OpenAI's wire format) and gRPC `Plugins.Embed`
//! serve, so any OpenAI client library can embed through Synod.

use super::Node;
use crate::auth::AuthContext;
use crate::error::{ApiError, Result};

/// Texts to embed with one model.
#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub model: String,
    pub texts: Vec<String>,
    /// The vector length the caller expects (OpenAI's `dimensions`): a
    /// model has one, so any other is refused.
    pub dimensions: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Embedded {
    pub model: String,
    /// One vector per text, in order.
    pub embeddings: Vec<Vec<f32>>,
    /// The model's tokens of all the texts (special tokens included).
    pub prompt_tokens: u64,
}

pub async fn do_embed(_ctx: &AuthContext, node: &Node, req: EmbedRequest) -> Result<Embedded> {
    let max = node.cfg.plugins.embeddings_max_inputs as usize;
    if req.texts.is_empty() || req.texts.len() > max {
        return Err(ApiError::InvalidArgument(format!(
            "input must hold 1 to {max} texts (plugins.embeddings_max_inputs); got {}",
            req.texts.len()
        )));
    }
    if let Some(i) = req.texts.iter().position(|t| t.len() > synod_plugins::MAX_TEXT_BYTES) {
        return Err(ApiError::InvalidArgument(format!(
            "input {i} is longer than {} bytes",
            synod_plugins::MAX_TEXT_BYTES
        )));
    }
    let Some(dimension) = node.models.dimension(&req.model) else {
        return Err(ApiError::NotFound(format!(
            "model {:?} is not installed on this node (installed: {}; synod model install)",
            req.model,
            node.models.names().join(", ")
        )));
    };
    if let Some(d) = req.dimensions
        && d != dimension
    {
        return Err(ApiError::InvalidArgument(format!(
            "model {} gives {dimension}-dimensional vectors; dimensions {d} cannot be served",
            req.model
        )));
    }
    let models = node.models.clone();
    let (model, texts) = (req.model.clone(), req.texts);
    let (embeddings, prompt_tokens) = tokio::task::spawn_blocking(move || {
        let tokens: u64 = texts.iter().map(|t| models.tokenize(&model, t).map_or(0, |t| t.ids.len() as u64)).sum();
        models.embed(&model, texts, None).map(|e| (e, tokens))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("embedding task: {e}")))?
    .map_err(|e| ApiError::Unavailable(format!("model {}: {e}", req.model)))?;
    if embeddings.iter().any(|v| v.len() != dimension) {
        return Err(ApiError::Internal(format!(
            "model {} answered vectors of another length than {dimension}",
            req.model
        )));
    }
    Ok(Embedded { model: req.model, embeddings, prompt_tokens })
}
