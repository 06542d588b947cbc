//! The library's SHA-256, against the manifest's `sha256`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::Error;

/// Checks that `bytes`, the library read from `library`, hash to `expected` (hex, any
/// case).
pub(crate) fn verify(
    name: &str,
    library: &Path,
    bytes: &[u8],
    expected: &str,
) -> Result<(), Error> {
    let actual = hex_digest(bytes);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            plugin: name.to_owned(),
            path: library.to_path_buf(),
            expected: expected.to_owned(),
            actual,
        })
    }
}

/// The SHA-256 of `bytes`, as lowercase hex.
pub(crate) fn hex_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of a file, as lowercase hex (what `sha256` in `plugin.json` holds).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}
