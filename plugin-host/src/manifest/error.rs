//! `ManifestError`: what failed in a manifest, where, and how to fix it.

use std::path::{Path, PathBuf};

/// Why a plugin manifest could not be read, parsed or accepted.
///
/// Every variant carries the manifest's path, and every message says what
/// failed, where, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest file could not be read (missing, unreadable, not UTF-8).
    #[error(
        "{}: cannot read the plugin manifest; {}",
        file.display(),
        read_hint(source)
    )]
    Read {
        /// Path of the manifest file.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// `plugin.json` is not a regular file (a FIFO, a device, a directory...). The host
    /// refuses it without reading it, so it can neither block nor flood the host.
    #[error(
        "{}: plugin.json is {kind}, not a regular file; replace it with a regular file",
        file.display()
    )]
    NotAFile {
        /// Path of the manifest file.
        file: PathBuf,
        /// What it is instead, e.g. "a FIFO (named pipe)".
        kind: &'static str,
    },

    /// `plugin.json` is larger than [`MAX_MANIFEST_BYTES`](crate::manifest::MAX_MANIFEST_BYTES).
    #[error(
        "{}: plugin.json is larger than {cap} bytes, the most the host reads; a manifest \
         is a few hundred bytes: check that this is the right file",
        file.display()
    )]
    TooLarge {
        /// Path of the manifest file.
        file: PathBuf,
        /// The cap, in bytes.
        cap: u64,
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
        /// Full JSON path of the value being read when the problem was found,
        /// at any depth: the field of the wrong type (`http_services.routes[1].method`),
        /// the unknown field itself (`source.extra`), or the object missing a field
        /// or repeating one (`source`). `None` for problems with the document
        /// itself (empty, not an object, trailing characters, a missing or
        /// duplicate top-level field, broken syntax between top-level fields).
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
            ManifestError::Read { .. }
            | ManifestError::NotAFile { .. }
            | ManifestError::TooLarge { .. } => None,
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
            | ManifestError::NotAFile { file, .. }
            | ManifestError::TooLarge { file, .. }
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
