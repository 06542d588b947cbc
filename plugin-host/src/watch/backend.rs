//! The notify backend (native notifications or polling, debounced), its error hints, and
//! how its events are read.

use std::io;
use std::path::Path;
use std::sync::mpsc;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache};

use super::WatchOptions;

pub(super) fn io_hint(err: &io::Error) -> &'static str {
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

pub(super) fn notify_hint(err: &notify::Error) -> &'static str {
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
pub(super) enum Backend {
    Native(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, RecommendedCache>),
}

impl Backend {
    pub(super) fn start(
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
    pub(super) fn stop(self) {
        match self {
            Backend::Native(debouncer) => debouncer.stop(),
            Backend::Poll(debouncer) => debouncer.stop(),
        }
    }
}

/// Whether an event only reports reading (opening, reading, closing without writing).
pub(super) fn is_read_only(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

pub(super) fn report(errors: &[notify::Error]) {
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
