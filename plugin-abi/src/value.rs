//! `Value`, the FFI-safe value carried by contexts: null, bool, int, float, string, bytes,
//! list and map.

use std::fmt;

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};

/// A value stored in a plugin context.
///
/// The untyped view of a context value. Values cross the boundary as encoded bytes
/// ([`crate::codec`], feature `serde`); a `Value` is what those bytes decode to when no
/// Rust type is asked for, and any serde type converts to and from one ([`crate::serde`]).
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value (JSON `null`, Rust `()` or `None`).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A UTF-8 string.
    String(RString),
    /// Raw bytes.
    Bytes(RVec<u8>),
    /// An ordered list of values.
    List(RVec<Value>),
    /// String keys to values, in insertion order.
    Map(RVec<MapEntry>),
}

/// One key/value pair of a [`Value::Map`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct MapEntry {
    /// The key.
    pub key: RString,
    /// The value.
    pub value: Value,
}

impl Value {
    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// The string, if this is a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a [`Value::Int`] or a [`Value::Float`].
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Looks up `key` if this is a [`Value::Map`].
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|e| e.key.as_str() == key)
                .map(|e| &e.value),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(RString::from(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(RString::from(s))
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(RVec::from(b))
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::List(RVec::from(items))
    }
}

impl FromIterator<(String, Value)> for Value {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Value::Map(
            iter.into_iter()
                .map(|(key, value)| MapEntry {
                    key: RString::from(key),
                    value,
                })
                .collect(),
        )
    }
}

/// Formats the value as compact JSON-like text (bytes as a list of numbers).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{:?}", s.as_str()),
            Value::Bytes(b) => write!(f, "{:?}", b.as_slice()),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{:?}:{}", e.key.as_str(), e.value)?;
                }
                f.write_str("}")
            }
        }
    }
}
