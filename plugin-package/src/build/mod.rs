//! Building a plugin from source: a git repository (cloned into a cache and checked out at
//! a pinned revision) or a local folder, with `cargo build --release`.
//!
//! [`build`] takes a [`SourceSpec`] (parsed from `plugctl build`'s argument by
//! [`SourceSpec::parse`], or read from a `remote_git` manifest by
//! [`SourceSpec::from_manifest`]) and lays the plugin out as a plugin folder, its
//! `plugin.json` and its library, in a new temporary folder: a [`Built`], ready to be packed
//! or installed.
//!
//! For a git source, the repository is cloned with the `git` program into
//! `<cache_dir>/git/<name>-<hash of the URL>` (fetched again on later builds), the pin is
//! resolved to a commit, and that commit is checked out detached, with every untracked file
//! removed; the commit checked out must be the one the pin resolved to
//! ([`BuildError::CommitMismatch`]). The repository's root must hold the plugin's crate: `Cargo.toml`, a committed
//! `Cargo.lock` (it is built with `--locked`: a pinned revision with floating dependencies is
//! not a pin) and the plugin's own `plugin.json`, whose `source.mode` is `local_so`.
//! Submodules are not fetched. The built plugin's `plugin.json` is the crate's own with
//! `source.repository` (the URL, without a password) and `source.commit` (the full id of the
//! commit built) added, so that `plugctl info` can tell where it came from.
//!
//! # Trust
//!
//! **Building runs the plugin's code.** Cargo runs the crate's and its dependencies'
//! `build.rs` scripts and procedural macros with the rights of the user who builds, long
//! before the host checks anything. Build only sources you would run: the pin and the
//! committed `Cargo.lock` are the trust boundary, and what they name is what runs. A commit
//! pin ([`Pin::Rev`]) is a full commit id, fetched and verified as that commit object, never
//! looked up among tags or branches (a repository may name a tag or branch like the id); it
//! cannot move. A tag ([`Pin::Tag`], `refs/tags/<tag>` only) or a branch ([`Pin::Branch`],
//! the remote's `refs/heads/<branch>` only) can be moved by whoever writes the repository. The host's checks
//! apply to the built library only when it is loaded.
//!
//! git runs with `GIT_TERMINAL_PROMPT=0` (it never asks for a password: use an SSH key or a
//! credential helper), only the `https`, `http`, `ssh`, `git` and `file` transports, and no
//! standard input; cargo runs with no standard input either. Neither is given a time limit:
//! a build takes minutes.

mod cargo;
mod command;
mod git;
mod source;

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use plugin_host::manifest::{ManifestError, SourceMode, MANIFEST_FILE, MAX_MANIFEST_BYTES};
use plugin_host::Manifest;

pub use source::{Pin, SourceSpec};

