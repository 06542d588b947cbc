//! Project automation, run as `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! - `build-samples [--release] [--out DIR]`: builds every sample plugin and lays out
//!   `DIR/<name>/plugin.json` plus its library (DIR defaults to `./plugins`).
//! - `demo`: `build-samples`, then calls each sample through `plugctl` and prints the result.
//! - `ci`: runs `.ci/run`, exactly what CI runs.
//! - `bench`: runs the benchmarks and prints each target as a ratio against its baseline.
//! - `bench-isolation`: what process isolation costs a call, against in-process calls and
//!   the raw shared-memory channel (also a step of `bench`).
//! - `bench-http`: requests per second through a plugin route against a native axum
//!   handler, with `wrk` (also the last step of `bench`).
//! - `callgrind [ITERATIONS]`: instructions per call (noop `handle.execute`, the 1 KB JSON
//!   call, the typed 1 KB call), counted with `valgrind --tool=callgrind`.
//! - `fuzz [TARGET] [--seconds N]`: runs the fuzz targets of `fuzz/` (or one of them) with
//!   cargo-fuzz on nightly, N seconds each (default 30), from the seeds in `fuzz/seeds/`
//!   (see `docs/fuzzing.md`).

mod bench_http;
mod bench_isolation;
mod callgrind;
mod fuzz;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use plugin_test_support::{build, install, plugin_crates, workspace_root};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  build-samples [--release] [--out DIR]   build the sample plugins into DIR (default ./plugins)
  demo                                    build the samples and call each one through plugctl
  ci                                      run .ci/run (format, lint, tests, docs)
  bench                                   run the benchmarks and print the ratios
  bench-isolation                         process isolation: call latency and throughput, both modes
  bench-http                              HTTP throughput: a plugin route against native axum (wrk)
  callgrind [ITERATIONS]                  instructions per call under valgrind (default 10000 calls)
  fuzz [TARGET] [--seconds N]             run the fuzz targets (default: all, 30 s each; nightly)";

fn main() {
    if let Err(err) = run(std::env::args().skip(1).collect()) {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "build-samples" => {
            let mut release = false;
            let mut out = PathBuf::from("plugins");
            let mut it = rest.iter();
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--release" => release = true,
                    "--out" => {
                        out = it
                            .next()
                            .context("--out needs a directory, e.g. --out ./plugins")?
                            .into()
                    }
                    other => bail!("unknown argument `{other}` for build-samples\n\n{USAGE}"),
                }
            }
            build_samples(release, &out)?;
            Ok(())
        }
        "demo" => demo(),
        "ci" => ci(),
        "bench" => bench(rest),
        "bench-isolation" => bench_isolation::bench_isolation(),
        "bench-http" => bench_http::bench_http(),
        "callgrind" => callgrind::callgrind(rest),
        "fuzz" => fuzz::fuzz(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// Builds the samples and lays them out under `out`; returns their names.
fn build_samples(release: bool, out: &Path) -> Result<Vec<String>> {
    let samples = plugin_crates("sample-plugins").context("cannot list sample-plugins/")?;
    let lib_dir = build(&samples, release, &target_dir()?).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut names = Vec::new();
    for sample in &samples {
        let dir = install(sample, &lib_dir, out, &sample.name).with_context(|| {
            format!(
                "cannot lay out sample `{}` in {}",
                sample.name,
                out.display()
            )
        })?;
        println!("built {:<14} -> {}", sample.name, dir.display());
        names.push(sample.name.clone());
    }
    Ok(names)
}

/// The workspace's target directory, as Cargo resolves it (`CARGO_TARGET_DIR`,
/// `build.target-dir`, or `target/`).
pub(crate) fn target_dir() -> Result<PathBuf> {
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed: {}", output.status);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata gave no `target_directory`")
}

/// Builds plugctl and returns its path as Cargo reports it, wherever the target directory is
/// and whatever the platform names executables.
fn build_plugctl() -> Result<PathBuf> {
    let output = cargo()
        .args(["build", "--quiet", "-p", "plugin-cli", "--bin", "plugctl"])
        .arg("--message-format=json")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("building plugctl failed: {}", output.status);
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" && message["target"]["name"] == "plugctl" {
            if let Some(exe) = message["executable"].as_str() {
                return Ok(exe.into());
            }
        }
    }
    bail!("cargo built plugin-cli but reported no `plugctl` executable")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The main job: build the samples, then call each through the reference host.
