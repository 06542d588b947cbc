//! Tests of the archive area: packing plugin folders, extracting packages, and refusing
//! hostile archives without writing anything outside (or leaving anything inside) the
//! folder extracted into.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use plugin_package::{extract, pack, ArchiveError, Error, Limits};
use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::util::fixtures;

/// The library's file name for a `source.path` of `hello` on this platform.
pub(crate) fn lib_name() -> String {
    format!(
        "{}hello{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A manifest for `hello` whose library is at `path`.
pub(crate) fn manifest(path: &str) -> Vec<u8> {
    format!(
        r#"{{"name":"hello","version":"0.1.0","maintainers":[],"source":{{"mode":"local_so","path":"{path}"}}}}"#
    )
    .into_bytes()
}

/// One raw tar entry; its name goes into the header's bytes as it is.
pub(crate) struct Raw {
    name: Vec<u8>,
    kind: EntryType,
    data: Vec<u8>,
    mode: u32,
    link: Option<String>,
}

pub(crate) fn file(name: impl AsRef<[u8]>, data: impl Into<Vec<u8>>) -> Raw {
    Raw {
        name: name.as_ref().to_vec(),
        kind: EntryType::Regular,
        data: data.into(),
        mode: 0o644,
        link: None,
    }
}

fn folder(name: &str) -> Raw {
    Raw {
        mode: 0o755,
        kind: EntryType::Directory,
        ..file(name, [])
    }
}

pub(crate) fn special(kind: EntryType, name: &str, link: Option<&str>) -> Raw {
    Raw {
        kind,
        link: link.map(str::to_owned),
        ..file(name, [])
    }
}

fn tar_bytes(entries: &[Raw]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..entry.name.len()].copy_from_slice(&entry.name);
        header.set_entry_type(entry.kind);
        header.set_size(entry.data.len() as u64);
        header.set_mode(entry.mode);
        header.set_mtime(0);
        if let Some(target) = &entry.link {
            header.set_link_name(target).unwrap();
        }
        header.set_cksum();
        builder.append(&header, &entry.data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub(crate) fn package(entries: &[Raw]) -> Vec<u8> {
    gzip(&tar_bytes(entries))
}

/// Every path under `root` with its content (`None` for a folder, the target for a link).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            let content = if meta.file_type().is_symlink() {
                Some(
                    std::fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                None
            } else {
                Some(std::fs::read(&path).unwrap())
            };
            all.insert(path, content);
        }
    }
    all
}

