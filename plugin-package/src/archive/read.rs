//! Reading a package: the capped gzip stream under the tar reader, entry paths and types,
//! and the allow-list a manifest gives.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::{Component, Path};

use flate2::bufread::GzDecoder;
use tar::EntryType;

use super::{ArchiveError, MANIFEST_ENTRY, OPTIONAL_FILES, RATIO_FLOOR};
use crate::Limits;

/// Decompressed bytes allowed beyond the file caps for tar's own headers and padding: two
/// blocks per entry, the end marker, and a record's padding.
fn metadata_allowance(limits: &Limits) -> u64 {
    (limits.max_entries as u64)
        .saturating_mul(2048)
        .saturating_add(64 << 10)
}

/// What the stream under the tar reader saw; the tar reader turns every error into an
/// `io::Error`, so this tells them apart afterwards.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// Decompressed bytes so far.
    pub(super) decompressed: Cell<u64>,
    /// The gzip decoder failed (truncated or corrupt data).
    pub(super) gzip_failed: Cell<bool>,
    /// The decompressed data crossed the budget.
    pub(super) over_budget: Cell<bool>,
}

/// The gzip decoder, counting and capping what it yields: this bounds what the tar reader
/// may decompress on its own (long names, pax headers, skipped data) too.
pub(super) struct Stream<'a> {
    decoder: GzDecoder<&'a [u8]>,
    state: &'a StreamState,
    budget: u64,
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.decoder.read(buf).inspect_err(|_| {
            self.state.gzip_failed.set(true);
        })?;
        let total = self.state.decompressed.get().saturating_add(n as u64);
        self.state.decompressed.set(total);
        if total > self.budget {
            self.state.over_budget.set(true);
            return Err(io::Error::other("the decompressed data exceeds its budget"));
        }
        Ok(n)
    }
}

impl<'a> Stream<'a> {
    /// Checks the package's size and magic bytes, and opens its gzip stream.
    pub(super) fn open(
        package: &'a [u8],
        limits: &Limits,
        state: &'a StreamState,
    ) -> Result<Stream<'a>, ArchiveError> {
        let bytes = package.len() as u64;
        if bytes > limits.max_package_bytes {
            return Err(ArchiveError::PackageTooLarge {
                bytes,
                max: limits.max_package_bytes,
            });
        }
        if !package.starts_with(&[0x1f, 0x8b]) {
            let start = package
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ");
            let start = if start.is_empty() {
                "nothing: the file is empty".to_owned()
            } else {
                format!("bytes {start}")
            };
            return Err(ArchiveError::NotGzip { start });
        }
        let budget = limits
            .max_unpacked_bytes
            .min(ratio_cap(limits, bytes))
            .saturating_add(metadata_allowance(limits));
        Ok(Stream {
            decoder: GzDecoder::new(package),
            state,
            budget,
        })
    }

    /// Reads what follows the tar archive's end marker: zeros only, then the gzip trailer
    /// (whose checksum the decoder verifies), then nothing.
    pub(super) fn finish(
        mut self,
        limits: &Limits,
        package_bytes: u64,
    ) -> Result<(), ArchiveError> {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = match self.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(stream_error(self.state, limits, package_bytes, None, err)),
            };
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(ArchiveError::TrailingData {
                    after: "tar archive",
                });
            }
        }
        if !self.decoder.into_inner().is_empty() {
            return Err(ArchiveError::TrailingData {
                after: "gzip stream",
            });
        }
        Ok(())
    }
}

/// The most unpacked bytes the ratio allows for a package of `package_bytes`.
pub(super) fn ratio_cap(limits: &Limits, package_bytes: u64) -> u64 {
    limits
        .max_ratio
        .saturating_mul(package_bytes)
        .max(RATIO_FLOOR)
}

/// Turns an error the tar reader (or an entry's reader) returned into what went wrong.
pub(super) fn stream_error(
    state: &StreamState,
    limits: &Limits,
    package_bytes: u64,
    entry: Option<&str>,
    source: io::Error,
) -> ArchiveError {
    let entry = entry.map(str::to_owned);
    if state.over_budget.get() {
        over_cap(limits, package_bytes, entry, state.decompressed.get())
    } else if state.gzip_failed.get() {
        ArchiveError::Corrupt { entry, source }
    } else {
        ArchiveError::Tar { entry, source }
    }
}

/// The error for `unpacked` bytes crossing the lower of the total and ratio caps.
pub(super) fn over_cap(
    limits: &Limits,
    package_bytes: u64,
    entry: Option<String>,
    unpacked: u64,
) -> ArchiveError {
    if ratio_cap(limits, package_bytes) < limits.max_unpacked_bytes {
        ArchiveError::Ratio {
            entry,
            unpacked,
            package_bytes,
            max_ratio: limits.max_ratio,
        }
    } else {
        ArchiveError::UnpackedTooLarge {
            entry,
            max: limits.max_unpacked_bytes,
        }
    }
}

/// An entry's path, checked and normalised: UTF-8, relative, no `..`, `.` components and
/// repeated or trailing slashes removed.
pub(super) fn entry_path(raw: &[u8]) -> Result<String, ArchiveError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let refuse = |reason| ArchiveError::UnsafePath {
        entry: shown.clone(),
        reason,
    };
    if raw.is_empty() {
        return Err(refuse("the path is empty"));
    }
    if raw.contains(&0) {
        return Err(refuse("the path contains a NUL byte"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| refuse("the path is not UTF-8"))?;
    if text.contains('\\') {
        return Err(refuse("the path contains a backslash"));
    }
    let bytes = text.as_bytes();
    if text.starts_with('/')
        || (bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':')
        || Path::new(text).has_root()
    {
        return Err(refuse("the path is absolute"));
    }
    let parts: Vec<&str> = text
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(refuse(
            "the path has a `..` component and could leave the plugin folder",
        ));
    }
    if parts.is_empty() {
        return Err(refuse("the path names no file"));
    }
    Ok(parts.join("/"))
}

