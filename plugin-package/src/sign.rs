//! minisign (Ed25519) signatures over packages: trusted keys, verification, and (with the
//! `sign` feature) key generation and signing.

use std::path::{Path, PathBuf};

/// Why a signature or key was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Placeholder until the signature work lands.
    #[error("not implemented")]
    Unimplemented,
}

/// A minisign public key the host trusts.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key_id: String,
}

impl PublicKey {
    /// Reads a minisign public key file (as `minisign -G` or `plugctl keygen` write).
    pub fn from_file(path: &Path) -> Result<PublicKey, SignatureError> {
        let _ = path;
        Err(SignatureError::Unimplemented)
    }

    /// The key ID, as minisign prints it (16 uppercase hex digits).
    pub fn key_id(&self) -> &str {
        &self.key_id
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

    /// Trusts `key` too.
    pub fn add(&mut self, key: PublicKey) {
        self.keys.push(key);
    }

    /// The keys trusted.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
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
    format!("plugin-package name={name} version={version}")
}

/// Verifies `signature` (the text of a `.minisig` file) over `package` with `keys`.
pub(crate) fn verify(
    package: &[u8],
    signature: &str,
    keys: &TrustedKeys,
) -> Result<Signed, SignatureError> {
    let _ = (package, signature, keys);
    Err(SignatureError::Unimplemented)
}

/// The two files [`generate_keypair`] wrote.
#[cfg(feature = "sign")]
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// `PREFIX.key`: the secret key.
    pub secret: PathBuf,
    /// `PREFIX.pub`: the public key.
    pub public: PathBuf,
    /// The key ID, as minisign prints it.
    pub key_id: String,
}

/// Writes a new key pair to `PREFIX.key` and `PREFIX.pub`.
#[cfg(feature = "sign")]
pub fn generate_keypair(prefix: &Path) -> Result<KeyPair, crate::Error> {
    let _ = prefix;
    Err(SignatureError::Unimplemented.into())
}

/// Signs the package file `package` with the secret key file `secret_key`, writing
/// `FILE.plg.minisig` beside it; returns that path.
#[cfg(feature = "sign")]
pub fn sign_package(package: &Path, secret_key: &Path) -> Result<PathBuf, crate::Error> {
    let _ = (package, secret_key);
    Err(SignatureError::Unimplemented.into())
}
