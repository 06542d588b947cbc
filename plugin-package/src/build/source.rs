//! What to build: [`SourceSpec`] and [`Pin`], from `plugctl build`'s argument or a manifest.

use std::fmt;
use std::path::{Path, PathBuf};

use plugin_host::manifest::{SourceMode, MANIFEST_FILE};
use plugin_host::Manifest;

use super::BuildError;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A git repository at a URL or local path, with an optional pin.
    Git {
        /// The URL (https, http, ssh, git, file, scp-like) or absolute local path of the
        /// repository.
        url: String,
        /// What to check out.
        pin: Pin,
    },
    /// A plain folder holding the plugin crate (not a git repository): built in place.
    Folder(PathBuf),
}

/// What to check out of a repository. Each kind is looked up one way only, so that a tag or
/// a branch named like a commit id (or like another pin) is never taken for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The remote's default branch, as it is now (`refs/remotes/origin/HEAD`).
    Head,
    /// A commit, by its full id (40 hex digits, or 64 in a SHA-256 repository). It is
    /// fetched and verified as a commit object, never looked up among tags or branches; a
    /// shortened id is refused ([`BuildError::NotACommitId`]).
    Rev(String),
    /// A tag: `refs/tags/<tag>` only, peeled to its commit. A tag can be moved on the remote.
    Tag(String),
    /// A branch of the remote, as it is now: `refs/remotes/origin/<branch>` only.
    Branch(String),
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Head => f.write_str("the default branch (HEAD)"),
            Pin::Rev(rev) => write!(f, "commit {rev}"),
            Pin::Tag(tag) => write!(f, "tag {tag}"),
            Pin::Branch(branch) => write!(f, "branch {branch}"),
        }
    }
}

impl Pin {
    /// Checks that the revision, tag or branch name cannot be read as an option, and that a
    /// commit pin is a full commit id.
    pub(super) fn check(&self) -> Result<(), BuildError> {
        match self {
            Pin::Head => Ok(()),
            Pin::Rev(rev) => {
                check_revision(rev)?;
                if is_full_commit_id(rev) {
                    Ok(())
                } else {
                    Err(BuildError::NotACommitId { rev: rev.clone() })
                }
            }
            Pin::Tag(name) | Pin::Branch(name) => check_revision(name),
        }
    }
}

/// 40 hex digits (a SHA-1 repository) or 64 (a SHA-256 repository).
pub(super) fn is_full_commit_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

const SCHEMES: [&str; 5] = ["https://", "http://", "ssh://", "git://", "file://"];

