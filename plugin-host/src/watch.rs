//! Watching the plugin base directory: load, upgrade and unload plugins as their folders
//! change.
//!
//! [`Watcher::start`] watches a [`WatchTarget`]'s base directory recursively (with `notify`,
//! debounced by `notify-debouncer-full`) and drives the target. It knows nothing of the
//! registry: it only asks the target whether a plugin is loaded or disabled, and tells it to
//! load, reload or unload one.
//!
//! # What the watcher does
//!
//! Every changed path is mapped to the plugin folder it belongs to: the first component
//! under the base directory. Entries whose name starts with `.` (hidden entries, staging
//! folders such as `.hello.new`, state files) and files lying directly in the base directory
//! are ignored. Read-only access events (open, read, close without writing) are ignored too,
//! so the loader reading a plugin does not wake the watcher. Each debounced batch handles
//! each plugin name at most once:
//!
//! - the folder is gone (or is no longer a directory) and the plugin is loaded:
//!   [`WatchTarget::watch_unload`];
//! - the folder exists, the plugin is not loaded and not disabled, and the folder is
//!   *ready*: [`WatchTarget::watch_load`];
//! - the folder exists, the plugin is loaded, and the folder is *ready*:
//!   [`WatchTarget::watch_reload`];
//! - otherwise nothing; a folder that is not ready yet is looked at again on its next change.
//!
//! A folder is **ready** when its `plugin.json` is non-empty and has *settled*, and either it
//! does not parse (it is then handed over as is, so the target reports the error once) or
//! the library it names exists, has settled and is *complete*. A file has **settled** when
//! it was last modified at least [`WatchOptions::debounce`] ago (a file whose modification
//! time lies in the future counts as settled); a folder waiting only for a file to settle is
//! looked at again when it should have, even without a new event.
//!
//! **Act once.** After calling `watch_load` or `watch_reload`, the watcher remembers the
//! state of `plugin.json` and of the library (size, modification time and, on Unix, device,
//! inode, mode and change time). Later events that find both files in that same state do
//! nothing: a copy whose last events straddle two batches, a failed load retried on an
//! unrelated event, or a change to another file of the folder does not load the plugin
//! again. Touch the library (or `plugin.json`) to make the watcher try again.
//!
//! # When is a library complete
//!
//! [`library_complete`] decides from the file's own headers, never from timing: a library
//! is complete when the file is at least as long as every byte range its headers declare.
//! For ELF (32 or 64-bit, either byte order) that is the end of the program header table,
//! of every program header's segment (`p_offset + p_filesz`) and of the section header
//! table (`e_shoff + e_shnum * e_shentsize`, with extended numbering); for Mach-O (32 or
//! 64-bit, either byte order) the end of the load commands and of every segment
//! (`fileoff + filesize`); for a universal (fat) Mach-O the end of every architecture's
//! slice; for PE (`MZ`) the end of the section table, of every section's raw data
//! (`PointerToRawData + SizeOfRawData`) and of the Authenticode certificate table. A file
//! too short to hold its own headers is incomplete (so is an empty file, or one shorter
//! than 4 bytes). A file of at least 4 bytes that starts with no known magic, or whose
//! headers are malformed beyond judging (an offset that overflows), counts as complete: it
//! is not a library being written, and the loader rejects it with a clear error.
//!
//! A writer that copies in place is thus seen as incomplete until its last byte lands; a
//! writer that sets the final size first (preallocation) is caught by the settling rule
//! while it keeps writing. A library that stays incomplete without changing is logged
//! (at debug level, and once at warn level when it has not changed for
//! `max(10 s, 10 × debounce)`), never loaded.
//!
//! # Advice for installers
//!
//! Stage a plugin in a hidden folder (`.hello.new`) and rename it into place, or write the
//! library first and `plugin.json` last: a `plugin.json` naming a new version next to the
//! old library is ready, and would be loaded (and rejected) before the new library arrives.
//!
//! # Limits
//!
//! Changes made before [`Watcher::start`] returns are not seen: load the existing plugins
//! after starting the watch. On Linux each folder takes one inotify watch; when the
//! system's limit is reached, new folders are not watched (a warning is logged) and
//! [`WatchOptions::poll_interval`] can be used instead. When the operating system reports
//! lost events, every folder is looked at again.

use std::collections::{BTreeSet, HashMap};
use std::fs::Metadata;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent, Debouncer, RecommendedCache};

use crate::library::{library_status, FileStamp, Status};
use crate::manifest::{Manifest, MANIFEST_FILE};

pub use crate::library::library_complete;

