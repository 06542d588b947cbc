//! A state file that is not a regular file (a FIFO, a symlink to `/dev/zero`) neither blocks
//! loading nor fills memory, and fails closed: loads and writes fail at once, naming the file
//! and what it is, and no plugin (which might be disabled in it) loads.
//!
//! A regression would hang on the FIFO or read `/dev/zero` without end, so each case runs in
//! a child process (this test binary again) whose address space is capped, waited for with a
//! bound, and inside it the load runs in a thread waited for with a bound too.
#![cfg(unix)]

use std::ffi::CString;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use plugin_host::{PluginManager, STATE_FILE};
use plugin_test_support::fixtures;

/// Set in the child process to the base directory the parent prepared.
const CHILD_BASE: &str = "PLUGIN_HOST_TEST_STATE_FILE_BASE";
/// The longest the child may take, building nothing: a hang ends as a failure.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest loading and disabling may take in the child.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The child's address space: ample for loading a plugin, far below what reading
/// `/dev/zero` without end would take, so a regression fails instead of exhausting memory.
const CHILD_ADDRESS_SPACE: u64 = 2 << 30;

#[test]
fn a_fifo_state_file_neither_blocks_loading_nor_is_replaced() {
    in_child(
        "state_file::a_fifo_state_file_neither_blocks_loading_nor_is_replaced",
        |state| {
            let path = CString::new(state.as_os_str().as_bytes()).unwrap();
            // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
            let rc = unsafe { libc::mkfifo(path.as_ptr(), 0o600) };
            assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
        },
        "a FIFO (named pipe)",
        |state| {
            let meta = std::fs::symlink_metadata(state).unwrap();
            assert!(meta.file_type().is_fifo(), "the FIFO is still there");
        },
    );
}

#[test]
fn a_dev_zero_state_file_is_refused_without_reading_it() {
    in_child(
        "state_file::a_dev_zero_state_file_is_refused_without_reading_it",
        |state| std::os::unix::fs::symlink("/dev/zero", state).unwrap(),
        "a character device",
        |state| {
            assert_eq!(std::fs::read_link(state).unwrap(), Path::new("/dev/zero"));
        },
    );
}

#[test]
fn a_disabled_plugin_stays_disabled_when_the_state_file_is_corrupted() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    fixtures().install(base.path(), "counter");
    PluginManager::new(base.path()).disable("hello").unwrap();
    let state = base.path().join(STATE_FILE);
    // Cut short, as a full disk or a careless edit leaves it.
    let text = std::fs::read(&state).unwrap();
    std::fs::write(&state, &text[..text.len() / 2]).unwrap();

    let manager = PluginManager::new(base.path());
    let report = manager.load_plugins().unwrap();
    assert_eq!(
        report.loaded().count(),
        0,
        "nothing loads past an unreadable state file"
    );
    let err = report.error("hello").expect("hello is refused");
    assert!(
        matches!(err, plugin_host::Error::StateFile { action: "read", .. }),
        "{err}"
    );
    let shown = err.report();
    assert!(shown.contains(&state.display().to_string()), "{shown}");
    assert!(
        shown.contains("delete it to enable every plugin"),
        "{shown}"
    );
    assert!(manager.is_disabled("hello") && manager.is_disabled("counter"));
    assert!(
        manager.enable("hello").is_err(),
        "no write over a file it could not read"
    );

    // Deleting it is the documented way out: every plugin is enabled.
    std::fs::remove_file(&state).unwrap();
    let report = PluginManager::new(base.path()).load_plugins().unwrap();
    assert_eq!(report.loaded().count(), 2);
}

/// In the parent: lays out `hello` and, via `make`, the state file in a new base directory,
/// then runs test `name` again in a child process and checks that it passed in time. In the
/// child: loads the plugins and tries to disable `hello`, checking that loading succeeds and
/// that the write fails with an error naming the state file and `what` it is; `unchanged`
/// then checks the file was left alone.
fn in_child(name: &str, make: fn(&Path), what: &str, unchanged: fn(&Path)) {
    if let Some(base) = std::env::var_os(CHILD_BASE) {
        cap_address_space();
        let base = Path::new(&base);
        let state = base.join(STATE_FILE);
        let (tx, rx) = mpsc::channel();
        let thread_base = base.to_owned();
        std::thread::spawn(move || {
            let manager = PluginManager::new(&thread_base);
            let report = manager.load_plugins().unwrap();
            let loaded = report.loaded().map(str::to_owned).collect::<Vec<_>>();
            let load_err = report.error("hello").map(|e| e.report());
            let disable = manager.disable("hello").map_err(|e| e.report());
            let _ = tx.send((loaded, load_err, disable));
        });
        let (loaded, load_err, disable) = rx
            .recv_timeout(LOAD_TIMEOUT)
            .expect("load_plugins and disable return within the timeout");
        assert!(
            loaded.is_empty(),
            "{loaded:?} loaded, though it may be disabled"
        );
        let load_err = load_err.expect("hello's load failed");
        let err = disable.expect_err("a write must not replace a file it could not read");
        for err in [load_err, err] {
            assert!(err.contains(&state.display().to_string()), "{err}");
            assert!(
                err.contains(&format!("it is {what}, not a regular file")),
                "{err}"
            );
        }
        unchanged(&state);
        return;
    }

    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    make(&base.path().join(STATE_FILE));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_BASE, base.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pipes reach end of file when the child exits: that is what is waited for.
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let output = rx.recv_timeout(CHILD_TIMEOUT);
    if output.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let output = output.unwrap_or_else(|_| panic!("the child ran longer than {CHILD_TIMEOUT:?}"));
    assert!(status.success(), "child {status}:\n{output}");
    assert!(
        output.contains("1 passed"),
        "the child ran the test:\n{output}"
    );
}

/// Caps this process's address space at [`CHILD_ADDRESS_SPACE`].
fn cap_address_space() {
    let limit = libc::rlimit {
        rlim_cur: CHILD_ADDRESS_SPACE as libc::rlim_t,
        rlim_max: CHILD_ADDRESS_SPACE as libc::rlim_t,
    };
    // SAFETY: `limit` is a valid `rlimit` that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}
