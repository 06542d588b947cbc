//! Unit tests of the trusted comment parser, the base64 decoder and key IDs.

use super::*;

fn version(text: &str) -> semver::Version {
    semver::Version::parse(text).expect("test version")
}

#[test]
fn trusted_comment_round_trips() {
    for (name, v) in [("hello", "0.1.0"), ("a-b_c", "1.2.3-rc.1+build.5")] {
        let comment = trusted_comment(name, &version(v));
        assert_eq!(comment, format!("plugin-package name={name} version={v}"));
        assert_eq!(
            parse_trusted_comment(&comment),
            Ok((name.to_owned(), version(v)))
        );
    }
}

#[test]
fn trusted_comment_parser_refuses_other_forms() {
    let cases = [
        ("timestamp:1555779966\tfile:hello.plg", "does not start"),
        ("plugin-package", "`name=` does not follow"),
        (
            "plugin-package version=1.0.0 name=x",
            "`name=` does not follow",
        ),
        ("plugin-package name=x", "`version=` does not follow"),
        (
            "plugin-package name=x version=1.0",
            "not a semantic version",
        ),
        (
            "plugin-package name=x version=1.0.0 extra",
            "follows the version",
        ),
        (
            "plugin-package name= version=1.0.0",
            "empty or holds blanks",
        ),
        (
            "plugin-package name=x\tversion=1.0.0",
            "`version=` does not follow",
        ),
        (
            "plugin-package  name=x version=1.0.0",
            "`name=` does not follow",
        ),
        (
            "plugin-package name=x version=v1.0.0",
            "not a semantic version",
        ),
    ];
    for (comment, expected) in cases {
        let err = parse_trusted_comment(comment).expect_err(comment);
        assert!(err.contains(expected), "{comment:?}: {err}");
    }
}

#[test]
fn base64_decodes_strictly() {
    assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
    assert_eq!(decode_base64("aGk="), Some(b"hi".to_vec()));
    assert_eq!(decode_base64("aGV5"), Some(b"hey".to_vec()));
    assert_eq!(decode_base64("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
    for bad in ["", "aGk", "a=Gk", "aG==aGk=", "aGk===", "aGk-", "aGk=\n"] {
        assert_eq!(decode_base64(bad), None, "{bad:?}");
    }
}

#[test]
fn key_id_is_the_little_endian_u64_in_upper_hex() {
    // From minisign-verify's test: key ID bytes 1f e8 b4 42 18 0f 62 e7.
    let key = PublicKey::from_base64("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3")
        .expect("minisign's sample key");
    assert_eq!(key.key_id(), "E7620F1842B4E81F");
}

#[test]
fn a_key_id_with_leading_zeros_is_printed_without_them_as_minisign_does() {
    assert_eq!(super::key_id_of(&[0xAB, 0x01, 0, 0, 0, 0, 0, 0]), "1AB");
    assert_eq!(super::key_id_of(&[0xFF; 8]), "FFFFFFFFFFFFFFFF");
}
