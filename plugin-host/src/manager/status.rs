//! What the manager reports: plugin states, lifecycle events, load reports, statuses.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

use crate::isolate::{Isolation, WorkerExit, WorkerStatus};
use crate::load::Loaded;
use crate::manifest::Manifest;
use crate::Error;

/// The lifecycle state of a plugin.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum PluginState {
    /// Its folder was found but it has not been loaded yet.
    Discovered,
    /// Loaded and serving calls.
    Active,
    /// Disabled by the operator: discovered, never loaded.
    Disabled,
    /// Its last load failed, for this reason; it serves no calls.
    Failed(String),
    /// Being unloaded: new calls are refused, calls in flight are draining.
    Unloading,
    /// Unloaded; handles to it refuse calls.
    Unloaded,
}

impl PluginState {
    /// A short name: `discovered`, `active`, `disabled`, `failed`, `unloading`, `unloaded`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginState::Discovered => "discovered",
            PluginState::Active => "active",
            PluginState::Disabled => "disabled",
            PluginState::Failed(_) => "failed",
            PluginState::Unloading => "unloading",
            PluginState::Unloaded => "unloaded",
        }
    }
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the calls on a version that was unloaded or replaced ended.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "drain", rename_all = "snake_case")]
pub enum Drain {
    /// Every call returned (in time, or once its context was cancelled), and the old
    /// version's `on_unload` ran.
    Clean,
    /// `calls` calls ignored cancellation and still run on the old code. They stay counted
    /// in [`PluginStatus::stuck_calls`] (and `calls_in_flight`); the old version's
    /// `on_unload` runs when the last of them returns.
    Stuck {
        /// How many calls still run.
        calls: usize,
    },
    /// In process isolation: `calls` calls ignored cancellation, so the worker was killed;
    /// they returned [`Error::WorkerCrashed`], nothing of the old version runs any more, and
    /// its `on_unload` did not run.
    Killed {
        /// How many calls were ended.
        calls: usize,
    },
}

impl Drain {
    /// Whether no call of the old version runs any more.
    pub fn is_clean(&self) -> bool {
        matches!(self, Drain::Clean | Drain::Killed { .. })
    }
}

/// Something that happened to a plugin, as seen by listeners
/// ([`PluginManager::add_listener`](crate::PluginManager::add_listener), [`PluginManager::subscribe`](crate::PluginManager::subscribe)).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The plugin was loaded and is active.
    Loaded {
        /// The plugin.
        name: String,
        /// Its version.
        version: semver::Version,
    },
    /// A new version replaced the running one.
    Upgraded {
        /// The plugin.
        name: String,
        /// The version that was running.
        from: semver::Version,
        /// The version now running.
        to: semver::Version,
    },
    /// The plugin was unloaded.
    Unloaded {
        /// The plugin.
        name: String,
    },
    /// A load or upgrade failed. After a failed upgrade, the old version is still active.
    Failed {
        /// The plugin.
        name: String,
        /// Why.
        error: String,
    },
    /// The plugin was enabled.
    Enabled {
        /// The plugin.
        name: String,
    },
    /// The plugin was disabled.
    Disabled {
        /// The plugin.
        name: String,
    },
    /// An unload or upgrade gave up waiting: calls on the old version ignored cancellation
    /// and still run. Its `on_unload` runs when the last of them returns.
    Stuck {
        /// The plugin.
        name: String,
        /// The version the calls run on.
        version: semver::Version,
        /// How many calls still run.
        calls: usize,
    },
    /// A process-isolated plugin's worker ended unexpectedly; calls in flight on it failed
    /// with [`Error::WorkerCrashed`].
    WorkerCrashed {
        /// The plugin.
        name: String,
        /// How the worker ended.
        exit: WorkerExit,
        /// When it restarts, in milliseconds from now; `None` when the plugin is
        /// quarantined instead.
        restart_in_ms: Option<u64>,
    },
    /// A process-isolated plugin crashed too often: it is quarantined (state failed) until
    /// it is reloaded or enabled.
    Quarantined {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
    },
    /// The last stuck call of a retired version returned, and its `on_unload` ran.
    Drained {
        /// The plugin.
        name: String,
        /// The retired version.
        version: semver::Version,
        /// The error of its `on_unload`, if it failed.
        on_unload: Option<String>,
    },
}

impl Event {
    /// The plugin the event concerns.
    pub fn plugin(&self) -> &str {
        match self {
            Event::Loaded { name, .. }
            | Event::Upgraded { name, .. }
            | Event::Unloaded { name }
            | Event::Failed { name, .. }
            | Event::Enabled { name }
            | Event::Disabled { name }
            | Event::Stuck { name, .. }
            | Event::WorkerCrashed { name, .. }
            | Event::Quarantined { name, .. }
            | Event::Drained { name, .. } => name,
        }
    }
}

/// The outcome of loading one plugin folder.
#[non_exhaustive]
#[derive(Debug)]
pub struct LoadOutcome {
    /// The folder name.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// `Ok` if the plugin is loaded (now, or already before) or disabled, otherwise why not.
    pub result: Result<(), Error>,
}

