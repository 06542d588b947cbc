//! Fuzzes `.plg` extraction: `plugin_package::extract` on arbitrary bytes, with small limits,
//! never panics and never writes outside the folder it extracts into; on success the files
//! it lists are there and nothing else is, on error the folder is left empty.
//!
//! The first input byte picks the form: odd, the rest is a tar archive that the target
//! gzips first (so the fuzzer works on tar headers, not on deflate blocks); even, the rest
//! is the package as it is.
#![no_main]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plugin_package::Limits;

/// Every path under `dir`, relative to it; symbolic links are reported, not followed.
fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a folder of the fuzz root") {
        let entry = entry.expect("a folder entry");
        let path = entry.path();
        let kind = entry.file_type().expect("an entry's type");
        assert!(
            !kind.is_symlink(),
            "a symbolic link was written: {}",
            path.display()
        );
        out.push(
            path.strip_prefix(base)
                .expect("under the root")
                .to_path_buf(),
        );
        if kind.is_dir() {
            walk(&path, base, out);
        }
    }
}

/// A root for the whole run, with the extraction folder two levels down: `root/a/b/out`.
fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
        .path()
}

fn limits() -> Limits {
    Limits {
        max_package_bytes: 1 << 20,
        max_unpacked_bytes: 1 << 20,
        max_file_bytes: 256 << 10,
        max_ratio: 20,
        max_entries: 16,
        ..Limits::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let package = if form & 1 == 1 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).expect("gzip into memory");
        gz.finish().expect("gzip into memory")
    } else {
        rest.to_vec()
    };

    let root = root();
    let parent = root.join("a/b");
    let into = parent.join("out");
    std::fs::create_dir_all(&into).expect("the extraction folder");

    let result = plugin_package::extract(&package, &into, &limits());

    let mut written = Vec::new();
    walk(root, root, &mut written);
    for path in &written {
        assert!(
            path.starts_with("a/b/out") || path == Path::new("a") || path == Path::new("a/b"),
            "written outside the folder: {}",
            path.display()
        );
    }
    let mut inside = Vec::new();
    walk(&into, &into, &mut inside);
    match &result {
        Ok(extracted) => {
            assert!(extracted.files.contains(&extracted.library));
            for file in &extracted.files {
                assert!(
                    into.join(file).is_file(),
                    "{} is listed, not written",
                    file.display()
                );
            }
            let total: u64 = extracted
                .files
                .iter()
                .map(|f| {
                    std::fs::metadata(into.join(f))
                        .expect("a listed file")
                        .len()
                })
                .sum();
            assert_eq!(total, extracted.unpacked_bytes);
            assert!(total <= limits().max_unpacked_bytes);
            for path in &inside {
                let listed = extracted.files.iter().any(|f| f.starts_with(path));
                assert!(listed, "{} was written but is not listed", path.display());
            }
        }
        Err(_) => assert!(inside.is_empty(), "left behind on error: {inside:?}"),
    }
    std::fs::remove_dir_all(&parent).expect("clean the fuzz root");
});
