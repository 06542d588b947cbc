//! Tests of what a hostile client can do to the server, over raw sockets on 127.0.0.1: name
//! another host, post from another site, write without a token, send bodies larger than
//! memory allows, hold connections open without a request, and hang plugins until the
//! server has no thread left. (What a hostile page does in a real browser is in `page`.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_host::PluginManager;
use plugin_http::{HttpOptions, ServeOptions};
use serde_json::Value;

use crate::util::{agent, fixtures, with_token, TestServer, TOKEN};

/// The answer to one raw HTTP/1.1 request: status and body.
#[derive(Debug)]
struct Raw {
    status: u16,
    body: String,
}

impl Raw {
    fn kind(&self) -> String {
        let json: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        json["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a new
/// connection, and reads the answer until the server closes (`Connection: close` is added).
fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Raw { status, body }
}

#[test]
fn requests_for_another_host_are_misdirected() {
    let server = TestServer::start(
        &["hello", "http-echo"],
        with_token().allow_host("Plugins.Internal"),
    );
    let addr = server.addr();
    let port = addr.port();
    for host in [
        "rebind.example",
        "localhost.rebind.example",
        "127.0.0.1.nip.example",
    ] {
        for path in [
            "/api/v1/openapi.json",
            "/api/plugin/sample/7",
            "/",
            "/metrics",
        ] {
            let answer = raw(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}"),
                b"",
            );
            assert_eq!(answer.status, 421, "{host}{path}: {answer:?}");
            assert_eq!(answer.kind(), "misdirected_request");
        }
    }
    // An absolute request target names the host too.
    let answer = raw(
        addr,
        &format!(
            "GET http://rebind.example:{port}/api/plugin/sample/7 HTTP/1.1\r\nHost: 127.0.0.1"
        ),
        b"",
    );
    assert_eq!(answer.status, 421, "{answer:?}");
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("plugins.internal:{port}"),
    ] {
        let answer = raw(
            addr,
            &format!("GET /api/plugin/sample/7 HTTP/1.1\r\nHost: {host}"),
            b"",
        );
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
    }
}

#[test]
fn writes_from_another_site_are_refused_even_with_the_token() {
    let server = TestServer::start(&["counter"], with_token());
    let addr = server.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let unload = |extra: &str| {
        raw(
            addr,
            &format!(
                "POST /api/v1/plugins/counter/unload HTTP/1.1\r\nHost: {host}\r\n\
                 Authorization: Bearer {TOKEN}{extra}"
            ),
            b"",
        )
    };
    for extra in [
        "\r\nOrigin: http://evil.example".to_owned(),
        "\r\nOrigin: null".to_owned(),
        format!("\r\nOrigin: http://127.0.0.1:{}", addr.port() + 1),
        "\r\nSec-Fetch-Site: cross-site".to_owned(),
        "\r\nSec-Fetch-Site: same-site".to_owned(),
    ] {
        let answer = unload(&extra);
        assert_eq!(answer.status, 403, "{extra}: {answer:?}");
        assert_eq!(answer.kind(), "cross_origin", "{extra}");
        assert_eq!(
            server.manager.state("counter").unwrap().as_str(),
            "active",
            "{extra}"
        );
    }
    // Reads from anywhere are answered (a browser does not let another origin read them).
    let read = raw(
        addr,
        &format!(
            "GET /api/v1/plugins HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Origin: http://evil.example"
        ),
        b"",
    );
    assert_eq!(read.status, 200, "{read:?}");
    // The page's own origin, and a client that is not a browser, may write.
    let own = unload(&format!(
        "\r\nOrigin: http://{host}\r\nSec-Fetch-Site: same-origin"
    ));
    assert_eq!(own.status, 200, "{own:?}");
    assert!(server.manager.get("counter").is_err());
}

