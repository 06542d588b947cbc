//! Builds the workspace's plugins and lays them out as plugin folders.
//!
//! Tests, benches and `xtask` use it so that `cargo test --workspace` on a fresh clone builds
//! what it needs by itself: plugins are built once per test process, by running `$CARGO` with
//! a separate target directory (`target/plugins`), and each test copies the folders it needs
//! into a temporary base directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Gives the plugin `name` in its folder `dir` an identity record and a `plugin.json` that
/// say version `to` (of the same length as `from`), leaving its code, which still reports
/// `from`, untouched: a library whose record and code disagree, for the check made after
/// mapping. The record's layout is `plugin-abi`'s `identity` module's: magic, format and
/// ABI version, then name, version and SDK version, each after its little-endian u16 length.
///
/// # Panics
///
/// If the library has no record, its version or the manifest's is not `from`, or the
/// lengths differ.
pub fn edit_recorded_version(dir: &Path, name: &str, from: &str, to: &str) {
    const MAGIC: &[u8] = b"PLUGIDNT";
    assert_eq!(
        from.len(),
        to.len(),
        "the versions must have the same length"
    );
    let library = dir.join(library_file_name(name));
    let mut bytes = std::fs::read(&library).unwrap();
    let at = bytes
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .expect("the library has an identity record");
    let field = |at: usize| {
        let len = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
        (at + 2, len)
    };
    let (name_at, name_len) = field(at + MAGIC.len() + 2 + 4);
    let (version_at, version_len) = field(name_at + name_len);
    assert_eq!(
        &bytes[version_at..version_at + version_len],
        from.as_bytes()
    );
    bytes[version_at..version_at + version_len].copy_from_slice(to.as_bytes());
    std::fs::write(&library, &bytes).unwrap();

    let manifest = dir.join("plugin.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let (old, new) = (
        format!("\"version\": \"{from}\""),
        format!("\"version\": \"{to}\""),
    );
    assert_eq!(
        text.matches(&old).count(),
        1,
        "{} names version {from} once",
        manifest.display()
    );
    std::fs::write(&manifest, text.replace(&old, &new)).unwrap();
}

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
    replace_file(&lib_dir.join(&lib), &dest.join(&lib))?;
    Ok(dest)
}

/// Copies `from` to `to` by writing a hidden file beside `to` and renaming it over: a
/// library that is loaded must never be written in place.
fn replace_file(from: &Path, to: &Path) -> std::io::Result<()> {
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let staging = to.with_file_name(format!(".{name}.tmp"));
    std::fs::copy(from, &staging)?;
    std::fs::rename(&staging, to)
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

/// Builds the `versioned` test plugin as `version`, with `features`, and lays it out as a
/// plugin folder. Returns the folder (`target/plugin-variants/<tag>/versioned`), whose name
/// is the plugin's, so it can be installed or passed to an upgrade as it is.
///
/// Each variant is its own crate (generated under `target/plugin-variants/src/`), sharing
/// the `target/plugins` build directory and this workspace's `Cargo.lock`, so only the
/// plugin itself is compiled. Its library file is named after the variant, so concurrent
/// test processes never overwrite each other's output.
///
/// # Panics
///
/// If the build fails.
pub fn versioned_variant(version: &str, features: &[&str]) -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());

    let root = workspace_root();
    let tag = std::iter::once(version.replace(['.', '-', '+'], "_"))
        .chain(features.iter().map(|f| f.replace('-', "_")))
        .collect::<Vec<_>>()
        .join("_");
    let lib_name = format!("versioned_v{tag}");
    let crate_dir = root
        .join("target")
        .join("plugin-variants")
        .join("src")
        .join(&lib_name);
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    let source = root.join("test-plugins").join("versioned");
    let manifest = format!(
        "[package]\nname = \"versioned\"\nversion = \"{version}\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\nname = \"{lib_name}\"\ncrate-type = [\"cdylib\"]\n\n\
         [features]\npanic-on-load = []\nfail-on-unload = []\n\n\
         [dependencies]\nplugin-sdk = {{ path = {sdk:?} }}\n\n[workspace]\n",
        sdk = root.join("plugin-sdk").display().to_string(),
    );
    write_if_changed(&crate_dir.join("Cargo.toml"), &manifest);
    write_if_changed(
        &crate_dir.join("src").join("lib.rs"),
        &std::fs::read_to_string(source.join("src").join("lib.rs")).unwrap(),
    );
    write_if_changed(
        &crate_dir.join("Cargo.lock"),
        &std::fs::read_to_string(root.join("Cargo.lock")).unwrap(),
    );

    let release = !cfg!(debug_assertions);
    let target = root.join("target").join("plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if release {
        cmd.arg("--release");
    }
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building versioned {version} failed");

    let out = root
        .join("target")
        .join("plugin-variants")
        .join(&tag)
        .join("versioned");
    std::fs::create_dir_all(&out).unwrap();
    let file = library_file_name(&lib_name);
    let built = target
        .join(if release { "release" } else { "debug" })
        .join(&file);
    replace_file(&built, &out.join(&file)).unwrap();
    write_if_changed(
        &out.join("plugin.json"),
        &format!(
            "{{ \"name\": \"versioned\", \"version\": \"{version}\", \"source\": {{ \"mode\": \"local_so\", \"path\": \"{lib_name}\" }} }}\n"
        ),
    );
    out
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

