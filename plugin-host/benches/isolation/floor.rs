//! The raw channel floor: an 8-byte ping-pong between this process and a child over shared
//! memory with a futex wake, the mechanism process isolation's call channel uses and
//! nothing else (no lanes to take, no context to encode, no plugin).
//!
//! As in the channel (`plugin-host/src/isolate/shm.rs`): a shared mapping of a memory file,
//! a 64-byte header holding an `AtomicU32` state word and the message's length, the message
//! after it; the writer copies the message in, publishes the state and issues a `FUTEX_WAKE`
//! (not the private variant: the peer is another process) only when the peer counted itself
//! asleep; the waiter spins on the word (the caller for [`CALL_SPIN`], the child for
//! [`LANE_SPIN`], each time it starts waiting) before it counts itself and sleeps in
//! `FUTEX_WAIT`.
//!
//! The child is this bench binary run again with [`CHILD_ENV`] set to
//! `<parent pid> <descriptor of the memory file>`.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Marks the bench binary as the floor's child; see the module docs for its value.
pub(crate) const CHILD_ENV: &str = "PLUGIN_BENCH_FLOOR_CHILD";

/// How long the caller spins before it sleeps (the channel's `CALL_SPIN`).
const CALL_SPIN: Duration = Duration::from_micros(20);
/// How long the child spins before it sleeps (the channel's `LANE_SPIN`).
const LANE_SPIN: Duration = Duration::from_micros(50);
/// The longest the caller waits for one answer (the first includes the child's start).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

const IDLE: u32 = 0;
const REQUEST: u32 = 1;
const RESPONSE: u32 = 2;
const STOP: u32 = 3;

const HEADER: usize = 64;
const SIZE: usize = 4096;

/// The shared page: the state word and length at 0 and 4, the message at [`HEADER`].
struct Page {
    base: NonNull<u8>,
}

impl Page {
    fn map(fd: &OwnedFd) -> Page {
        // SAFETY: a fresh shared mapping of an open memory file of `SIZE` bytes; the kernel
        // picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert!(
            ptr != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Page {
            base: NonNull::new(ptr.cast()).expect("mmap returned a non-null address"),
        }
    }

    fn state(&self) -> &AtomicU32 {
        // SAFETY: offset 0 of a page-aligned mapping, only ever accessed through atomics.
        unsafe { &*self.base.as_ptr().cast::<AtomicU32>() }
    }

    fn sleepers(&self) -> &AtomicU32 {
        // SAFETY: offset 8 of the mapping, aligned for a u32, only accessed through atomics.
        unsafe { &*self.base.as_ptr().add(8).cast::<AtomicU32>() }
    }

    fn len(&self) -> &AtomicU32 {
        // SAFETY: offset 4 of the mapping, aligned for a u32, only accessed through atomics.
        unsafe { &*self.base.as_ptr().add(4).cast::<AtomicU32>() }
    }

    /// Writes `message`, then publishes `state` and wakes the peer: the channel's `send`.
    fn send(&self, message: &[u8; 8], state: u32) {
        // SAFETY: 8 bytes at `HEADER` lie in the mapping; this side is the only writer
        // until it publishes `state`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                message.as_ptr(),
                self.base.as_ptr().add(HEADER),
                message.len(),
            )
        };
        self.len().store(message.len() as u32, Ordering::Relaxed);
        self.state().store(state, Ordering::SeqCst);
        if self.sleepers().load(Ordering::SeqCst) != 0 {
            wake(self.state());
        }
    }

    /// Reads the message the peer published (after its state was acquired).
    fn read(&self) -> [u8; 8] {
        assert_eq!(self.len().load(Ordering::Relaxed), 8, "an 8-byte message");
        let mut out = [0u8; 8];
        // SAFETY: 8 bytes at `HEADER` lie in the mapping; the peer no longer writes them
        // (it published the state this side acquired).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(HEADER), out.as_mut_ptr(), 8)
        };
        out
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), SIZE) };
    }
}

/// Waits until the state leaves `value`, spinning for `spin` first, then sleeping on the
/// futex until `until` (if given); `None` on timeout. The channel's `Shm::wait`.
fn wait_while(page: &Page, value: u32, spin: Duration, until: Option<Instant>) -> Option<u32> {
    let word = page.state();
    let now = word.load(Ordering::Acquire);
    if now != value {
        return Some(now);
    }
    let start = Instant::now();
    let mut rounds = 0u32;
    loop {
        for _ in 0..64 {
            std::hint::spin_loop();
            let now = word.load(Ordering::Acquire);
            if now != value {
                return Some(now);
            }
        }
        rounds += 1;
        if rounds % 16 == 0 && start.elapsed() >= spin {
            break;
        }
    }
    page.sleepers().fetch_add(1, Ordering::SeqCst);
    let result = sleep_while(word, value, until);
    page.sleepers().fetch_sub(1, Ordering::SeqCst);
    result
}

