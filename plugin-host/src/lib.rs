//! Discover, check, load, call and unload native Rust plugins.
//!
//! A plugin is a folder holding a `plugin.json` and a shared library built with
//! `plugin-sdk`. A [`PluginManager`] looks at every folder under a base directory, checks
//! each plugin (manifest, host version, file, format, identity, in that order, all from the
//! files alone; then the ABI layout, which needs the library mapped), loads it from a
//! private copy of its library, and calls it with a [`Context`].
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use plugin_host::{Context, PluginManager};
//!
//! let manager = PluginManager::builder("plugins")
//!     .host_version(semver::Version::new(1, 4, 0))
//!     .build();
//! let report = manager.load_plugins()?;
//! for (name, err) in report.failed() {
//!     eprintln!("skipping {name}: {err}");
//! }
//!
//! let ctx = Context::with_timeout(Duration::from_secs(2));
//! ctx.set("sample", &serde_json::json!({ "name": "world" }))?;
//! manager.get("hello")?.execute(&ctx)?;
//! let greeting: Option<String> = ctx.get("greeting")?;
//! # Ok::<(), plugin_host::Error>(())
//! ```
//!
//! # Libraries are never closed
//!
//! Unloading a plugin removes it from the registry, waits for its calls, and runs its
//! `on_unload` hook, but its code stays mapped in the process: `abi_stable` never closes
//! libraries, and closing a Rust library is unsound (thread-local destructors and leaked
//! `'static` data may still point into it). Each load maps a new private copy, so a host
//! that reloads a plugin many times grows by one mapping per load (on Linux, where the copy
//! is an anonymous memory file, also by one open file descriptor).
//!
//! A plugin run in process isolation ([`isolate`], [`Isolation::Process`]) is never mapped
//! into the host: it runs in a worker process, which exits when the plugin is unloaded, so
//! its memory is returned.
#![warn(missing_docs)]

mod backend;
mod bias;
mod cancel;
pub mod check;
mod context;
pub mod discover;
mod error;
mod fence;
pub mod isolate;
mod library;
mod load;
mod manager;
pub mod manifest;
mod module;
mod small_file;
mod state_file;
pub mod watch;

pub use check::{Checks, Inspection};
pub use context::{CancelHandle, Context};
pub use error::Error;
pub use isolate::{Isolation, ProcessOptions};
pub use library::sha256_file;
pub use manager::{
    Drain, Event, ListenerId, LoadOutcome, LoadReport, PluginHandle, PluginManager,
    PluginManagerBuilder, PluginState, PluginStatus, PluginSummary, ShutdownOutcome,
    UpgradeOptions, Upgraded,
};
pub use manifest::Manifest;
pub use plugin_abi::{CancelReason, ErrorKind, Value};
/// The `semver` crate this API's versions come from.
pub use semver;
pub use state_file::STATE_FILE;
pub use watch::{WatchOptions, Watcher};

/// The version of `plugin-abi` this host was built with. Plugins must be built with a
/// caret-compatible `plugin-sdk`.
pub const ABI_CRATE_VERSION: &str = plugin_abi::CRATE_VERSION;

/// README.md's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// docs/host-guide.md's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/host-guide.md")]
struct HostGuideDoctests;

/// docs/isolation.md's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/isolation.md")]
struct IsolationDoctests;

/// docs/lifecycle.md's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/lifecycle.md")]
struct LifecycleDoctests;
