//! Per-plugin metrics: counted around each call, and read from the manager when scraped.
//!
//! Each plugin has a record of atomic counters, found under a read lock of a map keyed by
//! plugin name (a write lock only the first time a plugin is seen), so recording a call never
//! waits on another call for long. Recorded values and what the manager reports at scrape
//! time (states, the calls stuck in drains, retained libraries) are encoded together with
//! prometheus-client's OpenMetrics text encoder, by a [`Collector`] over one snapshot.
//!
//! Series, each labelled `plugin`:
//! - `plugin_calls_total`: calls through HTTP that ended (answered), failed ones included;
//! - `plugin_errors_total{kind}`: failed calls, by the answered error's kind;
//! - `plugin_panics_total`: calls that panicked in the plugin (kind `panicked`);
//! - `plugin_calls_in_flight`: calls through HTTP started and not yet answered;
//! - `plugin_stuck_calls{source}`: calls ignoring cancellation. `source="http"`: calls
//!   answered 504 after their deadline and grace that still run; `source="drain"`: calls on a
//!   retired version whose unload or upgrade gave up waiting (the manager's `stuck_calls`);
//! - `plugin_call_duration_seconds`: a histogram of call durations, 100 µs to 30 s;
//! - `plugin_rejected_total`: calls refused because the plugin's cap was reached;
//! - `plugin_loads_total`, `plugin_upgrades_total`, `plugin_unloads_total`,
//!   `plugin_load_failures_total`: lifecycle events of the manager;
//! - `plugin_retained_libraries`: libraries the plugin has mapped (never closed);
//! - `plugin_state{state}`: 1 for the plugin's current state, 0 for the others.
//!
//! And, without labels, `plugin_host_retained_libraries`: every library the manager has
//! mapped, unloaded plugins' included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::{Mutex, RwLock};
use plugin_host::{Event, PluginManager, PluginStatus};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;
use encode::{Scraped, Snapshot};

mod encode;
#[cfg(test)]
mod tests;

/// The content type of what [`handler`] answers: prometheus-client's text encoder writes
/// OpenMetrics 1.0.0.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the duration histogram's buckets, in seconds (then `+Inf`).
const BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Every state `plugin_state` has a series for.
const STATES: [&str; 6] = [
    "discovered",
    "active",
    "disabled",
    "failed",
    "unloading",
    "unloaded",
];

/// Call durations: counts per bucket (the last is `+Inf`), their sum and the longest.
#[derive(Default)]
struct Latency {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

/// What was recorded for one plugin.
#[derive(Default)]
struct Record {
    in_flight: AtomicI64,
    stuck: AtomicI64,
    rejected: AtomicU64,
    panics: AtomicU64,
    loads: AtomicU64,
    upgrades: AtomicU64,
    unloads: AtomicU64,
    load_failures: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    latency: Latency,
}

/// The metrics of one server.
#[derive(Default)]
pub(crate) struct Metrics {
    plugins: RwLock<HashMap<String, Record>>,
}

/// Call durations of one plugin, in seconds; `None` before its first call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct LatencyStats {
    /// The mean of every call's duration.
    pub(crate) mean_seconds: Option<f64>,
    /// The longest call.
    pub(crate) max_seconds: Option<f64>,
    /// The median, estimated from the histogram's buckets (interpolated within a bucket, as
    /// Prometheus' `histogram_quantile` does), at most the longest call.
    pub(crate) p50_seconds: Option<f64>,
    /// The 99th percentile, estimated the same way.
    pub(crate) p99_seconds: Option<f64>,
}

