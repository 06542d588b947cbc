//! Builds the workspace's plugins and lays them out as plugin folders.
//!
//! Tests, benches and `xtask` use it so that `cargo test --workspace` on a fresh clone builds
//! what it needs by itself: plugins are built once per test process, by running `$CARGO` with
//! a separate target directory (`target/plugins`), and each test copies the folders it needs
//! into a temporary base directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where plugin crates live, relative to the workspace root.
pub const PLUGIN_GROUPS: [&str; 2] = ["sample-plugins", "test-plugins"];

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives one level below the workspace root")
        .to_path_buf()
}

/// A plugin crate of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCrate {
    /// The package name, which is also the folder and plugin name.
    pub name: String,
    /// The crate folder, holding `Cargo.toml` and `plugin.json`.
    pub dir: PathBuf,
}

impl PluginCrate {
    /// The file name of the library Cargo builds for this crate on this platform.
    pub fn library_file_name(&self) -> String {
        library_file_name(&self.name)
    }
}

/// The file name Cargo gives the `cdylib` of package `name` on this platform.
pub fn library_file_name(name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// Every plugin crate in `group` (`sample-plugins` or `test-plugins`), sorted by name.
pub fn plugin_crates(group: &str) -> std::io::Result<Vec<PluginCrate>> {
    let mut crates = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join(group))? {
        let dir = entry?.path();
        if dir.join("Cargo.toml").is_file() {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .expect("plugin crate folders have UTF-8 names")
                .to_owned();
            crates.push(PluginCrate { name, dir });
        }
    }
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(crates)
}

/// Builds `crates` with Cargo into `target_dir` and returns the folder holding the
/// libraries.
pub fn build(crates: &[PluginCrate], release: bool, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .arg("build")
        .arg("--quiet")
        .arg("--target-dir")
        .arg(target_dir);
    if release {
        cmd.arg("--release");
    }
    for c in crates {
        cmd.arg("-p").arg(&c.name);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo to build the plugins: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the plugins failed ({status}); see the cargo output above"
        ));
    }
    Ok(target_dir.join(if release { "release" } else { "debug" }))
}

/// Lays out `plugin` as a plugin folder `<base>/<dest_name>`: its `plugin.json` and its
/// library from `lib_dir`. Returns the new folder.
pub fn install(
    plugin: &PluginCrate,
    lib_dir: &Path,
    base: &Path,
    dest_name: &str,
) -> std::io::Result<PathBuf> {
    let dest = base.join(dest_name);
    std::fs::create_dir_all(&dest)?;
    std::fs::copy(plugin.dir.join("plugin.json"), dest.join("plugin.json"))?;
    let lib = plugin.library_file_name();
    let target = dest.join(&lib);
    // Replace rather than overwrite: a loaded library must never be written in place.
    let staging = dest.join(format!(".{lib}.tmp"));
    std::fs::copy(lib_dir.join(&lib), &staging)?;
    std::fs::rename(&staging, &target)?;
    Ok(dest)
}

/// The plugins built once for this process, with the profile this crate was built with
/// (debug for tests, release for benches), into `target/plugins`.
pub struct Fixtures {
    lib_dir: PathBuf,
    crates: Vec<PluginCrate>,
}

/// Builds every sample and test plugin once per process and returns them.
///
/// # Panics
///
/// If the build fails: tests cannot run without their plugins.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let mut crates = Vec::new();
        for group in PLUGIN_GROUPS {
            crates.extend(plugin_crates(group).expect("the plugin folders are readable"));
        }
        let target = workspace_root().join("target").join("plugins");
        let release = !cfg!(debug_assertions);
        let lib_dir = build(&crates, release, &target).unwrap_or_else(|e| panic!("{e}"));
        Fixtures { lib_dir, crates }
    })
}

impl Fixtures {
    /// The folder holding the built libraries.
    pub fn lib_dir(&self) -> &Path {
        &self.lib_dir
    }

    /// The plugin crate `name`.
    ///
    /// # Panics
    ///
    /// If there is no such crate.
    pub fn plugin(&self, name: &str) -> &PluginCrate {
        self.crates
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no plugin crate named {name}"))
    }

    /// Every sample plugin name.
    pub fn sample_names(&self) -> Vec<String> {
        self.crates
            .iter()
            .filter(|c| {
                c.dir
                    .parent()
                    .is_some_and(|p| p.ends_with("sample-plugins"))
            })
            .map(|c| c.name.clone())
            .collect()
    }

    /// The built library of plugin `name`.
    pub fn library(&self, name: &str) -> PathBuf {
        self.lib_dir.join(self.plugin(name).library_file_name())
    }

    /// Installs plugin `name` into `base` as `<base>/<name>`.
    pub fn install(&self, base: &Path, name: &str) -> PathBuf {
        self.install_as(base, name, name)
    }

    /// Installs plugin `name` into `base` under the folder name `dest_name`.
    pub fn install_as(&self, base: &Path, name: &str, dest_name: &str) -> PathBuf {
        install(self.plugin(name), &self.lib_dir, base, dest_name)
            .unwrap_or_else(|e| panic!("cannot install plugin {name} into {}: {e}", base.display()))
    }
}
