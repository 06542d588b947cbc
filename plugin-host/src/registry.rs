//! The plugin manager: names to loaded plugins, and the call path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use plugin_abi::abi_stable::sabi_types::RRef;
use plugin_abi::abi_stable::std_types::RResult;
use plugin_abi::{HostContext_TO, PluginError};
use serde::Serialize;

use crate::context::CallContext;
use crate::discover::discover;
use crate::load::{load, LoadConfig, Loaded};
use crate::manifest::Manifest;
use crate::{Context, Error};

/// A registry of plugins loaded from the folders of one base directory.
///
/// # Examples
///
/// ```no_run
/// use plugin_host::{Context, PluginManager};
///
/// let manager = PluginManager::new("plugins");
/// let report = manager.load_plugins()?;
/// for (name, err) in report.failed() {
///     eprintln!("{name}: {err}");
/// }
/// let hello = manager.get("hello")?;
/// let ctx = Context::background();
/// ctx.set("sample", &serde_json::json!({ "name": "world" }))?;
/// hello.execute(&ctx)?;
/// println!("{:?}", ctx.get::<String>("greeting")?);
/// # Ok::<(), plugin_host::Error>(())
/// ```
pub struct PluginManager {
    base_dir: PathBuf,
    host_version: semver::Version,
    copy_dir: CopyDir,
    drain_timeout: Duration,
    /// Read on every `get`; replaced whole (copy on write) by load and unload.
    plugins: ArcSwap<HashMap<String, Arc<Slot>>>,
    /// Serialises changes to `plugins`.
    write: Mutex<()>,
}

enum CopyDir {
    Given(PathBuf),
    Temp(OnceLock<Result<tempfile::TempDir, String>>),
}

/// One plugin name in the registry. Handles point here, so a handle sees upgrades and
/// unloads.
struct Slot {
    name: String,
    current: ArcSwapOption<Loaded>,
}

/// Configures a [`PluginManager`].
#[derive(Debug, Clone)]
pub struct PluginManagerBuilder {
    base_dir: PathBuf,
    host_version: semver::Version,
    copy_dir: Option<PathBuf>,
    drain_timeout: Duration,
}

impl PluginManagerBuilder {
    /// The version of the host application, checked against each plugin's `requires.host`.
    /// Defaults to the version of `plugin-host`.
    pub fn host_version(mut self, version: semver::Version) -> Self {
        self.host_version = version;
        self
    }

    /// Where private copies of plugin libraries are written. Defaults to a fresh private
    /// temporary directory, removed when the manager is dropped.
    pub fn copy_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.copy_dir = Some(dir.into());
        self
    }

    /// How long an unload waits for calls in flight to finish. Defaults to 30 seconds.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Builds the manager. Nothing is loaded until [`PluginManager::load_plugins`] or
    /// [`PluginManager::load_plugin`] is called.
    pub fn build(self) -> PluginManager {
        PluginManager {
            base_dir: self.base_dir,
            host_version: self.host_version,
            copy_dir: match self.copy_dir {
                Some(dir) => CopyDir::Given(dir),
                None => CopyDir::Temp(OnceLock::new()),
            },
            drain_timeout: self.drain_timeout,
            plugins: ArcSwap::from_pointee(HashMap::new()),
            write: Mutex::new(()),
        }
    }
}

/// The outcome of loading one plugin folder.
#[derive(Debug)]
pub struct LoadOutcome {
    /// The folder name.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// `Ok` if the plugin is loaded (now, or already before), otherwise why not.
    pub result: Result<(), Error>,
}

/// What [`PluginManager::load_plugins`] did with every folder under the base directory.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// One outcome per folder, sorted by name.
    pub outcomes: Vec<LoadOutcome>,
}

impl LoadReport {
    /// Names of the plugins that are loaded.
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

    /// Whether every folder loaded.
    pub fn all_loaded(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }
}

/// A description of one loaded plugin, as `list()` and `plugctl info` show it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    /// The plugin name (equal to its folder name).
    pub name: String,
    /// The plugin version.
    pub version: String,
    /// The plugin folder.
    pub dir: PathBuf,
    /// The library in the plugin folder.
    pub library: PathBuf,
    /// The private copy the running code was loaded from.
    pub running_copy: PathBuf,
    /// The `plugin-sdk` version the plugin was built with.
    pub sdk_version: String,
    /// When it was loaded, in milliseconds since the Unix epoch.
    pub loaded_at_unix_ms: u64,
    /// Whether the plugin exports an `on_load` hook.
    pub has_on_load: bool,
    /// Whether the plugin exports an `on_unload` hook.
    pub has_on_unload: bool,
    /// The full, validated `plugin.json`.
    pub manifest: Manifest,
}

