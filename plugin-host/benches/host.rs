//! The speed targets, each measured against a baseline in the same run.
//! `cargo xtask bench` runs this and prints the ratios.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use plugin_abi::abi_stable::library::lib_header_from_path;
use plugin_abi::{PluginError, PluginModRef};
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

fn loads(c: &mut Criterion) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "noop");
    let copies = tempfile::tempdir().unwrap();
    let library = fixtures().library("noop");
    static N: AtomicU64 = AtomicU64::new(0);
    let fresh_copy = || -> PathBuf {
        // dlopen caches by path: every bare load needs a file it has not seen.
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = copies.path().join(format!("bare-{n}.so"));
        std::fs::copy(&library, &path).unwrap();
        path
    };

    let manager = || {
        PluginManager::builder(base.path())
            .copy_dir(copies.path())
            .build()
    };
    let bare = |path: PathBuf| {
        let header = lib_header_from_path(&path).unwrap();
        header.init_root_module::<PluginModRef>().unwrap()
    };

    let mut g = c.benchmark_group("load");
    // Every load maps a library that is never closed, and the dynamic loader gets slower as
    // libraries accumulate. So each iteration of either benchmark does one load of each
    // kind and times only its own: both see the same number of libraries.
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(400));
    g.bench_function("bare_abi_stable", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                manager().load_plugin("noop").unwrap();
                let path = fresh_copy();
                let t = Instant::now();
                std::hint::black_box(bare(path));
                total += t.elapsed();
            }
            total
        })
    });
    // What the private copy alone costs (part of `plugin_manager`, not of `bare_abi_stable`).
    g.bench_function("copy_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let n = N.fetch_add(1, Ordering::Relaxed);
                let path = copies.path().join(format!("copy-{n}.so"));
                let t = Instant::now();
                std::fs::copy(&library, &path).unwrap();
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("plugin_manager", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::hint::black_box(bare(fresh_copy()));
                let m = manager();
                let t = Instant::now();
                m.load_plugin("noop").unwrap();
                total += t.elapsed();
                drop(m);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, calls, context, loads);
criterion_main!(benches);
