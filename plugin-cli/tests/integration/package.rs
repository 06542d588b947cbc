//! The package commands as an operator and a plugin author run them: keygen, pack, sign,
//! verify, trust, install, call; and new, build, call.

use std::path::Path;

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

#[test]
fn new_then_build_then_call() {
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    let made = json(&plugctl(
        &plugins,
        &[
            "-o",
            "json",
            "new",
            "greeter",
            "--path",
            work.path().to_str().unwrap(),
        ],
    ));
    let crate_dir = Path::new(made["dir"].as_str().unwrap()).to_path_buf();
    assert!(crate_dir.join("plugin.json").is_file());

    // Builds share one target directory, so the SDK's dependencies compile once per run.
    let built = std::process::Command::new(env!("CARGO_BIN_EXE_plugctl"))
        .arg("--dir")
        .arg(&plugins)
        .args(["build", crate_dir.to_str().unwrap(), "--cache-dir"])
        .arg(work.path().join("cache"))
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target").join("package-builds"),
        )
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        stdout(&built).contains("installed greeter 0.1.0"),
        "{}",
        stdout(&built)
    );

    let values = json(&plugctl(
        &plugins,
        &["call", "greeter", "--set", r#"input={"name":"world"}"#],
    ));
    assert_eq!(values["output"]["greeting"], "Hello, world!");
}