/// What the watcher drives. `PluginManager` implements it.
///
/// The watcher calls these methods from its own thread, one at a time.
pub trait WatchTarget: Send + Sync + 'static {
    /// The base directory holding one folder per plugin.
    fn base_dir(&self) -> &Path;
    /// Whether a plugin of that name is currently loaded (active).
    fn is_loaded(&self, name: &str) -> bool;
    /// Whether the plugin is disabled (then it must not be loaded by the watcher).
    fn is_disabled(&self, name: &str) -> bool;
    /// Load the plugin folder `<base_dir>/<name>` (outcome reported by the target itself
    /// through its events).
    fn watch_load(&self, name: &str);
    /// Upgrade the loaded plugin from its folder (plugin.json or library changed).
    fn watch_reload(&self, name: &str);
    /// Unload the plugin (its folder was removed).
    fn watch_unload(&self, name: &str);
}

/// Settings of a [`Watcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// How long events are collected before they are acted on, and how long a file must
    /// have been left alone before it counts as settled. Defaults to 200 ms; must not be
    /// zero.
    pub debounce: Duration,
    /// `None` (the default) uses the operating system's notifications (inotify, FSEvents,
    /// ReadDirectoryChangesW). `Some(interval)` scans the directory tree every `interval`
    /// instead: slower, but it works where notifications do not (some network and
    /// container file systems) and takes no inotify watches. Must not be zero.
    pub poll_interval: Option<Duration>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(200),
            poll_interval: None,
        }
    }
}

impl WatchOptions {
    /// Sets [`WatchOptions::debounce`].
    pub fn with_debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// Sets [`WatchOptions::poll_interval`].
    pub fn with_poll_interval(mut self, interval: Option<Duration>) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// Why a directory watch could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// An option has a value the watcher cannot work with.
    #[error("invalid watch option `{option}`: {reason}")]
    InvalidOption {
        /// The option's field name in [`WatchOptions`].
        option: &'static str,
        /// Why the value is refused.
        reason: &'static str,
    },

    /// The base directory is missing, unreadable, or not a directory.
    #[error(
        "cannot watch the plugin directory {}: {source}; {}",
        dir.display(),
        io_hint(source)
    )]
    BaseDir {
        /// The base directory.
        dir: PathBuf,
        /// What reading its metadata reported (`NotADirectory` for a file).
        source: io::Error,
    },

    /// `notify` could not set up the watch.
    #[error(
        "cannot watch the plugin directory {}: {source}; {}",
        dir.display(),
        notify_hint(source)
    )]
    Notify {
        /// The base directory.
        dir: PathBuf,
        /// What `notify` reported.
        source: notify::Error,
    },

    /// The watcher's thread could not be started.
    #[error("cannot start the plugin watcher thread: {source}; check the process's thread limit")]
    Thread {
        /// What spawning the thread reported.
        source: io::Error,
    },
}

fn io_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::NotFound => "create it first, or check the path",
        io::ErrorKind::NotADirectory => "point the plugin manager at a directory",
        io::ErrorKind::PermissionDenied => "make it readable by the host",
        _ if is_too_many_files(err) => TOO_MANY_FILES_HINT,
        _ => "check that it exists and is a readable directory",
    }
}

const TOO_MANY_FILES_HINT: &str = "the process or the system ran out of inotify instances or \
    open files: raise `fs.inotify.max_user_instances` or the open-file limit (`ulimit -n`)";

const MAX_WATCHES_HINT: &str = "the system's limit on inotify watches (one per folder) is \
    reached: raise it (`sysctl fs.inotify.max_user_watches=524288`), or watch by polling \
    with `WatchOptions::poll_interval`";

fn notify_hint(err: &notify::Error) -> &'static str {
    match &err.kind {
        notify::ErrorKind::MaxFilesWatch => MAX_WATCHES_HINT,
        notify::ErrorKind::PathNotFound => "create the directory first, or check the path",
        notify::ErrorKind::Io(io) => io_hint(io),
        _ => {
            "check that the directory exists and is readable, or watch by polling with \
              `WatchOptions::poll_interval`"
        }
    }
}

/// `EMFILE` (24 on Linux, macOS and the BSDs): what `inotify_init` returns when the user's
/// inotify instances run out.
fn is_too_many_files(err: &io::Error) -> bool {
    cfg!(unix) && err.raw_os_error() == Some(24)
}

/// The debouncer, over whichever backend the options chose.
enum Backend {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, RecommendedCache>),
}

