//! The host side of a plugin call's context: values, label, cancellation and deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_abi::abi_stable::sabi_types::RMut;
use plugin_abi::abi_stable::std_types::{
    RDuration, RNone, ROption, RSlice, RSome, RStr, RString, RVec,
};
use plugin_abi::{BytesVisitor_TO, CancelReason, HostContext, LogLevel, Value};
use serde::{de::DeserializeOwned, Serialize};

use crate::bias::{Biased, Grant};
use crate::cancel::{AbortToken, CancelNode};
use crate::Error;

/// The context a plugin call runs in, modelled on Go's `context.Context`.
///
/// A context holds values by string key (any serde type), an optional routing label, and a
/// cancellation state with an optional deadline. Cloning a `Context` gives another handle to
/// the *same* context; [`Context::child`] derives a new one that is cancelled with its parent.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use plugin_host::{CancelReason, Context};
///
/// let ctx = Context::with_timeout(Duration::from_secs(5)).with_label("plugin.get");
/// ctx.set("sample", &serde_json::json!({ "name": "world" })).unwrap();
/// assert_eq!(ctx.label(), Some("plugin.get"));
///
/// let child = ctx.child();
/// ctx.cancel();
/// assert_eq!(child.reason(), Some(CancelReason::Cancelled));
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

/// Each value as its encoded bytes ([`plugin_abi::codec`]): what a plugin reads in place and
/// a worker call copies as they are.
type Values = HashMap<String, Vec<u8>, foldhash::fast::RandomState>;

struct Inner {
    /// A std `HashMap` with foldhash's seeded hasher: fast on the short keys contexts use,
    /// and still randomised per process. Behind a lock that the thread running a call
    /// skips (`bias.rs`).
    values: Biased<Values>,
    label: Option<String>,
    cancel: Arc<CancelNode>,
}

/// Cancels one context (and the contexts derived from it), and can do nothing else.
///
/// `Send + Sync + Clone`: hand it to a thread, a timer or a signal handler that must be able
/// to stop a call without seeing its values.
///
/// ```
/// use plugin_host::Context;
///
/// let ctx = Context::background();
/// let cancel = ctx.cancel_handle();
/// std::thread::spawn(move || cancel.cancel()).join().unwrap();
/// assert!(ctx.is_cancelled());
/// ```
#[derive(Clone)]
pub struct CancelHandle {
    node: Arc<CancelNode>,
}

impl CancelHandle {
    /// Cancels the context. Idempotent.
    pub fn cancel(&self) {
        self.node.cancel();
    }

    /// Whether the context was cancelled or its deadline passed.
    pub fn is_cancelled(&self) -> bool {
        self.node.reason().is_some()
    }
}

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelHandle")
            .field("reason", &self.node.reason())
            .finish()
    }
}

