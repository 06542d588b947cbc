//! The bearer token the management API requires when [`HttpOptions::token`] is set.
//!
//! The token a request presents is compared with the configured one in constant time: both
//! are hashed with SHA-256 and the two digests compared with [`subtle::ConstantTimeEq`], so
//! the time taken depends neither on where the tokens first differ nor on their lengths.
//!
//! [`HttpOptions::token`]: crate::HttpOptions::token

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Lets a request through when it carries the configured token (or none is configured);
/// answers 401 with `WWW-Authenticate: Bearer` otherwise.
pub(crate) async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.options.token.as_deref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer);
    match presented {
        Some(token) if token_matches(token, expected) => next.run(request).await,
        Some(_) => unauthorized(
            "the bearer token in the Authorization header is not this server's API token; \
             send `Authorization: Bearer <token>` with the token the server was started with",
            "Bearer realm=\"plugin-http\", error=\"invalid_token\"",
        ),
        None => unauthorized(
            "the management API requires a token: send `Authorization: Bearer <token>` with \
             the token the server was started with",
            "Bearer realm=\"plugin-http\"",
        ),
    }
}

/// The token of an `Authorization: Bearer <token>` header value (the scheme is matched
/// without regard to case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Whether `presented` equals `expected`, in time independent of their contents and lengths.
fn token_matches(presented: &str, expected: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented.as_slice().ct_eq(expected.as_slice()).into()
}

fn unauthorized(message: &str, challenge: &'static str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3cre"));
        assert!(!token_matches("s3cret ", "s3cret"));
        assert!(!token_matches("", "s3cret"));
        assert!(!token_matches("S3CRET", "s3cret"));
    }

    #[test]
    fn bearer_scheme_is_parsed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
