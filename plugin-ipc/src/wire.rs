//! How a call and its result are written into a lane: little-endian lengths, and each
//! context value as the encoded bytes it is stored as ([`plugin_abi::codec`]), copied as
//! they are.
//!
//! A request is `seq: u64`, the time left before the deadline in nanoseconds
//! (`u64::MAX`: none), whether the context is already cancelled, the label, then the values:
//! [`Writer::head`] then [`Writer::values`], read back by [`Reader::head`] then
//! [`Reader::values`]. A response is `0` (ok) or `1, kind, message`, then the values as the
//! call left them: [`Writer::result`] then [`Writer::values`]. Decoding checks every length
//! against what is left, and every value with [`plugin_abi::codec::validate`] (well-formed,
//! nesting at most [`MAX_DEPTH`]); the peer is trusted no further than that.

use plugin_abi::ErrorKind;

/// Nesting deeper than this is refused (a list in a list in ...).
pub const MAX_DEPTH: usize = plugin_abi::codec::MAX_DEPTH;

/// A call's parameters besides its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHead {
    /// The call's number, which a cancellation names.
    pub seq: u64,
    /// The time left before its deadline, if it has one.
    pub remaining: Option<std::time::Duration>,
    /// Whether its context was already cancelled.
    pub cancelled: bool,
    /// Its context's label.
    pub label: Option<String>,
}

/// Why bytes could not be decoded: truncated, a length beyond what is left, an unknown
/// tag, text that is not UTF-8, nesting too deep, or bytes left over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a malformed message")]
pub struct Malformed;

/// Writes a call's parts into a buffer.
#[derive(Debug)]
pub struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    /// A writer into `buf`, emptied first (its allocation is reused).
    pub fn new(mut buf: Vec<u8>) -> Self {
        buf.clear();
        Writer { buf }
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u32(&mut self, v: usize) {
        self.buf.extend_from_slice(&(v as u32).to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.u32(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Writes a request's head; a `remaining` of `u64::MAX` nanoseconds or more (too long
    /// for a `u64`, or the value that means "none") is written as the longest that is not
    /// "none".
    pub fn head(
        &mut self,
        seq: u64,
        remaining: Option<std::time::Duration>,
        cancelled: bool,
        label: Option<&str>,
    ) {
        self.u64(seq);
        self.u64(remaining.map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).map_or(u64::MAX - 1, |n| n.min(u64::MAX - 1))
        }));
        self.u8(cancelled as u8);
        match label {
            Some(label) => {
                self.u8(1);
                self.str(label);
            }
            None => self.u8(0),
        }
    }

    /// Writes a response's result.
    pub fn result(&mut self, result: &Result<(), (ErrorKind, String)>) {
        match result {
            Ok(()) => self.u8(0),
            Err((kind, message)) => {
                self.u8(1);
                self.u8(kind_code(*kind));
                self.str(message);
            }
        }
    }

    /// Writes `count` entries, then each `(key, encoded value)`.
    pub fn values<'k, 'v>(
        &mut self,
        count: usize,
        entries: impl Iterator<Item = (&'k str, &'v [u8])>,
    ) {
        self.u32(count);
        for (key, value) in entries {
            self.str(key);
            self.u32(value.len());
            self.buf.extend_from_slice(value);
        }
    }
}

