//! Tests of the sign area: key generation, signing and verification, and interoperation
//! with the `minisign` tool, which must be installed (`apt-get install minisign`; `.ci/run`
//! installs it). Without it, run the rest with `cargo test -p plugin-package -- --skip minisign`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use plugin_package::{generate_keypair, KeyPair, PublicKey, SignatureError, Signed, TrustedKeys};

fn version(text: &str) -> semver::Version {
    semver::Version::parse(text).expect("test version")
}

fn keypair(dir: &Path, name: &str) -> KeyPair {
    generate_keypair(&dir.join(name)).expect("generate a key pair")
}

fn trusting(pairs: &[&KeyPair]) -> TrustedKeys {
    TrustedKeys::from_files(pairs.iter().map(|pair| &pair.public)).expect("read the public keys")
}

/// Some bytes standing in for a package: verification does not look inside.
fn package_bytes() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn expect_refusal(result: Result<Signed, SignatureError>) -> (SignatureError, String) {
    let err = result.expect_err("the signature should be refused");
    let message = err.to_string();
    (err, message)
}

#[test]
fn keygen_writes_a_private_secret_key_and_a_minisign_public_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "release");
    assert_eq!(pair.secret, dir.path().join("release.key"));
    assert_eq!(pair.public, dir.path().join("release.pub"));
    assert!((1..=16).contains(&pair.key_id.len()), "{}", pair.key_id);
    assert!(pair
        .key_id
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, 'A'..='F')));

    let public = std::fs::read_to_string(&pair.public).expect("read the public key");
    let lines: Vec<&str> = public.lines().collect();
    assert_eq!(lines.len(), 2, "{public}");
    assert_eq!(
        lines[0],
        format!("untrusted comment: minisign public key {}", pair.key_id)
    );
    let key = PublicKey::from_file(&pair.public).expect("read it back");
    assert_eq!(key.key_id(), pair.key_id);
    assert!(key.origin().contains("release.pub"), "{}", key.origin());
    let same = PublicKey::from_base64(lines[1]).expect("the base64 line alone");
    assert_eq!(same.key_id(), pair.key_id);

    let secret = std::fs::read_to_string(&pair.secret).expect("read the secret key");
    assert!(secret.starts_with("untrusted comment: "), "{secret}");
    // "Ed", then no key derivation (0, 0), then the "B2" checksum: minisign's `-W` form.
    assert!(secret
        .lines()
        .nth(1)
        .is_some_and(|l| l.starts_with("RWQAAEIy")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pair.secret)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let other = keypair(dir.path(), "other");
    assert_ne!(other.key_id, pair.key_id);
}

#[test]
fn keygen_refuses_to_overwrite_either_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let secret_before = std::fs::read(&pair.secret).expect("read");
    let public_before = std::fs::read(&pair.public).expect("read");
    let err = generate_keypair(&dir.path().join("k")).expect_err("both files exist");
    let message = err.to_string();
    assert!(
        message.contains("k.key") && message.contains("another prefix"),
        "{message}"
    );
    assert_eq!(std::fs::read(&pair.secret).expect("read"), secret_before);
    assert_eq!(std::fs::read(&pair.public).expect("read"), public_before);

    // Only the public file is in the way: nothing is written, not even the secret key.
    std::fs::write(dir.path().join("lone.pub"), "mine").expect("write");
    let err = generate_keypair(&dir.path().join("lone")).expect_err("lone.pub exists");
    assert!(err.to_string().contains("lone.pub"), "{err}");
    assert!(!dir.path().join("lone.key").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("lone.pub")).expect("read"),
        "mine"
    );
}

