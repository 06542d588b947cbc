//! One plugin call on behalf of a request: off the async threads, bounded in time, capped in
//! number per plugin, and counted when it ignores cancellation.
//!
//! A call runs on tokio's blocking pool with a context whose deadline is the request
//! timeout. A plugin that honours cancellation returns by then. One that does not is waited
//! for `grace` longer; then the request is answered 504 and the call is counted as stuck
//! until it returns, still holding its place under the plugin's cap. So a plugin that never
//! returns fills its own cap, after which its requests get 503 with `Retry-After` at once,
//! and every other plugin keeps answering.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use parking_lot::Mutex;
use plugin_host::{CancelHandle, Context};
use tokio::sync::Semaphore;

use crate::error::ApiError;
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

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

/// A context for a call made for a request: its deadline is the request timeout.
pub(crate) fn context(state: &AppState) -> Context {
    Context::with_timeout(state.options.request_timeout)
}

/// Calls plugin `plugin` with `ctx` and returns the context after the call, or the error to
/// answer.
pub(crate) async fn call(
    state: &Arc<AppState>,
    plugin: &str,
    ctx: Context,
) -> Result<Context, ApiError> {
    let handle = state
        .manager
        .get(plugin)
        .map_err(|err| ApiError::from_host(&err))?;
    let semaphore = state
        .in_flight
        .semaphore(plugin, state.options.max_in_flight);
    let Ok(permit) = semaphore.try_acquire_owned() else {
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
    state.metrics.call_started(plugin);
    let started = Instant::now();
    let mut pending = Pending {
        state,
        plugin,
        started,
        cancel: Some(ctx.cancel_handle()),
    };
    let phase = Arc::new(AtomicU8::new(RUNNING));
    let task = {
        let phase = phase.clone();
        let state = state.clone();
        let plugin = plugin.to_owned();
        tokio::task::spawn_blocking(move || {
            let result = handle.execute(&ctx);
            drop(permit);
            if phase
                .compare_exchange(RUNNING, FINISHED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // The request was answered 504 long ago; the call is no longer stuck.
                state.metrics.stuck_returned(&plugin);
            }
            (ctx, result)
        })
    };
    let limit = state.options.request_timeout + state.options.grace;
    match tokio::time::timeout(limit, task).await {
        Ok(Ok((ctx, Ok(())))) => {
            pending.finish(None);
            Ok(ctx)
        }
        Ok(Ok((_, Err(err)))) => {
            let error = ApiError::from_host(&err);
            pending.finish(Some(&error.kind));
            Err(error)
        }
        Ok(Err(join)) => {
            // The SDK catches panics inside the plugin; this is the host's own code failing.
            let error = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "host",
                format!("the call of plugin `{plugin}` failed in the host: {join}"),
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
