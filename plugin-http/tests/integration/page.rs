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

use crate::util::{agent, TestServer};

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
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's package with `apt-get install -y chromium`"
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
            .map(OsStr::new)
            .to_vec(),
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
    let met = tab
        .evaluate(&waiter, true)
        .ok()
        .and_then(|r| r.value)
        .unwrap_or(serde_json::Value::Null);
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

#[test]
fn unload_button_unloads_the_plugin_and_the_page_shows_it() {
    let server = TestServer::start(&["counter", "hello"], HttpOptions::new());
    let (browser, _profile) = browser();
    let (tab, errors) = open(&browser, &server.url("/"), 1280, 800);
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
    let options = HttpOptions::new().token("page-test-token");
    let server = TestServer::start(&["hello"], options);
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
    tab.find_element("#token")
        .unwrap()
        .type_into("page-test-token")
        .unwrap();
    tab.find_element("#token-form button[type=submit]")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "!!document.querySelector('#plugins [data-plugin=\"hello\"]')",
        "hello in the list once the token is given",
    );
    let stored = eval(&tab, "sessionStorage.getItem('plugin-http.token')");
    assert_eq!(stored, "page-test-token");
    assert_eq!(eval(&tab, "document.getElementById('notice').hidden"), true);
    errors.assert_none();
}
