//! The one seam through which the host enters plugin code.
//!
//! Everything that runs code of a mapped plugin library goes through this module, in the
//! host and in a worker process alike: opening the root module of a library that passed
//! the checks ([`Module::open`]), checking the identity its code reports
//! ([`Module::check_identity`]), the hooks ([`Module::on_load`], [`Module::on_unload`]) and
//! calls ([`invoke`]). [`invoke`] is the only place that wraps a [`CallContext`] for the
//! plugin (`HostContext_TO::from_ptr`), so whatever a call must carry (cancellation, the
//! deadline, the log sink) is given to plugin code here and nowhere else.
//!
//! Panics do not cross the boundary: the SDK catches them inside the plugin and returns
//! them as errors, so every entry here returns a [`PluginError`] instead.

use std::path::Path;

use plugin_abi::abi_stable::library::{lib_header_from_raw_library, LibraryError, RawLibrary};
use plugin_abi::abi_stable::sabi_trait::TD_Opaque;
use plugin_abi::abi_stable::sabi_types::RRef;
use plugin_abi::abi_stable::std_types::RResult;
use plugin_abi::identity::Identity;
use plugin_abi::{HostContext_TO, PluginError, PluginModRef};

use crate::cancel::AbortToken;
use crate::context::{CallContext, Context, LogSink};
use crate::Error;

/// A plugin entry that takes a context: `execute`, `on_load`, `on_unload` with a context.
pub(crate) type Entry =
    for<'a> extern "C" fn(ctx: HostContext_TO<'a, RRef<'a, ()>>) -> RResult<(), PluginError>;

/// Runs `entry` in `ctx`, as plugin `name`, with the version's `abort` token; the plugin's
/// log records go to `sink`.
#[inline]
pub(crate) fn invoke(
    entry: Entry,
    ctx: &Context,
    name: &str,
    abort: &AbortToken,
    sink: LogSink,
) -> Result<(), PluginError> {
    let call = CallContext::new(ctx, name, abort, sink);
    match entry(HostContext_TO::from_ptr(RRef::new(&call), TD_Opaque)) {
        RResult::ROk(()) => Ok(()),
        RResult::RErr(err) => Err(err),
    }
}

/// The root module of a mapped plugin library, with where its hooks' log records go. Cheap
/// to copy: the library is never closed, so the module lives as long as the process.
#[derive(Clone, Copy)]
pub(crate) struct Module {
    root: PluginModRef,
    sink: LogSink,
}

impl Module {
    /// abi_stable's header, version and layout checks on the mapped library `raw`, loaded
    /// from `library` for plugin `name`; its hooks log to `sink`.
    ///
    /// # Errors
    ///
    /// [`Error::NotAPlugin`] if the library has no valid abi_stable header or root module;
    /// [`Error::AbiMismatch`] if its layout or version differs from this host's.
    pub(crate) fn open(
        name: &str,
        library: &Path,
        raw: &'static RawLibrary,
        sink: LogSink,
    ) -> Result<Module, Error> {
        // SAFETY: the header borrows from the library, which is never closed (`raw` is
        // `'static`), so its `'static` references stay valid.
        let header = unsafe { lib_header_from_raw_library(raw) };
        header
            .map_err(|e| classify(name, library, e))?
            .init_root_module::<PluginModRef>()
            .map(|root| Module { root, sink })
            .map_err(|e| classify(name, library, e))
    }

    /// Checks the identity the library's code reports (`info()`) against the plugin's
    /// `name` and `version`, with the check the file's identity record passed before it was
    /// mapped; returns the SDK version it reports.
    ///
    /// # Errors
    ///
    /// [`Error::AbiMismatch`] for another ABI version, [`Error::IdentityMismatch`] naming
    /// the first field that differs.
    pub(crate) fn check_identity(
        &self,
        name: &str,
        version: &semver::Version,
        library: &Path,
    ) -> Result<String, Error> {
        let info = (self.root.info())();
        let reported = Identity {
            abi_version: info.abi_version,
            name: info.name.as_str(),
            version: info.version.as_str(),
            sdk_version: info.sdk_version.as_str(),
        };
        crate::library::check_identity(name, version, library, &reported)?;
        Ok(reported.sdk_version.to_owned())
    }

