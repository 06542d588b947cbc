//! The package commands as an operator runs them: keygen, pack, sign, verify, trust, install,
//! call, with a refusal on the way. (`new` and `build` run in README.md's commands, in
//! `readme.rs`.)

use plugin_test_support::fixtures;

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
