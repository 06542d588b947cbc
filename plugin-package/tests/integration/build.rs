//! Tests of the build area: `new_plugin`, then `build` from a git repository at a pinned
//! revision, then load and call, as `plugctl new → build → call` does; the errors of a bad
//! URL, revision or repository; `SourceSpec::parse`.
//!
//! Cargo builds are slow here: every build shares the target directory
//! `<workspace>/target/package-builds`, and only the round trip builds the plugin's
//! dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;

use plugin_host::{Context, Manifest, PluginManager};
use plugin_package::build::{build, BuildError, BuildOptions, Pin, SourceSpec};
use plugin_package::{new_plugin, Error};
use plugin_test_support::workspace_root;

fn sdk() -> PathBuf {
    workspace_root().join("plugin-sdk")
}

/// Options sharing one target directory, offline: the tests reach no network.
fn options(cache: &Path) -> BuildOptions {
    let mut options = BuildOptions::new(cache);
    options.target_dir = Some(workspace_root().join("target").join("package-builds"));
    options.offline = true;
    options
}

/// Runs `program args` in `dir`; it must succeed. Returns its standard output, trimmed.
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "tag.gpgsign=false",
    ];
    all.extend_from_slice(args);
    run(dir, "git", &all)
}

/// Commits everything in `dir` (a repository is made first if needed); returns the commit.
fn commit_all(dir: &Path, message: &str) -> String {
    if !dir.join(".git").exists() {
        git(dir, &["init", "-q", "-b", "main"]);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn generate_lockfile(dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(dir, &cargo, &["generate-lockfile", "--offline"]);
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn replace_in(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn new_then_build_at_a_pinned_revision_then_load_and_call() {
    let tmp = tempfile::tempdir().unwrap();
    let scaffolded = new_plugin("greeter-x", &tmp.path().join("src"), &sdk()).unwrap();
    let repo = scaffolded.dir.clone();
    generate_lockfile(&repo);
    let first = commit_all(&repo, "greeter 0.1.0");
    for file in ["Cargo.toml", "plugin.json"] {
        replace_in(&repo.join(file), "0.1.0", "0.2.0");
    }
    generate_lockfile(&repo);
    let second = commit_all(&repo, "greeter 0.2.0");

    let url = file_url(&repo);
    let options = options(&tmp.path().join("cache"));
    let staging = tmp.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let pinned = SourceSpec::Git {
        url: url.clone(),
        pin: Pin::Rev(first.clone()),
    };
    let built = build(&pinned, &options, &staging).unwrap();
    assert_eq!(built.name, "greeter-x");
    assert_eq!(
        built.version,
        semver::Version::new(0, 1, 0),
        "the pin was not respected"
    );
    assert_eq!(built.commit.as_deref(), Some(first.as_str()));
    assert_eq!(built.dir, built.staging.path().join("greeter-x"));
    let manifest = Manifest::load(&built.dir).unwrap();
    assert_eq!(manifest.version, semver::Version::new(0, 1, 0));
    let library = &manifest.library_candidates(&built.dir).unwrap()[0];
    assert_eq!(&built.library, library);
    let library_name = library.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(files_in(&built.dir), {
        let mut expected = vec![library_name, "plugin.json".to_owned()];
        expected.sort();
        expected
    });

    let base = tmp.path().join("plugins");
    std::fs::create_dir(&base).unwrap();
    std::fs::rename(&built.dir, base.join("greeter-x")).unwrap();
    let manager = PluginManager::builder(&base).build();
    manager.load_plugin("greeter-x").unwrap();
    let output: serde_json::Value = manager
        .get("greeter-x")
        .unwrap()
        .call(
            &Context::background(),
            &serde_json::json!({ "name": "world" }),
        )
        .unwrap();
    assert_eq!(output, serde_json::json!({ "greeting": "Hello, world!" }));

    // The cached clone is fetched again, and the default branch is now at the second commit.
    let head = SourceSpec::Git {
        url,
        pin: Pin::Head,
    };
    let built = build(&head, &options, &staging).unwrap();
    assert_eq!(built.version, semver::Version::new(0, 2, 0));
    assert_eq!(built.commit.as_deref(), Some(second.as_str()));
    assert!(built.library.is_file());
}

/// A dependency-free cdylib crate, so that cargo builds it in a moment.
fn tiny_crate(dir: &Path, lib_rs: &str, library: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), lib_rs).unwrap();
    std::fs::write(
        dir.join("plugin.json"),
        format!(
            r#"{{"name": "tiny", "version": "0.1.0",
                "source": {{"mode": "local_so", "path": "{library}"}}}}"#
        ),
    )
    .unwrap();
}

