//! The encoding context values cross the boundary in: MessagePack (feature `serde`).
//!
//! A context value is stored, passed to a plugin and carried to a worker as one contiguous
//! buffer of MessagePack bytes, written by [`encode_into`] straight from any `T: Serialize`
//! and read by [`decode`] straight into any `T: Deserialize`: no tree of FFI allocations in
//! between. The mapping follows `serde_json`'s: structs are maps keyed by field name (so a
//! value written as a struct can be read as a map, or as a `serde_json::Value`), unit enum
//! variants are their name, other variants a one-entry map, `None` and `()` are nil, bytes
//! are MessagePack `bin`. Types that format themselves differently for humans and machines
//! (addresses, times) use their human-readable form, as in JSON. One difference: a map key
//! keeps its type (an integer key stays an integer); the [`Value`] view turns
//! integer, bool and char keys into strings, as `serde_json` does.
//!
//! The bytes are untrusted on the reading side: [`decode`] refuses nesting deeper than
//! [`MAX_DEPTH`] and checks every length against what is left, and [`validate`] walks a
//! buffer without building anything (a host runs it on every value a worker returns).
//!
//! # Examples
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Point { x: i32, label: String }
//!
//! let mut buf = Vec::new();
//! plugin_abi::codec::encode_into(&Point { x: 1, label: "a".into() }, &mut buf).unwrap();
//! plugin_abi::codec::validate(&buf).unwrap();
//! let p: Point = plugin_abi::codec::decode(&buf).unwrap();
//! assert_eq!(p, Point { x: 1, label: "a".into() });
//!
//! // Read back untyped, or with the wrong type: the error names the field.
//! let v: plugin_abi::Value = plugin_abi::codec::decode(&buf).unwrap();
//! assert_eq!(v.get("label").and_then(|l| l.as_str()), Some("a"));
//! let err = plugin_abi::codec::decode::<Vec<i32>>(&buf).unwrap_err();
//! assert_eq!(err.to_string(), "expected a sequence, found map");
//! ```

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::serde::ValueError;
use crate::Value;

/// Nesting deeper than this (a list in a list in ...) is refused by [`decode`] and
/// [`validate`].
pub const MAX_DEPTH: usize = 128;

/// Appends the encoding of `value` to `buf`.
///
/// # Errors
///
/// Only what `value`'s `Serialize` impl reports (for example a custom error).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), ValueError> {
    let mut ser = rmp_serde::Serializer::new(buf)
        .with_struct_map()
        .with_human_readable();
    value
        .serialize(&mut ser)
        .map_err(|e| ValueError::new(e.to_string()))
}

/// The encoding of `value`, in a new buffer.
///
/// # Errors
///
/// As [`encode_into`].
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ValueError> {
    let mut buf = Vec::with_capacity(64);
    encode_into(value, &mut buf)?;
    Ok(buf)
}

thread_local! {
    /// The buffer [`with_encoded`] encodes into: one per thread, reused.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most the scratch buffer keeps between uses; a larger one is freed after use.
const SCRATCH_KEEP: usize = 64 * 1024;

/// Encodes `value` into a buffer this thread keeps for the purpose and lends the bytes to
/// `f`, which copies them where they go: encoding allocates nothing once the buffer has
/// grown to the size of the values a thread stores. `f` runs only if encoding succeeds.
///
/// # Errors
///
/// As [`encode_into`].
pub fn with_encoded<T: Serialize + ?Sized, R>(
    value: &T,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, ValueError> {
    let run = |buf: &mut Vec<u8>| {
        buf.clear();
        let result = encode_into(value, buf).map(|()| f(buf));
        if buf.capacity() > SCRATCH_KEEP {
            *buf = Vec::new();
        }
        result
    };
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        // Taken: a `Serialize` impl or `f` that stores a value itself gets its own.
        Err(_) => run(&mut Vec::new()),
    })
}

/// Reads a `T` from `bytes`, borrowing `&str` and `&[u8]` fields from them.
///
/// # Errors
///
/// Bytes that are not MessagePack, nest deeper than [`MAX_DEPTH`], or do not have the shape
/// of `T`, with `rmp-serde`'s message. [`decode`] gives a message naming the field.
pub fn decode_borrowed<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ValueError> {
    decode_raw(bytes).map_err(|e| ValueError::new(e.to_string()))
}

fn decode_raw<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable();
    de.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut de)
}

/// Reads a `T` from `bytes`.
///
/// # Errors
///
/// Bytes that are not MessagePack or nest deeper than [`MAX_DEPTH`]; or a value that does
/// not have the shape of `T`, with a message that names the path to the field and what was
/// found there (`items[2].name: expected a string, found int`), as
/// [`from_value_ref`](crate::serde::from_value_ref) gives.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValueError> {
    match decode_raw(bytes) {
        Ok(value) => Ok(value),
        Err(err) => Err(explain::<T>(bytes, err)),
    }
}

