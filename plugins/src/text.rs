//! The text built-ins `normalize` and `tokenize`, and the word splitting the
//! `vectorize` built-in shares with `tokenize`.

use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use std::sync::Arc;

use crate::model::{MAX_MODEL_NAME_LEN, check_model_name};
use crate::payload::{Fields, MAX_TEXT_BYTES};
use crate::vectorize::model_capability;
use crate::{Models, Plugin, PluginError, PluginInfo, TaskContext};

/// A Unicode normalization form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Canonical composition: only canonically equivalent text is unified.
    Nfc,
    /// Compatibility composition: also unifies full-width letters,
    /// ligatures, superscripts and the like (`ＨＥＬＬＯ` → `HELLO`).
    Nfkc,
}

impl Form {
    fn apply(self, text: &str) -> String {
        match self {
            Form::Nfc => text.nfc().collect(),
            Form::Nfkc => text.nfkc().collect(),
        }
    }
}

/// Normalizes `text` the way the `normalize` built-in does: Unicode `form`,
/// then optionally lowercase (with the form applied again, because
/// lowercasing can leave text outside it), then optionally every run of
/// whitespace replaced by one space; always trimmed.
pub fn normalize_text(text: &str, form: Form, lowercase: bool, collapse_whitespace: bool) -> String {
    let mut out = form.apply(text);
    if lowercase {
        out = form.apply(&out.to_lowercase());
    }
    if collapse_whitespace { out.split_whitespace().collect::<Vec<_>>().join(" ") } else { out.trim().to_owned() }
}

/// The words of `text` as `tokenize` returns them and `vectorize` hashes
/// them: NFKC, lowercased, split by Unicode word segmentation (UAX #29),
/// punctuation and whitespace dropped.
pub fn words(text: &str) -> Vec<String> {
    let folded = normalize_text(text, Form::Nfkc, true, false);
    folded.unicode_words().map(str::to_owned).collect()
}

/// Built-in `normalize`: Unicode normalization for text pipelines.
/// Deterministic.
///
/// Payload:
/// ```json
/// {"text": "ＨＥＬＬＯ  wörld ", "form": "nfkc", "lowercase": true, "collapse_whitespace": true}
/// ```
/// - `text` (string, required, at most 1 MiB)
/// - `form`: `"nfc"` or `"nfkc"` (default `"nfkc"`)
/// - `lowercase` (default `true`): Unicode lowercase
/// - `collapse_whitespace` (default `true`): every run of Unicode whitespace
///   becomes one space
///
/// The result is always trimmed and in the requested form.
///
/// Output: `{"text": "hello wörld"}`
#[derive(Debug, Default)]
pub struct NormalizePlugin;

struct NormalizeArgs<'a> {
    text: &'a str,
    form: Form,
    lowercase: bool,
    collapse_whitespace: bool,
}

impl NormalizePlugin {
    fn parse(payload: &Value) -> Result<NormalizeArgs<'_>, String> {
        let f = Fields::parse(payload, &["text", "form", "lowercase", "collapse_whitespace"])?;
        let form = match f.str("form", 16)? {
            None | Some("nfkc") => Form::Nfkc,
            Some("nfc") => Form::Nfc,
            Some(other) => return Err(format!("`form` must be \"nfc\" or \"nfkc\", got {other:?}")),
        };
        Ok(NormalizeArgs {
            text: f.required_str("text", MAX_TEXT_BYTES)?,
            form,
            lowercase: f.bool("lowercase", true)?,
            collapse_whitespace: f.bool("collapse_whitespace", true)?,
        })
    }
}

impl Plugin for NormalizePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin("normalize", "Unicode NFC/NFKC normalization, lowercasing and whitespace collapsing")
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        NormalizePlugin::parse(payload).map(drop)
    }

    fn run(&self, payload: &Value, _ctx: &TaskContext) -> Result<Value, PluginError> {
        let a = NormalizePlugin::parse(payload).map_err(PluginError::InvalidInput)?;
        Ok(json!({ "text": normalize_text(a.text, a.form, a.lowercase, a.collapse_whitespace) }))
    }
}

