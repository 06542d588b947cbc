//! Per-plugin metrics: counted around each call, and read from the manager when scraped.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use plugin_host::Event;

use crate::state::AppState;

/// The metrics of one server.
pub(crate) struct Metrics {}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {}
    }

    /// A call of `plugin` started.
    pub(crate) fn call_started(&self, plugin: &str) {
        let _ = plugin;
    }

    /// A call of `plugin` ended after `elapsed`: `error` is the error's kind if it failed.
    pub(crate) fn call_finished(&self, plugin: &str, elapsed: Duration, error: Option<&str>) {
        let _ = (plugin, elapsed, error);
    }

    /// A call of `plugin` ran past its deadline and grace: it counts as stuck.
    pub(crate) fn call_stuck(&self, plugin: &str) {
        let _ = plugin;
    }

    /// A stuck call of `plugin` returned at last.
    pub(crate) fn stuck_returned(&self, plugin: &str) {
        let _ = plugin;
    }

    /// A call of `plugin` was refused because its cap of calls in flight was reached.
    pub(crate) fn rejected(&self, plugin: &str) {
        let _ = plugin;
    }

    /// A lifecycle event of the manager (loads, upgrades, ...).
    pub(crate) fn event(&self, event: &Event) {
        let _ = event;
    }
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn handler(State(state): State<Arc<AppState>>) -> String {
    let _ = state;
    String::new()
}
