//! What the fuzz targets share: building `Value`s and control messages from fuzzer input,
//! and comparing values with floats compared by their bits (so a NaN equals itself).

use arbitrary::{Result, Unstructured};
use plugin_abi::abi_stable::std_types::{RString, RVec};
use plugin_abi::{ErrorKind, LogLevel, MapEntry, Value};
use plugin_ipc::{LoadFailure, Message};

/// How deep [`value`] nests lists and maps: well inside the wire's `MAX_DEPTH`.
pub const VALUE_DEPTH: usize = 8;

/// Every error kind, in declaration order.
pub const ERROR_KINDS: [ErrorKind; 7] = [
    ErrorKind::InvalidInput,
    ErrorKind::NotFound,
    ErrorKind::Cancelled,
    ErrorKind::DeadlineExceeded,
    ErrorKind::Panicked,
    ErrorKind::Unsupported,
    ErrorKind::Other,
];

/// Every log level, in declaration order.
pub const LOG_LEVELS: [LogLevel; 5] = [
    LogLevel::Error,
    LogLevel::Warn,
    LogLevel::Info,
    LogLevel::Debug,
    LogLevel::Trace,
];

/// A value of any variant, nested at most `depth` more levels.
pub fn value(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    let tag = if depth == 0 {
        u.int_in_range(0..=5)?
    } else {
        u.int_in_range(0..=7)?
    };
    Ok(match tag {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Int(u.arbitrary()?),
        3 => Value::Float(u.arbitrary()?),
        4 => Value::String(RString::from(u.arbitrary::<String>()?)),
        5 => Value::Bytes(RVec::from(u.arbitrary::<Vec<u8>>()?)),
        6 => {
            let mut items = RVec::new();
            u.arbitrary_loop(None, Some(16), |u| {
                items.push(value(u, depth - 1)?);
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            Value::List(items)
        }
        _ => {
            let mut entries = RVec::new();
            u.arbitrary_loop(None, Some(16), |u| {
                entries.push(MapEntry {
                    key: RString::from(u.arbitrary::<String>()?),
                    value: value(u, depth - 1)?,
                });
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            Value::Map(entries)
        }
    })
}

/// Whether `a` and `b` are the same value, floats compared by their bits.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(a, b)| a.key == b.key && same(&a.value, &b.value))
        }
        _ => a == b,
    }
}

/// An error result: any kind, any message.
pub fn error(u: &mut Unstructured<'_>) -> Result<(ErrorKind, String)> {
    Ok((*u.choose(&ERROR_KINDS)?, u.arbitrary()?))
}

/// A control message of any variant, with any fields a sender could give it.
pub fn message(u: &mut Unstructured<'_>) -> Result<Message> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Message::Ready {
            has_on_load: u.arbitrary()?,
            has_on_unload: u.arbitrary()?,
            pid: u.arbitrary()?,
        },
        1 => Message::Failed {
            failure: match u.int_in_range(0..=4)? {
                0 => LoadFailure::NotAPlugin,
                1 => LoadFailure::AbiMismatch,
                2 => LoadFailure::Identity {
                    field: u.choose(&["name", "version", "sdk_version"])?,
                    expected: u.arbitrary()?,
                },
                3 => LoadFailure::OnLoad(*u.choose(&ERROR_KINDS)?),
                _ => LoadFailure::Setup,
            },
            message: u.arbitrary()?,
        },
        2 => {
            let level = *u.choose(&LOG_LEVELS)?;
            // Now and then a line past the cut, so the cut itself is exercised.
            let mut message: String = u.arbitrary()?;
            if u.arbitrary::<u8>()? == 0 && !message.is_empty() {
                let times = plugin_ipc::control::MAX_LOG / message.len() + 1;
                message = message.repeat(times);
            }
            Message::Log { level, message }
        }
        3 => Message::Stopped {
            on_unload: if u.arbitrary()? {
                Ok(())
            } else {
                Err(error(u)?)
            },
        },
        4 => Message::Cancel {
            lane: u.arbitrary()?,
            seq: u.arbitrary()?,
        },
        _ => Message::Stop,
    })
}
