//! Building a plugin from source: a git repository (cloned into a cache and checked out at
//! a pinned revision) or a local folder, with `cargo build --release`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Placeholder until the build work lands.
    #[error("not implemented")]
    Unimplemented,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A git repository at a URL or local path, with an optional pin.
    Git {
        /// The URL (https, ssh, git, file, scp-like) or local path of the repository.
        url: String,
        /// What to check out.
        pin: Pin,
    },
    /// A plain folder holding the plugin crate (not a git repository): built in place.
    Folder(PathBuf),
}

/// What to check out of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The remote's default branch, as it is now.
    Head,
    /// A commit.
    Rev(String),
    /// A tag.
    Tag(String),
    /// A branch, as it is now.
    Branch(String),
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where clones (and, unless `target_dir` is set, build output) are kept between builds.
    pub cache_dir: PathBuf,
    /// The cargo to run.
    pub cargo: OsString,
    /// Cargo's target directory; default `<cache_dir>/target`.
    pub target_dir: Option<PathBuf>,
}

/// A plugin built and laid out as a plugin folder, not yet installed.
#[derive(Debug)]
pub struct Built {
    /// Holds the plugin folder; removed when dropped.
    pub staging: tempfile::TempDir,
    /// The plugin folder: `plugin.json` and the library.
    pub dir: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: semver::Version,
    /// The commit built, for a git source.
    pub commit: Option<String>,
}

/// Builds `source` and lays the plugin out in a new temporary folder inside `staging_parent`.
pub fn build(
    source: &SourceSpec,
    options: &BuildOptions,
    staging_parent: &Path,
) -> Result<Built, BuildError> {
    let _ = (source, options, staging_parent);
    Err(BuildError::Unimplemented)
}

impl SourceSpec {
    /// Reads the CLI's `GIT_URL|PATH [--rev REV]`.
    pub fn parse(arg: &str, rev: Option<&str>) -> Result<SourceSpec, BuildError> {
        let _ = (arg, rev);
        Err(BuildError::Unimplemented)
    }
}
