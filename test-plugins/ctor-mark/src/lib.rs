//! Test fixture: built as version 0.1.0, but its `plugin.json` says 0.2.0; and a library
//! constructor, which runs when the library is mapped, before any of the host's checks on
//! the mapped library, creates the file named by `PLUGIN_CTOR_MARK` (if set). A host that
//! refuses the library from its file alone leaves no such file.

use plugin_sdk::{export_plugin, Context, PluginError};

/// The environment variable naming the file the constructor creates.
pub const MARK_VAR: &str = "PLUGIN_CTOR_MARK";

extern "C" fn leave_mark() {
    if let Some(path) = std::env::var_os(MARK_VAR) {
        let _ = std::fs::write(path, "the constructor of ctor-mark ran\n");
    }
}

/// Registered as a constructor: the dynamic loader calls it when it maps the library.
#[used]
#[cfg_attr(target_vendor = "apple", link_section = "__DATA,__mod_init_func")]
#[cfg_attr(windows, link_section = ".CRT$XCU")]
#[cfg_attr(
    not(any(target_vendor = "apple", windows)),
    link_section = ".init_array"
)]
static CONSTRUCTOR: extern "C" fn() = leave_mark;

fn execute(_ctx: &Context<'_>) -> Result<(), PluginError> {
    Ok(())
}

export_plugin!(execute);