impl Context {
    /// A handle that cancels this context and nothing else.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            node: self.inner.cancel.clone(),
        }
    }

    fn from_parts(label: Option<String>, cancel: Arc<CancelNode>, values: Values) -> Self {
        Context {
            inner: Arc::new(Inner {
                values: Biased::new(values),
                label,
                cancel,
            }),
        }
    }

    /// A new, empty context that is never cancelled unless [`cancel`](Context::cancel) is
    /// called.
    pub fn background() -> Self {
        Self::from_parts(None, CancelNode::new(None), Values::default())
    }

    /// A new, empty context cancelled with [`CancelReason::DeadlineExceeded`] once `timeout`
    /// has passed.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::with_deadline(Instant::now() + timeout)
    }

    /// A new, empty context cancelled with [`CancelReason::DeadlineExceeded`] at `deadline`.
    pub fn with_deadline(deadline: Instant) -> Self {
        Self::from_parts(None, CancelNode::new(Some(deadline)), Values::default())
    }

    /// A new context holding a copy of this one's values and label, cancelled when this one
    /// is (and, if this one has a deadline, at that deadline).
    pub fn child(&self) -> Self {
        self.derive(None)
    }

    /// Like [`child`](Context::child), with an earlier deadline `timeout` from now.
    pub fn child_with_timeout(&self, timeout: Duration) -> Self {
        self.derive(Some(Instant::now() + timeout))
    }

    fn derive(&self, deadline: Option<Instant>) -> Self {
        let node = self.inner.cancel.child(deadline);
        let values = self.inner.values.lock(|v| v.clone());
        Self::from_parts(self.inner.label.clone(), node, values)
    }

    /// Runs `f` on the values, under their lock (process isolation writes them into a call).
    #[cfg(all(target_os = "linux", feature = "isolation"))]
    pub(crate) fn with_values<R>(
        &self,
        f: impl FnOnce(usize, &mut dyn Iterator<Item = (&str, &[u8])>) -> R,
    ) -> R {
        self.inner.values.lock(|values| {
            f(
                values.len(),
                &mut values.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            )
        })
    }

    /// Replaces every value with those `fill` stores (an isolated call's result). Nothing
    /// is changed if `fill` fails.
    #[cfg(all(target_os = "linux", feature = "isolation"))]
    pub(crate) fn replace_values<E>(
        &self,
        fill: impl FnOnce(&mut dyn FnMut(String, Vec<u8>)) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut fresh = Values::default();
        fill(&mut |k, v| {
            fresh.insert(k, v);
        })?;
        self.inner.values.lock(|values| *values = fresh);
        Ok(())
    }

    /// The same context with a routing label (the seed's `label`, e.g. an HTTP route's label).
    ///
    /// Values are copied; cancellation is shared with `self`.
    pub fn with_label(self, label: impl Into<String>) -> Self {
        let values = self.inner.values.lock(|v| v.clone());
        Context {
            inner: Arc::new(Inner {
                values: Biased::new(values),
                label: Some(label.into()),
                cancel: self.inner.cancel.clone(),
            }),
        }
    }

    /// Cancels this context and every context derived from it. Idempotent.
    pub fn cancel(&self) {
        self.inner.cancel.cancel();
    }

    /// Why the context was cancelled, or `None` while it is live.
    pub fn reason(&self) -> Option<CancelReason> {
        self.inner.cancel.reason()
    }

    /// Whether the context was cancelled or its deadline passed.
    pub fn is_cancelled(&self) -> bool {
        self.reason().is_some()
    }

    /// The context's deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.cancel.deadline()
    }

    /// Blocks until the context is cancelled or `timeout` passes; returns whether it was
    /// cancelled.
    pub fn wait_cancelled(&self, timeout: Duration) -> bool {
        self.inner.cancel.wait(timeout)
    }

    /// The routing label, if one was set.
    pub fn label(&self) -> Option<&str> {
        self.inner.label.as_deref()
    }

    /// Stores `value` under `key`, encoded with serde.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] if `value`'s `Serialize` impl fails; nothing is stored then.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        // Encoded into this thread's scratch buffer, then copied once into a buffer of the
        // right size (or into the one already stored under `key`): no growing reallocations.
        plugin_abi::codec::with_encoded(value, |bytes| {
            self.inner
                .values
                .lock(|values| store_slice(values, key, bytes));
        })
        .map_err(|source| Error::Value {
            key: key.to_owned(),
            source,
        })
    }

    /// Reads the value under `key` as a `T`; `Ok(None)` if it is not set.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] if the value does not have the shape of `T`, naming the field.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.inner.values.lock(|values| {
            let Some(bytes) = values.get(key) else {
                return Ok(None);
            };
            plugin_abi::codec::decode(bytes)
                .map(Some)
                .map_err(|source| Error::Value {
                    key: key.to_owned(),
                    source,
                })
        })
    }

    /// Stores a raw, untyped value.
    pub fn set_value(&self, key: &str, value: Value) {
        // A `Value` always encodes.
        let _ = self.set(key, &value);
    }

    /// The raw, untyped value under `key`; `Ok(None)` if it is not set.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] if the bytes a plugin stored there do not decode.
    pub fn get_value(&self, key: &str) -> Result<Option<Value>, Error> {
        self.get::<Value>(key)
    }

    /// Stores the encoded bytes of a value ([`plugin_abi::codec`]) as they are.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedValue`] if `bytes` are not one well-formed value; nothing is stored
    /// then.
    pub fn set_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        plugin_abi::codec::validate(bytes).map_err(|source| Error::MalformedValue {
            key: key.to_owned(),
            source,
        })?;
        self.inner
            .values
            .lock(|values| store_slice(values, key, bytes));
        Ok(())
    }

    /// A copy of the encoded bytes of the value under `key` ([`plugin_abi::codec`]).
    pub fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.inner.values.lock(|values| values.get(key).cloned())
    }

    /// Removes the value under `key`; returns whether there was one.
    pub fn remove(&self, key: &str) -> bool {
        self.inner
            .values
            .lock(|values| values.remove(key).is_some())
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .inner
            .values
            .lock(|values| values.keys().cloned().collect());
        keys.sort();
        keys
    }

    /// Every value, sorted by key, decoded into the untyped view.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] naming the first key whose bytes a plugin stored do not decode.
    pub fn values(&self) -> Result<Vec<(String, Value)>, Error> {
        let mut values = self.inner.values.lock(|values| {
            values
                .iter()
                .map(|(k, v)| {
                    plugin_abi::codec::decode::<Value>(v)
                        .map(|v| (k.clone(), v))
                        .map_err(|source| Error::Value {
                            key: k.clone(),
                            source,
                        })
                })
                .collect::<Result<Vec<_>, Error>>()
        })?;
        values.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(values)
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("label", &self.inner.label)
            .field("reason", &self.reason())
            .field("deadline", &self.deadline())
            .field("keys", &self.keys())
            .finish()
    }
}

