//! No process outlives its plugin: what the plugin starts (a child in its process group, a
//! grandchild in a session of its own) is gone after an unload, a deadline kill, a crash
//! and the host's SIGKILL; a worker stuck in `on_load` is gone once its host is SIGKILLed;
//! and a worker's environment is the allow-list plus what was passed, never `PLUGCTL_*`.
//!
//! A host to SIGKILL is this test binary run again with [`HOST_ENV`] set (see [`host`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plugin_host::isolate::PassEnvError;
use plugin_host::{Context, Isolation, PluginManager, ProcessOptions};
use plugin_test_support::fixtures;

use crate::util::{alive, isolated, worker_pid, TIMEOUT};

pub(crate) const TESTS: &[(&str, fn())] = &[
    (
        "orphans::what_the_plugin_started_is_gone_after_an_unload",
        after_unload,
    ),
    (
        "orphans::what_the_plugin_started_is_gone_after_a_deadline_kill",
        after_deadline_kill,
    ),
    (
        "orphans::what_the_plugin_started_is_gone_after_a_crash",
        after_crash,
    ),
    (
        "orphans::what_the_plugin_started_is_gone_after_the_host_is_sigkilled",
        after_host_sigkill,
    ),
    (
        "orphans::a_worker_hanging_in_on_load_is_gone_after_the_host_is_sigkilled",
        on_load_hang,
    ),
    (
        "orphans::a_worker_sees_only_the_allowed_and_passed_environment",
        environment,
    ),
    (
        "orphans::a_plugin_that_kills_its_keeper_is_restarted_though_its_children_hold_the_socket",
        kills_its_keeper,
    ),
];

/// Set in a child process run as a host: the scenario it plays.
pub(crate) const HOST_ENV: &str = "ISOLATION_TEST_HOST";
/// The base directory of the host in a child process.
const BASE_ENV: &str = "ISOLATION_TEST_BASE";
/// Where the host in a child process has the plugin write the pids it started.
const PIDS_ENV: &str = "ISOLATION_TEST_PIDS";

/// How long a process may take to be gone once its end is due.
const GONE_BOUND: Duration = Duration::from_secs(10);

