//! Tests of the api area: the management API under /api/v1 over a real socket: listing,
//! describing, executing, the lifecycle operations, the token, the body limit, JSON errors,
//! the OpenAPI document and package uploads.

use std::io::Cursor;
use std::time::{Duration, Instant};

use plugin_http::HttpOptions;
use serde_json::{json, Value};

use crate::util::{agent, with_token, TestServer, TOKEN};

/// A response: its status, its `WWW-Authenticate` header, and its body as JSON (`Null` if
/// it is not JSON).
struct Reply {
    status: u16,
    www_authenticate: Option<String>,
    text: String,
    json: Value,
}

fn reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = result.expect("the server answers");
    let status = response.status().as_u16();
    let www_authenticate = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        www_authenticate,
        text,
        json,
    }
}

/// A GET with the tests' token.
fn get(server: &TestServer, path: &str) -> Reply {
    get_with_token(server, path, Some(TOKEN))
}

fn get_with_token(server: &TestServer, path: &str, token: Option<&str>) -> Reply {
    let mut request = agent().get(server.url(path));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    reply(request.call())
}

/// A POST of `body` as JSON, with the tests' token.
fn post_json(server: &TestServer, path: &str, body: &str) -> Reply {
    reply(
        agent()
            .post(server.url(path))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send(body),
    )
}

/// A POST without a body, with the tests' token.
fn post_empty(server: &TestServer, path: &str) -> Reply {
    reply(
        agent()
            .post(server.url(path))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send_empty(),
    )
}

/// Asserts `reply` is the API's error shape with `status` and `kind`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, kind: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.json["error"]["kind"], kind, "{}", reply.text);
    let message = reply.json["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "no message: {}", reply.text);
}

fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["plugins"]
        .as_array()
        .expect("a `plugins` array")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {list}"))
}

#[test]
fn list_and_describe_are_true_to_the_manager() {
    let server = TestServer::start(&["hello", "counter", "label-router"], with_token());
    let list = get(&server, "/api/v1/plugins");
    assert_eq!(list.status, 200, "{}", list.text);
    let statuses = server.manager.list();
    assert_eq!(
        list.json["plugins"].as_array().unwrap().len(),
        statuses.len()
    );
    for status in &statuses {
        let e = entry(&list.json, &status.name);
        assert_eq!(e["state"], status.state.as_str());
        assert_eq!(e["state"], "active");
        assert_eq!(e["disabled"], false);
        let version = status.active.as_ref().unwrap().version.to_string();
        assert_eq!(e["version"], version);
        assert_eq!(e["calls_in_flight"], status.calls_in_flight);
        assert_eq!(e["stuck_calls"], status.stuck_calls);
        assert_eq!(e["retained_libraries"], status.retained_libraries);
        assert!(status.retained_libraries >= 1);
    }
    assert_eq!(entry(&list.json, "hello")["routes"], json!([]));
    assert_eq!(
        entry(&list.json, "label-router")["routes"],
        json!([
            { "route": "/api/plugin/sample/:id", "method": "GET", "label": "plugin.get" },
            { "route": "/api/plugin/samples", "method": "POST", "label": "plugin.post" },
        ])
    );

    let hello = get(&server, "/api/v1/plugins/hello");
    assert_eq!(hello.status, 200, "{}", hello.text);
    let summary = server.manager.get("hello").unwrap().summary().unwrap();
    let d = &hello.json;
    assert_eq!(d["name"], "hello");
    assert_eq!(d["state"], "active");
    assert_eq!(d["version"], summary.version.to_string());
    assert_eq!(d["sdk_version"], summary.sdk_version);
    assert_eq!(
        d["running_copy"],
        summary.running_copy.display().to_string()
    );
    let loaded_at = d["loaded_at"].as_str().expect("loaded_at is a string");
    assert!(
        loaded_at.ends_with('Z') && loaded_at.contains('T'),
        "{loaded_at}"
    );
    assert_eq!(d["manifest"]["name"], "hello");
    assert_eq!(d["manifest"]["version"], summary.version.to_string());
    assert_eq!(
        d["manifest"]["description"],
        summary.manifest.description.clone().unwrap()
    );
    assert_eq!(d["stats"]["calls_in_flight"], 0);
    assert_eq!(d["stats"]["stuck_calls"], 0);
    assert!(d["stats"]["retained_libraries"].as_u64().unwrap() >= 1);
    assert!(d.as_object().unwrap().contains_key("metrics"));
    assert_eq!(
        d["metrics"]["calls"], 0,
        "nothing called hello through HTTP yet"
    );
    let router = get(&server, "/api/v1/plugins/label-router");
    assert_eq!(router.json["routes"][1]["label"], "plugin.post");

    assert_error(&get(&server, "/api/v1/plugins/nope"), 404, "not_found");
    // A name is one folder of the base directory, never a path out of it.
    assert_error(&get(&server, "/api/v1/plugins/..%2F.."), 404, "not_found");
    assert_error(&get(&server, "/api/v1/no-such-route"), 404, "not_found");
}

