//! Load, call, unload, upgrade and shutdown in process mode: the same events and guarantees
//! as in-process, plus memory returned on unload and no worker left behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use plugin_host::{
    Context, Error, ErrorKind, Isolation, PluginManager, ProcessOptions, UpgradeOptions,
};
use plugin_test_support::{fixtures, install_folder, versioned_variant};

use crate::util::{alive, isolated, logged, wait_until, worker_pid, worker_status};

pub(crate) const TESTS: &[(&str, fn())] = &[
    (
        "lifecycle::values_label_and_logs_cross_to_the_worker_and_back",
        values_and_logs,
    ),
    ("lifecycle::only_the_plugins_named_run_isolated", per_plugin),
    (
        "lifecycle::a_load_failure_in_the_worker_is_typed_and_leaves_no_worker",
        load_failure,
    ),
    (
        "lifecycle::an_oversized_context_is_refused_and_the_worker_stays",
        oversized,
    ),
    (
        "lifecycle::unloading_returns_the_plugins_memory_and_ends_its_worker",
        unload_returns_memory,
    ),
    (
        "lifecycle::upgrades_under_load_fail_no_call_and_mix_no_versions",
        upgrade_under_load,
    ),
    (
        "lifecycle::dropping_the_manager_ends_every_worker",
        drop_ends_workers,
    ),
    ("lifecycle::concurrent_calls_are_served_at_once", concurrent),
    (
        "lifecycle::disable_ends_the_worker_and_enable_starts_one",
        disable_enable,
    ),
    (
        "lifecycle::the_watcher_loads_and_unloads_isolated_plugins",
        watched,
    ),
    (
        "lifecycle::long_log_lines_from_many_threads_arrive_whole",
        long_logs,
    ),
    (
        "lifecycle::on_unload_runs_in_the_worker_and_its_error_is_typed",
        on_unload_runs_in_the_worker,
    ),
    (
        "lifecycle::a_worker_program_that_does_not_serve_is_refused",
        start_failures,
    ),
];

fn values_and_logs() {
    let (_base, m) = isolated(&["hostile"], ProcessOptions::default());
    m.load_plugin("hostile").unwrap();
    let ctx = Context::background().with_label("ok");
    ctx.set(
        "kept",
        &serde_json::json!({ "nested": [1, "two", null, 3.5] }),
    )
    .unwrap();
    ctx.set_value("bytes", plugin_host::Value::Bytes(vec![0u8, 1, 255].into()));
    m.get("hostile").unwrap().execute(&ctx).unwrap();
    // The plugin's own values came back, and the host's are kept as they were.
    assert!(ctx.get::<u32>("pid").unwrap().is_some());
    assert_eq!(ctx.get::<bool>("started").unwrap(), Some(true));
    assert_eq!(
        ctx.get::<serde_json::Value>("kept").unwrap(),
        Some(serde_json::json!({ "nested": [1, "two", null, 3.5] }))
    );
    assert_eq!(
        ctx.get_value("bytes").unwrap(),
        Some(plugin_host::Value::Bytes(vec![0u8, 1, 255].into()))
    );
    assert_eq!(ctx.get::<bool>("cancelled_at_start").unwrap(), Some(false));
    // A context cancelled before the call is cancelled in the worker from its start.
    let cancelled = Context::background().with_label("ok");
    cancelled.cancel();
    m.get("hostile").unwrap().execute(&cancelled).unwrap();
    assert_eq!(
        cancelled.get::<bool>("cancelled_at_start").unwrap(),
        Some(true)
    );
    // Nothing the plugin starts would take itself for a worker or inherit the channel.
    assert_eq!(ctx.get::<bool>("env_marker").unwrap(), Some(false));
    assert_eq!(ctx.get::<u32>("inheritable_fds").unwrap(), Some(0));
    assert_eq!(ctx.get::<bool>("no_new_privs").unwrap(), Some(true));
    let mut keys = ctx.keys();
    keys.sort();
    assert_eq!(
        keys,
        [
            "bytes",
            "cancelled_at_start",
            "env_marker",
            "inheritable_fds",
            "kept",
            "no_new_privs",
            "pid",
            "started"
        ]
    );
    // Its log record reached this process's `tracing`, under its name.
    wait_until("the plugin's log line arrives", || {
        logged()
            .lines()
            .any(|l| l.contains("hostile says hello") && l.contains("plugin=\"hostile\""))
    });
}

