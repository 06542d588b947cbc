//! The check layer on its own: `Checks` describes a plugin folder as the manager's
//! `inspect` does, with no manager, and refuses what a load would refuse.

use std::os::unix::fs::PermissionsExt;

use plugin_host::{Checks, Error, PluginManager};
use plugin_test_support::fixtures;

#[test]
fn checks_find_what_the_manager_finds_without_a_manager() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let alone = Checks::new()
        .base_dir(base.path())
        .folder("hello", &dir)
        .unwrap();
    let managed = PluginManager::new(base.path()).inspect("hello").unwrap();
    assert_eq!(
        serde_json::to_value(&alone).unwrap(),
        serde_json::to_value(&managed).unwrap()
    );
    assert!(alone.library.starts_with(&dir), "{:?}", alone.library);
    assert_eq!(
        alone.library_bytes,
        std::fs::metadata(&alone.library).unwrap().len()
    );
}

#[test]
fn checks_refuse_what_a_load_refuses_and_keep_the_development_override() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let manifest = dir.join("plugin.json");
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = Checks::new().folder("hello", &dir).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Writable {
                what: "manifest",
                ..
            }
        ),
        "{err}"
    );
    // A manifest others can write is refused whatever the override says (it is opened
    // with the mode check always on); once fixed, the override lets a folder of another
    // owner's kind through.
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Checks::new().folder("hello", &dir).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Writable {
                what: "plugin folder",
                ..
            }
        ),
        "{err}"
    );
    Checks::new()
        .insecure_permissions(true)
        .folder("hello", &dir)
        .unwrap();
}

#[test]
fn checks_match_requires_host_against_the_version_given() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let path = dir.join("plugin.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["requires"] = serde_json::json!({ "host": "^2" });
    std::fs::write(&path, manifest.to_string()).unwrap();
    let err = Checks::new()
        .host_version(semver::Version::new(1, 9, 0))
        .folder("hello", &dir)
        .unwrap_err();
    assert!(matches!(&err, Error::HostVersion { .. }), "{err}");
    Checks::new()
        .host_version(semver::Version::new(2, 0, 0))
        .folder("hello", &dir)
        .unwrap();
}

#[test]
fn a_folder_that_leads_out_of_the_base_is_refused_only_when_a_base_is_given() {
    let base = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let real = fixtures().install(elsewhere.path(), "hello");
    let link = base.path().join("hello");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = Checks::new()
        .base_dir(base.path())
        .folder("hello", &link)
        .unwrap_err();
    assert!(matches!(&err, Error::FolderOutsideBase { .. }), "{err}");
    Checks::new().folder("hello", &link).unwrap();
}
