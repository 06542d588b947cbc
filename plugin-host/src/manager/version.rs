//! One loaded version of a plugin: its library, its calls in flight, its drain and hooks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plugin_abi::abi_stable::sabi_trait::TD_Opaque;
use plugin_abi::abi_stable::sabi_types::RRef;
use plugin_abi::abi_stable::std_types::RResult;
use plugin_abi::HostContext_TO;

use super::install::FolderStamp;
use crate::cancel::AbortToken;
use crate::context::CallContext;
use crate::load::Loaded;
use crate::{Context, Error};

/// One loaded library of a plugin, with what a call needs besides it.
pub(crate) struct LoadedVersion {
    pub(crate) loaded: Loaded,
    /// The plugin folder's files this version stands for, so the watcher can tell a real
    /// change from the echo of an upgrade's own install.
    pub(super) files: Mutex<Option<FolderStamp>>,
    pub(super) in_flight: InFlight,
    /// Set when a drain times out: calls still running see their context cancelled.
    pub(crate) abort: AbortToken,
    /// Set when its drain gave up: its remaining calls ignore cancellation.
    pub(super) stuck: AtomicBool,
}

/// Calls in flight on one version, counted in per-thread stripes so that two threads
/// calling the same plugin never write the same cache line.
pub(super) struct InFlight {
    stripes: [Stripe; STRIPES],
}

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Stripe(AtomicUsize);

fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

impl InFlight {
    pub(super) fn new() -> Self {
        InFlight {
            stripes: std::array::from_fn(|_| Stripe::default()),
        }
    }

    /// This thread's stripe.
    pub(super) fn stripe(&self) -> &AtomicUsize {
        &self.stripes[stripe_index()].0
    }

    pub(super) fn total(&self) -> usize {
        // Each stripe can wrap below zero when a call ends on another thread than it began
        // (it never does today), so sum with wrapping arithmetic.
        self.stripes.iter().fold(0usize, |sum, s| {
            sum.wrapping_add(s.0.load(Ordering::SeqCst))
        })
    }
}

/// Marks one call in flight for as long as it lives.
pub(super) struct CallGuard<'a> {
    stripe: &'a AtomicUsize,
}

impl<'a> CallGuard<'a> {
    /// Marks a call on this thread's stripe of `in_flight`.
    #[cfg(test)]
    pub(super) fn enter(in_flight: &'a InFlight) -> Self {
        Self::on(in_flight.stripe())
    }

    /// Marks a call on `stripe`, a stripe of a version's in-flight counter.
    #[inline]
    pub(super) fn on(stripe: &'a AtomicUsize) -> Self {
        // SeqCst: see the call path in `handle.rs`.
        stripe.fetch_add(1, Ordering::SeqCst);
        CallGuard { stripe }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.stripe.fetch_sub(1, Ordering::Release);
    }
}

/// Waits until no call runs on `version`; false if `timeout` passed first (no timeout:
/// waits as long as it takes).
pub(super) fn drain(version: &LoadedVersion, timeout: Option<Duration>) -> bool {
    let give_up = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut pause = Duration::from_micros(20);
    while version.in_flight.total() != 0 {
        if give_up.is_some_and(|g| Instant::now() >= g) {
            return false;
        }
        // A bounded back-off: drains are rare and short, and calls carry no per-call
        // notification that a waiter could block on without slowing every call down.
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
    true
}

pub(super) fn run_on_load(name: &str, version: &LoadedVersion) -> Result<(), Error> {
    let Some(on_load) = version.loaded.module.on_load() else {
        return Ok(());
    };
    let ctx = Context::background();
    let call = CallContext {
        ctx: &ctx,
        plugin: name,
        abort: &version.abort,
    };
    match on_load(HostContext_TO::from_ptr(RRef::new(&call), TD_Opaque)) {
        RResult::ROk(()) => Ok(()),
        RResult::RErr(err) => Err(Error::OnLoad {
            plugin: name.to_owned(),
            kind: err.kind,
            message: err.message.into_string(),
        }),
    }
}

pub(super) fn run_on_unload(name: &str, loaded: &Loaded) -> Result<(), Error> {
    // A library built with the context form exports it in the appended field; an older one
    // has only the plain form.
    let result = if let Some(Some(on_unload)) = loaded.module.on_unload_with_context() {
        let ctx = Context::background();
        let abort = AbortToken::new();
        let call = CallContext {
            ctx: &ctx,
            plugin: name,
            abort: &abort,
        };
        on_unload(HostContext_TO::from_ptr(RRef::new(&call), TD_Opaque))
    } else if let Some(on_unload) = loaded.module.on_unload() {
        on_unload()
    } else {
        return Ok(());
    };
    match result {
        RResult::ROk(()) => Ok(()),
        RResult::RErr(err) => Err(Error::OnUnload {
            plugin: name.to_owned(),
            kind: err.kind,
            message: err.message.into_string(),
        }),
    }
}

/// Deletes the private copy if it is a file (a memory file has nothing to delete). The
/// mapping stays valid on Unix; elsewhere the file is in use and removal fails, which is
/// harmless. Dropping the version deletes it too.
pub(super) fn remove_copy(loaded: &Loaded) {
    loaded.copy.remove();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn in_flight_counts_across_threads() {
        let in_flight = Arc::new(InFlight::new());
        let a = CallGuard::enter(&in_flight);
        let other = {
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                let _g = CallGuard::enter(&in_flight);
                in_flight.total()
            })
            .join()
            .unwrap()
        };
        assert_eq!(other, 2);
        assert_eq!(in_flight.total(), 1);
        drop(a);
        assert_eq!(in_flight.total(), 0);
    }
}
