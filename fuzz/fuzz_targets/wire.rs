//! Fuzzes the call wire format: decoding arbitrary bytes as a head, a result or values never
//! panics, every value it accepts is one well-formed encoded value, and what decodes
//! re-encodes to bytes that decode the same; a head, a result and values built from the
//! input encode and decode back to themselves.
#![no_main]

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use plugin_abi::ErrorKind;
use plugin_fuzz::{error, value, VALUE_DEPTH};
use plugin_ipc::{CallHead, Reader, Writer};

type Values = Vec<(String, Vec<u8>)>;

/// Every `(key, value)` of a values section, or `None` if the bytes are not one.
fn read_values(r: &mut Reader<'_>) -> Option<Values> {
    let mut seen = Vec::new();
    r.values(|k, v| seen.push((k, v))).ok()?;
    for (_, v) in &seen {
        assert!(plugin_abi::codec::validate(v).is_ok(), "accepted {v:x?}");
    }
    Some(seen)
}

fn write_values(w: &mut Writer, values: &[(String, Vec<u8>)]) {
    w.values(
        values.len(),
        values.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
    );
}

fn same_values(a: &[(String, Vec<u8>)], b: &[(String, Vec<u8>)]) -> bool {
    a == b
}

/// Arbitrary bytes: each reader alone, then a whole request and a whole response.
fn decode(data: &[u8]) {
    let _ = Reader::new(data).head();
    let _ = Reader::new(data).result();
    if let Some(values) = read_values(&mut Reader::new(data)) {
        let mut w = Writer::new(Vec::new());
        write_values(&mut w, &values);
        let bytes = w.finish();
        let again = read_values(&mut Reader::new(&bytes)).expect("re-encoded values decode");
        assert!(same_values(&values, &again), "{values:?} became {again:?}");
    }

    let mut r = Reader::new(data);
    if let Ok(head) = r.head() {
        if let Some(values) = read_values(&mut r) {
            let mut w = Writer::new(Vec::new());
            w.head(
                head.seq,
                head.remaining,
                head.cancelled,
                head.label.as_deref(),
            );
            write_values(&mut w, &values);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.head().expect("a re-encoded head decodes"), head);
            let again = read_values(&mut r).expect("re-encoded values decode");
            assert!(same_values(&values, &again));
        }
    }

    let mut r = Reader::new(data);
    if let Ok(result) = r.result() {
        if read_values(&mut r).is_some() {
            let mut w = Writer::new(Vec::new());
            w.result(&result);
            let bytes = w.finish();
            assert_eq!(Reader::new(&bytes).result(), Ok(result));
        }
    }
}

/// A deadline as callers make them: from nanoseconds, or from seconds and nanoseconds.
fn remaining(u: &mut Unstructured<'_>) -> Result<Option<Duration>> {
    Ok(match u.int_in_range(0..=2)? {
        0 => None,
        1 => Some(Duration::from_nanos(u.arbitrary()?)),
        _ => Some(Duration::new(
            u.arbitrary()?,
            u.int_in_range(0..=999_999_999)?,
        )),
    })
}

/// A request and a response built from the input round trip.
fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let head = CallHead {
        seq: u.arbitrary()?,
        remaining: remaining(u)?,
        cancelled: u.arbitrary()?,
        label: u.arbitrary()?,
    };
    let result: std::result::Result<(), (ErrorKind, String)> = if u.arbitrary()? {
        Ok(())
    } else {
        Err(error(u)?)
    };
    let mut values = Vec::new();
    u.arbitrary_loop(None, Some(8), |u| {
        let encoded = plugin_abi::codec::encode(&value(u, VALUE_DEPTH)?).expect("a Value encodes");
        values.push((u.arbitrary::<String>()?, encoded));
        Ok(std::ops::ControlFlow::Continue(()))
    })?;

    let mut w = Writer::new(Vec::new());
    w.head(
        head.seq,
        head.remaining,
        head.cancelled,
        head.label.as_deref(),
    );
    write_values(&mut w, &values);
    let request = w.finish();
    let mut r = Reader::new(&request);
    let read = r.head().expect("a written head decodes");
    // A deadline too long for a u64 of nanoseconds is written as the longest that is not
    // "none"; every other head reads back as written.
    let expected = CallHead {
        remaining: head
            .remaining
            .map(|d| d.min(Duration::from_nanos(u64::MAX - 1))),
        ..head
    };
    assert_eq!(read, expected);
    let again = read_values(&mut r).expect("written values decode");
    assert!(same_values(&values, &again), "{values:?} became {again:?}");

    let mut w = Writer::new(Vec::new());
    w.result(&result);
    write_values(&mut w, &values);
    let response = w.finish();
    let mut r = Reader::new(&response);
    assert_eq!(r.result(), Ok(result));
    let again = read_values(&mut r).expect("written values decode");
    assert!(same_values(&values, &again));
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    decode(data);
    let _ = round_trip(&mut Unstructured::new(data));
});
