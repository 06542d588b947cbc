//! Packing a plugin folder into a `.plg` archive, and extracting one safely.

use std::path::{Path, PathBuf};

use crate::{Error, Limits};

/// Why an archive could not be packed, read or extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Placeholder until the archive work lands.
    #[error("not implemented")]
    Unimplemented,
}

/// A package written by [`pack`].
#[derive(Debug, Clone)]
pub struct Packed {
    /// The package file.
    pub path: PathBuf,
    /// The plugin's name, from its `plugin.json`.
    pub name: String,
    /// The plugin's version, from its `plugin.json`.
    pub version: semver::Version,
    /// The package file's SHA-256, lowercase hex.
    pub sha256: String,
    /// The package file's size in bytes.
    pub bytes: u64,
}

/// Packs the plugin folder `dir` into a `.plg` file: `out`, or `NAME-VERSION.plg` in the
/// working directory.
pub fn pack(dir: &Path, out: Option<&Path>) -> Result<Packed, Error> {
    let _ = (dir, out);
    Err(ArchiveError::Unimplemented.into())
}

/// What [`extract`] wrote.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The package's validated `plugin.json`.
    pub manifest: plugin_host::Manifest,
    /// The files written, relative to the folder extracted into.
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub unpacked_bytes: u64,
}

/// Extracts the package `package` (the bytes of a `.plg` file) into the existing empty
/// folder `into`.
pub fn extract(package: &[u8], into: &Path, limits: &Limits) -> Result<Extracted, ArchiveError> {
    let _ = (package, into, limits);
    Err(ArchiveError::Unimplemented)
}

/// Reads the package's `plugin.json` (its first entry) without extracting anything.
pub(crate) fn read_manifest(
    package: &[u8],
    limits: &Limits,
) -> Result<plugin_host::Manifest, ArchiveError> {
    let _ = (package, limits);
    Err(ArchiveError::Unimplemented)
}
