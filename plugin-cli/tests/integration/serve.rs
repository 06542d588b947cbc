//! `plugctl serve` as a process: it refuses a public address without a token, serves the
//! API behind the token it was given, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use plugin_test_support::fixtures;

use crate::cli::stderr;

const BOUND: Duration = Duration::from_secs(60);

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Starts `plugctl --dir DIR serve ARGS` and returns it with the URL it printed first.
fn start(dir: &std::path::Path, args: &[&str]) -> (Child, String) {
    start_with(dir, &[], args)
}

/// Starts `plugctl --dir DIR GLOBALS serve ARGS` and returns it with the URL it printed
/// first.
pub(crate) fn start_with(
    dir: &std::path::Path,
    globals: &[&str],
    args: &[&str],
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .arg("--dir")
        .arg(dir)
        .args(globals)
        .arg("serve")
        .args(args)
        .env_remove("PLUGCTL_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(BOUND).expect("serve printed its address");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

/// Waits, at most `BOUND`, for `child` to exit, and returns whether it succeeded.
fn wait(mut child: Child) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait().map(|s| s.success()).unwrap_or(false));
    });
    rx.recv_timeout(BOUND).expect("serve exited")
}

#[test]
fn a_public_address_without_a_token_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .arg("--dir")
        .arg(base.path())
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env_remove("PLUGCTL_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("without a token"), "{}", stderr(&out));
}

#[cfg(unix)]
#[test]
fn serve_guards_the_api_with_its_token_and_stops_on_sigterm() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let token_file = base.path().join(".token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let (child, url) = start(
        base.path(),
        &[
            "--addr",
            "127.0.0.1:0",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let pid = child.id();
    let agent = agent();
    let refused = agent.get(format!("{url}/api/v1/plugins")).call().unwrap();
    assert_eq!(refused.status(), 401);
    let mut listed = agent
        .get(format!("{url}/api/v1/plugins"))
        .header("Authorization", "Bearer s3cret")
        .call()
        .unwrap();
    assert_eq!(listed.status(), 200);
    let body = listed.body_mut().read_to_string().unwrap();
    assert!(body.contains("\"hello\""), "{body}");

    // SAFETY: `pid` is the child started above, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    assert!(wait(child), "serve exits with success on SIGTERM");
}
