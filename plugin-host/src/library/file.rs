//! Finding the library file and opening it: inside its folder, a regular file, safe mode,
//! bounded size.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::manifest::Manifest;
use crate::Error;

/// The largest library the loader reads: 512 MiB. Plugin libraries are a few MiB (tens
/// with debug information); the cap keeps a huge or growing file from exhausting memory,
/// since the whole library is read into memory to be checked, hashed and copied.
pub(crate) const MAX_LIBRARY_LEN: u64 = 512 << 20;

/// Which of the folder and owner checks a load makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FolderPolicy {
    /// Skip the folder-mode and library-owner checks (development only).
    pub(crate) insecure_permissions: bool,
    /// Accept a plugin folder that resolves outside the base directory.
    pub(crate) allow_outside_base: bool,
}

/// Checks the folder a plugin is loaded from: when it lies in the base directory
/// (`base_dir`), that it resolves inside it; that it, the base directory and every folder
/// above them belong to the host's user or root and cannot be written by group or others
/// (a folder above may be writable by all if it is sticky, as `/tmp` is: then no one can
/// rename or remove what another user owns in it). A folder elsewhere (an upgrade's source)
/// gets the same checks on the folders above it.
pub(crate) fn check_folder(
    name: &str,
    dir: &Path,
    base_dir: Option<&Path>,
    policy: FolderPolicy,
) -> Result<(), Error> {
    let io = |action, path: &Path| Error::io(name, action, path);
    let real_dir = dir
        .canonicalize()
        .map_err(io("resolve the plugin folder", dir))?;
    let real_base = match base_dir {
        Some(base) => Some(
            base.canonicalize()
                .map_err(io("resolve the base directory", base))?,
        ),
        None => None,
    };
    if let Some(real_base) = &real_base {
        if !policy.allow_outside_base && real_dir.parent() != Some(real_base.as_path()) {
            return Err(Error::FolderOutsideBase {
                plugin: name.to_owned(),
                dir: dir.to_path_buf(),
                resolved: real_dir,
                base_dir: real_base.clone(),
            });
        }
    }
    if policy.insecure_permissions {
        return Ok(());
    }
    check_folder_chain(name, "plugin folder", &real_dir, real_base.as_deref())?;
    match &real_base {
        // A folder allowed outside the base directory does not have it above it.
        Some(base) if !real_dir.starts_with(base) => {
            check_folder_chain(name, "base directory", base, None)
        }
        _ => Ok(()),
    }
}

/// Checks the resolved folder `dir` (named `what`) and every folder above it: owned by the
/// host's user or root, not writable by group or others, except that a folder above may be
/// writable by all when it is sticky. `base` is named "base directory" where it is met.
fn check_folder_chain(
    name: &str,
    what: &'static str,
    dir: &Path,
    base: Option<&Path>,
) -> Result<(), Error> {
    for (depth, path) in dir.ancestors().enumerate() {
        let what = if depth == 0 {
            what
        } else if Some(path) == base {
            "base directory"
        } else {
            "parent folder"
        };
        let meta = path
            .metadata()
            .map_err(|e| Error::io(name, "read the metadata of", path)(e))?;
        check_owner(name, what, path, &meta)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let sticky = meta.permissions().mode() & 0o1000 != 0;
            let shared_parent = depth > 0 && Some(path) != base && sticky;
            if !shared_parent {
                check_mode(name, what, path, &meta)?;
            }
        }
    }
    Ok(())
}

/// Refuses a file or folder that group or others can write.
fn check_mode(
    name: &str,
    what: &'static str,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), Error> {
    match writable_by_others(meta) {
        Some(mode) => Err(Error::Writable {
            plugin: name.to_owned(),
            what,
            path: path.to_path_buf(),
            mode,
        }),
        None => Ok(()),
    }
}

/// Refuses a file or folder owned by a user other than the host's or root.
fn check_owner(
    name: &str,
    what: &'static str,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), Error> {
    #[cfg(unix)]
    {
        let (owner, host) = (std::os::unix::fs::MetadataExt::uid(meta), host_uid());
        if owner != host && owner != 0 {
            return Err(Error::NotOwned {
                plugin: name.to_owned(),
                what,
                path: path.to_path_buf(),
                owner,
                host,
            });
        }
    }
    let _ = (name, what, path, meta);
    Ok(())
}