/// A temporary root holding `base/` with a sentinel folder, and `base/.staging/`, the
/// empty folder packages are extracted into.
struct Scene {
    root: tempfile::TempDir,
    into: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("base");
        std::fs::create_dir_all(base.join("sentinel")).unwrap();
        std::fs::write(base.join("sentinel/keep.txt"), b"unchanged").unwrap();
        let into = base.join(".staging");
        std::fs::create_dir(&into).unwrap();
        Scene { root, into }
    }

    /// Extracts `package`, expects a refusal mentioning `reason`, and checks that nothing
    /// changed under the root and the staging folder is empty.
    fn refuses(&self, case: &str, package: &[u8], limits: &Limits, reason: &str) -> ArchiveError {
        let before = snapshot(self.root.path());
        let err = extract(package, &self.into, limits)
            .err()
            .unwrap_or_else(|| panic!("{case}: the package was accepted"));
        let message = err.to_string();
        assert!(message.contains(reason), "{case}: {message}");
        assert_eq!(snapshot(self.root.path()), before, "{case}: files changed");
        assert_eq!(std::fs::read_dir(&self.into).unwrap().count(), 0, "{case}");
        err
    }
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing_behind() {
    let lib = lib_name();
    let json = manifest("hello");
    let scene = Scene::new();
    let outside = scene.root.path().join("outside");
    let abs = format!("{}/abs", scene.root.path().display());
    let small = Limits {
        max_file_bytes: 1000,
        max_entries: 3,
        ..Limits::default()
    };
    let mut trailing = tar_bytes(&[file("plugin.json", json.clone()), file(&lib, "elf")]);
    trailing.extend_from_slice(b"a hidden second archive");
    let plugins = tempfile::tempdir().unwrap();
    let hello = fixtures().install(plugins.path(), "hello");
    let out = tempfile::tempdir().unwrap();
    let real = std::fs::read(pack(&hello, Some(&out.path().join("h.plg"))).unwrap().path).unwrap();

    let d = Limits::default();
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, Limits, String)> = vec![
        ("parent dir", package(&[file("plugin.json", json.clone()), file("../x", "x")]), d, "`..` component".into()),
        ("nested parent dir", package(&[file("plugin.json", json.clone()), file("a/../../x", "x")]), d, "`..` component".into()),
        ("absolute", package(&[file("plugin.json", json.clone()), file(&abs, "x")]), d, "absolute".into()),
        ("backslash", package(&[file("plugin.json", json.clone()), file("..\\x", "x")]), d, "backslash".into()),
        ("non-UTF-8", package(&[file("plugin.json", json.clone()), file(b"x\xff", "x")]), d, "not UTF-8".into()),
        ("symlink", package(&[file("plugin.json", json.clone()), special(EntryType::Symlink, &lib, Some("/etc/passwd"))]), d, format!("`{lib}` is a symbolic link")),
        ("hard link", package(&[file("plugin.json", json.clone()), special(EntryType::Link, &lib, Some("plugin.json"))]), d, "hard link".into()),
        ("symlink then folder", package(&[file("plugin.json", manifest("lib/hello")), special(EntryType::Symlink, "lib", Some(outside.to_str().unwrap())), folder("lib/"), file(format!("lib/{lib}"), "elf")]), d, "`lib` is a symbolic link".into()),
        ("character device", package(&[file("plugin.json", json.clone()), special(EntryType::Char, &lib, None)]), d, "character device".into()),
        ("block device", package(&[file("plugin.json", json.clone()), special(EntryType::Block, &lib, None)]), d, "block device".into()),
        ("FIFO", package(&[file("plugin.json", json.clone()), special(EntryType::Fifo, &lib, None)]), d, "FIFO".into()),
        ("two manifests", package(&[file("plugin.json", json.clone()), file(&lib, "elf"), file("./plugin.json", json.clone())]), d, "`plugin.json` appears twice".into()),
        ("file and folder", package(&[file("plugin.json", manifest("README/hello")), file("README", "hi"), folder("README/")]), d, "`README` appears twice".into()),
        ("unexpected file", package(&[file("plugin.json", json.clone()), file(&lib, "elf"), file("evil.sh", "rm -rf ~")]), d, format!("`evil.sh` (file) is not allowed; a package may hold only: plugin.json, {lib}")),
        ("manifest not first", package(&[file(&lib, "elf"), file("plugin.json", json.clone())]), d, format!("first entry is `{lib}`")),
        ("empty", package(&[]), d, "the package is empty".into()),
        ("bad manifest", package(&[file("plugin.json", "{\"name\": 7}"), file(&lib, "elf")]), d, "package entry `plugin.json` is not a valid manifest".into()),
        ("remote_git", package(&[file("plugin.json", r#"{"name":"hello","version":"0.1.0","maintainers":[],"source":{"mode":"remote_git","path":"https://example.com/h.git"}}"#)]), d, "must be `local_so`".into()),
        ("no library", package(&[file("plugin.json", json.clone()), file("README", "hi")]), d, "holds no library".into()),
        ("folder with data", package(&[file("plugin.json", manifest("lib/hello")), Raw { data: vec![0; 600], ..folder("lib/") }]), d, "declares 600 bytes".into()),
        ("file too large", package(&[file("plugin.json", json.clone()), file(&lib, vec![1u8; 2000])]), small, "larger than the limit of 1000 bytes per file".into()),
        ("too many entries", package(&[file("plugin.json", json.clone()), file(&lib, "elf"), file("README", "r"), file("LICENSE", "l")]), small, "more than 3 entries".into()),
        ("package too large", real.clone(), Limits { max_package_bytes: 100, ..Limits::default() }, "more than the limit of 100 bytes".into()),
        ("truncated gzip", real[..real.len() / 2].to_vec(), d, "truncated or corrupt (gzip data) in entry".into()),
        ("not gzip", b"PK\x03\x04 a zip file".to_vec(), d, "not a gzip file (it starts with bytes 50 4b 03 04".into()),
        ("empty file", Vec::new(), d, "not a gzip file".into()),
        ("not tar", gzip(&b"not a tar archive at all. ".repeat(40)), d, "not a valid tar archive".into()),
        ("pax header", package(&[file("plugin.json", json.clone()), Raw { data: b"22 path=../../../evil\n".to_vec(), ..special(EntryType::XHeader, "././@PaxHeader", None) }, file(&lib, "elf")]), d, "is a pax extended header".into()),
        ("GNU long name", package(&[file("plugin.json", json.clone()), Raw { data: b"../../evil\0".to_vec(), ..special(EntryType::GNULongName, "././@LongLink", None) }, file(&lib, "elf")]), d, "is a GNU long-name header".into()),
        ("data after the gzip stream", [package(&[file("plugin.json", json.clone()), file(&lib, "elf")]), b"junk".to_vec()].concat(), d, "data after the end of its gzip stream".into()),
        ("data after the tar end", gzip(&trailing), d, "data after the end of its tar archive".into()),
    ];
    for (case, bytes, limits, reason) in cases {
        scene.refuses(case, &bytes, &limits, &reason);
    }
    assert!(!outside.exists());
}

#[test]
fn a_gzip_bomb_is_refused_once_the_ratio_is_crossed() {
    let scene = Scene::new();
    let bomb = package(&[
        file("plugin.json", manifest("hello")),
        file(lib_name(), vec![0u8; 50 << 20]),
    ]);
    assert!(
        bomb.len() < 200 << 10,
        "50 MiB of zeros compress to {} bytes",
        bomb.len()
    );
    let err = scene.refuses("bomb", &bomb, &Limits::default(), "decompression bomb");
    // Stopped just past the 1 MiB floor, not after unpacking all 50 MiB.
    match err {
        ArchiveError::Ratio {
            unpacked,
            max_ratio,
            package_bytes,
            ..
        } => {
            assert!(
                unpacked < 2 << 20,
                "unpacked {unpacked} bytes before refusing"
            );
            assert_eq!(max_ratio, 20);
            assert_eq!(package_bytes, bomb.len() as u64);
        }
        other => panic!("expected a ratio error, got {other:?}"),
    }
}

#[test]
fn a_total_above_max_unpacked_is_refused() {
    let scene = Scene::new();
    let limits = Limits {
        max_unpacked_bytes: 3000,
        ..Limits::default()
    };
    let bytes = package(&[
        file("plugin.json", manifest("hello")),
        file(lib_name(), vec![7u8; 2000]),
        file("README", vec![b'r'; 2000]),
    ]);
    scene.refuses(
        "total",
        &bytes,
        &limits,
        "unpacks to more than the limit of 3000 bytes",
    );
}

#[cfg(unix)]
#[test]
fn modes_in_the_archive_are_never_applied() {
    use std::os::unix::fs::PermissionsExt;
    let scene = Scene::new();
    let mut lib = file(format!("lib/{}", lib_name()), "elf");
    lib.mode = 0o6777;
    let mut readme = file("README.md", "# hi");
    readme.mode = 0o4666;
    let mut lib_folder = folder("lib/");
    lib_folder.mode = 0o1777;
    let bytes = package(&[
        file("plugin.json", manifest("lib/hello")),
        lib_folder,
        lib,
        readme,
    ]);
    let extracted = extract(&bytes, &scene.into, &Limits::default()).unwrap();
    assert_eq!(extracted.library, Path::new("lib").join(lib_name()));
    let mode = |p: &str| scene.into.join(p).metadata().unwrap().permissions().mode() & 0o7777;
    for (path, most) in [
        (format!("lib/{}", lib_name()), 0o755),
        ("lib".to_owned(), 0o755),
        ("README.md".to_owned(), 0o644),
        ("plugin.json".to_owned(), 0o644),
    ] {
        let found = mode(&path);
        assert_eq!(found & !most, 0, "{path} has mode {found:o}");
        assert_eq!(found & 0o7022, 0, "{path} has mode {found:o}");
    }
}

#[test]
fn pack_then_extract_gives_the_same_files() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    std::fs::write(dir.join("README.md"), "# hello\n").unwrap();
    std::fs::write(dir.join("LICENSE-MIT"), "MIT\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "not packed\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let packed = pack(&dir, Some(&out.path().join("hello.plg"))).unwrap();
    let lib = lib_name();
    assert_eq!(packed.name, "hello");
    assert_eq!(
        packed.entries,
        ["plugin.json", lib.as_str(), "LICENSE-MIT", "README.md"]
    );
    let bytes = std::fs::read(&packed.path).unwrap();
    assert_eq!(packed.bytes, bytes.len() as u64);
    assert_eq!(packed.sha256, format!("{:x}", Sha256::digest(&bytes)));

    let scene = Scene::new();
    let extracted = extract(&bytes, &scene.into, &Limits::default()).unwrap();
    assert_eq!(extracted.manifest.name, "hello");
    assert_eq!(extracted.library, PathBuf::from(&lib));
    let names: Vec<PathBuf> = packed.entries.iter().map(PathBuf::from).collect();
    assert_eq!(extracted.files, names);
    let mut total = 0;
    for name in &packed.entries {
        let original = std::fs::read(dir.join(name)).unwrap();
        total += original.len() as u64;
        assert_eq!(
            std::fs::read(scene.into.join(name)).unwrap(),
            original,
            "{name}"
        );
    }
    assert_eq!(extracted.unpacked_bytes, total);
    assert_eq!(packed.unpacked_bytes, total);
    assert_eq!(std::fs::read_dir(&scene.into).unwrap().count(), 4);
    // The host accepts what came out.
    let manager = plugin_host::PluginManager::builder(scene.into.parent().unwrap())
        .insecure_permissions(true)
        .build();
    assert_eq!(
        manager
            .inspect_dir("hello", &scene.into)
            .unwrap()
            .library_bytes,
        { std::fs::metadata(dir.join(&lib)).unwrap().len() }
    );
}

#[test]
fn a_library_in_a_subfolder_is_packed_with_its_folder_first() {
    let base = tempfile::tempdir().unwrap();
    // A folder named otherwise than the plugin packs under the manifest's name.
    let dir = fixtures().install_as(base.path(), "hello", "hello-src");
    let lib = lib_name();
    let text = std::fs::read_to_string(dir.join("plugin.json")).unwrap();
    let text = text.replace(r#""path": "hello""#, r#""path": "lib/hello""#);
    assert!(text.contains("lib/hello"), "{text}");
    std::fs::write(dir.join("plugin.json"), text).unwrap();
    std::fs::create_dir(dir.join("lib")).unwrap();
    std::fs::rename(dir.join(&lib), dir.join("lib").join(&lib)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let packed = pack(&dir, Some(&out.path().join("p.plg"))).unwrap();
    assert_eq!(
        packed.entries,
        [
            "plugin.json".to_owned(),
            "lib/".to_owned(),
            format!("lib/{lib}")
        ]
    );

    let scene = Scene::new();
    let bytes = std::fs::read(&packed.path).unwrap();
    let extracted = extract(&bytes, &scene.into, &Limits::default()).unwrap();
    assert_eq!(extracted.library, Path::new("lib").join(&lib));
    assert_eq!(
        std::fs::read(scene.into.join("lib").join(&lib)).unwrap(),
        std::fs::read(dir.join("lib").join(&lib)).unwrap()
    );
}

#[test]
fn packing_is_deterministic_and_replaces_an_old_package() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    std::fs::write(dir.join("README"), "hi\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let first = pack(&dir, Some(&out.path().join("one.plg"))).unwrap();
    // Other times and modes on disk make the same package.
    let readme = std::fs::File::options()
        .write(true)
        .open(dir.join("README"))
        .unwrap();
    readme
        .set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30))
        .unwrap();
    drop(readme);
    let target = out.path().join("two.plg");
    std::fs::write(&target, "an old package").unwrap();
    let second = pack(&dir, Some(&target)).unwrap();
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(
        std::fs::read(&first.path).unwrap(),
        std::fs::read(&target).unwrap()
    );
    // No temporary file is left beside the package.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 2);

    // The headers carry nothing from this machine.
    let bytes = std::fs::read(&target).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert!(header.as_gnu().is_some());
        assert_eq!(
            (
                header.mtime().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap()
            ),
            (0, 0, 0)
        );
        assert_eq!(header.username_bytes(), Some(&b""[..]));
        assert_eq!(header.groupname_bytes(), Some(&b""[..]));
        let want = if entry.path().unwrap().ends_with(lib_name()) {
            0o755
        } else {
            0o644
        };
        assert_eq!(header.mode().unwrap(), want);
    }
}

#[test]
fn pack_writes_name_version_plg_in_the_working_directory() {
    // Changing the working directory would disturb the other tests: a child process runs
    // this one alone.
    const CHILD: &str = "PLUGIN_PACKAGE_PACK_CHILD";
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = PathBuf::from(dir);
        std::env::set_current_dir(dir.parent().unwrap()).unwrap();
        let packed = pack(&dir, None).unwrap();
        assert_eq!(packed.path, Path::new("hello-0.1.0.plg"));
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "archive::pack_writes_name_version_plg_in_the_working_directory",
            "--exact",
            "--quiet",
        ])
        .env(CHILD, &dir)
        .output()
        .unwrap();
    assert!(child.status.success(), "{child:?}");
    let version = plugin_host::Manifest::load(&dir).unwrap().version;
    let expected = base
        .path()
        .join(plugin_package::package_file_name("hello", &version));
    assert!(expected.is_file(), "{} missing", expected.display());
    assert_eq!(expected.file_name().unwrap(), "hello-0.1.0.plg");
}

