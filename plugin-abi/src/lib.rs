//! The FFI-safe contract between plugin hosts and plugins.
//!
//! Everything that crosses the boundary between a host (built with `plugin-host`) and a
//! plugin library (built with `plugin-sdk`) is defined here, and every type derives
//! [`StableAbi`], so [`abi_stable`] checks at load time that host and plugin agree on the
//! layout of each of them.
//!
//! - [`PluginMod`] / [`PluginModRef`]: the root module a plugin library exports.
//! - [`HostContext`]: the context object the host implements and the plugin calls back into.
//! - Values: a context value crosses as one buffer of encoded bytes ([`codec`], with the
//!   `serde` feature); [`Value`] is the untyped view of one.
//! - [`PluginError`] / [`ErrorKind`]: what a plugin call returns on failure.
//! - [`identity`]: the plugin's identity as bytes in a link section, which a host reads from
//!   the library file before mapping it.
//!
//! Plugin authors do not use this crate directly: `plugin-sdk` wraps it. Hosts use it through
//! `plugin-host`.
//!
//! # Examples
//!
//! ```
//! use plugin_abi::{ErrorKind, PluginError, Value};
//!
//! let v = Value::from("hello");
//! assert_eq!(v.as_str(), Some("hello"));
//!
//! // `?` turns any std error into a `PluginError` with kind `Other`.
//! fn parse(s: &str) -> Result<i64, PluginError> {
//!     Ok(s.parse::<i64>()?)
//! }
//! assert_eq!(parse("x").unwrap_err().kind, ErrorKind::Other);
//! ```
#![warn(missing_docs)]
// `#[sabi_trait]` expands to impl blocks inside a const item, which this lint flags.
#![allow(
    non_local_definitions,
    reason = "#[sabi_trait] and #[derive(StableAbi)] expand to impls inside const items"
)]

#[cfg(feature = "serde")]
pub mod codec;
mod error;
pub mod identity;
#[cfg(feature = "serde")]
pub mod serde;
mod value;

pub use abi_stable;
pub use error::{ErrorKind, PluginError, ResultExt};

/// The context key under which a typed call passes its input (`handle.call::<I, O>` on the
/// host, `export_plugin! { call: f }` in the plugin).
pub const INPUT_KEY: &str = "input";

/// The context key under which a typed call returns its output.
pub const OUTPUT_KEY: &str = "output";
pub use value::{MapEntry, Value};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::{RMut, RRef, VersionStrings},
    std_types::{RDuration, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// Version of this contract, baked into every plugin by the SDK.
///
/// It is bumped on any change that is not an append-only extension of the root module or
/// the context. `abi_stable`'s layout check catches layout changes independently; this number
/// lets the host give a clear message instead of a layout diff.
///
/// - 1: values crossed as a tree of FFI nodes ([`Value`]).
/// - 2: values cross as one buffer of encoded bytes ([`codec`]), in-process and to a worker.
pub const ABI_VERSION: u32 = 2;

/// The version of this crate. Plugins built with an SDK whose `plugin-abi` is not
/// caret-compatible with the host's are refused.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a context was cancelled.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// `cancel()` was called on the context or one of its parents.
    Cancelled,
    /// The context's deadline passed.
    DeadlineExceeded,
}

/// Severity of a log record sent by a plugin to the host's `tracing` subscriber.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something unexpected that the plugin recovered from.
    Warn,
    /// Normal operation.
    Info,
    /// Detail useful when debugging.
    Debug,
    /// Very verbose detail.
    Trace,
}

/// The identity baked into a plugin library at build time.
///
/// `plugin-sdk` also writes these values into the library's identity section
/// ([`identity`]), which the host compares with the plugin's `plugin.json` (and
/// `abi_version` with [`ABI_VERSION`]) before it maps the library. Once the library is
/// mapped, the host checks what `info()` returns the same way, before any other call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin crate's package name (`CARGO_PKG_NAME`).
    pub name: RStr<'static>,
    /// The plugin crate's version (`CARGO_PKG_VERSION`).
    pub version: RStr<'static>,
    /// The version of `plugin-sdk` the plugin was built with.
    pub sdk_version: RStr<'static>,
    /// The [`ABI_VERSION`] the plugin was built against.
    pub abi_version: u32,
}

