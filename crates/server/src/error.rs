//! The one error type of the HTTP API and its JSON shape (SPEC §4):
//! `{ "error": { "code", "message", "details"?, "requestId" } }`. Internal errors are logged
//! and replaced by a generic message, so nothing internal leaks to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dotdo_runtime::{ErrorKind, ObjectError};
use serde_json::{Value, json};

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: axum::http::HeaderValue;
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "this method is not allowed on this resource",
        )
    }
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "internal error; see the server log",
        )
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl From<ObjectError> for ApiError {
    fn from(e: ObjectError) -> Self {
        let (status, code) = match e.kind {
            ErrorKind::BadRequest => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "CONFLICT"),
            ErrorKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ErrorKind::StorageFull => (StatusCode::INSUFFICIENT_STORAGE, "STORAGE_FULL"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            ErrorKind::Internal => {
                tracing::error!(error = %e.message, "internal error");
                return ApiError::internal();
            }
        };
        ApiError::new(status, code, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = REQUEST_ID
            .try_with(|id| id.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        let mut error =
            json!({ "code": self.code, "message": self.message, "requestId": request_id });
        if let Some(d) = self.details {
            error["details"] = d;
        }
        let mut res = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read, so this connection cannot carry another
            // request: tell the client instead of letting it find out on reuse.
            res.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        res
    }
}
