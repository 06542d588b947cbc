//! The worker backend: the library runs in a supervised worker process.

use std::sync::Arc;

use super::Backend;
use crate::cancel::AbortToken;
use crate::isolate::{Isolation, Supervisor, WorkerStatus};
use crate::module::Entry;
use crate::{Context, Error};

/// A plugin that runs in a worker process, through its supervisor.
pub(crate) struct Worker(pub(crate) Arc<Supervisor>);

impl Backend for Worker {
    fn isolation(&self) -> Isolation {
        Isolation::Process
    }

    fn entry(&self) -> Option<Entry> {
        None
    }

    fn call(&self, _name: &str, ctx: &Context, abort: &AbortToken) -> Result<(), Error> {
        self.0.call(ctx, abort)
    }

    fn on_load(&self, _name: &str, _abort: &AbortToken) -> Result<(), Error> {
        // The worker ran `on_load` itself before it reported ready.
        Ok(())
    }

    fn on_unload(&self, _name: &str) -> Result<(), Error> {
        self.0.stop()
    }

    fn hooks(&self) -> (bool, bool) {
        self.0.hooks_present()
    }

    fn worker(&self) -> Option<WorkerStatus> {
        Some(self.0.status())
    }

    fn kill(&self) -> bool {
        self.0.kill();
        true
    }

    fn is_quarantined(&self) -> bool {
        self.0.is_quarantined()
    }
}
