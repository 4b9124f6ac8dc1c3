//! The `vectorize` built-in: a deterministic hashing vectorizer
//! (`hashing-v1`), until the sentence-embedding model arrives.
//!
//! Vectors are stored and later compared with query vectors computed by
//! another node or another build, so `hashing-v1` is a format: any change to
//! its words, features, hash or weights is a new model name, never an edit.
//! The golden test at the bottom pins it.

use serde_json::{Map, Value, json};

use crate::payload::{Fields, MAX_TEXT_BYTES, type_name};
use crate::text::words;
use crate::{Plugin, PluginError, PluginInfo, TaskContext};

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

/// Built-in `vectorize`: text to a vector with the deterministic hashing
/// vectorizer `hashing-v1` (see [`hashing_vector`]); similar wording gives
/// similar vectors, meaning does not. The same text and dimension give the
/// same vector on every node and build.
///
/// Payload (the seed's `{"text": "hello world"}` is enough):
/// ```json
/// {"text": "hello world", "dimension": 384,
///  "collection": "docs", "id": "doc-1", "metadata": {"lang": "en"}}
/// ```
/// - `text` (string, required, at most 1 MiB)
/// - `dimension` (integer 1..=4096, default 384)
/// - passthrough, copied to the output when present, for a later indexing
///   step: `collection` (string, at most 255 bytes), `id` (string of at
///   most 255 bytes, or a non-negative integer), `metadata` (object, at most
///   64 KiB as JSON)
///
/// Output:
/// ```json
/// {"vector": [0.0, 0.6666667, 0.0, -0.3333333, ...], "dimension": 384, "model": "hashing-v1",
///  "text": "hello world", "collection": "docs", "id": "doc-1", "metadata": {"lang": "en"}}
/// ```
/// `vector` has L2 norm 1, or is all zeros when the text has no words.
#[derive(Debug, Default)]
pub struct VectorizePlugin;

struct VectorizeArgs<'a> {
    text: &'a str,
    dimension: usize,
    passthrough: Map<String, Value>,
}

impl VectorizePlugin {
    fn parse(payload: &Value) -> Result<VectorizeArgs<'_>, String> {
        let f = Fields::parse(payload, &["text", "dimension", "collection", "id", "metadata"])?;
        let text = f.required_str("text", MAX_TEXT_BYTES)?;
        let dimension = f.u64_in("dimension", 1..=MAX_DIMENSION as u64)?.map_or(DEFAULT_DIMENSION, |d| d as usize);
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
        Ok(VectorizeArgs { text, dimension, passthrough })
    }
}

impl Plugin for VectorizePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin("vectorize", "deterministic hashing vectorizer (model hashing-v1)")
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        VectorizePlugin::parse(payload).map(drop)
    }

    fn run(&self, payload: &Value, _ctx: &TaskContext) -> Result<Value, PluginError> {
        let a = VectorizePlugin::parse(payload).map_err(PluginError::InvalidInput)?;
        let mut out = a.passthrough;
        out.insert("vector".to_owned(), json!(hashing_vector(a.text, a.dimension)));
        out.insert("dimension".to_owned(), json!(a.dimension));
        out.insert("model".to_owned(), json!(HASHING_MODEL));
        out.insert("text".to_owned(), json!(a.text));
        Ok(Value::Object(out))
    }
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
