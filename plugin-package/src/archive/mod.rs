//! The `.plg` archive: packing a plugin folder, and reading or extracting a package safely.
//!
//! # Layout
//!
//! A `.plg` file is a gzip-compressed tar archive (one gzip member) holding, at the archive
//! root and without a leading `./`, in this order:
//!
//! 1. `plugin.json`, the plugin's manifest (at most 256 KiB, the host's cap); its
//!    `source.mode` is `local_so`;
//! 2. the folders of the library's path, if any, each before what it holds (`lib/` for a
//!    `source.path` of `lib/hello`);
//! 3. the library, at the path the manifest's `source.path` resolves to on the platform the
//!    package was made for (`libhello.so` or `lib/libhello.so` on Linux for `hello` or
//!    `lib/hello`);
//! 4. optionally, in this order: `LICENSE`, `LICENSE-APACHE`, `LICENSE-MIT`, `LICENSE.md`,
//!    `README`, `README.md`.
//!
//! Nothing else is accepted, and every path fits the 100-byte name field of a tar header
//! (pax and GNU long-name headers are refused). [`pack`] writes GNU tar headers and makes
//! the same bytes from the same folder every time: mtime 0, uid and gid 0, empty user and
//! group names, mode 0644 for `plugin.json` and the optional files, 0755 for the library
//! and the folders, and a gzip header with mtime 0 and no file name.
//!
//! # Extraction
//!
//! [`extract`] never uses the `tar` crate's unpacking: it reads the entries one by one and
//! writes them itself. Only regular files and folders are accepted; links, devices, FIFOs,
//! extension headers and every other type are refused, as are absolute paths, `..`
//! components, empty or non-UTF-8 names, backslashes, NUL bytes, duplicate entries (after
//! removing `.` components and trailing slashes) and any entry outside the layout above.
//! Exactly one library must be present. Files are created new (`O_EXCL`, `O_NOFOLLOW`) with
//! mode 0644 (0755 for the library, and for folders) whatever the archive says. Sizes are
//! counted as bytes are decompressed, never taken from headers: the package, each file, the
//! total, and the ratio of unpacked to compressed bytes (once past 1 MiB) are capped by
//! [`Limits`](crate::Limits), and reading stops as soon as a cap is crossed. After the
//! last entry only zeros may follow, then the gzip trailer (its checksum is verified), then
//! nothing. On any error, everything written is removed again.

mod extract;
mod pack;
mod read;

use std::path::PathBuf;

use plugin_host::manifest::{ManifestError, SourceMode};

pub use extract::extract;
pub(crate) use extract::{read_manifest, verify};
pub use pack::pack;

/// The manifest's entry name, always the package's first entry.
pub(crate) const MANIFEST_ENTRY: &str = plugin_host::manifest::MANIFEST_FILE;

/// The optional documentation files a package may hold, in the order they are packed.
pub(crate) const OPTIONAL_FILES: [&str; 6] = [
    "LICENSE",
    "LICENSE-APACHE",
    "LICENSE-MIT",
    "LICENSE.md",
    "README",
    "README.md",
];

/// One mebibyte: below this many unpacked bytes the ratio cap does not apply.
const RATIO_FLOOR: u64 = 1 << 20;

