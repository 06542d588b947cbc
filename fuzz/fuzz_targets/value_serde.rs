//! Fuzzes the serde bridge of `plugin_abi::Value`. JSON text parsed as `serde_json::Value`
//! converts with `to_value` unless it holds an integer beyond `i64` (the documented refusal),
//! and converts back with `from_value_ref` to the same JSON; a `Value` built from the input
//! goes through `to_value` and `from_value_ref::<Value>` unchanged, and reading it as
//! `serde_json::Value` never panics.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use plugin_abi::serde::{from_value_ref, to_value};
use plugin_abi::Value;
use plugin_fuzz::{same, value, VALUE_DEPTH};

/// Whether `json` holds an integer that does not fit in an `i64`.
fn has_wide_int(json: &serde_json::Value) -> bool {
    match json {
        serde_json::Value::Number(n) => n.is_u64() && n.as_i64().is_none(),
        serde_json::Value::Array(items) => items.iter().any(has_wide_int),
        serde_json::Value::Object(map) => map.values().any(has_wide_int),
        _ => false,
    }
}

fn json(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match to_value(&json) {
        Ok(value) => {
            assert!(!has_wide_int(&json), "{json} converted to {value:?}");
            let back: serde_json::Value =
                from_value_ref(&value).unwrap_or_else(|e| panic!("{value:?} back: {e}"));
            assert_eq!(back, json);
            // Value's own Deserialize reads the text (keys in text order, repeats kept) to
            // a value that reads back as the same JSON (where the last repeat wins).
            let direct: Value = serde_json::from_slice(data).expect("the text parsed once");
            let back: serde_json::Value =
                from_value_ref(&direct).unwrap_or_else(|e| panic!("{direct:?} back: {e}"));
            assert_eq!(back, json);
        }
        Err(err) => assert!(has_wide_int(&json), "{json} refused: {err}"),
    }
}

fn structured(data: &[u8]) {
    let Ok(original) = value(&mut Unstructured::new(data), VALUE_DEPTH) else {
        return;
    };
    let serialized = to_value(&original).unwrap_or_else(|e| panic!("{original:?}: {e}"));
    assert!(
        same(&serialized, &original),
        "{serialized:?} != {original:?}"
    );
    let deserialized: Value =
        from_value_ref(&original).unwrap_or_else(|e| panic!("{original:?}: {e}"));
    assert!(
        same(&deserialized, &original),
        "{deserialized:?} != {original:?}"
    );
    // Bytes have no JSON form (an error); anything else reads, floats that JSON cannot
    // hold as null.
    let _ = from_value_ref::<serde_json::Value>(&original);
}

fuzz_target!(|data: &[u8]| {
    json(data);
    structured(data);
});