/// Why a build failed. Every message says what failed, where, and how to fix it; a failed
/// `git` or `cargo` carries its command line and the end of its own error output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The argument is neither a git URL nor an existing file or folder.
    #[error(
        "`{arg}` is neither a git URL nor an existing folder; give a URL such as \
         https://example.com/me/plugin.git or git@example.com:me/plugin.git, or the path of \
         a plugin crate"
    )]
    NotFound {
        /// The argument as given.
        arg: String,
    },
    /// A git URL that is not accepted.
    #[error(
        "`{url}` is not a usable git URL: {reason}; give an https://, http://, ssh://, git:// \
         or file:// URL, the scp-like user@host:path, or the path of a local repository"
    )]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A revision, tag or branch name that could be read as an option or is malformed.
    #[error(
        "`{rev}` is not a usable revision: {reason}; give a full commit id, a tag or a branch \
         name as git shows it, such as v1.2.0 or main"
    )]
    InvalidRevision {
        /// The revision as given.
        rev: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A commit pin that is not a full commit id. A shortened id (or a name) is refused: a
    /// tag or branch can be named like it, and would be built instead.
    #[error(
        "`{rev}` is not a full commit id, and a commit is pinned by its full id only (a tag or \
         a branch may be named like a shortened one); give the full 40-character id, which \
         `git rev-parse {rev}` prints in the repository, or build a tag or a branch with \
         --tag or --branch (`source.tag` or `source.branch` in plugin.json)"
    )]
    NotACommitId {
        /// The revision as given.
        rev: String,
    },
    /// git gave another commit than the pin resolved to, or a commit id pin names an object
    /// that is not that commit (an annotated tag's id, say). Nothing was built.
    #[error(
        "{url}: {pin} should be commit {expected}, but git gave commit {found} ({reason}); \
         nothing was built. For a commit pin, check that the id names a commit (`git cat-file \
         -t {expected}` prints `commit`); otherwise remove the cached clone in the cache \
         folder's git/ and build again"
    )]
    CommitMismatch {
        /// The repository.
        url: String,
        /// What was pinned (boxed, to keep the error small).
        pin: Box<Pin>,
        /// The commit the pin resolved to (for a commit pin, the pin itself).
        expected: String,
        /// The commit git gave.
        found: String,
        /// Where they differed.
        reason: &'static str,
    },
    /// A pin was given for a plain folder, which has no revisions.
    #[error(
        "{} is a plain folder, not a git work tree, so {pin} cannot be checked out; drop \
         --rev, --tag or --branch to build the folder as it is, or give a git repository",
        path.display()
    )]
    RevisionForFolder {
        /// The folder.
        path: PathBuf,
        /// The pin given.
        pin: Pin,
    },
    /// A folder (or a checked-out repository) without the plugin's crate at its root.
    #[error(
        "{location} holds no Cargo.toml at its root, so it is not a plugin crate; give the \
         folder (or repository) whose root holds the plugin's Cargo.toml and plugin.json"
    )]
    NotACrate {
        /// The folder, or the URL and commit.
        location: String,
    },
    /// The plugin's `plugin.json` cannot be read or is invalid.
    #[error("the plugin's manifest in {location} is not usable: {source}")]
    Manifest {
        /// The folder, or the URL and commit.
        location: String,
        /// What is wrong with the manifest.
        source: Box<ManifestError>,
    },
    /// The crate's own `plugin.json` is not `local_so`, so it cannot describe the built
    /// library.
    #[error(
        "{location}: plugin.json has `source.mode` \"{mode}\", but the plugin.json next to the \
         crate describes the built plugin and must be \"local_so\", with `source.path` naming \
         its library (the crate name with '-' turned into '_')"
    )]
    NotLocalSo {
        /// The folder, or the URL and commit.
        location: String,
        /// The manifest file.
        file: PathBuf,
        /// Its mode.
        mode: SourceMode,
    },
    /// [`SourceSpec::from_manifest`] was given a manifest that names no git source.
    #[error(
        "plugin `{plugin}` has `source.mode` \"{mode}\", so its manifest names no source to \
         build; building from a manifest needs `source.mode` \"remote_git\" and a git URL in \
         `source.path`"
    )]
    NotRemoteGit {
        /// The plugin's name.
        plugin: String,
        /// Its mode.
        mode: SourceMode,
    },
    /// A program could not be started.
    #[error("cannot run `{program}`: {source}; install it, or check that it is on the PATH")]
    Spawn {
        /// The program.
        program: String,
        /// The error starting it.
        source: std::io::Error,
    },
    /// git could not clone or fetch the repository.
    #[error(
        "git could not fetch {url}: {stderr}\n(`{command}` failed with {status}; check the URL, \
         that the repository exists and that you may read it: git asks for no password here, \
         use an SSH key or a credential helper)"
    )]
    Fetch {
        /// The repository.
        url: String,
        /// The git command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The end of git's error output.
        stderr: String,
    },
    /// The pinned revision, tag or branch is not in the repository.
    #[error(
        "{pin} not found in {url}; check the name (`git ls-remote {url}` lists the branches \
         and tags), or that the commit was pushed"
    )]
    RevisionNotFound {
        /// The repository.
        url: String,
        /// What was looked for.
        pin: Pin,
    },
    /// Another git command failed.
    #[error("git failed in {}: {stderr}\n(`{command}` failed with {status})", dir.display())]
    Git {
        /// The repository folder.
        dir: PathBuf,
        /// The git command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The end of git's error output.
        stderr: String,
    },
    /// The repository has no committed `Cargo.lock`.
    #[error(
        "{url} at commit {commit} has no Cargo.lock; commit Cargo.lock to the repository \
         (`cargo generate-lockfile`, then `git add Cargo.lock`): a pinned revision with \
         floating dependencies is not a pin, so a git source is built with --locked"
    )]
    NoLockfile {
        /// The repository.
        url: String,
        /// The commit checked out.
        commit: String,
    },
    /// cargo could not build the crate.
    #[error(
        "cargo could not build the plugin in {}; fix what cargo reports and build again \
         (`{command}` failed with {status}):\n{stderr}",
        dir.display()
    )]
    Cargo {
        /// The crate folder.
        dir: PathBuf,
        /// The cargo command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The end of cargo's error output.
        stderr: String,
    },
    /// cargo built no library with the name `plugin.json` gives.
    #[error(
        "cargo built no library named {} in {location} (it built: {}); set `source.path` in \
         plugin.json to the library's name (the crate name with '-' turned into '_') and \
         check that Cargo.toml has `[lib] crate-type = [\"cdylib\"]`",
        expected.join(" or "),
        if found.is_empty() { "no cdylib".to_owned() } else { found.join(", ") }
    )]
    NoLibrary {
        /// The folder, or the URL and commit.
        location: String,
        /// The file names `plugin.json` allows.
        expected: Vec<String>,
        /// The cdylib file names cargo reported.
        found: Vec<String>,
    },
    /// An invalid name for a new plugin.
    #[error(
        "`{name}` cannot be a plugin's name: {reason}; use 1 to 64 ASCII letters, digits, '-' \
         or '_', starting with a letter, such as \"my-plugin\""
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The folder for a new plugin exists already.
    #[error(
        "{} exists already; choose another name for the new plugin, or remove the folder",
        path.display()
    )]
    AlreadyExists {
        /// The folder.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "copy the library".
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl BuildError {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BuildError::Io {
            action,
            path,
            source,
        }
    }
}

