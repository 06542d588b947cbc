//! A plugin that crashes or hangs in its worker: the host survives, the call returns a typed
//! error, and the next call runs on a restarted worker; a plugin that keeps crashing is
//! quarantined.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_host::isolate::WorkerExit;
use plugin_host::{CancelReason, Context, Error, ErrorKind, Event, PluginState, ProcessOptions};

use crate::util::{call, isolated, worker_pid, worker_status, TIMEOUT};

pub(crate) const TESTS: &[(&str, fn())] = &[
    (
        "crashes::each_crash_fails_its_call_and_the_next_runs_on_a_new_worker",
        each_crash,
    ),
    (
        "crashes::a_call_ignoring_its_deadline_returns_on_time_and_others_keep_running",
        stuck_call,
    ),
    (
        "crashes::a_cancellation_reaches_the_plugin_in_its_worker",
        cancellation,
    ),
    (
        "crashes::a_plugin_that_keeps_crashing_is_quarantined_until_reloaded_or_enabled",
        quarantine,
    ),
    (
        "crashes::a_worker_over_its_memory_limit_ends_and_the_host_does_not",
        memory_limit,
    ),
    ("crashes::a_restart_waits_out_its_back_off", back_off_waits),
    (
        "crashes::crashes_older_than_the_window_do_not_count",
        window,
    ),
    (
        "crashes::a_drain_that_times_out_twice_kills_the_worker",
        drain_kills,
    ),
];

/// Fast restarts, so the tests do not wait on back-off.
fn quick() -> ProcessOptions {
    ProcessOptions::default().backoff(Duration::from_millis(1), Duration::from_millis(5))
}

fn each_crash() {
    let (_base, m) = isolated(&["hostile"], quick());
    m.load_plugin("hostile").unwrap();
    let events = m.subscribe();
    let cases: &[(&str, Option<WorkerExit>)] = &[
        (
            "segfault",
            Some(WorkerExit::Signaled {
                signal: libc_sig::SEGV,
            }),
        ),
        (
            "abort",
            Some(WorkerExit::Signaled {
                signal: libc_sig::ABRT,
            }),
        ),
        ("exit", Some(WorkerExit::Exited { status: 7 })),
        // Rust's guard-page handler reports the overflow, then aborts.
        (
            "stack_overflow",
            Some(WorkerExit::Signaled {
                signal: libc_sig::ABRT,
            }),
        ),
    ];
    for (label, expected) in cases {
        let before = worker_pid(&m);
        let started = Instant::now();
        let (_ctx, result) = call(&m, label);
        match result {
            Err(Error::WorkerCrashed { plugin, exit }) => {
                assert_eq!(plugin, "hostile");
                assert_eq!(Some(&exit), expected.as_ref(), "{label}");
                let shown = Error::WorkerCrashed { plugin, exit }.to_string();
                assert!(shown.contains("hostile"), "{shown}");
            }
            other => panic!("{label}: expected WorkerCrashed, got {other:?}"),
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "{label} took {:?}",
            started.elapsed()
        );
        match events.recv_timeout(TIMEOUT).expect("a crash event") {
            Event::WorkerCrashed {
                name,
                exit,
                restart_in_ms,
            } => {
                assert_eq!(name, "hostile");
                assert_eq!(Some(&exit), expected.as_ref());
                assert!(restart_in_ms.is_some(), "it restarts");
            }
            other => panic!("{label}: unexpected event {other:?}"),
        }
        let after = worker_pid(&m);
        assert_ne!(before, after, "{label}: a new worker serves the next call");
        // The host logs the end of a worker it did not end itself.
        let expected = expected.as_ref().unwrap().to_string();
        crate::util::wait_until("the crash is logged", || {
            crate::util::logged().lines().any(|l| {
                l.contains("WARN")
                    && l.contains(&format!("pid={before}"))
                    && l.contains(&format!("plugin worker {expected}"))
            })
        });
    }
    // A panic is caught by the SDK inside the worker: a plain call error, on the same worker.
    let before = worker_pid(&m);
    let (_ctx, result) = call(&m, "panic");
    let err = result.unwrap_err();
    assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Panicked), "{err}");
    assert_eq!(worker_pid(&m), before);
    let status = m.get("hostile").unwrap().status();
    assert_eq!(status.state, PluginState::Active);
    let worker = status.active.unwrap().worker.unwrap();
    assert_eq!(worker.restarts, 4);
    assert_eq!(
        worker.last_exit,
        Some(WorkerExit::Signaled {
            signal: libc_sig::ABRT
        })
    );
}