fn per_plugin() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hostile");
    fixtures().install(base.path(), "noop");
    let m = PluginManager::builder(base.path())
        .isolate("hostile")
        .build();
    m.load_plugins().unwrap();
    assert_eq!(m.isolation_of("hostile"), Isolation::Process);
    assert_eq!(m.isolation_of("noop"), Isolation::InProcess);
    let noop = m.get("noop").unwrap().status().active.unwrap();
    assert_eq!((noop.isolation, noop.worker), (Isolation::InProcess, None));
    let hostile = m.get("hostile").unwrap().status().active.unwrap();
    assert_eq!(hostile.isolation, Isolation::Process);
    // The hooks the worker found: `hostile` has both (its on_load hangs only on request).
    assert_eq!((hostile.has_on_load, hostile.has_on_unload), (true, true));
    assert_ne!(worker_pid(&m), std::process::id());
    // Nothing of the isolated plugin was mapped into this process.
    assert_eq!(m.get("hostile").unwrap().status().retained_libraries, 0);
    assert_eq!(m.get("noop").unwrap().status().retained_libraries, 1);
}

fn load_failure() {
    let (_base, m) = isolated(&["panic-on-load"], ProcessOptions::default());
    let err = m.load_plugin("panic-on-load").unwrap_err();
    match &err {
        Error::OnLoad {
            plugin,
            kind,
            message,
        } => {
            assert_eq!(plugin, "panic-on-load");
            assert_eq!(*kind, ErrorKind::Panicked);
            assert!(message.contains("boom from panic-on-load"), "{message}");
        }
        other => panic!("expected OnLoad, got {other:?}"),
    }
    // The identity the code reports is checked in the worker as in the host: a record
    // edited to say 0.1.9, as the manifest does, passes the host's checks on the file, and
    // the worker refuses the code (which says 0.1.0) with the host's own error.
    let (base, m) = isolated(&["hello"], ProcessOptions::default());
    let dir = base.path().join("hello");
    plugin_test_support::edit_recorded_version(&dir, "hello", "0.1.0", "0.1.9");
    let err = m.load_plugin("hello").unwrap_err();
    assert!(
        matches!(
            &err,
            Error::IdentityMismatch { field: "version", expected, found, .. }
                if expected == "0.1.9" && found == "0.1.0"
        ),
        "{err}"
    );
    // A missing worker program is a start error that says what to do.
    let (_base, m) = isolated(
        &["hostile"],
        ProcessOptions::default().program("/nonexistent/worker"),
    );
    let err = m.load_plugin("hostile").unwrap_err();
    assert!(matches!(err, Error::WorkerStart { .. }), "{err}");
    assert!(err.to_string().contains("ProcessOptions::program"), "{err}");
}

