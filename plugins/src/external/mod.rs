//! External services: AI providers (OpenAI-compatible servers, Hugging
//! Face's Inference API) and vector databases that back collections
//! (Qdrant, Pinecone, Milvus), called through one machinery that every
//! provider shares ([`Provider::guarded`]).
//!
//! ```text
//!  call ─► concurrency slot (wait ≤ queue_wait, else Busy)
//!       ─► breaker.admit (open: BreakerOpen at once, nothing sent)
//!       ─► one HTTP attempt under the timeout ─► classify ─► breaker.record
//!       ─► retry? (backoff with jitter, or the provider's Retry-After)
//! ```
//!
//! A call whose outcome is unknown (a timeout or a reset after the request
//! went out) is retried only when repeating it is harmless: embeddings
//! always, the others only when the provider takes an idempotency key
//! (`idempotency_header`). Otherwise it is reported as indeterminate.
//!
//! API keys are read from an environment variable or a file when the
//! provider is built; they live in memory only, never in a response, a log
//! line or the Raft log.

pub mod breaker;
mod huggingface;
mod openai;
mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub use breaker::{Breaker, BreakerConfig, BreakerState, BreakerView, Outcome};
pub use task::{ExternalAiPlugin, TASK_TYPE};

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI's API, as OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp's
    /// server, text-embeddings-inference and Synod itself serve it.
    OpenAi,
    /// Hugging Face's Inference API / Inference Endpoints.
    HuggingFace,
    /// Vector databases, as collection backends (the api crate speaks
    /// their wire formats through [`Provider::guarded`]).
    Qdrant,
    Pinecone,
    Milvus,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::HuggingFace => "huggingface",
            ProviderKind::Qdrant => "qdrant",
            ProviderKind::Pinecone => "pinecone",
            ProviderKind::Milvus => "milvus",
        }
    }

    /// A vector database rather than an AI provider.
    pub fn is_vector_store(self) -> bool {
        matches!(self, ProviderKind::Qdrant | ProviderKind::Pinecone | ProviderKind::Milvus)
    }
}

/// What an external call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Embeddings,
    Chat,
    Completions,
    /// A model's own task (Hugging Face), its input and output as the
    /// model defines them.
    Inference,
}

