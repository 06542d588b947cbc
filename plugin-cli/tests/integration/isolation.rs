//! `plugctl --isolation process` and `--isolate NAME` as a process: a crashing plugin fails
//! its call instead of plugctl, `list` and `info` show the worker, no worker outlives a
//! plugctl killed with SIGKILL, and nothing a plugin started outlives a one-shot call.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::cli::{base_with, plugctl_bounded_pid, stderr, stdout};
use crate::serve::{agent, start_with};

/// How long any one plugctl run may take.
const BOUND: Duration = Duration::from_secs(60);

/// How long a worker may take to end once its host is gone.
const GONE_BOUND: Duration = Duration::from_secs(10);

fn run(dir: &Path, args: &[&str]) -> (u32, Output) {
    plugctl_bounded_pid(dir, args, BOUND)
}

/// Runs plugctl with `env` added, killing it and failing the test if it has not exited
/// within [`BOUND`].
fn run_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_plugctl"));
    command
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().expect("plugctl starts");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(BOUND) {
        Ok(out) => out.expect("plugctl's output"),
        Err(_) => {
            // SAFETY: kill(2) with a pid and a constant signal.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("plugctl {args:?} did not exit within {BOUND:?}");
        }
    }
}

/// The state letter and parent of process `pid`, from `/proc/PID/stat`; `None` if it is
/// gone.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: skip past it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Whether process `pid` has ended (a zombie has ended: it only waits to be reaped).
fn gone(pid: u32) -> bool {
    !matches!(state_and_parent(pid), Some((state, _)) if state != 'Z')
}

