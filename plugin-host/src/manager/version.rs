//! One loaded version of a plugin: its library, its calls in flight, its drain and hooks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::install::FolderStamp;
use crate::cancel::AbortToken;
use crate::load::Loaded;
use crate::Error;

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
///
/// Each thread owns one stripe while it lives ([`ThreadStripe`]): only it writes there, so a
/// call's end is a plain store. Threads beyond [`OWNED_STRIPES`] share one last stripe,
/// which they update with atomic read-modify-writes.
pub(super) struct InFlight {
    stripes: [Stripe; STRIPES],
}

/// Stripes owned by one thread each.
pub(super) const OWNED_STRIPES: usize = 64;
/// Those, and the one shared by every other thread.
const STRIPES: usize = OWNED_STRIPES + 1;

#[repr(align(128))]
#[derive(Default)]
struct Stripe(AtomicUsize);

/// The stripe index a thread owns, returned for reuse when the thread exits. It lives in
/// the thread's call cache (`handle.rs`), so the index and the cached stripe pointers go
/// away together.
pub(super) struct ThreadStripe(usize);

/// Stripe indexes free for a new thread, and the next never used.
static FREE_STRIPES: Mutex<(Vec<usize>, usize)> = Mutex::new((Vec::new(), 0));

impl ThreadStripe {
    /// A stripe index for a new thread: a free owned one, else the shared one.
    pub(super) fn take() -> Self {
        let mut free = FREE_STRIPES.lock();
        if let Some(index) = free.0.pop() {
            return ThreadStripe(index);
        }
        if free.1 < OWNED_STRIPES {
            free.1 += 1;
            return ThreadStripe(free.1 - 1);
        }
        ThreadStripe(OWNED_STRIPES)
    }
}

impl Drop for ThreadStripe {
    fn drop(&mut self) {
        // This thread makes no call after this: its count in every stripe is back to 0.
        if self.0 < OWNED_STRIPES {
            FREE_STRIPES.lock().0.push(self.0);
        }
    }
}

impl InFlight {
    pub(super) fn new() -> Self {
        InFlight {
            stripes: std::array::from_fn(|_| Stripe::default()),
        }
    }

    /// The stripe of a thread that owns `owner` (the shared stripe for `None`), and whether
    /// the thread owns it.
    pub(super) fn stripe(&self, owner: Option<&ThreadStripe>) -> (&AtomicUsize, bool) {
        let index = owner.map_or(OWNED_STRIPES, |o| o.0);
        (&self.stripes[index].0, index < OWNED_STRIPES)
    }

    pub(super) fn total(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::SeqCst))
            .sum()
    }
}

/// Marks one call in flight for as long as it lives.
pub(super) struct CallGuard<'a> {
    stripe: &'a AtomicUsize,
    owned: bool,
}

impl<'a> CallGuard<'a> {
    /// Marks a call on this thread's stripe of `in_flight`.
    #[cfg(test)]
    pub(super) fn enter(in_flight: &'a InFlight, owner: Option<&ThreadStripe>) -> Self {
        let (stripe, owned) = in_flight.stripe(owner);
        Self::on(stripe, owned, false)
    }

    /// Marks a call on `stripe`, a stripe of a version's in-flight counter that this thread
    /// owns (`owned`) or shares. `light`: the stripe is owned and drains issue the
    /// process-wide barrier (`fence.rs`).
    #[inline]
    pub(super) fn on(stripe: &'a AtomicUsize, owned: bool, light: bool) -> Self {
        if light {
            // Only this thread writes its stripe; the drain's barrier orders the rest.
            let count = stripe.load(Ordering::Relaxed);
            stripe.store(count + 1, Ordering::Relaxed);
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            // A read-modify-write, SeqCst: it orders the mark before the call path's second
            // read of the publication number (see `handle.rs`), as a fence would.
            stripe.fetch_add(1, Ordering::SeqCst);
        }
        CallGuard { stripe, owned }
    }
}

impl Drop for CallGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.owned {
            // Only this thread writes its own stripe: a plain store, ordered after the call.
            let count = self.stripe.load(Ordering::Relaxed);
            self.stripe.store(count - 1, Ordering::Release);
        } else {
            self.stripe.fetch_sub(1, Ordering::Release);
        }
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
    version.loaded.code.on_load(name, &version.abort)
}

/// Runs the version's `on_unload`: in this process, or in its worker, which then exits.
pub(super) fn run_on_unload(name: &str, loaded: &Loaded) -> Result<(), Error> {
    loaded.code.on_unload(name)
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
    fn in_flight_counts_across_threads_on_owned_and_shared_stripes() {
        let in_flight = Arc::new(InFlight::new());
        let mine = ThreadStripe::take();
        let a = CallGuard::enter(&in_flight, Some(&mine));
        let shared = CallGuard::enter(&in_flight, None);
        let other = {
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                let theirs = ThreadStripe::take();
                let _g = CallGuard::enter(&in_flight, Some(&theirs));
                in_flight.total()
            })
            .join()
            .unwrap()
        };
        assert_eq!(other, 3);
        assert_eq!(in_flight.total(), 2);
        drop(a);
        assert_eq!(in_flight.total(), 1);
        drop(shared);
        assert_eq!(in_flight.total(), 0);
    }

    #[test]
    fn stripe_indexes_are_owned_by_one_thread_and_reused_after_it() {
        let a = ThreadStripe::take();
        let b = ThreadStripe::take();
        assert_ne!(a.0, b.0);
        let freed = a.0;
        drop(a);
        let c = ThreadStripe::take();
        assert_eq!(c.0, freed, "a freed index is given again");
        // Past the owned stripes, threads share the last one.
        let many: Vec<ThreadStripe> = (0..OWNED_STRIPES + 2)
            .map(|_| ThreadStripe::take())
            .collect();
        assert!(many.iter().any(|s| s.0 == OWNED_STRIPES));
        assert!(many.iter().all(|s| s.0 <= OWNED_STRIPES));
    }
}
