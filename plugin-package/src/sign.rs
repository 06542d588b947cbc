//! minisign (Ed25519) signatures over packages: trusted keys, verification, and (with the
//! `sign` feature) key generation and signing.
//!
//! Keys and signatures use minisign's own file formats, so the `minisign` tool reads what
//! this module writes and the other way round. A signature's trusted comment is
//! `plugin-package name=NAME version=VERSION`; minisign's global signature covers it, so a
//! valid signature binds the plugin's name and version as well as the package's bytes.

use std::io;
use std::path::{Path, PathBuf};

#[cfg(feature = "sign")]
mod signing;
#[cfg(feature = "sign")]
pub use signing::{generate_keypair, sign_package, KeyPair};

/// Largest key file read, in bytes: a key file is two short lines.
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 4 << 10;

/// The fixed start of a package signature's trusted comment.
const COMMENT_TAG: &str = "plugin-package";

/// How to make a signature this module accepts, for error messages.
const HOW_TO_SIGN: &str = "sign packages with `plugctl sign`, or with `minisign -S -t \
     'plugin-package name=NAME version=VERSION'`";

/// Why a signature or key was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A key or signature file could not be read (missing, not a regular file, too large).
    #[error("cannot read the {what} file {}: {source}; check the path", path.display())]
    Read {
        /// What the file should hold: "public key", "secret key" or "signature".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// A public key is not in minisign's format.
    #[error(
        "{origin} is not a minisign public key: {reason}; pass the `.pub` file that \
         `minisign -G` or `plugctl keygen` wrote (an `untrusted comment:` line, then the key \
         in base64), or the base64 line alone"
    )]
    MalformedPublicKey {
        /// Where the key came from: its file, or the base64 text given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature text is not a minisign signature.
    #[error(
        "the signature is not a minisign signature: {reason}; a `.minisig` file has four \
         lines (untrusted comment, signature, trusted comment, global signature): download \
         it again, or sign the package again"
    )]
    MalformedSignature {
        /// What is wrong with it.
        reason: String,
    },
    /// No key is trusted, so no signature can be accepted.
    #[error(
        "no public key is trusted, so the package's signature cannot be checked; trust its \
         publisher's key with --key PUB"
    )]
    NoTrustedKeys,
    /// The signature was made by a key that is not trusted.
    #[error(
        "the package is signed by key {key_id}, which is not among the trusted keys [{}]; \
         trust it with --key PUB if you trust its owner",
        trusted.join(", ")
    )]
    UntrustedKey {
        /// The key ID in the signature.
        key_id: String,
        /// The IDs of the trusted keys.
        trusted: Vec<String>,
    },
    /// The signature does not verify over the package with the key it names.
    #[error(
        "the package does not match its signature: it was changed after signing, or the \
         signature belongs to another file (or was itself edited); signed by key {key_id}: \
         get the package and its signature again from its publisher"
    )]
    Mismatch {
        /// The key ID in the signature.
        key_id: String,
    },
    /// The signature is valid but its trusted comment does not name a plugin and version.
    #[error(
        "the signature by key {key_id} is valid, but its trusted comment {comment:?} is not \
         `plugin-package name=NAME version=VERSION` ({reason}); {HOW_TO_SIGN}"
    )]
    TrustedComment {
        /// The key ID in the signature.
        key_id: String,
        /// The trusted comment found.
        comment: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A secret key file is not an unencrypted minisign secret key.
    #[cfg(feature = "sign")]
    #[error("{} is not a usable minisign secret key: {reason}", path.display())]
    SecretKey {
        /// The secret key file.
        path: PathBuf,
        /// What is wrong with it, and how to fix it.
        reason: String,
    },
    /// Key generation would overwrite an existing file.
    #[cfg(feature = "sign")]
    #[error(
        "{} already exists and is left alone: use another prefix, or delete the existing \
         key files if you mean to replace that key",
        path.display()
    )]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The plugin name or version cannot go into a trusted comment.
    #[cfg(feature = "sign")]
    #[error(
        "cannot sign for plugin {name:?} version {version}: {reason}; fix the name in \
         plugin.json"
    )]
    Unsignable {
        /// The plugin name given.
        name: String,
        /// The version given.
        version: semver::Version,
        /// Why it does not fit.
        reason: String,
    },
    /// minisign failed to generate a key or to sign.
    #[cfg(feature = "sign")]
    #[error("cannot {action}: {source}")]
    Minisign {
        /// What was being done, e.g. "generate a key pair".
        action: String,
        /// The minisign error.
        source: minisign::PError,
    },
}

/// A minisign public key the host trusts.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: minisign_verify::PublicKey,
    key_id: String,
    origin: String,
}

