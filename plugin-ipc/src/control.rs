//! The socket beside the channel: messages that are rare or one-way, and the end of the peer.
//!
//! Each message is a frame: a little-endian `u32` length, then a tag byte and its fields.
//! When either process ends, the kernel closes its end and the other side reads end of
//! file: that is how a worker learns that its host died, and the host's first sign of a
//! worker's death.
//!
//! A frame is written whole by one [`send`]; writers sharing a socket between threads must
//! serialise their sends, or frames interleave.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use plugin_abi::{ErrorKind, LogLevel};

use crate::wire::{kind_code, kind_from, Reader, Writer};

/// Frames larger than this are refused: a log line is cut before it gets near.
pub const MAX_FRAME: usize = 1 << 20;
/// Log messages longer than this are cut (at a character boundary).
pub const MAX_LOG: usize = 64 << 10;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Reading the socket failed (including its read timeout, and an end of file in the
    /// middle of a frame).
    #[error("the control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The frame's length is beyond [`MAX_FRAME`].
    #[error("a {0}-byte frame, more than {MAX_FRAME}")]
    TooLarge(usize),
    /// The frame is not a message.
    #[error("a malformed message")]
    Malformed,
}

impl ControlError {
    /// Whether the socket's read timeout ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ControlError::Io(e) if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ))
    }
}

/// Why a worker could not load its plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadFailure {
    /// Not a library abi_stable accepts (an open, symbol or header error).
    NotAPlugin,
    /// abi_stable's version or layout check failed.
    AbiMismatch,
    /// The identity the code reports is not the manifest's: the field that differs
    /// (`name`, `version` or `sdk_version`) and what was expected; the message is what the
    /// code reported.
    Identity {
        /// The field that differs: one of `name`, `version`, `sdk_version`.
        field: &'static str,
        /// What the manifest says.
        expected: String,
    },
    /// `on_load` returned an error.
    OnLoad(ErrorKind),
    /// The worker could not set itself up.
    Setup,
}

/// A message on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Worker to host: the plugin is loaded, its `on_load` ran, calls may come.
    Ready {
        /// Whether the plugin has an `on_load`.
        has_on_load: bool,
        /// Whether the plugin has an `on_unload`.
        has_on_unload: bool,
        /// The plugin process's id (the keeper the host started forked it).
        pid: u32,
    },
    /// Worker to host: the plugin could not be loaded; the worker exits.
    Failed {
        /// Which step failed.
        failure: LoadFailure,
        /// What the step reported.
        message: String,
    },
    /// Worker to host: a log record from the plugin.
    Log {
        /// The record's level.
        level: LogLevel,
        /// The record (cut to [`MAX_LOG`] bytes when sent).
        message: String,
    },
    /// Worker to host: `on_unload` ran (after [`Message::Stop`]); the worker exits.
    Stopped {
        /// What `on_unload` returned.
        on_unload: Result<(), (ErrorKind, String)>,
    },
    /// Host to worker: cancel the call `seq` on `lane`, if it still runs.
    Cancel {
        /// The lane the call runs on.
        lane: u32,
        /// The call's number ([`CallHead::seq`](crate::CallHead::seq)).
        seq: u64,
    },
    /// Host to worker: run `on_unload` and exit.
    Stop,
}

/// The identity fields [`LoadFailure::Identity`] names, in their wire order.
const IDENTITY_FIELDS: [&str; 3] = ["name", "version", "sdk_version"];

fn identity_field_code(field: &str) -> u8 {
    IDENTITY_FIELDS
        .iter()
        .position(|f| *f == field)
        .map_or(u8::MAX, |i| i as u8)
}

fn identity_field_from(code: u8) -> Option<&'static str> {
    IDENTITY_FIELDS.get(code as usize).copied()
}

