//! A fixed loop of plugin calls for `cargo xtask callgrind`, which runs it under
//! `valgrind --tool=callgrind` to count instructions per call.
//!
//! `callgrind_calls <noop|json_1kb|typed_1kb> <iterations>`: loads the plugin in-process,
//! makes one untimed call (first-call set-up), then `iterations` calls:
//!
//! - `noop`: `handle.execute(&ctx)` on the `noop` plugin, one context for all calls (as
//!   `call/handle_execute` in `benches/host.rs`);
//! - `ctx_set_get`: one call of the `ctx-bench` plugin, which sets and gets a short string
//!   `iterations` times (as `context/plugin_set_get`);
//! - `json_1kb`: the `json-bench` call of `json_1kb/plugin_call`: a fresh context, the 1 KB
//!   object set as `input`, `execute`, `output` read back;
//! - `typed_1kb`: `typed_1kb/plugin_call`: `handle.call::<Order, Priced>` with a fresh context.
//! - `json_floor`, `typed_floor`: the codec alone, no plugin: one encode and one decode
//!   (`plugin_abi::codec`) of the input and of the output of those calls.
//!
//! Everything but the loop (start-up, building and loading the plugin, the first call) is
//! the same whatever `iterations` is, so the difference between a run of N and one of 0,
//! divided by N, is the instructions of one call.

#[path = "../../test-plugins/typed-bench/src/order.rs"]
mod order;

use order::{price, sample_order, Order, Priced};
use plugin_host::{Context, PluginManager};
use plugin_test_support::fixtures;
use serde_json::Value;

#[allow(dead_code, reason = "only the input is used here")]
#[path = "../../test-plugins/json-bench/src/object.rs"]
mod object;
use object::one_kb_object;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, iterations] = args.as_slice() else {
        eprintln!(
            "usage: callgrind_calls <noop|ctx_set_get|json_1kb|json_floor|typed_1kb|typed_floor> <iterations>"
        );
        std::process::exit(2);
    };
    let iterations: u64 = iterations.parse().expect("iterations is a number");
    let plugin = match mode.as_str() {
        "noop" => "noop",
        "ctx_set_get" => "ctx-bench",
        "json_1kb" => "json-bench",
        "typed_1kb" | "typed_floor" => "typed-bench",
        "json_floor" => "json-bench",
        other => panic!("unknown mode {other}"),
    };
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), plugin);
    let m = PluginManager::new(base.path());
    m.load_plugin(plugin).unwrap();
    let h = m.get(plugin).unwrap();

    match mode.as_str() {
        "noop" => {
            let ctx = Context::background();
            // The first call, then the loop.
            for _ in 0..=iterations {
                h.execute(std::hint::black_box(&ctx)).unwrap();
            }
        }
        "json_1kb" => {
            let input = one_kb_object();
            for _ in 0..=iterations {
                let ctx = Context::background();
                ctx.set("input", std::hint::black_box(&input)).unwrap();
                h.execute(&ctx).unwrap();
                std::hint::black_box(ctx.get::<Value>("output").unwrap());
            }
        }
        "ctx_set_get" => {
            // The loop runs in the plugin: one call of 1 (the first call) and one of N.
            for loops in [1, iterations] {
                let ctx = Context::background();
                ctx.set("loops", &loops).unwrap();
                h.execute(&ctx).unwrap();
            }
        }
        "json_floor" => {
            let input = one_kb_object();
            let ctx = Context::background();
            ctx.set("input", &input).unwrap();
            h.execute(&ctx).unwrap();
            let output: Value = ctx.get("output").unwrap().unwrap();
            for _ in 0..=iterations {
                floor(&input);
                floor(&output);
            }
        }
        "typed_floor" => {
            let order = sample_order();
            let priced = price(&order);
            for _ in 0..=iterations {
                floor(&order);
                floor(&priced);
            }
        }
        _ => {
            let order = sample_order();
            for _ in 0..=iterations {
                let ctx = Context::background();
                let out = h.call::<Order, Priced>(&ctx, std::hint::black_box(&order));
                std::hint::black_box(out.unwrap());
            }
        }
    }
}

/// One encode and one decode of `value` in the boundary's codec.
fn floor<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) {
    let bytes = plugin_abi::codec::encode(std::hint::black_box(value)).unwrap();
    std::hint::black_box(plugin_abi::codec::decode::<T>(&bytes).unwrap());
}
