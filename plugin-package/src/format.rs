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

/// Whether [`read_capped`] follows a symbolic link at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// Read what the link points to (a file the user named).
    Follow,
    /// Refuse a link (a file inside a folder being packed).
    Refuse,
}

/// Why [`read_capped`] read nothing.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Opening or reading failed.
    Io(std::io::Error),
    /// The path is not a regular file but this kind of thing.
    NotAFile(&'static str),
    /// The file holds more than the cap, in bytes.
    TooLarge(u64),
}

impl From<ReadError> for std::io::Error {
    fn from(err: ReadError) -> Self {
        use std::io::{Error, ErrorKind};
        match err {
            ReadError::Io(err) => err,
            ReadError::NotAFile(kind) => Error::new(
                ErrorKind::InvalidInput,
                format!("it is a {kind}, not a regular file"),
            ),
            ReadError::TooLarge(cap) => Error::new(
                ErrorKind::FileTooLarge,
                format!("it is larger than {cap} bytes, the most read of such a file"),
            ),
        }
    }
}

/// The kind of a file that is not a regular file, for messages.
pub(crate) fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_symlink() {
        return "symbolic link";
    }
    if file_type.is_dir() {
        return "folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
    }
    "special file"
}

/// Reads the regular file `path`, of at most `cap` bytes. The file is opened without
/// blocking (a FIFO would otherwise wait for a writer) and, with [`Links::Refuse`], not
/// through a link; its type is checked on the opened file; the read stops one byte past the
/// cap, whatever the file claims.
pub(crate) fn read_capped(path: &Path, cap: u64, links: Links) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    if links == Links::Refuse {
        let meta = path.symlink_metadata().map_err(ReadError::Io)?;
        if !meta.is_file() {
            return Err(ReadError::NotAFile(kind_of(meta.file_type())));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        let nofollow = match links {
            Links::Follow => 0,
            Links::Refuse => libc::O_NOFOLLOW,
        };
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK | nofollow);
    }
    let file = options.open(path).map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile(kind_of(meta.file_type())));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge(cap));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge(cap));
    }
    Ok(bytes)
}

/// [`read_capped`] of a file the user named, with the crate's errors.
pub(crate) fn read_regular_file(
    path: &Path,
    cap: u64,
    what: &'static str,
) -> Result<Vec<u8>, crate::Error> {
    read_capped(path, cap, Links::Follow).map_err(|err| match err {
        ReadError::Io(source) => crate::Error::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        },
        ReadError::NotAFile(_) => crate::Error::NotAFile {
            what,
            path: path.to_path_buf(),
        },
        ReadError::TooLarge(_) => crate::Error::TooLarge {
            what,
            path: path.to_path_buf(),
            limit: cap,
        },
    })
}