impl Operation {
    pub fn parse(s: &str) -> Result<Operation, ExternalError> {
        match s {
            "embeddings" => Ok(Operation::Embeddings),
            "chat" => Ok(Operation::Chat),
            "completions" => Ok(Operation::Completions),
            "inference" => Ok(Operation::Inference),
            other => Err(ExternalError::Invalid(format!(
                "unknown operation {other:?} (use embeddings, chat, completions or inference)"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Embeddings => "embeddings",
            Operation::Chat => "chat",
            Operation::Completions => "completions",
            Operation::Inference => "inference",
        }
    }

    /// Repeating it cannot do harm beyond its cost: an embedding is a pure
    /// function of its input.
    fn idempotent(self) -> bool {
        self == Operation::Embeddings
    }
}

/// One provider as configured (`external.providers.<name>`), its key read.
#[derive(Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    /// `https://api.openai.com/v1`, `http://127.0.0.1:7700/v1`, ...
    pub base_url: String,
    pub api_key: Option<String>,
    /// One attempt's time limit, answer body included.
    pub timeout: Duration,
    /// Calls in flight at once; more wait up to `queue_wait`, then Busy.
    pub max_concurrency: usize,
    pub queue_wait: Duration,
    /// Attempts after the first.
    pub max_retries: u32,
    /// First backoff; doubles per retry, capped by `retry_max_backoff`,
    /// with full jitter.
    pub retry_backoff: Duration,
    pub retry_max_backoff: Duration,
    pub breaker: BreakerConfig,
    /// A header the provider reads an idempotency key from: with it, calls
    /// of unknown outcome are retried with the same key.
    pub idempotency_header: Option<String>,
    /// The CAs trusted for `https://`: this PEM file, else the system's
    /// bundle.
    pub ca_file: Option<std::path::PathBuf>,
    /// What one tenant may use of it per UTC day (0: no limit), enforced
    /// by the [`Meter`] of [`Providers::call`].
    pub tenant_daily_calls: u64,
    pub tenant_daily_tokens: u64,
}

/// Hand-written so that `{:?}` never prints the key.
impl std::fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

/// One call.
#[derive(Debug, Clone)]
pub struct AiRequest {
    pub operation: Operation,
    pub model: String,
    /// Embeddings: a string or a list of strings; chat: a string or a list
    /// of `{role, content}` messages; completions: a prompt; inference:
    /// whatever the model takes.
    pub input: Value,
    /// Passed to the provider as it is (`temperature`, `max_tokens`, ...).
    pub parameters: Map<String, Value>,
    /// Sent as the provider's idempotency key when it takes one.
    pub idempotency_key: Option<String>,
}

/// Tokens the provider says the call used (0 when it does not say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// The answer, in one shape whatever the provider.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AiResponse {
    pub provider: String,
    pub model: String,
    pub operation: &'static str,
    /// Embeddings: `{"embeddings": [[..]], "dimension": d}`; chat and
    /// completions: `{"text": ..., "finish_reason": ...}` (chat adds
    /// `message`); inference: the model's answer.
    pub output: Value,
    pub usage: Usage,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// The provider's answer as it came.
    #[serde(skip)]
    pub raw: Value,
}

/// Why a call failed. The api maps these to HTTP and gRPC codes.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ExternalError {
    #[error("no provider named {0:?} is configured (external.providers)")]
    UnknownProvider(String),
    /// The request cannot be sent as it is (nothing was sent).
    #[error("{0}")]
    Invalid(String),
    /// The provider refused the request itself (a 4xx other than 408/429).
    #[error("provider {provider} refused the request ({status}): {message}")]
    Rejected { provider: String, status: u16, message: String },
    /// The breaker is open: nothing was sent.
    #[error("provider {provider} is failing; its circuit breaker is open")]
    BreakerOpen { provider: String, retry_after: Duration },
    /// Every concurrency slot stayed taken for `queue_wait`.
    #[error("provider {provider} has {limit} calls in flight already")]
    Busy { provider: String, limit: usize, retry_after: Duration },
    /// The provider failed (5xx, 429, connection refused, a malformed
    /// answer), and retries did not help. The request had no effect, or
    /// repeating it is harmless.
    #[error("provider {provider} failed: {message}")]
    Unavailable { provider: String, message: String, retry_after: Option<Duration> },
    /// A call that is not safe to repeat may or may not have been carried
    /// out (timeout, connection lost after sending).
    #[error("provider {provider}: outcome unknown: {message}")]
    Indeterminate { provider: String, message: String },
    /// The tenant has used its day's budget of this provider: nothing sent.
    #[error("tenant {tenant} has used its daily budget of provider {provider} ({what})")]
    BudgetSpent { provider: String, tenant: String, what: String, retry_after: Duration },
}

impl ExternalError {
    /// The outcome label of `synod_external_requests_total`.
    pub fn code(&self) -> &'static str {
        match self {
            ExternalError::UnknownProvider(_) => "unknown_provider",
            ExternalError::Invalid(_) => "invalid",
            ExternalError::Rejected { .. } => "rejected",
            ExternalError::BreakerOpen { .. } => "breaker_open",
            ExternalError::Busy { .. } => "busy",
            ExternalError::Unavailable { .. } => "unavailable",
            ExternalError::Indeterminate { .. } => "indeterminate",
            ExternalError::BudgetSpent { .. } => "budget_spent",
        }
    }
}

/// A configured provider with its breaker, slots and client.
pub struct Provider {
    spec: ProviderSpec,
    breaker: Breaker,
    slots: Arc<tokio::sync::Semaphore>,
    http: reqwest::Client,
}

/// How one attempt ended.
pub enum Attempt<T> {
    Answer(T),
    /// A failure worth another attempt if the operation allows it:
    /// `retry_safe` when the provider did not carry the request out (it was
    /// never sent, or answered 408/429/503), `unknown` when it may have.
    Failed {
        error: ExternalError,
        retry_safe: bool,
        unknown: bool,
        retry_after: Option<Duration>,
    },
    /// A failure no retry fixes (the provider refused the request).
    Final(ExternalError),
}

