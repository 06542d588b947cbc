//! The private copies each load maps, and the directory they go to.

use plugin_host::PluginManager;

#[cfg(unix)]
#[test]
fn the_default_copy_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let m = PluginManager::new(base.path());
    let dir = m.copy_dir().unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    drop(m);
    assert!(!dir.exists());
}
