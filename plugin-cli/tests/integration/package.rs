//! The package commands as an operator runs them: keygen, pack, sign, verify, trust, install,
//! call, with a refusal on the way; `build` at a pinned commit, tag or branch of a repository
//! whose tags and branches are named to mislead. (`new` and `build` also run in README.md's
//! commands, in `readme.rs`.)

use std::path::Path;
use std::process::{Command, Output};

use plugin_test_support::{fixtures, workspace_root};

use crate::cli::{plugctl, stderr, stdout};

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn keygen_pack_sign_verify_trust_install_and_call() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let nowhere = w.join("unused-dir");
    let src = w.join("src");
    fixtures().install(&src, "hello");

    let keys = json(&plugctl(
        &nowhere,
        &[
            "-o",
            "json",
            "keygen",
            "--out",
            w.join("release").to_str().unwrap(),
        ],
    ));
    let key_id = keys["key_id"].as_str().unwrap().to_owned();
    assert!(w.join("release.key").is_file() && w.join("release.pub").is_file());

    let package = w.join("hello-0.1.0.plg");
    let packed = json(&plugctl(
        &nowhere,
        &[
            "-o",
            "json",
            "pack",
            src.join("hello").to_str().unwrap(),
            "-o",
            package.to_str().unwrap(),
            "--sign",
            w.join("release.key").to_str().unwrap(),
        ],
    ));
    assert_eq!(packed["name"], "hello");
    assert!(w.join("hello-0.1.0.plg.minisig").is_file());

    let verified = plugctl(
        &nowhere,
        &[
            "verify",
            package.to_str().unwrap(),
            "--key",
            w.join("release.pub").to_str().unwrap(),
        ],
    );
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(stdout(&verified).contains(&key_id), "{}", stdout(&verified));

    // Without a trusted key, the install is refused and the directory stays empty.
    let plugins = w.join("plugins");
    let refused = plugctl(&plugins, &["install", package.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("no trusted signature"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read_dir(&plugins).unwrap().count(), 0);

    let trusted = plugctl(
        &plugins,
        &["trust", w.join("release.pub").to_str().unwrap()],
    );
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let installed = json(&plugctl(
        &plugins,
        &["-o", "json", "install", package.to_str().unwrap()],
    ));
    assert_eq!(installed["version"], "0.1.0");
    assert_eq!(installed["signed_by"], key_id.as_str());

    let values = json(&plugctl(
        &plugins,
        &["call", "hello", "--set", r#"sample={"name":"world"}"#],
    ));
    assert_eq!(values["greeting"], "Hello, world!");
}

/// `git ARGS` in `dir`, which must succeed; its standard output, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// `plugctl --dir base build ARGS`, offline, sharing compiled dependencies with
/// plugin-package's build tests.
fn plugctl_build(base: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .arg("--dir")
        .arg(base)
        .arg("build")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target").join("package-builds"),
        )
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("RUST_LOG")
        .output()
        .expect("plugctl runs")
}

#[test]
fn build_pins_by_full_commit_id_tag_or_branch_only_and_info_shows_the_commit() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let base = w.join("plugins");
    std::fs::create_dir(&base).unwrap();
    let cache = w.join("cache");
    let sdk = workspace_root().join("plugin-sdk");
    let made = plugctl(
        &base,
        &[
            "new",
            "pinned",
            "--path",
            w.to_str().unwrap(),
            "--sdk",
            sdk.to_str().unwrap(),
        ],
    );
    assert!(made.status.success(), "{}", stderr(&made));
    let repo = w.join("pinned");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let locked = Command::new(cargo)
        .current_dir(&repo)
        .args(["generate-lockfile", "--offline"])
        .output()
        .unwrap();
    assert!(locked.status.success(), "{}", stderr(&locked));
    git(&repo, &["init", "-q", "-b", "main"]);
    let good = commit_all(&repo, "good");
    // A commit whose build.rs leaves a marker, reachable by names that mislead.
    let marker = w.join("build-rs-ran");
    git(&repo, &["checkout", "-q", "-b", "evil"]);
    std::fs::write(
        repo.join("build.rs"),
        format!(
            "fn main() {{ std::fs::write({:?}, \"ran\").unwrap(); }}\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    let evil = commit_all(&repo, "evil");
    git(&repo, &["checkout", "-q", "main"]);
    git(&repo, &["tag", "v1", &good]);
    git(&repo, &["branch", "v1", &evil]);
    git(&repo, &["branch", "b", &good]);
    git(&repo, &["tag", "b", &evil]);
    // Last: once a tag is named like `good`'s id, `git branch b <id>` would take the tag.
    git(&repo, &["tag", &good, &evil]);
    git(&repo, &["tag", &good[..8], &evil]);
    let url = format!("file://{}", repo.display());

    let out = plugctl_build(&base, &cache, &[&url, "--rev", &good]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!marker.exists(), "the tag named {good} was built");
    let info = plugctl(&base, &["info", "pinned"]);
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(
        stdout(&info).contains(&format!("built from:   {url} at {good}")),
        "{}",
        stdout(&info)
    );
    let info = json(&plugctl(&base, &["-o", "json", "info", "pinned"]));
    assert_eq!(
        info["manifest"]["source"]["commit"],
        good.as_str(),
        "{info}"
    );
    assert_eq!(
        info["manifest"]["source"]["repository"],
        url.as_str(),
        "{info}"
    );

    let out = plugctl_build(&base, &cache, &[&url, "--rev", &good[..8]]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("not a full commit id"), "{message}");
    assert!(
        message.contains(&format!("git rev-parse {}", &good[..8])),
        "{message}"
    );

    for (flag, name) in [("--tag", "v1"), ("--branch", "b")] {
        let out = plugctl_build(&base, &cache, &[&url, flag, name, "--force"]);
        assert!(out.status.success(), "{flag} {name}: {}", stderr(&out));
        let info = json(&plugctl(&base, &["-o", "json", "info", "pinned"]));
        assert_eq!(
            info["manifest"]["source"]["commit"],
            good.as_str(),
            "{flag} {name}"
        );
    }
    assert!(!marker.exists(), "{evil} was built");

    let out = plugctl_build(&base, &cache, &[&url, "--tag", "v1", "--branch", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}
