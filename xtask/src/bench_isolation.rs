//! `cargo xtask bench-isolation` (also a step of `bench`): what process isolation costs a
//! call, from `plugin-host/benches/isolation`, each figure against its baseline from the
//! same run.

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{cargo, check, fmt_ns, verdict};

/// The target for a trivial call's median round trip in process mode, in nanoseconds.
const TARGET_P50_NS: f64 = 2_000.0;
/// The target for the typed 1 KB call in a worker, as a multiple of the same call
/// in-process, at p50 and at p99.
const TARGET_TYPED_RATIO: f64 = 1.5;

/// Runs the isolation bench and prints its figures.
pub(crate) fn bench_isolation() -> Result<()> {
    check(cargo().args(["bench", "-p", "plugin-host", "--bench", "isolation"]))?;
    let path = crate::target_dir()?
        .join("tmp")
        .join("isolation-bench.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}; did the bench run?", path.display()))?;
    let r: Value =
        serde_json::from_str(&text).with_context(|| format!("{} holds no JSON", path.display()))?;
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let (process, in_process) = (&r["modes"]["process"], &r["modes"]["in-process"]);

    println!(
        "\nprocess isolation ({} timed calls each, {} for JSON, after {} untimed)",
        r["rounds"], r["json_rounds"], r["warmup"]
    );
    println!(
        "{:<50} {:>11} {:>11} {:>7}  target",
        "measurement", "value", "baseline", "ratio"
    );
    let row = |what: &str, value: f64, baseline: f64, target: String| {
        println!(
            "{:<50} {:>11} {:>11} {:>6.2}x  {target}",
            what,
            fmt_ns(value),
            fmt_ns(baseline),
            value / baseline,
        );
    };
    let noop_p50 = f(&process["noop"]["p50_ns"]);
    let noop_p99 = f(&process["noop"]["p99_ns"]);
    row(
        "trivial call p50: process vs in-process",
        noop_p50,
        f(&in_process["noop"]["p50_ns"]),
        format!(
            "<= {} -> {}",
            fmt_ns(TARGET_P50_NS),
            verdict(noop_p50 <= TARGET_P50_NS)
        ),
    );
    row(
        "trivial call p99: process vs in-process",
        noop_p99,
        f(&in_process["noop"]["p99_ns"]),
        "reported (no target)".into(),
    );
    row(
        "trivial call p50: process vs channel floor",
        noop_p50,
        f(&r["floor"]["p50_ns"]),
        "reported (the floor: 8-byte shm + futex ping-pong)".into(),
    );
    row(
        "trivial call p99: process vs channel floor",
        noop_p99,
        f(&r["floor"]["p99_ns"]),
        "reported".into(),
    );
    for (p, name) in [("p50_ns", "p50"), ("p99_ns", "p99")] {
        row(
            &format!("1 KB JSON in and out {name}: process vs in-process"),
            f(&process["json_1kb"][p]),
            f(&in_process["json_1kb"][p]),
            "reported (no target)".into(),
        );
    }
    for (p, name) in [("p50_ns", "p50"), ("p99_ns", "p99")] {
        let (value, baseline) = (f(&process["typed_1kb"][p]), f(&in_process["typed_1kb"][p]));
        row(
            &format!("typed 1 KB call {name}: process vs in-process"),
            value,
            baseline,
            format!(
                "<= {TARGET_TYPED_RATIO}x -> {}",
                verdict(value <= TARGET_TYPED_RATIO * baseline)
            ),
        );
    }
    for threads in [1, 2] {
        let key = format!("threads_{threads}_calls_per_sec");
        let value = f(&process["throughput"][&key]);
        let baseline = f(&in_process["throughput"][&key]);
        println!(
            "{:<50} {:>11} {:>11} {:>6.3}x  reported (in-process for scale)",
            format!("trivial calls/s, {threads} thread(s): process vs in-proc."),
            format!("{value:.0}/s"),
            format!("{baseline:.0}/s"),
            value / baseline,
        );
    }
    let one = f(&process["throughput"]["threads_1_calls_per_sec"]);
    let two = f(&process["throughput"]["threads_2_calls_per_sec"]);
    println!(
        "{:<50} {:>11} {:>11} {:>6.2}x  reported ({} calls per thread)",
        "trivial calls/s in process mode, 2 threads vs 1",
        format!("{two:.0}/s"),
        format!("{one:.0}/s"),
        two / one,
        process["throughput"]["calls_per_thread"],
    );
    println!(
        "\nlatencies are per call, each timed by two clock reads ({} at the median here, \
         included in every figure); the floor is two processes passing 8 bytes through a \
         shared page with the channel's state word, spins and futex wakes, and nothing else.",
        fmt_ns(f(&r["clock"]["p50_ns"])),
    );
    Ok(())
}
