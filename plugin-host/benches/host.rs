//! The speed targets, each measured against a baseline in the same run.
//! `cargo xtask bench` runs this and prints the ratios.

use std::time::{Duration, Instant};

#[path = "../../test-plugins/typed-bench/src/order.rs"]
mod order;

use criterion::{criterion_group, criterion_main, Criterion};
use order::{price, sample_order, Order, Priced};
use plugin_abi::abi_stable::library::lib_header_from_path;
use plugin_abi::abi_stable::sabi_trait::TD_Opaque;
use plugin_abi::abi_stable::sabi_types::{RMut, RRef};
use plugin_abi::abi_stable::std_types::{
    RDuration, RNone, ROption, RResult, RSlice, RStr, RString, RVec,
};
use plugin_abi::{
    BytesVisitor_TO, CancelReason, HostContext, HostContext_TO, LogLevel, PluginModRef,
};
use plugin_host::{Context, Error, PluginManager};
use plugin_test_support::fixtures;
use serde_json::Value;

#[path = "../../test-plugins/json-bench/src/object.rs"]
mod object;
use object::{one_kb_object, transform};

/// The least a host can hand a plugin: a context with nothing in it. Calling the `noop`
/// plugin's `execute` with it, on a module loaded with abi_stable alone, is the floor under
/// `handle.execute`: the call across the library and the SDK's panic guard, no registry.
struct EmptyContext;

impl HostContext for EmptyContext {
    fn get(&self, _: RStr<'_>, mut visitor: BytesVisitor_TO<'_, RMut<'_, ()>>) {
        visitor.visit(RNone);
    }
    fn set(&self, _: RStr<'_>, _: RSlice<'_, u8>) {}
    fn remove(&self, _: RStr<'_>) -> bool {
        false
    }
    fn keys(&self) -> RVec<RString> {
        RVec::new()
    }
    fn label(&self) -> ROption<RStr<'_>> {
        RNone
    }
    fn cancel_reason(&self) -> ROption<CancelReason> {
        RNone
    }
    fn remaining(&self) -> ROption<RDuration> {
        RNone
    }
    fn wait_cancelled(&self, timeout: RDuration) -> bool {
        std::thread::sleep(Duration::from(timeout));
        false
    }
    fn log(&self, _: LogLevel, _: RStr<'_>) {}
}

/// The baseline of `handle.execute`: what a host would write without plugins, a function of
/// the same signature as `PluginHandle::execute` with the `noop` plugin's empty body, never
/// inlined and called through a function pointer the optimiser cannot see through.
#[inline(never)]
fn noop(_ctx: &Context) -> Result<(), Error> {
    Ok(())
}

