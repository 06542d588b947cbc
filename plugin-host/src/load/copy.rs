//! The private copy a library is mapped from, and the `dlopen` of it.
//!
//! On Linux the copy is an anonymous memory file: `memfd_create` named
//! `plugin:<name>-<version>`, the checked bytes written into it, then sealed against every
//! change (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), and mapped through
//! `/proc/self/fd/N`. It has no name in any file system, so nothing is left behind however
//! the process ends (Ctrl-C, `SIGTERM`, abort, crash), and each memory file is a distinct
//! inode, so `dlopen` never returns an older library for it. `/proc/self/maps` shows its
//! mappings as `/memfd:plugin:<name>-<version> (deleted)`.
//!
//! The descriptor stays open for the life of the process, like the mapping (libraries are
//! never closed). The mapping would not need it, but glibc's `dlopen` first compares the
//! path it is given with the names of the libraries already loaded: were a descriptor closed,
//! the next memory file could get its number, and `dlopen("/proc/self/fd/N")` would return
//! the older library without opening the new one. So each library ever mapped costs one
//! descriptor besides its mapping; a failed `dlopen` maps nothing, and its descriptor is
//! closed.
//!
//! The copy is a file instead when the host named a copy directory, on other systems, and
//! when the system refuses memory files (`memfd_create` blocked, by a seccomp filter for
//! instance, no `/proc`, or a memory file the loader may not map executable): a new file
//! `<dir>/<name>-<version>-<pid>-<n>.<ext>` (`create_new`, mode 0500) in a directory made
//! with mode 0700. It is deleted when the write fails half-way, when the load fails, when
//! the plugin is unloaded, and when its version is dropped; the mapping stays valid on Unix.
//! A process killed by a signal leaves its file copies behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use plugin_abi::abi_stable::library::RawLibrary;

use crate::module::classify;
use crate::Error;

/// Where private copies go.
#[derive(Clone, Copy)]
pub(crate) enum Copies<'a> {
    /// Files in this directory (one the host named), created with mode 0700 if missing.
    Files(&'a Path),
    /// Memory files where the system has them; else files in the directory `fallback`
    /// returns (it makes the directory on first use).
    Memory {
        fallback: &'a dyn Fn() -> Result<PathBuf, Error>,
    },
}

/// The private copy a loaded library was mapped from.
#[derive(Debug)]
pub(crate) enum PrivateCopy {
    /// A sealed memory file, named `memfd:plugin:<name>-<version>`. Its descriptor is open
    /// for the life of the process (see the module docs).
    #[cfg(target_os = "linux")]
    Memory { shown: PathBuf },
    /// A file, deleted when this is dropped.
    File(CopyFile),
}

impl PrivateCopy {
    /// What `PluginSummary::running_copy` shows: the file's path, or for a memory file
    /// `memfd:plugin:<name>-<version>`, the name `/proc/<pid>/maps` shows its mappings under.
    pub(crate) fn shown(&self) -> PathBuf {
        match self {
            #[cfg(target_os = "linux")]
            PrivateCopy::Memory { shown } => shown.clone(),
            PrivateCopy::File(file) => file.path.clone(),
        }
    }

    /// Deletes the file copy; the mapping stays valid on Unix (elsewhere the file is in use
    /// and removal fails, which is harmless). A memory file has nothing to delete.
    pub(crate) fn remove(&self) {
        match self {
            #[cfg(target_os = "linux")]
            PrivateCopy::Memory { .. } => {}
            PrivateCopy::File(file) => {
                let _ = std::fs::remove_file(&file.path);
            }
        }
    }
}

/// A file copy, deleted when dropped.
#[derive(Debug)]
pub(crate) struct CopyFile {
    path: PathBuf,
}

impl Drop for CopyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A library mapped from its private copy, for good: it is never closed.
pub(crate) struct Mapped {
    pub(crate) copy: PrivateCopy,
    pub(crate) library: &'static RawLibrary,
}

