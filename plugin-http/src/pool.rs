//! The threads plugin calls run on: threads of the server's own, kept between calls.
//!
//! A call is handed to an idle thread directly (its slot, then a wake-up), or to a new thread
//! when none is idle; the caller holds one of the pool's permits (`call.rs` takes it at
//! admission), so at most `size` threads ever run or wait. A thread that finished a call may
//! spin for [`SPIN`] on its slot before it sleeps (none by default, see there); it sleeps at
//! most [`KEEP_ALIVE`] before it ends. A thread already awake is handed a call without a
//! system call.
//!
//! A thread keeps its permit until its call returned and it is idle again: a call that never
//! returns holds its thread and its permit for ever, and the others are never queued behind
//! it. Nothing here ever waits for a call: dropping the pool only tells idle threads to end.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::OwnedSemaphorePermit;

/// How long a thread that finished a call looks for the next one before it sleeps. None:
/// measured with `cargo xtask bench-http` on two cores, spinning 20 µs took a third of the
/// server's CPU and gained nothing, since calls arrive further apart than a spin can wait and
/// the spinning thread takes the core the request's task and the client need.
pub(crate) const SPIN: Duration = Duration::ZERO;

/// How long an idle thread sleeps waiting for a call before it ends.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A call to run, with the permit that holds its thread.
struct Job {
    run: Box<dyn FnOnce() + Send>,
    permit: OwnedSemaphorePermit,
}

/// One thread of the pool: where its next call is put.
struct Worker {
    job: Mutex<Option<Job>>,
    /// Set with `job`, read without the lock while the thread spins.
    ready: AtomicBool,
    wake: Condvar,
}

struct Shared {
    /// Threads waiting for a call, the one that ran last on top.
    idle: Mutex<Vec<Arc<Worker>>>,
    closed: AtomicBool,
    /// Threads started so far.
    started: AtomicUsize,
    spin: Duration,
    keep_alive: Duration,
}

/// The pool (see the module).
pub(crate) struct Threads {
    shared: Arc<Shared>,
}

/// A thread could not be started for a call (the system refused it).
#[derive(Debug)]
pub(crate) struct SpawnError(pub(crate) std::io::Error);

impl Threads {
    pub(crate) fn new() -> Threads {
        Threads::with(SPIN, KEEP_ALIVE)
    }

    pub(crate) fn with(spin: Duration, keep_alive: Duration) -> Threads {
        Threads {
            shared: Arc::new(Shared {
                idle: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                started: AtomicUsize::new(0),
                spin,
                keep_alive,
            }),
        }
    }

    /// Runs `run` on an idle thread, or a new one; `permit` is given back once the call
    /// returned and its thread is idle again.
    pub(crate) fn run(
        &self,
        permit: OwnedSemaphorePermit,
        run: impl FnOnce() + Send + 'static,
    ) -> Result<(), SpawnError> {
        let job = Job {
            run: Box::new(run),
            permit,
        };
        let idle = self.shared.idle.lock().pop();
        match idle {
            Some(worker) => {
                *worker.job.lock() = Some(job);
                worker.ready.store(true, Ordering::Release);
                worker.wake.notify_one();
                Ok(())
            }
            None => self.start(job),
        }
    }

    fn start(&self, first: Job) -> Result<(), SpawnError> {
        let shared = self.shared.clone();
        let worker = Arc::new(Worker {
            job: Mutex::new(None),
            ready: AtomicBool::new(false),
            wake: Condvar::new(),
        });
        std::thread::Builder::new()
            .name("plugin-call".to_owned())
            .spawn(move || work(&shared, &worker, first))
            .map_err(SpawnError)?;
        self.shared.started.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Threads started so far (reused threads count once).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn started(&self) -> usize {
        self.shared.started.load(Ordering::Relaxed)
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // Idle threads end now; busy ones after their call. Never wait for either.
        self.shared.closed.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.shared.idle.lock());
        for worker in idle {
            // Taking the slot's lock orders this with a thread about to sleep on it.
            drop(worker.job.lock());
            worker.wake.notify_one();
        }
    }
}

/// A thread's life: its first call, then each call handed to it, until it has been idle
/// `keep_alive` or the pool is dropped.
fn work(shared: &Shared, me: &Arc<Worker>, first: Job) {
    let mut next = Some(first);
    while let Some(Job { run, permit }) = next.take() {
        // The SDK catches plugin panics; one here is the host's own code. The call's
        // result channel is dropped with it (the request is answered 500), and the thread
        // goes on.
        let _ = catch_unwind(AssertUnwindSafe(run));
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        // Idle before the permit is given back: a thread is never started while one that
        // holds no call is still about.
        shared.idle.lock().push(me.clone());
        drop(permit);
        next = me.next(shared);
    }
}

