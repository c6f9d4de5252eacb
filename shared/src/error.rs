//! Errors that reach an HTTP caller, mapped to a status and a JSON body in exactly one place
//! ([`ApiError::into_response`]). 4xx says what the client did wrong; 5xx logs the source and
//! answers with a generic message.

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
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::ports::StartError> for ApiError {
    fn from(error: crate::ports::StartError) -> Self {
        match error {
            crate::ports::StartError::Store(error) => ApiError::Store(error),
            crate::ports::StartError::Queue(error) => ApiError::Queue(error),
        }
    }
}

impl From<crate::connect::ConnectError> for ApiError {
    fn from(error: crate::connect::ConnectError) -> Self {
        match error {
            crate::connect::ConnectError::Store(error) => ApiError::Store(error),
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
            ApiError::IntegrationDisabled(_) => StatusCode::CONFLICT,
            ApiError::Store(_) | ApiError::Queue(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            ApiError::Store(_) | ApiError::Queue(_) | ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body: `{"error":{"code":...,"message":...}}` (plus `violations` for 400s).
    pub fn body(&self) -> Value {
        let message = if self.status().is_server_error() {
            "internal error; see the server logs".to_string()
        } else {
            self.to_string()
        };
        let mut error = json!({ "code": self.code(), "message": message });
        if let ApiError::Validation(violations) = self {
            error["violations"] = json!(violations);
        }
        json!({ "error": error })
    }

    pub fn into_response(self) -> Response<Bytes> {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        json_response(self.status(), &self.body())
    }
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}
