//! The memory requests in flight may hold together ([`HttpOptions::body_budget`]).
//!
//! Every request gets a [`Reservation`] against the server's [`Budget`]. Its body is charged
//! as it arrives, chunk by chunk, so a body is never buffered past what the budget allows;
//! the plugin route's copy of it and a JSON body's parsed tree are charged before they are
//! made ([`Reservation::charge`], [`json_tree_bound`]). Everything is given back when the
//! request has been answered. A charge that does not fit fails: the request is answered 503
//! `overloaded` with `Retry-After`, or 413 when the request alone needs more than the whole
//! budget.
//!
//! [`HttpOptions::body_budget`]: crate::HttpOptions::body_budget

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::error::ApiError;
use crate::state::AppState;

/// Bytes the server's requests hold, against a limit.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` if they fit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// What one request holds of the [`Budget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    held: AtomicUsize,
    /// The first charge that did not fit, as the error to answer.
    refused: parking_lot::Mutex<Option<ApiError>>,
}

impl Reservation {
    fn new(budget: Arc<Budget>) -> Reservation {
        Reservation {
            budget,
            held: AtomicUsize::new(0),
            refused: parking_lot::Mutex::new(None),
        }
    }

    /// Charges `bytes` more to this request, or the error to answer if they do not fit.
    pub(crate) fn charge(&self, bytes: usize, what: &str) -> Result<(), ApiError> {
        if self.budget.take(bytes) {
            self.held.fetch_add(bytes, Ordering::AcqRel);
            return Ok(());
        }
        let refusal = self.refusal(bytes, what);
        self.refused.lock().get_or_insert_with(|| refusal.clone());
        Err(refusal)
    }

    fn refusal(&self, bytes: usize, what: &str) -> ApiError {
        let needed = self.held.load(Ordering::Acquire).saturating_add(bytes);
        let limit = self.budget.limit;
        if needed > limit {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "this request needs at least {needed} bytes of memory ({what}), more than \
                     the {limit} bytes this server gives all requests in flight together; send \
                     less (a JSON body takes many times its size once parsed: send it with \
                     another Content-Type and the plugin receives the bytes only)"
                ),
            )
        } else {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "the requests in flight hold the {limit} bytes of memory this server gives \
                     them, and {what} needs {bytes} more; retry later"
                ),
            )
            .retry_after(1)
        }
    }

    /// The first charge of this request that failed, as the error to answer.
    fn refused(&self) -> Option<ApiError> {
        self.refused.lock().clone()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give(*self.held.get_mut());
    }
}

/// Gives every request a [`Reservation`] (in its extensions) and charges its body as it is
/// read; when a charge failed, the answer is the budget's refusal, whatever the handler made
/// of the failed read.
pub(crate) async fn meter(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let reservation = Arc::new(Reservation::new(state.budget.clone()));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(reservation.clone());
    let body = Body::new(Metered {
        inner: body,
        reservation: reservation.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    match reservation.refused() {
        Some(refusal) if !response.status().is_success() => refusal.into_response(),
        _ => response,
    }
}

/// A request body that charges each chunk to its request's reservation.
struct Metered {
    inner: Body,
    reservation: Arc<Reservation>,
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                if let Err(refusal) = self.reservation.charge(data.len(), "the request body") {
                    return Poll::Ready(Some(Err(axum::Error::new(refusal.message))));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bytes a JSON text of `text` can take at most while it is parsed into a context value:
/// [`JSON_NODE`] bytes for every value the text can hold, plus twice the text (the strings'
/// bytes, in the parsed JSON and in the context's copy, are never more than the text's).
///
/// The number of values is bounded by counting, outside string literals, the commas and
/// opening brackets: every value but the first follows one of them.
pub(crate) fn json_tree_bound(text: &[u8]) -> usize {
    let mut values = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => values += 1,
                _ => {}
            }
        }
    }
    values
        .saturating_mul(JSON_NODE)
        .saturating_add(text.len().saturating_mul(2))
}

/// What one JSON value can take while a body is parsed: a `serde_json::Value` in a list or a
/// map entry (with its B-tree's slack), and the context's `Value` made from it, in a list or
/// a map entry (with a growing list's spare capacity).
pub(crate) const JSON_NODE: usize = 256;

/// 413 at once for a request whose `Content-Length` passes `limit`: nothing of it is read.
pub(crate) fn check_length(headers: &axum::http::HeaderMap, limit: usize) -> Result<(), ApiError> {
    let length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match length {
        Some(length) if length > limit as u64 => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is {length} bytes, more than the {limit} bytes this route accepts; \
                 send less, or raise the server's body limit"
            ),
        )),
        _ => Ok(()),
    }
}

