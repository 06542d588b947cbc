//! The git side of a build: a clone per URL in the cache, fetched again on later builds, and
//! the pinned commit checked out detached and clean.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::command::{self, Finished};
use super::{BuildError, BuildOptions, Pin};

/// Transports git may use (`GIT_ALLOW_PROTOCOL`): the URL forms [`super::SourceSpec`]
/// accepts, and nothing that runs a command (`ext::`) or an unknown remote helper.
const ALLOWED_PROTOCOLS: &str = "https:http:ssh:git:file";

/// Environment variables that would point git at another repository than the one named.
const REPOSITORY_ENV: [&str; 7] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
];

/// A repository checked out at a commit. The cache lock is held while it lives.
pub(super) struct Checkout {
    /// The work tree.
    pub(super) dir: PathBuf,
    /// The commit checked out (full hex id).
    pub(super) commit: String,
    _lock: File,
}

/// Clones `url` into the cache (or fetches it again), resolves `pin` and checks the commit
/// out, detached, with every untracked file removed.
pub(super) fn checkout(
    url: &str,
    pin: &Pin,
    options: &BuildOptions,
) -> Result<Checkout, BuildError> {
    let root = std::path::absolute(options.cache_dir.join("git")).map_err(BuildError::io(
        "resolve the cache folder",
        &options.cache_dir,
    ))?;
    std::fs::create_dir_all(&root).map_err(BuildError::io("create the cache folder", &root))?;
    let name = cache_name(url);
    let dir = root.join(&name);
    let lock = super::lock(&root.join(format!("{name}.lock")))?;
    let git = Git { options, dir: &dir };
    if dir.join(".git").is_dir() {
        tracing::info!(url, "fetching");
        git.fetch(url)?;
    } else {
        tracing::info!(url, "cloning");
        git.clone(url, &root)?;
    }
    let commit = git.resolve(url, pin)?;
    git.run([
        "checkout",
        "--quiet",
        "--force",
        "--detach",
        commit.as_str(),
    ])?;
    git.run(["clean", "-ffdxq"])?;
    let head = git.head()?;
    if head.as_deref() != Some(commit.as_str()) {
        return Err(BuildError::CommitMismatch {
            url: url.to_owned(),
            pin: Box::new(pin.clone()),
            expected: commit,
            found: head.unwrap_or_else(|| "none".to_owned()),
            reason: "the work tree's HEAD after the checkout is another commit",
        });
    }
    tracing::info!(url, %commit, "checked out");
    Ok(Checkout {
        dir,
        commit,
        _lock: lock,
    })
}

/// `<last part of the URL, sanitised>-<16 hex digits of the URL's SHA-256>`: readable, and
/// distinct for distinct URLs.
pub(super) fn cache_name(url: &str) -> String {
    let trimmed = url.trim_end_matches(['/', '\\']);
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let last = trimmed.rsplit(['/', '\\', ':']).next().unwrap_or_default();
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    name = name.trim_start_matches(['.', '-']).to_owned();
    if name.is_empty() {
        name.push_str("repo");
    }
    let digest = Sha256::digest(url.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}-{hash}")
}

/// git commands on the clone at `dir`.
struct Git<'a> {
    options: &'a BuildOptions,
    dir: &'a Path,
}

