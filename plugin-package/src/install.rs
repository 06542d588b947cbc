//! Installing a package into a manager's base directory: verify, extract, check, move in.

use plugin_host::PluginManager;

/// Installs packages into a manager's base directory.
pub struct Installer<'m> {
    manager: &'m PluginManager,
}

impl<'m> Installer<'m> {
    /// An installer for `manager`'s base directory.
    pub fn new(manager: &'m PluginManager) -> Self {
        Installer { manager }
    }
}

/// A plugin installed.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The plugin's name.
    pub name: String,
    /// The version installed.
    pub version: semver::Version,
}
