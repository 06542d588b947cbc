//! Cancellation: the tree of cancel nodes behind every `Context`, and the abort token that
//! cancels the calls still running on a version whose drain timed out.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use plugin_abi::CancelReason;

const LIVE: u8 = 0;
const CANCELLED: u8 = 1;
const DEADLINE: u8 = 2;

/// One node of the cancellation tree.
pub(crate) struct CancelNode {
    state: AtomicU8,
    deadline: Option<Instant>,
    children: Mutex<Vec<Weak<CancelNode>>>,
    lock: Mutex<()>,
    wake: Condvar,
}

impl CancelNode {
    /// A root node, cancelled at `deadline` if there is one.
    pub(crate) fn new(deadline: Option<Instant>) -> Arc<Self> {
        Arc::new(CancelNode {
            state: AtomicU8::new(LIVE),
            deadline,
            children: Mutex::new(Vec::new()),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        })
    }

    /// Cancels this node and its children (see [`Context::cancel`]).
    pub(crate) fn cancel(&self) {
        self.trip(CANCELLED);
    }

    /// The deadline, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A node cancelled with this one, and at the earlier of this one's deadline and
    /// `deadline`.
    pub(crate) fn child(&self, deadline: Option<Instant>) -> Arc<Self> {
        let deadline = match (self.deadline, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let node = CancelNode::new(deadline);
        self.children.lock().push(Arc::downgrade(&node));
        // This node may have been cancelled before the child registered; inherit that.
        if let Some(reason) = self.reason() {
            node.trip(match reason {
                CancelReason::Cancelled => CANCELLED,
                CancelReason::DeadlineExceeded => DEADLINE,
            });
        }
        node
    }

    /// Why the node was cancelled, or `None` while it is live. Notices a passed deadline.
    pub(crate) fn reason(&self) -> Option<CancelReason> {
        match self.state.load(Ordering::Acquire) {
            CANCELLED => Some(CancelReason::Cancelled),
            DEADLINE => Some(CancelReason::DeadlineExceeded),
            _ => match self.deadline {
                Some(deadline) if Instant::now() >= deadline => {
                    self.trip(DEADLINE);
                    self.reason()
                }
                _ => None,
            },
        }
    }

    /// Moves the node from live to `state` (first writer wins), wakes waiters and cancels the
    /// children.
    fn trip(&self, state: u8) {
        if self
            .state
            .compare_exchange(LIVE, state, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        {
            let _guard = self.lock.lock();
            self.wake.notify_all();
        }
        let children = std::mem::take(&mut *self.children.lock());
        for child in children.iter().filter_map(Weak::upgrade) {
            child.trip(state);
        }
    }

    /// Blocks until the node is cancelled or `timeout` passes; returns whether it was
    /// cancelled.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let give_up = Instant::now().checked_add(timeout);
        loop {
            // Outside the lock: this may trip the deadline, which takes the lock.
            if self.reason().is_some() {
                return true;
            }
            let mut guard = self.lock.lock();
            // `trip` stores the state before it takes the lock to notify, so checking it
            // under the lock cannot miss a wake-up.
            if self.state.load(Ordering::Acquire) != LIVE {
                return true;
            }
            let now = Instant::now();
            if give_up.is_some_and(|g| now >= g) {
                return false;
            }
            // Wake at whichever comes first: the caller's timeout or our own deadline (which
            // `reason()` then turns into a cancellation), so no timer thread is needed.
            let until = match (give_up, self.deadline) {
                (Some(g), Some(d)) => g.min(d),
                (Some(g), None) => g,
                (None, Some(d)) => d,
                (None, None) => now + Duration::from_secs(3600),
            };
            if until > now {
                self.wake.wait_until(&mut guard, until);
            }
        }
    }
}

/// Cancels the calls still running on a version whose drain timed out.
pub(crate) struct AbortToken {
    aborted: AtomicBool,
    /// Contexts of calls blocked in `wait_cancelled`, so an abort can wake them.
    waiting: Mutex<Vec<Weak<CancelNode>>>,
}

impl AbortToken {
    pub(crate) fn new() -> Self {
        AbortToken {
            aborted: AtomicBool::new(false),
            waiting: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Registers a context that is about to block, unless the version is already aborted.
    pub(crate) fn register(&self, node: &Arc<CancelNode>) -> bool {
        let mut waiting = self.waiting.lock();
        if self.is_aborted() {
            return false;
        }
        waiting.retain(|w| w.strong_count() > 0);
        waiting.push(Arc::downgrade(node));
        true
    }

    /// Marks the version aborted and cancels every registered context.
    pub(crate) fn abort(&self) {
        let waiting = {
            let mut waiting = self.waiting.lock();
            self.aborted.store(true, Ordering::Release);
            std::mem::take(&mut *waiting)
        };
        for node in waiting.iter().filter_map(Weak::upgrade) {
            node.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time this thread has used.
    #[cfg(target_os = "linux")]
    fn thread_cpu() -> Duration {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid, writable timespec; the call only writes it.
        let done = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        assert_eq!(done, 0);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_wait_sleeps_until_its_timeout_rather_than_spinning() {
        let node = CancelNode::new(None);
        let (wall, cpu) = (Instant::now(), thread_cpu());
        assert!(!node.wait(Duration::from_millis(300)));
        assert!(wall.elapsed() >= Duration::from_millis(300));
        // A spinning wait would use about as much CPU as wall time.
        let used = thread_cpu() - cpu;
        assert!(used < Duration::from_millis(30), "used {used:?} of CPU");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_wait_without_timeout_or_deadline_sleeps_until_cancelled() {
        let node = CancelNode::new(None);
        let canceller = {
            let node = node.clone();
            std::thread::spawn(move || {
                // A timed wait on a node nobody cancels: the test above shows it sleeps.
                CancelNode::new(None).wait(Duration::from_millis(300));
                node.cancel();
            })
        };
        let cpu = thread_cpu();
        assert!(node.wait(Duration::MAX));
        let used = thread_cpu() - cpu;
        canceller.join().unwrap();
        assert!(used < Duration::from_millis(30), "used {used:?} of CPU");
        assert_eq!(node.reason(), Some(CancelReason::Cancelled));
    }
}
