//! The in-process backend: the library is mapped into this process.

use super::Backend;
use crate::cancel::AbortToken;
use crate::context::emit_log;
use crate::isolate::{Isolation, WorkerStatus};
use crate::module::{invoke, Entry, Module};
use crate::{Context, Error};

/// A plugin whose library is mapped into this process.
pub(crate) struct InProcess(pub(crate) Module);

impl Backend for InProcess {
    fn isolation(&self) -> Isolation {
        Isolation::InProcess
    }

    fn entry(&self) -> Option<Entry> {
        Some(self.0.execute())
    }

    fn call(&self, name: &str, ctx: &Context, abort: &AbortToken) -> Result<(), Error> {
        invoke(self.0.execute(), ctx, name, abort, emit_log).map_err(|err| Error::call(name, err))
    }

    fn on_load(&self, name: &str, abort: &AbortToken) -> Result<(), Error> {
        self.0.on_load(name, abort)
    }

    fn on_unload(&self, name: &str) -> Result<(), Error> {
        self.0.on_unload(name)
    }

    fn hooks(&self) -> (bool, bool) {
        (self.0.has_on_load(), self.0.has_on_unload())
    }

    fn worker(&self) -> Option<WorkerStatus> {
        None
    }

    fn kill(&self) -> bool {
        false
    }

    fn is_quarantined(&self) -> bool {
        false
    }
}
