//! The host side of a plugin call's context: values, label, cancellation and deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_abi::abi_stable::sabi_types::RMut;
use plugin_abi::abi_stable::std_types::{RDuration, RNone, ROption, RSome, RStr, RString, RVec};
use plugin_abi::{CancelReason, HostContext, LogLevel, Scalar, Value, ValueVisitor_TO};
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

type Values = HashMap<String, Value, foldhash::fast::RandomState>;

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
        f: impl FnOnce(usize, &mut dyn Iterator<Item = (&str, &Value)>) -> R,
    ) -> R {
        self.inner.values.lock(|values| {
            f(
                values.len(),
                &mut values.iter().map(|(k, v)| (k.as_str(), v)),
            )
        })
    }

    /// Replaces every value with those `fill` stores (an isolated call's result). Nothing
    /// is changed if `fill` fails.
    #[cfg(all(target_os = "linux", feature = "isolation"))]
    pub(crate) fn replace_values<E>(
        &self,
        fill: impl FnOnce(&mut dyn FnMut(String, Value)) -> Result<(), E>,
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

    /// Stores `value` under `key`, converted with serde.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let value = plugin_abi::serde::to_value(value).map_err(|source| Error::Value {
            key: key.to_owned(),
            source,
        })?;
        self.set_value(key, value);
        Ok(())
    }

    /// Reads the value under `key` as a `T`; `Ok(None)` if it is not set.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.inner.values.lock(|values| {
            let Some(value) = values.get(key) else {
                return Ok(None);
            };
            plugin_abi::serde::from_value_ref(value)
                .map(Some)
                .map_err(|source| Error::Value {
                    key: key.to_owned(),
                    source,
                })
        })
    }

    /// Stores a raw value.
    pub fn set_value(&self, key: &str, value: Value) {
        self.inner.values.lock(|values| store(values, key, value));
    }

    /// A copy of the raw value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.inner.values.lock(|values| values.get(key).cloned())
    }

    /// Removes and returns the value under `key`.
    pub fn remove(&self, key: &str) -> Option<Value> {
        self.inner.values.lock(|values| values.remove(key))
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

    /// A copy of every value, sorted by key.
    pub fn values(&self) -> Vec<(String, Value)> {
        let mut values: Vec<(String, Value)> = self
            .inner
            .values
            .lock(|values| values.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        values.sort_by(|a, b| a.0.cmp(&b.0));
        values
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
    fn get(&self, key: RStr<'_>) -> ROption<Value> {
        self.values(|values| values.get(key.as_str()).cloned().into())
    }

    fn visit(&self, key: RStr<'_>, mut visitor: ValueVisitor_TO<'_, RMut<'_, ()>>) {
        self.values(|values| visitor.visit(values.get(key.as_str()).into()));
    }

    fn set(&self, key: RStr<'_>, value: Value) {
        self.values(|values| store(values, key.as_str(), value));
    }

    fn set_scalar(&self, key: RStr<'_>, value: Scalar<'_>) {
        self.values(|values| match values.get_mut(key.as_str()) {
            Some(slot) => slot.assign(value),
            None => {
                values.insert(key.as_str().to_owned(), Value::from(value));
            }
        });
    }

    fn remove(&self, key: RStr<'_>) -> ROption<Value> {
        self.values(|values| values.remove(key.as_str()).into())
    }

    fn keys(&self) -> RVec<RString> {
        self.values(|values| values.keys().map(|k| RString::from(k.as_str())).collect())
    }

    fn label_str(&self) -> ROption<RStr<'_>> {
        self.ctx.inner.label.as_deref().map(RStr::from_str).into()
    }

    fn label(&self) -> ROption<RString> {
        match &self.ctx.inner.label {
            Some(l) => RSome(RString::from(l.as_str())),
            None => RNone,
        }
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

/// Stores `value` under `key`, reusing the key's allocation when overwriting.
fn store(values: &mut Values, key: &str, value: Value) {
    if let Some(slot) = values.get_mut(key) {
        *slot = value;
    } else {
        values.insert(key.to_owned(), value);
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
mod tests {
    use super::*;

    #[test]
    fn deadline_becomes_cancellation_and_wakes_waiters() {
        let ctx = Context::with_timeout(Duration::from_millis(20));
        assert_eq!(ctx.reason(), None);
        // Waits no longer than the deadline even though the timeout is much longer.
        assert!(ctx.wait_cancelled(Duration::from_secs(30)));
        assert_eq!(ctx.reason(), Some(CancelReason::DeadlineExceeded));
    }

    #[test]
    fn wait_times_out_on_a_live_context() {
        let ctx = Context::background();
        assert!(!ctx.wait_cancelled(Duration::from_millis(5)));
    }

    #[test]
    fn cancel_propagates_to_children_not_parents() {
        let parent = Context::background();
        let child = parent.child();
        let grandchild = child.child();
        let sibling = parent.child();
        child.cancel();
        assert_eq!(grandchild.reason(), Some(CancelReason::Cancelled));
        assert_eq!(parent.reason(), None);
        assert_eq!(sibling.reason(), None);
        parent.cancel();
        assert_eq!(sibling.reason(), Some(CancelReason::Cancelled));
    }

    #[test]
    fn cancel_wakes_a_waiting_thread() {
        let ctx = Context::background();
        let waiter = {
            let ctx = ctx.clone();
            std::thread::spawn(move || ctx.wait_cancelled(Duration::from_secs(60)))
        };
        ctx.cancel();
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn child_of_cancelled_parent_is_cancelled() {
        let parent = Context::background();
        parent.cancel();
        assert!(parent.child().is_cancelled());
    }

    #[test]
    fn child_inherits_the_earlier_deadline() {
        let parent = Context::with_timeout(Duration::from_secs(1));
        let child = parent.child_with_timeout(Duration::from_secs(100));
        assert_eq!(child.deadline(), parent.deadline());
    }

    #[test]
    fn a_live_context_is_not_cancelled_and_keeps_its_deadline() {
        let ctx = Context::background();
        assert!(!ctx.is_cancelled());
        assert_eq!(ctx.deadline(), None);
        let before = Instant::now();
        let timed = Context::with_timeout(Duration::from_secs(60));
        assert!(!timed.is_cancelled());
        let deadline = timed.deadline().expect("a deadline");
        assert!(deadline >= before + Duration::from_secs(60));
        assert!(deadline <= Instant::now() + Duration::from_secs(60));
        timed.cancel();
        assert!(timed.is_cancelled());
    }

    #[test]
    fn raw_values_can_be_read_listed_and_removed() {
        let ctx = Context::background();
        ctx.set_value("b", Value::Int(2));
        ctx.set_value("a", Value::Bool(true));
        assert_eq!(ctx.get_value("b"), Some(Value::Int(2)));
        assert_eq!(ctx.get_value("missing"), None);
        assert_eq!(ctx.keys(), ["a", "b"]);
        assert_eq!(
            ctx.values(),
            [
                ("a".to_owned(), Value::Bool(true)),
                ("b".to_owned(), Value::Int(2))
            ]
        );
        assert_eq!(ctx.remove("b"), Some(Value::Int(2)));
        assert_eq!(ctx.remove("b"), None);
        assert_eq!(ctx.keys(), ["a"]);
    }

    #[test]
    fn a_cancel_handle_cancels_its_context_and_its_children_only() {
        fn is_send_sync_clone<T: Send + Sync + Clone>(_: &T) {}
        let parent = Context::background();
        let ctx = parent.child();
        let child = ctx.child();
        let handle = ctx.cancel_handle();
        is_send_sync_clone(&handle);
        assert!(!handle.is_cancelled());
        handle.clone().cancel();
        assert!(handle.is_cancelled());
        assert_eq!(ctx.reason(), Some(CancelReason::Cancelled));
        assert_eq!(child.reason(), Some(CancelReason::Cancelled));
        assert_eq!(parent.reason(), None);
    }

    #[test]
    fn typed_values_round_trip() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Hello {
            name: String,
        }
        let ctx = Context::background();
        ctx.set("sample", &Hello { name: "go".into() }).unwrap();
        assert_eq!(
            ctx.get::<Hello>("sample").unwrap(),
            Some(Hello { name: "go".into() })
        );
        assert!(ctx.get::<i64>("sample").is_err());
        assert_eq!(ctx.get::<i64>("missing").unwrap(), None);
        assert_eq!(ctx.keys(), vec!["sample".to_owned()]);
    }

    /// Runs `f` with the context a plugin sees for a call in `ctx`, through the SDK.
    fn as_plugin_sees_it<R>(
        ctx: &Context,
        abort: &AbortToken,
        f: impl FnOnce(&plugin_sdk::Context<'_>) -> R,
    ) -> R {
        use plugin_abi::abi_stable::{sabi_trait::TD_Opaque, sabi_types::RRef};
        let call = CallContext::new(ctx, "test", abort, emit_log);
        let raw = plugin_abi::HostContext_TO::from_ptr(RRef::new(&call), TD_Opaque);
        let plugin_view = plugin_sdk::Context::from_raw(raw);
        f(&plugin_view)
    }

    #[test]
    fn a_plugin_sees_and_changes_the_values_label_and_deadline() {
        let ctx = Context::with_timeout(Duration::from_secs(60)).with_label("route");
        ctx.set_value("a", Value::Int(1));
        ctx.set_value("b", Value::Bool(true));
        let abort = AbortToken::new();
        as_plugin_sees_it(&ctx, &abort, |p| {
            assert_eq!(p.get_value("a"), Some(Value::Int(1)));
            assert_eq!(p.get_value("missing"), None);
            assert_eq!(p.get::<i64>("a").unwrap(), Some(1));
            assert_eq!(p.get::<i64>("missing").unwrap(), None);
            let mut keys = p.keys();
            keys.sort();
            assert_eq!(keys, ["a", "b"]);
            assert_eq!(p.remove("b"), Some(Value::Bool(true)));
            assert_eq!(p.remove("b"), None);
            p.set_value("c", Value::Int(3));
            assert_eq!(p.label(), Some("route"));
            let deadline = p.deadline().expect("a deadline");
            let host_deadline = ctx.deadline().unwrap();
            assert!(deadline >= host_deadline, "{deadline:?} {host_deadline:?}");
            assert!(deadline < host_deadline + Duration::from_secs(30));
            // Fixed for the call: asked again later, it is the same instant.
            std::hint::black_box((0..10_000).sum::<u64>());
            assert_eq!(p.deadline(), Some(deadline));
            assert_eq!(p.reason(), None);
        });
        assert_eq!(ctx.keys(), ["a", "c"]);

        as_plugin_sees_it(&Context::background(), &abort, |p| {
            assert_eq!(p.label(), None);
            assert_eq!(p.deadline(), None);
            assert!(p.keys().is_empty());
        });
    }

    #[test]
    fn a_plugin_sees_cancellation_deadlines_and_an_abort() {
        let ctx = Context::background();
        let abort = AbortToken::new();
        as_plugin_sees_it(&ctx, &abort, |p| {
            assert_eq!(p.reason(), None);
            assert!(!p.wait_cancelled(Duration::from_millis(1)));
        });
        // An abort reaches a call that is not waiting: it reads as a cancellation, and a
        // wait returns at once.
        abort.abort();
        as_plugin_sees_it(&ctx, &abort, |p| {
            assert_eq!(p.reason(), Some(CancelReason::Cancelled));
            assert!(p.wait_cancelled(Duration::from_secs(60)));
        });
        let past = Context::with_deadline(Instant::now());
        as_plugin_sees_it(&past, &AbortToken::new(), |p| {
            assert_eq!(p.reason(), Some(CancelReason::DeadlineExceeded));
        });
    }

    #[test]
    fn a_call_gives_back_the_bias_so_the_host_reads_its_results_without_revoking() {
        let ctx = Context::background();
        let abort = AbortToken::new();
        as_plugin_sees_it(&ctx, &abort, |p| {
            p.set("n", &1).unwrap();
            assert!(
                ctx.inner.values.held_here(),
                "the call's thread holds the bias"
            );
            p.set("s", "text").unwrap();
            assert_eq!(p.get::<String>("s").unwrap().as_deref(), Some("text"));
        });
        assert!(!ctx.inner.values.held_here());
        assert_eq!(ctx.get::<i64>("n").unwrap(), Some(1));
        assert!(!ctx.inner.values.was_contended());
        // The next call is granted it again.
        as_plugin_sees_it(&ctx, &abort, |p| {
            p.set("n", &2).unwrap();
            assert!(ctx.inner.values.held_here());
        });
        assert_eq!(ctx.get::<i64>("n").unwrap(), Some(2));
    }

    #[test]
    fn debug_shows_label_deadline_and_keys() {
        let ctx = Context::background().with_label("route");
        ctx.set_value("key", Value::Int(1));
        let shown = format!("{ctx:?}");
        for part in ["Context", "route", "deadline: None", "key"] {
            assert!(shown.contains(part), "{shown}");
        }
    }
}
