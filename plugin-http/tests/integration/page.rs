//! The management page: its files over a socket, and the page itself in Debian's headless
//! Chromium (driven with `headless_chrome` over the DevTools protocol): it renders the plugin
//! list without script errors, a real click on Unload unloads a plugin, and screenshots at
//! desktop and phone widths land in `target/screenshots/`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::browser::tab::Tab;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Emulation, Page};
use headless_chrome::{Browser, LaunchOptions};
use plugin_host::PluginState;
use plugin_http::HttpOptions;

use crate::util::{agent, with_token, TestServer, TOKEN};

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn page_and_its_assets_are_embedded_with_types_and_no_cache() {
    let server = TestServer::start(&["hello"], HttpOptions::new());
    for (path, content_type, needle) in [
        (
            "/",
            "text/html; charset=utf-8",
            "<script src=\"/assets/app.js\"",
        ),
        (
            "/assets/app.css",
            "text/css; charset=utf-8",
            "prefers-color-scheme: dark",
        ),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "/api/v1",
        ),
    ] {
        let mut response = agent().get(server.url(path)).call().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            let value = response.headers().get(name);
            value.map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            header("content-type").as_deref(),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-cache"),
            "{path}"
        );
        let policy = header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("default-src 'none'"), "{path}: {policy}");
        let body = response.body_mut().read_to_string().unwrap();
        assert!(body.contains(needle), "{path} lacks {needle}");
        // Nothing is loaded from another host: no absolute or protocol-relative URLs.
        for foreign in ["http://", "https://", "\"//", "'//", "url(//", "@import"] {
            assert!(
                !body.contains(foreign),
                "{path} refers to another host: {foreign}"
            );
        }
    }
}

/// Script errors a tab reported: uncaught exceptions, `console.error`, and log entries
/// other than failed requests (content security policy violations among them).
#[derive(Clone, Default)]
struct ScriptErrors(Arc<Mutex<Vec<String>>>);

impl ScriptErrors {
    fn watch(tab: &Arc<Tab>) -> ScriptErrors {
        let errors = ScriptErrors::default();
        let sink = errors.0.clone();
        tab.add_event_listener(Arc::new(move |event: &Event| {
            let error = match event {
                Event::RuntimeExceptionThrown(e) => {
                    Some(format!("{:?}", e.params.exception_details))
                }
                Event::RuntimeConsoleAPICalled(e)
                    if format!("{:?}", e.params.Type).eq_ignore_ascii_case("error") =>
                {
                    Some(format!("console.error: {:?}", e.params.args))
                }
                Event::LogEntryAdded(e)
                    if format!("{:?}", e.params.entry.level).eq_ignore_ascii_case("error")
                        && !format!("{:?}", e.params.entry.source)
                            .eq_ignore_ascii_case("network") =>
                {
                    Some(format!("log: {}", e.params.entry.text))
                }
                _ => None,
            };
            if let Some(error) = error {
                sink.lock().unwrap().push(error);
            }
        }))
        .unwrap();
        tab.enable_runtime().unwrap();
        tab.enable_log().unwrap();
        errors
    }

    fn assert_none(&self) {
        let errors = self.0.lock().unwrap();
        assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
    }
}

/// Debian's Chromium, headless, in a profile of its own that goes away with the test.
fn browser() -> (Browser, tempfile::TempDir) {
    browser_with(&[])
}

/// [`browser`], with more command-line arguments.
fn browser_with(extra: &[&str]) -> (Browser, tempfile::TempDir) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's package with `apt-get install -y chromium`, or run the other tests with `--skip page::`"
    );
    let profile = tempfile::tempdir().unwrap();
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .headless(true)
        .sandbox(false)
        .user_data_dir(Some(profile.path().to_owned()))
        .window_size(Some((1280, 800)))
        .idle_browser_timeout(Duration::from_secs(120))
        .args(
            [
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ]
            .iter()
            .chain(extra)
            .map(OsStr::new)
            .collect(),
        )
        .build()
        .unwrap();
    let browser = Browser::new(options).expect("Chromium starts headless");
    (browser, profile)
}