#[test]
fn a_failed_cargo_build_and_a_missing_library_say_what_cargo_did() {
    let tmp = tempfile::tempdir().unwrap();
    let options = options(&tmp.path().join("cache"));

    let broken = tmp.path().join("broken");
    tiny_crate(&broken, "pub fn f() -> u32 { \"not a number\" }\n", "tiny");
    let err = build(&SourceSpec::Folder(broken.clone()), &options, tmp.path()).unwrap_err();
    let BuildError::Cargo {
        command, stderr, ..
    } = &err
    else {
        panic!("expected a cargo error, got {err}");
    };
    assert!(command.contains("build --release"), "{command}");
    assert!(
        !command.contains("--locked"),
        "a folder without Cargo.lock: {command}"
    );
    assert!(
        stderr.contains("mismatched types"),
        "cargo's own message: {stderr}"
    );
    assert!(err.to_string().contains(stderr.as_str()));

    let misnamed = tmp.path().join("misnamed");
    tiny_crate(&misnamed, "pub fn f() -> u32 { 1 }\n", "other");
    let err = build(&SourceSpec::Folder(misnamed), &options, tmp.path()).unwrap_err();
    let BuildError::NoLibrary {
        expected, found, ..
    } = &err
    else {
        panic!("expected a missing library, got {err}");
    };
    assert!(
        expected.iter().any(|name| name.contains("other")),
        "{expected:?}"
    );
    assert!(found.iter().any(|name| name.contains("tiny")), "{found:?}");
}

