//! `T: Serialize` to [`Value`] (the serializer behind [`to_value`](super::to_value)), and
//! `Serialize` for [`Value`] itself.

use std::fmt;

use abi_stable::std_types::{RString, RVec};
use serde::ser::{self, Serialize, Serializer};

use super::ValueError;
use crate::value::{MapEntry, Value};

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

/// Serializes `value` into a [`Value`]; see [`to_value`](super::to_value).
pub(super) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ValueSerializer::default())
}

/// The [`Serializer`] behind [`to_value`]; see the [module documentation](super) for the
/// mapping.
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