impl Message {
    /// The message as a whole frame: its length, then its body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        // The length, filled in at the end.
        w.u32(0);
        match self {
            Message::Ready {
                has_on_load,
                has_on_unload,
                pid,
            } => {
                w.u8(1);
                w.u8(*has_on_load as u8);
                w.u8(*has_on_unload as u8);
                w.u32(*pid as usize);
            }
            Message::Failed { failure, message } => {
                w.u8(2);
                match failure {
                    LoadFailure::NotAPlugin => w.u8(0),
                    LoadFailure::AbiMismatch => w.u8(1),
                    LoadFailure::Identity { field, expected } => {
                        w.u8(2);
                        w.u8(identity_field_code(field));
                        w.str(expected);
                    }
                    LoadFailure::OnLoad(kind) => {
                        w.u8(3);
                        w.u8(kind_code(*kind));
                    }
                    LoadFailure::Setup => w.u8(4),
                }
                w.str(message);
            }
            Message::Log { level, message } => {
                w.u8(3);
                w.u8(*level as u8);
                let mut end = message.len().min(MAX_LOG);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                w.str(&message[..end]);
            }
            Message::Stopped { on_unload } => {
                w.u8(4);
                w.result(on_unload);
            }
            Message::Cancel { lane, seq } => {
                w.u8(10);
                w.u32(*lane as usize);
                w.u64(*seq);
            }
            Message::Stop => w.u8(11),
        }
        let mut buf = w.finish();
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_le_bytes());
        buf
    }

    /// The message in a frame's body (the bytes after its length); `None` if they are not
    /// one whole message.
    pub fn decode(frame: &[u8]) -> Option<Message> {
        let mut r = Reader::new(frame);
        let message = match r.u8().ok()? {
            1 => Message::Ready {
                has_on_load: r.u8().ok()? != 0,
                has_on_unload: r.u8().ok()? != 0,
                pid: r.u32().ok()? as u32,
            },
            2 => {
                let failure = match r.u8().ok()? {
                    0 => LoadFailure::NotAPlugin,
                    1 => LoadFailure::AbiMismatch,
                    2 => LoadFailure::Identity {
                        field: identity_field_from(r.u8().ok()?)?,
                        expected: r.str().ok()?.to_owned(),
                    },
                    3 => LoadFailure::OnLoad(kind_from(r.u8().ok()?)),
                    _ => LoadFailure::Setup,
                };
                Message::Failed {
                    failure,
                    message: r.str().ok()?.to_owned(),
                }
            }
            3 => Message::Log {
                level: match r.u8().ok()? {
                    0 => LogLevel::Error,
                    1 => LogLevel::Warn,
                    2 => LogLevel::Info,
                    3 => LogLevel::Debug,
                    _ => LogLevel::Trace,
                },
                message: r.str().ok()?.to_owned(),
            },
            4 => Message::Stopped {
                on_unload: r.result().ok()?,
            },
            10 => Message::Cancel {
                lane: r.u32().ok()? as u32,
                seq: r.u64().ok()?,
            },
            11 => Message::Stop,
            _ => return None,
        };
        r.finish().ok()?;
        Some(message)
    }
}

/// Writes one message, as one frame.
pub fn send(mut socket: &UnixStream, message: &Message) -> std::io::Result<()> {
    socket.write_all(&message.encode())
}