/// Waits, at most [`GONE_BOUND`], for process `pid` to end.
fn assert_gone_soon(pid: u32, what: &str) {
    let start = Instant::now();
    while !gone(pid) {
        assert!(
            start.elapsed() < GONE_BOUND,
            "{what} (pid {pid}) still runs {GONE_BOUND:?} later: {:?}",
            state_and_parent(pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The worker processes `parent` started for plugin `plugin`: its children whose
/// environment marks them as that plugin's worker.
fn workers_of(parent: u32, plugin: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| matches!(state_and_parent(pid), Some((s, p)) if p == parent && s != 'Z'))
        .filter(|&pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ
                .split(|&b| b == 0)
                .filter_map(|var| std::str::from_utf8(var).ok())
                .filter_map(|var| var.strip_prefix("PLUGIN_HOST_WORKER="))
                .any(|params| params.split(' ').nth(2) == Some(plugin))
        })
        .collect()
}

/// Whether `pid` descends from `ancestor`, following `/proc` parent links.
fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut at = pid;
    for _ in 0..64 {
        match state_and_parent(at) {
            Some((_, parent)) if parent == ancestor => return true,
            Some((_, parent)) if parent > 1 => at = parent,
            _ => return false,
        }
    }
    false
}

/// A plugctl started in the background, killed and reaped when dropped, so that a test that
/// fails leaves no plugctl (and so no worker) behind.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `error:` lines plugctl printed.
fn error_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("error: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_isolated_crash_fails_the_call_and_plugctl_reports_how_the_worker_ended() {
    let base = base_with(&["hostile"]);
    for (label, how) in [
        ("segfault", "signal 11 (SIGSEGV)"),
        ("abort", "signal 6 (SIGABRT)"),
        ("exit", "exited with status 7"),
    ] {
        let (_, out) = run(
            base.path(),
            &[
                "--isolation",
                "process",
                "call",
                "hostile",
                "--label",
                label,
            ],
        );
        // plugctl itself exits normally, with its failure code, not killed by the signal.
        assert_eq!(out.status.code(), Some(1), "{label}: {}", stderr(&out));
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{label}: {}", stderr(&out));
        assert!(
            errors[0].contains("plugin `hostile`"),
            "{label}: {errors:?}"
        );
        assert!(errors[0].contains(how), "{label}: {errors:?}");
        assert!(
            stderr(&out).contains("hint: the plugin crashed its worker process"),
            "{label}: {}",
            stderr(&out)
        );
        // The values are printed even so; what the crashed worker set died with it.
        let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(values, serde_json::json!({}), "{label}");
    }
}

#[test]
fn an_isolated_call_runs_in_a_worker_that_ends_with_plugctl() {
    let base = base_with(&["hostile"]);
    let (plugctl, out) = run(
        base.path(),
        &["--isolation", "process", "call", "hostile", "--label", "ok"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let worker = values["pid"].as_u64().expect("the plugin set `pid`") as u32;
    assert_ne!(worker, plugctl, "the plugin ran in plugctl's own process");
    assert_gone_soon(worker, "the worker of an exited plugctl");

    // In process (the default), the same call runs in plugctl itself.
    let (plugctl, out) = run(base.path(), &["call", "hostile", "--label", "ok"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(values["pid"].as_u64(), Some(u64::from(plugctl)));
}

#[test]
fn an_isolated_call_that_ignores_its_deadline_is_ended_by_killing_its_worker() {
    let base = base_with(&["hostile"]);
    let started = Instant::now();
    let (_, out) = run(
        base.path(),
        &[
            "--isolation",
            "process",
            "--grace",
            "300ms",
            "call",
            "hostile",
            "--label",
            "spin",
            "--timeout",
            "200ms",
        ],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The host's own deadline handling ended it, not plugctl giving up on a stuck call.
    assert!(err.contains("deadline_exceeded"), "{err}");
    assert!(!err.contains("the plugin did not stop"), "{err}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
}

#[test]
fn isolate_runs_one_plugin_in_a_worker_and_list_and_info_show_it() {
    let base = base_with(&["hostile", "hello"]);
    let isolate = ["--isolate", "hostile"];
    let with = |args: &[&str]| -> Vec<String> {
        isolate
            .iter()
            .chain(args)
            .map(|a| (*a).to_owned())
            .collect()
    };
    let run_with = |args: &[&str]| {
        let args = with(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(base.path(), &args)
    };
    let line_of = |text: &str, name: &str| -> String {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
            .to_owned()
    };

    // Loaded: the table names each plugin's mode, and the isolated one's worker.
    let (plugctl, out) = run_with(&["list", "--load"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    assert!(
        header.contains("MODE") && header.contains("WORKER"),
        "{header}"
    );
    let hostile = line_of(&text, "hostile");
    let columns: Vec<&str> = hostile.split_whitespace().collect();
    assert_eq!(columns[3], "process", "{hostile}");
    let pid: u32 = columns[4]
        .strip_prefix("pid=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no worker pid in {hostile}"));
    assert_ne!(pid, plugctl);
    assert_eq!(columns[5], "restarts=0", "{hostile}");
    let hello = line_of(&text, "hello");
    let columns: Vec<&str> = hello.split_whitespace().collect();
    assert_eq!(&columns[3..5], ["in-process", "-"], "{hello}");

    let (plugctl, out) = run_with(&["-o", "json", "list", "--load"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let entry = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {list}"))
            .clone()
    };
    let hostile = entry("hostile");
    assert_eq!(hostile["active"]["isolation"], "process", "{hostile}");
    let worker = &hostile["active"]["worker"];
    assert!(
        worker["pid"]
            .as_u64()
            .is_some_and(|p| p != u64::from(plugctl)),
        "{worker}"
    );
    assert_eq!(worker["restarts"], 0, "{worker}");
    assert!(worker["quarantined"].is_null(), "{worker}");
    let hello = entry("hello");
    assert_eq!(hello["active"]["isolation"], "in-process", "{hello}");
    assert!(hello["active"]["worker"].is_null(), "{hello}");

    // info --load: the mode and the worker, in text and in JSON.
    let (plugctl, out) = run_with(&["info", "hostile", "--load"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("isolation:    process\n"), "{text}");
    let pid: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("worker pid:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no worker pid in:\n{text}"));
    assert_ne!(pid, plugctl);
    assert!(text.contains("restarts:     0\n"), "{text}");
    let (_, out) = run_with(&["-o", "json", "info", "hostile", "--load"]);
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["isolation"], "process");
    assert!(info["worker"]["pid"].is_u64(), "{info}");
    let (_, out) = run_with(&["info", "hello", "--load"]);
    let text = stdout(&out);
    assert!(text.contains("isolation:    in-process\n"), "{text}");
    assert!(!text.contains("worker pid:"), "{text}");

    // Without --load nothing runs, and the mode is where each plugin would run.
    let (_, out) = run_with(&["list"]);
    let text = stdout(&out);
    let hostile = line_of(&text, "hostile");
    assert_eq!(hostile.split_whitespace().nth(4), Some("process"), "{text}");
    let hello = line_of(&text, "hello");
    assert_eq!(
        hello.split_whitespace().nth(4),
        Some("in-process"),
        "{text}"
    );
    let (_, out) = run_with(&["-o", "json", "info", "hostile"]);
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["isolation"], "process", "{info}");
}

#[test]
fn no_worker_outlives_a_plugctl_killed_with_sigkill() {
    let base = base_with(&["hostile"]);
    // Writes without a token: this test is about workers, not the API's guard.
    let (child, url) = start_with(
        base.path(),
        &["--isolation", "process"],
        &["--addr", "127.0.0.1:0", "--allow-unauthenticated-writes"],
    );
    let mut child = Background(child);
    let plugctl = child.0.id();
    // A call that ignores cancellation keeps the worker busy.
    let execute = format!("{url}/api/v1/plugins/hostile/execute");
    std::thread::spawn(move || {
        let body = serde_json::json!({ "values": {}, "label": "hang", "timeout_ms": 600_000 });
        let _ = agent()
            .post(execute)
            .header("Content-Type", "application/json")
            .send(body.to_string());
    });
    let agent = agent();
    let start = Instant::now();
    let status = loop {
        let text = agent
            .get(format!("{url}/api/v1/plugins/hostile"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let status: serde_json::Value = serde_json::from_str(&text).unwrap();
        if status["stats"]["calls_in_flight"] == 1 {
            break status;
        }
        assert!(
            start.elapsed() < BOUND,
            "the hang call never started: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    // plugctl's child is the worker's keeper; the plugin runs in a process the keeper forked.
    let workers = workers_of(plugctl, "hostile");
    assert_eq!(workers.len(), 1, "one worker for hostile: {workers:?}");
    // The API shows where the plugin runs, and its worker: the plugin process, below the
    // keeper.
    assert_eq!(status["isolation"], "process", "{status}");
    let plugin = status["worker"]["pid"].as_u64().expect("a worker pid") as u32;
    assert!(
        matches!(state_and_parent(plugin), Some((_, parent)) if parent == workers[0]),
        "the plugin process {plugin} is not the keeper {}'s child: {status}",
        workers[0]
    );
    assert!(descends_from(plugin, plugctl), "{status}");
    assert_eq!(status["worker"]["restarts"], 0, "{status}");

    // On Unix, `Child::kill` sends SIGKILL: plugctl gets no chance to stop its workers.
    child.0.kill().expect("plugctl is killed");
    let status = child.0.wait().expect("plugctl is reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status:?}"
    );
    assert_gone_soon(workers[0], "the worker of a plugctl killed with SIGKILL");
    assert_gone_soon(
        plugin,
        "the plugin process of a plugctl killed with SIGKILL",
    );
}

#[test]
fn an_isolated_call_leaves_no_process_the_plugin_started_behind() {
    let base = base_with(&["hostile"]);
    let file = base.path().join("spawned-pids");
    let set = format!("pid_file={}", file.display());
    let (_, out) = run(
        base.path(),
        &[
            "--isolation",
            "process",
            "call",
            "hostile",
            "--label",
            "spawn",
            "--set",
            &set,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let spawned: Vec<u32> = values["spawned"]
        .as_array()
        .unwrap_or_else(|| panic!("no `spawned` in {values}"))
        .iter()
        .map(|p| p.as_u64().expect("a pid") as u32)
        .collect();
    assert_eq!(spawned.len(), 2, "{values}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        written,
        format!("{} {}", spawned[0], spawned[1]),
        "the plugin wrote the pids it started"
    );
    // A child in the worker's process group and a grandchild in its own session: both end
    // with the worker, plugctl gone.
    let _left = KillLeft(spawned.clone());
    for pid in spawned {
        assert_gone_soon(pid, "a process the plugin of a one-shot call started");
    }
}

/// Kills the processes a test saw start that still run when it ends (a failed test leaves
/// none behind).
struct KillLeft(Vec<u32>);

impl Drop for KillLeft {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !gone(pid) {
                // SAFETY: kill(2) with a pid and a constant signal.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn workers_get_a_scrubbed_environment_and_pass_env_adds_to_it_but_never_plugctl_vars() {
    let base = base_with(&["hostile"]);
    let call = |extra: &[&str]| {
        let mut args = vec!["--isolation", "process"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["call", "hostile", "--label", "env"]);
        run_with_env(
            base.path(),
            &args,
            &[
                ("PLUGCTL_TOKEN", "secret-token"),
                ("PLUGCTL_ISOLATION_TEST", "x"),
                ("ISOLATION_TEST_PASSED", "passed"),
                ("ISOLATION_TEST_UNLISTED", "unlisted"),
            ],
        )
    };
    let out = call(&["--pass-env", "ISOLATION_TEST_PASSED"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let values: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let env = values["env"].as_object().expect("the worker's environment");
    assert_eq!(
        env.get("ISOLATION_TEST_PASSED"),
        Some(&"passed".into()),
        "{env:?}"
    );
    for hidden in [
        "PLUGCTL_TOKEN",
        "PLUGCTL_ISOLATION_TEST",
        "ISOLATION_TEST_UNLISTED",
    ] {
        assert!(
            !env.contains_key(hidden),
            "{hidden} reached the worker: {env:?}"
        );
    }

    let out = call(&["--pass-env", "PLUGCTL_TOKEN"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("PLUGCTL_TOKEN") && err.contains("never passed"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn an_unknown_isolation_mode_is_refused() {
    let base = base_with(&[]);
    let (_, out) = run(base.path(), &["--isolation", "bogus", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("invalid value 'bogus'"), "{err}");
    assert!(err.contains("--isolation"), "{err}");
    assert!(err.contains("in-process, process"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}
