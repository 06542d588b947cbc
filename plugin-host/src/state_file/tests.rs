//! Tests of the state file: persistence, the corrupt-file policy and the size cap. A FIFO or
//! a device as the state file is tested through the public API, in a child process, in
//! `tests/integration/state_file.rs`.

use super::*;

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
fn a_corrupt_file_disables_nothing_and_cannot_be_overwritten_blindly() {
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join(STATE_FILE), "{ not json").unwrap();
    let file = StateFile::new(base.path());
    assert!(!file.is_disabled("hello"));
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
        !file.is_disabled("hello"),
        "a file over the cap is not read"
    );
    let err = file.set_disabled("other", true).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("cap of 1 MiB"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), too_big, "left as it was");
}

#[test]
fn a_directory_in_place_of_the_file_is_refused_by_name() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join(STATE_FILE)).unwrap();
    let file = StateFile::new(base.path());
    assert!(!file.is_disabled("hello"));
    let err = file.set_disabled("hello", true).unwrap_err().to_string();
    assert!(
        err.contains("it is a directory, not a regular file"),
        "{err}"
    );
    assert!(base.path().join(STATE_FILE).is_dir());
}
