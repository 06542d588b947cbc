//! Installing packages through `Installer`: the round trip, every refusal of the trust model,
//! downgrades, the hot-upgrade path, and a base directory left as it was by each failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plugin_host::{Context, PluginManager};
use plugin_package::{
    generate_keypair, pack, sign_package, signature_path, Error, Installer, KeyPair, PublicKey,
};
use plugin_test_support::versioned_variant;

use crate::util::fixtures;

/// A key pair in its own temporary folder.
pub(crate) struct Keys {
    _dir: tempfile::TempDir,
    pub(crate) pair: KeyPair,
}

impl Keys {
    pub(crate) fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let pair = generate_keypair(&dir.path().join("release")).unwrap();
        Keys { _dir: dir, pair }
    }

    pub(crate) fn public(&self) -> PublicKey {
        PublicKey::from_file(&self.pair.public).unwrap()
    }
}

/// Packs the plugin folder `dir` into `out_dir`, signed with `keys` when given.
pub(crate) fn packed(dir: &Path, out_dir: &Path, keys: Option<&Keys>) -> PathBuf {
    let manifest = plugin_host::Manifest::parse(
        &std::fs::read_to_string(dir.join("plugin.json")).unwrap(),
        &dir.join("plugin.json"),
    )
    .unwrap();
    let out = out_dir.join(plugin_package::package_file_name(
        &manifest.name,
        &manifest.version,
    ));
    let package = pack(dir, Some(&out)).unwrap();
    if let Some(keys) = keys {
        sign_package(&package.path, &keys.pair.secret).unwrap();
    }
    package.path
}

/// Every entry under `dir`: relative path → (mode, bytes) for files, (mode, none) for
/// folders. Equal snapshots mean the folder was left byte for byte as it was.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Option<Vec<u8>>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            #[cfg(unix)]
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            #[cfg(not(unix))]
            let mode = 0;
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if meta.is_dir() {
                out.insert(rel, (mode, None));
                walk(root, &path, out);
            } else {
                out.insert(rel, (mode, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A base directory holding `hello`, a manager for it, and a signed package of `versioned`
/// at `version` in a separate folder.
struct Setup {
    base: tempfile::TempDir,
    packages: tempfile::TempDir,
    keys: Keys,
    manager: PluginManager,
}

impl Setup {
    fn new() -> Setup {
        let base = tempfile::tempdir().unwrap();
        fixtures().install(base.path(), "hello");
        let manager = PluginManager::new(base.path());
        Setup {
            base,
            packages: tempfile::tempdir().unwrap(),
            keys: Keys::new(),
            manager,
        }
    }

    fn package(&self, version: &str, signed: bool) -> PathBuf {
        let dir = versioned_variant(version, &[]);
        packed(&dir, self.packages.path(), signed.then_some(&self.keys))
    }

    fn installer(&self) -> Installer<'_> {
        Installer::new(&self.manager).trust(self.keys.public())
    }

    fn call_version(&self) -> String {
        self.manager.load_plugin("versioned").unwrap();
        let ctx = Context::background();
        self.manager
            .get("versioned")
            .unwrap()
            .execute(&ctx)
            .unwrap();
        ctx.get::<String>("version_at_end").unwrap().unwrap()
    }
}

#[test]
fn a_signed_package_installs_loads_and_runs() {
    let setup = Setup::new();
    let package = setup.package("0.3.0", true);
    let installed = setup.installer().install_file(&package).unwrap();
    assert_eq!(installed.name, "versioned");
    assert_eq!(installed.version, semver::Version::new(0, 3, 0));
    assert_eq!(installed.previous, None);
    assert_eq!(
        installed.signed_by.as_deref(),
        Some(setup.keys.pair.key_id.as_str())
    );
    assert_eq!(installed.dir, setup.base.path().join("versioned"));
    assert_eq!(setup.call_version(), "0.3.0");
    // Nothing but the plugin folders is left in the base directory.
    let mut names: Vec<_> = std::fs::read_dir(setup.base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["hello", "versioned"]);
}

#[test]
fn each_untrusted_or_tampered_package_is_refused_and_the_base_is_unchanged() {
    let setup = Setup::new();
    let good = setup.package("0.3.0", true);
    let other_keys = Keys::new();
    let scratch = tempfile::tempdir().unwrap();

    // One flipped byte in the middle of the package.
    let flipped = scratch.path().join("flipped").join("versioned-0.3.0.plg");
    std::fs::create_dir_all(flipped.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&flipped, &bytes).unwrap();
    std::fs::copy(signature_path(&good), signature_path(&flipped)).unwrap();

    // Unsigned.
    let unsigned_dir = tempfile::tempdir().unwrap();
    let unsigned = packed(&versioned_variant("0.3.0", &[]), unsigned_dir.path(), None);

    // Renamed to pass for another version, signature and all.
    let renamed = scratch.path().join("versioned-9.9.9.plg");
    std::fs::copy(&good, &renamed).unwrap();
    std::fs::copy(signature_path(&good), signature_path(&renamed)).unwrap();

    type Case<'a> = (&'a str, &'a Path, Installer<'a>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "one flipped byte",
            &flipped,
            setup.installer(),
            "does not match",
        ),
        (
            "the wrong key",
            &good,
            Installer::new(&setup.manager).trust(other_keys.public()),
            &setup.keys.pair.key_id,
        ),
        (
            "unsigned",
            &unsigned,
            setup.installer(),
            "no trusted signature",
        ),
        (
            "renamed",
            &renamed,
            setup.installer(),
            "versioned-0.3.0.plg",
        ),
        (
            "a wrong pinned digest",
            &unsigned,
            setup.installer().sha256("0".repeat(64)),
            "pinned",
        ),
    ];
    let before = snapshot(setup.base.path());
    for (what, package, installer, expected) in cases {
        let err = installer.install_file(package).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{what}: {message}");
        assert_eq!(snapshot(setup.base.path()), before, "{what}: base changed");
    }
}

