//! Extracting a package, entry by entry, with the `tar` crate's reader and our own writes;
//! and reading its manifest or checking it whole without writing anything.

use std::collections::HashSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use plugin_host::manifest::{SourceMode, MAX_MANIFEST_BYTES};
use plugin_host::Manifest;

use super::read::{
    entry_kind, entry_path, over_cap, stream_error, Kind, Layout, Stream, StreamState,
};
use super::{ArchiveError, Extracted, MANIFEST_ENTRY, RATIO_FLOOR};
use crate::Limits;

/// Extracts the package `package` (the bytes of a `.plg` file) into the existing empty
/// folder `into`, checking every entry as `docs/packages.md` describes.
///
/// On success `into` holds `plugin.json`, the library and any README/LICENSE files, and
/// nothing else. On error, everything written into `into` has been removed again, and
/// `into` is left, empty, for the caller to remove.
///
/// # Errors
///
/// An [`ArchiveError`] naming the entry and the rule it breaks, or the limit crossed.
pub fn extract(package: &[u8], into: &Path, limits: &Limits) -> Result<Extracted, ArchiveError> {
    let not_empty = || ArchiveError::Io {
        action: "extract into",
        path: into.to_path_buf(),
        source: io::Error::other("the folder is not empty; extract into a new, empty folder"),
    };
    let mut listing = std::fs::read_dir(into).map_err(ArchiveError::io("read the folder", into))?;
    if listing.next().is_some() {
        return Err(not_empty());
    }
    let mut output = Output::Disk {
        into,
        written: Vec::new(),
    };
    let result = scan(package, limits, &mut output, Stop::AtEnd);
    if result.is_err() {
        output.remove_written();
    }
    result.and_then(Scanned::into_extracted)
}

/// Reads the package's `plugin.json` (its first entry) and validates it as [`extract`]
/// would, without writing anything or reading further.
pub(crate) fn read_manifest(package: &[u8], limits: &Limits) -> Result<Manifest, ArchiveError> {
    scan(package, limits, &mut Output::Nowhere, Stop::AfterManifest).map(|s| s.manifest)
}

/// Checks the whole package as [`extract`] would, without writing anything.
pub(crate) fn verify(package: &[u8], limits: &Limits) -> Result<Extracted, ArchiveError> {
    scan(package, limits, &mut Output::Nowhere, Stop::AtEnd).and_then(Scanned::into_extracted)
}

/// How far [`scan`] reads.
#[derive(PartialEq, Eq)]
enum Stop {
    AfterManifest,
    AtEnd,
}

/// What a scan found.
struct Scanned {
    manifest: Manifest,
    files: Vec<String>,
    library: Option<String>,
    unpacked: u64,
}

impl Scanned {
    fn into_extracted(self) -> Result<Extracted, ArchiveError> {
        let library = self.library.ok_or_else(|| ArchiveError::NoLibrary {
            candidates: String::new(),
        })?;
        Ok(Extracted {
            manifest: self.manifest,
            files: self.files.iter().map(|f| relative(f)).collect(),
            library: relative(&library),
            unpacked_bytes: self.unpacked,
        })
    }
}

/// `a/b` as a relative path.
fn relative(path: &str) -> PathBuf {
    path.split('/').collect()
}

/// Where the entries go: files created in a folder, or nowhere.
enum Output<'a> {
    Disk {
        into: &'a Path,
        /// Everything created, in order, with whether it is a folder.
        written: Vec<(PathBuf, bool)>,
    },
    Nowhere,
}

