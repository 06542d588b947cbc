//! Test fixture: built as version 0.1.0, but its `plugin.json` says 9.9.9.

use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(_ctx: &Context<'_>) -> Result<(), PluginError> {
    Ok(())
}

export_plugin!(execute);
