//! Loading real plugins through the public API: the happy path, and every kind of bad
//! input, each with its own typed error while the other plugins still load.

use std::path::Path;

use plugin_host::{Context, Drain, Error, ErrorKind, PluginManager};
use plugin_test_support::fixtures;

fn manager(base: &Path) -> PluginManager {
    PluginManager::new(base)
}

#[test]
fn hello_greets_through_the_host() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let m = manager(base.path());
    let report = m.load_plugins().unwrap();
    assert!(report.all_loaded(), "{:?}", report);
    assert_eq!(report.loaded().collect::<Vec<_>>(), ["hello"]);

    let ctx = Context::background();
    ctx.set("sample", &serde_json::json!({ "name": "go-plugin" }))
        .unwrap();
    m.get("hello").unwrap().execute(&ctx).unwrap();
    assert_eq!(
        ctx.get::<String>("greeting").unwrap().as_deref(),
        Some("Hello, go-plugin!")
    );

    // Missing input is the plugin's typed error, not a crash.
    let err = m
        .get("hello")
        .unwrap()
        .execute(&Context::background())
        .unwrap_err();
    assert_eq!(
        err.plugin_error_kind(),
        Some(ErrorKind::InvalidInput),
        "{err}"
    );
}

#[test]
fn every_sample_loads_and_lists_with_its_identity() {
    let base = tempfile::tempdir().unwrap();
    for name in fixtures().sample_names() {
        fixtures().install(base.path(), &name);
    }
    let m = manager(base.path());
    let report = m.load_plugins().unwrap();
    assert!(report.all_loaded(), "{report:?}");
    let list = m.list();
    let names: Vec<_> = list.iter().map(|p| p.name.as_str()).collect();
    let mut samples = fixtures().sample_names();
    samples.sort();
    assert!(samples.len() >= 6, "{samples:?}");
    assert_eq!(names, samples);
    let counter = list.iter().find(|p| p.name == "counter").unwrap();
    let counter = counter.active.as_ref().unwrap();
    assert!(counter.has_on_load && counter.has_on_unload);
    assert_eq!(counter.version.to_string(), "0.1.0");
    // On Linux the private copy is a memory file, shown as its mappings are named.
    #[cfg(target_os = "linux")]
    assert_eq!(
        counter.running_copy,
        std::path::Path::new("memfd:plugin:counter-0.1.0")
    );
    #[cfg(not(target_os = "linux"))]
    assert!(counter.running_copy.exists());
    assert!(!counter.running_copy.starts_with(base.path()));
    let router = list.iter().find(|p| p.name == "label-router").unwrap();
    let router = router.active.as_ref().unwrap();
    assert_eq!(
        router.manifest.http_services.as_ref().unwrap().routes.len(),
        2
    );
}

#[test]
fn label_router_switches_on_the_label() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "label-router");
    let m = manager(base.path());
    m.load_plugin("label-router").unwrap();
    let h = m.get("label-router").unwrap();

    let ctx = Context::background().with_label("plugin.get");
    ctx.set("id", "42").unwrap();
    h.execute(&ctx).unwrap();
    assert_eq!(
        ctx.get::<serde_json::Value>("item").unwrap(),
        Some(serde_json::json!({ "id": "42", "kind": "sample" }))
    );

    let err = h
        .execute(&Context::background().with_label("plugin.delete"))
        .unwrap_err();
    assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Unsupported));
    assert!(err.to_string().contains("plugin.delete"), "{err}");
}

#[test]
fn counter_keeps_state_and_on_load_resets_it() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "counter");
    let m = manager(base.path());
    m.load_plugin("counter").unwrap();
    let h = m.get("counter").unwrap();
    for expected in 1..=3i64 {
        let ctx = Context::background();
        h.execute(&ctx).unwrap();
        assert_eq!(ctx.get::<i64>("count").unwrap(), Some(expected));
    }
    assert_eq!(m.unload("counter").unwrap(), Drain::Clean);
    assert!(matches!(
        h.execute(&Context::background()),
        Err(Error::Unloaded { .. })
    ));
    assert!(matches!(m.get("counter"), Err(Error::NotFound { .. })));
    // A new load is a new copy of the library: fresh statics, on_load ran again.
    m.load_plugin("counter").unwrap();
    assert_eq!(m.get("counter").unwrap().status().retained_libraries, 2);
    assert_eq!(m.retained_libraries(), 2);
    let ctx = Context::background();
    m.get("counter").unwrap().execute(&ctx).unwrap();
    assert_eq!(ctx.get::<i64>("count").unwrap(), Some(1));
}

