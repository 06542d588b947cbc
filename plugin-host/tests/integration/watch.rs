//! `PluginManager::watch` against a real directory: tests wait on the manager's events with
//! a bounded timeout, never on sleeps.

use std::io::Write;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use crate::util::{next_event, v};
use plugin_host::{Context, Event, PluginManager, UpgradeOptions, WatchOptions};
use plugin_test_support::{fixtures, install_folder, versioned_variant};

fn watched(base: &std::path::Path) -> (Arc<PluginManager>, Receiver<Event>, plugin_host::Watcher) {
    let m = Arc::new(PluginManager::new(base));
    let events = m.subscribe();
    let watcher = m
        .watch_with(WatchOptions::default().with_debounce(Duration::from_millis(100)))
        .unwrap();
    m.load_plugins().unwrap();
    (m, events, watcher)
}

#[test]
fn a_dropped_in_folder_is_loaded_a_replaced_library_upgraded_a_deleted_folder_unloaded() {
    let v1 = versioned_variant("1.0.0", &[]);
    let v2 = versioned_variant("2.0.0", &[]);
    let base = tempfile::tempdir().unwrap();
    let (m, events, _watcher) = watched(base.path());

    install_folder(&v1, base.path(), "versioned");
    assert_eq!(
        next_event(&events),
        Event::Loaded {
            name: "versioned".into(),
            version: v("1.0.0")
        }
    );

    install_folder(&v2, base.path(), "versioned");
    assert_eq!(
        next_event(&events),
        Event::Upgraded {
            name: "versioned".into(),
            from: v("1.0.0"),
            to: v("2.0.0")
        }
    );
    let ctx = Context::background();
    m.get("versioned").unwrap().execute(&ctx).unwrap();
    assert_eq!(
        ctx.get::<String>("version_at_start").unwrap().as_deref(),
        Some("2.0.0")
    );

    std::fs::remove_dir_all(base.path().join("versioned")).unwrap();
    assert_eq!(
        next_event(&events),
        Event::Unloaded {
            name: "versioned".into()
        }
    );
    assert!(m.get("versioned").is_err());
}

#[test]
fn a_library_written_in_slow_chunks_ends_up_loaded_not_failed() {
    let base = tempfile::tempdir().unwrap();
    let (m, events, _watcher) = watched(base.path());

    let dir = base.path().join("hello");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        fixtures().plugin("hello").dir.join("plugin.json"),
        dir.join("plugin.json"),
    )
    .unwrap();
    let bytes = std::fs::read(fixtures().library("hello")).unwrap();
    let mut file =
        std::fs::File::create(dir.join(fixtures().plugin("hello").library_file_name())).unwrap();
    let chunk = bytes.len() / 6 + 1;
    for part in bytes.chunks(chunk) {
        file.write_all(part).unwrap();
        file.flush().unwrap();
        // A slow writer: each pause is longer than the watcher's debounce, so the watcher
        // sees the incomplete file several times. This simulates the writer; nothing waits on it.
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(file);

    // The first event is the load: no failure was reported for the incomplete file.
    assert_eq!(
        next_event(&events),
        Event::Loaded {
            name: "hello".into(),
            version: v("0.1.0")
        }
    );
    let ctx = Context::background();
    ctx.set("sample", &serde_json::json!({ "name": "chunks" }))
        .unwrap();
    m.get("hello").unwrap().execute(&ctx).unwrap();
    assert_eq!(
        ctx.get::<String>("greeting").unwrap().as_deref(),
        Some("Hello, chunks!")
    );
}

