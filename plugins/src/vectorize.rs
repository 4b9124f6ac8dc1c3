//! The `vectorize` built-in: sentence embeddings from an installed model, or
//! the deterministic hashing vectorizer (`hashing-v1`).
//!
//! Vectors are stored and later compared with query vectors computed by
//! another node or another build, so `hashing-v1` is a format: any change to
//! its words, features, hash or weights is a new model name, never an edit.
//! The golden test at the bottom pins it.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::model::{MAX_MODEL_NAME_LEN, check_model_name};
use crate::payload::{Fields, MAX_TEXT_BYTES, type_name};
use crate::text::words;
use crate::{Models, Plugin, PluginError, PluginInfo, TaskContext};

/// The model name in `vectorize`'s output.
pub const HASHING_MODEL: &str = "hashing-v1";
/// The dimension when the payload names none (that of all-MiniLM-L6-v2).
pub const DEFAULT_DIMENSION: usize = 384;
/// The largest dimension `vectorize` accepts.
pub const MAX_DIMENSION: usize = 4096;
/// Largest `collection` and string `id`, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// Largest `metadata`, as compact JSON.
const MAX_METADATA_BYTES: usize = 64 * 1024;

const UNIGRAM_WEIGHT: f64 = 1.0;
const BIGRAM_WEIGHT: f64 = 0.5;

/// The `hashing-v1` vector of `text`, of length `dimension` (at least 1).
///
/// 1. Words: [`crate::words`] (NFKC, lowercase, UAX #29 words).
/// 2. Features: every word `w` as the UTF-8 key `"w:" + w` with weight 1.0,
///    every pair of neighbouring words `a`, `b` as `"b:" + a + " " + b` with
///    weight 0.5.
/// 3. Hash: `h = fmix64(fnv1a64(key))`: 64-bit FNV-1a, then the MurmurHash3
///    finalizer so that the low bits used for the index are well mixed.
/// 4. `v[h % dimension] += weight`, negated when the top bit of `h` is set.
/// 5. L2-normalised in `f64`, then rounded to `f32`; text without words
///    gives the all-zero vector.
pub fn hashing_vector(text: &str, dimension: usize) -> Vec<f32> {
    let dimension = dimension.max(1);
    let mut acc = vec![0f64; dimension];
    let mut add = |key: &[&str], weight: f64| {
        let h = fmix64(fnv1a64_parts(key));
        let index = (h % dimension as u64) as usize;
        acc[index] += if h >> 63 == 1 { -weight } else { weight };
    };
    let words = words(text);
    for w in &words {
        add(&["w:", w], UNIGRAM_WEIGHT);
    }
    for pair in words.windows(2) {
        add(&["b:", &pair[0], " ", &pair[1]], BIGRAM_WEIGHT);
    }
    let norm = acc.iter().map(|x| x * x).sum::<f64>().sqrt();
    // Features can cancel out to exactly zero; never divide by it.
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    acc.into_iter().map(|x| (x * scale) as f32).collect()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_parts(&[bytes])
}

