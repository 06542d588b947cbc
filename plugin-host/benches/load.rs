//! A full `PluginManager` load (every check, the private copy, the abi_stable load) against
//! a bare abi_stable load of the same library, in the same run. The full load is measured
//! with the default private copy (on Linux a sealed memory file) and with a file copy in a
//! copy directory given to the builder.
//!
//! The dynamic loader compares each new library with every library already loaded, and
//! libraries are never closed, so loading gets slower as a process loads more. A criterion
//! group per kind would measure the second kind with more libraries loaded; this harness
//! alternates the kinds (and a copy alone) in one loop, so each sees the same count.
//! Prints a JSON line and writes it to `load-bench.json` in Cargo's `CARGO_TARGET_TMPDIR` (`<target dir>/tmp`) for `cargo xtask bench`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use plugin_abi::abi_stable::library::lib_header_from_path;
use plugin_abi::PluginModRef;
use plugin_host::PluginManager;
use plugin_test_support::fixtures;

const ROUNDS: usize = 300;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

/// A sealed memory file holding `bytes`, made as the loader makes one.
#[cfg(target_os = "linux")]
fn private_copy(bytes: &[u8]) -> std::fs::File {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    let name = c"plugin:noop-bench";
    // SAFETY: `name` is a NUL-terminated string; the call returns a new descriptor or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by `memfd_create` and is owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes).unwrap();
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: `F_ADD_SEALS` takes an int and changes only this memory file's seals.
    let sealed = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    assert_eq!(sealed, 0, "{}", std::io::Error::last_os_error());
    file
}

/// A file copy, as the loader makes one elsewhere.
#[cfg(not(target_os = "linux"))]
fn private_copy(bytes: &[u8]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file
}

fn main() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "noop");
    let library = fixtures().library("noop");
    // Bare copies and file copies go where the manager puts its file copies by default.
    let default_place = PluginManager::new(base.path());
    let copies =
        tempfile::tempdir_in(default_place.ensure_copy_dir().unwrap().parent().unwrap()).unwrap();
    let mut n = 0;
    let mut fresh_path = || -> PathBuf {
        n += 1;
        copies.path().join(format!("bare-{n}.so"))
    };

    let (mut bare, mut full, mut full_file, mut copy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let bytes = std::fs::read(&library).unwrap();
    for _ in 0..ROUNDS {
        // Bare: dlopen caches by path, so each bare load gets a file it has not seen,
        // copied outside the timed part.
        let path = fresh_path();
        std::fs::copy(&library, &path).unwrap();
        let t = Instant::now();
        let module = lib_header_from_path(&path)
            .unwrap()
            .init_root_module::<PluginModRef>()
            .unwrap();
        bare.push(t.elapsed());
        std::hint::black_box(module);

        // The default private copy (a memory file on Linux).
        let manager = PluginManager::new(base.path());
        let t = Instant::now();
        manager.load_plugin("noop").unwrap();
        full.push(t.elapsed());

        // A file copy, in the directory a default file copy would go to.
        let manager = PluginManager::builder(base.path())
            .copy_dir(copies.path())
            .build();
        let t = Instant::now();
        manager.load_plugin("noop").unwrap();
        full_file.push(t.elapsed());

        // The default private copy alone, as the loader makes it (not loaded).
        let t = Instant::now();
        std::hint::black_box(private_copy(&bytes));
        copy.push(t.elapsed());
    }
    let (bare, full, full_file, copy) =
        (median(bare), median(full), median(full_file), median(copy));
    let json = format!(
        "{{\"rounds\":{ROUNDS},\"bare_ns\":{},\"full_ns\":{},\"full_file_ns\":{},\"copy_ns\":{},\"library_bytes\":{}}}",
        bare.as_nanos(),
        full.as_nanos(),
        full_file.as_nanos(),
        copy.as_nanos(),
        bytes.len()
    );
    println!("{json}");
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("load-bench.json"),
        &json,
    )
    .unwrap();
}
