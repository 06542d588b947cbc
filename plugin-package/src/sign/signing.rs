//! Key generation and signing (the `sign` feature): what tools that make packages need, and
//! hosts that only verify do not.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{
    decode_base64, key_id_of, parse_trusted_comment, read_capped, trusted_comment, SignatureError,
    MAX_KEY_FILE_BYTES, SECRET_KEY_BYTES,
};
use crate::{Error, Limits};

/// The untrusted comment of the signatures made here.
const SIGNATURE_COMMENT: &str = "signature from plugctl secret key";

/// The two files [`generate_keypair`] wrote.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// `PREFIX.key`: the secret key.
    pub secret: PathBuf,
    /// `PREFIX.pub`: the public key.
    pub public: PathBuf,
    /// The key ID, as minisign prints it.
    pub key_id: String,
}

impl KeyPair {
    /// Signs `package` (a package's bytes) for plugin `name` at `version` with this pair's
    /// secret key; returns the `.minisig` text. [`sign_package`] signs a package file.
    pub fn sign_bytes(
        &self,
        package: &[u8],
        name: &str,
        version: &semver::Version,
    ) -> Result<String, Error> {
        sign_bytes(package, name, version, &self.secret)
    }
}

/// Writes a new key pair to `PREFIX.key` and `PREFIX.pub`, in minisign's formats: the secret
/// key unencrypted (as `minisign -G -W` writes it), readable by its owner only (mode 0600);
/// the public key as `minisign public key KEYID` and the key in base64. Existing files are
/// never overwritten.
pub fn generate_keypair(prefix: &Path) -> Result<KeyPair, Error> {
    let with_extension = |extension: &str| {
        let mut path = prefix.as_os_str().to_owned();
        path.push(extension);
        PathBuf::from(path)
    };
    let (secret, public) = (with_extension(".key"), with_extension(".pub"));
    let minisign::KeyPair { pk, sk } =
        minisign::KeyPair::generate_unencrypted_keypair().map_err(|source| {
            SignatureError::Minisign {
                action: "generate a key pair".to_owned(),
                source,
            }
        })?;
    let key_id = key_id_of(sk.keynum());
    let secret_text = sk
        .to_box(Some(&format!(
            "plugctl secret key {key_id}, unencrypted: keep it private"
        )))
        .map_err(|source| SignatureError::Minisign {
            action: "encode the secret key".to_owned(),
            source,
        })?
        .to_string();
    let public_text = format!(
        "untrusted comment: minisign public key {key_id}\n{}\n",
        pk.to_base64()
    );

    let secret_file = create_new(&secret, 0o600)?;
    let public_file = match create_new(&public, 0o644) {
        Ok(file) => file,
        Err(e) => {
            // Ours, just created and still empty.
            let _ = std::fs::remove_file(&secret);
            return Err(e);
        }
    };
    let written = write_all_synced(secret_file, secret_text.as_bytes(), &secret)
        .and_then(|()| write_all_synced(public_file, public_text.as_bytes(), &public));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&secret);
        let _ = std::fs::remove_file(&public);
        return Err(e);
    }
    Ok(KeyPair {
        secret,
        public,
        key_id,
    })
}

/// Creates `path`, failing if anything is there; `mode` on Unix.
fn create_new(path: &Path, mode: u32) -> Result<File, Error> {
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => SignatureError::KeyFileExists {
            path: path.to_owned(),
        }
        .into(),
        _ => Error::io("create the key file", path)(e),
    })
}

fn write_all_synced(mut file: File, bytes: &[u8], path: &Path) -> Result<(), Error> {
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io("write the key file", path))
}

/// Signs `package` (a package's bytes) for plugin `name` at `version` with the unencrypted
/// minisign secret key file `secret_key`; returns the `.minisig` text. The trusted comment
/// is [`trusted_comment`]`(name, version)`. Public as [`KeyPair::sign_bytes`].
pub(crate) fn sign_bytes(
    package: &[u8],
    name: &str,
    version: &semver::Version,
    secret_key: &Path,
) -> Result<String, Error> {
    let comment = trusted_comment(name, version);
    if let Err(reason) = parse_trusted_comment(&comment) {
        return Err(SignatureError::Unsignable {
            name: name.to_owned(),
            version: version.clone(),
            reason,
        }
        .into());
    }
    let sk = read_secret_key(secret_key)?;
    let pk =
        minisign::PublicKey::from_secret_key(&sk).map_err(|source| SignatureError::Minisign {
            action: format!("derive the public key from {}", secret_key.display()),
            source,
        })?;
    // Given the public key, minisign checks the signature it made: a damaged key fails here.
    let signature = minisign::sign(
        Some(&pk),
        &sk,
        io::Cursor::new(package),
        Some(&comment),
        Some(SIGNATURE_COMMENT),
    )
    .map_err(|source| SignatureError::Minisign {
        action: format!("sign with the secret key {}", secret_key.display()),
        source,
    })?;
    Ok(signature.into_string())
}

