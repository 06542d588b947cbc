//! Table-driven tests of manifest parsing, validation, loading and library names.

use super::*;
use serde_json::{json, Value};

const FILE: &str = "plugins/hello/plugin.json";

const VALID: &str = r#"{
"name": "hello",
"version": "0.1.0",
"description": "A sample plugin",
"maintainers": ["someone@example.com"],
"home": "https://example.com/hello",
"source": { "mode": "local_so", "path": "hello" },
"http_services": {
    "driver": "axum",
    "routes": [
        { "route": "/api/plugin/sample/:id", "method": "GET", "label": "plugin.get" },
        { "route": "/api/plugin/samples", "method": "POST", "label": "plugin.post" }
    ]
},
"requires": { "host": ">=0.1, <2" },
"sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
}"#;

/// Which failure a bad manifest must produce.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `ManifestError::Syntax` about the document as a whole.
    Syntax,
    /// `ManifestError::Syntax` located in this field.
    SyntaxIn(&'static str),
    /// `ManifestError::Invalid` about this field.
    Invalid(&'static str),
}

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new(FILE))
}

fn valid_value() -> Value {
    serde_json::from_str(VALID).unwrap()
}

/// The valid manifest with the value at JSON pointer `pointer` set
/// (replaced, or added to its parent object).
fn with(pointer: &str, value: Value) -> String {
    let mut root = valid_value();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match root.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("cannot set {pointer} in {other}"),
    }
    root.to_string()
}

/// The valid manifest without the value at `pointer` (an object member).
fn without(pointer: &str) -> String {
    let mut root = valid_value();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    root.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key)
        .unwrap();
    root.to_string()
}

fn route(route: &str, method: &str, label: &str) -> Value {
    json!({ "route": route, "method": method, "label": label })
}

