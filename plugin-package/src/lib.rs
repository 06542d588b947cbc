//! Signed `.plg` plugin packages: pack a plugin folder, sign it, verify it, extract it
//! safely, and install it into a [`plugin_host::PluginManager`]'s base directory, from a
//! file, a URL or a git repository.
//!
//! A host that only loads plugin folders does not need this crate, and so pulls in no tar,
//! gzip, HTTP or signature code. See `docs/packages.md` for the format and the trust model.
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
pub use install::{verify_file, Installed, Installer, Origin, Verified};
pub use scaffold::{new_plugin, Scaffolded};
#[cfg(feature = "sign")]
pub use sign::{generate_keypair, sign_package, KeyPair};
pub use sign::{PublicKey, SignatureError, Signed, TrustedKeys};

/// docs/packages.md's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/packages.md")]
struct PackagesDoctests;
