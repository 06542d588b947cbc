//! Test fixture: returns an error of a different shape per label, to show how each reaches
//! the host:
//!
//! - `std`: a `std::io::Error` through `?` (kind `other`, chain as text);
//! - `kind`: a parse error given a kind with `ResultExt::kind` (`invalid_input`);
//! - `own`: the plugin's own error type, which picks its kind (`not_found`);
//! - `anyhow`: an `anyhow` chain with a `KindError` in it (`not_found`, chain as text).

use anyhow::Context as _;
use plugin_sdk::{
    export_plugin, Context, ErrorKind, IntoPluginError, KindError, PluginError, ResultExt,
};

/// This plugin's own error type.
#[derive(Debug)]
enum LookupError {
    Missing(String),
}

impl IntoPluginError for LookupError {
    fn into_plugin_error(self) -> PluginError {
        match self {
            LookupError::Missing(what) => PluginError::not_found(format!("no {what}")),
        }
    }
}

/// Wraps each shape into the one error type the entry returns.
#[derive(Debug)]
enum Failure {
    Plugin(PluginError),
    Own(LookupError),
    Anyhow(anyhow::Error),
}

impl IntoPluginError for Failure {
    fn into_plugin_error(self) -> PluginError {
        match self {
            Failure::Plugin(e) => e,
            Failure::Own(e) => e.into_plugin_error(),
            Failure::Anyhow(e) => e.into_plugin_error(),
        }
    }
}

fn io_failure() -> Result<(), PluginError> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "users.json is missing",
    ))?;
    Ok(())
}

fn execute(ctx: &Context<'_>) -> Result<(), Failure> {
    let label = ctx.label().unwrap_or_default();
    match label {
        "std" => io_failure().map_err(Failure::Plugin),
        "kind" => "forty-two"
            .parse::<u32>()
            .kind(ErrorKind::InvalidInput)
            .map(drop)
            .map_err(Failure::Plugin),
        "own" => Err(Failure::Own(LookupError::Missing("user 42".into()))),
        "anyhow" => Err(Failure::Anyhow(
            Err::<(), _>(anyhow::Error::new(KindError(ErrorKind::NotFound)))
                .context("user 42")
                .context("loading the profile")
                .unwrap_err(),
        )),
        other => Err(Failure::Plugin(PluginError::unsupported(format!(
            "unknown label `{other}`"
        )))),
    }
}

export_plugin!(execute);
