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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the manifest inside a plugin folder.
pub const MANIFEST_FILE: &str = "plugin.json";

/// Maximum length, in characters, of a plugin name or an HTTP driver name.
pub const MAX_NAME_LEN: usize = 64;

/// Longest value quoted verbatim in an error message; longer ones are cut.
const MAX_SHOWN_VALUE: usize = 120;

/// Where to read about the format, quoted in hints.
const REFERENCE: &str = "see the plugin.json reference in README.md";

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
    #[serde(serialize_with = "serialize_display")]
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
    #[serde(serialize_with = "serialize_display")]
    pub host: semver::VersionReq,
}

/// Serializes a value as its `Display` string (as semver's own `serde`
/// feature does), so this module does not depend on that feature.
fn serialize_display<T: fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a plugin manifest could not be read, parsed or accepted.
///
/// Every variant carries the manifest's path, and every message says what
/// failed, where, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest file could not be read (missing, unreadable, not UTF-8).
    #[error(
        "{}: cannot read the plugin manifest: {source}; {}",
        file.display(),
        read_hint(source)
    )]
    Read {
        /// Path of the manifest file.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The text is not a JSON object of the expected shape: empty, not JSON,
    /// not an object, trailing characters, an unknown or duplicate field, a
    /// missing required field, or a value of the wrong type.
    #[error(
        "{}:{line}:{column}: {message}{}; {hint}",
        file.display(),
        field.as_ref().map(|f| format!(" (in `{f}`)")).unwrap_or_default()
    )]
    Syntax {
        /// Path of the manifest file.
        file: PathBuf,
        /// 1-based line of the problem (0 if unknown).
        line: usize,
        /// 1-based column of the problem (0 if unknown or at the very start).
        column: usize,
        /// The field whose value has the wrong shape, such as `version`,
        /// `source` or `http_services.routes[1]`, when the problem is inside
        /// a field; `None` for problems with the document itself (syntax,
        /// not an object, unknown, missing or duplicate top-level field).
        field: Option<String>,
        /// What serde_json reported, without its position suffix; names the
        /// offending field where there is one (e.g. "unknown field `foo`").
        message: String,
        /// How to fix it.
        hint: String,
    },

    /// A field is well-typed but its value breaks a rule.
    #[error(
        "{}: invalid `{field}` value {value:?}: {reason}; {hint}",
        file.display()
    )]
    Invalid {
        /// Path of the manifest file.
        file: PathBuf,
        /// JSON path of the field, e.g. `source.path` or
        /// `http_services.routes[1].method`.
        field: String,
        /// The offending value (cut if very long).
        value: String,
        /// Which rule it breaks.
        reason: String,
        /// How to fix it.
        hint: String,
    },

    /// The manifest's `name` differs from the name of the folder holding it.
    #[error(
        "{}: `name` is {name:?} but the plugin folder is named {folder:?}; \
         rename the folder to {name:?} or set `name` to {folder:?}",
        file.display()
    )]
    NameMismatch {
        /// Path of the manifest file.
        file: PathBuf,
        /// The `name` in the manifest.
        name: String,
        /// The folder's name.
        folder: String,
    },

    /// A local library was asked for, but the plugin's source is a git
    /// remote.
    #[error(
        "{}: `source.mode` is \"remote_git\" ({path:?}), so there is no local \
         shared library to load; build the plugin and install it with \
         `\"mode\": \"local_so\"`",
        file.display()
    )]
    NotLocal {
        /// Path of the manifest file.
        file: PathBuf,
        /// The git remote in `source.path`.
        path: String,
    },
}

impl ManifestError {
    /// The JSON field the error is about, where it is about one field:
    /// the `field` of [`ManifestError::Invalid`] (and of
    /// [`ManifestError::Syntax`], when located), `"name"` for
    /// [`ManifestError::NameMismatch`], `"source.mode"` for
    /// [`ManifestError::NotLocal`]; `None` otherwise.
    pub fn field(&self) -> Option<&str> {
        match self {
            ManifestError::Invalid { field, .. } => Some(field),
            ManifestError::Syntax { field, .. } => field.as_deref(),
            ManifestError::NameMismatch { .. } => Some("name"),
            ManifestError::NotLocal { .. } => Some("source.mode"),
            ManifestError::Read { .. } => None,
        }
    }

    /// The plugin the error concerns: the name of the folder holding the
    /// manifest file, where there is one and it is UTF-8.
    pub fn plugin(&self) -> Option<&str> {
        self.file().parent()?.file_name()?.to_str()
    }

    /// Path of the manifest file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ManifestError::Read { file, .. }
            | ManifestError::Syntax { file, .. }
            | ManifestError::Invalid { file, .. }
            | ManifestError::NameMismatch { file, .. }
            | ManifestError::NotLocal { file, .. } => file,
        }
    }
}

fn read_hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::NotFound => {
            "create plugin.json in the plugin folder (see the plugin.json reference in README.md)"
        }
        std::io::ErrorKind::PermissionDenied => "make the file readable by the host",
        std::io::ErrorKind::InvalidData => "save the file as UTF-8 text",
        _ => "check that the file exists and is readable UTF-8 text",
    }
}

