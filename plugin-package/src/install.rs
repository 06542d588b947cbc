//! Installing a package into a manager's base directory: verify, extract, check, move in.
//!
//! The order is the point: the package's bytes are trusted (a trusted signature, or a
//! SHA-256 the operator pinned) before anything is extracted; the plugin's name and version
//! from its signed trusted comment must equal its `plugin.json`; a lower version than the
//! one installed is refused unless forced; the archive is extracted into a hidden staging
//! folder inside the base directory (the loader and the watcher skip hidden entries); every
//! check of the loader that needs no `dlopen` runs on the staged folder; and only then is it
//! moved into place. A plugin already running in the manager is replaced through its hot
//! upgrade, so no call is dropped. Any failure removes the staging folder: the base directory
//! is left as it was.

use std::path::{Path, PathBuf};

use plugin_host::{PluginManager, PluginState, UpgradeOptions, Upgraded};

use crate::archive::{self, read_manifest};
use crate::build::Built;
use crate::download::{self, DownloadOptions};
use crate::format::{read_regular_file, sha256_hex};
use crate::sign::{self, PublicKey, Signed, TrustedKeys};
use crate::{package_file_name, signature_path, Error, Limits, PACKAGE_EXTENSION};

/// Installs packages into a manager's base directory.
///
/// # Examples
///
/// ```no_run
/// use plugin_host::PluginManager;
/// use plugin_package::{Installer, PublicKey};
///
/// let manager = PluginManager::new("plugins");
/// let key = PublicKey::from_file("release.pub".as_ref())?;
/// let installed = Installer::new(&manager).trust(key).install_file("hello-0.1.0.plg")?;
/// println!("installed {} {}", installed.name, installed.version);
/// manager.load_plugin(&installed.name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Installer<'m> {
    manager: &'m PluginManager,
    keys: TrustedKeys,
    allow_unsigned: bool,
    sha256: Option<String>,
    force: bool,
    limits: Limits,
    download: DownloadOptions,
}

/// Where a package came from, for messages and for the file-name check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A package file.
    File(PathBuf),
    /// A URL.
    Url(String),
    /// A plugin built from source on this machine.
    Build(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Url(url) => f.write_str(url),
            Origin::Build(source) => write!(f, "the build of {source}"),
        }
    }
}

impl Origin {
    /// The last segment of the file name or URL path, if it ends with `.plg`.
    fn package_file_name(&self) -> Option<&str> {
        let name = match self {
            Origin::File(path) => path.file_name()?.to_str()?,
            Origin::Url(url) => {
                let path = url.split(['?', '#']).next()?;
                path.rsplit('/').next()?
            }
            Origin::Build(_) => return None,
        };
        name.ends_with(&format!(".{PACKAGE_EXTENSION}"))
            .then_some(name)
    }
}

/// A plugin installed.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The plugin's name.
    pub name: String,
    /// The version installed.
    pub version: semver::Version,
    /// The version it replaced, if one was installed.
    pub previous: Option<semver::Version>,
    /// The plugin's folder in the base directory.
    pub dir: PathBuf,
    /// The key that signed the package, if a trusted signature was verified.
    pub signed_by: Option<String>,
    /// The package's SHA-256, lowercase hex (none for a build).
    pub sha256: Option<String>,
    /// The hot upgrade, when the plugin was running in the manager.
    pub upgraded: Option<Upgraded>,
}

/// What [`verify_file`] found: a package whose bytes match a trusted signature and whose
/// signed name and version are those of its `plugin.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: semver::Version,
    /// The key that signed it, as minisign prints its ID.
    pub key_id: String,
    /// The package's SHA-256, lowercase hex.
    pub sha256: String,
}

/// Verifies the package file `package` against its detached signature `FILE.plg.minisig`
/// and `keys`, without extracting anything: the signature, the name and version it binds,
/// and the file's name.
pub fn verify_file(package: &Path, keys: &TrustedKeys) -> Result<Verified, Error> {
    let limits = Limits::default();
    let bytes = read_regular_file(package, limits.max_package_bytes, "package")?;
    let sig_path = signature_path(package);
    if !sig_path.exists() {
        return Err(Error::Unsigned {
            origin: package.display().to_string(),
            hint: format!(
                "no signature file {} beside it; get it from the package's publisher",
                sig_path.display()
            ),
        });
    }
    let signature = read_signature(&sig_path, &limits)?;
    let manifest = read_manifest(&bytes, &limits)?;
    let signed = sign::verify(&bytes, &signature, keys)?;
    let origin = Origin::File(package.to_path_buf());
    check_binding(&origin, &manifest, Some(&signed))?;
    Ok(Verified {
        name: manifest.name,
        version: manifest.version,
        key_id: signed.key_id,
        sha256: sha256_hex(&bytes),
    })
}

