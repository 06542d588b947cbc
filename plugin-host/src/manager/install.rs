//! Where private copies go, and installing a plugin folder into the base directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::library::FileStamp;
use crate::Error;

pub(super) enum CopyDir {
    Given(PathBuf),
    Temp(OnceLock<Result<tempfile::TempDir, String>>),
}

/// Where the default private copy directory is made: a memory-backed directory when the
/// system has one (`$XDG_RUNTIME_DIR`, then `/dev/shm`), else the temporary directory.
///
/// Writing a library copy to disk-backed storage costs several times more, and varies with
/// the disk's write-back load; copies are small and their pages stay mapped anyway.
pub(super) fn default_copy_parent() -> PathBuf {
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
pub(super) struct FolderStamp {
    manifest: FileStamp,
    library: FileStamp,
}

impl FolderStamp {
    /// `library` is relative to `dir`.
    pub(super) fn of(dir: &Path, library: &Path) -> Option<Self> {
        Some(FolderStamp {
            manifest: FileStamp::of(&dir.join(crate::manifest::MANIFEST_FILE))?,
            library: FileStamp::of(&dir.join(library))?,
        })
    }
}

/// Copies the plugin folder `from_dir` over `<base_dir>/<name>` so that a restart loads the
/// same version: into a hidden staging folder first, then two renames.
pub(super) fn install_folder(name: &str, from_dir: &Path, base_dir: &Path) -> Result<(), Error> {
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
