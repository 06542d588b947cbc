//! The one error type of `plugin-package`: each area's error, and the install's own.

use std::path::PathBuf;

use crate::archive::ArchiveError;
use crate::build::BuildError;
use crate::download::DownloadError;
use crate::sign::SignatureError;

/// Everything that can go wrong while packing, signing, verifying, downloading, building or
/// installing a plugin package. Every message says what failed, where, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Packing, reading or extracting a `.plg` archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A signature or key is missing, malformed, untrusted or does not match.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// Building a plugin from source failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A check of the plugin host refused the package's plugin, or loading it failed.
    #[error(transparent)]
    Host(#[from] plugin_host::Error),
    /// The package is not signed by a trusted key, and no digest was pinned.
    #[error("{origin}: the package has no trusted signature; {hint}")]
    Unsigned {
        /// The package file or URL.
        origin: String,
        /// What to do about it.
        hint: String,
    },
    /// A signature file is not text.
    #[error("{origin}: the signature is not UTF-8 text, so it is not a minisign signature; get the `.minisig` file again from the publisher")]
    SignatureNotText {
        /// The signature file or URL.
        origin: String,
    },
    /// The signature is valid, but for another plugin or version than the package holds.
    #[error("{origin}: the signature is for {signed}, but the package holds {holds}; the package or its signature was swapped: get both from the publisher again")]
    SignedForAnother {
        /// The package file or URL.
        origin: String,
        /// The plugin and version the signed trusted comment names (`` `name` 1.0.0 ``).
        signed: String,
        /// The plugin and version in the package's `plugin.json`.
        holds: String,
    },
    /// A package file is named after another plugin or version than it holds.
    #[error("{origin}: the file is named `{file_name}`, but it holds `{expected}`; a package renamed to pass for another plugin or version is refused: rename it back to `{expected}` if that is the package you meant")]
    Renamed {
        /// The package file or URL.
        origin: String,
        /// Its file name.
        file_name: String,
        /// The name its contents call for (`NAME-VERSION.plg`).
        expected: String,
    },
    /// The package's SHA-256 is not the one pinned.
    #[error("{origin}: the package's SHA-256 is {actual}, not the {expected} pinned with --sha256; it is not the package you meant, or it changed: get the right digest from the publisher")]
    Sha256Mismatch {
        /// The package file or URL.
        origin: String,
        /// The digest pinned.
        expected: String,
        /// The package's digest.
        actual: String,
    },
    /// The package holds a lower version than the one installed.
    #[error("plugin `{plugin}`: the package holds version {package}, lower than the installed {installed}; a replayed old package is refused. To downgrade on purpose, pass --force (`Installer::force(true)`)")]
    Downgrade {
        /// The plugin.
        plugin: String,
        /// The version installed (or running).
        installed: semver::Version,
        /// The version in the package.
        package: semver::Version,
    },
    /// A file read is not a regular file.
    #[error("{}: the {what} is not a regular file (a folder, a FIFO, a device?); give the path of a {what} file", path.display())]
    NotAFile {
        /// What the file should have been ("package", "signature", "public key").
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A file read is larger than its cap.
    #[error("{}: the {what} is larger than the {limit}-byte limit; check that it is the right file, or raise the limit (`Limits`)", path.display())]
    TooLarge {
        /// What the file is.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cap in bytes.
        limit: u64,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create the staging folder".
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