#[test]
fn execute_calls_the_plugin_and_returns_its_values() {
    let server = TestServer::start(&["hello", "label-router"], with_token());
    let ok = post_json(
        &server,
        "/api/v1/plugins/hello/execute",
        r#"{"values":{"sample":{"name":"world"}}}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json["values"]["greeting"], "Hello, world!");
    assert_eq!(ok.json["values"]["sample"], json!({ "name": "world" }));

    // hello without `sample` refuses its input.
    let refused = post_json(&server, "/api/v1/plugins/hello/execute", r#"{"values":{}}"#);
    assert_error(&refused, 400, "invalid_input");
    assert!(refused.text.contains("sample"), "{}", refused.text);

    let labelled = post_json(
        &server,
        "/api/v1/plugins/label-router/execute",
        r#"{"values":{"id":"7"},"label":"plugin.get"}"#,
    );
    assert_eq!(labelled.status, 200, "{}", labelled.text);
    assert_eq!(labelled.json["values"]["served_label"], "plugin.get");
    assert_eq!(labelled.json["values"]["item"]["id"], "7");

    let missing = post_json(&server, "/api/v1/plugins/nope/execute", "{}");
    assert_error(&missing, 404, "not_found");
}

#[test]
fn execute_deadline_is_timeout_ms_capped_to_the_request_timeout() {
    let server = TestServer::start(
        &["slow"],
        with_token().request_timeout(Duration::from_millis(300)),
    );
    // An hour asked for; the server's 300 ms apply.
    let started = Instant::now();
    let capped = post_json(
        &server,
        "/api/v1/plugins/slow/execute",
        r#"{"timeout_ms":3600000}"#,
    );
    assert_error(&capped, 504, "deadline_exceeded");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // A bounded call that finishes well within its deadline returns its values.
    let done = post_json(
        &server,
        "/api/v1/plugins/slow/execute",
        r#"{"values":{"max_steps":2,"step_ms":1},"timeout_ms":250}"#,
    );
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.json["values"]["steps"], 2);
}

#[test]
fn lifecycle_operations_change_what_runs() {
    let server = TestServer::start(&["hello", "counter"], with_token());
    let count = |server: &TestServer| post_json(server, "/api/v1/plugins/counter/execute", "{}");
    assert_eq!(count(&server).json["values"]["count"], 1);

    let unloaded = post_empty(&server, "/api/v1/plugins/counter/unload");
    assert_eq!(unloaded.status, 200, "{}", unloaded.text);
    assert_eq!(unloaded.json["name"], "counter");
    assert_eq!(unloaded.json["state"], "unloaded");
    assert_eq!(unloaded.json["version"], Value::Null);
    assert_eq!(
        unloaded.json["drain"],
        json!({ "clean": true, "stuck_calls": 0, "killed_calls": 0 })
    );
    assert!(server.manager.get("counter").is_err());
    let listed = get(&server, "/api/v1/plugins");
    let counter = entry(&listed.json, "counter");
    assert_ne!(counter["state"], "active");
    assert_eq!(counter["version"], Value::Null);
    assert_error(&count(&server), 404, "not_found");
    assert_error(
        &post_empty(&server, "/api/v1/plugins/counter/unload"),
        404,
        "not_found",
    );

    let loaded = post_empty(&server, "/api/v1/plugins/counter/load");
    assert_eq!(loaded.status, 200, "{}", loaded.text);
    assert_eq!(loaded.json["state"], "active");
    assert_eq!(loaded.json["version"], "0.1.0");
    // on_load reset the count.
    assert_eq!(count(&server).json["values"]["count"], 1);
    assert_error(
        &post_empty(&server, "/api/v1/plugins/counter/load"),
        409,
        "already_loaded",
    );
    assert_error(
        &post_empty(&server, "/api/v1/plugins/nope/load"),
        404,
        "not_found",
    );

    let disabled = post_empty(&server, "/api/v1/plugins/counter/disable");
    assert_eq!(disabled.status, 200, "{}", disabled.text);
    assert_eq!(disabled.json["state"], "disabled");
    assert!(server.manager.is_disabled("counter"));
    let listed = get(&server, "/api/v1/plugins");
    assert_eq!(entry(&listed.json, "counter")["state"], "disabled");
    assert_eq!(entry(&listed.json, "counter")["disabled"], true);
    assert_error(
        &post_empty(&server, "/api/v1/plugins/counter/load"),
        409,
        "disabled",
    );
    assert_eq!(count(&server).status, 503);

    let enabled = post_empty(&server, "/api/v1/plugins/counter/enable");
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    assert_eq!(enabled.json["state"], "active");
    assert!(!server.manager.is_disabled("counter"));
    assert_eq!(count(&server).json["values"]["count"], 1);

    let reloaded = post_empty(&server, "/api/v1/plugins/counter/reload");
    assert_eq!(reloaded.status, 200, "{}", reloaded.text);
    assert_eq!(reloaded.json["state"], "active");
    assert_eq!(reloaded.json["version"], "0.1.0");
    assert_eq!(reloaded.json["previous"], "0.1.0");
    assert_eq!(reloaded.json["drain"]["clean"], true);
    // A folder that fails the loader's checks: 422 with the host's message, listed failed.
    let broken = server.base.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("plugin.json"), "{ \"name\": \"broken\" ").unwrap();
    let refused = post_empty(&server, "/api/v1/plugins/broken/load");
    assert_error(&refused, 422, "invalid_plugin");
    assert!(refused.text.contains("plugin.json"), "{}", refused.text);
    let listed = get(&server, "/api/v1/plugins");
    assert_eq!(entry(&listed.json, "broken")["state"], "failed");
    assert!(entry(&listed.json, "broken")["reason"].is_string());
    // hello was never touched.
    assert_eq!(server.manager.state("hello").unwrap().as_str(), "active");
}

