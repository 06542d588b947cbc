//! # http-echo
//!
//! A sample plugin serving HTTP routes with `plugin_sdk::http`: it reads the request from
//! the context with [`Request::from_context`] and answers with a [`Response`]. Its
//! `plugin.json` declares, with the `beego` driver:
//!
//! | route | label | answer |
//! |---|---|---|
//! | `GET /api/plugin/sample/:id` | `plugin.get` | `200 {"id": "<id>", "query": {<query string>}}` |
//! | `POST /api/plugin/samples` | `plugin.post` | `201 {"received": <the JSON object sent>}`; a missing or non-object JSON body is an `invalid_input` error (400) |
//! | `GET /api/plugin/echo/error/:kind` | `plugin.error` | fails with the error kind named: `invalid_input`, `not_found`, `unsupported`, `cancelled`, `deadline_exceeded`, `other`; `panic` panics. So each status the host maps an error to can be tried |
//!
//! Called without a label (`plugctl call http-echo`), it only sets `usage`, saying the above.
//!
//! Served by `plugctl serve` (or any host using `plugin-http`):
//!
//! ```text
//! $ curl 'http://127.0.0.1:8080/api/plugin/sample/7?x=1'
//! {"id":"7","query":{"x":"1"}}
//! $ curl -X POST -H 'content-type: application/json' -d '{"a":1}' \
//!     http://127.0.0.1:8080/api/plugin/samples
//! {"received":{"a":1}}
//! $ curl http://127.0.0.1:8080/api/plugin/echo/error/not_found
//! {"error":{"kind":"not_found","message":"..."}}
//! ```

use std::collections::BTreeMap;

use plugin_sdk::http::{Request, Response};
use plugin_sdk::{export_plugin, Context, ErrorKind, PluginError, Value};
use serde::Serialize;

#[derive(Serialize)]
struct Sample<'a> {
    id: &'a str,
    query: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Received {
    received: Value,
}

/// What a call without a label (`plugctl call http-echo`) answers, in the value `usage`.
const USAGE: &str = "http-echo serves HTTP routes: GET /api/plugin/sample/:id, POST \
                     /api/plugin/samples and GET /api/plugin/echo/error/:kind; serve it with \
                     `plugctl serve` and send it requests";

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    if ctx.label().is_none() {
        return ctx.set("usage", USAGE);
    }
    let request = Request::from_context(ctx)?;
    match request.label.as_str() {
        "plugin.get" => {
            let id = request
                .param("id")
                .ok_or_else(|| PluginError::invalid_input("the route has no `id` parameter"))?;
            Response::json(&Sample {
                id,
                query: &request.query,
            })?
            .write(ctx)
        }
        "plugin.post" => match ctx.get_value("json")? {
            Some(received @ Value::Map(_)) => Response::json(&Received { received })?
                .with_status(201)
                .write(ctx),
            Some(other) => Err(PluginError::invalid_input(format!(
                "the JSON body is of type {}; send a JSON object",
                other.type_name()
            ))),
            None => Err(PluginError::invalid_input(
                "send a JSON object as the body, with `Content-Type: application/json`",
            )),
        },
        "plugin.error" => fail(request.param("kind").unwrap_or_default()),
        other => Err(PluginError::unsupported(format!(
            "unknown label `{other}`; this plugin serves `plugin.get`, `plugin.post` and \
             `plugin.error`"
        ))),
    }
}

/// Fails the way `kind` says.
fn fail(kind: &str) -> Result<(), PluginError> {
    let kind = match kind {
        "invalid_input" => ErrorKind::InvalidInput,
        "not_found" => ErrorKind::NotFound,
        "unsupported" => ErrorKind::Unsupported,
        "cancelled" => ErrorKind::Cancelled,
        "deadline_exceeded" => ErrorKind::DeadlineExceeded,
        "other" => ErrorKind::Other,
        "panic" => panic!("http-echo panics on request"),
        unknown => {
            return Err(PluginError::invalid_input(format!(
                "unknown error kind `{unknown}`; use invalid_input, not_found, unsupported, \
                 cancelled, deadline_exceeded, other or panic"
            )))
        }
    };
    Err(PluginError::new(
        kind,
        format!("http-echo fails with `{kind}` on request"),
    ))
}

export_plugin!(execute);