impl SourceSpec {
    /// Reads `plugctl build`'s argument, `GIT_URL|PATH [--rev COMMIT|--tag TAG|--branch
    /// BRANCH]`, with `pin` the one of those given:
    ///
    /// - an `https://`, `http://`, `ssh://`, `git://` or `file://` URL, or an scp-like
    ///   `user@host:path` that is not an existing path: [`SourceSpec::Git`];
    /// - a folder whose `plugin.json` has `source.mode` `remote_git`: the source that
    ///   manifest names ([`SourceSpec::from_manifest`]), with `pin` instead of its pin if
    ///   given;
    /// - a git work tree (it holds `.git`): [`SourceSpec::Git`] with its absolute path. What
    ///   is built is what is **committed** (the current branch, or the pin), not the files as
    ///   they are in the work tree;
    /// - a plain folder holding `Cargo.toml`: [`SourceSpec::Folder`], built as it is (a `pin`
    ///   is refused).
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidRevision`] for a revision, tag or branch that is empty, starts
    /// with '-' or holds whitespace or control characters; [`BuildError::NotACommitId`] for a
    /// [`Pin::Rev`] that is not a full commit id; [`BuildError::InvalidUrl`]; [`BuildError::NotFound`]
    /// for a path that does not exist; [`BuildError::Manifest`] for a folder whose
    /// `plugin.json` is invalid; [`BuildError::NotACrate`]; [`BuildError::RevisionForFolder`].
    pub fn parse(arg: &str, pin: Option<Pin>) -> Result<SourceSpec, BuildError> {
        if let Some(pin) = &pin {
            pin.check()?;
        }
        let given = pin;
        let pin = || given.clone().unwrap_or(Pin::Head);
        if arg.is_empty() {
            return Err(BuildError::NotFound {
                arg: arg.to_owned(),
            });
        }
        if has_scheme(arg) {
            check_url(arg)?;
            return Ok(SourceSpec::Git {
                url: arg.to_owned(),
                pin: pin(),
            });
        }
        let path = Path::new(arg);
        if std::fs::symlink_metadata(path).is_err() {
            if is_scp_like(arg) {
                check_url(arg)?;
                return Ok(SourceSpec::Git {
                    url: arg.to_owned(),
                    pin: pin(),
                });
            }
            if arg.contains("://") {
                return Err(BuildError::InvalidUrl {
                    url: arg.to_owned(),
                    reason: "the scheme is not one git is run with here",
                });
            }
            return Err(BuildError::NotFound {
                arg: arg.to_owned(),
            });
        }
        let dir = path
            .canonicalize()
            .map_err(BuildError::io("resolve the path", path))?;
        if dir.join(MANIFEST_FILE).exists() {
            let (manifest, _) =
                super::read_manifest(&dir).map_err(|source| BuildError::Manifest {
                    location: dir.display().to_string(),
                    source: Box::new(source),
                })?;
            if manifest.source.mode == SourceMode::RemoteGit {
                let mut spec = SourceSpec::from_manifest(&manifest)?;
                if let (
                    SourceSpec::Git {
                        pin: manifest_pin, ..
                    },
                    Some(_),
                ) = (&mut spec, &given)
                {
                    *manifest_pin = pin();
                }
                return Ok(spec);
            }
        }
        if dir.join(".git").exists() {
            let url = dir.to_str().ok_or_else(|| BuildError::InvalidUrl {
                url: dir.display().to_string(),
                reason: "the path is not valid UTF-8",
            })?;
            check_url(url)?;
            return Ok(SourceSpec::Git {
                url: url.to_owned(),
                pin: pin(),
            });
        }
        if !dir.join("Cargo.toml").is_file() {
            return Err(BuildError::NotACrate {
                location: dir.display().to_string(),
            });
        }
        if let Some(pin) = given {
            return Err(BuildError::RevisionForFolder { path: dir, pin });
        }
        Ok(SourceSpec::Folder(dir))
    }

    /// The git source a `remote_git` manifest names: `source.path` pinned by `source.rev`
    /// (a full commit id: [`Pin::Rev`]), `source.tag` ([`Pin::Tag`]) or `source.branch`
    /// ([`Pin::Branch`]); at most one is set, none means the default branch.
    ///
    /// # Errors
    ///
    /// [`BuildError::NotRemoteGit`] for a `local_so` manifest.
    pub fn from_manifest(manifest: &Manifest) -> Result<SourceSpec, BuildError> {
        let source = &manifest.source;
        if source.mode != SourceMode::RemoteGit {
            return Err(BuildError::NotRemoteGit {
                plugin: manifest.name.clone(),
                mode: source.mode,
            });
        }
        let pin = if let Some(rev) = &source.rev {
            Pin::Rev(rev.clone())
        } else if let Some(tag) = &source.tag {
            Pin::Tag(tag.clone())
        } else if let Some(branch) = &source.branch {
            Pin::Branch(branch.clone())
        } else {
            Pin::Head
        };
        Ok(SourceSpec::Git {
            url: source.path.clone(),
            pin,
        })
    }
}

fn has_scheme(arg: &str) -> bool {
    SCHEMES.iter().any(|scheme| {
        arg.len() > scheme.len()
            && arg.is_char_boundary(scheme.len())
            && arg[..scheme.len()].eq_ignore_ascii_case(scheme)
    })
}

/// `user@host:path`, as git reads it (the user is required, so that a local path holding a
/// ':' is not mistaken for a host).
fn is_scp_like(arg: &str) -> bool {
    let Some((user, rest)) = arg.split_once('@') else {
        return false;
    };
    let Some((host, path)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && !user.contains(['/', ':'])
        && !host.is_empty()
        && !host.contains(['/', '@'])
        && !path.is_empty()
}

/// A URL or local path git may be given: not read as an option, no control characters, and
/// for a URL no whitespace.
pub(super) fn check_url(url: &str) -> Result<(), BuildError> {
    let reason = if url.is_empty() {
        "it is empty"
    } else if url.starts_with('-') {
        "it starts with '-' and would be read as an option"
    } else if url.chars().any(char::is_control) {
        "it contains a control character"
    } else if Path::new(url).is_absolute() {
        return Ok(());
    } else if url.chars().any(char::is_whitespace) {
        "it contains whitespace"
    } else if has_scheme(url) || is_scp_like(url) {
        return Ok(());
    } else {
        "it is neither a URL nor an absolute path"
    };
    Err(BuildError::InvalidUrl {
        url: url.to_owned(),
        reason,
    })
}

/// A revision that cannot be read as an option or split into several arguments.
fn check_revision(rev: &str) -> Result<(), BuildError> {
    let reason = if rev.is_empty() {
        "it is empty"
    } else if rev.len() > 256 {
        "it is longer than 256 characters"
    } else if rev.starts_with('-') {
        "it starts with '-' and would be read as an option"
    } else if rev.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or a control character"
    } else {
        return Ok(());
    };
    Err(BuildError::InvalidRevision {
        rev: rev.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        for url in [
            "https://example.com/a.git",
            "HTTP://example.com/a",
            "ssh://git@example.com/a",
            "git://example.com/a",
            "file:///srv/a",
            "git@example.com:me/a.git",
            "/srv/repos/a b",
        ] {
            assert!(check_url(url).is_ok(), "{url}");
        }
        for url in [
            "",
            "-uhttps://x",
            "https://exa mple.com/a",
            "https://example.com/\n",
            "example.com:a",
            "relative/path",
            "@host:path",
            "user@:path",
            "user@host:",
        ] {
            assert!(check_url(url).is_err(), "{url:?}");
        }
    }

    #[test]
    fn revisions_that_read_as_options_are_refused() {
        for rev in ["main", "v1.2.0", "1a2b3c4d", "HEAD~1", "feature/x"] {
            assert!(check_revision(rev).is_ok(), "{rev}");
        }
        let full = "0123456789abcdef0123456789abcdef01234567";
        assert!(Pin::Rev(full.into()).check().is_ok());
        assert!(Pin::Rev(full.repeat(2)[..64].into()).check().is_ok());
        for short in [
            "1a2b3c4d",
            "main",
            &full[..39],
            &format!("{full}0"),
            "g".repeat(40).as_str(),
        ] {
            assert!(
                matches!(
                    Pin::Rev(short.into()).check(),
                    Err(BuildError::NotACommitId { .. })
                ),
                "{short}"
            );
        }
        assert!(Pin::Tag("1a2b3c4d".into()).check().is_ok());
        for rev in ["", "-x", "--upload-pack=x", "a b", "a\tb", "a\u{7f}"] {
            assert!(check_revision(rev).is_err(), "{rev:?}");
        }
        assert!(check_revision(&"a".repeat(257)).is_err());
    }
}