/// What [`PluginManager::load_plugins`](crate::PluginManager::load_plugins) did with every folder under the base directory.
#[non_exhaustive]
#[derive(Debug, Default)]
pub struct LoadReport {
    /// One outcome per folder, sorted by name.
    pub outcomes: Vec<LoadOutcome>,
}

impl LoadReport {
    /// Names of the folders that did not fail (loaded, or disabled).
    pub fn loaded(&self) -> impl Iterator<Item = &str> {
        self.outcomes
            .iter()
            .filter(|o| o.result.is_ok())
            .map(|o| o.name.as_str())
    }

    /// Folders that failed, with their errors.
    pub fn failed(&self) -> impl Iterator<Item = (&str, &Error)> {
        self.outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(|e| (o.name.as_str(), e)))
    }

    /// The error for the folder `name`, if it failed.
    pub fn error(&self, name: &str) -> Option<&Error> {
        self.outcomes
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.result.as_ref().err())
    }

    /// Whether no folder failed.
    pub fn all_loaded(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }
}

/// A description of one loaded version of a plugin, as `plugctl info` shows it.
#[non_exhaustive]
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    /// The plugin name (equal to its folder name).
    pub name: String,
    /// The plugin version.
    pub version: semver::Version,
    /// The plugin folder the version was loaded from.
    pub dir: PathBuf,
    /// The library in that folder.
    pub library: PathBuf,
    /// The private copy the running code was loaded from: a file's path, or on Linux, where
    /// the copy is an anonymous memory file, `memfd:plugin:<name>-<version>`, the name its
    /// mappings have in `/proc/<pid>/maps` (not a path that can be opened).
    pub running_copy: PathBuf,
    /// The `plugin-sdk` version the plugin was built with.
    pub sdk_version: String,
    /// When it was loaded (in JSON: RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    pub loaded_at: SystemTime,
    /// Whether the plugin exports an `on_load` hook.
    pub has_on_load: bool,
    /// Whether the plugin exports an `on_unload` hook.
    pub has_on_unload: bool,
    /// Where it runs: in this process or in a worker process.
    pub isolation: Isolation,
    /// Its worker process, in process isolation.
    pub worker: Option<WorkerStatus>,
    /// The full, validated `plugin.json`.
    pub manifest: Manifest,
}

impl PluginSummary {
    pub(super) fn of(loaded: &Loaded) -> Self {
        let (hooks, isolation, worker) = (
            loaded.code.hooks(),
            loaded.code.isolation(),
            loaded.code.worker(),
        );
        PluginSummary {
            name: loaded.manifest.name.clone(),
            version: loaded.manifest.version.clone(),
            dir: loaded.dir.clone(),
            library: loaded.library.clone(),
            running_copy: loaded.copy.shown(),
            sdk_version: loaded.sdk_version.clone(),
            loaded_at: loaded.loaded_at,
            has_on_load: hooks.0,
            has_on_unload: hooks.1,
            isolation,
            worker,
            manifest: loaded.manifest.clone(),
        }
    }
}

/// The status of one plugin, as [`PluginManager::list`](crate::PluginManager::list) and `plugctl list` show it.
#[non_exhaustive]
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// The plugin (folder) name.
    pub name: String,
    /// Its lifecycle state.
    #[serde(flatten)]
    pub state: PluginState,
    /// The active version, if any.
    pub active: Option<PluginSummary>,
    /// Calls running right now (on the active version and on versions still draining).
    pub calls_in_flight: usize,
    /// Of those, the calls on versions whose drain gave up: they ignored cancellation and
    /// hold the old code (see [`Drain::Stuck`]).
    pub stuck_calls: usize,
    /// Libraries this plugin has mapped into the process since the manager started: they
    /// are never closed (see the crate docs).
    pub retained_libraries: usize,
}

/// What an upgrade did.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upgraded {
    /// The plugin.
    pub name: String,
    /// The version that was running (`None` if none was).
    pub from: Option<semver::Version>,
    /// The version now running.
    pub to: semver::Version,
    /// How the calls on the version that was running ended.
    pub drain: Drain,
}

/// What [`PluginManager::shutdown`](crate::PluginManager::shutdown) did with one plugin.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShutdownOutcome {
    /// The plugin.
    pub name: String,
    /// How its calls ended, or why its unload failed (its `on_unload` returned an error).
    pub result: Result<Drain, Error>,
}

/// Options of [`PluginManager::upgrade`](crate::PluginManager::upgrade).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpgradeOptions {
    /// Accept a version lower than the running one (refused by default: a replayed old
    /// version is a downgrade attack).
    pub allow_downgrade: bool,
}

impl UpgradeOptions {
    /// The defaults: no downgrade.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept a lower version than the running one.
    pub fn allow_downgrade(mut self, allow: bool) -> Self {
        self.allow_downgrade = allow;
        self
    }
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*time))
}
