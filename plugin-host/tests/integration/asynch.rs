//! Async calls and lifecycle changes on tokio (feature `tokio`).

use std::sync::Arc;
use std::time::Duration;

use plugin_host::{Context, Drain, PluginManager};
use plugin_test_support::fixtures;

fn manager_with(names: &[&str]) -> (tempfile::TempDir, Arc<PluginManager>) {
    let base = tempfile::tempdir().unwrap();
    for name in names {
        fixtures().install(base.path(), name);
    }
    let m = PluginManager::new(base.path());
    for name in names {
        m.load_plugin(name).unwrap();
    }
    (base, Arc::new(m))
}

#[tokio::test(flavor = "current_thread")]
async fn calls_run_off_the_runtime_and_a_dropped_call_is_cancelled() {
    let (_base, m) = manager_with(&["typed-greeter", "slow"]);
    // One runtime thread: the calls must not block it.
    let reply: serde_json::Value = m
        .get("typed-greeter")
        .unwrap()
        .call_async(
            &Context::background(),
            &serde_json::json!({ "name": "async" }),
        )
        .await
        .unwrap();
    assert_eq!(reply["greeting"], "Hello, async.");

    // `slow` works until cancelled; dropping its future cancels it.
    let slow = m.get("slow").unwrap();
    let ctx = Context::background();
    let call = {
        let (slow, ctx) = (slow.clone(), ctx.clone());
        async move { slow.execute_async(&ctx).await }
    };
    let timed_out = tokio::time::timeout(Duration::from_millis(50), call).await;
    assert!(timed_out.is_err(), "slow never finishes by itself");
    assert!(
        ctx.is_cancelled(),
        "dropping the call's future cancels its context"
    );

    // A completed call leaves its context alone.
    let done = Context::background();
    done.set("max_steps", &1).unwrap();
    slow.execute_async(&done).await.unwrap();
    assert!(!done.is_cancelled());
}

#[tokio::test(flavor = "current_thread")]
async fn unload_and_reload_run_off_the_runtime() {
    let (_base, m) = manager_with(&["counter"]);
    let up = m.reload_async("counter").await.unwrap();
    assert_eq!(up.to.to_string(), "0.1.0");
    assert_eq!(m.unload_async("counter").await.unwrap(), Drain::Clean);
    let err = m.unload_async("counter").await.unwrap_err();
    assert!(err.plugin_error_kind().is_none());
    assert!(matches!(err, plugin_host::Error::NotFound { .. }), "{err}");
}
