//! Write a native plugin in one function.
//!
//! A plugin is a `cdylib` crate that depends on `plugin-sdk`, defines one function taking a
//! [`Context`], and exports it with [`export_plugin!`]. The host (`plugin-host`) finds the
//! library through the plugin's `plugin.json`, checks it, and calls the function.
//!
//! # Examples
//!
//! ```
//! use plugin_sdk::{export_plugin, Context, PluginError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Hello {
//!     name: String,
//! }
//!
//! fn execute(ctx: &Context<'_>) -> Result<(), PluginError> {
//!     let hello: Hello = ctx
//!         .get("sample")?
//!         .ok_or_else(|| PluginError::invalid_input("`sample` is not set"))?;
//!     ctx.set("greeting", &format!("Hello, {}!", hello.name))?;
//!     Ok(())
//! }
//!
//! export_plugin!(execute);
//! ```
//!
//! With lifecycle hooks:
//!
//! ```
//! # use plugin_sdk::{export_plugin, Context, PluginError};
//! fn run(_ctx: &Context<'_>) -> Result<(), PluginError> { Ok(()) }
//! fn init(ctx: &Context<'_>) -> Result<(), PluginError> { ctx.info("ready"); Ok(()) }
//! fn stop() -> Result<(), PluginError> { Ok(()) }
//!
//! export_plugin! { execute: run, on_load: init, on_unload: stop }
//! ```
//!
//! Panics inside these functions are caught inside the plugin and returned to the host as
//! an error of kind [`ErrorKind::Panicked`]; they never unwind across the library boundary.
#![warn(missing_docs)]

mod context;
mod error;
pub mod http;

pub use context::Context;
pub use error::IntoPluginError;
#[cfg(feature = "anyhow")]
pub use error::KindError;
pub use plugin_abi::{
    CancelReason, ErrorKind, LogLevel, PluginError, ResultExt, Value, INPUT_KEY, OUTPUT_KEY,
};

/// The version of `plugin-sdk` a plugin is built with; baked into every plugin.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exports a function as this library's plugin entry point.
///
/// Forms:
///
/// - `export_plugin!(execute);`
/// - `export_plugin! { execute: run, on_load: init, on_unload: stop }` (hooks optional, in
///   that order)
/// - `export_plugin! { call: greet }` (hooks as above): a typed entry,
///   `fn greet(ctx: &Context<'_>, input: In) -> Result<Out, E>` with `In: Deserialize` and
///   `Out: Serialize`. The host's `handle.call::<In, Out>(&ctx, &input)` calls it: the input
///   travels in the context value [`INPUT_KEY`] (`"input"`), the output comes back in
///   [`OUTPUT_KEY`] (`"output"`), and the rest of the context works as for `execute`.
///
/// `execute` and `on_load` have the signature `fn(&Context<'_>) -> Result<(), E>`;
/// `on_unload` is `fn(&Context<'_>) -> Result<(), E>` (a context to log through; it holds
/// no values) or `fn() -> Result<(), E>`, where `E` is [`PluginError`] or any other
/// [`IntoPluginError`] type (your own, or `anyhow::Error` with the `anyhow` feature). The plugin's name and version are taken
/// from its `Cargo.toml` (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION`) at build time and must equal
/// those in its `plugin.json`. They are written twice: returned by the root module's
/// `info()`, and, with the SDK and ABI versions, as an identity record in a link section of
/// its own (`plugin_abi::identity`), which the host reads from the file before it maps the
/// library.
///
/// Use it once per library, at the crate root.
#[macro_export]
macro_rules! export_plugin {
    (@optional) => {
        ::core::option::Option::None
    };
    (@optional $wrapper:ident, $user:path) => {
        ::core::option::Option::Some($wrapper)
    };
    ($execute:path $(,)?) => {
        $crate::export_plugin! { execute: $execute }
    };
    (call: $call:path $(, on_load: $on_load:path)? $(, on_unload: $on_unload:path)? $(,)?) => {
        #[doc(hidden)]
        fn __plugin_typed_execute(
            ctx: &$crate::Context<'_>,
        ) -> ::core::result::Result<(), $crate::PluginError> {
            $crate::__private::call_typed(ctx, $call)
        }
        $crate::export_plugin! {
            execute: __plugin_typed_execute
            $(, on_load: $on_load)?
            $(, on_unload: $on_unload)?
        }
    };
    (execute: $execute:path $(, on_load: $on_load:path)? $(, on_unload: $on_unload:path)? $(,)?) => {
        // The identity record (`plugin_abi::identity`), in a section of its own, so the host
        // can read it from the file before mapping the library. `#[used]` keeps it through
        // optimisation and linking although no code refers to it.
        const _: () = {
            const NAME: &str = ::core::env!("CARGO_PKG_NAME");
            const VERSION: &str = ::core::env!("CARGO_PKG_VERSION");
            #[used]
            #[cfg_attr(target_vendor = "apple", link_section = "__DATA,__plugin_ident")]
            #[cfg_attr(windows, link_section = ".plgid")]
            #[cfg_attr(
                not(any(target_vendor = "apple", windows)),
                link_section = ".plugin_identity"
            )]
            static PLUGIN_IDENTITY: [u8; $crate::__private::identity_len(NAME, VERSION)] =
                $crate::__private::identity(NAME, VERSION);
        };
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unreachable_pub)]
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __plugin_info() -> $crate::__private::PluginInfo {
                $crate::__private::plugin_info(
                    ::core::env!("CARGO_PKG_NAME"),
                    ::core::env!("CARGO_PKG_VERSION"),
                )
            }
            extern "C" fn __plugin_execute(
                ctx: $crate::__private::ContextRef<'_>,
            ) -> $crate::__private::RResult<(), $crate::PluginError> {
                $crate::__private::call_with_context(ctx, $execute)
            }
            $(
                extern "C" fn __plugin_on_load(
                    ctx: $crate::__private::ContextRef<'_>,
                ) -> $crate::__private::RResult<(), $crate::PluginError> {
                    $crate::__private::call_with_context(ctx, $on_load)
                }
            )?
            $(
                extern "C" fn __plugin_on_unload(
                    ctx: $crate::__private::ContextRef<'_>,
                ) -> $crate::__private::RResult<(), $crate::PluginError> {
                    $crate::__private::call_on_unload(ctx, $on_unload)
                }
            )?
            fn __plugin_root_module() -> $crate::__private::PluginModRef {
                $crate::__private::root_module(
                    __plugin_info,
                    __plugin_execute,
                    $crate::export_plugin!(@optional $(__plugin_on_load, $on_load)?),
                    ::core::option::Option::None,
                    $crate::export_plugin!(@optional $(__plugin_on_unload, $on_unload)?),
                )
            }
            extern "C" fn __plugin_erased_module() -> $crate::__private::RootModuleResult {
                $crate::__private::call_root_module_loader(__plugin_root_module)
            }
            // SAFETY: `__plugin_erased_module` returns the root module of type `PluginModRef`,
            // the type passed as the generic parameter, as `#[export_root_module]` would.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginModRef>(
                    __plugin_erased_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[doc(hidden)]
