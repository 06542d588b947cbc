//! Typed calls (`handle.call::<I, O>`) and the shapes of errors plugins return.

use plugin_host::{Context, Error, ErrorKind, PluginManager};
use plugin_test_support::fixtures;
use serde::{Deserialize, Serialize};

fn manager_with(name: &str) -> (tempfile::TempDir, PluginManager) {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), name);
    let m = PluginManager::new(base.path());
    m.load_plugin(name).unwrap();
    (base, m)
}

#[derive(Serialize)]
struct Request<'a> {
    name: &'a str,
    excited: bool,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Reply {
    greeting: String,
    length: usize,
}

#[test]
fn a_typed_call_passes_a_value_in_and_returns_one() {
    let (_base, m) = manager_with("typed-greeter");
    let h = m.get("typed-greeter").unwrap();
    let ctx = Context::background();
    let reply: Reply = h
        .call(
            &ctx,
            &Request {
                name: "world",
                excited: true,
            },
        )
        .unwrap();
    assert_eq!(
        reply,
        Reply {
            greeting: "Hello, world!".into(),
            length: 13
        }
    );

    // The plugin's errors come back as they do for execute.
    let err = h
        .call::<_, Reply>(
            &ctx,
            &Request {
                name: "",
                excited: false,
            },
        )
        .unwrap_err();
    assert_eq!(
        err.plugin_error_kind(),
        Some(ErrorKind::InvalidInput),
        "{err}"
    );

    // An input of the wrong shape is the plugin's invalid input, naming the key.
    let err = h.call::<_, Reply>(&ctx, &42).unwrap_err();
    assert_eq!(
        err.plugin_error_kind(),
        Some(ErrorKind::InvalidInput),
        "{err}"
    );
    assert!(err.to_string().contains("`input`"), "{err}");

    // The wrong output type is a typed conversion error on the host.
    let err = h
        .call::<_, u64>(
            &ctx,
            &Request {
                name: "x",
                excited: false,
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Value { ref key, .. } if key == "output"),
        "{err}"
    );
}

#[test]
fn a_plugin_that_sets_no_output_is_reported() {
    let (_base, m) = manager_with("counter");
    let err = m
        .get("counter")
        .unwrap()
        .call::<_, i64>(&Context::background(), &())
        .unwrap_err();
    assert!(
        matches!(err, Error::NoOutput { ref plugin, key: "output" } if plugin == "counter"),
        "{err}"
    );
}

#[test]
fn errors_of_every_shape_keep_their_kind_and_their_chain() {
    let (_base, m) = manager_with("errors");
    let h = m.get("errors").unwrap();
    let call = |label: &str| {
        let err = h
            .execute(&Context::background().with_label(label))
            .unwrap_err();
        let Error::Call { kind, message, .. } = err else {
            panic!("{label}: {err}");
        };
        (kind, message)
    };
    assert_eq!(
        call("std"),
        (ErrorKind::Other, "users.json is missing".to_owned())
    );
    assert_eq!(
        call("kind"),
        (
            ErrorKind::InvalidInput,
            "invalid digit found in string".to_owned()
        )
    );
    assert_eq!(call("own"), (ErrorKind::NotFound, "no user 42".to_owned()));
    assert_eq!(
        call("anyhow"),
        (
            ErrorKind::NotFound,
            "loading the profile: user 42: not_found".to_owned()
        )
    );
}
