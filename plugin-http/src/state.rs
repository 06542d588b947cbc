//! What every handler shares: the manager, the options, the route table, the metrics and the
//! caps; and the listener that keeps routes and metrics in step with the manager.

use std::sync::{Arc, Weak};

use plugin_host::{ListenerId, PluginManager};

use crate::call::InFlight;
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
    listener: parking_lot::Mutex<Option<ListenerId>>,
}

impl AppState {
    /// The state for `manager`, with routes for the plugins active now, following every
    /// later load, upgrade and unload.
    pub(crate) fn new(manager: Arc<PluginManager>, options: HttpOptions) -> Arc<AppState> {
        let state = Arc::new(AppState {
            manager,
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