#[test]
fn without_a_token_the_api_is_read_only_unless_writes_are_allowed() {
    let server = TestServer::start(&["counter", "hello"], HttpOptions::new());
    let addr = server.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let list = raw(
        addr,
        &format!("GET /api/v1/plugins HTTP/1.1\r\nHost: {host}"),
        b"",
    );
    assert_eq!(list.status, 200, "{list:?}");
    for path in [
        "/api/v1/plugins/counter/unload",
        "/api/v1/plugins/counter/disable",
        "/api/v1/plugins/hello/execute",
        "/api/v1/packages",
    ] {
        let answer = raw(
            addr,
            &format!("POST {path} HTTP/1.1\r\nHost: {host}"),
            b"{}",
        );
        assert_eq!(answer.status, 403, "{path}: {answer:?}");
        assert_eq!(answer.kind(), "read_only", "{path}");
        assert!(answer.body.contains("token"), "{path}: {}", answer.body);
    }
    assert_eq!(server.manager.state("counter").unwrap().as_str(), "active");
    assert!(!server.manager.is_disabled("counter"));

    let open = TestServer::start(
        &["counter"],
        HttpOptions::new().unauthenticated_writes(true),
    );
    let addr = open.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let answer = raw(
        addr,
        &format!("POST /api/v1/plugins/counter/unload HTTP/1.1\r\nHost: {host}"),
        b"",
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(open.manager.get("counter").is_err());
}

/// A metric's value (without labels) in a scrape of `server`'s `/metrics`.
fn gauge(server: &TestServer, name: &str) -> f64 {
    let text = agent()
        .get(server.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits (at most 30 s) until `condition` holds.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn bodies_are_held_within_the_memory_budget() {
    const BUDGET: usize = 1 << 20;
    let options = HttpOptions::new().body_limit(4 << 20).body_budget(BUDGET);
    let server = TestServer::start(&["reflect"], options);
    let addr = server.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let post = |content_type: &str, body: &[u8]| {
        raw(
            addr,
            &format!("POST /reflect/echo HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}"),
            body,
        )
    };
    // A JSON body that would take many times its size once parsed is refused before it is.
    let json = format!("[{}0]", "0,".repeat(100_000));
    let answer = post("application/json", json.as_bytes());
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("memory"), "{}", answer.body);
    // The same bytes as bytes are fine: the plugin gets them, and the budget is given back.
    let answer = post("application/octet-stream", json.as_bytes());
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, json.len().to_string());
    // A small JSON body is parsed.
    let answer = post("application/json", br#"{"a":[1,2,3]}"#);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(gauge(&server, "plugin_http_request_memory_bytes"), 0.0);

    // A client that sends most of a large body and stalls holds what it sent; another
    // request that does not fit beside it is answered 503 at once, not buffered.
    let mut slow = TcpStream::connect(addr).unwrap();
    let total = 400 << 10;
    write!(
        slow,
        "POST /reflect/echo HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&vec![b'x'; total - 1]).unwrap();
    wait_until("the stalled body to be charged", || {
        gauge(&server, "plugin_http_request_memory_bytes") >= (300 << 10) as f64
    });
    // 400 KiB more, and its copy, do not fit beside the stalled 400 KiB in 1 MiB.
    let answer = post("application/octet-stream", &vec![b'y'; 400 << 10]);
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.kind(), "overloaded");
    // Nor does a body whose bytes alone pass what is left: refused as it is read.
    let answer = post("application/octet-stream", &vec![b'y'; 700 << 10]);
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.kind(), "overloaded");
    assert!(gauge(&server, "plugin_http_request_memory_bytes") <= BUDGET as f64);
    // Once the stalled client finishes, its memory is given back.
    slow.write_all(b"x").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let finished = read_answer(&mut slow);
    assert_eq!(finished.status, 200, "{finished:?}");
    wait_until("the budget to be given back", || {
        gauge(&server, "plugin_http_request_memory_bytes") == 0.0
    });
    let answer = post("application/octet-stream", &vec![b'y'; 300 << 10]);
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[test]
fn a_declared_length_past_the_limit_is_refused_before_the_body_is_read() {
    let server = TestServer::start(&["reflect"], HttpOptions::new().body_limit(64 << 10));
    let addr = server.addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Ten megabytes announced, none sent: the answer cannot wait for them.
    write!(
        stream,
        "POST /reflect/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        10 << 20
    )
    .unwrap();
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 413, "{answer:?}");
    // A body of exactly the limit is served.
    let exact = raw(
        addr,
        "POST /reflect/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream",
        &vec![b'x'; 64 << 10],
    );
    assert_eq!(exact.status, 200, "{exact:?}");
    assert_eq!(exact.body, (64 << 10).to_string());
}

#[test]
fn a_streamed_body_past_the_limit_is_cut_off() {
    let server = TestServer::start(&["http-echo"], HttpOptions::new().body_limit(64 << 10));
    let addr = server.addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /api/plugin/samples HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Chunks until the server answers (it stops reading at the limit).
    let chunk = format!("{:x}\r\n{}\r\n", 16 << 10, " ".repeat(16 << 10));
    for _ in 0..64 {
        if stream.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(gauge(&server, "plugin_http_request_memory_bytes"), 0.0);
}

#[test]
fn idle_connections_are_closed_and_those_beyond_the_cap_answered_503() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "http-echo");
    let manager = Arc::new(PluginManager::new(base.path()));
    assert!(manager.load_plugins().unwrap().all_loaded());
    let limits = ServeOptions::new()
        .max_connections(8)
        .header_timeout(Duration::from_millis(500));
    let server = TestServer::serve_with(base, manager, HttpOptions::new(), limits);
    let addr = server.addr();
    // Eight connections that never send a request take every slot.
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Connections beyond them are still accepted, and answered 503 at once.
    let mut turned_away = 0;
    let started = Instant::now();
    loop {
        let answer = raw(
            addr,
            "GET /api/plugin/sample/1 HTTP/1.1\r\nHost: 127.0.0.1",
            b"",
        );
        match answer.status {
            503 => {
                assert_eq!(answer.kind(), "overloaded");
                turned_away += 1;
            }
            // The idle ones were closed after the header timeout: served again.
            200 => break,
            other => panic!("answered {other}: {answer:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the idle connections were never closed"
        );
    }
    assert!(turned_away > 0, "the cap turned nobody away");
    // The server closed every idle connection (end of file, after its timeout).
    for mut stream in idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        assert!(
            matches!(read, Ok(0))
                || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "an idle connection is still open"
        );
    }
}