#[test]
fn a_signature_verifies_and_reports_name_version_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let package = package_bytes();
    let signature = pair
        .sign_bytes(&package, "hello", &version("1.2.3-rc.1"))
        .expect("sign");
    let lines: Vec<&str> = signature.lines().collect();
    assert_eq!(lines.len(), 4, "{signature}");
    assert!(lines[0].starts_with("untrusted comment: "), "{signature}");
    assert_eq!(
        lines[2],
        "trusted comment: plugin-package name=hello version=1.2.3-rc.1"
    );

    let other = keypair(dir.path(), "other");
    let keys = trusting(&[&other, &pair]);
    assert_eq!((keys.len(), keys.is_empty()), (2, false));
    let ids: Vec<&str> = keys.iter().map(PublicKey::key_id).collect();
    assert_eq!(ids, [other.key_id.as_str(), pair.key_id.as_str()]);
    let signed = keys.verify(&package, &signature).expect("verify");
    assert_eq!(
        signed,
        Signed {
            key_id: pair.key_id.clone(),
            name: "hello".to_owned(),
            version: version("1.2.3-rc.1"),
        }
    );
}

#[test]
fn one_changed_byte_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let mut package = package_bytes();
    let signature = pair
        .sign_bytes(&package, "hello", &version("0.1.0"))
        .expect("sign");
    let keys = trusting(&[&pair]);
    package[2500] ^= 0x01;
    let (err, message) = expect_refusal(keys.verify(&package, &signature));
    assert!(matches!(err, SignatureError::Mismatch { .. }), "{err:?}");
    assert!(
        message.contains(
            "the package does not match its signature: it was changed after signing, or the \
             signature belongs to another file"
        ),
        "{message}"
    );
    package[2500] ^= 0x01;
    package.push(0);
    let (err, _) = expect_refusal(keys.verify(&package, &signature));
    assert!(matches!(err, SignatureError::Mismatch { .. }), "{err:?}");
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused_naming_both_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let signer = keypair(dir.path(), "signer");
    let trusted = keypair(dir.path(), "trusted");
    let package = package_bytes();
    let signature = signer
        .sign_bytes(&package, "hello", &version("0.1.0"))
        .expect("sign");
    let (err, message) = expect_refusal(trusting(&[&trusted]).verify(&package, &signature));
    assert!(
        matches!(err, SignatureError::UntrustedKey { .. }),
        "{err:?}"
    );
    assert!(
        message.contains(&format!("signed by key {}", signer.key_id)),
        "{message}"
    );
    assert!(
        message.contains(&format!("[{}]", trusted.key_id)),
        "{message}"
    );
    assert!(message.contains("--key"), "{message}");
}

#[test]
fn no_trusted_key_is_its_own_refusal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let package = package_bytes();
    let signature = pair
        .sign_bytes(&package, "hello", &version("0.1.0"))
        .expect("sign");
    let keys = TrustedKeys::new();
    assert!(keys.is_empty() && keys.iter().next().is_none());
    let (err, message) = expect_refusal(keys.verify(&package, &signature));
    assert!(matches!(err, SignatureError::NoTrustedKeys), "{err:?}");
    assert!(message.contains("--key"), "{message}");
}

#[test]
fn malformed_signatures_are_refused_as_such() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let package = package_bytes();
    let good = pair
        .sign_bytes(&package, "hello", &version("0.1.0"))
        .expect("sign");
    let lines: Vec<&str> = good.lines().collect();
    let joined = |l: &[&str]| l.join("\n");
    let short_sig = format!("{}AAAA", &lines[1][..lines[1].len() - 8]);
    let cases = [
        String::new(),
        "not a signature".to_owned(),
        joined(&lines[..3]),
        joined(&[lines[0], "!!!!", lines[2], lines[3]]),
        joined(&[lines[0], &short_sig, lines[2], lines[3]]),
        joined(&[lines[0], lines[1], "no trusted comment", lines[3]]),
        joined(&[lines[0], lines[1], lines[2], "AAAA"]),
        joined(&["comment", lines[1], lines[2], lines[3]]),
        format!("{good}extra line\n"),
        "x".repeat(5000),
    ];
    let keys = trusting(&[&pair]);
    for case in &cases {
        let (err, message) = expect_refusal(keys.verify(&package, case));
        assert!(
            matches!(err, SignatureError::MalformedSignature { .. }),
            "{case:?}: {err:?}"
        );
        assert!(message.contains("not a minisign signature"), "{message}");
    }
    // Line endings are not part of the signature.
    keys.verify(&package, &good.replace('\n', "\r\n"))
        .expect("CRLF line endings");
}

