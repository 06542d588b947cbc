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

/// The lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the regular file `path`, of at most `cap` bytes. The file is opened without
/// blocking (a FIFO would otherwise wait for a writer) and its type is checked on the opened
/// file; the read stops one byte past the cap, whatever the file claims.
pub(crate) fn read_regular_file(
    path: &Path,
    cap: u64,
    what: &'static str,
) -> Result<Vec<u8>, crate::Error> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(crate::Error::io("open", path))?;
    let meta = file
        .metadata()
        .map_err(crate::Error::io("read the metadata of", path))?;
    let too_large = || crate::Error::TooLarge {
        what,
        path: path.to_path_buf(),
        limit: cap,
    };
    if !meta.is_file() {
        return Err(crate::Error::NotAFile {
            what,
            path: path.to_path_buf(),
        });
    }
    if meta.len() > cap {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(crate::Error::io("read", path))?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(bytes)
}
