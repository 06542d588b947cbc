//! Conversions between [`Value`] and any serde type (feature `serde`).
//!
//! - [`Value`] implements [`Serialize`] and [`Deserialize`], so it can be read from and written
//!   to any serde format (JSON, ...).
//! - [`to_value`] turns any `T: Serialize` into a [`Value`] directly, without going through an
//!   intermediate format.
//! - [`from_value_ref`] turns a borrowed [`Value`] back into any `T: Deserialize`; `&str` and
//!   `&[u8]` fields can borrow from the value. `&Value` implements [`Deserializer`].
//!
//! The mapping follows `serde_json`: structs and maps become [`Value::Map`] (keys must be
//! strings; integer, bool and char keys are converted to their string form), sequences and
//! tuples become [`Value::List`], `()` / `None` / unit structs become [`Value::Null`], unit enum
//! variants become their name as a [`Value::String`], and the other enum variants are
//! externally tagged: a map with one entry `{variant: payload}`.
//!
//! # Examples
//!
//! ```
//! use plugin_abi::serde::{from_value_ref, to_value};
//! use plugin_abi::Value;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Point {
//!     x: i32,
//!     label: String,
//! }
//!
//! let v = to_value(&Point { x: 1, label: "a".into() }).unwrap();
//! assert_eq!(v.get("x"), Some(&Value::Int(1)));
//! let p: Point = from_value_ref(&v).unwrap();
//! assert_eq!(p, Point { x: 1, label: "a".into() });
//!
//! #[derive(serde::Deserialize)]
//! struct Borrowed<'a> {
//!     label: &'a str,
//! }
//! let b: Borrowed<'_> = from_value_ref(&v).unwrap();
//! assert_eq!(b.label, "a");
//!
//! let bad = Value::from_iter([("x".to_string(), Value::from("no"))]);
//! let err = from_value_ref::<Point>(&bad).unwrap_err();
//! assert_eq!(err.to_string(), "x: expected i32, found string");
//! ```

use std::fmt;

use abi_stable::std_types::{RString, RVec};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Expected, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};
use serde::ser::{self, Serialize, Serializer};
use serde::Deserialize;

use crate::value::{MapEntry, Value};

// ---------------------------------------------------------------------------------------------
// Public functions
// ---------------------------------------------------------------------------------------------

/// Converts any serializable value into a [`Value`].
///
/// Fails if a map key does not serialize to a string, integer, bool or char, or if an integer
/// does not fit in an `i64`.
///
/// ```
/// use plugin_abi::{serde::to_value, Value};
/// assert_eq!(to_value(&"hi").unwrap(), Value::from("hi"));
/// assert!(to_value(&u64::MAX).is_err());
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ValueSerializer::default())
}

/// Converts a borrowed [`Value`] into any deserializable type; `&str` and `&[u8]` fields
/// borrow from `value`.
pub fn from_value_ref<'de, T: Deserialize<'de>>(value: &'de Value) -> Result<T, ValueError> {
    T::deserialize(value)
}

// ---------------------------------------------------------------------------------------------
// Error
// ---------------------------------------------------------------------------------------------

/// The error of a conversion between a [`Value`] and a serde type.
///
/// Its message names what was expected and what was found (for example
/// `expected a string, found int`) and, when the failure is inside a map, struct or list, is
/// prefixed with the path to it (for example `items[2].name: expected a string, found int`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueError {
    inner: Box<ErrorInner>,
}

#[derive(Debug, Clone, PartialEq)]
struct ErrorInner {
    message: String,
    /// Innermost segment first.
    path: Vec<PathSegment>,
}

#[derive(Debug, Clone, PartialEq)]
enum PathSegment {
    Key(String),
    Index(usize),
}

impl ValueError {
    fn new(message: impl Into<String>) -> Self {
        ValueError {
            inner: Box::new(ErrorInner {
                message: message.into(),
                path: Vec::new(),
            }),
        }
    }

    fn at_key(mut self, key: &str) -> Self {
        self.inner.path.push(PathSegment::Key(key.to_owned()));
        self
    }

    fn at_index(mut self, index: usize) -> Self {
        self.inner.path.push(PathSegment::Index(index));
        self
    }

