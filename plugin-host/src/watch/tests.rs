//! The watcher against a mock target, on real directories.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Seek, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::*;
use crate::manifest::MANIFEST_FILE;

/// This test binary: a real, complete ELF (Mach-O, PE) file, standing in for a library.
fn exe_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(std::env::current_exe().unwrap()).unwrap())
}

/// How long a test waits for a call before failing.
const TIMEOUT: Duration = Duration::from_secs(10);
const DEBOUNCE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Load(String),
    Reload(String),
    Unload(String),
}

/// Records calls; loads succeed (the name becomes loaded), except for `panic_on`.
struct Mock {
    base: PathBuf,
    loaded: Mutex<HashSet<String>>,
    disabled: HashSet<String>,
    panic_on: Option<String>,
    calls: mpsc::Sender<(Call, Instant)>,
}

impl Mock {
    fn record(&self, call: Call) {
        let _ = self.calls.send((call, Instant::now()));
    }
}

impl WatchTarget for Mock {
    fn base_dir(&self) -> &Path {
        &self.base
    }
    fn is_loaded(&self, name: &str) -> bool {
        self.loaded.lock().unwrap().contains(name)
    }
    fn is_disabled(&self, name: &str) -> bool {
        self.disabled.contains(name)
    }
    fn watch_load(&self, name: &str) {
        if self.panic_on.as_deref() == Some(name) {
            panic!("the mock refuses to load {name}");
        }
        self.loaded.lock().unwrap().insert(name.to_owned());
        self.record(Call::Load(name.to_owned()));
    }
    fn watch_reload(&self, name: &str) {
        self.record(Call::Reload(name.to_owned()));
    }
    fn watch_unload(&self, name: &str) {
        self.loaded.lock().unwrap().remove(name);
        self.record(Call::Unload(name.to_owned()));
    }
}

struct Setup {
    base: tempfile::TempDir,
    mock: Arc<Mock>,
    calls: mpsc::Receiver<(Call, Instant)>,
    watcher: Watcher,
}

fn setup_with(disabled: &[&str], panic_on: Option<&str>, options: WatchOptions) -> Setup {
    let base = tempfile::tempdir().unwrap();
    let (tx, calls) = mpsc::channel();
    let mock = Arc::new(Mock {
        base: base.path().to_path_buf(),
        loaded: Mutex::new(HashSet::new()),
        disabled: disabled.iter().map(|s| s.to_string()).collect(),
        panic_on: panic_on.map(str::to_owned),
        calls: tx,
    });
    let watcher = Watcher::start(Arc::clone(&mock), options).unwrap();
    Setup {
        base,
        mock,
        calls,
        watcher,
    }
}

fn setup() -> Setup {
    setup_with(&[], None, WatchOptions::default().with_debounce(DEBOUNCE))
}

impl Setup {
    fn dir(&self, name: &str) -> PathBuf {
        self.base.path().join(name)
    }

    /// Writes `<name>/plugin.json`, then the whole library, into `folder`.
    fn install_in(&self, folder: &str, name: &str) {
        let dir = self.dir(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), manifest(name)).unwrap();
        std::fs::write(library(&dir, name), exe_bytes()).unwrap();
    }

    fn install(&self, name: &str) {
        self.install_in(name, name);
    }

    /// The next call, failing after [`TIMEOUT`].
    fn next(&self) -> (Call, Instant) {
        self.calls
            .recv_timeout(TIMEOUT)
            .expect("no call from the watcher in time")
    }

    /// Installs a plugin named `marker` and asserts that the next call is its load:
    /// every event before it has been handled, without calling the target.
    fn assert_quiet(&self) {
        self.install("marker");
        assert_eq!(self.next().0, Call::Load("marker".into()));
    }
}

fn manifest(name: &str) -> String {
    format!(
        r#"{{"name":"{name}","version":"0.1.0","source":{{"mode":"local_so","path":"{name}"}}}}"#
    )
}

fn library(dir: &Path, name: &str) -> PathBuf {
    dir.join(plugin_test_support::library_file_name(name))
}

#[test]
fn new_plugin_folder_is_loaded_once() {
    let s = setup();
    s.install("hello");
    assert_eq!(s.next().0, Call::Load("hello".into()));
    s.assert_quiet();
}

#[test]
fn library_copied_slowly_is_loaded_once_complete() {
    let s = setup();
    let dir = s.dir("hello");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), manifest("hello")).unwrap();
    let exe = exe_bytes();
    let mut file = File::create(library(&dir, "hello")).unwrap();
    for cut in [16, exe.len() / 2, exe.len() - 1] {
        let written = file.stream_position().unwrap() as usize;
        file.write_all(&exe[written..cut]).unwrap();
        // A slow writer: pauses longer than the debounce, so each chunk is a batch of
        // its own that finds the library incomplete.
        std::thread::sleep(DEBOUNCE * 3);
    }
    let written = file.stream_position().unwrap() as usize;
    file.write_all(&exe[written..]).unwrap();
    let finished = Instant::now();
    drop(file);
    let (call, at) = s.next();
    assert_eq!(call, Call::Load("hello".into()));
    assert!(at >= finished, "loaded before the last chunk was written");
    s.assert_quiet();
}

#[test]
fn removed_folder_is_unloaded() {
    let s = setup();
    s.install("hello");
    assert_eq!(s.next().0, Call::Load("hello".into()));
    std::fs::remove_dir_all(s.dir("hello")).unwrap();
    assert_eq!(s.next().0, Call::Unload("hello".into()));
    s.assert_quiet();
}

