//! The raw, unvalidated shape of `plugin.json` as serde reads it, and its syntax errors.

use std::path::Path;

use serde::Deserialize;

use super::{ManifestError, SourceMode};

/// Where to read about the format, quoted in hints.
const REFERENCE: &str = "see the plugin.json reference in README.md";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a plugin.json object")]
pub(super) struct RawManifest {
    pub(super) name: String,
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
    pub(super) host: String,
}

/// Reads manifest text (without byte-order mark) into its raw form.
pub(super) fn parse(text: &str, file: &Path) -> Result<RawManifest, ManifestError> {
    serde_json::from_str(text).map_err(|err| syntax_error(file, text, &err))
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