/// Copies `bytes` (the library at `library`, checked) privately and maps the copy.
///
/// `mapped` counts the library as soon as `dlopen` has mapped it, so that a load failing
/// afterwards (abi_stable's checks, identity, `on_load`) is counted too.
pub(crate) fn map_private_copy(
    name: &str,
    version: &semver::Version,
    library: &Path,
    bytes: &[u8],
    copies: Copies<'_>,
    mapped: &AtomicUsize,
) -> Result<Mapped, Error> {
    let dir = match copies {
        Copies::Files(dir) => dir.to_path_buf(),
        Copies::Memory { fallback } => {
            #[cfg(target_os = "linux")]
            if let Some(done) = memfd::map(name, version, library, bytes, mapped)? {
                return Ok(done);
            }
            fallback()?
        }
    };
    let file = CopyFile::write(name, version, bytes, &dir)?;
    match RawLibrary::load_at(&file.path) {
        Ok(raw) => {
            mapped.fetch_add(1, Ordering::Relaxed);
            Ok(Mapped {
                copy: PrivateCopy::File(file),
                library: Box::leak(Box::new(raw)),
            })
        }
        Err(err) => {
            let reason = crate::module::one_line(&err.to_string());
            if exec_refused(&reason) {
                Err(Error::CopyNotExecutable {
                    plugin: name.to_owned(),
                    library: library.to_path_buf(),
                    dir,
                    reason,
                })
            } else {
                Err(classify(name, library, err))
            }
        }
    }
}

/// Whether a `dlopen` error says the copy may not be mapped executable: a `noexec` mount
/// (glibc: "failed to map segment from shared object"), or a security policy (`EPERM`).
fn exec_refused(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    ["failed to map segment", "operation not permitted", "eperm"]
        .iter()
        .any(|needle| reason.contains(needle))
}

impl CopyFile {
    /// Writes `bytes` to a new file at a path no other load uses,
    /// `<dir>/<name>-<version>-<pid>-<sequence>.<ext>`, making `dir` (mode 0700) if needed.
    /// A write that fails half-way deletes what it wrote.
    fn write(
        name: &str,
        version: &semver::Version,
        bytes: &[u8],
        dir: &Path,
    ) -> Result<CopyFile, Error> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let io = |action, path: &Path| Error::io(name, action, path);
        create_private_dir(dir).map_err(io("create the copy directory", dir))?;
        loop {
            let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            let file_name = format!(
                "{name}-{version}-{}-{seq}.{}",
                std::process::id(),
                std::env::consts::DLL_EXTENSION
            );
            let path = dir.join(file_name);
            let mut options = File::options();
            options.write(true).create_new(true);
            // Read and execute for the owner only, from the start: the descriptor opened here
            // can still write it, nobody can open it for writing afterwards.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o500);
            let mut file = match options.open(&path) {
                Ok(file) => file,
                // Left by an earlier process with the same pid: pick the next number.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("create the private copy", &path)(e)),
            };
            return fill(CopyFile { path }, &mut file, bytes)
                .map_err(|(path, e)| io("write the private copy", &path)(e));
        }
    }
}

/// Writes `bytes` into the file of `copy` through `out`. On an error (a full disk, say)
/// `copy` is dropped, which deletes the partial file.
fn fill(
    copy: CopyFile,
    out: &mut impl Write,
    bytes: &[u8],
) -> Result<CopyFile, (PathBuf, std::io::Error)> {
    match out.write_all(bytes) {
        Ok(()) => Ok(copy),
        Err(e) => Err((copy.path.clone(), e)),
    }
}

/// Creates `dir` and its missing parents, each with mode 0700 (on Unix); an existing
/// directory is left as it is.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(all(target_os = "linux", feature = "isolation"))]
pub(crate) use memfd::sealed;

#[cfg(target_os = "linux")]
mod memfd {
    use std::ffi::CString;
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use plugin_abi::abi_stable::library::RawLibrary;

    use super::{exec_refused, Mapped, PrivateCopy};
    use crate::module::{classify, one_line};
    use crate::Error;

    /// `MFD_EXEC` (Linux 6.3): asks for an executable memory file explicitly, which systems
    /// with `vm.memfd_noexec = 1` otherwise would not give. Older kernels reject it with
    /// `EINVAL`; then the file is created without it.
    const MFD_EXEC: libc::c_uint = 0x0010;

    const SEALS: libc::c_int =
        libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

    /// Set once memory files turned out unusable in this process: later loads use files
    /// without trying again.
    static UNUSABLE: AtomicBool = AtomicBool::new(false);