#[test]
fn plugins_that_hang_at_their_cap_leave_threads_to_the_others_and_never_block_the_api() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let hung = ["hang-a", "hang-b", "hang-c", "hang-d"];
    for name in hung {
        let dir = plugin_test_support::install_folder(
            &plugin_test_support::renamed("reflect", name),
            base.path(),
            name,
        );
        let manifest = serde_json::json!({
            "name": name, "version": "0.1.0",
            "source": { "mode": "local_so", "path": name.replace('-', "_") },
            "http_services": { "driver": "axum", "routes": [
                { "route": format!("/{name}/sleep/{{ms}}"), "method": "GET", "label": "sleep" },
            ] },
        });
        std::fs::write(dir.join("plugin.json"), manifest.to_string()).unwrap();
    }
    let manager = Arc::new(PluginManager::new(base.path()));
    let report = manager.load_plugins().unwrap();
    assert!(
        report.all_loaded(),
        "{:?}",
        report.failed().collect::<Vec<_>>()
    );
    // 8 threads, 2 calls per plugin: three hung plugins hold 6, leaving 2.
    let options = with_token()
        .call_threads(8)
        .max_in_flight(2)
        .request_timeout(Duration::from_millis(200))
        .grace(Duration::from_millis(100));
    let server = TestServer::serve(base, manager, options);
    let addr = server.addr();
    let hang = |name: &str| {
        std::thread::spawn({
            let path = format!("GET /{name}/sleep/20000 HTTP/1.1\r\nHost: 127.0.0.1");
            move || raw(addr, &path, b"")
        })
    };
    let execute_hello = || {
        raw(
            addr,
            &format!(
                "POST /api/v1/plugins/hello/execute HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Authorization: Bearer {TOKEN}\r\nContent-Type: application/json"
            ),
            br#"{"values":{"sample":{"name":"x"}}}"#,
        )
    };
    let threads_busy = || gauge(&server, "plugin_http_call_threads_busy");
    let waiting: Vec<_> = hung[..3].iter().flat_map(|n| [hang(n), hang(n)]).collect();
    for answer in waiting {
        // Each is answered at its deadline and grace; its call goes on.
        let answer = answer.join().unwrap();
        assert_eq!(answer.status, 504, "{answer:?}");
    }
    assert_eq!(threads_busy(), 6.0);
    // A third call of a hung plugin: its cap, at once.
    let over = raw(addr, "GET /hang-a/sleep/1 HTTP/1.1\r\nHost: 127.0.0.1", b"");
    assert_eq!(over.status, 503, "{over:?}");
    // Another plugin, and the API, still answer, without waiting for any call.
    let started = Instant::now();
    let answer = execute_hello();
    assert_eq!(answer.status, 200, "{answer:?}");
    let list = raw(
        addr,
        &format!(
            "GET /api/v1/plugins HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}"
        ),
        b"",
    );
    assert_eq!(list.status, 200, "{list:?}");
    let page = raw(addr, "GET / HTTP/1.1\r\nHost: 127.0.0.1", b"");
    assert_eq!(page.status, 200);
    let answered = started.elapsed();
    eprintln!("with 3 plugins hung at their cap: a call, the API and the page in {answered:?}");
    assert!(answered < Duration::from_secs(5), "took {answered:?}");

    // A fourth hung plugin takes the last two threads: calls then get 503 at once, the
    // API still answers.
    for answer in [hang(hung[3]), hang(hung[3])] {
        assert_eq!(answer.join().unwrap().status, 504);
    }
    assert_eq!(threads_busy(), 8.0);
    let answer = execute_hello();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("threads"), "{}", answer.body);
    let list = raw(
        addr,
        &format!(
            "GET /api/v1/plugins HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}"
        ),
        b"",
    );
    assert_eq!(list.status, 200, "{list:?}");
}