/// How to build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Where clones (and, unless `target_dir` is set, build output) are kept between builds.
    pub cache_dir: PathBuf,
    /// The cargo to run. Default: `$CARGO` if set, else `cargo`.
    pub cargo: OsString,
    /// The git to run. Default: `git`.
    pub git: OsString,
    /// Cargo's target directory; default `<cache_dir>/target`.
    pub target_dir: Option<PathBuf>,
    /// Build with `cargo --offline`: only dependencies already downloaded. Default false.
    pub offline: bool,
    /// Copy git's and cargo's error output (their progress) to this process's standard error
    /// as it comes, for a command-line tool. Default false: it is only captured, and the end
    /// of it is in the error if a command fails.
    pub show_output: bool,
}

impl BuildOptions {
    /// The defaults, with clones kept in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        BuildOptions {
            cache_dir: cache_dir.into(),
            cargo: std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            git: "git".into(),
            target_dir: None,
            offline: false,
            show_output: false,
        }
    }

    /// The target directory, absolute: cargo runs in the crate's folder.
    fn target_dir(&self) -> Result<PathBuf, BuildError> {
        let dir = self
            .target_dir
            .clone()
            .unwrap_or_else(|| self.cache_dir.join("target"));
        std::path::absolute(&dir).map_err(BuildError::io("resolve the target directory", dir))
    }
}

/// A plugin built and laid out as a plugin folder, not yet installed.
#[derive(Debug)]
pub struct Built {
    /// Holds the plugin folder; removed when dropped.
    pub staging: tempfile::TempDir,
    /// The plugin folder, `<staging>/<name>`: `plugin.json` and the library.
    pub dir: PathBuf,
    /// The library inside `dir`.
    pub library: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: semver::Version,
    /// The commit built (its full id), for a git source; also `source.commit` in the
    /// plugin's `plugin.json`.
    pub commit: Option<String>,
    /// The repository built from (its URL or path, without a password), for a git source;
    /// also `source.repository` in the plugin's `plugin.json`.
    pub repository: Option<String>,
}

