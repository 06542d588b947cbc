//! The plugin manager: names to plugins and their states, and loading them.
//!
//! - `handle`: [`PluginHandle`] and the registry slot it points at (the call path);
//! - `version`: one loaded version, its calls in flight, its drain and hooks;
//! - `lifecycle`: unload, reload, hot upgrade, enable, disable, watch;
//! - `status`: states, events, reports;
//! - `install`: the private copy directory and installing a folder into the base directory.

#[cfg(feature = "tokio")]
mod asynch;
mod events;
mod handle;
mod install;
mod lifecycle;
mod status;
mod version;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::check::{check, default_host_version, CheckConfig, Inspection};
use crate::discover::discover;
use crate::isolate::{Isolation, ProcessOptions};
use crate::library::FolderPolicy;
#[cfg(all(target_os = "linux", feature = "isolation"))]
use crate::load::load_isolated;
use crate::load::{load, Copies, LoadConfig};
use crate::state_file::StateFile;
use crate::Error;

use crate::cancel::AbortToken;
#[cfg(all(target_os = "linux", feature = "isolation"))]
use events::supervisor_hooks;
pub use events::ListenerId;
use events::Listeners;
pub use handle::PluginHandle;
use handle::{Slot, SlotGuard};
use install::{default_copy_parent, make_copy_dir_in, CopyDir, FolderStamp};
pub use status::{
    Drain, Event, LoadOutcome, LoadReport, PluginState, PluginStatus, PluginSummary,
    ShutdownOutcome, UpgradeOptions, Upgraded,
};
use version::{remove_copy, run_on_load, InFlight, LoadedVersion};

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
    folders: FolderPolicy,
    isolation: IsolationPolicy,
    /// Read on every `get`; replaced whole (copy on write) by writers.
    plugins: ArcSwap<HashMap<String, Arc<Slot>>>,
    /// Serialises changes to the map of slots (a name added or removed); held briefly.
    /// Each plugin's lifecycle (load, upgrade, unload, enable, disable) is serialised by its
    /// own slot's lock instead, so one plugin's drain never delays another plugin.
    registry: Mutex<()>,
    /// Shared with the threads that finish stuck versions, which report [`Event::Drained`].
    listeners: Listeners,
    state_file: StateFile,
    /// Libraries mapped per plugin name (see [`PluginStatus::retained_libraries`]).
    retained: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

/// Configures a [`PluginManager`].
#[derive(Debug, Clone)]
pub struct PluginManagerBuilder {
    base_dir: PathBuf,
    host_version: semver::Version,
    copy_dir: Option<PathBuf>,
    drain_timeout: Duration,
    folders: FolderPolicy,
    isolation: IsolationPolicy,
}

/// Which plugins run isolated, and how.
#[derive(Debug, Clone, Default)]
struct IsolationPolicy {
    default: Isolation,
    overrides: HashMap<String, Isolation>,
    options: ProcessOptions,
}

impl IsolationPolicy {
    fn of(&self, name: &str) -> Isolation {
        self.overrides.get(name).copied().unwrap_or(self.default)
    }
}

