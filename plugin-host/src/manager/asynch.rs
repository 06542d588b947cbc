//! Async forms of calls and lifecycle changes, for hosts on tokio (feature `tokio`).
//!
//! Plugin calls block their thread, so each of these runs on tokio's blocking pool
//! (`spawn_blocking`), never on the runtime's worker threads. Dropping the future of a call
//! cancels the call's context: a plugin that checks it stops, and the caller is not kept.

use std::sync::Arc;

use super::{Drain, PluginHandle, PluginManager, UpgradeOptions, Upgraded};
use crate::{CancelHandle, Context, Error};

/// Cancels a context when dropped, unless disarmed.
struct CancelOnDrop(Option<CancelHandle>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.cancel();
        }
    }
}

/// Runs `f` on tokio's blocking pool; a panic in `f` is resumed here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // The runtime is shutting down and cancelled the task.
            Err(err) => panic!("the blocking task of a plugin call was cancelled: {err}"),
        },
    }
}

impl PluginHandle {
    /// [`execute`](PluginHandle::execute), on tokio's blocking pool. Dropping the future
    /// before it completes cancels `ctx`.
    pub async fn execute_async(&self, ctx: &Context) -> Result<(), Error> {
        let mut guard = CancelOnDrop(Some(ctx.cancel_handle()));
        let (handle, ctx) = (self.clone(), ctx.clone());
        let result = blocking(move || handle.execute(&ctx)).await;
        guard.0 = None;
        result
    }

    /// [`call`](PluginHandle::call), on tokio's blocking pool. Dropping the future before it
    /// completes cancels `ctx`.
    pub async fn call_async<I, O>(&self, ctx: &Context, input: &I) -> Result<O, Error>
    where
        I: serde::Serialize + ?Sized,
        O: serde::de::DeserializeOwned + Send + 'static,
    {
        ctx.set(plugin_abi::INPUT_KEY, input)?;
        let mut guard = CancelOnDrop(Some(ctx.cancel_handle()));
        let (handle, call_ctx) = (self.clone(), ctx.clone());
        let result = blocking(move || {
            handle.execute(&call_ctx)?;
            handle.output(&call_ctx)
        })
        .await;
        guard.0 = None;
        result
    }
}

impl PluginManager {
    /// [`unload`](PluginManager::unload), on tokio's blocking pool, so its drain does not
    /// hold a runtime thread.
    pub async fn unload_async(self: &Arc<Self>, name: &str) -> Result<Drain, Error> {
        let (manager, name) = (self.clone(), name.to_owned());
        blocking(move || manager.unload(&name)).await
    }

    /// [`upgrade`](PluginManager::upgrade), on tokio's blocking pool.
    pub async fn upgrade_async(
        self: &Arc<Self>,
        name: &str,
        from_dir: impl Into<std::path::PathBuf>,
        options: UpgradeOptions,
    ) -> Result<Upgraded, Error> {
        let (manager, name, from_dir) = (self.clone(), name.to_owned(), from_dir.into());
        blocking(move || manager.upgrade(&name, from_dir, options)).await
    }

    /// [`reload`](PluginManager::reload), on tokio's blocking pool.
    pub async fn reload_async(self: &Arc<Self>, name: &str) -> Result<Upgraded, Error> {
        let (manager, name) = (self.clone(), name.to_owned());
        blocking(move || manager.reload(&name)).await
    }
}