fn bad_manifests() -> Vec<(&'static str, String, Expect)> {
    use Expect::*;
    let s = |text: &str| text.to_string();
    vec![
        // Shape and syntax.
        ("empty string", s(""), Syntax),
        ("whitespace only", s("  \n"), Syntax),
        ("not json", s("not json"), Syntax),
        ("top-level array", s("[]"), Syntax),
        ("top-level string", s("\"hello\""), Syntax),
        ("empty object (missing name)", s("{}"), Syntax),
        ("trailing garbage", format!("{VALID} x"), Syntax),
        ("two objects", format!("{VALID}{VALID}"), Syntax),
        ("trailing comma", s(r#"{"name": "hello",}"#), Syntax),
        ("missing version", without("/version"), Syntax),
        ("missing source", without("/source"), Syntax),
        (
            "missing source.path",
            without("/source/path"),
            SyntaxIn("source"),
        ),
        (
            "missing source.mode",
            without("/source/mode"),
            SyntaxIn("source"),
        ),
        (
            "unknown top-level field",
            with("/foo", json!(1)),
            SyntaxIn("foo"),
        ),
        (
            "unknown field in source",
            with("/source/extra", json!("x")),
            SyntaxIn("source.extra"),
        ),
        (
            "unknown field in route",
            with("/http_services/routes/0/x", json!(1)),
            SyntaxIn("http_services.routes[0].x"),
        ),
        (
            "unknown field in requires",
            with("/requires/plugin", json!("1")),
            SyntaxIn("requires.plugin"),
        ),
        (
            "maintainer is a number",
            with("/maintainers", json!(["a@b.c", 7])),
            SyntaxIn("maintainers[1]"),
        ),
        (
            "route method is a number",
            with("/http_services/routes/1/method", json!(1)),
            SyntaxIn("http_services.routes[1].method"),
        ),
        (
            "route is not an object",
            with("/http_services/routes/0", json!("/x")),
            SyntaxIn("http_services.routes[0]"),
        ),
        (
            "sha256 is a number",
            with("/sha256", json!(1)),
            SyntaxIn("sha256"),
        ),
        // Errors inside nested values name the full path, at any depth.
        (
            "route label is an array",
            with("/http_services/routes/1/label", json!([])),
            SyntaxIn("http_services.routes[1].label"),
        ),
        (
            "route label is null",
            with("/http_services/routes/0/label", Value::Null),
            SyntaxIn("http_services.routes[0].label"),
        ),
        (
            "route without method",
            without("/http_services/routes/1/method"),
            SyntaxIn("http_services.routes[1]"),
        ),
        (
            "unknown field in second route",
            with("/http_services/routes/1/methods", json!(["GET"])),
            SyntaxIn("http_services.routes[1].methods"),
        ),
        (
            "unknown field in http_services",
            with("/http_services/port", json!(8080)),
            SyntaxIn("http_services.port"),
        ),
        (
            "routes is an object",
            with("/http_services/routes", json!({})),
            SyntaxIn("http_services.routes"),
        ),
        (
            "file cut inside a route",
            s(&VALID[..VALID.find("plugin.get").unwrap()]),
            SyntaxIn("http_services.routes[0].label"),
        ),
        (
            "requires.host is a number",
            with("/requires/host", json!(2)),
            SyntaxIn("requires.host"),
        ),
        (
            "duplicate key in source",
            s(r#"{"name":"a","version":"1.0.0","source":{"mode":"local_so","mode":"local_so"}}"#),
            SyntaxIn("source"),
        ),
        ("duplicate key", s(r#"{"name":"a","name":"b"}"#), Syntax),
        (
            "version is a number",
            with("/version", json!(1)),
            SyntaxIn("version"),
        ),
        (
            "maintainers is a string",
            with("/maintainers", json!("x")),
            SyntaxIn("maintainers"),
        ),
        ("name is null", with("/name", Value::Null), SyntaxIn("name")),
        (
            "unknown source.mode",
            with("/source/mode", json!("dll")),
            SyntaxIn("source.mode"),
        ),
        (
            "http_services without routes",
            with("/http_services", json!({"driver": "axum"})),
            SyntaxIn("http_services"),
        ),
        (
            "http_services without driver",
            with("/http_services", json!({"routes": []})),
            SyntaxIn("http_services"),
        ),
        (
            "requires without host",
            with("/requires", json!({})),
            SyntaxIn("requires"),
        ),
        // version
        (
            "version 1",
            with("/version", json!("1")),
            Invalid("version"),
        ),
        (
            "version v1.0.0",
            with("/version", json!("v1.0.0")),
            Invalid("version"),
        ),
        (
            "version 01.0.0",
            with("/version", json!("01.0.0")),
            Invalid("version"),
        ),
        (
            "version with trailing space",
            with("/version", json!("1.0.0 ")),
            Invalid("version"),
        ),
        (
            "version 1.0",
            with("/version", json!("1.0")),
            Invalid("version"),
        ),
        // name
        ("empty name", with("/name", json!("")), Invalid("name")),
        ("name ..", with("/name", json!("..")), Invalid("name")),
        ("name a/b", with("/name", json!("a/b")), Invalid("name")),
        ("name a b", with("/name", json!("a b")), Invalid("name")),
        ("name .x", with("/name", json!(".x")), Invalid("name")),
        ("name -x", with("/name", json!("-x")), Invalid("name")),
        (
            "name 65 chars",
            with("/name", json!("a".repeat(65))),
            Invalid("name"),
        ),
        (
            "name non-ascii",
            with("/name", json!("héllo")),
            Invalid("name"),
        ),
        // maintainers
        (
            "maintainer without @",
            with("/maintainers/0", json!("someone")),
            Invalid("maintainers[0]"),
        ),
        (
            "maintainer two @",
            with("/maintainers", json!(["a@b.c", "a@b@c.d"])),
            Invalid("maintainers[1]"),
        ),
        (
            "maintainer empty local",
            with("/maintainers/0", json!("@example.com")),
            Invalid("maintainers[0]"),
        ),
        (
            "maintainer domain no dot",
            with("/maintainers/0", json!("a@localhost")),
            Invalid("maintainers[0]"),
        ),
        (
            "maintainer domain empty label",
            with("/maintainers/0", json!("a@example..com")),
            Invalid("maintainers[0]"),
        ),
        (
            "maintainer whitespace",
            with("/maintainers/0", json!("a b@example.com")),
            Invalid("maintainers[0]"),
        ),
        (
            "maintainer control char",
            with("/maintainers/0", json!("a\u{7}@example.com")),
            Invalid("maintainers[0]"),
        ),
        // home
        (
            "home not a URL",
            with("/home", json!("example.com")),
            Invalid("home"),
        ),
        (
            "home ftp",
            with("/home", json!("ftp://example.com/x")),
            Invalid("home"),
        ),
        (
            "home without host",
            with("/home", json!("https:///x")),
            Invalid("home"),
        ),
        (
            "home with space",
            with("/home", json!("https://example.com/a b")),
            Invalid("home"),
        ),
        // source.path, local_so
        (
            "empty source.path",
            with("/source/path", json!("")),
            Invalid("source.path"),
        ),
        (
            "absolute source.path",
            with("/source/path", json!("/usr/lib/x.so")),
            Invalid("source.path"),
        ),
        (
            "backslash-rooted source.path",
            with("/source/path", json!("\\x.dll")),
            Invalid("source.path"),
        ),
        (
            "drive prefix",
            with("/source/path", json!("C:\\x.dll")),
            Invalid("source.path"),
        ),
        (
            "drive-relative",
            with("/source/path", json!("c:x.dll")),
            Invalid("source.path"),
        ),
        (
            "parent path",
            with("/source/path", json!("../x")),
            Invalid("source.path"),
        ),
        (
            "escaping path",
            with("/source/path", json!("sub/../../x")),
            Invalid("source.path"),
        ),
        (
            "escaping windows path",
            with("/source/path", json!("sub\\..\\x")),
            Invalid("source.path"),
        ),
        (
            "NUL in path",
            with("/source/path", json!("he\u{0}llo")),
            Invalid("source.path"),
        ),
        (
            "folder path",
            with("/source/path", json!("sub/")),
            Invalid("source.path"),
        ),
        // source.path, remote_git
        (
            "remote_git not a remote",
            with("/source", json!({"mode": "remote_git", "path": "hello"})),
            Invalid("source.path"),
        ),
        (
            "remote_git with space",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a b.git"}),
            ),
            Invalid("source.path"),
        ),
        (
            "remote_git empty",
            with("/source", json!({"mode": "remote_git", "path": ""})),
            Invalid("source.path"),
        ),
        (
            "remote_git without a scheme",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "example.com/me/hello.git"}),
            ),
            Invalid("source.path"),
        ),
        (
            "remote_git that is only a scheme",
            with("/source", json!({"mode": "remote_git", "path": "https://"})),
            Invalid("source.path"),
        ),
        (
            "remote_git scp-like without a user",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "@example.com:me/hello.git"}),
            ),
            Invalid("source.path"),
        ),
        (
            "remote_git scp-like without a host",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "git@:me/hello.git"}),
            ),
            Invalid("source.path"),
        ),
        (
            "remote_git with an unknown scheme",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "ftp://example.com/me/hello.git"}),
            ),
            Invalid("source.path"),
        ),
        (
            "remote_git scp-like with a user that reads as an option",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "-oProxyCommand=x@example.com:a.git"}),
            ),
            Invalid("source.path"),
        ),
        // source.rev, source.tag, source.branch
        (
            "rev with local_so",
            with(
                "/source/rev",
                json!("0123abcd0123abcd0123abcd0123abcd0123abcd"),
            ),
            Invalid("source.rev"),
        ),
        (
            "rev and tag both",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "rev": "0123abcd0123abcd0123abcd0123abcd0123abcd", "tag": "v1"}),
            ),
            Invalid("source.tag"),
        ),
        (
            "rev not hex",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "rev": "main"}),
            ),
            Invalid("source.rev"),
        ),
        (
            "rev shortened to 8 digits",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "rev": "0123abcd"}),
            ),
            Invalid("source.rev"),
        ),
        (
            "rev of 41 digits",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "rev": "0123abcd0123abcd0123abcd0123abcd0123abcd0"}),
            ),
            Invalid("source.rev"),
        ),
        (
            "commit with remote_git",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git",
                       "repository": "https://e.com/a.git", "commit": "0123abcd0123abcd0123abcd0123abcd0123abcd"}),
            ),
            Invalid("source.repository"),
        ),
        (
            "commit without repository",
            with(
                "/source/commit",
                json!("0123abcd0123abcd0123abcd0123abcd0123abcd"),
            ),
            Invalid("source.commit"),
        ),
        (
            "repository without commit",
            with("/source/repository", json!("https://e.com/a.git")),
            Invalid("source.repository"),
        ),
        (
            "commit shortened",
            with(
                "/source",
                json!({"mode": "local_so", "path": "hello",
                       "repository": "https://e.com/a.git", "commit": "0123abcd"}),
            ),
            Invalid("source.commit"),
        ),
        (
            "tag read as an option",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "tag": "--upload-pack=x"}),
            ),
            Invalid("source.tag"),
        ),
        (
            "branch with ..",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "branch": "a..b"}),
            ),
            Invalid("source.branch"),
        ),
        (
            "tag with a space",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "tag": "v 1"}),
            ),
            Invalid("source.tag"),
        ),
        (
            "tag with a control character",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "tag": "v\u{7}1"}),
            ),
            Invalid("source.tag"),
        ),
        (
            "branch with ~",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "branch": "a~b"}),
            ),
            Invalid("source.branch"),
        ),
        (
            "branch with a colon",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "branch": "a:b"}),
            ),
            Invalid("source.branch"),
        ),
        (
            "tag ending in .lock",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "tag": "v1.lock"}),
            ),
            Invalid("source.tag"),
        ),
        (
            "branch starting with /",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "branch": "/main"}),
            ),
            Invalid("source.branch"),
        ),
        (
            "branch ending with .",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "branch": "main."}),
            ),
            Invalid("source.branch"),
        ),
        (
            "tag with @{",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "tag": "v@{1}"}),
            ),
            Invalid("source.tag"),
        ),
        (
            "branch with //",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "branch": "a//b"}),
            ),
            Invalid("source.branch"),
        ),
        (
            "empty tag",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "tag": ""}),
            ),
            Invalid("source.tag"),
        ),
        (
            "tag longer than 200 characters",
            with(
                "/source",
                json!({"mode": "remote_git", "path": "https://e.com/a.git", "tag": "v".repeat(201)}),
            ),
            Invalid("source.tag"),
        ),
        // http_services
        (
            "empty driver",
            with("/http_services/driver", json!("")),
            Invalid("http_services.driver"),
        ),
        (
            "driver with space",
            with("/http_services/driver", json!("ax um")),
            Invalid("http_services.driver"),
        ),
        (
            "route without leading slash",
            with("/http_services/routes/1", route("api/x", "GET", "x")),
            Invalid("http_services.routes[1].route"),
        ),
        (
            "route with space",
            with("/http_services/routes/0", route("/api/a b", "GET", "x")),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "route with ..",
            with("/http_services/routes/0", route("/api/../x", "GET", "x")),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "route with bad char",
            with("/http_services/routes/0", route("/api/x?y", "GET", "x")),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "route with empty param",
            with("/http_services/routes/0", route("/api/:", "GET", "x")),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "route with a param starting with a digit",
            with("/http_services/routes/0", route("/api/:1id", "GET", "x")),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "route with a dash in a param",
            with("/http_services/routes/0", route("/api/{id-x}", "GET", "x")),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "route with unclosed brace",
            with("/http_services/routes/0", route("/api/{id", "GET", "x")),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "route with repeated param",
            with(
                "/http_services/routes/0",
                route("/a/:id/b/{id}", "GET", "x"),
            ),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "route with double slash",
            with("/http_services/routes/0", route("/api//x", "GET", "x")),
            Invalid("http_services.routes[0].route"),
        ),
        (
            "lowercase method",
            with("/http_services/routes/1/method", json!("post")),
            Invalid("http_services.routes[1].method"),
        ),
        (
            "unknown method",
            with("/http_services/routes/0/method", json!("FETCH")),
            Invalid("http_services.routes[0].method"),
        ),
        (
            "empty label",
            with("/http_services/routes/0/label", json!("")),
            Invalid("http_services.routes[0].label"),
        ),
        (
            "label with space",
            with("/http_services/routes/0/label", json!("plugin get")),
            Invalid("http_services.routes[0].label"),
        ),
        (
            "duplicate routes",
            with(
                "/http_services/routes",
                json!([
                    route("/a", "GET", "x"),
                    route("/b", "GET", "y"),
                    route("/a", "GET", "z")
                ]),
            ),
            Invalid("http_services.routes[2]"),
        ),
        (
            "duplicate routes differing in param name",
            with(
                "/http_services/routes",
                json!([route("/a/:id", "PUT", "x"), route("/a/{key}", "PUT", "y")]),
            ),
            Invalid("http_services.routes[1]"),
        ),
        // requires
        (
            "bad requires.host",
            with("/requires/host", json!("not a req")),
            Invalid("requires.host"),
        ),
        (
            "empty requires.host",
            with("/requires/host", json!("")),
            Invalid("requires.host"),
        ),
        // sha256
        (
            "short sha256",
            with("/sha256", json!("abc123")),
            Invalid("sha256"),
        ),
        (
            "non-hex sha256",
            with("/sha256", json!("g".repeat(64))),
            Invalid("sha256"),
        ),
        (
            "65-char sha256",
            with("/sha256", json!("a".repeat(65))),
            Invalid("sha256"),
        ),
    ]
}