impl Backend {
    fn start(
        dir: &Path,
        options: &WatchOptions,
        events: mpsc::Sender<DebounceEventResult>,
    ) -> Result<Backend, notify::Error> {
        let mut backend = match options.poll_interval {
            None => Backend::Native(notify_debouncer_full::new_debouncer(
                options.debounce,
                None,
                events,
            )?),
            Some(interval) => Backend::Poll(notify_debouncer_full::new_debouncer_opt(
                options.debounce,
                None,
                events,
                RecommendedCache::new(),
                notify::Config::default().with_poll_interval(interval),
            )?),
        };
        let watched = match &mut backend {
            Backend::Native(debouncer) => debouncer.watch(dir, RecursiveMode::Recursive),
            Backend::Poll(debouncer) => debouncer.watch(dir, RecursiveMode::Recursive),
        };
        match watched {
            Ok(()) => Ok(backend),
            Err(err) => {
                backend.stop();
                Err(err)
            }
        }
    }

    /// Stops the debouncer and joins its thread: it delivers nothing afterwards.
    fn stop(self) {
        match self {
            Backend::Native(debouncer) => debouncer.stop(),
            Backend::Poll(debouncer) => debouncer.stop(),
        }
    }
}

/// A running directory watch; dropping it stops watching (and joins its thread).
///
/// # Examples
///
/// ```no_run
/// # use std::path::{Path, PathBuf};
/// # use std::sync::Arc;
/// use plugin_host::watch::{WatchOptions, WatchTarget, Watcher};
///
/// struct Printer(PathBuf);
///
/// impl WatchTarget for Printer {
///     fn base_dir(&self) -> &Path {
///         &self.0
///     }
///     fn is_loaded(&self, _name: &str) -> bool {
///         false
///     }
///     fn is_disabled(&self, _name: &str) -> bool {
///         false
///     }
///     fn watch_load(&self, name: &str) {
///         println!("load {name}");
///     }
///     fn watch_reload(&self, name: &str) {
///         println!("reload {name}");
///     }
///     fn watch_unload(&self, name: &str) {
///         println!("unload {name}");
///     }
/// }
///
/// let watcher = Watcher::start(Arc::new(Printer("plugins".into())), WatchOptions::default())?;
/// // ... later: stop watching.
/// drop(watcher);
/// # Ok::<(), plugin_host::watch::WatchError>(())
/// ```
pub struct Watcher {
    dir: PathBuf,
    options: WatchOptions,
    backend: Option<Backend>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Starts watching `target.base_dir()` (recursively, so changes inside plugin folders
    /// are seen).
    ///
    /// The watcher holds `target` until it is dropped: a target that owns its own `Watcher`
    /// must drop it explicitly (or hold the target through a weak reference) to be freed.
    ///
    /// # Errors
    ///
    /// [`WatchError::InvalidOption`] for a zero `debounce` or `poll_interval`;
    /// [`WatchError::BaseDir`] if the base directory is missing or not a directory;
    /// [`WatchError::Notify`] if the operating system refuses the watch (for instance when
    /// inotify limits are reached); [`WatchError::Thread`] if no thread can be started.
    pub fn start<T: WatchTarget>(
        target: Arc<T>,
        options: WatchOptions,
    ) -> Result<Watcher, WatchError> {
        if options.debounce.is_zero() {
            return Err(WatchError::InvalidOption {
                option: "debounce",
                reason: "must be longer than zero (200 ms is a good value)",
            });
        }
        if options
            .poll_interval
            .is_some_and(|interval| interval.is_zero())
        {
            return Err(WatchError::InvalidOption {
                option: "poll_interval",
                reason: "must be longer than zero (or `None` to use notifications)",
            });
        }
        let given = target.base_dir().to_path_buf();
        let dir = std::path::absolute(&given).map_err(|source| WatchError::BaseDir {
            dir: given.clone(),
            source,
        })?;
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(WatchError::BaseDir {
                    dir: given,
                    source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                })
            }
            Err(source) => return Err(WatchError::BaseDir { dir: given, source }),
        }

        let (events, received) = mpsc::channel();
        let backend =
            Backend::start(&dir, &options, events).map_err(|source| WatchError::Notify {
                dir: given.clone(),
                source,
            })?;

        // Event paths start with the path given to notify, or (FSEvents) its canonical form.
        let mut prefixes = vec![dir.clone()];
        if let Ok(canonical) = dir.canonicalize() {
            if canonical != dir {
                prefixes.push(canonical);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            target,
            dir: dir.clone(),
            prefixes,
            settle: options.debounce,
            stale_after: options
                .debounce
                .saturating_mul(10)
                .max(Duration::from_secs(10)),
            stop: Arc::clone(&stop),
            acted: HashMap::new(),
            pending: HashMap::new(),
            warned: HashMap::new(),
        };
        let spawned = std::thread::Builder::new()
            .name("plugin-watch".to_owned())
            .spawn(move || worker.run(&received));
        let thread = match spawned {
            Ok(thread) => thread,
            Err(source) => {
                backend.stop();
                return Err(WatchError::Thread { source });
            }
        };
        tracing::debug!(dir = %dir.display(), ?options, "watching the plugin directory");
        Ok(Watcher {
            thread_id: thread.thread().id(),
            dir,
            options,
            backend: Some(backend),
            stop,
            thread: Some(thread),
        })
    }

