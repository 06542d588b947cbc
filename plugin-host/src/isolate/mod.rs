//! Process isolation: a plugin run in a supervised worker process instead of the host's.
//!
//! The same plugin library runs either way; the host chooses per plugin
//! ([`PluginManagerBuilder::isolation`](crate::PluginManagerBuilder::isolation),
//! [`isolate`](crate::PluginManagerBuilder::isolate)). In process mode the host runs every
//! check that needs no `dlopen` on the library's bytes, writes them into a sealed memory
//! file, and starts a worker (this same executable, re-run: see [`init`]) that maps that
//! file, runs abi_stable's checks and the plugin's `on_load`, and serves calls.
//!
//! The channel between host and worker is the `plugin-ipc` crate: the call lanes in a
//! shared memory file with a futex per lane, how a call's context and its result are
//! written into a lane, and the control socket beside it (start-up report, logs,
//! cancellation, stop, and the end of the peer). Here:
//!
//! - `keeper`: the process between the host and the plugin process, which kills whatever
//!   the plugin started when the plugin process ends or the host goes;
//! - `worker`: the worker process's side;
//! - `process`: a worker process as the host holds it: its launch, its monitor thread, how
//!   it ended;
//! - `supervisor`: the host's side: start, call, kill at the deadline, restart with
//!   back-off, quarantine.
//!
//! See `docs/isolation.md` for what is and is not contained.

#[cfg(all(target_os = "linux", feature = "isolation"))]
mod keeper;
#[cfg(all(target_os = "linux", feature = "isolation"))]
mod process;
mod status;
#[cfg(all(target_os = "linux", feature = "isolation"))]
mod supervisor;
#[cfg(all(target_os = "linux", feature = "isolation"))]
mod worker;

/// The descriptors a worker process finds open when it starts: the control socket, the
/// shared-memory channel and the sealed library.
#[cfg(all(target_os = "linux", feature = "isolation"))]
const SOCKET_FD: i32 = 3;
#[cfg(all(target_os = "linux", feature = "isolation"))]
const CHANNEL_FD: i32 = 4;
#[cfg(all(target_os = "linux", feature = "isolation"))]
const LIBRARY_FD: i32 = 5;

#[cfg(all(target_os = "linux", feature = "isolation"))]
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use status::{WorkerExit, WorkerStatus};
#[cfg(all(target_os = "linux", feature = "isolation"))]
pub(crate) use supervisor::{Supervisor, SupervisorHooks};

/// The environment variable that marks a process as a plugin worker. Its value is the
/// worker's start-up parameters; [`init`] reads it.
pub const WORKER_ENV: &str = "PLUGIN_HOST_WORKER";

/// Where a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Isolation {
    /// In the host's process, as a function call: the fastest, and a crash or a call that
    /// never returns takes the host (or one of its threads) with it.
    #[default]
    InProcess,
    /// In a worker process of its own, supervised by the host: a crash fails the calls in
    /// flight and restarts the worker, a call that ignores its deadline gets its worker
    /// killed, and an unload returns the plugin's memory.
    Process,
}

impl Isolation {
    /// `in-process` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-process" => Ok(Isolation::InProcess),
            "process" => Ok(Isolation::Process),
            other => Err(format!(
                "unknown isolation `{other}`: expected `in-process` or `process`"
            )),
        }
    }
}