/// Runs `iters` calls on each of 2 threads at once and returns the slower thread's time:
/// the time per call per thread. `make` builds each thread's call (outside the timing).
fn on_2_threads<F, C>(iters: u64, make: F) -> Duration
where
    F: Fn() -> C + Sync,
    C: FnMut() + Send,
{
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (make, start) = (&make, &start);
                s.spawn(move || {
                    let mut call = make();
                    start.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        call();
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
}

fn calls(c: &mut Criterion) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "noop");
    let m = PluginManager::new(base.path());
    m.load_plugin("noop").unwrap();
    let h = m.get("noop").unwrap();
    let ctx = Context::background();

    // The same library, loaded a second time under another path by abi_stable alone.
    let bare_copy = base.path().join("libnoop-bare.so");
    std::fs::copy(fixtures().library("noop"), &bare_copy).unwrap();
    let module = lib_header_from_path(&bare_copy)
        .unwrap()
        .init_root_module::<PluginModRef>()
        .unwrap();
    let empty = EmptyContext;

    let mut g = c.benchmark_group("call");
    g.bench_function("abi_floor", |b| {
        b.iter(|| {
            let raw = HostContext_TO::from_ptr(RRef::new(std::hint::black_box(&empty)), TD_Opaque);
            // Checks the result as `handle.execute` does; returning the whole `RResult`
            // to criterion would add a byte-by-byte copy of it to every iteration.
            matches!((module.execute())(raw), RResult::ROk(()))
        })
    });
    let direct: fn(&Context) -> Result<(), Error> = std::hint::black_box(noop);
    g.bench_function("direct", |b| b.iter(|| direct(std::hint::black_box(&ctx))));
    g.bench_function("handle_execute", |b| {
        b.iter(|| h.execute(std::hint::black_box(&ctx)))
    });
    g.bench_function("handle_execute_2_threads", |b| {
        b.iter_custom(|iters| {
            on_2_threads(iters, || {
                let ctx = Context::background();
                let h = h.clone();
                move || {
                    let _ = h.execute(std::hint::black_box(&ctx));
                }
            })
        })
    });
    g.bench_function("abi_floor_2_threads", |b| {
        b.iter_custom(|iters| {
            on_2_threads(iters, || {
                move || {
                    let raw = HostContext_TO::from_ptr(
                        RRef::new(std::hint::black_box(&EmptyContext)),
                        TD_Opaque,
                    );
                    std::hint::black_box(matches!((module.execute())(raw), RResult::ROk(())));
                }
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
    // The same with a 1 KB string: the plugin sets and reads back `value` instead.
    let one_kb = "x".repeat(1024);
    g.bench_function("plugin_set_get_1kb", |b| {
        b.iter_custom(|iters| {
            let ctx = Context::background();
            ctx.set("loops", &iters).unwrap();
            ctx.set("value", &one_kb).unwrap();
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

fn json(c: &mut Criterion) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "json-bench");
    let m = PluginManager::new(base.path());
    m.load_plugin("json-bench").unwrap();
    let h = m.get("json-bench").unwrap();
    let input = one_kb_object();

    // The plugin gives the same answer as the direct call.
    let ctx = Context::background();
    ctx.set("input", &input).unwrap();
    h.execute(&ctx).unwrap();
    assert_eq!(ctx.get::<Value>("output").unwrap(), Some(transform(&input)));

    let mut g = c.benchmark_group("json_1kb");
    g.bench_function("direct", |b| {
        b.iter(|| transform(std::hint::black_box(&input)))
    });
    g.bench_function("plugin_call", |b| {
        b.iter(|| {
            let ctx = Context::background();
            ctx.set("input", std::hint::black_box(&input)).unwrap();
            h.execute(&ctx).unwrap();
            ctx.get::<Value>("output").unwrap()
        })
    });
    g.finish();
}

// FORMAT: the codec a typed value crosses the plugin boundary in, for `typed_1kb/codec_floor`:
// the contract's own (`plugin_abi::codec`, MessagePack).
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    plugin_abi::codec::encode(value).unwrap()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    plugin_abi::codec::decode(bytes).unwrap()
}

/// A typed call as a user writes one: an `Order` of about 1.1 KB (as JSON) in, its `Priced`
/// of about 1 KB out, through `handle.call` on the `typed-bench` plugin, against `price`
/// called on the struct, and against the codec alone (one encode and one decode of each).
fn typed(c: &mut Criterion) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "typed-bench");
    let m = PluginManager::new(base.path());
    m.load_plugin("typed-bench").unwrap();
    let h = m.get("typed-bench").unwrap();
    let order = sample_order();
    let expected = price(&order);
    for (what, len) in [
        ("Order", serde_json::to_vec(&order).unwrap().len()),
        ("Priced", serde_json::to_vec(&expected).unwrap().len()),
    ] {
        assert!(
            (900..1300).contains(&len),
            "the {what} is {len} bytes of JSON"
        );
        eprintln!("typed_1kb: the {what} is {len} bytes of JSON");
    }

    // The plugin gives the same answer as the direct call.
    let answer = h
        .call::<Order, Priced>(&Context::background(), &order)
        .unwrap();
    assert_eq!(answer, expected);

    let mut g = c.benchmark_group("typed_1kb");
    g.bench_function("direct", |b| b.iter(|| price(std::hint::black_box(&order))));
    g.bench_function("plugin_call", |b| {
        b.iter(|| {
            let ctx = Context::background();
            h.call::<Order, Priced>(&ctx, std::hint::black_box(&order))
                .unwrap()
        })
    });
    g.bench_function("codec_floor", |b| {
        b.iter(|| {
            let input: Order = decode(&encode(std::hint::black_box(&order)));
            let output: Priced = decode(&encode(std::hint::black_box(&expected)));
            (input, output)
        })
    });
    g.finish();
}

criterion_group!(benches, calls, context, json, typed);
criterion_main!(benches);
