//! The management web page at `/`.

use std::sync::Arc;

use axum::Router;

use crate::state::AppState;

/// The page's routes.
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
}
