//! Fuzzes the encoding context values cross the boundary in (`plugin_abi::codec`): neither
//! `validate` nor `decode` panics on arbitrary bytes (or overflows the stack on deep
//! nesting); bytes that validate and decode as a `Value` re-encode to bytes that validate
//! and decode to the same `Value`; and a `Value` built from the input encodes to bytes that
//! validate and decode back to it.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use plugin_abi::codec::{decode, encode, validate};
use plugin_abi::Value;
use plugin_fuzz::{same, value, VALUE_DEPTH};

fn bytes(data: &[u8]) {
    let valid = validate(data).is_ok();
    let _ = decode::<serde_json::Value>(data);
    if let Ok(decoded) = decode::<Value>(data) {
        if valid {
            let again = encode(&decoded).expect("a Value encodes");
            validate(&again).unwrap_or_else(|e| panic!("{decoded:?} re-encoded: {e}"));
            let back: Value = decode(&again).expect("re-encoded bytes decode");
            assert!(same(&back, &decoded), "{decoded:?} became {back:?}");
        }
    }
}

fn structured(data: &[u8]) {
    let Ok(original) = value(&mut Unstructured::new(data), VALUE_DEPTH) else {
        return;
    };
    let encoded = encode(&original).expect("a Value encodes");
    validate(&encoded).unwrap_or_else(|e| panic!("{original:?}: {e}"));
    let back: Value = decode(&encoded).unwrap_or_else(|e| panic!("{original:?}: {e}"));
    assert!(same(&back, &original), "{original:?} became {back:?}");
}

fuzz_target!(|data: &[u8]| {
    bytes(data);
    structured(data);
});
