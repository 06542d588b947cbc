//! The plugin manager: names to plugins and their states, the call path, unload, hot upgrade,
//! enable/disable and lifecycle events.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::{Mutex, RwLock};
use plugin_abi::abi_stable::sabi_trait::TD_Opaque;
use plugin_abi::abi_stable::sabi_types::RRef;
use plugin_abi::abi_stable::std_types::RResult;
use plugin_abi::HostContext_TO;
use serde::Serialize;

use crate::context::{CallContext, CancelNode};
use crate::discover::discover;
use crate::load::{load, LoadConfig, Loaded};
use crate::manifest::Manifest;
use crate::state_file::StateFile;
use crate::watch::{WatchOptions, WatchTarget, Watcher};
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
    /// Read on every `get`; replaced whole (copy on write) by writers.
    plugins: ArcSwap<HashMap<String, Arc<Slot>>>,
    /// Serialises every change to the registry (load, upgrade, unload, enable, disable).
    write: Mutex<()>,
    listeners: RwLock<Vec<Listener>>,
    state_file: StateFile,
    /// Libraries mapped per plugin name (see [`PluginStatus::retained_libraries`]).
    retained: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

type Listener = Box<dyn Fn(&Event) + Send + Sync>;

enum CopyDir {
    Given(PathBuf),
    Temp(OnceLock<Result<tempfile::TempDir, String>>),
}

/// The lifecycle state of a plugin.
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

/// Something that happened to a plugin, as seen by listeners
/// ([`PluginManager::add_listener`], [`PluginManager::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The plugin was loaded and is active.
    Loaded {
        /// The plugin.
        name: String,
        /// Its version.
        version: String,
    },
    /// A new version replaced the running one.
    Upgraded {
        /// The plugin.
        name: String,
        /// The version that was running.
        from: String,
        /// The version now running.
        to: String,
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
            | Event::Disabled { name } => name,
        }
    }
}

/// One plugin name in the registry. Handles point here, so a handle sees upgrades and
/// unloads.
struct Slot {
    name: String,
    current: ArcSwapOption<Version>,
    status: Mutex<SlotStatus>,
    /// Libraries mapped for this plugin name since the manager started (never closed);
    /// shared with the manager, so the count survives an unload and a new load.
    retained: Arc<AtomicUsize>,
}

struct SlotStatus {
    state: PluginState,
    /// The versions replaced or unloaded but still referenced by calls past their drain.
    draining: Vec<Weak<Version>>,
}

/// One loaded library of a plugin, with what a call needs besides it.
pub(crate) struct Version {
    pub(crate) loaded: Loaded,
    /// The plugin folder's files this version stands for, so the watcher can tell a real
    /// change from the echo of an upgrade's own install.
    files: Mutex<Option<FolderStamp>>,
    in_flight: InFlight,
    /// Set when a drain times out: calls still running see their context cancelled.
    pub(crate) abort: AbortToken,
}

/// Calls in flight on one version, counted in per-thread stripes so that two threads
/// calling the same plugin never write the same cache line.
struct InFlight {
    stripes: [Stripe; STRIPES],
}

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Stripe(AtomicUsize);

fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

impl InFlight {
    fn new() -> Self {
        InFlight {
            stripes: std::array::from_fn(|_| Stripe::default()),
        }
    }

    fn total(&self) -> usize {
        // Each stripe can wrap below zero when a call ends on another thread than it began
        // (it never does today), so sum with wrapping arithmetic.
        self.stripes.iter().fold(0usize, |sum, s| {
            sum.wrapping_add(s.0.load(Ordering::Acquire))
        })
    }
}

/// Marks one call in flight for as long as it lives.
struct CallGuard<'a> {
    stripe: &'a AtomicUsize,
}

impl<'a> CallGuard<'a> {
    fn enter(in_flight: &'a InFlight) -> Self {
        let stripe = &in_flight.stripes[stripe_index()].0;
        stripe.fetch_add(1, Ordering::Relaxed);
        CallGuard { stripe }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.stripe.fetch_sub(1, Ordering::Release);
    }
}

