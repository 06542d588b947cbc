//! Where private copies go, and installing a plugin folder into the base directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::library::FileStamp;
use crate::Error;

/// Where private copies go.
pub(super) enum CopyDir {
    /// A directory the host named: copies are files there.
    Given(PathBuf),
    /// The default: memory files where the system has them (Linux), else files in a private
    /// temporary directory made on first use and removed with the manager.
    Temp(OnceLock<Result<tempfile::TempDir, CopyDirError>>),
}

/// Why the default copy directory could not be made, and in which directory.
#[derive(Debug)]
pub(super) struct CopyDirError {
    pub(super) parent: PathBuf,
    kind: std::io::ErrorKind,
    message: String,
}

impl CopyDirError {
    pub(super) fn to_io(&self) -> std::io::Error {
        std::io::Error::new(self.kind, self.message.clone())
    }
}

/// Makes a fresh private (mode 0700) directory `plugin-host-XXXXXX` in `parent`.
pub(super) fn make_copy_dir_in(parent: &Path) -> Result<tempfile::TempDir, CopyDirError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("plugin-host-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    builder.tempdir_in(parent).map_err(|e| CopyDirError {
        parent: parent.to_path_buf(),
        kind: e.kind(),
        message: e.to_string(),
    })
}

/// Where the default directory for file copies is made: a memory-backed directory when the
/// system has one that this process can write and that allows executable mappings (on
/// Linux `$XDG_RUNTIME_DIR`, then `/dev/shm`), else the temporary directory.
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
        if let Some(dir) = candidates.into_iter().flatten().find(|d| usable_parent(d)) {
            return dir;
        }
    }
    std::env::temp_dir()
}

/// A directory this process may create entries in, on a file system not mounted `noexec`
/// (a hardened `/dev/shm` often is: the loader could not map a copy made there).
#[cfg(target_os = "linux")]
fn usable_parent(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a NUL-terminated string that lives across the call, which only
    // reads it (relative paths resolve against the working directory, `AT_FDCWD`).
    let access = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if access != 0 {
        return false;
    }
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` as above; `stat` points to writable memory for one `statvfs`, which
    // the call fills when it returns 0.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: `statvfs` returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    stat.f_flag & libc::ST_NOEXEC == 0 && dir.is_dir()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_default_copy_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = make_copy_dir_in(parent.path()).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_copy_directory_that_cannot_be_made_names_its_parent() {
        let parent = tempfile::tempdir().unwrap();
        let missing = parent.path().join("runtime-dir-gone");
        let err = make_copy_dir_in(&missing).unwrap_err();
        assert_eq!(err.parent, missing);
        assert_eq!(err.to_io().kind(), std::io::ErrorKind::NotFound);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_writable_exec_directories_hold_default_copies() {
        let dir = tempfile::tempdir().unwrap();
        assert!(usable_parent(dir.path()));
        assert!(!usable_parent(&dir.path().join("missing")));
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(!usable_parent(&file));
        assert!(default_copy_parent().is_dir());
    }
}