#[test]
fn pack_refuses_what_the_host_would_refuse() {
    let base = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("x.plg");

    let bad = fixtures().install_as(base.path(), "hello", "bad");
    std::fs::write(bad.join("plugin.json"), "{\"name\": \"bad\",").unwrap();
    let err = pack(&bad, Some(&target)).unwrap_err();
    assert!(matches!(err, Error::Host(_)), "{err:?}");
    assert!(err.to_string().contains("plugin.json"), "{err}");

    let missing = fixtures().install_as(base.path(), "hello", "missing");
    std::fs::remove_file(missing.join(lib_name())).unwrap();
    let err = pack(&missing, Some(&target)).unwrap_err();
    assert!(matches!(err, Error::Host(_)), "{err:?}");
    assert!(err.to_string().contains(&lib_name()), "{err}");

    let not_a_plugin = base.path().join("not-a-plugin");
    std::fs::create_dir(&not_a_plugin).unwrap();
    std::fs::copy(
        fixtures().plugin("not-a-plugin").dir.join("plugin.json"),
        not_a_plugin.join("plugin.json"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().library("not-a-plugin"),
        not_a_plugin.join(fixtures().plugin("not-a-plugin").library_file_name()),
    )
    .unwrap();
    assert!(matches!(
        pack(&not_a_plugin, Some(&target)),
        Err(Error::Host(_))
    ));

    let long = fixtures().install_as(base.path(), "hello", "long");
    let folder = "x".repeat(100);
    let text = std::fs::read_to_string(long.join("plugin.json")).unwrap();
    let text = text.replace(
        r#""path": "hello""#,
        &format!(r#""path": "{folder}/hello""#),
    );
    std::fs::write(long.join("plugin.json"), text).unwrap();
    std::fs::create_dir(long.join(&folder)).unwrap();
    std::fs::rename(long.join(lib_name()), long.join(&folder).join(lib_name())).unwrap();
    let err = pack(&long, Some(&target)).unwrap_err();
    assert!(err.to_string().contains("100-byte name field"), "{err}");

    let good = fixtures().install(base.path(), "hello");
    let err = pack(&good, Some(out.path())).unwrap_err();
    assert!(err.to_string().contains("it is a folder"), "{err}");
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[cfg(unix)]
#[test]
fn pack_refuses_links_among_the_files_it_packs() {
    let base = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    std::fs::write(elsewhere.path().join("README"), "secret").unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("README"), dir.join("README")).unwrap();
    let err = pack(&dir, Some(&out.path().join("x.plg"))).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");

    // The library itself, as a link inside the folder: the host accepts it, packing not.
    std::fs::remove_file(dir.join("README")).unwrap();
    let lib = dir.join(lib_name());
    std::fs::rename(&lib, dir.join("real.so")).unwrap();
    std::os::unix::fs::symlink("real.so", &lib).unwrap();
    let err = pack(&dir, Some(&out.path().join("x.plg"))).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn extract_refuses_a_folder_that_is_not_empty() {
    let scene = Scene::new();
    std::fs::write(scene.into.join("old"), "x").unwrap();
    let bytes = package(&[
        file("plugin.json", manifest("hello")),
        file(lib_name(), "elf"),
    ]);
    let err = extract(&bytes, &scene.into, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(std::fs::read(scene.into.join("old")).unwrap(), b"x");
}
