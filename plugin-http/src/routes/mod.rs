//! The routes plugins declare in `http_services`, mounted live.
//!
//! # Which routes are served
//!
//! The route table is rebuilt when the server starts and after every lifecycle event of the
//! manager (load, upgrade, unload, enable, disable, ...), from the `http_services` of every
//! *active* plugin, and swapped in whole: a request sees the old table or the new one, never
//! half of either, and takes no lock. A plugin's routes appear when it is loaded, follow it
//! through upgrades (the new version's `plugin.json` counts) and disappear when it is
//! unloaded.
//!
//! - Drivers `axum` and `beego` are served (the case is ignored); a plugin declaring any
//!   other driver has none of its routes served.
//! - A route is written `/api/plugin/sample/:id` (beego) or `/api/plugin/sample/{id}`
//!   (axum); a parameter matches one non-empty path segment.
//! - The server keeps `/`, and everything under `/api/v1`, `/metrics` and `/assets`, for
//!   itself: a plugin route there is refused, and requests there never reach a plugin.
//! - Two plugins declaring the same method and route (parameter names do not tell routes
//!   apart): the plugin that served it in the table before keeps it; between newcomers,
//!   the plugin whose name sorts first gets it. The other is refused.
//!
//! Every refused route is logged (`tracing` warning, once, naming the plugins and how to fix
//! it) and listed with its reason by the management API (`GET /api/v1/routes`).
//!
//! # From request to context
//!
//! A request that no route of the server itself matches is looked up by method and path. No
//! route has the path: `404`, kind `not_found`. Routes have the path, but none for this
//! method: `405`, kind `method_not_allowed`, with an `Allow` header listing those methods.
//! A `HEAD` request is served by the `GET` route when the plugin declares no `HEAD` route.
//!
//! Otherwise the plugin is called with a context whose deadline is the server's request
//! timeout, whose label is the route's `label` (`ctx.label()`), and with these values:
//!
//! | key | value |
//! |---|---|
//! | `label` | the route's label, a string (the same as `ctx.label()`) |
//! | `method` | the request method, a string: `"GET"` |
//! | `path` | the request path as sent (still percent-encoded), a string: `"/api/plugin/sample/7"` |
//! | `params` | the route's parameters, percent-decoded, a map of strings: `{"id": "7"}` |
//! | `query` | the query string, decoded, a map of strings (a repeated name keeps its last value): `{"x": "1"}` |
//! | `headers` | the request headers with UTF-8 values, by lowercase name, a map of strings; a repeated header's values are joined with `", "` |
//! | `body` | the request body, bytes (empty when there is none) |
//! | `json` | only when `Content-Type` is `application/json` or `application/*+json` and the body is not empty: the body parsed as JSON (maps, lists, strings, numbers, booleans, null) |
//!
//! Before the call, the request is answered `400` (`invalid_input`) if its query string
//! cannot be decoded, a path parameter is not UTF-8 once decoded, or a body declared JSON
//! does not parse; and `413` (`payload_too_large`) if its body exceeds the body limit.
//!
//! # From context to response
//!
//! The plugin answers by setting the context value `response`, a map (plugin-sdk's
//! `http::Response::write` writes it):
//!
//! - `status`: an integer, 100 to 999; default `200`.
//! - `headers`: a map of header names to string values.
//! - `body`: a string is sent as UTF-8 with `Content-Type: text/plain; charset=utf-8`;
//!   bytes as they are with `application/octet-stream`; a map, list, number or boolean as
//!   JSON with `application/json`; nothing (or null) as an empty body. A `Content-Type` in
//!   `headers` replaces the default, and the body is sent the same way.
//!
//! No `response` at all: `204 No Content`. A `response` that is not such a map, or has
//! another field, a bad status, a header name or value HTTP cannot carry, or a body JSON
//! cannot hold (bytes inside a map, a float that is not finite): `500`, kind
//! `invalid_response`, naming the plugin and what is wrong.
//!
//! A plugin error is answered with the status of its kind (`invalid_input` 400,
//! `not_found` 404, `cancelled` 503, `deadline_exceeded` 504, `unsupported` 501, `panicked`
//! and `other` 500) and the body `{ "error": { "kind", "message" } }`; a call that outlives
//! the timeout and the grace is answered `504`, and a plugin whose calls in flight reach
//! the server's cap `503` with `Retry-After` (see the `call` module).

mod request;
mod response;
mod table;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use table::Lookup;
pub(crate) use table::RouteTable;
#[allow(unused_imports, reason = "named by the management API and page")]
pub(crate) use table::{MountedRoute, RouteRefusal};

use crate::error::ApiError;
use crate::state::AppState;

/// Serves a request that no management route matched: a plugin route, or 404.
pub(crate) async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let lookup = match table::reserved(&path) {
        Some(_) => Lookup::NotFound,
        None => state.routes.lookup(&method, &path),
    };
    let (route, params) = match lookup {
        Lookup::Found { route, params } => (route, params),
        Lookup::WrongMethod { allow } => return method_not_allowed(&method, &path, &allow),
        Lookup::NotFound => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route serves {method} {path}"),
            )
            .into_response()
        }
    };
    let result = async {
        // Admitted before the body is read: a plugin at its cap costs no body memory.
        let admission = crate::call::admit(&state, &route.plugin)?;
        let ctx = request::context(&state, &route, params, request).await?;
        let ctx = crate::call::run(&state, admission, ctx).await?;
        response::from_context(&route.plugin, &ctx)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn method_not_allowed(method: &Method, path: &str, allow: &[&str]) -> Response {
    let allow = allow.join(", ");
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{path} is not served for {method}; it is for {allow}"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