    /// The `execute` entry, which the call path caches.
    #[inline]
    pub(crate) fn execute(&self) -> Entry {
        self.root.execute()
    }

    /// Whether the plugin has an `on_load` hook.
    pub(crate) fn has_on_load(&self) -> bool {
        self.root.on_load().is_some()
    }

    /// Whether the plugin has an `on_unload` hook, in either form.
    pub(crate) fn has_on_unload(&self) -> bool {
        self.root.on_unload().is_some()
            || matches!(self.root.on_unload_with_context(), Some(Some(_)))
    }

    /// Runs `on_load`, if the plugin has it, in a background context.
    ///
    /// # Errors
    ///
    /// [`Error::OnLoad`] with what the hook returned.
    pub(crate) fn on_load(&self, name: &str, abort: &AbortToken) -> Result<(), Error> {
        let Some(on_load) = self.root.on_load() else {
            return Ok(());
        };
        invoke(on_load, &Context::background(), name, abort, self.sink).map_err(|err| {
            Error::OnLoad {
                plugin: name.to_owned(),
                kind: err.kind,
                message: err.message.into_string(),
            }
        })
    }

    /// Runs `on_unload`, if the plugin has it: the form with a context if the library
    /// exports it (in an appended field), else the plain form of older libraries.
    ///
    /// # Errors
    ///
    /// [`Error::OnUnload`] with what the hook returned.
    pub(crate) fn on_unload(&self, name: &str) -> Result<(), Error> {
        let result = if let Some(Some(on_unload)) = self.root.on_unload_with_context() {
            invoke(
                on_unload,
                &Context::background(),
                name,
                &AbortToken::new(),
                self.sink,
            )
        } else if let Some(on_unload) = self.root.on_unload() {
            match on_unload() {
                RResult::ROk(()) => Ok(()),
                RResult::RErr(err) => Err(err),
            }
        } else {
            return Ok(());
        };
        result.map_err(|err| Error::OnUnload {
            plugin: name.to_owned(),
            kind: err.kind,
            message: err.message.into_string(),
        })
    }
}

pub(crate) fn classify(name: &str, library: &Path, err: LibraryError) -> Error {
    let plugin = name.to_owned();
    let path = library.to_path_buf();
    match err {
        LibraryError::OpenError { .. }
        | LibraryError::GetSymbolError { .. }
        | LibraryError::InvalidAbiHeader(_)
        | LibraryError::InvalidCAbi { .. } => Error::NotAPlugin {
            plugin,
            path,
            reason: one_line(&err.to_string()),
        },
        LibraryError::ParseVersionError(_)
        | LibraryError::IncompatibleVersionNumber { .. }
        | LibraryError::AbiInstability(_) => Error::AbiMismatch {
            plugin,
            path,
            reason: one_line(&err.to_string()),
        },
        other => Error::NotAPlugin {
            plugin,
            path,
            reason: one_line(&other.to_string()),
        },
    }
}

/// abi_stable's layout errors span many lines; keep the first few for a readable message.
pub(crate) fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(6)
        .collect();
    let mut s = lines.join(" | ");
    if s.len() > 600 {
        let mut end = 600;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" ...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn one_line_keeps_the_first_lines_and_cuts_at_a_character_boundary() {
        assert_eq!(
            one_line("  first\n\n   second  \nthird"),
            "first | second | third"
        );
        let many: String = (0..10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            one_line(&many),
            "line 0 | line 1 | line 2 | line 3 | line 4 | line 5"
        );
        // 300 two-byte characters: 600 bytes fit, as they are.
        let fits = "é".repeat(300);
        assert_eq!(one_line(&fits), fits);
        // One more byte than fits, where byte 600 falls inside a character: cut before it.
        let long = format!("x{}", "é".repeat(300));
        let cut = one_line(&long);
        assert!(cut.ends_with(" ..."), "{cut}");
        let kept = cut.trim_end_matches(" ...");
        assert_eq!(kept.len(), 599);
        assert!(long.starts_with(kept));
    }
}
