//! Serve a folder of plugins over HTTP: the routes each plugin declares in `http_services`,
//! a REST management API, Prometheus metrics and a management web page, on axum.
//!
//! `plugin-host` stays free of an async runtime; this crate brings tokio and axum. Any axum
//! application can nest [`router`].
#![warn(missing_docs)]

mod api;
mod call;
mod error;
mod metrics;
mod options;
mod page;
mod routes;
mod state;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use plugin_host::PluginManager;
use tower_http::limit::RequestBodyLimitLayer;

pub use options::HttpOptions;

/// The prefix of the management API.
pub const API_PREFIX: &str = "/api/v1";

/// An axum router serving `manager`'s plugins: their routes, the management API under
/// [`API_PREFIX`], `/metrics`, and the management page at `/`.
pub fn router(manager: Arc<PluginManager>, options: HttpOptions) -> Router {
    let body_limit = options.body_limit;
    let state = state::AppState::new(manager, options);
    Router::new()
        .route("/metrics", get(metrics::handler))
        .nest(API_PREFIX, api::router(state.clone()))
        .merge(page::router())
        .fallback(routes::dispatch)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .with_state(state)
}

/// docs/http.md's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/http.md")]
struct HttpDoctests;
