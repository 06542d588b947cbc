//! One plugin call on behalf of a request: on a pool of threads of its own, bounded in time,
//! capped in number per plugin and in all, and counted when it ignores cancellation.
//!
//! A call is admitted first ([`admit`]), before its request's body is read: the plugin must
//! be active and below its cap of calls in flight (`max_in_flight`), and one of the pool's
//! threads (`call_threads`) must be free. Otherwise the request is answered 503 with
//! `Retry-After` at once: a call never queues behind others.
//!
//! The call then runs on that pool with a context whose deadline is the request timeout. A
//! plugin that honours cancellation returns by then. One that does not is waited for `grace`
//! longer; then the request is answered 504 and the call is counted as stuck until it
//! returns, still holding its thread and its place under the plugin's cap. So a plugin that
//! never returns fills its own cap and no more: with `P` such plugins, the others keep
//! `call_threads - P * max_in_flight` threads. The pool is the server's own threads
//! ([`crate::pool`]), not tokio's blocking pool, which the management API uses: hung plugins
//! never delay the API, `/metrics` or the page. A call is handed to an idle thread of the
//! pool and its result comes back through a oneshot channel; the request's task never blocks
//! on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use parking_lot::Mutex;
use plugin_host::{CancelHandle, Context, PluginHandle};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::pool::{SpawnError, Threads};
use crate::state::AppState;

/// Per-plugin caps on calls in flight.
#[derive(Default)]
pub(crate) struct InFlight {
    caps: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl InFlight {
    fn semaphore(&self, plugin: &str, max: usize) -> Arc<Semaphore> {
        let mut caps = self.caps.lock();
        // Look up before inserting: the name is copied once per plugin, not once per call.
        if let Some(semaphore) = caps.get(plugin) {
            return semaphore.clone();
        }
        caps.entry(plugin.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(max)))
            .clone()
    }
}

/// The threads plugin calls run on ([`crate::pool`]): threads of the server's own, at most
/// `size`, each taken with a permit at admission so that no call queues.
pub(crate) struct CallPool {
    pool: Threads,
    threads: Arc<Semaphore>,
    size: usize,
}

impl CallPool {
    pub(crate) fn new(size: usize) -> CallPool {
        CallPool {
            pool: Threads::new(),
            threads: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// Threads running a call now.
    pub(crate) fn busy(&self) -> usize {
        self.size - self.threads.available_permits()
    }
}

/// A call allowed to run: the plugin, its place under the plugin's cap, and a thread.
pub(crate) struct Admission {
    plugin: String,
    handle: PluginHandle,
    cap: OwnedSemaphorePermit,
    thread: OwnedSemaphorePermit,
}

/// Admits a call of `plugin`, or the error to answer at once: 404 or 503 for a plugin that is
/// not active, 503 with `Retry-After` when the plugin is at its cap or no thread is free.
pub(crate) fn admit(state: &AppState, plugin: &str) -> Result<Admission, ApiError> {
    let handle = state
        .manager
        .get(plugin)
        .map_err(|err| ApiError::from_host(&err))?;
    let semaphore = state
        .in_flight
        .semaphore(plugin, state.options.max_in_flight);
    let Ok(cap) = semaphore.try_acquire_owned() else {
        state.metrics.rejected(plugin);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "plugin `{plugin}` already has {} calls in flight, the most this server runs \
                 at once; retry later",
                state.options.max_in_flight
            ),
        )
        .retry_after(1));
    };
    let Ok(thread) = state.pool.threads.clone().try_acquire_owned() else {
        state.metrics.rejected(plugin);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "all {} threads this server runs plugin calls on are busy (calls that do not \
                 return hold them); retry later",
                state.pool.size
            ),
        )
        .retry_after(1));
    };
    Ok(Admission {
        plugin: plugin.to_owned(),
        handle,
        cap,
        thread,
    })
}

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

/// A context for a call made for a request: its deadline is the request timeout.
pub(crate) fn context(state: &AppState) -> Context {
    Context::with_timeout(state.options.request_timeout)
}

/// Runs an admitted call with `ctx` and returns the context after the call, or the error to
/// answer.
pub(crate) async fn run(
    state: &Arc<AppState>,
    admission: Admission,
    ctx: Context,
) -> Result<Context, ApiError> {
    let Admission {
        plugin,
        handle,
        cap,
        thread,
    } = admission;
    let plugin = plugin.as_str();
    state.metrics.call_started(plugin);
    let started = Instant::now();
    let mut pending = Pending {
        state,
        plugin,
        started,
        cancel: Some(ctx.cancel_handle()),
    };
    let phase = Arc::new(AtomicU8::new(RUNNING));
    let (answer, answered) = oneshot::channel();
    let call = {
        let phase = phase.clone();
        let shared = state.clone();
        let plugin = plugin.to_owned();
        move || {
            let result = handle.execute(&ctx);
            drop(cap);
            if phase
                .compare_exchange(RUNNING, FINISHED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // The request was answered 504 long ago; the call is no longer stuck.
                shared.metrics.stuck_returned(&plugin);
            }
            // The request may be gone (its client hung up): nobody to answer then.
            let _ = answer.send((ctx, result));
        }
    };
    // The thread's permit is given back by the pool once the call returned.
    if let Err(SpawnError(err)) = state.pool.pool.run(thread, call) {
        state.metrics.rejected(plugin);
        let error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("cannot start a thread for a call of plugin `{plugin}` ({err}); retry later"),
        )
        .retry_after(1);
        pending.finish(Some(&error.kind));
        return Err(error);
    }
    let limit = state.options.request_timeout + state.options.grace;
    match tokio::time::timeout(limit, answered).await {
        Ok(Ok((ctx, Ok(())))) => {
            pending.finish(None);
            Ok(ctx)
        }
        Ok(Ok((_, Err(err)))) => {
            let error = ApiError::from_host(&err);
            pending.finish(Some(&error.kind));
            Err(error)
        }
        Ok(Err(_dropped)) => {
            // The SDK catches panics inside the plugin; this is the host's own code failing.
            let error = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "host",
                format!("the call of plugin `{plugin}` failed in the host"),
            );
            pending.finish(Some(&error.kind));
            Err(error)
        }
        Err(_elapsed) => {
            if phase
                .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                state.metrics.call_stuck(plugin);
            }
            pending.finish(Some("deadline_exceeded"));
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "deadline_exceeded",
                format!(
                    "plugin `{plugin}` did not return within {:?} (the request timeout) plus \
                     {:?}; it ignores cancellation, and its call still runs",
                    state.options.request_timeout, state.options.grace
                ),
            ))
        }
    }
}

/// A call the request still waits for. If the request is dropped first (its client hung
/// up), the call's context is cancelled and the call is counted as ended, as `client_closed`.
struct Pending<'a> {
    state: &'a AppState,
    plugin: &'a str,
    started: Instant,
    /// `None` once the call's end was counted.
    cancel: Option<CancelHandle>,
}

impl Pending<'_> {
    /// Counts the call as ended, failed with `error` if given.
    fn finish(&mut self, error: Option<&str>) {
        if self.cancel.take().is_some() {
            self.state
                .metrics
                .call_finished(self.plugin, self.started.elapsed(), error);
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel.cancel();
            self.state.metrics.call_finished(
                self.plugin,
                self.started.elapsed(),
                Some("client_closed"),
            );
        }
    }
}