/// Builds `source` and lays the plugin out in a new temporary folder inside `staging_parent`.
///
/// A git source is checked out in the cache (see the [module docs](self)) and built with
/// `--locked`; a folder is built in place, with `--locked` if it holds a `Cargo.lock`. Cargo's
/// output goes to the `target_dir` of [`BuildOptions`].
///
/// # Errors
///
/// For a git source: [`BuildError::Fetch`] if the repository cannot be cloned or fetched,
/// [`BuildError::RevisionNotFound`], [`BuildError::NoLockfile`]. For any source:
/// [`BuildError::NotACrate`], [`BuildError::Manifest`] and [`BuildError::NotLocalSo`] for
/// the crate's `plugin.json`, [`BuildError::Cargo`] if the build fails,
/// [`BuildError::NoLibrary`], [`BuildError::Spawn`] and [`BuildError::Io`].
pub fn build(
    source: &SourceSpec,
    options: &BuildOptions,
    staging_parent: &Path,
) -> Result<Built, BuildError> {
    match source {
        SourceSpec::Git { url, pin } => {
            source::check_url(url)?;
            pin.check()?;
            let checkout = git::checkout(url, pin, options)?;
            let location = format!("{url} at commit {}", checkout.commit);
            let (manifest, text) = crate_manifest(&checkout.dir, &location)?;
            if !checkout.dir.join("Cargo.lock").is_file() {
                return Err(BuildError::NoLockfile {
                    url: url.clone(),
                    commit: checkout.commit,
                });
            }
            let library = cargo::build(&checkout.dir, true, &manifest, &location, options)?;
            let origin = Origin {
                repository: without_password(url),
                commit: checkout.commit,
            };
            lay_out(&manifest, &text, &library, staging_parent, Some(origin))
        }
        SourceSpec::Folder(dir) => {
            let dir = &std::path::absolute(dir).map_err(BuildError::io("resolve the path", dir))?;
            let location = dir.display().to_string();
            let (manifest, text) = crate_manifest(dir, &location)?;
            let locked = dir.join("Cargo.lock").is_file();
            let library = cargo::build(dir, locked, &manifest, &location, options)?;
            lay_out(&manifest, &text, &library, staging_parent, None)
        }
    }
}

/// Checks that `dir` holds a crate and reads its `plugin.json`, which must be `local_so`.
/// Returns the manifest and its text.
fn crate_manifest(dir: &Path, location: &str) -> Result<(Manifest, String), BuildError> {
    if !dir.join("Cargo.toml").is_file() {
        return Err(BuildError::NotACrate {
            location: location.to_owned(),
        });
    }
    let (manifest, text) = read_manifest(dir).map_err(|source| BuildError::Manifest {
        location: location.to_owned(),
        source: Box::new(source),
    })?;
    if manifest.source.mode != SourceMode::LocalSo {
        return Err(BuildError::NotLocalSo {
            location: location.to_owned(),
            file: dir.join(MANIFEST_FILE),
            mode: manifest.source.mode,
        });
    }
    Ok((manifest, text))
}

/// Reads and parses `<dir>/plugin.json`: a regular file (not a link, which could point
/// outside a checkout) of at most [`MAX_MANIFEST_BYTES`].
pub(crate) fn read_manifest(dir: &Path) -> Result<(Manifest, String), ManifestError> {
    let file = dir.join(MANIFEST_FILE);
    let read_error = |source| ManifestError::Read {
        file: file.clone(),
        source,
    };
    let meta = std::fs::symlink_metadata(&file).map_err(read_error)?;
    if !meta.is_file() {
        let kind = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else if meta.is_dir() {
            "a folder"
        } else {
            "a special file"
        };
        return Err(ManifestError::NotAFile { file, kind });
    }
    let mut text = String::new();
    std::fs::File::open(&file)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_string(&mut text))
        .map_err(read_error)?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            file,
            cap: MAX_MANIFEST_BYTES,
        });
    }
    let manifest = Manifest::parse(&text, &file)?;
    Ok((manifest, text))
}

/// Where a plugin built from git comes from, recorded in its `plugin.json`.
struct Origin {
    /// `source.repository`: the URL or path built, without a password.
    repository: String,
    /// `source.commit`: the full id of the commit built.
    commit: String,
}

/// `url` with the password of an `https://user:password@host/...` URL left out, so that
/// it is not written into the plugin's `plugin.json`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}@{host}{path}")
}

