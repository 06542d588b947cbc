//! Calls per second and p99 call latency while a plugin is upgraded 20 times, against the
//! same measured in steady state, in the same run. Prints a JSON line and writes it to
//! `upgrade-bench.json` in Cargo's `CARGO_TARGET_TMPDIR` (`<target dir>/tmp`) for `cargo xtask bench`.
//!
//! One caller thread: this machine class has two cores, and the upgrading thread needs the
//! other one; more callers than cores would measure the scheduler, not the upgrade.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_host::{Context, PluginHandle, PluginManager, UpgradeOptions};
use plugin_test_support::{install_folder, versioned_variant};

struct Phase {
    calls: usize,
    failed: usize,
    seconds: f64,
    p50_ns: u64,
    p99_ns: u64,
}

/// Calls `handle` without pause until `stop`, timing each call.
fn call_until(handle: &PluginHandle, stop: &AtomicBool) -> (Vec<u64>, usize, f64) {
    let ctx = Context::background();
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut failed = 0;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if handle.execute(&ctx).is_err() {
            failed += 1;
        }
        latencies.push(t.elapsed().as_nanos() as u64);
    }
    (latencies, failed, start.elapsed().as_secs_f64())
}

fn summarize((mut latencies, failed, seconds): (Vec<u64>, usize, f64)) -> Phase {
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    Phase {
        calls: latencies.len(),
        failed,
        seconds,
        p50_ns: pct(0.50),
        p99_ns: pct(0.99),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    let v1 = versioned_variant("1.0.0", &[]);
    let v2 = versioned_variant("2.0.0", &[]);
    let base = tempfile::tempdir().unwrap();
    install_folder(&v1, base.path(), "versioned");
    let m = Arc::new(PluginManager::new(base.path()));
    m.load_plugin("versioned").unwrap();
    let handle = m.get("versioned").unwrap();

    // Warm up, then steady state.
    let stop = AtomicBool::new(false);
    let steady_for = Duration::from_secs(2);
    let steady = std::thread::scope(|s| {
        let caller = s.spawn(|| call_until(&handle, &stop));
        std::thread::sleep(steady_for); // the measurement window, not synchronisation
        stop.store(true, Ordering::Relaxed);
        summarize(caller.join().unwrap())
    });

    let stop = AtomicBool::new(false);
    let upgrades = 20;
    let (during, upgrade_seconds) = std::thread::scope(|s| {
        let caller = s.spawn(|| call_until(&handle, &stop));
        let t = Instant::now();
        for i in 0..upgrades {
            let to = if i % 2 == 0 { &v2 } else { &v1 };
            m.upgrade("versioned", to, UpgradeOptions::new().allow_downgrade(true))
                .unwrap();
        }
        let took = t.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        (summarize(caller.join().unwrap()), took)
    });

    let rate = |p: &Phase| p.calls as f64 / p.seconds;
    let json = format!(
        concat!(
            "{{\"upgrades\":{},\"upgrade_seconds\":{:.3},",
            "\"steady\":{{\"calls\":{},\"failed\":{},\"calls_per_sec\":{:.0},\"p50_ns\":{},\"p99_ns\":{}}},",
            "\"during_upgrades\":{{\"calls\":{},\"failed\":{},\"calls_per_sec\":{:.0},\"p50_ns\":{},\"p99_ns\":{}}}}}"
        ),
        upgrades,
        upgrade_seconds,
        steady.calls,
        steady.failed,
        rate(&steady),
        steady.p50_ns,
        steady.p99_ns,
        during.calls,
        during.failed,
        rate(&during),
        during.p50_ns,
        during.p99_ns,
    );
    println!("{json}");
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("upgrade-bench.json"),
        &json,
    )
    .unwrap();
}
