//! `GET /metrics` over a socket: the OpenMetrics text, its content type, and counters that
//! follow the manager's lifecycle.

use plugin_http::HttpOptions;

use crate::util::{agent, TestServer};

/// The value of the sample `series` (name and labels exactly as encoded), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().expect("a sample's value is a number"))
    })
}

/// Scrapes `/metrics` of `server`, checking the status and content type.
fn scrape(server: &TestServer) -> String {
    let mut response = agent().get(server.url("/metrics")).call().unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

#[test]
fn metrics_show_states_and_follow_unloads_and_loads() {
    let server = TestServer::start(&["hello", "counter"], HttpOptions::new());
    let text = scrape(&server);
    let active = "plugin_state{plugin=\"hello\",state=\"active\"}";
    assert_eq!(sample(&text, active), Some(1.0), "{text}");
    let unloaded = "plugin_state{plugin=\"hello\",state=\"unloaded\"}";
    assert_eq!(sample(&text, unloaded), Some(0.0), "{text}");
    let retained = sample(&text, "plugin_retained_libraries{plugin=\"hello\"}").unwrap();
    assert!(retained >= 1.0, "{text}");
    let total = sample(&text, "plugin_host_retained_libraries").unwrap();
    assert_eq!(total, server.manager.retained_libraries() as f64);
    // Loaded before the server listened: no load counted yet, no call either.
    assert_eq!(
        sample(&text, "plugin_loads_total{plugin=\"hello\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "plugin_calls_total{plugin=\"hello\"}"),
        Some(0.0)
    );
    let drain = "plugin_stuck_calls{plugin=\"hello\",source=\"drain\"}";
    assert_eq!(sample(&text, drain), Some(0.0), "{text}");

    server.manager.unload("hello").unwrap();
    let text = scrape(&server);
    assert_eq!(
        sample(&text, "plugin_unloads_total{plugin=\"hello\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, unloaded), Some(1.0), "{text}");
    assert_eq!(sample(&text, active), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "plugin_unloads_total{plugin=\"counter\"}"),
        Some(0.0)
    );

    server.manager.load_plugin("hello").unwrap();
    let text = scrape(&server);
    assert_eq!(
        sample(&text, "plugin_loads_total{plugin=\"hello\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, active), Some(1.0), "{text}");
    let retained_now = sample(&text, "plugin_retained_libraries{plugin=\"hello\"}").unwrap();
    assert!(retained_now > retained, "{retained} then {retained_now}");

    server.manager.reload("hello").unwrap();
    let text = scrape(&server);
    let upgrades = sample(&text, "plugin_upgrades_total{plugin=\"hello\"}");
    assert_eq!(upgrades, Some(1.0), "{text}");
}
