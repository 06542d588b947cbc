//! Serve a folder of plugins over HTTP: the routes each plugin declares in `http_services`,
//! a REST management API, Prometheus metrics and a management web page, on axum.
//!
//! `plugin-host` stays free of an async runtime; this crate brings tokio and axum. Any axum
//! application can nest [`router`].
#![warn(missing_docs)]

mod api;
mod budget;
mod call;
mod error;
mod guard;
mod metrics;
mod options;
mod page;
mod pool;
mod routes;
mod server;
mod state;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::Router;
use plugin_host::PluginManager;
use tower_http::limit::RequestBodyLimitLayer;

pub use options::{check_token, HttpOptions, TokenError, MIN_TOKEN_LEN};
pub use server::{serve, ServeOptions, Served};

/// The prefix of the management API.
pub const API_PREFIX: &str = "/api/v1";

/// An axum router serving `manager`'s plugins: their routes, the management API under
/// [`API_PREFIX`], `/metrics`, and the management page at `/`.
///
/// Every request first passes the host and origin checks (a `Host` this server answers to;
/// no cross-site or token-less writes to the API), then is charged to the memory budget and
/// limited to the body limit ([`HttpOptions`]). Serve it with [`serve`], which also bounds
/// connections, header reads and shutdown; `axum::serve` bounds none of those.
pub fn router(manager: Arc<PluginManager>, options: HttpOptions) -> Router {
    let body_limit = options.body_limit;
    // The package upload route has a larger limit of its own (`package_limit`): here the
    // largest, which every other route lowers to `body_limit` as it reads.
    let largest = if cfg!(feature = "uploads") {
        body_limit.max(options.package_limit)
    } else {
        body_limit
    };
    let state = state::AppState::new(manager, options);
    Router::new()
        .route("/metrics", get(metrics::handler))
        .nest(API_PREFIX, api::router(state.clone()))
        .merge(page::router())
        .fallback(routes::dispatch)
        .layer(DefaultBodyLimit::max(body_limit))
        // Layers run from the last added: the host and origin checks, then the budget, then
        // the limit (413 from `Content-Length` before anything is read).
        .layer(RequestBodyLimitLayer::new(largest))
        .layer(from_fn_with_state(state.clone(), budget::meter))
        .layer(from_fn_with_state(state.clone(), guard::check))
        .with_state(state)
}

/// docs/http.md's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/http.md")]
struct HttpDoctests;