impl Output<'_> {
    fn folder(&mut self, path: &str) -> Result<(), ArchiveError> {
        let Output::Disk { into, written } = self else {
            return Ok(());
        };
        let full = into.join(relative(path));
        let mut builder = DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
        builder
            .create(&full)
            .map_err(ArchiveError::io("create the folder", &full))?;
        written.push((full, true));
        Ok(())
    }

    /// Creates the file `path`, which must not exist, and never through a link.
    fn file(
        &mut self,
        path: &str,
        executable: bool,
    ) -> Result<Option<(File, PathBuf)>, ArchiveError> {
        let Output::Disk { into, written } = self else {
            return Ok(None);
        };
        let full = into.join(relative(path));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options
                .mode(if executable { 0o755 } else { 0o644 })
                .custom_flags(libc::O_NOFOLLOW);
        }
        #[cfg(not(unix))]
        let _ = executable;
        let file = options
            .open(&full)
            .map_err(ArchiveError::io("create the file", &full))?;
        written.push((full.clone(), false));
        Ok(Some((file, full)))
    }

    /// Removes everything written, newest first, so the folder is empty again.
    fn remove_written(&mut self) {
        let Output::Disk { written, .. } = self else {
            return;
        };
        for (path, is_folder) in written.drain(..).rev() {
            let removed = if is_folder {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(err) = removed {
                tracing::warn!(path = %path.display(), %err, "cannot remove a file of a refused package");
            }
        }
    }
}

/// The running totals and the caps they are held to.
struct Budget<'a> {
    limits: &'a Limits,
    package_bytes: u64,
    unpacked: u64,
}

impl Budget<'_> {
    /// Counts `n` more unpacked bytes of `entry`.
    fn add(&mut self, entry: &str, n: u64) -> Result<(), ArchiveError> {
        self.unpacked = self.unpacked.saturating_add(n);
        let ratio_crossed = self.unpacked > RATIO_FLOOR
            && self.unpacked > self.limits.max_ratio.saturating_mul(self.package_bytes);
        if ratio_crossed || self.unpacked > self.limits.max_unpacked_bytes {
            return Err(over_cap(
                self.limits,
                self.package_bytes,
                Some(entry.to_owned()),
                self.unpacked,
            ));
        }
        Ok(())
    }
}

