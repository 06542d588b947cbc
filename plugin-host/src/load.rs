//! Loading one plugin folder: every check in order, the private copy, and the
//! `abi_stable` load.
//!
//! 0. The plugin folder resolves inside the base directory (unless the host allows folders
//!    elsewhere), and neither it nor the base directory is writable by group or others.
//! 1. `plugin.json` parses and validates; `requires.host` matches; `source` names a local
//!    library.
//! 2. The library file ([`crate::library`]): its path stays inside the folder; the opened
//!    file is a regular file not writable by group or others, owned by the host's user or
//!    root (these permission checks can be turned off for development), of at most 512 MiB; it is
//!    read once into memory, and those bytes match `sha256` if the manifest gives one.
//! 3. The same bytes, not mapped: a shared library for this OS and this machine's
//!    architecture that exports the root-module symbol; the identity record `export_plugin!`
//!    writes into its own link section equals the manifest's name and version, with the ABI
//!    version of this host and an SDK version compatible with it.
//! 4. Those bytes are written to a private copy (on Linux a sealed memory file; see
//!    [`copy`]) and loaded from there: `dlopen` maps the library and runs its constructors;
//!    then abi_stable's header, version and layout checks run (the only checks that need the
//!    library mapped).
//! 5. The identity the library's `info()` reports is checked against the manifest again.
//!
//! No code of the plugin runs before every check of steps 0 to 3 passed: they only read
//! files. A library refused at step 4 or 5 has been mapped, and its constructors have run;
//! it stays mapped (libraries are never closed) and is counted as such.

mod copy;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::time::SystemTime;

#[cfg(all(target_os = "linux", feature = "isolation"))]
use crate::backend::Worker;
use crate::backend::{Backend, InProcess};
use crate::check::{check, CheckConfig, Checked};
#[cfg(all(target_os = "linux", feature = "isolation"))]
use crate::isolate::{ProcessOptions, Supervisor, SupervisorHooks};
use crate::manifest::Manifest;
use crate::module::Module;
use crate::Error;
pub(crate) use copy::{Copies, PrivateCopy};

/// Settings the loader needs from the manager.
pub(crate) struct LoadConfig<'a> {
    pub(crate) check: CheckConfig<'a>,
    pub(crate) copies: Copies<'a>,
    /// Counts every library mapped, whether its load then succeeds or not.
    pub(crate) mapped: &'a AtomicUsize,
}

/// A library that passed every check and whose root module is ready to call.
pub(crate) struct Loaded {
    pub(crate) manifest: Manifest,
    /// Where its code runs.
    pub(crate) code: Box<dyn Backend>,
    pub(crate) dir: PathBuf,
    pub(crate) library: PathBuf,
    pub(crate) copy: PrivateCopy,
    pub(crate) sdk_version: String,
    pub(crate) loaded_at: SystemTime,
}

impl Loaded {
    /// The library's path relative to its plugin folder.
    pub(crate) fn library_in_folder(&self) -> PathBuf {
        self.library
            .strip_prefix(&self.dir)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| self.library.file_name().unwrap_or_default().into())
    }
}

/// Runs checks 0 to 5 on the plugin folder `dir` named `name`, and maps the library.
pub(crate) fn load(name: &str, dir: &Path, config: &LoadConfig<'_>) -> Result<Loaded, Error> {
    let Checked {
        manifest,
        library,
        bytes,
        ..
    } = check(name, dir, &config.check)?;

    // 4. A private copy of those bytes (the bytes checked are the bytes mapped), then
    // abi_stable's checks, which map it: from here on the library's constructors have run.
    // A failure from here on drops `copy`, which deletes a file copy.
    let mapped = copy::map_private_copy(
        name,
        &manifest.version,
        &library,
        &bytes,
        config.copies,
        config.mapped,
    )?;
    drop(bytes);
    let copy = mapped.copy;
    let module = Module::open(name, &library, mapped.library, crate::context::emit_log)?;

    // 5. The identity the code reports, checked again: it is the record's unless the record
    // was not written by `export_plugin!`, and checking it costs one call.
    let sdk_version = module.check_identity(name, &manifest.version, &library)?;

    Ok(Loaded {
        manifest,
        code: Box::new(InProcess(module)),
        dir: dir.to_path_buf(),
        library,
        copy,
        sdk_version,
        loaded_at: SystemTime::now(),
    })
}

/// Runs checks 0 to 3 on the plugin folder `dir` named `name`, then starts a worker process
/// that maps the checked bytes (from a sealed memory file) and runs checks 4 and 5 and
/// `on_load` itself. Nothing of the plugin is mapped into this process.
#[cfg(all(target_os = "linux", feature = "isolation"))]
pub(crate) fn load_isolated(
    name: &str,
    dir: &Path,
    config: &CheckConfig<'_>,
    options: ProcessOptions,
    hooks: SupervisorHooks,
) -> Result<Loaded, Error> {
    let Checked {
        manifest,
        library,
        bytes,
        sdk_version,
    } = check(name, dir, config)?;
    let fd = copy::sealed(name, &manifest.version, &bytes)?;
    drop(bytes);
    let supervisor = Supervisor::start(name, &manifest.version, fd, options, hooks)?;
    let shown = PathBuf::from(format!(
        "memfd:plugin:{name}-{} (in its worker)",
        manifest.version
    ));
    Ok(Loaded {
        manifest,
        code: Box::new(Worker(supervisor)),
        dir: dir.to_path_buf(),
        library,
        copy: PrivateCopy::Memory { shown },
        sdk_version,
        loaded_at: SystemTime::now(),
    })
}