/// The reservation of `request` (every request has one once [`meter`] ran).
pub(crate) fn reservation_of(extensions: &axum::http::Extensions) -> Option<Arc<Reservation>> {
    extensions.get::<Arc<Reservation>>().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_until_the_limit_and_come_back_when_dropped() {
        let budget = Arc::new(Budget::new(100));
        let a = Reservation::new(budget.clone());
        a.charge(60, "a").unwrap();
        let b = Reservation::new(budget.clone());
        let err = b.charge(50, "b").unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.retry_after, Some(1));
        b.charge(40, "b").unwrap();
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_request_larger_than_the_whole_budget_is_too_large() {
        let budget = Arc::new(Budget::new(100));
        let r = Reservation::new(budget.clone());
        r.charge(30, "x").unwrap();
        let err = r.charge(80, "the parsed JSON body").unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            err.message.contains("the parsed JSON body"),
            "{}",
            err.message
        );
        assert_eq!(r.refused(), Some(err));
        assert_eq!(budget.used(), 30);
    }

    #[test]
    fn a_request_that_would_fit_alone_is_overloaded_not_too_large() {
        let budget = Arc::new(Budget::new(100));
        let other = Reservation::new(budget.clone());
        other.charge(10, "x").unwrap();
        let r = Reservation::new(budget.clone());
        r.charge(30, "x").unwrap();
        // 30 + 70 is the whole budget: it fits once the other request is gone.
        let err = r.charge(70, "x").unwrap_err();
        assert_eq!(
            err.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            err.message
        );
        drop(other);
        r.charge(70, "x").unwrap();
    }

    #[test]
    fn the_json_bound_covers_the_parsed_tree() {
        // Every JSON value a text can hold is counted, and the bound is never below what
        // parsing really allocates for lists and maps of small values.
        let cases = [
            "[0,0,0,0,0,0,0,0,0,0]".to_owned(),
            format!("[{}0]", "0,".repeat(1000)),
            format!("{{{}\"z\":0}}", "\"k\":0,".repeat(500)),
            "\"a, [string] {with} commas\"".to_owned(),
            "[[[[[]]]]]".to_owned(),
        ];
        for text in &cases {
            let parsed: plugin_host::Value = serde_json::from_str(text).unwrap();
            let nodes = count(&parsed);
            let bound = json_tree_bound(text.as_bytes());
            assert!(
                bound >= nodes * std::mem::size_of::<plugin_host::Value>() + text.len() / 2,
                "{text}: bound {bound}, {nodes} nodes"
            );
        }
        // Commas inside strings are not values.
        assert_eq!(
            json_tree_bound(br#""a,b,c""#),
            json_tree_bound(br#""abcde""#)
        );
        assert_eq!(
            json_tree_bound(br#""a\",b""#),
            json_tree_bound(br#""a\"xb""#)
        );
        // An escape ends after one character: the string ends, and the values after count.
        assert_eq!(
            json_tree_bound(br#"["\\",1,2]"#),
            json_tree_bound(br#"["ab",1,2]"#)
        );
        assert!(json_tree_bound(br#"["\\",1,2]"#) > json_tree_bound(br#"["\\"    ]"#));
    }

    fn count(value: &plugin_host::Value) -> usize {
        use plugin_host::Value;
        1 + match value {
            Value::List(items) => items.iter().map(count).sum(),
            Value::Map(entries) => entries.iter().map(|e| count(&e.value)).sum(),
            _ => 0,
        }
    }
}