fn read_signature(path: &Path, limits: &Limits) -> Result<String, Error> {
    let bytes = read_regular_file(path, limits.max_signature_bytes, "signature")?;
    String::from_utf8(bytes).map_err(|_| Error::SignatureNotText {
        origin: path.display().to_string(),
    })
}

/// The signed name and version must be the package's, and a package file named like a
/// package must be named after its contents.
fn check_binding(
    origin: &Origin,
    manifest: &plugin_host::Manifest,
    signed: Option<&Signed>,
) -> Result<(), Error> {
    if let Some(signed) = signed {
        if signed.name != manifest.name || signed.version != manifest.version {
            return Err(Error::SignedForAnother {
                origin: origin.to_string(),
                signed: format!("`{}` {}", signed.name, signed.version),
                holds: format!("`{}` {}", manifest.name, manifest.version),
            });
        }
    }
    if let Some(file_name) = origin.package_file_name() {
        let expected = package_file_name(&manifest.name, &manifest.version);
        if file_name != expected {
            return Err(Error::Renamed {
                origin: origin.to_string(),
                file_name: file_name.to_owned(),
                expected,
            });
        }
    }
    Ok(())
}

impl<'m> Installer<'m> {
    /// An installer for `manager`'s base directory that requires a trusted signature (add
    /// keys with [`trust`](Installer::trust)) or a pinned SHA-256.
    pub fn new(manager: &'m PluginManager) -> Self {
        Installer {
            manager,
            keys: TrustedKeys::new(),
            allow_unsigned: false,
            sha256: None,
            force: false,
            limits: Limits::default(),
            download: DownloadOptions::default(),
        }
    }

    /// Trusts signatures by `key`.
    pub fn trust(mut self, key: PublicKey) -> Self {
        self.keys.add(key);
        self
    }

    /// Trusts signatures by every key in `keys`.
    pub fn trust_all(mut self, keys: TrustedKeys) -> Self {
        for key in keys.iter() {
            self.keys.add(key.clone());
        }
        self
    }

    /// Accepts a package file without a trusted signature. For development only; a URL still
    /// needs a trusted signature or a pinned SHA-256.
    pub fn allow_unsigned(mut self, allow: bool) -> Self {
        self.allow_unsigned = allow;
        self
    }

    /// Pins the package's SHA-256 (64 hex digits): a package with other bytes is refused.
    /// A pinned digest stands in for a signature.
    pub fn sha256(mut self, hex: impl Into<String>) -> Self {
        self.sha256 = Some(hex.into().to_ascii_lowercase());
        self
    }

    /// Allows installing a lower version than the one installed (a downgrade, refused by
    /// default because a replayed old package is how a downgrade attack looks).
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Size caps for packages.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Caps, timeout and progress for [`install_url`](Installer::install_url).
    pub fn download_options(mut self, options: DownloadOptions) -> Self {
        self.download = options;
        self
    }

    /// Installs the package file `package`, with its signature `FILE.plg.minisig` if present.
    pub fn install_file(&self, package: impl AsRef<Path>) -> Result<Installed, Error> {
        let package = package.as_ref();
        let bytes = read_regular_file(package, self.limits.max_package_bytes, "package")?;
        let sig_path = signature_path(package);
        let signature = if sig_path.exists() {
            Some(read_signature(&sig_path, &self.limits)?)
        } else {
            None
        };
        self.install_bytes(&bytes, signature.as_deref(), Origin::File(package.into()))
    }

    /// Downloads the package at `url` (http or https) and installs it. Its signature is
    /// fetched from `URL.minisig` when keys are trusted; without a trusted signature, a
    /// pinned [`sha256`](Installer::sha256) is required.
    pub fn install_url(&self, url: &str) -> Result<Installed, Error> {
        if self.keys.is_empty() && self.sha256.is_none() {
            return Err(Error::Unsigned {
                origin: url.to_owned(),
                hint: "a download needs a trusted signature (--key PUB) or a pinned digest \
                       (--sha256 HEX); --allow-unsigned does not apply to URLs"
                    .to_owned(),
            });
        }
        let mut options = self.download.clone();
        options.max_bytes = options.max_bytes.min(self.limits.max_package_bytes);
        let bytes = download::download(url, &options)?;
        let signature = if self.keys.is_empty() {
            None
        } else {
            let sig_options = DownloadOptions {
                max_bytes: self.limits.max_signature_bytes,
                progress: None,
                ..options
            };
            download::download_if_present(&format!("{url}.minisig"), &sig_options)?
                .map(|b| {
                    String::from_utf8(b).map_err(|_| Error::SignatureNotText {
                        origin: format!("{url}.minisig"),
                    })
                })
                .transpose()?
        };
        self.install_bytes(&bytes, signature.as_deref(), Origin::Url(url.to_owned()))
    }