/// How process-isolated plugins are run and supervised.
///
/// ```
/// use std::time::Duration;
/// use plugin_host::isolate::ProcessOptions;
///
/// let options = ProcessOptions::default()
///     .grace(Duration::from_millis(500))
///     .memory_limit(Some(512 << 20));
/// assert_eq!(options.max_crashes, 5);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProcessOptions {
    /// How long after its deadline a call may still return before its worker is killed.
    /// Default 1 s.
    pub grace: Duration,
    /// Crashes within [`crash_window`](Self::crash_window) after which the plugin is
    /// quarantined (state failed) instead of restarted. Default 5.
    pub max_crashes: u32,
    /// The window crashes are counted in. Default 60 s.
    pub crash_window: Duration,
    /// The wait before the first restart; it doubles with each crash in the window.
    /// Default 50 ms.
    pub backoff: Duration,
    /// The longest wait before a restart. Default 5 s.
    pub max_backoff: Duration,
    /// How long a worker may take to start, map the library and run `on_load`. Default 10 s.
    pub start_timeout: Duration,
    /// The worker's address-space limit in bytes (`RLIMIT_AS`), if any. Default none.
    pub memory_limit: Option<u64>,
    /// Calls a worker serves at once; further calls wait for one to end. Default 8.
    pub lanes: usize,
    /// The largest encoded context (values and label) a call may carry in or out.
    /// Default 1 MiB.
    pub max_message: usize,
    /// The executable to run as the worker. Default: this process's own executable
    /// (`/proc/self/exe`), which must call [`init`] first thing in `main`.
    pub program: Option<PathBuf>,
    /// Environment variables the worker gets from the host besides [`ALLOWED_ENV`]. Set
    /// with [`pass_env`](Self::pass_env); a name starting with `PLUGCTL_` pushed here
    /// directly is still never passed. Default none.
    pub pass_env: Vec<String>,
}

/// The host's environment variables every worker gets (when the host has them); `LC_*`
/// stands for every name starting with `LC_`. Nothing else is passed but
/// [`WORKER_ENV`] and what [`ProcessOptions::pass_env`] adds.
pub const ALLOWED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "RUST_BACKTRACE",
];

/// Why [`ProcessOptions::pass_env`] refused a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PassEnvError {
    /// `PLUGCTL_*` (plugctl's own settings and secrets, its API token among them) and
    /// [`WORKER_ENV`] never reach a worker.
    #[error("the environment variable `{name}` is never passed to a plugin worker (PLUGCTL_* and {WORKER_ENV} are reserved)")]
    Reserved {
        /// The name refused.
        name: String,
    },
    /// Not a name an environment variable can have: empty, or holding `=` or a NUL byte.
    #[error("`{name}` is not an environment variable name")]
    Invalid {
        /// The name refused.
        name: String,
    },
}

/// Whether the name is one no worker gets.
fn reserved(name: &str) -> bool {
    name.starts_with("PLUGCTL_") || name == WORKER_ENV
}

/// The host's variables a worker gets: [`ALLOWED_ENV`] and `extra`, never a reserved one.
#[cfg(all(target_os = "linux", feature = "isolation"))]
pub(super) fn passed_env(extra: &[String]) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| {
            let Some(name) = name.to_str() else {
                return false;
            };
            if reserved(name) {
                return false;
            }
            ALLOWED_ENV
                .iter()
                .any(|allowed| match allowed.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == *allowed,
                })
                || extra.iter().any(|e| e == name)
        })
        .collect()
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            grace: Duration::from_secs(1),
            max_crashes: 5,
            crash_window: Duration::from_secs(60),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            start_timeout: Duration::from_secs(10),
            memory_limit: None,
            lanes: 8,
            max_message: 1 << 20,
            program: None,
            pass_env: Vec::new(),
        }
    }
}

impl ProcessOptions {
    /// Sets [`grace`](Self::grace).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`max_crashes`](Self::max_crashes) and [`crash_window`](Self::crash_window).
    pub fn quarantine_after(mut self, crashes: u32, window: Duration) -> Self {
        self.max_crashes = crashes.max(1);
        self.crash_window = window;
        self
    }

    /// Sets [`backoff`](Self::backoff) and [`max_backoff`](Self::max_backoff).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Sets [`start_timeout`](Self::start_timeout).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Sets [`memory_limit`](Self::memory_limit).
    pub fn memory_limit(mut self, bytes: Option<u64>) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Sets [`lanes`](Self::lanes) (at least 1).
    pub fn lanes(mut self, lanes: usize) -> Self {
        self.lanes = lanes.clamp(1, 1024);
        self
    }

