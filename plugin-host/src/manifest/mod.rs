//! Plugin manifests: parsing and validation of `plugin.json`.
//!
//! A plugin is a folder under the host's plugin base directory that holds a
//! [`MANIFEST_FILE`] (`plugin.json`) and a shared library. This module reads
//! that file strictly (unknown fields, wrong types and trailing garbage are
//! errors), validates every field, and reports each problem as a typed
//! [`ManifestError`] whose message says what failed, where (file path and
//! JSON field) and how to fix it.
//!
//! ```json
//! {
//!     "name": "hello",
//!     "version": "0.1.0",
//!     "description": "A sample plugin",
//!     "maintainers": ["someone@example.com"],
//!     "home": "https://example.com/hello",
//!     "source": { "mode": "local_so", "path": "hello" },
//!     "http_services": {
//!         "driver": "axum",
//!         "routes": [
//!             { "route": "/api/plugin/sample/:id", "method": "GET", "label": "plugin.get" }
//!         ]
//!     },
//!     "requires": { "host": ">=0.1, <2" },
//!     "sha256": "<64 hex chars>"
//! }
//! ```

mod error;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::ManifestError;
use validate::Validator;

use crate::small_file::{read_capped_checked, SmallFileError};

/// File name of the manifest inside a plugin folder.
pub const MANIFEST_FILE: &str = "plugin.json";

/// The most bytes of `plugin.json` the host reads (256 KiB); a larger file is refused with
/// [`ManifestError::TooLarge`].
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// Maximum length, in characters, of a plugin name or an HTTP driver name.
pub const MAX_NAME_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Public model
// ---------------------------------------------------------------------------

/// A parsed and validated plugin manifest (`plugin.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// Plugin name: 1 to 64 ASCII letters, digits, `-` or `_`, starting with
    /// a letter or digit. Equals the plugin folder's name when loaded with
    /// [`Manifest::load`].
    pub name: String,
    /// Plugin version (strict SemVer 2).
    pub version: semver::Version,
    /// Free-form, human-readable description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// E-mail addresses of the maintainers (may be empty).
    pub maintainers: Vec<String>,
    /// Home page: an `http` or `https` URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Where the plugin's code comes from.
    pub source: Source,
    /// HTTP routes the plugin serves, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_services: Option<HttpServices>,
    /// Requirements on the host, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires: Option<Requires>,
    /// Expected SHA-256 digest of the shared library, as 64 lowercase hex
    /// characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Where the plugin's code comes from (`source` in `plugin.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// How [`Source::path`] is interpreted.
    pub mode: SourceMode,
    /// For [`SourceMode::LocalSo`]: the library path relative to the plugin
    /// folder, possibly without platform prefix and extension (see
    /// [`Manifest::library_candidates`]). For [`SourceMode::RemoteGit`]: a
    /// git remote URL.
    pub path: String,
    /// For [`SourceMode::RemoteGit`]: the commit to build, its full id (40 hex digits, or 64
    /// in a SHA-256 repository), if pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// For [`SourceMode::RemoteGit`]: the tag to build, if pinned by tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// For [`SourceMode::RemoteGit`]: the branch to build, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// For a [`SourceMode::LocalSo`] plugin built from git (`plugctl build`): the repository
    /// it was built from, as it was given to the build. Set together with [`Source::commit`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// For a [`SourceMode::LocalSo`] plugin built from git: the full id of the commit built
    /// (40 or 64 lowercase hex digits). Set together with [`Source::repository`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// How a plugin's [`Source::path`] is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceMode {
    /// A prebuilt shared library inside the plugin folder (`"local_so"`).
    LocalSo,
    /// A git repository to fetch and build (`"remote_git"`).
    RemoteGit,
}

impl SourceMode {
    /// The spelling used in `plugin.json` (`"local_so"` or `"remote_git"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceMode::LocalSo => "local_so",
            SourceMode::RemoteGit => "remote_git",
        }
    }
}

impl fmt::Display for SourceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HTTP routes served by a plugin (`http_services` in `plugin.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpServices {
    /// Name of the HTTP driver the routes are meant for (e.g. `axum`).
    pub driver: String,
    /// The routes; may be empty.
    pub routes: Vec<Route>,
}

/// One HTTP route served by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Path pattern, starting with `/`; parameters are written `:name` or
    /// `{name}`.
    pub route: String,
    /// HTTP method.
    pub method: HttpMethod,
    /// Label identifying the handler inside the plugin (e.g. `plugin.get`).
    pub label: String,
}

/// An HTTP method a plugin route may use; written in uppercase in
/// `plugin.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `HEAD`
    Head,
    /// `OPTIONS`
    Options,
}

impl HttpMethod {
    /// Every method, in the order listed in error hints.
    pub const ALL: [HttpMethod; 7] = [
        HttpMethod::Get,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
        HttpMethod::Head,
        HttpMethod::Options,
    ];

