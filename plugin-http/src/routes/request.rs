//! A request as a plugin context: the values [`super`] documents, set before the call.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use axum::http::{header, HeaderMap, StatusCode};
use plugin_host::Context;

use super::table::MountedRoute;
use crate::error::ApiError;
use crate::state::AppState;

/// The context for calling `route`'s plugin on `request`, whose path gave `params`.
pub(super) async fn context(
    state: &AppState,
    route: &MountedRoute,
    params: Vec<(String, String)>,
    request: Request,
) -> Result<Context, ApiError> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let Query(query) =
        Query::<BTreeMap<String, String>>::try_from_uri(request.uri()).map_err(|err| {
            invalid(format!(
                "the query string of {method} {path} cannot be read: {}; send \
                 `name=value` pairs joined by `&`, percent-encoded",
                err.body_text()
            ))
        })?;
    let mut decoded = Vec::with_capacity(params.len());
    for (name, raw) in params {
        let value = percent_decode(&raw).ok_or_else(|| {
            invalid(format!(
                "path parameter `{name}` of {method} {path} is not UTF-8 once percent-decoded \
                 ({raw:?}); encode the parameter as UTF-8"
            ))
        })?;
        decoded.push((name, value));
    }
    let headers = header_map(request.headers());
    let json_body = is_json(request.headers());
    crate::budget::check_length(request.headers(), state.options.body_limit)?;
    let reservation = crate::budget::reservation_of(request.extensions());
    let read = tokio::time::timeout(
        state.options.request_timeout,
        Bytes::from_request(request, &()),
    )
    .await
    .map_err(|_elapsed| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the body of {method} {path} did not arrive within {:?}, the request timeout; \
                 send it faster, or a smaller one",
                state.options.request_timeout
            ),
        )
    })?;
    let body = read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body of {method} {path} is larger than {} bytes, the most this server \
                     accepts; send less, or raise the server's body limit",
                    state.options.body_limit
                ),
            )
        } else {
            invalid(format!(
                "the body of {method} {path} could not be read: {}",
                rejection.body_text()
            ))
        }
    })?;
    if let Some(reservation) = &reservation {
        // The context holds a copy of the body; a JSON body is parsed, then converted.
        reservation.charge(body.len(), "the request body's copy")?;
        if json_body {
            reservation.charge(
                crate::budget::json_tree_bound(&body),
                "the JSON body once parsed",
            )?;
        }
    }
    let ctx = crate::call::context(state).with_label(route.label.clone());
    // Each value is encoded straight from what the request holds: no tree of values is
    // built, and a JSON body goes from its text to the values' encoding in one pass.
    put(&ctx, "label", route.label.as_str());
    put(&ctx, "method", method.as_str());
    put(&ctx, "path", path.as_str());
    put(&ctx, "params", &Pairs(&decoded));
    put(&ctx, "query", &query);
    put(&ctx, "headers", &headers);
    put(&ctx, "body", serde_bytes::Bytes::new(&body));
    if json_body && !body.is_empty() {
        let mut text = serde_json::Deserializer::from_slice(&body);
        let stored = ctx.set("json", &serde_transcode::Transcoder::new(&mut text));
        if let Err(err) = stored
            // The parser's own message, not the context's wording around it.
            .map_err(|e| match e {
                plugin_host::Error::Value { source, .. } => source.to_string(),
                other => other.report(),
            })
            .and_then(|()| text.end().map_err(|e| e.to_string()))
        {
            ctx.remove("json");
            return Err(invalid(format!(
                "the body of {method} {path} is declared JSON (Content-Type) but is not valid \
                 JSON: {err}; send valid JSON or another Content-Type"
            )));
        }
    }
    Ok(ctx)
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
}

/// Route parameters in route order, encoded as a map.
struct Pairs<'a>(&'a [(String, String)]);

impl serde::Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Stores `value` under `key`: strings, maps of strings and bytes always encode.
fn put<T: serde::Serialize + ?Sized>(ctx: &Context, key: &str, value: &T) {
    let _ = ctx.set(key, value);
}

/// The headers with UTF-8 values, by lowercase name; repeated headers joined with `, `.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
            continue;
        };
        map.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    map
}

/// Whether the request's content type is `application/json` or `application/*+json`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// `raw` with `%XX` escapes decoded; `None` if the result is not UTF-8. A `%` not followed by
/// two hex digits stays as it is.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%C3%A9t%C3%A9").as_deref(), Some("été"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn json_content_types_are_recognised() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/problem+json"));
        assert!(!with("text/json"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn repeated_headers_are_joined_and_non_utf8_ones_left_out() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", "1".parse().unwrap());
        headers.append("x-a", "2".parse().unwrap());
        headers.append(
            "x-bin",
            axum::http::HeaderValue::from_bytes(&[0xff, b'a']).unwrap(),
        );
        headers.append("X-Up", "v".parse().unwrap());
        let map = header_map(&headers);
        assert_eq!(map.get("x-a").map(String::as_str), Some("1, 2"));
        assert_eq!(map.get("x-up").map(String::as_str), Some("v"));
        assert!(!map.contains_key("x-bin"));
    }
}