/// Cancels the calls still running on a version whose drain timed out.
pub(crate) struct AbortToken {
    aborted: AtomicBool,
    /// Contexts of calls blocked in `wait_cancelled`, so an abort can wake them.
    waiting: Mutex<Vec<Weak<CancelNode>>>,
}

impl AbortToken {
    fn new() -> Self {
        AbortToken {
            aborted: AtomicBool::new(false),
            waiting: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Registers a context that is about to block, unless the version is already aborted.
    pub(crate) fn register(&self, node: &Arc<CancelNode>) -> bool {
        let mut waiting = self.waiting.lock();
        if self.is_aborted() {
            return false;
        }
        waiting.retain(|w| w.strong_count() > 0);
        waiting.push(Arc::downgrade(node));
        true
    }

    fn abort(&self) {
        let waiting = {
            let mut waiting = self.waiting.lock();
            self.aborted.store(true, Ordering::Release);
            std::mem::take(&mut *waiting)
        };
        for node in waiting.iter().filter_map(Weak::upgrade) {
            node.cancel();
        }
    }
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
    /// (mode 0700) directory, removed when the manager is dropped, made in a memory-backed
    /// directory where the system has one (on Linux `$XDG_RUNTIME_DIR`, then `/dev/shm`),
    /// else in the temporary directory.
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
            plugins: ArcSwap::from_pointee(HashMap::new()),
            write: Mutex::new(()),
            listeners: RwLock::new(Vec::new()),
            state_file,
            retained: Mutex::new(HashMap::new()),
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
    /// `Ok` if the plugin is loaded (now, or already before) or disabled, otherwise why not.
    pub result: Result<(), Error>,
}

/// What [`PluginManager::load_plugins`] did with every folder under the base directory.
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
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    /// The plugin name (equal to its folder name).
    pub name: String,
    /// The plugin version.
    pub version: String,
    /// The plugin folder the version was loaded from.
    pub dir: PathBuf,
    /// The library in that folder.
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

/// The status of one plugin, as [`PluginManager::list`] and `plugctl list` show it.
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
    /// Libraries this plugin has mapped into the process since the manager started: they
    /// are never closed (see the crate docs).
    pub retained_libraries: usize,
}

/// What an upgrade did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upgraded {
    /// The plugin.
    pub name: String,
    /// The version that was running (`None` if none was).
    pub from: Option<String>,
    /// The version now running.
    pub to: String,
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

    /// Calls `listener` for every lifecycle event from now on, on the thread that caused it.
    ///
    /// A listener must be quick and must not call back into the manager's loading methods
    /// (it runs while the manager holds its write lock).
    pub fn add_listener(&self, listener: impl Fn(&Event) + Send + Sync + 'static) {
        self.listeners.write().push(Box::new(listener));
    }