#[test]
fn the_trusted_comment_is_reported_as_signed_and_cannot_be_edited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let keys = trusting(&[&pair]);
    let package = package_bytes();
    // The bytes verify; what the comment claims is for the installer to compare.
    let signature = pair
        .sign_bytes(&package, "other-plugin", &version("9.9.9"))
        .expect("sign");
    let signed = keys.verify(&package, &signature).expect("verify");
    assert_eq!(
        (signed.name.as_str(), signed.version),
        ("other-plugin", version("9.9.9"))
    );

    let edited = signature.replace("name=other-plugin", "name=hello");
    assert_ne!(edited, signature);
    let (err, _) = expect_refusal(keys.verify(&package, &edited));
    assert!(matches!(err, SignatureError::Mismatch { .. }), "{err:?}");

    let err = pair
        .sign_bytes(&package, "two words", &version("1.0.0"))
        .expect_err("a name with a blank cannot be bound");
    assert!(err.to_string().contains("two words"), "{err}");
}

#[test]
fn public_keys_that_are_not_public_keys_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let err = PublicKey::from_file(&pair.secret).expect_err("a secret key");
    assert!(err.to_string().contains("secret key"), "{err}");
    let err = PublicKey::from_file(dir.path()).expect_err("a directory");
    assert!(err.to_string().contains("folder"), "{err}");
    let big = dir.path().join("big.pub");
    std::fs::write(&big, "x".repeat(5000)).expect("write");
    let err = PublicKey::from_file(&big).expect_err("too large");
    assert!(err.to_string().contains("4096 bytes"), "{err}");
    let err = TrustedKeys::from_files([pair.public.clone(), dir.path().join("missing.pub")])
        .expect_err("a missing file");
    assert!(err.to_string().contains("missing.pub"), "{err}");
    let err = PublicKey::from_base64("RWQf6LRCGA9i").expect_err("truncated");
    assert!(
        err.to_string().contains("not a minisign public key"),
        "{err}"
    );
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo.pub");
        let status = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(status.success());
        let err = PublicKey::from_file(&fifo).expect_err("a FIFO");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

#[test]
fn a_password_protected_secret_key_is_refused_with_a_way_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let text = std::fs::read_to_string(&pair.secret).expect("read");
    // The first 6 bytes "Ed\0\0B2" become "EdScB2": scrypt-encrypted, as `minisign -G` makes.
    let encrypted = text.replacen("\nRWQAAEIy", "\nRWRTY0Iy", 1);
    assert_ne!(encrypted, text);
    std::fs::write(&pair.secret, encrypted).expect("write");
    let err = pair
        .sign_bytes(b"bytes", "hello", &version("0.1.0"))
        .expect_err("encrypted key");
    let message = err.to_string();
    assert!(
        message.contains("password") && message.contains("minisign -C -W"),
        "{message}"
    );
}

/// Runs `minisign` in `dir`.
///
/// # Panics
///
/// If minisign is not installed: these tests check what they say, or fail.
fn minisign(dir: &Path, args: &[&str]) -> Output {
    match Command::new("minisign")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`minisign` is not installed: install it (`apt-get install -y minisign`), or run \
             the other tests with `--skip minisign`"
        ),
        Err(e) => panic!("cannot run minisign: {e}"),
    }
}

