//! The host's side of a worker: start it, call it, kill it at a deadline, restart it after a
//! crash with back-off, and quarantine a plugin that keeps crashing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use parking_lot::{Condvar, Mutex};
use plugin_abi::ErrorKind;

use super::process::{launch, monitor, Launch, Worker, EXIT_WAIT};
use super::ProcessOptions;
use super::{WorkerExit, WorkerStatus};
use crate::cancel::AbortToken;
use crate::context::emit_log;
use crate::{Context, Error};
use plugin_ipc::{Channel, LoadFailure, Message, Reader, Writer, DEAD, IDLE, REQUEST, RESPONSE};

/// How long a caller spins for the answer before it sleeps on the futex.
const CALL_SPIN: Duration = Duration::from_micros(20);
/// How often a waiting caller looks at its context's cancellation and the worker's life.
const POLL: Duration = Duration::from_millis(10);

/// Told that a worker ended unexpectedly; it restarts after the given wait (`None`:
/// quarantined).
pub(crate) type CrashHook = Box<dyn Fn(&WorkerExit, Option<Duration>) + Send + Sync>;

/// What the supervisor tells the manager.
pub(crate) struct SupervisorHooks {
    /// A worker ended unexpectedly.
    pub(crate) crashed: CrashHook,
    /// The plugin crashed too often and is quarantined, for this reason.
    pub(crate) quarantined: Box<dyn Fn(&str) + Send + Sync>,
}

/// Supervises the worker of one loaded version of a plugin.
pub(crate) struct Supervisor {
    name: String,
    version: String,
    /// The sealed memory file holding the library's checked bytes; each worker maps it.
    library: OwnedFd,
    program: PathBuf,
    options: ProcessOptions,
    hooks: SupervisorHooks,
    current: ArcSwapOption<Worker>,
    state: Mutex<State>,
    changed: Condvar,
    has_on_load: AtomicBool,
    has_on_unload: AtomicBool,
}

#[derive(Default)]
struct State {
    restarts: u32,
    crashes: VecDeque<Instant>,
    last_exit: Option<WorkerExit>,
    quarantined: Option<String>,
    stopping: bool,
}