    /// A channel receiving every lifecycle event from now on.
    pub fn subscribe(&self) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel();
        self.add_listener(move |event| {
            let _ = tx.send(event.clone());
        });
        rx
    }

    fn emit(&self, event: Event) {
        match &event {
            Event::Failed { name, error } => tracing::warn!(plugin = %name, "{error}"),
            other => tracing::info!(plugin = %other.plugin(), event = ?other, "plugin event"),
        }
        for listener in self.listeners.read().iter() {
            listener(&event);
        }
    }

    /// Discovers every plugin folder and loads each one that is neither loaded nor disabled.
    ///
    /// One plugin failing never stops the others: the report holds every folder's outcome.
    /// Only an unreadable base directory is an error.
    pub fn load_plugins(&self) -> Result<LoadReport, Error> {
        let mut report = LoadReport::default();
        let found = discover(&self.base_dir)?;
        // Record every folder first, so `list` shows the ones not reached yet as discovered.
        {
            let _write = self.write.lock();
            for f in &found {
                self.slot_or_insert(&f.name);
            }
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

    /// The slot for `name`, inserted as discovered if new. Call with the write lock held.
    fn slot_or_insert(&self, name: &str) -> Arc<Slot> {
        if let Some(slot) = self.plugins.load().get(name) {
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            name: name.to_owned(),
            current: ArcSwapOption::empty(),
            status: Mutex::new(SlotStatus {
                state: PluginState::Discovered,
                draining: Vec::new(),
            }),
            retained: self
                .retained
                .lock()
                .entry(name.to_owned())
                .or_default()
                .clone(),
        });
        let mut next = HashMap::clone(&self.plugins.load());
        next.insert(name.to_owned(), slot.clone());
        self.plugins.store(Arc::new(next));
        slot
    }

    fn remove_slot(&self, name: &str) {
        let mut next = HashMap::clone(&self.plugins.load());
        next.remove(name);
        self.plugins.store(Arc::new(next));
    }

    fn load_dir(&self, name: &str, dir: &Path) -> Result<(), Error> {
        let _write = self.write.lock();
        let slot = self.slot_or_insert(name);
        if slot.current.load().is_some() {
            return Err(Error::AlreadyLoaded {
                plugin: name.to_owned(),
            });
        }
        if self.state_file.is_disabled(name) {
            slot.status.lock().state = PluginState::Disabled;
            return Err(Error::Disabled {
                plugin: name.to_owned(),
            });
        }
        match self.load_version(name, dir, &slot) {
            Ok(version) => {
                let v = version.loaded.manifest.version.to_string();
                slot.current.store(Some(version));
                slot.status.lock().state = PluginState::Active;
                self.emit(Event::Loaded {
                    name: name.to_owned(),
                    version: v,
                });
                Ok(())
            }
            Err(err) => {
                slot.status.lock().state = PluginState::Failed(err.to_string());
                self.emit(Event::Failed {
                    name: name.to_owned(),
                    error: err.to_string(),
                });
                Err(err)
            }
        }
    }

    /// Loads `dir` as a new version of `name` and runs its `on_load`; publishes nothing.
    fn load_version(&self, name: &str, dir: &Path, slot: &Slot) -> Result<Arc<Version>, Error> {
        let config = LoadConfig {
            host_version: self.host_version.clone(),
            copy_dir: self.copy_dir_for(name)?,
        };
        let loaded = load(name, dir, &config)?;
        // From here the library is mapped for good.
        slot.retained.fetch_add(1, Ordering::Relaxed);
        let version = Arc::new(Version {
            files: Mutex::new(FolderStamp::of(dir, &loaded.library_in_folder())),
            loaded,
            in_flight: InFlight::new(),
            abort: AbortToken::new(),
        });
        if let Err(err) = run_on_load(name, &version) {
            remove_copy(&version.loaded);
            return Err(err);
        }
        Ok(version)
    }

    /// The directory private library copies are written to (created on first use).
    pub fn copy_dir(&self) -> Result<PathBuf, Error> {
        self.copy_dir_for("")
    }

    fn copy_dir_for(&self, plugin: &str) -> Result<PathBuf, Error> {
        match &self.copy_dir {
            CopyDir::Given(dir) => Ok(dir.clone()),
            CopyDir::Temp(cell) => {
                let made = cell.get_or_init(|| {
                    tempfile::Builder::new()
                        .prefix("plugin-host-")
                        .tempdir_in(default_copy_parent())
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

    /// A handle to the active plugin `name`.
    ///
    /// Handles are cheap to clone and stay valid across upgrades; after an unload, calls
    /// through them return [`Error::Unloaded`].
    pub fn get(&self, name: &str) -> Result<PluginHandle, Error> {
        let plugins = self.plugins.load();
        let Some(slot) = plugins.get(name) else {
            return Err(Error::NotFound {
                plugin: name.to_owned(),
                base_dir: self.base_dir.clone(),
            });
        };
        if slot.current.load().is_none() {
            let state = slot.status.lock().state.clone();
            return Err(Error::NotActive {
                plugin: name.to_owned(),
                state: state.as_str(),
                reason: match state {
                    PluginState::Failed(reason) => Some(reason),
                    _ => None,
                },
            });
        }
        Ok(PluginHandle { slot: slot.clone() })
    }

    /// The state of plugin `name`, if the manager knows it.
    pub fn state(&self, name: &str) -> Option<PluginState> {
        self.plugins
            .load()
            .get(name)
            .map(|slot| slot.status.lock().state.clone())
    }

    /// Every plugin the manager knows (discovered, active, disabled, failed), sorted by name.
    pub fn list(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.load();
        let mut list: Vec<PluginStatus> = plugins.values().map(|slot| slot.status()).collect();
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

    /// Unloads the plugin `name`.
    ///
    /// New calls are refused at once ([`Error::Unloaded`] through existing handles,
    /// [`Error::NotActive`] through `get`, while `list` shows it as unloading; then
    /// [`Error::NotFound`]). Calls in flight get up to the drain timeout to
    /// finish; then their contexts are cancelled and they are waited for (as long again).
    /// Then `on_unload` runs and the plugin leaves the registry. The library's code stays
    /// mapped: libraries are never closed (see the crate docs).
    pub fn unload(&self, name: &str) -> Result<(), Error> {
        let _write = self.write.lock();
        let slot = self.plugins.load().get(name).cloned();
        let Some(slot) = slot else {
            return Err(Error::NotFound {
                plugin: name.to_owned(),
                base_dir: self.base_dir.clone(),
            });
        };
        // Refuse new calls first; the plugin stays listed as unloading while it drains.
        let old = slot.current.swap(None);
        slot.begin_retiring(old.as_ref(), PluginState::Unloading);
        let result = match old {
            Some(old) => self.retire(&slot, old),
            None => Ok(()),
        };
        self.remove_slot(name);
        slot.status.lock().state = PluginState::Unloaded;
        self.emit(Event::Unloaded {
            name: name.to_owned(),
        });
        result
    }

    /// Drains a version that no longer receives calls, then runs its `on_unload`.
    /// Call after [`Slot::begin_retiring`].
    fn retire(&self, slot: &Slot, old: Arc<Version>) -> Result<(), Error> {
        if !drain(&old, self.drain_timeout) {
            tracing::warn!(
                plugin = %slot.name,
                in_flight = old.in_flight.total(),
                timeout = ?self.drain_timeout,
                "calls still running after the drain timeout; cancelling them"
            );
            old.abort.abort();
            if !drain(&old, self.drain_timeout) {
                tracing::error!(
                    plugin = %slot.name,
                    in_flight = old.in_flight.total(),
                    "calls ignored cancellation; running on_unload while they still run"
                );
            }
        }
        let result = run_on_unload(&slot.name, &old.loaded);
        remove_copy(&old.loaded);
        slot.status
            .lock()
            .draining
            .retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&old)));
        result
    }

    /// Reloads plugin `name` from its folder: a hot upgrade to whatever the folder holds now.
    ///
    /// See [`upgrade`](PluginManager::upgrade). A plugin that is not active is loaded.
    /// Reloading to a lower version than the running one is refused; use
    /// [`upgrade`](PluginManager::upgrade) with `force` for a downgrade.
    pub fn reload(&self, name: &str) -> Result<Upgraded, Error> {
        let dir = self.plugin_dir(name)?;
        self.upgrade_from(name, &dir, false, false)
    }

    /// Upgrades plugin `name` to the version in `from_dir` (a plugin folder anywhere: its
    /// `plugin.json` must name the same plugin), without dropping a call.
    ///
    /// The new version is loaded beside the old one, from its own private copy, through every
    /// check, and its `on_load` runs. Then its files are installed into the base directory
    /// (replacing the plugin's folder), and it replaces the old version atomically: calls in
    /// flight finish on the old version, new calls go to the new one, and every call runs
    /// entirely on one version. The old version is then drained like an unload and its
    /// `on_unload` runs.
    ///
    /// If the new version fails any check, its `on_load`, or the install, the old version
    /// keeps serving and the error is returned. A lower version than the running one is
    /// refused with [`Error::Downgrade`] unless `force` is set.
    pub fn upgrade(
        &self,
        name: &str,
        from_dir: impl AsRef<Path>,
        force: bool,
    ) -> Result<Upgraded, Error> {
        let from_dir = from_dir.as_ref();
        let own = self.base_dir.join(name);
        let same = match (from_dir.canonicalize(), own.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        self.upgrade_from(name, from_dir, force, !same)
    }

    fn upgrade_from(
        &self,
        name: &str,
        from_dir: &Path,
        force: bool,
        install: bool,
    ) -> Result<Upgraded, Error> {
        let _write = self.write.lock();
        let slot = self.slot_or_insert(name);
        if self.state_file.is_disabled(name) {
            return Err(Error::Disabled {
                plugin: name.to_owned(),
            });
        }
        let old = slot.current.load_full();
        let fail = |err: Error| {
            // With a version running, a failed upgrade leaves it active (rollback).
            if old.is_none() {
                slot.status.lock().state = PluginState::Failed(err.to_string());
            }
            self.emit(Event::Failed {
                name: name.to_owned(),
                error: err.to_string(),
            });
            err
        };
        let new = self.load_version(name, from_dir, &slot).map_err(&fail)?;
        let to = new.loaded.manifest.version.clone();
        let rollback = |new: &Version, err: Error| {
            let _ = run_on_unload(name, &new.loaded);
            remove_copy(&new.loaded);
            fail(err)
        };
        if let Some(old) = &old {
            let from = &old.loaded.manifest.version;
            if to < *from && !force {
                return Err(rollback(
                    &new,
                    Error::Downgrade {
                        plugin: name.to_owned(),
                        from: from.to_string(),
                        to: to.to_string(),
                    },
                ));
            }
        }
        if install {
            if let Err(err) = install_folder(name, from_dir, &self.base_dir) {
                return Err(rollback(&new, err));
            }
            *new.files.lock() =
                FolderStamp::of(&self.base_dir.join(name), &new.loaded.library_in_folder());
        }
        // The swap: from here new calls run the new version.
        let previous = slot.current.swap(Some(new));
        slot.begin_retiring(previous.as_ref(), PluginState::Active);
        let upgraded = Upgraded {
            name: name.to_owned(),
            from: previous
                .as_ref()
                .map(|p| p.loaded.manifest.version.to_string()),
            to: to.to_string(),
        };
        let retired = match previous {
            Some(previous) => self.retire(&slot, previous),
            None => Ok(()),
        };
        match &upgraded.from {
            Some(from) => self.emit(Event::Upgraded {
                name: name.to_owned(),
                from: from.clone(),
                to: upgraded.to.clone(),
            }),
            None => self.emit(Event::Loaded {
                name: name.to_owned(),
                version: upgraded.to.clone(),
            }),
        }
        // An `on_unload` failure of the old version does not undo the upgrade.
        if let Err(err) = retired {
            tracing::warn!(plugin = name, "{err}");
        }
        Ok(upgraded)
    }

    /// Disables plugin `name`: unloads it if it is loaded, and records it in the base
    /// directory's state file so that it is discovered but never loaded, now and at the next
    /// start.
    pub fn disable(&self, name: &str) -> Result<(), Error> {
        self.plugin_dir(name)?;
        self.state_file.set_disabled(name, true)?;
        if self.plugins.load().get(name).is_some() {
            match self.unload(name) {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(err) => tracing::warn!(plugin = name, "{err}"),
            }
        }
        let _write = self.write.lock();
        let slot = self.slot_or_insert(name);
        slot.status.lock().state = PluginState::Disabled;
        self.emit(Event::Disabled {
            name: name.to_owned(),
        });
        Ok(())
    }

    /// Enables plugin `name` (removing it from the state file) and loads it.
    pub fn enable(&self, name: &str) -> Result<(), Error> {
        let dir = self.plugin_dir(name)?;
        self.state_file.set_disabled(name, false)?;
        {
            let _write = self.write.lock();
            let slot = self.slot_or_insert(name);
            let mut status = slot.status.lock();
            if status.state == PluginState::Disabled {
                status.state = PluginState::Discovered;
            }
        }
        self.emit(Event::Enabled {
            name: name.to_owned(),
        });
        match self.load_dir(name, &dir) {
            Err(Error::AlreadyLoaded { .. }) => Ok(()),
            other => other,
        }
    }

    /// Whether plugin `name` is disabled in the state file.
    pub fn is_disabled(&self, name: &str) -> bool {
        self.state_file.is_disabled(name)
    }
}

impl PluginManager {
    /// Watches the base directory and keeps the registry in step with it, until the returned
    /// [`Watcher`] is dropped: a new plugin folder is loaded, a changed `plugin.json` or
    /// library is upgraded ([`reload`](PluginManager::reload)), a removed folder is
    /// unloaded. Outcomes arrive as [`Event`]s.
    ///
    /// A folder is acted on once its files are complete; see [`crate::watch`] for how that is
    /// decided. Call it before [`load_plugins`](PluginManager::load_plugins) to miss nothing.
    pub fn watch(self: &Arc<Self>) -> Result<Watcher, Error> {
        self.watch_with(WatchOptions::default())
    }

    /// [`watch`](PluginManager::watch) with options (debounce, polling).
    pub fn watch_with(self: &Arc<Self>, options: WatchOptions) -> Result<Watcher, Error> {
        Ok(Watcher::start(self.clone(), options)?)
    }
}

impl WatchTarget for PluginManager {
    fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    fn is_loaded(&self, name: &str) -> bool {
        self.plugins
            .load()
            .get(name)
            .is_some_and(|slot| slot.current.load().is_some())
    }

    fn is_disabled(&self, name: &str) -> bool {
        self.state_file.is_disabled(name)
    }

    // Outcomes reach listeners as events; the errors are only logged here.
    fn watch_load(&self, name: &str) {
        match self.load_plugin(name) {
            Ok(()) | Err(Error::AlreadyLoaded { .. }) | Err(Error::Disabled { .. }) => {}
            Err(err) => tracing::debug!(plugin = name, "watch: {err}"),
        }
    }

    fn watch_reload(&self, name: &str) {
        let unchanged = self.plugins.load().get(name).is_some_and(|slot| {
            slot.current.load().as_deref().is_some_and(|v| {
                let files = v.files.lock();
                files.is_some()
                    && *files
                        == FolderStamp::of(&self.base_dir.join(name), &v.loaded.library_in_folder())
            })
        });
        if unchanged {
            tracing::debug!(
                plugin = name,
                "watch: files unchanged since the running version was loaded"
            );
            return;
        }
        if let Err(err) = self.reload(name) {
            tracing::debug!(plugin = name, "watch: {err}");
        }
    }

    fn watch_unload(&self, name: &str) {
        if let Err(err) = self.unload(name) {
            tracing::debug!(plugin = name, "watch: {err}");
        }
    }
}

impl Slot {
    /// Records `old`, just swapped out, as draining, and sets the state, in one step.
    fn begin_retiring(&self, old: Option<&Arc<Version>>, state: PluginState) {
        let mut status = self.status.lock();
        status.state = state;
        if let Some(old) = old {
            status.draining.push(Arc::downgrade(old));
        }
    }

    fn status(&self) -> PluginStatus {
        let current = self.current.load_full();
        let status = self.status.lock();
        // A version read as current just before it was swapped out is also in `draining`:
        // count it once.
        let draining: usize = status
            .draining
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|v| !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, v)))
            .map(|v| v.in_flight.total())
            .sum();
        PluginStatus {
            name: self.name.clone(),
            state: status.state.clone(),
            active: current.as_deref().map(|v| PluginSummary::of(&v.loaded)),
            calls_in_flight: current.as_deref().map_or(0, |v| v.in_flight.total()) + draining,
            retained_libraries: self.retained.load(Ordering::Relaxed),
        }
    }
}

/// Where the default private copy directory is made: a memory-backed directory when the
/// system has one (`$XDG_RUNTIME_DIR`, then `/dev/shm`), else the temporary directory.
///
/// Writing a library copy to disk-backed storage costs several times more, and varies with
/// the disk's write-back load; copies are small and their pages stay mapped anyway.
fn default_copy_parent() -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        let candidates = [
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
            Some(PathBuf::from("/dev/shm")),
        ];
        if let Some(dir) = candidates.into_iter().flatten().find(|d| d.is_dir()) {
            return dir;
        }
    }
    std::env::temp_dir()
}