#[test]
fn minisign_verifies_our_signatures_and_prints_our_key_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = keypair(dir.path(), "k");
    let other = keypair(dir.path(), "other");
    let package = package_bytes();
    std::fs::write(dir.path().join("p.plg"), &package).expect("write");
    let signature = pair
        .sign_bytes(&package, "hello", &version("0.1.0"))
        .expect("sign");
    std::fs::write(dir.path().join("p.plg.minisig"), &signature).expect("write");
    let ok = minisign(dir.path(), &["-V", "-p", "k.pub", "-m", "p.plg"]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        stdout.contains("Trusted comment: plugin-package name=hello version=0.1.0"),
        "{stdout}"
    );
    // With the wrong key, minisign names both key IDs, formatted as we do.
    let wrong = minisign(dir.path(), &["-V", "-p", "other.pub", "-m", "p.plg"]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(stderr.contains(&pair.key_id), "{stderr}");
    assert!(stderr.contains(&other.key_id), "{stderr}");
}

#[test]
fn we_verify_minisign_signatures_and_sign_with_its_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| -> Output {
        let output = minisign(dir.path(), args);
        assert!(output.status.success(), "minisign {args:?}: {output:?}");
        output
    };
    run(&["-G", "-W", "-p", "m.pub", "-s", "m.key"]);
    let package = package_bytes();
    std::fs::write(dir.path().join("p.plg"), &package).expect("write");
    let comment = "plugin-package name=hello version=0.3.0";
    let sign = ["-S", "-s", "m.key", "-m", "p.plg", "-t", comment];
    run(&sign);
    let public = PublicKey::from_file(&dir.path().join("m.pub")).expect("minisign's key");
    let pub_text = std::fs::read_to_string(dir.path().join("m.pub")).expect("read");
    assert!(
        pub_text.contains(&format!("public key {}", public.key_id())),
        "{pub_text}"
    );
    let mut keys = TrustedKeys::new();
    keys.add(public.clone());
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("read");
    let signed = keys
        .verify(&package, &read("p.plg.minisig"))
        .expect("verify");
    assert_eq!(signed.key_id, public.key_id());
    assert_eq!(
        (signed.name.as_str(), signed.version),
        ("hello", version("0.3.0"))
    );

    // Legacy (not prehashed) signatures are accepted too.
    run(&[&sign[..], &["-l", "-x", "legacy.minisig"]].concat());
    keys.verify(&package, &read("legacy.minisig"))
        .expect("legacy");
    // minisign's default trusted comment is not ours: refused, with how to sign.
    run(&["-S", "-s", "m.key", "-m", "p.plg", "-x", "plain.minisig"]);
    let (err, message) = expect_refusal(keys.verify(&package, &read("plain.minisig")));
    assert!(
        matches!(err, SignatureError::TrustedComment { .. }),
        "{err:?}"
    );
    assert!(message.contains("plugctl sign"), "{message}");

    // minisign's unencrypted secret key signs for us, and minisign verifies the result.
    let theirs = KeyPair {
        secret: dir.path().join("m.key"),
        public: dir.path().join("m.pub"),
        key_id: public.key_id().to_owned(),
    };
    let ours = theirs
        .sign_bytes(&package, "hello", &version("0.3.0"))
        .expect("sign with minisign's key");
    std::fs::write(dir.path().join("ours.minisig"), &ours).expect("write");
    run(&["-V", "-p", "m.pub", "-m", "p.plg", "-x", "ours.minisig"]);
}

/// Needs `pack` and `archive::read_manifest`: passes once the archive work lands.
#[test]
fn sign_package_writes_a_signature_binding_the_manifest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = crate::util::fixtures().install(&dir.path().join("plugins"), "hello");
    let out = dir.path().join("hello.plg");
    let packed = plugin_package::pack(&plugin, Some(&out)).expect("pack");
    let pair = keypair(dir.path(), "k");
    let written: PathBuf = plugin_package::sign_package(&out, &pair.secret).expect("sign");
    assert_eq!(written, plugin_package::signature_path(&out));
    let signature = std::fs::read_to_string(&written).expect("read the signature");
    let package = std::fs::read(&out).expect("read the package");
    let signed = trusting(&[&pair])
        .verify(&package, &signature)
        .expect("verify");
    assert_eq!(signed.name, packed.name);
    assert_eq!(signed.version, packed.version);
    assert_eq!(signed.key_id, pair.key_id);
}
