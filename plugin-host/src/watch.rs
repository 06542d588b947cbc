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
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
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

use crate::manifest::{Manifest, MANIFEST_FILE};

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

/// The state of one file, as far as "did it change" is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, u32, i64, i64),
}

impl FileStamp {
    fn of(meta: &Metadata) -> FileStamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            unix: (
                meta.dev(),
                meta.ino(),
                meta.mode(),
                meta.ctime(),
                meta.ctime_nsec(),
            ),
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
        let manifest = Some(FileStamp::of(&manifest_meta));
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
                        .map(|link| (library.clone(), FileStamp::of(&link))),
                })
            }
        };
        if let Some(left) = unsettled_for(&library_meta, self.settle) {
            return waiting(
                format!("{} was modified just now", library.display()),
                Some(left),
            );
        }
        let library_stamp = FileStamp::of(&library_meta);
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

// ---------------------------------------------------------------------------
// Library completeness
// ---------------------------------------------------------------------------

/// Whether the library at `path` is complete, judged from its own headers: the file is at
/// least as long as every byte range its ELF, Mach-O (thin or fat) or PE headers declare.
///
/// A file too short to hold its own headers (including an empty file, or one shorter than
/// 4 bytes) is incomplete. A file of at least 4 bytes that starts with no known magic, or
/// whose headers are malformed beyond judging, counts as complete: the loader rejects it
/// with a clear error. See the [module documentation](self) for the exact rule. Never
/// panics, whatever the file holds.
///
/// # Errors
///
/// The I/O error from opening or reading the file.
pub fn library_complete(path: &Path) -> io::Result<bool> {
    library_status(path).map(|status| status == Status::Complete)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Complete,
    Incomplete { len: u64, needed: u64 },
}

fn library_status(path: &Path) -> io::Result<Status> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    status_of(&mut file, len)
}

fn status_of<R: Read + Seek>(source: &mut R, len: u64) -> io::Result<Status> {
    match required_len(&mut Bytes { source, len }) {
        Ok(needed) if len < needed => Ok(Status::Incomplete { len, needed }),
        Ok(_) | Err(Stop::Malformed) => Ok(Status::Complete),
        // Also when the file shrank while being read (`needed` may then be <= `len`).
        Err(Stop::Short(needed)) => Ok(Status::Incomplete { len, needed }),
        Err(Stop::Io(err)) => Err(err),
    }
}

/// Why parsing stopped early.
enum Stop {
    /// The file must hold at least this many bytes for parsing to go on.
    Short(u64),
    /// The headers make no sense (an overflowing offset, an unknown class): not judged.
    Malformed,
    Io(io::Error),
}

type Parse<T> = Result<T, Stop>;

/// Largest header table read whole; larger ones only count by their end.
const MAX_TABLE: u64 = 16 << 20;

/// Random access to the first `len` bytes of a file.
struct Bytes<'a, R> {
    source: &'a mut R,
    len: u64,
}

impl<R: Read + Seek> Bytes<'_, R> {
    /// The `n` bytes at `offset`, or `Short` if the file ends before them.
    fn read(&mut self, offset: u64, n: u64) -> Parse<Vec<u8>> {
        let end = add(offset, n)?;
        if end > self.len {
            return Err(Stop::Short(end));
        }
        let mut buf = vec![0; usize::try_from(n).map_err(|_| Stop::Malformed)?];
        self.source
            .seek(SeekFrom::Start(offset))
            .map_err(Stop::Io)?;
        match self.source.read_exact(&mut buf) {
            Ok(()) => Ok(buf),
            // The file shrank since its length was read: being rewritten.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(Stop::Short(end)),
            Err(err) => Err(Stop::Io(err)),
        }
    }

    /// Requires the table at `offset` of `count` entries of `size` bytes; returns it, unless
    /// it is larger than [`MAX_TABLE`] (then only its presence is checked).
    fn table(&mut self, offset: u64, count: u64, size: u64) -> Parse<(u64, Option<Vec<u8>>)> {
        let bytes = mul(count, size)?;
        let end = add(offset, bytes)?;
        if end > self.len {
            return Err(Stop::Short(end));
        }
        if bytes > MAX_TABLE {
            return Ok((end, None));
        }
        Ok((end, Some(self.read(offset, bytes)?)))
    }
}

