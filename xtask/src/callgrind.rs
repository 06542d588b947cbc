//! `cargo xtask callgrind [ITERATIONS]`: instructions per plugin call, counted by
//! `valgrind --tool=callgrind` on `plugin-host/examples/callgrind_calls.rs` (release build).
//!
//! For each call (`noop`'s `handle.execute`, the 1 KB JSON call, the typed 1 KB call) the
//! example runs twice, with ITERATIONS calls (default 10 000) and with 0; both do the same
//! start-up, plugin load and first call, so (Ir of the first - Ir of the second) /
//! ITERATIONS is the instructions one call executes. Deterministic up to hashing seeds and
//! allocator state, unlike times.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::cargo;

/// Loop length when none is given.
const DEFAULT_ITERATIONS: u64 = 10_000;
/// The example's modes, with what each call is.
const MODES: [(&str, &str); 6] = [
    ("noop", "handle.execute on noop"),
    (
        "ctx_set_get",
        "ctx set + get of a short string, in a plugin",
    ),
    ("json_1kb", "1 KB JSON object in and out (json-bench)"),
    (
        "json_floor",
        "  its floor: encode + decode in and out, no plugin",
    ),
    ("typed_1kb", "typed 1 KB call: handle.call (typed-bench)"),
    (
        "typed_floor",
        "  its floor: encode + decode in and out, no plugin",
    ),
];

/// Builds the example in release mode and returns its path, as Cargo reports it.
fn build_example() -> Result<PathBuf> {
    let output = cargo()
        .args(["build", "--release", "--quiet", "-p", "plugin-host"])
        .args(["--example", "callgrind_calls", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!(
            "building the callgrind_calls example failed: {}",
            output.status
        );
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "callgrind_calls"
        {
            if let Some(exe) = message["executable"].as_str() {
                return Ok(exe.into());
            }
        }
    }
    bail!("cargo built plugin-host but reported no `callgrind_calls` example")
}

/// Runs `exe mode iterations` under callgrind; returns the instructions executed (Ir).
fn instructions(exe: &Path, out_dir: &Path, mode: &str, iterations: u64) -> Result<u64> {
    let out = out_dir.join(format!("callgrind.{mode}.{iterations}.out"));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .arg(mode)
        .arg(iterations.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run valgrind; is it installed (apt-get install valgrind)?")?;
    if !status.success() {
        bail!(
            "valgrind {} {mode} {iterations} failed: {status}",
            exe.display()
        );
    }
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("cannot read {}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no `summary:` line in {}", out.display()))
}

/// Counts and prints instructions per call for each mode.
pub(crate) fn callgrind(args: &[String]) -> Result<()> {
    let iterations = match args {
        [] => DEFAULT_ITERATIONS,
        [n] => n
            .parse()
            .with_context(|| format!("`{n}` is not a number of iterations"))?,
        _ => bail!("usage: cargo xtask callgrind [ITERATIONS]"),
    };
    if iterations == 0 {
        bail!("ITERATIONS must be at least 1");
    }
    let exe = build_example()?;
    // Builds the plugins once (the example's `fixtures()`), outside the counted runs.
    crate::check(Command::new(&exe).args(["noop", "0"]).stdout(Stdio::null()))?;
    let out_dir = crate::target_dir()?.join("tmp").join("callgrind");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;

    println!("\ninstructions per call (callgrind Ir, {iterations} calls minus 0 calls)");
    println!(
        "{:<50} {:>14} {:>14} {:>10}",
        "call", "Ir, N calls", "Ir, 0 calls", "Ir/call"
    );
    for (mode, what) in MODES {
        let with = instructions(&exe, &out_dir, mode, iterations)?;
        let without = instructions(&exe, &out_dir, mode, 0)?;
        let per_call = (with as f64 - without as f64) / iterations as f64;
        println!("{what:<50} {with:>14} {without:>14} {per_call:>10.0}");
    }
    Ok(())
}