/// Why `bytes` did not decode as a `T`: read them as a [`Value`] and convert that, which
/// tracks the path to the failing field. Only on the error path.
#[cold]
#[inline(never)]
fn explain<T: DeserializeOwned>(bytes: &[u8], err: rmp_serde::decode::Error) -> ValueError {
    match decode_raw::<Value>(bytes) {
        Ok(value) => match crate::serde::from_value_ref::<T>(&value) {
            Err(explained) => explained,
            // The tree view accepts what the bytes did not (a number too wide, say).
            Ok(_) => ValueError::new(err.to_string()),
        },
        Err(_) => ValueError::new(format!("malformed value: {err}")),
    }
}

/// Why [`validate`] refused a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Where in the buffer the problem starts.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "malformed value at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for Malformed {}

impl From<Malformed> for ValueError {
    fn from(m: Malformed) -> Self {
        ValueError::new(m.to_string())
    }
}

/// Checks that `bytes` hold exactly one well-formed value: every length within the buffer,
/// strings UTF-8, nesting at most [`MAX_DEPTH`], no MessagePack extension types (never
/// written here), nothing after the value. Builds nothing and allocates nothing.
///
/// # Errors
///
/// [`Malformed`], with the offset of the first problem.
pub fn validate(bytes: &[u8]) -> Result<(), Malformed> {
    let mut walk = Walk { bytes, at: 0 };
    walk.value(0)?;
    if walk.at != bytes.len() {
        return Err(walk.fail("bytes after the value"));
    }
    Ok(())
}

struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Walk<'_> {
    fn fail(&self, reason: &'static str) -> Malformed {
        Malformed {
            offset: self.at,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Malformed> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.fail("a length runs past the end"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn len(&mut self, width: usize) -> Result<usize, Malformed> {
        let raw = self.take(width)?;
        Ok(raw.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)))
    }

    fn value(&mut self, depth: usize) -> Result<(), Malformed> {
        let start = self.at;
        let marker = *self.take(1)?.first().unwrap_or(&0xc1);
        let (items, pairs) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => return Ok(()),
            0x80..=0x8f => (usize::from(marker & 0x0f), true),
            0x90..=0x9f => (usize::from(marker & 0x0f), false),
            0xa0..=0xbf => return self.str(usize::from(marker & 0x1f)),
            0xc4 => return self.skip_len(1),
            0xc5 => return self.skip_len(2),
            0xc6 => return self.skip_len(4),
            0xca => return self.take(4).map(drop),
            0xcb => return self.take(8).map(drop),
            0xcc | 0xd0 => return self.take(1).map(drop),
            0xcd | 0xd1 => return self.take(2).map(drop),
            0xce | 0xd2 => return self.take(4).map(drop),
            0xcf | 0xd3 => return self.take(8).map(drop),
            0xd9 => {
                let n = self.len(1)?;
                return self.str(n);
            }
            0xda => {
                let n = self.len(2)?;
                return self.str(n);
            }
            0xdb => {
                let n = self.len(4)?;
                return self.str(n);
            }
            0xdc => (self.len(2)?, false),
            0xdd => (self.len(4)?, false),
            0xde => (self.len(2)?, true),
            0xdf => (self.len(4)?, true),
            // 0xc1 (never used), 0xc7-0xc9 and 0xd4-0xd8 (extension types).
            _ => {
                self.at = start;
                return Err(self.fail("a marker this encoding does not use"));
            }
        };
        if depth >= MAX_DEPTH {
            self.at = start;
            return Err(self.fail("nested deeper than the limit"));
        }
        // Every item takes at least one byte, so a huge claimed count fails at the end of
        // the buffer rather than looping.
        let count = if pairs {
            items.saturating_mul(2)
        } else {
            items
        };
        for _ in 0..count {
            self.value(depth + 1)?;
        }
        Ok(())
    }

    fn skip_len(&mut self, width: usize) -> Result<(), Malformed> {
        let n = self.len(width)?;
        self.take(n).map(drop)
    }

    fn str(&mut self, n: usize) -> Result<(), Malformed> {
        let start = self.at;
        let text = self.take(n)?;
        if std::str::from_utf8(text).is_err() {
            self.at = start;
            return Err(self.fail("a string that is not UTF-8"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Shape {
        Dot,
        Circle { r: f64 },
        Pair(i32, i32),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Everything {
        unit: (),
        flag: bool,
        small: u8,
        negative: i64,
        wide: u64,
        float: f64,
        text: String,
        #[serde(with = "serde_bytes_shim")]
        bytes: Vec<u8>,
        list: Vec<Option<i32>>,
        map: BTreeMap<String, Shape>,
    }

    /// Bytes as `bin`, the way `serde_bytes` writes them.
    mod serde_bytes_shim {
        pub(super) fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b)
        }
        pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<u8>, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
            }
            d.deserialize_bytes(V)
        }
    }

    fn everything() -> Everything {
        Everything {
            unit: (),
            flag: true,
            small: 200,
            negative: -70_000,
            wide: u64::MAX,
            float: 1.5,
            text: "héllo".repeat(20),
            bytes: vec![0, 1, 255],
            list: vec![Some(1), None, Some(-3)],
            map: BTreeMap::from([
                ("a".to_owned(), Shape::Dot),
                ("b".to_owned(), Shape::Circle { r: 2.0 }),
                ("c".to_owned(), Shape::Pair(1, 2)),
            ]),
        }
    }

    #[test]
    fn every_shape_round_trips_and_validates() {
        let bytes = encode(&everything()).unwrap();
        validate(&bytes).unwrap();
        assert_eq!(decode::<Everything>(&bytes).unwrap(), everything());
    }

    #[test]
    fn the_encoding_reads_like_json() {
        let mut e = everything();
        e.bytes.clear(); // JSON has no bytes.
        let bytes = encode(&(e.map, e.list)).unwrap();
        let json: serde_json::Value = decode(&bytes).unwrap();
        let json = serde_json::json!({ "map": json[0], "list": json[1], "text": e.text });
        assert_eq!(json["map"]["b"]["Circle"]["r"], 2.0);
        assert_eq!(json["list"][1], serde_json::Value::Null);
        // And the other way: JSON written, read as the struct.
        let again = encode(&json).unwrap();
        let value: Value = decode(&again).unwrap();
        assert_eq!(
            value.get("text").and_then(Value::as_str),
            Some(&*"héllo".repeat(20))
        );
    }

    #[test]
    fn a_wrong_shape_names_the_field() {
        let bytes = encode(&serde_json::json!({ "items": [ { "name": 3 } ] })).unwrap();
        #[derive(Deserialize, Debug)]
        #[allow(dead_code, reason = "only the error is looked at")]
        struct Item {
            name: String,
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code, reason = "only the error is looked at")]
        struct Doc {
            items: Vec<Item>,
        }
        let err = decode::<Doc>(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "items[0].name: expected a string, found int"
        );
    }

    #[test]
    fn integer_keys_read_as_strings_in_the_value_view() {
        let bytes = encode(&BTreeMap::from([(7u32, "seven")])).unwrap();
        let value: Value = decode(&bytes).unwrap();
        assert_eq!(value.get("7").and_then(Value::as_str), Some("seven"));
        assert_eq!(
            decode::<BTreeMap<u32, String>>(&bytes).unwrap()[&7],
            "seven"
        );
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut bytes = vec![0x91; depth];
        bytes.push(0xc0);
        bytes
    }

    #[test]
    fn nesting_is_bounded_on_both_readers() {
        validate(&nested(MAX_DEPTH)).unwrap();
        let err = validate(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(err.reason, "nested deeper than the limit");
        assert_eq!(err.offset, MAX_DEPTH);
        assert!(decode::<Value>(&nested(MAX_DEPTH + 1)).is_err());
        // Deep enough to overflow a stack if nothing bounded it.
        assert!(decode::<Value>(&nested(1_000_000)).is_err());
        assert!(validate(&nested(1_000_000)).is_err());
    }

    #[test]
    fn malformed_buffers_are_refused_with_where() {
        let cases: &[(&[u8], usize, &str)] = &[
            (&[], 0, "a length runs past the end"),
            (&[0xc1], 0, "a marker this encoding does not use"),
            (&[0xd4, 0, 0], 0, "a marker this encoding does not use"),
            (&[0xa3, b'a'], 1, "a length runs past the end"),
            (
                &[0xdb, 0xff, 0xff, 0xff, 0xff],
                5,
                "a length runs past the end",
            ),
            (&[0xa2, 0xff, 0xfe], 1, "a string that is not UTF-8"),
            (&[0xc0, 0xc0], 1, "bytes after the value"),
            // A list that claims four billion items and holds one.
            (
                &[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0],
                6,
                "a length runs past the end",
            ),
            (&[0x81, 0xa1, b'k'], 3, "a length runs past the end"),
        ];
        for (bytes, offset, reason) in cases {
            let err = validate(bytes).unwrap_err();
            assert_eq!((err.offset, err.reason), (*offset, *reason), "{bytes:x?}");
            let decoded = decode::<Value>(bytes);
            // `decode` reads the first value only, an extension type as a list and a string
            // that is not UTF-8 as bytes (a `String` field then refuses it).
            let lenient = matches!(
                *reason,
                "bytes after the value" | "a string that is not UTF-8"
            ) || bytes.first() == Some(&0xd4);
            assert!(decoded.is_err() || lenient, "{bytes:x?} {decoded:?}");
        }
    }
}
