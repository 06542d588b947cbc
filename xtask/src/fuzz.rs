//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the fuzz targets of `fuzz/` with
//! cargo-fuzz on nightly, each for N seconds (default 30), from a working corpus under the
//! target directory that starts with the seeds checked in under `fuzz/seeds/<target>/`.
//!
//! A target that finds a crash, a hang or an allocation beyond libFuzzer's limit stops, and
//! cargo-fuzz leaves the input in `fuzz/artifacts/<target>/`; the others still run, and the
//! command fails naming every target that found something. See `docs/fuzzing.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use plugin_test_support::workspace_root;

/// Every target in `fuzz/Cargo.toml`, in the order they run.
pub(crate) const TARGETS: [&str; 7] = [
    "manifest",
    "wire",
    "control",
    "archive",
    "state_file",
    "codec",
    "value_serde",
];

/// Seconds each target runs when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 30;

/// Longest one input may run before libFuzzer reports it as a hang, in seconds.
const INPUT_TIMEOUT: u64 = 10;

/// What `cargo xtask fuzz` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The targets to run, in order.
    pub(crate) targets: Vec<&'static str>,
    /// How long each runs.
    pub(crate) seconds: u64,
}

/// Reads `[TARGET] [--seconds N]`.
pub(crate) fn parse(args: &[String]) -> Result<Plan> {
    let mut target = None;
    let mut seconds = DEFAULT_SECONDS;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = it
                    .next()
                    .context("--seconds needs a number of seconds, e.g. --seconds 60")?;
                seconds = value.parse().ok().filter(|&s| s > 0).with_context(|| {
                    format!("--seconds takes a whole number above 0, not `{value}`")
                })?;
            }
            flag if flag.starts_with('-') => {
                bail!("unknown option `{flag}` for fuzz; usage: cargo xtask fuzz [TARGET] [--seconds N]")
            }
            name => {
                if target.is_some() {
                    bail!(
                        "fuzz takes one target at most (or none for all), got a second: `{name}`"
                    );
                }
                let found = TARGETS.iter().find(|t| **t == name).with_context(|| {
                    format!(
                        "no fuzz target `{name}`; the targets are: {}",
                        TARGETS.join(", ")
                    )
                })?;
                target = Some(*found);
            }
        }
    }
    Ok(Plan {
        targets: target.map_or_else(|| TARGETS.to_vec(), |t| vec![t]),
        seconds,
    })
}

/// Fails with how to install what is missing: the nightly toolchain, or cargo-fuzz.
fn check_tools() -> Result<()> {
    let runs = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs(&["+nightly", "--version"]) {
        bail!(
            "fuzzing needs a nightly toolchain (libFuzzer's sanitizer flags are nightly-only); \
             install it with `rustup toolchain install nightly`"
        );
    }
    if !runs(&["+nightly", "fuzz", "--version"]) {
        bail!("fuzzing needs cargo-fuzz; install it with `cargo install cargo-fuzz --locked`");
    }
    Ok(())
}