    /// The message, without the path.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The path to the failing field, such as `items[2].name`; empty when the failure is at
    /// the top level.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.inner.path.iter().rev() {
            match seg {
                PathSegment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                PathSegment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inner.path.is_empty() {
            f.write_str(&self.inner.message)
        } else {
            write!(f, "{}: {}", self.path(), self.inner.message)
        }
    }
}

impl std::error::Error for ValueError {}

impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::new(msg.to_string())
    }
}

/// A short name for what was found, in the vocabulary of [`Value::type_name`].
fn unexpected_kind(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(_) => "bool".into(),
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "int".into(),
        Unexpected::Float(_) => "float".into(),
        Unexpected::Char(_) => "char".into(),
        Unexpected::Str(_) => "string".into(),
        Unexpected::Bytes(_) => "bytes".into(),
        Unexpected::Unit => "null".into(),
        Unexpected::Option => "option".into(),
        Unexpected::NewtypeStruct => "newtype struct".into(),
        Unexpected::Seq => "list".into(),
        Unexpected::Map => "map".into(),
        Unexpected::Enum => "enum".into(),
        Unexpected::UnitVariant => "unit variant".into(),
        Unexpected::NewtypeVariant => "newtype variant".into(),
        Unexpected::TupleVariant => "tuple variant".into(),
        Unexpected::StructVariant => "struct variant".into(),
        Unexpected::Other(other) => (*other).to_owned(),
    }
}

