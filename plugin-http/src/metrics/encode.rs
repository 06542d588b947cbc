//! The OpenMetrics text of one scrape: every series of every plugin, encoded from a snapshot
//! by prometheus-client's text encoder.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{Recorded, BUCKETS, STATES};

/// One plugin at scrape time: what was recorded, and what the manager lists.
#[derive(Debug)]
pub(super) struct Scraped {
    pub(super) name: String,
    pub(super) recorded: Recorded,
    pub(super) state: &'static str,
    pub(super) drain_stuck: i64,
    pub(super) retained: Option<i64>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    plugin: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StuckLabels {
    plugin: String,
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    plugin: String,
    state: String,
}

/// Every series of one scrape.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) plugins: Vec<Scraped>,
    pub(super) retained: u64,
    pub(super) load: super::Load,
}

/// A histogram given by its bucket counts (the last is `+Inf`) and sum.
struct Buckets<'a> {
    counts: &'a [u64],
    sum: f64,
}

impl EncodeMetric for Buckets<'_> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(self.counts.iter().copied())
            .collect();
        let count = self.counts.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Snapshot {
    /// Encodes one family: `series` yields the labels and the metric of each sample.
    fn family<L, M>(
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        metric_type: MetricType,
        series: impl IntoIterator<Item = (L, M)>,
    ) -> Result<(), std::fmt::Error>
    where
        L: EncodeLabelSet,
        M: EncodeMetric,
    {
        let mut family = encoder.encode_descriptor(name, help, unit, metric_type)?;
        for (labels, metric) in series {
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn counter(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&Recorded) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let series = self.plugins.iter().map(|p| {
            let labels = PluginLabels {
                plugin: p.name.clone(),
            };
            (labels, ConstCounter::new(value(&p.recorded)))
        });
        Self::family(encoder, name, help, None, MetricType::Counter, series)
    }

    fn gauge(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&Scraped) -> Option<i64>,
    ) -> Result<(), std::fmt::Error> {
        let series = self.plugins.iter().filter_map(|p| {
            let labels = PluginLabels {
                plugin: p.name.clone(),
            };
            value(p).map(|v| (labels, ConstGauge::new(v)))
        });
        Self::family(encoder, name, help, None, MetricType::Gauge, series)
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        self.counter(
            e,
            "plugin_calls",
            "Calls through HTTP that ended, failed ones included",
            |r| r.calls(),
        )?;
        let errors = self.plugins.iter().flat_map(|p| {
            p.recorded.errors.iter().map(|(kind, n)| {
                let labels = ErrorLabels {
                    plugin: p.name.clone(),
                    kind: kind.clone(),
                };
                (labels, ConstCounter::new(*n))
            })
        });
        let help = "Failed calls by the kind of the error answered";
        Self::family(e, "plugin_errors", help, None, MetricType::Counter, errors)?;
        self.counter(
            e,
            "plugin_panics",
            "Calls that panicked in the plugin",
            |r| r.panics,
        )?;
        self.counter(
            e,
            "plugin_rejected",
            "Calls refused because the plugin's cap of calls in flight was reached",
            |r| r.rejected,
        )?;
        self.gauge(
            e,
            "plugin_calls_in_flight",
            "Calls through HTTP started and not yet answered",
            |p| Some(p.recorded.in_flight),
        )?;
        let stuck = self.plugins.iter().flat_map(|p| {
            [("http", p.recorded.stuck), ("drain", p.drain_stuck)].map(|(source, n)| {
                let labels = StuckLabels {
                    plugin: p.name.clone(),
                    source: source.to_owned(),
                };
                (labels, ConstGauge::new(n))
            })
        });
        let help = "Calls that ignore cancellation and still run: source http, answered 504 \
                    after their deadline; source drain, on a version whose unload or upgrade \
                    gave up waiting";
        Self::family(
            e,
            "plugin_stuck_calls",
            help,
            None,
            MetricType::Gauge,
            stuck,
        )?;
        let durations = self.plugins.iter().map(|p| {
            let labels = PluginLabels {
                plugin: p.name.clone(),
            };
            let sum = Duration::from_nanos(p.recorded.sum_nanos).as_secs_f64();
            let counts = p.recorded.buckets.as_slice();
            (labels, Buckets { counts, sum })
        });
        let help = "How long calls through HTTP took until answered";
        let unit = Some(&Unit::Seconds);
        Self::family(
            e,
            "plugin_call_duration",
            help,
            unit,
            MetricType::Histogram,
            durations,
        )?;
        self.counter(e, "plugin_loads", "Times the plugin was loaded", |r| {
            r.loads
        })?;
        self.counter(
            e,
            "plugin_upgrades",
            "Times a new version replaced the running one",
            |r| r.upgrades,
        )?;
        self.counter(e, "plugin_unloads", "Times the plugin was unloaded", |r| {
            r.unloads
        })?;
        self.counter(
            e,
            "plugin_load_failures",
            "Loads or upgrades that failed",
            |r| r.load_failures,
        )?;
        self.gauge(
            e,
            "plugin_retained_libraries",
            "Libraries the plugin has mapped into the process (never closed)",
            |p| p.retained,
        )?;
        let states = self.plugins.iter().flat_map(|p| {
            STATES.map(|state| {
                let labels = StateLabels {
                    plugin: p.name.clone(),
                    state: state.to_owned(),
                };
                (labels, ConstGauge::new(i64::from(p.state == state)))
            })
        });
        let help = "1 for the plugin's current state, 0 for the others";
        Self::family(e, "plugin_state", help, None, MetricType::Gauge, states)?;
        let help = "Libraries the manager has mapped into the process, of every plugin";
        let name = "plugin_host_retained_libraries";
        let total = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(self.retained).encode(total)?;
        let gauges = [
            (
                "plugin_http_request_memory_bytes",
                "Memory the requests in flight hold (bodies, copies, parsed JSON)",
                self.load.request_memory,
            ),
            (
                "plugin_http_request_memory_limit_bytes",
                "The most the requests in flight may hold together",
                self.load.request_memory_limit,
            ),
            (
                "plugin_http_call_threads_busy",
                "Threads running a plugin call (stuck calls included)",
                self.load.call_threads_busy,
            ),
            (
                "plugin_http_call_threads",
                "Threads plugin calls may run on",
                self.load.call_threads,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(u64::try_from(value).unwrap_or(u64::MAX)).encode(gauge)?;
        }
        Ok(())
    }
}