/// Opens `url` in a new tab of `browser` sized `width` × `height`, watching for errors.
fn open(browser: &Browser, url: &str, width: u32, height: u32) -> (Arc<Tab>, ScriptErrors) {
    let tab = browser.new_tab().unwrap();
    resize(&tab, width, height);
    let errors = ScriptErrors::watch(&tab);
    tab.navigate_to(url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    (tab, errors)
}

fn resize(tab: &Tab, width: u32, height: u32) {
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: 1.0,
        mobile: width < 600,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .unwrap();
}

/// The value of `expression` in the page (JSON).
fn eval(tab: &Tab, expression: &str) -> serde_json::Value {
    let result = tab.evaluate(expression, false).unwrap();
    result.value.unwrap_or(serde_json::Value::Null)
}

/// Waits (at most 15 s) until `expression` is true in the page: the page itself re-checks it
/// on every change of its document, and gives up after 15 s.
fn wait_for(tab: &Tab, expression: &str, what: &str) {
    let waiter = format!(
        "new Promise(resolve => {{
            const ok = () => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }};
            if (ok()) {{ resolve(true); return; }}
            const seen = new MutationObserver(() => {{
                if (ok()) {{ seen.disconnect(); resolve(true); }}
            }});
            seen.observe(document.documentElement,
                {{ subtree: true, childList: true, attributes: true, characterData: true }});
            setTimeout(() => {{ seen.disconnect(); resolve(ok()); }}, 15000);
        }})"
    );
    // A navigation (a reload) that commits while the waiter runs destroys the document it
    // ran in, and the evaluation fails rather than answering: run it again in the new
    // document, within the same overall bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let met = loop {
        let answer = tab.evaluate(&waiter, true).ok().and_then(|r| r.value);
        match answer {
            Some(serde_json::Value::Bool(met)) => break serde_json::Value::Bool(met),
            other if std::time::Instant::now() >= deadline => {
                break other.unwrap_or(serde_json::Value::Null)
            }
            _ => {}
        }
    };
    assert_eq!(
        met,
        serde_json::Value::Bool(true),
        "timed out waiting for {what} ({expression}); the page shows: {}",
        eval(tab, "document.querySelector('main').innerText")
    );
}