/// A worker program that is a shell script doing `body`.
fn script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("worker.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn start_failures() {
    let programs = tempfile::tempdir().unwrap();
    // A program that does not serve (it never calls `isolate::init`): refused at the start
    // timeout, with a message that says what to check.
    let (_base, m) = isolated(
        &["hostile"],
        ProcessOptions::default()
            .program(script(programs.path(), "exec sleep 600"))
            .start_timeout(std::time::Duration::from_millis(300)),
    );
    let err = m.load_plugin("hostile").unwrap_err();
    assert!(matches!(err, Error::WorkerStart { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("did not report ready within 300ms"),
        "{err}"
    );
    assert!(err.to_string().contains("isolate::init()"), "{err}");
    // One that exits before it reports: refused with its status.
    let (_base, m) = isolated(
        &["hostile"],
        ProcessOptions::default().program(script(programs.path(), "exit 3")),
    );
    let err = m.load_plugin("hostile").unwrap_err();
    assert!(matches!(err, Error::WorkerStart { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("exited with status 3 before it reported ready"),
        "{err}"
    );
}

fn oversized() {
    let (_base, m) = isolated(&["hostile"], ProcessOptions::default().max_message(4096));
    m.load_plugin("hostile").unwrap();
    let before = worker_pid(&m);
    let ctx = Context::background().with_label("ok");
    ctx.set("big", &"x".repeat(10_000)).unwrap();
    let err = m.get("hostile").unwrap().execute(&ctx).unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { size, limit: 4096, .. } if size > 10_000),
        "{err}"
    );
    assert_eq!(worker_pid(&m), before);
}

/// This process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn on_unload_runs_in_the_worker() {
    // A version whose on_unload fails: the error comes back from the worker, typed.
    let base = tempfile::tempdir().unwrap();
    install_folder(
        &versioned_variant("1.0.0", &["fail-on-unload"]),
        base.path(),
        "versioned",
    );
    let m = PluginManager::builder(base.path())
        .isolation(Isolation::Process)
        .build();
    m.load_plugin("versioned").unwrap();
    let active = m.get("versioned").unwrap().status().active.unwrap();
    assert_eq!((active.has_on_load, active.has_on_unload), (true, true));
    let pid = active.worker.unwrap().pid.unwrap();
    let err = m.unload("versioned").unwrap_err();
    match &err {
        Error::OnUnload {
            plugin, message, ..
        } => {
            assert_eq!(plugin, "versioned");
            assert!(message.contains("built to fail in on_unload"), "{message}");
        }
        other => panic!("expected OnUnload, got {other:?}"),
    }
    assert!(!alive(pid));
    // Stopping on purpose is not a crash: nothing is logged as one.
    assert!(
        !logged().contains(&format!("pid={pid}")),
        "a worker stopped on purpose was logged as ended"
    );
}

fn unload_returns_memory() {
    let (_base, m) = isolated(&["hostile"], ProcessOptions::default());
    m.load_plugin("hostile").unwrap();
    let pid = worker_pid(&m);
    let host_before = rss_kib(std::process::id());
    let ctx = Context::background().with_label("leak");
    ctx.set("leak_mb", &300u64).unwrap();
    m.get("hostile").unwrap().execute(&ctx).unwrap();
    assert_eq!(ctx.get::<u64>("leaked_mb").unwrap(), Some(300));
    assert!(rss_kib(pid) > 300 * 1024, "the worker holds the leak");
    let host_during = rss_kib(std::process::id());
    assert!(
        host_during < host_before + 100 * 1024,
        "the host grew from {host_before} KiB to {host_during} KiB"
    );
    m.unload("hostile").unwrap();
    // `unload` returns once the worker is reaped: its memory is returned.
    assert!(!alive(pid), "worker {pid} outlived the unload");
}

fn upgrade_under_load() {
    let versions = ["1.0.0", "2.0.0", "1.0.1"];
    let folders: Vec<_> = versions.iter().map(|v| versioned_variant(v, &[])).collect();
    let base = tempfile::tempdir().unwrap();
    install_folder(&folders[0], base.path(), "versioned");
    let m = Arc::new(
        PluginManager::builder(base.path())
            .isolation(Isolation::Process)
            .build(),
    );
    m.load_plugin("versioned").unwrap();
    let handle = m.get("versioned").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (handle, stop) = (handle.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let ctx = Context::background();
                    let result = handle.execute(&ctx).map(|()| {
                        (
                            ctx.get::<String>("version_at_start").unwrap().unwrap(),
                            ctx.get::<String>("version_at_end").unwrap().unwrap(),
                        )
                    });
                    seen.push(result);
                }
                seen
            })
        })
        .collect();
    let mut pids = Vec::new();
    for i in 1..=20 {
        let next = i % versions.len();
        let up = m
            .upgrade(
                "versioned",
                &folders[next],
                UpgradeOptions::new().allow_downgrade(true),
            )
            .unwrap();
        assert!(up.drain.is_clean());
        let worker = m.get("versioned").unwrap().status().active.unwrap().worker;
        pids.push(worker.and_then(|w| w.pid).expect("a worker runs"));
    }
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for caller in callers {
        for result in caller.join().unwrap() {
            let (start, end) = result.expect("no call fails during upgrades");
            assert_eq!(start, end, "a call ran on two versions");
            calls += 1;
        }
    }
    assert!(calls > 0);
    // Each upgrade started a worker and ended the one before it.
    let last = pids.pop().unwrap();
    assert!(alive(last));
    for pid in pids {
        assert!(
            !alive(pid),
            "the worker of a replaced version ({pid}) still runs"
        );
    }
    assert_eq!(m.get("versioned").unwrap().status().retained_libraries, 0);
}