#[test]
fn bad_manifests_are_rejected_with_the_expected_error() {
    let mut failures = Vec::new();
    for (label, text, expect) in bad_manifests() {
        let err = match parse(&text) {
            Ok(_) => {
                failures.push(format!("{label}: accepted\n    {text}"));
                continue;
            }
            Err(err) => err,
        };
        let shown = err.to_string();
        if !shown.contains(FILE) {
            failures.push(format!("{label}: message lacks the file path: {shown}"));
        }
        if err.file() != Path::new(FILE) || err.plugin() != Some("hello") {
            failures.push(format!("{label}: wrong file or plugin in {err:?}"));
        }
        let ok = match (expect, &err) {
            (Expect::Syntax, ManifestError::Syntax { .. }) => err.field().is_none(),
            (Expect::SyntaxIn(field), ManifestError::Syntax { .. }) => {
                err.field() == Some(field) && shown.contains(&format!("(in `{field}`)"))
            }
            (Expect::Invalid(field), ManifestError::Invalid { .. }) => {
                err.field() == Some(field) && shown.contains(&format!("`{field}`"))
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{label}: expected {expect:?}, got {err:?}\n    {shown}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn syntax_errors_explain_themselves() {
    let cases = [
        ("", "empty"),
        ("[]", "expected a plugin.json object"),
        ("{}", "missing field `name`"),
        (&*with("/foo", json!(1)), "unknown field `foo`"),
        (
            &*with("/source/x", json!(1)),
            "unknown field `x`, expected one of `mode`, `path`, `rev`, `tag`, `branch`, `repository`, `commit` (in `source.x`)",
        ),
        (
            &*with("/http_services/routes/1/method", json!(1)),
            "expected a string (in `http_services.routes[1].method`)",
        ),
        (
            &*with("/http_services/routes/0/verb", json!("GET")),
            "unknown field `verb`, expected one of `route`, `method`, `label` \
             (in `http_services.routes[0].verb`)",
        ),
        (
            &*with("/version", json!(1)),
            "expected a string (in `version`)",
        ),
        (
            &*without("/source/path"),
            "missing field `path` (in `source`)",
        ),
        (&*with("/source/Path", json!("x")), "fix its spelling"),
        (&*with("/maintainers", json!("x")), "expected a sequence"),
        (&*format!("{VALID} x"), "trailing characters"),
    ];
    for (text, needle) in cases {
        let err = parse(text).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(needle), "{text:?}: {shown}");
        assert!(shown.contains("README.md"), "{text:?}: {shown}");
        assert!(!shown.contains("Raw"), "{text:?}: leaks internals: {shown}");
        let ManifestError::Syntax { line, message, .. } = &err else {
            panic!("{text:?}: {err:?}");
        };
        assert!(*line >= 1, "{text:?}: {err:?}");
        assert!(!message.contains(" at line "), "{message}");
    }
}

#[test]
fn semver_itself_rejects_loose_versions() {
    for version in ["1", "v1.0.0", "01.0.0", "1.0.0 ", " 1.0.0", "1.0"] {
        assert!(semver::Version::parse(version).is_err(), "{version:?}");
    }
}

#[test]
fn invalid_messages_name_the_value_and_the_fix() {
    let err = parse(&with("/http_services/routes/1/method", json!("post"))).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("\"post\""), "{shown}");
    assert!(shown.contains("uppercase: \"POST\""), "{shown}");

    let err = parse(&with("/http_services/routes/0/method", json!("FETCH"))).unwrap_err();
    assert!(err
        .to_string()
        .contains("GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"));

    // Versions are read as text and parsed by the validator, so a loose one is refused
    // with the field, the value as written, the rule and the fix.
    for version in ["1", "v1.0.0", "01.0.0", "1.0.0 "] {
        let err = parse(&with("/version", json!(version))).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, ManifestError::Invalid { .. }), "{err:?}");
        for needle in [
            "invalid `version` value".to_string(),
            format!("{version:?}"),
            "not a strict SemVer 2 version".to_string(),
            "three numbers without leading zeros".to_string(),
        ] {
            assert!(shown.contains(&needle), "{version:?}: {shown}");
        }
    }
    let err = parse(&with("/http_services/routes/0/route", json!("/api/a b"))).unwrap_err();
    assert!(
        err.to_string()
            .contains("the route contains whitespace or control characters"),
        "{err}"
    );

    // A prefix or surrounding whitespace is named as such, whatever semver says of it.
    for version in ["v1.0.0", "V1.0.0", "1.0.0 ", " 1.0.0"] {
        let shown = parse(&with("/version", json!(version)))
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("(prefix or surrounding whitespace)"),
            "{version:?}: {shown}"
        );
    }
    let err = parse(&with("/requires/host", json!("~> 1.2"))).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown
            .contains("invalid `requires.host` value \"~> 1.2\": not a SemVer version requirement"),
        "{shown}"
    );

    let err = parse(&with("/name", json!("x".repeat(500)))).unwrap_err();
    let ManifestError::Invalid { value, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(value.len() < 200 && value.ends_with("..."), "{value}");
}