/// Kills, when dropped, the processes a test saw start and that still run, so that a
/// failing test leaves nothing behind.
struct Leftovers(Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                // SAFETY: kill(2) with a pid and a constant signal.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// A child process killed and reaped when dropped.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits, at most [`GONE_BOUND`], until every one of `pids` is gone.
fn assert_gone_soon(pids: &[u32], what: &str) {
    let start = Instant::now();
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < GONE_BOUND,
            "{what}: {left:?} of {pids:?} still run {GONE_BOUND:?} later"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The pids in `file`, once it exists (at most [`TIMEOUT`]); `watch` is asked each time
/// whether to keep waiting (false: the writer died).
fn read_pids(file: &Path, mut watch: impl FnMut() -> bool) -> Vec<u32> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            return text
                .split_whitespace()
                .map(|p| p.parse().expect("a pid"))
                .collect();
        }
        assert!(watch(), "{} was never written", file.display());
        assert!(
            start.elapsed() < TIMEOUT,
            "{} was never written",
            file.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A `spawn` call's context: the label and where the pids go.
fn spawn_call(label: &str, file: &Path) -> Context {
    spawn_call_in(Context::background(), label, file)
}

fn spawn_call_in(ctx: Context, label: &str, file: &Path) -> Context {
    let ctx = ctx.with_label(label);
    ctx.set("pid_file", &file.to_str().unwrap()).unwrap();
    ctx
}

/// Loads `hostile` in a worker, has it start its two processes, and checks they run;
/// returns the manager, the worker's pid and theirs.
fn spawned(
    options: ProcessOptions,
) -> (tempfile::TempDir, PluginManager, u32, Vec<u32>, Leftovers) {
    let (base, m) = isolated(&["hostile"], options);
    m.load_plugin("hostile").unwrap();
    let worker = worker_pid(&m);
    let file = base.path().join("pids");
    let ctx = spawn_call("spawn", &file);
    m.get("hostile").unwrap().execute(&ctx).unwrap();
    let pids: Vec<u32> = ctx.get("spawned").unwrap().expect("the pids it started");
    let guard = Leftovers(pids.clone());
    assert_eq!(pids.len(), 2, "{pids:?}");
    for &pid in &pids {
        assert!(alive(pid), "{pid} runs before the worker ends");
    }
    (base, m, worker, pids, guard)
}

fn after_unload() {
    let (_base, m, worker, pids, _guard) = spawned(ProcessOptions::default());
    m.unload("hostile").unwrap();
    assert_gone_soon(&[worker], "the unloaded plugin's worker");
    assert_gone_soon(&pids, "what the unloaded plugin started");
}

fn after_deadline_kill() {
    let (base, m) = isolated(
        &["hostile"],
        ProcessOptions::default().grace(Duration::from_millis(200)),
    );
    m.load_plugin("hostile").unwrap();
    let worker = worker_pid(&m);
    let file = base.path().join("pids");
    let ctx = spawn_call_in(
        Context::with_timeout(Duration::from_millis(300)),
        "spawn_spin",
        &file,
    );
    let err = m.get("hostile").unwrap().execute(&ctx).unwrap_err();
    assert!(err.to_string().contains("ignored its deadline"), "{err}");
    let pids = read_pids(&file, || true);
    let _guard = Leftovers(pids.clone());
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert_gone_soon(&[worker], "the killed worker");
    assert_gone_soon(&pids, "what the plugin of a killed worker started");
    // The plugin restarts and serves.
    assert_ne!(worker_pid(&m), worker);
}

fn after_crash() {
    let (_base, m, worker, pids, _guard) = spawned(ProcessOptions::default());
    let ctx = Context::background().with_label("abort");
    let err = m.get("hostile").unwrap().execute(&ctx).unwrap_err();
    assert!(
        matches!(err, plugin_host::Error::WorkerCrashed { .. }),
        "{err}"
    );
    assert_gone_soon(&[worker], "the crashed worker");
    assert_gone_soon(&pids, "what the plugin of a crashed worker started");
}

fn kills_its_keeper() {
    let (base, m) = isolated(
        &["hostile"],
        ProcessOptions::default().backoff(Duration::from_millis(1), Duration::from_millis(5)),
    );
    m.load_plugin("hostile").unwrap();
    let worker = worker_pid(&m);
    let file = base.path().join("pids");
    let ctx = spawn_call_in(Context::with_timeout(TIMEOUT), "kill_parent", &file);
    let started = Instant::now();
    let err = m.get("hostile").unwrap().execute(&ctx).unwrap_err();
    let took = started.elapsed();
    let pids = read_pids(&file, || true);
    let _guard = Leftovers(pids.clone());
    // The keeper died by SIGKILL, and the plugin process with it; the host saw it though
    // what the plugin started still holds the worker's end of the socket.
    match err {
        plugin_host::Error::WorkerCrashed { exit, .. } => assert_eq!(
            exit,
            plugin_host::isolate::WorkerExit::Signaled {
                signal: libc::SIGKILL
            }
        ),
        other => panic!("expected WorkerCrashed, got {other}"),
    }
    // Seen when the keeper ended, not when a read of the socket gave up (5 s).
    assert!(
        took < Duration::from_millis(2500),
        "the crash took {took:?}"
    );
    assert_gone_soon(&[worker], "the plugin process of a killed keeper");
    // A new worker serves, within a deadline.
    let ctx = Context::with_timeout(TIMEOUT).with_label("ok");
    m.get("hostile").unwrap().execute(&ctx).unwrap();
    let again: u32 = ctx.get("pid").unwrap().unwrap();
    assert_ne!(again, worker);
    // The documented gap: what it started was orphaned to init, out of the keeper's reach.
    // `Leftovers` kills it.
}

/// Runs this binary as a host playing `scenario` over `base`, with `env` added.
fn start_host(scenario: &str, base: &Path, pids: &Path, env: &[(&str, &str)]) -> Host {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(HOST_ENV, scenario)
        .env(BASE_ENV, base)
        .env(PIDS_ENV, pids)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    Host(command.spawn().expect("the host starts"))
}

/// SIGKILLs the host and reaps it.
fn sigkill(host: &mut Host) {
    host.0.kill().expect("the host is killed");
    let status = host.0.wait().expect("the host is reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{status:?}"
    );
}

/// Whether the host still runs (false once it exited, which no scenario does on its own
/// before it is killed).
fn still_runs(host: &mut Host) -> bool {
    matches!(host.0.try_wait(), Ok(None))
}

fn after_host_sigkill() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hostile");
    let file = base.path().join("pids");
    let mut host = start_host("spawn", base.path(), &file, &[]);
    let pids = read_pids(&file, || still_runs(&mut host));
    let _guard = Leftovers(pids.clone());
    // The host's worker: the plugin process, which reported its pid beside the others.
    assert_eq!(pids.len(), 3, "{pids:?}");
    for &pid in &pids {
        assert!(alive(pid), "{pid} runs before the host is killed");
    }
    sigkill(&mut host);
    assert_gone_soon(
        &pids,
        "the worker of a SIGKILLed host and what its plugin started",
    );
}

fn on_load_hang() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hostile");
    let file = base.path().join("pids");
    let mut host = start_host(
        "load",
        base.path(),
        &file,
        &[("HOSTILE_LOAD_PID_FILE", file.to_str().unwrap())],
    );
    let pids = read_pids(&file, || still_runs(&mut host));
    let _guard = Leftovers(pids.clone());
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert!(alive(pids[0]), "the worker hangs in on_load");
    sigkill(&mut host);
    assert_gone_soon(&pids, "a worker in on_load when its host was SIGKILLed");
}

