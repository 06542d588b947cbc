//! The plugin routes of the API: list, describe, execute, and the lifecycle operations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, State};
use axum::http::StatusCode;
use axum::Json;
use plugin_host::PluginManager;

use super::types::{
    ExecuteRequest, ExecuteResponse, LifecycleResponse, PluginDetail, PluginEntry, PluginList,
    PluginStats, RouteEntry,
};
use super::{blocking, lifecycle_error, rejected, BudgetedJson};
use crate::call;
use crate::error::ApiError;
use crate::state::AppState;

/// Every plugin the manager knows, then every folder of its base directory it does not (a
/// plugin never loaded, or unloaded), sorted by name.
fn entries(manager: &PluginManager) -> Vec<PluginEntry> {
    let mut list: Vec<PluginEntry> = manager
        .list()
        .iter()
        .map(|status| PluginEntry::of(status, manager.is_disabled(&status.name)))
        .collect();
    match plugin_host::discover::discover(manager.base_dir()) {
        Ok(found) => {
            for folder in found {
                if !list.iter().any(|entry| entry.name == folder.name) {
                    let disabled = manager.is_disabled(&folder.name);
                    list.push(PluginEntry::folder(&folder.name, disabled));
                }
            }
        }
        Err(err) => tracing::warn!("listing plugin folders: {}", err.report()),
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// The 404 for a name that is neither a plugin nor a plugin folder.
fn unknown_plugin(manager: &PluginManager, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no plugin named `{name}` is loaded, and {} holds no folder of that name; check \
             the name with GET /api/v1/plugins",
            manager.base_dir().display()
        ),
    )
}

