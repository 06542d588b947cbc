//! A plugin that crashes or hangs in its worker: the host survives, the call returns a typed
//! error, and the next call runs on a restarted worker.

use std::time::{Duration, Instant};

use plugin_host::isolate::WorkerExit;
use plugin_host::{Error, ErrorKind, ProcessOptions};

use crate::util::{call, isolated, worker_pid};

pub(crate) const TESTS: &[(&str, fn())] = &[
    ("crashes::a_call_runs_in_another_process_and_its_values_come_back", values_come_back),
    ("crashes::each_crash_fails_its_call_and_the_next_runs_on_a_new_worker", each_crash),
];

fn values_come_back() {
    let (_base, m) = isolated(&["hostile"], ProcessOptions::default());
    m.load_plugin("hostile").unwrap();
    let pid = worker_pid(&m);
    assert_ne!(pid, std::process::id(), "the plugin runs in a worker, not the host");
    let status = m.get("hostile").unwrap().status();
    let worker = status.active.unwrap().worker.expect("a worker status");
    assert_eq!(worker.pid, Some(pid));
}

fn each_crash() {
    let (_base, m) = isolated(
        &["hostile"],
        ProcessOptions::default().backoff(Duration::from_millis(1), Duration::from_millis(5)),
    );
    m.load_plugin("hostile").unwrap();
    let cases: &[(&str, WorkerExit)] = &[
        ("segfault", WorkerExit::Signaled { signal: libc_sig::SEGV }),
        ("abort", WorkerExit::Signaled { signal: libc_sig::ABRT }),
        ("exit", WorkerExit::Exited { status: 7 }),
        ("stack_overflow", WorkerExit::Signaled { signal: libc_sig::SEGV }),
    ];
    for (label, expected) in cases {
        let before = worker_pid(&m);
        let started = Instant::now();
        let (_ctx, result) = call(&m, label);
        match result {
            Err(Error::WorkerCrashed { plugin, exit }) => {
                assert_eq!(plugin, "hostile");
                if *label == "stack_overflow" {
                    // Rust's guard page handler reports SIGSEGV, then aborts.
                    assert!(
                        matches!(exit, WorkerExit::Signaled { .. }),
                        "{label}: {exit:?}"
                    );
                } else {
                    assert_eq!(&exit, expected, "{label}");
                }
            }
            other => panic!("{label}: expected WorkerCrashed, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{label} took {:?}", started.elapsed());
        let after = worker_pid(&m);
        assert_ne!(before, after, "{label}: a new worker serves the next call");
    }
    // A panic is caught by the SDK in the worker: a plain call error, and the same worker.
    let before = worker_pid(&m);
    let (_ctx, result) = call(&m, "panic");
    let err = result.unwrap_err();
    assert_eq!(err.plugin_error_kind(), Some(ErrorKind::Panicked), "{err}");
    assert_eq!(worker_pid(&m), before);
    let worker = m.get("hostile").unwrap().status().active.unwrap().worker.unwrap();
    assert_eq!(worker.restarts, 4);
}

/// Signal numbers on Linux.
mod libc_sig {
    pub(super) const SEGV: i32 = 11;
    pub(super) const ABRT: i32 = 6;
}
