//! Serve HTTP routes: read the request a host put into the context, write the response.
//!
//! A plugin declares routes in its `plugin.json` (`http_services`, each route with a
//! `label`). A host serving them over HTTP (`plugin-http`, `plugctl serve`) calls the plugin
//! once per request, with the route's label as [`Context::label`] and the request in context
//! values, which [`Request::from_context`] reads:
//!
//! | key | type |
//! |---|---|
//! | `label`, `method`, `path` | string (the path as sent, still percent-encoded) |
//! | `params`, `query`, `headers` | map of strings (params decoded; header names lowercase) |
//! | `body` | bytes |
//! | `json` | the body parsed as JSON, set only for a non-empty `application/json` (or `+json`) body |
//!
//! Read `json` as your own type with `ctx.get::<T>("json")`. The plugin answers by
//! writing a [`Response`] (the context value `response`); without one, the client gets
//! `204 No Content`. An error the plugin returns becomes the status of its kind
//! (`invalid_input` 400, `not_found` 404, `unsupported` 501, `cancelled` 503,
//! `deadline_exceeded` 504, others 500).
//!
//! # Examples
//!
//! ```
//! use plugin_sdk::http::{Request, Response};
//! use plugin_sdk::{export_plugin, Context, PluginError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, Serialize)]
//! struct Item {
//!     name: String,
//! }
//!
//! // plugin.json: "http_services": { "driver": "axum", "routes": [
//! //   { "route": "/items/:id", "method": "GET", "label": "item.get" },
//! //   { "route": "/items", "method": "POST", "label": "item.post" } ] }
//! fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
//!     let request = Request::from_context(ctx)?;
//!     match request.label.as_str() {
//!         "item.get" => {
//!             let id = request.param("id").unwrap_or_default();
//!             Response::json(&Item { name: format!("item {id}") })?.write(ctx)
//!         }
//!         "item.post" => {
//!             let item: Item = ctx
//!                 .get("json")?
//!                 .ok_or_else(|| PluginError::invalid_input("send the item as JSON"))?;
//!             Response::json(&item)?
//!                 .with_status(201)
//!                 .header("location", "/items/1")
//!                 .write(ctx)
//!         }
//!         other => Err(PluginError::not_found(format!("no handler for `{other}`"))),
//!     }
//! }
//!
//! export_plugin!(execute);
//! ```

use std::collections::BTreeMap;

use plugin_abi::{PluginError, Value};
use serde::Serialize;

use crate::Context;

/// The HTTP request a call serves, read from the context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The route's label (the same as [`Context::label`]).
    pub label: String,
    /// The method: `GET`, `POST`, ...
    pub method: String,
    /// The path as the client sent it (percent-encoded).
    pub path: String,
    /// The route's parameters, decoded: `{"id": "7"}` for `/items/:id` and `/items/7`.
    pub params: BTreeMap<String, String>,
    /// The query string, decoded (a repeated name keeps its last value).
    pub query: BTreeMap<String, String>,
    /// The headers with UTF-8 values, by lowercase name.
    pub headers: BTreeMap<String, String>,
    /// The body (empty when there is none).
    pub body: Vec<u8>,
}

impl Request {
    /// Reads the request from `ctx`. Fails with an `invalid_input` error if the call did
    /// not come through an HTTP route (no `method` or `path`) or a value has the wrong type.
    pub fn from_context(ctx: &Context<'_>) -> Result<Request, PluginError> {
        let required = |key: &str| -> Result<String, PluginError> {
            ctx.get::<String>(key)?.ok_or_else(|| {
                PluginError::invalid_input(format!(
                    "the context value `{key}` is not set: this call did not come through an \
                     HTTP route; call the plugin through one of its `http_services` routes"
                ))
            })
        };
        Ok(Request {
            label: match ctx.label() {
                Some(label) => label.to_owned(),
                None => ctx.get("label")?.unwrap_or_default(),
            },
            method: required("method")?,
            path: required("path")?,
            params: ctx.get("params")?.unwrap_or_default(),
            query: ctx.get("query")?.unwrap_or_default(),
            headers: ctx.get("headers")?.unwrap_or_default(),
            body: ctx
                .get::<serde_bytes::ByteBuf>("body")?
                .map(serde_bytes::ByteBuf::into_vec)
                .unwrap_or_default(),
        })
    }

