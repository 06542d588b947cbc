//! A worker process as the host holds it: how it is started, its channel and socket, the
//! thread that watches it, and how it ended.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use plugin_abi::ErrorKind;

use super::keeper::{kill_descendants, HOST_WALK};
use super::{passed_env, WorkerExit, WORKER_ENV};
use super::{CHANNEL_FD, LIBRARY_FD, SOCKET_FD};
use crate::context::emit_log;
use plugin_ipc::{Channel, Message, DEAD, REQUEST};

/// How often a caller waiting for a lane looks at the worker's life.
const POLL: Duration = Duration::from_millis(10);
/// How long a worker that closed its socket gets to finish exiting before it is killed.
pub(super) const EXIT_WAIT: Duration = Duration::from_secs(1);

/// One worker process and the host's ends of its channel and socket.
pub(super) struct Worker {
    /// The keeper's pid: the process the host started, the plugin process's parent.
    pub(super) pid: u32,
    /// The plugin process's pid, as its ready report says (0 until then).
    pub(super) plugin_pid: AtomicU32,
    /// Set (under the lock) once the monitor reaped the keeper: from then on its pid may name
    /// another process, and no walk starts from it.
    pub(super) reaped: Mutex<bool>,
    pub(super) pidfd: OwnedFd,
    pub(super) shm: Channel,
    pub(super) socket: UnixStream,
    /// Serialises writes to the socket (cancellations and stop).
    pub(super) send: Mutex<()>,
    pub(super) free: Mutex<Vec<usize>>,
    pub(super) lane_freed: Condvar,
    pub(super) seq: AtomicU64,
    /// Set once the process is reaped; `exit` says how it ended.
    pub(super) dead: AtomicBool,
    pub(super) exit: Mutex<Option<WorkerExit>>,
    pub(super) ended: Condvar,
    /// Set when the host ends the worker on purpose (stop, or a stuck call).
    pub(super) ending: AtomicBool,
    pub(super) killed_stuck: AtomicBool,
    pub(super) stopped: Mutex<Option<Result<(), (ErrorKind, String)>>>,
}

/// Why a worker could not be launched.
pub(super) enum Launch {
    /// The program could not be run.
    Spawn(std::io::Error),
    /// Its pidfd could not be opened.
    Watch(std::io::Error),
}

/// Runs `program` as a worker with `params`, the socket and channel ends in `theirs`, the
/// library's memory file and the memory limit; the host keeps `shm` and `socket`.
#[expect(clippy::too_many_arguments, reason = "one launch's parts, passed once")]
pub(super) fn launch(
    program: &Path,
    params: &str,
    pass_env: &[String],
    theirs: [OwnedFd; 2],
    library: &OwnedFd,
    memory: Option<u64>,
    shm: Channel,
    socket: UnixStream,
) -> Result<(Child, Arc<Worker>), Launch> {
    let mut command = Command::new(program);
    // A scrubbed environment: the allow-list and what the operator passed, never PLUGCTL_*.
    command.env_clear();
    for (name, value) in passed_env(pass_env) {
        command.env(name, value);
    }
    command
        .env(WORKER_ENV, params)
        .stdin(Stdio::null())
        // Its own process group: a terminal's Ctrl-C reaches the host, which shuts
        // workers down in order, not the workers directly.
        .process_group(0);
    let fds = [
        theirs[0].as_raw_fd(),
        theirs[1].as_raw_fd(),
        library.as_raw_fd(),
    ];
    // SAFETY: the closure runs in the child between fork and exec, and makes only
    // async-signal-safe calls (fcntl, dup2, close_range, prctl, setrlimit) on plain integers
    // copied into it; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || child_setup(fds, memory));
    }
    let mut child = command.spawn().map_err(Launch::Spawn)?;
    drop(theirs);
    let pid = child.id();
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Launch::Watch(e));
        }
    };
    let worker = Arc::new(Worker {
        pid,
        plugin_pid: AtomicU32::new(0),
        reaped: Mutex::new(false),
        pidfd,
        free: Mutex::new((0..shm.lanes()).rev().collect()),
        shm,
        socket,
        send: Mutex::new(()),
        lane_freed: Condvar::new(),
        seq: AtomicU64::new(1),
        dead: AtomicBool::new(false),
        exit: Mutex::new(None),
        ended: Condvar::new(),
        ending: AtomicBool::new(false),
        killed_stuck: AtomicBool::new(false),
        stopped: Mutex::new(None),
    });
    Ok((child, worker))
}

