//! [`Value`] to `T: Deserialize`: `Deserializer` for `&Value` (behind
//! [`from_value_ref`](super::from_value_ref)), and `Deserialize` for [`Value`] itself.

use std::fmt;

use abi_stable::std_types::{RString, RVec};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};
use serde::Deserialize;

use super::ValueError;
use crate::value::{MapEntry, Value};

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