#[test]
fn full_manifest_parses_and_round_trips() {
    let m = parse(VALID).unwrap();
    assert_eq!(m.name, "hello");
    assert_eq!(m.version, semver::Version::new(0, 1, 0));
    assert_eq!(m.description.as_deref(), Some("A sample plugin"));
    assert_eq!(m.maintainers, ["someone@example.com"]);
    assert_eq!(m.home.as_deref(), Some("https://example.com/hello"));
    assert_eq!(
        m.source,
        Source {
            mode: SourceMode::LocalSo,
            path: "hello".into(),
            rev: None,
            tag: None,
            branch: None,
            repository: None,
            commit: None,
        }
    );
    let services = m.http_services.as_ref().unwrap();
    assert_eq!(services.driver, "axum");
    assert_eq!(
        services.routes,
        [
            Route {
                route: "/api/plugin/sample/:id".into(),
                method: HttpMethod::Get,
                label: "plugin.get".into()
            },
            Route {
                route: "/api/plugin/samples".into(),
                method: HttpMethod::Post,
                label: "plugin.post".into()
            },
        ]
    );
    let host = &m.requires.as_ref().unwrap().host;
    assert_eq!(host, &semver::VersionReq::parse(">=0.1, <2").unwrap());
    assert!(host.matches(&semver::Version::new(1, 5, 0)));
    assert!(!host.matches(&semver::Version::new(2, 0, 0)));
    assert_eq!(m.sha256.as_deref(), Some(&"0123456789abcdef".repeat(4)[..]));

    // Serializing gives back the same JSON document...
    let value = serde_json::to_value(&m).unwrap();
    assert_eq!(value, valid_value());
    // ...which parses to the same manifest.
    assert_eq!(parse(&value.to_string()).unwrap(), m);
}

