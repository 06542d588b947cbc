//! A typed entry: one function from a request to a reply. The host calls it with
//! `handle.call::<Request, Reply>(&ctx, &request)`; no context keys to agree on.
//!
//! The crate is `typed-greeter`; Cargo names its library `libtyped_greeter.so` (hyphens
//! become underscores), so `plugin.json` says `"path": "typed_greeter"`.

use plugin_sdk::{export_plugin, Context, PluginError};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    name: String,
    #[serde(default)]
    excited: bool,
}

#[derive(Serialize)]
struct Reply {
    greeting: String,
    length: usize,
}

fn greet(ctx: &Context<'_>, request: Request) -> Result<Reply, PluginError> {
    if request.name.is_empty() {
        return Err(PluginError::invalid_input("`name` is empty"));
    }
    ctx.debug(&format!("greeting {}", request.name));
    let mark = if request.excited { "!" } else { "." };
    let greeting = format!("Hello, {}{mark}", request.name);
    Ok(Reply {
        length: greeting.len(),
        greeting,
    })
}

export_plugin! { call: greet }