/// What an entry is: a file or a folder, or the reason it is refused.
pub(super) enum Kind {
    File,
    Folder,
}

/// The entry's kind, or an error naming its type.
pub(super) fn entry_kind(entry: &str, kind: EntryType) -> Result<Kind, ArchiveError> {
    let name = match kind {
        EntryType::Regular => return Ok(Kind::File),
        EntryType::Directory => return Ok(Kind::Folder),
        EntryType::Symlink => "symbolic link".to_owned(),
        EntryType::Link => "hard link".to_owned(),
        EntryType::Char => "character device".to_owned(),
        EntryType::Block => "block device".to_owned(),
        EntryType::Fifo => "FIFO (named pipe)".to_owned(),
        EntryType::Continuous => "contiguous file".to_owned(),
        EntryType::GNUSparse => "sparse file".to_owned(),
        EntryType::XHeader => "pax extended header".to_owned(),
        EntryType::XGlobalHeader => "pax global header".to_owned(),
        EntryType::GNULongName => "GNU long-name header".to_owned(),
        EntryType::GNULongLink => "GNU long-link header".to_owned(),
        other => format!("entry of type {:?}", char::from(other.as_byte())),
    };
    Err(ArchiveError::EntryType {
        entry: entry.to_owned(),
        kind: name,
    })
}

/// The entries a manifest allows after `plugin.json`, as `/`-separated relative paths.
pub(super) struct Layout {
    /// Where the library may be (one or two names on this platform).
    pub(super) libraries: Vec<String>,
    /// The library's folders, outermost first.
    pub(super) folders: Vec<String>,
}

impl Layout {
    /// The layout the validated manifest (read from `entry`) allows.
    pub(super) fn new(
        manifest: &plugin_host::Manifest,
        entry: &str,
    ) -> Result<Layout, ArchiveError> {
        let candidates = manifest
            .library_candidates(Path::new(""))
            .map_err(|source| ArchiveError::Manifest {
                entry: entry.to_owned(),
                source: Box::new(source),
            })?;
        let libraries: Vec<String> = candidates.iter().filter_map(|c| slash_path(c)).collect();
        let mut folders = Vec::new();
        if let Some(first) = libraries.first() {
            let mut parts: Vec<&str> = first.split('/').collect();
            parts.pop();
            for i in 1..=parts.len() {
                folders.push(parts[..i].join("/"));
            }
        }
        Ok(Layout { libraries, folders })
    }

    /// Whether `path` may appear as a `kind` entry after `plugin.json`.
    pub(super) fn allows(&self, path: &str, kind: &Kind) -> bool {
        match kind {
            Kind::Folder => self.folders.iter().any(|f| f == path),
            Kind::File => {
                self.libraries.iter().any(|l| l == path) || OPTIONAL_FILES.contains(&path)
            }
        }
    }

    /// Whether `path` is one of the library's names.
    pub(super) fn is_library(&self, path: &str) -> bool {
        self.libraries.iter().any(|l| l == path)
    }

    /// Every path allowed, for error messages.
    pub(super) fn describe(&self) -> String {
        let mut all = vec![MANIFEST_ENTRY.to_owned()];
        all.extend(self.folders.iter().map(|f| format!("{f}/")));
        all.push(self.libraries.join(" or "));
        all.extend(OPTIONAL_FILES.iter().map(|f| (*f).to_owned()));
        all.join(", ")
    }
}

/// A relative path's components joined by `/`, if all are UTF-8 names.
fn slash_path(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalised_or_refused() {
        let ok = [
            ("plugin.json", "plugin.json"),
            ("./plugin.json", "plugin.json"),
            ("lib/", "lib"),
            ("lib/./libhello.so", "lib/libhello.so"),
            ("lib//libhello.so", "lib/libhello.so"),
        ];
        for (raw, want) in ok {
            assert_eq!(entry_path(raw.as_bytes()).unwrap(), want, "{raw}");
        }
        let refused: [(&[u8], &str); 8] = [
            (b"", "empty"),
            (b"./", "names no file"),
            (b"a\0b", "NUL"),
            (b"\xffname", "not UTF-8"),
            (b"lib\\x.so", "backslash"),
            (b"/etc/passwd", "absolute"),
            (b"C:evil", "absolute"),
            (b"lib/../../x", "`..`"),
        ];
        for (raw, reason) in refused {
            let err = entry_path(raw).unwrap_err().to_string();
            assert!(err.contains(reason), "{raw:?}: {err}");
        }
    }

    #[test]
    fn nested_library_paths_allow_their_folders_only() {
        let manifest = plugin_host::Manifest::parse(
            r#"{"name":"a","version":"1.0.0","maintainers":[],
                "source":{"mode":"local_so","path":"lib/sub/a.so"}}"#,
            Path::new("plugin.json"),
        )
        .unwrap();
        let layout = Layout::new(&manifest, "plugin.json").unwrap();
        assert_eq!(layout.libraries, ["lib/sub/a.so"]);
        assert_eq!(layout.folders, ["lib", "lib/sub"]);
        assert!(layout.allows("lib/sub", &Kind::Folder));
        assert!(!layout.allows("lib/sub", &Kind::File));
        assert!(layout.allows("README.md", &Kind::File));
        assert!(!layout.allows("README.md", &Kind::Folder));
        assert!(!layout.allows("lib/other.so", &Kind::File));
    }
}
