//! Errors of the Raft layer, with the outcome a client must assume.

/// What went wrong with a replicated write or a linearizable read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No leader could be reached before the deadline; the request was
    /// never proposed (a definite failure, safe to retry).
    #[error("no leader available: {0}")]
    Unavailable(String),
    /// The request may or may not have been committed (timeout after it was
    /// sent, leader lost mid-flight). Retry with the same idempotency key.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// A membership change was refused by Raft (e.g. one already in progress).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// This node is shutting down or its Raft core stopped.
    #[error("raft stopped: {0}")]
    Stopped(String),
    /// Storage failed underneath.
    #[error("storage: {0}")]
    Storage(#[from] synod_store::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The closed set of error kinds of STYLE.md.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unavailable(_) | Error::Stopped(_) => "unavailable",
            Error::Indeterminate(_) => "indeterminate",
            Error::Membership(_) => "failed_precondition",
            Error::Storage(_) | Error::Internal(_) => "internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
