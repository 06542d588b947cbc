//! Fuzzes the state file: arbitrary bytes as `<base>/.plugin-state.json`, read through the
//! public API (`is_disabled`, `load_plugins`, `disable`). Nothing panics, and every answer
//! is the one the file's content calls for: a well-formed file (an object whose only key is
//! `disabled`, a list of names) is obeyed, anything else fails closed.
#![no_main]

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plugin_host::{Error, PluginManager, STATE_FILE};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// The keys of a JSON object, in order and with repeats; what `State` would make of it is
/// decided from them and the parsed value.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// The disabled names the file holds, or `None` if it is not a well-formed state file.
fn expected(bytes: &[u8]) -> Option<BTreeSet<String>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    // serde_json also reads a struct from an array of its fields in order: `[]` is the
    // default, `[["a"]]` disables `a`.
    if let serde_json::Value::Array(fields) = &value {
        return match fields.as_slice() {
            [] => Some(BTreeSet::new()),
            [names] => names_of(names),
            _ => None,
        };
    }
    let Keys(keys) = serde_json::from_slice(bytes).ok()?;
    if keys.iter().any(|k| k != "disabled") || keys.len() > 1 {
        return None;
    }
    match value.get("disabled") {
        None => Some(BTreeSet::new()),
        Some(names) => names_of(names),
    }
}

/// The names in a JSON list of strings, or `None` if it is not one.
fn names_of(value: &serde_json::Value) -> Option<BTreeSet<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// A folder for the whole run, in memory where the system has one (writes are flushed).
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a temporary folder")
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let base = scratch().join("base");
    // A plugin folder with no manifest: loading it fails unless it is disabled.
    std::fs::create_dir_all(base.join("x")).expect("the plugin folder");
    std::fs::write(base.join(STATE_FILE), data).expect("the state file");
    let want = expected(data);

    let manager = PluginManager::new(&base);
    let disabled = manager.is_disabled("x");
    match &want {
        Some(names) => assert_eq!(disabled, names.contains("x"), "{names:?}"),
        None => assert!(disabled, "a malformed state file must fail closed"),
    }
    // A name from the file, if any: it reads as disabled.
    if let Some(name) = want.as_ref().and_then(|names| names.iter().next()) {
        assert!(manager.is_disabled(name), "{name:?} is in the file");
    }

    let report = manager.load_plugins().expect("the base folder is readable");
    assert_eq!(report.outcomes.len(), 1, "{:?}", report.outcomes);
    let outcome = &report.outcomes[0];
    assert_eq!(outcome.name, "x");
    match (&want, &outcome.result) {
        (None, Err(Error::StateFile { .. })) => {}
        (Some(names), Ok(())) if names.contains("x") => {}
        (Some(names), Err(err)) if !names.contains("x") => {
            assert!(!matches!(err, Error::StateFile { .. }), "{err:?}");
        }
        (want, got) => panic!("file {want:?}, load {got:?}"),
    }

    // A read-modify-write: refused for a malformed file (not replaced), obeyed otherwise.
    let written = manager.disable("x");
    match &want {
        Some(_) => {
            written.expect("disabling with a readable state file");
            assert!(manager.is_disabled("x"));
        }
        None => {
            assert!(
                matches!(written, Err(Error::StateFile { .. })),
                "{written:?}"
            );
            let after = std::fs::read(base.join(STATE_FILE)).expect("the state file");
            assert_eq!(after, data, "a malformed state file was replaced");
        }
    }
    std::fs::remove_dir_all(&base).expect("clean the base folder");
});