/// Reads an unencrypted minisign secret key file (`plugctl keygen`'s, or `minisign -G -W`'s).
fn read_secret_key(path: &Path) -> Result<minisign::SecretKey, SignatureError> {
    let mut bytes =
        read_capped(path, MAX_KEY_FILE_BYTES).map_err(|source| SignatureError::Read {
            what: "secret key",
            path: path.to_owned(),
            source,
        })?;
    let parsed = parse_secret_key(&bytes);
    bytes.fill(0);
    parsed.map_err(|reason| SignatureError::SecretKey {
        path: path.to_owned(),
        reason,
    })
}

fn parse_secret_key(bytes: &[u8]) -> Result<minisign::SecretKey, String> {
    const HINT: &str = "pass the `.key` file `plugctl keygen` or `minisign -G -W` wrote";
    let text = std::str::from_utf8(bytes).map_err(|_| format!("it is not text; {HINT}"))?;
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    match lines.next() {
        Some(line) if line.starts_with("untrusted comment:") => {}
        _ => {
            return Err(format!(
                "it does not start with an `untrusted comment:` line; {HINT}"
            ))
        }
    }
    let encoded = lines.next().unwrap_or_default().trim();
    let mut raw = decode_base64(encoded)
        .ok_or_else(|| format!("its second line is not a base64 key; {HINT}"))?;
    let checked = check_secret_key(&raw);
    let key = checked
        .and_then(|()| minisign::SecretKey::from_bytes(&raw).map_err(|e| format!("{e}; {HINT}")));
    raw.fill(0);
    key
}

fn check_secret_key(raw: &[u8]) -> Result<(), String> {
    if raw.len() == 42 {
        return Err("it is a public key; pass the secret `.key` file beside it".to_owned());
    }
    if raw.len() != SECRET_KEY_BYTES {
        return Err(format!(
            "it decodes to {} bytes, not {SECRET_KEY_BYTES}; pass a minisign secret key",
            raw.len()
        ));
    }
    if &raw[..2] != b"Ed" {
        return Err("its algorithm is not Ed25519".to_owned());
    }
    match &raw[2..4] {
        [0, 0] => Ok(()),
        b"Sc" => Err(
            "it is protected by a password, which plugctl does not ask for; \
             remove the password with `minisign -C -W -s KEY` (then keep the file private), \
             or make an unencrypted key with `plugctl keygen`"
                .to_owned(),
        ),
        _ => Err("its key derivation algorithm is unknown".to_owned()),
    }
}

/// Signs the package file `package` with the secret key file `secret_key`, writing
/// `FILE.plg.minisig` beside it (through a temporary file renamed into place); returns that
/// path. The trusted comment names the plugin and version from the package's `plugin.json`.
pub fn sign_package(package: &Path, secret_key: &Path) -> Result<PathBuf, Error> {
    let limits = Limits::default();
    let bytes = read_capped(package, limits.max_package_bytes)
        .map_err(Error::io("read the package", package))?;
    let manifest = crate::archive::read_manifest(&bytes, &limits)?;
    let text = sign_bytes(&bytes, &manifest.name, &manifest.version, secret_key)?;
    let path = crate::signature_path(package);
    let dir = match package.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(Error::io("create a temporary signature file in", dir))?;
    temp.write_all(text.as_bytes())
        .and_then(|()| {
            #[cfg(unix)]
            std::fs::set_permissions(
                temp.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )?;
            temp.as_file().sync_all()
        })
        .map_err(Error::io("write the signature", temp.path()))?;
    temp.persist(&path)
        .map_err(|e| Error::io("write the signature", &path)(e.error))?;
    Ok(path)
}