impl Provider {
    pub fn new(spec: ProviderSpec) -> Result<Provider, ExternalError> {
        let invalid = |what: String| ExternalError::Invalid(format!("provider {}: {what}", spec.name));
        let tls = tls_config(spec.ca_file.as_deref()).map_err(invalid)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(spec.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| invalid(format!("building its HTTP client: {e}")))?;
        Ok(Provider {
            breaker: Breaker::new(spec.breaker),
            slots: Arc::new(tokio::sync::Semaphore::new(spec.max_concurrency.max(1))),
            http,
            spec,
        })
    }

    pub fn spec(&self) -> &ProviderSpec {
        &self.spec
    }

    pub fn breaker(&self, now: Instant) -> BreakerView {
        self.breaker.view(now)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.spec.max_concurrency.max(1) - self.slots.available_permits()
    }

    /// The HTTP client (with this provider's TLS roots) for adapters that
    /// build their own requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Makes an AI call: see the module docs for the path it takes.
    pub async fn call(&self, req: &AiRequest) -> Result<AiResponse, ExternalError> {
        let (path, body) = match self.spec.kind {
            ProviderKind::OpenAi => openai::request(req)?,
            ProviderKind::HuggingFace => huggingface::request(req)?,
            kind => {
                return Err(ExternalError::Invalid(format!(
                    "provider {} is a {} vector database: name it as a collection's backend",
                    self.spec.name,
                    kind.as_str()
                )));
            }
        };
        let base = self.spec.base_url.trim_end_matches('/');
        let url = if path.is_empty() { base.to_owned() } else { format!("{base}/{path}") };
        let repeatable = req.operation.idempotent() || self.spec.idempotency_header.is_some();
        let name = &self.spec.name;
        let (raw, attempts) = self
            .guarded(req.operation.as_str(), repeatable, || {
                let mut rb = self.http.post(&url).json(&body);
                if let Some(key) = &self.spec.api_key {
                    rb = rb.bearer_auth(key);
                }
                if let (Some(header), Some(key)) = (&self.spec.idempotency_header, req.idempotency_key.as_deref()) {
                    rb = rb.header(header.as_str(), key);
                }
                self.http_attempt(rb)
            })
            .await?;
        let (output, usage) = match self.spec.kind {
            ProviderKind::HuggingFace => huggingface::response(req, &raw),
            _ => openai::response(req, &raw),
        }
        .map_err(|message| ExternalError::Unavailable {
            provider: name.clone(),
            message: format!("its answer has an unexpected shape: {message}"),
            retry_after: None,
        })?;
        crate::metrics::external_tokens(name, usage.total_tokens);
        Ok(AiResponse {
            provider: name.clone(),
            model: req.model.clone(),
            operation: req.operation.as_str(),
            output,
            usage,
            attempts,
            raw,
        })
    }