#[test]
fn bad_urls_revisions_and_repositories_fail_before_cargo_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut options = options(&tmp.path().join("cache"));
    // Any cargo run would fail with `Spawn`: each error below comes before the build.
    options.cargo = tmp.path().join("no-cargo-here").into();
    let staging = tmp.path();

    let missing = SourceSpec::Git {
        url: "file:///nonexistent/repo".into(),
        pin: Pin::Head,
    };
    let err = build(&missing, &options, staging).unwrap_err();
    let BuildError::Fetch { stderr, .. } = &err else {
        panic!("expected a fetch error, got {err}");
    };
    assert!(
        stderr.contains("/nonexistent/repo"),
        "git's message: {stderr}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("git could not fetch file:///nonexistent/repo: "),
        "{message}"
    );
    assert!(message.contains(stderr.as_str()), "{message}");

    // A repository without Cargo.lock; a tag and a branch on earlier commits.
    let repo = new_plugin("unlocked", &tmp.path().join("src"), &sdk())
        .unwrap()
        .dir;
    let first = commit_all(&repo, "first");
    git(&repo, &["tag", "-a", "-m", "v1", "v1"]);
    git(&repo, &["branch", "side"]);
    std::fs::write(repo.join("NOTES"), "second\n").unwrap();
    let second = commit_all(&repo, "second");
    let url = file_url(&repo);
    let at = |pin: Pin| {
        let spec = SourceSpec::Git {
            url: url.clone(),
            pin,
        };
        build(&spec, &options, staging).unwrap_err()
    };
    for (pin, commit) in [
        (Pin::Head, &second),
        (Pin::Tag("v1".into()), &first),
        (Pin::Branch("side".into()), &first),
        (Pin::Rev(first.clone()), &first),
        (Pin::Rev(second.to_uppercase()), &second),
    ] {
        let err = at(pin.clone());
        match &err {
            BuildError::NoLockfile { commit: got, .. } => assert_eq!(got, commit, "{pin:?}"),
            _ => panic!("{pin:?}: expected the missing Cargo.lock, got {err}"),
        }
        assert!(err.to_string().contains("commit Cargo.lock"), "{err}");
    }

    // `plugctl build <work tree> --rev v1`: cloned from the absolute path.
    let spec = SourceSpec::parse(repo.to_str().unwrap(), Some(Pin::Tag("v1".into()))).unwrap();
    match build(&spec, &options, staging).unwrap_err() {
        BuildError::NoLockfile { commit, .. } => assert_eq!(commit, first),
        err => panic!("expected the missing Cargo.lock, got {err}"),
    }

    for (pin, named) in [
        (
            Pin::Rev("deadbeef".repeat(5)),
            "commit deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
        ),
        (Pin::Tag("v9".into()), "tag v9"),
        (Pin::Branch("nope".into()), "branch nope"),
    ] {
        let err = at(pin);
        assert!(matches!(err, BuildError::RevisionNotFound { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{named} not found in {url}")),
            "{message}"
        );
    }
    let err = at(Pin::Rev("-x".into()));
    assert!(matches!(err, BuildError::InvalidRevision { .. }), "{err}");

    // The crate's own plugin.json must describe the built library.
    std::fs::write(
        repo.join("plugin.json"),
        r#"{"name": "unlocked", "version": "0.1.0",
            "source": {"mode": "remote_git", "path": "https://example.com/u.git"}}"#,
    )
    .unwrap();
    commit_all(&repo, "remote");
    let err = at(Pin::Head);
    assert!(matches!(err, BuildError::NotLocalSo { .. }), "{err}");
    assert!(err.to_string().contains("local_so"), "{err}");
}

fn parse(arg: &str, rev: Option<&str>) -> Result<SourceSpec, BuildError> {
    SourceSpec::parse(arg, rev.map(|tag| Pin::Tag(tag.to_owned())))
}

fn git_spec(url: &str, pin: Pin) -> SourceSpec {
    SourceSpec::Git {
        url: url.to_owned(),
        pin,
    }
}