#[test]
fn a_client_still_sending_a_refused_body_gets_the_answer_not_a_reset() {
    let server = TestServer::start(&["reflect"], HttpOptions::new().body_limit(64 << 10));
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = vec![b'x'; 16 << 20];
    write!(
        stream,
        "POST /reflect/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The server answers 413 from the length alone; the client, like curl, sends the body
    // anyway before it reads. Were the connection closed with that data unread, the kernel
    // would reset it and the answer would be lost.
    stream
        .write_all(&body)
        .expect("the server reads what it refused");
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 413, "{answer:?}");
}

#[test]
fn shutdown_waits_for_connections_at_most_the_grace_and_counts_those_dropped() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "reflect");
    let manager = Arc::new(PluginManager::new(base.path()));
    assert!(manager.load_plugins().unwrap().all_loaded());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (open, dropped) in [(false, 0), (true, 1)] {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = plugin_http::router(manager.clone(), HttpOptions::new());
        let limits = ServeOptions::new()
            .shutdown_grace(Duration::from_millis(300))
            .header_timeout(Duration::from_secs(60));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(plugin_http::serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        // A served request, so the server is up, then maybe a connection in the middle of
        // its request's head, which no grace lets finish.
        let ok = raw(addr, "GET /reflect/ok HTTP/1.1\r\nHost: 127.0.0.1", b"");
        assert_eq!(ok.status, 200);
        let mut halfway = TcpStream::connect(addr).unwrap();
        if open {
            halfway
                .write_all(b"GET /reflect/ok HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            // Connections are accepted in order: once a later one is served, this one is
            // the server's.
            let later = raw(addr, "GET /reflect/ok HTTP/1.1\r\nHost: 127.0.0.1", b"");
            assert_eq!(later.status, 200);
        } else {
            drop(halfway);
        }
        let started = Instant::now();
        stop.send(()).unwrap();
        let outcome = runtime.block_on(served).unwrap().unwrap();
        let took = started.elapsed();
        assert_eq!(outcome.dropped_connections, dropped, "open: {open}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        if open {
            assert!(took >= Duration::from_millis(300), "took {took:?}");
        }
    }
}