    /// Sets [`max_message`](Self::max_message) (at least 4 KiB).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes.clamp(4096, 1 << 30);
        self
    }

    /// Adds `name` to [`pass_env`](Self::pass_env): the worker gets the host's value of it,
    /// if the host has one when the worker starts.
    ///
    /// # Errors
    ///
    /// [`PassEnvError::Reserved`] for `PLUGCTL_*` and [`WORKER_ENV`];
    /// [`PassEnvError::Invalid`] for a name that is empty or holds `=` or a NUL byte.
    pub fn pass_env(mut self, name: impl Into<String>) -> Result<Self, PassEnvError> {
        let name = name.into();
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(PassEnvError::Invalid { name });
        }
        if reserved(&name) {
            return Err(PassEnvError::Reserved { name });
        }
        if !self.pass_env.contains(&name) {
            self.pass_env.push(name);
        }
        Ok(self)
    }

    /// Sets [`program`](Self::program).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }
}

/// Serves as a plugin worker if this process was started as one, and never returns then;
/// returns at once otherwise.
///
/// A host that isolates plugins calls this first thing in `main`: by default a worker is
/// this same executable run again with [`WORKER_ENV`] set, so no second executable ships.
///
/// ```no_run
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() {
///     plugin_host::isolate::init();
///     // ... the host application, which may isolate plugins ...
/// }
/// ```
pub fn init() {
    #[cfg(all(target_os = "linux", feature = "isolation"))]
    if let Some(params) = std::env::var_os(WORKER_ENV) {
        worker::main(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_option_setter_sets_its_field_within_its_bounds() {
        let o = ProcessOptions::default()
            .grace(Duration::from_millis(7))
            .quarantine_after(3, Duration::from_secs(9))
            .backoff(Duration::from_millis(20), Duration::from_millis(400))
            .start_timeout(Duration::from_secs(4))
            .memory_limit(Some(1 << 30))
            .lanes(3)
            .max_message(1 << 16)
            .program("/bin/worker");
        assert_eq!(o.grace, Duration::from_millis(7));
        assert_eq!((o.max_crashes, o.crash_window), (3, Duration::from_secs(9)));
        assert_eq!(
            (o.backoff, o.max_backoff),
            (Duration::from_millis(20), Duration::from_millis(400))
        );
        assert_eq!(o.start_timeout, Duration::from_secs(4));
        assert_eq!(o.memory_limit, Some(1 << 30));
        assert_eq!(o.lanes, 3);
        assert_eq!(o.max_message, 1 << 16);
        assert_eq!(
            o.program.as_deref(),
            Some(std::path::Path::new("/bin/worker"))
        );

        // The bounds: at least one crash, a ceiling no lower than the first wait, at least
        // one lane (at most 1024), messages of 4 KiB to 1 GiB.
        let o = ProcessOptions::default()
            .quarantine_after(0, Duration::ZERO)
            .backoff(Duration::from_secs(2), Duration::from_secs(1))
            .lanes(0)
            .max_message(1);
        assert_eq!(o.max_crashes, 1);
        assert_eq!(o.max_backoff, Duration::from_secs(2));
        assert_eq!(o.lanes, 1);
        assert_eq!(o.max_message, 4096);
        let o = ProcessOptions::default()
            .lanes(usize::MAX)
            .max_message(usize::MAX);
        assert_eq!((o.lanes, o.max_message), (1024, 1 << 30));
    }

    #[test]
    fn pass_env_refuses_reserved_and_malformed_names() {
        let o = ProcessOptions::default()
            .pass_env("MY_SETTING")
            .unwrap()
            .pass_env("MY_SETTING")
            .unwrap();
        assert_eq!(o.pass_env, ["MY_SETTING"]);
        for name in ["PLUGCTL_TOKEN", "PLUGCTL_ANYTHING", WORKER_ENV] {
            assert_eq!(
                ProcessOptions::default().pass_env(name).unwrap_err(),
                PassEnvError::Reserved { name: name.into() }
            );
        }
        for name in ["", "A=B", "A\0"] {
            assert_eq!(
                ProcessOptions::default().pass_env(name).unwrap_err(),
                PassEnvError::Invalid { name: name.into() }
            );
        }
    }

    /// Pushed past the setter, a reserved name is still not passed.
    #[cfg(all(target_os = "linux", feature = "isolation"))]
    #[test]
    fn the_launch_never_passes_reserved_names() {
        let names: Vec<_> = passed_env(&["PLUGCTL_TOKEN".into(), WORKER_ENV.into()])
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(!names
            .iter()
            .any(|n| n == "PLUGCTL_TOKEN" || n == WORKER_ENV));
    }
}
