//! The identity check: the plugin's name, version, SDK version and ABI version, from the
//! library's identity section (or from its `info()`), against the manifest.

use std::path::Path;

use object::{BinaryFormat, Object, ObjectSection};
use plugin_abi::identity::{self, DecodeError, Identity};
use plugin_abi::ABI_VERSION;

use crate::Error;

/// Reads the identity record `export_plugin!` writes into its own link section
/// ([`plugin_abi::identity`]) from `file`, the parsed bytes of `library`.
///
/// # Errors
///
/// [`Error::NotAPlugin`] if the section is missing or malformed; [`Error::AbiMismatch`] if
/// it has a format version this host does not read (a newer SDK wrote it).
pub(crate) fn read_identity<'data>(
    name: &str,
    library: &Path,
    file: &object::File<'data>,
) -> Result<Identity<'data>, Error> {
    let not_a_plugin = |reason| Error::NotAPlugin {
        plugin: name.to_owned(),
        path: library.to_path_buf(),
        reason,
    };
    let section_name = match file.format() {
        BinaryFormat::MachO => identity::MACHO_SECTION,
        BinaryFormat::Pe => identity::PE_SECTION,
        _ => identity::ELF_SECTION,
    };
    let Some(section) = file.section_by_name(section_name) else {
        return Err(not_a_plugin(format!(
            "it has no `{section_name}` section holding the plugin's identity, which \
             `export_plugin!` writes: rebuild it with plugin-sdk {}",
            crate::ABI_CRATE_VERSION
        )));
    };
    let bytes = section.data().map_err(|e| {
        not_a_plugin(format!(
            "its identity section `{section_name}` cannot be read ({e})"
        ))
    })?;
    identity::decode(bytes).map_err(|err| match err {
        DecodeError::Format(_) => Error::AbiMismatch {
            plugin: name.to_owned(),
            path: library.to_path_buf(),
            reason: format!("its identity section `{section_name}`: {err}"),
        },
        _ => not_a_plugin(format!(
            "its identity section `{section_name}` is malformed: {err}"
        )),
    })
}

/// Checks `found`, the identity of `library`, against the plugin's `name` and `version` (its
/// manifest's): the ABI version, the name, the version, and an SDK version caret-compatible
/// with this host's `plugin-abi`. The same check serves the record read from the file and,
/// once the library is mapped, the identity its code reports, in the host and in a worker.
///
/// # Errors
///
/// [`Error::AbiMismatch`] for another ABI version; [`Error::IdentityMismatch`] naming the
/// first field that differs.
pub(crate) fn check_identity(
    name: &str,
    version: &semver::Version,
    library: &Path,
    found: &Identity<'_>,
) -> Result<(), Error> {
    let mismatch = |field, expected: String, found: &str| Error::IdentityMismatch {
        plugin: name.to_owned(),
        path: library.to_path_buf(),
        field,
        expected,
        found: found.to_owned(),
    };
    if found.abi_version != ABI_VERSION {
        return Err(Error::AbiMismatch {
            plugin: name.to_owned(),
            path: library.to_path_buf(),
            reason: if found.abi_version < ABI_VERSION {
                format!(
                    "the library uses plugin ABI version {}, older than this host's \
                     {ABI_VERSION}, from a plugin-sdk before context values crossed as bytes",
                    found.abi_version
                )
            } else {
                format!(
                    "the library uses plugin ABI version {}, newer than this host's \
                     {ABI_VERSION} (or upgrade the host)",
                    found.abi_version
                )
            },
        });
    }
    if found.name != name {
        return Err(mismatch("name", name.to_owned(), found.name));
    }
    if found.version != version.to_string() {
        return Err(mismatch("version", version.to_string(), found.version));
    }
    let compatible = semver::Version::parse(found.sdk_version)
        .ok()
        .is_some_and(|v| sdk_requirement().matches(&v));
    if !compatible {
        return Err(mismatch(
            "sdk_version",
            sdk_requirement().to_string(),
            found.sdk_version,
        ));
    }
    Ok(())
}

/// The `plugin-sdk` versions this host accepts: caret-compatible with its `plugin-abi`.
fn sdk_requirement() -> semver::VersionReq {
    semver::VersionReq::parse(&format!("^{}", crate::ABI_CRATE_VERSION))
        .expect("a crate version is a valid caret requirement")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(found: Identity<'_>) -> Result<(), Error> {
        check_identity(
            "hello",
            &semver::Version::new(1, 2, 0),
            Path::new("hello/libhello.so"),
            &found,
        )
    }

    const GOOD: Identity<'static> = Identity {
        abi_version: ABI_VERSION,
        name: "hello",
        version: "1.2.0",
        sdk_version: plugin_abi::CRATE_VERSION,
    };

    #[test]
    fn each_field_is_checked_and_named() {
        check(GOOD).unwrap();
        let err = check(Identity {
            abi_version: ABI_VERSION + 1,
            ..GOOD
        })
        .unwrap_err();
        assert!(matches!(err, Error::AbiMismatch { .. }), "{err}");
        let field = |found| match check(found) {
            Err(Error::IdentityMismatch { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(Identity {
                name: "hallo",
                ..GOOD
            }),
            "name"
        );
        assert_eq!(
            field(Identity {
                version: "1.2.1",
                ..GOOD
            }),
            "version"
        );
        assert_eq!(
            field(Identity {
                sdk_version: "1000.0.0",
                ..GOOD
            }),
            "sdk_version"
        );
        assert_eq!(
            field(Identity {
                sdk_version: "not a version",
                ..GOOD
            }),
            "sdk_version"
        );
    }
}