/// Lists the plugin routes served now, and the routes refused with their reasons.
#[utoipa::path(
    get, path = "/api/v1/routes", tag = "plugins",
    responses(
        (status = 200, description = "The route table", body = super::types::RouteTableResponse),
        (status = 401, description = "Missing or wrong token", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn routes(
    State(state): State<Arc<AppState>>,
) -> Json<super::types::RouteTableResponse> {
    Json(super::types::RouteTableResponse {
        routes: state.routes.routes(),
        refused: state.routes.refusals(),
    })
}

/// Lists the plugins.
#[utoipa::path(
    get, path = "/api/v1/plugins", tag = "plugins",
    responses(
        (status = 200, description = "Every plugin, sorted by name", body = PluginList),
        (status = 401, description = "Missing or wrong token", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(State(state): State<Arc<AppState>>) -> Result<Json<PluginList>, ApiError> {
    let manager = state.manager.clone();
    blocking("listing the plugins", move || {
        Ok(Json(PluginList {
            plugins: entries(&manager),
        }))
    })
    .await
}

/// Describes one plugin.
#[utoipa::path(
    get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "The plugin (folder) name")),
    responses(
        (status = 200, description = "The plugin", body = PluginDetail),
        (status = 404, description = "No such plugin", body = super::types::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn describe(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PluginDetail>, ApiError> {
    let Path(name) = name.map_err(|r| rejected(r.status(), r.body_text()))?;
    let manager = state.manager.clone();
    let metrics = serde_json::to_value(state.metrics.stats(&name)).ok();
    blocking("describing a plugin", move || {
        let disabled = manager.is_disabled(&name);
        let Some(status) = manager.list().into_iter().find(|s| s.name == name) else {
            let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
            if plain && manager.base_dir().join(&name).is_dir() {
                return Ok(Json(detail(
                    PluginEntry::folder(&name, disabled),
                    None,
                    metrics,
                )));
            }
            return Err(unknown_plugin(&manager, &name));
        };
        let entry = PluginEntry::of(&status, disabled);
        Ok(Json(detail(entry, status.active.as_ref(), metrics)))
    })
    .await
}

fn detail(
    entry: PluginEntry,
    summary: Option<&plugin_host::PluginSummary>,
    metrics: Option<serde_json::Value>,
) -> PluginDetail {
    // The summary's own serialization writes `loaded_at` as RFC 3339.
    let json = summary.and_then(|s| serde_json::to_value(s).ok());
    let field = |key: &str| json.as_ref().and_then(|j| j.get(key)).cloned();
    PluginDetail {
        name: entry.name,
        state: entry.state,
        reason: entry.reason,
        disabled: entry.disabled,
        version: entry.version,
        sdk_version: summary.map(|s| s.sdk_version.clone()),
        loaded_at: field("loaded_at").and_then(|v| v.as_str().map(str::to_owned)),
        running_copy: summary.map(|s| s.running_copy.display().to_string()),
        dir: summary.map(|s| s.dir.display().to_string()),
        manifest: field("manifest"),
        isolation: entry.isolation,
        worker: entry.worker,
        routes: summary
            .map(|s| RouteEntry::of(&s.manifest))
            .unwrap_or_default(),
        stats: PluginStats {
            calls_in_flight: entry.calls_in_flight,
            stuck_calls: entry.stuck_calls,
            retained_libraries: entry.retained_libraries,
        },
        metrics,
    }
}

/// Calls a plugin with the given context values.
#[utoipa::path(
    post, path = "/api/v1/plugins/{name}/execute", tag = "plugins",
    params(("name" = String, Path, description = "The plugin (folder) name")),
    request_body = ExecuteRequest,
    responses(
        (status = 200, description = "The context values after the call", body = ExecuteResponse),
        (status = 400, description = "Bad request body, or the plugin refused its input", body = super::types::ErrorBody),
        (status = 404, description = "No such plugin loaded", body = super::types::ErrorBody),
        (status = 413, description = "Body over the server's body limit"),
        (status = 503, description = "Plugin not active, or too many calls in flight", body = super::types::ErrorBody),
        (status = 504, description = "The call ran past its deadline", body = super::types::ErrorBody),
        (status = 500, description = "The plugin failed or panicked", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn execute(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    request: axum::extract::Request,
) -> Result<Json<ExecuteResponse>, ApiError> {
    let Path(name) = name.map_err(|r| rejected(r.status(), r.body_text()))?;
    // Admitted before the body is read: a plugin at its cap costs no memory.
    let admission = call::admit(&state, &name)?;
    let BudgetedJson(request) =
        <BudgetedJson<ExecuteRequest> as FromRequest<_>>::from_request(request, &state).await?;
    let mut ctx = call::context(&state);
    if let Some(ms) = request.timeout_ms {
        let timeout = Duration::from_millis(ms).min(state.options.request_timeout);
        ctx = ctx.child_with_timeout(timeout);
    }
    if let Some(label) = request.label {
        ctx = ctx.with_label(label);
    }
    for (key, value) in &request.values {
        ctx.set(key, value).map_err(|err| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                format!(
                    "value `{key}` of the request cannot be passed to plugin `{name}`: {}",
                    err.report()
                ),
            )
        })?;
    }
    let ctx = call::run(&state, admission, ctx).await?;
    let values = ctx.values().map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid_response",
            format!("plugin `{name}` left a context value this server cannot read: {err}"),
        )
    })?;
    let values: BTreeMap<String, serde_json::Value> = values
        .into_iter()
        .map(|(key, value)| {
            let json = serde_json::to_value(&value).unwrap_or(serde_json::Value::Null);
            (key, json)
        })
        .collect();
    Ok(Json(ExecuteResponse { values }))
}

/// A lifecycle operation of the manager.
#[derive(Debug, Clone, Copy)]
enum Action {
    Load,
    Unload,
    Reload,
    Enable,
    Disable,
}

/// Runs `action` on plugin `name` on the blocking pool (unloads drain, and may take seconds).
async fn lifecycle(
    state: Arc<AppState>,
    name: Result<Path<String>, PathRejection>,
    action: Action,
) -> Result<Json<LifecycleResponse>, ApiError> {
    let Path(name) = name.map_err(|r| rejected(r.status(), r.body_text()))?;
    let manager = state.manager.clone();
    blocking("a lifecycle operation", move || {
        let mut response = LifecycleResponse {
            name: name.clone(),
            state: String::new(),
            version: None,
            previous: None,
            drain: None,
        };
        let fail = |err: plugin_host::Error| lifecycle_error(&err);
        match action {
            Action::Load => manager.load_plugin(&name).map_err(fail)?,
            Action::Unload => response.drain = Some(manager.unload(&name).map_err(fail)?.into()),
            Action::Reload => {
                let upgraded = manager.reload(&name).map_err(fail)?;
                response.previous = upgraded.from.map(|v| v.to_string());
                response.drain = Some(upgraded.drain.into());
            }
            Action::Enable => manager.enable(&name).map_err(fail)?,
            Action::Disable => manager.disable(&name).map_err(fail)?,
        }
        response.state = match manager.state(&name) {
            Some(state) => state.as_str().to_owned(),
            None if manager.is_disabled(&name) => "disabled".to_owned(),
            None => "unloaded".to_owned(),
        };
        response.version = manager
            .get(&name)
            .ok()
            .and_then(|handle| handle.summary())
            .map(|summary| summary.version.to_string());
        Ok(Json(response))
    })
    .await
}

macro_rules! lifecycle_route {
    ($fn:ident, $action:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post, path = $path, tag = "plugins",
            params(("name" = String, Path, description = "The plugin (folder) name")),
            responses(
                (status = 200, description = "Done; the plugin's state after it", body = LifecycleResponse),
                (status = 404, description = "No such plugin (folder)", body = super::types::ErrorBody),
                (status = 409, description = "Already loaded, disabled, or a downgrade", body = super::types::ErrorBody),
                (status = 422, description = "The plugin failed its checks or its on_load", body = super::types::ErrorBody),
                (status = 401, description = "Missing or wrong token", body = super::types::ErrorBody),
            ),
            security(("bearer" = []))
        )]
        pub(crate) async fn $fn(
            State(state): State<Arc<AppState>>,
            name: Result<Path<String>, PathRejection>,
        ) -> Result<Json<LifecycleResponse>, ApiError> {
            lifecycle(state, name, $action).await
        }
    };
}

lifecycle_route!(
    load,
    Action::Load,
    "/api/v1/plugins/{name}/load",
    "Loads a plugin from its folder."
);
lifecycle_route!(
    unload,
    Action::Unload,
    "/api/v1/plugins/{name}/unload",
    "Unloads a plugin, draining its calls."
);
lifecycle_route!(
    reload,
    Action::Reload,
    "/api/v1/plugins/{name}/reload",
    "Reloads a plugin from its folder: a hot upgrade."
);
lifecycle_route!(
    enable,
    Action::Enable,
    "/api/v1/plugins/{name}/enable",
    "Enables a plugin and loads it."
);
lifecycle_route!(
    disable,
    Action::Disable,
    "/api/v1/plugins/{name}/disable",
    "Disables a plugin: unloads it and keeps it from loading."
);
