//! Files the host did not write, made hostile: none of them can block, flood or stop the
//! loading of the good plugins beside them.

use std::path::Path;
use std::sync::mpsc;

use plugin_host::manifest::{ManifestError, MAX_MANIFEST_BYTES};
use plugin_host::{Error, PluginManager, PluginState};
use plugin_test_support::fixtures;

use crate::util::EVENT_TIMEOUT;

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.unwrap().success(), "mkfifo {}", path.display());
}

/// A base directory holding `hello` and one folder per kind of hostile `plugin.json`.
fn hostile_base() -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let folder = |name: &str| {
        let dir = base.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir.join("plugin.json")
    };
    // Sorted before and after `hello`, so neither order hides a hang.
    mkfifo(&folder("a-fifo"));
    mkfifo(&folder("z-fifo"));
    #[cfg(unix)]
    std::os::unix::fs::symlink("/dev/zero", folder("zero")).unwrap();
    // 50 MB, sparse: cheap to make, and far past the cap.
    std::fs::File::create(folder("huge"))
        .unwrap()
        .set_len(50 << 20)
        .unwrap();
    std::fs::create_dir(folder("dir")).unwrap();
    base
}

#[test]
fn hostile_manifests_fail_alone_and_at_once() {
    let base = hostile_base();
    let path = base.path().to_path_buf();
    // On a thread, so a regression fails with a message instead of hanging the test run.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let m = PluginManager::new(&path);
        let report = m.load_plugins();
        let _ = tx.send((m.state("hello"), report));
    });
    let (hello, report) = rx
        .recv_timeout(EVENT_TIMEOUT)
        .expect("load_plugins returns although FIFOs and /dev/zero lie in the base directory");
    assert_eq!(hello, Some(PluginState::Active));
    let report = report.unwrap();
    let manifest_error = |name: &str| match report.error(name) {
        Some(Error::Manifest(e)) => e,
        other => panic!("{name}: expected a manifest error, got {other:?}"),
    };
    for fifo in ["a-fifo", "z-fifo"] {
        assert!(
            matches!(manifest_error(fifo), ManifestError::NotAFile { kind, .. } if kind.contains("FIFO")),
            "{fifo}"
        );
    }
    assert!(matches!(
        manifest_error("zero"),
        ManifestError::NotAFile {
            kind: "a character device",
            ..
        }
    ));
    assert!(matches!(
        manifest_error("dir"),
        ManifestError::NotAFile {
            kind: "a directory",
            ..
        }
    ));
    let huge = manifest_error("huge");
    assert!(matches!(huge, ManifestError::TooLarge { cap, .. } if *cap == MAX_MANIFEST_BYTES));
    assert!(huge.to_string().contains("huge/plugin.json"), "{huge}");
    assert_eq!(report.failed().count(), 5);
}