fn stuck_call() {
    let (_base, m) = isolated(
        &["hostile", "versioned"],
        quick().grace(Duration::from_millis(200)),
    );
    m.load_plugins().unwrap();
    let m = Arc::new(m);
    let before = worker_pid(&m);

    // Another plugin is called all along, from another thread.
    let done = Arc::new(AtomicBool::new(false));
    let other = {
        let (m, done) = (m.clone(), done.clone());
        std::thread::spawn(move || {
            let handle = m.get("versioned").unwrap();
            let mut calls = 0u32;
            while !done.load(Ordering::Relaxed) {
                handle
                    .execute(&Context::background())
                    .expect("the other plugin answers");
                calls += 1;
            }
            calls
        })
    };

    let timeout = Duration::from_millis(300);
    let ctx = Context::with_timeout(timeout).with_label("spin");
    let started = Instant::now();
    let err = m.get("hostile").unwrap().execute(&ctx).unwrap_err();
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    assert_eq!(
        err.plugin_error_kind(),
        Some(ErrorKind::DeadlineExceeded),
        "{err}"
    );
    assert!(err.to_string().contains("killed"), "{err}");
    // Deadline plus grace, plus a margin for a loaded machine; never the spin's forever.
    assert!(took >= timeout, "returned before its deadline: {took:?}");
    assert!(took < Duration::from_secs(10), "returned late: {took:?}");
    assert!(
        other.join().unwrap() > 0,
        "the other plugin was called meanwhile"
    );

    let after = worker_pid(&m);
    assert_ne!(before, after, "the stuck worker was replaced");
    let worker = worker_status(&m);
    assert_eq!(worker.last_exit, Some(WorkerExit::KilledStuck));
}

fn cancellation() {
    let (_base, m) = isolated(&["hostile", "versioned"], quick());
    m.load_plugins().unwrap();
    // Cancelled mid-call from another thread: `poll` returns only once it sees it.
    let ctx = Context::background().with_label("poll");
    let handle = ctx.cancel_handle();
    let hostile = m.get("hostile").unwrap();
    let canceller = {
        let hostile = hostile.clone();
        std::thread::spawn(move || {
            crate::util::wait_until("the call is in flight", || {
                hostile.status().calls_in_flight == 1
            });
            handle.cancel();
        })
    };
    let err = hostile.execute(&ctx).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Cancelled), "{err}");

    // A deadline reaches a plugin that waits for it, which then returns by itself.
    let ctx = Context::with_timeout(Duration::from_millis(50));
    ctx.set("hold_ms", &60_000u64).unwrap();
    let started = Instant::now();
    m.get("versioned").unwrap().execute(&ctx).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(ctx.reason(), Some(CancelReason::DeadlineExceeded));
    assert_eq!(
        ctx.get::<String>("version_at_end").unwrap().as_deref(),
        Some("1.0.0")
    );
}

