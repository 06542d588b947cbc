//! The checks made on a plugin folder before any of its code runs, as a layer of their own.
//!
//! [`Checks`] runs steps 0 to 3 of a load (see the crate docs) on one folder and says what
//! it found ([`Inspection`]): the folder's and manifest's owner and mode, `plugin.json`,
//! `requires.host`, the library's place, owner, mode, size and checksum, its format and
//! the identity record `export_plugin!` wrote. They only read files: the library is never
//! mapped, and no code of the plugin runs. No [`PluginManager`](crate::PluginManager) is
//! needed; the manager runs these same checks before every load, and `plugin-package` runs
//! them on a folder before packing it and on a package after extracting it.
//!
//! ```no_run
//! use plugin_host::check::Checks;
//!
//! let found = Checks::new().folder("hello", "plugins/hello")?;
//! println!("{} {} ({} bytes, sha256 {})", found.name, found.version, found.library_bytes, found.sha256);
//! # Ok::<(), plugin_host::Error>(())
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::library;
use crate::manifest::{Manifest, SourceMode, MANIFEST_FILE};
use crate::Error;

/// The host version a manager checks `requires.host` against unless told otherwise: this
/// crate's version.
pub(crate) fn default_host_version() -> semver::Version {
    semver::Version::parse(env!("CARGO_PKG_VERSION")).expect("the crate version is valid semver")
}

/// The checks that need no `dlopen`, with their settings. [`Checks::new`] gives the
/// manager's defaults: this crate's version as the host version, every permission check on,
/// and no base directory (the folder may lie anywhere; the folders above it are checked).
#[derive(Debug, Clone)]
pub struct Checks {
    host_version: semver::Version,
    base_dir: Option<PathBuf>,
    folders: library::FolderPolicy,
}

impl Default for Checks {
    fn default() -> Self {
        Self::new()
    }
}

impl Checks {
    /// The checks with the manager's default settings.
    pub fn new() -> Self {
        Checks {
            host_version: default_host_version(),
            base_dir: None,
            folders: library::FolderPolicy::default(),
        }
    }

    /// The host version `requires.host` is matched against.
    pub fn host_version(mut self, version: semver::Version) -> Self {
        self.host_version = version;
        self
    }

    /// Checks that the folder resolves inside `base_dir` too, as a load from that base
    /// directory does (a folder that leads out of it through a link is refused).
    pub fn base_dir(mut self, base_dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(base_dir.into());
        self
    }

    /// Skips the owner and group/other-write checks of folders, `plugin.json` and the
    /// library, as [`PluginManagerBuilder::insecure_permissions`](crate::PluginManagerBuilder::insecure_permissions)
    /// does. **For development only.**
    pub fn insecure_permissions(mut self, insecure: bool) -> Self {
        self.folders.insecure_permissions = insecure;
        self
    }

    /// Runs the checks on the plugin folder `dir`, whose plugin is called `name` (its
    /// `plugin.json` must give that name), and describes what it holds.
    ///
    /// # Errors
    ///
    /// The errors of steps 0 to 3 of a load, each naming the plugin, the file and the fix:
    /// [`Error::FolderOutsideBase`], [`Error::Writable`], [`Error::NotOwned`],
    /// [`Error::Manifest`], [`Error::HostVersion`], [`Error::UnsupportedSource`],
    /// [`Error::LibraryMissing`], [`Error::LibraryOutsideFolder`], [`Error::LibraryNotFile`],
    /// [`Error::ChecksumMismatch`], [`Error::NotAPlugin`], [`Error::IdentityMismatch`],
    /// [`Error::AbiMismatch`], and [`Error::Io`] for a file that cannot be read.
    pub fn folder(&self, name: &str, dir: impl AsRef<Path>) -> Result<Inspection, Error> {
        let dir = dir.as_ref();
        let config = CheckConfig {
            host_version: &self.host_version,
            // Without a base directory there is no containment to check; with one, the
            // folder must resolve inside it.
            base_dir: self.base_dir.clone(),
            folders: self.folders,
        };
        check(name, dir, &config).map(|checked| checked.describe(name, dir))
    }
}