fn demo() -> Result<()> {
    let out = workspace_root().join("plugins");
    let samples = build_samples(false, &out)?;
    let plugctl = build_plugctl()?;

    println!("\n$ plugctl --dir {} list", out.display());
    check(Command::new(&plugctl).arg("--dir").arg(&out).arg("list"))?;

    for name in samples {
        let args: &[&str] = match name.as_str() {
            "hello" => &["--set", r#"sample={"name":"go-plugin"}"#],
            "label-router" => &["--label", "plugin.get", "--set", r#"id="42""#],
            "counter" => &["--set", "step=5"],
            "slow" => &["--timeout", "100ms"],
            "typed-greeter" => &["--set", r#"input={"name":"go-plugin","excited":true}"#],
            _ => &[],
        };
        println!("\n$ plugctl call {name} {}", args.join(" "));
        let output = Command::new(&plugctl)
            .arg("--dir")
            .arg(&out)
            .arg("call")
            .arg(&name)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", plugctl.display()))?;
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        // `slow` is expected to stop at its deadline: that is its demonstration.
        if !output.status.success() && name != "slow" {
            bail!("calling `{name}` failed: {}", output.status);
        }
    }
    Ok(())
}

fn ci() -> Result<()> {
    check(
        Command::new("bash")
            .arg(workspace_root().join(".ci").join("run"))
            .current_dir(workspace_root()),
    )
}

/// Runs the benchmarks, then prints each measurement against its baseline from the same run.
fn bench(extra: &[String]) -> Result<()> {
    check(
        cargo()
            .args(["bench", "-p", "plugin-host", "--bench", "host", "--"])
            .args(extra),
    )?;
    check(cargo().args(["bench", "-p", "plugin-host", "--bench", "load"]))?;
    check(cargo().args(["bench", "-p", "plugin-host", "--bench", "upgrade"]))?;

    // Where Cargo put this run's results: `CARGO_TARGET_DIR` and `build.target-dir` count.
    let target = target_dir()?;
    let root = target.join("criterion");
    let ns = |id: &str| -> Result<f64> {
        let path = root.join(id).join("new").join("estimates.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no measurement at {}; did the bench run?", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        v["median"]["point_estimate"]
            .as_f64()
            .with_context(|| format!("no median in {}", path.display()))
    };
    let direct = ns("call/direct")?;
    let floor = ns("call/abi_floor")?;
    println!(
        "\n{:<50} {:>11} {:>11} {:>7}  target",
        "measurement", "value", "baseline", "ratio"
    );
    let exec = ns("call/handle_execute")?;
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  over direct {} <= 10 ns -> {}",
        "handle.execute vs direct call (1 thread)",
        fmt_ns(exec),
        fmt_ns(direct),
        exec / direct,
        fmt_ns(exec - direct),
        verdict(exec - direct <= 10.0),
    );
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  reported: the registry's share, {}",
        "handle.execute vs the abi_stable floor",
        fmt_ns(exec),
        fmt_ns(floor),
        exec / floor,
        fmt_ns(exec - floor),
    );
    let two = ns("call/handle_execute_2_threads")?;
    let floor_two = ns("call/abi_floor_2_threads")?;
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  <= 1.1x -> {} (the floor: {:.2}x)",
        "handle.execute per call, 2 threads vs 1",
        fmt_ns(two),
        fmt_ns(exec),
        two / exec,
        verdict(two / exec <= 1.1),
        floor_two / floor,
    );
    let set_get = ns("context/plugin_set_get")?;
    let host_set_get = ns("context/direct_hashmap_set_get")?;
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  <= 40 ns -> {}",
        "ctx set+get of a short string, in a plugin",
        fmt_ns(set_get),
        fmt_ns(host_set_get),
        set_get / host_set_get,
        verdict(set_get <= 40.0),
    );
    let set_get_1kb = ns("context/plugin_set_get_1kb")?;
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  reported (no target; vs the short string)",
        "ctx set+get of a 1 KB string, in a plugin",
        fmt_ns(set_get_1kb),
        fmt_ns(set_get),
        set_get_1kb / set_get,
    );
    let json_direct = ns("json_1kb/direct")?;
    let json_plugin = ns("json_1kb/plugin_call")?;
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  <= 1.5x -> {}",
        "1 KB JSON object in and out: plugin vs direct",
        fmt_ns(json_plugin),
        fmt_ns(json_direct),
        json_plugin / json_direct,
        verdict(json_plugin <= 1.5 * json_direct),
    );
    let typed_direct = ns("typed_1kb/direct")?;
    let typed_plugin = ns("typed_1kb/plugin_call")?;
    let typed_codec = ns("typed_1kb/codec_floor")?;
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  <= 3x -> {}",
        "typed 1 KB call (handle.call): plugin vs direct",
        fmt_ns(typed_plugin),
        fmt_ns(typed_direct),
        typed_plugin / typed_direct,
        verdict(typed_plugin <= 3.0 * typed_direct),
    );
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  reported (no target)",
        "typed 1 KB call: plugin vs the codec floor",
        fmt_ns(typed_plugin),
        fmt_ns(typed_codec),
        typed_plugin / typed_codec,
    );
    println!(
        "\nbaselines: `direct call` is a never-inlined fn(&Context) -> Result<(), Error> with an \
         empty body, called through a function pointer (the same signature as handle.execute); \
         `the abi_stable floor` is the same library's execute, loaded by abi_stable alone and \
         called with an empty context (the call across the library and the SDK's panic guard, \
         no registry); the host's ctx set+get is Context::set and Context::get on the host's \
         own context; `direct` for JSON is the plugin's transform called on serde_json::Value, \
         without the context's conversions in and out; `direct` for the typed call is \
         `price(&order)` on the struct (no serialization), and its codec floor one encode and \
         one decode of the Order and of the Priced with the boundary's codec (MessagePack, \
         plugin_abi::codec), no plugin."
    );
    let read_json = |file: &str| -> Result<serde_json::Value> {
        let path = target.join("tmp").join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let load = read_json("load-bench.json")?;
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let (full, full_file, bare, copy) = (
        f(&load["full_ns"]),
        f(&load["full_file_ns"]),
        f(&load["bare_ns"]),
        f(&load["copy_ns"]),
    );
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  <= 1.5x -> {} (the private copy of {} KB alone: {})",
        "load one plugin: every check vs bare abi_stable",
        fmt_ns(full),
        fmt_ns(bare),
        full / bare,
        verdict(full / bare <= 1.5),
        f(&load["library_bytes"]) as u64 / 1024,
        fmt_ns(copy),
    );
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  (a file copy in a given copy directory)",
        "load one plugin, file copy: every check vs bare",
        fmt_ns(full_file),
        fmt_ns(bare),
        full_file / bare,
    );

    let path = target.join("tmp").join("upgrade-bench.json");
    let up: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )?;
    let steady = &up["steady"];
    let during = &up["during_upgrades"];
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  (throughput during {} upgrades in {:.2} s)",
        "calls per second during upgrades vs steady",
        format!("{:.0}/s", f(&during["calls_per_sec"])),
        format!("{:.0}/s", f(&steady["calls_per_sec"])),
        f(&during["calls_per_sec"]) / f(&steady["calls_per_sec"]),
        up["upgrades"],
        f(&up["upgrade_seconds"]),
    );
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  <= 2x -> {}",
        "p99 call latency during upgrades vs steady",
        fmt_ns(f(&during["p99_ns"])),
        fmt_ns(f(&steady["p99_ns"])),
        f(&during["p99_ns"]) / f(&steady["p99_ns"]),
        verdict(f(&during["p99_ns"]) <= 2.0 * f(&steady["p99_ns"])),
    );
    println!(
        "{:<50} {:>11} {:>11}         0 -> {}",
        "failed calls during upgrades (steady)",
        during["failed"],
        steady["failed"],
        verdict(during["failed"] == 0),
    );
    bench_isolation::bench_isolation()?;
    bench_http::bench_http()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns.abs() >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns.abs() >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.2} ns")
    }
}
