//! Fuzzes control frames: decoding an arbitrary frame body never panics, and what decodes
//! re-encodes to a frame that decodes the same; a message built from the input encodes to a
//! frame whose length prefix is right and whose body decodes back to it (a log line cut to
//! `MAX_LOG` bytes at a character boundary).
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use plugin_fuzz::message;
use plugin_ipc::control::{MAX_FRAME, MAX_LOG};
use plugin_ipc::Message;

/// The body of `frame` after checking its length prefix.
fn body(frame: &[u8]) -> &[u8] {
    let len = u32::from_le_bytes(frame[..4].try_into().expect("a length prefix")) as usize;
    assert_eq!(len, frame.len() - 4, "the length prefix");
    &frame[4..]
}

/// What `sent` should read back as.
fn as_received(sent: &Message) -> Message {
    match sent {
        Message::Log { level, message } if message.len() > MAX_LOG => {
            let mut end = MAX_LOG;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            Message::Log {
                level: *level,
                message: message[..end].to_owned(),
            }
        }
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(m) = Message::decode(data) {
        let frame = m.encode();
        assert_eq!(
            Message::decode(body(&frame)).as_ref(),
            Some(&m),
            "from {data:?}"
        );
    }

    let Ok(sent) = message(&mut Unstructured::new(data)) else {
        return;
    };
    let frame = sent.encode();
    let received = Message::decode(body(&frame));
    assert_eq!(received, Some(as_received(&sent)));
    // A log line is cut long before the frame limit; other messages are small, or as long
    // as a string the sender gave.
    if matches!(sent, Message::Log { .. }) {
        assert!(frame.len() <= MAX_FRAME);
    }
});
