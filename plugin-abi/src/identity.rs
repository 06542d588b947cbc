//! The identity record: a plugin's name, version, SDK version and ABI version as bytes in a
//! link section of its library, which a host reads from the file before mapping it.
//!
//! `plugin-sdk`'s `export_plugin!` writes one record, with the same values the root
//! module's `info()` returns, into a section of its own:
//!
//! | format | section |
//! |---|---|
//! | ELF | [`ELF_SECTION`] (`.plugin_identity`) |
//! | Mach-O | [`MACHO_SECTION`] (`__plugin_ident`) in segment [`MACHO_SEGMENT`] (`__DATA`) |
//! | PE | [`PE_SECTION`] (`.plgid`, at most 8 bytes as PE requires) |
//!
//! # Layout, format version 1
//!
//! Integers are little-endian whatever the target's byte order; strings are UTF-8, not
//! terminated.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | [`MAGIC`]: `PLUGIDNT` |
//! | 8 | 2 | format version: [`FORMAT_VERSION`] (1) |
//! | 10 | 4 | [`ABI_VERSION`](crate::ABI_VERSION) the plugin was built against |
//! | 14 | 2 | length *n* of the name |
//! | 16 | *n* | the plugin crate's package name (`CARGO_PKG_NAME`) |
//! | | 2 | length *v* of the version |
//! | | *v* | the plugin crate's version (`CARGO_PKG_VERSION`) |
//! | | 2 | length *s* of the SDK version |
//! | | *s* | the version of `plugin-sdk` the plugin was built with |
//!
//! A section may hold zero bytes after the record (alignment padding); anything else after
//! it makes the section malformed. A later format version may add fields after the SDK
//! version; a reader refuses a format version it does not know.
//!
//! # Examples
//!
//! ```
//! use plugin_abi::identity::{self, Identity};
//!
//! const LEN: usize = identity::encoded_len("hello", "0.1.0", "0.1.0");
//! static RECORD: [u8; LEN] = identity::encode("hello", "0.1.0", "0.1.0", plugin_abi::ABI_VERSION);
//!
//! let read = identity::decode(&RECORD).unwrap();
//! assert_eq!(
//!     read,
//!     Identity {
//!         abi_version: plugin_abi::ABI_VERSION,
//!         name: "hello",
//!         version: "0.1.0",
//!         sdk_version: "0.1.0",
//!     }
//! );
//! ```

use std::fmt;

/// The first 8 bytes of a record.
pub const MAGIC: [u8; 8] = *b"PLUGIDNT";

/// The layout version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// The section name on ELF.
pub const ELF_SECTION: &str = ".plugin_identity";
/// The segment on Mach-O.
pub const MACHO_SEGMENT: &str = "__DATA";
/// The section name on Mach-O.
pub const MACHO_SECTION: &str = "__plugin_ident";
/// The section name on PE.
pub const PE_SECTION: &str = ".plgid";

/// Magic, format version and ABI version.
const FIXED_LEN: usize = 8 + 2 + 4;

/// The identity a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The [`ABI_VERSION`](crate::ABI_VERSION) the plugin was built against.
    pub abi_version: u32,
    /// The plugin crate's package name.
    pub name: &'a str,
    /// The plugin crate's version.
    pub version: &'a str,
    /// The version of `plugin-sdk` the plugin was built with.
    pub sdk_version: &'a str,
}

/// The length of the record of these strings.
pub const fn encoded_len(name: &str, version: &str, sdk_version: &str) -> usize {
    FIXED_LEN + 2 + name.len() + 2 + version.len() + 2 + sdk_version.len()
}

/// The record of this identity; `N` must be [`encoded_len`] of the same strings. Meant for
/// constant evaluation: a string longer than 65535 bytes, or a wrong `N`, fails the build.
pub const fn encode<const N: usize>(
    name: &str,
    version: &str,
    sdk_version: &str,
    abi_version: u32,
) -> [u8; N] {
    assert!(
        N == encoded_len(name, version, sdk_version),
        "N must be encoded_len() of the same strings"
    );
    let mut out = [0u8; N];
    let mut at = put(&mut out, 0, &MAGIC);
    at = put(&mut out, at, &FORMAT_VERSION.to_le_bytes());
    at = put(&mut out, at, &abi_version.to_le_bytes());
    at = put_str(&mut out, at, name);
    at = put_str(&mut out, at, version);
    at = put_str(&mut out, at, sdk_version);
    assert!(at == N);
    out
}

const fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
    at + bytes.len()
}

