//! Benchmark fixture: a call users feel. Reads a JSON object from `input`, writes a
//! transformed object of the same size to `output`. `plugin-host/benches/host.rs` runs the
//! same `transform` directly on `serde_json::Value` as the baseline.

use plugin_sdk::{export_plugin, Context, PluginError};
use serde_json::{Map, Value};

/// Upper-cases every string field and doubles every number; keeps the rest.
fn transform(input: &Value) -> Value {
    let Some(fields) = input.as_object() else {
        return Value::Null;
    };
    let out: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => Value::String(s.to_uppercase()),
                Value::Number(n) => n.as_i64().map_or(v.clone(), |n| Value::from(n * 2)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(out)
}

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    let input: Value = ctx
        .get("input")?
        .ok_or_else(|| PluginError::invalid_input("set `input` to a JSON object"))?;
    ctx.set("output", &transform(&input))?;
    Ok(())
}

export_plugin!(execute);
