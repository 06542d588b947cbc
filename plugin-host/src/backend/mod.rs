//! Where a loaded plugin's code runs: one type per backend behind [`Backend`], the one
//! interface the manager calls (calls, hooks, status, stop).
//!
//! - [`InProcess`] (`in_process.rs`): the library is mapped into this process; calls go
//!   straight to its `execute` entry, which the call path caches ([`Backend::entry`]).
//! - `Worker` (`worker.rs`, Linux): the library runs in a supervised worker process; calls
//!   cross the shared-memory channel ([`Backend::call`]).
//!
//! A new backend (a sandboxed worker, a remote one) is a new file implementing [`Backend`];
//! nothing outside this module matches on which backend a plugin has.

mod in_process;
#[cfg(all(target_os = "linux", feature = "isolation"))]
mod worker;

pub(crate) use in_process::InProcess;
#[cfg(all(target_os = "linux", feature = "isolation"))]
pub(crate) use worker::Worker;

use crate::cancel::AbortToken;
use crate::isolate::{Isolation, WorkerStatus};
use crate::module::Entry;
use crate::{Context, Error};

/// What the manager asks of a loaded plugin's code, wherever it runs.
pub(crate) trait Backend: Send + Sync {
    /// Where the code runs.
    fn isolation(&self) -> Isolation;

    /// The `execute` entry, if calls may go straight to it in this process: the call path
    /// caches it and calls it with no dynamic dispatch. `None`: every call goes through
    /// [`call`](Backend::call).
    fn entry(&self) -> Option<Entry>;

    /// Runs one call of plugin `name` in `ctx` (for a backend without an [`entry`]).
    ///
    /// [`entry`]: Backend::entry
    fn call(&self, name: &str, ctx: &Context, abort: &AbortToken) -> Result<(), Error>;

    /// Runs `on_load` before the version is published (a no-op where the backend ran it
    /// while starting).
    fn on_load(&self, name: &str, abort: &AbortToken) -> Result<(), Error>;

    /// Runs `on_unload` once the version's calls drained, and releases what the backend
    /// holds (a worker exits).
    fn on_unload(&self, name: &str) -> Result<(), Error>;

    /// Whether the plugin has an `on_load` and an `on_unload` hook.
    fn hooks(&self) -> (bool, bool);

    /// The worker's status, for a backend that runs one.
    fn worker(&self) -> Option<WorkerStatus>;

    /// Ends calls that ignore cancellation by force, if the backend can (a worker is
    /// killed, and its calls with it); false if it cannot (code in this process cannot be
    /// stopped).
    fn kill(&self) -> bool;

    /// Whether the backend refuses to run the plugin again after too many crashes.
    fn is_quarantined(&self) -> bool;
}