impl PublicKey {
    /// Reads a minisign public key file (as `minisign -G` or `plugctl keygen` write): an
    /// `untrusted comment:` line, then the key in base64. Reads at most 4 KiB, and only a
    /// regular file.
    pub fn from_file(path: &Path) -> Result<PublicKey, SignatureError> {
        let bytes =
            read_capped(path, MAX_KEY_FILE_BYTES).map_err(|source| SignatureError::Read {
                what: "public key",
                path: path.to_owned(),
                source,
            })?;
        let origin = format!("the file {}", path.display());
        let malformed = |reason: &str| SignatureError::MalformedPublicKey {
            origin: origin.clone(),
            reason: reason.to_owned(),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| malformed("it is not text"))?;
        let mut lines = text.lines().filter(|line| !line.trim().is_empty());
        let comment = lines.next().ok_or_else(|| malformed("it is empty"))?;
        if !comment.starts_with("untrusted comment:") {
            return Err(malformed(
                "its first line is not an `untrusted comment:` line",
            ));
        }
        let encoded = lines
            .next()
            .ok_or_else(|| malformed("the key line after the comment is missing"))?;
        if lines.next().is_some() {
            return Err(malformed(
                "it has more than two lines (a signature file? pass the `.pub` file)",
            ));
        }
        Self::decode(encoded.trim(), origin)
    }

    /// Reads a public key given as its base64 text (the second line of a `.pub` file, as
    /// `minisign -P` takes it).
    pub fn from_base64(text: &str) -> Result<PublicKey, SignatureError> {
        let text = text.trim();
        let shown: String = text.chars().take(60).collect();
        Self::decode(text, format!("the base64 key {shown:?}"))
    }

    fn decode(encoded: &str, origin: String) -> Result<PublicKey, SignatureError> {
        let malformed = |reason: String| SignatureError::MalformedPublicKey {
            origin: origin.clone(),
            reason,
        };
        let bytes = decode_base64(encoded)
            .ok_or_else(|| malformed("the key line is not valid base64".to_owned()))?;
        match bytes.len() {
            42 => {}
            SECRET_KEY_BYTES => {
                return Err(malformed(
                    "it is a secret key (keep it private; pass the `.pub` file)".to_owned(),
                ))
            }
            n => return Err(malformed(format!("it decodes to {n} bytes, not 42"))),
        }
        if &bytes[..2] != b"Ed" {
            return Err(malformed(format!(
                "its algorithm is {:?}, not Ed25519 (\"Ed\")",
                String::from_utf8_lossy(&bytes[..2])
            )));
        }
        let key = minisign_verify::PublicKey::from_base64(encoded)
            .map_err(|e| malformed(e.to_string()))?;
        Ok(PublicKey {
            key,
            key_id: key_id_of(&bytes[2..10]),
            origin,
        })
    }

    /// The key ID as minisign prints it in its messages and public key comments: the
    /// little-endian `u64` in uppercase hex, without leading zeros.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Where the key came from ("the file PATH", or "the base64 key …"), for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// The keys whose signatures the host accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// No key.
    pub fn new() -> Self {
        Self::default()
    }

    /// The public key files `paths`, each read with [`PublicKey::from_file`].
    pub fn from_files<I, P>(paths: I) -> Result<Self, SignatureError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        let mut keys = Self::new();
        for path in paths {
            keys.add(PublicKey::from_file(path.as_ref())?);
        }
        Ok(keys)
    }

    /// Trusts `key` too.
    pub fn add(&mut self, key: PublicKey) {
        self.keys.push(key);
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The trusted keys, in the order added.
    pub fn iter(&self) -> std::slice::Iter<'_, PublicKey> {
        self.keys.iter()
    }

    /// Verifies `signature` (the text of a `.minisig` file) over `package`: it must be made
    /// by one of these keys, match the bytes, and carry a trusted comment naming the plugin
    /// and version. Returns what it vouches for; the caller compares that with the package's
    /// `plugin.json`.
    pub fn verify(&self, package: &[u8], signature: &str) -> Result<Signed, SignatureError> {
        verify(package, signature, self)
    }
}

impl<'a> IntoIterator for &'a TrustedKeys {
    type Item = &'a PublicKey;
    type IntoIter = std::slice::Iter<'a, PublicKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// What a valid signature vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The key that signed, as minisign prints its ID.
    pub key_id: String,
    /// The plugin name the trusted comment binds.
    pub name: String,
    /// The plugin version the trusted comment binds.
    pub version: semver::Version,
}

/// The trusted comment a package signature carries: binds the plugin's name and version.
pub(crate) fn trusted_comment(name: &str, version: &semver::Version) -> String {
    format!("{COMMENT_TAG} name={name} version={version}")
}