    /// Installs a package held in memory. `signature` is the text of its `.minisig`.
    pub fn install_bytes(
        &self,
        package: &[u8],
        signature: Option<&str>,
        origin: Origin,
    ) -> Result<Installed, Error> {
        let digest = sha256_hex(package);
        // 1. Trust the bytes: a pinned digest, a trusted signature, or an explicit opt-out.
        if let Some(expected) = &self.sha256 {
            if *expected != digest {
                return Err(Error::Sha256Mismatch {
                    origin: origin.to_string(),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let signed = match signature {
            Some(text) if !self.keys.is_empty() => Some(sign::verify(package, text, &self.keys)?),
            _ => None,
        };
        if signed.is_none() && self.sha256.is_none() && !self.allow_unsigned {
            return Err(Error::Unsigned {
                origin: origin.to_string(),
                hint: match (signature.is_some(), self.keys.is_empty()) {
                    (true, true) => "it is signed, but no key is trusted: pass the publisher's \
                                     public key with --key PUB"
                        .to_owned(),
                    _ => "get its signature (FILE.plg.minisig) from the publisher, pin its \
                          digest with --sha256, or, for development only, pass --allow-unsigned"
                        .to_owned(),
                },
            });
        }
        // 2. What the package claims, bound to what was signed.
        let manifest = read_manifest(package, &self.limits)?;
        check_binding(&origin, &manifest, signed.as_ref())?;
        let previous = self.check_version(&manifest.name, &manifest.version)?;

        // 3. Extract into a hidden staging folder inside the base directory.
        let staging = self.staging()?;
        let dir = staging.path().join(&manifest.name);
        std::fs::create_dir(&dir).map_err(Error::io("create the staging folder", &dir))?;
        archive::extract(package, &dir, &self.limits)?;

        let mut installed = self.move_in(&manifest.name, &dir, staging)?;
        installed.previous = previous;
        installed.signed_by = signed.map(|s| s.key_id);
        installed.sha256 = Some(digest);
        Ok(installed)
    }

    /// Installs a plugin [`build`](crate::build::build) made, through the same version
    /// check, loader checks and move as a package.
    pub fn install_built(&self, built: Built) -> Result<Installed, Error> {
        let previous = self.check_version(&built.name, &built.version)?;
        let staging = self.staging()?;
        let name = built.name.clone();
        let dir = staging.path().join(&name);
        std::fs::rename(&built.dir, &dir).map_err(Error::io("stage the built plugin", &dir))?;
        drop(built);
        let mut installed = self.move_in(&name, &dir, staging)?;
        installed.previous = previous;
        Ok(installed)
    }

    fn staging(&self) -> Result<Staging, Error> {
        let base = self.manager.base_dir();
        remove_stale_staging(base);
        Staging::new(base)
    }

    /// The version installed now, if any; refuses a downgrade unless forced.
    fn check_version(
        &self,
        name: &str,
        version: &semver::Version,
    ) -> Result<Option<semver::Version>, Error> {
        let running = self
            .manager
            .get(name)
            .ok()
            .and_then(|handle| handle.summary())
            .map(|summary| summary.version);
        let on_disk = plugin_host::Manifest::load(&self.manager.base_dir().join(name))
            .ok()
            .map(|m| m.version);
        let installed = running.into_iter().chain(on_disk).max();
        if let Some(installed) = &installed {
            if version < installed && !self.force {
                return Err(Error::Downgrade {
                    plugin: name.to_owned(),
                    installed: installed.clone(),
                    package: version.clone(),
                });
            }
        }
        Ok(installed)
    }

    /// Runs the loader's checks on the staged folder `dir`, then moves it into the base
    /// directory: by a hot upgrade when the plugin runs in the manager, else by renames.
    fn move_in(&self, name: &str, dir: &Path, staging: Staging) -> Result<Installed, Error> {
        let inspection = self.manager.inspect_dir(name, dir)?;
        let target = self.manager.base_dir().join(name);
        let upgraded = if self.manager.state(name) == Some(PluginState::Active) {
            let options = UpgradeOptions::new().allow_downgrade(self.force);
            Some(self.manager.upgrade(name, dir, options)?)
        } else {
            // The old folder, if any, ends up in the staging folder and goes with it.
            replace_folder(dir, &target, &staging.path().join(".old"))
                .map_err(Error::io("move the new folder into", &target))?;
            None
        };
        drop(staging);
        Ok(Installed {
            name: name.to_owned(),
            version: inspection.version,
            previous: None,
            dir: target,
            signed_by: None,
            sha256: None,
            upgraded,
        })
    }
}

/// The prefix of a staging folder's name in the base directory.
const STAGING_PREFIX: &str = ".install-";

/// A hidden staging folder in the base directory, locked (`flock` on the folder itself) for
/// as long as this install uses it: the lock is what tells a live staging folder from one a
/// killed install left behind, since the kernel drops it with the process.
struct Staging {
    /// Removed when dropped, before the lock is released.
    dir: tempfile::TempDir,
    _lock: std::fs::File,
}

impl Staging {
    fn new(base: &Path) -> Result<Staging, Error> {
        // Another installer's cleanup may remove the folder between its creation and the
        // lock: then the lock is on a removed folder, and a new one is made.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix(STAGING_PREFIX)
                .tempdir_in(base)
                .map_err(Error::io("create a staging folder in", base))?;
            let lock = lock_folder(dir.path())
                .map_err(Error::io("lock the staging folder", dir.path()))?
                .expect("a folder just made is locked by no one");
            if same_file(&lock, dir.path()) {
                return Ok(Staging { dir, _lock: lock });
            }
        }
        Err(Error::io("keep a staging folder in", base)(
            std::io::Error::other("another process removed each new staging folder at once"),
        ))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Opens the folder and takes its lock without waiting: `None` if another process holds it.
fn lock_folder(dir: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::File::open(dir)?;
    // `FileExt::try_lock(&file)`: from Rust 1.89 on, `File` has an inherent method of that
    // name which method-call syntax would pick instead.
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(Some(file)),
        Err(fs4::TryLockError::WouldBlock) => Ok(None),
        Err(fs4::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether the open `file` is still the entry at `path`.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// Removes the staging folders (`.install-*`) in `base` that no install holds any more:
/// those an install killed midway (`SIGKILL`, a power cut) left behind. A folder an install
/// in another process is using is locked, and is left alone. Returns how many were removed;
/// a folder that cannot be removed is logged and skipped. Every install calls it first, and
/// a host that installs (`plugctl serve`) calls it when it starts.
pub fn remove_stale_staging(base: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_staging = name.to_str().is_some_and(|n| n.starts_with(STAGING_PREFIX));
        // Only real folders: a symlink named so is not followed.
        if !is_staging || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let outcome = lock_folder(&path).and_then(|lock| match lock {
            // Removed while locked, so that no install can start using it meanwhile.
            Some(_lock) => std::fs::remove_dir_all(&path).map(|()| true),
            None => Ok(false),
        });
        match outcome {
            Ok(true) => {
                tracing::info!(folder = %path.display(), "removed a staging folder an interrupted install left");
                removed += 1;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(folder = %path.display(), "cannot remove a stale staging folder: {e}")
            }
        }
    }
    removed
}

/// Puts the folder `new` at `target`. If `target` exists, on Linux the two are exchanged in
/// one step (`renameat2` with `RENAME_EXCHANGE`), so a host watching the base directory never
/// sees the plugin missing, and `new` then holds the old folder; elsewhere, or on a file
/// system that cannot exchange, the old folder is renamed to `aside` first, and back if the
/// second rename fails.
fn replace_folder(new: &Path, target: &Path, aside: &Path) -> std::io::Result<()> {
    if !target.exists() {
        return std::fs::rename(new, target);
    }
    #[cfg(target_os = "linux")]
    if exchange(new, target).is_ok() {
        return Ok(());
    }
    std::fs::rename(target, aside)?;
    std::fs::rename(new, target).inspect_err(|_| {
        let _ = std::fs::rename(aside, target);
    })
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call, which only reads
    // them; relative paths resolve against the working directory (`AT_FDCWD`).
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_folder_puts_the_new_folder_in_place_and_keeps_the_old_one_out_of_the_way() {
        let root = tempfile::tempdir().unwrap();
        let (new, target, aside) = (
            root.path().join("new"),
            root.path().join("target"),
            root.path().join("aside"),
        );
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("v"), "1").unwrap();
        replace_folder(&new, &target, &aside).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("v")).unwrap(), "1");
        assert!(!new.exists() && !aside.exists());

        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("v"), "2").unwrap();
        replace_folder(&new, &target, &aside).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("v")).unwrap(), "2");
        // The old version is in exactly one of the two places the staging folder removes.
        let old: Vec<_> = [&new, &aside]
            .into_iter()
            .filter_map(|d| std::fs::read_to_string(d.join("v")).ok())
            .collect();
        assert_eq!(old, ["1"]);
        #[cfg(target_os = "linux")]
        assert!(
            new.exists(),
            "on Linux the folders are exchanged in one step"
        );
    }
}