    /// Runs `attempt` under this provider's concurrency slots, breaker,
    /// timeout and retry policy, and counts it in `/metrics` under
    /// `operation`. A failed attempt is tried again when it is safe to
    /// (`retry_safe`), or when `repeatable` says repeating the call is
    /// harmless; otherwise an outcome-unknown failure is Indeterminate.
    /// Returns the answer and the attempts made.
    pub async fn guarded<T, F, Fut>(
        &self,
        operation: &'static str,
        repeatable: bool,
        attempt: F,
    ) -> Result<(T, u32), ExternalError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let started = Instant::now();
        let result = self.guarded_inner(repeatable, attempt).await;
        crate::metrics::external_call(&self.spec.name, operation, result.as_ref().err(), started.elapsed());
        crate::metrics::breaker_state(&self.spec.name, self.breaker.view(Instant::now()).state);
        result
    }

    async fn guarded_inner<T, F, Fut>(&self, repeatable: bool, mut attempt: F) -> Result<(T, u32), ExternalError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let name = &self.spec.name;
        let _slot = match tokio::time::timeout(self.spec.queue_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                return Err(ExternalError::Busy {
                    provider: name.clone(),
                    limit: self.spec.max_concurrency,
                    retry_after: Duration::from_secs(1),
                });
            }
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let permit = self
                .breaker
                .admit(Instant::now())
                .map_err(|r| ExternalError::BreakerOpen { provider: name.clone(), retry_after: r.retry_after })?;
            let answer = tokio::time::timeout(self.spec.timeout, attempt()).await.unwrap_or_else(|_| {
                self.failed(format!("no answer within {:?}", self.spec.timeout), false, true, None)
            });
            let outcome = match &answer {
                Attempt::Failed { .. } => Outcome::Failed,
                Attempt::Answer(_) | Attempt::Final(_) => Outcome::Healthy,
            };
            self.breaker.record(permit, Instant::now(), outcome);
            match answer {
                Attempt::Answer(v) => return Ok((v, attempts)),
                Attempt::Final(e) => return Err(e),
                Attempt::Failed { error, retry_safe, unknown, retry_after } => {
                    if !retry_safe && !repeatable {
                        return Err(match (unknown, error) {
                            (true, ExternalError::Unavailable { message, .. }) => {
                                ExternalError::Indeterminate { provider: name.clone(), message }
                            }
                            (_, error) => error,
                        });
                    }
                    if attempts > self.spec.max_retries {
                        return Err(error);
                    }
                    tokio::time::sleep(self.backoff(attempts, retry_after)).await;
                }
            }
        }
    }

    /// The wait before attempt `n + 1`: the provider's Retry-After when it
    /// gave one (capped), else exponential backoff with full jitter.
    fn backoff(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self.spec.retry_max_backoff;
        if let Some(wait) = retry_after {
            return wait.min(cap);
        }
        let exp = self.spec.retry_backoff.saturating_mul(1u32 << (n - 1).min(16)).min(cap);
        exp.mul_f64(rand::random::<f64>())
    }

    /// A failed attempt of this provider: `retry_safe` when the request
    /// was not carried out, `unknown` when it may have been.
    pub fn failed<T>(
        &self,
        message: String,
        retry_safe: bool,
        unknown: bool,
        retry_after: Option<Duration>,
    ) -> Attempt<T> {
        Attempt::Failed {
            error: ExternalError::Unavailable { provider: self.spec.name.clone(), message, retry_after },
            retry_safe,
            unknown,
            retry_after,
        }
    }

    /// Sends one HTTP request and classifies the answer: 2xx with a JSON
    /// body (an empty body reads as `null`) is an answer, 408/429/503 are
    /// failures that did nothing, other 5xx failures that may have done
    /// something, other statuses a refusal no retry fixes.
    pub async fn http_attempt(&self, rb: reqwest::RequestBuilder) -> Attempt<Value> {
        let name = &self.spec.name;
        let failed = |message: String, retry_safe: bool, unknown: bool, retry_after: Option<Duration>| {
            self.failed(message, retry_safe, unknown, retry_after)
        };
        let resp = match rb.timeout(self.spec.timeout).send().await {
            Ok(r) => r,
            // Not connected: nothing went out, whatever the operation.
            Err(e) if e.is_connect() => return failed(format!("cannot connect: {}", chain(&e)), true, false, None),
            Err(e) if e.is_timeout() => {
                return failed(format!("no answer within {:?}", self.spec.timeout), false, true, None);
            }
            Err(e) => return failed(format!("the request failed: {}", chain(&e)), false, true, None),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                return failed(format!("the answer did not arrive within {:?}", self.spec.timeout), false, true, None);
            }
            Err(e) => return failed(format!("the answer was cut off: {}", chain(&e)), false, true, None),
        };
        match status {
            200..=299 if bytes.iter().all(u8::is_ascii_whitespace) => Attempt::Answer(Value::Null),
            200..=299 => match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => Attempt::Answer(v),
                // It answered 2xx, so it did the work; only its JSON is bad.
                Err(e) => failed(format!("its answer is not JSON: {e}"), false, true, None),
            },
            // Overloaded or rate-limited: the request was not carried out.
            429 | 503 => failed(format!("answered {status}: {}", snippet(&bytes)), true, false, retry_after),
            408 => failed(format!("answered {status} (request timeout)"), true, false, retry_after),
            // It says it failed, but may have got some way: repeated only
            // when that is harmless.
            500..=599 => failed(format!("answered {status}: {}", snippet(&bytes)), false, false, retry_after),
            _ => Attempt::Final(ExternalError::Rejected {
                provider: name.clone(),
                status,
                message: provider_message(&bytes),
            }),
        }
    }
}

