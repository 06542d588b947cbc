//! A lock biased toward the thread running a plugin call: the context's values.
//!
//! A plugin that reads and writes its context a few times per call would otherwise pay a
//! lock and an unlock per access, two atomic read-modify-writes; on the machines this
//! project measures on, that is most of what a `ctx.set` + `ctx.get` costs. Yet nearly
//! always only one thread touches a context during a call: the one that called the plugin.
//!
//! So during a call, the first access from inside the plugin *grants* the thread the bias
//! (under the lock, once), and from then on that thread's accesses take no lock: each marks
//! itself `busy` with a plain store and a compiler fence, checks it still owns the bias,
//! and goes. Any other access (another thread of the plugin's, another call on the same
//! context, the host's own `Context::get`) takes the lock as before; if a bias is held, it
//! *revokes* it first: clears the owner, issues the process-wide barrier of `fence.rs`,
//! and waits for the owner's access in progress, if any, to end. That is the same pairing
//! as the call path's (see `manager/handle.rs`): either the owner sees the revocation and
//! takes the lock, or the revoker sees the owner busy and waits. A context that was once
//! contended is not biased again, so two threads sharing one never pay the barrier more
//! than once.
//!
//! The call ends by giving the bias back (a plain store), so the host reads the results
//! after the call without a barrier. Where the process-wide barrier is not available, no
//! bias is ever granted and every access takes the lock.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::fence;

/// A `T` behind a lock that the thread holding the bias skips.
pub(crate) struct Biased<T> {
    /// The token of the thread holding the bias; 0 for none.
    owner: AtomicU64,
    /// Whether the owner is inside an access. Written only by the owner.
    busy: AtomicBool,
    /// Set on the first revocation: no bias is granted after it.
    contended: AtomicBool,
    /// Held by every access that does not hold the bias.
    lock: Mutex<()>,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only by the thread holding `lock`, or by the bias owner while
// no thread holds `lock` with the bias unrevoked (see the module docs): one thread at a
// time, so sharing a `Biased<T>` is as safe as sharing a `Mutex<T>`.
unsafe impl<T: Send> Sync for Biased<T> {}

/// One call's share in the bias: whether this call granted it, so its end gives it back.
#[derive(Default)]
pub(crate) struct Grant(AtomicBool);

/// This thread's token: unique for the life of the process, never 0.
fn token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: Cell<u64> = const { Cell::new(0) };
    }
    TOKEN.with(|t| match t.get() {
        0 => {
            let fresh = NEXT.fetch_add(1, Ordering::Relaxed);
            t.set(fresh);
            fresh
        }
        known => known,
    })
}

impl<T> Biased<T> {
    pub(crate) fn new(value: T) -> Self {
        Biased {
            owner: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            contended: AtomicBool::new(false),
            lock: Mutex::new(()),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value under the lock, revoking any bias first: for the host's own
    /// accesses, outside calls.
    pub(crate) fn lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let _held = self.lock.lock();
        self.revoke();
        // SAFETY: the lock is held and no bias is left (see the module docs).
        f(unsafe { &mut *self.value.get() })
    }

    /// Runs `f` on the value from inside a call: without the lock if this thread holds the
    /// bias, or can be granted it for the call `grant` belongs to.
    pub(crate) fn in_call<R>(&self, grant: &Grant, f: impl FnOnce(&mut T) -> R) -> R {
        let me = token();
        if self.owner.load(Ordering::Relaxed) != me && !self.try_grant(me, grant) {
            return self.lock(f);
        }
        // Only this thread writes `busy`; finding it set means an access from inside an
        // access (a visitor calling back into the context), which must not alias the one in
        // progress: it takes the lock, and waits as it would on a plain mutex.
        if self.busy.load(Ordering::Relaxed) {
            return self.lock(f);
        }
        self.busy.store(true, Ordering::Relaxed);
        // With the revoker's barrier, orders the store above before the load below.
        compiler_fence(Ordering::SeqCst);
        if self.owner.load(Ordering::Relaxed) != me {
            self.busy.store(false, Ordering::Release);
            return self.lock(f);
        }
        // SAFETY: this thread holds the bias and marked itself busy before checking it, so
        // a revoker waits for `busy` to clear before it touches the value (module docs).
        let result = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        result
    }

    /// Grants this thread the bias, if no thread holds it and the value never saw
    /// contention.
    #[cold]
    fn try_grant(&self, me: u64, grant: &Grant) -> bool {
        if !fence::asymmetric() {
            return false;
        }
        // Checked again under the lock; this only spares a contended value the lock.
        if self.contended.load(Ordering::Relaxed) {
            return false;
        }
        let _held = self.lock.lock();
        if self.owner.load(Ordering::Relaxed) != 0 || self.contended.load(Ordering::Relaxed) {
            return false;
        }
        self.owner.store(me, Ordering::Relaxed);
        grant.0.store(true, Ordering::Relaxed);
        true
    }

    /// Ends a call: gives back the bias its thread was granted.
    #[inline]
    pub(crate) fn end_call(&self, grant: &Grant) {
        if grant.0.load(Ordering::Relaxed) {
            self.give_back();
        }
    }

    #[cold]
    fn give_back(&self) {
        let me = token();
        if self.owner.load(Ordering::Relaxed) == me {
            // Release: whoever next takes the lock and reads 0 here sees this thread's
            // writes. A revoker racing with this store writes 0 too.
            self.owner.store(0, Ordering::Release);
        } else if self.owner.load(Ordering::Relaxed) != 0 {
            // Another thread of the plugin's was granted the bias during the call.
            self.lock(|_| ());
        }
    }

    /// Takes the bias away from its owner, if any. Called with `lock` held.
    fn revoke(&self) {
        if self.owner.load(Ordering::Acquire) == 0 {
            return;
        }
        self.contended.store(true, Ordering::Relaxed);
        self.owner.store(0, Ordering::SeqCst);
        // Pairs with the owner's compiler fence: see the module docs and `fence.rs`.
        fence::heavy();
        let mut pause = Duration::from_micros(1);
        while self.busy.load(Ordering::Acquire) {
            // The owner's access in progress is a map operation, or a plugin's visitor
            // reading one value: short, and it takes no lock.
            std::thread::park_timeout(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// Whether a revocation happened (tests check which path accesses took).
    #[cfg(test)]
    pub(crate) fn was_contended(&self) -> bool {
        self.contended.load(Ordering::Relaxed)
    }

    /// Whether this thread holds the bias.
    #[cfg(test)]
    pub(crate) fn held_here(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == token()
    }
}

#[cfg(test)]
mod tests;