/// Identifies the files of a plugin folder: `plugin.json` and the library, each by size,
/// modification time and (on Unix) inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FolderStamp {
    manifest: FileStamp,
    library: FileStamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }
}

impl FolderStamp {
    /// `library` is relative to `dir`.
    fn of(dir: &Path, library: &Path) -> Option<Self> {
        Some(FolderStamp {
            manifest: FileStamp::of(&dir.join(crate::manifest::MANIFEST_FILE))?,
            library: FileStamp::of(&dir.join(library))?,
        })
    }
}

/// Copies the plugin folder `from_dir` over `<base_dir>/<name>` so that a restart loads the
/// same version: into a hidden staging folder first, then two renames.
fn install_folder(name: &str, from_dir: &Path, base_dir: &Path) -> Result<(), Error> {
    let io = |action, path: &Path| Error::io(name, action, path);
    let target = base_dir.join(name);
    let staging = base_dir.join(format!(".{name}.new"));
    let old = base_dir.join(format!(".{name}.old"));
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir_all(&old);
    copy_dir_all(from_dir, &staging).map_err(io("copy the new version into", &staging))?;
    if target.exists() {
        std::fs::rename(&target, &old).map_err(io("move aside the old folder", &target))?;
    }
    if let Err(e) = std::fs::rename(&staging, &target) {
        let _ = std::fs::rename(&old, &target);
        return Err(io("move the new version into", &target)(e));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn copy_dir_all(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir_all(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Waits until no call runs on `version`; false if `timeout` passed first.
fn drain(version: &Version, timeout: Duration) -> bool {
    let give_up = Instant::now() + timeout;
    let mut pause = Duration::from_micros(20);
    while version.in_flight.total() != 0 {
        if Instant::now() >= give_up {
            return false;
        }
        // A bounded back-off: drains are rare and short, and calls carry no per-call
        // notification that a waiter could block on without slowing every call down.
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
    true
}

fn run_on_load(name: &str, version: &Version) -> Result<(), Error> {
    let Some(on_load) = version.loaded.module.on_load() else {
        return Ok(());
    };
    let ctx = Context::background();
    let call = CallContext {
        ctx: &ctx,
        plugin: name,
        abort: &version.abort,
    };
    match on_load(HostContext_TO::from_ptr(RRef::new(&call), TD_Opaque)) {
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

/// A handle to one plugin.
///
/// Cheap to clone and `Send + Sync`: call it from any thread. It follows upgrades: each call
/// runs on the version active when it starts.
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
        // The guard keeps this version alive for the whole call; the call guard counts it
        // as in flight, so an unload or upgrade waits for it.
        let guard = self.slot.current.load();
        let Some(version) = guard.as_deref() else {
            return Err(self.not_active());
        };
        let _in_flight = CallGuard::enter(&version.in_flight);
        let call = CallContext {
            ctx,
            plugin: &self.slot.name,
            abort: &version.abort,
        };
        let raw = HostContext_TO::from_ptr(RRef::new(&call), TD_Opaque);
        match (version.loaded.module.execute())(raw) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(err) => Err(Error::call(&self.slot.name, err)),
        }
    }

    #[cold]
    fn not_active(&self) -> Error {
        Error::Unloaded {
            plugin: self.slot.name.clone(),
        }
    }

    /// The active version, or `None` once unloaded.
    pub fn summary(&self) -> Option<PluginSummary> {
        self.slot
            .current
            .load()
            .as_deref()
            .map(|v| PluginSummary::of(&v.loaded))
    }

    /// The plugin's current status.
    pub fn status(&self) -> PluginStatus {
        self.slot.status()
    }
}

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHandle")
            .field("name", &self.slot.name)
            .finish()
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

    #[test]
    fn in_flight_counts_across_threads() {
        let in_flight = Arc::new(InFlight::new());
        let a = CallGuard::enter(&in_flight);
        let other = {
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                let _g = CallGuard::enter(&in_flight);
                in_flight.total()
            })
            .join()
            .unwrap()
        };
        assert_eq!(other, 2);
        assert_eq!(in_flight.total(), 1);
        drop(a);
        assert_eq!(in_flight.total(), 0);
    }
}
