//! Benchmark fixture: a typed call as a user writes one. Takes an `order::Order` (about
//! 1.1 KB as JSON), returns its `order::Priced` (about 1 KB). `plugin-host/benches`
//! include `order.rs` as it is and call `order::price` directly as the baseline, so both
//! sides run identical code.

mod order;

use plugin_sdk::{export_plugin, Context, PluginError};

fn price_call(_ctx: &Context<'_>, order: order::Order) -> Result<order::Priced, PluginError> {
    Ok(order::price(&order))
}

export_plugin! { call: price_call }
