//! [`to_scalar`]: a serde value that needs no allocation to pass, read without allocating.
//!
//! The SDK tries this before [`to_value`](super::to_value) so that storing a number, a bool
//! or a short string in a context allocates nothing (see [`HostContext::set_scalar`]). It
//! gives exactly what `to_value` would, or `None` where `to_value` would build anything else
//! (or fail): the caller then falls back to `to_value`.
//!
//! [`HostContext::set_scalar`]: crate::HostContext::set_scalar

use std::fmt;

use abi_stable::std_types::RStr;
use serde::ser::{Impossible, Serialize, Serializer};

use crate::value::Scalar;

/// The longest string [`to_scalar`] carries; longer ones go through `to_value`.
pub const INLINE_STR: usize = 64;

/// A scalar value, with a string of up to [`INLINE_STR`] bytes held inline.
#[derive(Clone, Copy)]
pub struct OwnedScalar {
    kind: Kind,
    len: u8,
    text: [u8; INLINE_STR],
}

#[derive(Clone, Copy)]
enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

impl OwnedScalar {
    fn new(kind: Kind) -> Self {
        OwnedScalar {
            kind,
            len: 0,
            text: [0; INLINE_STR],
        }
    }

    fn text(s: &str) -> Result<Self, NotScalar> {
        if s.len() > INLINE_STR {
            return Err(NotScalar);
        }
        let mut scalar = OwnedScalar::new(Kind::Str);
        scalar.text[..s.len()].copy_from_slice(s.as_bytes());
        // At most `INLINE_STR` (64), so it fits.
        scalar.len = s.len() as u8;
        Ok(scalar)
    }

    /// The value, borrowing the inline string.
    pub fn as_scalar(&self) -> Scalar<'_> {
        match self.kind {
            Kind::Null => Scalar::Null,
            Kind::Bool(b) => Scalar::Bool(b),
            Kind::Int(i) => Scalar::Int(i),
            Kind::Float(f) => Scalar::Float(f),
            Kind::Str => {
                let bytes = &self.text[..usize::from(self.len)];
                // SAFETY: `text` copies a whole `&str` into `self.text` and sets `len` to
                // its length (it refuses a string that does not fit rather than cutting
                // it), and nothing else writes either, so `bytes` is valid UTF-8.
                let text = unsafe { std::str::from_utf8_unchecked(bytes) };
                Scalar::Str(RStr::from_str(text))
            }
        }
    }
}

impl fmt::Debug for OwnedScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_scalar().fmt(f)
    }
}

/// `value` as a scalar, if [`to_value`](super::to_value) would make it a null, a bool, an
/// int, a float or a string of at most [`INLINE_STR`] bytes; `None` otherwise.
pub fn to_scalar<T: Serialize + ?Sized>(value: &T) -> Option<OwnedScalar> {
    value.serialize(ScalarSerializer).ok()
}

/// Not a scalar, or a scalar `to_value` would refuse: the caller uses `to_value`.
#[derive(Debug)]
struct NotScalar;

impl fmt::Display for NotScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a scalar")
    }
}

impl std::error::Error for NotScalar {}

impl serde::ser::Error for NotScalar {
    fn custom<T: fmt::Display>(_: T) -> Self {
        NotScalar
    }
}

struct ScalarSerializer;

type No = Impossible<OwnedScalar, NotScalar>;

fn int(v: impl TryInto<i64>) -> Result<OwnedScalar, NotScalar> {
    // `to_value` refuses integers beyond i64; leave the error to it.
    v.try_into()
        .map(|i| OwnedScalar::new(Kind::Int(i)))
        .map_err(|_| NotScalar)
}

impl Serializer for ScalarSerializer {
    type Ok = OwnedScalar;
    type Error = NotScalar;
    type SerializeSeq = No;
    type SerializeTuple = No;
    type SerializeTupleStruct = No;
    type SerializeTupleVariant = No;
    type SerializeMap = No;
    type SerializeStruct = No;
    type SerializeStructVariant = No;

