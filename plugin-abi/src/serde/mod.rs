//! Conversions between [`Value`] and any serde type (feature `serde`).
//!
//! - [`Value`] implements [`Serialize`] and [`Deserialize`], so it can be read from and written
//!   to any serde format (JSON, ...).
//! - [`to_value`] turns any `T: Serialize` into a [`Value`] directly, without going through an
//!   intermediate format.
//! - [`from_value_ref`] turns a borrowed [`Value`] back into any `T: Deserialize`; `&str` and
//!   `&[u8]` fields can borrow from the value. `&Value` implements
//!   [`Deserializer`](serde::Deserializer).
//!
//! The mapping follows `serde_json`: structs and maps become [`Value::Map`] (keys must be
//! strings; integer, bool, char and unit-variant keys are converted to their string form, any
//! other key is an error), sequences and tuples become [`Value::List`], `()` / `None` / unit
//! structs become [`Value::Null`], unit enum variants become their name as a
//! [`Value::String`], and the other enum variants are externally tagged: a map with one entry
//! `{variant: payload}`.
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

mod de;
mod error;
mod ser;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use error::ValueError;

use crate::value::Value;

/// Converts any serializable value into a [`Value`].
///
/// Fails if a map key does not serialize to a string, integer, bool or char, or if an integer
/// value does not fit in an `i64` (integer map keys of any width are fine: they become
/// strings).
///
/// ```
/// use plugin_abi::{serde::to_value, Value};
/// assert_eq!(to_value(&"hi").unwrap(), Value::from("hi"));
/// assert!(to_value(&u64::MAX).is_err());
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    ser::to_value(value)
}

/// Converts a borrowed [`Value`] into any deserializable type; `&str` and `&[u8]` fields
/// borrow from `value`.
pub fn from_value_ref<'de, T: Deserialize<'de>>(value: &'de Value) -> Result<T, ValueError> {
    T::deserialize(value)
}
