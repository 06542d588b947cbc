//! Tidy checks on the source tree, run as unit tests by `cargo test --workspace`.
//!
//! - every `.rs` file opens with a `//!` summary of what it holds;
//! - no production file of a library crate is longer than [`MAX_LINES`] lines (tests, which
//!   sit in `tests.rs` files or under `tests/`, are exempt).

use std::path::{Path, PathBuf};

/// The longest a production source file may be.
const MAX_LINES: usize = 650;

/// Every `.rs` file under `dir`, skipping build output and hidden folders.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = plugin_test_support::workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} .rs files", files.len());
    files
}

/// What is wrong with one file's header, if anything.
fn header_problem(text: &str) -> Option<&'static str> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) if line.starts_with("//!") && line.len() > "//! ".len() => None,
        Some(_) => Some("does not open with a `//!` line saying what the file holds"),
        None => Some("is empty"),
    }
}

/// Whether `path` holds tests only (exempt from the length limit).
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path
            .components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches")
}

#[test]
fn every_rust_file_opens_with_a_module_header() {
    let bad: Vec<String> = workspace_files()
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            header_problem(&text).map(|why| format!("{} {why}", path.display()))
        })
        .collect();
    assert!(bad.is_empty(), "add a `//!` header:\n{}", bad.join("\n"));
}

#[test]
fn no_production_file_is_too_long() {
    let long: Vec<String> = workspace_files()
        .into_iter()
        .filter(|path| !is_test_file(path))
        .filter_map(|path| {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these files (at most {MAX_LINES} lines; tests go in a `tests.rs` beside them):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_header_check_tells_a_header_from_none() {
    assert_eq!(header_problem("//! What this holds.\nfn f() {}"), None);
    assert_eq!(header_problem("\n\n//! After blank lines.\n"), None);
    assert!(header_problem("// A plain comment.\n").is_some());
    assert!(header_problem("//!\n").is_some());
    assert!(header_problem("use std::fs;\n").is_some());
    assert!(header_problem("").is_some());
    assert!(is_test_file(Path::new("a/src/manifest/tests.rs")));
    assert!(is_test_file(Path::new("a/tests/integration/main.rs")));
    assert!(!is_test_file(Path::new("a/src/manifest/mod.rs")));
}