const fn put_str(out: &mut [u8], at: usize, s: &str) -> usize {
    assert!(
        s.len() <= u16::MAX as usize,
        "identity strings are at most 65535 bytes"
    );
    let at = put(out, at, &(s.len() as u16).to_le_bytes());
    put(out, at, s.as_bytes())
}

/// Why bytes are not an identity record this crate can read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes do not start with [`MAGIC`].
    Magic,
    /// A format version this crate does not know.
    Format(u16),
    /// The bytes end inside the record.
    Truncated,
    /// A string is not UTF-8; the field is `name`, `version` or `sdk_version`.
    NotUtf8(&'static str),
    /// Non-zero bytes follow the record.
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Magic => write!(f, "it does not start with the identity magic"),
            DecodeError::Format(version) => write!(
                f,
                "it has format version {version}, this host reads version {FORMAT_VERSION}"
            ),
            DecodeError::Truncated => write!(f, "it ends inside the record"),
            DecodeError::NotUtf8(field) => write!(f, "its `{field}` is not UTF-8"),
            DecodeError::TrailingBytes => write!(f, "it holds bytes after the record"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads the record at the start of `section`, a section's contents.
///
/// # Errors
///
/// [`DecodeError`] says what is wrong with the bytes.
pub fn decode(section: &[u8]) -> Result<Identity<'_>, DecodeError> {
    let mut rest = section;
    if take(&mut rest, MAGIC.len())? != MAGIC {
        return Err(DecodeError::Magic);
    }
    let format = u16::from_le_bytes(array(take(&mut rest, 2)?));
    if format != FORMAT_VERSION {
        return Err(DecodeError::Format(format));
    }
    let abi_version = u32::from_le_bytes(array(take(&mut rest, 4)?));
    let name = take_str(&mut rest, "name")?;
    let version = take_str(&mut rest, "version")?;
    let sdk_version = take_str(&mut rest, "sdk_version")?;
    if rest.iter().any(|&b| b != 0) {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(Identity {
        abi_version,
        name,
        version,
        sdk_version,
    })
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if rest.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

fn take_str<'a>(rest: &mut &'a [u8], field: &'static str) -> Result<&'a str, DecodeError> {
    let len = u16::from_le_bytes(array(take(rest, 2)?));
    let bytes = take(rest, usize::from(len))?;
    std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: usize = encoded_len("hello", "1.2.3-rc.1", "0.1.0");
    const RECORD: [u8; LEN] = encode("hello", "1.2.3-rc.1", "0.1.0", 7);

    #[test]
    fn the_layout_is_as_documented() {
        assert_eq!(&RECORD[..8], b"PLUGIDNT");
        assert_eq!(RECORD[8..10], [1, 0]);
        assert_eq!(RECORD[10..14], [7, 0, 0, 0]);
        assert_eq!(RECORD[14..16], [5, 0]);
        assert_eq!(&RECORD[16..21], b"hello");
        assert_eq!(RECORD[21..23], [10, 0]);
        assert_eq!(&RECORD[23..33], b"1.2.3-rc.1");
        assert_eq!(RECORD[33..35], [5, 0]);
        assert_eq!(&RECORD[35..], b"0.1.0");
    }

    #[test]
    fn round_trips_with_padding() {
        let expected = Identity {
            abi_version: 7,
            name: "hello",
            version: "1.2.3-rc.1",
            sdk_version: "0.1.0",
        };
        assert_eq!(decode(&RECORD), Ok(expected));
        let padded = [&RECORD[..], &[0; 13]].concat();
        assert_eq!(decode(&padded), Ok(expected));
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        assert_eq!(decode(b""), Err(DecodeError::Truncated));
        assert_eq!(decode(b"PLUGIDNX\x01\0"), Err(DecodeError::Magic));
        let mut future = RECORD;
        future[8] = 2;
        assert_eq!(decode(&future), Err(DecodeError::Format(2)));
        assert!(decode(&future)
            .unwrap_err()
            .to_string()
            .contains("format version 2, this host reads version 1"));
        for cut in 0..LEN {
            assert_eq!(decode(&RECORD[..cut]), Err(DecodeError::Truncated), "{cut}");
        }
        let mut bad = RECORD;
        bad[16] = 0xff;
        assert_eq!(decode(&bad), Err(DecodeError::NotUtf8("name")));
        let twice = [&RECORD[..], &RECORD[..]].concat();
        assert_eq!(decode(&twice), Err(DecodeError::TrailingBytes));
    }
}
