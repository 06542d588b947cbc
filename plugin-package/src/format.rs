//! The `.plg` layout: file names, the signature's file, and the size limits.

use std::path::{Path, PathBuf};

/// The extension of a package file.
pub const PACKAGE_EXTENSION: &str = "plg";

/// `NAME-VERSION.plg`, the default file name of a package.
pub fn package_file_name(name: &str, version: &semver::Version) -> String {
    format!("{name}-{version}.{PACKAGE_EXTENSION}")
}

/// The detached signature of `package`: `FILE.plg.minisig`, beside it.
pub fn signature_path(package: &Path) -> PathBuf {
    let mut name = package.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Size caps for reading and extracting a package. The defaults fit any plugin the host
/// would load (its library cap is 512 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest package file (compressed), in bytes. Default 256 MiB.
    pub max_package_bytes: u64,
    /// Largest total size of the files extracted, in bytes. Default 512 MiB.
    pub max_unpacked_bytes: u64,
    /// Largest single file, in bytes. Default 512 MiB.
    pub max_file_bytes: u64,
    /// Largest ratio of unpacked to compressed bytes, checked once the unpacked size passes
    /// 1 MiB (small files compress unevenly). Default 20, as cargo's crate extraction uses.
    pub max_ratio: u64,
    /// Most entries in the archive. Default 16.
    pub max_entries: usize,
    /// Largest signature file, in bytes. Default 4 KiB.
    pub max_signature_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_package_bytes: 256 << 20,
            max_unpacked_bytes: 512 << 20,
            max_file_bytes: 512 << 20,
            max_ratio: 20,
            max_entries: 16,
            max_signature_bytes: 4 << 10,
        }
    }
}
