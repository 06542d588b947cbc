//! The keeper: the process the host starts for a worker, between the host and the plugin
//! process, so that nothing the plugin starts outlives it.
//!
//! The process the host launches (see [`process::launch`](super::process)) first becomes
//! the keeper ([`split`]): it marks itself a child subreaper (`PR_SET_CHILD_SUBREAPER`:
//! whatever the plugin starts and orphans, a daemon that forked twice and called `setsid`
//! included, is re-parented to it, not to init), asks for `SIGTERM` when its parent dies
//! (`PR_SET_PDEATHSIG`), checks that its parent is still the host, and forks the plugin
//! process, which asks for `SIGKILL` when the keeper dies and checks that its parent is
//! still the keeper (closing the race with a keeper that died before the request).
//!
//! The keeper then waits, doing nothing else, until the plugin process ends (a crash, an
//! exit after `Stop`, a kill by the host) or the host is gone (its end of the socket
//! closed, or the parent-death signal with a new parent). Then it kills every process
//! below it: a walk of `/proc/*/stat`'s parent links, each found process stopped
//! (`SIGSTOP`) then killed (`SIGKILL`), again until a walk finds none, at most
//! [`KEEPER_WALK`]; it reaps them, and exits as the plugin process did (the same status,
//! or the same signal), so the host sees how the plugin ended.
//!
//! The host, when it kills a worker, first does the same walk below the keeper
//! ([`kill_descendants`], at most [`HOST_WALK`]): a plugin may have stopped or killed its
//! keeper.

use std::time::{Duration, Instant};

use super::{CHANNEL_FD, LIBRARY_FD, SOCKET_FD};

/// The longest the keeper walks and kills before it exits anyway.
pub(super) const KEEPER_WALK: Duration = Duration::from_secs(5);
/// The longest the host walks and kills below a keeper it is about to kill.
pub(super) const HOST_WALK: Duration = Duration::from_secs(2);

/// A process as `/proc/PID/stat` shows it: its id, its parent's, and its state letter.
struct Entry {
    pid: i32,
    parent: i32,
    state: u8,
}

fn read_stat(pid: i32) -> Option<Entry> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything: skip past the
    // last `)`.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let parent = fields.next()?.parse().ok()?;
    Some(Entry { pid, parent, state })
}

/// Every process `/proc` lists now.
fn processes() -> Vec<Entry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// The processes below `root` (not `root` itself) that still run: zombies and dead ones
/// are left out, they only wait to be reaped.
pub(super) fn descendants(root: i32) -> Vec<i32> {
    let all = processes();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for entry in all.iter().filter(|e| e.parent == parent && e.pid != root) {
            if !found.contains(&entry.pid) && !frontier.contains(&entry.pid) {
                frontier.push(entry.pid);
                found.push(entry.pid);
            }
        }
    }
    found.retain(|pid| {
        all.iter()
            .find(|e| e.pid == *pid)
            .is_some_and(|e| !matches!(e.state, b'Z' | b'X' | b'x'))
    });
    found
}

