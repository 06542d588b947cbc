//! Loading one plugin folder: the checks of DESIGN.md's order, the private copy, and the
//! `abi_stable` load.
//!
//! 1. `plugin.json` parses and validates; `requires.host` matches.
//! 2. The library path stays inside the folder, is a regular file not writable by group or
//!    others, and matches `sha256` if the manifest gives one.
//! 3. The library is copied to a private, unique path and loaded from there; abi_stable's
//!    header, version and layout checks run.
//! 4. The identity baked into the library equals the manifest's.
//!
//! No plugin code runs before step 3 (`dlopen` runs the library's constructors).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use plugin_abi::abi_stable::library::{lib_header_from_path, LibraryError};
use plugin_abi::{PluginInfo, PluginModRef, ABI_VERSION};
use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, SourceMode, MANIFEST_FILE};
use crate::Error;

/// Settings the loader needs from the manager.
#[derive(Debug, Clone)]
pub(crate) struct LoadConfig {
    pub(crate) host_version: semver::Version,
    pub(crate) copy_dir: PathBuf,
}

/// A library that passed every check and whose root module is ready to call.
pub(crate) struct Loaded {
    pub(crate) manifest: Manifest,
    pub(crate) module: PluginModRef,
    pub(crate) dir: PathBuf,
    pub(crate) library: PathBuf,
    pub(crate) copy: PathBuf,
    pub(crate) sdk_version: String,
    pub(crate) loaded_at: SystemTime,
}

impl Loaded {
    /// The library's path relative to its plugin folder.
    pub(crate) fn library_in_folder(&self) -> PathBuf {
        self.library
            .strip_prefix(&self.dir)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| self.library.file_name().unwrap_or_default().into())
    }
}

/// Runs checks 1 to 4 on the plugin folder `dir` named `name`.
pub(crate) fn load(name: &str, dir: &Path, config: &LoadConfig) -> Result<Loaded, Error> {
    // 1. The manifest and the host version. The plugin's name is its folder's name in the
    // base directory; an upgrade may come from a folder named otherwise.
    let manifest = Manifest::load_as(dir, name)?;
    let manifest_file = dir.join(MANIFEST_FILE);
    if let Some(requires) = &manifest.requires {
        if !requires.host.matches(&config.host_version) {
            return Err(Error::HostVersion {
                plugin: name.to_owned(),
                manifest: manifest_file,
                required: requires.host.clone(),
                host: config.host_version.clone(),
            });
        }
    }
    if manifest.source.mode != SourceMode::LocalSo {
        return Err(Error::UnsupportedSource {
            plugin: name.to_owned(),
            manifest: manifest_file,
            mode: "remote_git".to_owned(),
        });
    }

    // 2. The library file.
    let library = find_library(name, dir, &manifest, &manifest_file)?;
    let mut source = open_checked(name, dir, &library)?;
    let contents = match &manifest.sha256 {
        None => Contents::File(&mut source),
        Some(expected) => {
            let mut bytes = Vec::new();
            source.read_to_end(&mut bytes).map_err(|source| Error::Io {
                plugin: name.to_owned(),
                action: "read the library",
                path: library.clone(),
                source,
            })?;
            let actual = hex(&Sha256::digest(&bytes));
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(Error::ChecksumMismatch {
                    plugin: name.to_owned(),
                    path: library,
                    expected: expected.clone(),
                    actual,
                });
            }
            Contents::Bytes(bytes)
        }
    };

    // 3. A private copy, then abi_stable's checks. With `sha256`, the bytes hashed are the
    // bytes written, so a file swapped between the check and the copy cannot slip through.
    let copy = private_copy(name, &manifest, contents, &config.copy_dir)?;
    let module = open_module(name, &library, &copy)?;

    // 4. The identity baked into the library.
    let info = (module.info())();
    let sdk_version = check_identity(name, &manifest, &library, &info)?;

    Ok(Loaded {
        manifest,
        module,
        dir: dir.to_path_buf(),
        library,
        copy,
        sdk_version,
        loaded_at: SystemTime::now(),
    })
}

fn find_library(
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
/// apply to the very bytes that are copied.
fn open_checked(name: &str, dir: &Path, library: &Path) -> Result<File, Error> {
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
    let file = File::open(&resolved).map_err(io("open the library", &resolved))?;
    let meta = file
        .metadata()
        .map_err(io("read the metadata of", &resolved))?;
    if !meta.is_file() {
        return Err(not_file());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(Error::LibraryPermissions {
                plugin: name.to_owned(),
                path: library.to_path_buf(),
                mode,
            });
        }
    }
    Ok(file)
}

