//! What process isolation costs a call, each figure measured against its baseline in the
//! same run:
//!
//! - a trivial call (`noop`, `Context::background()`) in a worker process: p50 and p99 of
//!   per-call latencies, against the same call in-process and against the raw channel floor
//!   (an 8-byte ping-pong between two processes over the call channel itself, see
//!   `floor.rs`);
//! - the 1 KB-in, 1 KB-out JSON call (`json-bench`) in both modes;
//! - the typed call of `host.rs`'s `typed_1kb` (`typed-bench`: `handle.call` with an
//!   `Order` of about 1.1 KB in, a `Priced` of about 1 KB out) in both modes;
//! - calls per second at 1 and 2 calling threads in process mode, with the in-process
//!   figure for scale.
//!
//! A plain `main` (no criterion): it must first let this binary serve as a plugin worker
//! ([`plugin_host::isolate::init`]) or as the floor's child. Prints a JSON line and writes
//! it to `isolation-bench.json` in Cargo's `CARGO_TARGET_TMPDIR` (`<target dir>/tmp`) for `cargo xtask bench`.

mod floor;
#[path = "../../../test-plugins/typed-bench/src/order.rs"]
mod order;

use std::sync::Barrier;
use std::time::Instant;

use order::{price, sample_order, Order, Priced};
use plugin_host::{Context, Isolation, PluginHandle, PluginManager};
use plugin_test_support::fixtures;
use serde_json::{json, Map, Value};

#[allow(dead_code, reason = "only the input is used here")]
#[path = "../../../test-plugins/json-bench/src/object.rs"]
mod object;
use object::one_kb_object;

/// Calls (or round trips) before a measurement, not counted.
const WARMUP: usize = 20_000;
/// Timed trivial calls (and floor round trips).
const ROUNDS: usize = 200_000;
/// Timed JSON calls, and typed calls, per mode.
const JSON_ROUNDS: usize = 20_000;
/// Calls per thread for the throughput figures, per mode.
const THROUGHPUT_CALLS: [(Isolation, usize); 2] = [
    (Isolation::Process, 200_000),
    (Isolation::InProcess, 5_000_000),
];

/// p50 and p99 of sorted nanoseconds.
#[derive(Clone, Copy)]
struct Percentiles {
    p50: u64,
    p99: u64,
}

impl Percentiles {
    fn of(mut ns: Vec<u64>) -> Self {
        assert!(!ns.is_empty(), "no samples");
        ns.sort_unstable();
        let at = |p: f64| ns[((ns.len() - 1) as f64 * p) as usize];
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
        }
    }

    fn json(self) -> Value {
        json!({ "p50_ns": self.p50, "p99_ns": self.p99 })
    }
}

/// Times `rounds` calls of `f`, one by one, after `WARMUP` untimed ones.
fn per_call(rounds: usize, mut f: impl FnMut()) -> Percentiles {
    for _ in 0..WARMUP.min(rounds) {
        f();
    }
    let mut ns = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f();
        ns.push(t.elapsed().as_nanos() as u64);
    }
    Percentiles::of(ns)
}

/// One JSON call as a host makes it: a fresh context, the input in, the output out.
fn json_call(h: &PluginHandle, input: &Value) -> Value {
    let ctx = Context::background();
    ctx.set("input", std::hint::black_box(input)).unwrap();
    h.execute(&ctx).unwrap();
    ctx.get::<Value>("output").unwrap().expect("an output")
}

/// One typed call as a host makes it: a fresh context, `handle.call`.
fn typed_call(h: &PluginHandle, order: &Order) -> Priced {
    let ctx = Context::background();
    h.call::<Order, Priced>(&ctx, std::hint::black_box(order))
        .unwrap()
}