fn sleep_while(word: &AtomicU32, value: u32, until: Option<Instant>) -> Option<u32> {
    loop {
        let timeout = match until {
            Some(until) => {
                let left = until.checked_duration_since(Instant::now())?;
                Some(libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                })
            }
            None => None,
        };
        let ts = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a valid aligned u32 in a shared mapping; FUTEX_WAIT (shared: the
        // peer is another process) sleeps while it equals `value`, for at most `ts`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                value,
                ts,
                std::ptr::null::<u32>(),
                0u32,
            );
        }
        let now = word.load(Ordering::SeqCst);
        if now != value {
            return Some(now);
        }
    }
}

fn wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid aligned u32 in a shared mapping wakes at most one
    // process sleeping on it; it touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Kills the child if the measurement ends early (a failed assertion).
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `warmup` then `rounds` round trips; returns each measured one's time in ns.
pub(crate) fn measure(warmup: usize, rounds: usize) -> Vec<u64> {
    // No close-on-exec: the child inherits the descriptor; this side closes it once the
    // child runs, so workers started later do not inherit it.
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"plugin-bench-floor".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by `memfd_create`, open and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(SIZE as u64).expect("size the floor's page");
    let fd = OwnedFd::from(file);
    let page = Page::map(&fd);
    let exe = std::env::current_exe().expect("this bench's executable");
    let child = Command::new(exe)
        .env(
            CHILD_ENV,
            format!("{} {}", std::process::id(), fd.as_raw_fd()),
        )
        .env_remove(plugin_host::isolate::WORKER_ENV)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the floor's child");
    let mut peer = Peer(child);
    drop(fd);

    let mut latencies = Vec::with_capacity(rounds);
    for i in 0..(warmup + rounds) as u64 {
        let t = Instant::now();
        page.send(&i.to_le_bytes(), REQUEST);
        let state = wait_while(
            &page,
            REQUEST,
            CALL_SPIN,
            Some(Instant::now() + ANSWER_TIMEOUT),
        );
        assert_eq!(
            state,
            Some(RESPONSE),
            "the floor's child did not answer round trip {i} within {ANSWER_TIMEOUT:?}"
        );
        let answer = u64::from_le_bytes(page.read());
        page.state().store(IDLE, Ordering::Relaxed);
        let took = t.elapsed();
        assert_eq!(answer, i + 1, "the child answers its request plus one");
        if i as usize >= warmup {
            latencies.push(took.as_nanos() as u64);
        }
    }
    page.state().store(STOP, Ordering::Release);
    wake(page.state());
    let give_up = Instant::now() + ANSWER_TIMEOUT;
    loop {
        match peer.0.try_wait().expect("the floor's child's status") {
            Some(status) => {
                assert!(status.success(), "the floor's child ended with {status}");
                break;
            }
            None if Instant::now() >= give_up => {
                panic!("the floor's child did not exit within {ANSWER_TIMEOUT:?} of STOP")
            }
            None => std::thread::yield_now(),
        }
    }
    latencies
}

/// The child's side: answers each request with its number plus one until `STOP`; never
/// returns.
pub(crate) fn child(params: OsString) -> ! {
    let text = params.to_str().expect("floor parameters are text");
    let (parent, fd) = text.split_once(' ').expect("`<parent pid> <fd>`");
    let parent: libc::pid_t = parent.parse().expect("a parent pid");
    let fd: i32 = fd.parse().expect("a descriptor number");
    // SAFETY: prctl with PR_SET_PDEATHSIG and a constant signal: this process is killed
    // if the bench ends without stopping it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        std::process::exit(3); // the bench ended before this child armed the signal
    }
    // SAFETY: the parent left this descriptor open for this process, which owns it now.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let page = Page::map(&fd);
    drop(fd);
    loop {
        let state = page.state().load(Ordering::Acquire);
        match state {
            REQUEST => {
                let request = u64::from_le_bytes(page.read());
                page.send(&(request + 1).to_le_bytes(), RESPONSE);
            }
            STOP => std::process::exit(0),
            other => {
                wait_while(&page, other, LANE_SPIN, None);
            }
        }
    }
}
