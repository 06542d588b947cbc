//! Tests of the routes area: plugin routes served over a real socket, as `http-echo`,
//! `label-router` and `hostile` (its `plugin.json` given routes) declare them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_host::PluginManager;
use plugin_http::HttpOptions;
use serde_json::{json, Value};

use crate::util::{agent, TestServer};

/// A response, read whole.
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl Reply {
    fn read(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = result.expect("the server answers");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.body_mut().read_to_string().expect("a UTF-8 body"),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (status {})", self.body, self.status))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `kind` of a JSON error body.
    fn error_kind(&self) -> String {
        self.json()["error"]["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {:?}", self.body))
            .to_owned()
    }
}

fn get(server: &TestServer, path: &str) -> Reply {
    Reply::read(agent().get(server.url(path)).call())
}

fn post(server: &TestServer, path: &str, content_type: &str, body: &str) -> Reply {
    Reply::read(
        agent()
            .post(server.url(path))
            .header("content-type", content_type)
            .send(body),
    )
}

/// `hostile` (with routes to its `poll` and `hang` modes) beside `http-echo`, with a 2 s
/// deadline, a 1 s grace and at most 2 calls in flight per plugin: generous times, so a
/// loaded machine answers the other requests well within them.
fn slow_server() -> TestServer {
    let options = HttpOptions::new()
        .request_timeout(Duration::from_secs(2))
        .grace(Duration::from_secs(1))
        .max_in_flight(2);
    TestServer::start_with(
        &["hostile", "http-echo"],
        &[("hostile", hostile_with_routes())],
        options,
    )
}

/// `hostile`'s identity, with routes to its `poll` and `hang` modes.
fn hostile_with_routes() -> Value {
    json!({
        "name": "hostile",
        "version": "0.1.0",
        "source": { "mode": "local_so", "path": "hostile" },
        "http_services": { "driver": "axum", "routes": [
            { "route": "/hostile/poll", "method": "GET", "label": "poll" },
            { "route": "/hostile/hang", "method": "GET", "label": "hang" }
        ] }
    })
}

/// Waits, at most 10 s, until `plugin` has `calls` calls in flight.
fn wait_for_calls(manager: &PluginManager, plugin: &str, calls: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = manager
            .list()
            .into_iter()
            .find(|s| s.name == plugin)
            .map_or(0, |s| s.calls_in_flight);
        if now == calls {
            return;
        }
        assert!(
            Instant::now() < until,
            "{plugin} has {now} calls in flight, not {calls}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn http_echo_answers_its_routes() {
    let server = TestServer::start(&["http-echo"], HttpOptions::new());

    let reply = get(&server, "/api/plugin/sample/7?x=1&y=2");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({ "id": "7", "query": { "x": "1", "y": "2" } })
    );

    // Parameters are percent-decoded; a repeated query name keeps its last value.
    let reply = get(&server, "/api/plugin/sample/a%20b?x=1&x=3");
    assert_eq!(reply.json(), json!({ "id": "a b", "query": { "x": "3" } }));

    let sent = json!({ "name": "x", "tags": [1, true, null], "nested": { "a": 1.5 } });
    let reply = post(
        &server,
        "/api/plugin/samples",
        "application/json",
        &sent.to_string(),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json(), json!({ "received": sent }));

    // Invalid JSON is refused before the plugin runs; valid JSON of the wrong shape, or no
    // JSON at all, by the plugin.
    let reply = post(
        &server,
        "/api/plugin/samples",
        "application/json",
        "{\"name\": ",
    );
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (400, "invalid_input")
    );
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let reply = post(&server, "/api/plugin/samples", "application/json", "[1]");
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (400, "invalid_input")
    );
    assert!(reply.body.contains("send a JSON object"), "{}", reply.body);
    let reply = post(&server, "/api/plugin/samples", "text/plain", "{}");
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (400, "invalid_input")
    );

    let reply = Reply::read(agent().head(server.url("/api/plugin/sample/7")).call());
    assert_eq!((reply.status, reply.body.as_str()), (200, ""));
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let server = TestServer::start(&["http-echo"], HttpOptions::new());

    let reply = get(&server, "/api/plugin/nothing/here");
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (404, "not_found")
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("GET /api/plugin/nothing/here"),
        "{message}"
    );

    let reply = Reply::read(agent().delete(server.url("/api/plugin/samples")).call());
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert_eq!(reply.error_kind(), "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("POST"));

    let reply = post(&server, "/api/plugin/sample/7", "application/json", "{}");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
}