/// Copies every seed of `target` into `corpus` (created if need be), keeping what earlier
/// runs added there; returns how many seeds were copied.
pub(crate) fn prepare_corpus(seeds: &Path, corpus: &Path) -> Result<usize> {
    std::fs::create_dir_all(corpus)
        .with_context(|| format!("cannot create the corpus folder {}", corpus.display()))?;
    let mut copied = 0;
    let entries = std::fs::read_dir(seeds)
        .with_context(|| format!("cannot read the seeds in {}", seeds.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", seeds.display()))?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let to = corpus.join(entry.file_name());
        std::fs::copy(entry.path(), &to).with_context(|| {
            format!("cannot copy {} to {}", entry.path().display(), to.display())
        })?;
        copied += 1;
    }
    Ok(copied)
}

/// Runs the plan; fails naming each target that found something.
pub(crate) fn fuzz(args: &[String]) -> Result<()> {
    let plan = parse(args)?;
    check_tools()?;
    let root = workspace_root();
    let target_dir = crate::target_dir()?;
    let mut failed = Vec::new();
    let mut ran = Vec::new();
    for target in &plan.targets {
        let seeds = root.join("fuzz").join("seeds").join(target);
        let corpus: PathBuf = target_dir.join("fuzz-corpus").join(target);
        let copied = prepare_corpus(&seeds, &corpus)?;
        println!(
            "fuzz {target}: {} s from {} ({copied} seeds)",
            plan.seconds,
            corpus.display()
        );
        let start = Instant::now();
        let status = Command::new("cargo")
            .current_dir(&root)
            .args(["+nightly", "fuzz", "run", "--debug-assertions"])
            .arg("--target-dir")
            .arg(target_dir.join("fuzz"))
            .arg(target)
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={}", plan.seconds))
            .arg(format!("-timeout={INPUT_TIMEOUT}"))
            .status()
            .context("cannot run cargo +nightly fuzz")?;
        let elapsed = start.elapsed().as_secs();
        if status.success() {
            ran.push(format!("{target}: no finding ({elapsed} s)"));
        } else {
            ran.push(format!(
                "{target}: FAILED ({status}); the input is in fuzz/artifacts/{target}/"
            ));
            failed.push(*target);
        }
    }
    println!("\nfuzz summary:\n  {}", ran.join("\n  "));
    if !failed.is_empty() {
        bail!(
            "fuzz targets found problems: {}; see docs/fuzzing.md for turning a finding into \
             a regression test",
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_argument_runs_every_target_for_the_default_time() {
        let plan = parse(&[]).unwrap();
        assert_eq!(plan.targets, TARGETS.to_vec());
        assert_eq!(plan.seconds, DEFAULT_SECONDS);
    }

    #[test]
    fn a_target_and_seconds_are_read_in_either_order() {
        let want = Plan {
            targets: vec!["wire"],
            seconds: 90,
        };
        assert_eq!(parse(&args(&["wire", "--seconds", "90"])).unwrap(), want);
        assert_eq!(parse(&args(&["--seconds", "90", "wire"])).unwrap(), want);
    }

    #[test]
    fn bad_arguments_are_refused_with_what_to_write() {
        let err = |a: &[&str]| parse(&args(a)).unwrap_err().to_string();
        assert!(
            err(&["nope"]).contains("manifest, wire"),
            "{}",
            err(&["nope"])
        );
        assert!(err(&["--seconds"]).contains("needs a number"));
        assert!(err(&["--seconds", "0"]).contains("above 0"));
        assert!(err(&["--seconds", "soon"]).contains("`soon`"));
        assert!(err(&["wire", "control"]).contains("one target at most"));
        assert!(err(&["--jobs"]).contains("unknown option `--jobs`"));
    }

    /// Every target the list names is a `[[bin]]` of `fuzz/Cargo.toml` with a source file
    /// and seeds, and every `[[bin]]` is in the list.
    #[test]
    fn the_target_list_matches_the_fuzz_crate_and_its_seeds() {
        let fuzz = workspace_root().join("fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        let bins: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .map(|section| {
                let line = section
                    .lines()
                    .find(|l| l.starts_with("name = "))
                    .expect("a [[bin]] with a name");
                line.trim_start_matches("name = ").trim_matches('"')
            })
            .collect();
        assert_eq!(bins, TARGETS.to_vec(), "fuzz/Cargo.toml's [[bin]] targets");
        for target in TARGETS {
            let source = fuzz.join("fuzz_targets").join(format!("{target}.rs"));
            assert!(source.is_file(), "{} is missing", source.display());
            let seeds = std::fs::read_dir(fuzz.join("seeds").join(target))
                .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
                .count();
            assert!(seeds > 0, "fuzz/seeds/{target} has no seed");
        }
    }

    #[test]
    fn seeds_are_copied_into_the_corpus_and_earlier_entries_kept() {
        let dir = std::env::temp_dir().join(format!("xtask-fuzz-{}", std::process::id()));
        let seeds = dir.join("seeds");
        let corpus = dir.join("corpus").join("t");
        std::fs::create_dir_all(seeds.join("a-folder")).unwrap();
        std::fs::write(seeds.join("one"), b"1").unwrap();
        std::fs::write(seeds.join("two"), b"2").unwrap();
        std::fs::create_dir_all(&corpus).unwrap();
        std::fs::write(corpus.join("found-earlier"), b"x").unwrap();
        std::fs::write(corpus.join("one"), b"stale").unwrap();

        assert_eq!(prepare_corpus(&seeds, &corpus).unwrap(), 2);
        let mut names: Vec<String> = std::fs::read_dir(&corpus)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["found-earlier", "one", "two"]);
        assert_eq!(std::fs::read(corpus.join("one")).unwrap(), b"1");

        let missing = prepare_corpus(&dir.join("none"), &corpus).unwrap_err();
        assert!(missing.to_string().contains("cannot read the seeds"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
