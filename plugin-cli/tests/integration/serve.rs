//! `plugctl serve` as a process: it refuses a public address without a token and a weak
//! token, serves the API behind the token it was given, stops cleanly on SIGTERM and within
//! its grace however many calls and connections hang, keeps answering while a thousand
//! connections sit idle at a low descriptor limit, and does not grow under large bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plugin_test_support::fixtures;

use crate::cli::stderr;

const BOUND: Duration = Duration::from_secs(60);

/// A token `serve` accepts.
const TOKEN: &str = "serve-test-token-8d41c07e";

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
    start_command(
        Command::new(env!("CARGO_BIN_EXE_plugctl")),
        dir,
        globals,
        args,
    )
}

/// [`start_with`] from a command the caller prepared (limits, say).
fn start_command(
    mut command: Command,
    dir: &std::path::Path,
    globals: &[&str],
    args: &[&str],
) -> (Child, String) {
    let mut child = command
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
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    // What an upload killed midway leaves: serve removes it as it starts.
    let stale = base.path().join(".install-AbC123");
    std::fs::create_dir_all(stale.join("hello")).unwrap();
    let (child, url) = start(
        base.path(),
        &[
            "--addr",
            "127.0.0.1:0",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    assert!(!stale.exists(), "serve removed the stale staging folder");
    let pid = child.id();
    let agent = agent();
    let refused = agent.get(format!("{url}/api/v1/plugins")).call().unwrap();
    assert_eq!(refused.status(), 401);
    let mut listed = agent
        .get(format!("{url}/api/v1/plugins"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(listed.status(), 200);
    let body = listed.body_mut().read_to_string().unwrap();
    assert!(body.contains("\"hello\""), "{body}");

    // SAFETY: `pid` is the child started above, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    assert!(wait(child), "serve exits with success on SIGTERM");
}

#[test]
fn a_short_or_repetitive_token_is_refused_at_start() {
    let base = tempfile::tempdir().unwrap();
    for weak in ["s3cret", "aaaaaaaaaaaaaaaaaaaaaaaa"] {
        let out = Command::new(env!("CARGO_BIN_EXE_plugctl"))
            .arg("--dir")
            .arg(base.path())
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("PLUGCTL_TOKEN", weak)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{weak} was accepted");
        let err = stderr(&out);
        assert!(err.contains("API token"), "{err}");
        assert!(err.contains("openssl rand -hex 32"), "{err}");
    }
}

/// The status of a GET of `path` from `url`'s server, over a connection of its own.
fn status_of(url: &str, path: &str) -> u16 {
    agent()
        .get(format!("{url}{path}"))
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// SIGTERMs `child` and returns how long it took to exit (at most `BOUND`), and whether it
/// succeeded.
#[cfg(unix)]
fn terminate(child: Child) -> (Duration, bool) {
    let started = Instant::now();
    let pid = child.id() as libc::pid_t;
    // SAFETY: `pid` is the child started by this test, not waited for yet: no other process.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let ok = wait(child);
    (started.elapsed(), ok)
}

#[cfg(unix)]
#[test]
fn sigterm_returns_within_the_grace_while_calls_and_connections_hang() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "reflect");
    let (child, url) = start(
        base.path(),
        &[
            "--addr",
            "127.0.0.1:0",
            "--timeout",
            "200ms",
            "--shutdown-grace",
            "1s",
        ],
    );
    let addr = url.strip_prefix("http://").unwrap().to_owned();
    // Two calls that ignore cancellation and would run ten minutes, in-process: answered 504
    // after their deadline and grace, and still running.
    for _ in 0..2 {
        assert_eq!(status_of(&url, "/reflect/sleep/600000"), 504);
    }
    // A connection that never sends a request, and one in the middle of a request's head.
    let _silent = TcpStream::connect(&addr).unwrap();
    let mut halfway = TcpStream::connect(&addr).unwrap();
    halfway
        .write_all(b"GET /reflect/ok HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let (took, ok) = terminate(child);
    assert!(ok, "serve exits with success on SIGTERM");
    eprintln!("serve exited {took:?} after SIGTERM, with 2 stuck calls and 2 open connections");
    // Within twice the grace, and some: before the bound, it took the drain timeout twice
    // (61 s) and the connections' lifetime (forever).
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[cfg(unix)]
#[test]
fn a_thousand_idle_connections_at_a_low_descriptor_limit_do_not_lock_clients_out() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "reflect");
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugctl"));
    // SAFETY: the closure runs in the child before exec and only calls setrlimit, which is
    // async-signal-safe, on a struct on its stack.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            let limit = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (child, url) = start_command(
        command,
        base.path(),
        &[],
        &["--addr", "127.0.0.1:0", "--header-timeout", "2s"],
    );
    let addr = url.strip_prefix("http://").unwrap().to_owned();
    // 1100 connections that send nothing: more than the descriptors serve has.
    let idle: Vec<TcpStream> = (0..1100)
        .map(|_| TcpStream::connect(&addr).expect("the listener keeps accepting"))
        .collect();
    // A client arriving now is answered at once (503 while the slots are held), and served
    // once the idle connections' header timeout has closed them.
    let started = Instant::now();
    let mut first = None;
    loop {
        let status = status_of(&url, "/reflect/ok");
        first.get_or_insert((status, started.elapsed()));
        if status == 200 {
            break;
        }
        assert!(
            status == 503 || status == 0,
            "answered {status} while connections are idle"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never served while idle connections are open"
        );
    }
    let served = started.elapsed();
    eprintln!("with 1100 idle connections: first answer {first:?}, served after {served:?}");
    // Every idle connection was answered or closed by the server; none is left waiting.
    for mut stream in idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        assert!(
            !read.as_ref().is_err_and(|e| matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )),
            "an idle connection is still open"
        );
    }
    let (_, ok) = terminate(child);
    assert!(ok);
}

