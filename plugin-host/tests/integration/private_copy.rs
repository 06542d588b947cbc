//! The private copy each load maps: a sealed memory file by default on Linux, a file in a
//! private directory when the host names one; neither outlives what it is for.

use std::path::{Path, PathBuf};

use plugin_host::{Error, PluginManager};
use plugin_test_support::fixtures;

/// Every file in `dir` (not recursive), sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The file copies this process made in default copy directories
/// (`<parent>/plugin-host-*/<name>-<version>-<pid>-<n>.<ext>`).
fn default_file_copies_of_this_process() -> Vec<PathBuf> {
    let pid = format!("-{}-", std::process::id());
    let parents = [
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        Some(PathBuf::from("/dev/shm")),
        Some(std::env::temp_dir()),
    ];
    let mut found = Vec::new();
    for parent in parents.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for dir in entries.flatten() {
            if !dir
                .file_name()
                .to_string_lossy()
                .starts_with("plugin-host-")
            {
                continue;
            }
            let Ok(copies) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            found.extend(
                copies
                    .flatten()
                    .filter(|c| c.file_name().to_string_lossy().contains(&pid))
                    .map(|c| c.path()),
            );
        }
    }
    found
}

#[cfg(target_os = "linux")]
#[test]
fn a_loaded_plugins_copy_is_a_sealed_memory_file() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let m = PluginManager::new(base.path());
    m.load_plugin("hello").unwrap();

    let shown = m
        .get("hello")
        .unwrap()
        .status()
        .active
        .unwrap()
        .running_copy;
    assert_eq!(shown, Path::new("memfd:plugin:hello-0.1.0"));
    // The code is mapped from the memory file, executable.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mapping = format!("/{} (deleted)", shown.display());
    assert!(
        maps.lines()
            .any(|l| l.ends_with(&mapping) && l.split_whitespace().nth(1).unwrap().contains('x')),
        "no executable mapping of {mapping}"
    );
    // Its descriptor is open, and the memory file can no longer change. Other tests of this
    // process load `hello` too, and a copy being written is not sealed yet: so at least one
    // descriptor of this name (this manager's) carries every seal.
    let mut descriptors = 0;
    let mut sealed = 0;
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if target != Path::new(&mapping) {
            continue;
        }
        descriptors += 1;
        let fd: i32 = fd.file_name().to_str().unwrap().parse().unwrap();
        // SAFETY: `F_GET_SEALS` takes no argument and only reads the seals; at worst the
        // descriptor was closed meanwhile and the call fails.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        if seals == -1 {
            continue;
        }
        let all = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        if seals & all == all {
            sealed += 1;
        }
    }
    assert!(descriptors >= 1, "no descriptor open on {mapping}");
    assert!(sealed >= 1, "no descriptor of {mapping} carries every seal");
    // No file was written for it in any default copy directory.
    assert_eq!(default_file_copies_of_this_process(), Vec::<PathBuf>::new());
}

#[test]
fn a_failed_load_after_the_library_was_mapped_is_counted_and_leaves_no_copy() {
    let base = tempfile::tempdir().unwrap();
    for name in ["wrong-abi", "panic-on-load"] {
        fixtures().install(base.path(), name);
    }
    let copies = tempfile::tempdir().unwrap();
    let default = PluginManager::new(base.path());
    let files = PluginManager::builder(base.path())
        .copy_dir(copies.path())
        .build();
    for m in [&default, &files] {
        // Refused by abi_stable's layout check, after dlopen.
        let err = m.load_plugin("wrong-abi").unwrap_err();
        assert!(matches!(err, Error::AbiMismatch { .. }), "{err}");
        assert_eq!(files_in(copies.path()), Vec::<PathBuf>::new());
        assert_eq!(m.retained_libraries(), 1);
        // Refused by its own on_load.
        let err = m.load_plugin("panic-on-load").unwrap_err();
        assert!(matches!(err, Error::OnLoad { .. }), "{err}");
        assert_eq!(files_in(copies.path()), Vec::<PathBuf>::new());
        assert_eq!(m.retained_libraries(), 2);
        for status in m.list() {
            assert_eq!(status.retained_libraries, 1, "{}", status.name);
        }
    }
    #[cfg(target_os = "linux")]
    assert_eq!(default_file_copies_of_this_process(), Vec::<PathBuf>::new());
}

#[test]
fn file_copies_in_a_given_directory_are_private_and_removed() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    fixtures().install(base.path(), "counter");
    let scratch = tempfile::tempdir().unwrap();
    let copies = scratch.path().join("made").join("copies");
    let m = PluginManager::builder(base.path())
        .copy_dir(&copies)
        .build();
    assert!(m.load_plugins().unwrap().all_loaded());

    #[cfg(unix)]
    for dir in [scratch.path().join("made"), copies.clone()] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    let hello = m
        .get("hello")
        .unwrap()
        .status()
        .active
        .unwrap()
        .running_copy;
    let counter = m
        .get("counter")
        .unwrap()
        .status()
        .active
        .unwrap()
        .running_copy;
    assert!(hello.starts_with(&copies), "{}", hello.display());
    assert_eq!(files_in(&copies), {
        let mut both = vec![hello.clone(), counter.clone()];
        both.sort();
        both
    });

    // Unloading deletes its copy; the rest go with the manager.
    m.unload("hello").unwrap();
    assert_eq!(files_in(&copies), [counter]);
    drop(m);
    assert_eq!(files_in(&copies), Vec::<PathBuf>::new());
}

#[cfg(unix)]
#[test]
fn the_default_copy_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let m = PluginManager::new(base.path());
    assert_eq!(m.copy_dir(), None, "nothing needed it yet");
    let dir = m.ensure_copy_dir().unwrap();
    assert_eq!(m.copy_dir(), Some(dir.clone()));
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    drop(m);
    assert!(!dir.exists());
}

/// A `noexec` tmpfs mounted for one test (this needs root); unmounted when dropped.
#[cfg(target_os = "linux")]
struct NoexecMount(PathBuf);

#[cfg(target_os = "linux")]
impl NoexecMount {
    fn new(at: &Path) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| NoexecMount(at.to_path_buf()))
    }
}

#[cfg(target_os = "linux")]
impl Drop for NoexecMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_copy_directory_on_a_noexec_mount_is_named_in_the_error() {
    let base = tempfile::tempdir().unwrap();
    fixtures().install(base.path(), "hello");
    let scratch = tempfile::tempdir().unwrap();
    let Some(mount) = NoexecMount::new(&scratch.path().join("noexec")) else {
        // Without the right to mount, `load/copy.rs`'s unit tests cover how the loader's
        // refusal is told apart and reported.
        eprintln!("cannot mount a noexec tmpfs here; skipped");
        return;
    };
    let m = PluginManager::builder(base.path())
        .copy_dir(&mount.0)
        .build();
    let err = m.load_plugin("hello").unwrap_err();
    let Error::CopyNotExecutable { dir, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(dir, &mount.0);
    let text = err.to_string();
    assert!(text.contains(&mount.0.display().to_string()), "{text}");
    assert!(text.contains("noexec"), "{text}");
    assert_eq!(m.retained_libraries(), 0);
    assert_eq!(files_in(&mount.0), Vec::<PathBuf>::new());
}