fn environment() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hostile");
    let file = base.path().join("pids");
    let host = start_host(
        "env",
        base.path(),
        &file,
        &[
            ("PLUGCTL_TOKEN", "secret-token"),
            ("ISOLATION_TEST_UNLISTED", "unlisted"),
            ("ISOLATION_TEST_PASSED", "passed"),
            ("LC_ISOLATION_TEST", "a locale"),
            ("PATH", "/usr/bin:/bin"),
        ],
    );
    let out = wait_bounded(host);
    assert!(out.status.success(), "{:?}", out.status);
    let env: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&out.stdout).expect("the environment as JSON");
    assert_eq!(
        env.get("ISOLATION_TEST_PASSED").map(String::as_str),
        Some("passed")
    );
    assert_eq!(
        env.get("LC_ISOLATION_TEST").map(String::as_str),
        Some("a locale")
    );
    assert_eq!(env.get("PATH").map(String::as_str), Some("/usr/bin:/bin"));
    assert!(!env.contains_key("PLUGCTL_TOKEN"), "{env:?}");
    assert!(!env.contains_key("ISOLATION_TEST_UNLISTED"), "{env:?}");
    // Nothing but the allow-list and the passed name (the worker marker is removed before
    // the plugin runs).
    for name in env.keys() {
        let allowed = plugin_host::isolate::ALLOWED_ENV
            .iter()
            .any(|a| match a.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == a,
            });
        assert!(
            allowed || name == "ISOLATION_TEST_PASSED",
            "{name} reached the worker: {env:?}"
        );
    }
}

/// Waits for the host to exit, at most [`TIMEOUT`]; its output.
fn wait_bounded(mut host: Host) -> std::process::Output {
    let start = Instant::now();
    loop {
        if host.0.try_wait().expect("the host is waited for").is_some() {
            let mut stdout = Vec::new();
            if let Some(mut pipe) = host.0.stdout.take() {
                std::io::Read::read_to_end(&mut pipe, &mut stdout).unwrap();
            }
            let status = host.0.wait().unwrap();
            return std::process::Output {
                status,
                stdout,
                stderr: Vec::new(),
            };
        }
        assert!(start.elapsed() < TIMEOUT, "the host did not exit");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// This binary as a host in a child process, playing `scenario`: never returns.
///
/// - `spawn`: loads `hostile` in a worker, has it start its processes, writes the worker's
///   pid and theirs into the pid file, and waits to be killed;
/// - `load`: loads `hostile` with `HOSTILE_LOAD_PID_FILE` passed, so its `on_load` writes
///   the worker's pid and hangs; waits to be killed;
/// - `env`: loads `hostile` with `ISOLATION_TEST_PASSED` passed (and `PLUGCTL_TOKEN`
///   asked for, which is refused), and prints the worker's environment as JSON.
pub(crate) fn host(scenario: &str) -> ! {
    let base = PathBuf::from(std::env::var_os(BASE_ENV).expect("the base directory"));
    let pids = PathBuf::from(std::env::var_os(PIDS_ENV).expect("the pid file"));
    let mut options = ProcessOptions::default().start_timeout(TIMEOUT * 4);
    match scenario {
        "load" => options = options.pass_env("HOSTILE_LOAD_PID_FILE").unwrap(),
        "env" => {
            assert!(matches!(
                options.clone().pass_env("PLUGCTL_TOKEN"),
                Err(PassEnvError::Reserved { .. })
            ));
            options = options.pass_env("ISOLATION_TEST_PASSED").unwrap();
        }
        _ => {}
    }
    let m = PluginManager::builder(&base)
        .isolation(Isolation::Process)
        .process_options(options)
        .build();
    m.load_plugin("hostile").unwrap();
    match scenario {
        "spawn" => {
            let worker = worker_pid(&m);
            let scratch = base.join("spawned");
            let ctx = spawn_call("spawn", &scratch);
            m.get("hostile").unwrap().execute(&ctx).unwrap();
            let spawned: Vec<u32> = ctx.get("spawned").unwrap().unwrap();
            let text = format!("{worker} {} {}", spawned[0], spawned[1]);
            let partial = pids.with_extension("partial");
            std::fs::write(&partial, text).unwrap();
            std::fs::rename(&partial, &pids).unwrap();
        }
        "env" => {
            let ctx = Context::background().with_label("env");
            m.get("hostile").unwrap().execute(&ctx).unwrap();
            let env: serde_json::Value = ctx.get("env").unwrap().unwrap();
            println!("{env}");
            std::process::exit(0)
        }
        other => panic!("unknown scenario {other}"),
    }
    loop {
        std::thread::park();
    }
}