pub mod __private {
    //! Items used by [`export_plugin!`](crate::export_plugin); not a public API.

    use std::panic::{catch_unwind, AssertUnwindSafe};

    pub use plugin_abi::abi_stable::library::{
        __call_root_module_loader as call_root_module_loader, CheckTypeLayout, LibHeader,
        RootModuleResult,
    };
    pub use plugin_abi::abi_stable::std_types::RResult;
    pub use plugin_abi::{ContextRef, PluginInfo, PluginModRef};

    use plugin_abi::abi_stable::prefix_type::PrefixTypeTrait;
    use plugin_abi::{ErrorKind, PluginError, PluginMod};

    use crate::{Context, IntoPluginError};

    /// The FFI signature of `on_load`.
    pub type OnLoadFn = extern "C" fn(ContextRef<'_>) -> RResult<(), PluginError>;
    /// The FFI signature of the plain `on_unload` (no context), read by hosts built
    /// against an older `plugin-abi`.
    pub type OnUnloadFn = extern "C" fn() -> RResult<(), PluginError>;

    /// An `on_unload` hook: `fn() -> Result<(), E>` or `fn(&Context) -> Result<(), E>`.
    /// `M` only tells the two forms apart.
    pub trait OnUnload<M> {
        /// Runs the hook.
        fn run(self, ctx: &Context<'_>) -> Result<(), PluginError>;
    }

    impl<F, E> OnUnload<()> for F
    where
        F: FnOnce() -> Result<(), E>,
        E: IntoPluginError,
    {
        fn run(self, _ctx: &Context<'_>) -> Result<(), PluginError> {
            self().map_err(IntoPluginError::into_plugin_error)
        }
    }

    impl<F, E> OnUnload<(Context<'static>,)> for F
    where
        F: for<'c, 'd> FnOnce(&'c Context<'d>) -> Result<(), E>,
        E: IntoPluginError,
    {
        fn run(self, ctx: &Context<'_>) -> Result<(), PluginError> {
            self(ctx).map_err(IntoPluginError::into_plugin_error)
        }
    }

    /// Calls an `on_unload` hook of either form with a typed context, catching panics.
    pub fn call_on_unload<M, U: OnUnload<M>>(
        ctx: ContextRef<'_>,
        hook: U,
    ) -> RResult<(), PluginError> {
        let ctx = Context::from_raw(ctx);
        guard(|| hook.run(&ctx))
    }

    /// The length of the identity record of this plugin.
    pub const fn identity_len(name: &str, version: &str) -> usize {
        plugin_abi::identity::encoded_len(name, version, crate::SDK_VERSION)
    }

    /// The identity record of this plugin: the values [`plugin_info`] returns.
    pub const fn identity<const N: usize>(name: &str, version: &str) -> [u8; N] {
        plugin_abi::identity::encode(name, version, crate::SDK_VERSION, plugin_abi::ABI_VERSION)
    }

    /// Builds the plugin's identity.
    pub fn plugin_info(name: &'static str, version: &'static str) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            sdk_version: crate::SDK_VERSION.into(),
            abi_version: plugin_abi::ABI_VERSION,
        }
    }

    /// Builds and leaks the root module.
    pub fn root_module(
        info: extern "C" fn() -> PluginInfo,
        execute: extern "C" fn(ContextRef<'_>) -> RResult<(), PluginError>,
        on_load: Option<OnLoadFn>,
        on_unload: Option<OnUnloadFn>,
        on_unload_with_context: Option<OnLoadFn>,
    ) -> PluginModRef {
        PluginMod {
            info,
            execute,
            on_load,
            on_unload,
            on_unload_with_context,
        }
        .leak_into_prefix()
    }

    /// Calls a user function with a typed context, catching panics; a panic is also logged
    /// through the context into the host's `tracing`.
    pub fn call_with_context<E: IntoPluginError>(
        ctx: ContextRef<'_>,
        f: fn(&Context<'_>) -> Result<(), E>,
    ) -> RResult<(), PluginError> {
        let ctx = Context::from_raw(ctx);
        let result = guard(|| f(&ctx).map_err(IntoPluginError::into_plugin_error));
        if let RResult::RErr(err) = &result {
            if err.kind == ErrorKind::Panicked {
                ctx.error(err.message.as_str());
            }
        }
        result
    }

    /// Calls a user function without a context, catching panics.
    pub fn call_guarded<E: IntoPluginError>(f: fn() -> Result<(), E>) -> RResult<(), PluginError> {
        guard(|| f().map_err(IntoPluginError::into_plugin_error))
    }

    /// A typed entry: reads the input from [`INPUT_KEY`](plugin_abi::INPUT_KEY), calls `f`,
    /// and stores what it returns under [`OUTPUT_KEY`](plugin_abi::OUTPUT_KEY).
    pub fn call_typed<I, O, E>(
        ctx: &Context<'_>,
        f: fn(&Context<'_>, I) -> Result<O, E>,
    ) -> Result<(), PluginError>
    where
        I: serde::de::DeserializeOwned,
        O: serde::Serialize,
        E: IntoPluginError,
    {
        let input: I = ctx.require(plugin_abi::INPUT_KEY)?;
        let output = f(ctx, input).map_err(IntoPluginError::into_plugin_error)?;
        ctx.set(plugin_abi::OUTPUT_KEY, &output)
    }

    fn guard(f: impl FnOnce() -> Result<(), PluginError>) -> RResult<(), PluginError> {
        panic_hook::enter();
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(result) => result.into(),
            Err(payload) => {
                let message = panic_message(&*payload);
                // Dropping the payload runs foreign code (its destructor), which could itself
                // panic; keep that from unwinding out of this `extern "C"` frame.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
                RResult::RErr(PluginError::new(ErrorKind::Panicked, message))
            }
        }
    }

    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        let detail = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic payload that is not a string".to_owned()
        };
        match panic_hook::take_location() {
            Some(at) => format!("the plugin panicked at {at}: {detail}"),
            None => format!("the plugin panicked: {detail}"),
        }
    }

    /// The plugin's own panic hook. Each plugin library has its own copy of std, whose
    /// default hook prints every panic (and, with `RUST_BACKTRACE`, a backtrace) to stderr,
    /// behind the host's back. This hook, installed by the first guarded call, keeps quiet
    /// about panics on threads that call into the plugin from the host (every plugin
    /// function such a thread runs is guarded: the panic becomes the returned error, with
    /// its location, and a log record in the host), and hands every other panic (on a
    /// thread the plugin started itself) to the hook it replaced.
    ///
    /// A thread is marked the first time it enters a guarded call, not on every call, so
    /// the call path pays one thread-local read.
    mod panic_hook {
        use std::cell::Cell;
        use std::panic::PanicHookInfo;
        use std::sync::Once;

        thread_local! {
            /// Whether this thread is a host thread calling into the plugin.
            static HOST_THREAD: Cell<bool> = const { Cell::new(false) };
            /// Where the last panic on this host thread happened.
            static LOCATION: Cell<Option<String>> = const { Cell::new(None) };
        }

        /// Marks this thread as one the host calls the plugin from; installs the hook on
        /// the library's first call.
        #[inline]
        pub(super) fn enter() {
            let _ = HOST_THREAD.try_with(|marked| {
                if !marked.get() {
                    marked.set(true);
                    install();
                }
            });
        }

        #[cold]
        fn install() {
            static INSTALL: Once = Once::new();
            INSTALL.call_once(|| {
                let previous = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
                    if HOST_THREAD.try_with(Cell::get).unwrap_or(false) {
                        let at = info.location().map(ToString::to_string);
                        let _ = LOCATION.try_with(|l| l.set(at));
                    } else {
                        previous(info);
                    }
                }));
            });
        }

        /// The location of the last panic on this thread, taken.
        pub(super) fn take_location() -> Option<String> {
            LOCATION.try_with(Cell::take).ok().flatten()
        }
    }
}

/// docs/plugin-guide.md's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/plugin-guide.md")]
struct PluginGuideDoctests;
