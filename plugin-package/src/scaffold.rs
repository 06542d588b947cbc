//! `plugctl new`: a plugin crate that builds and runs at once.

use std::path::{Path, PathBuf};

/// What [`new_plugin`] wrote.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    /// The crate folder.
    pub dir: PathBuf,
    /// The files written in it, relative to it.
    pub files: Vec<PathBuf>,
}

/// Writes a plugin crate named `name` into `parent/name`, depending on the `plugin-sdk` at
/// `sdk`.
pub fn new_plugin(name: &str, parent: &Path, sdk: &Path) -> Result<Scaffolded, crate::Error> {
    let _ = (name, parent, sdk);
    Err(crate::Error::Io {
        action: "scaffold",
        path: parent.to_path_buf(),
        source: std::io::Error::other("not implemented"),
    })
}
