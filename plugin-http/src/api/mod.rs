//! The REST management API under `/api/v1`: JSON in, JSON out.
//!
//! Every route but `GET /api/v1/openapi.json` requires `Authorization: Bearer <token>` when
//! the server has a token (`HttpOptions::token`); without the header the answer is 401
//! `unauthorized` with `WWW-Authenticate: Bearer`, and a wrong token is 401 too. Without a
//! token, the routes that change state answer 403 `read_only`; a write from another site
//! answers 403 `cross_origin` either way (see "What a web page can do" in docs/http.md).
//! Every error is `{ "error": { "kind": "...", "message": "..." } }`, with the status of its
//! kind: a malformed request 400 `invalid_input` (also for bad JSON and
//! unknown fields), a missing plugin 404 `not_found`, a body over the body limit 413, a
//! plugin's own errors as their kinds map (invalid input 400, not found 404, deadline 504,
//! cancelled 503, panicked 500, unsupported 501, other 500).
//!
//! | Route | Request | Response |
//! |---|---|---|
//! | `GET /api/v1/plugins` | — | 200 `{ "plugins": [PluginEntry] }` |
//! | `GET /api/v1/plugins/{name}` | — | 200 `PluginDetail`; 404 |
//! | `GET /api/v1/routes` | — | 200 `{ "routes": [{ "plugin", "method", "route", "pattern", "label" }], "refused": [{ "plugin", "method", "route", "reason" }] }` |
//! | `POST /api/v1/plugins/{name}/execute` | `{ "values": {..}, "label"?, "timeout_ms"? }` | 200 `{ "values": {..} }` |
//! | `POST /api/v1/plugins/{name}/load` | — | 200 `LifecycleResponse`; 409, 422 |
//! | `POST /api/v1/plugins/{name}/unload` | — | 200 `LifecycleResponse` with `drain`; 404 |
//! | `POST /api/v1/plugins/{name}/reload` | — | 200 `LifecycleResponse` with `previous`, `drain` |
//! | `POST /api/v1/plugins/{name}/enable` | — | 200 `LifecycleResponse`; 422 |
//! | `POST /api/v1/plugins/{name}/disable` | — | 200 `LifecycleResponse` |
//! | `POST /api/v1/packages[?force=true]` | multipart: `package`, `signature` | 201 `InstallResponse`; 403, 422 |
//! | `GET /api/v1/openapi.json` | — (no token) | 200 the OpenAPI 3.1 document |
//!
//! - **`PluginEntry`**: `name`, `state` (`discovered`, `active`, `disabled`, `failed`,
//!   `unloading`, `unloaded`), `reason` (why a `failed` plugin failed, else `null`),
//!   `disabled` (in the state file), `version` (of the active version, else `null`),
//!   `calls_in_flight`, `stuck_calls`, `retained_libraries`, `isolation` (`in-process` or
//!   `process`, for an active plugin), `worker` (`{ "pid", "restarts", "last_exit",
//!   "quarantined" }` in process isolation, else `null`), and `routes`: the active
//!   version's `http_services` routes as `{ "route", "method", "label" }`. The list holds
//!   every plugin the manager knows and every folder of its base directory it does not (never
//!   loaded, or unloaded: state `discovered`, or `disabled`), sorted by name.
//! - **`PluginDetail`**: the fields of `PluginEntry` but the counters, plus `sdk_version`,
//!   `loaded_at` (RFC 3339, UTC), `running_copy`, `dir`, `manifest` (the validated
//!   `plugin.json`), `stats` (`{ calls_in_flight, stuck_calls, retained_libraries }`) and
//!   `metrics` (what this server counted of its calls: `calls`, `errors` by kind,
//!   `panics`, `in_flight`, `stuck`, `rejected`, `loads`, `upgrades`, `unloads`,
//!   `load_failures`, and `latency` with the mean, max, and p50 and p99 estimated from the
//!   histogram's buckets); the version fields are `null` for a plugin not active. 404
//!   for a name that is neither a plugin nor a folder.
//! - **execute**: each of `values` is set in a new context (`ctx.set(key, value)`); `label`
//!   is its routing label; its deadline is the server's request timeout, or `timeout_ms` if
//!   lower (a larger one is capped). The call goes through the same path as the plugin
//!   routes: a plugin at its cap of calls in flight answers 503 with `Retry-After`; one past
//!   its deadline and grace 504. The answer holds every context value after the call. A
//!   plugin not loaded: 404; loaded but not active (disabled, failed, unloading): 503.
//! - **`LifecycleResponse`**: `name`, `state` after the operation, `version` (active after
//!   it, else `null`); `unload` and `reload` add `drain`: `{ "clean", "stuck_calls", "killed_calls" }`;
//!   `reload` adds `previous` (the version that ran before, if one did). They run on the
//!   blocking pool: an unload or a reload waits for calls to drain (up to twice the
//!   manager's drain timeout). Errors: 404 `not_found` (no such plugin, or not loaded, for
//!   `unload`), 409 `already_loaded` (`load` of an active plugin), 409 `disabled` (`load` of
//!   a disabled plugin), 409 `downgrade` (`reload` to a lower version), 422 `invalid_plugin`
//!   with the host's message (the folder fails a check, or its `on_load` fails).
//! - **packages**: a `multipart/form-data` body with the part `package` (the `.plg` bytes)
//!   and, to be trusted, the part `signature` (the text of its `.minisig`). The package must
//!   be signed by one of [`HttpOptions::trusted_keys`](crate::HttpOptions::trusted_keys);
//!   with none configured, every upload is 403 `uploads_disabled`. It is installed as
//!   `plugctl install` installs a file (signature, name and version binding, no downgrade
//!   unless `force=true`, staged extraction, the loader's checks, an atomic move, a hot
//!   upgrade of a running plugin), then loaded unless it is active or disabled. 201 `{
//!   "name", "version", "previous", "signed_by", "upgraded", "drain"?, "state" }`; 422
//!   `package_refused` with the installer's message for a refused package (the base
//!   directory is then left as it was); 400 for a form without a `package` part. The route is
//!   plugin-http's default feature `uploads`: a host built without it (`default-features =
//!   false`) answers 501 `uploads_disabled` and pulls in no tar, signature or HTTP client code.

