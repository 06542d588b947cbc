//! The one error type of `plugin-host`.

use std::path::PathBuf;

use plugin_abi::{ErrorKind, PluginError};

use crate::manifest::ManifestError;
use crate::PluginState;

/// Everything that can go wrong while discovering, loading, calling or unloading plugins.
///
/// Every message names the plugin (its folder name), the file concerned, the field or check
/// that failed, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base directory could not be read.
    #[error(
        "cannot read the plugin base directory {}; create it or point the host at another one",
        path.display()
    )]
    BaseDir {
        /// The base directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// `plugin.json` is missing, malformed or fails validation.
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    /// `requires.host` in `plugin.json` does not accept this host's version.
    #[error(
        "plugin `{plugin}`: {}: field `requires.host` is `{required}`, which this host (version {host}) does not satisfy; install a version of the plugin made for host {host}, or run a host that matches `{required}`",
        manifest.display()
    )]
    HostVersion {
        /// The plugin folder name.
        plugin: String,
        /// The manifest file.
        manifest: PathBuf,
        /// The requirement from `requires.host`.
        required: semver::VersionReq,
        /// This host's version.
        host: semver::Version,
    },

    /// `source.mode` is a mode this host cannot load directly.
    #[error(
        "plugin `{plugin}`: {}: field `source.mode` is `{mode}`, which names source code, not a library; build it into a plugin folder with `plugctl build {}`, or set `source.mode` to `local_so` with `source.path` naming the library",
        manifest.display(),
        manifest.parent().unwrap_or(manifest).display()
    )]
    UnsupportedSource {
        /// The plugin folder name.
        plugin: String,
        /// The manifest file.
        manifest: PathBuf,
        /// The mode found.
        mode: String,
    },

    /// No file exists at any of the paths `source.path` may resolve to.
    #[error(
        "plugin `{plugin}`: library not found: field `source.path` in {} resolves to none of [{}]; build the plugin (`cargo build --release`) and copy its library into {}, or fix `source.path`",
        manifest.display(),
        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        dir.display()
    )]
    LibraryMissing {
        /// The plugin folder name.
        plugin: String,
        /// The manifest file.
        manifest: PathBuf,
        /// The plugin folder.
        dir: PathBuf,
        /// Every path that was tried.
        candidates: Vec<PathBuf>,
    },

    /// The library path leaves the plugin folder once symlinks are resolved.
    #[error(
        "plugin `{plugin}`: library {} resolves to {}, outside the plugin folder {}; copy the library into the folder instead of linking to it",
        path.display(), resolved.display(), dir.display()
    )]
    LibraryOutsideFolder {
        /// The plugin folder name.
        plugin: String,
        /// The library path as named by the manifest.
        path: PathBuf,
        /// Where it resolves to.
        resolved: PathBuf,
        /// The plugin folder.
        dir: PathBuf,
    },

    /// The library path is not a regular file.
    #[error(
        "plugin `{plugin}`: library {} is not a regular file; `source.path` must name the plugin's shared library",
        path.display()
    )]
    LibraryNotFile {
        /// The plugin folder name.
        plugin: String,
        /// The library path.
        path: PathBuf,
    },

    /// The library's SHA-256 does not equal the manifest's `sha256`.
    #[error(
        "plugin `{plugin}`: checksum mismatch: field `sha256` of plugin.json is {expected} but library {} hashes to {actual}; the library was changed or replaced: rebuild it and update `sha256`",
        path.display()
    )]
    ChecksumMismatch {
        /// The plugin folder name.
        plugin: String,
        /// The library path (next to the manifest).
        path: PathBuf,
        /// The digest from the manifest.
        expected: String,
        /// The digest of the file.
        actual: String,
    },

    /// A file operation on a plugin's files failed.
    #[error("plugin `{plugin}`: cannot {action} {}", path.display())]
    Io {
        /// The plugin folder name.
        plugin: String,
        /// What was being done, e.g. "copy the library to".
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The file is not a shared library, or does not export a plugin root module.
    #[error(
        "plugin `{plugin}`: {} is not a plugin library ({reason}); build it as a `cdylib` crate that calls `plugin_sdk::export_plugin!`",
        path.display()
    )]
    NotAPlugin {
        /// The plugin folder name.
        plugin: String,
        /// The library path (in the plugin folder).
        path: PathBuf,
        /// What the loader reported.
        reason: String,
    },

    /// The library was built against an incompatible version or layout of the plugin ABI.
    #[error(
        "plugin `{plugin}`: {} was built against an incompatible plugin ABI ({reason}); rebuild the plugin against plugin-sdk {}",
        path.display(), crate::ABI_CRATE_VERSION
    )]
    AbiMismatch {
        /// The plugin folder name.
        plugin: String,
        /// The library path (in the plugin folder).
        path: PathBuf,
        /// What the check reported.
        reason: String,
    },

    /// The identity baked into the library differs from the manifest.
    #[error(
        "plugin `{plugin}`: identity mismatch: field `{field}` of plugin.json is `{expected}` but library {} was built as `{found}`; rebuild the library from the plugin's own crate, or fix `{field}` in plugin.json",
        path.display()
    )]
    IdentityMismatch {
        /// The plugin folder name.
        plugin: String,
        /// The library path (next to the manifest).
        path: PathBuf,
        /// `name`, `version` or `sdk_version`.
        field: &'static str,
        /// The manifest's value (or what the host accepts).
        expected: String,
        /// The library's value.
        found: String,
    },

    /// The plugin's `on_load` hook returned an error or panicked.
    #[error(
        "plugin `{plugin}`: on_load failed ({kind}): {message}; the plugin was not loaded, fix its initialisation and reload it"
    )]
    OnLoad {
        /// The plugin name.
        plugin: String,
        /// The kind of error the hook returned.
        kind: ErrorKind,
        /// The hook's message.
        message: String,
    },

    /// The plugin's `on_unload` hook returned an error or panicked. The plugin is unloaded
    /// all the same.
    #[error("plugin `{plugin}`: on_unload failed ({kind}): {message}; the plugin was unloaded anyway, fix its clean-up code")]
    OnUnload {
        /// The plugin name.
        plugin: String,
        /// The kind of error the hook returned.
        kind: ErrorKind,
        /// The hook's message.
        message: String,
    },

    /// A plugin call returned an error (including a caught panic).
    #[error("plugin `{plugin}` failed ({kind}): {message}")]
    Call {
        /// The plugin name.
        plugin: String,
        /// The kind of error.
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
    },

    /// No plugin of that name is loaded.
    #[error(
        "no plugin named `{plugin}` is loaded from {}; check the name with `plugctl list`, or load it first",
        base_dir.display()
    )]
    NotFound {
        /// The name asked for.
        plugin: String,
        /// The manager's base directory.
        base_dir: PathBuf,
    },

    /// No plugin folder of that name exists under the base directory.
    #[error(
        "no plugin folder `{plugin}` in {}; create {}/{plugin}/plugin.json or check the name",
        base_dir.display(), base_dir.display()
    )]
    NoSuchFolder {
        /// The name asked for.
        plugin: String,
        /// The manager's base directory.
        base_dir: PathBuf,
    },

    /// The plugin is known but serves no calls (discovered, disabled or failed).
    #[error(
        "plugin `{plugin}` is {state}{}; {}",
        reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default(),
        match state {
            PluginState::Disabled => "enable it with `plugctl enable NAME` or `PluginManager::enable`",
            PluginState::Failed(_) => "fix the cause above and reload it",
            _ => "load it first",
        }
    )]
    NotActive {
        /// The plugin name.
        plugin: String,
        /// Its state: discovered, disabled, failed, unloading or unloaded.
        state: PluginState,
        /// Why it failed, for a failed plugin.
        reason: Option<String>,
    },

    /// The plugin is disabled in the base directory's state file, so it is not loaded.
    #[error("plugin `{plugin}` is disabled; enable it with `plugctl enable {plugin}` to load it")]
    Disabled {
        /// The plugin name.
        plugin: String,
    },

    /// An upgrade would replace the running version with a lower one.
    #[error(
        "plugin `{plugin}`: refusing to downgrade from {from} to {to}; the running version keeps serving. Pass `UpgradeOptions::new().allow_downgrade(true)` to downgrade on purpose"
    )]
    Downgrade {
        /// The plugin name.
        plugin: String,
        /// The running version.
        from: semver::Version,
        /// The version offered.
        to: semver::Version,
    },

    /// The enable/disable state file could not be read or written.
    #[error(
        "cannot {action} the plugin state file {}, which says which plugins are disabled, so no plugin loads until it can be read; check the base directory's permissions and fix the file, or delete it to enable every plugin",
        path.display()
    )]
    StateFile {
        /// "read", "write", or "lock" (then `path` is the lock file beside the state file).
        action: &'static str,
        /// The state file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The directory watch could not start.
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),

    /// The plugin is already loaded.
    #[error("plugin `{plugin}` is already loaded; unload it first, or reload it to pick up a new version")]
    AlreadyLoaded {
        /// The plugin name.
        plugin: String,
    },

    /// A process-isolated plugin's worker ended (a crash, an exit, or killed) while a call
    /// ran on it. The worker restarts unless the plugin is quarantined.
    #[error(
        "plugin `{plugin}`: its worker process {exit} during the call; the worker restarts, unless it ends too often, which quarantines the plugin"
    )]
    WorkerCrashed {
        /// The plugin name.
        plugin: String,
        /// How the worker ended.
        exit: crate::isolate::WorkerExit,
    },

    /// A process-isolated plugin's worker could not be started, or did not report ready.
    #[error("plugin `{plugin}`: cannot start its worker process: {reason}")]
    WorkerStart {
        /// The plugin name.
        plugin: String,
        /// What failed, and how to fix it.
        reason: String,
    },

    /// Process isolation was asked for, but this build of the host has none: plugin-host
    /// was built without its `isolation` feature, or for a system other than Linux.
    #[error(
        "plugin `{plugin}`: process isolation is not available in this build of the host \
         (plugin-host was built without its `isolation` feature, or not for Linux); load \
         the plugin in process, or build the host for Linux with the feature on"
    )]
    IsolationUnavailable {
        /// The plugin name.
        plugin: String,
    },

    /// A process-isolated plugin crashed too often and is quarantined: it serves no calls
    /// until it is reloaded or enabled again.
    #[error(
        "plugin `{plugin}` is quarantined: {reason}; fix it and reload it (`plugctl reload {plugin}`)"
    )]
    Quarantined {
        /// The plugin name.
        plugin: String,
        /// Its crashes.
        reason: String,
    },

    /// A call to a process-isolated plugin carries more context than its channel holds.
    #[error(
        "plugin `{plugin}`: the call's context is {size} bytes, over the {limit} bytes an isolated call may carry; store less in the context, or raise `ProcessOptions::max_message`"
    )]
    MessageTooLarge {
        /// The plugin name.
        plugin: String,
        /// The encoded context's size.
        size: usize,
        /// The channel's limit.
        limit: usize,
    },

    /// The plugin was unloaded; handles to it no longer accept calls.
    #[error("plugin `{plugin}` has been unloaded; get a new handle after loading it again")]
    Unloaded {
        /// The plugin name.
        plugin: String,
    },

    /// A context value could not be converted to or from the requested type.
    #[error("context value `{key}` has another type; store it with the type you read it as")]
    Value {
        /// The key.
        key: String,
        /// The conversion error.
        source: plugin_abi::serde::ValueError,
    },

    /// Bytes given as a context value's encoding are not one well-formed value.
    #[error(
        "context value `{key}` is not one well-formed encoded value; encode it with `plugin_abi::codec`"
    )]
    MalformedValue {
        /// The key.
        key: String,
        /// Where the bytes go wrong.
        source: plugin_abi::codec::Malformed,
    },

    /// A file or folder the plugin's code or manifest comes from can be written by group or
    /// others: whoever can write it can swap what the host checked for something else.
    #[error(
        "plugin `{plugin}`: the {what} {} is writable by group or others (mode {mode:o}), so anyone could replace the plugin's files; run `chmod go-w {}`{}",
        path.display(), path.display(), override_hint(what)
    )]
    Writable {
        /// The plugin folder name.
        plugin: String,
        /// What the path is: "base directory", "parent folder" (a folder above the base
        /// directory or the plugin folder), "plugin folder", "manifest", "folder of the
        /// manifest" (where a symlinked manifest lies) or "library".
        what: &'static str,
        /// The file or folder, symlinks resolved.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A file or folder the plugin's code or manifest comes from belongs to a user other than
    /// the host's user or root.
    #[error(
        "plugin `{plugin}`: the {what} {} belongs to user {owner}, not to the host's user ({host}) or root, so that user could change what this host runs; run `chown {host} {}` (for development only, the manager's `insecure_permissions(true)` or `plugctl --insecure-permissions` skips this check)",
        path.display(), path.display()
    )]
    NotOwned {
        /// The plugin folder name.
        plugin: String,
        /// What the path is, as for [`Error::Writable`].
        what: &'static str,
        /// The file or folder, symlinks resolved.
        path: PathBuf,
        /// The uid owning it.
        owner: u32,
        /// The uid the host runs as.
        host: u32,
    },

    /// A typed call returned without an output.
    #[error(
        "plugin `{plugin}` returned from a typed call without setting the context value `{key}`; export its function with `export_plugin! {{ call: f }}`, or have it set `{key}`"
    )]
    NoOutput {
        /// The plugin.
        plugin: String,
        /// The key the output was expected under.
        key: &'static str,
    },

    /// The plugin folder is a symbolic link (or under one) leading outside the base
    /// directory.
    #[error(
        "plugin `{plugin}`: the plugin folder {} resolves to {}, outside the base directory {}; move the plugin into the base directory, or let the manager follow such links with `allow_folders_outside_base(true)`",
        dir.display(), resolved.display(), base_dir.display()
    )]
    FolderOutsideBase {
        /// The plugin folder name.
        plugin: String,
        /// The folder under the base directory.
        dir: PathBuf,
        /// Where it resolves to.
        resolved: PathBuf,
        /// The base directory, resolved.
        base_dir: PathBuf,
    },

    /// The dynamic loader may not map code from the private copy: the file system holding
    /// the copy directory refuses executable mappings (mounted `noexec`, or a security
    /// policy).
    #[error(
        "plugin `{plugin}`: cannot map the private copy of {} made in {} ({reason}): that directory's file system does not allow executable mappings (mounted `noexec`?); give the host a copy directory on one that does (`PluginManagerBuilder::copy_dir`)",
        library.display(), dir.display()
    )]
    CopyNotExecutable {
        /// The plugin folder name.
        plugin: String,
        /// The library path (in the plugin folder).
        library: PathBuf,
        /// The directory the copy was made in.
        dir: PathBuf,
        /// What the loader reported.
        reason: String,
    },
}