/// What the checks found in a plugin folder ([`Checks::folder`],
/// [`PluginManager::inspect`](crate::PluginManager::inspect)), without running any of its code.
#[non_exhaustive]
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The plugin name (its folder's name).
    pub name: String,
    /// The version in `plugin.json`, which the library's identity record matches.
    pub version: semver::Version,
    /// The `plugin-sdk` version in the library's identity record.
    pub sdk_version: String,
    /// The plugin folder.
    pub dir: PathBuf,
    /// The library in it.
    pub library: PathBuf,
    /// The library's size in bytes.
    pub library_bytes: u64,
    /// The library's SHA-256, lowercase hex (what `sha256` in `plugin.json` pins).
    pub sha256: String,
    /// The full, validated `plugin.json`.
    pub manifest: Manifest,
}

/// Settings the checks that need no `dlopen` take from the manager.
pub(crate) struct CheckConfig<'a> {
    pub(crate) host_version: &'a semver::Version,
    /// The base directory, when the folder loaded lies in it (not for an upgrade's source).
    pub(crate) base_dir: Option<PathBuf>,
    pub(crate) folders: library::FolderPolicy,
}

/// What the checks that need no `dlopen` (steps 0 to 3) found in a plugin folder.
pub(crate) struct Checked {
    pub(crate) manifest: Manifest,
    /// The library in the folder.
    pub(crate) library: PathBuf,
    /// The library's bytes, read once: every check ran on them.
    pub(crate) bytes: Vec<u8>,
    /// The `plugin-sdk` version in the library's identity record.
    pub(crate) sdk_version: String,
}

/// Runs checks 0 to 3 on the plugin folder `dir` named `name`: they read files only, and no
/// code of the plugin runs.
pub(crate) fn check(name: &str, dir: &Path, config: &CheckConfig<'_>) -> Result<Checked, Error> {
    // 0. The folder: in the base directory, and writable by its owner only.
    library::check_folder(name, dir, config.base_dir.as_deref(), config.folders)?;

    // 1. The manifest and the host version. The plugin's name is its folder's name in the
    // base directory; an upgrade may come from a folder named otherwise.
    let manifest = Manifest::load_checked(dir, name, |file, meta| {
        library::check_manifest(name, dir, file, meta, config.folders)
    })?;
    let manifest_file = dir.join(MANIFEST_FILE);
    if let Some(requires) = &manifest.requires {
        if !requires.host.matches(config.host_version) {
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

    // 2. The library file: where it is, what it is, its size; then its bytes, read once,
    // and their checksum.
    let library = library::find_library(name, dir, &manifest, &manifest_file)?;
    let file = library::open_checked(name, dir, &library, config.folders)?;
    let bytes = library::read_capped(name, &library, file)?;
    if let Some(expected) = &manifest.sha256 {
        library::checksum::verify(name, &library, &bytes, expected)?;
    }

    // 3. The same bytes, not mapped: a shared library for this OS and machine that exports
    // the root module, and whose identity record equals the manifest's.
    let file = library::check_format(&bytes).map_err(|reason| Error::NotAPlugin {
        plugin: name.to_owned(),
        path: library.clone(),
        reason,
    })?;
    let identity = library::read_identity(name, &library, &file)?;
    library::check_identity(name, &manifest.version, &library, &identity)?;
    let sdk_version = identity.sdk_version.to_owned();
    drop(file);
    Ok(Checked {
        manifest,
        library,
        bytes,
        sdk_version,
    })
}

impl Checked {
    /// What a caller is told about the folder `dir` named `name`.
    pub(crate) fn describe(self, name: &str, dir: &Path) -> Inspection {
        Inspection {
            name: name.to_owned(),
            version: self.manifest.version.clone(),
            sdk_version: self.sdk_version,
            dir: dir.to_path_buf(),
            library: self.library,
            library_bytes: self.bytes.len() as u64,
            sha256: library::checksum::hex_digest(&self.bytes),
            manifest: self.manifest,
        }
    }
}
