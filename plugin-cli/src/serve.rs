//! `plugctl serve`: the plugins' HTTP routes, the management API, `/metrics` and the
//! management page, over `plugin-http`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use plugin_http::HttpOptions;

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
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_in_flight: usize,
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
    match token {
        Some(t) if t.is_empty() => Err(failure(
            "the API token is empty",
            "put a long random token in the file (e.g. `openssl rand -hex 32`)",
        )),
        other => Ok(other),
    }
}

pub(crate) fn run(
    args: ServeArgs,
    dir: &Path,
    manager_args: &ManagerArgs,
) -> Result<ExitCode, Failure> {
    let token = token(&args)?;
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
        .trusted_keys(args.keys.load(dir)?);
    if let Some(token) = token {
        options = options.token(token);
    }
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
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| failure(format!("the server failed: {e}"), "retry"))
    });
    // Calls that ignore cancellation may still hold blocking threads: do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    report_shutdown(manager.shutdown());
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
