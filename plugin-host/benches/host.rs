//! The speed targets, each measured against a baseline in the same run.
//! `cargo xtask bench` runs this and prints the ratios.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use plugin_host::{Context, Error, PluginManager};
use plugin_test_support::fixtures;
use serde_json::{Map, Value};

/// The baseline of `handle.execute`: what a host would write without plugins, a function of
/// the same signature as `PluginHandle::execute` with the `noop` plugin's empty body, never
/// inlined and called through a function pointer the optimiser cannot see through.
#[inline(never)]
fn noop(_ctx: &Context) -> Result<(), Error> {
    Ok(())
}

/// The body of the `json-bench` plugin, called directly as the baseline of a JSON call.
#[inline(never)]
fn transform(input: &Value) -> Value {
    let Some(fields) = input.as_object() else {
        return Value::Null;
    };
    let out: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => Value::String(s.to_uppercase()),
                Value::Number(n) => n.as_i64().map_or(v.clone(), |n| Value::from(n * 2)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(out)
}

/// A JSON object of about 1 KB: 32 fields, strings and numbers.
fn one_kb_object() -> Value {
    let mut fields = Map::new();
    for i in 0..16 {
        fields.insert(
            format!("name_{i:02}"),
            Value::from(format!("value number {i:02}, padded to size")),
        );
        fields.insert(format!("count_{i:02}"), Value::from(1000 + i));
    }
    let object = Value::Object(fields);
    let len = serde_json::to_string(&object).unwrap().len();
    assert!(
        (900..1200).contains(&len),
        "the input is {len} bytes of JSON"
    );
    object
}

fn calls(c: &mut Criterion) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "noop");
    let m = PluginManager::new(base.path());
    m.load_plugin("noop").unwrap();
    let h = m.get("noop").unwrap();
    let ctx = Context::background();

    let mut g = c.benchmark_group("call");
    let direct: fn(&Context) -> Result<(), Error> = std::hint::black_box(noop);
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

criterion_group!(benches, calls, context, json);
criterion_main!(benches);
