//! The enable/disable state, persisted in `<base_dir>/.plugin-state.json`.
//!
//! The file is hidden, so discovery skips it. It is read on every check (it is tiny and
//! checks happen at load time only) so that a change made by another process, such as
//! `plugctl disable`, is honoured at the next load. Writes go to a temporary file renamed
//! over the old one, so a crash never leaves half a file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The state file's name inside the base directory.
pub const STATE_FILE: &str = ".plugin-state.json";

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
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::StateFile {
                action: "read",
                path: self.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(Error::StateFile {
                action: "read",
                path: self.path.clone(),
                source,
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_survives_a_new_instance() {
        let base = tempfile::tempdir().unwrap();
        let file = StateFile::new(base.path());
        assert!(!file.is_disabled("hello"));
        file.set_disabled("hello", true).unwrap();
        assert!(StateFile::new(base.path()).is_disabled("hello"));
        file.set_disabled("hello", false).unwrap();
        assert!(!StateFile::new(base.path()).is_disabled("hello"));
    }

    #[test]
    fn a_corrupt_file_disables_nothing_and_cannot_be_overwritten_blindly() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join(STATE_FILE), "{ not json").unwrap();
        let file = StateFile::new(base.path());
        assert!(!file.is_disabled("hello"));
        let err = file.set_disabled("hello", true).unwrap_err();
        assert!(
            matches!(err, Error::StateFile { action: "read", .. }),
            "{err}"
        );
    }
}