    /// The route parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// The HTTP response a call answers with; [`write`](Response::write) it into the context.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Response {
    /// The status code. Default 200.
    pub status: u16,
    /// Headers to send, by name.
    pub headers: BTreeMap<String, String>,
    /// The body: a string is sent as `text/plain`, bytes as `application/octet-stream`, a
    /// map, list, number or boolean as JSON, null as no body (unless `content-type` is set).
    pub body: Value,
}

impl Response {
    /// `value` as a JSON body (status 200, `content-type: application/json`). Fails with an
    /// `invalid_input` error if `value` cannot be represented (a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Response, PluginError> {
        let value = plugin_abi::serde::to_value(value).map_err(|e| {
            PluginError::invalid_input(format!("cannot write the response body as JSON: {e}"))
        })?;
        let body = match value {
            // Strings and null would be sent as text or no body: write their JSON text.
            Value::String(text) => Value::from(json_string(text.as_str())),
            Value::Null => Value::from("null"),
            other => other,
        };
        Ok(Response {
            body,
            ..Response::status(200)
        }
        .header("content-type", "application/json"))
    }

    /// `text` as a `text/plain; charset=utf-8` body, status 200.
    pub fn text(text: impl Into<String>) -> Response {
        Response {
            body: Value::from(text.into()),
            ..Response::status(200)
        }
    }

    /// `bytes` as an `application/octet-stream` body, status 200.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Response {
        Response {
            body: Value::from(bytes.into()),
            ..Response::status(200)
        }
    }

    /// An empty response with `status`.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            headers: BTreeMap::new(),
            body: Value::Null,
        }
    }

    /// The same response with `status`.
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// The same response with the header `name: value` (replacing one of that name).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Writes the response into `ctx` (the value `response`) for the host to send. Fails
    /// with an `other` error if the status is not 100 to 999.
    pub fn write(self, ctx: &Context<'_>) -> Result<(), PluginError> {
        if !(100..=999).contains(&self.status) {
            return Err(PluginError::other(format!(
                "the response status {} is not an HTTP status (100 to 999)",
                self.status
            )));
        }
        /// What the host reads back: encoded straight from the response, no tree built.
        #[derive(Serialize)]
        struct Wire<'a> {
            status: u16,
            headers: &'a BTreeMap<String, String>,
            body: &'a Value,
        }
        ctx.set(
            "response",
            &Wire {
                status: self.status,
                headers: &self.headers,
                body: &self.body,
            },
        )
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_and_null_are_written_as_json_text() {
        let text = Response::json("a \"q\"\n\u{1}").unwrap();
        let Value::String(body) = &text.body else {
            panic!("{:?}", text.body)
        };
        let back: String = serde_json::from_str(body.as_str()).unwrap();
        assert_eq!(back, "a \"q\"\n\u{1}");
        assert_eq!(
            Response::json(&None::<u8>).unwrap().body,
            Value::from("null")
        );
        let map = Response::json(&BTreeMap::from([("a", 1)])).unwrap();
        assert_eq!(map.body.get("a"), Some(&Value::Int(1)));
        assert_eq!(
            map.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
    }

    #[test]
    fn builders_set_what_they_say() {
        let response = Response::text("hi").with_status(404).header("x-a", "1");
        assert_eq!(response.status, 404);
        assert_eq!(response.body, Value::from("hi"));
        assert_eq!(response.headers.get("x-a").map(String::as_str), Some("1"));
        assert_eq!(Response::status(204).body, Value::Null);
        assert_eq!(Response::bytes(vec![1u8]).body, Value::from(vec![1u8]));
    }
}
