//! The watcher's thread: turns debounced events into calls on the target, once each folder
//! is ready, and remembers the state of the files it acted on.

use std::collections::{BTreeSet, HashMap};
use std::fs::Metadata;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{EventKind, ModifyKind};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent};

use super::backend::{is_read_only, report};
use super::WatchTarget;
use crate::library::{library_status, FileStamp, Status};
use crate::manifest::{Manifest, MANIFEST_FILE};

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
pub(super) struct Worker<T> {
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
    /// A worker for `target`'s base directory `dir` (absolute), whose events have paths
    /// starting with one of `prefixes`; files count as settled `settle` after their last
    /// change; it returns once `stop` is set.
    pub(super) fn new(
        target: Arc<T>,
        dir: PathBuf,
        prefixes: Vec<PathBuf>,
        settle: Duration,
        stop: &Arc<AtomicBool>,
    ) -> Worker<T> {
        Worker {
            target,
            dir,
            prefixes,
            settle,
            stale_after: settle.saturating_mul(10).max(Duration::from_secs(10)),
            stop: Arc::clone(stop),
            acted: HashMap::new(),
            pending: HashMap::new(),
            warned: HashMap::new(),
        }
    }

    pub(super) fn run(mut self, received: &Receiver<DebounceEventResult>) {
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

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