/// Reads one message; `Ok(None)` at end of file before a frame (the peer is gone).
pub fn receive(mut socket: &UnixStream) -> Result<Option<Message>, ControlError> {
    let mut len = [0u8; 4];
    match socket.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(ControlError::TooLarge(len));
    }
    let mut frame = vec![0; len];
    socket.read_exact(&mut frame)?;
    Message::decode(&frame)
        .map(Some)
        .ok_or(ControlError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_crosses_a_socket_and_the_end_is_seen() {
        let (a, b) = UnixStream::pair().unwrap();
        let messages = [
            Message::Ready {
                has_on_load: true,
                has_on_unload: false,
                pid: 4242,
            },
            Message::Failed {
                failure: LoadFailure::OnLoad(ErrorKind::NotFound),
                message: "no config".into(),
            },
            Message::Failed {
                failure: LoadFailure::AbiMismatch,
                message: "layout".into(),
            },
            Message::Failed {
                failure: LoadFailure::Identity {
                    field: "sdk_version",
                    expected: "^0.3.0".into(),
                },
                message: "0.2.9".into(),
            },
            Message::Log {
                level: LogLevel::Warn,
                message: "careful".into(),
            },
            Message::Stopped {
                on_unload: Err((ErrorKind::Other, "flush failed".into())),
            },
            Message::Cancel { lane: 3, seq: 77 },
            Message::Stop,
        ];
        for m in &messages {
            send(&a, m).unwrap();
        }
        drop(a);
        for m in &messages {
            assert_eq!(receive(&b).unwrap().as_ref(), Some(m));
        }
        assert_eq!(receive(&b).unwrap(), None);
    }

    #[test]
    fn long_log_lines_are_cut_at_a_character() {
        let (a, b) = UnixStream::pair().unwrap();
        let long = "é".repeat(MAX_LOG);
        send(
            &a,
            &Message::Log {
                level: LogLevel::Info,
                message: long,
            },
        )
        .unwrap();
        let Some(Message::Log { message, .. }) = receive(&b).unwrap() else {
            panic!("a log")
        };
        assert!(message.len() <= MAX_LOG && message.chars().all(|c| c == 'é'));
    }

    /// One of each message, failure, identity field and log level.
    fn every_variant() -> Vec<Message> {
        let mut all = vec![
            Message::Ready {
                has_on_load: false,
                has_on_unload: true,
                pid: u32::MAX,
            },
            Message::Stopped { on_unload: Ok(()) },
            Message::Stopped {
                on_unload: Err((ErrorKind::DeadlineExceeded, "slow".into())),
            },
            Message::Cancel {
                lane: u32::MAX,
                seq: u64::MAX,
            },
            Message::Stop,
        ];
        let mut failures = vec![
            LoadFailure::NotAPlugin,
            LoadFailure::AbiMismatch,
            LoadFailure::OnLoad(ErrorKind::Panicked),
            LoadFailure::Setup,
        ];
        for field in IDENTITY_FIELDS {
            failures.push(LoadFailure::Identity {
                field,
                expected: format!("the {field}"),
            });
        }
        for failure in failures {
            all.push(Message::Failed {
                failure,
                message: "why".into(),
            });
        }
        for level in [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ] {
            all.push(Message::Log {
                level,
                message: format!("{level:?}"),
            });
        }
        all
    }

    #[test]
    fn every_variant_round_trips_through_its_frame() {
        for m in every_variant() {
            let frame = m.encode();
            let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4, "{m:?}: the length prefix");
            assert_eq!(Message::decode(&frame[4..]).as_ref(), Some(&m));
        }
    }

    #[test]
    fn truncated_padded_and_garbage_frames_decode_to_none() {
        for m in every_variant() {
            let frame = m.encode();
            let body = &frame[4..];
            for cut in 0..body.len() {
                assert_eq!(Message::decode(&body[..cut]), None, "{m:?} cut at {cut}");
            }
            let mut padded = body.to_vec();
            padded.push(0);
            assert_eq!(Message::decode(&padded), None, "{m:?} with a byte more");
        }
        // Unknown tags, and an identity field code out of range.
        assert_eq!(Message::decode(&[0]), None);
        assert_eq!(Message::decode(&[12]), None);
        assert_eq!(Message::decode(&[2, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        // Random bytes (a fixed xorshift sequence): no panic, and whatever they decode to
        // (unknown codes read leniently) survives its own round trip.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> ((i % 8) * 8)) as u8 % 13).collect();
            if let Some(m) = Message::decode(&bytes) {
                assert_eq!(
                    Message::decode(&m.encode()[4..]).as_ref(),
                    Some(&m),
                    "from {bytes:?}"
                );
            }
        }
    }

    #[test]
    fn an_oversized_or_cut_frame_on_the_socket_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&((MAX_FRAME + 1) as u32).to_le_bytes())
            .unwrap();
        assert!(matches!(
            receive(&b),
            Err(ControlError::TooLarge(n)) if n == MAX_FRAME + 1
        ));

        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&[1, 0, 0, 0, 99]).unwrap();
        assert!(matches!(receive(&b), Err(ControlError::Malformed)));

        // A frame that promises more than comes before the end of file.
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&[8, 0, 0, 0, 1]).unwrap();
        drop(a);
        let err = receive(&b).unwrap_err();
        assert!(matches!(err, ControlError::Io(_)) && !err.is_timeout());
    }

    #[test]
    fn a_read_timeout_is_told_apart() {
        let (_a, b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_millis(1)))
            .unwrap();
        assert!(receive(&b).unwrap_err().is_timeout());
    }
}
