//! Guards the other tests leave unchecked: each test here fails if one check of the
//! loader or the manager is removed or inverted.

use std::path::Path;
use std::time::Duration;

use crate::util::{next_event, wait_until};
use plugin_host::{Context, Drain, Error, Event, PluginManager, PluginState, UpgradeOptions};
use plugin_test_support::fixtures;

/// An identity record's strings, as `plugin_abi::identity` lays them out: each one a
/// little-endian `u16` length, then its bytes.
fn record_strings(name: &str, version: &str, sdk_version: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for s in [name, version, sdk_version] {
        out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// The whole identity record of the `noop` fixture, format version `format`.
fn noop_record(format: u16, sdk_version: &str) -> Vec<u8> {
    let mut out = plugin_abi::identity::MAGIC.to_vec();
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&plugin_abi::ABI_VERSION.to_le_bytes());
    out.extend_from_slice(&record_strings("noop", "0.1.0", sdk_version));
    out
}

/// Installs the `noop` fixture into `base` with its library's identity record replaced
/// by `to` (as long as the real one). Its `info()` still reports the real identity.
fn install_noop_with_record(base: &Path, to: &[u8]) {
    let dir = fixtures().install(base, "noop");
    let library = dir.join(fixtures().plugin("noop").library_file_name());
    let mut bytes = std::fs::read(&library).unwrap();
    let from = noop_record(
        plugin_abi::identity::FORMAT_VERSION,
        plugin_host::ABI_CRATE_VERSION,
    );
    assert_eq!(from.len(), to.len(), "the patch keeps the length");
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("noop's identity record");
    bytes[at..at + to.len()].copy_from_slice(to);
    std::fs::write(&library, bytes).unwrap();
}

/// Installs the `noop` fixture into `base` as if it had been built with `plugin-sdk`
/// `sdk_version` (as long as the real one).
fn install_noop_built_with_sdk(base: &Path, sdk_version: &str) {
    let to = noop_record(plugin_abi::identity::FORMAT_VERSION, sdk_version);
    install_noop_with_record(base, &to);
}

/// A version of the SDK as long as this host's `plugin-abi` version: the next
/// caret-incompatible one if `compatible` is false, else a later caret-compatible patch.
fn other_sdk_version(compatible: bool) -> String {
    let v = semver::Version::parse(plugin_host::ABI_CRATE_VERSION).unwrap();
    let other = match (compatible, v.major) {
        (true, _) => semver::Version::new(v.major, v.minor, (v.patch + 1) % 10),
        (false, 0) => semver::Version::new(0, (v.minor + 1) % 10, v.patch),
        (false, major) => semver::Version::new((major + 1) % 10, v.minor, v.patch),
    };
    other.to_string()
}

#[test]
fn a_library_built_against_an_incompatible_sdk_is_refused() {
    let incompatible = other_sdk_version(false);
    let base = tempfile::tempdir().unwrap();
    install_noop_built_with_sdk(base.path(), &incompatible);
    let m = PluginManager::new(base.path());
    let err = m.load_plugin("noop").unwrap_err();
    match &err {
        Error::IdentityMismatch {
            field: "sdk_version",
            expected,
            found,
            ..
        } => {
            assert_eq!(found, &incompatible);
            assert_eq!(expected, &format!("^{}", plugin_host::ABI_CRATE_VERSION));
        }
        other => panic!("expected an SDK mismatch, got {other:?}"),
    }
    assert!(matches!(m.state("noop"), Some(PluginState::Failed(_))));
    assert!(m.get("noop").is_err());

    // The control: a compatible SDK version in the same place loads.
    let base = tempfile::tempdir().unwrap();
    install_noop_built_with_sdk(base.path(), &other_sdk_version(true));
    let m = PluginManager::new(base.path());
    m.load_plugin("noop").unwrap();
    assert_eq!(m.state("noop"), Some(PluginState::Active));
}

#[test]
fn an_unload_that_times_out_cancels_every_waiting_call() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "versioned");
    // The drain waits its timeout for the calls, then as long again once they are
    // cancelled: seconds, so a loaded machine still sees them end in time.
    let m = PluginManager::builder(base.path())
        .drain_timeout(Duration::from_secs(2))
        .build();
    m.load_plugin("versioned").unwrap();
    // Three calls that each block in one `wait_cancelled` far longer than the drain
    // timeout: only the cancellation can end them in time.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let ctx = Context::background();
            ctx.set("hold_ms", &30_000u64).unwrap();
            let handle = m.get("versioned").unwrap();
            let worker = {
                let ctx = ctx.clone();
                std::thread::spawn(move || handle.execute(&ctx))
            };
            (ctx, worker)
        })
        .collect();
    wait_until("every call runs", || {
        calls
            .iter()
            .all(|(ctx, _)| ctx.get_bytes("version_at_start").is_some())
    });
    assert_eq!(m.unload("versioned").unwrap(), Drain::Clean);
    for (ctx, worker) in calls {
        worker.join().unwrap().unwrap();
        assert!(ctx.get_bytes("version_at_end").is_some());
    }
}

