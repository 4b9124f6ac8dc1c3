//! Hugging Face's Inference API wire format: `POST {base_url}/models/{model}`
//! with `{"inputs", "parameters"}` (Inference Endpoints take the same body
//! at their own URL: give it as `base_url` and the model as `.`).

use serde_json::{Value, json};

use super::{AiRequest, ExternalError, Operation, Usage};

pub(super) fn request(req: &AiRequest) -> Result<(String, Value), ExternalError> {
    if req.model.is_empty() || req.model.contains("..") || req.model.starts_with('/') {
        return Err(ExternalError::Invalid(format!("{:?} is not a model id (owner/name)", req.model)));
    }
    let inputs = match req.operation {
        Operation::Embeddings | Operation::Completions => match &req.input {
            Value::String(_) => req.input.clone(),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => req.input.clone(),
            _ => return Err(ExternalError::Invalid("input must be a string or a non-empty list of strings".into())),
        },
        Operation::Chat => match &req.input {
            Value::String(_) => req.input.clone(),
            _ => {
                return Err(ExternalError::Invalid(
                    "a huggingface provider takes chat input as one string (use an openai provider for messages)"
                        .into(),
                ));
            }
        },
        Operation::Inference => req.input.clone(),
    };
    let path = if req.model == "." { String::new() } else { format!("models/{}", req.model) };
    Ok((path, json!({"inputs": inputs, "parameters": Value::Object(req.parameters.clone())})))
}

/// A vector: a list of numbers.
fn vector(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?.iter().map(|x| x.as_f64().map(|f| f as f32)).collect()
}

pub(super) fn response(req: &AiRequest, raw: &Value) -> Result<(Value, Usage), String> {
    let output =
        match req.operation {
            Operation::Embeddings => {
                // One input: a vector; several: a list of vectors.
                let embeddings: Vec<Vec<f32>> =
                    match &req.input {
                        Value::String(_) => match vector(raw) {
                            Some(v) => vec![v],
                            None => vec![raw.as_array().and_then(|a| a.first()).and_then(vector).ok_or(
                                "not a vector (is the model a sentence-embedding model, not a token-level one?)",
                            )?],
                        },
                        _ => raw
                            .as_array()
                            .ok_or("not a list of vectors")?
                            .iter()
                            .map(vector)
                            .collect::<Option<_>>()
                            .ok_or("not a list of vectors (is the model a sentence-embedding model?)")?,
                    };
                let expected = req.input.as_array().map_or(1, Vec::len);
                if embeddings.len() != expected {
                    return Err(format!("{} embeddings for {expected} inputs", embeddings.len()));
                }
                let dimension = embeddings.first().map_or(0, Vec::len);
                if embeddings.iter().any(|v| v.len() != dimension) {
                    return Err("embeddings of different lengths".into());
                }
                json!({"embeddings": embeddings, "dimension": dimension})
            }
            Operation::Chat | Operation::Completions => {
                let text = raw[0]["generated_text"]
                    .as_str()
                    .or_else(|| raw["generated_text"].as_str())
                    .ok_or("no generated_text")?;
                json!({"text": text, "finish_reason": Value::Null})
            }
            Operation::Inference => raw.clone(),
        };
    Ok((output, Usage::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(operation: Operation, model: &str, input: Value) -> AiRequest {
        AiRequest { operation, model: model.into(), input, parameters: Default::default(), idempotency_key: None }
    }

    #[test]
    fn requests_name_the_model_in_the_path() {
        let (path, body) = request(&req(Operation::Embeddings, "org/m", json!("a"))).unwrap();
        assert_eq!((path.as_str(), &body["inputs"]), ("models/org/m", &json!("a")));
        assert!(request(&req(Operation::Embeddings, "../x", json!("a"))).is_err());
        assert_eq!(request(&req(Operation::Inference, ".", json!({"x": 1}))).unwrap().0, "");
    }

    #[test]
    fn feature_extraction_answers_become_embeddings() {
        let one = req(Operation::Embeddings, "m", json!("a"));
        assert_eq!(response(&one, &json!([0.5, 1.0])).unwrap().0["embeddings"], json!([[0.5, 1.0]]));
        let two = req(Operation::Embeddings, "m", json!(["a", "b"]));
        assert_eq!(response(&two, &json!([[1.0], [2.0]])).unwrap().0["dimension"], 1);
        assert!(response(&two, &json!([[1.0]])).is_err());
        let text = req(Operation::Completions, "m", json!("a"));
        assert_eq!(response(&text, &json!([{"generated_text": "b"}])).unwrap().0["text"], "b");
    }
}