#[test]
fn slow_stops_at_its_deadline_and_on_cancel() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "slow");
    let m = manager(base.path());
    m.load_plugin("slow").unwrap();
    let h = m.get("slow").unwrap();

    let ctx = Context::with_timeout(std::time::Duration::from_millis(50));
    let err = h.execute(&ctx).unwrap_err();
    assert_eq!(
        err.plugin_error_kind(),
        Some(ErrorKind::DeadlineExceeded),
        "{err}"
    );

    let ctx = Context::background();
    let worker = {
        let (h, ctx) = (h.clone(), ctx.clone());
        std::thread::spawn(move || h.execute(&ctx))
    };
    // Wait until the plugin has visibly started, then cancel it.
    crate::util::wait_until("the call runs", || {
        ctx.get::<u64>("steps").unwrap().is_some()
    });
    ctx.cancel();
    let err = worker.join().unwrap().unwrap_err();
    assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Cancelled), "{err}");

    let ctx = Context::background();
    ctx.set("max_steps", &3u64).unwrap();
    ctx.set("step_ms", &1u64).unwrap();
    h.execute(&ctx).unwrap();
    assert_eq!(ctx.get::<u64>("steps").unwrap(), Some(3));
}

#[test]
fn a_panic_in_execute_is_an_error_and_later_calls_work() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "panic-execute");
    let m = manager(base.path());
    m.load_plugin("panic-execute").unwrap();
    let h = m.get("panic-execute").unwrap();
    for _ in 0..3 {
        let err = h.execute(&Context::background()).unwrap_err();
        assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Panicked));
        assert!(err.to_string().contains("boom from panic-execute"), "{err}");
    }
    let ctx = Context::background();
    ctx.set("panic", &false).unwrap();
    h.execute(&ctx).unwrap();
    assert_eq!(ctx.get::<bool>("ok").unwrap(), Some(true));
}

#[test]
fn bad_libraries_fail_alone_with_typed_errors() {
    let base = tempfile::tempdir().unwrap();
    for name in [
        "hello",
        "panic-on-load",
        "identity-mismatch",
        "wrong-abi",
        "not-a-plugin",
    ] {
        fixtures().install(base.path(), name);
    }
    let m = manager(base.path());
    let report = m.load_plugins().unwrap();
    assert_eq!(report.loaded().collect::<Vec<_>>(), ["hello"]);
    assert!(!report.all_loaded());
    let failed: Vec<&str> = report.failed().map(|(name, _)| name).collect();
    assert_eq!(
        failed,
        [
            "identity-mismatch",
            "not-a-plugin",
            "panic-on-load",
            "wrong-abi"
        ]
    );
    assert!(report.error("hello").is_none());

    let err = report.error("panic-on-load").unwrap();
    assert!(
        matches!(
            err,
            Error::OnLoad {
                kind: ErrorKind::Panicked,
                ..
            }
        ),
        "{err}"
    );

    let err = report.error("identity-mismatch").unwrap();
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
    assert!(err.to_string().contains("9.9.9"), "{err}");

    let err = report.error("wrong-abi").unwrap();
    assert!(matches!(err, Error::AbiMismatch { .. }), "{err}");

    let err = report.error("not-a-plugin").unwrap();
    assert!(matches!(err, Error::NotAPlugin { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "does not export `{}`",
            plugin_abi::ROOT_MODULE_SYMBOL
        )),
        "{err}"
    );

    for (name, err) in report.failed() {
        assert_eq!(err.plugin(), Some(name));
        assert!(err.to_string().contains(name), "{err}");
    }
    // The good one still works.
    let ctx = Context::background();
    ctx.set("sample", &serde_json::json!({ "name": "x" }))
        .unwrap();
    m.get("hello").unwrap().execute(&ctx).unwrap();
}

#[test]
fn a_file_that_is_not_a_library_is_not_a_plugin() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install_as(base.path(), "hello", "hello");
    let lib = dir.join(fixtures().plugin("hello").library_file_name());
    std::fs::remove_file(&lib).unwrap();
    std::fs::write(&lib, b"definitely not ELF").unwrap();
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::NotAPlugin { .. }), "{err}");
    assert!(err.to_string().contains("not a shared library"), "{err}");
}

/// Rewrites the library of the installed plugin `name` in `dir` with `edit` applied to its
/// bytes.
fn edit_library(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let lib = dir.join(fixtures().plugin(name).library_file_name());
    let mut bytes = std::fs::read(&lib).unwrap();
    edit(&mut bytes);
    std::fs::remove_file(&lib).unwrap();
    std::fs::write(&lib, bytes).unwrap();
}

