//! Round trips through [`to_value`] and [`from_value_ref`], and their errors.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{de, ser, Deserialize, Serialize};

use super::{from_value_ref, to_value, ValueError};
use crate::value::Value;

fn map(entries: &[(&str, Value)]) -> Value {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn round_trip<T>(value: &T) -> Value
where
    T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
{
    let v = to_value(value).unwrap();
    let back: T = from_value_ref(&v).unwrap();
    assert_eq!(&back, value, "round trip");
    v
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Inner {
    name: String,
    score: f64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Outer {
    id: u32,
    inner: Inner,
    tags: Vec<String>,
    maybe: Option<i64>,
    nothing: Option<i64>,
    hash: HashMap<String, i32>,
    tree: BTreeMap<u16, bool>,
    pair: (i8, char),
    unit: (),
}

fn sample() -> Outer {
    Outer {
        id: 7,
        inner: Inner {
            name: "inner".into(),
            score: 1.5,
        },
        tags: vec!["a".into(), "b".into()],
        maybe: Some(-3),
        nothing: None,
        hash: HashMap::from([("x".to_string(), 1), ("y".to_string(), 2)]),
        tree: BTreeMap::from([(1, true), (20, false)]),
        pair: (-1, 'z'),
        unit: (),
    }
}

#[test]
fn struct_round_trip() {
    let v = round_trip(&sample());
    assert_eq!(v.get("id"), Some(&Value::Int(7)));
    assert_eq!(
        v.get("inner"),
        Some(&map(&[
            ("name", "inner".into()),
            ("score", Value::Float(1.5))
        ]))
    );
    assert_eq!(
        v.get("tags"),
        Some(&Value::from(vec![Value::from("a"), Value::from("b")]))
    );
    assert_eq!(v.get("maybe"), Some(&Value::Int(-3)));
    assert_eq!(v.get("nothing"), Some(&Value::Null));
    assert_eq!(
        v.get("tree"),
        Some(&map(&[
            ("1", Value::Bool(true)),
            ("20", Value::Bool(false))
        ]))
    );
    assert_eq!(
        v.get("pair"),
        Some(&Value::from(vec![Value::Int(-1), Value::from("z")]))
    );
    assert_eq!(v.get("unit"), Some(&Value::Null));
    // Field order is preserved.
    let Value::Map(entries) = &v else {
        panic!("not a map")
    };
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["id", "inner", "tags", "maybe", "nothing", "hash", "tree", "pair", "unit"]
    );
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum E {
    Unit,
    Newtype(i32),
    Tuple(i32, String),
    Struct { a: bool, b: Option<String> },
}

#[test]
fn enum_round_trip() {
    assert_eq!(round_trip(&E::Unit), Value::from("Unit"));
    assert_eq!(
        round_trip(&E::Newtype(5)),
        map(&[("Newtype", Value::Int(5))])
    );
    assert_eq!(
        round_trip(&E::Tuple(1, "t".into())),
        map(&[("Tuple", Value::from(vec![Value::Int(1), "t".into()]))])
    );
    assert_eq!(
        round_trip(&E::Struct {
            a: true,
            b: Some("s".into())
        }),
        map(&[(
            "Struct",
            map(&[("a", Value::Bool(true)), ("b", "s".into())])
        )])
    );
    round_trip(&vec![E::Unit, E::Newtype(-1)]);
    // Enum keys and values in maps.
    round_trip(&BTreeMap::from([("k".to_string(), E::Unit)]));
    // `{"Unit": null}` is accepted for a unit variant, like serde_json.
    let e: E = from_value_ref(&map(&[("Unit", Value::Null)])).unwrap();
    assert_eq!(e, E::Unit);
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    A,
    B,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Id(u64);

/// Map keys become strings: strings, chars and unit variants as they are, integers (of any
/// width) and bools in their text form. Reading them back parses the text when the key type
/// asks for an integer or a bool.
#[test]
fn non_string_keys_become_strings() {
    let v = round_trip(&BTreeMap::from([(Key::A, 1), (Key::B, 2)]));
    assert_eq!(v, map(&[("A", Value::Int(1)), ("B", Value::Int(2))]));
    let v = round_trip(&BTreeMap::from([(-5i64, "x".to_string())]));
    assert_eq!(v, map(&[("-5", "x".into())]));
    let v = round_trip(&BTreeMap::from([(true, 1u8)]));
    assert_eq!(v, map(&[("true", Value::Int(1))]));
    let v = round_trip(&BTreeMap::from([('c', 1u8)]));
    assert_eq!(v, map(&[("c", Value::Int(1))]));
    let v = round_trip(&BTreeMap::from([(Id(3), 1u8)]));
    assert_eq!(v, map(&[("3", Value::Int(1))]));
    // Unlike a value, a key wider than an i64 is kept, in decimal.
    let v = round_trip(&HashMap::from([(u64::MAX, 1u8)]));
    assert_eq!(v, map(&[("18446744073709551615", Value::Int(1))]));
    let v = round_trip(&BTreeMap::from([(i128::MIN, 1u8)]));
    assert_eq!(
        v,
        map(&[("-170141183460469231731687303715884105728", Value::Int(1))])
    );

    // A key that does not parse as the integer asked for is an error at that key.
    let err = from_value_ref::<BTreeMap<u8, u8>>(&map(&[("300", Value::Int(1))])).unwrap_err();
    assert_eq!(err.to_string(), "300: expected u8, found string");
    assert_eq!(err.path(), "300");
}

/// A map given as pairs, so that keys need not be `Ord` or `Hash`.
struct Pairs<K>(Vec<(K, i32)>);

impl<K: Serialize> Serialize for Pairs<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
struct RawKey(#[serde(with = "as_bytes")] Vec<u8>);

/// Any other key is refused, naming the type of value it serialized to.
#[test]
fn other_keys_are_refused() {
    fn refused<K: Serialize>(key: K) -> String {
        let err = to_value(&Pairs(vec![(key, 1)])).unwrap_err();
        assert_eq!(err.path(), "", "{err}");
        err.to_string()
    }
    let found = |kind: &str| format!("map key must be a string, found {kind}");
    assert_eq!(refused(1.5f64), found("float"));
    assert_eq!(refused(RawKey(vec![1])), found("bytes"));
    assert_eq!(refused((1, 2)), found("list"));
    assert_eq!(refused(vec![1u8]), found("list"));
    assert_eq!(refused(BTreeMap::from([(1, 2)])), found("map"));
    assert_eq!(refused(E::Newtype(1)), found("map"));
    assert_eq!(refused(E::Tuple(1, "t".into())), found("map"));
    assert_eq!(refused(()), found("null"));
    assert_eq!(refused(None::<i32>), found("null"));
    // `Some(k)` is refused too, although `k` alone would do: `None` has no key form.
    assert_eq!(refused(Some(1)), found("option"));
    // Nested: the path leads to the map whose key was refused.
    let err = to_value(&BTreeMap::from([("outer", Pairs(vec![((), 1)]))])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "outer: map key must be a string, found null"
    );
}

#[test]
fn scalars() {
    assert_eq!(to_value(&"hi").unwrap(), Value::String("hi".into()));
    assert_eq!(to_value(&'c').unwrap(), Value::from("c"));
    assert_eq!(to_value(&1.5f32).unwrap(), Value::Float(1.5));
    assert_eq!(to_value(&()).unwrap(), Value::Null);
    assert_eq!(to_value(&None::<i32>).unwrap(), Value::Null);
    assert_eq!(to_value(&Some(3u8)).unwrap(), Value::Int(3));
    assert_eq!(to_value(&(i64::MAX as u64)).unwrap(), Value::Int(i64::MAX));
    assert_eq!(to_value(&-5i128).unwrap(), Value::Int(-5));
    assert_eq!(from_value_ref::<f64>(&Value::Int(2)).unwrap(), 2.0);
    assert_eq!(from_value_ref::<f32>(&Value::Float(0.5)).unwrap(), 0.5);
    assert_eq!(from_value_ref::<char>(&Value::from("x")).unwrap(), 'x');
    assert_eq!(from_value_ref::<Option<u8>>(&Value::Null).unwrap(), None);
    assert_eq!(
        from_value_ref::<Option<u8>>(&Value::Int(1)).unwrap(),
        Some(1)
    );
    assert_eq!(from_value_ref::<()>(&Value::Null).unwrap(), ());
    assert_eq!(from_value_ref::<u128>(&Value::Int(9)).unwrap(), 9);
}

/// `Value::Int` is an `i64`: `to_value` converts wider integers while they fit and fails
/// beyond, rather than rounding them to a float. (Only `Value`'s own `Deserialize`, reading
/// a format such as JSON, makes a float of them: see `serde_json_round_trip`.)
#[test]
fn integer_edges() {
    assert_eq!(round_trip(&i64::MIN), Value::Int(i64::MIN));
    assert_eq!(round_trip(&i64::MAX), Value::Int(i64::MAX));
    assert_eq!(round_trip(&(i64::MAX as u64)), Value::Int(i64::MAX));
    assert_eq!(round_trip(&(i64::MIN as i128)), Value::Int(i64::MIN));
    assert_eq!(round_trip(&(i64::MAX as u128)), Value::Int(i64::MAX));

    let err = to_value(&(i64::MAX as u64 + 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "integer 9223372036854775808 does not fit in an i64"
    );
    let err = to_value(&u64::MAX).unwrap_err();
    assert_eq!(
        err.to_string(),
        "integer 18446744073709551615 does not fit in an i64"
    );
    assert_eq!(err.path(), "");
    let err = to_value(&vec![0, u64::MAX]).unwrap_err();
    assert_eq!(err.path(), "[1]");
    assert!(to_value(&u128::MAX).is_err());
    assert!(to_value(&(i64::MIN as i128 - 1)).is_err());
    let err = to_value(&BTreeMap::from([("n", u64::MAX)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "n: integer 18446744073709551615 does not fit in an i64"
    );

    // Reading: a negative int is out of range for unsigned types.
    let err = from_value_ref::<u64>(&Value::Int(-1)).unwrap_err();
    assert_eq!(err.to_string(), "invalid value: expected u64, found int -1");
    // A float is not read as an integer, even a whole one.
    let err = from_value_ref::<i64>(&Value::Float(1.0)).unwrap_err();
    assert_eq!(err.to_string(), "expected i64, found float");
}

#[test]
fn integer_range_errors() {
    let err = from_value_ref::<u8>(&Value::Int(300)).unwrap_err();
    assert_eq!(err.to_string(), "invalid value: expected u8, found int 300");
    assert!(from_value_ref::<u32>(&Value::Int(-1)).is_err());
    assert!(from_value_ref::<i8>(&Value::Int(128)).is_err());
    assert_eq!(from_value_ref::<i8>(&Value::Int(-128)).unwrap(), -128);
    assert_eq!(
        from_value_ref::<u64>(&Value::Int(i64::MAX)).unwrap(),
        i64::MAX as u64
    );
    assert!(from_value_ref::<u16>(&Value::Int(70_000)).is_err());
}

#[test]
fn wrong_type_error_message() {
    let err = from_value_ref::<String>(&Value::Int(1)).unwrap_err();
    assert_eq!(err.to_string(), "expected a string, found int");
    assert_eq!(err.path(), "");

    let mut v = to_value(&sample()).unwrap();
    let Value::Map(entries) = &mut v else {
        panic!("not a map")
    };
    let inner = entries
        .iter_mut()
        .find(|e| e.key.as_str() == "inner")
        .unwrap();
    inner.value = map(&[("name", Value::Int(5)), ("score", Value::Float(0.0))]);
    let err = from_value_ref::<Outer>(&v).unwrap_err();
    assert_eq!(err.to_string(), "inner.name: expected a string, found int");
    assert_eq!(err.message(), "expected a string, found int");
    assert_eq!(err.path(), "inner.name");

    let err = from_value_ref::<Vec<Inner>>(&Value::from(vec![map(&[
        ("name", "n".into()),
        ("score", "high".into()),
    ])]))
    .unwrap_err();
    assert_eq!(err.to_string(), "[0].score: expected f64, found string");

    let err = from_value_ref::<Inner>(&map(&[("name", "n".into())])).unwrap_err();
    assert_eq!(err.to_string(), "missing field `score`");

    let err = from_value_ref::<E>(&Value::Int(3)).unwrap_err();
    assert!(
        err.to_string().starts_with("expected a string or a map"),
        "{err}"
    );
    let err = from_value_ref::<E>(&Value::from("Nope")).unwrap_err();
    assert!(err.to_string().contains("unknown variant `Nope`"), "{err}");
}

#[derive(Deserialize, Debug, PartialEq)]
struct Borrowing<'a> {
    name: &'a str,
    #[serde(borrow)]
    data: &'a [u8],
}

#[test]
fn borrowed_deserialization() {
    let v = map(&[
        ("name", "borrowed".into()),
        ("data", Value::from(vec![1u8, 2, 3])),
    ]);
    let b: Borrowing<'_> = from_value_ref(&v).unwrap();
    assert_eq!(b.name, "borrowed");
    assert_eq!(b.data, &[1, 2, 3]);
    let Value::Map(entries) = &v else {
        panic!("not a map")
    };
    assert!(std::ptr::eq(
        b.name.as_ptr(),
        entries[0].value.as_str().unwrap().as_ptr()
    ));

    // Map keys and nested strings borrow too.
    let v = map(&[("k", Value::from(vec![Value::from("x"), Value::from("y")]))]);
    let m: BTreeMap<&str, Vec<&str>> = from_value_ref(&v).unwrap();
    assert_eq!(m, BTreeMap::from([("k", vec!["x", "y"])]));
    let Value::Map(entries) = &v else {
        panic!("not a map")
    };
    let (key, _) = m.iter().next().unwrap();
    assert!(std::ptr::eq(key.as_ptr(), entries[0].key.as_str().as_ptr()));
    let plain = Value::from("plain");
    let s: &str = from_value_ref(&plain).unwrap();
    assert_eq!(s, "plain");
}

#[test]
fn nested_lists() {
    let v = round_trip(&vec![vec![Some(1), None], vec![], vec![Some(-3)]]);
    assert_eq!(
        v,
        Value::from(vec![
            Value::from(vec![Value::Int(1), Value::Null]),
            Value::from(Vec::<Value>::new()),
            Value::from(vec![Value::Int(-3)]),
        ])
    );
    round_trip(&vec![(1u8, vec!["a".to_string()]), (2, vec![])]);
    round_trip(&BTreeMap::from([(
        "rows".to_string(),
        vec![vec![1.5, 2.0]],
    )]));

    let bad = Value::from(vec![
        Value::from(vec![Value::Int(1)]),
        Value::from(vec![Value::Int(2), Value::from("three")]),
    ]);
    let err = from_value_ref::<Vec<Vec<i32>>>(&bad).unwrap_err();
    assert_eq!(err.to_string(), "[1][1]: expected i32, found string");
    assert_eq!(err.path(), "[1][1]");
    let err =
        from_value_ref::<BTreeMap<String, Vec<Vec<i32>>>>(&map(&[("rows", bad)])).unwrap_err();
    assert_eq!(err.path(), "rows[1][1]");
    // A list longer than a tuple is refused, not truncated.
    let err = from_value_ref::<(i32, i32)>(&Value::from(vec![Value::Int(1); 3])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid length 3, expected fewer elements in list"
    );
}

#[test]
fn enum_errors_name_the_variant() {
    let err = from_value_ref::<E>(&map(&[("Struct", map(&[("a", Value::Int(1))]))])).unwrap_err();
    assert_eq!(err.to_string(), "Struct.a: expected a boolean, found int");
    assert_eq!(err.path(), "Struct.a");
    let err = from_value_ref::<E>(&map(&[(
        "Tuple",
        Value::from(vec![Value::Int(1), Value::Int(2)]),
    )]))
    .unwrap_err();
    assert_eq!(err.path(), "Tuple[1]");
    let err = from_value_ref::<E>(&map(&[("Newtype", "x".into())])).unwrap_err();
    assert_eq!(err.to_string(), "Newtype: expected i32, found string");
    let err = from_value_ref::<E>(&map(&[("Unit", Value::Int(1))])).unwrap_err();
    assert_eq!(err.to_string(), "Unit: expected unit, found int");
    let err = from_value_ref::<E>(&Value::from("Newtype")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected newtype variant, found unit variant"
    );
    let err = from_value_ref::<E>(&map(&[("Unit", Value::Null), ("Newtype", Value::Int(1))]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value: expected a map with a single key (an enum variant), found map"
    );
    let err = from_value_ref::<Vec<E>>(&Value::from(vec![Value::from("Unit"), Value::Int(3)]))
        .unwrap_err();
    assert_eq!(err.path(), "[1]");
}

mod as_bytes {
    use std::fmt;

    use serde::{de, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Blob {
    #[serde(with = "as_bytes")]
    raw: Vec<u8>,
    plain: Vec<u8>,
}

#[test]
fn bytes() {
    let v = round_trip(&Blob {
        raw: vec![0, 1, 255],
        plain: vec![4, 5],
    });
    assert_eq!(v.get("raw"), Some(&Value::from(vec![0u8, 1, 255])));
    // A plain `Vec<u8>` is a sequence, as in serde_json...
    assert_eq!(
        v.get("plain"),
        Some(&Value::from(vec![Value::Int(4), Value::Int(5)]))
    );
    // ...but it can also be read from `Value::Bytes`.
    let plain: Vec<u8> = from_value_ref(&Value::from(vec![7u8, 8])).unwrap();
    assert_eq!(plain, [7, 8]);
    let arr: [u8; 2] = from_value_ref(&Value::from(vec![7u8, 8])).unwrap();
    assert_eq!(arr, [7, 8]);
    assert!(from_value_ref::<[u8; 1]>(&Value::from(vec![7u8, 8])).is_err());
    // Value itself round-trips bytes.
    let b = Value::from(vec![9u8]);
    assert_eq!(to_value(&b).unwrap(), b);
    assert_eq!(from_value_ref::<Value>(&b).unwrap(), b);
}

#[test]
fn value_is_its_own_serde_image() {
    let v = map(&[
        ("null", Value::Null),
        (
            "list",
            Value::from(vec![Value::Bool(true), Value::Float(2.5)]),
        ),
        ("bytes", Value::from(vec![1u8])),
        ("nested", map(&[("s", "x".into()), ("i", Value::Int(-9))])),
    ]);
    assert_eq!(to_value(&v).unwrap(), v);
    assert_eq!(from_value_ref::<Value>(&v).unwrap(), v);
}

#[test]
fn serde_json_round_trip() {
    let json = serde_json::json!({
        "z": 1,
        "a": [true, null, -2, 2.5, "s", {"k": []}],
        "big": 9_223_372_036_854_775_807u64,
        "obj": {"nested": {"deep": "yes"}},
    });
    // serde_json::Value -> Value through `Deserialize for Value`.
    let v: Value = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(v.get("z"), Some(&Value::Int(1)));
    assert_eq!(v.get("big"), Some(&Value::Int(i64::MAX)));
    // Value -> serde_json::Value through `Serialize for Value`.
    assert_eq!(serde_json::to_value(&v).unwrap(), json);
    // serde_json::Value -> Value through `to_value`, and back through `from_value_ref`.
    let v2 = to_value(&json).unwrap();
    assert_eq!(v2, v);
    assert_eq!(from_value_ref::<serde_json::Value>(&v2).unwrap(), json);
    // JSON text too.
    let text = serde_json::to_string(&v).unwrap();
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);

    // Integers above i64::MAX become floats in `Deserialize for Value`.
    let v: Value = serde_json::from_str("18446744073709551615").unwrap();
    assert_eq!(v, Value::Float(u64::MAX as f64));
}

#[test]
fn error_traits() {
    fn assert_error<E: std::error::Error + ser::Error + de::Error + Send + Sync + 'static>() {}
    assert_error::<ValueError>();
}