#[test]
fn each_plugin_error_kind_has_its_status() {
    let server = TestServer::start(&["http-echo"], HttpOptions::new());
    let cases = [
        ("invalid_input", 400, "invalid_input"),
        ("not_found", 404, "not_found"),
        ("unsupported", 501, "unsupported"),
        ("cancelled", 503, "cancelled"),
        ("deadline_exceeded", 504, "deadline_exceeded"),
        ("other", 500, "other"),
        ("panic", 500, "panicked"),
    ];
    for (kind, status, answered) in cases {
        let reply = get(&server, &format!("/api/plugin/echo/error/{kind}"));
        assert_eq!(reply.status, status, "{kind}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.error_kind(), answered, "{kind}");
    }
    // After a panic the plugin still serves.
    assert_eq!(get(&server, "/api/plugin/sample/1").status, 200);
}

#[test]
fn a_body_over_the_limit_is_413() {
    let server = TestServer::start(&["http-echo"], HttpOptions::new().body_limit(64));
    let big = format!("{{\"a\": \"{}\"}}", "x".repeat(100));
    let reply = post(&server, "/api/plugin/samples", "application/json", &big);
    assert_eq!(reply.status, 413, "{}", reply.body);
    // Sent chunked, without a length: the limit is found while reading.
    let mut reader = std::io::Cursor::new(big.into_bytes());
    let reply = Reply::read(
        agent()
            .post(server.url("/api/plugin/samples"))
            .header("content-type", "application/json")
            .send(ureq::SendBody::from_reader(&mut reader)),
    );
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.error_kind(), "payload_too_large");
    let small = post(
        &server,
        "/api/plugin/samples",
        "application/json",
        "{\"a\": 1}",
    );
    assert_eq!(small.status, 201, "{}", small.body);
}

#[test]
fn a_call_that_polls_cancellation_ends_at_the_deadline_while_others_answer() {
    let server = slow_server();
    let url = server.url("/hostile/poll");
    let poll = std::thread::spawn(move || {
        let reply = Reply::read(agent().get(url).call());
        (reply, Instant::now())
    });
    wait_for_calls(&server.manager, "hostile", 1);
    let echo = get(&server, "/api/plugin/sample/3");
    let echoed_at = Instant::now();
    assert_eq!(echo.status, 200, "{}", echo.body);

    let (reply, polled_at) = poll.join().unwrap();
    assert!(
        echoed_at < polled_at,
        "http-echo answered only after the poll call ended"
    );
    // The only cancellation a request's call gets is its deadline (the request timeout):
    // the plugin sees `DeadlineExceeded` and returns that kind itself, within the grace,
    // so the answer is the plugin's error, not the server's "still runs" timeout.
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.error_kind(), "deadline_exceeded");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!message.contains("still runs"), "{message}");
    wait_for_calls(&server.manager, "hostile", 0);
}

#[test]
fn calls_that_ignore_cancellation_fill_their_plugins_cap_only() {
    let server = slow_server();
    // `hang` returns only once its context holds `release` = true, which no request can
    // set, and unloading does not stop it: these two calls run until the process ends.
    for _ in 0..2 {
        let started = Instant::now();
        let reply = get(&server, "/hostile/hang");
        let took = started.elapsed();
        assert_eq!(reply.status, 504, "{}", reply.body);
        assert_eq!(reply.error_kind(), "deadline_exceeded");
        assert!(reply.body.contains("still runs"), "{}", reply.body);
        assert!(took >= Duration::from_secs(3), "answered after {took:?}");
    }
    wait_for_calls(&server.manager, "hostile", 2);

    let started = Instant::now();
    let reply = get(&server, "/hostile/hang");
    let took = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.error_kind(), "overloaded");
    assert_eq!(reply.header("retry-after"), Some("1"));
    // Refused without waiting for a call: before any call could reach its deadline.
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // The stuck calls still hold hostile's cap, not anyone else's.
    assert_eq!(get(&server, "/hostile/poll").status, 503);
    let echo = get(&server, "/api/plugin/sample/5");
    assert_eq!(echo.status, 200, "{}", echo.body);
}