#[test]
fn a_token_guards_every_route_but_the_openapi_document() {
    const SECRET: &str = "the-server-token-71b3e0";
    let server = TestServer::start(&["hello"], HttpOptions::new().token(SECRET).unwrap());
    let missing = get_with_token(&server, "/api/v1/plugins", None);
    assert_error(&missing, 401, "unauthorized");
    let challenge = missing.www_authenticate.expect("a WWW-Authenticate header");
    assert!(challenge.starts_with("Bearer"), "{challenge}");

    let wrong = get_with_token(&server, "/api/v1/plugins", Some(&SECRET[1..]));
    assert_error(&wrong, 401, "unauthorized");
    assert!(wrong.www_authenticate.is_some());
    let basic = reply(
        agent()
            .get(server.url("/api/v1/plugins"))
            .header("Authorization", format!("Basic {SECRET}"))
            .call(),
    );
    assert_error(&basic, 401, "unauthorized");
    // The helpers send another token: this server's refuses it.
    let unauthenticated_call = post_json(
        &server,
        "/api/v1/plugins/hello/execute",
        r#"{"values":{"sample":{"name":"x"}}}"#,
    );
    assert_error(&unauthenticated_call, 401, "unauthorized");
    assert_error(
        &post_empty(&server, "/api/v1/plugins/hello/unload"),
        401,
        "unauthorized",
    );
    assert!(server.manager.get("hello").is_ok());

    let right = get_with_token(&server, "/api/v1/plugins", Some(SECRET));
    assert_eq!(right.status, 200, "{}", right.text);
    assert_eq!(entry(&right.json, "hello")["state"], "active");

    let doc = get(&server, "/api/v1/openapi.json");
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc.json["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/plugins",
        "/api/v1/plugins/{name}",
        "/api/v1/plugins/{name}/execute",
        "/api/v1/plugins/{name}/reload",
    ] {
        assert!(paths.contains_key(path), "{path} missing from {paths:?}");
    }
    // The upload is described when it is built in.
    let upload = &doc.json["paths"]["/api/v1/packages"]["post"];
    assert_eq!(
        upload["requestBody"]["content"]["multipart/form-data"].is_object(),
        cfg!(feature = "uploads"),
        "{upload}"
    );
    assert_eq!(
        doc.json["paths"]["/api/v1/openapi.json"]["get"]["security"],
        Value::Null
    );
    assert_eq!(
        doc.json["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc.json["paths"]["/api/v1/plugins"]["get"]["security"],
        json!([{ "bearer": [] }])
    );
}

#[test]
fn an_oversize_body_is_refused_with_413() {
    let server = TestServer::start(&["hello"], with_token().body_limit(1024));
    let body = json!({ "values": { "sample": { "name": "x".repeat(4096) } } }).to_string();
    assert!(body.len() > 4096);
    let sized = post_json(&server, "/api/v1/plugins/hello/execute", &body);
    assert_eq!(sized.status, 413, "{}", sized.text);

    // Without a Content-Length (chunked), the limit is met while reading: a JSON error.
    let chunked = reply(
        agent()
            .post(server.url("/api/v1/plugins/hello/execute"))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send(ureq::SendBody::from_owned_reader(Cursor::new(
                body.into_bytes(),
            ))),
    );
    assert_error(&chunked, 413, "payload_too_large");

    // A body under the limit still works.
    let small = post_json(
        &server,
        "/api/v1/plugins/hello/execute",
        r#"{"values":{"sample":{"name":"x"}}}"#,
    );
    assert_eq!(small.status, 200, "{}", small.text);
}

#[test]
fn malformed_requests_get_json_errors() {
    let server = TestServer::start(&["hello"], with_token());
    let path = "/api/v1/plugins/hello/execute";
    let bad = post_json(&server, path, r#"{"values": {"sample": "#);
    assert_error(&bad, 400, "invalid_input");
    let unknown = post_json(&server, path, r#"{"valeus": {}}"#);
    assert_error(&unknown, 400, "invalid_input");
    assert!(unknown.text.contains("valeus"), "{}", unknown.text);
    let wrong_type = post_json(&server, path, r#"{"values": [1, 2]}"#);
    assert_error(&wrong_type, 400, "invalid_input");
    let no_type = reply(
        agent()
            .post(server.url(path))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send("{}"),
    );
    assert_error(&no_type, 415, "unsupported_media_type");
}

// --- package uploads ---

#[cfg(not(feature = "uploads"))]
#[test]
fn without_the_uploads_feature_uploads_answer_501() {
    let server = TestServer::start(&[], with_token());
    let answer = post_empty(&server, "/api/v1/packages");
    assert_error(&answer, 501, "uploads_disabled");
}

#[cfg(feature = "uploads")]
mod uploads {
    use std::path::Path;

    use plugin_package::TrustedKeys;

    use super::*;
    use crate::util::fixtures;

    const BOUNDARY: &str = "plugin-http-test-boundary-5c1e9a";

    /// A multipart/form-data body with a `package` part and, if given, a `signature` part.
    fn multipart(package: &[u8], signature: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"package\"; \
             filename=\"hello-0.1.0.plg\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(package);
        body.extend_from_slice(b"\r\n");
        if let Some(signature) = signature {
            body.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"signature\"; \
                 filename=\"hello-0.1.0.plg.minisig\"\r\nContent-Type: text/plain\r\n\r\n\
                 {signature}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }

    fn upload(server: &TestServer, query: &str, body: Vec<u8>) -> Reply {
        reply(
            agent()
                .post(server.url(&format!("/api/v1/packages{query}")))
                .header("Authorization", format!("Bearer {TOKEN}"))
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .send(body),
        )
    }

    /// hello packed and signed in `dir`: the package's bytes, its signature, the keys that trust
    /// it, and the signing key's ID.
    fn signed_hello(dir: &Path) -> (Vec<u8>, String, TrustedKeys, String) {
        let source = dir.join("source");
        std::fs::create_dir(&source).unwrap();
        let folder = fixtures().install(&source, "hello");
        let keys = plugin_package::generate_keypair(&dir.join("test-key")).unwrap();
        let packed = plugin_package::pack(&folder, Some(&dir.join("hello-0.1.0.plg"))).unwrap();
        let signature = plugin_package::sign_package(&packed.path, &keys.secret).unwrap();
        let trusted = TrustedKeys::from_files([&keys.public]).unwrap();
        (
            std::fs::read(&packed.path).unwrap(),
            std::fs::read_to_string(signature).unwrap(),
            trusted,
            keys.key_id,
        )
    }

    /// Every entry under `dir`, hidden ones included, with its size.
    fn tree(dir: &Path) -> Vec<(String, u64)> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let len = if meta.is_dir() { 0 } else { meta.len() };
            entries.push((entry.file_name().to_string_lossy().into_owned(), len));
            if meta.is_dir() {
                for (name, len) in tree(&entry.path()) {
                    entries.push((
                        format!("{}/{name}", entry.file_name().to_string_lossy()),
                        len,
                    ));
                }
            }
        }
        entries.sort();
        entries
    }

    #[test]
    fn a_signed_upload_is_installed_and_loaded() {
        let work = tempfile::tempdir().unwrap();
        let (package, signature, keys, key_id) = signed_hello(work.path());
        let server = TestServer::start(&["counter"], with_token().trusted_keys(keys));
        assert!(server.manager.get("hello").is_err());

        // No `package` part, or no signature: refused, nothing installed.
        let no_package = format!("--{BOUNDARY}--\r\n").into_bytes();
        assert_error(&upload(&server, "", no_package), 400, "invalid_input");
        let unsigned = upload(&server, "", multipart(&package, None));
        assert_error(&unsigned, 422, "package_refused");
        assert!(!server.base.path().join("hello").exists());

        let installed = upload(&server, "", multipart(&package, Some(&signature)));
        assert_eq!(installed.status, 201, "{}", installed.text);
        assert_eq!(installed.json["name"], "hello");
        assert_eq!(installed.json["version"], "0.1.0");
        assert_eq!(installed.json["previous"], Value::Null);
        assert_eq!(installed.json["signed_by"], key_id);
        assert_eq!(installed.json["upgraded"], false);
        assert_eq!(installed.json["state"], "active");
        assert!(server.base.path().join("hello/plugin.json").is_file());

        let called = post_json(
            &server,
            "/api/v1/plugins/hello/execute",
            r#"{"values":{"sample":{"name":"upload"}}}"#,
        );
        assert_eq!(called.status, 200, "{}", called.text);
        assert_eq!(called.json["values"]["greeting"], "Hello, upload!");

        // The same package again, with force: a hot upgrade of the running plugin.
        let again = upload(
            &server,
            "?force=true",
            multipart(&package, Some(&signature)),
        );
        assert_eq!(again.status, 201, "{}", again.text);
        assert_eq!(again.json["previous"], "0.1.0");
        assert_eq!(again.json["upgraded"], true);
        assert_eq!(again.json["drain"]["clean"], true);
        assert_error(
            &upload(
                &server,
                "?force=maybe",
                multipart(&package, Some(&signature)),
            ),
            400,
            "invalid_input",
        );
    }

    #[test]
    fn uploads_are_refused_without_trusted_keys() {
        let work = tempfile::tempdir().unwrap();
        let (package, signature, _, _) = signed_hello(work.path());
        let server = TestServer::start(&[], with_token());
        let refused = upload(&server, "", multipart(&package, Some(&signature)));
        assert_error(&refused, 403, "uploads_disabled");
        assert!(refused.text.contains("key"), "{}", refused.text);
        assert!(!server.base.path().join("hello").exists());
    }

    #[test]
    fn a_tampered_upload_is_refused_and_changes_nothing() {
        let work = tempfile::tempdir().unwrap();
        let (mut package, signature, keys, _) = signed_hello(work.path());
        let server = TestServer::start(&["counter"], with_token().trusted_keys(keys));
        let before = tree(server.base.path());
        let middle = package.len() / 2;
        package[middle] ^= 0x55;
        let refused = upload(&server, "", multipart(&package, Some(&signature)));
        assert_error(&refused, 422, "package_refused");
        assert_eq!(tree(server.base.path()), before);
        assert!(server.manager.get("hello").is_err());
        assert_eq!(server.manager.list().len(), 1);
    }
}
