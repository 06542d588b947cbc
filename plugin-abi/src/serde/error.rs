//! [`ValueError`], the error of a conversion, with the path to the failing field.

use std::fmt;

use serde::de::{self, Expected, Unexpected};
use serde::ser;

/// The error of a conversion between a [`Value`](crate::Value) and a serde type.
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
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ValueError {
            inner: Box::new(ErrorInner {
                message: message.into(),
                path: Vec::new(),
            }),
        }
    }

    pub(super) fn at_key(mut self, key: &str) -> Self {
        self.inner.path.push(PathSegment::Key(key.to_owned()));
        self
    }

    pub(super) fn at_index(mut self, index: usize) -> Self {
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
