//! The API's request and response bodies, as JSON and as OpenAPI schemas.

use std::collections::BTreeMap;

use plugin_host::{Drain, Manifest, PluginStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One route a plugin declares in `http_services`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct RouteEntry {
    /// The path pattern, as written in `plugin.json` (`/api/plugin/sample/:id` or `{id}`).
    pub(crate) route: String,
    /// The HTTP method, uppercase.
    pub(crate) method: String,
    /// The label the call is made with.
    pub(crate) label: String,
}

impl RouteEntry {
    /// The routes `manifest` declares.
    pub(crate) fn of(manifest: &Manifest) -> Vec<RouteEntry> {
        manifest
            .http_services
            .iter()
            .flat_map(|services| &services.routes)
            .map(|r| RouteEntry {
                route: r.route.clone(),
                method: r.method.as_str().to_owned(),
                label: r.label.clone(),
            })
            .collect()
    }
}

/// One plugin in `GET /api/v1/plugins`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct PluginEntry {
    /// The plugin (folder) name.
    pub(crate) name: String,
    /// `discovered`, `active`, `disabled`, `failed`, `unloading` or `unloaded`.
    pub(crate) state: String,
    /// Why its last load failed, for a `failed` plugin.
    pub(crate) reason: Option<String>,
    /// Whether it is disabled in the base directory's state file.
    pub(crate) disabled: bool,
    /// The active version, if one is loaded.
    pub(crate) version: Option<String>,
    /// Calls running now, on the active version and on versions still draining.
    pub(crate) calls_in_flight: usize,
    /// Of those, calls that ignored cancellation when their version was retired.
    pub(crate) stuck_calls: usize,
    /// Libraries this plugin has mapped into the process (never closed).
    pub(crate) retained_libraries: usize,
    /// Where the active version runs: `in-process` or `process`.
    pub(crate) isolation: Option<String>,
    /// Its worker process, in process isolation.
    pub(crate) worker: Option<WorkerEntry>,
    /// The routes the active version declares in `http_services`.
    pub(crate) routes: Vec<RouteEntry>,
}

/// A process-isolated plugin's worker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct WorkerEntry {
    /// The worker's process id, while one runs.
    pub(crate) pid: Option<u32>,
    /// Times the worker was restarted after it ended.
    pub(crate) restarts: u32,
    /// How the last worker ended, if one did (e.g. `was killed by signal 11 (SIGSEGV)`).
    pub(crate) last_exit: Option<String>,
    /// Why the plugin is quarantined, if it is.
    pub(crate) quarantined: Option<String>,
}

impl PluginEntry {
    /// The entry for a plugin the manager knows.
    pub(crate) fn of(status: &PluginStatus, disabled: bool) -> PluginEntry {
        PluginEntry {
            name: status.name.clone(),
            state: status.state.as_str().to_owned(),
            reason: match &status.state {
                plugin_host::PluginState::Failed(reason) => Some(reason.clone()),
                _ => None,
            },
            disabled,
            version: status.active.as_ref().map(|s| s.version.to_string()),
            calls_in_flight: status.calls_in_flight,
            stuck_calls: status.stuck_calls,
            retained_libraries: status.retained_libraries,
            isolation: status.active.as_ref().map(|s| s.isolation.to_string()),
            worker: status
                .active
                .as_ref()
                .and_then(|s| s.worker.as_ref())
                .map(|w| WorkerEntry {
                    pid: w.pid,
                    restarts: w.restarts,
                    last_exit: w.last_exit.as_ref().map(ToString::to_string),
                    quarantined: w.quarantined.clone(),
                }),
            routes: status
                .active
                .as_ref()
                .map(|s| RouteEntry::of(&s.manifest))
                .unwrap_or_default(),
        }
    }

    /// The entry for a plugin folder the manager does not know (never loaded, or unloaded).
    pub(crate) fn folder(name: &str, disabled: bool) -> PluginEntry {
        PluginEntry {
            name: name.to_owned(),
            state: if disabled { "disabled" } else { "discovered" }.to_owned(),
            reason: None,
            disabled,
            version: None,
            calls_in_flight: 0,
            stuck_calls: 0,
            retained_libraries: 0,
            isolation: None,
            worker: None,
            routes: Vec::new(),
        }
    }
}

/// `GET /api/v1/plugins`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PluginList {
    /// Every plugin the manager knows and every plugin folder in its base directory, sorted
    /// by name.
    pub(crate) plugins: Vec<PluginEntry>,
}

/// A plugin's counters.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PluginStats {
    /// Calls running now.
    pub(crate) calls_in_flight: usize,
    /// Of those, calls that ignored cancellation when their version was retired.
    pub(crate) stuck_calls: usize,
    /// Libraries this plugin has mapped into the process (never closed).
    pub(crate) retained_libraries: usize,
}

