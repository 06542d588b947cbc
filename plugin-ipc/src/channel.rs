//! The call channel: a shared memory file cut into lanes, one call per lane at a time.
//!
//! See the [crate docs](crate#the-lane-protocol) for the protocol: who writes a lane when,
//! how the state word orders the message, and how a side waits.

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;

/// The lane holds no call.
pub const IDLE: u32 = 0;
/// The host wrote a request; the worker has not answered yet.
pub const REQUEST: u32 = 1;
/// The worker wrote its response.
pub const RESPONSE: u32 = 2;
/// The worker died: no response will come.
pub const DEAD: u32 = 3;

const LANE_HEADER: usize = 64;
const MAGIC: u64 = u64::from_le_bytes(*b"plugshm1");

/// Why a channel could not be made, opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A system call failed.
    #[error("{call}: {source}")]
    Os {
        /// What was being done.
        call: &'static str,
        /// The error the kernel returned.
        #[source]
        source: std::io::Error,
    },
    /// The file handed to [`Channel::open`] is not a channel.
    #[error("not a channel: {0}")]
    NotAChannel(&'static str),
    /// The size or lane count asked of [`Channel::create`] is beyond what a header holds.
    #[error("{lanes} lanes of {capacity} bytes do not fit a channel")]
    TooBig {
        /// The lanes asked for.
        lanes: usize,
        /// The capacity asked for.
        capacity: usize,
    },
    /// A message longer than the lane's capacity, to send or found in a lane.
    #[error("a {len}-byte message in a lane of {capacity}")]
    Length {
        /// The message's length.
        len: usize,
        /// The lane's capacity.
        capacity: usize,
    },
}

fn os(call: &'static str) -> impl FnOnce(rustix::io::Errno) -> ChannelError {
    move |errno| ChannelError::Os {
        call,
        source: errno.into(),
    }
}

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

