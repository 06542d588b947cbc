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
//! - **A file that cannot be read disables nothing**: the check logs the error and answers
//!   "not disabled", so a corrupt file never stops plugins from loading. A write, in
//!   contrast, fails with that error rather than replace a file it could not read.
//! - **Writes** go to a temporary file renamed over the old one, so a crash never leaves
//!   half a file.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The state file's name inside the base directory.
pub const STATE_FILE: &str = ".plugin-state.json";

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
    path: PathBuf,
    /// Serialises read-modify-write cycles within this process.
    lock: Mutex<()>,
}

impl StateFile {
    pub(crate) fn new(base_dir: &Path) -> Self {
        StateFile {
            path: base_dir.join(STATE_FILE),
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

    /// Whether `name` is disabled. An unreadable file is reported in the log and treated as
    /// "nothing disabled", so a corrupt file never stops plugins from loading.
    pub(crate) fn is_disabled(&self, name: &str) -> bool {
        match self.read() {
            Ok(state) => state.disabled.contains(name),
            Err(err) => {
                tracing::warn!("{err}");
                false
            }
        }
    }

    pub(crate) fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), Error> {
        let _guard = self.lock.lock();
        let mut state = self.read()?;
        let changed = if disabled {
            state.disabled.insert(name.to_owned())
        } else {
            state.disabled.remove(name)
        };
        if !changed {
            return Ok(());
        }
        let write_err = |source| Error::StateFile {
            action: "write",
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&state).expect("a set of strings serializes");
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text + "\n").map_err(write_err)?;
        std::fs::rename(&tmp, &self.path).map_err(write_err)
    }
}

/// The content of the regular file at `path`, or `None` if there is none. Anything but a
/// regular file, or a file over [`MAX_STATE_FILE_BYTES`], is an error saying so.
fn read_capped(path: &Path) -> io::Result<Option<Vec<u8>>> {
    // Look before opening: opening a device may have effects of its own.
    match std::fs::metadata(path) {
        Ok(meta) => check_regular(&meta)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut options = OpenOptions::new();
    options.read(true);
    // Should a FIFO have replaced the file since the look above, opening it does not wait
    // for a writer.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    check_regular(&meta)?;
    if meta.len() > MAX_STATE_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_STATE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// An error unless `meta` is a regular file's, naming what it is instead.
fn check_regular(meta: &std::fs::Metadata) -> io::Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {}, not a regular file", describe(&meta.file_type())),
    ))
}

/// What a file of type `file_type` is, for an error message.
fn describe(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is larger than the state file's cap of 1 MiB ({MAX_STATE_FILE_BYTES} bytes)"),
    )
}