/// `GET /api/v1/plugins/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PluginDetail {
    /// The plugin (folder) name.
    pub(crate) name: String,
    /// `discovered`, `active`, `disabled`, `failed`, `unloading` or `unloaded`.
    pub(crate) state: String,
    /// Why its last load failed, for a `failed` plugin.
    pub(crate) reason: Option<String>,
    /// Whether it is disabled in the base directory's state file.
    pub(crate) disabled: bool,
    /// The active version.
    pub(crate) version: Option<String>,
    /// The plugin-sdk version the active version was built with.
    pub(crate) sdk_version: Option<String>,
    /// When the active version was loaded (RFC 3339, UTC).
    pub(crate) loaded_at: Option<String>,
    /// The private copy the running code was loaded from.
    pub(crate) running_copy: Option<String>,
    /// The plugin folder the active version was loaded from.
    pub(crate) dir: Option<String>,
    /// The active version's validated `plugin.json`.
    pub(crate) manifest: Option<serde_json::Value>,
    /// Where the active version runs: `in-process` or `process`.
    pub(crate) isolation: Option<String>,
    /// Its worker process, in process isolation.
    pub(crate) worker: Option<WorkerEntry>,
    /// The routes the active version declares in `http_services`.
    pub(crate) routes: Vec<RouteEntry>,
    /// Its counters.
    pub(crate) stats: PluginStats,
    /// What this server counted of the plugin's calls: calls, errors by kind, panics, in
    /// flight, stuck, rejected, loads, upgrades, unloads, and latency (mean, max, p50, p99).
    pub(crate) metrics: Option<serde_json::Value>,
}

/// `POST /api/v1/plugins/{name}/execute`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecuteRequest {
    /// The context values to call the plugin with.
    #[serde(default)]
    pub(crate) values: BTreeMap<String, serde_json::Value>,
    /// The routing label of the call.
    pub(crate) label: Option<String>,
    /// The call's deadline, in milliseconds; capped to the server's request timeout.
    pub(crate) timeout_ms: Option<u64>,
}

/// The answer to a successful execute.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExecuteResponse {
    /// Every context value after the call.
    pub(crate) values: BTreeMap<String, serde_json::Value>,
}

/// How the calls on a retired version ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DrainReport {
    /// Whether every call returned.
    pub(crate) clean: bool,
    /// Calls that ignored cancellation and still run on the retired code.
    pub(crate) stuck_calls: usize,
    /// In process isolation: calls that ignored cancellation, ended by killing the retired
    /// version's worker.
    pub(crate) killed_calls: usize,
}

impl From<Drain> for DrainReport {
    fn from(drain: Drain) -> Self {
        DrainReport {
            clean: drain.is_clean(),
            stuck_calls: match drain {
                Drain::Stuck { calls } => calls,
                _ => 0,
            },
            killed_calls: match drain {
                Drain::Killed { calls } => calls,
                _ => 0,
            },
        }
    }
}

/// The answer to `load`, `unload`, `reload`, `enable` and `disable`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LifecycleResponse {
    /// The plugin.
    pub(crate) name: String,
    /// Its state after the operation.
    pub(crate) state: String,
    /// The version active after the operation.
    pub(crate) version: Option<String>,
    /// For `reload`: the version that was running before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) previous: Option<String>,
    /// For `unload` and `reload`: how the calls on the retired version ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drain: Option<DrainReport>,
}

/// The query of `POST /api/v1/packages`.
#[cfg(feature = "uploads")]
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// Install a lower version than the one installed (a downgrade).
    #[serde(default)]
    pub(crate) force: bool,
}

/// The form of `POST /api/v1/packages` (described for OpenAPI; read part by part).
#[cfg(feature = "uploads")]
#[derive(ToSchema)]
#[allow(dead_code)] // Only described in the OpenAPI document.
pub(crate) struct UploadForm {
    /// The `.plg` package file.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    package: Vec<u8>,
    /// The text of its `.plg.minisig` signature.
    signature: Option<String>,
}

/// The answer to a successful upload.
#[cfg(feature = "uploads")]
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstallResponse {
    /// The plugin.
    pub(crate) name: String,
    /// The version installed.
    pub(crate) version: String,
    /// The version it replaced in the base directory, if any.
    pub(crate) previous: Option<String>,
    /// The ID of the key that signed the package.
    pub(crate) signed_by: Option<String>,
    /// Whether a running version was replaced by a hot upgrade.
    pub(crate) upgraded: bool,
    /// For a hot upgrade: how the calls on the old version ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drain: Option<DrainReport>,
    /// The plugin's state after the install (`active`, or `disabled` if it is disabled).
    pub(crate) state: String,
}

/// Every error's body.
#[derive(ToSchema)]
#[allow(dead_code)] // Only described in the OpenAPI document; `ApiError` writes the JSON.
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
#[allow(dead_code)] // Only described in the OpenAPI document.
pub(crate) struct ErrorDetail {
    /// A stable snake_case kind: `invalid_input`, `not_found`, `unauthorized`, ...
    kind: String,
    /// What happened, for people.
    message: String,
}

/// `GET /api/v1/routes`: the plugin routes served now, and those refused.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RouteTableResponse {
    /// The routes served, sorted by route then method.
    pub(crate) routes: Vec<crate::routes::MountedRoute>,
    /// The routes plugins declare that are not served, each with the reason (another plugin
    /// holds it, it lies on the server's own paths, or its driver is not served).
    pub(crate) refused: Vec<crate::routes::RouteRefusal>,
}
