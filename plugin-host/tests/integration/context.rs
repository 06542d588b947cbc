//! A call's context shared with other threads: the host reading it mid-call, and two calls
//! on one context at once (the calls' accesses skip the values' lock until another thread
//! touches them; see `bias.rs`).

use std::sync::atomic::{AtomicBool, Ordering};

use plugin_host::{Context, PluginHandle, PluginManager};
use plugin_test_support::fixtures;

/// The `ctx-bench` plugin, loaded: each call sets `k` to "short" and reads it back,
/// `loops` times (default 1).
fn ctx_bench() -> (tempfile::TempDir, PluginManager, PluginHandle) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "ctx-bench");
    let m = PluginManager::new(base.path());
    m.load_plugin("ctx-bench").unwrap();
    let h = m.get("ctx-bench").unwrap();
    (base, m, h)
}

#[test]
fn two_calls_on_one_context_and_a_reader_never_see_a_torn_value() {
    let (_base, _m, h) = ctx_bench();

    let ctx = Context::background();
    ctx.set("loops", &20_000u64).unwrap();
    // A longer string first, so the calls overwrite it in place.
    ctx.set("k", "a value longer than the one the plugin writes")
        .unwrap();
    let done = AtomicBool::new(false);
    let reads = std::thread::scope(|s| {
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let (h, ctx) = (h.clone(), ctx.clone());
                s.spawn(move || h.execute(&ctx))
            })
            .collect();
        let reader = s.spawn(|| {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let k: String = ctx.get("k").unwrap().unwrap();
                assert!(
                    k == "short" || k == "a value longer than the one the plugin writes",
                    "a torn value: {k:?}"
                );
                reads += 1;
            }
            reads
        });
        for call in calls {
            call.join().unwrap().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(reads > 0);
    assert_eq!(ctx.get::<String>("k").unwrap().as_deref(), Some("short"));
}

#[test]
fn values_a_plugin_stores_reach_the_host_whatever_their_kind() {
    let (_base, _m, h) = ctx_bench();

    // `k` held a number, then the plugin stores a string over it; the call after that
    // overwrites its own string; a fresh context gets a new key.
    let ctx = Context::background();
    ctx.set("k", &7).unwrap();
    h.execute(&ctx).unwrap();
    assert_eq!(ctx.get::<String>("k").unwrap().as_deref(), Some("short"));
    h.execute(&ctx).unwrap();
    assert_eq!(ctx.get::<String>("k").unwrap().as_deref(), Some("short"));
    let fresh = Context::background();
    h.execute(&fresh).unwrap();
    assert_eq!(fresh.keys(), ["k"]);
    assert_eq!(fresh.get::<String>("k").unwrap().as_deref(), Some("short"));
}