// ---------------------------------------------------------------------------
// Raw (unvalidated) form, as deserialized
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a plugin.json object")]
struct RawManifest {
    name: String,
    version: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    maintainers: Vec<String>,
    #[serde(default)]
    home: Option<String>,
    source: RawSource,
    #[serde(default)]
    http_services: Option<RawHttpServices>,
    #[serde(default)]
    requires: Option<RawRequires>,
    #[serde(default)]
    sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a `source` object")]
struct RawSource {
    mode: SourceMode,
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an `http_services` object")]
struct RawHttpServices {
    driver: String,
    routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route object")]
struct RawRoute {
    route: String,
    method: String,
    label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a `requires` object")]
struct RawRequires {
    host: String,
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
        let raw: RawManifest =
            serde_json::from_str(text).map_err(|err| syntax_error(file, text, &err))?;
        Validator { file }.manifest(raw)
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
        let file = plugin_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Read {
            file: file.clone(),
            source,
        })?;
        let manifest = Manifest::parse(&text, &file)?;
        if manifest.name != expected {
            return Err(ManifestError::NameMismatch {
                file,
                name: manifest.name,
                folder: expected.to_owned(),
            });
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

fn syntax_error(file: &Path, text: &str, err: &serde_json::Error) -> ManifestError {
    let (line, column) = (err.line(), err.column());
    let full = err.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    let is_data = err.classify() == serde_json::error::Category::Data;
    let fix = if text.trim().is_empty() {
        "the file is empty: write a JSON object with at least \"name\", \"version\" and \
         \"source\""
    } else if !text.trim_start().starts_with('{') {
        "plugin.json must hold one JSON object, { ... }, at the top level"
    } else if !is_data {
        "fix the JSON syntax; plugin.json must hold exactly one JSON object"
    } else if message.starts_with("missing field") {
        "add the missing field"
    } else if message.starts_with("unknown field") {
        "remove the field or fix its spelling (field names are case-sensitive)"
    } else if message.starts_with("duplicate field") {
        "keep only one occurrence of the field"
    } else {
        "give the field a value of the expected type"
    };
    ManifestError::Syntax {
        file: file.to_path_buf(),
        line,
        column,
        field: if is_data {
            locate_data_error(text, &message)
        } else {
            None
        },
        message,
        hint: format!("{fix}; {REFERENCE}"),
    }
}

/// Finds the field holding a data error that serde_json reported without a
/// path, by deserializing each part of the document on its own and looking
/// for the one part that fails with the same message. Gives `None` when the
/// error is about the document itself or the field cannot be told for sure.
fn locate_data_error(text: &str, message: &str) -> Option<String> {
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    /// Whether `value` fails to deserialize as `T` with exactly `message`.
    fn fails_with<T: DeserializeOwned>(value: &Value, message: &str) -> bool {
        T::deserialize(value).is_err_and(|err| err.to_string() == message)
    }
    /// The first element of the array `items` failing with `message`, as
    /// `prefix[i]`.
    fn element<T: DeserializeOwned>(
        prefix: &str,
        items: Option<&Value>,
        message: &str,
    ) -> Option<String> {
        let items = items?.as_array()?;
        let i = items
            .iter()
            .position(|item| fails_with::<T>(item, message))?;
        Some(format!("{prefix}[{i}]"))
    }

    let document: Value = serde_json::from_str(text).ok()?;
    let mut found = document.as_object()?.iter().filter_map(|(key, value)| {
        let failed = match key.as_str() {
            "name" | "version" => fails_with::<String>(value, message),
            "description" | "home" | "sha256" => fails_with::<Option<String>>(value, message),
            "maintainers" => fails_with::<Vec<String>>(value, message),
            "source" => fails_with::<RawSource>(value, message),
            "http_services" => fails_with::<Option<RawHttpServices>>(value, message),
            "requires" => fails_with::<Option<RawRequires>>(value, message),
            _ => false,
        };
        if !failed {
            return None;
        }
        let inner = match key.as_str() {
            "maintainers" => element::<String>("maintainers", Some(value), message),
            "http_services" => {
                element::<RawRoute>("http_services.routes", value.get("routes"), message)
            }
            _ => None,
        };
        Some(inner.unwrap_or_else(|| key.clone()))
    });
    match (found.next(), found.next()) {
        (Some(field), None) => Some(field),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

struct Validator<'a> {
    file: &'a Path,
}

type Checked<T> = Result<T, ManifestError>;

impl Validator<'_> {
    fn invalid(
        &self,
        field: impl Into<String>,
        value: &str,
        reason: impl Into<String>,
        hint: impl Into<String>,
    ) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.to_path_buf(),
            field: field.into(),
            value: shown(value),
            reason: reason.into(),
            hint: hint.into(),
        }
    }

    fn manifest(&self, raw: RawManifest) -> Checked<Manifest> {
        self.identifier("name", &raw.name, "plugin name")?;
        let version = self.version(&raw.version)?;
        for (i, email) in raw.maintainers.iter().enumerate() {
            self.email(&format!("maintainers[{i}]"), email)?;
        }
        if let Some(home) = &raw.home {
            self.home(home)?;
        }
        let source = self.source(raw.source)?;
        let http_services = raw
            .http_services
            .map(|services| self.http_services(services))
            .transpose()?;
        let requires = raw
            .requires
            .map(|requires| self.requires(requires))
            .transpose()?;
        let sha256 = raw.sha256.map(|digest| self.sha256(digest)).transpose()?;
        Ok(Manifest {
            name: raw.name,
            version,
            description: raw.description,
            maintainers: raw.maintainers,
            home: raw.home,
            source,
            http_services,
            requires,
            sha256,
        })
    }

    /// 1..=64 chars of `[A-Za-z0-9_-]`, first a letter or digit.
    fn identifier(&self, field: &str, value: &str, what: &str) -> Checked<()> {
        let hint = format!(
            "use 1 to {MAX_NAME_LEN} ASCII letters, digits, '-' or '_', starting with a letter \
             or digit (e.g. \"hello-world\")"
        );
        let reason = if value.is_empty() {
            format!("the {what} is empty")
        } else if value.chars().count() > MAX_NAME_LEN {
            format!(
                "the {what} is {} characters long, more than {MAX_NAME_LEN}",
                value.chars().count()
            )
        } else if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            format!("the {what} contains {c:?}, which is not allowed")
        } else if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            format!("the {what} must start with a letter or digit")
        } else {
            return Ok(());
        };
        Err(self.invalid(field, value, reason, hint))
    }