    /// The watched directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the watch runs with.
    pub fn options(&self) -> &WatchOptions {
        &self.options
    }

    /// Stops watching; the same as dropping the watcher.
    pub fn stop(self) {}
}

impl Drop for Watcher {
    /// Stops the debouncer, then joins the watcher's thread: once `drop` returns, no method
    /// of the target is called any more. Dropped from inside a target callback (on the
    /// watcher's own thread), it cannot join itself: the thread stops after that callback.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(backend) = self.backend.take() {
            // Joins the debouncer thread, which owns the only sender: the worker's channel
            // then disconnects, which wakes it up.
            backend.stop();
        }
        if let Some(thread) = self.thread.take() {
            if std::thread::current().id() != self.thread_id && thread.join().is_err() {
                tracing::error!("the plugin watcher thread panicked");
            }
        }
    }
}

/// The state of a plugin folder's files when the watcher acted on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    /// `None` when its metadata could not be read.
    manifest: Option<FileStamp>,
    library: Option<(PathBuf, FileStamp)>,
}

/// Whether a plugin folder can be handed to the target.
enum Readiness {
    Ready(Stamp),
    /// Not yet; look again after `recheck` if given (otherwise on the next event).
    Waiting {
        why: String,
        recheck: Option<Duration>,
    },
    /// The library is incomplete and has not changed for a long time.
    Stuck {
        why: String,
        library: FileStamp,
    },
}

/// How long until the file has settled, if it has not.
fn unsettled_for(meta: &Metadata, settle: Duration) -> Option<Duration> {
    let modified = meta.modified().ok()?;
    // A modification time in the future (clock skew): cannot judge, count it as settled.
    let age = SystemTime::now().duration_since(modified).ok()?;
    settle.checked_sub(age).filter(|left| !left.is_zero())
}

/// Slack added to settle rechecks, for file systems whose clocks lag.
const RECHECK_SLACK: Duration = Duration::from_millis(20);

/// The thread that turns debounced events into calls on the target.
struct Worker<T> {
    target: Arc<T>,
    /// The base directory, absolute.
    dir: PathBuf,
    /// What event paths may start with.
    prefixes: Vec<PathBuf>,
    settle: Duration,
    stale_after: Duration,
    stop: Arc<AtomicBool>,
    /// The state of each folder's files when the watcher last loaded or reloaded it.
    acted: HashMap<String, Stamp>,
    /// Folders to look at again at a given time, without waiting for an event.
    pending: HashMap<String, Instant>,
    /// Stuck libraries already reported at warn level.
    warned: HashMap<String, FileStamp>,
}

