//! The real all-MiniLM-L6-v2 against sentence-transformers' own vectors and
//! the Python `tokenizers` package's own tokens; install's checks; the
//! dynamic batcher.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use synod_plugins::{
    BatchConfig, EmbeddingModel, InstallSource, ModelError, Models, install, sha256_file, verify_installed,
};

use crate::util::{cosine, must_models_dir, reference};

const MINILM: &str = "all-MiniLM-L6-v2";

fn must_load() -> EmbeddingModel {
    let dir = must_models_dir().join(MINILM);
    EmbeddingModel::load(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

fn reference_cases() -> Vec<(String, Vec<f32>)> {
    let r = reference();
    r["public"]
        .as_array()
        .expect("`public` is a list")
        .iter()
        .map(|case| {
            let text = case["text"].as_str().expect("text").to_owned();
            let v = case["embedding"].as_array().expect("embedding").iter().map(|x| x.as_f64().expect("number") as f32);
            (text, v.collect())
        })
        .collect()
}

#[test]
fn every_reference_sentence_matches_sentence_transformers() {
    let model = must_load();
    assert_eq!((model.dimension(), model.max_seq_length()), (384, 256));
    let cases = reference_cases();
    assert_eq!(cases.len(), 30, "the reference file's sentences");
    let texts: Vec<&str> = cases.iter().map(|(t, _)| t.as_str()).collect();
    // All at once (padded batches of mixed lengths) and one by one must agree
    // with the reference; the batch path is what the batcher runs.
    let batched = model.embed(&texts).expect("embed the batch");
    let mut worst = 1.0f64;
    for (i, (text, expected)) in cases.iter().enumerate() {
        let alone = model.embed(&[text.as_str()]).expect("embed one").remove(0);
        for (how, got) in [("batched", &batched[i]), ("alone", &alone)] {
            let sim = cosine(got, expected);
            worst = worst.min(sim);
            assert!(sim >= 0.9999, "{how} {text:?}: cosine {sim} with sentence-transformers' vector");
            let norm = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{how} {text:?}: norm {norm}");
        }
    }
    eprintln!("worst cosine with sentence-transformers over {} sentences: {worst}", cases.len());
}

#[test]
fn the_quickstart_similarities_are_reproduced_to_three_decimals() {
    let model = must_load();
    let r = reference();
    let expected = r["quickstart_similarity"].as_array().expect("a matrix");
    let cases = reference_cases();
    let texts: Vec<&str> = cases[..expected.len()].iter().map(|(t, _)| t.as_str()).collect();
    let vectors = model.embed(&texts).expect("embed");
    for (i, row) in expected.iter().enumerate() {
        for (j, want) in row.as_array().expect("a row").iter().enumerate() {
            let want = want.as_f64().expect("number");
            let got = cosine(&vectors[i], &vectors[j]);
            assert!((got - want).abs() <= 0.0005, "similarity [{i}][{j}] is {got:.4}, sentence-transformers {want:.4}");
        }
    }
}

#[test]
fn tokens_match_the_python_tokenizers_package() {
    let model = must_load();
    let fixture: Value = serde_json::from_str(include_str!("../fixtures/minilm-tokens.json")).expect("fixture");
    let cases = fixture["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 30);
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let got = model.tokenize(text).expect("tokenize");
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
        let tokens: Vec<String> = serde_json::from_value(case["tokens"].clone()).expect("tokens");
        let offsets: Vec<(usize, usize)> = serde_json::from_value(case["offsets"].clone()).expect("offsets");
        assert_eq!(got.ids, ids, "ids of {text:?}");
        assert_eq!(got.tokens, tokens, "tokens of {text:?}");
        assert_eq!(got.offsets, offsets, "offsets of {text:?}");
    }
    // Control: the long sentence is cut at the model's 256 tokens.
    let long = cases.iter().map(|c| c["ids"].as_array().expect("ids").len()).max();
    assert_eq!(long, Some(256));
}

/// Copies the installed model's files to a plain folder, as a user's
/// `--from DIR` would hold them.
fn model_files_copy(into: &Path) -> PathBuf {
    let src = must_models_dir().join(MINILM);
    std::fs::create_dir_all(into).expect("create");
    for file in ["config.json", "tokenizer.json", "model.safetensors", "sentence_bert_config.json"] {
        std::fs::copy(src.join(file), into.join(file)).expect("copy a model file");
    }
    into.to_owned()
}

#[test]
fn install_from_a_directory_checks_pins_and_is_idempotent() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let from = model_files_copy(&tmp.path().join("from"));
    let models = tmp.path().join("models");
    let done = install(&models, MINILM, &InstallSource::Path(from.clone()), false).expect("install");
    assert!(done.changed);
    assert_eq!(done.manifest.dimension, 384);
    assert_eq!(done.manifest.max_seq_length, 256);
    assert_eq!(verify_installed(&done.dir).expect("verify"), done.manifest);
    let again = install(&models, MINILM, &InstallSource::Path(from.clone()), false).expect("again");
    assert!(!again.changed, "a valid install is left alone");

    // A catalogue model's files must be the pinned ones, whatever the source.
    let mut config = std::fs::read_to_string(from.join("config.json")).expect("read");
    config = config.replace("\"gelu\"", "\"gelu\" ");
    std::fs::write(from.join("config.json"), config).expect("write");
    let err = install(&tmp.path().join("models2"), MINILM, &InstallSource::Path(from.clone()), false).unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }), "{err:?}");
    assert!(!tmp.path().join("models2").join(MINILM).exists(), "nothing is installed on a checksum failure");

    // The same files under another name are not pinned; a damaged weight
    // file is refused when loaded.
    let other = install(&tmp.path().join("models3"), "my-model", &InstallSource::Path(from.clone()), false);
    assert!(other.is_ok(), "{other:?}");
    let weights = tmp.path().join("models3").join("my-model").join("model.safetensors");
    let mut bytes = std::fs::read(&weights).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&weights, bytes).expect("write");
    let err = EmbeddingModel::load(&tmp.path().join("models3").join("my-model")).unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }), "{err:?}");
    assert_ne!(sha256_file(&weights).expect("sha"), other.expect("installed").manifest.weights_sha256());
}

