//! The routes plugins declare in `http_services`, mounted live.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use plugin_host::PluginManager;

use crate::state::AppState;

/// The plugin routes in effect.
#[derive(Default)]
pub(crate) struct RouteTable {}

impl RouteTable {
    /// Rebuilds the table from the plugins active in `manager`.
    pub(crate) fn rebuild(&self, manager: &PluginManager) {
        let _ = manager;
    }
}

/// Serves a request that no management route matched: a plugin route, or 404.
pub(crate) async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let _ = (state, request);
    axum::http::StatusCode::NOT_FOUND.into_response()
}
