//! Who may change a plugin: folders writable by group or others, libraries owned by another
//! user, and plugin folders that lead outside the base directory are refused, unless the
//! host opts out.

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
            Error::FolderPermissions {
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
            Error::FolderPermissions {
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
    // SAFETY: `geteuid` takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let base = tempfile::tempdir().unwrap();
    let dir = fixtures().install(base.path(), "hello");
    let library = dir.join(library_file_name("hello"));
    const STRANGER: u32 = 54_321;
    match std::os::unix::fs::chown(&library, Some(STRANGER), None) {
        Ok(()) => {}
        // Only root can give a file away; elsewhere this case cannot be staged.
        Err(e) if !root => {
            eprintln!("skipping the owner case: {e}");
            return;
        }
        Err(e) => panic!("chown as root: {e}"),
    }
    let err = PluginManager::new(base.path())
        .load_plugin("hello")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::LibraryOwner {
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
