//! What the host reports about a worker process: how it ended, and its status. Compiled on
//! every platform, with or without the `isolation` feature, as part of the public API.

use serde::Serialize;

/// How a worker process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkerExit {
    /// It exited with this status.
    Exited {
        /// The exit status.
        status: i32,
    },
    /// A signal ended it (a segfault, an abort, a stack overflow, ...).
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The host killed it: a call ignored its deadline and its grace period.
    KilledStuck,
}

impl std::fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerExit::Exited { status } => write!(f, "exited with status {status}"),
            WorkerExit::Signaled { signal } => {
                write!(f, "was killed by signal {signal}{}", signal_name(*signal))
            }
            WorkerExit::KilledStuck => f.write_str(
                "was killed by the host because a call ignored its deadline and grace period",
            ),
        }
    }
}

/// A process-isolated plugin's worker, as [`PluginStatus`](crate::PluginStatus) shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// The worker's process id, while one runs.
    pub pid: Option<u32>,
    /// Times the worker was restarted after it ended.
    pub restarts: u32,
    /// How the last worker ended, if one did.
    pub last_exit: Option<WorkerExit>,
    /// Why the plugin is quarantined, if it is.
    pub quarantined: Option<String>,
}

/// ` (SIGSEGV)` and the like for the signals a crash or a kill sends; empty for others.
#[cfg(unix)]
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGTRAP => " (SIGTRAP)",
        _ => "",
    }
}

#[cfg(not(unix))]
fn signal_name(_signal: i32) -> &'static str {
    ""
}
