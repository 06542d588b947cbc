//! Works in steps until its call is cancelled or its deadline passes, then reports how far
//! it got. It sleeps with `wait_cancelled`, so a cancel wakes it at once.

use std::time::Duration;

use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    // `max_steps` bounds the work when the caller wants it to finish by itself.
    let max_steps: Option<u64> = ctx.get("max_steps")?;
    let step_ms: u64 = ctx.get("step_ms")?.unwrap_or(10);
    let mut steps = 0u64;
    loop {
        ctx.set("steps", &steps)?;
        if max_steps.is_some_and(|max| steps >= max) {
            return Ok(());
        }
        ctx.wait_cancelled(Duration::from_millis(step_ms));
        ctx.check_cancelled()?;
        steps += 1;
    }
}

export_plugin!(execute);