#[test]
fn a_contested_route_goes_to_one_plugin_by_a_fixed_rule() {
    // label-router's plugin.json declares the same two routes as http-echo; it answers with
    // no `response` (204), http-echo with JSON (200 or 201).
    let server = TestServer::start(&["http-echo", "label-router"], HttpOptions::new());
    // Both new: the name that sorts first wins.
    assert_eq!(get(&server, "/api/plugin/sample/7").status, 200);
    // The API lists who serves the route, and the refusal with its reason.
    let table = get(&server, "/api/v1/routes").json();
    let owner = |route: &str| {
        table["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == route && r["method"] == "GET")
            .map(|r| r["plugin"].clone())
    };
    assert_eq!(
        owner("/api/plugin/sample/:id"),
        Some(json!("http-echo")),
        "{table}"
    );
    let refused = table["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{table}");
    assert!(
        refused.iter().all(|r| r["plugin"] == "label-router"
            && r["reason"].as_str().unwrap().contains("http-echo")),
        "{table}"
    );
    let reply = post(
        &server,
        "/api/plugin/samples",
        "application/json",
        "{\"a\": 1}",
    );
    assert_eq!(reply.status, 201);

    // With http-echo gone, label-router serves them.
    server.manager.unload("http-echo").unwrap();
    assert_eq!(get(&server, "/api/plugin/sample/7").status, 204);
    // Back again, http-echo does not take them over; its uncontested route is served.
    server.manager.load_plugin("http-echo").unwrap();
    assert_eq!(get(&server, "/api/plugin/sample/7").status, 204);
    let reply = post(
        &server,
        "/api/plugin/samples",
        "application/json",
        "{\"a\": 1}",
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(
        get(&server, "/api/plugin/echo/error/unsupported").status,
        501
    );
}

#[test]
fn routes_on_the_servers_own_paths_are_not_served() {
    let routes: Vec<Value> = [
        "/",
        "/api/v1/plugins",
        "/api/v1/x/:id",
        "/metrics",
        "/assets/app.js",
        "/api/plugin/ok",
    ]
    .iter()
    .map(|route| json!({ "route": route, "method": "GET", "label": "plugin.get" }))
    .collect();
    let manifest = json!({
        "name": "label-router",
        "version": "0.1.0",
        "source": { "mode": "local_so", "path": "label_router" },
        "http_services": { "driver": "axum", "routes": routes }
    });
    let server = TestServer::start_with(
        &["label-router"],
        &[("label-router", manifest)],
        HttpOptions::new(),
    );
    // The plugin answers its routes 204: its one route elsewhere is served.
    assert_eq!(get(&server, "/api/plugin/ok").status, 204);
    for path in [
        "/",
        "/api/v1/plugins",
        "/api/v1/x/1",
        "/metrics",
        "/assets/app.js",
    ] {
        let reply = get(&server, path);
        assert_ne!(reply.status, 204, "{path} reached the plugin");
    }
    let reply = get(&server, "/api/v1/x/1");
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (404, "not_found")
    );
}

#[test]
fn routes_follow_unload_load_and_reload() {
    let server = TestServer::start(&["http-echo"], HttpOptions::new());
    assert_eq!(get(&server, "/api/plugin/sample/1").status, 200);

    server.manager.unload("http-echo").unwrap();
    let reply = get(&server, "/api/plugin/sample/1");
    assert_eq!(
        (reply.status, reply.error_kind().as_str()),
        (404, "not_found")
    );

    server.manager.load_plugin("http-echo").unwrap();
    assert_eq!(get(&server, "/api/plugin/sample/1").status, 200);

    server.manager.reload("http-echo").unwrap();
    let reply = get(&server, "/api/plugin/sample/2");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["id"], "2");
}

#[test]
fn reloads_under_load_answer_every_request() {
    let server = Arc::new(TestServer::start(&["http-echo"], HttpOptions::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (server, stop, served) = (server.clone(), stop.clone(), served.clone());
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let client = std::thread::spawn(move || {
                let agent = agent();
                let mut statuses = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let reply = Reply::read(agent.get(server.url("/api/plugin/sample/1")).call());
                    statuses.push((reply.status, reply.body));
                    served.fetch_add(1, Ordering::SeqCst);
                    let _ = started_tx.send(());
                }
                statuses
            });
            (client, started_rx)
        })
        .collect();
    for (_, started) in &clients {
        started.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    let before = served.load(Ordering::SeqCst);
    for _ in 0..10 {
        server.manager.reload("http-echo").unwrap();
    }
    let during = served.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    // The clients were answered while the reloads ran, not only around them.
    assert!(during > 0, "no request was answered during the reloads");
    let mut total = 0;
    for (client, _) in clients {
        for (status, body) in client.join().unwrap() {
            assert_eq!(status, 200, "{body}");
            total += 1;
        }
    }
    assert_eq!(total, served.load(Ordering::SeqCst));
}
