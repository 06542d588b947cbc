//! Dispatches on the call's routing label, as the seed's notes suggest: one plugin serves
//! several routes, each declared with a label in `plugin.json`'s `http_services`.

use plugin_sdk::{export_plugin, Context, PluginError};

fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
    let label = ctx
        .label()
        .ok_or_else(|| PluginError::invalid_input("call this plugin with a label"))?;
    match label {
        "plugin.get" => {
            let id: String = ctx.get("id")?.unwrap_or_else(|| "unknown".to_owned());
            ctx.set("item", &serde_item(&id))?;
        }
        "plugin.post" => {
            let body: Option<String> = ctx.get("body")?;
            ctx.set("created", &body.is_some())?;
        }
        other => {
            return Err(PluginError::unsupported(format!(
                "unknown label `{other}`; this plugin serves `plugin.get` and `plugin.post`"
            )))
        }
    }
    ctx.set("served_label", &label)?;
    Ok(())
}

fn serde_item(id: &str) -> std::collections::BTreeMap<&'static str, String> {
    [("id", id.to_owned()), ("kind", "sample".to_owned())]
        .into_iter()
        .collect()
}

export_plugin!(execute);
