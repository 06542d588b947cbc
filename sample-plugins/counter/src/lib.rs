//! Keeps a count across calls. `on_load` starts it, `on_unload` reports it.

use std::sync::atomic::{AtomicI64, Ordering};

use plugin_sdk::{export_plugin, Context, PluginError};

static CALLS: AtomicI64 = AtomicI64::new(0);

fn init(ctx: &Context<'_>) -> Result<(), PluginError> {
    CALLS.store(0, Ordering::SeqCst);
    ctx.info("counter ready");
    Ok(())
}

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    let step: i64 = ctx.get("step")?.unwrap_or(1);
    let count = CALLS.fetch_add(step, Ordering::SeqCst) + step;
    ctx.set("count", &count)?;
    Ok(())
}

fn stop(ctx: &Context<'_>) -> Result<(), PluginError> {
    // A real plugin would flush state here; this one reports it.
    ctx.info(&format!(
        "counter stopping at {}",
        CALLS.load(Ordering::SeqCst)
    ));
    Ok(())
}

export_plugin! { execute: execute, on_load: init, on_unload: stop }
