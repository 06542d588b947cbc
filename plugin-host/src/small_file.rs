//! Reading the small files the host did not write (`plugin.json`, the state file): only a
//! regular file is read, opening never blocks, and no more than a cap is read.
//!
//! Opening a FIFO for reading blocks until a writer comes, and `/dev/zero` never ends, so a
//! plain `read_to_string` lets one hostile file hang or exhaust the host. Here the file is
//! opened without blocking (`O_NONBLOCK` on Unix, which changes nothing for a regular file),
//! its type is checked on the opened descriptor (so a file swapped after a check by path
//! cannot slip through), and at most `cap` bytes are accepted.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

impl SmallFileError {
    /// The error as an `io::Error` saying what is wrong with the file.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            SmallFileError::Io(e) => e,
            SmallFileError::NotAFile { kind } => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("it is {kind}, not a regular file"),
            ),
            SmallFileError::TooLarge { cap } => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it is larger than {cap} bytes, the most the host reads of it"),
            ),
        }
    }
}

/// Why a small file was not read.
#[derive(Debug)]
pub(crate) enum SmallFileError {
    /// Opening or reading failed.
    Io(io::Error),
    /// The path is not a regular file; `kind` says what it is ("a FIFO", "a directory", ...).
    NotAFile { kind: &'static str },
    /// The file is larger than `cap` bytes.
    TooLarge { cap: u64 },
}

/// Reads the regular file at `path` (symlinks followed), refusing anything else, and
/// anything longer than `cap` bytes.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, SmallFileError> {
    read_capped_checked(path, cap, |_| Ok(()), |e| e)
}

/// As [`read_capped`], and `check` is given the metadata of the opened file (what a symlink
/// leads to, and the very file that is then read) before any byte is read; `file_error`
/// turns a [`SmallFileError`] into the caller's error.
pub(crate) fn read_capped_checked<E>(
    path: &Path,
    cap: u64,
    check: impl FnOnce(&Metadata) -> Result<(), E>,
    file_error: impl Fn(SmallFileError) -> E,
) -> Result<Vec<u8>, E> {
    // Look before opening: opening a device may have effects of its own.
    let by_path = std::fs::metadata(path).map_err(|e| file_error(SmallFileError::Io(e)))?;
    if !by_path.is_file() {
        return Err(file_error(SmallFileError::NotAFile {
            kind: describe(&by_path),
        }));
    }
    // Should a FIFO have replaced the file since, opening it does not wait for a writer.
    let file = open_nonblocking(path).map_err(|e| file_error(SmallFileError::Io(e)))?;
    let meta = file
        .metadata()
        .map_err(|e| file_error(SmallFileError::Io(e)))?;
    if !meta.is_file() {
        return Err(file_error(SmallFileError::NotAFile {
            kind: describe(&meta),
        }));
    }
    check(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len().min(cap) as usize);
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(SmallFileError::Io(e)))?;
    if bytes.len() as u64 > cap {
        return Err(file_error(SmallFileError::TooLarge { cap }));
    }
    Ok(bytes)
}

/// Opens `path` for reading without waiting, should it be a FIFO, for a writer (on Unix,
/// `O_NONBLOCK`, which changes nothing for a regular file). Check the opened file's type.
pub(crate) fn open_nonblocking(path: &Path) -> io::Result<File> {
    let mut options = File::options();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options.open(path)
}

/// What kind of file `meta` describes, for an error message.
pub(crate) fn describe(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        return "a directory";
    }
    if kind.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_up_to_the_cap_and_refuses_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_capped(&path, 5).unwrap(), b"12345");
        assert!(matches!(
            read_capped(&path, 4),
            Err(SmallFileError::TooLarge { cap: 4 })
        ));
    }

    #[test]
    fn refuses_a_directory_and_reports_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_capped(dir.path(), 10),
            Err(SmallFileError::NotAFile {
                kind: "a directory"
            })
        ));
        assert!(matches!(
            read_capped(&dir.path().join("missing"), 10),
            Err(SmallFileError::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_fifo_without_blocking_and_a_device_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        // Read on another thread, so a regression fails here instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(matches!(
                read_capped(&fifo, 10),
                Err(SmallFileError::NotAFile {
                    kind: "a FIFO (named pipe)"
                })
            ));
        });
        let refused = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(refused, Ok(true), "a FIFO must be refused at once");
        assert!(matches!(
            read_capped(Path::new("/dev/zero"), 10),
            Err(SmallFileError::NotAFile {
                kind: "a character device"
            })
        ));
    }
}
