//! The enable/disable state, persisted in `<base_dir>/.plugin-state.json`.
//!
//! The file is hidden, so discovery skips it. It is read on every check (it is tiny and
//! checks happen at load time only) so that a change made by another process, such as
//! `plugctl disable`, is honoured at the next load.
//!
//! What the file may be, and what a write promises:
//!
//! - **Only a regular file is read, and at most [`MAX_STATE_FILE_BYTES`] (1 MiB) of it.** Its
//!   type is checked before it is opened, it is opened without blocking (`O_NONBLOCK` on
//!   Unix), and the opened file's type is checked again, so a FIFO, a device such as
//!   `/dev/zero`, a socket or a directory at that path is refused with an error naming the
//!   path and what it is, instead of blocking every load or filling memory. A symlink is
//!   followed; what it leads to must be a regular file.
//! - **A file that cannot be read fails closed**: since any plugin may be disabled in it, no
//!   plugin loads (the load fails with [`Error::StateFile`], naming the file and the fix)
//!   and [`StateFile::is_disabled`] answers "disabled". A write fails with that error too
//!   rather than replace a file it could not read: the operator fixes the file, or deletes
//!   it to enable every plugin.
//! - **Concurrent writers lose no update**, whether threads or processes: each
//!   read-modify-write holds an exclusive lock on `<base_dir>/.plugin-state.json.lock` (see
//!   [`LOCK_FILE`]), which is opened without following symlinks and never removed.
//! - **The file is replaced atomically**: the new content goes to a new temporary file in the
//!   base directory (created exclusively, so a symlink planted at its name is not followed),
//!   is flushed to disk, and is renamed over the old file; on Unix the directory is flushed
//!   too. Readers take no lock: they see the old file or the new one, never half of one, and
//!   so does whoever looks after a crash.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::small_file::{self, SmallFileError};
use crate::Error;

/// The state file's name inside the base directory.
pub const STATE_FILE: &str = ".plugin-state.json";

/// The lock file's name inside the base directory: held exclusively across every
/// read-modify-write of [`STATE_FILE`].
const LOCK_FILE: &str = ".plugin-state.json.lock";

/// The largest state file read, in bytes (1 MiB). A list of disabled plugin names is a few
/// bytes per plugin; anything larger is refused as corrupt.
const MAX_STATE_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    #[serde(default)]
    disabled: BTreeSet<String>,
}

pub(crate) struct StateFile {
    base_dir: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    /// Serialises read-modify-write cycles within this process; [`LOCK_FILE`] does it across
    /// processes.
    lock: Mutex<()>,
}

impl StateFile {
    pub(crate) fn new(base_dir: &Path) -> Self {
        StateFile {
            base_dir: base_dir.to_path_buf(),
            path: base_dir.join(STATE_FILE),
            lock_path: base_dir.join(LOCK_FILE),
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> Result<State, Error> {
        let read_err = |source| Error::StateFile {
            action: "read",
            path: self.path.clone(),
            source,
        };
        match read_capped(&self.path).map_err(read_err)? {
            None => Ok(State::default()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| read_err(io::Error::new(io::ErrorKind::InvalidData, e))),
        }
    }

    /// Whether `name` is disabled; an error if the file cannot be read, since it may be.
    pub(crate) fn disabled(&self, name: &str) -> Result<bool, Error> {
        Ok(self.read()?.disabled.contains(name))
    }

    /// Whether `name` is disabled, failing closed: an unreadable file is reported in the log
    /// and every plugin counts as disabled, since any may be.
    pub(crate) fn is_disabled(&self, name: &str) -> bool {
        self.disabled(name).unwrap_or_else(|err| {
            tracing::warn!("{}", err.report());
            true
        })
    }

    pub(crate) fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), Error> {
        let _threads = self.lock.lock();
        // Held until the new file is in place; closing it releases the lock.
        let _processes = self.lock_exclusive()?;
        let mut state = self.read()?;
        let changed = if disabled {
            state.disabled.insert(name.to_owned())
        } else {
            state.disabled.remove(name)
        };
        if !changed {
            return Ok(());
        }
        self.replace(&state)
    }

    /// Opens [`LOCK_FILE`] without following a symlink and locks it exclusively, waiting for
    /// any other holder (a writer holds it only for one read-modify-write).
    ///
    /// The lock is taken with fs4 (`flock` on Unix, `LockFileEx` on Windows) rather than
    /// `std::fs::File::lock`, which needs Rust 1.89 while this workspace supports 1.85. fs4's
    /// `lock` is called as `FileExt::lock(&file)`: from Rust 1.89 on, `File` has an inherent
    /// method of that name which method-call syntax would pick instead.
    fn lock_exclusive(&self) -> Result<File, Error> {
        let lock_err = |source| Error::StateFile {
            action: "lock",
            path: self.lock_path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            // Like `std::fs::write`: readable and writable by whom the umask allows.
            options
                .mode(0o666)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        }
        #[cfg(not(unix))]
        if std::fs::symlink_metadata(&self.lock_path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(lock_err(symlink_refused()));
        }
        let file = options.open(&self.lock_path).map_err(|e| {
            #[cfg(unix)]
            if e.raw_os_error() == Some(libc::ELOOP) {
                return lock_err(symlink_refused());
            }
            lock_err(e)
        })?;
        let meta = file.metadata().map_err(lock_err)?;
        if !meta.is_file() {
            let kind = small_file::describe(&meta);
            return Err(lock_err(SmallFileError::NotAFile { kind }.into_io()));
        }
        fs4::FileExt::lock(&file).map_err(lock_err)?;
        Ok(file)
    }

    /// Replaces the state file with `state`, atomically and durably.
    fn replace(&self, state: &State) -> Result<(), Error> {
        let write_err = |source| Error::StateFile {
            action: "write",
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(state).expect("a set of strings serializes") + "\n";
        let prefix = format!("{STATE_FILE}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // Like `std::fs::write`, so that a host running as another user can still read it.
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        // Created with O_EXCL under a random name: a symlink planted there is not followed.
        let mut tmp = builder.tempfile_in(&self.base_dir).map_err(write_err)?;
        tmp.write_all(text.as_bytes()).map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        tmp.persist(&self.path).map_err(|e| write_err(e.error))?;
        // The rename is durable once the directory is.
        #[cfg(unix)]
        File::open(&self.base_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(write_err)?;
        Ok(())
    }
}

/// The content of the regular file at `path`, or `None` if there is none. Anything but a
/// regular file, or a file over [`MAX_STATE_FILE_BYTES`], is an error saying so.
fn read_capped(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match small_file::read_capped(path, MAX_STATE_FILE_BYTES) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(SmallFileError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into_io()),
    }
}

fn symlink_refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "it is a symbolic link, which the lock file must not be",
    )
}
