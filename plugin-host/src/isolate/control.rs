//! The socket beside the channel: messages that are rare or one-way, and the end of the peer.
//!
//! Each message is a frame: a little-endian `u32` length, then a tag byte and its fields.
//! When either process ends, the kernel closes its end and the other side reads end of
//! file: that is how a worker learns that its host died, and the host's first sign of a
//! worker's death.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use plugin_abi::{ErrorKind, LogLevel};

use super::wire::{kind_code, kind_from, Reader, Writer};

/// Frames larger than this are refused: a log line is cut before it gets near.
const MAX_FRAME: usize = 1 << 20;
/// Log messages longer than this are cut (at a character boundary).
const MAX_LOG: usize = 64 << 10;

/// Why a worker could not load its plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LoadFailure {
    /// Not a library abi_stable accepts (an open, symbol or header error).
    NotAPlugin,
    /// abi_stable's version or layout check failed.
    AbiMismatch,
    /// The identity the code reports is not the manifest's: the field that differs
    /// (`name`, `version` or `sdk_version`) and what was expected; the message is what the
    /// code reported.
    Identity {
        field: &'static str,
        expected: String,
    },
    /// `on_load` returned an error.
    OnLoad(ErrorKind),
    /// The worker could not set itself up.
    Setup,
}

/// A message on the socket.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Message {
    /// Worker to host: the plugin is loaded, its `on_load` ran, calls may come.
    Ready {
        has_on_load: bool,
        has_on_unload: bool,
        /// The plugin process's id (the keeper the host started forked it).
        pid: u32,
    },
    /// Worker to host: the plugin could not be loaded; the worker exits.
    Failed {
        failure: LoadFailure,
        message: String,
    },
    /// Worker to host: a log record from the plugin.
    Log { level: LogLevel, message: String },
    /// Worker to host: `on_unload` ran (after [`Message::Stop`]); the worker exits.
    Stopped {
        on_unload: Result<(), (ErrorKind, String)>,
    },
    /// Host to worker: cancel the call `seq` on `lane`, if it still runs.
    Cancel { lane: u32, seq: u64 },
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
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(vec![0; 4]);
        w.buf.extend_from_slice(&[0; 4]);
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
        let mut buf = w.buf;
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_le_bytes());
        buf
    }

    fn decode(frame: &[u8]) -> Option<Message> {
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
        Some(message)
    }
}

/// Writes one message.
pub(super) fn send(mut socket: &UnixStream, message: &Message) -> std::io::Result<()> {
    socket.write_all(&message.encode())
}

/// Reads one message; `Ok(None)` at end of file (the peer is gone).
pub(super) fn receive(mut socket: &UnixStream) -> std::io::Result<Option<Message>> {
    let mut len = [0u8; 4];
    match socket.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("a {len}-byte frame")));
    }
    let mut frame = vec![0; len];
    socket.read_exact(&mut frame)?;
    Message::decode(&frame)
        .map(Some)
        .ok_or_else(|| std::io::Error::other("a malformed message"))
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
}
