//! Test fixture: exports a root module named like the real one, but whose `execute` takes
//! a different argument, as a plugin built against a changed ABI would.
//!
//! Its identity record claims this ABI version and SDK, as a plugin built against a changed
//! layout with unchanged version numbers would: only abi_stable's layout check, once the
//! library is mapped, can tell.
#![allow(
    non_local_definitions,
    reason = "#[derive(StableAbi)] expands to impls inside const items"
)]

use abi_stable::{
    declare_root_module_statics, export_root_module,
    library::RootModule,
    package_version_strings,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RResult, RString},
    StableAbi,
};
use plugin_abi::identity;

/// Same name and version strings as `plugin_abi::PluginMod`, different layout.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Changed: takes a string instead of the context.
    #[sabi(last_prefix_field)]
    pub execute: extern "C" fn(RString) -> RResult<(), RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "plugin";
    const NAME: &'static str = "plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

extern "C" fn execute(_: RString) -> RResult<(), RString> {
    RResult::ROk(())
}

const NAME: &str = env!("CARGO_PKG_NAME");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const SDK_VERSION: &str = plugin_abi::CRATE_VERSION;

/// The identity record, where `export_plugin!` would write it.
#[used]
#[cfg_attr(target_vendor = "apple", link_section = "__DATA,__plugin_ident")]
#[cfg_attr(windows, link_section = ".plgid")]
#[cfg_attr(
    not(any(target_vendor = "apple", windows)),
    link_section = ".plugin_identity"
)]
static IDENTITY: [u8; identity::encoded_len(NAME, VERSION, SDK_VERSION)] =
    identity::encode(NAME, VERSION, SDK_VERSION, plugin_abi::ABI_VERSION);

/// The root module.
#[export_root_module]
pub fn root() -> PluginModRef {
    PluginMod { execute }.leak_into_prefix()
}
