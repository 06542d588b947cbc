//! Tests of the state file: persistence, the corrupt-file policy, the size cap, the lock and
//! the replacement. A FIFO or a device as the state file is tested through the public API,
//! in a child process, in `tests/integration/state_file.rs`.

use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// The longest a test waits for the writers it started.
const WRITERS_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn persists_and_survives_a_new_instance() {
    let base = tempfile::tempdir().unwrap();
    let file = StateFile::new(base.path());
    assert!(!file.is_disabled("hello"));
    file.set_disabled("hello", true).unwrap();
    assert!(StateFile::new(base.path()).is_disabled("hello"));
    file.set_disabled("hello", false).unwrap();
    assert!(!StateFile::new(base.path()).is_disabled("hello"));
}

#[test]
fn a_corrupt_file_counts_every_plugin_disabled_and_cannot_be_overwritten_blindly() {
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join(STATE_FILE), "{ not json").unwrap();
    let file = StateFile::new(base.path());
    assert!(file.is_disabled("hello"));
    let err = file.disabled("hello").unwrap_err().report();
    assert!(err.contains("delete it to enable every plugin"), "{err}");
    let err = file.set_disabled("hello", true).unwrap_err();
    assert!(
        matches!(err, Error::StateFile { action: "read", .. }),
        "{err}"
    );
}

/// `{"disabled":["hello"]}` followed by spaces, `len` bytes in all: valid JSON of any size.
fn padded_state(len: usize) -> Vec<u8> {
    let mut bytes = br#"{"disabled":["hello"]}"#.to_vec();
    bytes.resize(len, b' ');
    bytes
}

#[test]
fn a_file_up_to_the_cap_is_read_and_a_larger_one_refused() {
    let base = tempfile::tempdir().unwrap();
    let path = base.path().join(STATE_FILE);
    let file = StateFile::new(base.path());
    let cap = MAX_STATE_FILE_BYTES as usize;

    std::fs::write(&path, padded_state(cap)).unwrap();
    assert!(file.is_disabled("hello"));

    let too_big = padded_state(cap + 1);
    std::fs::write(&path, &too_big).unwrap();
    assert!(
        file.disabled("hello").is_err(),
        "a file over the cap is not read"
    );
    let err = file.set_disabled("other", true).unwrap_err().report();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), too_big, "left as it was");
}

#[test]
fn a_directory_in_place_of_the_file_is_refused_by_name() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join(STATE_FILE)).unwrap();
    let file = StateFile::new(base.path());
    assert!(file.is_disabled("hello"));
    let err = file.set_disabled("hello", true).unwrap_err().report();
    assert!(
        err.contains("it is a directory, not a regular file"),
        "{err}"
    );
    assert!(base.path().join(STATE_FILE).is_dir());
}

#[test]
fn concurrent_writers_lose_no_update() {
    const WRITERS: usize = 16;
    let base = tempfile::tempdir().unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(WRITERS));
    let (tx, rx) = mpsc::channel();
    for i in 0..WRITERS {
        let (base, barrier, tx) = (base.path().to_owned(), barrier.clone(), tx.clone());
        std::thread::spawn(move || {
            // An instance each, as separate processes would have: only the lock file
            // serialises them.
            let file = StateFile::new(&base);
            barrier.wait();
            let _ = tx.send(file.set_disabled(&format!("p{i}"), true));
        });
    }
    for _ in 0..WRITERS {
        rx.recv_timeout(WRITERS_TIMEOUT)
            .expect("every writer finishes in time")
            .unwrap();
    }
    let file = StateFile::new(base.path());
    let missing: Vec<_> = (0..WRITERS)
        .map(|i| format!("p{i}"))
        .filter(|name| !file.is_disabled(name))
        .collect();
    assert!(missing.is_empty(), "lost updates: {missing:?}");
    // Nothing is left behind but the state file and its lock file.
    let mut names: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [STATE_FILE, LOCK_FILE]);
}

#[cfg(unix)]
#[test]
fn a_symlink_planted_as_the_lock_file_is_not_followed() {
    let base = tempfile::tempdir().unwrap();
    let victim = base.path().join("victim");
    std::os::unix::fs::symlink(&victim, base.path().join(LOCK_FILE)).unwrap();
    let file = StateFile::new(base.path());
    let err = file.set_disabled("hello", true).unwrap_err();
    assert!(
        matches!(err, Error::StateFile { action: "lock", .. }),
        "{err}"
    );
    assert!(err.report().contains("symbolic link"), "{err}");
    assert!(!victim.exists(), "the link's target was not created");
    assert!(!base.path().join(STATE_FILE).exists());
}

#[cfg(unix)]
#[test]
fn the_written_file_has_the_permissions_of_an_ordinary_write() {
    use std::os::unix::fs::PermissionsExt as _;
    let base = tempfile::tempdir().unwrap();
    StateFile::new(base.path())
        .set_disabled("hello", true)
        .unwrap();
    let ordinary = base.path().join("ordinary");
    std::fs::write(&ordinary, "").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&base.path().join(STATE_FILE)),
        mode(&ordinary),
        "readable by whom the umask allows, not only the writing user"
    );
}