#[test]
fn source_spec_parse_reads_urls_repositories_manifests_and_folders() {
    for url in [
        "https://example.com/me/p.git",
        "http://example.com/p",
        "ssh://git@example.com/me/p.git",
        "git://example.com/p.git",
        "file:///srv/git/p",
        "git@example.com:me/p.git",
    ] {
        assert_eq!(parse(url, None).unwrap(), git_spec(url, Pin::Head), "{url}");
        assert_eq!(
            parse(url, Some("v1.0")).unwrap(),
            git_spec(url, Pin::Tag("v1.0".into())),
            "{url}"
        );
    }
    let err = parse("ftp://example.com/p", None).unwrap_err();
    assert!(matches!(err, BuildError::InvalidUrl { .. }), "{err}");
    let err = parse("https://example.com/a b", None).unwrap_err();
    assert!(matches!(err, BuildError::InvalidUrl { .. }), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();

    let work_tree = root.join("work");
    std::fs::create_dir(&work_tree).unwrap();
    git(&work_tree, &["init", "-q"]);
    let path = work_tree.to_str().unwrap();
    assert_eq!(parse(path, None).unwrap(), git_spec(path, Pin::Head));
    assert_eq!(
        parse(path, Some("main")).unwrap(),
        git_spec(path, Pin::Tag("main".into()))
    );

    let remote = root.join("remote");
    std::fs::create_dir(&remote).unwrap();
    std::fs::write(
        remote.join("plugin.json"),
        r#"{"name": "remote", "version": "1.0.0", "source": {"mode": "remote_git",
            "path": "https://example.com/remote.git", "tag": "v1.0.0"}}"#,
    )
    .unwrap();
    let url = "https://example.com/remote.git";
    let remote = remote.to_str().unwrap();
    assert_eq!(
        parse(remote, None).unwrap(),
        git_spec(url, Pin::Tag("v1.0.0".into()))
    );
    let full = "abc123".repeat(7)[..40].to_owned();
    assert_eq!(
        SourceSpec::parse(remote, Some(Pin::Rev(full.clone()))).unwrap(),
        git_spec(url, Pin::Rev(full))
    );
    let err = SourceSpec::parse(remote, Some(Pin::Rev("abc123".into()))).unwrap_err();
    assert!(matches!(err, BuildError::NotACommitId { .. }), "{err}");

    let folder = root.join("folder");
    tiny_crate(&folder, "", "tiny");
    let folder_arg = folder.to_str().unwrap();
    assert_eq!(
        parse(folder_arg, None).unwrap(),
        SourceSpec::Folder(folder.clone())
    );
    let err = parse(folder_arg, Some("main")).unwrap_err();
    assert!(matches!(err, BuildError::RevisionForFolder { .. }), "{err}");
    assert!(err.to_string().contains(folder_arg), "{err}");

    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = parse(empty.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(err, BuildError::NotACrate { .. }), "{err}");

    let missing = root.join("missing");
    let err = parse(missing.to_str().unwrap(), None).unwrap_err();
    assert!(matches!(err, BuildError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");

    for rev in ["-x", "--upload-pack=touch /tmp/x", "a b", ""] {
        let err = parse("https://example.com/p.git", Some(rev)).unwrap_err();
        assert!(
            matches!(err, BuildError::InvalidRevision { .. }),
            "{rev:?}: {err}"
        );
    }

    let local = Manifest::parse(
        r#"{"name": "l", "version": "1.0.0", "source": {"mode": "local_so", "path": "l"}}"#,
        Path::new("plugin.json"),
    )
    .unwrap();
    let err = SourceSpec::from_manifest(&local).unwrap_err();
    assert!(matches!(err, BuildError::NotRemoteGit { .. }), "{err}");
}

#[test]
fn new_plugin_writes_a_crate_and_refuses_bad_names_and_existing_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("plugins-src");
    let made = new_plugin("my-plugin", &parent, &sdk()).unwrap();
    assert_eq!(made.dir, parent.join("my-plugin"));
    for file in &made.files {
        assert!(made.dir.join(file).is_file(), "{}", file.display());
    }
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "plugin.json",
        ".gitignore",
        "README.md",
    ] {
        assert!(made.files.contains(&PathBuf::from(file)), "{file}");
    }
    let manifest = Manifest::load(&made.dir).unwrap();
    assert_eq!(manifest.name, "my-plugin");
    assert_eq!(manifest.source.path, "my_plugin");
    let cargo_toml = std::fs::read_to_string(made.dir.join("Cargo.toml")).unwrap();
    let sdk_path = sdk().canonicalize().unwrap();
    assert!(
        cargo_toml.contains(&format!("path = \"{}\"", sdk_path.display())),
        "{cargo_toml}"
    );
    assert!(cargo_toml.contains("name = \"my-plugin\""), "{cargo_toml}");
    assert!(cargo_toml.contains("\n[workspace]\n"), "{cargo_toml}");
    let lib_rs = std::fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
    assert!(
        lib_rs.contains("export_plugin! { call: greet }"),
        "{lib_rs}"
    );

    let readme = made.dir.join("README.md");
    std::fs::write(&readme, "mine").unwrap();
    let err = new_plugin("my-plugin", &parent, &sdk()).unwrap_err();
    assert!(
        matches!(err, Error::Build(BuildError::AlreadyExists { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("exists already"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&readme).unwrap(),
        "mine",
        "existing files kept"
    );

    for name in [
        "",
        "-x",
        "1st",
        "a/b",
        "../up",
        "a b",
        "fn",
        &"a".repeat(65),
    ] {
        let err = new_plugin(name, &parent, &sdk()).unwrap_err();
        assert!(
            matches!(err, Error::Build(BuildError::InvalidName { .. })),
            "{name:?}: {err}"
        );
    }
    assert_eq!(
        files_in(&parent),
        ["my-plugin"],
        "nothing written for a bad name"
    );
    let err = new_plugin("other", &parent, &tmp.path().join("no-sdk")).unwrap_err();
    assert!(err.to_string().contains("plugin-sdk"), "{err}");
}

/// A repository whose `main` holds commit `good` (the tiny crate, version 0.1.0), and whose
/// branch `evil` holds a commit on top of it (version 0.2.0) whose build.rs writes `marker`:
/// a commit that must never be built when `good` is pinned.
struct TwoCommits {
    repo: PathBuf,
    good: String,
    evil: String,
    marker: PathBuf,
}

fn two_commits(root: &Path) -> TwoCommits {
    let repo = root.join("repo");
    tiny_crate(&repo, "pub fn f() -> u32 { 1 }\n", "tiny");
    generate_lockfile(&repo);
    let good = commit_all(&repo, "good");
    let marker = root.join("build-rs-ran");
    git(&repo, &["checkout", "-q", "-b", "evil"]);
    std::fs::write(
        repo.join("build.rs"),
        format!(
            "fn main() {{ std::fs::write({:?}, \"ran\").unwrap(); }}\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    replace_in(&repo.join("plugin.json"), "0.1.0", "0.2.0");
    let evil = commit_all(&repo, "evil");
    git(&repo, &["checkout", "-q", "main"]);
    TwoCommits {
        repo,
        good,
        evil,
        marker,
    }
}

/// Builds `good` by its full id and checks that it, not `evil`, was built and recorded.
fn builds_the_pinned_commit(tmp: &Path, setup: &TwoCommits) {
    let url = file_url(&setup.repo);
    let staging = tmp.join("staging");
    std::fs::create_dir(&staging).unwrap();
    let spec = SourceSpec::Git {
        url: url.clone(),
        pin: Pin::Rev(setup.good.clone()),
    };
    let built = build(&spec, &options(&tmp.join("cache")), &staging).unwrap();
    assert_eq!(built.commit.as_deref(), Some(setup.good.as_str()));
    assert_eq!(
        built.version,
        semver::Version::new(0, 1, 0),
        "evil was built"
    );
    assert!(
        !setup.marker.exists(),
        "the build.rs of {} ran, though {} was pinned",
        setup.evil,
        setup.good
    );
    let manifest = Manifest::load(&built.dir).unwrap();
    assert_eq!(manifest.source.commit.as_deref(), Some(setup.good.as_str()));
    assert_eq!(manifest.source.repository.as_deref(), Some(url.as_str()));
    assert_eq!(built.repository.as_deref(), Some(url.as_str()));
}

#[test]
fn a_tag_named_like_the_pinned_commit_id_is_not_built() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = two_commits(tmp.path());
    git(&setup.repo, &["tag", &setup.good, &setup.evil]);
    builds_the_pinned_commit(tmp.path(), &setup);
}

#[test]
fn a_branch_named_like_the_pinned_commit_id_is_not_built() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = two_commits(tmp.path());
    git(&setup.repo, &["branch", &setup.good, &setup.evil]);
    builds_the_pinned_commit(tmp.path(), &setup);
}

#[test]
fn a_shortened_commit_id_is_refused_before_anything_is_fetched_or_built() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = two_commits(tmp.path());
    let short = setup.good[..8].to_owned();
    git(&setup.repo, &["tag", &short, &setup.evil]);
    let staging = tmp.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let cache = tmp.path().join("cache");
    let spec = SourceSpec::Git {
        url: file_url(&setup.repo),
        pin: Pin::Rev(short.clone()),
    };
    let err = build(&spec, &options(&cache), &staging).unwrap_err();
    assert!(
        matches!(&err, BuildError::NotACommitId { rev } if *rev == short),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("`git rev-parse {short}`")),
        "{message}"
    );
    assert!(message.contains("--tag or --branch"), "{message}");
    assert!(!setup.marker.exists(), "build.rs ran");
    assert!(files_in(&staging).is_empty(), "something was built");
    assert!(!cache.exists(), "the repository was fetched");
    let err = SourceSpec::parse(&file_url(&setup.repo), Some(Pin::Rev(short))).unwrap_err();
    assert!(matches!(err, BuildError::NotACommitId { .. }), "{err}");
}

