//! The channel between a plugin host and a plugin's worker process (Linux only).
//!
//! A host that runs a plugin in a worker process of its own talks to it over two things,
//! both made by the host before the worker starts and inherited by it:
//!
//! - a [`Channel`]: a sealed shared memory file cut into lanes, one call per lane at a
//!   time, with a futex per lane to wait on ([`channel`]);
//! - a Unix socket beside it, for what is rare or one-way: the worker's start-up report,
//!   its log records, cancellations, the request to stop, and the end of the peer
//!   ([`control`]).
//!
//! What a call puts in a lane (its head, the context's values, its result) is written and
//! read by [`wire`].
//!
//! # The lane protocol
//!
//! The host creates the file (`memfd_create`), sizes it, seals its size (no shrinking, no
//! growing, no further seals), and maps it; the worker inherits the descriptor and maps it
//! too ([`Channel::open`] checks that the file's header matches its size). Each lane is a
//! 64-byte header (a state word that both sides wait on with a futex, the length of the
//! message in the lane, and a count of sleepers) followed by `capacity` bytes of message.
//! The state word holds one of:
//!
//! - [`IDLE`]: the lane holds no call;
//! - [`REQUEST`]: the host wrote a request; the worker has not answered yet;
//! - [`RESPONSE`]: the worker wrote its response;
//! - [`DEAD`]: the worker died; no response will come.
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
//! (the mapping is its own, [`Channel::set`]) and wakes its waiting callers.
//!
//! Waiting ([`Channel::wait`]) spins briefly first (a trivial call answers within
//! microseconds, and a futex sleep and wake costs about as much again), then counts itself
//! as a sleeper and sleeps on the futex (`FUTEX_WAIT`, the shared variant: the other side is
//! another process). A writer makes the wake system call only when it sees a sleeper; both
//! the writer's store-then-check and the sleeper's count-then-check are sequentially
//! consistent, so either the sleeper sees the new state and does not sleep, or the writer
//! sees the sleeper and wakes it.
//!
//! One call, both sides in one process for the example (a worker maps the descriptor it
//! inherited):
//!
//! ```
//! use std::time::Duration;
//! use plugin_ipc::{Channel, IDLE, REQUEST, RESPONSE};
//!
//! let (host, fd) = Channel::create(1, 64)?;
//! let worker = Channel::open(&fd)?;
//! host.send(0, b"ping", REQUEST)?;
//! // The worker waits while its lane is not REQUEST; the host while its call is.
//! assert_eq!(worker.wait(0, IDLE, Duration::ZERO, None), Some(REQUEST));
//! let mut buf = Vec::new();
//! worker.read(0, &mut buf)?;
//! assert_eq!(buf, b"ping");
//! worker.send(0, b"pong", RESPONSE)?;
//! assert_eq!(host.wait(0, REQUEST, Duration::ZERO, None), Some(RESPONSE));
//! host.read(0, &mut buf)?;
//! assert_eq!(buf, b"pong");
//! host.reset(0);
//! assert_eq!(worker.state(0), IDLE);
//! # Ok::<(), plugin_ipc::ChannelError>(())
//! ```
//!
//! A message is at most the lane's capacity (chosen by the host at [`Channel::create`]);
//! [`Channel::send`] refuses a larger one, and [`Channel::read`] refuses a length beyond
//! the capacity, so a peer that scribbles on the header cannot make the reader read past
//! its lane.
//!
//! # The wire format
//!
//! A compact binary form of a call: little-endian lengths, a tag byte per value. A request
//! is `seq: u64`, the time left before the deadline in nanoseconds (`u64::MAX`: none),
//! whether the context is already cancelled, the label, then the values. A response is `0`
//! (ok) or `1, kind, message`, then the values as the call left them. Decoding checks every
//! length against what is left and refuses nesting deeper than [`wire::MAX_DEPTH`]; the
//! peer is trusted no further than that.
//!
//! # Control frames
//!
//! Each [`Message`] on the socket is a frame: a little-endian `u32` length, then a tag byte
//! and its fields (in the wire format's primitives). Frames longer than
//! [`control::MAX_FRAME`] are refused; log lines are cut to [`control::MAX_LOG`] bytes
//! first. When either process ends, the kernel closes its end and the other side reads end
//! of file ([`receive`] returns `Ok(None)`): that is how a worker learns that its host
//! died, and the host's first sign of a worker's death.
#![cfg(target_os = "linux")]

pub mod channel;
pub mod control;
pub mod wire;

pub use channel::{Channel, ChannelError, DEAD, IDLE, REQUEST, RESPONSE};
pub use control::{receive, send, ControlError, LoadFailure, Message};
pub use wire::{CallHead, Malformed, Reader, Writer};
