//! Finding plugin folders under a base directory.

use std::path::{Path, PathBuf};

use crate::Error;

/// A candidate plugin folder found under the base directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The folder's name, which must equal the plugin's `name`.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
}

/// Lists every folder directly under `base_dir`, sorted by name.
///
/// Hidden entries (names starting with `.`), files, and names that are not UTF-8 are
/// skipped: a plugin folder's name must equal the plugin's name, which is ASCII. Symbolic
/// links to folders count as folders; the library checks later resolve links and refuse a
/// library outside its folder.
pub fn discover(base_dir: &Path) -> Result<Vec<Discovered>, Error> {
    let entries = std::fs::read_dir(base_dir).map_err(|source| Error::BaseDir {
        path: base_dir.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::BaseDir {
            path: base_dir.to_path_buf(),
            source,
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!(path = %entry.path().display(), "skipping a folder whose name is not UTF-8");
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        found.push(Discovered { name, dir });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_folders_only_skipping_hidden_ones() {
        let base = tempfile::tempdir().unwrap();
        for d in ["zeta", "alpha", ".hidden", ".cache"] {
            std::fs::create_dir(base.path().join(d)).unwrap();
        }
        std::fs::write(base.path().join("file.json"), "{}").unwrap();
        let names: Vec<_> = discover(base.path())
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["alpha", "zeta"]);
    }

    #[test]
    fn missing_base_dir_is_a_typed_error() {
        let base = tempfile::tempdir().unwrap();
        let err = discover(&base.path().join("nope")).unwrap_err();
        assert!(matches!(err, Error::BaseDir { .. }), "{err}");
        assert!(err.to_string().contains("nope"));
    }
}
