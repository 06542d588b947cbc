//! The cargo side of a build: `cargo build --release` with JSON messages on standard output,
//! and the cdylib `plugin.json` names picked from them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use plugin_host::Manifest;
use serde::Deserialize;

use super::{command, BuildError, BuildOptions};

/// The library cargo built, and where it goes in the plugin folder. The target directory
/// stays locked while it lives, so that no other build replaces the file before it is
/// copied.
pub(super) struct Library {
    /// The file cargo wrote.
    pub(super) built: PathBuf,
    /// Its path relative to the plugin folder, as `source.path` resolves.
    pub(super) relative: PathBuf,
    _lock: Option<File>,
}

/// The lock file [`build`] holds in the target directory.
const TARGET_LOCK: &str = ".plugin-package-build.lock";

/// One line of `--message-format=json`; only what is needed.
#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    kind: Vec<String>,
}

/// Builds the crate in `dir` and returns the cdylib whose file name `manifest` gives.
///
/// `--message-format=json-render-diagnostics` puts cargo's JSON messages on standard output
/// and the compiler's diagnostics, rendered as usual, on standard error.
pub(super) fn build(
    dir: &Path,
    locked: bool,
    manifest: &Manifest,
    location: &str,
    options: &BuildOptions,
) -> Result<Library, BuildError> {
    let target_dir = options.target_dir()?;
    std::fs::create_dir_all(&target_dir)
        .map_err(BuildError::io("create the target directory", &target_dir))?;
    let lock = super::lock(&target_dir.join(TARGET_LOCK))?;
    let mut cmd = Command::new(&options.cargo);
    cmd.current_dir(dir).args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
    ]);
    if locked {
        cmd.arg("--locked");
    }
    if options.offline {
        cmd.arg("--offline");
    }
    cmd.arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
    tracing::info!(dir = %dir.display(), "building with cargo");
    let mut cdylibs = Vec::new();
    let finished = command::run(&mut cmd, options.show_output, |line| {
        cdylibs.extend(cdylib_files(line));
    })?;
    if !finished.status.success() {
        return Err(BuildError::Cargo {
            dir: dir.to_path_buf(),
            command: finished.command,
            status: finished.status,
            stderr: finished.stderr,
        });
    }
    let mut library = pick(manifest, &cdylibs).ok_or_else(|| BuildError::NoLibrary {
        location: location.to_owned(),
        expected: expected_names(manifest, dir),
        found: cdylibs.iter().filter_map(|f| file_name(f)).collect(),
    })?;
    library._lock = Some(lock);
    Ok(library)
}

/// The files of a `compiler-artifact` message for a cdylib target; none for anything else.
fn cdylib_files(line: &[u8]) -> Vec<PathBuf> {
    let Ok(message) = serde_json::from_slice::<Message>(line) else {
        return Vec::new();
    };
    let is_cdylib = message
        .target
        .is_some_and(|t| t.kind.iter().any(|k| k == "cdylib"));
    if message.reason == "compiler-artifact" && is_cdylib {
        message.filenames
    } else {
        Vec::new()
    }
}

/// The built file whose name is one of `manifest`'s library candidates, the first candidate
/// winning, with the candidate's path relative to the plugin folder.
fn pick(manifest: &Manifest, built: &[PathBuf]) -> Option<Library> {
    let candidates = manifest.library_candidates(Path::new("")).ok()?;
    candidates.into_iter().find_map(|relative| {
        let name = relative.file_name()?;
        let file = built.iter().rev().find(|f| f.file_name() == Some(name))?;
        Some(Library {
            built: file.clone(),
            relative,
            _lock: None,
        })
    })
}

fn expected_names(manifest: &Manifest, dir: &Path) -> Vec<String> {
    manifest
        .library_candidates(dir)
        .map(|c| c.iter().filter_map(|f| file_name(f)).collect())
        .unwrap_or_default()
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cdylib_artifacts_are_taken() {
        let lib = br#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["cdylib"],"crate_types":["cdylib"],"name":"greeter"},"filenames":["/t/release/libgreeter.so"],"fresh":false}"#;
        assert_eq!(
            cdylib_files(lib),
            [PathBuf::from("/t/release/libgreeter.so")]
        );
        let rlib = br#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/release/libserde.rlib"]}"#;
        assert!(cdylib_files(rlib).is_empty());
        let finished = br#"{"reason":"build-finished","success":true}"#;
        assert!(cdylib_files(finished).is_empty());
        assert!(cdylib_files(b"not json").is_empty());
    }

    #[test]
    fn the_library_plugin_json_names_is_picked() {
        let text = r#"{"name":"greeter","version":"0.1.0",
            "source":{"mode":"local_so","path":"lib/greeter"}}"#;
        let manifest = Manifest::parse(text, Path::new("plugin.json")).unwrap();
        let candidates = manifest.library_candidates(Path::new("")).unwrap();
        let first = candidates[0].file_name().unwrap();
        let built = vec![
            PathBuf::from("/t/release/libother.so"),
            PathBuf::from("/t/release").join(first),
        ];
        let library = pick(&manifest, &built).unwrap();
        assert_eq!(library.built, built[1]);
        assert_eq!(library.relative, candidates[0]);
        assert!(library.relative.starts_with("lib"));
        assert!(pick(&manifest, &built[..1]).is_none());
    }
}