#[test]
fn minimal_manifest_uses_defaults() {
    let text = r#"{"name":"m","version":"1.0.0-rc.1+b5","source":{"mode":"local_so","path":"m"}}"#;
    let m = parse(text).unwrap();
    assert_eq!(m.version.pre.as_str(), "rc.1");
    assert!(m.maintainers.is_empty());
    assert_eq!(
        (
            &m.description,
            &m.home,
            &m.http_services,
            &m.requires,
            &m.sha256
        ),
        (&None, &None, &None, &None, &None)
    );
    let back = serde_json::to_string(&m).unwrap();
    assert_eq!(
        back,
        r#"{"name":"m","version":"1.0.0-rc.1+b5","maintainers":[],"source":{"mode":"local_so","path":"m"}}"#
    );
    // With a byte-order mark, and with explicit nulls for optional fields.
    assert_eq!(parse(&format!("\u{feff}{text}")).unwrap(), m);
    let nulls = r#"{"name":"m","version":"1.0.0-rc.1+b5","description":null,"home":null,
        "http_services":null,"requires":null,"sha256":null,
        "source":{"mode":"local_so","path":"m"}}"#;
    assert_eq!(parse(nulls).unwrap(), m);
}

#[test]
fn accepted_edge_values() {
    let ok = |text: String| {
        parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    };
    ok(with("/name", json!("a".repeat(64))));
    ok(with("/name", json!("0_a-B")));
    ok(with("/maintainers", json!([])));
    ok(with(
        "/maintainers",
        json!(["a.b+c@mail.example.org", "x@y.z"]),
    ));
    ok(with("/home", json!("http://localhost:8080")));
    ok(with("/home", json!("HTTPS://user@[::1]:8443/p?q#f")));
    ok(with("/source/path", json!("sub/hello")));
    ok(with("/source/path", json!("./lib/libhello.so")));
    ok(with("/source/path", json!("lib\\hello.dll")));
    ok(with("/http_services/routes", json!([])));
    ok(with(
        "/http_services/routes",
        json!([
            route("/", "GET", "root"),
            route("/a/{id}/b/:sub", "DELETE", "a:b_c-d.e"),
            route("/v1.0/~x", "HEAD", "h"),
            route("/a/:id", "GET", "g"),
            route("/a/:id", "PATCH", "p"),
            route("/a/:id/x", "OPTIONS", "o"),
            route("/a/b", "PUT", "p2"),
            route("/c/:_id/{a_1}", "GET", "c"),
        ]),
    ));
    ok(with("/requires/host", json!("*")));
    for remote in [
        "https://example.com/me/hello.git",
        "http://example.com/hello",
        "ssh://git@example.com/me/hello.git",
        "git://example.com/hello.git",
        "file:///srv/git/hello.git",
        "git@example.com:me/hello.git",
    ] {
        ok(with(
            "/source",
            json!({"mode": "remote_git", "path": remote}),
        ));
    }
    let m = parse(&with("/sha256", json!("ABCDEF".repeat(10) + "0A1b"))).unwrap();
    assert_eq!(m.sha256.unwrap(), "abcdef".repeat(10) + "0a1b");
}