impl Worker {
    /// A free lane, waiting for one (until `until`); `None` if the worker died or the time
    /// passed.
    pub(super) fn take_lane(&self, until: Option<Instant>) -> Option<usize> {
        let mut free = self.free.lock();
        loop {
            if self.dead.load(Ordering::Acquire) {
                return None;
            }
            if let Some(lane) = free.pop() {
                return Some(lane);
            }
            match until {
                Some(until) => {
                    if self.lane_freed.wait_until(&mut free, until).timed_out() {
                        return None;
                    }
                }
                None => {
                    self.lane_freed.wait_for(&mut free, POLL);
                }
            }
        }
    }

    /// The plugin process's pid: the one a status shows.
    pub(super) fn plugin_pid(&self) -> u32 {
        match self.plugin_pid.load(Ordering::Acquire) {
            0 => self.pid,
            pid => pid,
        }
    }

    /// Whether new calls may go to this worker: it is neither dead nor being ended.
    pub(super) fn serves(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
            && !self.ending.load(Ordering::Acquire)
            && !self.killed_stuck.load(Ordering::Acquire)
    }

    pub(super) fn release(&self, lane: usize) {
        self.free.lock().push(lane);
        self.lane_freed.notify_one();
    }

    pub(super) fn send(&self, message: &Message) {
        let _guard = self.send.lock();
        let _ = plugin_ipc::send(&self.socket, message);
    }

    /// Kills the worker: every process below its keeper (walked from `/proc`, at most
    /// [`HOST_WALK`]), then the keeper.
    pub(super) fn kill(&self) {
        {
            // The keeper's pid names it until the monitor reaps it, which waits for this lock.
            let reaped = self.reaped.lock();
            if !*reaped {
                kill_descendants(self.pid as i32, HOST_WALK, || {});
            }
        }
        // SAFETY: pidfd_send_signal on our own pidfd; the kernel checks everything else. A
        // pidfd names this very process even once reaped, so no other process is hit.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            );
        }
    }

    /// Waits until the monitor reaped the worker (at most `timeout`); how it ended.
    pub(super) fn wait_dead(&self, timeout: Option<Duration>) -> Option<WorkerExit> {
        let mut exit = self.exit.lock();
        let give_up = timeout.map(|t| Instant::now() + t);
        while !self.dead.load(Ordering::Acquire) {
            match give_up {
                Some(g) => {
                    if self.ended.wait_until(&mut exit, g).timed_out() {
                        return None;
                    }
                }
                None => self.ended.wait(&mut exit),
            }
        }
        exit.clone()
    }
}