#[test]
fn install_refuses_what_is_not_a_model() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("create");
    let err = install(&tmp.path().join("models"), "x", &InstallSource::Path(empty), false).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let err = install(&tmp.path().join("models"), "../evil", &InstallSource::Catalog, false).unwrap_err();
    assert!(matches!(err, ModelError::InvalidName { .. }), "{err:?}");
    let err = install(&tmp.path().join("models"), "not-in-catalogue", &InstallSource::Catalog, false).unwrap_err();
    assert!(err.to_string().contains("--from"), "{err}");
    // Garbage weights with a valid config and tokenizer.
    let garbage = model_files_copy(&tmp.path().join("garbage"));
    std::fs::write(garbage.join("model.safetensors"), b"\x08\0\0\0\0\0\0\0{}      ").expect("write");
    let err = install(&tmp.path().join("models"), "garbage", &InstallSource::Path(garbage), false).unwrap_err();
    assert!(matches!(err, ModelError::Format { .. }), "{err:?}");
    assert!(!tmp.path().join("models").join("garbage").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("models")).expect("models dir").flatten().collect();
    assert!(leftovers.is_empty(), "staging folders are removed: {leftovers:?}");
}

#[test]
fn concurrent_requests_share_forward_passes() {
    let cases = reference_cases();
    let run = |batch: BatchConfig| {
        let models = Arc::new(Models::open(Some(must_models_dir()), batch));
        assert_eq!(models.names(), vec![MINILM.to_owned()]);
        // Load first, so the requests meet at the batcher and not at the loader.
        models.embed(MINILM, vec!["warm up".into()], None).expect("warm up");
        let before = models.batch_stats(MINILM);
        let threads: Vec<_> = cases[..8]
            .iter()
            .map(|(text, expected)| {
                let (models, text, expected) = (models.clone(), text.clone(), expected.clone());
                std::thread::spawn(move || {
                    let v = models.embed(MINILM, vec![text.clone()], None).expect("embed").remove(0);
                    assert!(cosine(&v, &expected) >= 0.9999, "{text:?} got another text's vector");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("an embedding thread panicked");
        }
        let after = models.batch_stats(MINILM);
        (after.passes - before.passes, after.requests - before.requests)
    };
    // Eight requests that wait up to 2 s for company fill one batch of 8 ...
    let (passes, requests) = run(BatchConfig { max_texts: 8, max_wait: Duration::from_secs(2) });
    assert_eq!((passes, requests), (1, 8));
    // ... and with batches of one text they cannot share (the control).
    let (passes, requests) = run(BatchConfig { max_texts: 1, max_wait: Duration::ZERO });
    assert_eq!((passes, requests), (8, 8));
}

#[test]
fn an_unknown_or_missing_model_is_a_clear_error() {
    let models = Models::open(Some(must_models_dir()), BatchConfig::default());
    let err = models.embed("no-such-model", vec!["x".into()], None).unwrap_err();
    assert_eq!(err, ModelError::NotInstalled("no-such-model".into()));
    let empty = Models::none();
    assert!(empty.names().is_empty());
    assert!(empty.embed(MINILM, vec!["x".into()], None).is_err());
}
