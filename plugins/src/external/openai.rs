//! OpenAI's wire format: `/embeddings`, `/chat/completions`, `/completions`
//! under the provider's `base_url` (which ends in `/v1`).

use serde_json::{Value, json};

use super::{AiRequest, ExternalError, Operation, Usage};

/// The path under `base_url` and the body of `req`.
pub(super) fn request(req: &AiRequest) -> Result<(String, Value), ExternalError> {
    let mut body = serde_json::Map::new();
    // Parameters first, so that model and input cannot be overridden by them.
    for (k, v) in &req.parameters {
        body.insert(k.clone(), v.clone());
    }
    body.insert("model".into(), json!(req.model));
    let path = match req.operation {
        Operation::Embeddings => {
            check_texts(&req.input)?;
            body.insert("input".into(), req.input.clone());
            "embeddings"
        }
        Operation::Chat => {
            let messages = match &req.input {
                Value::String(s) => json!([{"role": "user", "content": s}]),
                Value::Array(items) if !items.is_empty() && items.iter().all(|m| m["role"].is_string()) => {
                    req.input.clone()
                }
                _ => {
                    return Err(ExternalError::Invalid(
                        "chat input must be a string or a non-empty list of {\"role\", \"content\"} messages".into(),
                    ));
                }
            };
            body.insert("messages".into(), messages);
            "chat/completions"
        }
        Operation::Completions => {
            check_texts(&req.input)?;
            body.insert("prompt".into(), req.input.clone());
            "completions"
        }
        Operation::Inference => {
            return Err(ExternalError::Invalid(
                "an openai provider serves embeddings, chat and completions; inference is for huggingface".into(),
            ));
        }
    };
    Ok((path.to_owned(), Value::Object(body)))
}

/// A string, or a non-empty list of strings.
fn check_texts(input: &Value) -> Result<(), ExternalError> {
    match input {
        Value::String(_) => Ok(()),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => Ok(()),
        _ => Err(ExternalError::Invalid("input must be a string or a non-empty list of strings".into())),
    }
}

fn usage(raw: &Value) -> Usage {
    let u = &raw["usage"];
    let get = |k: &str| u[k].as_u64().unwrap_or(0);
    Usage {
        prompt_tokens: get("prompt_tokens"),
        completion_tokens: get("completion_tokens"),
        total_tokens: get("total_tokens"),
    }
}

/// The normalised output of an answer; Err says what is off in its shape.
pub(super) fn response(req: &AiRequest, raw: &Value) -> Result<(Value, Usage), String> {
    let output = match req.operation {
        Operation::Embeddings => {
            let data = raw["data"].as_array().ok_or("no data list")?;
            let mut rows: Vec<(u64, Vec<f32>)> = Vec::with_capacity(data.len());
            for (i, d) in data.iter().enumerate() {
                let index = d["index"].as_u64().unwrap_or(i as u64);
                let v = d["embedding"].as_array().ok_or("an item without an embedding list")?;
                let v: Option<Vec<f32>> = v.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
                rows.push((index, v.ok_or("an embedding with a value that is not a number")?));
            }
            // The order of `data` is the order of `index`, not necessarily
            // the order in the body.
            rows.sort_by_key(|(i, _)| *i);
            let expected = req.input.as_array().map_or(1, Vec::len);
            if rows.len() != expected {
                return Err(format!("{} embeddings for {expected} inputs", rows.len()));
            }
            let dimension = rows.first().map_or(0, |(_, v)| v.len());
            if rows.iter().any(|(_, v)| v.len() != dimension) {
                return Err("embeddings of different lengths".into());
            }
            let embeddings: Vec<Vec<f32>> = rows.into_iter().map(|(_, v)| v).collect();
            json!({"embeddings": embeddings, "dimension": dimension})
        }
        Operation::Chat => {
            let choice = &raw["choices"][0];
            let message = choice["message"].clone();
            let text = message["content"].as_str().ok_or("no choices[0].message.content")?;
            json!({"text": text, "message": message, "finish_reason": choice["finish_reason"]})
        }
        Operation::Completions => {
            let choice = &raw["choices"][0];
            let text = choice["text"].as_str().ok_or("no choices[0].text")?;
            json!({"text": text, "finish_reason": choice["finish_reason"]})
        }
        Operation::Inference => return Err("inference is not an openai operation".into()),
    };
    Ok((output, usage(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(operation: Operation, input: Value) -> AiRequest {
        AiRequest {
            operation,
            model: "m".into(),
            input,
            parameters: [("temperature".to_string(), json!(0)), ("model".to_string(), json!("other"))]
                .into_iter()
                .collect(),
            idempotency_key: None,
        }
    }

    #[test]
    fn requests_are_openais_bodies_and_parameters_cannot_replace_the_model() {
        let (path, body) = request(&req(Operation::Embeddings, json!(["a", "b"]))).unwrap();
        assert_eq!((path.as_str(), &body["model"], &body["input"]), ("embeddings", &json!("m"), &json!(["a", "b"])));
        let (path, body) = request(&req(Operation::Chat, json!("hi"))).unwrap();
        assert_eq!(path, "chat/completions");
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(body["temperature"], 0);
        assert!(request(&req(Operation::Embeddings, json!([1, 2]))).is_err());
        assert!(request(&req(Operation::Chat, json!([]))).is_err());
        assert!(request(&req(Operation::Inference, json!("x"))).is_err());
    }

    #[test]
    fn embeddings_come_back_in_input_order_and_are_checked() {
        let r = req(Operation::Embeddings, json!(["a", "b"]));
        let raw = json!({"data": [{"index": 1, "embedding": [3.0, 4.0]}, {"index": 0, "embedding": [1.0, 2.0]}],
                         "usage": {"prompt_tokens": 4, "total_tokens": 4}});
        let (out, usage) = response(&r, &raw).unwrap();
        assert_eq!(out, json!({"embeddings": [[1.0, 2.0], [3.0, 4.0]], "dimension": 2}));
        assert_eq!(usage.total_tokens, 4);
        let short = json!({"data": [{"index": 0, "embedding": [1.0]}]});
        assert!(response(&r, &short).unwrap_err().contains("1 embeddings for 2 inputs"));
        assert!(response(&r, &json!({"oops": 1})).is_err());
    }

    #[test]
    fn chat_answers_give_their_text() {
        let raw = json!({"choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
        let (out, usage) = response(&req(Operation::Chat, json!("hi")), &raw).unwrap();
        assert_eq!(out["text"], "hello");
        assert_eq!(usage, Usage { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 });
    }
}
