//! Signed `.plg` plugin packages: pack a plugin folder, sign it, verify it, extract it
//! safely, and install it into a [`plugin_host::PluginManager`]'s base directory, from a
//! file, a URL or a git repository.
//!
//! A host that only loads plugin folders does not need this crate, and so pulls in no tar,
//! gzip, HTTP or signature code. See `docs/packages.md` for the format and the trust model.
//!
//! # Examples
//!
//! Pack and sign a plugin folder, then install the package into another base directory,
//! trusting the key that signed it:
//!
//! ```no_run
//! use plugin_host::PluginManager;
//! use plugin_package::{generate_keypair, pack, sign_package, Installer, PublicKey};
//!
//! let keys = generate_keypair("release".as_ref())?;
//! let package = pack("plugins/hello".as_ref(), None)?; // ./hello-0.1.0.plg
//! sign_package(&package.path, &keys.secret)?; // ./hello-0.1.0.plg.minisig
//!
//! let manager = PluginManager::new("deployed");
//! let installed = Installer::new(&manager)
//!     .trust(PublicKey::from_file(&keys.public)?)
//!     .install_file(&package.path)?;
//! manager.load_plugin(&installed.name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod archive;
pub mod build;
pub mod download;
mod error;
mod format;
mod install;
mod scaffold;
mod sign;

pub use archive::{extract, pack, ArchiveError, Extracted, Packed};
pub use error::Error;
pub use format::{package_file_name, signature_path, Limits, PACKAGE_EXTENSION};
pub use install::{remove_stale_staging, verify_file, Installed, Installer, Origin, Verified};
pub use scaffold::{new_plugin, Scaffolded};
#[cfg(feature = "sign")]
pub use sign::{generate_keypair, sign_package, KeyPair};
pub use sign::{PublicKey, SignatureError, Signed, TrustedKeys};

/// docs/packages.md's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/packages.md")]
struct PackagesDoctests;
