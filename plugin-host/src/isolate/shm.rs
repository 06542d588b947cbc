//! The call channel: a shared memory file cut into lanes, one call per lane at a time.
//!
//! The host creates the file (`memfd_create`), sizes it, seals its size, and maps it; the
//! worker inherits the descriptor and maps it too. Each lane is a 64-byte header (a state
//! word that both sides wait on with a futex, and the length of the message in the lane)
//! followed by `capacity` bytes of message:
//!
//! ```text
//! host:   IDLE  --write request, REQUEST, wake-->  worker waits while not REQUEST
//! worker: REQUEST --run, write response, RESPONSE, wake-->  host waits while not RESPONSE
//! host:   RESPONSE --read, IDLE--> (lane free again)
//! ```
//!
//! A lane has one writer at a time: the host between IDLE and REQUEST, the worker between
//! REQUEST and RESPONSE. The state word's release store and acquire load order the message
//! bytes around it. A dead worker cannot answer: the host marks the lanes `DEAD` itself
//! (the mapping is its own) and wakes its waiting callers.
//!
//! Waiting spins briefly first (a trivial call answers within microseconds, and a futex
//! sleep and wake costs about as much again), then sleeps on the futex.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The lane holds no call.
pub(super) const IDLE: u32 = 0;
/// The host wrote a request; the worker has not answered yet.
pub(super) const REQUEST: u32 = 1;
/// The worker wrote its response.
pub(super) const RESPONSE: u32 = 2;
/// The worker died: no response will come.
pub(super) const DEAD: u32 = 3;

const LANE_HEADER: usize = 64;
const MAGIC: u64 = u64::from_le_bytes(*b"plugshm1");

#[repr(C)]
struct Header {
    magic: u64,
    lanes: u32,
    capacity: u32,
}

#[repr(C)]
struct LaneHeader {
    state: AtomicU32,
    len: AtomicU32,
    /// Threads asleep (or about to sleep) on `state`: a writer makes the wake system call
    /// only when there is one.
    sleepers: AtomicU32,
}

/// A mapped channel.
pub(super) struct Shm {
    base: NonNull<u8>,
    size: usize,
    lanes: usize,
    capacity: usize,
}

// SAFETY: the mapping is plain shared memory; every access to it goes through atomics (the
// headers) or through a lane that only one side writes at a time (see the module docs).
unsafe impl Send for Shm {}
// SAFETY: as above.
unsafe impl Sync for Shm {}

impl Shm {
    fn stride(capacity: usize) -> usize {
        LANE_HEADER + capacity.next_multiple_of(64)
    }

    fn size_for(lanes: usize, capacity: usize) -> usize {
        LANE_HEADER + lanes * Self::stride(capacity)
    }

    /// Creates a channel of `lanes` lanes of `capacity` bytes, in a sealed memory file.
    pub(super) fn create(lanes: usize, capacity: usize) -> std::io::Result<(Shm, OwnedFd)> {
        let size = Self::size_for(lanes, capacity);
        // SAFETY: the name is a NUL-terminated literal; the flags are valid.
        let fd = unsafe {
            libc::memfd_create(
                c"plugin-channel".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by `memfd_create`, open and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        file.set_len(size as u64)?;
        // Its size is fixed for good: neither side can shrink it under the other's mapping.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: `fcntl(F_ADD_SEALS)` takes an int and only changes the file's seals.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from(file);
        let shm = Self::map(&fd, size, lanes, capacity)?;
        // SAFETY: the mapping is at least a header long and page aligned; nothing else
        // uses it yet.
        unsafe {
            shm.base.cast::<Header>().as_ptr().write(Header {
                magic: MAGIC,
                lanes: lanes as u32,
                capacity: capacity as u32,
            });
        }
        Ok((shm, fd))
    }

    /// Maps a channel the host created and handed to this worker.
    pub(super) fn open(fd: &OwnedFd) -> std::io::Result<Shm> {
        let size = std::fs::File::from(fd.try_clone()?).metadata()?.len() as usize;
        if size < LANE_HEADER {
            return Err(std::io::Error::other(
                "the channel is smaller than its header",
            ));
        }
        let probe = Self::map(fd, size, 0, 0)?;
        // SAFETY: the mapping holds at least a header, written by the host before the
        // worker started.
        let header = unsafe { probe.base.cast::<Header>().as_ptr().read() };
        let (lanes, capacity) = (header.lanes as usize, header.capacity as usize);
        if header.magic != MAGIC || Self::size_for(lanes, capacity) != size {
            return Err(std::io::Error::other(
                "the channel's header does not match its size",
            ));
        }
        let mut shm = probe;
        shm.lanes = lanes;
        shm.capacity = capacity;
        Ok(shm)
    }

    fn map(fd: &OwnedFd, size: usize, lanes: usize, capacity: usize) -> std::io::Result<Shm> {
        // SAFETY: a fresh shared mapping of an open file of at least `size` bytes; the
        // kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Shm {
            base: NonNull::new(ptr.cast()).expect("mmap returned a non-null address"),
            size,
            lanes,
            capacity,
        })
    }

