//! A plugin context as a response: the context value `response`, read after the call as
//! [`super`] documents.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use plugin_host::{Context, Value};

use crate::error::ApiError;

/// The response `plugin` wrote into `ctx` as the value `response`.
pub(super) fn from_context(plugin: &str, ctx: &Context) -> Result<Response, ApiError> {
    let response = ctx.get_value("response").map_err(|err| err.to_string());
    response.and_then(build).map_err(|problem| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid_response",
            format!(
                "plugin `{plugin}` wrote a response this server cannot send: {problem}; the \
                 context value `response` is a map with `status` (an HTTP status code), \
                 `headers` (names to string values) and `body` (plugin-sdk's \
                 `http::Response::write` writes one)"
            ),
        )
    })
}

fn build(response: Option<Value>) -> Result<Response, String> {
    let entries = match response {
        None | Some(Value::Null) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            return Ok(response);
        }
        Some(Value::Map(entries)) => entries,
        Some(other) => {
            return Err(format!(
                "`response` is of type {}, not a map",
                other.type_name()
            ))
        }
    };
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    let mut body = Value::Null;
    for entry in entries {
        match entry.key.as_str() {
            "status" => status = status_of(&entry.value)?,
            "headers" => headers = headers_of(entry.value)?,
            "body" => body = entry.value,
            other => {
                return Err(format!(
                    "`response` has a field `{other}`, which is not `status`, `headers` or `body`"
                ))
            }
        }
    }
    let has_type = headers.iter().any(|(name, _)| name == header::CONTENT_TYPE);
    let (bytes, content_type) = match body {
        Value::Null => (Vec::new(), None),
        Value::String(text) => (
            text.into_string().into_bytes(),
            Some("text/plain; charset=utf-8"),
        ),
        Value::Bytes(bytes) => (bytes.into_vec(), Some("application/octet-stream")),
        other => {
            let json = to_json(&other, "body")?;
            let text = serde_json::to_vec(&json)
                .map_err(|err| format!("`response.body` cannot be written as JSON: {err}"))?;
            (text, Some("application/json"))
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let map = response.headers_mut();
    for (name, value) in headers {
        map.append(name, value);
    }
    if let (false, Some(content_type)) = (has_type, content_type) {
        map.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    // What a plugin sends is served on the management page's origin: unless the plugin sets
    // a policy of its own, its answer runs no script, loads nothing and is a sandboxed
    // origin of its own, so a plugin bug cannot act as the page.
    if !map.contains_key(header::CONTENT_SECURITY_POLICY) {
        map.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PLUGIN_CONTENT_SECURITY_POLICY),
        );
    }
    if !map.contains_key(header::X_CONTENT_TYPE_OPTIONS) {
        map.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    Ok(response)
}

/// The policy of a plugin's answer that sets none: no script, style, image or frame, no
/// embedding, and a unique opaque origin (`sandbox`), so that even a page a plugin answers
/// cannot read the server's storage or call its API as the management page.
pub(crate) const PLUGIN_CONTENT_SECURITY_POLICY: &str =
    "sandbox; default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn status_of(value: &Value) -> Result<StatusCode, String> {
    match value {
        Value::Null => Ok(StatusCode::OK),
        Value::Int(code) => u16::try_from(*code)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| format!("`response.status` is {code}, not an HTTP status (100 to 999)")),
        other => Err(format!(
            "`response.status` is of type {}, not an integer",
            other.type_name()
        )),
    }
}

fn headers_of(value: Value) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let entries = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Map(entries) => entries,
        other => {
            return Err(format!(
                "`response.headers` is of type {}, not a map",
                other.type_name()
            ))
        }
    };
    let mut headers = Vec::with_capacity(entries.len());
    for entry in entries {
        let key = entry.key.as_str();
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| format!("`{key}` in `response.headers` is not a valid header name"))?;
        let Value::String(text) = &entry.value else {
            return Err(format!(
                "header `{key}` in `response.headers` is of type {}, not a string",
                entry.value.type_name()
            ));
        };
        let value = HeaderValue::from_str(text.as_str()).map_err(|_| {
            format!(
                "header `{key}` in `response.headers` has the value {:?}, which a header cannot \
                 carry (control characters or non-ASCII bytes)",
                text.as_str()
            )
        })?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// `value` as JSON; `at` names where it is, for errors.
