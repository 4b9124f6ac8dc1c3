//! Synod's plugins: the code that does a task's work.
//!
//! A task has a type (`"vectorize"`) and a JSON payload. The [`Registry`]
//! maps the type to a [`Plugin`], checks the payload at submit time
//! ([`Registry::validate`]) and runs it on a node ([`Registry::execute`]):
//! on tokio's blocking pool, under a timeout, with panics contained and a
//! [`CancelToken`] the plugin polls.
//!
//! Built now: the trait, the registry, and the built-ins (payloads and
//! outputs in each type's docs):
//! - [`NormalizePlugin`] `normalize`: Unicode NFC/NFKC, lowercase, whitespace
//! - [`TokenizePlugin`] `tokenize`: a model's Hugging Face tokenizer, or
//!   Unicode words, lowercased
//! - [`VectorizePlugin`] `vectorize`: sentence embeddings with an installed
//!   model ([`Models`], [`EmbeddingModel`]: all-MiniLM-L6-v2 on candle), or
//!   the deterministic hashing vectorizer `hashing-v1` ([`hashing_vector`])
//! - [`PipelinePlugin`] `pipeline`: several of the above in one task, each
//!   step's output the next step's input (which chains fit: its docs)
//! - [`EchoPlugin`] `echo`, [`SleepPlugin`] `sleep`, [`FailPlugin`] `fail`:
//!   for tests, demos and chaos runs
//!
//! Models are installed by [`install`] (`synod model install`) into a
//! models directory that [`Models`] scans; each loaded model has a dynamic
//! batcher, so concurrent requests share forward passes.
//!
//! Plugins loaded at run time: [`WasmPlugin`] (a WebAssembly module run in
//! a sandbox) and [`SubprocessPlugin`] (a pool of long-lived worker
//! processes speaking JSON lines).
//!
//! External AI providers ([`external`]): OpenAI-compatible servers and
//! Hugging Face's Inference API, behind one machinery of timeouts,
//! concurrency limits, retries and a circuit breaker per provider.
//!
//! **Must never touch RocksDB or Raft**: no `synod-store` or `synod-raft`
//! dependency. Plugins compute; storing their results is the caller's job.
//!
//! Key types: [`Registry`], [`Plugin`], [`PluginInfo`], [`TaskContext`],
//! [`CancelToken`], [`PluginError`], [`Models`], [`EmbeddingModel`].
//!
//! ```
//! use std::time::Duration;
//! use synod_plugins::{Registry, TaskContext};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), synod_plugins::PluginError> {
//! let registry = Registry::with_builtins();
//! let payload = serde_json::json!({"text": "hello world"});
//! registry.validate("vectorize", &payload)?;
//! let ctx = TaskContext::new("task-1", "acme", 1);
//! let out = registry.execute("vectorize", payload, ctx, Duration::from_secs(5)).await?;
//! assert_eq!(out["model"], "hashing-v1");
//! assert_eq!(out["vector"].as_array().map(Vec::len), Some(384));
//! # Ok(())
//! # }
//! ```

mod bert;
mod demo;
mod error;
pub mod external;
mod install;
mod metrics;
mod model;
mod models;
mod payload;
mod pipeline;
mod plugin;
mod registry;
mod subprocess;
mod text;
mod threads;
mod vectorize;
mod wasm;

pub use demo::{EchoPlugin, FailPlugin, MAX_SLEEP_MS, SleepPlugin};
pub use error::{ModelError, PluginError, RegisterError, Result};
pub use install::{CATALOG, CatalogEntry, InstallSource, Installed, catalog_entry, install, verify_installed};
pub use model::{EmbeddingModel, MANIFEST_FILE, ModelManifest, Tokens, check_model_name, sha256_file};
pub use models::{BatchConfig, BatchStats, ModelInfo, Models};
pub use payload::MAX_TEXT_BYTES;
pub use pipeline::{MAX_PIPELINE_RESULT_BYTES, MAX_PIPELINE_STEPS, MAX_STEP_OUTPUT_BYTES, PipelinePlugin};
pub use plugin::{CancelToken, Plugin, PluginInfo, TaskContext};
pub use registry::{MAX_NAME_LEN, Registry, builtins, builtins_with_models};
pub use subprocess::{SubprocessLimits, SubprocessManifest, SubprocessPlugin, check_subprocess_manifest};
pub use text::{Form, NormalizePlugin, TokenizePlugin, normalize_text, words};
pub use threads::pin_thread_count;
pub use vectorize::{
    DEFAULT_DIMENSION, HASHING_MODEL, MAX_DIMENSION, MAX_TEXTS, VectorizePlugin, fnv1a64, hashing_vector,
    model_capability,
};
pub use wasm::{
    WASM_ABI_VERSION, WASM_PERMISSIONS, WasmLimits, WasmManifest, WasmModule, WasmPlugin, check_manifest,
    module_sha256, plugin_capability,
};
