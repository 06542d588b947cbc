//! The plugin side of a call: `Context`, with typed values, label, cancellation and
//! logging into the host.

use std::time::{Duration, Instant};

use std::panic::{catch_unwind, AssertUnwindSafe};

use plugin_abi::abi_stable::sabi_trait::TD_Opaque;
use plugin_abi::abi_stable::sabi_types::RMut;
use plugin_abi::abi_stable::std_types::{RDuration, RNone, ROption, RSlice, RSome, RStr};
use plugin_abi::{
    BytesVisitor, BytesVisitor_TO, CancelReason, ContextRef, ErrorKind, LogLevel, PluginError,
    Value,
};
use serde::{de::DeserializeOwned, Serialize};

/// Decodes a `T` from the bytes the host lends to [`BytesVisitor::visit`].
struct Decode<T> {
    result: Option<Result<Option<T>, String>>,
}

impl<T: DeserializeOwned> BytesVisitor for Decode<T> {
    fn visit(&mut self, bytes: ROption<RSlice<'_, u8>>) {
        // This runs inside an `extern "C"` callback: a panicking `Deserialize` impl must not
        // unwind out of it.
        let decoded = catch_unwind(AssertUnwindSafe(|| match bytes {
            RNone => Ok(None),
            RSome(bytes) => plugin_abi::codec::decode::<T>(bytes.as_slice())
                .map(Some)
                .map_err(|e| e.to_string()),
        }));
        self.result =
            Some(decoded.unwrap_or_else(|_| Err("its Deserialize impl panicked".to_owned())));
    }
}

/// The context of one plugin call, as the plugin sees it.
///
/// It carries serde values by string key (set by the host before the call, read back by the
/// host after it), the call's routing label, cancellation and deadline, and a logger that
/// writes into the host's `tracing` subscriber.
pub struct Context<'a> {
    raw: ContextRef<'a>,
    /// The deadline, computed once from the time left, so it does not drift between asks.
    deadline: std::cell::OnceCell<Option<Instant>>,
}

impl<'a> Context<'a> {
    /// Wraps the raw FFI context. Used by [`export_plugin!`](crate::export_plugin).
    #[doc(hidden)]
    pub fn from_raw(raw: ContextRef<'a>) -> Self {
        Context {
            raw,
            deadline: std::cell::OnceCell::new(),
        }
    }

    /// Reads the value under `key` as a `T`.
    ///
    /// Returns `Ok(None)` if the key is not set, and an [`ErrorKind::InvalidInput`] error if
    /// the value does not have the shape of `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PluginError> {
        // Decode in place, from the host's buffer, under its lock, rather than copying the
        // bytes out.
        let mut visitor = Decode::<T> { result: None };
        self.raw.get(
            RStr::from_str(key),
            BytesVisitor_TO::from_ptr(RMut::new(&mut visitor), TD_Opaque),
        );
        match visitor.result {
            None => Err(PluginError::other(format!(
                "the host did not answer the lookup of context value `{key}`"
            ))),
            Some(Ok(value)) => Ok(value),
            Some(Err(message)) => Err(PluginError::invalid_input(format!(
                "context value `{key}` has the wrong shape: {message}"
            ))),
        }
    }

    /// Reads the required value under `key` as a `T`: an [`ErrorKind::InvalidInput`] error
    /// names the key if it is not set or does not have the shape of `T`.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, PluginError> {
        self.get(key)?.ok_or_else(|| {
            PluginError::invalid_input(format!("the context value `{key}` is required"))
        })
    }

    /// Stores `value` under `key`, encoded with serde.
    ///
    /// Fails with [`ErrorKind::InvalidInput`] only if `value`'s `Serialize` impl fails.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), PluginError> {
        // Encoded into this thread's scratch buffer; the host copies the bytes.
        plugin_abi::codec::with_encoded(value, |bytes| {
            self.raw.set(RStr::from_str(key), RSlice::from_slice(bytes));
        })
        .map_err(|e| PluginError::invalid_input(format!("cannot store context value `{key}`: {e}")))
    }

    /// Reads the raw, untyped value under `key`; `Ok(None)` if it is not set.
    pub fn get_value(&self, key: &str) -> Result<Option<Value>, PluginError> {
        self.get::<Value>(key)
    }

    /// Stores a raw, untyped value under `key`.
    pub fn set_value(&self, key: &str, value: Value) {
        // A `Value` always encodes.
        let _ = self.set(key, &value);
    }

    /// Removes the value under `key`; returns whether there was one.
    pub fn remove(&self, key: &str) -> bool {
        self.raw.remove(RStr::from_str(key))
    }

    /// Every key currently set, in no particular order.
    pub fn keys(&self) -> Vec<String> {
        self.raw
            .keys()
            .into_iter()
            .map(|k| k.into_string())
            .collect()
    }

    /// The routing label of this call: which of the plugin's `http_services.routes` (or
    /// which operation a caller asked for) this call serves.
    pub fn label(&self) -> Option<&str> {
        self.raw.label().into_option().map(|l| l.as_str())
    }

    /// Whether the call has been cancelled or its deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.raw.cancel_reason().is_some()
    }

    /// Why the call was cancelled, or `None` while it is live. The same name as the host's
    /// `Context::reason`.
    pub fn reason(&self) -> Option<CancelReason> {
        self.raw.cancel_reason().into_option()
    }

    /// Why the call was cancelled; the old name of [`reason`](Context::reason).
    #[deprecated(since = "0.1.0", note = "use `reason()`, the name the host uses too")]
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.reason()
    }

    /// When the call's deadline expires, if it has one. Computed from the time left the
    /// first time it is asked, then the same for the rest of the call.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.get_or_init(|| {
            self.raw
                .remaining()
                .into_option()
                .map(|left| Instant::now() + Duration::from(left))
        })
    }

    /// Returns an error of kind [`ErrorKind::Cancelled`] or [`ErrorKind::DeadlineExceeded`] once
    /// the call has been cancelled, so a loop can stop with `ctx.check_cancelled()?`.
    pub fn check_cancelled(&self) -> Result<(), PluginError> {
        match self.reason() {
            None => Ok(()),
            Some(CancelReason::Cancelled) => Err(PluginError::new(
                ErrorKind::Cancelled,
                "the call was cancelled",
            )),
            Some(CancelReason::DeadlineExceeded) => Err(PluginError::new(
                ErrorKind::DeadlineExceeded,
                "the call's deadline passed",
            )),
        }
    }

    /// Blocks until the call is cancelled or `timeout` elapses, and returns whether it was
    /// cancelled. Use it instead of `std::thread::sleep` so a cancel wakes the plugin at once.
    pub fn wait_cancelled(&self, timeout: Duration) -> bool {
        self.raw.wait_cancelled(RDuration::from(timeout))
    }

    /// Writes a log record at `level` into the host's `tracing` subscriber, tagged with the
    /// plugin's name.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.raw.log(level, RStr::from_str(message));
    }

    /// Logs at error level.
    pub fn error(&self, message: &str) {
        self.log(LogLevel::Error, message);
    }

    /// Logs at warn level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    /// Logs at debug level.
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message);
    }

    /// Logs at trace level.
    pub fn trace(&self, message: &str) {
        self.log(LogLevel::Trace, message);
    }
}