/// A mapped channel: the host's (from [`Channel::create`]) or the worker's (from
/// [`Channel::open`]).
///
/// Its methods take a lane index below [`Channel::lanes`] and panic on any other: lanes
/// are numbered by the side that holds the channel, never taken from the peer.
pub struct Channel {
    base: NonNull<u8>,
    size: usize,
    lanes: usize,
    capacity: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value (unmapped once, in
// `Drop`); every access to it goes through atomics (the headers) or through a lane that
// only one side writes at a time (see the crate docs), so moving it to another thread moves
// no thread-bound state.
unsafe impl Send for Channel {}
// SAFETY: as above: `&Channel` methods only touch the mapping through atomics, or copy a
// lane's message while the protocol makes the caller its only writer (`send`) or makes the
// other side stop writing it (`read`).
unsafe impl Sync for Channel {}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("lanes", &self.lanes)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Channel {
    fn stride(capacity: usize) -> usize {
        LANE_HEADER + capacity.next_multiple_of(64)
    }

    fn size_for(lanes: usize, capacity: usize) -> Option<usize> {
        Self::stride(capacity)
            .checked_mul(lanes)?
            .checked_add(LANE_HEADER)
    }

    /// Creates a channel of `lanes` lanes of `capacity` bytes, in a sealed memory file;
    /// returns the host's mapping and the file's descriptor (close-on-exec: the caller
    /// hands it to the worker on purpose).
    pub fn create(lanes: usize, capacity: usize) -> Result<(Channel, OwnedFd), ChannelError> {
        let too_big = || ChannelError::TooBig { lanes, capacity };
        if u32::try_from(lanes).is_err() || u32::try_from(capacity).is_err() {
            return Err(too_big());
        }
        let size = Self::size_for(lanes, capacity).ok_or_else(too_big)?;
        let fd = rustix::fs::memfd_create(
            c"plugin-channel",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(os("memfd_create"))?;
        rustix::fs::ftruncate(&fd, size as u64).map_err(os("ftruncate"))?;
        // Its size is fixed for good: neither side can shrink it under the other's mapping.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(os("fcntl(F_ADD_SEALS)"))?;
        let channel = Self::map(&fd, size, lanes, capacity)?;
        // SAFETY: the mapping is at least a header long (`size_for` adds one) and page
        // aligned, so aligned for `Header`; nothing else uses it yet (the descriptor has
        // not left this function).
        unsafe {
            channel.base.cast::<Header>().as_ptr().write(Header {
                magic: MAGIC,
                lanes: lanes as u32,
                capacity: capacity as u32,
            });
        }
        Ok((channel, fd))
    }

    /// Maps a channel the host created and handed to this worker, after checking that the
    /// file's header matches its size.
    pub fn open(fd: impl AsFd) -> Result<Channel, ChannelError> {
        let fd = fd.as_fd();
        let stat = rustix::fs::fstat(fd).map_err(os("fstat"))?;
        let size = usize::try_from(stat.st_size)
            .map_err(|_| ChannelError::NotAChannel("its size is out of range"))?;
        if size < LANE_HEADER {
            return Err(ChannelError::NotAChannel(
                "the file is smaller than a channel's header",
            ));
        }
        let probe = Self::map(fd, size, 0, 0)?;
        // SAFETY: the mapping holds at least a header (checked above) and is page aligned;
        // the host wrote the header before the worker started, and never writes it again.
        let header = unsafe { probe.base.cast::<Header>().as_ptr().read() };
        let (lanes, capacity) = (header.lanes as usize, header.capacity as usize);
        if header.magic != MAGIC || Self::size_for(lanes, capacity) != Some(size) {
            return Err(ChannelError::NotAChannel(
                "the file's header does not match its size",
            ));
        }
        let mut channel = probe;
        channel.lanes = lanes;
        channel.capacity = capacity;
        Ok(channel)
    }

    fn map(
        fd: impl AsFd,
        size: usize,
        lanes: usize,
        capacity: usize,
    ) -> Result<Channel, ChannelError> {
        // SAFETY: a fresh shared mapping of an open file of at least `size` bytes, at an
        // address the kernel picks (a null hint without MAP_FIXED), so it replaces no
        // existing mapping. The memory is only accessed through the `Channel` that owns it:
        // its headers through atomics, its messages under the lane protocol.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                size,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(os("mmap"))?;
        let base = NonNull::new(ptr.cast()).ok_or(ChannelError::Os {
            call: "mmap",
            source: std::io::Error::other("a null mapping"),
        })?;
        Ok(Channel {
            base,
            size,
            lanes,
            capacity,
        })
    }

    /// The number of lanes.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// The largest message a lane holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lane_ptr(&self, lane: usize) -> *mut u8 {
        assert!(lane < self.lanes, "lane {lane} of {}", self.lanes);
        // SAFETY: in bounds: `lane < lanes` and the mapping holds a header then `lanes`
        // strides.
        unsafe {
            self.base
                .as_ptr()
                .add(LANE_HEADER + lane * Self::stride(self.capacity))
        }
    }

    fn header(&self, lane: usize) -> &LaneHeader {
        // SAFETY: the lane header lies in the mapping (see `lane_ptr`), aligned to 64 (the
        // mapping is page aligned and strides are multiples of 64), lives as long as `self`,
        // and is only ever accessed through its atomics, by both processes: a shared
        // reference to atomics in shared memory is sound however the peer writes them.
        unsafe { &*self.lane_ptr(lane).cast::<LaneHeader>() }
    }

    /// The lane's state, loaded with acquire ordering: a side that sees the state that
    /// makes it the lane's reader also sees the message.
    pub fn state(&self, lane: usize) -> u32 {
        self.header(lane).state.load(Ordering::Acquire)
    }

    /// Returns a lane the host has read the response of to [`IDLE`]. No wake: the worker
    /// only waits for [`REQUEST`], which [`Channel::send`] wakes it for.
    pub fn reset(&self, lane: usize) {
        self.header(lane).state.store(IDLE, Ordering::Relaxed);
    }

    /// Writes a message into `lane`, then sets its state to `state` and wakes the other side.
    /// A message longer than the capacity is refused and the lane left as it was.
    ///
    /// The caller must be the lane's writer (see the crate docs).
    pub fn send(&self, lane: usize, message: &[u8], state: u32) -> Result<(), ChannelError> {
        if message.len() > self.capacity {
            return Err(ChannelError::Length {
                len: message.len(),
                capacity: self.capacity,
            });
        }
        // SAFETY: the message area is the `capacity` bytes after the lane header, and
        // `message.len() <= capacity`; this side is the lane's only writer until it
        // publishes `state`, and the peer does not read the area until it sees that state.
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
        Ok(())
    }

    /// Copies the message in `lane` into `out` (after its state was seen, with acquire,
    /// in the value that makes this side its reader). Refuses a length beyond the
    /// capacity (the peer's word is not trusted), leaving `out` empty.
    pub fn read(&self, lane: usize, out: &mut Vec<u8>) -> Result<(), ChannelError> {
        let len = self.header(lane).len.load(Ordering::Relaxed) as usize;
        out.clear();
        if len > self.capacity {
            return Err(ChannelError::Length {
                len,
                capacity: self.capacity,
            });
        }
        out.reserve(len);
        // SAFETY: `len <= capacity` bytes of the lane's message area, which the other side
        // no longer writes (it published the state this side acquired), into `out`'s
        // spare capacity of at least `len` bytes, which `set_len` then covers exactly.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.lane_ptr(lane).add(LANE_HEADER),
                out.as_mut_ptr(),
                len,
            );
            out.set_len(len);
        }
        Ok(())
    }