/// The text of the built plugin's `plugin.json`: the crate's own, with `source.repository`
/// and `source.commit` set to `origin` (for a git build) or removed (for a folder, which
/// has no commit to record). Unchanged if there is nothing to set or remove.
fn built_manifest_text(
    manifest: &Manifest,
    text: &str,
    origin: Option<&Origin>,
    file: &Path,
) -> Result<String, BuildError> {
    if origin.is_none() && manifest.source.repository.is_none() && manifest.source.commit.is_none()
    {
        return Ok(text.to_owned());
    }
    let invalid = |source| BuildError::Manifest {
        location: file.display().to_string(),
        source: Box::new(source),
    };
    let mut value: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| {
            invalid(ManifestError::Syntax {
                file: file.to_path_buf(),
                line: e.line(),
                column: e.column(),
                field: None,
                message: e.to_string(),
                hint: "fix the JSON syntax".to_owned(),
            })
        })?;
    if let Some(source) = value.get_mut("source").and_then(|s| s.as_object_mut()) {
        source.remove("repository");
        source.remove("commit");
        if let Some(origin) = origin {
            source.insert("repository".into(), origin.repository.clone().into());
            source.insert("commit".into(), origin.commit.clone().into());
        }
    }
    let mut out = serde_json::to_string_pretty(&value).expect("a JSON value serializes");
    out.push('\n');
    // The build wrote it: it must read back as the manifest it came from, plus the origin.
    Manifest::parse(&out, file).map_err(invalid)?;
    Ok(out)
}

/// Lays out `<staging>/<name>/plugin.json` (with `origin` recorded, see
/// [`built_manifest_text`]) and the library at its path relative to the plugin folder.
fn lay_out(
    manifest: &Manifest,
    manifest_text: &str,
    library: &cargo::Library,
    staging_parent: &Path,
    origin: Option<Origin>,
) -> Result<Built, BuildError> {
    let staging = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(staging_parent)
        .map_err(BuildError::io("create a staging folder in", staging_parent))?;
    let dir = staging.path().join(&manifest.name);
    std::fs::create_dir(&dir).map_err(BuildError::io("create the plugin folder", &dir))?;
    let manifest_file = dir.join(MANIFEST_FILE);
    let manifest_text =
        built_manifest_text(manifest, manifest_text, origin.as_ref(), &manifest_file)?;
    std::fs::write(&manifest_file, manifest_text)
        .map_err(BuildError::io("write", &manifest_file))?;
    let dest = dir.join(&library.relative);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(BuildError::io("create the folder", parent))?;
    }
    std::fs::copy(&library.built, &dest).map_err(BuildError::io("copy the library to", &dest))?;
    tracing::info!(plugin = %manifest.name, version = %manifest.version, dir = %dir.display(),
        "plugin built");
    Ok(Built {
        staging,
        library: dest,
        dir,
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        commit: origin.as_ref().map(|o| o.commit.clone()),
        repository: origin.map(|o| o.repository),
    })
}

/// Holds an exclusive lock on `path` (created if missing) while the returned file is open,
/// so that two builds never share a work tree, or a library in a target directory, at
/// once. Unix only; elsewhere no lock.
fn lock(path: &Path) -> Result<File, BuildError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(BuildError::io("open the lock file", path))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let flock = |operation| {
            // SAFETY: `flock` reads no memory of ours; the descriptor belongs to `file`, which
            // is open for the whole call.
            if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        if flock(libc::LOCK_EX | libc::LOCK_NB).is_err() {
            tracing::info!(lock = %path.display(), "waiting for another build to finish");
            loop {
                match flock(libc::LOCK_EX) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(BuildError::io("lock", path)(e)),
                }
            }
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_repository_keeps_no_password() {
        assert_eq!(
            without_password("https://me:s3cret@example.com/p.git"),
            "https://me@example.com/p.git"
        );
        for url in [
            "https://example.com/p.git",
            "ssh://git@example.com/p.git",
            "git@example.com:me/p.git",
            "/srv/git/p",
            "file:///srv/git/p",
        ] {
            assert_eq!(without_password(url), url);
        }
    }
}