fn to_json(value: &Value, at: &str) -> Result<serde_json::Value, String> {
    Ok(match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("`response.{at}` is {x}, which JSON cannot hold"))?,
        Value::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        Value::Bytes(_) => {
            return Err(format!(
                "`response.{at}` holds bytes, which a JSON body cannot; send them as the whole \
                 body, or as a string"
            ))
        }
        Value::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| to_json(item, &format!("{at}[{i}]")))
            .collect::<Result<_, _>>()?,
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|e| {
                    Ok((
                        e.key.to_string(),
                        to_json(&e.value, &format!("{at}.{}", e.key))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: Vec<(&str, Value)>) -> Value {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    fn body_of(response: Response) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap()
            .to_vec()
    }

    fn content_type(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn no_response_is_no_content() {
        let response = build(None).unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(body_of(response).is_empty());
    }

    #[test]
    fn the_body_type_picks_the_content_type_unless_the_plugin_set_one() {
        let text = build(Some(map(vec![("body", Value::from("hi"))]))).unwrap();
        assert_eq!(text.status(), StatusCode::OK);
        assert_eq!(content_type(&text), Some("text/plain; charset=utf-8"));
        assert_eq!(body_of(text), b"hi");

        let bytes = build(Some(map(vec![("body", Value::from(vec![1u8, 2]))]))).unwrap();
        assert_eq!(content_type(&bytes), Some("application/octet-stream"));
        assert_eq!(body_of(bytes), [1, 2]);

        let object = map(vec![
            ("a", Value::from(1i64)),
            ("b", Value::from(vec![Value::Bool(true)])),
        ]);
        let json = build(Some(map(vec![
            ("status", Value::from(201i64)),
            ("body", object),
        ])))
        .unwrap();
        assert_eq!(json.status(), StatusCode::CREATED);
        assert_eq!(content_type(&json), Some("application/json"));
        assert_eq!(body_of(json), br#"{"a":1,"b":[true]}"#);

        let custom = build(Some(map(vec![
            (
                "headers",
                map(vec![
                    ("Content-Type", Value::from("text/html")),
                    ("x-a", Value::from("1")),
                ]),
            ),
            ("body", Value::from("<p>")),
        ])))
        .unwrap();
        assert_eq!(content_type(&custom), Some("text/html"));
        assert_eq!(custom.headers().get("x-a").unwrap(), "1");
        assert_eq!(
            custom
                .headers()
                .get_all(header::CONTENT_TYPE)
                .iter()
                .count(),
            1
        );
    }

    #[test]
    fn a_malformed_response_names_what_is_wrong() {
        let cases = [
            (Value::from("text"), "is of type string, not a map"),
            (
                map(vec![("status", Value::from(42i64))]),
                "`response.status` is 42",
            ),
            (
                map(vec![("status", Value::from("200"))]),
                "is of type string, not an integer",
            ),
            (
                map(vec![("headers", map(vec![("bad name", Value::from("v"))]))]),
                "`bad name`",
            ),
            (
                map(vec![("headers", map(vec![("x", Value::from("a\nb"))]))]),
                "header `x`",
            ),
            (
                map(vec![("headers", map(vec![("x", Value::from(1i64))]))]),
                "is of type int, not a string",
            ),
            (
                map(vec![("body", map(vec![("f", Value::Float(f64::NAN))]))]),
                "`response.body.f`",
            ),
            (map(vec![("stauts", Value::from(200i64))]), "field `stauts`"),
        ];
        for (value, expected) in cases {
            let err = build(Some(value)).unwrap_err();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }
}
