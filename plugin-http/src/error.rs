//! Errors as HTTP responses: a status and `{ "error": { "kind", "message" } }`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use plugin_host::ErrorKind;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// A stable snake_case kind (`not_found`, `deadline_exceeded`, `unauthorized`, ...).
    pub(crate) kind: String,
    /// What happened, for people.
    pub(crate) message: String,
    /// Seconds a client should wait before retrying, for 503.
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// The error for a plugin error of `kind`: invalid input 400, not found 404, deadline
    /// exceeded 504, cancelled 503, panicked 500, unsupported 501, other 500.
    pub(crate) fn from_plugin(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError::new(status_of(kind), kind.as_str(), message)
    }

    /// The error for anything the host returned.
    pub(crate) fn from_host(err: &plugin_host::Error) -> Self {
        use plugin_host::Error as E;
        match err {
            E::Call { kind, message, .. } => ApiError::from_plugin(*kind, message.clone()),
            E::NotFound { .. } | E::NoSuchFolder { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", err.report())
            }
            E::Unloaded { .. } | E::NotActive { .. } | E::Disabled { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", err.report())
                    .retry_after(1)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "host", err.report()),
        }
    }

    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// The HTTP status a plugin error of `kind` maps to.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Panicked | ErrorKind::Other => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "kind": self.kind, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