fn quarantine() {
    let (_base, m) = isolated(
        &["hostile"],
        ProcessOptions::default()
            .backoff(Duration::from_millis(10), Duration::from_millis(15))
            .quarantine_after(3, Duration::from_secs(600)),
    );
    m.load_plugin("hostile").unwrap();
    let events = m.subscribe();
    for _ in 0..3 {
        let (_ctx, result) = call(&m, "exit");
        assert!(
            matches!(result, Err(Error::WorkerCrashed { .. })),
            "{result:?}"
        );
    }
    let mut restarts = Vec::new();
    let quarantined = loop {
        match events.recv_timeout(TIMEOUT).expect("a quarantine event") {
            Event::Quarantined { name, reason } => break (name, reason),
            Event::WorkerCrashed { restart_in_ms, .. } => restarts.push(restart_in_ms),
            other => panic!("unexpected event {other:?}"),
        }
    };
    // The back-off doubles, up to its maximum; the third crash quarantines instead.
    assert_eq!(restarts, [Some(10), Some(15), None]);
    assert_eq!(quarantined.0, "hostile");
    assert!(quarantined.1.contains("3 times"), "{}", quarantined.1);
    let (_ctx, result) = call(&m, "ok");
    assert!(
        matches!(result, Err(Error::Quarantined { .. })),
        "{result:?}"
    );
    let state = m.state("hostile").unwrap();
    assert!(
        matches!(&state, PluginState::Failed(reason) if reason.contains("quarantined")),
        "{state:?}"
    );

    // A reload lifts it.
    m.reload("hostile").unwrap();
    assert_eq!(m.state("hostile"), Some(PluginState::Active));
    worker_pid(&m);

    // So does enable, after another quarantine.
    for _ in 0..3 {
        let (_ctx, result) = call(&m, "exit");
        assert!(result.is_err());
    }
    crate::util::wait_until("quarantined again", || {
        matches!(call(&m, "ok").1, Err(Error::Quarantined { .. }))
    });
    m.enable("hostile").unwrap();
    worker_pid(&m);
}

fn memory_limit() {
    let (_base, m) = isolated(&["hostile"], quick().memory_limit(Some(1 << 30)));
    m.load_plugin("hostile").unwrap();
    let ctx = Context::background().with_label("leak");
    ctx.set("leak_mb", &2048u64).unwrap();
    let err = m.get("hostile").unwrap().execute(&ctx).unwrap_err();
    // Rust aborts on a failed allocation.
    assert!(
        matches!(
            err,
            Error::WorkerCrashed {
                exit: WorkerExit::Signaled {
                    signal: libc_sig::ABRT
                },
                ..
            }
        ),
        "{err}"
    );
    worker_pid(&m);
}

/// Signal numbers on Linux.
mod libc_sig {
    pub(super) const SEGV: i32 = 11;
    pub(super) const ABRT: i32 = 6;
}

fn back_off_waits() {
    let backoff = Duration::from_millis(300);
    let (_base, m) = isolated(
        &["hostile"],
        ProcessOptions::default().backoff(backoff, backoff),
    );
    m.load_plugin("hostile").unwrap();
    let (_ctx, result) = call(&m, "exit");
    let crashed = Instant::now();
    assert!(
        matches!(result, Err(Error::WorkerCrashed { .. })),
        "{result:?}"
    );
    // The next call waits for the restart, which waits for the back-off.
    worker_pid(&m);
    assert!(
        crashed.elapsed() >= backoff - Duration::from_millis(20),
        "restarted after {:?}",
        crashed.elapsed()
    );
}

fn window() {
    // A window of zero: no crash is ever recent enough to count twice.
    let (_base, m) = isolated(&["hostile"], quick().quarantine_after(2, Duration::ZERO));
    m.load_plugin("hostile").unwrap();
    for _ in 0..4 {
        let (_ctx, result) = call(&m, "exit");
        assert!(
            matches!(result, Err(Error::WorkerCrashed { .. })),
            "{result:?}"
        );
        worker_pid(&m);
    }
    let worker = worker_status(&m);
    assert_eq!((worker.restarts, worker.quarantined), (4, None));
}

fn drain_kills() {
    let base = tempfile::tempdir().unwrap();
    plugin_test_support::fixtures().install(base.path(), "hostile");
    let m = Arc::new(
        plugin_host::PluginManager::builder(base.path())
            .isolation(plugin_host::Isolation::Process)
            .drain_timeout(Duration::from_millis(100))
            .build(),
    );
    m.load_plugin("hostile").unwrap();
    let handle = m.get("hostile").unwrap();
    // A call with no deadline that ignores cancellation.
    let caller = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.execute(&Context::background().with_label("spin")))
    };
    crate::util::wait_until("the call is in flight", || {
        handle.status().calls_in_flight == 1
    });
    let drain = m.unload("hostile").unwrap();
    assert_eq!(drain, plugin_host::Drain::Killed { calls: 1 });
    let result = caller.join().unwrap();
    assert!(
        matches!(result, Err(Error::WorkerCrashed { .. })),
        "{result:?}"
    );
    assert!(m.get("hostile").is_err(), "the plugin is unloaded");
}