impl PluginSummary {
    fn of(loaded: &Loaded) -> Self {
        PluginSummary {
            name: loaded.manifest.name.clone(),
            version: loaded.manifest.version.to_string(),
            dir: loaded.dir.clone(),
            library: loaded.library.clone(),
            running_copy: loaded.copy.clone(),
            sdk_version: loaded.sdk_version.clone(),
            loaded_at_unix_ms: loaded
                .loaded_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            has_on_load: loaded.module.on_load().is_some(),
            has_on_unload: loaded.module.on_unload().is_some(),
            manifest: loaded.manifest.clone(),
        }
    }
}

impl PluginManager {
    /// A manager for the plugin folders under `base_dir`, with default settings.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        Self::builder(base_dir).build()
    }

    /// A builder for a manager of the plugin folders under `base_dir`.
    pub fn builder(base_dir: impl Into<PathBuf>) -> PluginManagerBuilder {
        PluginManagerBuilder {
            base_dir: base_dir.into(),
            host_version: semver::Version::parse(env!("CARGO_PKG_VERSION"))
                .expect("the crate version is valid semver"),
            copy_dir: None,
            drain_timeout: Duration::from_secs(30),
        }
    }

    /// The base directory.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The host version checked against `requires.host`.
    pub fn host_version(&self) -> &semver::Version {
        &self.host_version
    }

    /// Discovers every plugin folder and loads each one not loaded yet.
    ///
    /// One plugin failing never stops the others: the report holds every folder's outcome.
    /// Only an unreadable base directory is an error.
    pub fn load_plugins(&self) -> Result<LoadReport, Error> {
        let mut report = LoadReport::default();
        for found in discover(&self.base_dir)? {
            let result = match self.load_dir(&found.name, &found.dir) {
                Err(Error::AlreadyLoaded { .. }) => Ok(()),
                other => other,
            };
            if let Err(err) = &result {
                tracing::warn!(plugin = %found.name, "{err}");
            }
            report.outcomes.push(LoadOutcome {
                name: found.name,
                dir: found.dir,
                result,
            });
        }
        Ok(report)
    }

    /// Loads the plugin in the folder `<base_dir>/<name>`.
    pub fn load_plugin(&self, name: &str) -> Result<(), Error> {
        let dir = self.base_dir.join(name);
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) || !dir.is_dir() {
            return Err(Error::NoSuchFolder {
                plugin: name.to_owned(),
                base_dir: self.base_dir.clone(),
            });
        }
        self.load_dir(name, &dir)
    }

    fn load_dir(&self, name: &str, dir: &Path) -> Result<(), Error> {
        let _write = self.write.lock();
        if self.plugins.load().contains_key(name) {
            return Err(Error::AlreadyLoaded {
                plugin: name.to_owned(),
            });
        }
        let config = LoadConfig {
            host_version: self.host_version.clone(),
            copy_dir: self.copy_dir(name)?,
        };
        let loaded = load(name, dir, &config)?;
        if let Err(err) = run_on_load(name, &loaded) {
            remove_copy(&loaded);
            return Err(err);
        }
        tracing::info!(plugin = name, version = %loaded.manifest.version, "plugin loaded");
        let slot = Arc::new(Slot {
            name: name.to_owned(),
            current: ArcSwapOption::from_pointee(loaded),
        });
        let mut next = HashMap::clone(&self.plugins.load());
        next.insert(name.to_owned(), slot);
        self.plugins.store(Arc::new(next));
        Ok(())
    }

    fn copy_dir(&self, plugin: &str) -> Result<PathBuf, Error> {
        match &self.copy_dir {
            CopyDir::Given(dir) => Ok(dir.clone()),
            CopyDir::Temp(cell) => {
                let made = cell.get_or_init(|| {
                    tempfile::Builder::new()
                        .prefix("plugin-host-")
                        .tempdir()
                        .map_err(|e| e.to_string())
                });
                match made {
                    Ok(dir) => Ok(dir.path().to_path_buf()),
                    Err(message) => Err(Error::Io {
                        plugin: plugin.to_owned(),
                        action: "create a private copy directory in",
                        path: std::env::temp_dir(),
                        source: std::io::Error::other(message.clone()),
                    }),
                }
            }
        }
    }

    /// A handle to the loaded plugin `name`.
    ///
    /// Handles are cheap to clone and stay valid across upgrades; after an unload, calls
    /// through them return [`Error::Unloaded`].
    pub fn get(&self, name: &str) -> Result<PluginHandle, Error> {
        match self.plugins.load().get(name) {
            Some(slot) => Ok(PluginHandle { slot: slot.clone() }),
            None => Err(Error::NotFound {
                plugin: name.to_owned(),
                base_dir: self.base_dir.clone(),
            }),
        }
    }

    /// Every loaded plugin, sorted by name.
    pub fn list(&self) -> Vec<PluginSummary> {
        let plugins = self.plugins.load();
        let mut list: Vec<PluginSummary> = plugins
            .values()
            .filter_map(|slot| slot.current.load().as_deref().map(PluginSummary::of))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Unloads the plugin `name`.
    ///
    /// New calls are refused at once ([`Error::Unloaded`] through existing handles,
    /// [`Error::NotFound`] through `get`). Calls in flight are waited for, up to the drain
    /// timeout; then `on_unload` runs. The library's code stays mapped: libraries are never
    /// closed (see the crate docs).
    pub fn unload(&self, name: &str) -> Result<(), Error> {
        let _write = self.write.lock();
        let slot = self.plugins.load().get(name).cloned();
        let Some(slot) = slot else {
            return Err(Error::NotFound {
                plugin: name.to_owned(),
                base_dir: self.base_dir.clone(),
            });
        };
        let mut next = HashMap::clone(&self.plugins.load());
        next.remove(name);
        self.plugins.store(Arc::new(next));
        let Some(old) = slot.current.swap(None) else {
            return Ok(());
        };
        if !drain(&old, self.drain_timeout) {
            tracing::warn!(
                plugin = name,
                timeout = ?self.drain_timeout,
                "calls still in flight after the drain timeout; running on_unload anyway"
            );
        }
        let result = run_on_unload(name, &old);
        remove_copy(&old);
        tracing::info!(plugin = name, "plugin unloaded");
        result
    }
}