impl Worker {
    /// The next call handed to this thread, or `None` when it should end.
    fn next(self: &Arc<Self>, shared: &Shared) -> Option<Job> {
        if !shared.spin.is_zero() {
            let spun = Instant::now();
            while !self.ready.load(Ordering::Acquire) && spun.elapsed() < shared.spin {
                std::hint::spin_loop();
            }
        }
        let mut slot = self.job.lock();
        let mut deadline = Instant::now() + shared.keep_alive;
        loop {
            if let Some(job) = slot.take() {
                self.ready.store(false, Ordering::Relaxed);
                return Some(job);
            }
            if shared.closed.load(Ordering::Acquire) {
                return None;
            }
            if self.wake.wait_until(&mut slot, deadline).timed_out() {
                let mut idle = shared.idle.lock();
                if let Some(at) = idle.iter().position(|w| Arc::ptr_eq(w, self)) {
                    // Still idle: no call can be handed to it any more.
                    idle.swap_remove(at);
                    return None;
                }
                // Taken for a call that is being put in the slot: wait for it.
                deadline = Instant::now() + shared.keep_alive;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use tokio::sync::Semaphore;

    const BOUND: Duration = Duration::from_secs(10);

    /// A permit of `permits`, waiting (bounded) for a thread to give one back.
    fn acquire(permits: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        let started = Instant::now();
        loop {
            if let Ok(permit) = permits.clone().try_acquire_owned() {
                return permit;
            }
            assert!(started.elapsed() < BOUND, "no permit came back");
            std::thread::yield_now();
        }
    }

    #[test]
    fn threads_are_reused_between_calls() {
        let threads = Threads::new();
        let permits = Arc::new(Semaphore::new(1));
        let (tx, rx) = mpsc::channel();
        for _ in 0..50 {
            let tx = tx.clone();
            threads
                .run(acquire(&permits), move || {
                    tx.send(std::thread::current().id()).unwrap()
                })
                .unwrap();
            rx.recv_timeout(BOUND).unwrap();
        }
        assert_eq!(threads.started(), 1);
    }

    #[test]
    fn a_call_that_never_returns_keeps_its_thread_and_others_get_new_ones() {
        let threads = Threads::new();
        let permits = Arc::new(Semaphore::new(2));
        let (hold_tx, hold_rx) = mpsc::channel::<()>();
        let (entered_tx, entered_rx) = mpsc::channel();
        threads
            .run(acquire(&permits), move || {
                entered_tx.send(()).unwrap();
                // Blocks until the test ends (the sender is dropped then).
                let _ = hold_rx.recv();
            })
            .unwrap();
        entered_rx.recv_timeout(BOUND).unwrap();
        // The stuck call holds one permit; the other runs calls on another thread.
        assert_eq!(permits.available_permits(), 1);
        let (tx, rx) = mpsc::channel();
        for _ in 0..10 {
            let tx = tx.clone();
            threads
                .run(acquire(&permits), move || tx.send(()).unwrap())
                .unwrap();
            rx.recv_timeout(BOUND).unwrap();
        }
        assert_eq!(threads.started(), 2);
        assert!(permits.available_permits() <= 1);
        drop(hold_tx);
    }

    #[test]
    fn idle_threads_end_after_the_keep_alive_and_new_ones_start() {
        let threads = Threads::with(Duration::ZERO, Duration::from_millis(1));
        let permits = Arc::new(Semaphore::new(1));
        let (tx, rx) = mpsc::channel();
        let call = |tx: mpsc::Sender<()>| move || tx.send(()).unwrap();
        threads.run(acquire(&permits), call(tx.clone())).unwrap();
        rx.recv_timeout(BOUND).unwrap();
        // The permit comes back once the thread is idle; then it ends, and leaves the list.
        let permit = acquire(&permits);
        let started = Instant::now();
        while !threads.shared.idle.lock().is_empty() {
            assert!(started.elapsed() < BOUND, "the idle thread never ended");
            std::thread::yield_now();
        }
        threads.run(permit, call(tx)).unwrap();
        rx.recv_timeout(BOUND).unwrap();
        assert_eq!(threads.started(), 2);
    }
}
