//! README.md's plugin and host, built outside the workspace exactly as written there, and
//! run: the plugin through `plugctl`, then through the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use plugin_test_support::{library_file_name, workspace_root};

/// The body of the first code block opening with `fence` after `marker` in README.md.
fn fenced_after(readme: &str, marker: &str, fence: &str) -> String {
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker:?}"));
    let rest = &readme[start..];
    let open = rest.find(fence).unwrap();
    let body_start = open + rest[open..].find('\n').unwrap() + 1;
    let body_end = body_start + rest[body_start..].find("```").unwrap();
    rest[body_start..body_end].to_owned()
}

/// The code block that follows the line `` `<file>`: `` in README.md.
fn block_after(readme: &str, file: &str) -> String {
    fenced_after(readme, &format!("`{file}`:"), "```")
}

/// Runs `cmd` and returns its output, failing the test with its stderr if it failed.
fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

#[test]
fn readme_plugin_and_host_build_outside_the_workspace_and_run() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let checkout = root.to_str().unwrap();
    let fill = |text: String| text.replace("/path/to/checkout", checkout);

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // A workspace of its own, so nothing of this repository's configuration applies.
    write(
        &w.join("Cargo.toml"),
        "[workspace]\nmembers = [\"greeter\", \"myhost\"]\nresolver = \"2\"\n",
    );
    for file in [
        "greeter/Cargo.toml",
        "greeter/src/lib.rs",
        "greeter/plugin.json",
        "myhost/Cargo.toml",
        "myhost/src/main.rs",
    ] {
        write(&w.join(file), &fill(block_after(&readme, file)));
    }

    // Pin dependency versions to this workspace's, so the build does not depend on what
    // was published today.
    std::fs::copy(root.join("Cargo.lock"), w.join("Cargo.lock")).unwrap();
    // Share compiled dependencies with the fixtures build.
    let target: PathBuf = root.join("target").join("plugins");
    let status = cargo()
        .current_dir(w)
        .args(["build", "--quiet", "--target-dir"])
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "the README's crates do not build");

    let plugin_dir = w.join("plugins").join("greeter");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::copy(
        w.join("greeter/plugin.json"),
        plugin_dir.join("plugin.json"),
    )
    .unwrap();
    let lib = library_file_name("greeter");
    std::fs::copy(target.join("debug").join(&lib), plugin_dir.join(&lib)).unwrap();

    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_plugctl"))
            .arg("--dir")
            .arg(w.join("plugins"))
            .args(["call", "greeter", "--set", r#"input={"name":"world"}"#]),
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The output README.md shows after the commands.
    let readme_output = fenced_after(&readme, "plugctl --dir ../plugins call greeter", "```json");
    let expected: serde_json::Value = serde_json::from_str(&readme_output).unwrap();
    assert_eq!(got, expected);

    let out = run_ok(
        Command::new(
            target
                .join("debug")
                .join(format!("myhost{}", std::env::consts::EXE_SUFFIX)),
        )
        .current_dir(w),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello, world!");
}

/// README.md's package commands, run as written by `bash` in an empty folder with `plugctl`
/// on the PATH: the author's path (new, build, call, keygen, pack and sign), then the
/// operator's (trust, verify, install, call).
#[test]
fn readme_package_commands_run_as_written() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let author = fenced_after(&readme, "The author's path", "```sh");
    let operator = fenced_after(&readme, "The operator's path", "```sh");
    let work = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_plugctl")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    for (what, script) in [("author", &author), ("operator", &operator)] {
        let out = run_ok(
            Command::new("bash")
                .args(["-euo", "pipefail", "-c", script])
                .current_dir(work.path())
                .env("PATH", &path)
                .env_remove("PLUGCTL_DIR")
                // Builds share one target directory, so the SDK compiles once per run.
                .env(
                    "CARGO_TARGET_DIR",
                    root.join("target").join("package-builds"),
                )
                .env("XDG_CACHE_HOME", work.path().join("cache")),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Each path ends with a call of the plugin it made or installed.
        assert!(
            stdout.contains("\"greeting\": \"Hello, world!\""),
            "{what}: {stdout}"
        );
    }
    assert!(work.path().join("greeter-0.1.0.plg.minisig").is_file());
    assert!(work
        .path()
        .join("deployed")
        .join("greeter")
        .join("plugin.json")
        .is_file());
}

/// README.md's HTTP commands, run as written from the repository's root: the samples are
/// built into `plugins/`, `plugctl serve` serves them on the address README gives, and the
/// route README names answers.
#[cfg(unix)]
#[test]
fn readme_serve_commands_run_as_written() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = fenced_after(
        &readme,
        "## HTTP: serve the routes plugins declare",
        "```sh",
    );
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    let [build, serve] = lines[..] else {
        panic!("README's HTTP block has two commands: {block}");
    };
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_plugctl")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    run_ok(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", build])
            .current_dir(&root)
            .env("PATH", &path),
    );
    /// Stops the server however the test ends.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Server(
        Command::new("bash")
            .args(["-c", &format!("exec {serve}")])
            .current_dir(&root)
            .env("PATH", &path)
            .env_remove("PLUGCTL_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = server.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(line.trim(), "listening on http://127.0.0.1:8080");
    let url = "http://127.0.0.1:8080/api/plugin/sample/7";
    assert!(
        readme.contains(&format!("curl {url}")),
        "README names {url}"
    );
    let mut response = ureq::get(url).call().unwrap();
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(body, r#"{"id":"7","query":{}}"#);
}

/// README.md's isolation command, run as written in a folder whose `plugins/` holds the
/// `hello` sample: the call runs in a worker process and answers as in-process.
#[cfg(target_os = "linux")]
#[test]
fn readme_isolation_command_runs_as_written() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let block = fenced_after(
        &readme,
        "## Isolation: run a plugin in a worker process",
        "```sh",
    );
    let command = block.trim();
    assert!(command.contains("--isolation process"), "{command}");
    let work = tempfile::tempdir().unwrap();
    plugin_test_support::fixtures().install(&work.path().join("plugins"), "hello");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_plugctl")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out = run_ok(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", command])
            .current_dir(work.path())
            .env("PATH", &path)
            .env_remove("PLUGCTL_DIR"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Hello, world!"), "{stdout}");
}