/// ELF's `e_type` and `e_machine`, in the file's byte order.
#[cfg(all(unix, not(target_vendor = "apple")))]
fn put_elf_u16(bytes: &mut [u8], at: usize, value: u16) {
    let value = if bytes[5] == 2 {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    };
    bytes[at..at + 2].copy_from_slice(&value);
}

#[cfg(all(unix, not(target_vendor = "apple")))]
#[test]
fn a_library_for_another_machine_or_an_executable_is_refused_before_loading() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let (machine, name) = if std::env::consts::ARCH == "aarch64" {
        (62, "x86_64")
    } else {
        (183, "aarch64")
    };
    edit_library(&dir, "hello", |bytes| put_elf_u16(bytes, 18, machine));
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::NotAPlugin { .. }), "{err}");
    let expected = format!("built for {name}, this host is {}", std::env::consts::ARCH);
    assert!(err.to_string().contains(&expected), "{err}");

    let dir = fixtures().install(base.path(), "hello");
    const ET_EXEC: u16 = 2;
    edit_library(&dir, "hello", |bytes| put_elf_u16(bytes, 16, ET_EXEC));
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(
        err.to_string()
            .contains("(an ELF executable, not a shared library)"),
        "{err}"
    );
}

/// Replaces every occurrence of `from` in `bytes` with `to` (of the same length).
fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut count = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(from.len()).position(|w| w == from) {
        bytes[at + found..at + found + to.len()].copy_from_slice(to);
        at += found + to.len();
        count += 1;
    }
    count
}

#[cfg(all(unix, not(target_vendor = "apple")))]
#[test]
fn a_library_without_a_readable_identity_section_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    edit_library(&dir, "hello", |bytes| {
        assert_eq!(replace_all(bytes, b"PLUGIDNT", b"PLUGIDNX"), 1);
    });
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::NotAPlugin { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("its identity section `.plugin_identity` is malformed"),
        "{err}"
    );

    let dir = fixtures().install(base.path(), "hello");
    edit_library(&dir, "hello", |bytes| {
        assert!(replace_all(bytes, b".plugin_identity\0", b".plugin_idXXXXXX\0") >= 1);
    });
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::NotAPlugin { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("it has no `.plugin_identity` section"),
        "{err}"
    );
}

/// A plugin built with a plugin-sdk from before context values crossed as bytes (ABI 1),
/// or with a newer one than this host knows: refused from its identity record (read from
/// the file, before the library is mapped), with the side to rebuild named.
#[cfg(all(unix, not(target_vendor = "apple")))]
#[test]
fn a_plugin_built_for_another_plugin_abi_is_refused_before_mapping_naming_the_fix() {
    let base = tempfile::tempdir().unwrap();
    for (abi, says) in [
        (1u32, "plugin ABI version 1, older than this host's 2"),
        (
            3,
            "plugin ABI version 3, newer than this host's 2 (or upgrade the host)",
        ),
    ] {
        let dir = fixtures().install(base.path(), "hello");
        edit_library(&dir, "hello", |bytes| {
            let at = bytes
                .windows(8)
                .position(|w| w == b"PLUGIDNT")
                .expect("an identity record");
            let field = &mut bytes[at + 10..at + 14];
            assert_eq!(field, plugin_abi::ABI_VERSION.to_le_bytes());
            field.copy_from_slice(&abi.to_le_bytes());
        });
        let err = manager(base.path()).load_plugin("hello").unwrap_err();
        assert!(matches!(err, Error::AbiMismatch { .. }), "{err}");
        let shown = err.to_string();
        assert!(shown.contains(says), "{shown}");
        assert!(
            shown.contains(&format!(
                "rebuild the plugin against plugin-sdk {}",
                plugin_abi::CRATE_VERSION
            )),
            "{shown}"
        );
    }
}

#[test]
fn a_library_larger_than_the_cap_is_not_read() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let lib = dir.join(fixtures().plugin("hello").library_file_name());
    // Sparse: no disk space, and the loader must not read it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&lib)
        .unwrap()
        .set_len((512 << 20) + 1)
        .unwrap();
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::NotAPlugin { .. }), "{err}");
    assert!(err.to_string().contains("more than the 512 MiB"), "{err}");
}

#[test]
fn requires_host_is_checked_before_loading() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    edit_manifest(&dir, |m| {
        m["requires"] = serde_json::json!({ "host": ">=2" })
    });
    let m = PluginManager::builder(base.path())
        .host_version(semver::Version::new(1, 5, 0))
        .build();
    let err = m.load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::HostVersion { .. }), "{err}");
    assert!(err.to_string().contains("requires.host"), "{err}");

    let m = PluginManager::builder(base.path())
        .host_version(semver::Version::new(2, 0, 0))
        .build();
    m.load_plugin("hello").unwrap();
}