    /// The number of lanes.
    pub(super) fn lanes(&self) -> usize {
        self.lanes
    }

    /// The largest message a lane holds.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    fn lane_ptr(&self, lane: usize) -> *mut u8 {
        assert!(lane < self.lanes, "lane {lane} of {}", self.lanes);
        // SAFETY: in bounds: `lane < lanes` and the mapping holds `lanes` strides.
        unsafe {
            self.base
                .as_ptr()
                .add(LANE_HEADER + lane * Self::stride(self.capacity))
        }
    }

    fn header(&self, lane: usize) -> &LaneHeader {
        // SAFETY: the lane header lies in the mapping, aligned to 64, and is only accessed
        // through its atomics.
        unsafe { &*self.lane_ptr(lane).cast::<LaneHeader>() }
    }

    /// The lane's state word.
    pub(super) fn state(&self, lane: usize) -> &AtomicU32 {
        &self.header(lane).state
    }

    /// Writes a message into `lane`, then sets its state to `state` and wakes the other side.
    ///
    /// The caller must be the lane's writer (see the module docs).
    pub(super) fn send(&self, lane: usize, message: &[u8], state: u32) {
        assert!(
            message.len() <= self.capacity,
            "message larger than the lane"
        );
        // SAFETY: the message area is `capacity` bytes after the lane header; this side is
        // the lane's only writer until it publishes `state`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                message.as_ptr(),
                self.lane_ptr(lane).add(LANE_HEADER),
                message.len(),
            );
        }
        let header = self.header(lane);
        header.len.store(message.len() as u32, Ordering::Relaxed);
        // SeqCst on both sides (here, and the sleeper's count then check in `wait`): either
        // the sleeper sees the new state and does not sleep, or this sees the sleeper.
        header.state.store(state, Ordering::SeqCst);
        if header.sleepers.load(Ordering::SeqCst) != 0 {
            wake(&header.state, 1);
        }
    }

    /// Copies the message in `lane` into `out` (after its state was seen, with acquire,
    /// in the value that makes this side its reader). `None` if the length is out of range.
    pub(super) fn read(&self, lane: usize, out: &mut Vec<u8>) -> Option<()> {
        let len = self.header(lane).len.load(Ordering::Relaxed) as usize;
        if len > self.capacity {
            return None;
        }
        out.clear();
        out.reserve(len);
        // SAFETY: `len <= capacity` bytes of the lane's message area, which the other side
        // no longer writes (it published the state this side acquired).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.lane_ptr(lane).add(LANE_HEADER),
                out.as_mut_ptr(),
                len,
            );
            out.set_len(len);
        }
        Some(())
    }

    /// Sets the lane's state without a message, and wakes whoever waits on it.
    pub(super) fn set(&self, lane: usize, state: u32) {
        let word = self.state(lane);
        word.store(state, Ordering::Release);
        wake(word, i32::MAX);
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.size) };
    }
}