    fn version(&self, value: &str) -> Checked<semver::Version> {
        let hint = "write a SemVer 2 version such as \"1.2.3\" or \"1.2.3-beta.1\": three \
                    numbers without leading zeros, no 'v' prefix, no spaces";
        // semver already rejects all of these; keep the checks so the rule
        // does not depend on the library's leniency.
        if value.trim() != value || value.starts_with(['v', 'V']) {
            return Err(self.invalid(
                "version",
                value,
                "not a strict SemVer 2 version (prefix or surrounding whitespace)",
                hint,
            ));
        }
        semver::Version::parse(value).map_err(|err| {
            self.invalid(
                "version",
                value,
                format!("not a strict SemVer 2 version ({err})"),
                hint,
            )
        })
    }

    fn email(&self, field: &str, value: &str) -> Checked<()> {
        let reason = if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("contains whitespace or control characters")
        } else if value.matches('@').count() != 1 {
            Some("must contain exactly one '@'")
        } else {
            let (local, domain) = value.split_once('@').unwrap_or_default();
            if local.is_empty() {
                Some("nothing before the '@'")
            } else if !domain.contains('.') || domain.split('.').any(str::is_empty) {
                Some("the domain after '@' must have dot-separated, non-empty parts")
            } else {
                None
            }
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(self.invalid(
                field,
                value,
                format!("not an e-mail address: {reason}"),
                "write an address such as \"someone@example.com\"",
            )),
        }
    }