/// The object a plugin call sees: a context plus the name of the plugin, for logging.
pub(crate) struct CallContext<'a> {
    ctx: &'a Context,
    plugin: &'a str,
    /// Set when the version this call runs on is being drained and its drain timed out.
    abort: &'a AbortToken,
    /// Whether this call was granted the bias on the values (`bias.rs`).
    grant: Grant,
    /// Where the plugin's log records go.
    sink: LogSink,
}

/// Where a plugin's log records go: [`emit_log`] in the host; a worker passes one that sends
/// them to its host.
pub(crate) type LogSink = fn(plugin: &str, level: LogLevel, message: &str);

impl<'a> CallContext<'a> {
    pub(crate) fn new(
        ctx: &'a Context,
        plugin: &'a str,
        abort: &'a AbortToken,
        sink: LogSink,
    ) -> Self {
        CallContext {
            ctx,
            plugin,
            abort,
            grant: Grant::default(),
            sink,
        }
    }

    /// Runs `f` on the context's values from inside the call.
    #[inline]
    fn values<R>(&self, f: impl FnOnce(&mut Values) -> R) -> R {
        self.ctx.inner.values.in_call(&self.grant, f)
    }
}

impl Drop for CallContext<'_> {
    fn drop(&mut self) {
        // The call is over: the host reads the results without revoking anything.
        self.ctx.inner.values.end_call(&self.grant);
    }
}

// Everything here must not panic: these methods are called from plugin code through
// `extern "C"` functions, where a panic aborts the process. `parking_lot` locks do not poison.
impl HostContext for CallContext<'_> {
    fn get(&self, key: RStr<'_>, mut visitor: BytesVisitor_TO<'_, RMut<'_, ()>>) {
        self.values(|values| {
            visitor.visit(
                values
                    .get(key.as_str())
                    .map(|v| RSlice::from_slice(v))
                    .into(),
            )
        });
    }

    fn set(&self, key: RStr<'_>, bytes: RSlice<'_, u8>) {
        self.values(|values| store_slice(values, key.as_str(), bytes.as_slice()));
    }

    fn remove(&self, key: RStr<'_>) -> bool {
        self.values(|values| values.remove(key.as_str()).is_some())
    }

    fn keys(&self) -> RVec<RString> {
        self.values(|values| values.keys().map(|k| RString::from(k.as_str())).collect())
    }

    fn label(&self) -> ROption<RStr<'_>> {
        self.ctx.inner.label.as_deref().map(RStr::from_str).into()
    }

    fn cancel_reason(&self) -> ROption<CancelReason> {
        match self.ctx.reason() {
            Some(reason) => RSome(reason),
            None if self.abort.is_aborted() => RSome(CancelReason::Cancelled),
            None => RNone,
        }
    }

    fn remaining(&self) -> ROption<RDuration> {
        self.ctx
            .deadline()
            .map(|d| RDuration::from(d.saturating_duration_since(Instant::now())))
            .into()
    }

    fn wait_cancelled(&self, timeout: RDuration) -> bool {
        // Registering lets an unload whose drain times out cancel this context and wake us.
        if !self.abort.register(&self.ctx.inner.cancel) {
            return true;
        }
        self.ctx.wait_cancelled(timeout.into())
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        (self.sink)(self.plugin, level, message.as_str());
    }
}

/// Copies `bytes` under `key`, into the buffer already there when there is one: a value
/// overwritten with one of the same size or smaller allocates nothing.
fn store_slice(values: &mut Values, key: &str, bytes: &[u8]) {
    if let Some(slot) = values.get_mut(key) {
        slot.clear();
        slot.extend_from_slice(bytes);
    } else {
        values.insert(key.to_owned(), bytes.to_vec());
    }
}

/// Emits a plugin's log record in the host's `tracing`: target `plugins`, field `plugin`.
/// Records from a worker process arrive here too.
pub(crate) fn emit_log(plugin: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(target: "plugins", plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "plugins", plugin, "{message}"),
        LogLevel::Info => tracing::info!(target: "plugins", plugin, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "plugins", plugin, "{message}"),
        LogLevel::Trace => tracing::trace!(target: "plugins", plugin, "{message}"),
    }
}

#[cfg(test)]
mod tests;
