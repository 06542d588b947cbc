//! A full `PluginManager` load (every check, the private copy, the abi_stable load) against
//! a bare abi_stable load of the same library, in the same run.
//!
//! The dynamic loader compares each new library with every library already loaded, and
//! libraries are never closed, so loading gets slower as a process loads more. A criterion
//! group per kind would measure the second kind with more libraries loaded; this harness
//! alternates the two kinds (and a copy alone) in one loop, so each sees the same count.
//! Prints a JSON line and writes it to `target/load-bench.json` for `cargo xtask bench`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use plugin_abi::abi_stable::library::lib_header_from_path;
use plugin_abi::PluginModRef;
use plugin_host::PluginManager;
use plugin_test_support::{fixtures, workspace_root};

const ROUNDS: usize = 300;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

fn main() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "noop");
    let library = fixtures().library("noop");
    // Bare copies and timed copies go where the manager puts its private copies by default.
    let default_place = PluginManager::new(base.path());
    let copies = tempfile::tempdir_in(default_place.copy_dir().unwrap().parent().unwrap()).unwrap();
    let mut n = 0;
    let mut fresh_path = || -> PathBuf {
        n += 1;
        copies.path().join(format!("bare-{n}.so"))
    };

    let (mut bare, mut full, mut copy) = (Vec::new(), Vec::new(), Vec::new());
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

        let manager = PluginManager::builder(base.path())
            .copy_dir(copies.path())
            .build();
        // (The default copy directory is made once per manager; a host keeps its manager.)
        let t = Instant::now();
        manager.load_plugin("noop").unwrap();
        full.push(t.elapsed());

        // The private copy alone, as the loader makes it (not loaded).
        let path = fresh_path();
        let t = Instant::now();
        std::fs::copy(&library, &path).unwrap();
        copy.push(t.elapsed());
    }
    let (bare, full, copy) = (median(bare), median(full), median(copy));
    let json = format!(
        "{{\"rounds\":{ROUNDS},\"bare_ns\":{},\"full_ns\":{},\"copy_ns\":{},\"library_bytes\":{}}}",
        bare.as_nanos(),
        full.as_nanos(),
        copy.as_nanos(),
        std::fs::metadata(&library).unwrap().len()
    );
    println!("{json}");
    std::fs::write(
        workspace_root().join("target").join("load-bench.json"),
        &json,
    )
    .unwrap();
}