/// FNV-1a of the concatenation of `parts`, without building it.
fn fnv1a64_parts<P: AsRef<[u8]>>(parts: &[P]) -> u64 {
    let mut h = FNV_OFFSET;
    for part in parts {
        for &b in part.as_ref() {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Built-in `vectorize`: text to a vector with a sentence-embedding model
/// installed on the node (all-MiniLM-L6-v2 by default, see [`crate::Models`])
/// or the deterministic hashing vectorizer `hashing-v1` ([`hashing_vector`]),
/// which needs no install: similar wording gives similar vectors, meaning
/// does not.
///
/// Payload (the seed's `{"text": "hello world"}` is enough):
/// ```json
/// {"text": "hello world", "model": "all-MiniLM-L6-v2",
///  "collection": "docs", "id": "doc-1", "metadata": {"lang": "en"}}
/// ```
/// - `text` (string, at most 1 MiB) or `texts` (1 to 1024 strings, at most
///   1 MiB together): exactly one of them
/// - `model`: an installed model's name or `hashing-v1` (default: the
///   node's default model, `plugins.default_model`)
/// - `dimension`: for `hashing-v1`, 1..=4096 (default 384); for a model,
///   if given, it must be the model's
/// - passthrough with `text` only, copied to the output when present, for a
///   later indexing step: `collection` (string, at most 255 bytes), `id`
///   (string of at most 255 bytes, or a non-negative integer), `metadata`
///   (object, at most 64 KiB as JSON)
///
/// Output for `text`:
/// ```json
/// {"vector": [0.0191957, 0.1200854, ...], "dimension": 384, "model": "all-MiniLM-L6-v2",
///  "text": "hello world", "collection": "docs", "id": "doc-1", "metadata": {"lang": "en"}}
/// ```
/// and for `texts`: `{"vectors": [[...], ...], "count": 2, "dimension": 384, "model": "..."}`.
/// Vectors have L2 norm 1 (a `hashing-v1` vector is all zeros when the text
/// has no words). A task naming a model runs only on nodes that have it.
pub struct VectorizePlugin {
    models: Arc<Models>,
    default_model: String,
}

impl std::fmt::Debug for VectorizePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorizePlugin").field("default_model", &self.default_model).finish_non_exhaustive()
    }
}

impl Default for VectorizePlugin {
    /// No models; `hashing-v1` is the default.
    fn default() -> Self {
        VectorizePlugin::new(Arc::new(Models::none()), HASHING_MODEL)
    }
}

/// Most texts in one `vectorize` task.
pub const MAX_TEXTS: usize = 1024;

enum Input<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

struct VectorizeArgs<'a> {
    input: Input<'a>,
    model: &'a str,
    dimension: Option<usize>,
    passthrough: Map<String, Value>,
}

impl VectorizePlugin {
    /// `vectorize` over the node's `models`, using `default_model` when a
    /// payload names none.
    pub fn new(models: Arc<Models>, default_model: impl Into<String>) -> Self {
        VectorizePlugin { models, default_model: default_model.into() }
    }

    fn parse<'a>(&'a self, payload: &'a Value) -> Result<VectorizeArgs<'a>, String> {
        let f = Fields::parse(payload, &["text", "texts", "model", "dimension", "collection", "id", "metadata"])?;
        let input = match (f.str("text", MAX_TEXT_BYTES)?, f.get("texts")) {
            (Some(text), None) => Input::One(text),
            (None, Some(texts)) => Input::Many(parse_texts(texts)?),
            (Some(_), Some(_)) => return Err("give `text` or `texts`, not both".to_owned()),
            (None, None) => return Err("missing field `text` (a string) or `texts` (a list of strings)".to_owned()),
        };
        let model = f.str("model", MAX_MODEL_NAME_LEN)?.unwrap_or(&self.default_model);
        if model != HASHING_MODEL {
            check_model_name(model).map_err(|e| format!("`model`: {e}"))?;
        }
        let dimension = f.u64_in("dimension", 1..=MAX_DIMENSION as u64)?.map(|d| d as usize);
        if model != HASHING_MODEL
            && let (Some(asked), Some(has)) = (dimension, self.models.dimension(model))
            && asked != has
        {
            return Err(format!("`dimension` is {asked}, but model {model} gives {has}"));
        }
        let mut passthrough = Map::new();
        if let Some(c) = f.str("collection", MAX_NAME_BYTES)? {
            passthrough.insert("collection".to_owned(), Value::from(c));
        }
        match f.get("id") {
            None => {}
            Some(id @ Value::Number(n)) if n.is_u64() => {
                passthrough.insert("id".to_owned(), id.clone());
            }
            Some(Value::String(_)) => {
                let id = f.str("id", MAX_NAME_BYTES)?.expect("`id` is present: matched above");
                passthrough.insert("id".to_owned(), Value::from(id));
            }
            Some(other) => {
                let got = if other.is_number() { other.to_string() } else { type_name(other).to_owned() };
                return Err(format!("`id` must be a string or a non-negative integer, got {got}"));
            }
        }
        if let Some(m) = f.object("metadata", MAX_METADATA_BYTES)? {
            passthrough.insert("metadata".to_owned(), Value::Object(m.clone()));
        }
        if matches!(input, Input::Many(_)) && !passthrough.is_empty() {
            return Err("`collection`, `id` and `metadata` go with `text`, not `texts`".to_owned());
        }
        Ok(VectorizeArgs { input, model, dimension, passthrough })
    }