impl<T: WatchTarget> Worker<T> {
    fn run(mut self, received: &Receiver<DebounceEventResult>) {
        loop {
            let next = match self.pending.values().min() {
                Some(due) => received.recv_timeout(due.saturating_duration_since(Instant::now())),
                None => received
                    .recv()
                    .map_err(|mpsc::RecvError| RecvTimeoutError::Disconnected),
            };
            if self.stopped() {
                return;
            }
            let mut names = BTreeSet::new();
            match next {
                Ok(Ok(events)) => self.collect(&events, &mut names),
                Ok(Err(errors)) => report(&errors),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            self.pending.retain(|name, due| {
                let is_due = *due <= now;
                if is_due {
                    names.insert(name.clone());
                }
                !is_due
            });
            for name in names {
                if self.stopped() {
                    return;
                }
                self.pending.remove(&name);
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.handle(&name))) {
                    tracing::error!(
                        plugin = %name,
                        "handling a change to the plugin folder panicked: {}",
                        panic_message(panic.as_ref())
                    );
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Adds the plugin names the events touch to `names`.
    fn collect(&self, events: &[DebouncedEvent], names: &mut BTreeSet<String>) {
        let mut rescan = false;
        for event in events {
            if event.need_rescan() {
                rescan = true;
                continue;
            }
            if is_read_only(&event.kind) {
                continue;
            }
            for path in &event.paths {
                if let Some(name) = self.plugin_name(path, &event.kind) {
                    names.insert(name);
                }
            }
        }
        if rescan {
            tracing::warn!(
                dir = %self.dir.display(),
                "file system events were lost; looking at every plugin folder again"
            );
            self.every_name(names);
        }
    }

    /// The plugin folder `path` belongs to, if it is one the watcher looks after.
    fn plugin_name(&self, path: &Path, kind: &EventKind) -> Option<String> {
        let relative = self
            .prefixes
            .iter()
            .find_map(|prefix| path.strip_prefix(prefix).ok())?;
        let mut components = relative.components();
        let Some(first) = components.next() else {
            if matches!(
                kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
            ) {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "the plugin directory was removed or renamed; changes to it are no longer seen"
                );
            }
            return None;
        };
        let Component::Normal(name) = first else {
            return None;
        };
        let Some(name) = name.to_str() else {
            tracing::debug!(path = %path.display(), "ignoring a change under a name that is not UTF-8");
            return None;
        };
        if name.starts_with('.') {
            return None;
        }
        // A file directly in the base directory is not a plugin folder.
        if components.next().is_none() && path.is_file() {
            return None;
        }
        Some(name.to_owned())
    }

    /// Every name worth looking at after lost events.
    fn every_name(&self, names: &mut BTreeSet<String>) {
        names.extend(self.acted.keys().cloned());
        names.extend(self.pending.keys().cloned());
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    if let Ok(name) = entry.file_name().into_string() {
                        if !name.starts_with('.') {
                            names.insert(name);
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(
                dir = %self.dir.display(),
                "cannot list the plugin directory: {err}"
            ),
        }
    }

    /// Looks at the folder of `name` and calls the target if needed.
    fn handle(&mut self, name: &str) {
        let folder = self.dir.join(name);
        let is_dir = match std::fs::metadata(&folder) {
            Ok(meta) => meta.is_dir(),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                false
            }
            Err(err) => {
                tracing::warn!(
                    plugin = name,
                    folder = %folder.display(),
                    "cannot look at the plugin folder: {err}"
                );
                return;
            }
        };
        let loaded = self.target.is_loaded(name);
        if !is_dir {
            self.acted.remove(name);
            self.warned.remove(name);
            if loaded {
                tracing::debug!(plugin = name, "plugin folder removed: unloading");
                self.target.watch_unload(name);
            }
            return;
        }
        if !loaded && self.target.is_disabled(name) {
            tracing::debug!(
                plugin = name,
                "plugin folder changed, but the plugin is disabled"
            );
            return;
        }
        match self.readiness(&folder) {
            Readiness::Ready(stamp) => {
                if self.acted.get(name) == Some(&stamp) {
                    tracing::debug!(
                        plugin = name,
                        "plugin.json and the library are as when last acted on: nothing to do"
                    );
                    return;
                }
                self.warned.remove(name);
                self.acted.insert(name.to_owned(), stamp);
                if loaded {
                    tracing::debug!(plugin = name, "plugin folder changed: reloading");
                    self.target.watch_reload(name);
                } else {
                    tracing::debug!(plugin = name, "plugin folder ready: loading");
                    self.target.watch_load(name);
                }
            }
            Readiness::Waiting { why, recheck } => {
                tracing::debug!(plugin = name, "plugin folder not ready: {why}");
                if let Some(after) = recheck {
                    self.pending
                        .insert(name.to_owned(), Instant::now() + after + RECHECK_SLACK);
                }
            }
            Readiness::Stuck { why, library } => {
                if self.warned.get(name) == Some(&library) {
                    tracing::debug!(plugin = name, "plugin folder not ready: {why}");
                } else {
                    tracing::warn!(plugin = name, "plugin folder not ready: {why}");
                    self.warned.insert(name.to_owned(), library);
                }
            }
        }
    }

    fn readiness(&self, folder: &Path) -> Readiness {
        let waiting = |why: String, recheck| Readiness::Waiting { why, recheck };
        let manifest_file = folder.join(MANIFEST_FILE);
        let manifest_meta = match std::fs::metadata(&manifest_file) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return waiting(format!("no {MANIFEST_FILE} yet"), None);
            }
            // Unreadable: let the target report it.
            Err(_) => {
                return Readiness::Ready(Stamp {
                    manifest: None,
                    library: None,
                })
            }
        };
        if manifest_meta.is_file() && manifest_meta.len() == 0 {
            return waiting(format!("{MANIFEST_FILE} is empty (being written?)"), None);
        }
        if let Some(left) = unsettled_for(&manifest_meta, self.settle) {
            return waiting(format!("{MANIFEST_FILE} was modified just now"), Some(left));
        }
        let manifest = Some(FileStamp::from_metadata(&manifest_meta));
        let broken = |manifest| {
            Readiness::Ready(Stamp {
                manifest,
                library: None,
            })
        };
        // A manifest that does not parse (or names no local library) is handed over as is:
        // the target reports the error; a later write changes the stamp and is acted on.
        let Ok(parsed) = Manifest::load(folder) else {
            return broken(manifest);
        };
        let Ok(candidates) = parsed.library_candidates(folder) else {
            return broken(manifest);
        };
        let Some(library) = candidates
            .iter()
            .find(|path| path.symlink_metadata().is_ok())
        else {
            let names: Vec<_> = candidates.iter().map(|p| p.display().to_string()).collect();
            return waiting(
                format!("no library yet (looked for {})", names.join(", ")),
                None,
            );
        };
        let library_meta = match std::fs::metadata(library) {
            Ok(meta) if meta.is_file() => meta,
            // A dangling link, a folder, an unreadable file: let the target report it.
            _ => {
                return Readiness::Ready(Stamp {
                    manifest,
                    library: library
                        .symlink_metadata()
                        .ok()
                        .map(|link| (library.clone(), FileStamp::from_metadata(&link))),
                })
            }
        };
        if let Some(left) = unsettled_for(&library_meta, self.settle) {
            return waiting(
                format!("{} was modified just now", library.display()),
                Some(left),
            );
        }
        let library_stamp = FileStamp::from_metadata(&library_meta);
        match library_status(library) {
            Ok(Status::Complete) => Readiness::Ready(Stamp {
                manifest,
                library: Some((library.clone(), library_stamp)),
            }),
            Ok(Status::Incomplete { len, needed }) => {
                let why = format!(
                    "{} is incomplete: {len} bytes of at least {needed} its headers declare; \
                     it is looked at again when it changes",
                    library.display()
                );
                let age = library_meta
                    .modified()
                    .ok()
                    .and_then(|modified| SystemTime::now().duration_since(modified).ok());
                match age.and_then(|age| self.stale_after.checked_sub(age)) {
                    Some(left) if !left.is_zero() => waiting(why, Some(left)),
                    // Unchanged for long, or no usable modification time.
                    _ => Readiness::Stuck {
                        why: format!("{why} (it has not changed for a while: is it truncated?)"),
                        library: library_stamp,
                    },
                }
            }
            // Unreadable: let the target report it.
            Err(_) => Readiness::Ready(Stamp {
                manifest,
                library: Some((library.clone(), library_stamp)),
            }),
        }
    }
}

