//! `plugctl`: the reference plugin host and operator tool.
//!
//! ```text
//! plugctl [--dir DIR] list [--json]
//! plugctl [--dir DIR] info NAME [--json]
//! plugctl [--dir DIR] call NAME [--set KEY=JSON]... [--label LABEL] [--timeout DURATION]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

use plugin_host::{
    Context, Error, ErrorKind, PluginHandle, PluginManager, PluginState, PluginSummary,
};

/// Manage and call native plugins in a plugin directory.
#[derive(Parser, Debug)]
#[command(name = "plugctl", version, about)]
struct Cli {
    /// The plugin base directory: one folder per plugin, each with plugin.json and a library.
    #[arg(long, global = true, default_value = "plugins", value_name = "DIR")]
    dir: PathBuf,

    /// For development only: accept plugin folders that group or others can write, and
    /// libraries owned by another user.
    #[arg(long, global = true)]
    insecure_permissions: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load every plugin in the directory and show which loaded and which failed, and why.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load one plugin and show its manifest and identity.
    Info {
        /// The plugin (its folder name).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
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
        /// Set a context value before the call; the value is JSON (quote strings: name='"x"').
        #[arg(long = "set", value_name = "KEY=JSON")]
        set: Vec<String>,
        /// The routing label of the call (one of the plugin's http_services labels).
        #[arg(long)]
        label: Option<String>,
        /// Cancel the call after this long, e.g. 500ms, 2s, 1m.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Option<Duration>,
    },
}

/// A failure: a one-line cause and a hint.
struct Failure {
    cause: String,
    hint: String,
}

impl Failure {
    /// Prints the failure as plugctl reports every failure: an `error:` and a `hint:` line.
    fn print(&self) {
        eprintln!("error: {}", self.cause.replace('\n', " "));
        eprintln!("hint: {}", self.hint);
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
            _ => "README.md explains each error and its fix".to_owned(),
        };
        Failure {
            cause: err.to_string(),
            hint,
        }
    }
}

