//! The JSON call of the benchmarks: the 1 KB object they pass and the transform the plugin
//! applies to it. The `json-bench` plugin runs `transform`; the benches and the callgrind
//! example include this file (`#[path]`) to build the input and to call `transform` directly
//! as the baseline, so both run the same code.

use serde_json::{Map, Value};

/// Upper-cases every string field and doubles every number; keeps the rest.
#[inline(never)]
pub(crate) fn transform(input: &Value) -> Value {
    let Some(fields) = input.as_object() else {
        return Value::Null;
    };
    let out: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => Value::String(s.to_uppercase()),
                Value::Number(n) => n.as_i64().map_or(v.clone(), |n| Value::from(n * 2)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(out)
}

/// A JSON object of about 1 KB: 32 fields, strings and numbers.
pub(crate) fn one_kb_object() -> Value {
    let mut fields = Map::new();
    for i in 0..16 {
        fields.insert(
            format!("name_{i:02}"),
            Value::from(format!("value number {i:02}, padded to size")),
        );
        fields.insert(format!("count_{i:02}"), Value::from(1000 + i));
    }
    let object = Value::Object(fields);
    let len = serde_json::to_string(&object).unwrap().len();
    assert!(
        (900..1200).contains(&len),
        "the input is {len} bytes of JSON"
    );
    object
}