    /// Maps `bytes` from a sealed memory file; `None` if this system does not allow that
    /// (then the caller writes a file copy).
    pub(super) fn map(
        name: &str,
        version: &semver::Version,
        library: &Path,
        bytes: &[u8],
        mapped: &AtomicUsize,
    ) -> Result<Option<Mapped>, Error> {
        if UNUSABLE.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if !Path::new("/proc/self/fd").is_dir() {
            give_up(name, "/proc is not mounted");
            return Ok(None);
        }
        let label = memfd_name(name, version);
        let fd = match create(&label) {
            Ok(Some(fd)) => fd,
            Ok(None) => {
                give_up(name, "memfd_create is not available");
                return Ok(None);
            }
            Err(e) => {
                return Err(memfd_error(
                    name,
                    "create the private memory copy",
                    &label,
                    e,
                ))
            }
        };
        let fd = fill_and_seal(fd, bytes)
            .map_err(|e| memfd_error(name, "write the private memory copy", &label, e))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        match RawLibrary::load_at(&path) {
            Ok(raw) => {
                mapped.fetch_add(1, Ordering::Relaxed);
                // Kept open for the life of the process: see the module docs.
                let _ = fd.into_raw_fd();
                Ok(Some(Mapped {
                    copy: PrivateCopy::Memory {
                        shown: PathBuf::from(format!("memfd:{label}")),
                    },
                    library: Box::leak(Box::new(raw)),
                }))
            }
            Err(err) if exec_refused(&err.to_string()) => {
                give_up(name, &one_line(&err.to_string()));
                Ok(None)
            }
            Err(err) => Err(classify(name, library, err)),
        }
    }

    /// A sealed memory file holding `bytes`, for a worker process to map (process isolation).
    #[cfg(all(target_os = "linux", feature = "isolation"))]
    pub(crate) fn sealed(
        name: &str,
        version: &semver::Version,
        bytes: &[u8],
    ) -> Result<OwnedFd, Error> {
        let label = memfd_name(name, version);
        let fd = match create(&label) {
            Ok(Some(fd)) => fd,
            Ok(None) => {
                return Err(memfd_error(
                    name,
                    "create the memory file a worker maps",
                    &label,
                    std::io::Error::other("memory files are not available on this system"),
                ))
            }
            Err(e) => {
                return Err(memfd_error(
                    name,
                    "create the memory file a worker maps",
                    &label,
                    e,
                ))
            }
        };
        fill_and_seal(fd, bytes)
            .map_err(|e| memfd_error(name, "write the memory file a worker maps", &label, e))
    }

    fn give_up(name: &str, why: &str) {
        UNUSABLE.store(true, Ordering::Relaxed);
        tracing::warn!(
            plugin = %name,
            "private copies are files from now on, not memory files: {why}"
        );
    }

    /// `plugin:<name>-<version>`, cut to the 249 bytes `memfd_create` accepts. Names and
    /// versions are ASCII and contain no NUL (the manifest validator makes sure).
    pub(super) fn memfd_name(name: &str, version: &semver::Version) -> String {
        let mut label = format!("plugin:{name}-{version}");
        let mut end = label.len().min(249);
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        label.truncate(end);
        label
    }

    fn memfd_error(name: &str, action: &'static str, label: &str, source: std::io::Error) -> Error {
        Error::Io {
            plugin: name.to_owned(),
            action,
            path: PathBuf::from(format!("memfd:{label}")),
            source,
        }
    }