#[test]
fn a_signature_for_another_plugin_or_version_is_refused() {
    let setup = Setup::new();
    let package = setup.package("0.3.0", false);
    let bytes = std::fs::read(&package).unwrap();
    let lie = setup
        .keys
        .pair
        .sign_bytes(&bytes, "versioned", &semver::Version::new(0, 4, 0))
        .unwrap();
    std::fs::write(signature_path(&package), lie).unwrap();
    let before = snapshot(setup.base.path());
    let err = setup.installer().install_file(&package).unwrap_err();
    assert!(matches!(err, Error::SignedForAnother { .. }), "{err}");
    assert!(err.to_string().contains("0.4.0"), "{err}");
    // The message names the package file it is about.
    let path = package.display().to_string();
    assert!(err.to_string().starts_with(&path), "{err}");
    assert_eq!(snapshot(setup.base.path()), before);
}

#[test]
fn a_pinned_digest_or_an_explicit_opt_out_stands_in_for_a_signature() {
    let setup = Setup::new();
    let package = setup.package("0.3.0", false);
    let digest = plugin_host::sha256_file(&package).unwrap();
    let installed = Installer::new(&setup.manager)
        .sha256(digest.to_uppercase())
        .install_file(&package)
        .unwrap();
    assert_eq!(installed.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(installed.signed_by, None);

    let other = tempfile::tempdir().unwrap();
    let manager = PluginManager::new(other.path());
    Installer::new(&manager)
        .allow_unsigned(true)
        .install_file(&package)
        .unwrap();
    assert!(other.path().join("versioned").join("plugin.json").is_file());
}

#[test]
fn a_signature_is_not_required_to_verify_when_no_key_is_trusted_and_a_digest_is_pinned() {
    let setup = Setup::new();
    let package = setup.package("0.3.0", true);
    let digest = plugin_host::sha256_file(&package).unwrap();
    let installed = Installer::new(&setup.manager)
        .sha256(&digest)
        .install_file(&package)
        .unwrap();
    assert_eq!(installed.signed_by, None, "no key was trusted to check it");
    let err = Installer::new(&setup.manager)
        .force(true)
        .install_file(&package)
        .unwrap_err();
    assert!(err.to_string().contains("no key is trusted"), "{err}");
}

#[test]
fn an_older_version_over_a_newer_one_is_refused_unless_forced() {
    let setup = Setup::new();
    setup
        .installer()
        .install_file(setup.package("0.3.0", true))
        .unwrap();
    let old = setup.package("0.2.0", true);
    let before = snapshot(setup.base.path());
    let err = setup.installer().install_file(&old).unwrap_err();
    assert!(matches!(err, Error::Downgrade { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(snapshot(setup.base.path()), before);

    let installed = setup.installer().force(true).install_file(&old).unwrap();
    assert_eq!(installed.previous, Some(semver::Version::new(0, 3, 0)));
    assert_eq!(setup.call_version(), "0.2.0");
}

#[test]
fn a_running_plugin_is_replaced_through_a_hot_upgrade() {
    let setup = Setup::new();
    setup
        .installer()
        .install_file(setup.package("0.2.0", true))
        .unwrap();
    assert_eq!(setup.call_version(), "0.2.0");
    let handle = setup.manager.get("versioned").unwrap();

    let installed = setup
        .installer()
        .install_file(setup.package("0.3.0", true))
        .unwrap();
    let upgraded = installed.upgraded.expect("a running plugin is upgraded");
    assert_eq!(upgraded.from, Some(semver::Version::new(0, 2, 0)));
    // The handle taken before the install now runs the new version, and the folder on disk
    // holds it for the next start.
    let ctx = Context::background();
    handle.execute(&ctx).unwrap();
    assert_eq!(
        ctx.get::<String>("version_at_end").unwrap().unwrap(),
        "0.3.0"
    );
    let on_disk = plugin_host::Manifest::load(&setup.base.path().join("versioned")).unwrap();
    assert_eq!(on_disk.version, semver::Version::new(0, 3, 0));
}

#[test]
fn verify_file_reports_the_signer_and_refuses_a_missing_signature() {
    let setup = Setup::new();
    let package = setup.package("0.3.0", true);
    let mut keys = plugin_package::TrustedKeys::new();
    keys.add(setup.keys.public());
    let verified = plugin_package::verify_file(&package, &keys).unwrap();
    assert_eq!(verified.name, "versioned");
    assert_eq!(verified.key_id, setup.keys.pair.key_id);
    assert_eq!(verified.sha256, plugin_host::sha256_file(&package).unwrap());

    std::fs::remove_file(signature_path(&package)).unwrap();
    let err = plugin_package::verify_file(&package, &keys).unwrap_err();
    assert!(matches!(err, Error::Unsigned { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn a_fifo_given_as_the_package_is_refused_without_blocking() {
    let setup = Setup::new();
    let fifo = setup.packages.path().join("versioned-0.3.0.plg");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let err = setup.installer().install_file(&fifo).unwrap_err();
    assert!(matches!(err, Error::NotAFile { .. }), "{err}");
}

mod from_a_url {
    use std::time::{Duration, Instant};

    use plugin_package::download::{DownloadError, DownloadOptions};

    use super::*;
    use crate::server::{Response, Server};

    #[test]
    fn a_signed_package_downloads_with_its_signature_and_installs() {
        let setup = Setup::new();
        let package = setup.package("0.3.0", true);
        let server = Server::start(vec![
            (
                "/versioned-0.3.0.plg",
                Response::Bytes(std::fs::read(&package).unwrap()),
            ),
            (
                "/versioned-0.3.0.plg.minisig",
                Response::Bytes(std::fs::read(signature_path(&package)).unwrap()),
            ),
        ]);
        let installed = setup
            .installer()
            .install_url(&server.url("/versioned-0.3.0.plg"))
            .unwrap();
        assert_eq!(
            installed.signed_by.as_deref(),
            Some(setup.keys.pair.key_id.as_str())
        );
        assert_eq!(setup.call_version(), "0.3.0");
        assert_eq!(
            server.requests(),
            ["/versioned-0.3.0.plg", "/versioned-0.3.0.plg.minisig"]
        );
    }

    #[test]
    fn the_signature_download_has_its_own_cap_and_no_progress_bar() {
        let setup = Setup::new();
        let package = setup.package("0.3.0", true);
        let bytes = std::fs::read(&package).unwrap();
        let total = bytes.len() as u64;
        let server = Server::start(vec![
            ("/big/versioned-0.3.0.plg", Response::Bytes(bytes.clone())),
            (
                "/big/versioned-0.3.0.plg.minisig",
                Response::Bytes(vec![b'x'; 64 << 10]),
            ),
            ("/bad/versioned-0.3.0.plg", Response::Bytes(bytes)),
            (
                "/bad/versioned-0.3.0.plg.minisig",
                Response::Bytes(vec![b'x'; 100]),
            ),
        ]);
        // A 64 KiB "signature" is over the 4 KiB cap of signatures, not the package's.
        let err = setup
            .installer()
            .install_url(&server.url("/big/versioned-0.3.0.plg"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Download(DownloadError::TooLarge { limit: 4096, .. })
            ),
            "{err}"
        );

        // The progress callback reports the package's download only, not the signature's.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let options = DownloadOptions {
            progress: Some({
                let seen = seen.clone();
                std::sync::Arc::new(move |_done, total| seen.lock().unwrap().push(total))
            }),
            ..DownloadOptions::default()
        };
        let err = setup
            .installer()
            .download_options(options)
            .install_url(&server.url("/bad/versioned-0.3.0.plg"))
            .unwrap_err();
        assert!(matches!(err, Error::Signature(_)), "{err}");
        let totals = seen.lock().unwrap().clone();
        assert!(!totals.is_empty());
        assert!(totals.iter().all(|t| *t == Some(total)), "{totals:?}");
    }

    #[test]
    fn a_pinned_digest_installs_an_unsigned_download_and_refuses_other_bytes() {
        let setup = Setup::new();
        let package = setup.package("0.3.0", false);
        let bytes = std::fs::read(&package).unwrap();
        let digest = plugin_host::sha256_file(&package).unwrap();
        let server = Server::start(vec![("/download", Response::Bytes(bytes))]);
        let url = server.url("/download");

        // A URL needs a signature or a digest: the opt-out for files does not apply.
        let err = Installer::new(&setup.manager)
            .allow_unsigned(true)
            .install_url(&url)
            .unwrap_err();
        assert!(matches!(err, Error::Unsigned { .. }), "{err}");
        assert!(server.requests().is_empty(), "nothing is fetched before");

        let before = snapshot(setup.base.path());
        let err = Installer::new(&setup.manager)
            .sha256("ab".repeat(32))
            .install_url(&url)
            .unwrap_err();
        assert!(matches!(err, Error::Sha256Mismatch { .. }), "{err}");
        assert_eq!(snapshot(setup.base.path()), before);

        // A URL whose last segment is not a `.plg` name is not checked against the contents.
        let installed = Installer::new(&setup.manager)
            .sha256(&digest)
            .install_url(&url)
            .unwrap();
        assert_eq!(installed.version, semver::Version::new(0, 3, 0));
    }

    #[test]
    fn each_failed_download_is_refused_and_the_base_is_unchanged() {
        let setup = Setup::new();
        let bytes = std::fs::read(setup.package("0.3.0", false)).unwrap();
        let server = Server::start(vec![
            ("/truncated.plg", Response::Truncated(bytes.clone())),
            ("/big.plg", Response::Unsized(vec![0; 64 << 10])),
            ("/loop-a", Response::Redirect("/loop-b".into())),
            ("/loop-b", Response::Redirect("/loop-a".into())),
            ("/stall.plg", Response::Stall),
        ]);
        let options = DownloadOptions {
            max_bytes: 32 << 10,
            timeout: Duration::from_secs(1),
            ..DownloadOptions::default()
        };
        let before = snapshot(setup.base.path());
        type Expect = fn(&DownloadError) -> bool;
        let cases: [(&str, Expect); 5] = [
            ("/truncated.plg", |e| {
                matches!(e, DownloadError::Truncated { .. })
            }),
            ("/big.plg", |e| matches!(e, DownloadError::TooLarge { .. })),
            ("/missing.plg", |e| {
                matches!(e, DownloadError::Status { status: 404, .. })
            }),
            ("/loop-a", |e| {
                matches!(e, DownloadError::TooManyRedirects { .. })
            }),
            ("/stall.plg", |e| matches!(e, DownloadError::Timeout { .. })),
        ];
        for (path, expected) in cases {
            let started = Instant::now();
            let mut options = options.clone();
            if path == "/truncated.plg" {
                options.max_bytes = 256 << 20;
            }
            let err = Installer::new(&setup.manager)
                .sha256("ab".repeat(32))
                .download_options(options)
                .install_url(&server.url(path))
                .unwrap_err();
            match &err {
                Error::Download(download) => assert!(expected(download), "{path}: {err}"),
                other => panic!("{path}: {other}"),
            }
            assert!(err.to_string().contains(path), "{path}: {err}");
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{path}: unbounded"
            );
            assert_eq!(snapshot(setup.base.path()), before, "{path}");
        }
    }
}

#[test]
fn hostile_packages_leave_the_base_directory_as_it_was() {
    use crate::archive::{file, lib_name, manifest, package, special};
    let setup = Setup::new();
    let lib = lib_name();
    let json = manifest("hello");
    let cases = [
        (
            "../x",
            package(&[file("plugin.json", json.clone()), file("../x", "x")]),
        ),
        (
            "symlink",
            package(&[
                file("plugin.json", json.clone()),
                special(tar::EntryType::Symlink, &lib, Some("/etc/passwd")),
            ]),
        ),
        (
            "gzip bomb",
            package(&[
                file("plugin.json", json.clone()),
                file(&lib, vec![0u8; 50 << 20]),
            ]),
        ),
        ("not gzip", b"not a package".to_vec()),
    ];
    let before = snapshot(setup.base.path());
    for (what, bytes) in cases {
        let path = setup
            .packages
            .path()
            .join(format!("case-{}.bin", what.len()));
        std::fs::write(&path, &bytes).unwrap();
        let err = Installer::new(&setup.manager)
            .allow_unsigned(true)
            .install_file(&path)
            .unwrap_err();
        assert!(matches!(err, Error::Archive(_)), "{what}: {err}");
        assert_eq!(snapshot(setup.base.path()), before, "{what}");
    }
}

/// Holds the lock on `dir` in another process (`flock(1)`, as an install in progress holds
/// its staging folder), until the process is killed.
struct LockHolder(std::process::Child, Option<std::process::ChildStdin>);

impl LockHolder {
    fn new(dir: &Path) -> LockHolder {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        // `-o`: only flock itself holds the lock, not the command it runs, so killing flock
        // releases it; `cat` then ends when its input closes.
        let mut child = Command::new("flock")
            .args(["-o".as_ref(), dir.as_os_str()])
            .args(["sh", "-c", "echo locked; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("flock(1) from util-linux runs");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("flock takes the free lock at once");
        assert_eq!(line.trim(), "locked");
        LockHolder(child, stdin)
    }

    /// Kills the holder as `SIGKILL` kills an install midway.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
        drop(self.1.take());
    }
}

#[test]
fn staging_folders_left_by_killed_installs_are_removed_and_live_ones_kept() {
    let setup = Setup::new();
    let base = setup.base.path();
    // Left by an install killed midway: nothing holds it.
    let stale = base.join(".install-killed");
    std::fs::create_dir_all(stale.join("versioned")).unwrap();
    std::fs::write(stale.join("versioned/libbig.so"), vec![0u8; 1 << 20]).unwrap();
    // In use by an install in another process.
    let live = base.join(".install-live");
    std::fs::create_dir(&live).unwrap();
    let holder = LockHolder::new(&live);
    // A link named like one is not followed.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("keep"), "x").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), base.join(".install-link")).unwrap();

    setup
        .installer()
        .install_file(setup.package("0.3.0", true))
        .unwrap();
    assert!(!stale.exists(), "the stale staging folder is removed");
    assert!(
        live.exists(),
        "a locked staging folder is left to its install"
    );
    assert!(elsewhere.path().join("keep").exists());

    // Its install killed, the folder is stale: the next one removes it.
    holder.kill();
    assert_eq!(plugin_package::remove_stale_staging(base), 1);
    assert!(!live.exists());
    let mut names: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".install-link", "hello", "versioned"]);
}