/// Copies the plugin folder `from` to `<base>/<name>`, replacing what is there the way an
/// operator would: a new folder is written beside, then renamed over (so a reader never sees
/// half a folder).
pub fn install_folder(from: &Path, base: &Path, name: &str) -> PathBuf {
    let dest = base.join(name);
    let staging = base.join(format!(".{name}.staging"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), staging.join(entry.file_name())).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest).unwrap();
    dest
}

/// Builds the test plugin crate `source` (a folder of `test-plugins/`) under the package name
/// `name`, so that it is another plugin with the same code, and lays it out as a plugin folder
/// with a `plugin.json` that names it and its library (and nothing else: a test adds what it
/// needs, such as routes). Returns the folder
/// (`target/plugin-variants/renamed/<name>`), whose name is the plugin's.
///
/// Like [`versioned_variant`], the crate is generated under `target/plugin-variants/src/`
/// and shares the `target/plugins` build directory.
///
/// # Panics
///
/// If the build fails.
pub fn renamed(source: &str, name: &str) -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());

    let root = workspace_root();
    let from = root.join("test-plugins").join(source);
    let lib_name = name.replace('-', "_");
    let variants = root.join("target").join("plugin-variants");
    let crate_dir = variants.join("src").join(format!("renamed_{lib_name}"));
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\nplugin-sdk = {{ path = {sdk:?} }}\n\n[workspace]\n",
        sdk = root.join("plugin-sdk").display().to_string(),
    );
    write_if_changed(&crate_dir.join("Cargo.toml"), &manifest);
    write_if_changed(
        &crate_dir.join("src").join("lib.rs"),
        &std::fs::read_to_string(from.join("src").join("lib.rs")).unwrap(),
    );
    write_if_changed(
        &crate_dir.join("Cargo.lock"),
        &std::fs::read_to_string(root.join("Cargo.lock")).unwrap(),
    );
    let release = !cfg!(debug_assertions);
    let target = root.join("target").join("plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building {source} as {name} failed");

    let out = variants.join("renamed").join(name);
    std::fs::create_dir_all(&out).unwrap();
    let file = library_file_name(&lib_name);
    let built = target
        .join(if release { "release" } else { "debug" })
        .join(&file);
    replace_file(&built, &out.join(&file)).unwrap();
    write_if_changed(
        &out.join("plugin.json"),
        &format!(
            "{{ \"name\": \"{name}\", \"version\": \"0.1.0\", \"source\": {{ \"mode\": \"local_so\", \"path\": \"{lib_name}\" }} }}\n"
        ),
    );
    out
}