fn main() -> ExitCode {
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
    match run(cli) {
        Ok(code) => code,
        Err(failure) => {
            failure.print();
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let manager = PluginManager::builder(&cli.dir)
        .insecure_permissions(cli.insecure_permissions)
        .build();
    if !cli.dir.is_dir() {
        return Err(Error::BaseDir {
            path: cli.dir.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
        .into());
    }
    match cli.command {
        Command::List { json } => list(&manager, json),
        Command::Info { name, json } => {
            manager.load_plugin(&name)?;
            let summary = manager
                .get(&name)?
                .summary()
                .ok_or_else(|| Error::Unloaded {
                    plugin: name.clone(),
                })?;
            if json {
                println!("{}", to_json(&summary));
            } else {
                print_info(&summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Unload { name } => with_events(&manager, |m| {
            m.load_plugin(&name)?;
            m.unload(&name).map(drop)
        }),
        Command::Reload { name } => with_events(&manager, |m| {
            m.load_plugin(&name)?;
            m.reload(&name).map(drop)
        }),
        Command::Enable { name } => with_events(&manager, |m| m.enable(&name)),
        Command::Disable { name } => with_events(&manager, |m| m.disable(&name)),
        Command::Watch => watch(manager),
        Command::Call {
            name,
            set,
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
            for pair in &set {
                let (key, value) = parse_set(pair)?;
                ctx.set(key, &value)?;
            }
            manager.load_plugin(&name)?;
            let handle = manager.get(&name)?;
            let result = match timeout {
                None => handle.execute(&ctx),
                Some(timeout) => call_bounded(&handle, &ctx, timeout)?,
            };
            let values: serde_json::Map<String, serde_json::Value> = ctx
                .values()
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

/// Runs the call on a thread of its own and waits for it until `timeout` plus [`GRACE`].
///
/// A plugin that ignores cancellation cannot be stopped in-process; plugctl then reports it
/// and exits, which ends the call with the process.
fn call_bounded(
    handle: &PluginHandle,
    ctx: &Context,
    timeout: Duration,
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
    let stuck = finished.recv_timeout(timeout + GRACE).map_err(|_| Failure {
        cause: format!(
            "the plugin did not stop: its call is still running {} after its {} deadline, \
                 ignoring cancellation",
            humantime::format_duration(GRACE),
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
            failure.print();
            std::process::exit(1)
        }
    }
}

/// Runs `action`, then prints the lifecycle events it caused, one JSON object per line.
fn with_events(
    manager: &PluginManager,
    action: impl FnOnce(&PluginManager) -> Result<(), Error>,
) -> Result<ExitCode, Failure> {
    let events = manager.subscribe();
    action(manager)?;
    for event in events.try_iter() {
        println!(
            "{}",
            serde_json::to_string(&event).expect("events serialize")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn watch(manager: PluginManager) -> Result<ExitCode, Failure> {
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
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(&event).expect("events serialize")
        );
        let _ = out.flush();
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_set(pair: &str) -> Result<(&str, serde_json::Value), Failure> {
    let Some((key, json)) = pair.split_once('=') else {
        return Err(Failure {
            cause: format!("--set `{pair}` has no `=`"),
            hint: "write --set KEY=JSON, e.g. --set sample='{\"name\":\"world\"}'".to_owned(),
        });
    };
    if key.is_empty() {
        return Err(Failure {
            cause: format!("--set `{pair}` has an empty key"),
            hint: "write --set KEY=JSON, e.g. --set count=3".to_owned(),
        });
    }
    let value = serde_json::from_str(json).map_err(|e| Failure {
        cause: format!("--set {key}: `{json}` is not JSON ({e})"),
        hint: format!("quote strings as JSON: --set {key}='\"{json}\"'"),
    })?;
    Ok((key, value))
}

fn list(manager: &PluginManager, json: bool) -> Result<ExitCode, Failure> {
    manager.load_plugins()?;
    let list = manager.list();
    if json {
        println!("{}", to_json(&list));
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no plugins in {}", manager.base_dir().display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<10} {:<10} {:>9} {:>8}  {:<20} RUNNING COPY / REASON",
        "NAME", "VERSION", "STATE", "IN-FLIGHT", "RETAINED", "LOADED AT (UTC)"
    );
    for p in &list {
        let version = p
            .active
            .as_ref()
            .map_or_else(|| "-".to_owned(), |a| a.version.to_string());
        let loaded_at = p
            .active
            .as_ref()
            .map_or_else(|| "-".to_owned(), |a| format_time(a.loaded_at));
        let detail = match (&p.state, &p.active) {
            (PluginState::Failed(reason), _) => reason.clone(),
            (_, Some(a)) => a.running_copy.display().to_string(),
            _ => String::new(),
        };
        println!(
            "{:<20} {:<10} {:<10} {:>9} {:>8}  {:<20} {}",
            p.name,
            version,
            p.state.as_str(),
            p.calls_in_flight,
            p.retained_libraries,
            loaded_at,
            detail
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn format_time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn print_info(s: &PluginSummary) {
    println!("name:         {}", s.name);
    println!("version:      {}", s.version);
    if let Some(d) = &s.manifest.description {
        println!("description:  {d}");
    }
    if !s.manifest.maintainers.is_empty() {
        println!("maintainers:  {}", s.manifest.maintainers.join(", "));
    }
    if let Some(h) = &s.manifest.home {
        println!("home:         {h}");
    }
    println!("folder:       {}", s.dir.display());
    println!("library:      {}", s.library.display());
    println!("running copy: {}", s.running_copy.display());
    println!("sdk version:  {}", s.sdk_version);
    println!(
        "hooks:        on_load {}, on_unload {}",
        yes_no(s.has_on_load),
        yes_no(s.has_on_unload)
    );
    if let Some(http) = &s.manifest.http_services {
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

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("plain data serializes to JSON")
}
