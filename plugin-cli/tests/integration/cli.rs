//! `plugctl` driven as a process, the way an operator uses it.

use std::path::Path;
use std::process::{Command, Output};

use plugin_test_support::fixtures;

pub(crate) fn plugctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("plugctl runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn base_with(names: &[&str]) -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    for name in names {
        fixtures().install(base.path(), name);
    }
    base
}

#[test]
fn call_prints_the_context_as_json() {
    let base = base_with(&["hello"]);
    let out = plugctl(
        base.path(),
        &["call", "hello", "--set", r#"sample={"name":"world"}"#],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(values["greeting"], "Hello, world!");
    assert_eq!(values["sample"]["name"], "world");
}

#[test]
fn call_passes_label_and_timeout() {
    let base = base_with(&["label-router", "slow"]);
    let out = plugctl(
        base.path(),
        &[
            "call",
            "label-router",
            "--label",
            "plugin.get",
            "--set",
            r#"id="7""#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(values["item"]["id"], "7");
    assert_eq!(values["served_label"], "plugin.get");

    let out = plugctl(base.path(), &["call", "slow", "--timeout", "30ms"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("deadline_exceeded"), "{err}");
    assert!(err.contains("hint: "), "{err}");
    // The values are still printed, so an operator sees how far it got.
    let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(values["steps"].is_u64());
}

#[test]
fn list_shows_loaded_and_failed_plugins() {
    let base = base_with(&["hello", "counter", "identity-mismatch"]);
    let out = plugctl(base.path(), &["list", "--load"]);
    // 3: it listed, and some plugin failed.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_owned()
    };
    assert!(line("hello").contains("active"), "{text}");
    assert!(line("counter").contains("active"), "{text}");
    assert!(line("identity-mismatch").contains("failed"), "{text}");
    assert!(line("identity-mismatch").contains("9.9.9"), "{text}");

    let out = plugctl(base.path(), &["list", "--load", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let hello = entries.iter().find(|e| e["name"] == "hello").unwrap();
    assert_eq!(hello["state"], "active");
    assert_eq!(hello["active"]["version"], "0.1.0");
    let bad = entries
        .iter()
        .find(|e| e["name"] == "identity-mismatch")
        .unwrap();
    assert_eq!(bad["state"], "failed");
    assert!(bad["reason"]
        .as_str()
        .unwrap()
        .contains("identity mismatch"));
}

#[test]
fn info_shows_the_manifest_and_routes() {
    let base = base_with(&["label-router"]);
    let out = plugctl(base.path(), &["info", "label-router"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("/api/plugin/sample/:id"), "{text}");
    assert!(text.contains("plugin.post"), "{text}");

    let out = plugctl(base.path(), &["info", "label-router", "--load", "--json"]);
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["name"], "label-router");
    assert_eq!(
        info["manifest"]["http_services"]["routes"][0]["method"],
        "GET"
    );
    // The private copy (a memory file on Linux, else a file in a temporary directory
    // removed when plugctl exited) is gone.
    let copy = Path::new(info["running_copy"].as_str().unwrap());
    assert!(!copy.starts_with(base.path()), "{}", copy.display());
    assert!(!copy.exists(), "{}", copy.display());
}

#[test]
fn failures_exit_non_zero_with_a_cause_and_a_hint() {
    let base = base_with(&["hello", "panic-execute"]);
    let cases: &[(&[&str], &str)] = &[
        (&["call", "nope"], "no plugin folder `nope`"),
        (&["info", "nope"], "no plugin folder `nope`"),
        (
            &["call", "hello", "--set-json", "sample=not json"],
            "is not JSON",
        ),
        (&["call", "hello", "--set", "novalue"], "has no `=`"),
        (&["call", "hello"], "invalid_input"),
        (&["call", "panic-execute"], "panicked"),
    ];
    for (args, expected) in cases {
        let out = plugctl(base.path(), args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        let error_lines: Vec<_> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(error_lines.len(), 1, "{args:?}: {err}");
        assert!(error_lines[0].contains(expected), "{args:?}: {err}");
        assert!(
            err.lines().any(|l| l.starts_with("hint: ")),
            "{args:?}: {err}"
        );
    }
    let out = plugctl(&base.path().join("missing"), &["list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read the plugin base directory"));
}

/// The events a lifecycle command printed with `-o json`: one JSON array.
fn event_lines(o: &Output) -> Vec<serde_json::Value> {
    let text = stdout(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn unload_and_reload_report_their_events() {
    let base = base_with(&["counter"]);
    let out = plugctl(base.path(), &["-o", "json", "unload", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = event_lines(&out);
    assert_eq!(events[0]["event"], "loaded");
    assert_eq!(
        events[1],
        serde_json::json!({ "event": "unloaded", "name": "counter" })
    );

    let out = plugctl(base.path(), &["-o", "json", "reload", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = event_lines(&out);
    assert_eq!(
        events[1],
        serde_json::json!({ "event": "upgraded", "name": "counter", "from": "0.1.0", "to": "0.1.0" })
    );
}

#[test]
fn disable_persists_until_enable() {
    let base = base_with(&["hello", "counter"]);
    let out = plugctl(base.path(), &["-o", "json", "disable", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not on another running host"),
        "{}",
        stderr(&out)
    );
    assert!(
        event_lines(&out).contains(&serde_json::json!({ "event": "disabled", "name": "counter" }))
    );

    let out = plugctl(base.path(), &["list", "--load", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let counter = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "counter")
        .unwrap();
    assert_eq!(counter["state"], "disabled");
    assert!(counter["active"].is_null());

    let out = plugctl(base.path(), &["call", "counter"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is disabled"), "{}", stderr(&out));

    let out = plugctl(base.path(), &["enable", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = plugctl(base.path(), &["call", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn list_shows_state_in_flight_retained_and_running_copy() {
    let base = base_with(&["hello"]);
    let out = plugctl(base.path(), &["list", "--load"]);
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    for column in [
        "STATE",
        "IN-FLIGHT",
        "RETAINED",
        "LOADED AT",
        "RUNNING COPY",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let line = text.lines().find(|l| l.starts_with("hello")).unwrap();
    assert!(line.contains("active"), "{line}");
    // On Linux the running copy is a memory file, shown as its mappings are named.
    #[cfg(target_os = "linux")]
    assert!(line.contains("memfd:plugin:hello-0.1.0"), "{line}");
    #[cfg(not(target_os = "linux"))]
    assert!(line.contains("plugin-host-"), "{line}");
}

#[test]
fn watch_prints_events_as_folders_come_and_go() {
    use std::io::BufRead;
    let base = base_with(&["hello"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .arg("--dir")
        .arg(base.path())
        .args(["-o", "json", "watch"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next = || -> serde_json::Value {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("plugctl watch printed an event in time");
        serde_json::from_str(&line).unwrap()
    };
    // The initial load of what is there.
    assert_eq!(next()["name"], "hello");
    fixtures().install(base.path(), "counter");
    let event = next();
    assert_eq!(
        (event["event"].as_str(), event["name"].as_str()),
        (Some("loaded"), Some("counter"))
    );
    std::fs::remove_dir_all(base.path().join("counter")).unwrap();
    assert_eq!(
        next(),
        serde_json::json!({ "event": "unloaded", "name": "counter" })
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs plugctl, killing it and failing the test if it has not exited within `bound`.
fn plugctl_bounded(dir: &Path, args: &[&str], bound: std::time::Duration) -> Output {
    plugctl_bounded_pid(dir, args, bound).1
}

/// [`plugctl_bounded`], with the process id plugctl ran as.
pub(crate) fn plugctl_bounded_pid(
    dir: &Path,
    args: &[&str],
    bound: std::time::Duration,
) -> (u32, Output) {
    let child = Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("plugctl starts");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(bound) {
        Ok(out) => (pid, out.expect("plugctl's output")),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("plugctl {args:?} did not exit within {bound:?}");
        }
    }
}

#[test]
fn a_call_that_ignores_its_deadline_ends_plugctl_soon_after_it() {
    let base = base_with(&["hostile"]);
    let started = std::time::Instant::now();
    let out = plugctl_bounded(
        base.path(),
        &["call", "hostile", "--label", "spin", "--timeout", "1s"],
        std::time::Duration::from_secs(60),
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took >= std::time::Duration::from_secs(1), "{took:?}");
    let err = stderr(&out);
    assert!(err.contains("error: the plugin did not stop"), "{err}");
    assert!(err.contains("ignoring cancellation"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_plugin_that_crashes_takes_the_in_process_host_down_with_it() {
    use std::os::unix::process::ExitStatusExt;
    const SIGABRT: i32 = 6;
    const SIGSEGV: i32 = 11;
    let base = base_with(&["hostile"]);
    let run = |label: &str| {
        plugctl_bounded(
            base.path(),
            &["call", "hostile", "--label", label],
            std::time::Duration::from_secs(60),
        )
    };
    assert_eq!(run("abort").status.signal(), Some(SIGABRT));
    assert_eq!(run("segfault").status.signal(), Some(SIGSEGV));
    assert_eq!(run("exit").status.code(), Some(7));
    let overflow = run("stack_overflow").status.signal();
    assert!(
        matches!(overflow, Some(SIGABRT | SIGSEGV)),
        "stack overflow ended with {overflow:?}"
    );
    // A panic, by contrast, is contained: an error, and plugctl exits normally.
    let panicked = run("panic");
    assert_eq!(panicked.status.code(), Some(1));
    assert!(
        stderr(&panicked).contains("panicked"),
        "{}",
        stderr(&panicked)
    );
}

#[cfg(unix)]
#[test]
fn list_returns_at_once_with_the_good_plugins_active_beside_every_hostile_file() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let base = base_with(&["hello", "counter"]);
    let dir = |name: &str| {
        let dir = base.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    };
    let mkfifo = |path: &Path| {
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    };
    mkfifo(&dir("a-fifo").join("plugin.json"));
    mkfifo(&dir("z-fifo").join("plugin.json"));
    symlink("/dev/zero", dir("zero").join("plugin.json")).unwrap();
    std::fs::File::create(dir("huge").join("plugin.json"))
        .unwrap()
        .set_len(50 << 20)
        .unwrap();
    std::fs::create_dir(dir("folder").join("plugin.json")).unwrap();
    // Good plugins made hostile by where they live or who may write them (folder checks
    // come before the manifest's, so the folder names need not match).
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = fixtures().install_as(elsewhere.path(), "hello", "linked-out");
    symlink(outside, base.path().join("linked-out")).unwrap();
    let open = fixtures().install_as(base.path(), "hello", "open-folder");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let foreign = fixtures().install(base.path(), "slow");
    let foreign_library = std::fs::read_dir(&foreign)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "so"))
        .unwrap();
    let owner_staged = std::os::unix::fs::chown(&foreign_library, Some(54_321), None).is_ok();

    let out = plugctl_bounded(
        base.path(),
        &["list", "--load"],
        std::time::Duration::from_secs(10),
    );
    let text = stdout(&out);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
    };
    assert!(line("hello").contains("active"), "{text}");
    assert!(line("counter").contains("active"), "{text}");
    for (name, why) in [
        ("a-fifo", "FIFO"),
        ("z-fifo", "FIFO"),
        ("zero", "character device"),
        ("huge", "larger than"),
        ("folder", "a directory"),
        ("linked-out", "outside the base directory"),
        ("open-folder", "writable by group or others"),
    ] {
        assert!(line(name).contains("failed"), "{name}: {text}");
        assert!(line(name).contains(why), "{name}: {text}");
    }
    if owner_staged {
        assert!(line("slow").contains("belongs to user 54321"), "{text}");
    }
}

#[test]
fn a_plugin_panic_reaches_the_host_log_and_error_not_raw_stderr() {
    let base = base_with(&["panic-execute"]);
    let out = Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .arg("--dir")
        .arg(base.path())
        .args(["call", "panic-execute"])
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("plugctl runs");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // Nothing from the plugin's own std: no default panic message, no backtrace.
    assert!(!err.contains("thread '"), "{err}");
    assert!(!err.contains("stack backtrace"), "{err}");
    // The message and its location are in the returned error, and in the host's log.
    let location = "panicked at test-plugins/panic-execute/src/lib.rs:";
    let error_line = err.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(error_line.contains(location), "{err}");
    let logged = err
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("plugins"))
        .unwrap_or_else(|| panic!("no log record of the panic in: {err}"));
    assert!(logged.contains(location), "{logged}");
    assert!(logged.contains("panic-execute"), "{logged}");
}

#[test]
fn concurrent_disables_from_many_processes_all_persist() {
    const PROCESSES: usize = 30;
    let base = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..PROCESSES).map(|i| format!("p{i:02}")).collect();
    // `disable` only needs the plugin folder to exist; it loads nothing.
    for name in &names {
        std::fs::create_dir(base.path().join(name)).unwrap();
    }
    let mut children: Vec<_> = names
        .iter()
        .map(|name| {
            Command::new(env!("CARGO_BIN_EXE_plugctl"))
                .arg("--dir")
                .arg(base.path())
                .args(["disable", name])
                .env_remove("RUST_LOG")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("plugctl starts")
        })
        .collect();
    // Each child's pipes reach end of file when it exits: that is what is waited for.
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, child) in children.iter_mut().enumerate() {
        use std::io::Read as _;
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            let _ = err.read_to_string(&mut text);
            let _ = tx.send((i, text));
        });
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut outputs = vec![None; PROCESSES];
    for _ in 0..PROCESSES {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, text)) => outputs[i] = Some(text),
            Err(_) => {
                for child in &mut children {
                    let _ = child.kill();
                }
                break;
            }
        }
    }
    for (i, child) in children.iter_mut().enumerate() {
        let status = child.wait().unwrap();
        let output = outputs[i]
            .as_deref()
            .unwrap_or_else(|| panic!("`plugctl disable {}` did not finish in time", names[i]));
        assert!(status.success(), "disable {}: {status}\n{output}", names[i]);
    }
    let text = std::fs::read_to_string(base.path().join(plugin_host::STATE_FILE)).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    let disabled: Vec<&str> = state["disabled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(disabled, names, "every disable persisted");
}

#[test]
fn list_exits_zero_when_all_loaded_and_errors_are_json_with_o_json() {
    let base = base_with(&["hello"]);
    let out = plugctl(base.path(), &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = plugctl(base.path(), &["-o", "json", "call", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no plugin folder `nope`"));
    assert!(err["error"]["hint"].as_str().unwrap().contains("list"));
}

#[test]
fn set_guesses_set_json_insists_and_set_file_reads_a_file() {
    let base = base_with(&["hello"]);
    let body = base.path().join("body.txt");
    std::fs::write(&body, "from a file").unwrap();
    let out = plugctl(
        base.path(),
        &[
            "call",
            "hello",
            "--set-json",
            r#"sample={"name":"json"}"#,
            "--set",
            "count=5",
            "--set",
            "word=plain",
            "--set-file",
            &format!("body={}", body.display()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(values["greeting"], "Hello, json!");
    assert_eq!(values["count"], 5);
    assert_eq!(values["word"], "plain");
    assert_eq!(values["body"], "from a file");
}

#[test]
fn the_base_directory_comes_from_plugctl_dir_and_completions_are_printed() {
    let base = base_with(&["hello"]);
    let out = Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .args(["-o", "json", "list"])
        .env("PLUGCTL_DIR", base.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list[0]["name"], "hello");
    // A JSON value keeps the last of two equal keys; a struct refuses a duplicate.
    #[derive(serde::Deserialize)]
    struct Row {
        #[allow(dead_code)]
        name: String,
    }
    serde_json::from_str::<Vec<Row>>(&stdout(&out)).expect("each row has one `name`");

    let out = Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = stdout(&out);
    assert!(script.contains("plugctl"), "{script}");
    assert!(script.contains("--set-json"), "{script}");
}

/// `plugctl watch` stopped by Ctrl-C (`SIGINT`) or `SIGTERM`, which end it without running
/// any destructor, leaves no private copy behind: on Linux each copy is a memory file.
#[cfg(target_os = "linux")]
#[test]
fn watch_stopped_by_a_signal_leaves_no_copy_behind() {
    use std::io::BufRead;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::time::Duration;

    for signal in [libc::SIGINT, libc::SIGTERM] {
        let base = base_with(&["hello"]);
        // Where plugctl would make a copy directory: it must stay empty.
        let scratch = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_plugctl"));
        command
            .arg("--dir")
            .arg(base.path())
            .args(["-o", "json", "watch"])
            .env_remove("RUST_LOG")
            .env("TMPDIR", scratch.path())
            .env("XDG_RUNTIME_DIR", scratch.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        // SAFETY: `signal` is async-signal-safe; the closure allocates nothing. A signal
        // ignored by this process (a test run as a background job of a shell ignores
        // SIGINT) would be ignored by the child too: restore the default action.
        unsafe {
            command.pre_exec(move || {
                libc::signal(signal, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let pid = child.id();

        let (lines_tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines_tx.send(line);
            }
        });
        let (exit_tx, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || exit_tx.send(child.wait()));
        let give_up = || {
            // SAFETY: `kill` only sends a signal to the child, which has not been reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        };

        // Wait until it loaded the plugin: its first event.
        let Ok(first) = lines.recv_timeout(Duration::from_secs(60)) else {
            give_up();
            panic!("plugctl watch printed no event in time");
        };
        assert!(first.contains("\"loaded\""), "{first}");
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        assert!(
            maps.contains("/memfd:plugin:hello-0.1.0 (deleted)"),
            "hello is not mapped from a memory file"
        );

        // SAFETY: `kill` only sends a signal to the child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
        let status = match exited.recv_timeout(Duration::from_secs(30)) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                give_up();
                panic!("plugctl watch did not exit within 30 s of signal {signal}");
            }
        };
        assert_eq!(status.signal(), Some(signal), "{status:?}");

        let left: Vec<_> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        // Nor in /dev/shm, whatever the environment said.
        let pid_part = format!("-{pid}-");
        for dir in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if !dir
                .file_name()
                .to_string_lossy()
                .starts_with("plugin-host-")
            {
                continue;
            }
            for copy in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = copy.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.contains(&pid_part),
                    "left behind: {}",
                    copy.path().display()
                );
            }
        }
    }
}

#[test]
fn list_and_info_check_plugins_without_running_their_code() {
    let base = base_with(&["hello", "panic-on-load", "ctor-mark"]);
    // ctor-mark's manifest says 0.2.0 on purpose; make it match, so it passes every check.
    let manifest = base.path().join("ctor-mark/plugin.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("0.2.0", "0.1.0")).unwrap();
    let marks = tempfile::tempdir().unwrap();
    let mark = marks.path().join("constructor-ran");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plugctl"))
            .arg("--dir")
            .arg(base.path())
            .args(args)
            .env("PLUGIN_CTOR_MARK", &mark)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };

    // From the files only: every plugin passes, panic-on-load's on_load never ran, and
    // ctor-mark's constructor never ran.
    let out = run(&["-o", "json", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["sha256"].as_str().map(str::len), Some(64), "{row}");
    }
    let out = run(&["info", "ctor-mark"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("sdk version:"), "{}", stdout(&out));
    assert!(!mark.exists(), "list and info ran a plugin's constructor");

    // Loaded for real: on_load and the constructor run.
    let out = run(&["list", "--load"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("panic-on-load"))
        .unwrap();
    assert!(line.contains("failed"), "{text}");
    assert!(mark.exists(), "--load maps the library");
}
