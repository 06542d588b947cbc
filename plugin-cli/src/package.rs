//! The package commands: `keygen`, `trust`, `pack`, `verify`, `install`, `build`, `new`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use plugin_host::PluginManager;
use plugin_package::build::{BuildOptions, Pin, SourceSpec};
use plugin_package::download::DownloadOptions;
use plugin_package::{Installed, Installer, PublicKey, TrustedKeys};

use crate::isolation::ManagerArgs;
use crate::{to_json, Failure, Output};

/// Where `plugctl trust` keeps the keys it trusts, inside the plugin directory.
pub(crate) const TRUSTED_KEYS_DIR: &str = ".trusted-keys";

#[derive(Subcommand, Debug)]
pub(crate) enum PackageCommand {
    /// Write a new minisign key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Trust a public key: copy it into DIR/.trusted-keys, where install and verify find it.
    Trust {
        /// A minisign public key file.
        key: PathBuf,
    },
    /// Pack a plugin folder into NAME-VERSION.plg (checked first, as the loader would).
    Pack {
        /// The plugin folder: plugin.json and the library.
        dir: PathBuf,
        /// The package file to write (default: NAME-VERSION.plg here).
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// Sign it with this secret key, writing FILE.minisig beside it.
        #[arg(long, value_name = "PREFIX.key")]
        sign: Option<PathBuf>,
    },
    /// Verify a package against its FILE.minisig and trusted keys, extracting nothing.
    Verify {
        /// The package file.
        file: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Install a package from a file or an http(s) URL into DIR: verify, extract into a
    /// hidden folder, check, move into place.
    Install {
        /// A .plg file or an http(s) URL.
        source: String,
        #[command(flatten)]
        keys: KeyArgs,
        /// Accept the package if its SHA-256 is this (64 hex digits), signed or not.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// For development only: install a package file without a trusted signature.
        #[arg(long)]
        allow_unsigned: bool,
        /// Allow installing a lower version than the one installed.
        #[arg(long)]
        force: bool,
    },
    /// Build a plugin from a git repository or a local folder and install it into DIR.
    Build {
        /// A git URL (https, ssh, file://), a git work tree, a plugin folder whose plugin.json
        /// has source.mode "remote_git", or a plugin crate folder.
        source: String,
        /// The commit to build, by its full id (40 hex digits; a shortened id is refused).
        /// Default: the remote's HEAD.
        #[arg(long, value_name = "COMMIT", conflicts_with_all = ["tag", "branch"])]
        rev: Option<String>,
        /// The tag to build (refs/tags/TAG only; a tag can be moved).
        #[arg(long, value_name = "TAG", conflicts_with = "branch")]
        tag: Option<String>,
        /// The remote's branch to build, as it is now (never a tag of that name).
        #[arg(long, value_name = "BRANCH")]
        branch: Option<String>,
        /// Where clones and build output are kept between builds
        /// (default: $XDG_CACHE_HOME/plugctl or ~/.cache/plugctl).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Allow installing a lower version than the one installed.
        #[arg(long)]
        force: bool,
    },
    /// Create a plugin crate NAME that builds and runs at once.
    New {
        /// The plugin's name (letters, digits, - and _).
        name: String,
        /// The folder to create it in (default: the working directory).
        #[arg(long, value_name = "DIR", default_value = ".")]
        path: PathBuf,
        /// The plugin-sdk crate to depend on (default: this plugctl's checkout).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
}

/// Keys to trust besides those in DIR/.trusted-keys.
#[derive(Args, Debug)]
pub(crate) struct KeyArgs {
    /// Trust this minisign public key (repeatable).
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
}

impl KeyArgs {
    /// The keys given with --key, and those `plugctl trust` put in `dir`.
    pub(crate) fn load(&self, dir: &Path) -> Result<TrustedKeys, Failure> {
        let mut trusted = TrustedKeys::new();
        for path in &self.keys {
            trusted.add(PublicKey::from_file(path).map_err(package_failure)?);
        }
        let kept = dir.join(TRUSTED_KEYS_DIR);
        if let Ok(entries) = std::fs::read_dir(&kept) {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect();
            paths.sort();
            for path in paths {
                trusted.add(PublicKey::from_file(&path).map_err(package_failure)?);
            }
        }
        Ok(trusted)
    }
}

fn package_failure(err: impl Into<plugin_package::Error>) -> Failure {
    let err = err.into();
    let hint = match &err {
        plugin_package::Error::Signature(_) | plugin_package::Error::Unsigned { .. } => {
            "docs/packages.md explains signatures and trusted keys"
        }
        plugin_package::Error::Build(_) => "git's and cargo's own output is above",
        _ => "docs/packages.md explains the package format and each check",
    };
    Failure {
        cause: error_chain(&err),
        hint: hint.to_owned(),
    }
}

fn io_failure(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Failure {
    let path = path.to_path_buf();
    move |source| {
        package_failure(plugin_package::Error::Io {
            action,
            path,
            source,
        })
    }
}

/// The error's message followed by its sources'.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

pub(crate) fn run(
    command: PackageCommand,
    dir: &Path,
    manager_args: &ManagerArgs,
    output: Output,
) -> Result<ExitCode, Failure> {
    match command {
        PackageCommand::Keygen { out } => {
            let pair = plugin_package::generate_keypair(&out).map_err(package_failure)?;
            print(output, &pair_json(&pair), || {
                println!("secret key: {}", pair.secret.display());
                println!("public key: {}", pair.public.display());
                println!("key id:     {}", pair.key_id);
            });
        }
        PackageCommand::Trust { key } => {
            let public = PublicKey::from_file(&key).map_err(package_failure)?;
            let kept = dir.join(TRUSTED_KEYS_DIR);
            std::fs::create_dir_all(&kept).map_err(io_failure("create", &kept))?;
            let dest = kept.join(format!("{}.pub", public.key_id()));
            std::fs::copy(&key, &dest).map_err(io_failure("copy the key to", &dest))?;
            let json = serde_json::json!({ "key_id": public.key_id(), "path": dest });
            print(output, &json, || {
                println!("trusted key {} ({})", public.key_id(), dest.display());
            });
        }
        PackageCommand::Pack { dir, out, sign } => {
            let packed = plugin_package::pack(&dir, out.as_deref()).map_err(package_failure)?;
            let signature = sign
                .map(|key| plugin_package::sign_package(&packed.path, &key))
                .transpose()
                .map_err(package_failure)?;
            let json = serde_json::json!({
                "package": packed.path, "name": packed.name, "version": packed.version.to_string(),
                "sha256": packed.sha256, "bytes": packed.bytes, "signature": signature,
            });
            print(output, &json, || {
                println!("{}", packed.path.display());
                println!("sha256: {}", packed.sha256);
                if let Some(signature) = &signature {
                    println!("signature: {}", signature.display());
                }
            });
        }
        PackageCommand::Verify { file, keys } => {
            let keys = keys.load(dir)?;
            let verified = plugin_package::verify_file(&file, &keys).map_err(package_failure)?;
            let json = serde_json::json!({
                "name": verified.name, "version": verified.version.to_string(),
                "key_id": verified.key_id, "sha256": verified.sha256,
            });
            print(output, &json, || {
                println!(
                    "{}: {} {}, signed by trusted key {}",
                    file.display(),
                    verified.name,
                    verified.version,
                    verified.key_id
                );
            });
        }
        PackageCommand::Install {
            source,
            keys,
            sha256,
            allow_unsigned,
            force,
        } => {
            let manager = manager(dir, manager_args)?;
            let mut installer = Installer::new(&manager)
                .trust_all(keys.load(dir)?)
                .allow_unsigned(allow_unsigned)
                .force(force);
            if let Some(hex) = sha256 {
                installer = installer.sha256(hex);
            }
            let installed = if source.starts_with("http://") || source.starts_with("https://") {
                let installer = installer.download_options(download_options());
                installer.install_url(&source)
            } else {
                installer.install_file(&source)
            }
            .map_err(package_failure)?;
            report_installed(&installed, output);
        }
        PackageCommand::Build {
            source,
            rev,
            tag,
            branch,
            cache_dir,
            force,
        } => {
            let manager = manager(dir, manager_args)?;
            let pin = rev
                .map(Pin::Rev)
                .or(tag.map(Pin::Tag))
                .or(branch.map(Pin::Branch));
            let spec = SourceSpec::parse(&source, pin).map_err(package_failure)?;
            let mut options = BuildOptions::new(cache_dir.unwrap_or_else(default_cache_dir));
            options.target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
            options.show_output = true;
            let built = plugin_package::build::build(&spec, &options, manager.base_dir())
                .map_err(package_failure)?;
            let installed = Installer::new(&manager)
                .force(force)
                .install_built(built)
                .map_err(package_failure)?;
            report_installed(&installed, output);
        }
        PackageCommand::New { name, path, sdk } => {
            let sdk = match sdk {
                Some(sdk) => sdk,
                None => checkout_sdk().ok_or_else(|| Failure {
                    cause: "this plugctl was built outside a checkout of the plugin \
                            framework, so it does not know where plugin-sdk is"
                        .to_owned(),
                    hint: "pass --sdk PATH with the path of plugin-sdk".to_owned(),
                })?,
            };
            let made = plugin_package::new_plugin(&name, &path, &sdk).map_err(package_failure)?;
            let json = serde_json::json!({ "dir": made.dir, "files": made.files });
            print(output, &json, || {
                println!("created {}", made.dir.display());
                println!(
                    "next: plugctl --dir plugins build {} && plugctl --dir plugins call {name} \
                     --set input='{{\"name\":\"world\"}}'",
                    made.dir.display()
                );
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The plugin-sdk of the checkout this plugctl was built from, if it is still there.
fn checkout_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("plugin-sdk");
    sdk.join("Cargo.toml").is_file().then_some(sdk)
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("plugctl")
}

/// The manager of the base directory, made if missing.
fn manager(dir: &Path, manager_args: &ManagerArgs) -> Result<PluginManager, Failure> {
    std::fs::create_dir_all(dir).map_err(io_failure("create the plugin directory", dir))?;
    Ok(manager_args.builder(dir).build())
}

/// Download caps, and a progress bar when stderr is a terminal.
fn download_options() -> DownloadOptions {
    let mut options = DownloadOptions::default();
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        options.progress = Some(Arc::new(move |done, total| {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
            if total == Some(done) {
                bar.finish_and_clear();
            }
        }));
    }
    options
}

fn report_installed(installed: &Installed, output: Output) {
    let json = serde_json::json!({
        "name": installed.name,
        "version": installed.version.to_string(),
        "previous": installed.previous.as_ref().map(ToString::to_string),
        "dir": installed.dir,
        "signed_by": installed.signed_by,
        "sha256": installed.sha256,
        "upgraded": installed.upgraded.is_some(),
    });
    print(output, &json, || {
        match &installed.previous {
            Some(previous) => println!(
                "installed {} {} (replacing {previous}) into {}",
                installed.name,
                installed.version,
                installed.dir.display()
            ),
            None => println!(
                "installed {} {} into {}",
                installed.name,
                installed.version,
                installed.dir.display()
            ),
        }
        if let Some(key) = &installed.signed_by {
            println!("signed by trusted key {key}");
        }
    });
}

fn pair_json(pair: &plugin_package::KeyPair) -> serde_json::Value {
    serde_json::json!({ "secret": pair.secret, "public": pair.public, "key_id": pair.key_id })
}

fn print(output: Output, json: &serde_json::Value, table: impl FnOnce()) {
    match output {
        Output::Json => println!("{}", to_json(json)),
        Output::Table => table(),
    }
}
