//! The REST management API under `/api/v1`.

use std::sync::Arc;

use axum::Router;

use crate::state::AppState;

/// The API's routes, to nest under `/api/v1`.
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
}