mod auth;
mod handlers;
mod openapi;
#[cfg(feature = "uploads")]
mod packages;
mod types;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// The API's routes, to nest under `/api/v1`; all but `/openapi.json` behind the token.
pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/plugins", get(handlers::list))
        .route("/routes", get(handlers::routes))
        .route("/plugins/{name}", get(handlers::describe))
        .route("/plugins/{name}/execute", post(handlers::execute))
        .route("/plugins/{name}/load", post(handlers::load))
        .route("/plugins/{name}/unload", post(handlers::unload))
        .route("/plugins/{name}/reload", post(handlers::reload))
        .route("/plugins/{name}/enable", post(handlers::enable))
        .route("/plugins/{name}/disable", post(handlers::disable))
        .route("/packages", packages_route(&state))
        .route_layer(from_fn_with_state(state, auth::require_token))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
}

/// `POST /packages`: the upload, with its own body limit.
#[cfg(feature = "uploads")]
fn packages_route(state: &AppState) -> axum::routing::MethodRouter<Arc<AppState>> {
    post(packages::upload).layer(axum::extract::DefaultBodyLimit::max(
        state.options.package_limit,
    ))
}

/// `POST /packages` in a server built without uploads: 501, saying so.
#[cfg(not(feature = "uploads"))]
fn packages_route(_state: &AppState) -> axum::routing::MethodRouter<Arc<AppState>> {
    post(|| async {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "uploads_disabled",
            "this server was built without package uploads (plugin-http's `uploads` feature); \
             install packages with `plugctl install`, or build the server with the feature",
        )
    })
}

/// Any other path under `/api/v1`.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "the management API has no route {uri}; see GET {}/openapi.json for its routes",
            crate::API_PREFIX
        ),
    )
}

/// The error for a request axum could not extract (its status and text): bad JSON or a
/// body of the wrong shape is 400 `invalid_input`, an oversize body 413.
fn rejected(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "payload_too_large", text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(status, "unsupported_media_type", text),
        s if s.is_server_error() => ApiError::new(s, "host", text),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", text),
    }
}

/// A JSON request body read as `T`, its parsed size charged to the request's memory budget
/// before it is parsed (see the `budget` module). Refusals as [`rejected`] makes them: 415
/// without a JSON content type, 400 for JSON that does not parse into `T`, 413 or 503 from
/// the budget.
pub(crate) struct BudgetedJson<T>(pub(crate) T);

impl<T> axum::extract::FromRequest<Arc<AppState>> for BudgetedJson<T>
where
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| {
                let media = media.trim().to_ascii_lowercase();
                media == "application/json"
                    || (media.starts_with("application/") && media.ends_with("+json"))
            });
        if !json {
            return Err(rejected(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`".to_owned(),
            ));
        }
        crate::budget::check_length(request.headers(), state.options.body_limit)?;
        let reservation = crate::budget::reservation_of(request.extensions());
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|r| rejected(r.status(), r.body_text()))?;
        if let Some(reservation) = reservation {
            reservation.charge(
                crate::budget::json_tree_bound(&body),
                "the JSON body once parsed",
            )?;
        }
        let value = serde_json::from_slice(&body).map_err(|err| {
            rejected(
                StatusCode::BAD_REQUEST,
                format!("Failed to deserialize the JSON body into the target type: {err}"),
            )
        })?;
        Ok(BudgetedJson(value))
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T, F>(what: &str, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "host",
            format!("{what} failed in the host: {join}"),
        ))
    })
}

/// Whether `err` says a plugin folder failed a check of the loader, or its `on_load`.
fn is_check_error(err: &plugin_host::Error) -> bool {
    use plugin_host::Error as E;
    matches!(
        err,
        E::Manifest(_)
            | E::HostVersion { .. }
            | E::UnsupportedSource { .. }
            | E::LibraryMissing { .. }
            | E::LibraryOutsideFolder { .. }
            | E::LibraryNotFile { .. }
            | E::ChecksumMismatch { .. }
            | E::NotAPlugin { .. }
            | E::AbiMismatch { .. }
            | E::IdentityMismatch { .. }
            | E::OnLoad { .. }
            | E::Writable { .. }
            | E::NotOwned { .. }
            | E::FolderOutsideBase { .. }
    )
}

/// The error for a lifecycle operation: the host's mapping, plus 409 for a conflict with the
/// plugin's state and 422 for a plugin that fails its checks.
fn lifecycle_error(err: &plugin_host::Error) -> ApiError {
    use plugin_host::Error as E;
    let conflict = |kind: &str| ApiError::new(StatusCode::CONFLICT, kind, err.report());
    match err {
        E::AlreadyLoaded { .. } => conflict("already_loaded"),
        E::Disabled { .. } => conflict("disabled"),
        E::Downgrade { .. } => conflict("downgrade"),
        _ if is_check_error(err) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
            err.report(),
        ),
        _ => ApiError::from_host(err),
    }
}