impl PluginManagerBuilder {
    /// Where plugins run by default: [`Isolation::InProcess`] (the default) or
    /// [`Isolation::Process`], each in a supervised worker process. A host that isolates
    /// plugins calls [`isolate::init`](crate::isolate::init) first thing in `main` (see the
    /// `isolate` module).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation.default = isolation;
        self
    }

    /// Where the plugin `name` runs, whatever the default.
    pub fn isolation_for(mut self, name: impl Into<String>, isolation: Isolation) -> Self {
        self.isolation.overrides.insert(name.into(), isolation);
        self
    }

    /// Runs the plugin `name` in a worker process: `isolation_for(name, Isolation::Process)`.
    pub fn isolate(self, name: impl Into<String>) -> Self {
        self.isolation_for(name, Isolation::Process)
    }

    /// How process-isolated plugins are run and supervised.
    pub fn process_options(mut self, options: ProcessOptions) -> Self {
        self.isolation.options = options;
        self
    }

    /// The version of the host application, checked against each plugin's `requires.host`.
    /// Defaults to the version of `plugin-host`.
    pub fn host_version(mut self, version: semver::Version) -> Self {
        self.host_version = version;
        self
    }

    /// Makes the private copies of plugin libraries as files in `dir` (created with mode 0700 if
    /// missing), deleted when their load fails, when the plugin is unloaded, and when the
    /// version is dropped.
    ///
    /// By default, on Linux, each copy is an anonymous memory file instead, which leaves
    /// nothing behind however the process ends. Where there are none (other systems, or
    /// memory files forbidden or not executable), copies are files in a fresh private (mode
    /// 0700) directory, removed when the manager is dropped, made in a memory-backed
    /// directory where the system has one it may write and map code from (on Linux
    /// `$XDG_RUNTIME_DIR`, then `/dev/shm`), else in the temporary directory.
    pub fn copy_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.copy_dir = Some(dir.into());
        self
    }

    /// How long an unload or upgrade waits for calls in flight before it cancels their
    /// contexts (and then waits as long again). Defaults to 30 seconds.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// **For development only.** Skips the checks that the base directory and each plugin
    /// folder are writable by their owner only, and that each library belongs to the host's
    /// user or root. Whoever can write a plugin's folder can replace its library, so with
    /// these checks off the library's own mode protects little. Off by default.
    pub fn insecure_permissions(mut self, insecure: bool) -> Self {
        self.folders.insecure_permissions = insecure;
        self
    }

    /// Accepts plugin folders that resolve (through symbolic links) outside the base
    /// directory, such as `plugins/hello -> /opt/hello`. Off by default: such a folder is
    /// refused with [`Error::FolderOutsideBase`], so the base directory is the one place to
    /// audit.
    pub fn allow_folders_outside_base(mut self, allow: bool) -> Self {
        self.folders.allow_outside_base = allow;
        self
    }

    /// Builds the manager. Nothing is loaded until [`PluginManager::load_plugins`] or
    /// [`PluginManager::load_plugin`] is called.
    pub fn build(self) -> PluginManager {
        let state_file = StateFile::new(&self.base_dir);
        PluginManager {
            base_dir: self.base_dir,
            host_version: self.host_version,
            copy_dir: match self.copy_dir {
                Some(dir) => CopyDir::Given(dir),
                None => CopyDir::Temp(OnceLock::new()),
            },
            drain_timeout: self.drain_timeout,
            folders: self.folders,
            isolation: self.isolation,
            plugins: ArcSwap::from_pointee(HashMap::new()),
            registry: Mutex::new(()),
            listeners: Listeners::default(),
            state_file,
            retained: Mutex::new(HashMap::new()),
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
            host_version: default_host_version(),
            copy_dir: None,
            drain_timeout: Duration::from_secs(30),
            folders: FolderPolicy::default(),
            isolation: IsolationPolicy::default(),
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

    /// Calls `listener` for every lifecycle event from now on, on the thread that caused it,
    /// until [`remove_listener`](PluginManager::remove_listener) is called with the id
    /// returned.
    ///
    /// A listener must be quick. It runs while the plugin the event concerns is locked for
    /// its lifecycle change: it may call the manager for any other plugin, and may add or
    /// remove listeners, but must not load, upgrade, unload, enable or disable that same
    /// plugin.
    pub fn add_listener(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.listeners.add(Arc::new(listener))
    }

    /// Removes a listener; returns whether it was there.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.listeners.remove(id)
    }

    /// A channel receiving every lifecycle event from now on. Once the receiver is
    /// dropped, the manager forgets it at the next event.
    pub fn subscribe(&self) -> mpsc::Receiver<Event> {
        self.listeners.subscribe()
    }

    fn emit(&self, event: Event) {
        self.listeners.emit(event);
    }

    /// Discovers every plugin folder and loads each one that is neither loaded nor disabled.
    ///
    /// One plugin failing never stops the others: the report holds every folder's outcome.
    /// Only an unreadable base directory is an error.
    pub fn load_plugins(&self) -> Result<LoadReport, Error> {
        let mut report = LoadReport::default();
        let found = discover(&self.base_dir)?;
        // Record every folder first, so `list` shows the ones not reached yet as discovered.
        for f in &found {
            self.slot_or_insert(&f.name);
        }
        for f in found {
            let result = match self.load_dir(&f.name, &f.dir) {
                Err(Error::AlreadyLoaded { .. }) | Err(Error::Disabled { .. }) => Ok(()),
                other => other,
            };
            report.outcomes.push(LoadOutcome {
                name: f.name,
                dir: f.dir,
                result,
            });
        }
        Ok(report)
    }

    /// Loads the plugin in the folder `<base_dir>/<name>`.
    pub fn load_plugin(&self, name: &str) -> Result<(), Error> {
        let dir = self.plugin_dir(name)?;
        self.load_dir(name, &dir)
    }

    fn plugin_dir(&self, name: &str) -> Result<PathBuf, Error> {
        let dir = self.base_dir.join(name);
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) || !dir.is_dir() {
            return Err(Error::NoSuchFolder {
                plugin: name.to_owned(),
                base_dir: self.base_dir.clone(),
            });
        }
        Ok(dir)
    }

    /// The slot for `name`, inserted as discovered if new.
    fn slot_or_insert(&self, name: &str) -> Arc<Slot> {
        let _registry = self.registry.lock();
        if let Some(slot) = self.plugins.load().get(name).filter(|s| !s.is_gone()) {
            return slot.clone();
        }
        let retained = self
            .retained
            .lock()
            .entry(name.to_owned())
            .or_default()
            .clone();
        let slot = Arc::new(Slot::new(name, retained));
        let mut next = HashMap::clone(&self.plugins.load());
        next.insert(name.to_owned(), slot.clone());
        self.plugins.store(Arc::new(next));
        slot
    }

    /// Removes `slot` from the registry, unless another slot has taken its name.
    fn remove_slot(&self, name: &str, slot: &Arc<Slot>) {
        let _registry = self.registry.lock();
        let plugins = self.plugins.load();
        if !plugins.get(name).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            return;
        }
        let mut next = HashMap::clone(&plugins);
        next.remove(name);
        self.plugins.store(Arc::new(next));
    }

    /// The registry's slot for `name` (inserted if `insert` and new), with its lifecycle lock
    /// held; `None` if there is none and `insert` is false.
    fn locked_slot(&self, name: &str, insert: bool) -> Option<(Arc<Slot>, SlotGuard)> {
        loop {
            let slot = if insert {
                self.slot_or_insert(name)
            } else {
                self.plugins.load().get(name).cloned()?
            };
            let guard = slot.lifecycle.lock_arc();
            // An unload may have removed the slot while we waited for its lock.
            if self
                .plugins
                .load()
                .get(name)
                .is_some_and(|s| Arc::ptr_eq(s, &slot))
            {
                return Some((slot, guard));
            }
        }
    }

    fn load_dir(&self, name: &str, dir: &Path) -> Result<(), Error> {
        let (slot, _lifecycle) = self.locked_slot(name, true).expect("inserted");
        if slot.current.load().is_some() {
            return Err(Error::AlreadyLoaded {
                plugin: name.to_owned(),
            });
        }
        match self.state_file.disabled(name) {
            Ok(false) => {}
            Ok(true) => {
                slot.status.lock().state = PluginState::Disabled;
                return Err(Error::Disabled {
                    plugin: name.to_owned(),
                });
            }
            // It may be disabled in a file that cannot be read: fail closed.
            Err(err) => {
                slot.status.lock().state = PluginState::Failed(err.report());
                return Err(err);
            }
        }
        match self.load_version(name, dir, &slot) {
            Ok(version) => {
                let v = version.loaded.manifest.version.clone();
                slot.publish(Some(version));
                slot.status.lock().state = PluginState::Active;
                self.emit(Event::Loaded {
                    name: name.to_owned(),
                    version: v,
                });
                Ok(())
            }
            Err(err) => {
                slot.status.lock().state = PluginState::Failed(err.report());
                self.emit(Event::Failed {
                    name: name.to_owned(),
                    error: err.report(),
                });
                Err(err)
            }
        }
    }

    /// Loads `dir` as a new version of `name` and runs its `on_load`; publishes nothing.
    fn load_version(
        &self,
        name: &str,
        dir: &Path,
        slot: &Arc<Slot>,
    ) -> Result<Arc<LoadedVersion>, Error> {
        let fallback = || self.copy_dir_for(name);
        let config = LoadConfig {
            check: self.check_config(name, dir),
            copies: match &self.copy_dir {
                CopyDir::Given(dir) => Copies::Files(dir),
                CopyDir::Temp(_) => Copies::Memory {
                    fallback: &fallback,
                },
            },
            // Counted as soon as the library is mapped, for good: also when its load fails.
            mapped: &slot.retained,
        };
        let loaded = match self.isolation.of(name) {
            Isolation::InProcess => load(name, dir, &config)?,
            #[cfg(all(target_os = "linux", feature = "isolation"))]
            Isolation::Process => load_isolated(
                name,
                dir,
                &config.check,
                self.isolation.options.clone(),
                supervisor_hooks(&self.listeners, slot),
            )?,
            #[cfg(not(all(target_os = "linux", feature = "isolation")))]
            Isolation::Process => {
                return Err(Error::IsolationUnavailable {
                    plugin: name.to_owned(),
                })
            }
        };
        let version = Arc::new(LoadedVersion {
            files: Mutex::new(FolderStamp::of(dir, &loaded.library_in_folder())),
            loaded,
            in_flight: InFlight::new(),
            abort: AbortToken::new(),
            stuck: AtomicBool::new(false),
        });
        if let Err(err) = run_on_load(name, &version) {
            remove_copy(&version.loaded);
            return Err(err);
        }
        Ok(version)
    }

    /// Where the plugin `name` runs under this manager's settings.
    pub fn isolation_of(&self, name: &str) -> Isolation {
        self.isolation.of(name)
    }

    fn check_config(&self, name: &str, dir: &Path) -> CheckConfig<'_> {
        CheckConfig {
            host_version: &self.host_version,
            // The base directory's own folder for this name gets the containment check; an
            // upgrade's source folder elsewhere gets the permission checks only.
            base_dir: (dir == self.base_dir.join(name)).then(|| self.base_dir.clone()),
            folders: self.folders,
        }
    }

    /// Checks the plugin in the folder `<base_dir>/<name>` as a load would, up to the last
    /// check that needs no `dlopen`, and describes it: the manifest, the library and the
    /// identity record read from its file. **No code of the plugin runs**: its library is
    /// read, never mapped, and the registry does not change. This is how `plugctl list` and
    /// `info` look at plugins without running them.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchFolder`], and the errors of steps 0 to 3 of a load
    /// (see the crate docs): the same a load would return for a plugin that fails them.
    pub fn inspect(&self, name: &str) -> Result<Inspection, Error> {
        let dir = self.plugin_dir(name)?;
        self.inspect_dir(name, dir)
    }

    /// Checks the plugin folder `dir`, which may lie anywhere, as an upgrade from it would:
    /// steps 0 to 3 of a load, with the folder named `name` (its `plugin.json` must name the
    /// same plugin) and, for a folder outside the base directory, the permission checks but
    /// not the containment check. **No code of the plugin runs.** This is how a package is
    /// checked after extraction and before it is moved into the base directory.
    ///
    /// # Errors
    ///
    /// The errors of steps 0 to 3 of a load (see the crate docs).
    pub fn inspect_dir(&self, name: &str, dir: impl AsRef<Path>) -> Result<Inspection, Error> {
        let dir = dir.as_ref();
        check(name, dir, &self.check_config(name, dir)).map(|checked| checked.describe(name, dir))
    }

    /// The directory file copies of libraries are written to: the one given to the builder,
    /// or the default one if it was made already; `None` if no copy needed it yet. Without a
    /// directory given, copies on Linux are memory files, and the default directory is made
    /// only if those cannot be.
    pub fn copy_dir(&self) -> Option<PathBuf> {
        match &self.copy_dir {
            CopyDir::Given(dir) => Some(dir.clone()),
            CopyDir::Temp(cell) => cell.get()?.as_ref().ok().map(|d| d.path().to_path_buf()),
        }
    }

    /// [`copy_dir`](PluginManager::copy_dir), making the default directory now if it was
    /// not made yet.
    pub fn ensure_copy_dir(&self) -> Result<PathBuf, Error> {
        self.copy_dir_for("")
    }

    fn copy_dir_for(&self, plugin: &str) -> Result<PathBuf, Error> {
        match &self.copy_dir {
            CopyDir::Given(dir) => Ok(dir.clone()),
            CopyDir::Temp(cell) => {
                match cell.get_or_init(|| make_copy_dir_in(&default_copy_parent())) {
                    Ok(dir) => Ok(dir.path().to_path_buf()),
                    Err(err) => Err(Error::Io {
                        plugin: plugin.to_owned(),
                        action: "create a private copy directory in",
                        path: err.parent.clone(),
                        source: err.to_io(),
                    }),
                }
            }
        }
    }

    /// A handle to the active plugin `name`.
    ///
    /// Handles are cheap to clone and stay valid across upgrades; after an unload, calls
    /// through them return [`Error::Unloaded`].
    pub fn get(&self, name: &str) -> Result<PluginHandle, Error> {
        let plugins = self.plugins.load();
        let Some(slot) = plugins.get(name).filter(|s| !s.is_gone()) else {
            return Err(Error::NotFound {
                plugin: name.to_owned(),
                base_dir: self.base_dir.clone(),
            });
        };
        if slot.current.load().is_none() {
            let state = slot.status.lock().state.clone();
            return Err(Error::NotActive {
                plugin: name.to_owned(),
                reason: match &state {
                    PluginState::Failed(reason) => Some(reason.clone()),
                    _ => None,
                },
                state,
            });
        }
        Ok(PluginHandle { slot: slot.clone() })
    }

    /// The state of plugin `name`, if the manager knows it.
    pub fn state(&self, name: &str) -> Option<PluginState> {
        self.plugins
            .load()
            .get(name)
            .filter(|slot| !slot.is_gone())
            .map(|slot| slot.status.lock().state.clone())
    }

    /// Every plugin the manager knows (discovered, active, disabled, failed), sorted by name.
    pub fn list(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.load();
        let mut list: Vec<PluginStatus> = plugins
            .values()
            .filter(|slot| !slot.is_gone())
            .map(|slot| slot.status())
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Libraries mapped into the process by this manager so far (never closed).
    pub fn retained_libraries(&self) -> usize {
        self.retained
            .lock()
            .values()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for PluginManager {
    /// Shuts down: see [`PluginManager::shutdown`].
    fn drop(&mut self) {
        let any_loaded = self
            .plugins
            .load()
            .values()
            .any(|slot| slot.current.load().is_some());
        if any_loaded {
            for outcome in self.shutdown() {
                if let Err(err) = outcome.result {
                    tracing::warn!(plugin = %outcome.name, "{}", err.report());
                }
            }
        }
    }
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("base_dir", &self.base_dir)
            .field("host_version", &self.host_version)
            .field("plugins", &self.plugins.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_and_handle_are_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<PluginManager>();
        is::<PluginHandle>();
    }
}