    /// The vectors of `texts` with `model`: `hashing-v1` here, any other on
    /// the node's models (batched with concurrent requests).
    fn vectors(
        &self,
        model: &str,
        texts: &[&str],
        dimension: Option<usize>,
        ctx: &TaskContext,
    ) -> Result<(Vec<Vec<f32>>, usize), PluginError> {
        if model == HASHING_MODEL {
            let d = dimension.unwrap_or(DEFAULT_DIMENSION);
            return Ok((texts.iter().map(|t| hashing_vector(t, d)).collect(), d));
        }
        let owned = texts.iter().map(|t| (*t).to_owned()).collect();
        let vectors = self.models.embed(model, owned, Some(ctx.cancel.clone()))?;
        ctx.cancel.check()?;
        let d = self.models.dimension(model).unwrap_or_else(|| vectors.first().map_or(0, Vec::len));
        if let Some(asked) = dimension
            && asked != d
        {
            return Err(PluginError::InvalidInput(format!("`dimension` is {asked}, but model {model} gives {d}")));
        }
        Ok((vectors, d))
    }
}

fn parse_texts(value: &Value) -> Result<Vec<&str>, String> {
    let Value::Array(items) = value else {
        return Err(format!("`texts` must be a list of strings, got {}", type_name(value)));
    };
    if items.is_empty() || items.len() > MAX_TEXTS {
        return Err(format!("`texts` must hold 1 to {MAX_TEXTS} strings, got {}", items.len()));
    }
    let mut total = 0;
    let mut texts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(format!("`texts[{i}]` must be a string, got {}", type_name(item)));
        };
        total += s.len();
        texts.push(s.as_str());
    }
    if total > MAX_TEXT_BYTES {
        return Err(format!("`texts` hold {total} bytes; the limit is {MAX_TEXT_BYTES}"));
    }
    Ok(texts)
}

impl Plugin for VectorizePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(
            "vectorize",
            "sentence embeddings with an installed model (default all-MiniLM-L6-v2) or the hashing-v1 vectorizer",
        )
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        self.parse(payload).map(drop)
    }

    fn requirements(&self, payload: &Value) -> Vec<String> {
        match self.parse(payload) {
            Ok(a) if a.model != HASHING_MODEL => vec![model_capability(a.model)],
            _ => Vec::new(),
        }
    }

    fn run(&self, payload: &Value, ctx: &TaskContext) -> Result<Value, PluginError> {
        let a = self.parse(payload).map_err(PluginError::InvalidInput)?;
        let mut out = a.passthrough;
        match a.input {
            Input::One(text) => {
                let (mut vectors, d) = self.vectors(a.model, &[text], a.dimension, ctx)?;
                out.insert("vector".to_owned(), json!(vectors.pop().unwrap_or_default()));
                out.insert("dimension".to_owned(), json!(d));
                out.insert("text".to_owned(), json!(text));
            }
            Input::Many(texts) => {
                let (vectors, d) = self.vectors(a.model, &texts, a.dimension, ctx)?;
                out.insert("count".to_owned(), json!(vectors.len()));
                out.insert("vectors".to_owned(), json!(vectors));
                out.insert("dimension".to_owned(), json!(d));
            }
        }
        out.insert("model".to_owned(), json!(a.model));
        Ok(Value::Object(out))
    }
}

/// The capability a node advertises for an installed model, and a task
/// naming the model requires: `model:<name>`.
pub fn model_capability(model: &str) -> String {
    format!("model:{model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64_parts(&["foo", "", "bar"]), fnv1a64(b"foobar"));
    }

    #[test]
    fn fmix64_matches_murmur3() {
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
    }

    #[test]
    fn no_words_give_the_zero_vector() {
        for text in ["", "   ", "?!,."] {
            let v = hashing_vector(text, 16);
            assert_eq!(v, vec![0.0; 16], "text {text:?}");
        }
    }

    #[test]
    fn dimension_zero_is_treated_as_one() {
        assert_eq!(hashing_vector("hello", 0).len(), 1);
    }
}
