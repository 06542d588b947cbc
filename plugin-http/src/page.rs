//! The management web page at `/`: one HTML file, a style sheet and a script, embedded in the
//! binary. The page reads and drives the management API under `/api/v1` from the browser;
//! it loads nothing from another host, which its content security policy enforces. It keeps
//! the API token in memory only (see `assets/app.js`) and isolates its window from others
//! (`Cross-Origin-Opener-Policy: same-origin`), so a page a plugin route answers on the same
//! origin can neither read the token nor script the page.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_CSS: &str = include_str!("../assets/app.css");
const APP_JS: &str = include_str!("../assets/app.js");

/// Only this origin's scripts, styles and API; no frames, no plugins, no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page's routes.
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
}

/// An embedded file: revalidated on every use (`no-cache`), so a new binary's page is
/// never mixed with an old script.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
            // A window a plugin's page opens, or that opens this page, gets no handle on it.
            (
                axum::http::HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
        ],
        body,
    )
        .into_response()
}
