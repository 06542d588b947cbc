//! The speed targets, each measured against a baseline in the same run.
//! `cargo xtask bench` runs this and prints the ratios.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use plugin_abi::PluginError;
use plugin_host::{Context, PluginManager};
use plugin_test_support::fixtures;

/// The same body as the `noop` plugin, called directly.
#[inline(never)]
fn noop(_ctx: &Context) -> Result<(), PluginError> {
    Ok(())
}

fn calls(c: &mut Criterion) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "noop");
    let m = PluginManager::new(base.path());
    m.load_plugin("noop").unwrap();
    let h = m.get("noop").unwrap();
    let ctx = Context::background();

    let mut g = c.benchmark_group("call");
    let direct: fn(&Context) -> Result<(), PluginError> = std::hint::black_box(noop);
    g.bench_function("direct", |b| b.iter(|| direct(std::hint::black_box(&ctx))));
    g.bench_function("handle_execute", |b| {
        b.iter(|| h.execute(std::hint::black_box(&ctx)))
    });
    g.bench_function("handle_execute_2_threads", |b| {
        b.iter_custom(|iters| {
            // Each thread makes `iters` calls; the wall time is the time per call per thread.
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let (h, start) = (h.clone(), &start);
                        s.spawn(move || {
                            let ctx = Context::background();
                            start.wait();
                            let t = Instant::now();
                            for _ in 0..iters {
                                let _ = h.execute(std::hint::black_box(&ctx));
                            }
                            t.elapsed()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap())
                    .max()
                    .unwrap()
            })
        })
    });
    g.finish();
}

fn context(c: &mut Criterion) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "ctx-bench");
    let m = PluginManager::new(base.path());
    m.load_plugin("ctx-bench").unwrap();
    let h = m.get("ctx-bench").unwrap();

    let mut g = c.benchmark_group("context");
    g.bench_function("plugin_set_get", |b| {
        b.iter_custom(|iters| {
            let ctx = Context::background();
            ctx.set("loops", &iters).unwrap();
            let t = Instant::now();
            h.execute(&ctx).unwrap();
            t.elapsed()
        })
    });
    g.bench_function("direct_hashmap_set_get", |b| {
        let ctx = Context::background();
        b.iter(|| {
            ctx.set("k", "short").unwrap();
            std::hint::black_box(ctx.get::<String>("k").unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, calls, context);
criterion_main!(benches);