#[test]
fn a_tag_pin_takes_only_tags_and_a_branch_pin_only_branches() {
    let tmp = tempfile::tempdir().unwrap();
    let mut options = options(&tmp.path().join("cache"));
    // No Cargo.lock: each build stops with `NoLockfile`, naming the commit it resolved,
    // before cargo runs.
    options.cargo = tmp.path().join("no-cargo-here").into();
    let repo = tmp.path().join("repo");
    tiny_crate(&repo, "", "tiny");
    let first = commit_all(&repo, "first");
    std::fs::write(repo.join("NOTES"), "second\n").unwrap();
    let second = commit_all(&repo, "second");
    git(&repo, &["tag", "-a", "-m", "v1", "v1", &first]);
    git(&repo, &["branch", "v1", &second]);
    git(&repo, &["branch", "b", &first]);
    git(&repo, &["tag", "b", &second]);
    // A tag named like the full ref of another one: `refs/tags/v2` is not it.
    git(&repo, &["tag", "refs/tags/v2", &second]);
    let url = file_url(&repo);
    let at = |pin: Pin| {
        let spec = SourceSpec::Git {
            url: url.clone(),
            pin,
        };
        build(&spec, &options, tmp.path()).unwrap_err()
    };
    for pin in [Pin::Tag("v1".into()), Pin::Branch("b".into())] {
        match at(pin.clone()) {
            BuildError::NoLockfile { commit, .. } => assert_eq!(commit, first, "{pin:?}"),
            err => panic!("{pin:?}: expected the missing Cargo.lock, got {err}"),
        }
    }
    let err = at(Pin::Tag("v2".into()));
    assert!(matches!(err, BuildError::RevisionNotFound { .. }), "{err}");

    // The id of the annotated tag object v1 is no commit pin, though it peels to one.
    let tag_object = git(&repo, &["rev-parse", "refs/tags/v1"]);
    assert_ne!(tag_object, first);
    let err = at(Pin::Rev(tag_object.clone()));
    match &err {
        BuildError::CommitMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, &tag_object);
            assert_eq!(found, &first);
        }
        _ => panic!("expected a commit mismatch, got {err}"),
    }
    assert!(err.to_string().contains("git cat-file -t"), "{err}");
}

#[test]
fn a_folder_build_records_no_commit_even_if_its_plugin_json_claims_one() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("folder");
    tiny_crate(&folder, "pub fn f() -> u32 { 1 }\n", "tiny");
    std::fs::write(
        folder.join("plugin.json"),
        r#"{"name": "tiny", "version": "0.1.0", "source": {"mode": "local_so", "path": "tiny",
            "repository": "https://example.com/claimed.git",
            "commit": "0123456789abcdef0123456789abcdef01234567"}}"#,
    )
    .unwrap();
    let options = options(&tmp.path().join("cache"));
    let built = build(&SourceSpec::Folder(folder), &options, tmp.path()).unwrap();
    assert_eq!(built.commit, None);
    assert_eq!(built.repository, None);
    let manifest = Manifest::load(&built.dir).unwrap();
    assert_eq!(manifest.source.commit, None, "a claimed commit was kept");
    assert_eq!(manifest.source.repository, None);
}
