//! Every check made on a plugin library's file before it is mapped, and file completeness.
//!
//! The loader runs them in this order on one folder (steps 0, 2 and 3 of `load.rs`), and
//! maps nothing before all of them passed:
//!
//! 0. [`check_folder`]: the folder resolves inside the base directory; it, the base
//!    directory and every folder above belong to the host's user or root and are not
//!    writable by group or others (a sticky folder above, such as `/tmp`, may be).
//!    [`check_manifest`] gives `plugin.json` (what a symlink leads to) the same owner and
//!    mode rules as it is opened, in step 1.
//! 1. [`find_library`]: the first of the manifest's candidate paths that exists.
//! 2. [`open_checked`]: the path resolves inside the plugin folder; the opened file is a
//!    regular file, not writable by group or others, owned by the host's user or root.
//! 3. [`read_capped`]: the whole file, read once into memory, at most
//!    [`MAX_LIBRARY_LEN`](file::MAX_LIBRARY_LEN) bytes. Every later check, and the private copy, use these bytes.
//! 4. [`checksum::verify`]: the manifest's `sha256`, if it has one.
//! 5. [`check_format`]: a shared library for this OS and machine that exports the root
//!    module.
//! 6. [`read_identity`] and [`check_identity`]: the identity record `export_plugin!` writes
//!    into a link section of its own equals the manifest's name and version, with an SDK
//!    compatible with this host. The loader checks the identity the mapped library's
//!    `info()` reports with [`check_identity`] too.
//!
//! The watcher uses [`library_complete`] (is a file being written still missing bytes its
//! headers declare?) and [`FileStamp`] (did a file change since?).

pub(crate) mod checksum;
mod complete;
mod file;
mod format;
mod identity;
mod stamp;

pub use checksum::sha256_file;
pub use complete::library_complete;
pub(crate) use complete::{library_status, Status};
pub(crate) use file::{
    check_folder, check_manifest, find_library, open_checked, read_capped, FolderPolicy,
};
pub(crate) use format::check_format;
pub(crate) use identity::{check_identity, read_identity};
pub(crate) use stamp::FileStamp;