#[test]
fn a_broken_plugin_dropped_in_is_reported_failed() {
    let base = tempfile::tempdir().unwrap();
    let (_m, events, _watcher) = watched(base.path());
    fixtures().install(base.path(), "identity-mismatch");
    match next_event(&events) {
        Event::Failed { name, error } => {
            assert_eq!(name, "identity-mismatch");
            assert!(error.contains("9.9.9"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn a_manifest_that_cannot_be_read_is_reported_rather_than_waited_for() {
    // `plugin.json` is a symbolic link to itself: reading it fails with "too many levels of
    // symbolic links", which no amount of waiting fixes, unlike a file not written yet.
    let base = tempfile::tempdir().unwrap();
    let (_m, events, _watcher) = watched(base.path());
    let staging = tempfile::tempdir().unwrap();
    let folder = staging.path().join("looped");
    std::fs::create_dir(&folder).unwrap();
    std::os::unix::fs::symlink("plugin.json", folder.join("plugin.json")).unwrap();
    std::fs::rename(&folder, base.path().join("looped")).unwrap();
    match next_event(&events) {
        Event::Failed { name, error } => {
            assert_eq!(name, "looped");
            assert!(error.contains("plugin.json"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn an_upgrade_through_the_api_is_not_repeated_by_the_watcher() {
    let v1 = versioned_variant("1.0.0", &[]);
    let v2 = versioned_variant("2.0.0", &[]);
    let base = tempfile::tempdir().unwrap();
    install_folder(&v1, base.path(), "versioned");
    let (m, events, _watcher) = watched(base.path());
    assert!(matches!(next_event(&events), Event::Loaded { .. }));

    // The upgrade installs v2's files into the base directory, which the watcher sees.
    m.upgrade("versioned", &v2, UpgradeOptions::new()).unwrap();
    assert_eq!(
        next_event(&events),
        Event::Upgraded {
            name: "versioned".into(),
            from: v("1.0.0"),
            to: v("2.0.0")
        }
    );
    // A later change elsewhere: its event must come next, with no echo of the upgrade.
    fixtures().install(base.path(), "hello");
    assert_eq!(
        next_event(&events),
        Event::Loaded {
            name: "hello".into(),
            version: v("0.1.0")
        }
    );
    assert_eq!(m.get("versioned").unwrap().status().retained_libraries, 2);
}

#[cfg(unix)]
#[test]
fn fifos_dropped_into_a_watched_directory_block_nothing() {
    let base = tempfile::tempdir().unwrap();
    let (_m, events, watcher) = watched(base.path());
    let mkfifo = |path: &std::path::Path| {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.unwrap().success());
    };
    // A FIFO where plugin.json belongs, and a FIFO where the library belongs.
    let staging = tempfile::tempdir().unwrap();
    let fifo_manifest = staging.path().join("fifo-manifest");
    std::fs::create_dir(&fifo_manifest).unwrap();
    mkfifo(&fifo_manifest.join("plugin.json"));
    std::fs::rename(&fifo_manifest, base.path().join("fifo-manifest")).unwrap();
    let fifo_library = staging.path().join("hello");
    std::fs::create_dir(&fifo_library).unwrap();
    std::fs::copy(
        fixtures().plugin("hello").dir.join("plugin.json"),
        fifo_library.join("plugin.json"),
    )
    .unwrap();
    mkfifo(&fifo_library.join(plugin_test_support::library_file_name("hello")));
    std::fs::rename(&fifo_library, base.path().join("hello")).unwrap();

    let mut failed = Vec::new();
    while failed.len() < 2 {
        match next_event(&events) {
            Event::Failed { name, error } => failed.push((name, error)),
            other => panic!("unexpected {other:?}"),
        }
    }
    failed.sort();
    assert_eq!(failed[0].0, "fifo-manifest");
    assert!(failed[0].1.contains("FIFO"), "{}", failed[0].1);
    assert_eq!(failed[1].0, "hello");
    assert!(
        failed[1].1.contains("not a regular file"),
        "{}",
        failed[1].1
    );

    // The worker still serves: a good plugin dropped in after them loads.
    fixtures().install(base.path(), "counter");
    assert!(matches!(next_event(&events), Event::Loaded { name, .. } if name == "counter"));

    // And the watcher stops when dropped.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(watcher);
        let _ = tx.send(());
    });
    rx.recv_timeout(crate::util::EVENT_TIMEOUT)
        .expect("dropping the watcher returns");
}