thread_local! {
    /// A buffer per calling thread for requests and responses: no allocation per call.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Supervisor {
    /// Starts the first worker for `name` `version` from the library bytes in `library` (a
    /// sealed memory file); returns once it reported ready, or the reason it did not.
    pub(crate) fn start(
        name: &str,
        version: &semver::Version,
        library: OwnedFd,
        options: ProcessOptions,
        hooks: SupervisorHooks,
    ) -> Result<Arc<Supervisor>, Error> {
        // `/proc/self/exe`, resolved in the child between fork and exec, is the very file the
        // host runs, even if its path was replaced or deleted since it started.
        let program = options
            .program
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let sup = Arc::new(Supervisor {
            name: name.to_owned(),
            version: version.to_string(),
            library,
            program,
            options,
            hooks,
            current: ArcSwapOption::empty(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            has_on_load: AtomicBool::new(false),
            has_on_unload: AtomicBool::new(false),
        });
        let worker = sup.spawn()?;
        sup.current.store(Some(worker));
        Ok(sup)
    }

    /// Whether the plugin has an `on_load` / `on_unload` hook (as its worker reported).
    pub(crate) fn hooks_present(&self) -> (bool, bool) {
        (
            self.has_on_load.load(Ordering::Relaxed),
            self.has_on_unload.load(Ordering::Relaxed),
        )
    }

    /// The worker's status now.
    pub(crate) fn status(&self) -> WorkerStatus {
        let pid = self
            .current
            .load()
            .as_ref()
            .filter(|w| !w.dead.load(Ordering::Acquire))
            .map(|w| w.plugin_pid());
        let state = self.state.lock();
        WorkerStatus {
            pid,
            restarts: state.restarts,
            last_exit: state.last_exit.clone(),
            quarantined: state.quarantined.clone(),
        }
    }

    /// Whether the plugin is quarantined.
    pub(crate) fn is_quarantined(&self) -> bool {
        self.state.lock().quarantined.is_some()
    }

    fn start_error(&self, reason: String) -> Error {
        Error::WorkerStart {
            plugin: self.name.clone(),
            reason,
        }
    }

    /// Starts a worker and waits for its report.
    fn spawn(self: &Arc<Self>) -> Result<Arc<Worker>, Error> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| self.start_error(format!("{what}: {e}"))
        };
        let (shm, channel) = Channel::create(self.options.lanes, self.options.max_message)
            .map_err(|e| self.start_error(format!("cannot make the call channel: {e}")))?;
        let (socket, theirs) = UnixStream::pair().map_err(io("cannot make the socket"))?;
        let params = format!("v1 {} {} {}", std::process::id(), self.name, self.version);
        let (child, worker) = launch(
            &self.program,
            &params,
            &self.options.pass_env,
            [OwnedFd::from(theirs), channel],
            &self.library,
            self.options.memory_limit,
            shm,
            socket,
        )
        .map_err(|e| match e {
            Launch::Spawn(e) => self.start_error(format!(
                "cannot run {}: {e}; set ProcessOptions::program to an executable that calls plugin_host::isolate::init()",
                self.program.display()
            )),
            Launch::Watch(e) => self.start_error(format!("cannot watch the worker: {e}")),
        })?;

        // The report: ready, or why not, within the start timeout.
        let _ = worker
            .socket
            .set_read_timeout(Some(self.options.start_timeout));
        // Log records from `on_load` may come first.
        let report = loop {
            match plugin_ipc::receive(&worker.socket) {
                Ok(Some(Message::Log { level, message })) => emit_log(&self.name, level, &message),
                other => break other,
            }
        };
        let _ = worker.socket.set_read_timeout(None);
        let (ready, failure) = match report {
            Ok(Some(Message::Ready {
                has_on_load,
                has_on_unload,
                pid,
            })) => {
                worker.plugin_pid.store(pid, Ordering::Release);
                self.has_on_load.store(has_on_load, Ordering::Relaxed);
                self.has_on_unload.store(has_on_unload, Ordering::Relaxed);
                (true, None)
            }
            Ok(Some(Message::Failed { failure, message })) => {
                (false, Some(self.load_error(failure, message)))
            }
            Ok(Some(other)) => (
                false,
                Some(self.start_error(format!("it sent {other:?} before its report"))),
            ),
            // It ended before it reported: the monitor tells how.
            Ok(None) => (false, None),
            Err(e) if e.is_timeout() => {
                (
                    false,
                    Some(self.start_error(format!(
                        "it did not report ready within {} (ProcessOptions::start_timeout); is on_load slow, or does the program call plugin_host::isolate::init() first thing?",
                        humantime::format_duration(self.options.start_timeout)
                    ))),
                )
            }
            Err(e) => (false, Some(self.start_error(format!("its report: {e}")))),
        };
        let sup = Arc::downgrade(self);
        let monitored = worker.clone();
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("worker-{}", self.name))
            .spawn(move || {
                let ended = |worker: &Arc<Worker>, exit| {
                    if let Some(sup) = sup.upgrade() {
                        sup.ended(worker, exit);
                    }
                };
                monitor(ended, monitored, child, name, ready)
            })
            .map_err(io("cannot start the worker's monitor thread"))?;
        if let Some(err) = failure {
            worker.kill();
            worker.wait_dead(None);
            return Err(err);
        }
        if !ready {
            worker.wait_dead(None);
            let exit = worker.exit.lock().clone();
            return Err(self.start_error(match exit {
                Some(exit) => format!("it {exit} before it reported ready"),
                None => "it closed its socket before it reported ready".to_owned(),
            }));
        }
        Ok(worker)
    }

    fn load_error(&self, failure: LoadFailure, message: String) -> Error {
        let plugin = self.name.clone();
        let path = PathBuf::from(format!("memfd:plugin:{}-{}", self.name, self.version));
        match failure {
            LoadFailure::Identity { field, expected } => Error::IdentityMismatch {
                plugin,
                path,
                field,
                expected,
                found: message,
            },
            LoadFailure::NotAPlugin => Error::NotAPlugin {
                plugin,
                path,
                reason: message,
            },
            LoadFailure::AbiMismatch => Error::AbiMismatch {
                plugin,
                path,
                reason: message,
            },
            LoadFailure::OnLoad(kind) => Error::OnLoad {
                plugin,
                kind,
                message,
            },
            LoadFailure::Setup => self.start_error(message),
        }
    }

    /// A live worker, waiting for a restart in progress (until `until`).
    fn live_worker(&self, until: Option<Instant>) -> Result<Arc<Worker>, Error> {
        loop {
            if let Some(w) = self.current.load_full() {
                if w.serves() {
                    return Ok(w);
                }
            }
            let mut state = self.state.lock();
            if let Some(reason) = &state.quarantined {
                return Err(Error::Quarantined {
                    plugin: self.name.clone(),
                    reason: reason.clone(),
                });
            }
            if state.stopping {
                return Err(Error::Unloaded {
                    plugin: self.name.clone(),
                });
            }
            if let Some(w) = self.current.load_full() {
                if w.serves() {
                    return Ok(w);
                }
            }
            match until {
                Some(until) => {
                    if self.changed.wait_until(&mut state, until).timed_out() {
                        return Err(Error::Call {
                            plugin: self.name.clone(),
                            kind: ErrorKind::DeadlineExceeded,
                            message: "the deadline passed while its worker restarted".into(),
                        });
                    }
                }
                None => self.changed.wait(&mut state),
            }
        }
    }

    /// Runs one call in `ctx` on the worker.
    pub(crate) fn call(&self, ctx: &Context, abort: &AbortToken) -> Result<(), Error> {
        let deadline = ctx.deadline();
        let worker = self.live_worker(deadline)?;
        let Some(lane) = worker.take_lane(deadline) else {
            return Err(self.lost(&worker));
        };
        let seq = worker.seq.fetch_add(1, Ordering::Relaxed);
        BUFFERS.with_borrow_mut(|(request, response)| {
            let mut writer = Writer::new(std::mem::take(request));
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            writer.head(
                seq,
                remaining,
                ctx.is_cancelled() || abort.is_aborted(),
                ctx.label(),
            );
            ctx.with_values(|count, values| writer.values(count, values));
            *request = writer.finish();
            if worker.shm.send(lane, request, REQUEST).is_err() {
                // Longer than a lane: the lane is left idle.
                worker.release(lane);
                return Err(Error::MessageTooLarge {
                    plugin: self.name.clone(),
                    size: request.len(),
                    limit: worker.shm.capacity(),
                });
            }
            self.wait_answer(&worker, lane, seq, ctx, abort, deadline, response)
        })
    }

    #[expect(clippy::too_many_arguments, reason = "one call's parts, passed once")]
    fn wait_answer(
        &self,
        worker: &Arc<Worker>,
        lane: usize,
        seq: u64,
        ctx: &Context,
        abort: &AbortToken,
        deadline: Option<Instant>,
        response: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let kill_at = deadline.map(|d| d + self.options.grace);
        let mut spin = CALL_SPIN;
        loop {
            let slice = Instant::now() + POLL;
            let until = kill_at.map_or(slice, |k| k.min(slice));
            match worker.shm.wait(lane, REQUEST, spin, Some(until)) {
                Some(RESPONSE) => {
                    let read = worker.shm.read(lane, response);
                    worker.shm.reset(lane);
                    worker.release(lane);
                    return match read.ok().and_then(|()| self.apply(ctx, response)) {
                        Some(Ok(())) => Ok(()),
                        Some(Err((kind, message))) => Err(Error::Call {
                            plugin: self.name.clone(),
                            kind,
                            message,
                        }),
                        None => {
                            // A worker that writes nonsense is not trusted with more calls.
                            worker.kill();
                            Err(self.start_error(
                                "its worker sent a malformed answer and was killed".into(),
                            ))
                        }
                    };
                }
                Some(DEAD) | Some(IDLE) => return Err(self.lost(worker)),
                Some(_) => return Err(self.lost(worker)),
                None => {}
            }
            spin = Duration::ZERO;
            if worker.dead.load(Ordering::Acquire) {
                return Err(self.lost(worker));
            }
            if ctx.is_cancelled() || abort.is_aborted() {
                // Sent again at each poll until the call answers: the first may arrive before
                // the worker's lane has picked the call up (a cancellation of a call that has
                // ended is ignored: the worker matches `seq`).
                worker.send(&Message::Cancel {
                    lane: lane as u32,
                    seq,
                });
            }
            if kill_at.is_some_and(|k| Instant::now() >= k) {
                worker.killed_stuck.store(true, Ordering::Release);
                worker.kill();
                return Err(Error::Call {
                    plugin: self.name.clone(),
                    kind: ErrorKind::DeadlineExceeded,
                    message: format!(
                        "the call ignored its deadline and did not return within the {} grace period; its worker (pid {}) was killed and restarts",
                        humantime::format_duration(self.options.grace),
                        worker.plugin_pid()
                    ),
                });
            }
        }
    }

    /// The values and result of a response, applied to `ctx`; `None` if malformed.
    fn apply(&self, ctx: &Context, response: &[u8]) -> Option<Result<(), (ErrorKind, String)>> {
        let mut reader = Reader::new(response);
        let result = reader.result().ok()?;
        ctx.replace_values(|put| reader.values(put)).ok()?;
        Some(result)
    }

    /// The error for a call whose worker ended under it.
    fn lost(&self, worker: &Worker) -> Error {
        // The monitor records how it ended as soon as it has reaped it.
        let exit = worker.wait_dead(Some(EXIT_WAIT * 2));
        if worker.killed_stuck.load(Ordering::Acquire) {
            return Error::WorkerCrashed {
                plugin: self.name.clone(),
                exit: WorkerExit::KilledStuck,
            };
        }
        match exit {
            Some(exit) => Error::WorkerCrashed {
                plugin: self.name.clone(),
                exit,
            },
            None => self.start_error("its worker stopped answering".into()),
        }
    }

    /// Stops the worker for good: `on_unload` runs in it, then it exits (killed if it takes
    /// longer than the start timeout). Returns `on_unload`'s result.
    pub(crate) fn stop(&self) -> Result<(), Error> {
        {
            let mut state = self.state.lock();
            state.stopping = true;
            self.changed.notify_all();
        }
        let Some(worker) = self.current.swap(None) else {
            return Ok(());
        };
        worker.ending.store(true, Ordering::Release);
        if worker.dead.load(Ordering::Acquire) {
            return Ok(());
        }
        worker.send(&Message::Stop);
        if worker.wait_dead(Some(self.options.start_timeout)).is_none() {
            worker.kill();
            worker.wait_dead(None);
        }
        let stopped = worker.stopped.lock().take();
        match stopped {
            Some(Err((kind, message))) => Err(Error::OnUnload {
                plugin: self.name.clone(),
                kind,
                message,
            }),
            _ => Ok(()),
        }
    }

    /// Kills the worker for good, without `on_unload`, and waits until it is reaped.
    pub(crate) fn kill(&self) {
        {
            let mut state = self.state.lock();
            state.stopping = true;
            self.changed.notify_all();
        }
        if let Some(worker) = self.current.swap(None) {
            worker.ending.store(true, Ordering::Release);
            worker.kill();
            worker.wait_dead(None);
        }
    }

    /// Called by the monitor once `worker` has ended: restart it, or quarantine the plugin.
    pub(super) fn ended(self: &Arc<Self>, worker: &Arc<Worker>, exit: WorkerExit) {
        let mut state = self.state.lock();
        state.last_exit = Some(exit.clone());
        if state.stopping || worker.ending.load(Ordering::Acquire) {
            self.changed.notify_all();
            return;
        }
        let mut next = self.count_crash(&mut state);
        drop(state);
        loop {
            // Hooks run with no lock held: a listener may well ask for the status.
            let delay = match next {
                Ok(delay) => {
                    (self.hooks.crashed)(&exit, Some(delay));
                    delay
                }
                Err(reason) => {
                    (self.hooks.crashed)(&exit, None);
                    (self.hooks.quarantined)(&reason);
                    return;
                }
            };
            // Wait out the back-off, unless a stop comes first.
            let give_up = Instant::now() + delay;
            let mut state = self.state.lock();
            while !state.stopping && !self.changed.wait_until(&mut state, give_up).timed_out() {}
            if state.stopping {
                return;
            }
            drop(state);
            let started = self.spawn();
            let mut state = self.state.lock();
            match started {
                Ok(fresh) => {
                    if state.stopping {
                        fresh.ending.store(true, Ordering::Release);
                        fresh.kill();
                        return;
                    }
                    state.restarts += 1;
                    self.current.store(Some(fresh));
                    self.changed.notify_all();
                    return;
                }
                Err(err) => {
                    tracing::warn!(plugin = %self.name, "worker restart failed: {}", err.report());
                    next = self.count_crash(&mut state);
                }
            }
        }
    }

    /// Counts a crash: the back-off before the restart, or the reason for quarantine.
    fn count_crash(&self, state: &mut State) -> Result<Duration, String> {
        let now = Instant::now();
        state.crashes.push_back(now);
        while state
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.options.crash_window)
        {
            state.crashes.pop_front();
        }
        let crashes = state.crashes.len() as u32;
        if crashes >= self.options.max_crashes {
            let reason = format!(
                "its worker ended {crashes} times within {} (last: it {})",
                humantime::format_duration(self.options.crash_window),
                state
                    .last_exit
                    .as_ref()
                    .map_or("failed to start".into(), ToString::to_string)
            );
            state.quarantined = Some(reason.clone());
            self.current.store(None);
            self.changed.notify_all();
            return Err(reason);
        }
        let doubling = 2u32.saturating_pow(crashes.saturating_sub(1));
        Ok(self
            .options
            .backoff
            .saturating_mul(doubling)
            .min(self.options.max_backoff))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.state.lock().stopping = true;
        if let Some(worker) = self.current.swap(None) {
            worker.ending.store(true, Ordering::Release);
            worker.kill();
        }
    }
}
