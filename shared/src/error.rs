//! Errors that reach an HTTP caller, mapped to a status and a JSON body in exactly one place
//! ([`ApiError::into_response`]). 4xx says what the client did wrong; 5xx logs the source and
//! answers with a generic message: 503 `unavailable` with `Retry-After` when a backend failed
//! in a way worth retrying (throttling, a dropped connection, a database locked past its busy
//! timeout) before anything was started, 500 `internal` for everything else.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use serde_json::{Value, json};

use crate::ports::{QueueError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// The request failed the workflow's `validate` rules; every violation is listed.
    #[error("the request failed validation: {}", .0.join("; "))]
    Validation(Vec<String>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The user has not enabled the workflow (or disabled its integration).
    #[error("{0}")]
    NotEnabled(String),
    /// The change conflicts with the user's other choices (a workflow of a disabled integration).
    #[error("{0}")]
    IntegrationDisabled(String),
    /// An app event the project does not declare (the declared ones listed).
    #[error("{0}")]
    UnknownEvent(String),
    /// The same `Idempotency-Key` was used before with another request.
    #[error("{0}")]
    IdempotencyConflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A retryable failure of another backend than the store or the queue (e.g. the key
    /// service throttling); nothing was changed.
    #[error("a backend is unavailable: {0}")]
    Unavailable(String),
    /// The execution was started, then something failed: the caller must not start it again,
    /// whatever the cause.
    #[error("execution {execution_id} was started, but {reason}")]
    AfterStart { execution_id: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// The action does not fit the execution's status (redriving a succeeded execution,
    /// cancelling an ended one): 409 with the status.
    #[error("{message}")]
    WrongStatus { status: &'static str, message: String },
    /// The deployment lacks something the request needs (a webhook's signing secret): 503
    /// with the reason, so the sender retries once it is set (it names no secret value).
    #[error("{0}")]
    NotConfigured(String),
}

/// What a `503 unavailable` answer's `Retry-After` says, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;

impl From<crate::ports::StartError> for ApiError {
    fn from(error: crate::ports::StartError) -> Self {
        match error {
            crate::ports::StartError::Store(error) => ApiError::Store(error),
            crate::ports::StartError::Queue(error) => ApiError::Queue(error),
            crate::ports::StartError::AfterCreate { execution_id, reason } => {
                ApiError::AfterStart { execution_id, reason }
            }
        }
    }
}

impl From<crate::connect::ConnectError> for ApiError {
    fn from(error: crate::connect::ConnectError) -> Self {
        match error {
            crate::connect::ConnectError::Store(error) => ApiError::Store(error),
            other if other.is_retryable() => ApiError::Unavailable(other.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::triggers::TriggerError> for ApiError {
    fn from(error: crate::triggers::TriggerError) -> Self {
        match error {
            crate::triggers::TriggerError::UnknownEvent { .. } => ApiError::UnknownEvent(error.to_string()),
            crate::triggers::TriggerError::Store(error) => ApiError::Store(error),
            crate::triggers::TriggerError::Start(error) => error.into(),
        }
    }
}

impl From<crate::idempotency::IdempotencyError> for ApiError {
    fn from(error: crate::idempotency::IdempotencyError) -> Self {
        use crate::idempotency::IdempotencyError;
        match error {
            IdempotencyError::Malformed => ApiError::BadRequest(error.to_string()),
            IdempotencyError::Reused => ApiError::IdempotencyConflict(error.to_string()),
            IdempotencyError::StillStarting => ApiError::Unavailable(error.to_string()),
            IdempotencyError::Store(error) => ApiError::Store(error),
        }
    }
}

impl From<crate::runner::RunError> for ApiError {
    fn from(error: crate::runner::RunError) -> Self {
        if error.is_retryable() {
            ApiError::Unavailable(error.to_string())
        } else {
            ApiError::Internal(error.to_string())
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(error: crate::auth::AuthError) -> Self {
        if error.is_client_error() {
            ApiError::Unauthorized(error.to_string())
        } else {
            ApiError::Internal(error.to_string())
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) | ApiError::UnknownEvent(_) => StatusCode::NOT_FOUND,
            ApiError::IdempotencyConflict(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotEnabled(_) => StatusCode::FORBIDDEN,
            ApiError::IntegrationDisabled(_) | ApiError::WrongStatus { .. } => StatusCode::CONFLICT,
            ApiError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ if self.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_)
            | ApiError::Queue(_)
            | ApiError::Unavailable(_)
            | ApiError::AfterStart { .. }
            | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the caller may send the same request again later: a backend failed in a way
    /// its own classification calls retryable, and nothing was started.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Store(error) => error.is_retryable(),
            ApiError::Queue(error) => error.is_retryable(),
            ApiError::Unavailable(_) => true,
            _ => false,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownEvent(_) => "unknown_event",
            ApiError::IdempotencyConflict(_) => "idempotency_key_reused",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::NotEnabled(_) => "workflow_not_enabled",
            ApiError::IntegrationDisabled(_) => "integration_disabled",
            ApiError::NotConfigured(_) => "not_configured",
            ApiError::WrongStatus { .. } => "execution_status_conflict",
            _ if self.is_retryable() => "unavailable",
            ApiError::Store(_)
            | ApiError::Queue(_)
            | ApiError::Unavailable(_)
            | ApiError::AfterStart { .. }
            | ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body: `{"error":{"code":...,"message":...}}` (plus `violations` for 400s).
    pub fn body(&self) -> Value {
        let message = if self.is_retryable() {
            format!(
                "the service is busy or a backend is unreachable; nothing was started, retry in {RETRY_AFTER_SECONDS} s"
            )
        } else if self.status().is_server_error() && !matches!(self, ApiError::NotConfigured(_)) {
            "internal error; see the server logs".to_string()
        } else {
            self.to_string()
        };
        let mut error = json!({ "code": self.code(), "message": message });
        if let ApiError::Validation(violations) = self {
            error["violations"] = json!(violations);
        }
        if let ApiError::WrongStatus { status, .. } = self {
            error["status"] = json!(status);
        }
        json!({ "error": error })
    }

    pub fn into_response(self) -> Response<Bytes> {
        if self.is_retryable() {
            tracing::warn!(error = %self, "request refused for now (503)");
        } else if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = json_response(self.status(), &self.body());
        if self.is_retryable() {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StartError;

    fn answer(error: ApiError) -> (StatusCode, Option<String>, Value) {
        let response = error.into_response();
        let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        (response.status(), retry_after, body)
    }

    #[test]
    fn a_retryable_backend_failure_answers_503_unavailable_with_retry_after() {
        for error in [
            ApiError::Store(StoreError::Backend("SQLite: database is locked".into())),
            ApiError::Queue(QueueError::Backend("SQS SendMessage: throttled".into())),
            ApiError::Queue(QueueError::PartialBatch { failed: 1, total: 2, reason: "throttled".into() }),
            StartError::Store(StoreError::Backend("DynamoDB PutItem: ProvisionedThroughputExceeded".into())).into(),
            StartError::Queue(QueueError::Backend("dispatch failure".into())).into(),
            crate::connect::ConnectError::Crypto(crate::crypto::CryptoError::Backend("KMS: throttled".into())).into(),
            crate::connect::ConnectError::Store(StoreError::Backend("dropped connection".into())).into(),
        ] {
            let source = error.to_string();
            let (status, retry_after, body) = answer(error);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{source}");
            assert_eq!(retry_after.as_deref(), Some("1"), "{source}");
            assert_eq!(body["error"]["code"], "unavailable", "{source}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("retry") && !message.contains(&source), "the source is not shown: {message}");
        }
    }

    #[test]
    fn bugs_and_failures_after_a_start_stay_500_internal_without_retry_after() {
        for error in [
            ApiError::Store(StoreError::Corrupt("bad row".into())),
            ApiError::Store(StoreError::AlreadyExists("execution e1".into())),
            ApiError::Store(StoreError::TooLarge("item".into())),
            StartError::AfterCreate { execution_id: "e1".into(), reason: "it could not be ended".into() }.into(),
            ApiError::Internal("the start task failed".into()),
            ApiError::AfterStart { execution_id: "e2".into(), reason: "its answer could not be read".into() },
            crate::connect::ConnectError::Crypto(crate::crypto::CryptoError::Refused("tampered".into())).into(),
            crate::connect::ConnectError::NoKeys.into(),
        ] {
            let source = error.to_string();
            let (status, retry_after, body) = answer(error);
            assert_eq!((status, retry_after), (StatusCode::INTERNAL_SERVER_ERROR, None), "{source}");
            assert_eq!(body["error"]["code"], "internal", "{source}");
        }
    }

    #[test]
    fn idempotency_refusals_say_what_the_client_did_wrong() {
        use crate::idempotency::IdempotencyError;
        let (status, _, body) = answer(IdempotencyError::Malformed.into());
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains("Idempotency-Key"), "{body}");
        let (status, retry_after, body) = answer(IdempotencyError::Reused.into());
        assert_eq!((status, retry_after), (StatusCode::UNPROCESSABLE_ENTITY, None));
        assert_eq!(body["error"]["code"], "idempotency_key_reused");
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains("different request"), "{body}");
        let (status, retry_after, body) = answer(IdempotencyError::StillStarting.into());
        assert_eq!((status, retry_after.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
        assert_eq!(body["error"]["code"], "unavailable");
    }

    #[test]
    fn client_errors_keep_their_status_and_no_retry_after() {
        let (status, retry_after, body) = answer(ApiError::NotFound("no such workflow".into()));
        assert_eq!((status, retry_after), (StatusCode::NOT_FOUND, None));
        assert_eq!(body["error"]["message"], "no such workflow");
    }
}