    fn serialize_bool(self, v: bool) -> Result<OwnedScalar, NotScalar> {
        Ok(OwnedScalar::new(Kind::Bool(v)))
    }
    fn serialize_i8(self, v: i8) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_i16(self, v: i16) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_i32(self, v: i32) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_i64(self, v: i64) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_i128(self, v: i128) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_u16(self, v: u16) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_u32(self, v: u32) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_u64(self, v: u64) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_u128(self, v: u128) -> Result<OwnedScalar, NotScalar> {
        int(v)
    }
    fn serialize_f32(self, v: f32) -> Result<OwnedScalar, NotScalar> {
        Ok(OwnedScalar::new(Kind::Float(v.into())))
    }
    fn serialize_f64(self, v: f64) -> Result<OwnedScalar, NotScalar> {
        Ok(OwnedScalar::new(Kind::Float(v)))
    }
    fn serialize_char(self, v: char) -> Result<OwnedScalar, NotScalar> {
        OwnedScalar::text(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<OwnedScalar, NotScalar> {
        OwnedScalar::text(v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<OwnedScalar, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_none(self) -> Result<OwnedScalar, NotScalar> {
        Ok(OwnedScalar::new(Kind::Null))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<OwnedScalar, NotScalar> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<OwnedScalar, NotScalar> {
        Ok(OwnedScalar::new(Kind::Null))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<OwnedScalar, NotScalar> {
        Ok(OwnedScalar::new(Kind::Null))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<OwnedScalar, NotScalar> {
        OwnedScalar::text(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<OwnedScalar, NotScalar> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<OwnedScalar, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<No, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_tuple(self, _: usize) -> Result<No, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<No, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<No, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<No, NotScalar> {
        Err(NotScalar)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, NotScalar> {
        Err(NotScalar)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;
    use crate::serde::to_value;
    use crate::Value;

    /// What `to_scalar` gives, as a `Value`, must be what `to_value` gives.
    fn same_as_to_value<T: Serialize + ?Sized>(value: &T) -> bool {
        let scalar = to_scalar(value).expect("a scalar");
        to_value(value).unwrap() == Value::from(scalar.as_scalar())
    }

    #[derive(Serialize)]
    struct Meters(f64);

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    enum Mode {
        Fast,
        Tuned(u8),
    }

    /// Serializes as bytes.
    struct Raw;

    impl Serialize for Raw {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b"ab")
        }
    }

    #[test]
    fn scalars_match_to_value() {
        assert!(same_as_to_value(&()));
        assert!(same_as_to_value(&None::<i32>));
        assert!(same_as_to_value(&Some(3u8)));
        assert!(same_as_to_value(&true));
        assert!(same_as_to_value(&-7i8));
        assert!(same_as_to_value(&i64::MIN));
        assert!(same_as_to_value(&(i64::MAX as u64)));
        assert!(same_as_to_value(&(i64::MAX as i128)));
        assert!(same_as_to_value(&1.5f32));
        assert!(same_as_to_value(&f64::MAX));
        assert!(same_as_to_value(&'é'));
        assert!(same_as_to_value(""));
        assert!(same_as_to_value("short"));
        assert!(same_as_to_value(&"x".repeat(INLINE_STR)));
        assert!(same_as_to_value("näive ünïcödé"));
        assert!(same_as_to_value(&Meters(2.0)));
        assert!(same_as_to_value(&Unit));
        assert!(same_as_to_value(&Mode::Fast));
    }

    #[test]
    fn everything_else_is_left_to_to_value() {
        assert!(to_scalar(&"x".repeat(INLINE_STR + 1)).is_none());
        assert!(to_scalar(&"y".repeat(300)).is_none());
        // `to_value` refuses these: so must the scalar path, so the caller gets the error.
        assert!(to_scalar(&u64::MAX).is_none());
        assert!(to_scalar(&i128::MIN).is_none());
        assert!(to_scalar(&u128::MAX).is_none());
        assert!(to_scalar(&Mode::Tuned(1)).is_none());
        assert!(to_scalar(&vec![1, 2]).is_none());
        assert!(to_scalar(&(1, 2)).is_none());
        assert!(to_scalar(&BTreeMap::from([("a", 1)])).is_none());
        assert!(to_scalar(&Raw).is_none());
    }

    #[test]
    fn assign_reuses_a_string_and_replaces_anything_else() {
        let mut v = Value::from("a longer string than the next one");
        let capacity = match &v {
            Value::String(s) => s.capacity(),
            _ => unreachable!(),
        };
        v.assign(Scalar::Str(RStr::from_str("short")));
        assert_eq!(v, Value::from("short"));
        assert!(matches!(&v, Value::String(s) if s.capacity() == capacity));
        v.assign(Scalar::Int(4));
        assert_eq!(v, Value::Int(4));
        v.assign(Scalar::Str(RStr::from_str("back")));
        assert_eq!(v, Value::from("back"));
        v.assign(Scalar::Null);
        assert_eq!(v, Value::Null);
        v.assign(Scalar::Bool(true));
        assert_eq!(v, Value::Bool(true));
        v.assign(Scalar::Float(0.5));
        assert_eq!(v, Value::Float(0.5));
    }
}
