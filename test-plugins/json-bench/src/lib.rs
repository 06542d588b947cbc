//! Benchmark fixture: a call users feel. Reads a JSON object from `input`, writes a
//! transformed object of the same size to `output`. `plugin-host/benches/host.rs` runs the
//! same `transform` (`src/object.rs`) directly on `serde_json::Value` as the baseline.

use plugin_sdk::{export_plugin, Context, PluginError};
use serde_json::Value;

#[allow(dead_code, reason = "one_kb_object is for the benches")]
mod object;
use object::transform;

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    let input: Value = ctx
        .get("input")?
        .ok_or_else(|| PluginError::invalid_input("set `input` to a JSON object"))?;
    ctx.set("output", &transform(&input))?;
    Ok(())
}

export_plugin!(execute);
