//! Who may change a plugin: folders and manifests writable by group or others, libraries,
//! manifests and folders owned by another user, and plugin folders that lead outside the base
//! directory are refused, unless the host opts out.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use plugin_host::{Error, PluginManager, PluginState};
use plugin_test_support::{fixtures, library_file_name};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_folder_that_others_can_write_is_refused_unless_the_host_opts_out() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    chmod(&dir, 0o777);
    let err = PluginManager::new(base.path())
        .load_plugin("hello")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Writable {
                what: "plugin folder",
                mode: 0o777,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("chmod go-w"), "{err}");

    chmod(&dir, 0o755);
    chmod(base.path(), 0o777);
    let err = PluginManager::new(base.path())
        .load_plugin("hello")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Writable {
                what: "base directory",
                ..
            }
        ),
        "{err}"
    );

    let m = PluginManager::builder(base.path())
        .insecure_permissions(true)
        .build();
    m.load_plugin("hello").unwrap();
    assert_eq!(m.state("hello"), Some(PluginState::Active));
}

#[test]
fn a_library_owned_by_another_user_is_refused_unless_the_host_opts_out() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let library = dir.join(library_file_name("hello"));
    give_away(&library);
    let err = PluginManager::new(base.path())
        .load_plugin("hello")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotOwned {
                what: "library",
                owner: STRANGER,
                ..
            }
        ),
        "{err}"
    );
    let m = PluginManager::builder(base.path())
        .insecure_permissions(true)
        .build();
    m.load_plugin("hello").unwrap();
}

#[test]
fn a_plugin_folder_that_leads_outside_the_base_directory_is_refused_unless_allowed() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let real = fixtures().install(&elsewhere, "hello");
    std::os::unix::fs::symlink(&real, base.join("hello")).unwrap();
    // A link that stays inside the base directory is fine.
    let hidden = fixtures().install_as(&base, "counter", ".counter-1.0");
    std::os::unix::fs::symlink(&hidden, base.join("counter")).unwrap();

    let m = PluginManager::new(&base);
    let report = m.load_plugins().unwrap();
    let err = report.error("hello").expect("hello is refused");
    assert!(matches!(err, Error::FolderOutsideBase { .. }), "{err}");
    assert!(err.to_string().contains("elsewhere"), "{err}");
    assert_eq!(m.state("counter"), Some(PluginState::Active));

    let m = PluginManager::builder(&base)
        .allow_folders_outside_base(true)
        .build();
    m.load_plugin("hello").unwrap();
}

/// A uid that owns nothing here: only root can give files to it, and these tests run as root
/// (as CI does); [`give_away`] says so when they do not.
const STRANGER: u32 = 54_321;

fn give_away(path: &Path) {
    std::os::unix::fs::chown(path, Some(STRANGER), None).unwrap_or_else(|e| {
        panic!(
            "chown {} to uid {STRANGER}: {e}; the owner checks can be staged only as root",
            path.display()
        )
    });
}

fn load_err(base: &Path) -> Error {
    PluginManager::new(base).load_plugin("hello").unwrap_err()
}

fn loads_insecurely(base: &Path) {
    let m = PluginManager::builder(base)
        .insecure_permissions(true)
        .build();
    m.load_plugin("hello").unwrap();
}

#[test]
fn a_manifest_that_others_can_write_is_refused_even_through_a_symlink() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let manifest = dir.join("plugin.json");
    chmod(&manifest, 0o666);
    let err = load_err(base.path());
    assert!(
        matches!(
            &err,
            Error::Writable {
                what: "manifest",
                mode: 0o666,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    // A manifest others can write is never needed: the development override keeps this one.
    let err = PluginManager::builder(base.path())
        .insecure_permissions(true)
        .build()
        .load_plugin("hello")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Writable {
                what: "manifest",
                ..
            }
        ),
        "{err}"
    );

    // A private manifest that is a link to a world-writable file elsewhere: the file is checked.
    chmod(&manifest, 0o644);
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("plugin.json");
    std::fs::rename(&manifest, &target).unwrap();
    chmod(&target, 0o666);
    std::os::unix::fs::symlink(&target, &manifest).unwrap();
    let err = load_err(base.path());
    match &err {
        Error::Writable {
            what: "manifest",
            path,
            ..
        } => {
            assert_eq!(path, &target.canonicalize().unwrap(), "{err}")
        }
        _ => panic!("{err}"),
    }

    // A private file, but in a folder anyone can write (and so replace it in).
    chmod(&target, 0o644);
    chmod(elsewhere.path(), 0o777);
    let err = load_err(base.path());
    assert!(
        matches!(
            &err,
            Error::Writable {
                what: "folder of the manifest",
                mode: 0o777,
                ..
            }
        ),
        "{err}"
    );
    chmod(elsewhere.path(), 0o755);
    PluginManager::new(base.path())
        .load_plugin("hello")
        .unwrap();
}

#[test]
fn a_manifest_or_folder_owned_by_another_user_is_refused_unless_the_host_opts_out() {
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let manifest = dir.join("plugin.json");
    give_away(&manifest);
    let err = load_err(base.path());
    assert!(
        matches!(
            &err,
            Error::NotOwned {
                what: "manifest",
                owner: STRANGER,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("chown"), "{err}");
    loads_insecurely(base.path());

    std::os::unix::fs::chown(&manifest, Some(0), None).unwrap();
    give_away(&dir);
    let err = load_err(base.path());
    assert!(
        matches!(
            &err,
            Error::NotOwned {
                what: "plugin folder",
                ..
            }
        ),
        "{err}"
    );
    loads_insecurely(base.path());

    std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
    give_away(base.path());
    let err = load_err(base.path());
    assert!(
        matches!(
            &err,
            Error::NotOwned {
                what: "base directory",
                ..
            }
        ),
        "{err}"
    );
    loads_insecurely(base.path());
}

#[test]
fn a_base_directory_under_a_folder_others_can_write_is_refused_unless_that_folder_is_sticky() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    let base = shared.join("plugins");
    std::fs::create_dir_all(&base).unwrap();
    fixtures().install(&base, "hello");
    // Anyone could rename `plugins` away and put a folder of their own in its place.
    chmod(&shared, 0o777);
    let err = load_err(&base);
    match &err {
        Error::Writable {
            what: "parent folder",
            path,
            mode: 0o777,
            ..
        } => {
            assert_eq!(path, &shared.canonicalize().unwrap(), "{err}")
        }
        _ => panic!("{err}"),
    }
    loads_insecurely(&base);
    // Sticky, as /tmp is: no one may rename or remove what another user owns in it.
    chmod(&shared, 0o1777);
    PluginManager::new(&base).load_plugin("hello").unwrap();
    // A parent owned by another user could be changed by that user.
    chmod(&shared, 0o755);
    give_away(&shared);
    let err = load_err(&base);
    assert!(
        matches!(
            &err,
            Error::NotOwned {
                what: "parent folder",
                ..
            }
        ),
        "{err}"
    );
}