#[test]
fn every_event_names_its_plugin() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    fixtures().install(base.path(), "identity-mismatch");
    let m = PluginManager::new(base.path());
    let events = m.subscribe();
    m.load_plugin("hello").unwrap();
    m.reload("hello").unwrap();
    m.disable("hello").unwrap();
    m.enable("hello").unwrap();
    m.unload("hello").unwrap();
    m.load_plugin("identity-mismatch").unwrap_err();
    let expected = [
        ("loaded", "hello"),
        ("upgraded", "hello"),
        ("unloaded", "hello"),
        ("disabled", "hello"),
        ("enabled", "hello"),
        ("loaded", "hello"),
        ("unloaded", "hello"),
        ("failed", "identity-mismatch"),
    ];
    for (kind, plugin) in expected {
        let event = next_event(&events);
        assert_eq!(serde_json::to_value(&event).unwrap()["event"], kind);
        assert_eq!(event.plugin(), plugin, "{event:?}");
    }
    assert!(events.try_recv().is_err(), "no more events");
}

#[test]
fn a_library_at_the_size_cap_is_read_and_one_byte_more_is_refused_unread() {
    /// The loader's cap on a library's size, which its error message names.
    const CAP: u64 = 512 << 20;
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "noop");
    let library = dir.join(fixtures().plugin("noop").library_file_name());
    let m = PluginManager::new(base.path());
    let reason_with_len = |len: u64| {
        // Sparse: zeros that take no disk space.
        std::fs::File::options()
            .write(true)
            .truncate(true)
            .open(&library)
            .unwrap()
            .set_len(len)
            .unwrap();
        match m.load_plugin("noop").unwrap_err() {
            Error::NotAPlugin { reason, .. } => reason,
            other => panic!("expected NotAPlugin, got {other:?}"),
        }
    };
    // At the cap the file is read, and its bytes are judged: zeros are no library.
    let at_cap = reason_with_len(CAP);
    assert!(at_cap.starts_with("not a shared library"), "{at_cap}");
    let over = reason_with_len(CAP + 1);
    assert!(
        over.contains(&format!("{} bytes long", CAP + 1)) && over.contains("512 MiB"),
        "{over}"
    );
}

#[test]
fn an_identity_record_of_a_later_format_is_an_abi_mismatch() {
    let later = plugin_abi::identity::FORMAT_VERSION + 1;
    let base = tempfile::tempdir().unwrap();
    install_noop_with_record(
        base.path(),
        &noop_record(later, plugin_host::ABI_CRATE_VERSION),
    );
    let m = PluginManager::new(base.path());
    let err = m.load_plugin("noop").unwrap_err();
    assert!(matches!(err, Error::AbiMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(&later.to_string()), "{err}");
}

#[test]
fn get_on_a_failed_plugin_says_why_it_failed() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "identity-mismatch");
    let m = PluginManager::new(base.path());
    let load_error = m.load_plugin("identity-mismatch").unwrap_err().report();
    match m.get("identity-mismatch").unwrap_err() {
        Error::NotActive {
            state: PluginState::Failed(_),
            reason: Some(reason),
            ..
        } => assert_eq!(reason, load_error),
        other => panic!("expected NotActive with a reason, got {other:?}"),
    }
    // A plugin that is not active for another reason has none.
    fixtures().install(base.path(), "hello");
    m.disable("hello").unwrap();
    assert!(matches!(
        m.get("hello").unwrap_err(),
        Error::NotActive {
            state: PluginState::Disabled,
            reason: None,
            ..
        }
    ));
}