/// Whether an event only reports reading (opening, reading, closing without writing).
fn is_read_only(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

fn report(errors: &[notify::Error]) {
    for err in errors {
        if matches!(err.kind, notify::ErrorKind::MaxFilesWatch) {
            tracing::warn!(
                "changes in new plugin folders may be missed: {err}; {MAX_WATCHES_HINT}"
            );
        } else {
            tracing::warn!("watching the plugin directory: {err}");
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashSet;
    use std::fs::File;
    use std::io::{Seek, Write};
    use std::sync::{Mutex, OnceLock};

    /// This test binary: a real, complete ELF (Mach-O, PE) file, standing in for a library.
    fn exe_bytes() -> &'static [u8] {
        static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
        BYTES.get_or_init(|| std::fs::read(std::env::current_exe().unwrap()).unwrap())
    }

    // -----------------------------------------------------------------------
    // The watcher
    // -----------------------------------------------------------------------

    /// How long a test waits for a call before failing.
    const TIMEOUT: Duration = Duration::from_secs(10);
    const DEBOUNCE: Duration = Duration::from_millis(100);

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Load(String),
        Reload(String),
        Unload(String),
    }

    /// Records calls; loads succeed (the name becomes loaded), except for `panic_on`.
    struct Mock {
        base: PathBuf,
        loaded: Mutex<HashSet<String>>,
        disabled: HashSet<String>,
        panic_on: Option<String>,
        calls: mpsc::Sender<(Call, Instant)>,
    }

    impl Mock {
        fn record(&self, call: Call) {
            let _ = self.calls.send((call, Instant::now()));
        }
    }

    impl WatchTarget for Mock {
        fn base_dir(&self) -> &Path {
            &self.base
        }
        fn is_loaded(&self, name: &str) -> bool {
            self.loaded.lock().unwrap().contains(name)
        }
        fn is_disabled(&self, name: &str) -> bool {
            self.disabled.contains(name)
        }
        fn watch_load(&self, name: &str) {
            if self.panic_on.as_deref() == Some(name) {
                panic!("the mock refuses to load {name}");
            }
            self.loaded.lock().unwrap().insert(name.to_owned());
            self.record(Call::Load(name.to_owned()));
        }
        fn watch_reload(&self, name: &str) {
            self.record(Call::Reload(name.to_owned()));
        }
        fn watch_unload(&self, name: &str) {
            self.loaded.lock().unwrap().remove(name);
            self.record(Call::Unload(name.to_owned()));
        }
    }

    struct Setup {
        base: tempfile::TempDir,
        mock: Arc<Mock>,
        calls: mpsc::Receiver<(Call, Instant)>,
        watcher: Watcher,
    }

    fn setup_with(disabled: &[&str], panic_on: Option<&str>, options: WatchOptions) -> Setup {
        let base = tempfile::tempdir().unwrap();
        let (tx, calls) = mpsc::channel();
        let mock = Arc::new(Mock {
            base: base.path().to_path_buf(),
            loaded: Mutex::new(HashSet::new()),
            disabled: disabled.iter().map(|s| s.to_string()).collect(),
            panic_on: panic_on.map(str::to_owned),
            calls: tx,
        });
        let watcher = Watcher::start(Arc::clone(&mock), options).unwrap();
        Setup {
            base,
            mock,
            calls,
            watcher,
        }
    }

    fn setup() -> Setup {
        setup_with(&[], None, WatchOptions::default().with_debounce(DEBOUNCE))
    }

    impl Setup {
        fn dir(&self, name: &str) -> PathBuf {
            self.base.path().join(name)
        }

        /// Writes `<name>/plugin.json`, then the whole library, into `folder`.
        fn install_in(&self, folder: &str, name: &str) {
            let dir = self.dir(folder);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(MANIFEST_FILE), manifest(name)).unwrap();
            std::fs::write(library(&dir, name), exe_bytes()).unwrap();
        }

        fn install(&self, name: &str) {
            self.install_in(name, name);
        }

        /// The next call, failing after [`TIMEOUT`].
        fn next(&self) -> (Call, Instant) {
            self.calls
                .recv_timeout(TIMEOUT)
                .expect("no call from the watcher in time")
        }

        /// Installs a plugin named `marker` and asserts that the next call is its load:
        /// every event before it has been handled, without calling the target.
        fn assert_quiet(&self) {
            self.install("marker");
            assert_eq!(self.next().0, Call::Load("marker".into()));
        }
    }

    fn manifest(name: &str) -> String {
        format!(
            r#"{{"name":"{name}","version":"0.1.0","source":{{"mode":"local_so","path":"{name}"}}}}"#
        )
    }

    fn library(dir: &Path, name: &str) -> PathBuf {
        dir.join(plugin_test_support::library_file_name(name))
    }

    #[test]
    fn new_plugin_folder_is_loaded_once() {
        let s = setup();
        s.install("hello");
        assert_eq!(s.next().0, Call::Load("hello".into()));
        s.assert_quiet();
    }

    #[test]
    fn library_copied_slowly_is_loaded_once_complete() {
        let s = setup();
        let dir = s.dir("hello");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), manifest("hello")).unwrap();
        let exe = exe_bytes();
        let mut file = File::create(library(&dir, "hello")).unwrap();
        for cut in [16, exe.len() / 2, exe.len() - 1] {
            let written = file.stream_position().unwrap() as usize;
            file.write_all(&exe[written..cut]).unwrap();
            // A slow writer: pauses longer than the debounce, so each chunk is a batch of
            // its own that finds the library incomplete.
            std::thread::sleep(DEBOUNCE * 3);
        }
        let written = file.stream_position().unwrap() as usize;
        file.write_all(&exe[written..]).unwrap();
        let finished = Instant::now();
        drop(file);
        let (call, at) = s.next();
        assert_eq!(call, Call::Load("hello".into()));
        assert!(at >= finished, "loaded before the last chunk was written");
        s.assert_quiet();
    }

    #[test]
    fn removed_folder_is_unloaded() {
        let s = setup();
        s.install("hello");
        assert_eq!(s.next().0, Call::Load("hello".into()));
        std::fs::remove_dir_all(s.dir("hello")).unwrap();
        assert_eq!(s.next().0, Call::Unload("hello".into()));
        s.assert_quiet();
    }

    #[test]
    fn changed_library_or_manifest_reloads() {
        let s = setup();
        s.install("hello");
        assert_eq!(s.next().0, Call::Load("hello".into()));
        let dir = s.dir("hello");
        // Rewritten in place: truncated first, so briefly incomplete.
        std::fs::write(library(&dir, "hello"), exe_bytes()).unwrap();
        assert_eq!(s.next().0, Call::Reload("hello".into()));
        let upgraded = manifest("hello").replace("0.1.0", "0.2.0");
        std::fs::write(dir.join(MANIFEST_FILE), upgraded).unwrap();
        assert_eq!(s.next().0, Call::Reload("hello".into()));
        // Another file in the folder does not reload.
        std::fs::write(dir.join("README.md"), "hello").unwrap();
        s.assert_quiet();
    }

    #[test]
    fn hidden_entries_and_files_are_ignored_until_renamed_into_place() {
        let s = setup();
        s.install_in(".hello.new", "hello");
        std::fs::write(s.dir("notes.txt"), "not a plugin").unwrap();
        std::fs::write(s.dir(".state"), "{}").unwrap();
        s.assert_quiet();
        std::fs::rename(s.dir(".hello.new"), s.dir("hello")).unwrap();
        assert_eq!(s.next().0, Call::Load("hello".into()));
    }

    #[test]
    fn disabled_plugins_are_not_loaded() {
        let s = setup_with(
            &["off"],
            None,
            WatchOptions::default().with_debounce(DEBOUNCE),
        );
        s.install("off");
        s.assert_quiet();
    }

    #[test]
    fn broken_manifest_is_handed_over_once_and_empty_one_waits() {
        let s = setup();
        let dir = s.dir("broken");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(library(&dir, "broken"), exe_bytes()).unwrap();
        // Empty: still being created, nothing to do.
        std::fs::write(dir.join(MANIFEST_FILE), "").unwrap();
        s.assert_quiet();
        // Broken: the target is told once, and reports the error itself.
        std::fs::write(dir.join(MANIFEST_FILE), "{\"name\":").unwrap();
        assert_eq!(s.next().0, Call::Load("broken".into()));
        // Not again while the file stays as it is (a marker of another name is handled
        // after it, so a second call would come first).
        std::fs::remove_dir_all(s.dir("marker")).unwrap();
        assert_eq!(s.next().0, Call::Unload("marker".into()));
        s.assert_quiet();
    }

    #[test]
    fn a_panicking_target_does_not_stop_the_watch() {
        let s = setup_with(
            &[],
            Some("boom"),
            WatchOptions::default().with_debounce(DEBOUNCE),
        );
        s.install("boom");
        s.assert_quiet();
        s.install("hello");
        assert_eq!(s.next().0, Call::Load("hello".into()));
    }

    #[test]
    fn polling_works_too() {
        let options = WatchOptions::default()
            .with_debounce(DEBOUNCE)
            .with_poll_interval(Some(Duration::from_millis(50)));
        let s = setup_with(&[], None, options);
        s.install("hello");
        assert_eq!(s.next().0, Call::Load("hello".into()));
        std::fs::remove_dir_all(s.dir("hello")).unwrap();
        assert_eq!(s.next().0, Call::Unload("hello".into()));
    }

    #[test]
    fn dropping_the_watcher_joins_its_thread() {
        let s = setup();
        assert_eq!(s.watcher.dir(), s.base.path());
        drop(s.watcher);
        // The thread ended and released its reference to the target.
        assert_eq!(Arc::strong_count(&s.mock), 1);
    }

    #[test]
    fn start_errors_name_the_directory_and_the_fix() {
        let base = tempfile::tempdir().unwrap();
        let start = |dir: PathBuf, options| {
            let (calls, _) = mpsc::channel();
            let mock = Mock {
                base: dir,
                loaded: Mutex::default(),
                disabled: HashSet::new(),
                panic_on: None,
                calls,
            };
            Watcher::start(Arc::new(mock), options).unwrap_err()
        };

        let missing = base.path().join("missing");
        let err = start(missing.clone(), WatchOptions::default());
        assert!(matches!(err, WatchError::BaseDir { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(shown.contains(&missing.display().to_string()), "{shown}");
        assert!(shown.contains("create it first"), "{shown}");

        let file = base.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = start(file, WatchOptions::default());
        assert!(err.to_string().contains("not a directory"), "{err}");

        let err = start(
            base.path().into(),
            WatchOptions::default().with_debounce(Duration::ZERO),
        );
        assert!(matches!(
            err,
            WatchError::InvalidOption {
                option: "debounce",
                ..
            }
        ));
        let err = start(
            base.path().into(),
            WatchOptions::default().with_poll_interval(Some(Duration::ZERO)),
        );
        assert!(err.to_string().contains("poll_interval"), "{err}");
    }

    #[test]
    fn notify_error_messages_carry_a_hint() {
        let err = WatchError::Notify {
            dir: "plugins".into(),
            source: notify::Error::new(notify::ErrorKind::MaxFilesWatch),
        };
        let shown = err.to_string();
        assert!(
            shown.starts_with("cannot watch the plugin directory plugins: "),
            "{shown}"
        );
        assert!(shown.contains("max_user_watches"), "{shown}");
    }
}
