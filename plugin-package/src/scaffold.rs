//! `plugctl new`: a plugin crate that builds and runs at once.
//!
//! The crate is the typed greeter of the workspace README: `Cargo.toml` (a `cdylib`
//! depending on `plugin-sdk` by path, in a workspace of its own), `src/lib.rs`,
//! `plugin.json`, `.gitignore` and a `README.md` saying how to build and call it.

use std::path::{Path, PathBuf};

use plugin_host::manifest::MANIFEST_FILE;
use plugin_host::Manifest;

use crate::build::BuildError;
use crate::Error;

/// What [`new_plugin`] wrote.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    /// The crate folder.
    pub dir: PathBuf,
    /// The files written in it, relative to it.
    pub files: Vec<PathBuf>,
}

/// Words a crate cannot be named (Rust keywords and the standard crates).
const RESERVED: [&str; 58] = [
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "union",
    "macro_rules",
];

/// Writes a plugin crate named `name` into `parent/name`, depending on the `plugin-sdk` at
/// `sdk`. `parent` is created if missing; `parent/name` must not exist.
///
/// # Errors
///
/// [`BuildError::InvalidName`] (as [`Error::Build`]) for a name that is not a valid plugin
/// and crate name: 1 to 64 ASCII letters, digits, '-' or '_', starting with a letter, not a
/// Rust keyword. [`BuildError::AlreadyExists`] if `parent/name` exists. [`Error::Io`] if
/// `sdk` holds no `Cargo.toml` or if a file cannot be written (the folder is then removed).
pub fn new_plugin(name: &str, parent: &Path, sdk: &Path) -> Result<Scaffolded, Error> {
    check_name(name)?;
    let sdk_manifest = sdk.join("Cargo.toml");
    let sdk = sdk
        .canonicalize()
        .and_then(|sdk| {
            if sdk_manifest.is_file() {
                Ok(sdk)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no Cargo.toml there: give the plugin-sdk crate's folder",
                ))
            }
        })
        .map_err(Error::io("find plugin-sdk at", sdk))?;
    let sdk = sdk.to_str().ok_or_else(|| Error::Io {
        action: "use plugin-sdk at",
        path: sdk.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the path is not UTF-8"),
    })?;
    let library = name.replace('-', "_");
    let files: [(&str, String); 5] = [
        ("Cargo.toml", cargo_toml(name, sdk)),
        ("src/lib.rs", LIB_RS.replace("{name}", name)),
        (MANIFEST_FILE, plugin_json(name, &library)),
        (".gitignore", "/target\n".to_owned()),
        ("README.md", readme(name, &library)),
    ];
    // The manifest written must be one the host accepts.
    let manifest_text = &files[2].1;
    Manifest::parse(manifest_text, &parent.join(name).join(MANIFEST_FILE))
        .map_err(plugin_host::Error::from)?;

    std::fs::create_dir_all(parent).map_err(Error::io("create the folder", parent))?;
    let dir = parent.join(name);
    std::fs::create_dir(&dir).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Build(BuildError::AlreadyExists { path: dir.clone() })
        } else {
            Error::io("create the new plugin's folder", &dir)(source)
        }
    })?;
    let written = write_files(&dir, &files);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    written?;
    Ok(Scaffolded {
        dir,
        files: files.iter().map(|(path, _)| PathBuf::from(path)).collect(),
    })
}

fn write_files(dir: &Path, files: &[(&str, String)]) -> Result<(), Error> {
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(Error::io("create the folder", folder))?;
        }
        std::fs::write(&path, text).map_err(Error::io("write", &path))?;
    }
    Ok(())
}

/// A plugin name (as the manifest checks it) that is also a crate name cargo builds.
fn check_name(name: &str) -> Result<(), BuildError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > plugin_host::manifest::MAX_NAME_LEN {
        "it is longer than 64 characters"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        "it holds a character other than an ASCII letter, a digit, '-' or '_'"
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        "it does not start with a letter (cargo names no crate starting with a digit, '-' or \
         '_')"
    } else if RESERVED.contains(&name.replace('-', "_").as_str()) {
        "it is a Rust keyword or the name of a standard crate"
    } else {
        return Ok(());
    };
    Err(BuildError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
plugin-sdk = {{ path = {sdk} }}
serde = {{ version = "1", features = ["derive"] }}

# A workspace of its own: the crate builds alone, even inside another workspace's folder.
[workspace]
"#,
        sdk = toml_string(sdk),
    )
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn plugin_json(name: &str, library: &str) -> String {
    format!(
        r#"{{
    "name": "{name}",
    "version": "0.1.0",
    "description": "Greets whoever is named in `input`",
    "source": {{ "mode": "local_so", "path": "{library}" }}
}}
"#
    )
}

const LIB_RS: &str = r#"//! The {name} plugin: takes `{"name": ...}` as its input and returns a greeting.

use plugin_sdk::{export_plugin, Context, PluginError};
use serde::{Deserialize, Serialize};

/// What the host passes in the context value `input`.
#[derive(Deserialize)]
struct Input {
    name: String,
}

/// What the plugin returns in the context value `output`.
#[derive(Serialize)]
struct Output {
    greeting: String,
}

fn greet(ctx: &Context<'_>, input: Input) -> Result<Output, PluginError> {
    if input.name.is_empty() {
        return Err(PluginError::invalid_input("`name` is empty"));
    }
    ctx.info(&format!("greeting {}", input.name));
    Ok(Output {
        greeting: format!("Hello, {}!", input.name),
    })
}

export_plugin! { call: greet }
"#;

fn readme(name: &str, library: &str) -> String {
    format!(
        r#"# {name}

A plugin: a `cdylib` crate built with `plugin-sdk`, and its `plugin.json`. Its entry,
`greet` in `src/lib.rs`, reads `{{"name": ...}}` from the context value `input` and
returns a greeting in `output`.

## Build and call

```sh
cargo build --release
mkdir -p ../plugins/{name}
cp plugin.json target/release/lib{library}.so ../plugins/{name}/   # lib{library}.dylib on macOS, {library}.dll on Windows
plugctl --dir ../plugins call {name} --set input='{{"name":"world"}}'
```

The plugin's name and version in `plugin.json` must equal the package's in `Cargo.toml`.

## Build from git

Commit the crate with its `Cargo.lock` (`cargo generate-lockfile`), then
`plugctl build <git URL or this folder> [--rev REV]` checks the commit out and builds it
with `cargo build --release --locked`. Building runs the crate's build scripts and
procedural macros, and its dependencies', with your rights.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cargo_cannot_build_are_refused() {
        for name in ["greeter", "my-plugin", "a", "x_1", "Tool2"] {
            assert!(check_name(name).is_ok(), "{name}");
        }
        let long = "a".repeat(65);
        for name in [
            "", "1abc", "-a", "_a", "a b", "a/b", "é", "fn", "self", "std", &long,
        ] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\nb"), r#""a\u000Ab""#);
    }
}
