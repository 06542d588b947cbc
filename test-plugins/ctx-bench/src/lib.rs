//! Benchmark fixture: sets and gets a string through the context `loops` times, to
//! measure the cost of one `ctx.set` + `ctx.get` from inside a plugin. The string is
//! "short" unless the context holds a string `value`, which is used instead (the 1 KB
//! figure).

use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    let loops: u64 = ctx.get("loops")?.unwrap_or(1);
    match ctx.get::<String>("value")? {
        None => {
            for _ in 0..loops {
                ctx.set("k", "short")?;
                let v: Option<String> = ctx.get("k")?;
                std::hint::black_box(v);
            }
        }
        Some(value) => {
            for _ in 0..loops {
                ctx.set("k", value.as_str())?;
                let v: Option<String> = ctx.get("k")?;
                std::hint::black_box(v);
            }
        }
    }
    Ok(())
}

export_plugin!(execute);
