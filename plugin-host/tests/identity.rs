//! A library whose identity record differs from its manifest is refused from its file
//! alone: it is never mapped, so none of its code runs, not even its constructors.
//!
//! One test in a binary of its own: it sets an environment variable, which no other test
//! thread may read at the same time.

use std::path::Path;

use plugin_host::{Error, PluginManager};
use plugin_test_support::fixtures;

/// What the `ctor-mark` fixture's constructor reads.
const MARK_VAR: &str = "PLUGIN_CTOR_MARK";

#[test]
fn a_library_with_another_identity_is_refused_before_its_constructors_run() {
    let base = tempfile::tempdir().unwrap();
    let marks = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "ctor-mark");
    let m = PluginManager::new(base.path());

    // plugin.json says 0.2.0; the library was built as 0.1.0.
    let refused = marks.path().join("refused");
    std::env::set_var(MARK_VAR, &refused);
    let err = m.load_plugin("ctor-mark").unwrap_err();
    assert!(
        matches!(
            err,
            Error::IdentityMismatch {
                field: "version",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0.2.0"), "{err}");
    assert!(
        !refused.exists(),
        "the library was mapped: its constructor ran before it was refused"
    );

    // The control: with the version fixed, the same library loads, and mapping it runs its
    // constructor, which leaves the mark.
    set_manifest_version(&dir, "0.1.0");
    let loaded = marks.path().join("loaded");
    std::env::set_var(MARK_VAR, &loaded);
    m.load_plugin("ctor-mark").unwrap();
    assert!(loaded.exists(), "the constructor did not run on load");
    assert!(!refused.exists());
}

fn set_manifest_version(dir: &Path, version: &str) {
    let path = dir.join("plugin.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["version"] = version.into();
    std::fs::write(&path, manifest.to_string()).unwrap();
}

#[test]
fn the_checks_alone_describe_a_library_without_running_its_constructors() {
    let base = tempfile::tempdir().unwrap();
    let marks = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "ctor-mark");
    set_manifest_version(&dir, "0.1.0");
    let mark = marks.path().join("checked");
    std::env::set_var(MARK_VAR, &mark);

    let found = plugin_host::Checks::new()
        .base_dir(base.path())
        .folder("ctor-mark", &dir)
        .unwrap();
    assert_eq!(found.name, "ctor-mark");
    assert_eq!(found.version, semver::Version::new(0, 1, 0));
    assert_eq!(
        found.sha256,
        plugin_host::sha256_file(&found.library).unwrap()
    );
    assert!(!mark.exists(), "checking the folder mapped the library");
}