/// Checks `plugin.json` as it is opened (`meta` is the opened file's, so what a symlink leads
/// to): not writable by group or others; unless the policy skips owner checks, owned by the
/// host's user or root; and when a symlink takes it out of the plugin folder, the folders it
/// lies in get [`check_folder`]'s checks too.
pub(crate) fn check_manifest(
    name: &str,
    dir: &Path,
    file: &Path,
    meta: &std::fs::Metadata,
    policy: FolderPolicy,
) -> Result<(), Error> {
    let io = |action, path: &Path| Error::io(name, action, path);
    let resolved = file
        .canonicalize()
        .map_err(io("resolve the manifest path", file))?;
    check_mode(name, "manifest", &resolved, meta)?;
    if policy.insecure_permissions {
        return Ok(());
    }
    check_owner(name, "manifest", &resolved, meta)?;
    let real_dir = dir
        .canonicalize()
        .map_err(io("resolve the plugin folder", dir))?;
    match resolved.parent() {
        Some(parent) if parent != real_dir => {
            check_folder_chain(name, "folder of the manifest", parent, None)
        }
        _ => Ok(()),
    }
}

/// The permission bits, if group or others can write the file or folder.
#[cfg(unix)]
fn writable_by_others(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    (mode & 0o022 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn writable_by_others(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

/// The uid this process runs as.
#[cfg(unix)]
fn host_uid() -> u32 {
    // SAFETY: `geteuid` takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

/// The first of the manifest's library candidates that exists (as any kind of entry).
pub(crate) fn find_library(
    name: &str,
    dir: &Path,
    manifest: &Manifest,
    manifest_file: &Path,
) -> Result<PathBuf, Error> {
    let candidates = manifest.library_candidates(dir)?;
    candidates
        .iter()
        .find(|p| p.symlink_metadata().is_ok())
        .cloned()
        .ok_or_else(|| Error::LibraryMissing {
            plugin: name.to_owned(),
            manifest: manifest_file.to_path_buf(),
            dir: dir.to_path_buf(),
            candidates,
        })
}

/// Opens the library after checking that it resolves inside the plugin folder; then checks
/// the opened file itself (a regular file, not writable by group or others), so the checks
/// apply to the very bytes that are read.
pub(crate) fn open_checked(
    name: &str,
    dir: &Path,
    library: &Path,
    policy: FolderPolicy,
) -> Result<File, Error> {
    let io = |action, path: &Path| Error::io(name, action, path);
    let real_dir = dir
        .canonicalize()
        .map_err(io("resolve the plugin folder", dir))?;
    let resolved = library
        .canonicalize()
        .map_err(io("resolve the library path", library))?;
    if !resolved.starts_with(&real_dir) {
        return Err(Error::LibraryOutsideFolder {
            plugin: name.to_owned(),
            path: library.to_path_buf(),
            resolved,
            dir: real_dir,
        });
    }
    let not_file = || Error::LibraryNotFile {
        plugin: name.to_owned(),
        path: library.to_path_buf(),
    };
    // Check the path before opening it (opening a FIFO would block), then the open file.
    let by_path = resolved
        .metadata()
        .map_err(io("read the metadata of", &resolved))?;
    if !by_path.is_file() {
        return Err(not_file());
    }
    // Should a FIFO have replaced the file since, opening it does not wait for a writer.
    let file = crate::small_file::open_nonblocking(&resolved)
        .map_err(io("open the library", &resolved))?;
    let meta = file
        .metadata()
        .map_err(io("read the metadata of", &resolved))?;
    if !meta.is_file() {
        return Err(not_file());
    }
    check_mode(name, "library", library, &meta)?;
    if !policy.insecure_permissions {
        check_owner(name, "library", library, &meta)?;
    }
    Ok(file)
}

/// Reads the whole opened library into memory, at most [`MAX_LIBRARY_LEN`] bytes: a larger
/// file (or one that grows past the cap while being read) is not a plugin.
pub(crate) fn read_capped(name: &str, library: &Path, file: File) -> Result<Vec<u8>, Error> {
    let too_large = |len: u64| Error::NotAPlugin {
        plugin: name.to_owned(),
        path: library.to_path_buf(),
        reason: format!(
            "it is {len} bytes long, more than the {} MiB a plugin library may be",
            MAX_LIBRARY_LEN >> 20
        ),
    };
    let io = |source| Error::Io {
        plugin: name.to_owned(),
        action: "read the library",
        path: library.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    if len > MAX_LIBRARY_LEN {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_LIBRARY_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_LIBRARY_LEN {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}