/// Reads a trusted comment [`trusted_comment`] wrote back into the name and version; the
/// error says what is wrong.
pub(crate) fn parse_trusted_comment(comment: &str) -> Result<(String, semver::Version), String> {
    let mut fields = comment.split(' ');
    if fields.next() != Some(COMMENT_TAG) {
        return Err(format!("it does not start with `{COMMENT_TAG} `"));
    }
    let name = fields
        .next()
        .and_then(|field| field.strip_prefix("name="))
        .ok_or("`name=` does not follow")?;
    let version = fields
        .next()
        .and_then(|field| field.strip_prefix("version="))
        .ok_or("`version=` does not follow the name")?;
    if fields.next().is_some() {
        return Err("something follows the version".to_owned());
    }
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("the name {name:?} is empty or holds blanks"));
    }
    let version = semver::Version::parse(version)
        .map_err(|e| format!("the version {version:?} is not a semantic version: {e}"))?;
    if trusted_comment(name, &version) != comment {
        return Err("it is not in the canonical form".to_owned());
    }
    Ok((name.to_owned(), version))
}

/// Verifies `signature` (the text of a `.minisig` file) over `package` with `keys`.
pub(crate) fn verify(
    package: &[u8],
    signature: &str,
    keys: &TrustedKeys,
) -> Result<Signed, SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoTrustedKeys);
    }
    let (parsed, key_id) = parse_signature(signature)?;
    let candidates: Vec<&PublicKey> = keys.iter().filter(|k| k.key_id == key_id).collect();
    if candidates.is_empty() {
        return Err(SignatureError::UntrustedKey {
            key_id,
            trusted: keys.iter().map(|k| k.key_id.clone()).collect(),
        });
    }
    // Two keys may share an ID (it is 8 random bytes, or chosen by someone): any may match.
    let mut outcome = Err(SignatureError::Mismatch {
        key_id: key_id.clone(),
    });
    for key in candidates {
        match key.key.verify(package, &parsed, true) {
            Ok(()) => {
                outcome = Ok(());
                break;
            }
            Err(minisign_verify::Error::InvalidSignature) => {}
            Err(e) => {
                outcome = Err(SignatureError::MalformedSignature {
                    reason: e.to_string(),
                })
            }
        }
    }
    outcome?;
    let comment = parsed.trusted_comment();
    let (name, version) =
        parse_trusted_comment(comment).map_err(|reason| SignatureError::TrustedComment {
            key_id: key_id.clone(),
            comment: comment.to_owned(),
            reason,
        })?;
    Ok(Signed {
        key_id,
        name,
        version,
    })
}

/// Parses `.minisig` text; returns it and the signing key's ID.
fn parse_signature(text: &str) -> Result<(minisign_verify::Signature, String), SignatureError> {
    let malformed = |reason: &str| SignatureError::MalformedSignature {
        reason: reason.to_owned(),
    };
    let cap = crate::Limits::default().max_signature_bytes;
    if text.len() as u64 > cap {
        return Err(malformed(&format!("it is longer than {cap} bytes")));
    }
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .iter()
        .rposition(|line| !line.trim().is_empty())
        .map_or(0, |last| last + 1);
    if end != 4 {
        return Err(malformed(&format!("it has {end} lines, not 4")));
    }
    if !lines[0].starts_with("untrusted comment:") {
        return Err(malformed("line 1 is not an `untrusted comment:` line"));
    }
    if !lines[2].starts_with("trusted comment: ") {
        return Err(malformed("line 3 is not a `trusted comment: ` line"));
    }
    let bytes = decode_base64(lines[1]).ok_or_else(|| malformed("line 2 is not base64"))?;
    if bytes.len() != 74 {
        return Err(malformed(&format!(
            "line 2 decodes to {} bytes, not 74",
            bytes.len()
        )));
    }
    if &bytes[..2] != b"ED" && &bytes[..2] != b"Ed" {
        return Err(malformed(
            "its algorithm is neither Ed25519 nor prehashed Ed25519",
        ));
    }
    let key_id = key_id_of(&bytes[2..10]);
    let parsed = minisign_verify::Signature::decode(text)
        .map_err(|e| malformed(&format!("line 2 or 4 is damaged ({e})")))?;
    Ok((parsed, key_id))
}

/// A minisign key ID as minisign prints it: the 8 bytes as a little-endian u64, in hex.
fn key_id_of(bytes: &[u8]) -> String {
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    format!("{:X}", u64::from_le_bytes(id))
}

/// The decoded size of a minisign secret key.
const SECRET_KEY_BYTES: usize = 158;

/// Strict standard base64 (with padding), as minisign writes it.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() % 4 != 0 {
        return None;
    }
    let groups = bytes.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != groups) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    Some(out)
}

/// Reads a key or signature file the user named, capped at `cap` bytes.
pub(crate) fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    crate::format::read_capped(path, cap, crate::format::Links::Follow).map_err(io::Error::from)
}

#[cfg(test)]
mod tests;
