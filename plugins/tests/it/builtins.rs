//! What the built-ins return: normalize, tokenize, vectorize, sleep.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synod_plugins::{HASHING_MODEL, Registry, hashing_vector};

use crate::util::{cosine, must_execute, norm, vector_of};

async fn normalized(payload: Value) -> String {
    let out = must_execute(&Registry::with_builtins(), "normalize", payload).await;
    let keys: Vec<_> = out.as_object().expect("an object").keys().cloned().collect();
    assert_eq!(keys, ["text"], "normalize returns only `text`: {out}");
    out["text"].as_str().expect("`text` is a string").to_owned()
}

#[tokio::test]
async fn normalize_examples() {
    let cases = [
        (json!({"text": "ＨＥＬＬＯ  wörld "}), "hello wörld"),
        // Decomposed ö (o + U+0308) composes under both forms.
        (json!({"text": "Wo\u{308}rld", "form": "nfc"}), "w\u{f6}rld"),
        (json!({"text": "ＨＥＬＬＯ", "form": "nfc"}), "ｈｅｌｌｏ"),
        (json!({"text": "ＨＥＬＬＯ", "form": "nfkc", "lowercase": false}), "HELLO"),
        (json!({"text": "  ﬁne\t\n\u{a0}day  "}), "fine day"),
        (json!({"text": "  a \t b  ", "collapse_whitespace": false}), "a \t b"),
        (json!({"text": "Straße ÉCOLE"}), "straße école"),
        (json!({"text": "x²"}), "x2"),
        (json!({"text": "   "}), ""),
        (json!({"text": ""}), ""),
    ];
    for (payload, expected) in cases {
        assert_eq!(normalized(payload.clone()).await, expected, "{payload}");
    }
}

#[tokio::test]
async fn tokenize_returns_lowercased_words_and_their_count() {
    let registry = Registry::with_builtins();
    let out = must_execute(&registry, "tokenize", json!({"text": "Hello, World! Hello again — ＡＩ's 2.0 era."})).await;
    assert_eq!(out, json!({"tokens": ["hello", "world", "hello", "again", "ai's", "2.0", "era"], "count": 7}));
    let out = must_execute(&registry, "tokenize", json!({"text": " ... "})).await;
    assert_eq!(out, json!({"tokens": [], "count": 0}));
}

#[tokio::test]
async fn vectorize_accepts_the_seed_payload() {
    let registry = Registry::with_builtins();
    // The seed's example, verbatim: {"type": "vectorize", "payload": {"text": "hello world"}}.
    let out = must_execute(&registry, "vectorize", json!({"text": "hello world"})).await;
    let keys: BTreeSet<_> = out.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["dimension", "model", "text", "vector"]));
    assert_eq!(out["dimension"], 384);
    assert_eq!(out["model"], HASHING_MODEL);
    assert_eq!(out["text"], "hello world");
    let v = vector_of(&out);
    assert_eq!(v.len(), 384);
    assert!((norm(&v) - 1.0).abs() < 1e-6, "norm {}", norm(&v));
}

/// Pins `hashing-v1`: stored vectors must match query vectors computed by
/// any later build. Expected values come from an independent implementation
/// of the documented algorithm (FNV-1a 64 + fmix64, `w:`/`b:` features).
#[test]
fn hashing_v1_is_pinned() {
    let v = hashing_vector("hello world", 384);
    let nonzero: Vec<(usize, f32)> = v.iter().copied().enumerate().filter(|&(_, x)| x != 0.0).collect();
    assert_eq!(nonzero, [(67, 2.0 / 3.0), (222, 2.0 / 3.0), (259, 1.0 / 3.0)]);
    let v = hashing_vector("hello world", 8);
    let (a, b) = (1.5 / 3.25f64.sqrt(), 1.0 / 3.25f64.sqrt());
    assert_eq!(v, [0.0, 0.0, 0.0, a as f32, 0.0, 0.0, b as f32, 0.0]);
}

