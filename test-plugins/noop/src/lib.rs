//! Benchmark fixture: the most trivial plugin, to measure the cost of a call itself.

use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(_ctx: &Context<'_>) -> Result<(), PluginError> {
    Ok(())
}

export_plugin!(execute);
