//! What every handler shares: the manager, the options, the route table, the metrics, the
//! caps, the call pool and the memory budget; and the listener that keeps routes and metrics in step with the manager.

use std::sync::{Arc, Weak};

use plugin_host::{ListenerId, PluginManager};

use crate::budget::Budget;
use crate::call::{CallPool, InFlight};
use crate::metrics::Metrics;
use crate::routes::RouteTable;
use crate::HttpOptions;

/// The state behind a [`router`](crate::router).
pub(crate) struct AppState {
    pub(crate) manager: Arc<PluginManager>,
    pub(crate) options: HttpOptions,
    pub(crate) routes: RouteTable,
    pub(crate) metrics: Metrics,
    pub(crate) in_flight: InFlight,
    pub(crate) pool: CallPool,
    pub(crate) budget: Arc<Budget>,
    listener: parking_lot::Mutex<Option<ListenerId>>,
}

impl AppState {
    /// The state for `manager`, with routes for the plugins active now, following every
    /// later load, upgrade and unload.
    pub(crate) fn new(manager: Arc<PluginManager>, options: HttpOptions) -> Arc<AppState> {
        let state = Arc::new(AppState {
            manager,
            pool: CallPool::new(options.call_threads),
            budget: Arc::new(Budget::new(options.body_budget)),
            options,
            routes: RouteTable::default(),
            metrics: Metrics::new(),
            in_flight: InFlight::default(),
            listener: parking_lot::Mutex::new(None),
        });
        let weak: Weak<AppState> = Arc::downgrade(&state);
        let id = state.manager.add_listener(move |event| {
            if let Some(state) = weak.upgrade() {
                state.metrics.event(event);
                state.routes.rebuild(&state.manager);
            }
        });
        *state.listener.lock() = Some(id);
        state.routes.rebuild(&state.manager);
        state
    }
}

impl Drop for AppState {
    fn drop(&mut self) {
        if let Some(id) = self.listener.lock().take() {
            self.manager.remove_listener(id);
        }
    }
}