#[tokio::test]
async fn vectorize_is_deterministic_and_unit_length() {
    let registry = Registry::with_builtins();
    for (text, dimension) in
        [("hello world", 384), ("The quick brown fox", 7), ("日本語のテキストです", 4096), ("a", 1)]
    {
        let payload = json!({"text": text, "dimension": dimension});
        let first = vector_of(&must_execute(&registry, "vectorize", payload.clone()).await);
        let second = vector_of(&must_execute(&registry, "vectorize", payload).await);
        assert_eq!(first, second, "{text:?}");
        assert_eq!(first, hashing_vector(text, dimension), "the plugin and the function agree");
        assert_eq!(first.len(), dimension);
        assert!((norm(&first) - 1.0).abs() < 1e-6, "{text:?}: norm {}", norm(&first));
    }
}

#[tokio::test]
async fn vectorize_folds_case_width_and_spacing() {
    let base = hashing_vector("hello world", 384);
    for variant in ["Hello World", "  HELLO\n\tworld!", "ｈｅｌｌｏ ｗｏｒｌｄ", "hello, world."] {
        assert_eq!(hashing_vector(variant, 384), base, "{variant:?}");
    }
}

#[tokio::test]
async fn vectorize_of_empty_text_is_the_zero_vector() {
    let registry = Registry::with_builtins();
    for text in ["", "   ", "!!!"] {
        let v = vector_of(&must_execute(&registry, "vectorize", json!({"text": text, "dimension": 32})).await);
        assert_eq!(v, vec![0.0; 32], "{text:?}");
        assert!(v.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn similar_texts_are_closer_than_unrelated_ones() {
    let cases = [
        (
            "the quick brown fox jumps over the lazy dog",
            "a quick brown fox jumped over the lazy dogs",
            "stock markets fell sharply on tuesday after the report",
        ),
        ("how do I reset my password", "how can I reset a forgotten password", "best pizza recipes with fresh basil"),
        ("raft leader election timeout", "leader election in raft", "chocolate cake with vanilla frosting"),
    ];
    for dimension in [384, 4096] {
        for (text, similar, unrelated) in cases {
            let v = hashing_vector(text, dimension);
            let close = cosine(&v, &hashing_vector(similar, dimension));
            let far = cosine(&v, &hashing_vector(unrelated, dimension));
            assert!(close > far + 0.2, "dim {dimension}: {text:?} ~ {similar:?} = {close}, ~ {unrelated:?} = {far}");
            assert!((cosine(&v, &v) - 1.0).abs() < 1e-6);
        }
    }
}

#[test]
fn word_order_matters_through_bigrams() {
    let a = hashing_vector("dog bites man", 4096);
    let b = hashing_vector("man bites dog", 4096);
    let c = cosine(&a, &b);
    assert!(c < 0.999 && c > 0.5, "same words, other order: cosine {c}");
}

#[tokio::test]
async fn vectorize_copies_the_passthrough_fields() {
    let registry = Registry::with_builtins();
    let payload = json!({
        "text": "hello world", "dimension": 16,
        "collection": "docs", "id": "doc-1", "metadata": {"lang": "en", "tags": ["a"]}
    });
    let out = must_execute(&registry, "vectorize", payload).await;
    assert_eq!(out["collection"], "docs");
    assert_eq!(out["id"], "doc-1");
    assert_eq!(out["metadata"], json!({"lang": "en", "tags": ["a"]}));
    assert_eq!(out["dimension"], 16);
    assert_eq!(vector_of(&out), hashing_vector("hello world", 16));

    let out = must_execute(&registry, "vectorize", json!({"text": "x", "id": 42})).await;
    assert_eq!(out["id"], 42);
    assert!(out.get("collection").is_none() && out.get("metadata").is_none(), "{out}");
}

#[tokio::test]
async fn sleep_sleeps() {
    let started = Instant::now();
    let out = must_execute(&Registry::with_builtins(), "sleep", json!({"ms": 60})).await;
    assert_eq!(out, json!({"slept_ms": 60}));
    assert!(started.elapsed() >= Duration::from_millis(60), "slept only {:?}", started.elapsed());
}
