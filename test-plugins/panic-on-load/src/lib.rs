//! Test fixture: panics in `on_load`.

use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(_ctx: &Context<'_>) -> Result<(), PluginError> {
    Ok(())
}

fn init(_ctx: &Context<'_>) -> Result<(), PluginError> {
    panic!("boom from panic-on-load");
}

export_plugin! { execute: execute, on_load: init }