#[test]
fn changed_library_or_manifest_reloads() {
    let s = setup();
    s.install("hello");
    assert_eq!(s.next().0, Call::Load("hello".into()));
    let dir = s.dir("hello");
    // Rewritten in place: truncated first, so briefly incomplete.
    std::fs::write(library(&dir, "hello"), exe_bytes()).unwrap();
    assert_eq!(s.next().0, Call::Reload("hello".into()));
    let upgraded = manifest("hello").replace("0.1.0", "0.2.0");
    std::fs::write(dir.join(MANIFEST_FILE), upgraded).unwrap();
    assert_eq!(s.next().0, Call::Reload("hello".into()));
    // Another file in the folder does not reload.
    std::fs::write(dir.join("README.md"), "hello").unwrap();
    s.assert_quiet();
}

#[test]
fn hidden_entries_and_files_are_ignored_until_renamed_into_place() {
    let s = setup();
    s.install_in(".hello.new", "hello");
    std::fs::write(s.dir("notes.txt"), "not a plugin").unwrap();
    std::fs::write(s.dir(".state"), "{}").unwrap();
    s.assert_quiet();
    std::fs::rename(s.dir(".hello.new"), s.dir("hello")).unwrap();
    assert_eq!(s.next().0, Call::Load("hello".into()));
}

#[test]
fn disabled_plugins_are_not_loaded() {
    let s = setup_with(
        &["off"],
        None,
        WatchOptions::default().with_debounce(DEBOUNCE),
    );
    s.install("off");
    s.assert_quiet();
}

#[test]
fn broken_manifest_is_handed_over_once_and_empty_one_waits() {
    let s = setup();
    let dir = s.dir("broken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(library(&dir, "broken"), exe_bytes()).unwrap();
    // Empty: still being created, nothing to do.
    std::fs::write(dir.join(MANIFEST_FILE), "").unwrap();
    s.assert_quiet();
    // Broken: the target is told once, and reports the error itself.
    std::fs::write(dir.join(MANIFEST_FILE), "{\"name\":").unwrap();
    assert_eq!(s.next().0, Call::Load("broken".into()));
    // Not again while the file stays as it is (a marker of another name is handled
    // after it, so a second call would come first).
    std::fs::remove_dir_all(s.dir("marker")).unwrap();
    assert_eq!(s.next().0, Call::Unload("marker".into()));
    s.assert_quiet();
}

#[test]
fn a_panicking_target_does_not_stop_the_watch() {
    let s = setup_with(
        &[],
        Some("boom"),
        WatchOptions::default().with_debounce(DEBOUNCE),
    );
    s.install("boom");
    s.assert_quiet();
    s.install("hello");
    assert_eq!(s.next().0, Call::Load("hello".into()));
}

#[test]
fn polling_works_too() {
    let options = WatchOptions::default()
        .with_debounce(DEBOUNCE)
        .with_poll_interval(Some(Duration::from_millis(50)));
    let s = setup_with(&[], None, options);
    s.install("hello");
    assert_eq!(s.next().0, Call::Load("hello".into()));
    std::fs::remove_dir_all(s.dir("hello")).unwrap();
    assert_eq!(s.next().0, Call::Unload("hello".into()));
}

#[test]
fn dropping_the_watcher_joins_its_thread() {
    let s = setup();
    assert_eq!(s.watcher.dir(), s.base.path());
    drop(s.watcher);
    // The thread ended and released its reference to the target.
    assert_eq!(Arc::strong_count(&s.mock), 1);
}

#[test]
fn start_errors_name_the_directory_and_the_fix() {
    let base = tempfile::tempdir().unwrap();
    let start = |dir: PathBuf, options| {
        let (calls, _) = mpsc::channel();
        let mock = Mock {
            base: dir,
            loaded: Mutex::default(),
            disabled: HashSet::new(),
            panic_on: None,
            calls,
        };
        Watcher::start(Arc::new(mock), options).unwrap_err()
    };

    let missing = base.path().join("missing");
    let err = start(missing.clone(), WatchOptions::default());
    assert!(matches!(err, WatchError::BaseDir { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains(&missing.display().to_string()), "{shown}");
    assert!(shown.contains("create it first"), "{shown}");

    let file = base.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = start(file, WatchOptions::default());
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        format!("{err}: {source:?}").contains("not a directory"),
        "{err}: {source:?}"
    );

    let err = start(
        base.path().into(),
        WatchOptions::default().with_debounce(Duration::ZERO),
    );
    assert!(matches!(
        err,
        WatchError::InvalidOption {
            option: "debounce",
            ..
        }
    ));
    let err = start(
        base.path().into(),
        WatchOptions::default().with_poll_interval(Some(Duration::ZERO)),
    );
    assert!(err.to_string().contains("poll_interval"), "{err}");
}

#[test]
fn notify_error_messages_carry_a_hint() {
    let err = WatchError::Notify {
        dir: "plugins".into(),
        source: notify::Error::new(notify::ErrorKind::MaxFilesWatch),
    };
    let shown = err.to_string();
    assert!(
        shown.starts_with("cannot watch the plugin directory plugins; "),
        "{shown}"
    );
    assert!(shown.contains("max_user_watches"), "{shown}");
}
