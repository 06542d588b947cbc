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