fn drop_ends_workers() {
    let (_base, m) = isolated(&["hostile", "versioned"], ProcessOptions::default());
    m.load_plugins().unwrap();
    let pid = worker_pid(&m);
    let other = {
        let status = m.get("versioned").unwrap().status();
        status.active.unwrap().worker.unwrap().pid.unwrap()
    };
    drop(m);
    assert!(
        !alive(pid) && !alive(other),
        "a worker outlived its manager"
    );
}

fn concurrent() {
    let (_base, m) = isolated(&["versioned"], ProcessOptions::default());
    m.load_plugin("versioned").unwrap();
    let handle = m.get("versioned").unwrap();
    // One call holds a lane until it is cancelled ...
    let held = Context::background();
    held.set("hold_ms", &600_000u64).unwrap();
    let cancel = held.cancel_handle();
    let holder = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            handle.execute(&held).unwrap();
            held
        })
    };
    wait_until("the held call is in flight", || {
        handle.status().calls_in_flight == 1
    });
    // ... while others, from two more threads, are answered.
    let others: Vec<_> = (0..2)
        .map(|_| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    handle.execute(&Context::background()).unwrap();
                }
            })
        })
        .collect();
    for other in others {
        other.join().unwrap();
    }
    assert_eq!(
        handle.status().calls_in_flight,
        1,
        "the held call still runs"
    );
    cancel.cancel();
    let held = holder.join().unwrap();
    assert_eq!(
        held.get::<String>("version_at_end").unwrap().as_deref(),
        Some("1.0.0")
    );
}

fn disable_enable() {
    let (_base, m) = isolated(&["hostile"], ProcessOptions::default());
    m.load_plugin("hostile").unwrap();
    let pid = worker_pid(&m);
    m.disable("hostile").unwrap();
    assert!(!alive(pid), "disable ended the worker");
    m.enable("hostile").unwrap();
    let again = worker_pid(&m);
    assert_ne!(again, pid);
    assert!(alive(again));
    // Enabling an active plugin that is not quarantined changes nothing.
    m.enable("hostile").unwrap();
    assert_eq!(worker_pid(&m), again);
}

fn watched() {
    let base = tempfile::tempdir().unwrap();
    let m = Arc::new(
        PluginManager::builder(base.path())
            .isolation(Isolation::Process)
            .build(),
    );
    let events = m.subscribe();
    let _watcher = m
        .watch_with(
            plugin_host::WatchOptions::default()
                .with_debounce(std::time::Duration::from_millis(100)),
        )
        .unwrap();
    let dir = fixtures().install(base.path(), "hostile");
    loop {
        match events
            .recv_timeout(crate::util::TIMEOUT)
            .expect("a load event")
        {
            plugin_host::Event::Loaded { name, .. } if name == "hostile" => break,
            _ => continue,
        }
    }
    let pid = worker_pid(&m);
    std::fs::remove_dir_all(dir).unwrap();
    loop {
        match events
            .recv_timeout(crate::util::TIMEOUT)
            .expect("an unload event")
        {
            plugin_host::Event::Unloaded { name } if name == "hostile" => break,
            _ => continue,
        }
    }
    assert!(!alive(pid), "the watcher's unload ended the worker");
}

fn long_logs() {
    let (_base, m) = isolated(&["hostile"], ProcessOptions::default());
    m.load_plugin("hostile").unwrap();
    let m = Arc::new(m);
    let pid = worker_pid(&m);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let (_ctx, result) = crate::util::call(&m, "shout");
                    result.expect("a call that logs succeeds");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let worker = worker_status(&m);
    assert_eq!((worker.pid, worker.restarts), (Some(pid), 0));
}
