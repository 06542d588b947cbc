//! The global options every plugin manager plugctl builds takes (`--insecure-permissions`,
//! `--isolation`, `--isolate`, `--grace`, `--pass-env`), and how plugctl shows where a plugin runs.

use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use plugin_host::isolate::WorkerStatus;
use plugin_host::{Drain, Isolation, PluginManager, PluginManagerBuilder, PluginSummary};
use plugin_host::{ProcessOptions, ShutdownOutcome};

/// Where plugins run, as `--isolation` names it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// In plugctl's own process, as a function call.
    InProcess,
    /// Each plugin in a supervised worker process: a crash fails the call, not plugctl.
    Process,
}

impl From<Mode> for Isolation {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::InProcess => Isolation::InProcess,
            Mode::Process => Isolation::Process,
        }
    }
}

/// The options of every plugin manager plugctl builds.
#[derive(Args, Debug, Clone)]
pub(crate) struct ManagerArgs {
    /// For development only: accept plugin folders that group or others can write, and
    /// libraries owned by another user.
    #[arg(long, global = true)]
    insecure_permissions: bool,

    /// Where the plugins this command loads run.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = Mode::InProcess,
        value_name = "MODE"
    )]
    isolation: Mode,

    /// Run this plugin in a worker process whatever --isolation says (repeatable).
    #[arg(long, global = true, value_name = "NAME")]
    isolate: Vec<String>,

    /// In process isolation: how long a call may run past its deadline before its worker
    /// is killed and restarted, e.g. 500ms (default 1s).
    #[arg(long, global = true, value_parser = humantime::parse_duration, value_name = "DURATION")]
    grace: Option<Duration>,

    /// In process isolation: an environment variable workers also get, besides PATH, HOME,
    /// USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ, TMPDIR and RUST_BACKTRACE (repeatable;
    /// PLUGCTL_* is refused).
    #[arg(long, global = true, value_parser = pass_env_name, value_name = "NAME")]
    pass_env: Vec<String>,
}

/// A `--pass-env` name, checked as `ProcessOptions::pass_env` checks it.
fn pass_env_name(name: &str) -> Result<String, String> {
    ProcessOptions::default()
        .pass_env(name)
        .map(|_| name.to_owned())
        .map_err(|e| e.to_string())
}

impl ManagerArgs {
    /// A builder for the manager of `dir` with these options.
    pub(crate) fn builder(&self, dir: &Path) -> PluginManagerBuilder {
        let mut options = ProcessOptions::default().grace(self.grace());
        for name in &self.pass_env {
            // Checked when parsed (`pass_env_name`); a refusal cannot happen here.
            if let Ok(with) = options.clone().pass_env(name.clone()) {
                options = with;
            }
        }
        let mut builder = PluginManager::builder(dir)
            .insecure_permissions(self.insecure_permissions)
            .isolation(self.isolation.into())
            .process_options(options);
        for name in &self.isolate {
            builder = builder.isolate(name.clone());
        }
        builder
    }

    /// How long past its deadline a process-isolated call may run before its worker is
    /// killed.
    pub(crate) fn grace(&self) -> Duration {
        self.grace.unwrap_or(ProcessOptions::default().grace)
    }
}

/// The worker of a loaded plugin, in one short cell: `pid=N restarts=N`, `quarantined`, or
/// `-` in process.
pub(crate) fn worker_cell(summary: Option<&PluginSummary>) -> String {
    let Some(worker) = summary.and_then(|s| s.worker.as_ref()) else {
        return "-".to_owned();
    };
    let pid = match (&worker.quarantined, worker.pid) {
        (Some(_), _) => "quarantined".to_owned(),
        (None, Some(pid)) => format!("pid={pid}"),
        (None, None) => "pid=-".to_owned(),
    };
    format!("{pid} restarts={}", worker.restarts)
}

/// `plugctl info --load`'s lines about where the plugin runs.
pub(crate) fn print_isolation(summary: &PluginSummary) {
    println!("isolation:    {}", summary.isolation);
    if let Some(worker) = &summary.worker {
        print_worker(worker);
    }
}

fn print_worker(worker: &WorkerStatus) {
    match worker.pid {
        Some(pid) => println!("worker pid:   {pid}"),
        None => println!("worker pid:   - (no worker runs)"),
    }
    println!("restarts:     {}", worker.restarts);
    if let Some(exit) = &worker.last_exit {
        println!("last exit:    {exit}");
    }
    if let Some(reason) = &worker.quarantined {
        println!("quarantined:  {reason}");
    }
}

/// A line about a drain that did not simply end with every call returned; `None` for a
/// clean drain.
pub(crate) fn drain_note(plugin: &str, drain: &Drain) -> Option<String> {
    match drain {
        Drain::Clean => None,
        Drain::Stuck { calls } => Some(format!(
            "{plugin}: {calls} call(s) ignored cancellation and still run on the old code; \
             its on_unload runs when they return"
        )),
        Drain::Killed { calls } => Some(format!(
            "{plugin}: {calls} call(s) ignored cancellation, so its worker process was killed; \
             its on_unload did not run"
        )),
        other => Some(format!("{plugin}: drain ended as {other:?}")),
    }
}

/// Prints, on stderr, how each plugin's shutdown went when it was not clean.
pub(crate) fn report_shutdown(outcomes: Vec<ShutdownOutcome>) {
    for outcome in outcomes {
        match outcome.result {
            Ok(drain) => {
                if let Some(note) = drain_note(&outcome.name, &drain) {
                    eprintln!("{note}");
                }
            }
            Err(err) => eprintln!("{}: {}", outcome.name, err.report()),
        }
    }
}