fn add(a: u64, b: u64) -> Parse<u64> {
    a.checked_add(b).ok_or(Stop::Malformed)
}

fn mul(a: u64, b: u64) -> Parse<u64> {
    a.checked_mul(b).ok_or(Stop::Malformed)
}

/// Reads integers of one byte order out of a header buffer.
#[derive(Clone, Copy)]
struct Endian {
    big: bool,
}

impl Endian {
    fn field<const N: usize>(self, buf: &[u8], at: usize) -> Parse<[u8; N]> {
        let bytes: [u8; N] = buf
            .get(at..at.checked_add(N).ok_or(Stop::Malformed)?)
            .and_then(|slice| slice.try_into().ok())
            .ok_or(Stop::Malformed)?;
        Ok(bytes)
    }

    fn u16(self, buf: &[u8], at: usize) -> Parse<u64> {
        let b = self.field::<2>(buf, at)?;
        Ok(u64::from(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }))
    }

    fn u32(self, buf: &[u8], at: usize) -> Parse<u64> {
        let b = self.field::<4>(buf, at)?;
        Ok(u64::from(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }))
    }

    fn u64(self, buf: &[u8], at: usize) -> Parse<u64> {
        let b = self.field::<8>(buf, at)?;
        Ok(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// A 32-bit field for 32-bit formats, a 64-bit one otherwise.
    fn word(self, wide: bool, buf: &[u8], at: usize) -> Parse<u64> {
        if wide {
            self.u64(buf, at)
        } else {
            self.u32(buf, at)
        }
    }
}

const LE: Endian = Endian { big: false };
const BE: Endian = Endian { big: true };

/// The length the file's headers declare.
fn required_len<R: Read + Seek>(bytes: &mut Bytes<'_, R>) -> Parse<u64> {
    let magic = bytes.read(0, 4)?;
    match magic[..] {
        [0x7f, b'E', b'L', b'F'] => elf(bytes),
        [0xcf, 0xfa, 0xed, 0xfe] => mach_o(bytes, LE, true),
        [0xfe, 0xed, 0xfa, 0xcf] => mach_o(bytes, BE, true),
        [0xce, 0xfa, 0xed, 0xfe] => mach_o(bytes, LE, false),
        [0xfe, 0xed, 0xfa, 0xce] => mach_o(bytes, BE, false),
        [0xca, 0xfe, 0xba, 0xbe] => fat(bytes, false),
        [0xca, 0xfe, 0xba, 0xbf] => fat(bytes, true),
        [b'M', b'Z', ..] => pe(bytes),
        _ => Err(Stop::Malformed),
    }
}

fn elf<R: Read + Seek>(bytes: &mut Bytes<'_, R>) -> Parse<u64> {
    let ident = bytes.read(0, 16)?;
    let wide = match ident[4] {
        1 => false,
        2 => true,
        _ => return Err(Stop::Malformed),
    };
    let e = match ident[5] {
        1 => LE,
        2 => BE,
        _ => return Err(Stop::Malformed),
    };
    // Sizes of the file header, a program header and a section header.
    let (header_len, ph_len, sh_len) = if wide { (64, 56, 64) } else { (52, 32, 40) };
    let h = bytes.read(0, header_len)?;
    let (phoff, shoff, fields) = if wide {
        (e.u64(&h, 0x20)?, e.u64(&h, 0x28)?, 0x36)
    } else {
        (e.u32(&h, 0x1c)?, e.u32(&h, 0x20)?, 0x2a)
    };
    let phentsize = e.u16(&h, fields)?;
    let mut phnum = e.u16(&h, fields + 2)?;
    let shentsize = e.u16(&h, fields + 4)?;
    let mut shnum = e.u16(&h, fields + 6)?;
    let mut end = header_len;

    // Extended numbering: counts too large for the header live in section header 0.
    const PN_XNUM: u64 = 0xffff;
    if shoff != 0 && (shnum == 0 || phnum == PN_XNUM) {
        if shentsize < sh_len {
            return Err(Stop::Malformed);
        }
        let sh0 = bytes.read(shoff, sh_len)?;
        if shnum == 0 {
            shnum = e.word(wide, &sh0, if wide { 0x20 } else { 0x14 })?;
        }
        if phnum == PN_XNUM {
            phnum = e.u32(&sh0, if wide { 0x2c } else { 0x1c })?;
        }
    }

    if phnum > 0 {
        if phentsize < ph_len {
            return Err(Stop::Malformed);
        }
        let (table_end, table) = bytes.table(phoff, phnum, phentsize)?;
        end = end.max(table_end);
        if let Some(table) = table {
            let entry = usize::try_from(phentsize).map_err(|_| Stop::Malformed)?;
            for ph in table.chunks_exact(entry) {
                const PT_NULL: u64 = 0;
                if e.u32(ph, 0)? == PT_NULL {
                    continue;
                }
                let (offset, filesz) = if wide {
                    (e.u64(ph, 0x08)?, e.u64(ph, 0x20)?)
                } else {
                    (e.u32(ph, 0x04)?, e.u32(ph, 0x10)?)
                };
                end = end.max(add(offset, filesz)?);
            }
        }
    }
    if shoff != 0 && shnum > 0 {
        if shentsize < sh_len {
            return Err(Stop::Malformed);
        }
        end = end.max(add(shoff, mul(shnum, shentsize)?)?);
    }
    Ok(end)
}

fn mach_o<R: Read + Seek>(bytes: &mut Bytes<'_, R>, e: Endian, wide: bool) -> Parse<u64> {
    let header_len = if wide { 32 } else { 28 };
    let h = bytes.read(0, header_len)?;
    let ncmds = e.u32(&h, 16)?;
    let sizeofcmds = e.u32(&h, 20)?;
    let (mut end, commands) = bytes.table(header_len, 1, sizeofcmds)?;
    let Some(commands) = commands else {
        return Ok(end);
    };
    const LC_SEGMENT: u64 = 0x1;
    const LC_SEGMENT_64: u64 = 0x19;
    let mut at = 0usize;
    for _ in 0..ncmds {
        let cmd = e.u32(&commands, at)?;
        let cmdsize = usize::try_from(e.u32(&commands, at + 4)?).map_err(|_| Stop::Malformed)?;
        if cmdsize < 8 {
            return Err(Stop::Malformed);
        }
        let (fileoff, filesize) = match cmd {
            LC_SEGMENT_64 if cmdsize >= 72 => {
                (e.u64(&commands, at + 40)?, e.u64(&commands, at + 48)?)
            }
            LC_SEGMENT if cmdsize >= 56 => (e.u32(&commands, at + 32)?, e.u32(&commands, at + 36)?),
            _ => (0, 0),
        };
        end = end.max(add(fileoff, filesize)?);
        at = at.checked_add(cmdsize).ok_or(Stop::Malformed)?;
    }
    Ok(end)
}

fn fat<R: Read + Seek>(bytes: &mut Bytes<'_, R>, wide: bool) -> Parse<u64> {
    let h = bytes.read(0, 8)?;
    let count = BE.u32(&h, 4)?;
    // Java class files share the magic; their "count" (the class file version) is 45 or
    // more, while universal binaries hold a handful of architectures.
    if count == 0 || count > 30 {
        return Err(Stop::Malformed);
    }
    let size = if wide { 32 } else { 20 };
    let (mut end, table) = bytes.table(8, count, size)?;
    let table = table.ok_or(Stop::Malformed)?;
    let entry = usize::try_from(size).map_err(|_| Stop::Malformed)?;
    for arch in table.chunks_exact(entry) {
        let (offset, len) = if wide {
            (BE.u64(arch, 8)?, BE.u64(arch, 16)?)
        } else {
            (BE.u32(arch, 8)?, BE.u32(arch, 12)?)
        };
        end = end.max(add(offset, len)?);
    }
    Ok(end)
}

fn pe<R: Read + Seek>(bytes: &mut Bytes<'_, R>) -> Parse<u64> {
    let dos = bytes.read(0, 64)?;
    let pe_at = LE.u32(&dos, 0x3c)?;
    // The signature and the COFF file header.
    let coff = bytes.read(pe_at, 24)?;
    if coff[..4] != *b"PE\0\0" {
        // An MS-DOS program, not a library.
        return Err(Stop::Malformed);
    }
    let sections = LE.u16(&coff, 6)?;
    let optional_len = LE.u16(&coff, 20)?;
    let optional_at = add(pe_at, 24)?;
    let optional = bytes.read(optional_at, optional_len)?;
    let (mut end, table) = bytes.table(add(optional_at, optional_len)?, sections, 40)?;
    let table = table.ok_or(Stop::Malformed)?;
    for section in table.chunks_exact(40) {
        let raw_len = LE.u32(section, 16)?;
        let raw_at = LE.u32(section, 20)?;
        if raw_len > 0 {
            end = end.max(add(raw_at, raw_len)?);
        }
    }
    // The certificate table (data directory 4) holds a file offset, past the sections.
    let directories = match LE.u16(&optional, 0) {
        Ok(0x10b) => Some(96),
        Ok(0x20b) => Some(112),
        _ => None,
    };
    if let Some(at) = directories {
        const SECURITY: usize = 4;
        let count = LE.u32(&optional, at - 4).unwrap_or(0);
        let entry = at + SECURITY * 8;
        if count > SECURITY as u64 {
            if let (Ok(cert_at), Ok(cert_len)) =
                (LE.u32(&optional, entry), LE.u32(&optional, entry + 4))
            {
                if cert_len > 0 {
                    end = end.max(add(cert_at, cert_len)?);
                }
            }
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashSet;
    use std::io::{Cursor, Write};
    use std::sync::{Mutex, OnceLock};

    // -----------------------------------------------------------------------
    // library_complete
    // -----------------------------------------------------------------------

    /// This test binary: a real ELF (Mach-O, PE) file.
    fn exe_bytes() -> &'static [u8] {
        static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
        BYTES.get_or_init(|| std::fs::read(std::env::current_exe().unwrap()).unwrap())
    }

    fn complete(bytes: &[u8]) -> bool {
        let len = bytes.len() as u64;
        status_of(&mut Cursor::new(bytes), len).unwrap() == Status::Complete
    }

    #[test]
    fn real_binary_is_complete_only_whole() {
        let exe = exe_bytes();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.so");
        std::fs::write(&path, exe).unwrap();
        assert!(library_complete(&path).unwrap());
        for cut in [4, 16, 63, exe.len() / 2, exe.len() - 1] {
            std::fs::write(&path, &exe[..cut]).unwrap();
            assert!(
                !library_complete(&path).unwrap(),
                "cut at {cut} of {}",
                exe.len()
            );
        }
        std::fs::write(&path, "").unwrap();
        assert!(!library_complete(&path).unwrap(), "empty");
        std::fs::write(&path, "abcd").unwrap();
        assert!(library_complete(&path).unwrap(), "4 bytes, no magic");
        std::fs::write(&path, "abc").unwrap();
        assert!(!library_complete(&path).unwrap(), "3 bytes");
        let missing = library_complete(&dir.path().join("missing.so")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    fn put(buf: &mut Vec<u8>, at: usize, value: &[u8]) {
        if buf.len() < at + value.len() {
            buf.resize(at + value.len(), 0);
        }
        buf[at..at + value.len()].copy_from_slice(value);
    }

    /// Asserts the bytes are complete from exactly `needed` bytes on.
    #[track_caller]
    fn assert_needs(bytes: &[u8], needed: usize) {
        let mut file = bytes.to_vec();
        file.resize(needed.max(file.len()), 0);
        assert!(
            complete(&file[..needed]),
            "{needed} bytes should be complete"
        );
        assert!(
            !complete(&file[..needed - 1]),
            "{} bytes should not",
            needed - 1
        );
        assert!(
            complete(&[&file[..], &[0; 100]].concat()),
            "longer is complete too"
        );
    }

    fn elf64_le() -> Vec<u8> {
        let mut h = Vec::new();
        put(&mut h, 0, b"\x7fELF\x02\x01\x01");
        put(&mut h, 0x20, &64u64.to_le_bytes()); // e_phoff
        put(&mut h, 0x28, &300u64.to_le_bytes()); // e_shoff
        put(&mut h, 0x36, &56u16.to_le_bytes()); // e_phentsize
        put(&mut h, 0x38, &2u16.to_le_bytes()); // e_phnum
        put(&mut h, 0x3a, &64u16.to_le_bytes()); // e_shentsize
        put(&mut h, 0x3c, &2u16.to_le_bytes()); // e_shnum
                                                // Program header 1: PT_LOAD, p_offset 0, p_filesz 200.
        put(&mut h, 64, &1u32.to_le_bytes());
        put(&mut h, 64 + 0x20, &200u64.to_le_bytes());
        // Program header 2: PT_NULL with a silly size, ignored.
        put(&mut h, 120 + 0x08, &5000u64.to_le_bytes());
        put(&mut h, 120 + 0x20, &5000u64.to_le_bytes());
        h
    }

    #[test]
    fn elf_needs_section_table_and_segments() {
        // Section headers end at 300 + 2 * 64.
        assert_needs(&elf64_le(), 428);

        // Segment data past the section header table.
        let mut h = elf64_le();
        put(&mut h, 64 + 0x08, &400u64.to_le_bytes());
        assert_needs(&h, 600);

        // Extended numbering: e_shnum 0, the count in section header 0's sh_size.
        let mut h = elf64_le();
        put(&mut h, 0x3c, &0u16.to_le_bytes());
        put(&mut h, 300 + 0x20, &3u64.to_le_bytes());
        assert_needs(&h, 300 + 3 * 64);

        // 32-bit big-endian.
        let mut h = Vec::new();
        put(&mut h, 0, b"\x7fELF\x01\x02\x01");
        put(&mut h, 0x1c, &52u32.to_be_bytes()); // e_phoff
        put(&mut h, 0x20, &100u32.to_be_bytes()); // e_shoff
        put(&mut h, 0x2a, &32u16.to_be_bytes()); // e_phentsize
        put(&mut h, 0x2c, &1u16.to_be_bytes()); // e_phnum
        put(&mut h, 0x2e, &40u16.to_be_bytes()); // e_shentsize
        put(&mut h, 0x30, &4u16.to_be_bytes()); // e_shnum
        put(&mut h, 52, &1u32.to_be_bytes()); // PT_LOAD
        put(&mut h, 52 + 0x04, &1000u32.to_be_bytes()); // p_offset
        put(&mut h, 52 + 0x10, &24u32.to_be_bytes()); // p_filesz
        assert_needs(&h, 1024);

        // Too short for the header itself.
        assert!(!complete(&elf64_le()[..40]));
    }

    #[test]
    fn mach_o_needs_every_segment() {
        let mut h = Vec::new();
        put(&mut h, 0, &0xfeed_facf_u32.to_le_bytes());
        put(&mut h, 16, &2u32.to_le_bytes()); // ncmds
        put(&mut h, 20, &144u32.to_le_bytes()); // sizeofcmds
        for (i, (fileoff, filesize)) in [(0u64, 4096u64), (4096, 100)].into_iter().enumerate() {
            let at = 32 + i * 72;
            put(&mut h, at, &0x19u32.to_le_bytes()); // LC_SEGMENT_64
            put(&mut h, at + 4, &72u32.to_le_bytes());
            put(&mut h, at + 40, &fileoff.to_le_bytes());
            put(&mut h, at + 48, &filesize.to_le_bytes());
        }
        assert_needs(&h, 4196);

        // 32-bit, big-endian.
        let mut h = Vec::new();
        put(&mut h, 0, &0xfeed_face_u32.to_be_bytes());
        put(&mut h, 16, &1u32.to_be_bytes());
        put(&mut h, 20, &56u32.to_be_bytes());
        put(&mut h, 28, &0x1u32.to_be_bytes()); // LC_SEGMENT
        put(&mut h, 32, &56u32.to_be_bytes());
        put(&mut h, 28 + 32, &512u32.to_be_bytes());
        put(&mut h, 28 + 36, &88u32.to_be_bytes());
        assert_needs(&h, 600);

        // Load commands cut off.
        assert!(!complete(&h[..40]));
    }

    #[test]
    fn fat_mach_o_needs_every_slice() {
        let mut h = Vec::new();
        put(&mut h, 0, &0xcafe_babe_u32.to_be_bytes());
        put(&mut h, 4, &2u32.to_be_bytes());
        put(&mut h, 8 + 8, &4096u32.to_be_bytes());
        put(&mut h, 8 + 12, &100u32.to_be_bytes());
        put(&mut h, 28 + 8, &8192u32.to_be_bytes());
        put(&mut h, 28 + 12, &50u32.to_be_bytes());
        assert_needs(&h, 8242);

        // A Java class file (same magic, version 52) is not a universal binary.
        let class = [0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52, 0, 0];
        assert!(complete(&class));
    }

    #[test]
    fn pe_needs_sections_and_certificates() {
        let mut h = Vec::new();
        put(&mut h, 0, b"MZ");
        put(&mut h, 0x3c, &0x80u32.to_le_bytes()); // e_lfanew
        put(&mut h, 0x80, b"PE\0\0");
        put(&mut h, 0x80 + 6, &2u16.to_le_bytes()); // NumberOfSections
        put(&mut h, 0x80 + 20, &240u16.to_le_bytes()); // SizeOfOptionalHeader
        let optional = 0x80 + 24;
        put(&mut h, optional, &0x20bu16.to_le_bytes()); // PE32+
        put(&mut h, optional + 108, &16u32.to_le_bytes()); // NumberOfRvaAndSizes
        let sections = optional + 240;
        for (i, (at, len)) in [(0x400u32, 0x200u32), (0x600, 0x200)]
            .into_iter()
            .enumerate()
        {
            put(&mut h, sections + i * 40 + 16, &len.to_le_bytes());
            put(&mut h, sections + i * 40 + 20, &at.to_le_bytes());
        }
        assert_needs(&h, 0x800);

        // An Authenticode signature after the sections.
        put(&mut h, optional + 112 + 32, &0x900u32.to_le_bytes());
        put(&mut h, optional + 112 + 36, &0x80u32.to_le_bytes());
        assert_needs(&h, 0x980);

        // An MS-DOS program is not a library: complete once its header is there.
        let mut dos = h.clone();
        put(&mut dos, 0x80, b"XX");
        assert!(complete(&dos[..0x100]));
        // The PE header not there yet.
        assert!(!complete(&h[..0x90]));
    }

    #[test]
    fn unknown_or_malformed_files_count_as_complete() {
        assert!(complete(b"\0\0\0\0"));
        assert!(complete(b"#!/bin/sh\n"));
        assert!(!complete(b""));
        assert!(!complete(b"\x7fEL"));
        // An unknown ELF class.
        let mut h = elf64_le();
        h[4] = 3;
        assert!(complete(&h));
        // Offsets that overflow.
        let mut h = elf64_le();
        h.resize(428, 0);
        put(&mut h, 0x28, &(u64::MAX - 10).to_le_bytes());
        assert!(complete(&h));
        // An offset far beyond the file, but possible: incomplete.
        let mut h = elf64_le();
        h.resize(428, 0);
        put(&mut h, 0x28, &(1u64 << 40).to_le_bytes());
        assert!(!complete(&h));
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator (xorshift), to mutate real and made-up headers.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let exe = &exe_bytes()[..exe_bytes().len().min(8192)];
        let seeds: [Vec<u8>; 3] = [elf64_le(), exe.to_vec(), {
            let mut h = b"MZ".to_vec();
            h.resize(0x200, 0);
            put(&mut h, 0x3c, &0x40u32.to_le_bytes());
            put(&mut h, 0x40, b"PE\0\0");
            h
        }];
        let magics: [&[u8]; 7] = [
            b"\xcf\xfa\xed\xfe",
            b"\xfe\xed\xfa\xcf",
            b"\xce\xfa\xed\xfe",
            b"\xca\xfe\xba\xbe",
            b"\xca\xfe\xba\xbf",
            b"MZ",
            b"\x7fELF",
        ];
        for round in 0..3000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            if round % 2 == 0 {
                put(&mut bytes, 0, magics[round % magics.len()]);
            }
            for _ in 0..(next() % 16) {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            let cut = (next() % (bytes.len() as u64 + 1)) as usize;
            let _ = complete(&bytes[..cut]);
        }
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