/// Built-in `tokenize`: a model's Hugging Face tokenizer, or a simple word
/// tokenizer. Deterministic.
///
/// Payload: `{"text": "Hello, wörld!", "tokenizer": "all-MiniLM-L6-v2"}`
/// (`text` required, at most 1 MiB; `tokenizer` an installed model's name).
///
/// Output with `tokenizer`: the model's `tokenizer.json` as the model uses
/// it (special tokens added, truncated at its `max_seq_length`, no padding),
/// the same as the Python `tokenizers` package:
/// `{"ids": [101, 7592, ...], "tokens": ["[CLS]", "hello", ...], "offsets": [[0, 0], [0, 5], ...],
///   "count": 6, "tokenizer": "all-MiniLM-L6-v2"}`; `offsets` are `[start, end)`
/// in characters of `text`, `[0, 0]` for special tokens.
///
/// Output without: `{"tokens": ["hello", "wörld"], "count": 2}`: the words of
/// the NFKC-normalized, lowercased text by Unicode word segmentation
/// (UAX #29); punctuation and whitespace are dropped. These are the words
/// the `hashing-v1` vectorizer hashes.
pub struct TokenizePlugin {
    models: Arc<Models>,
}

impl std::fmt::Debug for TokenizePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizePlugin").finish_non_exhaustive()
    }
}

impl Default for TokenizePlugin {
    /// Word splitting only: no models.
    fn default() -> Self {
        TokenizePlugin::new(Arc::new(Models::none()))
    }
}

impl TokenizePlugin {
    /// `tokenize` over the node's `models`.
    pub fn new(models: Arc<Models>) -> Self {
        TokenizePlugin { models }
    }

    fn parse(payload: &Value) -> Result<(&str, Option<&str>), String> {
        let f = Fields::parse(payload, &["text", "tokenizer"])?;
        let tokenizer = f.str("tokenizer", MAX_MODEL_NAME_LEN)?;
        if let Some(name) = tokenizer {
            check_model_name(name).map_err(|e| format!("`tokenizer`: {e}"))?;
        }
        Ok((f.required_str("text", MAX_TEXT_BYTES)?, tokenizer))
    }
}

impl Plugin for TokenizePlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(
            "tokenize",
            "a model's Hugging Face tokenizer (ids, tokens, offsets), or Unicode words (NFKC, lowercased)",
        )
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        TokenizePlugin::parse(payload).map(drop)
    }

    fn requirements(&self, payload: &Value) -> Vec<String> {
        match TokenizePlugin::parse(payload) {
            Ok((_, Some(model))) => vec![model_capability(model)],
            _ => Vec::new(),
        }
    }

    fn run(&self, payload: &Value, _ctx: &TaskContext) -> Result<Value, PluginError> {
        let (text, tokenizer) = TokenizePlugin::parse(payload).map_err(PluginError::InvalidInput)?;
        let Some(model) = tokenizer else {
            let tokens = words(text);
            return Ok(json!({ "count": tokens.len(), "tokens": tokens }));
        };
        let t = self.models.tokenize(model, text)?;
        Ok(json!({
            "count": t.ids.len(), "ids": t.ids, "tokens": t.tokens, "offsets": t.offsets, "tokenizer": model,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_defaults_fold_width_case_and_space() {
        assert_eq!(normalize_text("ＨＥＬＬＯ  wörld ", Form::Nfkc, true, true), "hello wörld");
        assert_eq!(normalize_text("\t a \u{3000}\n b ", Form::Nfkc, false, true), "a b");
        assert_eq!(normalize_text("  a  b  ", Form::Nfc, false, false), "a  b");
    }

    #[test]
    fn nfc_composes_but_keeps_compatibility_characters() {
        // "e" + combining acute composes to "é" under both forms.
        assert_eq!(normalize_text("e\u{301}", Form::Nfc, false, false), "\u{e9}");
        assert_eq!(normalize_text("ﬁ Ｘ", Form::Nfc, false, false), "ﬁ Ｘ");
        assert_eq!(normalize_text("ﬁ Ｘ", Form::Nfkc, false, false), "fi X");
    }

    #[test]
    fn lowercase_reaches_letters_that_only_nfkc_exposes() {
        // U+210C BLACK-LETTER CAPITAL H has no lowercase; its NFKC form "H" does.
        assert_eq!(normalize_text("\u{210C}i", Form::Nfkc, true, true), "hi");
    }

    #[test]
    fn lowercased_text_is_normalized_again() {
        // Ĥ + COMBINING MACRON BELOW is NFC and NFKC; its lowercase ĥ + U+0331
        // is not: it composes to ẖ (h with line below) + COMBINING CIRCUMFLEX.
        for form in [Form::Nfc, Form::Nfkc] {
            assert_eq!(normalize_text("\u{124}\u{331}", form, true, false), "\u{1E96}\u{302}", "{form:?}");
        }
    }

    #[test]
    fn words_drop_punctuation_and_keep_unicode_letters() {
        assert_eq!(words("Hello, WÖRLD! it's 3.5 ｋｍ"), ["hello", "wörld", "it's", "3.5", "km"]);
        assert!(words("  ,.!  ").is_empty());
    }
}