/// What was found, with the value for scalars (`int 300`, `string "x"`).
fn unexpected_value(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("bool {b}"),
        Unexpected::Unsigned(n) => format!("int {n}"),
        Unexpected::Signed(n) => format!("int {n}"),
        Unexpected::Float(x) => format!("float {x}"),
        Unexpected::Char(c) => format!("char {c:?}"),
        Unexpected::Str(s) => format!("string {s:?}"),
        other => unexpected_kind(other),
    }
}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        ValueError::new(format!("expected {exp}, found {}", unexpected_kind(&unexp)))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        ValueError::new(format!(
            "invalid value: expected {exp}, found {}",
            unexpected_value(&unexp)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Serialize / Deserialize for Value
// ---------------------------------------------------------------------------------------------

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(x) => serializer.serialize_f64(*x),
            Value::String(s) => serializer.serialize_str(s.as_str()),
            Value::Bytes(b) => serializer.serialize_bytes(b.as_slice()),
            Value::List(items) => serializer.collect_seq(items.iter()),
            Value::Map(entries) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for e in entries.iter() {
                    map.serialize_entry(e.key.as_str(), &e.value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Ok(Value::Float(v as f64)),
        }
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Ok(Value::Float(v as f64)),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Ok(Value::Float(v as f64)),
        }
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_char<E>(self, v: char) -> Result<Value, E> {
        let mut buf = [0u8; 4];
        Ok(Value::String(RString::from(&*v.encode_utf8(&mut buf))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(RString::from(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(RString::from(v)))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(RVec::from(v.to_vec())))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(RVec::from(v)))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::List(RVec::from(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(key) = map.next_key_seed(MapKeySeed)? {
            let value = map.next_value::<Value>()?;
            entries.push(MapEntry { key, value });
        }
        Ok(Value::Map(RVec::from(entries)))
    }
}

/// Reads a map key as a string; integer, bool and char keys are converted to their string
/// form.
struct MapKeySeed;

impl<'de> DeserializeSeed<'de> for MapKeySeed {
    type Value = RString;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RString, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MapKeySeed {
    type Value = RString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string map key")
    }

    fn visit_str<E>(self, v: &str) -> Result<RString, E> {
        Ok(RString::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<RString, E> {
        Ok(RString::from(v))
    }

    fn visit_bool<E>(self, v: bool) -> Result<RString, E> {
        Ok(RString::from(if v { "true" } else { "false" }))
    }

    fn visit_i64<E>(self, v: i64) -> Result<RString, E> {
        Ok(RString::from(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<RString, E> {
        Ok(RString::from(v.to_string()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<RString, E> {
        Ok(RString::from(v.to_string()))
    }

    fn visit_u128<E>(self, v: u128) -> Result<RString, E> {
        Ok(RString::from(v.to_string()))
    }

    fn visit_char<E>(self, v: char) -> Result<RString, E> {
        Ok(RString::from(v.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Serializer: T -> Value
// ---------------------------------------------------------------------------------------------

/// The [`Serializer`] behind [`to_value`]; see the [module documentation](self) for the mapping.
#[derive(Debug, Clone, Copy, Default)]
struct ValueSerializer {
    /// Serializing a map key (see [`map_key`]) rather than a value.
    map_key: bool,
}

impl ValueSerializer {
    /// An integer of a type wider than `i64`. Out of range, it is an error in a value but its
    /// decimal string in a map key, where any integer has a valid form.
    fn wide_int<N>(self, v: N) -> Result<Value, ValueError>
    where
        N: Copy + fmt::Display + TryInto<i64>,
    {
        match v.try_into() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) if self.map_key => Ok(string_value(&v.to_string())),
            Err(_) => Err(int_out_of_range(v)),
        }
    }
}

fn int_out_of_range(v: impl fmt::Display) -> ValueError {
    ValueError::new(format!("integer {v} does not fit in an i64"))
}

fn string_value(s: &str) -> Value {
    Value::String(RString::from(s))
}

fn single_entry(key: &'static str, value: Value) -> Value {
    Value::Map(RVec::from(vec![MapEntry {
        key: RString::from(key),
        value,
    }]))
}

impl Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = ListSerializer;
    type SerializeTuple = ListSerializer;
    type SerializeTupleStruct = ListSerializer;
    type SerializeTupleVariant = TupleVariantSerializer;
    type SerializeMap = MapSerializer;
    type SerializeStruct = MapSerializer;
    type SerializeStructVariant = StructVariantSerializer;

    fn serialize_bool(self, v: bool) -> Result<Value, ValueError> {
        Ok(Value::Bool(v))
    }

    fn serialize_i8(self, v: i8) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i16(self, v: i16) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i32(self, v: i32) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i64(self, v: i64) -> Result<Value, ValueError> {
        Ok(Value::Int(v))
    }

    fn serialize_i128(self, v: i128) -> Result<Value, ValueError> {
        self.wide_int(v)
    }

    fn serialize_u8(self, v: u8) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u16(self, v: u16) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u32(self, v: u32) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u64(self, v: u64) -> Result<Value, ValueError> {
        self.wide_int(v)
    }

    fn serialize_u128(self, v: u128) -> Result<Value, ValueError> {
        self.wide_int(v)
    }

    fn serialize_f32(self, v: f32) -> Result<Value, ValueError> {
        Ok(Value::Float(v.into()))
    }

    fn serialize_f64(self, v: f64) -> Result<Value, ValueError> {
        Ok(Value::Float(v))
    }

    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        let mut buf = [0u8; 4];
        Ok(string_value(v.encode_utf8(&mut buf)))
    }

    fn serialize_str(self, v: &str) -> Result<Value, ValueError> {
        Ok(string_value(v))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::Bytes(RVec::from(v.to_vec())))
    }

    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ValueError> {
        if self.map_key {
            // `None` has no key form, so neither has `Some`.
            return Err(key_must_be_string("option"));
        }
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(string_value(variant))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        let payload = value.serialize(self).map_err(|e| e.at_key(variant))?;
        Ok(single_entry(variant, payload))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<ListSerializer, ValueError> {
        Ok(ListSerializer {
            items: Vec::with_capacity(len.unwrap_or(0)),
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<ListSerializer, ValueError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<ListSerializer, ValueError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<TupleVariantSerializer, ValueError> {
        Ok(TupleVariantSerializer {
            variant,
            list: ListSerializer {
                items: Vec::with_capacity(len),
            },
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapSerializer, ValueError> {
        Ok(MapSerializer {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            next_key: None,
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<MapSerializer, ValueError> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<StructVariantSerializer, ValueError> {
        Ok(StructVariantSerializer {
            variant,
            map: MapSerializer {
                entries: Vec::with_capacity(len),
                next_key: None,
            },
        })
    }
}

/// Builds a [`Value::List`] for a sequence, tuple or tuple struct (see [`ValueSerializer`]).
#[derive(Debug)]
struct ListSerializer {
    items: Vec<Value>,
}

impl ListSerializer {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        let index = self.items.len();
        let v = value
            .serialize(ValueSerializer::default())
            .map_err(|e| e.at_index(index))?;
        self.items.push(v);
        Ok(())
    }

    fn finish(self) -> Value {
        Value::List(RVec::from(self.items))
    }
}

impl ser::SerializeSeq for ListSerializer {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for ListSerializer {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for ListSerializer {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(self.finish())
    }
}

/// Builds `{variant: [fields...]}` for a tuple variant (see [`ValueSerializer`]).
#[derive(Debug)]
struct TupleVariantSerializer {
    variant: &'static str,
    list: ListSerializer,
}

impl ser::SerializeTupleVariant for TupleVariantSerializer {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        let variant = self.variant;
        self.list.push(value).map_err(|e| e.at_key(variant))
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(single_entry(self.variant, self.list.finish()))
    }
}

/// Builds a [`Value::Map`] for a map or struct (see [`ValueSerializer`]).
#[derive(Debug)]
struct MapSerializer {
    entries: Vec<MapEntry>,
    next_key: Option<RString>,
}

impl MapSerializer {
    fn push_entry<T: Serialize + ?Sized>(
        &mut self,
        key: RString,
        value: &T,
    ) -> Result<(), ValueError> {
        match value.serialize(ValueSerializer::default()) {
            Ok(value) => {
                self.entries.push(MapEntry { key, value });
                Ok(())
            }
            Err(e) => Err(e.at_key(key.as_str())),
        }
    }

    fn finish(self) -> Value {
        Value::Map(RVec::from(self.entries))
    }
}

impl ser::SerializeMap for MapSerializer {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        self.next_key = Some(map_key(key)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        let key = self
            .next_key
            .take()
            .ok_or_else(|| ValueError::new("serialize_value called before serialize_key"))?;
        self.push_entry(key, value)
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), ValueError> {
        let key = map_key(key)?;
        self.push_entry(key, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(self.finish())
    }
}

impl ser::SerializeStruct for MapSerializer {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ValueError> {
        let value = value
            .serialize(ValueSerializer::default())
            .map_err(|e| e.at_key(key))?;
        self.entries.push(MapEntry {
            key: RString::from(key),
            value,
        });
        Ok(())
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(self.finish())
    }
}

/// Builds `{variant: {fields...}}` for a struct variant (see [`ValueSerializer`]).
#[derive(Debug)]
struct StructVariantSerializer {
    variant: &'static str,
    map: MapSerializer,
}

impl ser::SerializeStructVariant for StructVariantSerializer {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ValueError> {
        let variant = self.variant;
        ser::SerializeStruct::serialize_field(&mut self.map, key, value)
            .map_err(|e| e.at_key(variant))
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(single_entry(self.variant, self.map.finish()))
    }
}

/// Converts a map key: it is serialized like a value, then strings (which include chars and
/// unit variants) are kept, and integers and bools take their string form, as in `serde_json`.
/// Anything else is refused.
fn map_key<K: Serialize + ?Sized>(key: &K) -> Result<RString, ValueError> {
    match key.serialize(ValueSerializer { map_key: true })? {
        Value::String(s) => Ok(s),
        Value::Int(i) => Ok(RString::from(i.to_string())),
        Value::Bool(b) => Ok(RString::from(if b { "true" } else { "false" })),
        other => Err(key_must_be_string(other.type_name())),
    }
}

fn key_must_be_string(found: &str) -> ValueError {
    ValueError::new(format!("map key must be a string, found {found}"))
}

// ---------------------------------------------------------------------------------------------
// Deserializer: &Value -> T
// ---------------------------------------------------------------------------------------------

/// What a value is, for "expected ..., found ..." messages.
fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Int(i) => Unexpected::Signed(*i),
        Value::Float(x) => Unexpected::Float(*x),
        Value::String(s) => Unexpected::Str(s.as_str()),
        Value::Bytes(b) => Unexpected::Bytes(b.as_slice()),
        Value::List(_) => Unexpected::Seq,
        Value::Map(_) => Unexpected::Map,
    }
}

/// Deserializes from a borrowed value; `&str` and `&[u8]` can borrow from it.
impl<'de> Deserializer<'de> for &'de Value {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::String(s) => visitor.visit_borrowed_str(s.as_str()),
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b.as_slice()),
            Value::List(items) => {
                let mut access = ListAccess {
                    iter: items.as_slice().iter(),
                    index: 0,
                };
                let out = visitor.visit_seq(&mut access)?;
                if access.iter.len() == 0 {
                    Ok(out)
                } else {
                    Err(de::Error::invalid_length(
                        items.len(),
                        &"fewer elements in list",
                    ))
                }
            }
            Value::Map(entries) => {
                let mut access = EntryAccess {
                    iter: entries.as_slice().iter(),
                    pending: None,
                };
                let out = visitor.visit_map(&mut access)?;
                if access.iter.len() == 0 {
                    Ok(out)
                } else {
                    Err(de::Error::invalid_length(
                        entries.len(),
                        &"fewer entries in map",
                    ))
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// A sequence; [`Value::Bytes`] is read as a sequence of `u8` too.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        let Value::Bytes(bytes) = self else {
            return self.deserialize_any(visitor);
        };
        let mut access = BytesAccess {
            bytes: bytes.as_slice(),
            pos: 0,
        };
        let out = visitor.visit_seq(&mut access)?;
        if access.pos == bytes.len() {
            Ok(out)
        } else {
            Err(de::Error::invalid_length(bytes.len(), &"fewer bytes"))
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    /// A unit variant is its name as a string; any other variant is a map with one entry,
    /// `{name: payload}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Value::String(name) => visitor.visit_enum(EnumDe {
                name: name.as_str(),
                payload: None,
            }),
            Value::Map(entries) => match entries.as_slice() {
                [entry] => visitor.visit_enum(EnumDe {
                    name: entry.key.as_str(),
                    payload: Some(&entry.value),
                }),
                _ => Err(de::Error::invalid_value(
                    Unexpected::Map,
                    &"a map with a single key (an enum variant)",
                )),
            },
            other => Err(de::Error::invalid_type(
                unexpected(other),
                &"a string or a map with a single key (an enum)",
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct map struct identifier
    }
}

/// The items of a [`Value::List`].
struct ListAccess<'de> {
    iter: std::slice::Iter<'de, Value>,
    index: usize,
}

impl<'de> SeqAccess<'de> for ListAccess<'de> {
    type Error = ValueError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ValueError> {
        let Some(item) = self.iter.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(item)
            .map(Some)
            .map_err(|e| e.at_index(index))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// The bytes of a [`Value::Bytes`], read as a sequence of `u8`.
struct BytesAccess<'de> {
    bytes: &'de [u8],
    pos: usize,
}

impl<'de> SeqAccess<'de> for BytesAccess<'de> {
    type Error = ValueError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ValueError> {
        let Some(&b) = self.bytes.get(self.pos) else {
            return Ok(None);
        };
        let index = self.pos;
        self.pos += 1;
        seed.deserialize(IntoDeserializer::<ValueError>::into_deserializer(b))
            .map(Some)
            .map_err(|e| e.at_index(index))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.bytes.len() - self.pos)
    }
}

/// The entries of a [`Value::Map`].
struct EntryAccess<'de> {
    iter: std::slice::Iter<'de, MapEntry>,
    /// The entry whose key was just read.
    pending: Option<&'de MapEntry>,
}

impl<'de> MapAccess<'de> for EntryAccess<'de> {
    type Error = ValueError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ValueError> {
        let Some(entry) = self.iter.next() else {
            return Ok(None);
        };
        let key = entry.key.as_str();
        let k = seed
            .deserialize(KeyDeserializer { key })
            .map_err(|e| e.at_key(key))?;
        self.pending = Some(entry);
        Ok(Some(k))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, ValueError> {
        let entry = self
            .pending
            .take()
            .ok_or_else(|| ValueError::new("next_value called before next_key"))?;
        seed.deserialize(&entry.value)
            .map_err(|e| e.at_key(entry.key.as_str()))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Deserializes a map key (or an enum variant name): a string, parsed when an integer or a
/// bool is asked for.
struct KeyDeserializer<'de> {
    key: &'de str,
}

macro_rules! deserialize_parsed_key {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
                match self.key.parse::<$ty>() {
                    Ok(n) => visitor.$visit(n),
                    Err(_) => visitor.visit_borrowed_str(self.key),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for KeyDeserializer<'de> {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_borrowed_str(self.key)
    }

    deserialize_parsed_key! {
        deserialize_bool => bool, visit_bool;
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_i128 => i128, visit_i128;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_u128 => u128, visit_u128;
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_enum(de::value::StrDeserializer::<ValueError>::new(self.key))
    }

    serde::forward_to_deserialize_any! {
        f32 f64 char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}

/// An enum: a variant name and, unless it is a plain string, a payload.
struct EnumDe<'de> {
    name: &'de str,
    payload: Option<&'de Value>,
}

impl<'de> EnumDe<'de> {
    /// The payload of a variant that must have one.
    fn payload(&self, expected: &'static str) -> Result<&'de Value, ValueError> {
        self.payload
            .ok_or_else(|| de::Error::invalid_type(Unexpected::UnitVariant, &expected))
    }
}

impl<'de> EnumAccess<'de> for EnumDe<'de> {
    type Error = ValueError;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self), ValueError> {
        let variant = seed.deserialize(KeyDeserializer { key: self.name })?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for EnumDe<'de> {
    type Error = ValueError;

    /// A unit variant is normally a plain string, but `{name: null}` is accepted too.
    fn unit_variant(self) -> Result<(), ValueError> {
        match self.payload {
            None => Ok(()),
            Some(payload) => <()>::deserialize(payload).map_err(|e| e.at_key(self.name)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ValueError> {
        let payload = self.payload("newtype variant")?;
        seed.deserialize(payload).map_err(|e| e.at_key(self.name))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        let payload = self.payload("tuple variant")?;
        payload
            .deserialize_seq(visitor)
            .map_err(|e| e.at_key(self.name))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        let payload = self.payload("struct variant")?;
        payload
            .deserialize_map(visitor)
            .map_err(|e| e.at_key(self.name))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};

    use super::*;

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

    #[test]
    fn non_string_keys() {
        round_trip(&BTreeMap::from([(Key::A, 1), (Key::B, 2)]));
        round_trip(&BTreeMap::from([(-5i64, "x".to_string())]));
        round_trip(&BTreeMap::from([(true, 1u8)]));
        round_trip(&BTreeMap::from([('c', 1u8)]));
        round_trip(&HashMap::from([(u64::MAX, 1u8)]));
        let err = to_value(&BTreeMap::from([((1, 2), 3)])).unwrap_err();
        assert!(
            err.to_string().contains("map key must be a string"),
            "{err}"
        );
        let err = to_value(&HashMap::from([(vec![1u8], 3)])).unwrap_err();
        assert!(
            err.to_string().contains("map key must be a string"),
            "{err}"
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

    #[test]
    fn u64_overflow_is_an_error() {
        let err = to_value(&u64::MAX).unwrap_err();
        assert_eq!(
            err.to_string(),
            "integer 18446744073709551615 does not fit in an i64"
        );
        let err = to_value(&vec![0, u64::MAX]).unwrap_err();
        assert_eq!(err.path(), "[1]");
        assert!(to_value(&u128::MAX).is_err());
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
        let err = from_value_ref::<Outer>(&v).unwrap_err();
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
        let err = from_value_ref::<(i32, i32)>(&Value::from(vec![Value::Int(1); 3])).unwrap_err();
        assert!(err.to_string().contains("invalid length 3"), "{err}");
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
        // serde_json::Value -> Value through `ValueSerializer`, and back through the
        // deserializers.
        let v2 = to_value(&json).unwrap();
        assert_eq!(from_value_ref::<serde_json::Value>(&v2).unwrap(), json);
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
}