/// Why an archive could not be packed, read or extracted. Messages name the package entry
/// (its path inside the archive) or the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The package file is larger than [`Limits::max_package_bytes`](crate::Limits).
    #[error("the package is {bytes} bytes, more than the limit of {max} bytes; a plugin package is a plugin.json and one library, so check that this is the right file, or raise `max_package_bytes`")]
    PackageTooLarge {
        /// The package's size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The package does not start with the gzip magic bytes.
    #[error("the package is not a gzip file (it starts with {start}); a .plg package is a gzip-compressed tar archive made by `plugctl pack`: check that the file or URL is the package and not, say, an HTML page")]
    NotGzip {
        /// The first bytes, in hex.
        start: String,
    },
    /// The gzip data is truncated or corrupt.
    #[error("the package is truncated or corrupt (gzip data){}: {source}; download or copy it again, or pack it again", in_entry(.entry))]
    Corrupt {
        /// The entry being read when the data ran out or broke, if any.
        entry: Option<String>,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// An entry's data ends before the size its header declares.
    #[error("the package is truncated: entry `{entry}` ends after {read} of its {declared} bytes; download or copy it again, or pack it again")]
    Truncated {
        /// The entry.
        entry: String,
        /// The bytes found.
        read: u64,
        /// The bytes its header declares.
        declared: u64,
    },
    /// The decompressed data is not a well-formed tar archive.
    #[error("the package's content is not a valid tar archive{}: {source}; pack it again with `plugctl pack`", after_entry(.entry))]
    Tar {
        /// The last entry read before the problem, if any.
        entry: Option<String>,
        /// The tar reader's error.
        source: std::io::Error,
    },
    /// Data follows the end of the tar archive or of the gzip stream.
    #[error("the package has data after the end of its {after}; a package made by `plugctl pack` has none: pack it again")]
    TrailingData {
        /// `tar archive` or `gzip stream`.
        after: &'static str,
    },
    /// The archive has more entries than [`Limits::max_entries`](crate::Limits).
    #[error("the package has more than {max} entries; a package holds plugin.json, the library, its folders and a few README/LICENSE files: check the package, or raise `max_entries`")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// An entry's path is unsafe or malformed.
    #[error("package entry `{entry}` is refused: {reason}; entries are relative paths inside the plugin folder, separated by `/`")]
    UnsafePath {
        /// The entry's path (non-UTF-8 bytes replaced).
        entry: String,
        /// Why, e.g. "the path is absolute".
        reason: &'static str,
    },
    /// An entry is neither a regular file nor a folder.
    #[error("package entry `{entry}` is a {kind}, which packages may not hold; only regular files and folders are accepted: pack the plugin folder again with `plugctl pack`")]
    EntryType {
        /// The entry's path.
        entry: String,
        /// Its type, e.g. "symbolic link".
        kind: String,
    },
    /// Two entries have the same path (after removing `.` components and trailing slashes).
    #[error("package entry `{entry}` appears twice (as the same path or as both a file and a folder); a package lists each path once: pack it again with `plugctl pack`")]
    Duplicate {
        /// The path.
        entry: String,
    },
    /// A folder entry carries data.
    #[error(
        "package entry `{entry}` is a folder that declares {size} bytes of data; folders hold none"
    )]
    FolderWithData {
        /// The folder's path.
        entry: String,
        /// The size its header declares.
        size: u64,
    },
    /// The archive holds no entry at all.
    #[error(
        "the package is empty: its first entry must be plugin.json; pack it with `plugctl pack`"
    )]
    MissingManifest,
    /// The first entry is not `plugin.json`.
    #[error("the package's first entry is `{entry}`, not a plugin.json file; packages start with plugin.json: pack it with `plugctl pack`")]
    ManifestNotFirst {
        /// The first entry's path.
        entry: String,
    },
    /// `plugin.json` is larger than the host accepts.
    #[error("package entry `{entry}` is larger than {max} bytes, the most a plugin.json may hold; shorten plugin.json and pack again")]
    ManifestTooLarge {
        /// The entry (`plugin.json`).
        entry: String,
        /// The cap.
        max: u64,
    },
    /// `plugin.json` is not UTF-8.
    #[error("package entry `{entry}` is not UTF-8 text: {source}; save plugin.json as UTF-8")]
    ManifestNotUtf8 {
        /// The entry (`plugin.json`).
        entry: String,
        /// The decoding error.
        source: std::str::Utf8Error,
    },
    /// `plugin.json` does not parse or validate.
    #[error("package entry `{entry}` is not a valid manifest: {source}")]
    Manifest {
        /// The entry (`plugin.json`).
        entry: String,
        /// What is wrong with it.
        source: Box<ManifestError>,
    },
    /// The manifest's `source.mode` is not `local_so`.
    #[error("package entry `{entry}`: field `source.mode` is `{mode}`; a package carries a built library, so its source.mode must be `local_so`")]
    NotLocalSo {
        /// The entry (`plugin.json`).
        entry: String,
        /// The mode found.
        mode: SourceMode,
    },
    /// An entry is not part of the layout.
    #[error("package entry `{entry}` ({kind}) is not allowed; a package may hold only: {allowed}")]
    UnexpectedEntry {
        /// The entry's path.
        entry: String,
        /// `file` or `folder`.
        kind: &'static str,
        /// The paths allowed, for this package's manifest.
        allowed: String,
    },
    /// Two of the library's candidate paths are both present.
    #[error("the package holds two libraries, `{first}` and `{second}`; it must hold exactly one, at the path plugin.json's source.path resolves to")]
    TwoLibraries {
        /// The first one found.
        first: String,
        /// The second one.
        second: String,
    },
    /// No library is present.
    #[error(
        "the package holds no library; plugin.json's source.path expects one of: {candidates}"
    )]
    NoLibrary {
        /// The paths the library may have.
        candidates: String,
    },
    /// A file is larger than [`Limits::max_file_bytes`](crate::Limits).
    #[error("package entry `{entry}` is larger than the limit of {max} bytes per file; check the package, or raise `max_file_bytes`")]
    FileTooLarge {
        /// The entry.
        entry: String,
        /// The limit.
        max: u64,
    },
    /// The files add up to more than [`Limits::max_unpacked_bytes`](crate::Limits).
    #[error("the package unpacks to more than the limit of {max} bytes (reached in entry {}); check the package, or raise `max_unpacked_bytes`", entry.as_deref().unwrap_or("(tar headers)"))]
    UnpackedTooLarge {
        /// The entry being read when the limit was crossed, if any.
        entry: Option<String>,
        /// The limit.
        max: u64,
    },
    /// The unpacked data exceeds [`Limits::max_ratio`](crate::Limits) times the package.
    #[error("the package unpacks to more than {max_ratio} times its {package_bytes} bytes (over {unpacked} bytes, reached in entry {}): refused as a likely decompression bomb; a real plugin's library compresses far less (about 4 times); if this one is genuine, raise `max_ratio`", entry.as_deref().unwrap_or("(tar headers)"))]
    Ratio {
        /// The entry being read when the cap was crossed, if any.
        entry: Option<String>,
        /// The bytes unpacked when it was crossed.
        unpacked: u64,
        /// The package's size.
        package_bytes: u64,
        /// The cap.
        max_ratio: u64,
    },
    /// Writing an extracted file or folder failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create the file".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// [`pack`] was given something that is not a plugin folder.
    #[error("cannot pack {}: {source}; give the plugin folder, the one holding plugin.json", path.display())]
    NotAFolder {
        /// The path given.
        path: PathBuf,
        /// Why it could not be used.
        source: std::io::Error,
    },
    /// A file to pack is a symbolic link or not a regular file.
    #[error("cannot pack {}: it is a {kind}, not a regular file; a package holds what the host would load, so replace it with the file itself", path.display())]
    NotARegularFile {
        /// The file.
        path: PathBuf,
        /// What it is, e.g. "symbolic link".
        kind: &'static str,
    },
    /// An entry's path does not fit a tar header's name field.
    #[error("cannot pack `{path}`: its path is {} bytes long, and package entries must fit the {max}-byte name field of a tar header; use a shorter source.path in plugin.json", path.len())]
    PathTooLong {
        /// The path inside the package.
        path: String,
        /// The longest path allowed.
        max: usize,
    },
    /// A file changed between the host's checks and its packing.
    #[error("cannot pack {}: it changed while being packed; pack again once nothing writes to the plugin folder", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// The package's output path is a folder.
    #[error("cannot write the package to {}: it is a folder; give a file path such as {}/NAME-VERSION.plg", path.display(), path.display())]
    OutIsFolder {
        /// The path.
        path: PathBuf,
    },
    /// The package made from a folder would be refused when extracted with default limits.
    #[error("the package made from {} would be refused on installation: {source}", dir.display())]
    WouldBeRefused {
        /// The plugin folder.
        dir: PathBuf,
        /// Extraction's verdict.
        source: Box<ArchiveError>,
    },
}

fn in_entry(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|e| format!(" in entry `{e}`"))
        .unwrap_or_default()
}

fn after_entry(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|e| format!(" after entry `{e}`"))
        .unwrap_or_default()
}

impl ArchiveError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ArchiveError {
        let path = path.into();
        move |source| ArchiveError::Io {
            action,
            path,
            source,
        }
    }
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
    /// The entries packed, in order (folders end with `/`).
    pub entries: Vec<String>,
    /// The total size of the files packed, in bytes.
    pub unpacked_bytes: u64,
}

/// What [`extract`] wrote.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The package's validated `plugin.json`.
    pub manifest: plugin_host::Manifest,
    /// The files written, relative to the folder extracted into, in archive order (folders
    /// are not listed).
    pub files: Vec<PathBuf>,
    /// The library, relative to the folder extracted into.
    pub library: PathBuf,
    /// The total size of the files, in bytes.
    pub unpacked_bytes: u64,
}