#[test]
fn http_method_spelling() {
    for method in HttpMethod::ALL {
        let json = serde_json::to_value(method).unwrap();
        assert_eq!(json, Value::String(method.as_str().into()));
        assert_eq!(method.to_string(), method.as_str());
    }
    assert_eq!(SourceMode::RemoteGit.to_string(), "remote_git");
    assert_eq!(
        serde_json::to_value(SourceMode::LocalSo).unwrap(),
        json!("local_so")
    );
}

/// Creates `<tmp>/<folder>/plugin.json` holding `text`; returns the folder.
fn plugin(tmp: &tempfile::TempDir, folder: &str, text: &str) -> PathBuf {
    let dir = tmp.path().join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), text).unwrap();
    dir
}

#[test]
fn load_reads_the_folder_and_checks_the_name() {
    let tmp = tempfile::tempdir().unwrap();

    let dir = plugin(&tmp, "hello", VALID);
    let m = Manifest::load(&dir).unwrap();
    assert_eq!(m, parse(VALID).unwrap());
    // A trailing "/." still names the folder.
    assert_eq!(Manifest::load(&dir.join(".")).unwrap().name, "hello");

    let dir = plugin(&tmp, "other", VALID);
    let err = Manifest::load(&dir).unwrap_err();
    let file = dir.join(MANIFEST_FILE);
    match &err {
        ManifestError::NameMismatch {
            file: f,
            name,
            folder,
        } => {
            assert_eq!(
                (f, name.as_str(), folder.as_str()),
                (&file, "hello", "other")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.field(), Some("name"));
    assert_eq!(err.plugin(), Some("other"));
    assert_eq!(err.file(), file);
    let shown = err.to_string();
    assert!(shown.contains(&file.display().to_string()), "{shown}");
    assert!(shown.contains("rename the folder"), "{shown}");

    let dir = tmp.path().join("missing");
    std::fs::create_dir_all(&dir).unwrap();
    let err = Manifest::load(&dir).unwrap_err();
    let ManifestError::Read { file: f, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(f, &dir.join(MANIFEST_FILE));
    assert_eq!(err.field(), None);
    assert_eq!(err.plugin(), Some("missing"));
    let shown = err.to_string();
    assert!(shown.contains(&f.display().to_string()), "{shown}");
    assert!(shown.contains("create plugin.json"), "{shown}");

    // Errors from parsing carry the real path too.
    let dir = plugin(&tmp, "broken", "{");
    let err = Manifest::load(&dir).unwrap_err();
    assert!(matches!(err, ManifestError::Syntax { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains(&dir.join(MANIFEST_FILE).display().to_string()));

    let dir = plugin(
        &tmp,
        "badver",
        &with("/name", json!("badver")).replace("0.1.0", "1"),
    );
    let err = Manifest::load(&dir).unwrap_err();
    assert_eq!(err.field(), Some("version"), "{err}");
}

fn with_source(path: &str) -> Manifest {
    parse(&with("/source/path", json!(path))).unwrap()
}

#[test]
fn library_candidates_per_platform() {
    let base = Path::new("plugins").join("hello");
    let names =
        |path: &str| -> Vec<PathBuf> { with_source(path).library_candidates(&base).unwrap() };
    let sub = base.join("sub");

    #[cfg(target_os = "windows")]
    {
        assert_eq!(names("hello"), [base.join("hello.dll")]);
        assert_eq!(names("sub/hello"), [sub.join("hello.dll")]);
    }
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    {
        assert_eq!(
            names("hello"),
            [base.join("libhello.dylib"), base.join("hello.dylib")]
        );
        assert_eq!(
            names("sub/hello"),
            [sub.join("libhello.dylib"), sub.join("hello.dylib")]
        );
    }
    #[cfg(not(any(target_os = "windows", target_os = "macos", target_os = "ios")))]
    {
        assert_eq!(
            names("hello"),
            [base.join("libhello.so"), base.join("hello.so")]
        );
        assert_eq!(
            names("sub/hello"),
            [sub.join("libhello.so"), sub.join("hello.so")]
        );
        assert_eq!(
            names("./sub\\hello"),
            [sub.join("libhello.so"), sub.join("hello.so")]
        );
    }

    // An explicit extension is taken as is, on every platform.
    assert_eq!(names("libhello.so"), [base.join("libhello.so")]);
    assert_eq!(names("sub/hello.dylib"), [sub.join("hello.dylib")]);
    assert_eq!(names("sub/Hello.DLL"), [sub.join("Hello.DLL")]);

    let remote = parse(&with(
        "/source",
        json!({"mode": "remote_git", "path": "https://example.com/hello.git"}),
    ))
    .unwrap();
    let mut escaping = with_source("hello");
    for path in ["../evil", "/usr/lib/libc.so", ""] {
        escaping.source.path = path.into();
        let err = escaping.library_candidates(&base).unwrap_err();
        assert_eq!(err.field(), Some("source.path"), "{path:?}: {err}");
    }

    let err = remote.library_candidates(&base).unwrap_err();
    assert!(matches!(err, ManifestError::NotLocal { .. }), "{err:?}");
    assert_eq!(err.field(), Some("source.mode"));
    let shown = err.to_string();
    assert!(
        shown.contains(&base.join(MANIFEST_FILE).display().to_string()),
        "{shown}"
    );
}

#[test]
fn a_short_source_rev_is_refused_with_the_way_to_the_full_id() {
    let doc = with(
        "/source",
        json!({"mode": "remote_git", "path": "file:///src/hello", "rev": "0123abcd"}),
    );
    let err = parse(&doc).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("source.rev"), "{shown}");
    assert!(shown.contains("shortened commit id"), "{shown}");
    assert!(shown.contains("git rev-parse"), "{shown}");
}

#[test]
fn a_built_plugin_records_its_repository_and_commit() {
    let doc = with(
        "/source",
        json!({"mode": "local_so", "path": "hello",
               "repository": "file:///src/hello", "commit": "0123abcd0123abcd0123abcd0123abcd0123abcd"}),
    );
    let m = parse(&doc).unwrap();
    assert_eq!(m.source.repository.as_deref(), Some("file:///src/hello"));
    assert_eq!(
        m.source.commit.as_deref(),
        Some("0123abcd0123abcd0123abcd0123abcd0123abcd")
    );
    let back = serde_json::to_value(&m).unwrap();
    assert_eq!(
        back["source"]["commit"],
        "0123abcd0123abcd0123abcd0123abcd0123abcd"
    );
    assert_eq!(back["source"]["repository"], "file:///src/hello");
}

#[test]
fn a_remote_git_source_keeps_its_pin() {
    for (key, value) in [
        ("rev", "0123abcd0123abcd0123abcd0123abcd0123abcd"),
        ("tag", "v1.2.0"),
        ("branch", "release/1"),
    ] {
        let doc = with(
            "/source",
            json!({"mode": "remote_git", "path": "file:///src/hello", key: value}),
        );
        let m = parse(&doc).unwrap();
        let pin = match key {
            "rev" => &m.source.rev,
            "tag" => &m.source.tag,
            _ => &m.source.branch,
        };
        assert_eq!(pin.as_deref(), Some(value), "{key}");
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["source"][key], value);
    }
}