    /// Sets the lane's state without a message, and wakes whoever waits on it (every
    /// waiter: [`DEAD`] concerns them all).
    pub fn set(&self, lane: usize, state: u32) {
        let word = &self.header(lane).state;
        word.store(state, Ordering::Release);
        // The kernel takes the count as an `int`: `i32::MAX` is "all".
        wake(word, i32::MAX as u32);
    }

    /// Waits until the state of `lane` leaves `value` (returning what it became), spinning
    /// for `spin` first, then sleeping on the futex until `until` (if given). `None` on
    /// timeout.
    pub fn wait(
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

impl Drop for Channel {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of `size` bytes, unmapped once; no reference
        // into it outlives `self` (every one borrows it).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.size) };
    }
}

/// Sleeps on the futex while `word` holds `value`, until `until`; see [`Channel::wait`].
fn sleep_while(word: &AtomicU32, value: u32, until: Option<Instant>) -> Option<u32> {
    loop {
        let now = word.load(Ordering::SeqCst);
        if now != value {
            return Some(now);
        }
        let timeout = match until {
            Some(until) => {
                let left = until.checked_duration_since(Instant::now())?;
                Some(futex::Timespec {
                    tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                    tv_nsec: left.subsec_nanos().into(),
                })
            }
            None => None,
        };
        // FUTEX_WAIT, shared (not private: the other side is another process), sleeps while
        // the word equals `value`, for at most the relative timeout. Its errors (the word
        // already changed, a signal, the timeout) all lead back to the check above.
        let _ = futex::wait(word, futex::Flags::empty(), value, timeout.as_ref());
    }
}

/// Wakes at most `waiters` threads, in any process, sleeping on `word`.
fn wake(word: &AtomicU32, waiters: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), waiters);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_crosses_a_lane_and_back_between_two_mappings() {
        let (host, fd) = Channel::create(2, 4096).unwrap();
        let worker = Channel::open(&fd).unwrap();
        assert_eq!((worker.lanes(), worker.capacity()), (2, 4096));
        let t = std::thread::spawn(move || {
            let state = worker.wait(1, IDLE, Duration::ZERO, None).unwrap();
            assert_eq!(state, REQUEST);
            let mut buf = Vec::new();
            worker.read(1, &mut buf).unwrap();
            buf.reverse();
            worker.send(1, &buf, RESPONSE).unwrap();
        });
        host.send(1, b"abc", REQUEST).unwrap();
        let state = host.wait(1, REQUEST, Duration::ZERO, None).unwrap();
        assert_eq!(state, RESPONSE);
        let mut buf = Vec::new();
        host.read(1, &mut buf).unwrap();
        assert_eq!(buf, b"cba");
        t.join().unwrap();
        assert_eq!(host.state(0), IDLE);
    }

    #[test]
    fn a_wait_gives_up_at_its_deadline() {
        let (host, _fd) = Channel::create(1, 64).unwrap();
        let until = Instant::now() + Duration::from_millis(30);
        assert_eq!(host.wait(0, IDLE, Duration::ZERO, Some(until)), None);
        assert!(Instant::now() >= until);
    }

    #[test]
    fn a_channel_is_a_header_then_lanes_of_a_header_and_their_capacity() {
        let (_host, fd) = Channel::create(3, 100).unwrap();
        let len = std::fs::File::from(fd).metadata().unwrap().len();
        // 100 bytes round up to 128; each lane has a 64-byte header.
        assert_eq!(len, 64 + 3 * (64 + 128));
    }

    #[test]
    fn a_message_may_fill_its_lane_exactly() {
        let (host, fd) = Channel::create(1, 64).unwrap();
        let worker = Channel::open(&fd).unwrap();
        let message = [7u8; 64];
        host.send(0, &message, REQUEST).unwrap();
        let mut out = Vec::new();
        worker.read(0, &mut out).expect("a full lane reads back");
        assert_eq!(out, message);
    }

    #[test]
    fn a_file_that_is_not_a_channel_is_refused() {
        let memfd = |len: u64| {
            let fd = rustix::fs::memfd_create(c"not-a-channel", MemfdFlags::CLOEXEC).unwrap();
            rustix::fs::ftruncate(&fd, len).unwrap();
            fd
        };
        // Shorter than a header; the size of an empty channel but without its header; the
        // size of a one-lane channel but without its header.
        assert!(matches!(
            Channel::open(memfd(10)),
            Err(ChannelError::NotAChannel(_))
        ));
        assert!(matches!(
            Channel::open(memfd(64)),
            Err(ChannelError::NotAChannel(_))
        ));
        assert!(matches!(
            Channel::open(memfd(64 + 64 + 64)),
            Err(ChannelError::NotAChannel(_))
        ));
    }

    #[test]
    fn marking_a_lane_wakes_whoever_sleeps_on_it() {
        let (host, fd) = Channel::create(1, 64).unwrap();
        let waiter = Channel::open(&fd).unwrap();
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
        let (_host, fd) = Channel::create(1, 64).unwrap();
        let file = std::fs::File::from(fd);
        assert!(file.set_len(1 << 20).is_err(), "grow is sealed");
        assert!(file.set_len(0).is_err(), "shrink is sealed");
    }

    #[test]
    fn a_message_longer_than_the_lane_is_refused_and_the_lane_left_idle() {
        let (host, _fd) = Channel::create(1, 64).unwrap();
        let err = host.send(0, &[1u8; 65], REQUEST).unwrap_err();
        assert!(matches!(
            err,
            ChannelError::Length {
                len: 65,
                capacity: 64
            }
        ));
        assert_eq!(host.state(0), IDLE);
    }

    #[test]
    fn a_length_beyond_the_capacity_is_not_read() {
        let (host, fd) = Channel::create(1, 64).unwrap();
        let worker = Channel::open(&fd).unwrap();
        host.send(0, b"hello", REQUEST).unwrap();
        // A peer scribbling on the header: the reader must not follow it past the lane.
        host.header(0).len.store(65, Ordering::Relaxed);
        let mut out = vec![9u8; 3];
        assert!(matches!(
            worker.read(0, &mut out),
            Err(ChannelError::Length { len: 65, .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn a_channel_too_big_for_its_header_is_refused() {
        assert!(matches!(
            Channel::create(1, usize::MAX / 2),
            Err(ChannelError::TooBig { .. })
        ));
        assert!(matches!(
            Channel::create(1 << 33, 64),
            Err(ChannelError::TooBig { .. })
        ));
    }
}
