//! Packing a plugin folder: the host's own checks, then a deterministic archive written
//! through a temporary file.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use plugin_host::manifest::{ManifestError, MAX_MANIFEST_BYTES};
use plugin_host::{Checks, Manifest};

use super::{verify, ArchiveError, Packed, MANIFEST_ENTRY, OPTIONAL_FILES};
use crate::format::{read_capped, sha256_hex, Links, ReadError};
use crate::{package_file_name, Error, Limits};

/// The host's cap on a library's size (512 MiB): a larger one could not have been checked.
const MAX_LIBRARY_BYTES: u64 = 512 << 20;

/// The longest path a tar header's name field holds.
const MAX_PATH: usize = 100;

/// One entry to pack.
struct Item {
    /// The path in the archive; folders end with `/`.
    path: String,
    /// The file's bytes; `None` for a folder.
    data: Option<Vec<u8>>,
    mode: u32,
}

/// Packs the plugin folder `dir` into a `.plg` file: `out`, or `NAME-VERSION.plg` in the
/// working directory, replacing a file already there.
///
/// The folder is first checked as the host checks a plugin before loading it (manifest,
/// library, format and identity; no code of the plugin runs), with permission checks off;
/// the plugin's name is the one in its `plugin.json`, whatever the folder is called. Then
/// `plugin.json`, the library and any README/LICENSE files (the layout in `docs/packages.md`)
/// are packed, the same bytes every time, and the package is checked as installation would
/// check it. It is written to a temporary file beside `out` and renamed into place, so a
/// package file is never half written.
///
/// # Errors
///
/// [`Error::Host`] if the host's checks refuse the folder; [`ArchiveError`] if a file to
/// pack is a link or not a regular file, changes while being packed, if `out` is a folder,
/// or if the package would be refused on installation; [`Error::Io`] if a file cannot be
/// read or written.
pub fn pack(dir: &Path, out: Option<&Path>) -> Result<Packed, Error> {
    let not_a_folder = |source| ArchiveError::NotAFolder {
        path: dir.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(dir).map_err(not_a_folder)?;
    if !meta.is_dir() {
        return Err(not_a_folder(io::Error::other("it is not a folder")).into());
    }
    let dir = dir.canonicalize().map_err(not_a_folder)?;

    // The host's checks. `Manifest::load` wants the folder named after the plugin; a folder
    // named otherwise is checked under the name its plugin.json gives.
    let name = match Manifest::load(&dir) {
        Ok(manifest) => manifest.name,
        Err(ManifestError::NameMismatch { name, .. }) => name,
        Err(err) => return Err(plugin_host::Error::from(err).into()),
    };
    // A folder being packed is the author's work tree: its owner and mode are checked when
    // the package is installed, not here.
    let inspection = Checks::new()
        .insecure_permissions(true)
        .folder(&name, &dir)?;
    let manifest = inspection.manifest;

    let out = match out {
        Some(out) => out.to_path_buf(),
        None => PathBuf::from(package_file_name(&manifest.name, &manifest.version)),
    };
    if out.is_dir() {
        return Err(ArchiveError::OutIsFolder { path: out }.into());
    }

    // The files, read again as regular files only, and checked to be the ones the host
    // checked.
    let manifest_file = dir.join(MANIFEST_ENTRY);
    let manifest_bytes = read_regular(&manifest_file, MAX_MANIFEST_BYTES)?;
    let reparsed = std::str::from_utf8(&manifest_bytes)
        .ok()
        .and_then(|text| Manifest::parse(text, &manifest_file).ok());
    if reparsed.as_ref() != Some(&manifest) {
        return Err(ArchiveError::Changed {
            path: manifest_file,
        }
        .into());
    }
    let library = library_path(&dir, &inspection.library)?;
    let library_bytes = read_regular(&inspection.library, MAX_LIBRARY_BYTES)?;
    if sha256_hex(&library_bytes) != inspection.sha256 {
        return Err(ArchiveError::Changed {
            path: inspection.library,
        }
        .into());
    }

    if library.len() > MAX_PATH {
        return Err(ArchiveError::PathTooLong {
            path: library,
            max: MAX_PATH,
        }
        .into());
    }
    let mut items = vec![Item {
        path: MANIFEST_ENTRY.to_owned(),
        data: Some(manifest_bytes),
        mode: 0o644,
    }];
    let mut folders = Vec::new();
    let parts: Vec<&str> = library.split('/').collect();
    for i in 1..parts.len() {
        let folder = parts[..i].join("/");
        not_a_link(&dir.join(&folder))?;
        items.push(Item {
            path: format!("{folder}/"),
            data: None,
            mode: 0o755,
        });
        folders.push(folder);
    }
    items.push(Item {
        path: library,
        data: Some(library_bytes),
        mode: 0o755,
    });
    let limits = Limits::default();
    for name in OPTIONAL_FILES {
        let path = dir.join(name);
        let meta = match path.symlink_metadata() {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(Error::io("read", path)(err)),
        };
        if meta.is_dir() && folders.iter().any(|f| f == name) {
            continue;
        }
        items.push(Item {
            path: name.to_owned(),
            data: Some(read_regular(&path, limits.max_file_bytes)?),
            mode: 0o644,
        });
    }

    let package = build(&items).map_err(Error::io("compress the package for", &dir))?;
    let checked = verify(&package, &limits).map_err(|source| ArchiveError::WouldBeRefused {
        dir: dir.clone(),
        source: Box::new(source),
    })?;
    write_atomically(&out, &package)?;
    Ok(Packed {
        path: out,
        name: manifest.name,
        version: manifest.version,
        sha256: sha256_hex(&package),
        bytes: package.len() as u64,
        entries: items.into_iter().map(|i| i.path).collect(),
        unpacked_bytes: checked.unpacked_bytes,
    })
}

/// The library's path inside `dir`, `/`-separated, with no link among its folders.
fn library_path(dir: &Path, library: &Path) -> Result<String, Error> {
    let relative = library.strip_prefix(dir).ok();
    let parts: Option<Vec<&str>> = relative.and_then(|rel| {
        rel.components()
            .map(|c| match c {
                Component::Normal(part) => part.to_str(),
                _ => None,
            })
            .collect()
    });
    match parts {
        Some(parts) if !parts.is_empty() => Ok(parts.join("/")),
        _ => Err(ArchiveError::Changed {
            path: library.to_path_buf(),
        }
        .into()),
    }
}

/// Refuses a path that is a symbolic link.
fn not_a_link(path: &Path) -> Result<(), Error> {
    let meta = path.symlink_metadata().map_err(Error::io("read", path))?;
    if meta.file_type().is_symlink() {
        return Err(ArchiveError::NotARegularFile {
            path: path.to_path_buf(),
            kind: "symbolic link",
        }
        .into());
    }
    Ok(())
}

/// A file of the folder being packed: a regular file, not a link, of at most `cap` bytes.
fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, Error> {
    read_capped(path, cap, Links::Refuse).map_err(|err| match err {
        ReadError::Io(source) => Error::io("read", path)(source),
        ReadError::NotAFile(kind) => ArchiveError::NotARegularFile {
            path: path.to_path_buf(),
            kind,
        }
        .into(),
        ReadError::TooLarge(_) => ArchiveError::FileTooLarge {
            entry: path.display().to_string(),
            max: cap,
        }
        .into(),
    })
}

/// The gzip-compressed tar archive of `items`, the same bytes for the same items.
fn build(items: &[Item]) -> io::Result<Vec<u8>> {
    // GzEncoder's header has mtime 0, no name and "unknown" OS: nothing from this machine.
    let encoder = GzEncoder::new(Vec::new(), Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for item in items {
        let mut header = tar::Header::new_gnu();
        let data: &[u8] = item.data.as_deref().unwrap_or_default();
        header.set_entry_type(if item.data.is_some() {
            tar::EntryType::Regular
        } else {
            tar::EntryType::Directory
        });
        header.set_size(data.len() as u64);
        header.set_mode(item.mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("")?;
        header.set_groupname("")?;
        builder.append_data(&mut header, &item.path, data)?;
    }
    builder.into_inner()?.finish()
}

/// Writes `bytes` to a temporary file beside `out`, then renames it to `out`.
fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), Error> {
    let folder = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(Error::io("create a temporary file in", folder))?;
    let write = |file: &mut File| -> io::Result<()> {
        file.write_all(bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        file.sync_all()
    };
    write(temp.as_file_mut()).map_err(Error::io("write", temp.path().to_path_buf()))?;
    temp.persist(out)
        .map_err(|err| Error::io("write", out)(err.error))?;
    Ok(())
}