/// Waits until `version` is referenced only by `version` itself, i.e. no call holds it.
///
/// `ArcSwap` guards taken by calls in flight are turned into real references when the
/// pointer is swapped out, so the strong count counts exactly the calls still running.
fn drain(version: &Arc<Loaded>, timeout: Duration) -> bool {
    let give_up = Instant::now() + timeout;
    let mut pause = Duration::from_micros(10);
    while Arc::strong_count(version) > 1 {
        if Instant::now() >= give_up {
            return false;
        }
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    true
}

fn run_on_load(name: &str, loaded: &Loaded) -> Result<(), Error> {
    let Some(on_load) = loaded.module.on_load() else {
        return Ok(());
    };
    let ctx = Context::background();
    let call = CallContext {
        ctx: &ctx,
        plugin: name,
    };
    match on_load(HostContext_TO::from_ptr(
        RRef::new(&call),
        plugin_abi::abi_stable::sabi_trait::TD_Opaque,
    )) {
        RResult::ROk(()) => Ok(()),
        RResult::RErr(err) => Err(Error::OnLoad {
            plugin: name.to_owned(),
            kind: err.kind,
            message: err.message.into_string(),
        }),
    }
}

fn run_on_unload(name: &str, loaded: &Loaded) -> Result<(), Error> {
    let Some(on_unload) = loaded.module.on_unload() else {
        return Ok(());
    };
    match on_unload() {
        RResult::ROk(()) => Ok(()),
        RResult::RErr(err) => Err(Error::OnUnload {
            plugin: name.to_owned(),
            kind: err.kind,
            message: err.message.into_string(),
        }),
    }
}

/// Deletes the private copy. The mapping stays valid on Unix; elsewhere the file is in use
/// and removal fails, which is harmless.
fn remove_copy(loaded: &Loaded) {
    let _ = std::fs::remove_file(&loaded.copy);
}

/// A handle to one loaded plugin.
///
/// Cheap to clone and `Send + Sync`: call it from any thread.
#[derive(Clone)]
pub struct PluginHandle {
    slot: Arc<Slot>,
}

impl PluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// Calls the plugin's `execute` entry in `ctx`.
    ///
    /// The plugin reads and writes `ctx`'s values; errors it returns (and panics, which the
    /// SDK catches inside the plugin) come back as [`Error::Call`].
    pub fn execute(&self, ctx: &Context) -> Result<(), Error> {
        // The guard keeps this version alive (and counted as in flight) for the whole call.
        let guard = self.slot.current.load();
        let Some(version) = guard.as_deref() else {
            return Err(Error::Unloaded {
                plugin: self.slot.name.clone(),
            });
        };
        let call = CallContext {
            ctx,
            plugin: &self.slot.name,
        };
        let raw = HostContext_TO::from_ptr(
            RRef::new(&call),
            plugin_abi::abi_stable::sabi_trait::TD_Opaque,
        );
        match (version.module.execute())(raw) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(err) => Err(plugin_error(&self.slot.name, err)),
        }
    }

    /// A description of the version currently loaded, or `None` once unloaded.
    pub fn summary(&self) -> Option<PluginSummary> {
        self.slot.current.load().as_deref().map(PluginSummary::of)
    }
}

#[cold]
fn plugin_error(name: &str, err: PluginError) -> Error {
    Error::call(name, err)
}

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHandle")
            .field("name", &self.slot.name)
            .finish()
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<PluginManager>();
    is::<PluginHandle>();
    let _ = SystemTime::now;
}