impl Git<'_> {
    /// `git` with a clean environment: no prompt, only [`ALLOWED_PROTOCOLS`], no repository
    /// chosen by the environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.options.git);
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS);
        for var in REPOSITORY_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// `git -C <dir> ARGS`.
    fn in_dir<'s>(&self, args: impl IntoIterator<Item = &'s str>) -> Command {
        let mut cmd = self.command();
        cmd.arg("-C").arg(self.dir).args(args);
        cmd
    }

    fn exec(&self, cmd: &mut Command, stdout: &mut Vec<u8>) -> Result<Finished, BuildError> {
        command::run(cmd, self.options.show_output, |line| {
            if stdout.len() < 4096 {
                stdout.extend_from_slice(line);
                stdout.push(b'\n');
            }
        })
    }

    /// Runs `git -C <dir> ARGS`, which must succeed.
    fn run<'s>(&self, args: impl IntoIterator<Item = &'s str>) -> Result<(), BuildError> {
        let finished = self.exec(&mut self.in_dir(args), &mut Vec::new())?;
        self.check(finished)
    }

    fn check(&self, finished: Finished) -> Result<(), BuildError> {
        if finished.status.success() {
            return Ok(());
        }
        Err(BuildError::Git {
            dir: self.dir.to_path_buf(),
            command: finished.command,
            status: finished.status,
            stderr: finished.stderr,
        })
    }

    fn fetch_failed(url: &str, finished: Finished) -> Result<(), BuildError> {
        if finished.status.success() {
            return Ok(());
        }
        Err(BuildError::Fetch {
            url: url.to_owned(),
            command: finished.command,
            status: finished.status,
            stderr: finished.stderr,
        })
    }

    /// Clones into a new folder in `root`, then renames it into place, so that a clone cut
    /// short never leaves a half repository where the cache expects one.
    fn clone(&self, url: &str, root: &Path) -> Result<(), BuildError> {
        let staging = tempfile::Builder::new()
            .prefix(".clone-")
            .tempdir_in(root)
            .map_err(BuildError::io("create a folder in", root))?;
        let into = staging.path().join("repo");
        let mut cmd = self.command();
        cmd.args(["clone", "--quiet", "--no-checkout", "--"])
            .arg(url)
            .arg(&into);
        let finished = self.exec(&mut cmd, &mut Vec::new())?;
        Self::fetch_failed(url, finished)?;
        if self.dir.exists() {
            // Not a repository (no `.git`): left by something else; replace it.
            std::fs::remove_dir_all(self.dir)
                .map_err(BuildError::io("remove the broken cache folder", self.dir))?;
        }
        std::fs::rename(&into, self.dir).map_err(BuildError::io("move the clone to", self.dir))
    }

    /// Fetches every branch and tag again; branches and tags deleted or moved on the remote
    /// follow it. The remote's default branch is looked up again.
    fn fetch(&self, url: &str) -> Result<(), BuildError> {
        let mut cmd = self.in_dir([
            "fetch",
            "--quiet",
            "--prune",
            "--force",
            "--tags",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
        ]);
        let finished = self.exec(&mut cmd, &mut Vec::new())?;
        Self::fetch_failed(url, finished)?;
        let finished = self.exec(
            &mut self.in_dir(["remote", "set-head", "origin", "--auto"]),
            &mut Vec::new(),
        )?;
        if !finished.status.success() {
            // An empty repository has no default branch; resolving HEAD says so.
            tracing::debug!(url, stderr = %finished.stderr, "cannot look up the default branch");
        }
        Ok(())
    }

    /// The commit `pin` names, each kind looked up one way only: [`Pin::Head`] as
    /// `refs/remotes/origin/HEAD`, a tag as `refs/tags/<tag>` and a branch as
    /// `refs/remotes/origin/<branch>` (exact ref names, peeled to the commit), and a commit id
    /// as an object only (fetched by id if the clone lacks it), never through a ref.
    fn resolve(&self, url: &str, pin: &Pin) -> Result<String, BuildError> {
        let found = match pin {
            Pin::Head => self.rev_parse("refs/remotes/origin/HEAD")?,
            Pin::Tag(tag) => self.exact_ref(&format!("refs/tags/{tag}"))?,
            Pin::Branch(branch) => self.exact_ref(&format!("refs/remotes/origin/{branch}"))?,
            Pin::Rev(rev) => return self.commit_by_id(url, pin, rev),
        };
        found.ok_or_else(|| BuildError::RevisionNotFound {
            url: url.to_owned(),
            pin: pin.clone(),
        })
    }

    /// The commit whose full id is `rev`: already in the clone, or fetched by id. The id git
    /// resolves must be `rev` itself, so that an id naming a tag object (which peels to
    /// another commit) is refused.
    fn commit_by_id(&self, url: &str, pin: &Pin, rev: &str) -> Result<String, BuildError> {
        if !super::source::is_full_commit_id(rev) {
            return Err(BuildError::NotACommitId {
                rev: rev.to_owned(),
            });
        }
        let want = rev.to_ascii_lowercase();
        let mut found = self.rev_parse(&want)?;
        if found.is_none() {
            let finished = self.exec(
                &mut self.in_dir(["fetch", "--quiet", "origin", want.as_str()]),
                &mut Vec::new(),
            )?;
            if finished.status.success() {
                found = self.rev_parse(&want)?;
            } else {
                tracing::debug!(url, rev, stderr = %finished.stderr, "cannot fetch the commit");
            }
        }
        let found = found.ok_or_else(|| BuildError::RevisionNotFound {
            url: url.to_owned(),
            pin: pin.clone(),
        })?;
        if found != want {
            return Err(BuildError::CommitMismatch {
                url: url.to_owned(),
                pin: Box::new(pin.clone()),
                expected: want,
                found,
                reason: "the id names an object that is not this commit, such as an annotated tag",
            });
        }
        Ok(found)
    }

    /// The commit the ref named exactly `name` points at (peeled), or `None` if there is no
    /// such ref. `git for-each-ref` lists refs by their full names, with none of the lookups
    /// `rev-parse` makes (`refs/tags/refs/tags/<name>`, ...); the one whose name is `name`
    /// exactly is taken.
    fn exact_ref(&self, name: &str) -> Result<Option<String>, BuildError> {
        let mut out = Vec::new();
        let finished = self.exec(
            &mut self.in_dir([
                "for-each-ref",
                "--format=%(objectname) %(refname)",
                "--",
                name,
            ]),
            &mut out,
        )?;
        self.check(finished)?;
        let text = String::from_utf8_lossy(&out);
        let Some(id) = text.lines().find_map(|line| {
            line.split_once(' ')
                .filter(|(_, refname)| *refname == name)
                .map(|(id, _)| id.to_owned())
        }) else {
            return Ok(None);
        };
        if !super::source::is_full_commit_id(&id) {
            return Err(BuildError::Git {
                dir: self.dir.to_path_buf(),
                command: format!("git for-each-ref -- {name}"),
                status: std::process::ExitStatus::default(),
                stderr: format!("printed `{id}` for {name}, not an object id"),
            });
        }
        self.rev_parse(&id)
    }

    /// The full id of the commit checked out (`HEAD`).
    pub(super) fn head(&self) -> Result<Option<String>, BuildError> {
        self.rev_parse("HEAD")
    }

    /// `git rev-parse --verify --quiet SPEC^{commit}`: the commit id, or `None` if `spec`
    /// names no commit.
    fn rev_parse(&self, spec: &str) -> Result<Option<String>, BuildError> {
        let spec = format!("{spec}^{{commit}}");
        let mut out = Vec::new();
        let finished = self.exec(
            &mut self.in_dir(["rev-parse", "--verify", "--quiet", spec.as_str()]),
            &mut out,
        )?;
        if finished.status.code() == Some(1) {
            return Ok(None);
        }
        self.check(finished)?;
        let id = String::from_utf8_lossy(&out).trim().to_owned();
        if !matches!(id.len(), 40 | 64) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BuildError::Git {
                dir: self.dir.to_path_buf(),
                command: format!("git rev-parse --verify --quiet {spec}"),
                status: std::process::ExitStatus::default(),
                stderr: format!("printed `{id}`, not a commit id"),
            });
        }
        Ok(Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_are_readable_and_distinct() {
        let a = cache_name("https://example.com/me/greeter.git");
        assert!(a.starts_with("greeter-"), "{a}");
        assert_eq!(a.len(), "greeter-".len() + 16);
        assert_ne!(a, cache_name("https://example.com/you/greeter.git"));
        assert_eq!(a, cache_name("https://example.com/me/greeter.git"));
        assert!(cache_name("git@host:me/x y.git").starts_with("x_y-"));
        assert!(cache_name("file:///").starts_with("repo-"));
        assert!(cache_name("https://h/..").starts_with("repo-"));
        assert!(cache_name("https://h/-x").starts_with("x-"));
    }
}