/// Reads a call's parts back, refusing what a [`Writer`] would not have written.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.buf.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<usize, Malformed> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, Malformed> {
        let len = self.u32()?;
        std::str::from_utf8(self.take(len)?).map_err(|_| Malformed)
    }

    /// Reads a request's head.
    pub fn head(&mut self) -> Result<CallHead, Malformed> {
        let seq = self.u64()?;
        let remaining = match self.u64()? {
            u64::MAX => None,
            nanos => Some(std::time::Duration::from_nanos(nanos)),
        };
        let cancelled = self.u8()? != 0;
        let label = match self.u8()? {
            0 => None,
            1 => Some(self.str()?.to_owned()),
            _ => return Err(Malformed),
        };
        Ok(CallHead {
            seq,
            remaining,
            cancelled,
            label,
        })
    }

    /// Reads a response's result (an unknown error kind reads as `Other`).
    pub fn result(&mut self) -> Result<Result<(), (ErrorKind, String)>, Malformed> {
        match self.u8()? {
            0 => Ok(Ok(())),
            1 => {
                let kind = kind_from(self.u8()?);
                Ok(Err((kind, self.str()?.to_owned())))
            }
            _ => Err(Malformed),
        }
    }

    /// Reads the values, handing each `(key, encoded value)` to `each`; they must end the
    /// input, and each must be one well-formed value.
    pub fn values(&mut self, mut each: impl FnMut(String, Vec<u8>)) -> Result<(), Malformed> {
        let count = self.u32()?;
        for _ in 0..count {
            let key = self.str()?.to_owned();
            let len = self.u32()?;
            let value = self.take(len)?;
            plugin_abi::codec::validate(value).map_err(|_| Malformed)?;
            each(key, value.to_vec());
        }
        self.finish()
    }

    /// Refuses bytes left over after the last field.
    pub(crate) fn finish(&self) -> Result<(), Malformed> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

pub(crate) fn kind_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidInput => 0,
        ErrorKind::NotFound => 1,
        ErrorKind::Cancelled => 2,
        ErrorKind::DeadlineExceeded => 3,
        ErrorKind::Panicked => 4,
        ErrorKind::Unsupported => 5,
        _ => 6,
    }
}