/// The worker's monitor thread: forwards its log records, notices its end, reaps it, fails
/// the calls waiting on it, and tells `ended` (the supervisor, which restarts it) how it
/// ended, if it had reported ready.
pub(super) fn monitor(
    ended: impl FnOnce(&Arc<Worker>, WorkerExit),
    worker: Arc<Worker>,
    mut child: Child,
    name: String,
    ready: bool,
) {
    if ready {
        // A frame begun is whole within this, or the worker is taken for ended.
        let _ = worker.socket.set_read_timeout(Some(EXIT_WAIT * 5));
        loop {
            // Read while something is there; once the keeper has exited and nothing is left,
            // stop: what the plugin started may hold its end of the socket open (if the
            // plugin killed its keeper, no one killed them).
            if !socket_or_exit(&worker.socket, &worker.pidfd) {
                break;
            }
            match plugin_ipc::receive(&worker.socket) {
                Ok(Some(Message::Log { level, message })) => emit_log(&name, level, &message),
                Ok(Some(Message::Stopped { on_unload })) => {
                    *worker.stopped.lock() = Some(on_unload);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    // The socket closed: the worker is ending. Give it a moment, then make sure.
    if !poll_exit(&worker.pidfd, EXIT_WAIT) {
        worker.kill();
    }
    // Reaped only once it has exited, and under the lock a kill's walk holds.
    while !poll_exit(&worker.pidfd, Duration::from_secs(60)) {}
    let status = {
        let mut reaped = worker.reaped.lock();
        let status = child.wait();
        *reaped = true;
        status
    };
    let exit = if worker.killed_stuck.load(Ordering::Acquire) {
        WorkerExit::KilledStuck
    } else {
        match status {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => WorkerExit::Exited { status: code },
                (None, Some(signal)) => WorkerExit::Signaled { signal },
                _ => WorkerExit::Exited { status: -1 },
            },
            Err(_) => WorkerExit::Exited { status: -1 },
        }
    };
    {
        let mut slot = worker.exit.lock();
        *slot = Some(exit.clone());
        worker.dead.store(true, Ordering::Release);
        worker.ended.notify_all();
    }
    // Fail the calls waiting on it.
    for lane in 0..worker.shm.lanes() {
        if worker.shm.state(lane) == REQUEST {
            worker.shm.set(lane, DEAD);
        }
    }
    worker.lane_freed.notify_all();
    if !worker.ending.load(Ordering::Acquire) {
        tracing::warn!(
            plugin = %name,
            pid = worker.plugin_pid(),
            keeper = worker.pid,
            "plugin worker {exit}"
        );
    }
    if ready {
        ended(&worker, exit);
    }
}

/// Waits until `socket` has something to read (or its end) and returns true, or until the
/// process behind `pidfd` has exited with nothing left to read and returns false.
fn socket_or_exit(socket: &UnixStream, pidfd: &OwnedFd) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: two valid pollfds, for the call's duration.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ready > 0 {
            return fds[0].revents != 0;
        }
        if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Whether the process behind `pidfd` exits within `timeout`.
fn poll_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, for the call's duration.
    unsafe { libc::poll(&mut fds, 1, ms) > 0 }
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the call just returned, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// In the child, before exec: the descriptors on 3, 4, 5, no new privileges, the memory
/// limit. Only async-signal-safe calls.
fn child_setup(fds: [RawFd; 3], memory: Option<u64>) -> std::io::Result<()> {
    let targets = [SOCKET_FD, CHANNEL_FD, LIBRARY_FD];
    let mut high = [0; 3];
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) duplicates an open descriptor above 9.
        high[i] = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10) };
        if high[i] < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (fd, target) in high.iter().zip(targets) {
        // SAFETY: dup2 onto a fixed number; the copy it makes is not close-on-exec.
        if unsafe { libc::dup2(*fd, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // Every other descriptor the host had open without close-on-exec (its own parent's,
    // say) closes at exec: the worker gets 0 to 5 and nothing else. Before Linux 5.11 the
    // flag is unknown and they stay open.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            6u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS and constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let Some(bytes) = memory {
        let limit = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: bytes as libc::rlim_t,
        };
        // SAFETY: setrlimit with a valid struct, for this (child) process.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_says_how_the_worker_ended_and_names_common_signals() {
        let shown = |exit: WorkerExit| exit.to_string();
        assert_eq!(
            shown(WorkerExit::Exited { status: 7 }),
            "exited with status 7"
        );
        for (signal, name) in [
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGILL, "SIGILL"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGTRAP, "SIGTRAP"),
        ] {
            assert_eq!(
                shown(WorkerExit::Signaled { signal }),
                format!("was killed by signal {signal} ({name})")
            );
        }
        assert_eq!(
            shown(WorkerExit::Signaled { signal: 64 }),
            "was killed by signal 64"
        );
        assert!(shown(WorkerExit::KilledStuck).contains("ignored its deadline"));
    }
}
