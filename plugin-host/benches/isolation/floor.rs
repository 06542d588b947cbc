//! The raw channel floor: an 8-byte ping-pong between this process and a child over
//! process isolation's own call channel ([`plugin_ipc::Channel`]: one lane of a sealed
//! shared memory file, its state word waited on with a futex) and nothing else (no lanes to
//! take, no context to encode, no plugin, no control socket).
//!
//! Both sides use the channel as the host and a worker do: the writer copies the message in,
//! publishes the state and wakes the peer only when the peer counted itself asleep; the
//! waiter spins on the word (the caller for [`CALL_SPIN`], the child for [`LANE_SPIN`], each
//! time it starts waiting) before it sleeps on the futex. To stop the child, the caller marks
//! the lane [`DEAD`], as the host does for a dead worker's lanes.
//!
//! The child is this bench binary run again with [`CHILD_ENV`] set to
//! `<parent pid> <descriptor of the memory file>`.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plugin_ipc::{Channel, DEAD, REQUEST, RESPONSE};

/// Marks the bench binary as the floor's child; see the module docs for its value.
pub(crate) const CHILD_ENV: &str = "PLUGIN_BENCH_FLOOR_CHILD";

/// How long the caller spins before it sleeps (the supervisor's `CALL_SPIN`).
const CALL_SPIN: Duration = Duration::from_micros(20);
/// How long the child spins before it sleeps (the worker's `LANE_SPIN`).
const LANE_SPIN: Duration = Duration::from_micros(50);
/// The longest the caller waits for one answer (the first includes the child's start).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The one lane's capacity: the 8-byte message, rounded up to a lane's alignment.
const CAPACITY: usize = 64;

/// Reads the 8-byte message the peer published in the lane (after its state was acquired).
fn read(channel: &Channel, buf: &mut Vec<u8>) -> u64 {
    channel
        .read(0, buf)
        .expect("the peer's message fits its lane");
    u64::from_le_bytes(buf.as_slice().try_into().expect("an 8-byte message"))
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
    let (channel, fd) = Channel::create(1, CAPACITY).expect("make the floor's channel");
    // No close-on-exec: the child inherits the descriptor; this side closes it once the
    // child runs, so workers started later do not inherit it.
    // SAFETY: F_SETFD with 0 only clears this open descriptor's close-on-exec flag.
    let cleared = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
    assert!(
        cleared == 0,
        "fcntl(F_SETFD): {}",
        std::io::Error::last_os_error()
    );
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
    let mut buf = Vec::with_capacity(CAPACITY);
    for i in 0..(warmup + rounds) as u64 {
        let t = Instant::now();
        channel
            .send(0, &i.to_le_bytes(), REQUEST)
            .expect("8 bytes fit the lane");
        let state = channel.wait(0, REQUEST, CALL_SPIN, Some(Instant::now() + ANSWER_TIMEOUT));
        assert_eq!(
            state,
            Some(RESPONSE),
            "the floor's child did not answer round trip {i} within {ANSWER_TIMEOUT:?}"
        );
        let answer = read(&channel, &mut buf);
        channel.reset(0);
        let took = t.elapsed();
        assert_eq!(answer, i + 1, "the child answers its request plus one");
        if i as usize >= warmup {
            latencies.push(took.as_nanos() as u64);
        }
    }
    channel.set(0, DEAD);
    let give_up = Instant::now() + ANSWER_TIMEOUT;
    loop {
        match peer.0.try_wait().expect("the floor's child's status") {
            Some(status) => {
                assert!(status.success(), "the floor's child ended with {status}");
                break;
            }
            None if Instant::now() >= give_up => {
                panic!("the floor's child did not exit within {ANSWER_TIMEOUT:?} of DEAD")
            }
            None => std::thread::yield_now(),
        }
    }
    latencies
}

/// The child's side: answers each request with its number plus one until the lane is
/// [`DEAD`]; never returns.
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
    let channel = Channel::open(&fd).expect("map the floor's channel");
    drop(fd);
    let mut buf = Vec::with_capacity(CAPACITY);
    loop {
        match channel.state(0) {
            REQUEST => {
                let request = read(&channel, &mut buf);
                channel
                    .send(0, &(request + 1).to_le_bytes(), RESPONSE)
                    .expect("8 bytes fit the lane");
            }
            DEAD => std::process::exit(0),
            other => {
                channel.wait(0, other, LANE_SPIN, None);
            }
        }
    }
}