/// What to write into the private copy.
enum Contents<'a> {
    /// The library, already read (and hashed).
    Bytes(Vec<u8>),
    /// The library, still to be read.
    File(&'a mut File),
}

/// Writes the library to a new file at a path no other load uses: `<copy_dir>/<name>-<version>-
/// <pid>-<sequence>.<ext>`. `dlopen` caches libraries by path (and inode), so a unique path
/// is what makes an upgrade load the new code, and a private file is what keeps a library
/// overwritten in the plugin folder from changing (or crashing) the code already running.
fn private_copy(
    name: &str,
    manifest: &Manifest,
    contents: Contents<'_>,
    copy_dir: &Path,
) -> Result<PathBuf, Error> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let io = |action, path: &Path| Error::io(name, action, path);
    std::fs::create_dir_all(copy_dir).map_err(io("create the copy directory", copy_dir))?;
    loop {
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let file_name = format!(
            "{name}-{}-{}-{seq}.{}",
            manifest.version,
            std::process::id(),
            std::env::consts::DLL_EXTENSION
        );
        let path = copy_dir.join(file_name);
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
        match contents {
            Contents::Bytes(bytes) => file.write_all(&bytes),
            // `io::copy` between files uses `copy_file_range` on Linux: no user-space buffer.
            Contents::File(source) => std::io::copy(source, &mut file).map(drop),
        }
        .map_err(io("write the private copy", &path))?;
        return Ok(path);
    }
}

fn open_module(name: &str, library: &Path, copy: &Path) -> Result<PluginModRef, Error> {
    let header = lib_header_from_path(copy).map_err(|e| classify(name, library, e))?;
    header
        .init_root_module::<PluginModRef>()
        .map_err(|e| classify(name, library, e))
}

fn classify(name: &str, library: &Path, err: LibraryError) -> Error {
    let plugin = name.to_owned();
    let path = library.to_path_buf();
    match err {
        LibraryError::OpenError { .. }
        | LibraryError::GetSymbolError { .. }
        | LibraryError::InvalidAbiHeader(_)
        | LibraryError::InvalidCAbi { .. } => Error::NotAPlugin {
            plugin,
            path,
            reason: one_line(&err.to_string()),
        },
        LibraryError::ParseVersionError(_)
        | LibraryError::IncompatibleVersionNumber { .. }
        | LibraryError::AbiInstability(_) => Error::AbiMismatch {
            plugin,
            path,
            reason: one_line(&err.to_string()),
        },
        other => Error::NotAPlugin {
            plugin,
            path,
            reason: one_line(&other.to_string()),
        },
    }
}

/// abi_stable's layout errors span many lines; keep the first few for a readable message.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(6)
        .collect();
    let mut s = lines.join(" | ");
    if s.len() > 600 {
        let mut end = 600;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" ...");
    }
    s
}

fn check_identity(
    name: &str,
    manifest: &Manifest,
    library: &Path,
    info: &PluginInfo,
) -> Result<String, Error> {
    let mismatch = |field, expected: String, found: &str| Error::IdentityMismatch {
        plugin: name.to_owned(),
        path: library.to_path_buf(),
        field,
        expected,
        found: found.to_owned(),
    };
    if info.abi_version != ABI_VERSION {
        return Err(Error::AbiMismatch {
            plugin: name.to_owned(),
            path: library.to_path_buf(),
            reason: format!(
                "the library uses plugin ABI version {}, this host uses {ABI_VERSION}",
                info.abi_version
            ),
        });
    }
    if info.name.as_str() != manifest.name {
        return Err(mismatch("name", manifest.name.clone(), info.name.as_str()));
    }
    if info.version.as_str() != manifest.version.to_string() {
        return Err(mismatch(
            "version",
            manifest.version.to_string(),
            info.version.as_str(),
        ));
    }
    let sdk = info.sdk_version.as_str();
    let compatible = semver::Version::parse(sdk)
        .ok()
        .is_some_and(|v| sdk_requirement().matches(&v));
    if !compatible {
        return Err(mismatch("sdk_version", sdk_requirement().to_string(), sdk));
    }
    Ok(sdk.to_owned())
}

/// The `plugin-sdk` versions this host accepts: caret-compatible with its `plugin-abi`.
fn sdk_requirement() -> semver::VersionReq {
    semver::VersionReq::parse(&format!("^{}", crate::ABI_CRATE_VERSION))
        .expect("a crate version is a valid caret requirement")
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of a file, as lowercase hex (what `sha256` in `plugin.json` holds).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}