impl Shm {
    /// Waits until the state of `lane` leaves `value` (returning what it became), spinning
    /// for `spin` first, then sleeping on the futex until `until` (if given). `None` on
    /// timeout.
    pub(super) fn wait(
        &self,
        lane: usize,
        value: u32,
        spin: Duration,
        until: Option<Instant>,
    ) -> Option<u32> {
        let header = self.header(lane);
        let word = &header.state;
        let now = word.load(Ordering::Acquire);
        if now != value {
            return Some(now);
        }
        let start = Instant::now();
        let mut rounds = 0u32;
        while !spin.is_zero() {
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
        header.sleepers.fetch_add(1, Ordering::SeqCst);
        let result = sleep_while(word, value, until);
        header.sleepers.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Sleeps on the futex while `word` holds `value`, until `until`; see [`Shm::wait`].
fn sleep_while(word: &AtomicU32, value: u32, until: Option<Instant>) -> Option<u32> {
    loop {
        let now = word.load(Ordering::SeqCst);
        if now != value {
            return Some(now);
        }
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
        // SAFETY: `word` is a valid aligned u32 in a shared mapping; FUTEX_WAIT (shared, not
        // private: the other side is another process) reads it and sleeps while it equals
        // `value`, for at most the relative `ts`.
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
    }
}

fn wake(word: &AtomicU32, waiters: i32) {
    // SAFETY: FUTEX_WAKE on a valid aligned u32 in a shared mapping wakes at most
    // `waiters` processes sleeping on it; it touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            waiters,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_crosses_a_lane_and_back_between_two_mappings() {
        let (host, fd) = Shm::create(2, 4096).unwrap();
        let worker = Shm::open(&fd).unwrap();
        assert_eq!((worker.lanes(), worker.capacity()), (2, 4096));
        let t = std::thread::spawn(move || {
            let state = worker.wait(1, IDLE, Duration::ZERO, None).unwrap();
            assert_eq!(state, REQUEST);
            let mut buf = Vec::new();
            worker.read(1, &mut buf).unwrap();
            buf.reverse();
            worker.send(1, &buf, RESPONSE);
        });
        host.send(1, b"abc", REQUEST);
        let state = host.wait(1, REQUEST, Duration::ZERO, None).unwrap();
        assert_eq!(state, RESPONSE);
        let mut buf = Vec::new();
        host.read(1, &mut buf).unwrap();
        assert_eq!(buf, b"cba");
        t.join().unwrap();
        assert_eq!(host.state(0).load(Ordering::Relaxed), IDLE);
    }

    #[test]
    fn a_wait_gives_up_at_its_deadline() {
        let (host, _fd) = Shm::create(1, 64).unwrap();
        let until = Instant::now() + Duration::from_millis(30);
        assert_eq!(host.wait(0, IDLE, Duration::ZERO, Some(until)), None);
        assert!(Instant::now() >= until);
    }

    #[test]
    fn a_channel_is_a_header_then_lanes_of_a_header_and_their_capacity() {
        let (_host, fd) = Shm::create(3, 100).unwrap();
        let len = std::fs::File::from(fd).metadata().unwrap().len();
        // 100 bytes round up to 128; each lane has a 64-byte header.
        assert_eq!(len, 64 + 3 * (64 + 128));
    }

    #[test]
    fn a_message_may_fill_its_lane_exactly() {
        let (host, fd) = Shm::create(1, 64).unwrap();
        let worker = Shm::open(&fd).unwrap();
        let message = [7u8; 64];
        host.send(0, &message, REQUEST);
        let mut out = Vec::new();
        worker.read(0, &mut out).expect("a full lane reads back");
        assert_eq!(out, message);
    }

    #[test]
    fn a_file_that_is_not_a_channel_is_refused() {
        let memfd = |len: u64| {
            // SAFETY: a NUL-terminated name and valid flags.
            let fd = unsafe { libc::memfd_create(c"not-a-channel".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(fd >= 0);
            // SAFETY: a fresh descriptor, owned by nothing else.
            let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            file.set_len(len).unwrap();
            OwnedFd::from(file)
        };
        // Shorter than a header; the size of an empty channel but without its header; the
        // size of a one-lane channel but without its header.
        assert!(Shm::open(&memfd(10)).is_err());
        assert!(Shm::open(&memfd(64)).is_err());
        assert!(Shm::open(&memfd(64 + 64 + 64)).is_err());
    }

    #[test]
    fn marking_a_lane_wakes_whoever_sleeps_on_it() {
        let (host, fd) = Shm::create(1, 64).unwrap();
        let waiter = Shm::open(&fd).unwrap();
        let t = std::thread::spawn(move || {
            // No spin: it sleeps on the futex at once.
            waiter.wait(
                0,
                IDLE,
                Duration::ZERO,
                Some(Instant::now() + Duration::from_secs(20)),
            )
        });
        host.set(0, DEAD);
        assert_eq!(t.join().unwrap(), Some(DEAD));
    }

    #[test]
    fn a_channel_cannot_be_resized_once_made() {
        let (_host, fd) = Shm::create(1, 64).unwrap();
        let file = std::fs::File::from(fd);
        assert!(file.set_len(1 << 20).is_err(), "grow is sealed");
        assert!(file.set_len(0).is_err(), "shrink is sealed");
    }
}
