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
//! is complete when the file is at least as long as every byte range its ELF, Mach-O (thin
//! or universal) or PE headers declare (its documentation lists them). A file too short to
//! hold its own headers is incomplete (so is an empty file, or one shorter than 4 bytes). A
//! file of at least 4 bytes that starts with no known magic, or whose headers are malformed
//! beyond judging, counts as complete: it is not a library being written, and the loader
//! rejects it with a clear error.
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

mod backend;
mod worker;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use backend::Backend;
use worker::Worker;

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
        "cannot watch the plugin directory {}; {}",
        dir.display(),
        backend::io_hint(source)
    )]
    BaseDir {
        /// The base directory.
        dir: PathBuf,
        /// What reading its metadata reported (`NotADirectory` for a file).
        source: io::Error,
    },

    /// `notify` could not set up the watch.
    #[error(
        "cannot watch the plugin directory {}; {}",
        dir.display(),
        backend::notify_hint(source)
    )]
    Notify {
        /// The base directory.
        dir: PathBuf,
        /// What `notify` reported.
        source: notify::Error,
    },

    /// The watcher's thread could not be started.
    #[error("cannot start the plugin watcher thread; check the process's thread limit")]
    Thread {
        /// What spawning the thread reported.
        source: io::Error,
    },
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
        let worker = Worker::new(target, dir.clone(), prefixes, options.debounce, &stop);
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

#[cfg(test)]
mod tests;