    /// The uppercase spelling (`"GET"`, `"POST"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Head => "HEAD",
            HttpMethod::Options => "OPTIONS",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Requirements a plugin puts on its host (`requires` in `plugin.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requires {
    /// Host versions the plugin works with.
    pub host: semver::VersionReq,
}

// ---------------------------------------------------------------------------
// Parsing and loading
// ---------------------------------------------------------------------------

impl Manifest {
    /// Parses and validates manifest text. `file` is only used in error
    /// messages.
    ///
    /// A leading UTF-8 byte-order mark is ignored. The first rule broken is
    /// reported.
    ///
    /// # Errors
    ///
    /// [`ManifestError::Syntax`] if the text is not a JSON object of the
    /// expected shape, [`ManifestError::Invalid`] if a value breaks a rule.
    pub fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Validator { file }.manifest(raw::parse(text, file)?)
    }

    /// Reads `<plugin_dir>/plugin.json`, parses it, and checks that `name`
    /// equals the folder name.
    ///
    /// # Errors
    ///
    /// [`ManifestError::Read`] if the file cannot be read, the errors of
    /// [`Manifest::parse`], and [`ManifestError::NameMismatch`].
    pub fn load(plugin_dir: &Path) -> Result<Manifest, ManifestError> {
        Manifest::load_as(plugin_dir, &folder_name(plugin_dir).unwrap_or_default())
    }

    /// Reads `<plugin_dir>/plugin.json`, parses it, and checks that `name` equals `expected`
    /// (the plugin's name in the base directory, for a folder that may be named otherwise,
    /// such as the source of an upgrade).
    ///
    /// # Errors
    ///
    /// As [`Manifest::load`].
    pub fn load_as(plugin_dir: &Path, expected: &str) -> Result<Manifest, ManifestError> {
        Manifest::load_checked(plugin_dir, expected, |_, _| Ok(()))
    }

    /// As [`Manifest::load_as`], and `check` is given the file's path and the metadata of
    /// the opened file (the file a symlink leads to, and the one then read) before it is
    /// read: the loader checks its owner and mode there.
    pub(crate) fn load_checked<E: From<ManifestError>>(
        plugin_dir: &Path,
        expected: &str,
        check: impl FnOnce(&Path, &std::fs::Metadata) -> Result<(), E>,
    ) -> Result<Manifest, E> {
        let file = plugin_dir.join(MANIFEST_FILE);
        let file_error = |err| match err {
            SmallFileError::Io(source) => ManifestError::Read {
                file: file.clone(),
                source,
            },
            SmallFileError::NotAFile { kind } => ManifestError::NotAFile {
                file: file.clone(),
                kind,
            },
            SmallFileError::TooLarge { cap } => ManifestError::TooLarge {
                file: file.clone(),
                cap,
            },
        };
        let bytes = read_capped_checked(
            &file,
            MAX_MANIFEST_BYTES,
            |meta| check(&file, meta),
            |err| E::from(file_error(err)),
        )?;
        let text = String::from_utf8(bytes).map_err(|e| ManifestError::Read {
            file: file.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let manifest = Manifest::parse(&text, &file)?;
        if manifest.name != expected {
            return Err(ManifestError::NameMismatch {
                file,
                name: manifest.name,
                folder: expected.to_owned(),
            }
            .into());
        }
        Ok(manifest)
    }

    /// For `local_so`: the file names the library may have on this platform,
    /// in order, joined to `plugin_dir`.
    ///
    /// If `source.path` already ends in `.so`, `.dylib` or `.dll`, that path
    /// alone is returned. Otherwise, for a path `sub/hello`: on Linux (and
    /// other Unix systems) `sub/libhello.so` then `sub/hello.so`; on macOS
    /// `sub/libhello.dylib` then `sub/hello.dylib`; on Windows
    /// `sub/hello.dll`.
    ///
    /// # Errors
    ///
    /// [`ManifestError::NotLocal`] for `remote_git`; [`ManifestError::Invalid`]
    /// if `source.path` breaks the `local_so` rules (possible only for a
    /// manifest built by hand rather than parsed).
    pub fn library_candidates(&self, plugin_dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
        let file = plugin_dir.join(MANIFEST_FILE);
        if self.source.mode != SourceMode::LocalSo {
            return Err(ManifestError::NotLocal {
                file,
                path: self.source.path.clone(),
            });
        }
        // Fields are public: re-check so a hand-built manifest cannot point
        // outside the plugin folder.
        Validator { file: &file }.local_path(&self.source.path)?;
        let mut dir = plugin_dir.to_path_buf();
        let mut parts: Vec<&str> = self
            .source
            .path
            .split(['/', '\\'])
            .filter(|part| !part.is_empty() && *part != ".")
            .collect();
        let file_name = parts.pop().unwrap_or_default();
        for part in parts {
            dir.push(part);
        }
        if has_library_extension(file_name) {
            return Ok(vec![dir.join(file_name)]);
        }
        let prefix = std::env::consts::DLL_PREFIX;
        let suffix = std::env::consts::DLL_SUFFIX;
        let mut candidates = Vec::with_capacity(2);
        if !prefix.is_empty() {
            candidates.push(dir.join(format!("{prefix}{file_name}{suffix}")));
        }
        candidates.push(dir.join(format!("{file_name}{suffix}")));
        Ok(candidates)
    }
}

/// The last component of `dir` as UTF-8, resolving `.`-like paths through
/// the file system.
fn folder_name(dir: &Path) -> Option<String> {
    let name = match dir.file_name() {
        Some(name) => name.to_os_string(),
        None => dir.canonicalize().ok()?.file_name()?.to_os_string(),
    };
    name.into_string().ok()
}

fn has_library_extension(file_name: &str) -> bool {
    match file_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ["so", "dylib", "dll"]
            .iter()
            .any(|known| ext.eq_ignore_ascii_case(known)),
        _ => false,
    }
}
