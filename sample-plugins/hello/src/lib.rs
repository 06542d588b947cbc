//! The seed's sample plugin: reads `sample` as `{ "name": .. }` and writes `greeting`.

use plugin_sdk::{export_plugin, Context, PluginError};
use serde::Deserialize;

/// The input the host puts under `sample`.
#[derive(Deserialize)]
struct Hello {
    name: String,
}

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    let hello: Hello = ctx.get("sample")?.ok_or_else(|| {
        PluginError::invalid_input("set `sample` to an object like {\"name\": \"world\"}")
    })?;
    ctx.info(&format!("greeting {}", hello.name));
    ctx.set("greeting", &format!("Hello, {}!", hello.name))?;
    Ok(())
}

export_plugin!(execute);
