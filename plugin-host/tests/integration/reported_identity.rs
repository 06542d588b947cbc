//! The identity a library's code reports, checked again once it is mapped: a library whose
//! identity record was edited to match its manifest, while its code still reports what it
//! was built as, is refused after `dlopen` with the same error as a record that differs.

use plugin_host::{Error, PluginManager};
use plugin_test_support::fixtures;

#[test]
fn code_that_reports_another_version_than_its_record_is_refused_after_mapping() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    plugin_test_support::edit_recorded_version(&dir, "hello", "0.1.0", "0.1.9");
    let m = PluginManager::new(base.path());
    // The files alone pass: the record says 0.1.9, as the manifest does.
    assert_eq!(
        m.inspect("hello").unwrap().version,
        semver::Version::new(0, 1, 9)
    );
    let err = m.load_plugin("hello").unwrap_err();
    assert!(
        matches!(
            &err,
            Error::IdentityMismatch { field: "version", expected, found, .. }
                if expected == "0.1.9" && found == "0.1.0"
        ),
        "{err}"
    );
    assert!(m.get("hello").is_err());
}

#[test]
fn a_loaded_plugin_reports_the_sdk_and_hooks_its_code_has() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    fixtures().install(base.path(), "counter");
    let m = PluginManager::new(base.path());
    m.load_plugins().unwrap();
    let summary = |name: &str| {
        let status = m.list().into_iter().find(|p| p.name == name).unwrap();
        status.active.expect("the plugin is active")
    };
    let hello = summary("hello");
    assert_eq!(hello.sdk_version, plugin_host::ABI_CRATE_VERSION);
    assert_eq!((hello.has_on_load, hello.has_on_unload), (false, false));
    let counter = summary("counter");
    assert_eq!((counter.has_on_load, counter.has_on_unload), (true, true));
}