/// Reads every entry (or only the manifest), checks it, and hands it to `output`.
fn scan(
    package: &[u8],
    limits: &Limits,
    output: &mut Output<'_>,
    stop: Stop,
) -> Result<Scanned, ArchiveError> {
    let state = StreamState::default();
    let package_bytes = package.len() as u64;
    let mut archive = tar::Archive::new(Stream::open(package, limits, &state)?);
    let fail = |entry: Option<&str>, err| stream_error(&state, limits, package_bytes, entry, err);
    let mut budget = Budget {
        limits,
        package_bytes,
        unpacked: 0,
    };
    let mut manifest: Option<(Manifest, Layout)> = None;
    let mut seen = HashSet::new();
    let mut folders = HashSet::new();
    let mut files = Vec::new();
    let mut library: Option<String> = None;
    let mut last: Option<String> = None;
    let mut count = 0usize;

    // Raw entries: pax and GNU long-name headers come as entries of their own, refused
    // like any other type, so the tar reader never buffers or skips data on its own.
    for entry in archive.entries().map_err(|e| fail(None, e))?.raw(true) {
        let mut entry = entry.map_err(|e| fail(last.as_deref(), e))?;
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        let path = entry_path(&entry.path_bytes())?;
        let kind = entry_kind(&path, entry.header().entry_type())?;
        let declared = entry.size();
        last = Some(path.clone());

        let Some((_, layout)) = &manifest else {
            // The first entry: plugin.json, read whole, checked, then written.
            if path != MANIFEST_ENTRY || !matches!(kind, Kind::File) {
                return Err(ArchiveError::ManifestNotFirst { entry: path });
            }
            let cap = MAX_MANIFEST_BYTES.min(limits.max_file_bytes);
            if declared > MAX_MANIFEST_BYTES {
                return Err(ArchiveError::ManifestTooLarge {
                    entry: path,
                    max: MAX_MANIFEST_BYTES,
                });
            }
            check_declared(&path, declared, limits)?;
            let mut bytes = Vec::new();
            copy(
                &mut entry,
                &path,
                declared,
                cap,
                &mut bytes,
                Path::new(MANIFEST_ENTRY),
                &mut budget,
                &fail,
            )?;
            let parsed = parse_manifest(&path, &bytes)?;
            let layout = Layout::new(&parsed, &path)?;
            if stop == Stop::AfterManifest {
                return Ok(Scanned {
                    manifest: parsed,
                    files: vec![path],
                    library: None,
                    unpacked: budget.unpacked,
                });
            }
            if let Some((mut file, full)) = output.file(&path, false)? {
                file.write_all(&bytes)
                    .and_then(|()| file.sync_all())
                    .map_err(ArchiveError::io("write", full))?;
            }
            seen.insert(path.clone());
            files.push(path);
            manifest = Some((parsed, layout));
            continue;
        };

        if seen.contains(&path) || (matches!(kind, Kind::File) && folders.contains(&path)) {
            return Err(ArchiveError::Duplicate { entry: path });
        }
        if !layout.allows(&path, &kind) {
            return Err(ArchiveError::UnexpectedEntry {
                kind: match kind {
                    Kind::File => "file",
                    Kind::Folder => "folder",
                },
                entry: path,
                allowed: layout.describe(),
            });
        }
        // Folders the archive did not list before their content are made here.
        let mut ancestor = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            if !ancestor.is_empty() {
                ancestor.push('/');
            }
            ancestor.push_str(part);
            if folders.contains(&ancestor) {
                continue;
            }
            if seen.contains(&ancestor) {
                return Err(ArchiveError::Duplicate { entry: ancestor });
            }
            output.folder(&ancestor)?;
            folders.insert(ancestor.clone());
        }
        seen.insert(path.clone());
        match kind {
            Kind::Folder => {
                if declared != 0 {
                    return Err(ArchiveError::FolderWithData {
                        entry: path,
                        size: declared,
                    });
                }
                if folders.insert(path.clone()) {
                    output.folder(&path)?;
                }
            }
            Kind::File => {
                let is_library = layout.is_library(&path);
                if is_library {
                    if let Some(first) = &library {
                        return Err(ArchiveError::TwoLibraries {
                            first: first.clone(),
                            second: path,
                        });
                    }
                    library = Some(path.clone());
                }
                check_declared(&path, declared, limits)?;
                match output.file(&path, is_library)? {
                    Some((mut file, full)) => {
                        copy(
                            &mut entry,
                            &path,
                            declared,
                            limits.max_file_bytes,
                            &mut file,
                            &full,
                            &mut budget,
                            &fail,
                        )?;
                        file.sync_all().map_err(ArchiveError::io("write", full))?;
                    }
                    None => {
                        let nowhere = Path::new("");
                        copy(
                            &mut entry,
                            &path,
                            declared,
                            limits.max_file_bytes,
                            &mut io::sink(),
                            nowhere,
                            &mut budget,
                            &fail,
                        )?;
                    }
                }
                files.push(path);
            }
        }
    }

    let Some((manifest, layout)) = manifest else {
        return Err(ArchiveError::MissingManifest);
    };
    if library.is_none() {
        return Err(ArchiveError::NoLibrary {
            candidates: layout.libraries.join(" or "),
        });
    }
    archive.into_inner().finish(limits, package_bytes)?;
    Ok(Scanned {
        manifest,
        files,
        library,
        unpacked: budget.unpacked,
    })
}

/// Refuses a file whose header declares more than the per-file cap.
fn check_declared(entry: &str, declared: u64, limits: &Limits) -> Result<(), ArchiveError> {
    if declared > limits.max_file_bytes {
        return Err(ArchiveError::FileTooLarge {
            entry: entry.to_owned(),
            max: limits.max_file_bytes,
        });
    }
    Ok(())
}

