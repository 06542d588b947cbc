//! Test fixture for upgrades. Each call records the version it runs on at its start and at
//! its end, so a test can tell that a call ran entirely on one version. `hold_ms` makes a
//! call last a while (waking early if cancelled).

use std::time::Duration;

use plugin_sdk::{export_plugin, Context, PluginError};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    ctx.set("version_at_start", VERSION)?;
    if let Some(hold) = ctx.get::<u64>("hold_ms")? {
        ctx.wait_cancelled(Duration::from_millis(hold));
    }
    ctx.set("version_at_end", VERSION)?;
    Ok(())
}

fn init(_ctx: &Context<'_>) -> Result<(), PluginError> {
    if cfg!(feature = "panic-on-load") {
        panic!("versioned {VERSION} was built to fail in on_load");
    }
    Ok(())
}

fn stop() -> Result<(), PluginError> {
    if cfg!(feature = "fail-on-unload") {
        return Err(PluginError::other(format!(
            "versioned {VERSION} was built to fail in on_unload"
        )));
    }
    Ok(())
}

export_plugin! { execute: execute, on_load: init, on_unload: stop }
