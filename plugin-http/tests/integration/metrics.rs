//! `GET /metrics` over a socket: the OpenMetrics text, its content type, and counters that
//! follow the manager's lifecycle.

use plugin_http::HttpOptions;

use crate::util::{agent, with_token, TestServer, TOKEN};

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

#[test]
fn calls_through_routes_and_the_api_move_the_counters() {
    let server = TestServer::start(&["http-echo", "hello"], with_token());
    let client = agent();
    for _ in 0..2 {
        let response = client
            .get(server.url("/api/plugin/sample/1"))
            .call()
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let failed = client
        .get(server.url("/api/plugin/echo/error/invalid_input"))
        .call()
        .unwrap();
    assert_eq!(failed.status(), 400);
    let panicked = client
        .get(server.url("/api/plugin/echo/error/panic"))
        .call()
        .unwrap();
    assert_eq!(panicked.status(), 500);
    let executed = client
        .post(server.url("/api/v1/plugins/hello/execute"))
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send(r#"{"values":{"sample":{"name":"x"}}}"#)
        .unwrap();
    assert_eq!(executed.status(), 200);

    let text = scrape(&server);
    let echo = |series: &str| sample(&text, &format!("{series}{{plugin=\"http-echo\"}}"));
    assert_eq!(echo("plugin_calls_total"), Some(4.0), "{text}");
    assert_eq!(echo("plugin_panics_total"), Some(1.0), "{text}");
    assert_eq!(echo("plugin_calls_in_flight"), Some(0.0), "{text}");
    assert_eq!(
        echo("plugin_call_duration_seconds_count"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "plugin_errors_total{plugin=\"http-echo\",kind=\"invalid_input\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "plugin_calls_total{plugin=\"hello\"}"),
        Some(1.0),
        "{text}"
    );

    // The API's description of the plugin carries the same counts.
    let mut described = client
        .get(server.url("/api/v1/plugins/http-echo"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    let detail: serde_json::Value =
        serde_json::from_str(&described.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(detail["metrics"]["calls"], 4, "{detail}");
    assert_eq!(detail["metrics"]["errors"]["invalid_input"], 1, "{detail}");
    assert!(
        detail["metrics"]["latency"]["p99_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn a_client_that_hangs_up_mid_call_cancels_the_call_and_leaves_no_call_counted() {
    use std::io::Write;
    use std::time::{Duration, Instant};

    let server = TestServer::start(&["slow"], with_token());
    let in_flight = "plugin_calls_in_flight{plugin=\"slow\"}";
    let mut client = std::net::TcpStream::connect(server.addr()).unwrap();
    let body = r#"{"values":{}}"#;
    write!(
        client,
        "POST /api/v1/plugins/slow/execute HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let give_up = Instant::now() + Duration::from_secs(30);
    while sample(&scrape(&server), in_flight) != Some(1.0) {
        assert!(Instant::now() < give_up, "the call never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(client);
    // The server notices, cancels the call (`slow` stops at once when cancelled), and
    // counts it as ended; the request timeout (30 s) is far away.
    while sample(&scrape(&server), in_flight) != Some(0.0)
        || server.manager.get("slow").unwrap().status().calls_in_flight != 0
    {
        assert!(
            Instant::now() < give_up,
            "the call is still counted in flight after its client left"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
