//! `plugctl`: the reference plugin host and operator tool.
//!
//! ```text
//! plugctl [--dir DIR] [-o table|json] list [--load]
//! plugctl [--dir DIR] [-o table|json] info NAME [--load]
//! plugctl [--dir DIR] [-o table|json] call NAME [--set K=V]... [--set-json K=JSON]...
//!         [--set-file K=PATH]... [--label LABEL] [--timeout DURATION]
//! plugctl [--dir DIR] unload|reload|enable|disable NAME
//! plugctl [--dir DIR] watch
//! plugctl keygen --out PREFIX
//! plugctl [--dir DIR] trust PUB
//! plugctl pack DIR [-o FILE] [--sign PREFIX.key]
//! plugctl [--dir DIR] verify FILE [--key PUB]...
//! plugctl [--dir DIR] install FILE|URL [--key PUB]... [--sha256 HEX] [--allow-unsigned] [--force]
//! plugctl [--dir DIR] build GIT_URL|PATH [--rev REV] [--cache-dir DIR] [--force]
//! plugctl new NAME [--path DIR] [--sdk PATH]
//! plugctl [--dir DIR] serve [--addr 127.0.0.1:8080] [--token-file F] [--watch] [--timeout D]
//! plugctl completions SHELL
//! ```
//!
//! Every command that loads plugins also takes `--isolation in-process|process`,
//! `--isolate NAME` (repeatable) and `--grace DURATION`: where plugins run (see
//! `isolation.rs`).
//!
//! Exit codes: 0 success, 1 failure, 2 bad arguments, 3 `list` found plugins that failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod inspect;
mod isolation;
mod loaded;
mod package;
mod serve;
mod values;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;

use plugin_host::{Context, Error, ErrorKind, Event, PluginHandle, PluginManager};

/// Manage and call native plugins in a plugin directory.
#[derive(Parser, Debug)]
#[command(name = "plugctl", version, about)]
struct Cli {
    /// The plugin base directory: one folder per plugin, each with plugin.json and a library.
    #[arg(
        long,
        global = true,
        env = "PLUGCTL_DIR",
        default_value = "plugins",
        value_name = "DIR"
    )]
    dir: PathBuf,

    /// How to print results and errors: `table` for people, `json` for programs. Goes
    /// before the command (`plugctl -o json list`): after it, `pack -o` names the package file.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,

    /// `--insecure-permissions`, `--isolation`, `--isolate` and `--grace`.
    #[command(flatten)]
    manager: isolation::ManagerArgs,

    #[command(subcommand)]
    command: Command,
}

/// Output formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Text for people.
    Table,
    /// JSON for programs (errors too, on stderr).
    Json,
}

/// The exit code of `list` when some plugin failed to load.
const SOME_FAILED: u8 = 3;