#[test]
fn a_plugin_that_fails_to_load_while_its_old_version_drains_stays_failed() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hostile");
    let m = PluginManager::builder(base.path())
        .drain_timeout(Duration::from_millis(50))
        .build();
    m.load_plugin("hostile").unwrap();
    let events = m.subscribe();
    // A call that ignores cancellation until released.
    let ctx = Context::background().with_label("hang");
    let call = {
        let (handle, ctx) = (m.get("hostile").unwrap(), ctx.clone());
        std::thread::spawn(move || handle.execute(&ctx))
    };
    wait_until("the call runs", || ctx.get_bytes("started").is_some());
    assert_eq!(m.unload("hostile").unwrap(), Drain::Stuck { calls: 1 });
    assert!(matches!(next_event(&events), Event::Stuck { .. }));
    assert!(matches!(next_event(&events), Event::Unloaded { .. }));

    // While the old version drains, loading the folder again fails.
    std::fs::write(dir.join("plugin.json"), "{").unwrap();
    m.load_plugin("hostile").unwrap_err();
    assert!(matches!(next_event(&events), Event::Failed { .. }));
    assert!(matches!(m.state("hostile"), Some(PluginState::Failed(_))));

    // The last stuck call returns: the old version is retired, and the failure stays.
    ctx.set("release", &true).unwrap();
    call.join().unwrap().unwrap();
    assert!(matches!(next_event(&events), Event::Drained { .. }));
    assert!(
        matches!(m.state("hostile"), Some(PluginState::Failed(_))),
        "{:?}",
        m.state("hostile")
    );
}

/// Upgrading a plugin from its own folder, however the path is spelled, reloads it in
/// place: the folder is not copied over itself.
#[cfg(unix)]
#[test]
fn an_upgrade_from_the_plugins_own_folder_leaves_the_folder_in_place() {
    use std::os::unix::fs::MetadataExt;
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let m = PluginManager::new(base.path());
    m.load_plugin("hello").unwrap();
    let inode = |path: &Path| std::fs::metadata(path).unwrap().ino();
    let library = dir.join(fixtures().plugin("hello").library_file_name());
    let before = (inode(&dir), inode(&library));
    let upgraded = m
        .upgrade(
            "hello",
            base.path().join(".").join("hello"),
            UpgradeOptions::new(),
        )
        .unwrap();
    assert_eq!(upgraded.to.to_string(), "0.1.0");
    assert_eq!(m.state("hello"), Some(PluginState::Active));
    assert_eq!((inode(&dir), inode(&library)), before);
}

#[test]
fn is_disabled_follows_disable_and_enable_and_enabling_an_active_plugin_keeps_it_active() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    fixtures().install(base.path(), "counter");
    let m = PluginManager::new(base.path());
    m.load_plugins().unwrap();
    assert!(!m.is_disabled("hello"));

    // Enabling a plugin that is already enabled and active changes nothing: it is not
    // loaded again (an in-process plugin is never quarantined, which would reload it).
    m.enable("hello").unwrap();
    assert_eq!(m.state("hello"), Some(PluginState::Active));
    assert_eq!(m.get("hello").unwrap().status().retained_libraries, 1);

    m.disable("hello").unwrap();
    assert!(m.is_disabled("hello"));
    assert!(!m.is_disabled("counter"));
    assert_eq!(m.state("hello"), Some(PluginState::Disabled));
    m.enable("hello").unwrap();
    assert!(!m.is_disabled("hello"));
    assert_eq!(m.state("hello"), Some(PluginState::Active));
}

#[test]
fn copy_dir_holds_the_running_copies_and_debug_names_the_manager() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let copies = tempfile::tempdir().unwrap();
    let m = PluginManager::builder(base.path())
        .copy_dir(copies.path())
        .build();
    assert_eq!(m.copy_dir().as_deref(), Some(copies.path()));
    m.load_plugin("hello").unwrap();
    let running = m.get("hello").unwrap().summary().unwrap().running_copy;
    assert!(running.starts_with(copies.path()), "{}", running.display());

    // Without a given directory, none is made until a copy needs one (on Linux, copies are
    // memory files), or until asked for by name.
    let m = PluginManager::new(base.path());
    m.load_plugin("hello").unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(m.copy_dir(), None);
    let made = m.ensure_copy_dir().unwrap();
    assert!(made.is_dir(), "{}", made.display());
    assert_eq!(m.copy_dir(), Some(made));

    let shown = format!("{m:?}");
    for part in ["PluginManager", "base_dir", "hello"] {
        assert!(shown.contains(part), "{shown}");
    }
}
