//! The raw, unvalidated shape of `plugin.json` as serde reads it, and its syntax errors.

use std::path::Path;

use serde::Deserialize;

use super::{ManifestError, SourceMode};

/// Where to read about the format, quoted in hints.
const REFERENCE: &str = "see the plugin.json reference in README.md";

/// `plugin.json` as read: the right shape, no rule checked yet.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a plugin.json object")]
pub(super) struct RawManifest {
    pub(super) name: String,
    // A string, not `semver::Version`, as is `RawRequires::host`: semver's own `Deserialize`
    // fails with its parser's message alone ("unexpected character 'v' while parsing major
    // version number"), as a syntax error without the value or the fix. Reading text here
    // and parsing it in the validator keeps the `Invalid` error naming field, value, rule
    // and fix. The model (`Manifest::version`, `Requires::host`) serializes through semver.
    pub(super) version: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) maintainers: Vec<String>,
    #[serde(default)]
    pub(super) home: Option<String>,
    pub(super) source: RawSource,
    #[serde(default)]
    pub(super) http_services: Option<RawHttpServices>,
    #[serde(default)]
    pub(super) requires: Option<RawRequires>,
    #[serde(default)]
    pub(super) sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a `source` object")]
pub(super) struct RawSource {
    pub(super) mode: SourceMode,
    pub(super) path: String,
    #[serde(default)]
    pub(super) rev: Option<String>,
    #[serde(default)]
    pub(super) tag: Option<String>,
    #[serde(default)]
    pub(super) branch: Option<String>,
    #[serde(default)]
    pub(super) repository: Option<String>,
    #[serde(default)]
    pub(super) commit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an `http_services` object")]
pub(super) struct RawHttpServices {
    pub(super) driver: String,
    pub(super) routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route object")]
pub(super) struct RawRoute {
    pub(super) route: String,
    pub(super) method: String,
    pub(super) label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a `requires` object")]
pub(super) struct RawRequires {
    /// Parsed by the validator; see `RawManifest::version`.
    pub(super) host: String,
}

/// Reads manifest text (without byte-order mark) into its raw form. A data error names the
/// full JSON path of the field it is in, at any depth (`http_services.routes[1].method`).
pub(super) fn parse(text: &str, file: &Path) -> Result<RawManifest, ManifestError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = serde_path_to_error::deserialize(&mut de)
        .map_err(|err| syntax_error(file, text, err.inner(), field_path(err.path())))?;
    // Trailing characters come after the document, in no field.
    de.end()
        .map_err(|err| syntax_error(file, text, &err, None))?;
    Ok(raw)
}

/// The path as written in messages (`http_services.routes[1].method`), cut before the
/// first segment serde could not name (a key being read when the JSON broke); `None` for
/// the document itself.
fn field_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut field = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => field += &format!("[{index}]"),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    (!field.is_empty()).then_some(field)
}

fn syntax_error(
    file: &Path,
    text: &str,
    err: &serde_json::Error,
    field: Option<String>,
) -> ManifestError {
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
        field,
        message,
        hint: format!("{fix}; {REFERENCE}"),
    }
}
