//! `plugctl serve`: the plugins' HTTP routes, the management API, `/metrics` and the
//! management page, over `plugin-http`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use plugin_http::{HttpOptions, ServeOptions};

use crate::isolation::{report_shutdown, ManagerArgs};
use crate::package::KeyArgs;
use crate::Failure;

/// The environment variable `serve` reads the API token from.
pub(crate) const TOKEN_ENV: &str = "PLUGCTL_TOKEN";

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The address to listen on. An address other than loopback needs a token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    addr: SocketAddr,
    /// A file holding the bearer token the management API requires (first line; also
    /// taken from $PLUGCTL_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Also watch DIR: load, upgrade and unload plugins as their folders change.
    #[arg(long)]
    watch: bool,
    /// How long a plugin call may run before its context is cancelled, e.g. 500ms, 30s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s", value_name = "DURATION")]
    timeout: Duration,
    /// Most calls in flight per plugin; beyond it, 503 with Retry-After.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_in_flight: usize,
    /// Threads plugin calls run on, shared by all plugins; when all are busy, 503.
    #[arg(long, default_value_t = 512, value_name = "N")]
    call_threads: usize,
    /// Most connections served at once; beyond it, 503 (kept below `ulimit -n`).
    #[arg(long, default_value_t = 512, value_name = "N")]
    max_connections: usize,
    /// How long a client may take to send a request's head, or stay idle between requests.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", value_name = "DURATION")]
    header_timeout: Duration,
    /// On SIGINT or SIGTERM: how long open connections, then plugin calls, get to finish
    /// (each); plugctl exits within about twice this.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s", value_name = "DURATION")]
    shutdown_grace: Duration,
    /// A host name requests may name in `Host`, besides IP addresses and localhost
    /// (repeatable). Any other is refused (421), which stops DNS-rebinding pages.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
    /// UNSAFE: without a token, let anyone who can reach the server change what runs
    /// (execute, load, unload, uploads). Without this flag a token-less API is read-only.
    #[arg(long)]
    allow_unauthenticated_writes: bool,
    #[command(flatten)]
    keys: KeyArgs,
}

fn failure(cause: impl Into<String>, hint: &str) -> Failure {
    Failure {
        cause: cause.into(),
        hint: hint.to_owned(),
    }
}

/// The token from `--token-file`, else from the environment.
fn token(args: &ServeArgs) -> Result<Option<String>, Failure> {
    let text = match &args.token_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            failure(
                format!("cannot read the token file {}: {e}", path.display()),
                "pass a readable file with --token-file, or set PLUGCTL_TOKEN",
            )
        })?),
        None => std::env::var(TOKEN_ENV).ok(),
    };
    let token = text.map(|t| t.lines().next().unwrap_or_default().trim().to_owned());
    if let Some(token) = &token {
        plugin_http::check_token(token).map_err(|err| {
            failure(
                err.to_string(),
                "put a long random token in the file or $PLUGCTL_TOKEN, e.g. \
                 `openssl rand -hex 32 > token.txt`",
            )
        })?;
    }
    Ok(token)
}

/// `max` connections, or fewer if the descriptor limit would not leave room for them, the
/// listener, the plugins' files and the call threads' own descriptors.
fn connection_cap(max: usize) -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the limit into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            let room = usize::try_from(limit.rlim_cur)
                .unwrap_or(usize::MAX)
                .saturating_sub(RESERVED_DESCRIPTORS);
            if room < max {
                eprintln!(
                    "warning: serving at most {} connections, not {max}: the descriptor limit is {} \
                     (raise it with `ulimit -n`)",
                    room.max(1),
                    limit.rlim_cur
                );
                return room.max(1);
            }
        }
    }
    max
}

/// Descriptors kept for everything but connections.
const RESERVED_DESCRIPTORS: usize = 128;

pub(crate) fn run(
    args: ServeArgs,
    dir: &Path,
    manager_args: &ManagerArgs,
) -> Result<ExitCode, Failure> {
    let token = token(&args)?;
    if token.is_some() && args.allow_unauthenticated_writes {
        return Err(failure(
            "--allow-unauthenticated-writes was given with a token",
            "drop the flag: with a token, writes need the token",
        ));
    }
    if token.is_none() && !args.addr.ip().is_loopback() {
        return Err(failure(
            format!(
                "refusing to serve the management API on {} without a token: anyone who can \
                 reach it could load, unload and run plugins",
                args.addr
            ),
            "pass --token-file FILE or set PLUGCTL_TOKEN, or listen on 127.0.0.1",
        ));
    }
    let manager = Arc::new(manager_args.builder(dir).build());
    // Uploads install here: what an install killed midway left goes first.
    plugin_package::remove_stale_staging(manager.base_dir());
    let report = manager.load_plugins()?;
    for (name, err) in report.failed() {
        eprintln!("not loaded: {name}: {}", err.report());
    }
    let _watcher = if args.watch {
        Some(manager.watch()?)
    } else {
        None
    };
    let mut options = HttpOptions::new()
        .request_timeout(args.timeout)
        .max_in_flight(args.max_in_flight)
        .call_threads(args.call_threads)
        .unauthenticated_writes(args.allow_unauthenticated_writes)
        .trusted_keys(args.keys.load(dir)?);
    for host in &args.allow_hosts {
        options = options.allow_host(host);
    }
    if let Some(token) = token {
        // Checked by `token()` above; the message is the same.
        options = options
            .token(token)
            .map_err(|err| failure(err.to_string(), "use `openssl rand -hex 32`"))?;
    } else if args.allow_unauthenticated_writes {
        eprintln!(
            "warning: --allow-unauthenticated-writes: anyone who can reach {} can load, unload \
             and run plugins",
            args.addr
        );
    }
    let serve_options = ServeOptions::new()
        .max_connections(connection_cap(args.max_connections))
        .header_timeout(args.header_timeout)
        .shutdown_grace(args.shutdown_grace);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the async runtime: {e}"), "retry"))?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| {
                failure(
                    format!("cannot listen on {}: {e}", args.addr),
                    "pick a free port with --addr, e.g. 127.0.0.1:8081",
                )
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| failure(e.to_string(), "retry"))?;
        // The first line on stdout: scripts and tests read the port from it.
        println!("listening on http://{local}");
        eprintln!(
            "serving {} plugins from {}; press Ctrl-C to stop",
            report.loaded().count(),
            manager.base_dir().display()
        );
        let app = plugin_http::router(manager.clone(), options);
        plugin_http::serve(listener, app, serve_options, shutdown_signal())
            .await
            .map_err(|e| failure(format!("the server failed: {e}"), "retry"))
    });
    // Calls that ignore cancellation may still hold threads: do not wait for them.
    runtime.shutdown_background();
    let served = served?;
    if served.dropped_connections > 0 {
        eprintln!(
            "closed {} connections still open after the {:?} shutdown grace",
            served.dropped_connections, args.shutdown_grace
        );
    }
    report_shutdown(manager.shutdown_within(args.shutdown_grace));
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
