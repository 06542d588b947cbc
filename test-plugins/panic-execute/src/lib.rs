//! Test fixture: panics in `execute` when `panic` is true, otherwise succeeds.

use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    if ctx.get::<bool>("panic")?.unwrap_or(true) {
        panic!("boom from panic-execute");
    }
    ctx.set("ok", &true)?;
    Ok(())
}

export_plugin!(execute);