/// Parses and validates the package's manifest; its source must be a local library.
fn parse_manifest(entry: &str, bytes: &[u8]) -> Result<Manifest, ArchiveError> {
    let text = std::str::from_utf8(bytes).map_err(|source| ArchiveError::ManifestNotUtf8 {
        entry: entry.to_owned(),
        source,
    })?;
    let manifest = Manifest::parse(text, Path::new(MANIFEST_ENTRY)).map_err(|source| {
        ArchiveError::Manifest {
            entry: entry.to_owned(),
            source: Box::new(source),
        }
    })?;
    if manifest.source.mode != SourceMode::LocalSo {
        return Err(ArchiveError::NotLocalSo {
            entry: entry.to_owned(),
            mode: manifest.source.mode,
        });
    }
    Ok(manifest)
}

/// Copies an entry's data to `sink`, counting the bytes as they come (never trusting the
/// header) and stopping as soon as a cap is crossed.
#[allow(clippy::too_many_arguments)]
fn copy(
    reader: &mut impl Read,
    entry: &str,
    declared: u64,
    cap: u64,
    sink: &mut impl Write,
    sink_path: &Path,
    budget: &mut Budget<'_>,
    fail: &impl Fn(Option<&str>, io::Error) -> ArchiveError,
) -> Result<u64, ArchiveError> {
    let mut limited = reader.take(cap.saturating_add(1));
    let mut buf = vec![0u8; 64 << 10];
    let mut read = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(fail(Some(entry), err)),
        };
        read += n as u64;
        if read > cap {
            return Err(ArchiveError::FileTooLarge {
                entry: entry.to_owned(),
                max: cap,
            });
        }
        budget.add(entry, n as u64)?;
        sink.write_all(&buf[..n])
            .map_err(ArchiveError::io("write", sink_path))?;
    }
    if read != declared {
        return Err(ArchiveError::Truncated {
            entry: entry.to_owned(),
            read,
            declared,
        });
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    const MANIFEST: &[u8] = br#"{"name":"hello","version":"1.2.3","maintainers":[],
        "source":{"mode":"local_so","path":"hello.so"}}"#;

    #[test]
    fn read_manifest_reads_the_first_entry_only() {
        let bytes = package(&[("plugin.json", MANIFEST), ("evil.sh", b"x")]);
        let manifest = read_manifest(&bytes, &Limits::default()).unwrap();
        assert_eq!(
            (manifest.name.as_str(), manifest.version.to_string()),
            ("hello", "1.2.3".to_owned())
        );
        // The whole package is another matter.
        let err = verify(&bytes, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::UnexpectedEntry { ref entry, .. } if entry == "evil.sh"),
            "{err}"
        );
    }

    #[test]
    fn read_manifest_applies_the_same_rules() {
        let limits = Limits::default();
        let not_first = package(&[("hello.so", b"elf"), ("plugin.json", MANIFEST)]);
        assert!(matches!(
            read_manifest(&not_first, &limits),
            Err(ArchiveError::ManifestNotFirst { .. })
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        let too_big = package(&[("plugin.json", &big)]);
        assert!(matches!(
            read_manifest(&too_big, &limits),
            Err(ArchiveError::ManifestTooLarge { .. })
        ));
        let invalid = package(&[("plugin.json", b"{}")]);
        assert!(matches!(
            read_manifest(&invalid, &limits),
            Err(ArchiveError::Manifest { .. })
        ));
        assert!(matches!(
            read_manifest(b"plain", &limits),
            Err(ArchiveError::NotGzip { .. })
        ));
    }

    #[test]
    fn verify_accepts_a_well_formed_package() {
        let bytes = package(&[
            ("plugin.json", MANIFEST),
            ("hello.so", b"elf"),
            ("README", b"hi"),
        ]);
        let checked = verify(&bytes, &Limits::default()).unwrap();
        assert_eq!(checked.library, PathBuf::from("hello.so"));
        assert_eq!(checked.files.len(), 3);
        assert_eq!(checked.unpacked_bytes, MANIFEST.len() as u64 + 5);
    }
}