    fn home(&self, value: &str) -> Checked<()> {
        let hint = "write an http or https URL such as \"https://example.com/my-plugin\"";
        let fail = |reason: &str| Err(self.invalid("home", value, reason, hint));
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return fail("the URL contains whitespace or control characters");
        }
        let Some((scheme, rest)) = value.split_once("://") else {
            return fail("not a URL (no \"scheme://\")");
        };
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return fail("only http and https URLs are accepted");
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let host = if host_port.starts_with('[') {
            // IPv6 literal: "[::1]:8080"
            host_port
                .split_once(']')
                .map_or("", |(h, _)| h.trim_start_matches('['))
        } else {
            host_port.split(':').next().unwrap_or_default()
        };
        if host.is_empty() {
            return fail("the URL has no host");
        }
        Ok(())
    }

    fn source(&self, raw: RawSource) -> Checked<Source> {
        if raw.path.is_empty() {
            return Err(self.invalid(
                "source.path",
                &raw.path,
                "the path is empty",
                match raw.mode {
                    SourceMode::LocalSo => {
                        "name the shared library relative to the plugin folder, e.g. \"hello\""
                    }
                    SourceMode::RemoteGit => {
                        "give the git remote, e.g. \"https://example.com/me/hello.git\""
                    }
                },
            ));
        }
        match raw.mode {
            SourceMode::LocalSo => self.local_path(&raw.path)?,
            SourceMode::RemoteGit => self.git_remote(&raw.path)?,
        }
        Ok(Source {
            mode: raw.mode,
            path: raw.path,
        })
    }

    fn local_path(&self, path: &str) -> Checked<()> {
        let hint = "give a path relative to the plugin folder that stays inside it, such as \
                    \"hello\" or \"lib/hello\"";
        let bytes = path.as_bytes();
        let reason = if path.is_empty() {
            "the path is empty"
        } else if path.chars().any(char::is_control) {
            "the path contains a NUL or control character"
        } else if path.starts_with(['/', '\\']) || Path::new(path).is_absolute() {
            "the path is absolute"
        } else if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            "the path starts with a drive prefix"
        } else if path.split(['/', '\\']).any(|part| part == "..") {
            "the path contains a '..' component and could leave the plugin folder"
        } else if path
            .rsplit(['/', '\\'])
            .next()
            .is_none_or(|last| last.is_empty() || last == ".")
        {
            "the path names a folder, not a library file"
        } else {
            return Ok(());
        };
        Err(self.invalid("source.path", path, reason, hint))
    }

    fn git_remote(&self, url: &str) -> Checked<()> {
        const SCHEMES: [&str; 5] = ["https://", "http://", "ssh://", "git://", "file://"];
        let hint = "give a git remote such as \"https://example.com/me/hello.git\" or \
                    \"git@example.com:me/hello.git\"";
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.invalid(
                "source.path",
                url,
                "the git remote contains whitespace or control characters",
                hint,
            ));
        }
        let with_scheme = SCHEMES.iter().any(|scheme| {
            url.len() > scheme.len()
                && url.is_char_boundary(scheme.len())
                && url[..scheme.len()].eq_ignore_ascii_case(scheme)
        });
        // scp-like syntax: user@host:path
        let scp_like = url
            .split_once('@')
            .and_then(|(user, rest)| rest.split_once(':').map(|(host, path)| (user, host, path)))
            .is_some_and(|(user, host, path)| {
                !user.is_empty()
                    && !user.contains(['/', ':'])
                    && !host.is_empty()
                    && !host.contains(['/', '@'])
                    && !path.is_empty()
            });
        if with_scheme || scp_like {
            Ok(())
        } else {
            Err(self.invalid(
                "source.path",
                url,
                "not a git remote (expected https://, http://, ssh://, git://, file:// or \
                 user@host:path)",
                hint,
            ))
        }
    }

    fn http_services(&self, raw: RawHttpServices) -> Checked<HttpServices> {
        self.identifier("http_services.driver", &raw.driver, "driver name")?;
        let mut routes = Vec::with_capacity(raw.routes.len());
        // (method, route with parameter names erased) -> index of first use
        let mut seen: HashMap<(HttpMethod, String), usize> = HashMap::new();
        for (i, route) in raw.routes.into_iter().enumerate() {
            let at = format!("http_services.routes[{i}]");
            let shape = self.route_pattern(&format!("{at}.route"), &route.route)?;
            let method = self.method(&format!("{at}.method"), &route.method)?;
            self.label(&format!("{at}.label"), &route.label)?;
            if let Some(first) = seen.insert((method, shape), i) {
                return Err(self.invalid(
                    at,
                    &format!("{method} {}", route.route),
                    format!(
                        "same method and route as http_services.routes[{first}] (parameter \
                         names do not tell routes apart)"
                    ),
                    "remove the duplicate or change its method or route",
                ));
            }
            routes.push(Route {
                route: route.route,
                method,
                label: route.label,
            });
        }
        Ok(HttpServices {
            driver: raw.driver,
            routes,
        })
    }

    /// Checks a route pattern; returns it with parameter names erased, for
    /// duplicate detection.
    fn route_pattern(&self, field: &str, route: &str) -> Checked<String> {
        let hint = "write a path such as \"/api/plugin/items/:id\": it starts with '/', and each \
                    segment is either literal (letters, digits, '.', '_', '~', '-') or a \
                    parameter written :name or {name}";
        let fail = |reason: String| Err(self.invalid(field, route, reason, hint));
        if route.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return fail("the route contains whitespace or control characters".into());
        }
        let Some(rest) = route.strip_prefix('/') else {
            return fail("the route does not start with '/'".into());
        };
        if rest.is_empty() {
            return Ok("/".into());
        }
        let mut shape = String::new();
        let mut params = HashSet::new();
        for segment in rest.split('/') {
            let param = segment
                .strip_prefix(':')
                .or_else(|| segment.strip_prefix('{')?.strip_suffix('}'));
            if let Some(param) = param {
                if !is_param_name(param) {
                    return fail(format!(
                        "bad parameter {segment:?}: a parameter name is a letter or '_' \
                         followed by letters, digits or '_'"
                    ));
                }
                if !params.insert(param) {
                    return fail(format!("parameter {param:?} appears twice"));
                }
                shape.push_str("/{}");
            } else if segment.is_empty() {
                return fail("the route has an empty segment (doubled or trailing '/')".into());
            } else if segment == ".." || segment == "." {
                return fail(format!("the route has a {segment:?} segment"));
            } else if let Some(c) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-')))
            {
                return fail(format!(
                    "segment {segment:?} contains {c:?}, which is not allowed"
                ));
            } else {
                shape.push('/');
                shape.push_str(segment);
            }
        }
        Ok(shape)
    }

    fn method(&self, field: &str, value: &str) -> Checked<HttpMethod> {
        if let Some(method) = HttpMethod::ALL.into_iter().find(|m| m.as_str() == value) {
            return Ok(method);
        }
        let all = HttpMethod::ALL.map(HttpMethod::as_str).join(", ");
        let err = match HttpMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(value))
        {
            Some(method) => self.invalid(
                field,
                value,
                "HTTP methods must be written in uppercase",
                format!("write it uppercase: \"{method}\""),
            ),
            None => self.invalid(
                field,
                value,
                "not a supported HTTP method",
                format!("use one of {all}"),
            ),
        };
        Err(err)
    }

    fn label(&self, field: &str, value: &str) -> Checked<()> {
        let hint = "use letters, digits, '.', '_', ':' or '-', e.g. \"plugin.get\"";
        let reason = if value.is_empty() {
            "the label is empty".to_string()
        } else if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            format!("the label contains {c:?}, which is not allowed")
        } else {
            return Ok(());
        };
        Err(self.invalid(field, value, reason, hint))
    }

    fn requires(&self, raw: RawRequires) -> Checked<Requires> {
        let host = semver::VersionReq::parse(&raw.host).map_err(|err| {
            self.invalid(
                "requires.host",
                &raw.host,
                format!("not a SemVer version requirement ({err})"),
                "write a requirement such as \">=0.1, <2\" or \"^1.2\"",
            )
        })?;
        Ok(Requires { host })
    }

    fn sha256(&self, value: String) -> Checked<String> {
        if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(value.to_ascii_lowercase());
        }
        let reason = if value.bytes().all(|b| b.is_ascii_hexdigit()) {
            format!("{} hex characters, expected exactly 64", value.len())
        } else {
            "contains characters that are not hexadecimal digits".to_string()
        };
        Err(self.invalid(
            "sha256",
            &value,
            reason,
            "write the SHA-256 digest of the shared library as 64 hex characters \
             (e.g. the first word of `sha256sum libhello.so`)",
        ))
    }
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The value as shown in an error: cut after [`MAX_SHOWN_VALUE`] characters.
fn shown(value: &str) -> String {
    match value.char_indices().nth(MAX_SHOWN_VALUE) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const FILE: &str = "plugins/hello/plugin.json";

    const VALID: &str = r#"{
    "name": "hello",
    "version": "0.1.0",
    "description": "A sample plugin",
    "maintainers": ["someone@example.com"],
    "home": "https://example.com/hello",
    "source": { "mode": "local_so", "path": "hello" },
    "http_services": {
        "driver": "axum",
        "routes": [
            { "route": "/api/plugin/sample/:id", "method": "GET", "label": "plugin.get" },
            { "route": "/api/plugin/samples", "method": "POST", "label": "plugin.post" }
        ]
    },
    "requires": { "host": ">=0.1, <2" },
    "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
}"#;

    /// Which failure a bad manifest must produce.
    #[derive(Debug, Clone, Copy)]
    enum Expect {
        /// `ManifestError::Syntax` about the document as a whole.
        Syntax,
        /// `ManifestError::Syntax` located in this field.
        SyntaxIn(&'static str),
        /// `ManifestError::Invalid` about this field.
        Invalid(&'static str),
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new(FILE))
    }

    fn valid_value() -> Value {
        serde_json::from_str(VALID).unwrap()
    }

    /// The valid manifest with the value at JSON pointer `pointer` set
    /// (replaced, or added to its parent object).
    fn with(pointer: &str, value: Value) -> String {
        let mut root = valid_value();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match root.pointer_mut(parent).unwrap() {
            Value::Object(map) => {
                map.insert(key.to_string(), value);
            }
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
            other => panic!("cannot set {pointer} in {other}"),
        }
        root.to_string()
    }

    /// The valid manifest without the value at `pointer` (an object member).
    fn without(pointer: &str) -> String {
        let mut root = valid_value();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        root.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key)
            .unwrap();
        root.to_string()
    }

    fn route(route: &str, method: &str, label: &str) -> Value {
        json!({ "route": route, "method": method, "label": label })
    }

    fn bad_manifests() -> Vec<(&'static str, String, Expect)> {
        use Expect::*;
        let s = |text: &str| text.to_string();
        vec![
            // Shape and syntax.
            ("empty string", s(""), Syntax),
            ("whitespace only", s("  \n"), Syntax),
            ("not json", s("not json"), Syntax),
            ("top-level array", s("[]"), Syntax),
            ("top-level string", s("\"hello\""), Syntax),
            ("empty object (missing name)", s("{}"), Syntax),
            ("trailing garbage", format!("{VALID} x"), Syntax),
            ("two objects", format!("{VALID}{VALID}"), Syntax),
            ("trailing comma", s(r#"{"name": "hello",}"#), Syntax),
            ("missing version", without("/version"), Syntax),
            ("missing source", without("/source"), Syntax),
            (
                "missing source.path",
                without("/source/path"),
                SyntaxIn("source"),
            ),
            (
                "missing source.mode",
                without("/source/mode"),
                SyntaxIn("source"),
            ),
            ("unknown top-level field", with("/foo", json!(1)), Syntax),
            (
                "unknown field in source",
                with("/source/extra", json!("x")),
                SyntaxIn("source"),
            ),
            (
                "unknown field in route",
                with("/http_services/routes/0/x", json!(1)),
                SyntaxIn("http_services.routes[0]"),
            ),
            (
                "unknown field in requires",
                with("/requires/plugin", json!("1")),
                SyntaxIn("requires"),
            ),
            (
                "maintainer is a number",
                with("/maintainers", json!(["a@b.c", 7])),
                SyntaxIn("maintainers[1]"),
            ),
            (
                "route method is a number",
                with("/http_services/routes/1/method", json!(1)),
                SyntaxIn("http_services.routes[1]"),
            ),
            (
                "route is not an object",
                with("/http_services/routes/0", json!("/x")),
                SyntaxIn("http_services.routes[0]"),
            ),
            (
                "sha256 is a number",
                with("/sha256", json!(1)),
                SyntaxIn("sha256"),
            ),
            ("duplicate key", s(r#"{"name":"a","name":"b"}"#), Syntax),
            (
                "version is a number",
                with("/version", json!(1)),
                SyntaxIn("version"),
            ),
            (
                "maintainers is a string",
                with("/maintainers", json!("x")),
                SyntaxIn("maintainers"),
            ),
            ("name is null", with("/name", Value::Null), SyntaxIn("name")),
            (
                "unknown source.mode",
                with("/source/mode", json!("dll")),
                SyntaxIn("source"),
            ),
            (
                "http_services without routes",
                with("/http_services", json!({"driver": "axum"})),
                SyntaxIn("http_services"),
            ),
            (
                "http_services without driver",
                with("/http_services", json!({"routes": []})),
                SyntaxIn("http_services"),
            ),
            (
                "requires without host",
                with("/requires", json!({})),
                SyntaxIn("requires"),
            ),
            // version
            (
                "version 1",
                with("/version", json!("1")),
                Invalid("version"),
            ),
            (
                "version v1.0.0",
                with("/version", json!("v1.0.0")),
                Invalid("version"),
            ),
            (
                "version 01.0.0",
                with("/version", json!("01.0.0")),
                Invalid("version"),
            ),
            (
                "version with trailing space",
                with("/version", json!("1.0.0 ")),
                Invalid("version"),
            ),
            (
                "version 1.0",
                with("/version", json!("1.0")),
                Invalid("version"),
            ),
            // name
            ("empty name", with("/name", json!("")), Invalid("name")),
            ("name ..", with("/name", json!("..")), Invalid("name")),
            ("name a/b", with("/name", json!("a/b")), Invalid("name")),
            ("name a b", with("/name", json!("a b")), Invalid("name")),
            ("name .x", with("/name", json!(".x")), Invalid("name")),
            ("name -x", with("/name", json!("-x")), Invalid("name")),
            (
                "name 65 chars",
                with("/name", json!("a".repeat(65))),
                Invalid("name"),
            ),
            (
                "name non-ascii",
                with("/name", json!("héllo")),
                Invalid("name"),
            ),
            // maintainers
            (
                "maintainer without @",
                with("/maintainers/0", json!("someone")),
                Invalid("maintainers[0]"),
            ),
            (
                "maintainer two @",
                with("/maintainers", json!(["a@b.c", "a@b@c.d"])),
                Invalid("maintainers[1]"),
            ),
            (
                "maintainer empty local",
                with("/maintainers/0", json!("@example.com")),
                Invalid("maintainers[0]"),
            ),
            (
                "maintainer domain no dot",
                with("/maintainers/0", json!("a@localhost")),
                Invalid("maintainers[0]"),
            ),
            (
                "maintainer domain empty label",
                with("/maintainers/0", json!("a@example..com")),
                Invalid("maintainers[0]"),
            ),
            (
                "maintainer whitespace",
                with("/maintainers/0", json!("a b@example.com")),
                Invalid("maintainers[0]"),
            ),
            (
                "maintainer control char",
                with("/maintainers/0", json!("a\u{7}@example.com")),
                Invalid("maintainers[0]"),
            ),
            // home
            (
                "home not a URL",
                with("/home", json!("example.com")),
                Invalid("home"),
            ),
            (
                "home ftp",
                with("/home", json!("ftp://example.com/x")),
                Invalid("home"),
            ),
            (
                "home without host",
                with("/home", json!("https:///x")),
                Invalid("home"),
            ),
            (
                "home with space",
                with("/home", json!("https://example.com/a b")),
                Invalid("home"),
            ),
            // source.path, local_so
            (
                "empty source.path",
                with("/source/path", json!("")),
                Invalid("source.path"),
            ),
            (
                "absolute source.path",
                with("/source/path", json!("/usr/lib/x.so")),
                Invalid("source.path"),
            ),
            (
                "backslash-rooted source.path",
                with("/source/path", json!("\\x.dll")),
                Invalid("source.path"),
            ),
            (
                "drive prefix",
                with("/source/path", json!("C:\\x.dll")),
                Invalid("source.path"),
            ),
            (
                "drive-relative",
                with("/source/path", json!("c:x.dll")),
                Invalid("source.path"),
            ),
            (
                "parent path",
                with("/source/path", json!("../x")),
                Invalid("source.path"),
            ),
            (
                "escaping path",
                with("/source/path", json!("sub/../../x")),
                Invalid("source.path"),
            ),
            (
                "escaping windows path",
                with("/source/path", json!("sub\\..\\x")),
                Invalid("source.path"),
            ),
            (
                "NUL in path",
                with("/source/path", json!("he\u{0}llo")),
                Invalid("source.path"),
            ),
            (
                "folder path",
                with("/source/path", json!("sub/")),
                Invalid("source.path"),
            ),
            // source.path, remote_git
            (
                "remote_git not a remote",
                with("/source", json!({"mode": "remote_git", "path": "hello"})),
                Invalid("source.path"),
            ),
            (
                "remote_git with space",
                with(
                    "/source",
                    json!({"mode": "remote_git", "path": "https://e.com/a b.git"}),
                ),
                Invalid("source.path"),
            ),
            (
                "remote_git empty",
                with("/source", json!({"mode": "remote_git", "path": ""})),
                Invalid("source.path"),
            ),
            // http_services
            (
                "empty driver",
                with("/http_services/driver", json!("")),
                Invalid("http_services.driver"),
            ),
            (
                "driver with space",
                with("/http_services/driver", json!("ax um")),
                Invalid("http_services.driver"),
            ),
            (
                "route without leading slash",
                with("/http_services/routes/1", route("api/x", "GET", "x")),
                Invalid("http_services.routes[1].route"),
            ),
            (
                "route with space",
                with("/http_services/routes/0", route("/api/a b", "GET", "x")),
                Invalid("http_services.routes[0].route"),
            ),
            (
                "route with ..",
                with("/http_services/routes/0", route("/api/../x", "GET", "x")),
                Invalid("http_services.routes[0].route"),
            ),
            (
                "route with bad char",
                with("/http_services/routes/0", route("/api/x?y", "GET", "x")),
                Invalid("http_services.routes[0].route"),
            ),
            (
                "route with empty param",
                with("/http_services/routes/0", route("/api/:", "GET", "x")),
                Invalid("http_services.routes[0].route"),
            ),
            (
                "route with unclosed brace",
                with("/http_services/routes/0", route("/api/{id", "GET", "x")),
                Invalid("http_services.routes[0].route"),
            ),
            (
                "route with repeated param",
                with(
                    "/http_services/routes/0",
                    route("/a/:id/b/{id}", "GET", "x"),
                ),
                Invalid("http_services.routes[0].route"),
            ),
            (
                "route with double slash",
                with("/http_services/routes/0", route("/api//x", "GET", "x")),
                Invalid("http_services.routes[0].route"),
            ),
            (
                "lowercase method",
                with("/http_services/routes/1/method", json!("post")),
                Invalid("http_services.routes[1].method"),
            ),
            (
                "unknown method",
                with("/http_services/routes/0/method", json!("FETCH")),
                Invalid("http_services.routes[0].method"),
            ),
            (
                "empty label",
                with("/http_services/routes/0/label", json!("")),
                Invalid("http_services.routes[0].label"),
            ),
            (
                "label with space",
                with("/http_services/routes/0/label", json!("plugin get")),
                Invalid("http_services.routes[0].label"),
            ),
            (
                "duplicate routes",
                with(
                    "/http_services/routes",
                    json!([
                        route("/a", "GET", "x"),
                        route("/b", "GET", "y"),
                        route("/a", "GET", "z")
                    ]),
                ),
                Invalid("http_services.routes[2]"),
            ),
            (
                "duplicate routes differing in param name",
                with(
                    "/http_services/routes",
                    json!([route("/a/:id", "PUT", "x"), route("/a/{key}", "PUT", "y")]),
                ),
                Invalid("http_services.routes[1]"),
            ),
            // requires
            (
                "bad requires.host",
                with("/requires/host", json!("not a req")),
                Invalid("requires.host"),
            ),
            (
                "empty requires.host",
                with("/requires/host", json!("")),
                Invalid("requires.host"),
            ),
            // sha256
            (
                "short sha256",
                with("/sha256", json!("abc123")),
                Invalid("sha256"),
            ),
            (
                "non-hex sha256",
                with("/sha256", json!("g".repeat(64))),
                Invalid("sha256"),
            ),
            (
                "65-char sha256",
                with("/sha256", json!("a".repeat(65))),
                Invalid("sha256"),
            ),
        ]
    }

    #[test]
    fn bad_manifests_are_rejected_with_the_expected_error() {
        let mut failures = Vec::new();
        for (label, text, expect) in bad_manifests() {
            let err = match parse(&text) {
                Ok(_) => {
                    failures.push(format!("{label}: accepted\n    {text}"));
                    continue;
                }
                Err(err) => err,
            };
            let shown = err.to_string();
            if !shown.contains(FILE) {
                failures.push(format!("{label}: message lacks the file path: {shown}"));
            }
            if err.file() != Path::new(FILE) || err.plugin() != Some("hello") {
                failures.push(format!("{label}: wrong file or plugin in {err:?}"));
            }
            let ok = match (expect, &err) {
                (Expect::Syntax, ManifestError::Syntax { .. }) => err.field().is_none(),
                (Expect::SyntaxIn(field), ManifestError::Syntax { .. }) => {
                    err.field() == Some(field) && shown.contains(&format!("(in `{field}`)"))
                }
                (Expect::Invalid(field), ManifestError::Invalid { .. }) => {
                    err.field() == Some(field) && shown.contains(&format!("`{field}`"))
                }
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{label}: expected {expect:?}, got {err:?}\n    {shown}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn syntax_errors_explain_themselves() {
        let cases = [
            ("", "empty"),
            ("[]", "expected a plugin.json object"),
            ("{}", "missing field `name`"),
            (&*with("/foo", json!(1)), "unknown field `foo`"),
            (&*with("/source/x", json!(1)), "unknown field `x`"),
            (
                &*with("/version", json!(1)),
                "expected a string (in `version`)",
            ),
            (
                &*without("/source/path"),
                "missing field `path` (in `source`)",
            ),
            (&*with("/source/Path", json!("x")), "fix its spelling"),
            (&*with("/maintainers", json!("x")), "expected a sequence"),
            (&*format!("{VALID} x"), "trailing characters"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(needle), "{text:?}: {shown}");
            assert!(shown.contains("README.md"), "{text:?}: {shown}");
            assert!(!shown.contains("Raw"), "{text:?}: leaks internals: {shown}");
            let ManifestError::Syntax { line, message, .. } = &err else {
                panic!("{text:?}: {err:?}");
            };
            assert!(*line >= 1, "{text:?}: {err:?}");
            assert!(!message.contains(" at line "), "{message}");
        }
    }

    #[test]
    fn semver_itself_rejects_loose_versions() {
        for version in ["1", "v1.0.0", "01.0.0", "1.0.0 ", " 1.0.0", "1.0"] {
            assert!(semver::Version::parse(version).is_err(), "{version:?}");
        }
    }

    #[test]
    fn invalid_messages_name_the_value_and_the_fix() {
        let err = parse(&with("/http_services/routes/1/method", json!("post"))).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("\"post\""), "{shown}");
        assert!(shown.contains("uppercase: \"POST\""), "{shown}");

        let err = parse(&with("/http_services/routes/0/method", json!("FETCH"))).unwrap_err();
        assert!(err
            .to_string()
            .contains("GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"));

        let err = parse(&with("/name", json!("x".repeat(500)))).unwrap_err();
        let ManifestError::Invalid { value, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(value.len() < 200 && value.ends_with("..."), "{value}");
    }

    #[test]
    fn full_manifest_parses_and_round_trips() {
        let m = parse(VALID).unwrap();
        assert_eq!(m.name, "hello");
        assert_eq!(m.version, semver::Version::new(0, 1, 0));
        assert_eq!(m.description.as_deref(), Some("A sample plugin"));
        assert_eq!(m.maintainers, ["someone@example.com"]);
        assert_eq!(m.home.as_deref(), Some("https://example.com/hello"));
        assert_eq!(
            m.source,
            Source {
                mode: SourceMode::LocalSo,
                path: "hello".into()
            }
        );
        let services = m.http_services.as_ref().unwrap();
        assert_eq!(services.driver, "axum");
        assert_eq!(
            services.routes,
            [
                Route {
                    route: "/api/plugin/sample/:id".into(),
                    method: HttpMethod::Get,
                    label: "plugin.get".into()
                },
                Route {
                    route: "/api/plugin/samples".into(),
                    method: HttpMethod::Post,
                    label: "plugin.post".into()
                },
            ]
        );
        let host = &m.requires.as_ref().unwrap().host;
        assert_eq!(host, &semver::VersionReq::parse(">=0.1, <2").unwrap());
        assert!(host.matches(&semver::Version::new(1, 5, 0)));
        assert!(!host.matches(&semver::Version::new(2, 0, 0)));
        assert_eq!(m.sha256.as_deref(), Some(&"0123456789abcdef".repeat(4)[..]));

        // Serializing gives back the same JSON document...
        let value = serde_json::to_value(&m).unwrap();
        assert_eq!(value, valid_value());
        // ...which parses to the same manifest.
        assert_eq!(parse(&value.to_string()).unwrap(), m);
    }

    #[test]
    fn minimal_manifest_uses_defaults() {
        let text =
            r#"{"name":"m","version":"1.0.0-rc.1+b5","source":{"mode":"local_so","path":"m"}}"#;
        let m = parse(text).unwrap();
        assert_eq!(m.version.pre.as_str(), "rc.1");
        assert!(m.maintainers.is_empty());
        assert_eq!(
            (
                &m.description,
                &m.home,
                &m.http_services,
                &m.requires,
                &m.sha256
            ),
            (&None, &None, &None, &None, &None)
        );
        let back = serde_json::to_string(&m).unwrap();
        assert_eq!(
            back,
            r#"{"name":"m","version":"1.0.0-rc.1+b5","maintainers":[],"source":{"mode":"local_so","path":"m"}}"#
        );
        // With a byte-order mark, and with explicit nulls for optional fields.
        assert_eq!(parse(&format!("\u{feff}{text}")).unwrap(), m);
        let nulls = r#"{"name":"m","version":"1.0.0-rc.1+b5","description":null,"home":null,
            "http_services":null,"requires":null,"sha256":null,
            "source":{"mode":"local_so","path":"m"}}"#;
        assert_eq!(parse(nulls).unwrap(), m);
    }

    #[test]
    fn accepted_edge_values() {
        let ok = |text: String| {
            parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
        };
        ok(with("/name", json!("a".repeat(64))));
        ok(with("/name", json!("0_a-B")));
        ok(with("/maintainers", json!([])));
        ok(with(
            "/maintainers",
            json!(["a.b+c@mail.example.org", "x@y.z"]),
        ));
        ok(with("/home", json!("http://localhost:8080")));
        ok(with("/home", json!("HTTPS://user@[::1]:8443/p?q#f")));
        ok(with("/source/path", json!("sub/hello")));
        ok(with("/source/path", json!("./lib/libhello.so")));
        ok(with("/source/path", json!("lib\\hello.dll")));
        ok(with("/http_services/routes", json!([])));
        ok(with(
            "/http_services/routes",
            json!([
                route("/", "GET", "root"),
                route("/a/{id}/b/:sub", "DELETE", "a:b_c-d.e"),
                route("/v1.0/~x", "HEAD", "h"),
                route("/a/:id", "GET", "g"),
                route("/a/:id", "PATCH", "p"),
                route("/a/:id/x", "OPTIONS", "o"),
                route("/a/b", "PUT", "p2"),
            ]),
        ));
        ok(with("/requires/host", json!("*")));
        for remote in [
            "https://example.com/me/hello.git",
            "http://example.com/hello",
            "ssh://git@example.com/me/hello.git",
            "git://example.com/hello.git",
            "file:///srv/git/hello.git",
            "git@example.com:me/hello.git",
        ] {
            ok(with(
                "/source",
                json!({"mode": "remote_git", "path": remote}),
            ));
        }
        let m = parse(&with("/sha256", json!("ABCDEF".repeat(10) + "0A1b"))).unwrap();
        assert_eq!(m.sha256.unwrap(), "abcdef".repeat(10) + "0a1b");
    }

    #[test]
    fn http_method_spelling() {
        for method in HttpMethod::ALL {
            let json = serde_json::to_value(method).unwrap();
            assert_eq!(json, Value::String(method.as_str().into()));
            assert_eq!(method.to_string(), method.as_str());
        }
        assert_eq!(SourceMode::RemoteGit.to_string(), "remote_git");
        assert_eq!(
            serde_json::to_value(SourceMode::LocalSo).unwrap(),
            json!("local_so")
        );
    }

    /// A unique folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "plugin-host-manifest-{tag}-{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        /// Creates `<tmp>/<folder>/plugin.json` holding `text`; returns the folder.
        fn plugin(&self, folder: &str, text: &str) -> PathBuf {
            let dir = self.0.join(folder);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(MANIFEST_FILE), text).unwrap();
            dir
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_reads_the_folder_and_checks_the_name() {
        let tmp = TempDir::new("load");

        let dir = tmp.plugin("hello", VALID);
        let m = Manifest::load(&dir).unwrap();
        assert_eq!(m, parse(VALID).unwrap());
        // A trailing "/." still names the folder.
        assert_eq!(Manifest::load(&dir.join(".")).unwrap().name, "hello");

        let dir = tmp.plugin("other", VALID);
        let err = Manifest::load(&dir).unwrap_err();
        let file = dir.join(MANIFEST_FILE);
        match &err {
            ManifestError::NameMismatch {
                file: f,
                name,
                folder,
            } => {
                assert_eq!(
                    (f, name.as_str(), folder.as_str()),
                    (&file, "hello", "other")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.field(), Some("name"));
        assert_eq!(err.plugin(), Some("other"));
        assert_eq!(err.file(), file);
        let shown = err.to_string();
        assert!(shown.contains(&file.display().to_string()), "{shown}");
        assert!(shown.contains("rename the folder"), "{shown}");

        let dir = tmp.0.join("missing");
        std::fs::create_dir_all(&dir).unwrap();
        let err = Manifest::load(&dir).unwrap_err();
        let ManifestError::Read { file: f, source } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(f, &dir.join(MANIFEST_FILE));
        assert_eq!(err.field(), None);
        assert_eq!(err.plugin(), Some("missing"));
        let shown = err.to_string();
        assert!(shown.contains(&f.display().to_string()), "{shown}");
        assert!(shown.contains("create plugin.json"), "{shown}");

        // Errors from parsing carry the real path too.
        let dir = tmp.plugin("broken", "{");
        let err = Manifest::load(&dir).unwrap_err();
        assert!(matches!(err, ManifestError::Syntax { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains(&dir.join(MANIFEST_FILE).display().to_string()));

        let dir = tmp.plugin(
            "badver",
            &with("/name", json!("badver")).replace("0.1.0", "1"),
        );
        let err = Manifest::load(&dir).unwrap_err();
        assert_eq!(err.field(), Some("version"), "{err}");
    }

    fn with_source(path: &str) -> Manifest {
        parse(&with("/source/path", json!(path))).unwrap()
    }

    #[test]
    fn library_candidates_per_platform() {
        let base = Path::new("plugins").join("hello");
        let names =
            |path: &str| -> Vec<PathBuf> { with_source(path).library_candidates(&base).unwrap() };
        let sub = base.join("sub");

        #[cfg(target_os = "windows")]
        {
            assert_eq!(names("hello"), [base.join("hello.dll")]);
            assert_eq!(names("sub/hello"), [sub.join("hello.dll")]);
        }
        #[cfg(any(target_os = "macos", target_os = "ios"))]
        {
            assert_eq!(
                names("hello"),
                [base.join("libhello.dylib"), base.join("hello.dylib")]
            );
            assert_eq!(
                names("sub/hello"),
                [sub.join("libhello.dylib"), sub.join("hello.dylib")]
            );
        }
        #[cfg(not(any(target_os = "windows", target_os = "macos", target_os = "ios")))]
        {
            assert_eq!(
                names("hello"),
                [base.join("libhello.so"), base.join("hello.so")]
            );
            assert_eq!(
                names("sub/hello"),
                [sub.join("libhello.so"), sub.join("hello.so")]
            );
            assert_eq!(
                names("./sub\\hello"),
                [sub.join("libhello.so"), sub.join("hello.so")]
            );
        }

        // An explicit extension is taken as is, on every platform.
        assert_eq!(names("libhello.so"), [base.join("libhello.so")]);
        assert_eq!(names("sub/hello.dylib"), [sub.join("hello.dylib")]);
        assert_eq!(names("sub/Hello.DLL"), [sub.join("Hello.DLL")]);

        let remote = parse(&with(
            "/source",
            json!({"mode": "remote_git", "path": "https://example.com/hello.git"}),
        ))
        .unwrap();
        let mut escaping = with_source("hello");
        for path in ["../evil", "/usr/lib/libc.so", ""] {
            escaping.source.path = path.into();
            let err = escaping.library_candidates(&base).unwrap_err();
            assert_eq!(err.field(), Some("source.path"), "{path:?}: {err}");
        }

        let err = remote.library_candidates(&base).unwrap_err();
        assert!(matches!(err, ManifestError::NotLocal { .. }), "{err:?}");
        assert_eq!(err.field(), Some("source.mode"));
        let shown = err.to_string();
        assert!(
            shown.contains(&base.join(MANIFEST_FILE).display().to_string()),
            "{shown}"
        );
    }
}
