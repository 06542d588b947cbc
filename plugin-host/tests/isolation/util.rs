//! Helpers for the isolation tests.

use std::time::{Duration, Instant};

use plugin_host::{Context, Isolation, PluginManager, ProcessOptions};
use plugin_test_support::fixtures;

/// The longest a test waits for anything; a hang ends as a failure with a message.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// A manager over a fresh base directory holding `plugins`, all run in worker processes.
pub(crate) fn isolated(
    plugins: &[&str],
    options: ProcessOptions,
) -> (tempfile::TempDir, PluginManager) {
    let base = tempfile::tempdir().unwrap();
    for name in plugins {
        fixtures().install(base.path(), name);
    }
    let manager = PluginManager::builder(base.path())
        .isolation(Isolation::Process)
        .process_options(options)
        .build();
    (base, manager)
}

/// Runs `hostile` with `label`.
pub(crate) fn call(
    manager: &PluginManager,
    label: &str,
) -> (Context, Result<(), plugin_host::Error>) {
    let ctx = Context::background().with_label(label);
    let result = manager.get("hostile").and_then(|h| h.execute(&ctx));
    (ctx, result)
}

/// The pid the `hostile` plugin runs in (an `ok` call).
pub(crate) fn worker_pid(manager: &PluginManager) -> u32 {
    let (ctx, result) = call(manager, "ok");
    result.expect("an ok call succeeds");
    ctx.get::<u32>("pid")
        .unwrap()
        .expect("the plugin records its pid")
}

/// The worker status of the `hostile` plugin's active version.
pub(crate) fn worker_status(manager: &PluginManager) -> plugin_host::isolate::WorkerStatus {
    let status = manager.get("hostile").unwrap().status();
    status
        .active
        .expect("an active version")
        .worker
        .expect("a worker")
}

/// Whether process `pid` exists (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `done` holds, failing after [`TIMEOUT`]; polled every millisecond (nothing
/// notifies it), so the waiting thread does not compete for a core with what it waits for.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Everything logged through `tracing` in this test binary, as `fmt` writes it.
static LOGGED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGGED.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends every `tracing` record of the test binary to [`logged`]; call once, in `main`.
pub(crate) fn capture_logs() {
    tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
}

/// What was logged so far.
pub(crate) fn logged() -> String {
    String::from_utf8_lossy(&LOGGED.lock().unwrap()).into_owned()
}