/// Where distributions keep the system's CA bundle.
const SYSTEM_CA_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// TLS for `https://` providers: the CAs of `ca_file`, else of the first
/// system bundle found (none found: only `http://` providers work).
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let file = match ca_file {
        Some(f) => Some(f.to_path_buf()),
        None => SYSTEM_CA_BUNDLES.iter().map(std::path::PathBuf::from).find(|p| p.is_file()),
    };
    if let Some(file) = file {
        let certs = CertificateDer::pem_file_iter(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", file.display()))?;
            // A bundle may hold a certificate rustls cannot use; the others still count.
            let _ = roots.add(cert);
        }
        if roots.is_empty() && ca_file.is_some() {
            return Err(format!("{} holds no usable CA certificate", file.display()));
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| format!("TLS setup: {e}"))
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The start of an answer body, for an error message.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    text.replace(['\n', '\r'], " ")
}

/// The message of a provider's error body (`{"error": {"message"}}` for
/// OpenAI, `{"error": "..."}` for Hugging Face, `{"status": {"error"}}`
/// for Qdrant, `{"message"}` for Pinecone), else its start.
fn provider_message(bytes: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else { return snippet(bytes) };
    v["error"]["message"]
        .as_str()
        .or_else(|| v["error"].as_str())
        .or_else(|| v["status"]["error"].as_str())
        .or_else(|| v["message"].as_str())
        .map_or_else(|| snippet(bytes), str::to_owned)
}

/// Counts what tenants use of providers and holds them to their budgets
/// (the node's is replicated, so the budget is the cluster's).
pub trait Meter: Send + Sync {
    /// `BudgetSpent` when the tenant has used the provider's daily budget.
    fn admit(&self, tenant: &str, spec: &ProviderSpec) -> Result<(), ExternalError>;
    /// Counts one successful call and the tokens the provider reported.
    fn record(&self, tenant: &str, spec: &ProviderSpec, tokens: u64);
}

/// The providers of a node, by name.
#[derive(Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<Provider>>,
    meter: std::sync::OnceLock<Arc<dyn Meter>>,
}

impl Providers {
    pub fn new(specs: Vec<ProviderSpec>) -> Result<Providers, ExternalError> {
        let mut by_name = BTreeMap::new();
        for spec in specs {
            let name = spec.name.clone();
            crate::metrics::breaker_state(&name, BreakerState::Closed);
            by_name.insert(name, Arc::new(Provider::new(spec)?));
        }
        Ok(Providers { by_name, meter: Default::default() })
    }

    /// Sets the meter calls go through (once; later calls are ignored).
    pub fn set_meter(&self, meter: Arc<dyn Meter>) {
        let _ = self.meter.set(meter);
    }

    /// An AI call of `tenant` through provider `name`, held to the tenant's
    /// budget and counted.
    pub async fn call(&self, tenant: &str, name: &str, req: &AiRequest) -> Result<AiResponse, ExternalError> {
        let provider = self.get(name)?;
        if let Some(m) = self.meter.get() {
            m.admit(tenant, provider.spec())?;
        }
        let r = provider.call(req).await?;
        if let Some(m) = self.meter.get() {
            m.record(tenant, provider.spec(), r.usage.total_tokens);
        }
        Ok(r)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Provider>, ExternalError> {
        self.by_name.get(name).cloned().ok_or_else(|| ExternalError::UnknownProvider(name.to_owned()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.by_name.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