impl Error {
    /// The whole error: its message, then the message of each of its sources, joined by
    /// `: `. `Display` prints the message alone, so that error reporters (`anyhow`,
    /// `eyre`, ...) that walk the source chain do not print a source twice; use this where
    /// one line must say everything, as `plugctl` and the manager's `Failed` events do.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    /// The plugin this error concerns, where there is one.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Error::BaseDir { .. }
            | Error::Value { .. }
            | Error::MalformedValue { .. }
            | Error::StateFile { .. }
            | Error::Watch(_) => None,
            Error::Manifest(e) => e.plugin(),
            Error::HostVersion { plugin, .. }
            | Error::UnsupportedSource { plugin, .. }
            | Error::LibraryMissing { plugin, .. }
            | Error::LibraryOutsideFolder { plugin, .. }
            | Error::LibraryNotFile { plugin, .. }
            | Error::ChecksumMismatch { plugin, .. }
            | Error::Io { plugin, .. }
            | Error::NotAPlugin { plugin, .. }
            | Error::AbiMismatch { plugin, .. }
            | Error::IdentityMismatch { plugin, .. }
            | Error::OnLoad { plugin, .. }
            | Error::OnUnload { plugin, .. }
            | Error::Call { plugin, .. }
            | Error::NotFound { plugin, .. }
            | Error::NoSuchFolder { plugin, .. }
            | Error::AlreadyLoaded { plugin }
            | Error::NotActive { plugin, .. }
            | Error::Disabled { plugin }
            | Error::Downgrade { plugin, .. }
            | Error::Writable { plugin, .. }
            | Error::NotOwned { plugin, .. }
            | Error::FolderOutsideBase { plugin, .. }
            | Error::NoOutput { plugin, .. }
            | Error::Unloaded { plugin }
            | Error::WorkerCrashed { plugin, .. }
            | Error::WorkerStart { plugin, .. }
            | Error::IsolationUnavailable { plugin }
            | Error::Quarantined { plugin, .. }
            | Error::MessageTooLarge { plugin, .. }
            | Error::CopyNotExecutable { plugin, .. } => Some(plugin),
        }
    }

    /// For errors returned by plugin code ([`Error::Call`], [`Error::OnLoad`]): the kind of
    /// error the plugin reported.
    pub fn plugin_error_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Call { kind, .. }
            | Error::OnLoad { kind, .. }
            | Error::OnUnload { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// A function turning an I/O error into [`Error::Io`] for `plugin`, `action` and `path`,
    /// for use with `map_err`.
    pub(crate) fn io(
        plugin: &str,
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let plugin = plugin.to_owned();
        let path = path.to_path_buf();
        move |source| Error::Io {
            plugin,
            action,
            path,
            source,
        }
    }

    /// A plugin call's error; off the call path's hot side.
    #[cold]
    pub(crate) fn call(plugin: &str, err: PluginError) -> Self {
        Error::Call {
            plugin: plugin.to_owned(),
            kind: err.kind,
            message: err.message.into_string(),
        }
    }
}

/// How to skip a mode check, for the ones development may skip: those of folders. A manifest
/// or library that others can write is never needed, so those checks always apply.
fn override_hint(what: &str) -> &'static str {
    if matches!(what, "manifest" | "library") {
        ""
    } else {
        " (for development only, the manager's `insecure_permissions(true)` or `plugctl --insecure-permissions` skips this check)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_leaves_its_source_to_the_chain_and_report_prints_both() {
        let err = Error::Io {
            plugin: "hello".into(),
            action: "read the library",
            path: PathBuf::from("/plugins/hello/libhello.so"),
            source: std::io::Error::other("disk on fire"),
        };
        let shown = err.to_string();
        assert_eq!(
            shown,
            "plugin `hello`: cannot read the library /plugins/hello/libhello.so"
        );
        assert_eq!(
            std::error::Error::source(&err).map(ToString::to_string),
            Some("disk on fire".to_owned())
        );
        assert_eq!(err.report(), format!("{shown}: disk on fire"));
    }
}