/// The context a plugin call runs in, implemented by the host.
///
/// It carries key/value pairs, the routing label, cancellation and a deadline, and a logger
/// that forwards to the host's `tracing` subscriber. The plugin sees it as
/// [`ContextRef`]; the SDK wraps it in an ergonomic `Context`.
///
/// Implementations must not panic: a panic in a method called from a plugin aborts the
/// process.
#[sabi_trait]
pub trait HostContext: Send + Sync {
    /// Lends the encoded bytes of the value stored under `key` (or `RNone`) to `visitor`,
    /// without copying them.
    ///
    /// The host holds its lock on the values while `visitor` runs, so the visitor must not
    /// call back into the context.
    fn get(&self, key: RStr<'_>, visitor: BytesVisitor_TO<'_, RMut<'_, ()>>);

    /// Stores the value encoded in `bytes` under `key`, replacing any previous value. The
    /// host copies the bytes (into the buffer already stored under `key` when there is one,
    /// so overwriting a value of the same size allocates nothing).
    fn set(&self, key: RStr<'_>, bytes: RSlice<'_, u8>);

    /// Removes the value stored under `key`; returns whether there was one.
    fn remove(&self, key: RStr<'_>) -> bool;

    /// Returns every key currently stored, in no particular order.
    fn keys(&self) -> RVec<RString>;

    /// The routing label of this call (an `http_services.routes[].label`), if any.
    fn label(&self) -> ROption<RStr<'_>>;

    /// Why the context was cancelled, or `RNone` while it is still live.
    ///
    /// A context whose deadline has passed reports `DeadlineExceeded`.
    fn cancel_reason(&self) -> ROption<CancelReason>;

    /// Time left before the deadline, if the context has one (zero once it has passed).
    fn remaining(&self) -> ROption<RDuration>;

    /// Blocks until the context is cancelled or `timeout` elapses; returns whether it was
    /// cancelled.
    fn wait_cancelled(&self, timeout: RDuration) -> bool;

    /// Emits a log record through the host's `tracing` subscriber.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, message: RStr<'_>);
}

/// A callback that reads the borrowed bytes of a value, passed to [`HostContext::get`].
///
/// Implemented by the SDK, so a plugin decodes a context value in place instead of
/// receiving a copy of it.
#[sabi_trait]
pub trait BytesVisitor {
    /// Called once with the value's bytes, or `RNone` if the key is not set.
    #[sabi(last_prefix_field)]
    fn visit(&mut self, bytes: ROption<RSlice<'_, u8>>);
}

/// The context as a plugin receives it: a borrowed, FFI-safe trait object.
pub type ContextRef<'a> = HostContext_TO<'a, RRef<'a, ()>>;

/// The root module every plugin library exports.
///
/// Fields after `on_unload` may be appended in later minor versions (the prefix-type rule):
/// the host reads them through accessors returning `Option`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Returns the identity baked into the library.
    pub info: extern "C" fn() -> PluginInfo,

    /// The plugin's entry point: runs one call in `ctx`.
    pub execute:
        for<'a> extern "C" fn(ctx: HostContext_TO<'a, RRef<'a, ()>>) -> RResult<(), PluginError>,

    /// Runs once after the library is loaded and checked, before the first call.
    pub on_load: Option<
        for<'a> extern "C" fn(ctx: HostContext_TO<'a, RRef<'a, ()>>) -> RResult<(), PluginError>,
    >,

    /// Runs once after the last call, when the plugin is unloaded or replaced.
    #[sabi(last_prefix_field)]
    pub on_unload: Option<extern "C" fn() -> RResult<(), PluginError>>,

    /// Like `on_unload`, with a context to log through. A plugin built with this field
    /// exports its `on_unload` here (and leaves `on_unload` empty); a host reads this field
    /// first. Absent in libraries built against an older `plugin-abi`.
    #[sabi(missing_field(option))]
    pub on_unload_with_context: Option<
        for<'a> extern "C" fn(ctx: HostContext_TO<'a, RRef<'a, ()>>) -> RResult<(), PluginError>,
    >,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}

    const BASE_NAME: &'static str = "plugin";
    const NAME: &'static str = "plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Name of the symbol through which a plugin library exports its root module.
///
/// `plugin-sdk`'s `export_plugin!` defines it; it must equal
/// [`abi_stable::library::ROOT_MODULE_LOADER_NAME`], which a test checks.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
