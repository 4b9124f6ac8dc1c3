//! Every built-in refuses malformed payloads at submit time with a message
//! that names the problem, and accepts the documented ones.

use serde_json::{Value, json};
use synod_plugins::{PluginError, Registry};

/// (task type, payload, a part of the expected message)
fn refused() -> Vec<(&'static str, Value, &'static str)> {
    let big_text = "x".repeat(1024 * 1024 + 1);
    vec![
        ("echo", json!([1, 2]), "payload must be a JSON object, got an array"),
        ("echo", json!("text"), "payload must be a JSON object, got a string"),
        ("echo", Value::Null, "payload must be a JSON object, got null"),
        ("echo", json!({"blob": big_text}), "larger than the limit of 1048576 bytes"),
        ("normalize", json!({}), "missing field `text`"),
        ("normalize", json!({"text": 5}), "`text` must be a string, got a number"),
        ("normalize", json!({"text": "a", "form": "nfd"}), r#"`form` must be "nfc" or "nfkc", got "nfd""#),
        ("normalize", json!({"text": "a", "form": 1}), "`form` must be a string"),
        ("normalize", json!({"text": "a", "lowercase": "yes"}), "`lowercase` must be a boolean, got a string"),
        (
            "normalize",
            json!({"text": "a", "collapse_whitespace": null}),
            "`collapse_whitespace` must be a boolean, got null",
        ),
        (
            "normalize",
            json!({"txt": "a"}),
            "unknown field `txt` (expected: text, form, lowercase, collapse_whitespace)",
        ),
        ("normalize", json!({"text": big_text}), "`text` is 1048577 bytes; the limit is 1048576"),
        ("normalize", json!("a"), "payload must be a JSON object"),
        ("tokenize", json!({"text": ["a"]}), "`text` must be a string, got an array"),
        ("tokenize", json!({"text": "a", "lang": "en"}), "unknown field `lang` (expected: text, tokenizer)"),
        ("tokenize", json!([]), "payload must be a JSON object"),
        ("vectorize", json!({"text": "a", "dimension": 0}), "`dimension` must be an integer in 1..=4096, got 0"),
        ("vectorize", json!({"text": "a", "dimension": 4097}), "`dimension` must be an integer in 1..=4096, got 4097"),
        ("vectorize", json!({"text": "a", "dimension": 1_000_000}), "in 1..=4096, got 1000000"),
        ("vectorize", json!({"text": "a", "dimension": -3}), "in 1..=4096, got -3"),
        ("vectorize", json!({"text": "a", "dimension": 384.5}), "in 1..=4096, got 384.5"),
        ("vectorize", json!({"text": "a", "dimension": "384"}), "in 1..=4096, got a string"),
        ("vectorize", json!({"dimension": 8}), "missing field `text`"),
        ("vectorize", json!({"text": "a", "lang": "en"}), "unknown field `lang`"),
        ("vectorize", json!({"text": "a", "model": "../etc"}), "`model`: invalid model name"),
        ("vectorize", json!({"text": "a", "texts": ["b"]}), "give `text` or `texts`, not both"),
        ("vectorize", json!({"texts": []}), "`texts` must hold 1 to 1024 strings, got 0"),
        ("vectorize", json!({"texts": ["a", 1]}), "`texts[1]` must be a string, got a number"),
        ("vectorize", json!({"texts": ["a"], "id": "x"}), "go with `text`, not `texts`"),
        ("tokenize", json!({"text": "a", "tokenizer": "a b"}), "`tokenizer`: invalid model name"),
        ("vectorize", json!({"text": "a", "collection": 7}), "`collection` must be a string"),
        (
            "vectorize",
            json!({"text": "a", "collection": "c".repeat(256)}),
            "`collection` is 256 bytes; the limit is 255",
        ),
        (
            "vectorize",
            json!({"text": "a", "id": true}),
            "`id` must be a string or a non-negative integer, got a boolean",
        ),
        ("vectorize", json!({"text": "a", "id": -1}), "`id` must be a string or a non-negative integer, got -1"),
        ("vectorize", json!({"text": "a", "id": 1.5}), "got 1.5"),
        ("vectorize", json!({"text": "a", "id": "i".repeat(256)}), "`id` is 256 bytes"),
        ("vectorize", json!({"text": "a", "metadata": ["x"]}), "`metadata` must be a JSON object, got an array"),
        (
            "vectorize",
            json!({"text": "a", "metadata": {"k": "v".repeat(64 * 1024)}}),
            "`metadata` is larger than the limit",
        ),
        ("sleep", json!({}), "missing field `ms`"),
        ("sleep", json!({"ms": 600_001}), "`ms` must be an integer in 0..=600000, got 600001"),
        ("sleep", json!({"ms": -5}), "got -5"),
        ("sleep", json!({"ms": "10"}), "got a string"),
        ("sleep", json!({"ms": 10, "jitter": 1}), "unknown field `jitter` (expected: ms)"),
        ("fail", json!({"message": 5}), "`message` must be a string"),
        ("fail", json!({"retryable": "no"}), "`retryable` must be a boolean"),
        ("fail", json!({"panic": 1}), "`panic` must be a boolean"),
        ("fail", json!({"message": "m".repeat(4097)}), "`message` is 4097 bytes; the limit is 4096"),
        ("fail", json!({"reason": "x"}), "unknown field `reason` (expected: message, retryable, panic)"),
    ]
}

#[test]
fn malformed_payloads_are_refused_with_a_clear_message() {
    let registry = Registry::with_builtins();
    for (task_type, payload, expected) in refused() {
        let shown = if payload.to_string().len() > 80 { "<large>".to_owned() } else { payload.to_string() };
        match registry.validate(task_type, &payload) {
            Err(PluginError::InvalidInput(message)) => {
                assert!(message.contains(expected), "{task_type} {shown}: {message:?} lacks {expected:?}")
            }
            other => panic!("{task_type} {shown}: expected InvalidInput, got {other:?}"),
        }
    }
}

#[test]
fn invalid_input_is_a_definite_non_retryable_invalid_argument() {
    let registry = Registry::with_builtins();
    let err = registry.validate("sleep", &json!({"ms": "soon"})).expect_err("ms is not an integer");
    assert_eq!(err.kind(), "invalid_argument");
    assert!(!err.retryable());
    assert!(err.to_string().starts_with("invalid payload: "), "{err}");
}

#[test]
fn documented_payloads_are_accepted() {
    let registry = Registry::with_builtins();
    let accepted = [
        ("echo", json!({})),
        ("echo", json!({"anything": [1, {"nested": null}]})),
        ("normalize", json!({"text": ""})),
        (
            "normalize",
            json!({"text": "ＨＥＬＬＯ  wörld ", "form": "nfc", "lowercase": false, "collapse_whitespace": false}),
        ),
        ("tokenize", json!({"text": "Hello, world"})),
        ("vectorize", json!({"text": "hello world"})),
        ("vectorize", json!({"text": "x", "dimension": 1})),
        ("vectorize", json!({"text": "x", "dimension": 4096, "collection": "docs", "id": 7, "metadata": {}})),
        ("vectorize", json!({"text": "x", "id": "doc-1"})),
        ("sleep", json!({"ms": 0})),
        ("sleep", json!({"ms": 600_000})),
        ("fail", json!({})),
        ("fail", json!({"message": "boom", "retryable": false, "panic": true})),
    ];
    for (task_type, payload) in accepted {
        assert_eq!(registry.validate(task_type, &payload), Ok(()), "{task_type} {payload}");
    }
}