#[derive(Subcommand, Debug)]
enum Command {
    /// Check every plugin in the directory from its files, without running any plugin code,
    /// and show which pass and which fail, and why. Exits with 3 when some plugin failed.
    List {
        /// Load every plugin for real (runs their constructors and on_load) and show their
        /// states, calls and running copies.
        #[arg(long)]
        load: bool,
        /// The same as `-o json`.
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Check one plugin from its files, without running its code, and show its manifest,
    /// library and identity.
    Info {
        /// The plugin (its folder name).
        name: String,
        /// Load it for real (runs its constructors and on_load) and show its hooks and
        /// running copy too.
        #[arg(long)]
        load: bool,
        /// The same as `-o json`.
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Print a shell completion script, e.g. `plugctl completions bash > /etc/bash_completion.d/plugctl`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Load a plugin, then unload it: drain, run its on_unload, and report.
    Unload {
        /// The plugin (its folder name).
        name: String,
    },
    /// Load a plugin, then hot-reload it from its folder and report the versions.
    Reload {
        /// The plugin (its folder name).
        name: String,
    },
    /// Enable a plugin: it is loaded again from now on (state kept in DIR/.plugin-state.json).
    Enable {
        /// The plugin (its folder name).
        name: String,
    },
    /// Disable a plugin: it is discovered but never loaded until enabled again.
    Disable {
        /// The plugin (its folder name).
        name: String,
    },
    /// Load every plugin, then watch DIR and load, upgrade or unload plugins as their
    /// folders change, printing each event as a JSON line. Runs until interrupted.
    Watch,
    /// Load one plugin, call it, and print the context's values as JSON.
    Call {
        /// The plugin (its folder name).
        name: String,
        /// Set a context value before the call: JSON if it parses as JSON (5, true,
        /// {"a":1}), else a string (world).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Set a context value that must be JSON.
        #[arg(long = "set-json", value_name = "KEY=JSON")]
        set_json: Vec<String>,
        /// Set a context value to the text of a file.
        #[arg(long = "set-file", value_name = "KEY=PATH")]
        set_file: Vec<String>,
        /// The routing label of the call (one of the plugin's http_services labels).
        #[arg(long)]
        label: Option<String>,
        /// Cancel the call after this long, e.g. 500ms, 2s, 1m.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Option<Duration>,
    },
    #[command(flatten)]
    Package(package::PackageCommand),
    /// Serve the plugins over HTTP: their routes, the management API (/api/v1), /metrics
    /// and a management page (/). The first line on stdout is the address.
    Serve(serve::ServeArgs),
}

/// A failure: a one-line cause and a hint.
#[derive(Debug)]
struct Failure {
    cause: String,
    hint: String,
}

impl Failure {
    /// Prints the failure on stderr: an `error:` and a `hint:` line, or with `-o json` an
    /// object `{"error": {"message", "hint"}}`.
    fn print(&self, output: Output) {
        match output {
            Output::Table => {
                eprintln!("error: {}", self.cause.replace('\n', " "));
                eprintln!("hint: {}", self.hint);
            }
            Output::Json => eprintln!(
                "{}",
                serde_json::json!({ "error": { "message": self.cause, "hint": self.hint } })
            ),
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let hint = match &err {
            Error::NotFound { .. } | Error::NoSuchFolder { .. } => {
                "run `plugctl --dir DIR list` to see the plugins in DIR".to_owned()
            }
            Error::BaseDir { .. } => {
                "pass the plugin directory with --dir, or build the samples with `cargo xtask build-samples`".to_owned()
            }
            Error::Call { kind, .. } => match kind {
                ErrorKind::DeadlineExceeded => "the call ran out of time; raise --timeout".to_owned(),
                ErrorKind::Cancelled => "the call was cancelled before it finished".to_owned(),
                ErrorKind::Panicked => "the plugin panicked; report it to its maintainers".to_owned(),
                ErrorKind::InvalidInput => {
                    "check the values you passed with --set against the plugin's docs".to_owned()
                }
                ErrorKind::Unsupported => "check --label against the plugin's routes (`plugctl info NAME`)".to_owned(),
                _ => "the plugin returned this error; see its docs".to_owned(),
            },
            Error::Manifest(_) => "fix plugin.json; README.md has the field reference".to_owned(),
            Error::WorkerCrashed { .. } => {
                "the plugin crashed its worker process, not plugctl; report it to its maintainers"
                    .to_owned()
            }
            Error::WorkerStart { .. } => {
                "the worker (plugctl itself, run again) did not start the plugin; the log \
                 above may say more, or use --isolation in-process"
                    .to_owned()
            }
            Error::Quarantined { .. } => {
                "the plugin crashed too often; fix it, then load it again".to_owned()
            }
            Error::MessageTooLarge { .. } => {
                "pass smaller values, or run the plugin in plugctl (--isolation in-process)"
                    .to_owned()
            }
            _ => "README.md explains each error and its fix".to_owned(),
        };
        Failure {
            cause: err.report(),
            hint,
        }
    }
}

fn main() -> ExitCode {
    // First of all: started as a plugin worker, plugctl serves its plugin and never returns.
    plugin_host::isolate::init();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,plugins=info".into()),
        )
        .init();
    let output = cli.output;
    match run(cli) {
        Ok(code) => code,
        Err(failure) => {
            failure.print(output);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "plugctl",
            &mut std::io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let output = cli.output;
    let command = match cli.command {
        Command::Package(command) => return package::run(command, &cli.dir, &cli.manager, output),
        Command::Serve(args) => return serve::run(args, &cli.dir, &cli.manager),
        command => command,
    };
    let manager = cli.manager.builder(&cli.dir).build();
    if !cli.dir.is_dir() {
        return Err(Error::BaseDir {
            path: cli.dir.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
        .into());
    }
    match command {
        Command::Completions { .. } | Command::Package(_) | Command::Serve(_) => {
            unreachable!("handled above")
        }
        Command::List { load, json } => {
            let output = if json { Output::Json } else { output };
            if load {
                loaded::list(&manager, output)
            } else {
                inspect::list(&manager, output)
            }
        }
        Command::Info { name, load, json } => {
            let output = if json { Output::Json } else { output };
            if !load {
                inspect::info(&manager, &name, output)?;
                return Ok(ExitCode::SUCCESS);
            }
            manager.load_plugin(&name)?;
            let summary = manager
                .get(&name)?
                .summary()
                .ok_or_else(|| Error::Unloaded {
                    plugin: name.clone(),
                })?;
            if output == Output::Json {
                println!("{}", to_json(&summary));
            } else {
                loaded::print_info(&summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Unload { name } => with_events(&manager, output, |m| {
            m.load_plugin(&name)?;
            note_drain(&name, &m.unload(&name)?);
            Ok(())
        }),
        Command::Reload { name } => with_events(&manager, output, |m| {
            m.load_plugin(&name)?;
            note_drain(&name, &m.reload(&name)?.drain);
            Ok(())
        }),
        Command::Enable { name } => with_events(&manager, output, |m| m.enable(&name)),
        Command::Disable { name } => with_events(&manager, output, |m| m.disable(&name)),
        Command::Watch => watch(manager, output),
        Command::Call {
            name,
            set,
            set_json,
            set_file,
            label,
            timeout,
        } => {
            let ctx = match timeout {
                Some(t) => Context::with_timeout(t),
                None => Context::background(),
            };
            let ctx = match label {
                Some(l) => ctx.with_label(l),
                None => ctx,
            };
            let pairs = set
                .iter()
                .map(|p| (p, values::Kind::Guess))
                .chain(set_json.iter().map(|p| (p, values::Kind::Json)))
                .chain(set_file.iter().map(|p| (p, values::Kind::File)));
            for (pair, kind) in pairs {
                let (key, value) = values::parse(pair, kind)?;
                ctx.set(key, &value)?;
            }
            manager.load_plugin(&name)?;
            let handle = manager.get(&name)?;
            let result = match timeout {
                None => handle.execute(&ctx),
                Some(timeout) => {
                    // An isolated call that ignores its deadline ends when its worker is
                    // killed, `--grace` later: wait for that, then GRACE more.
                    let mut wait = timeout + GRACE;
                    if manager.isolation_of(&name) == plugin_host::Isolation::Process {
                        wait += cli.manager.grace();
                    }
                    call_bounded(&handle, &ctx, timeout, wait, output)?
                }
            };
            let values: serde_json::Map<String, serde_json::Value> = ctx
                .values()?
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        serde_json::to_value(&v).unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect();
            println!("{}", to_json(&values));
            result?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How long a call may run past its deadline before plugctl gives up on it.
const GRACE: Duration = Duration::from_secs(1);

/// Runs the call on a thread of its own and waits for it for `wait` (its `timeout` plus
/// some grace).
///
/// A plugin that ignores cancellation cannot be stopped in-process; plugctl then reports it
/// and exits, which ends the call with the process.
fn call_bounded(
    handle: &PluginHandle,
    ctx: &Context,
    timeout: Duration,
    wait: Duration,
    output: Output,
) -> Result<Result<(), Error>, Failure> {
    let (done, finished) = std::sync::mpsc::channel();
    let (handle, call_ctx) = (handle.clone(), ctx.clone());
    std::thread::Builder::new()
        .name(format!("call-{}", handle.name()))
        .spawn(move || {
            let _ = done.send(handle.execute(&call_ctx));
        })
        .map_err(|e| Failure {
            cause: format!("cannot start a thread for the call: {e}"),
            hint: "the system is out of threads or memory".to_owned(),
        })?;
    let stuck = finished.recv_timeout(wait).map_err(|_| Failure {
        cause: format!(
            "the plugin did not stop: its call is still running {} after its {} deadline, \
                 ignoring cancellation",
            humantime::format_duration(wait.saturating_sub(timeout)),
            humantime::format_duration(timeout),
        ),
        hint: "the plugin must check ctx.is_cancelled() or use ctx.wait_cancelled(); \
                   plugctl exits, which ends the call"
            .to_owned(),
    });
    match stuck {
        Ok(result) => Ok(result),
        // Exit at once: unloading the plugin on the way out would wait for the stuck call.
        Err(failure) => {
            failure.print(output);
            std::process::exit(1)
        }
    }
}

/// Says on stderr how a drain went, unless every call simply returned.
fn note_drain(name: &str, drain: &plugin_host::Drain) {
    if let Some(note) = isolation::drain_note(name, drain) {
        eprintln!("note: {note}");
    }
}

/// Runs `action`, then prints the lifecycle events it caused: one line each, or with
/// `-o json` one JSON array.
fn with_events(
    manager: &PluginManager,
    output: Output,
    action: impl FnOnce(&PluginManager) -> Result<(), Error>,
) -> Result<ExitCode, Failure> {
    eprintln!(
        "note: this acts on a plugin manager inside this plugctl process, not on another \
         running host (enable and disable also persist in the state file, for later loads)"
    );
    let events = manager.subscribe();
    action(manager)?;
    let events: Vec<Event> = events.try_iter().collect();
    match output {
        Output::Json => println!("{}", to_json(&events)),
        Output::Table => events.iter().for_each(|e| println!("{}", event_line(e))),
    }
    Ok(ExitCode::SUCCESS)
}

/// One event as a line of text.
fn event_line(event: &Event) -> String {
    let json = serde_json::to_value(event).expect("events serialize");
    let mut line = format!(
        "{:<10} {}",
        json["event"].as_str().unwrap_or_default(),
        event.plugin()
    );
    if let Some(fields) = json.as_object() {
        for (key, value) in fields {
            if key != "event" && key != "name" {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                line.push_str(&format!(" {key}={value}"));
            }
        }
    }
    line
}

fn watch(manager: PluginManager, output: Output) -> Result<ExitCode, Failure> {
    let manager = std::sync::Arc::new(manager);
    let events = manager.subscribe();
    let report = manager.load_plugins()?;
    let _watcher = manager.watch()?;
    eprintln!(
        "watching {} ({} plugins); press Ctrl-C to stop",
        manager.base_dir().display(),
        report.outcomes.len()
    );
    use std::io::Write as _;
    for event in events {
        let line = match output {
            Output::Json => serde_json::to_string(&event).expect("events serialize"),
            Output::Table => event_line(&event),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `rows` as JSON with `-o json`, or says that there are none; returns whether that
/// was all there was to print (otherwise the caller prints its table).
fn printed_json_or_nothing<T: serde::Serialize>(
    rows: &[T],
    manager: &PluginManager,
    output: Output,
) -> bool {
    if output == Output::Json {
        println!("{}", to_json(&rows));
        return true;
    }
    if rows.is_empty() {
        println!("no plugins in {}", manager.base_dir().display());
        return true;
    }
    false
}

/// Prints the HTTP driver and routes a manifest declares, if any.
fn print_routes(manifest: &plugin_host::Manifest) {
    if let Some(http) = &manifest.http_services {
        println!("http driver:  {}", http.driver);
        for r in &http.routes {
            println!(
                "  {:<7} {:<32} label {}",
                r.method.as_str(),
                r.route,
                r.label
            );
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("plain data serializes to JSON")
}