/// Calls per second over all threads: `threads` threads make `per_thread` calls each,
/// started together; wall time from the start to the last one's end.
fn calls_per_sec(h: &PluginHandle, threads: usize, per_thread: usize) -> f64 {
    let start = Barrier::new(threads + 1);
    let wall = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (h, start) = (h.clone(), &start);
                s.spawn(move || {
                    let ctx = Context::background();
                    for _ in 0..WARMUP {
                        h.execute(&ctx).unwrap();
                    }
                    start.wait();
                    for _ in 0..per_thread {
                        h.execute(std::hint::black_box(&ctx)).unwrap();
                    }
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for w in workers {
            w.join().unwrap();
        }
        t.elapsed()
    });
    (threads * per_thread) as f64 / wall.as_secs_f64()
}

/// A manager with `noop`, `json-bench` and `typed-bench` loaded in `mode`.
fn manager(base: &std::path::Path, mode: Isolation) -> PluginManager {
    let m = PluginManager::builder(base).isolation(mode).build();
    for name in ["noop", "json-bench", "typed-bench"] {
        m.load_plugin(name).unwrap();
        assert_eq!(m.isolation_of(name), mode);
        let summary = m.get(name).unwrap().summary().expect("loaded");
        let worker_pid = summary.worker.and_then(|w| w.pid);
        match mode {
            Isolation::Process => assert!(
                worker_pid.is_some_and(|pid| pid != std::process::id()),
                "{name} runs in a worker process of its own"
            ),
            _ => assert_eq!(worker_pid, None, "{name} runs in this process"),
        }
    }
    m
}

fn main() {
    plugin_host::isolate::init();
    if let Some(params) = std::env::var_os(floor::CHILD_ENV) {
        floor::child(params)
    }
    // `cargo bench` passes `--bench`; this harness takes no options.

    // The floor first, while this process runs no other thread.
    let floor = Percentiles::of(floor::measure(WARMUP, ROUNDS));
    // What timing one call costs by itself: two clock reads.
    let clock = per_call(ROUNDS, || {});

    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "noop");
    fixtures().install(base.path(), "json-bench");
    fixtures().install(base.path(), "typed-bench");
    let order = sample_order();
    let priced = price(&order);
    let input = one_kb_object();
    let expected = {
        let m = manager(base.path(), Isolation::InProcess);
        json_call(&m.get("json-bench").unwrap(), &input)
    };

    let mut modes = Map::new();
    for mode in [Isolation::InProcess, Isolation::Process] {
        let m = manager(base.path(), mode);
        let noop = m.get("noop").unwrap();
        let ctx = Context::background();
        let trivial = per_call(ROUNDS, || noop.execute(std::hint::black_box(&ctx)).unwrap());

        let json_bench = m.get("json-bench").unwrap();
        assert_eq!(
            json_call(&json_bench, &input),
            expected,
            "the {mode} call answers as the in-process one"
        );
        let json_1kb = per_call(JSON_ROUNDS, || {
            std::hint::black_box(json_call(&json_bench, &input));
        });

        let typed_bench = m.get("typed-bench").unwrap();
        assert_eq!(
            typed_call(&typed_bench, &order),
            priced,
            "the {mode} typed call answers as `price` does"
        );
        let typed_1kb = per_call(JSON_ROUNDS, || {
            std::hint::black_box(typed_call(&typed_bench, &order));
        });

        let per_thread = THROUGHPUT_CALLS
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, n)| *n)
            .unwrap();
        let one = calls_per_sec(&noop, 1, per_thread);
        let two = calls_per_sec(&noop, 2, per_thread);
        modes.insert(
            mode.to_string(),
            json!({
                "noop": trivial.json(),
                "json_1kb": json_1kb.json(),
                "typed_1kb": typed_1kb.json(),
                "throughput": {
                    "calls_per_thread": per_thread,
                    "threads_1_calls_per_sec": one.round(),
                    "threads_2_calls_per_sec": two.round(),
                },
            }),
        );
    }

    let report = json!({
        "rounds": ROUNDS,
        "json_rounds": JSON_ROUNDS,
        "warmup": WARMUP,
        "floor": floor.json(),
        "clock": clock.json(),
        "modes": modes,
    });
    let text = report.to_string();
    println!("{text}");
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("isolation-bench.json"),
        &text,
    )
    .unwrap();
}