/// A screenshot of the whole page at `width`, to `target/screenshots/{name}.png`: the
/// viewport is made as tall as the page first.
fn screenshot(tab: &Tab, name: &str, width: u32) {
    let height = eval(tab, "document.documentElement.scrollHeight")
        .as_u64()
        .unwrap();
    resize(tab, width, u32::try_from(height).unwrap());
    let png = tab
        .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    let dir = plugin_test_support::workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

const LIST_SETTLED: &str = "document.getElementById('plugins').dataset.list !== 'loading'";

/// The plugin names shown as cards, in order.
fn cards(tab: &Tab) -> serde_json::Value {
    eval(
        tab,
        "JSON.stringify([...document.querySelectorAll('#plugins [data-plugin]')]\
         .map(c => [c.dataset.plugin, c.querySelector('.badge').dataset.state]))",
    )
}

#[test]
fn page_renders_the_plugin_list_in_chromium_without_script_errors() {
    let server = TestServer::start(&["counter", "hello"], HttpOptions::new());
    let (browser, _profile) = browser();
    for (name, width, height) in [("desktop", 1280, 800), ("phone", 390, 844)] {
        let (tab, errors) = open(&browser, &server.url("/"), width, height);
        wait_for(&tab, LIST_SETTLED, "the first load of the plugin list");
        let list = eval(&tab, "document.getElementById('plugins').dataset.list");
        if list == "ready" {
            // One card per plugin the manager lists, with its state.
            let expected: Vec<(String, String)> = server
                .manager
                .list()
                .into_iter()
                .map(|p| (p.name, p.state.as_str().to_owned()))
                .collect();
            let shown: Vec<(String, String)> =
                serde_json::from_str(cards(&tab).as_str().unwrap()).unwrap();
            assert_eq!(shown, expected);
            let options = eval(
                &tab,
                "document.getElementById('execute-plugin').options.length",
            );
            assert_eq!(options, expected.len());
        } else {
            // The API could not be read: the page says why, in an alert.
            assert_eq!(list, "error");
            let notice = eval(
                &tab,
                "(n => n.hidden ? '' : n.textContent)(document.getElementById('notice'))",
            );
            assert!(
                notice
                    .as_str()
                    .is_some_and(|n| n.contains("/api/v1/plugins")),
                "{notice}"
            );
        }
        // The page fits the width: nothing scrolls sideways.
        let overflow = eval(
            &tab,
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth",
        );
        assert_eq!(overflow, true, "{name}: the page is wider than {width} px");
        screenshot(&tab, name, width);
        errors.assert_none();
    }
}

/// Types `token` into the page's token field and sets it.
fn give_token(tab: &Tab, token: &str) {
    tab.find_element("#token")
        .unwrap()
        .type_into(token)
        .unwrap();
    tab.find_element("#token-form button[type=submit]")
        .unwrap()
        .click()
        .unwrap();
}

#[test]
fn unload_button_unloads_the_plugin_and_the_page_shows_it() {
    let server = TestServer::start(&["counter", "hello"], with_token());
    let (browser, _profile) = browser();
    let (tab, errors) = open(&browser, &server.url("/"), 1280, 800);
    give_token(&tab, TOKEN);
    wait_for(
        &tab,
        "!!document.querySelector('#plugins [data-plugin=\"hello\"]')",
        "hello in the plugin list",
    );
    let unload = "#plugins [data-plugin=\"counter\"] button[data-action=\"unload\"]";
    wait_for(
        &tab,
        &format!("!!document.querySelector('{unload}:not(:disabled)')"),
        "counter's Unload button",
    );
    tab.find_element(unload).unwrap().click().unwrap();
    wait_for(
        &tab,
        "(c => !c || c.querySelector('.badge').dataset.state === 'unloaded' || c.querySelector('.badge').dataset.state === 'discovered')\
         (document.querySelector('#plugins [data-plugin=\"counter\"]'))",
        "counter's card to go or show it unloaded (or discovered: a folder no longer loaded)",
    );
    let state = server.manager.state("counter");
    assert!(
        matches!(state, None | Some(PluginState::Unloaded)),
        "counter is {state:?}"
    );
    assert_eq!(server.manager.state("hello"), Some(PluginState::Active));
    wait_for(
        &tab,
        "document.getElementById('status').classList.contains('ok')",
        "the outcome in the status line",
    );
    let status = eval(&tab, "document.getElementById('status').textContent");
    assert!(
        status.as_str().is_some_and(|s| s.contains("counter")),
        "{status}"
    );
    errors.assert_none();
}

#[test]
fn a_token_the_api_requires_is_asked_for_and_then_used() {
    let server = TestServer::start(&["hello"], with_token());
    let (browser, _profile) = browser();
    let (tab, errors) = open(&browser, &server.url("/"), 1280, 800);
    wait_for(
        &tab,
        "document.getElementById('plugins').dataset.list === 'error'",
        "the list to fail without a token",
    );
    let notice = eval(&tab, "document.getElementById('notice').textContent");
    assert!(
        notice.as_str().is_some_and(|n| n.contains("token")),
        "{notice}"
    );
    give_token(&tab, TOKEN);
    wait_for(
        &tab,
        "!!document.querySelector('#plugins [data-plugin=\"hello\"]')",
        "hello in the list once the token is given",
    );
    assert_eq!(eval(&tab, "document.getElementById('notice').hidden"), true);
    // The token is kept nowhere a script of this origin could read it: not in storage, a
    // cookie or the document (the field is emptied once it is read).
    assert_eq!(
        eval(
            &tab,
            "sessionStorage.length + localStorage.length + document.cookie.length"
        ),
        0
    );
    assert_eq!(eval(&tab, "document.getElementById('token').value"), "");
    assert_eq!(
        eval(
            &tab,
            &format!("document.documentElement.outerHTML.includes('{TOKEN}')")
        ),
        false
    );
    // So a new load of the page has none, and asks again.
    tab.reload(true, None)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    wait_for(
        &tab,
        "document.getElementById('plugins').dataset.list === 'error'",
        "the list to fail again after a reload",
    );
    errors.assert_none();
}

// --- what a hostile page can do in a real browser ---

/// The script of a reflected-XSS attack on a plugin route: it looks for the token where the
/// page could have kept it, then tries to disable `hello` with whatever it found. It writes
/// `started` into the title at once, and `ran:<storage>|<cookie>:<status>` when done.
const STEAL: &str = "<title>before</title><script>
document.title = 'started';
const token = sessionStorage.getItem('plugin-http.token') || localStorage.getItem('plugin-http.token') || '';
const found = [sessionStorage.length + localStorage.length, document.cookie].join('|');
fetch('/api/v1/plugins/hello/disable', { method: 'POST',
    headers: token ? { Authorization: 'Bearer ' + token } : {} })
  .then(r => { document.title = 'ran:' + found + ':' + r.status; })
  .catch(() => { document.title = 'ran:' + found + ':failed'; });
</script>";

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_script_a_plugin_route_reflects_cannot_reach_the_token_or_the_api() {
    let server = TestServer::start(&["hello", "reflect"], with_token());
    let page = format!("/reflect/page?html={}", percent_encode(STEAL));

    // Served as the plugin wrote it, with the default policy: no script runs.
    let response = agent().get(server.url(&page)).call().unwrap();
    let policy = response
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(policy.starts_with("sandbox"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert_eq!(
        response.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );

    let (browser, _profile) = browser();
    let (tab, _errors) = open(&browser, &server.url("/"), 1280, 800);
    give_token(&tab, TOKEN);
    wait_for(
        &tab,
        "!!document.querySelector('#plugins [data-plugin=\"hello\"]')",
        "the list once the token is given",
    );
    // The operator follows a link to the plugin's page in the same tab.
    tab.navigate_to(&server.url(&page))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    // Inline scripts run while the document is parsed, before it is loaded: this one did
    // not, because the policy forbids it.
    assert_eq!(eval(&tab, "document.title"), "before");

    // A plugin that declares a policy of its own that allows its scripts (the worst case):
    // the script runs, but finds no token anywhere, and the API refuses it.
    let own = percent_encode("script-src 'unsafe-inline'; connect-src 'self'");
    tab.navigate_to(&server.url(&format!("{page}&csp={own}")))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    wait_for(
        &tab,
        "document.title.startsWith('ran:')",
        "the script to finish",
    );
    assert_eq!(eval(&tab, "document.title"), "ran:0|:401");
    assert_eq!(server.manager.state("hello"), Some(PluginState::Active));
    assert!(!server.manager.is_disabled("hello"));
}

/// A server on 127.0.0.1 of its own that answers every request with `html`: a page of
/// another origin. Runs until the test process ends.
fn attacker_site(html: String) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    addr
}

#[test]
fn a_page_of_another_origin_cannot_change_what_runs() {
    // No token, and writes allowed without one: only the origin check stands between the
    // page and the API (with the default, read-only API, the answer is 403 as well).
    for options in [
        HttpOptions::new().unauthenticated_writes(true),
        HttpOptions::new(),
    ] {
        let server = TestServer::start(&["counter", "hello"], options);
        let api = server.url("/api/v1/plugins");
        let html = format!(
            "<title>before</title><form id=f method=POST action='{api}/hello/disable'></form>
             <script>
             Promise.allSettled([
               fetch('{api}/counter/unload', {{ method: 'POST', mode: 'no-cors' }}),
               fetch('{api}/hello/execute', {{ method: 'POST', mode: 'no-cors',
                 headers: {{ 'Content-Type': 'text/plain' }}, body: '{{\"values\":{{}}}}' }}),
             ]).then(() => {{ document.title = 'sent'; }});
             </script>"
        );
        let site = attacker_site(html);
        let (browser, _profile) = browser();
        let (tab, _errors) = open(&browser, &format!("http://{site}/"), 1280, 800);
        wait_for(&tab, "document.title === 'sent'", "the page's requests");
        // And a plain form post, which needs no script and sends no preflight.
        tab.evaluate("document.getElementById('f').submit()", false)
            .unwrap();
        wait_for(
            &tab,
            "location.href.includes('/hello/disable')",
            "the form's navigation",
        );
        let answer = eval(&tab, "document.body.innerText");
        let kind = answer.as_str().unwrap_or_default();
        assert!(
            kind.contains("cross_origin"),
            "the form post was answered: {kind}"
        );
        assert_eq!(server.manager.state("counter"), Some(PluginState::Active));
        assert_eq!(server.manager.state("hello"), Some(PluginState::Active));
        assert!(!server.manager.is_disabled("hello"));
    }
}

#[test]
fn a_rebound_host_name_gets_nothing() {
    let server = TestServer::start(&["hello", "reflect"], with_token());
    let port = server.addr().port();
    // The browser resolves the attacker's name to 127.0.0.1, as a rebinding DNS server
    // makes it do: the page's origin is then the attacker's, and its requests reach us.
    let (browser, _profile) = browser_with(&["--host-resolver-rules=MAP rebind.example 127.0.0.1"]);
    let (tab, _errors) = open(
        &browser,
        &format!("http://rebind.example:{port}/reflect/ok"),
        1280,
        800,
    );
    let shown = eval(&tab, "document.body.innerText");
    assert!(
        shown
            .as_str()
            .is_some_and(|s| s.contains("misdirected_request")),
        "{shown}"
    );
    let status = tab
        .evaluate("fetch('/api/v1/openapi.json').then(r => r.status)", true)
        .unwrap()
        .value
        .unwrap();
    assert_eq!(status, 421);
    // The same server answers for its address.
    let ok = agent().get(server.url("/reflect/ok")).call().unwrap();
    assert_eq!(ok.status(), 200);
}