#[test]
fn sha256_is_verified_when_given() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let lib = dir.join(fixtures().plugin("hello").library_file_name());
    let digest = plugin_host::sha256_file(&lib).unwrap();
    edit_manifest(&dir, |m| m["sha256"] = serde_json::json!(digest));
    manager(base.path()).load_plugin("hello").unwrap();

    edit_manifest(&dir, |m| m["sha256"] = serde_json::json!("0".repeat(64)));
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
}

#[test]
fn missing_library_and_bad_paths_are_refused_before_loading() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    std::fs::remove_file(dir.join(fixtures().plugin("hello").library_file_name())).unwrap();
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::LibraryMissing { .. }), "{err}");
    assert!(err.to_string().contains("libhello"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_folder_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let name = fixtures().plugin("hello").library_file_name();
    std::fs::rename(dir.join(&name), outside.path().join(&name)).unwrap();
    std::os::unix::fs::symlink(outside.path().join(&name), dir.join(&name)).unwrap();
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::LibraryOutsideFolder { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn a_world_writable_library_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let lib = dir.join(fixtures().plugin("hello").library_file_name());
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Writable {
                what: "library",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_library_replaced_on_disk_does_not_change_running_code() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "counter");
    let m = manager(base.path());
    m.load_plugin("counter").unwrap();
    let h = m.get("counter").unwrap();
    h.execute(&Context::background()).unwrap();

    // Overwrite the library in place (same inode) with another plugin's bytes, then
    // truncate it: the running code was loaded from a private copy and must not notice.
    let lib = dir.join(fixtures().plugin("counter").library_file_name());
    std::fs::write(&lib, std::fs::read(fixtures().library("hello")).unwrap()).unwrap();
    for expected in 2..=4i64 {
        let ctx = Context::background();
        h.execute(&ctx).unwrap();
        assert_eq!(ctx.get::<i64>("count").unwrap(), Some(expected));
    }
    std::fs::write(&lib, b"").unwrap();
    let ctx = Context::background();
    h.execute(&ctx).unwrap();
    assert_eq!(ctx.get::<i64>("count").unwrap(), Some(5));
}

#[test]
fn loading_twice_is_reported_and_unknown_names_are_typed() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let m = manager(base.path());
    m.load_plugin("hello").unwrap();
    assert!(matches!(
        m.load_plugin("hello"),
        Err(Error::AlreadyLoaded { .. })
    ));
    // load_plugins treats an already loaded plugin as loaded.
    assert!(m.load_plugins().unwrap().all_loaded());
    assert!(matches!(
        m.load_plugin("nope"),
        Err(Error::NoSuchFolder { .. })
    ));
    assert!(matches!(m.get("nope"), Err(Error::NotFound { .. })));
    assert!(matches!(m.unload("nope"), Err(Error::NotFound { .. })));
}

#[test]
fn a_plugin_name_cannot_reach_outside_the_base_directory() {
    // root/base holds the plugins; root/outside and root/base/sub/inner are plugin folders
    // too, which a name with `..` or `/` would reach.
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    std::fs::create_dir(&base).unwrap();
    fixtures().install_as(root.path(), "hello", "outside");
    std::fs::create_dir(base.join("sub")).unwrap();
    fixtures().install_as(&base.join("sub"), "hello", "inner");
    fixtures().install_as(&base, "hello", ".hidden");
    let m = manager(&base);
    for name in ["../outside", "sub/inner", "sub\\inner", ".hidden", "", "."] {
        assert!(
            matches!(m.load_plugin(name), Err(Error::NoSuchFolder { .. })),
            "{name:?} must not name a plugin folder"
        );
    }
    assert!(m.list().is_empty());
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("plugin.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut value);
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

/// Broken `plugin.json`s beside a good plugin: each folder gets its own typed error naming
/// the field, and the good plugin still loads.
#[test]
fn broken_manifests_fail_alone_with_the_field_named() {
    let good = r#""version": "0.1.0", "source": { "mode": "local_so", "path": "x" }"#;
    // (folder, plugin.json text, field the error must name or None for syntax errors)
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("empty", String::new(), None),
        ("not-json", "not json".into(), None),
        ("array", "[]".into(), None),
        ("no-name", format!("{{ {good} }}"), None),
        ("no-version", r#"{ "name": "no-version", "source": { "mode": "local_so", "path": "x" } }"#.into(), None),
        ("no-source", r#"{ "name": "no-source", "version": "0.1.0" }"#.into(), None),
        ("unknown-field", format!(r#"{{ "name": "unknown-field", {good}, "color": "red" }}"#), None),
        ("wrong-type", r#"{ "name": "wrong-type", "version": 1, "source": { "mode": "local_so", "path": "x" } }"#.into(), None),
        ("version-1", r#"{ "name": "version-1", "version": "1", "source": { "mode": "local_so", "path": "x" } }"#.into(), Some("version")),
        ("version-v", r#"{ "name": "version-v", "version": "v1.0.0", "source": { "mode": "local_so", "path": "x" } }"#.into(), Some("version")),
        ("version-zero", r#"{ "name": "version-zero", "version": "01.0.0", "source": { "mode": "local_so", "path": "x" } }"#.into(), Some("version")),
        ("version-space", r#"{ "name": "version-space", "version": "1.0.0 ", "source": { "mode": "local_so", "path": "x" } }"#.into(), Some("version")),
        ("name-empty", format!(r#"{{ "name": "", {good} }}"#), Some("name")),
        ("name-dots", format!(r#"{{ "name": "..", {good} }}"#), Some("name")),
        ("name-slash", format!(r#"{{ "name": "a/b", {good} }}"#), Some("name")),
        ("name-other", format!(r#"{{ "name": "someone-else", {good} }}"#), Some("name")),
        ("path-absolute", r#"{ "name": "path-absolute", "version": "0.1.0", "source": { "mode": "local_so", "path": "/usr/lib/libx.so" } }"#.into(), Some("source.path")),
        ("path-dotdot", r#"{ "name": "path-dotdot", "version": "0.1.0", "source": { "mode": "local_so", "path": "../hello/libhello.so" } }"#.into(), Some("source.path")),
    ];
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    for (folder, text, _) in &cases {
        let dir = base.path().join(folder);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("plugin.json"), text).unwrap();
    }
    // A valid manifest whose library is missing.
    let dir = base.path().join("no-library");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("plugin.json"),
        format!(r#"{{ "name": "no-library", {good} }}"#),
    )
    .unwrap();

    let report = manager(base.path()).load_plugins().unwrap();
    assert_eq!(report.loaded().collect::<Vec<_>>(), ["hello"]);
    for (folder, _, field) in &cases {
        let err = report
            .error(folder)
            .unwrap_or_else(|| panic!("{folder} loaded"));
        let Error::Manifest(manifest_err) = err else {
            panic!("{folder}: expected a manifest error, got {err}");
        };
        if let Some(field) = field {
            assert_eq!(manifest_err.field(), Some(*field), "{folder}: {err}");
        }
        let message = err.to_string();
        assert!(message.contains(folder), "{folder}: {message}");
        assert!(message.contains("plugin.json"), "{folder}: {message}");
    }
    assert!(matches!(
        report.error("no-library"),
        Some(Error::LibraryMissing { .. })
    ));
}

#[cfg(unix)]
#[test]
fn a_library_path_that_is_a_folder_or_a_fifo_is_not_a_file() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let lib = dir.join(fixtures().plugin("hello").library_file_name());
    std::fs::remove_file(&lib).unwrap();
    std::fs::create_dir(&lib).unwrap();
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::LibraryNotFile { .. }), "{err}");

    // A FIFO must be refused without opening it (opening would block the loader).
    std::fs::remove_dir(&lib).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&lib)
        .status()
        .unwrap();
    assert!(status.success());
    let err = manager(base.path()).load_plugin("hello").unwrap_err();
    assert!(matches!(err, Error::LibraryNotFile { .. }), "{err}");
}

/// A host built without process isolation says so when a plugin asks for it, and loads
/// nothing (this runs under `cargo test -p plugin-host --no-default-features`).
#[cfg(not(all(target_os = "linux", feature = "isolation")))]
#[test]
fn isolation_asked_of_a_host_built_without_it_is_a_clear_error() {
    let base = tempfile::tempdir().unwrap();
    plugin_test_support::fixtures().install(base.path(), "hello");
    let m = plugin_host::PluginManager::builder(base.path())
        .isolation(plugin_host::Isolation::Process)
        .build();
    let err = m.load_plugin("hello").unwrap_err();
    assert!(
        matches!(&err, plugin_host::Error::IsolationUnavailable { plugin } if plugin == "hello"),
        "{err}"
    );
    assert!(err.to_string().contains("`isolation` feature"), "{err}");
    assert!(m.get("hello").is_err());
}
