//! A file's state as far as "did it change" is concerned.

use std::fs::Metadata;
use std::path::Path;
use std::time::SystemTime;

/// The length and modification time of a file and, on Unix, its device, inode, mode and
/// change time. Two stamps of one path differ when the file was written, replaced (a new
/// inode), or had its mode changed; equal stamps mean nothing visible changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Device, inode, mode, change time (seconds, nanoseconds).
    #[cfg(unix)]
    unix: (u64, u64, u32, i64, i64),
}

impl FileStamp {
    /// The stamp of the file `meta` describes.
    pub(crate) fn from_metadata(meta: &Metadata) -> FileStamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            unix: (
                meta.dev(),
                meta.ino(),
                meta.mode(),
                meta.ctime(),
                meta.ctime_nsec(),
            ),
        }
    }

    /// The stamp of the file at `path` (following symbolic links), or `None` if its
    /// metadata cannot be read.
    #[allow(
        dead_code,
        reason = "for the manager's stamps of the files a running version stands for"
    )]
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        std::fs::metadata(path)
            .ok()
            .map(|meta| FileStamp::from_metadata(&meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_changes_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.so");
        assert_eq!(FileStamp::of(&path), None);
        std::fs::write(&path, "one").unwrap();
        let first = FileStamp::of(&path).unwrap();
        assert_eq!(FileStamp::of(&path), Some(first.clone()));
        assert_eq!(
            FileStamp::from_metadata(&std::fs::metadata(&path).unwrap()),
            first
        );
        // Same length, new inode: replaced.
        let staged = dir.path().join(".lib.so.new");
        std::fs::write(&staged, "two").unwrap();
        std::fs::rename(&staged, &path).unwrap();
        assert_ne!(FileStamp::of(&path), Some(first));
    }
}