/// Stops then kills every process below `root`, walking again until a walk finds none or
/// `bound` has passed; `reap` runs before each walk (the keeper reaps its children there).
/// True if the last walk found none.
pub(super) fn kill_descendants(root: i32, bound: Duration, mut reap: impl FnMut()) -> bool {
    let give_up = Instant::now() + bound;
    loop {
        reap();
        let pids = descendants(root);
        if pids.is_empty() {
            return true;
        }
        if Instant::now() >= give_up {
            return false;
        }
        // Stopped first, all of them, so none forks again while the others are killed.
        for &pid in &pids {
            // SAFETY: kill(2) with a pid and a constant signal; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        for &pid in &pids {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::yield_now();
    }
}

/// A signal handler that does nothing: the signal only ends the keeper's `ppoll`.
extern "C" fn wake(_: libc::c_int) {}

/// Makes this process the keeper and forks the plugin process. Returns in the plugin
/// process; in the keeper it never returns.
///
/// Must run while the process is single-threaded (first thing in the worker's `main`).
pub(super) fn split(host: i32) {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut blocked: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: signal-set calls on local sets, sigprocmask and sigaction on this
    // single-threaded process with a handler that does nothing, and prctl with constant
    // arguments.
    unsafe {
        libc::sigemptyset(&mut blocked);
        libc::sigaddset(&mut blocked, libc::SIGCHLD);
        libc::sigaddset(&mut blocked, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_BLOCK, &blocked, &mut previous);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
    }
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != host {
        // The host died before this worker asked to hear of it; no one would read it.
        exit(3)
    }
    // SAFETY: getpid has no preconditions.
    let keeper = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded here (the worker's `main` runs this first), so
    // the child may go on running ordinary code.
    match unsafe { libc::fork() } {
        -1 => exit(5),
        0 => {
            // SAFETY: restores the default handlers and the signal mask the process had, and
            // asks for SIGKILL when the keeper dies; constant arguments and a local set.
            unsafe {
                libc::signal(libc::SIGCHLD, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            }
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } != keeper {
                // The keeper died before the request took effect.
                exit(3)
            }
        }
        plugin => keep(host, plugin),
    }
}

/// The keeper's life: wait for the plugin process to end or the host to go, kill what is
/// left below, exit as the plugin process did.
fn keep(host: i32, plugin: i32) -> ! {
    // The keeper needs neither the channel nor the library: only the socket, to see the
    // host's end close.
    // SAFETY: close on descriptor numbers this process owns and never uses again.
    unsafe {
        libc::close(CHANNEL_FD);
        libc::close(LIBRARY_FD);
    }
    let mut status: Option<libc::c_int> = None;
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut none: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigemptyset(&mut none) };
    loop {
        reap(plugin, &mut status);
        // SAFETY: getppid has no preconditions.
        if status.is_some() || unsafe { libc::getppid() } != host {
            break;
        }
        let mut fds = libc::pollfd {
            fd: SOCKET_FD,
            events: 0,
            revents: 0,
        };
        // Only SIGCHLD and SIGTERM (blocked elsewhere) end the wait, or the socket's hang-up.
        // SAFETY: one valid pollfd and a valid signal set, for the call's duration.
        let ready = unsafe { libc::ppoll(&mut fds, 1, std::ptr::null(), &none) };
        if ready > 0 && fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            break;
        }
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    kill_descendants(me, KEEPER_WALK, || reap(plugin, &mut status));
    reap(plugin, &mut status);
    match status {
        Some(s) if libc::WIFEXITED(s) => exit(libc::WEXITSTATUS(s)),
        Some(s) if libc::WIFSIGNALED(s) => die_by(libc::WTERMSIG(s)),
        _ => exit(0),
    }
}

/// Reaps every child that ended; records the plugin process's status.
fn reap(plugin: i32, status: &mut Option<libc::c_int>) {
    loop {
        let mut s = 0;
        // SAFETY: waitpid with a valid pointer to a local.
        let pid = unsafe { libc::waitpid(-1, &mut s, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if pid == plugin {
            *status = Some(s);
        }
    }
}

/// Ends the keeper by `signal`, as the plugin process ended, without a core file of its own.
fn die_by(signal: libc::c_int) -> ! {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid struct, a local signal set, and signal, sigprocmask and
    // kill on this process with the signal number the kernel reported for the plugin
    // process's end (a valid one).
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
    }
    exit(128 + signal)
}

fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process at once; it is always safe to call.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_finds_a_child_and_its_child_and_not_the_root() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let sh = child.id() as i32;
        let give_up = Instant::now() + Duration::from_secs(10);
        let below = loop {
            let below = descendants(sh);
            if !below.is_empty() || Instant::now() >= give_up {
                break below;
            }
            std::thread::yield_now();
        };
        assert_eq!(below.len(), 1, "{below:?}");
        assert!(descendants(me).contains(&sh));
        assert!(descendants(me).contains(&below[0]));
        assert!(!descendants(me).contains(&me));
        assert!(kill_descendants(sh, Duration::from_secs(5), || {}));
        assert!(descendants(sh).is_empty());
        let _ = child.kill();
        let _ = child.wait();
    }
}