pub(crate) fn kind_from(code: u8) -> ErrorKind {
    match code {
        0 => ErrorKind::InvalidInput,
        1 => ErrorKind::NotFound,
        2 => ErrorKind::Cancelled,
        3 => ErrorKind::DeadlineExceeded,
        4 => ErrorKind::Panicked,
        5 => ErrorKind::Unsupported,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample() -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Sample {
            a: (
                Option<()>,
                bool,
                i64,
                f64,
                &'static str,
                &'static serde_bytes::Bytes,
            ),
            b: std::collections::BTreeMap<String, i32>,
        }
        plugin_abi::codec::encode(&Sample {
            a: (None, true, -7, 1.5, "é", serde_bytes::Bytes::new(&[0, 255])),
            b: Default::default(),
        })
        .unwrap()
    }

    fn int(n: i64) -> Vec<u8> {
        plugin_abi::codec::encode(&n).unwrap()
    }

    #[test]
    fn every_error_kind_round_trips_and_unknown_codes_read_as_other() {
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::NotFound,
            ErrorKind::Cancelled,
            ErrorKind::DeadlineExceeded,
            ErrorKind::Panicked,
            ErrorKind::Unsupported,
            ErrorKind::Other,
        ] {
            assert_eq!(kind_from(kind_code(kind)), kind);
        }
        assert_eq!(kind_from(200), ErrorKind::Other);
    }

    #[test]
    fn a_request_round_trips() {
        let head = CallHead {
            seq: 9,
            remaining: Some(Duration::from_millis(1500)),
            cancelled: true,
            label: Some("plugin.get".into()),
        };
        let value = sample();
        let mut w = Writer::new(Vec::new());
        w.head(
            head.seq,
            head.remaining,
            head.cancelled,
            head.label.as_deref(),
        );
        w.values(2, [("x", &value[..]), ("y", &int(3)[..])].into_iter());
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.head().unwrap(), head);
        let mut seen = Vec::new();
        r.values(|k, v| seen.push((k, v))).unwrap();
        assert_eq!(seen, vec![("x".into(), value), ("y".into(), int(3))]);
    }

    #[test]
    fn a_response_round_trips_its_error() {
        let mut w = Writer::new(Vec::new());
        w.result(&Err((ErrorKind::Panicked, "boom".into())));
        w.values(0, std::iter::empty());
        let mut r = Reader::new(&w.buf);
        assert_eq!(
            r.result().unwrap(),
            Err((ErrorKind::Panicked, "boom".into()))
        );
        r.values(|_, _| panic!("no values")).unwrap();
    }

    #[test]
    fn truncated_lying_and_deep_input_is_refused() {
        let mut w = Writer::new(Vec::new());
        w.values(1, [("k", &sample()[..])].into_iter());
        for cut in 0..w.buf.len() {
            assert!(
                Reader::new(&w.buf[..cut]).values(|_, _| ()).is_err(),
                "cut at {cut}"
            );
        }
        // A value claiming four billion bytes, and one whose list claims four billion items.
        let lie = [1, 0, 0, 0, 1, 0, 0, 0, b'k', 255, 255, 255, 255, 0xc0];
        assert!(Reader::new(&lie).values(|_, _| ()).is_err());
        let lie = [
            1, 0, 0, 0, 1, 0, 0, 0, b'k', 5, 0, 0, 0, 0xdd, 255, 255, 255, 255,
        ];
        assert!(Reader::new(&lie).values(|_, _| ()).is_err());
        // Nesting beyond the limit.
        let mut nested = vec![0x91; MAX_DEPTH + 1];
        nested.push(0xc0);
        let mut deep = vec![1, 0, 0, 0, 1, 0, 0, 0, b'k'];
        deep.extend_from_slice(&(nested.len() as u32).to_le_bytes());
        deep.extend_from_slice(&nested);
        assert!(Reader::new(&deep).values(|_, _| ()).is_err());
        // Trailing bytes.
        let mut extra = w.buf.clone();
        extra.push(0);
        assert!(Reader::new(&extra).values(|_, _| ()).is_err());
    }

    #[test]
    fn a_head_without_deadline_or_label_and_an_ok_response_round_trip() {
        let mut w = Writer::new(vec![1, 2, 3]);
        w.head(u64::MAX, None, false, None);
        // A deadline too far for a u64 of nanoseconds still reads as one.
        w.head(0, Some(Duration::MAX), false, None);
        w.result(&Ok(()));
        w.values(1, [("n", &int(i64::MIN)[..])].into_iter());
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        let head = r.head().unwrap();
        assert_eq!(
            (head.seq, head.remaining, head.label),
            (u64::MAX, None, None)
        );
        assert!(r.head().unwrap().remaining.is_some());
        assert_eq!(r.result().unwrap(), Ok(()));
        let mut seen = Vec::new();
        r.values(|k, v| seen.push((k, v))).unwrap();
        assert_eq!(seen, vec![("n".into(), int(i64::MIN))]);
    }

    /// Found by the `wire` fuzz target: a deadline of exactly `u64::MAX` nanoseconds was
    /// written as the "none" marker, so the worker read a call with no deadline at all.
    #[test]
    fn a_deadline_of_u64_max_nanoseconds_is_still_a_deadline() {
        let mut w = Writer::new(Vec::new());
        w.head(1, Some(Duration::from_nanos(u64::MAX)), false, None);
        let bytes = w.finish();
        assert_eq!(
            Reader::new(&bytes).head().unwrap().remaining,
            Some(Duration::from_nanos(u64::MAX - 1))
        );
    }

    #[test]
    fn unknown_tags_in_a_head_or_result_are_refused() {
        // A label tag of 2, and a result tag of 2.
        let mut head = vec![0u8; 17];
        head.push(2);
        assert_eq!(Reader::new(&head).head(), Err(Malformed));
        assert_eq!(Reader::new(&[2]).result(), Err(Malformed));
        // A value marker this encoding does not use, and a key that is not UTF-8.
        assert_eq!(
            Reader::new(&[1, 0, 0, 0, 1, 0, 0, 0, b'k', 1, 0, 0, 0, 0xc1]).values(|_, _| ()),
            Err(Malformed)
        );
        assert_eq!(
            Reader::new(&[1, 0, 0, 0, 1, 0, 0, 0, 0xff, 1, 0, 0, 0, 0xc0]).values(|_, _| ()),
            Err(Malformed)
        );
    }
}