/// Resident memory of `pid` now and at its peak, in KiB (`VmRSS`, `VmHWM`).
#[cfg(target_os = "linux")]
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(target_os = "linux")]
#[test]
fn large_json_bodies_do_not_grow_the_server() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "http-echo");
    let (child, url) = start(base.path(), &["--addr", "127.0.0.1:0"]);
    let addr = url.strip_prefix("http://").unwrap().to_owned();
    let (rss_before, peak_before) = memory(child.id());
    // A 16 MiB JSON array of zeros: the worst case for a parser's tree.
    let body = format!("[{}0]", "0,".repeat(8 << 20));
    let send = |chunked: bool| {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let length = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {}", body.len())
        };
        let head = format!(
            "POST /api/plugin/samples HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\n{length}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        // The server may answer and stop reading at any point: errors writing are expected.
        for piece in body.as_bytes().chunks(64 << 10) {
            let written = if chunked {
                stream
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .and_then(|()| stream.write_all(piece))
                    .and_then(|()| stream.write_all(b"\r\n"))
            } else {
                stream.write_all(piece)
            };
            if written.is_err() {
                break;
            }
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let answers: Vec<String> = std::thread::scope(|scope| {
        let sends: Vec<_> = [false, true, false, true]
            .map(|chunked| scope.spawn(move || send(chunked)))
            .into_iter()
            .collect();
        sends.into_iter().map(|s| s.join().unwrap()).collect()
    });
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    let (rss_after, peak_after) = memory(child.id());
    eprintln!(
        "4 bodies of 16 MiB: RSS {rss_before} KiB -> {rss_after} KiB, peak {peak_before} KiB -> \
         {peak_after} KiB"
    );
    // Each body is cut off at the 2 MiB body limit, and nothing is parsed past it: the peak
    // moves by a few MiB, not the 690 MiB one body took before the limits.
    assert!(
        peak_after < peak_before + 48 * 1024,
        "peak RSS grew from {peak_before} KiB to {peak_after} KiB"
    );
    let (_, ok) = terminate(child);
    assert!(ok);
}