    /// A new memory file that can be sealed and is closed on `exec`; `None` when the system
    /// refuses memory files as such (no such call, or forbidden).
    fn create(label: &str) -> std::io::Result<Option<OwnedFd>> {
        let name = CString::new(label).map_err(std::io::Error::other)?;
        let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        for flags in [base | MFD_EXEC, base] {
            // SAFETY: `name` is a NUL-terminated string that lives across the call, which only
            // reads it; the call returns a new descriptor or -1 and touches no other memory.
            let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
            if fd >= 0 {
                // SAFETY: `fd` was just returned by `memfd_create`: open, and owned by nothing
                // else.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                // A kernel before 6.3 does not know MFD_EXEC: try without it.
                Some(libc::EINVAL) if flags & MFD_EXEC != 0 => continue,
                Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL) => return Ok(None),
                _ => return Err(err),
            }
        }
        Ok(None)
    }

    /// Writes `bytes` into the memory file and seals it: no one can change it afterwards.
    fn fill_and_seal(fd: OwnedFd, bytes: &[u8]) -> std::io::Result<OwnedFd> {
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        // SAFETY: `fcntl` with `F_ADD_SEALS` takes an int argument and only changes the
        // seals of the memory file behind this descriptor, which `file` owns.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(file.into())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_memory_file_is_sealed_against_writes() {
            let fd = create("plugin:test-seal")
                .unwrap()
                .expect("memfd_create works here");
            let fd = fill_and_seal(fd, b"abc").unwrap();
            let mut file = File::from(fd);
            assert!(file.write_all(b"more").is_err());
            assert!(file.set_len(1).is_err());
            // SAFETY: `fcntl` with `F_GET_SEALS` takes no argument and reads the seals only.
            let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
            assert_eq!(seals, SEALS);
        }

        #[test]
        fn memory_file_names_are_cut_to_what_the_kernel_accepts() {
            let version = semver::Version::parse("1.2.3-beta.1").unwrap();
            assert_eq!(memfd_name("hello", &version), "plugin:hello-1.2.3-beta.1");
            let long = "a".repeat(300);
            assert_eq!(memfd_name(&long, &version).len(), 249);
            assert!(create(&memfd_name(&long, &version)).unwrap().is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loader_refusing_executable_mappings_is_told_apart() {
        // glibc on a `noexec` mount; a security module refusing the mapping.
        assert!(exec_refused(
            "/dev/shm/x/hello-0.1.0-1-0.so: failed to map segment from shared object"
        ));
        assert!(exec_refused(
            "x.so: failed to map segment from shared object: Operation not permitted"
        ));
        // Anything else is the library's own fault.
        assert!(!exec_refused(
            "libfoo.so: cannot open shared object file: No such file or directory"
        ));
        assert!(!exec_refused("x.so: invalid ELF header"));
    }

    #[test]
    fn a_copy_refused_by_the_loader_names_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        // Not a library: dlopen fails, and for a reason that is not about executable
        // mappings. The copy is deleted.
        let version = semver::Version::new(0, 1, 0);
        let counted = AtomicUsize::new(0);
        let err = map_private_copy(
            "junk",
            &version,
            Path::new("/plugins/junk/libjunk.so"),
            b"not a library",
            Copies::Files(dir.path()),
            &counted,
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::NotAPlugin { .. }), "{err}");
        assert_eq!(counted.load(Ordering::Relaxed), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // The error the loader's refusal to map code turns into.
        let err = Error::CopyNotExecutable {
            plugin: "hello".to_owned(),
            library: PathBuf::from("/plugins/hello/libhello.so"),
            dir: PathBuf::from("/dev/shm/plugin-host-x"),
            reason: "failed to map segment from shared object".to_owned(),
        };
        let text = err.to_string();
        assert!(text.contains("/dev/shm/plugin-host-x"), "{text}");
        assert!(text.contains("noexec"), "{text}");
        assert!(text.contains("copy_dir"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn a_copy_directory_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a").join("copies");
        create_private_dir(&dir).unwrap();
        for d in [parent.path().join("a"), dir] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn a_copy_is_deleted_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let version = semver::Version::new(0, 1, 0);
        let copy = CopyFile::write("x", &version, b"bytes", dir.path()).unwrap();
        let path = copy.path.clone();
        assert!(path.starts_with(dir.path()));
        assert_eq!(std::fs::read(&path).unwrap(), b"bytes");
        drop(copy);
        assert!(!path.exists());
    }

    #[test]
    fn a_failed_write_leaves_no_partial_copy() {
        /// Takes a few bytes, then fails like a full disk.
        struct Full<'a>(&'a mut File);
        impl Write for Full<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.0.metadata()?.len() >= 4 {
                    return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
                }
                self.0.write(&buf[..buf.len().min(4)])
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-0.1.0-1-0.so");
        let mut file = File::create(&path).unwrap();
        let copy = CopyFile { path: path.clone() };
        let (named, err) = fill(copy, &mut Full(&mut file), b"a library of some size")
            .err()
            .unwrap();
        assert_eq!(named, path);
        assert_eq!(err.raw_os_error(), Some(28));
        assert!(!path.exists());
    }
}
