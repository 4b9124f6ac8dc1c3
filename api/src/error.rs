//! The one place that maps errors to HTTP and gRPC status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Every error a client of Synod can see. Serializable, so an error the
/// leader answers a forwarded operation with arrives unchanged
/// ([`crate::service::leader_ops`]).
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiError {
    /// The request is malformed or names something impossible.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No credentials, or credentials that are not valid (expired,
    /// tampered, revoked, wrong key).
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many requests (logins, or a tenant's rate); retry after the delay.
    #[error("{message}")]
    RateLimited { message: String, retry_after_s: u64 },
    /// The caller is known but its role does not allow this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A precondition failed: a stale If-Match, or an operation that would
    /// break the cluster (removing a voter below quorum without --force).
    #[error("{message}")]
    FailedPrecondition { message: String, details: Option<Value> },
    /// The request body is larger than `node.max_body_size`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// No leader (or no quorum) right now; nothing was changed. Retry.
    #[error("{0}")]
    Unavailable(String),
    /// Unavailable for a known while (an external provider's open circuit
    /// breaker): retry after the delay.
    #[error("{message}")]
    UnavailableFor { message: String, retry_after_s: u64 },
    /// The write may or may not have been committed. Retry idempotently.
    #[error("{0}")]
    Indeterminate(String),
    /// A bug or storage failure; details are logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The stable error code of the JSON body (STYLE.md's closed set).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::FailedPrecondition { .. } => "failed_precondition",
            ApiError::PayloadTooLarge(_) | ApiError::RateLimited { .. } => "resource_exhausted",
            ApiError::Unavailable(_) | ApiError::UnavailableFor { .. } => "unavailable",
            ApiError::Indeterminate(_) => "indeterminate",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::FailedPrecondition { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::UnavailableFor { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Indeterminate(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        let msg = self.client_message();
        let mut status = match self {
            ApiError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            ApiError::NotFound(_) => tonic::Status::not_found(msg),
            ApiError::Unauthenticated(_) => tonic::Status::unauthenticated(msg),
            ApiError::PermissionDenied(_) => tonic::Status::permission_denied(msg),
            ApiError::RateLimited { .. } => tonic::Status::resource_exhausted(msg),
            ApiError::FailedPrecondition { .. } => tonic::Status::failed_precondition(msg),
            ApiError::PayloadTooLarge(_) => tonic::Status::resource_exhausted(msg),
            ApiError::Unavailable(_) | ApiError::UnavailableFor { .. } => tonic::Status::unavailable(msg),
            ApiError::Indeterminate(_) => tonic::Status::deadline_exceeded(msg),
            ApiError::Internal(_) => tonic::Status::internal(msg),
        };
        if let Some(s) = self.retry_after_s() {
            status.metadata_mut().insert("retry-after", s.into());
        }
        status
    }

    /// Seconds the client should wait before retrying, when known.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_s, .. } | ApiError::UnavailableFor { retry_after_s, .. } => {
                Some(*retry_after_s)
            }
            _ => None,
        }
    }

    /// What the client is told: internals are masked.
    fn client_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error; see the node's log".to_string(),
            other => other.to_string(),
        }
    }

    /// The JSON error body `{"error": {"code", "message", "details"}}`.
    pub fn body(&self) -> Value {
        let details = match self {
            ApiError::FailedPrecondition { details, .. } => details.clone().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        json!({"error": {"code": self.code(), "message": self.client_message(), "details": details}})
    }
}

impl From<synod_raft::Error> for ApiError {
    fn from(e: synod_raft::Error) -> Self {
        use synod_raft::Error as E;
        match e {
            E::Unavailable(m) | E::Stopped(m) => ApiError::Unavailable(m),
            E::Indeterminate(m) => ApiError::Indeterminate(m),
            E::Membership(m) => ApiError::FailedPrecondition { message: m, details: None },
            E::Storage(e) => ApiError::Internal(e.to_string()),
            E::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<synod_store::Error> for ApiError {
    fn from(e: synod_store::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let mut resp = (self.http_status(), axum::Json(self.body())).into_response();
        if let ApiError::Unauthenticated(_) = &self {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"synod\""),
            );
        }
        if let Some(s) = self.retry_after_s() {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        if let ApiError::Internal(detail) = &e {
            tracing::error!(error = %detail, "internal error");
        }
        e.grpc_status()
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;