/// What the metrics recorded for one plugin, for the API's JSON. All zero for a plugin
/// nothing was recorded for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct PluginStats {
    /// Calls through HTTP that ended, failed ones included.
    pub(crate) calls: u64,
    /// Failed calls by error kind (`invalid_input`, `deadline_exceeded`, `host`, ...).
    pub(crate) errors: BTreeMap<String, u64>,
    /// Calls that panicked in the plugin.
    pub(crate) panics: u64,
    /// Calls through HTTP started and not yet answered.
    pub(crate) in_flight: i64,
    /// Calls answered 504 that still run (they ignore cancellation). Calls stuck in a drain
    /// are the manager's `stuck_calls`.
    pub(crate) stuck: i64,
    /// Calls refused because the plugin's cap of calls in flight was reached.
    pub(crate) rejected: u64,
    /// Times the plugin was loaded.
    pub(crate) loads: u64,
    /// Times a new version replaced the running one.
    pub(crate) upgrades: u64,
    /// Times the plugin was unloaded.
    pub(crate) unloads: u64,
    /// Loads or upgrades of the plugin that failed.
    pub(crate) load_failures: u64,
    /// Call durations.
    pub(crate) latency: LatencyStats,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics::default()
    }

    /// Runs `f` on `plugin`'s record, created on first use.
    fn with<R>(&self, plugin: &str, f: impl FnOnce(&Record) -> R) -> R {
        {
            let plugins = self.plugins.read();
            if let Some(record) = plugins.get(plugin) {
                return f(record);
            }
        }
        let mut plugins = self.plugins.write();
        f(plugins.entry(plugin.to_owned()).or_default())
    }

    /// A call of `plugin` started.
    pub(crate) fn call_started(&self, plugin: &str) {
        self.with(plugin, |r| r.in_flight.fetch_add(1, Ordering::Relaxed));
    }

    /// A call of `plugin` ended after `elapsed`: `error` is the error's kind if it failed.
    pub(crate) fn call_finished(&self, plugin: &str, elapsed: Duration, error: Option<&str>) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.with(plugin, |r| {
            r.in_flight.fetch_sub(1, Ordering::Relaxed);
            r.latency.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            r.latency.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
            r.latency.max_nanos.fetch_max(nanos, Ordering::Relaxed);
            if let Some(kind) = error {
                *r.errors.lock().entry(kind.to_owned()).or_default() += 1;
                if kind == "panicked" {
                    r.panics.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// A call of `plugin` ran past its deadline and grace: it counts as stuck.
    pub(crate) fn call_stuck(&self, plugin: &str) {
        self.with(plugin, |r| r.stuck.fetch_add(1, Ordering::Relaxed));
    }

    /// A stuck call of `plugin` returned at last.
    pub(crate) fn stuck_returned(&self, plugin: &str) {
        self.with(plugin, |r| r.stuck.fetch_sub(1, Ordering::Relaxed));
    }

    /// A call of `plugin` was refused because its cap of calls in flight was reached.
    pub(crate) fn rejected(&self, plugin: &str) {
        self.with(plugin, |r| r.rejected.fetch_add(1, Ordering::Relaxed));
    }

    /// A lifecycle event of the manager: loads, upgrades, unloads and failed loads count.
    pub(crate) fn event(&self, event: &Event) {
        let counter: fn(&Record) -> &AtomicU64 = match event {
            Event::Loaded { .. } => |r| &r.loads,
            Event::Upgraded { .. } => |r| &r.upgrades,
            Event::Unloaded { .. } => |r| &r.unloads,
            Event::Failed { .. } => |r| &r.load_failures,
            _ => return,
        };
        self.with(event.plugin(), |r| {
            counter(r).fetch_add(1, Ordering::Relaxed)
        });
    }

    /// What was recorded for `plugin`.
    pub(crate) fn stats(&self, plugin: &str) -> PluginStats {
        let plugins = self.plugins.read();
        let Some(record) = plugins.get(plugin) else {
            return PluginStats::default();
        };
        let recorded = Recorded::of(record);
        PluginStats {
            calls: recorded.calls(),
            panics: recorded.panics,
            in_flight: recorded.in_flight,
            stuck: recorded.stuck,
            rejected: recorded.rejected,
            loads: recorded.loads,
            upgrades: recorded.upgrades,
            unloads: recorded.unloads,
            load_failures: recorded.load_failures,
            latency: recorded.latency_stats(),
            errors: recorded.errors,
        }
    }

    /// The OpenMetrics text of what was recorded and of what `manager` reports now.
    pub(crate) fn render(
        &self,
        manager: &PluginManager,
        load: Load,
    ) -> Result<String, std::fmt::Error> {
        let retained = u64::try_from(manager.retained_libraries()).unwrap_or(u64::MAX);
        self.render_with(&manager.list(), retained, load)
    }

    /// The OpenMetrics text for plugins `listed` (the manager's list) and a manager that has
    /// mapped `retained` libraries.
    fn render_with(
        &self,
        listed: &[PluginStatus],
        retained: u64,
        load: Load,
    ) -> Result<String, std::fmt::Error> {
        let recorded: BTreeMap<String, Recorded> = self
            .plugins
            .read()
            .iter()
            .map(|(name, record)| (name.clone(), Recorded::of(record)))
            .collect();
        let listed: BTreeMap<&str, &PluginStatus> =
            listed.iter().map(|s| (s.name.as_str(), s)).collect();
        let names: BTreeSet<&str> = recorded
            .keys()
            .map(String::as_str)
            .chain(listed.keys().copied())
            .collect();
        let plugins = names
            .into_iter()
            .map(|name| {
                let status = listed.get(name);
                Scraped {
                    name: name.to_owned(),
                    recorded: recorded.get(name).cloned().unwrap_or_default(),
                    // A plugin the manager no longer lists was unloaded.
                    state: status.map_or("unloaded", |s| s.state.as_str()),
                    drain_stuck: status.map_or(0, |s| count(s.stuck_calls)),
                    retained: status.map(|s| count(s.retained_libraries)),
                }
            })
            .collect();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot {
            plugins,
            retained,
            load,
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// What the server holds now, beside the plugins: request memory and call threads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Load {
    pub(crate) request_memory: usize,
    pub(crate) request_memory_limit: usize,
    pub(crate) call_threads_busy: usize,
    pub(crate) call_threads: usize,
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The values of one [`Record`] at one moment.
#[derive(Debug, Clone, Default)]
struct Recorded {
    in_flight: i64,
    stuck: i64,
    rejected: u64,
    panics: u64,
    loads: u64,
    upgrades: u64,
    unloads: u64,
    load_failures: u64,
    errors: BTreeMap<String, u64>,
    buckets: Vec<u64>,
    sum_nanos: u64,
    max_nanos: u64,
}

impl Recorded {
    fn of(r: &Record) -> Self {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Recorded {
            in_flight: r.in_flight.load(Ordering::Relaxed),
            stuck: r.stuck.load(Ordering::Relaxed),
            rejected: load(&r.rejected),
            panics: load(&r.panics),
            loads: load(&r.loads),
            upgrades: load(&r.upgrades),
            unloads: load(&r.unloads),
            load_failures: load(&r.load_failures),
            errors: r.errors.lock().clone(),
            buckets: r.latency.buckets.iter().map(load).collect(),
            sum_nanos: load(&r.latency.sum_nanos),
            max_nanos: load(&r.latency.max_nanos),
        }
    }

    /// Calls that ended: the histogram's count, so that both always agree.
    fn calls(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn latency_stats(&self) -> LatencyStats {
        let calls = self.calls();
        if calls == 0 {
            return LatencyStats::default();
        }
        let max = Duration::from_nanos(self.max_nanos).as_secs_f64();
        LatencyStats {
            mean_seconds: Some(Duration::from_nanos(self.sum_nanos).as_secs_f64() / calls as f64),
            max_seconds: Some(max),
            p50_seconds: Some(self.quantile(0.5, calls, max)),
            p99_seconds: Some(self.quantile(0.99, calls, max)),
        }
    }

    /// The `q` quantile of `calls` durations whose longest was `max`: linear within the
    /// bucket the rank falls in (the `+Inf` bucket ends at `max`).
    fn quantile(&self, q: f64, calls: u64, max: f64) -> f64 {
        let rank = q * calls as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let upper = BUCKETS.get(i).copied().unwrap_or(max).min(max);
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return (lower + (upper - lower) * within).min(max);
            }
            below += n;
        }
        max
    }
}

/// `GET /metrics`: OpenMetrics text.
pub(crate) async fn handler(State(state): State<Arc<AppState>>) -> Response {
    let load = Load {
        request_memory: state.budget.used(),
        request_memory_limit: state.options.body_budget,
        call_threads_busy: state.pool.busy(),
        call_threads: state.options.call_threads,
    };
    match state.metrics.render(&state.manager, load) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(err) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            format!("encoding the metrics for /metrics failed: {err}; this is a bug, report it"),
        )
        .into_response(),
    }
}
