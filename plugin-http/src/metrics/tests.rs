//! Unit tests of the metrics: record through the interface the call path uses, render, and
//! read the OpenMetrics text back.

use std::time::Duration;

use plugin_host::{Event, PluginManager};

use super::{Metrics, BUCKETS};

/// The value of the sample `series` (name and labels exactly as encoded), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a sample's value is a number"))
    })
}

/// Renders `metrics` for a manager of an empty base directory.
fn render(metrics: &Metrics) -> String {
    let base = tempfile::tempdir().unwrap();
    let manager = PluginManager::new(base.path());
    metrics.render(&manager, super::Load::default()).unwrap()
}

#[test]
fn calls_errors_panics_and_durations_are_counted_per_plugin() {
    let metrics = Metrics::new();
    for (elapsed, error) in [
        (Duration::from_micros(50), None),
        (Duration::from_millis(3), Some("invalid_input")),
        (Duration::from_secs(40), Some("panicked")),
    ] {
        metrics.call_started("hello");
        metrics.call_finished("hello", elapsed, error);
    }
    metrics.call_started("hello");
    metrics.call_started("counter");
    metrics.call_finished("counter", Duration::from_millis(1), None);

    let text = render(&metrics);
    let hello = |series: &str| sample(&text, &series.replace("P", "plugin=\"hello\""));
    assert_eq!(hello("plugin_calls_total{P}"), Some(3.0), "{text}");
    assert_eq!(
        hello("plugin_errors_total{P,kind=\"invalid_input\"}"),
        Some(1.0)
    );
    assert_eq!(hello("plugin_errors_total{P,kind=\"panicked\"}"), Some(1.0));
    assert_eq!(hello("plugin_panics_total{P}"), Some(1.0));
    assert_eq!(hello("plugin_calls_in_flight{P}"), Some(1.0));
    assert_eq!(hello("plugin_call_duration_seconds_count{P}"), Some(3.0));
    let sum = hello("plugin_call_duration_seconds_sum{P}").unwrap();
    assert!((sum - 40.00305).abs() < 1e-9, "{sum}");
    // Buckets are cumulative: 50 µs is in the first, 3 ms by 5 ms, 40 s only in +Inf.
    assert_eq!(
        hello("plugin_call_duration_seconds_bucket{le=\"0.0001\",P}"),
        Some(1.0)
    );
    assert_eq!(
        hello("plugin_call_duration_seconds_bucket{le=\"0.0025\",P}"),
        Some(1.0)
    );
    assert_eq!(
        hello("plugin_call_duration_seconds_bucket{le=\"0.005\",P}"),
        Some(2.0)
    );
    assert_eq!(
        hello("plugin_call_duration_seconds_bucket{le=\"30.0\",P}"),
        Some(2.0)
    );
    assert_eq!(
        hello("plugin_call_duration_seconds_bucket{le=\"+Inf\",P}"),
        Some(3.0)
    );

    let counter = |series: &str| sample(&text, &series.replace("P", "plugin=\"counter\""));
    assert_eq!(counter("plugin_calls_total{P}"), Some(1.0));
    assert_eq!(counter("plugin_calls_in_flight{P}"), Some(0.0));
    assert_eq!(counter("plugin_panics_total{P}"), Some(0.0));
    assert!(
        !text.contains("plugin_errors_total{plugin=\"counter\""),
        "{text}"
    );

    assert!(
        text.contains("# TYPE plugin_call_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE plugin_calls counter\n"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn stuck_calls_and_rejections_are_gauged_and_counted() {
    let metrics = Metrics::new();
    for _ in 0..2 {
        metrics.call_started("slow");
        metrics.call_stuck("slow");
        metrics.call_finished("slow", Duration::from_secs(2), Some("deadline_exceeded"));
    }
    metrics.rejected("slow");
    let text = render(&metrics);
    let stuck_http = "plugin_stuck_calls{plugin=\"slow\",source=\"http\"}";
    assert_eq!(sample(&text, stuck_http), Some(2.0), "{text}");
    let stuck_drain = "plugin_stuck_calls{plugin=\"slow\",source=\"drain\"}";
    assert_eq!(sample(&text, stuck_drain), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "plugin_rejected_total{plugin=\"slow\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "plugin_calls_in_flight{plugin=\"slow\"}"),
        Some(0.0)
    );

    metrics.stuck_returned("slow");
    let text = render(&metrics);
    assert_eq!(sample(&text, stuck_http), Some(1.0), "{text}");
    let stats = metrics.stats("slow");
    assert_eq!(stats.stuck, 1);
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.errors.get("deadline_exceeded"), Some(&2));
}

#[test]
fn lifecycle_events_are_counted_and_a_plugin_the_manager_lost_is_unloaded() {
    let metrics = Metrics::new();
    let version = |v: &str| v.parse().unwrap();
    metrics.event(&Event::Loaded {
        name: "hello".into(),
        version: version("0.1.0"),
    });
    metrics.event(&Event::Upgraded {
        name: "hello".into(),
        from: version("0.1.0"),
        to: version("0.2.0"),
    });
    metrics.event(&Event::Unloaded {
        name: "hello".into(),
    });
    metrics.event(&Event::Enabled {
        name: "hello".into(),
    });
    let text = render(&metrics);
    for (series, value) in [
        ("plugin_loads_total", 1.0),
        ("plugin_upgrades_total", 1.0),
        ("plugin_unloads_total", 1.0),
        ("plugin_load_failures_total", 0.0),
    ] {
        let series = format!("{series}{{plugin=\"hello\"}}");
        assert_eq!(sample(&text, &series), Some(value), "{series} in {text}");
    }
    let state = |s: &str| {
        sample(
            &text,
            &format!("plugin_state{{plugin=\"hello\",state=\"{s}\"}}"),
        )
    };
    assert_eq!(state("unloaded"), Some(1.0), "{text}");
    assert_eq!(state("active"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "plugin_host_retained_libraries"), Some(0.0));
    let stats = metrics.stats("hello");
    assert_eq!((stats.loads, stats.upgrades, stats.unloads), (1, 1, 1));
}

#[test]
fn stats_estimate_quantiles_from_the_buckets() {
    let metrics = Metrics::new();
    assert_eq!(metrics.stats("hello"), super::PluginStats::default());
    for _ in 0..99 {
        metrics.call_started("hello");
        metrics.call_finished("hello", Duration::from_millis(2), None);
    }
    metrics.call_started("hello");
    metrics.call_finished("hello", Duration::from_secs(20), None);

    let stats = metrics.stats("hello");
    assert_eq!(stats.calls, 100);
    assert_eq!(stats.in_flight, 0);
    assert!(stats.errors.is_empty());
    let latency = stats.latency;
    assert_eq!(latency.max_seconds, Some(20.0));
    let mean = latency.mean_seconds.unwrap();
    assert!(
        (mean - (99.0 * 0.002 + 20.0) / 100.0).abs() < 1e-9,
        "{mean}"
    );
    // 2 ms falls in the bucket (1 ms, 2.5 ms]: the median is interpolated within it.
    let (lower, upper) = (BUCKETS[3], BUCKETS[4]);
    assert_eq!((lower, upper), (0.001, 0.0025));
    let p50 = latency.p50_seconds.unwrap();
    assert!(
        (p50 - (lower + (upper - lower) * 50.0 / 99.0)).abs() < 1e-12,
        "{p50}"
    );
    let p99 = latency.p99_seconds.unwrap();
    assert!(p99 > p50 && p99 <= upper, "{p99}");

    let json = serde_json::to_value(metrics.stats("hello")).unwrap();
    assert_eq!(json["calls"], 100);
    assert_eq!(json["latency"]["max_seconds"], 20.0);
}
