//! Fuzzes `Manifest::parse` on arbitrary text: it never panics, and a manifest it accepts
//! serializes back to JSON that parses to an equal manifest.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plugin_host::manifest::ManifestError;
use plugin_host::Manifest;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("fuzz/plugin.json");
    match Manifest::parse(&text, file) {
        Ok(manifest) => {
            let json = serde_json::to_string(&manifest).expect("a manifest serializes");
            let again = Manifest::parse(&json, file)
                .unwrap_or_else(|e| panic!("a serialized manifest is refused: {e}\n{json}"));
            assert_eq!(
                again, manifest,
                "the round trip changed the manifest: {json}"
            );
        }
        // Every refusal is one of the two parse errors, and names the file.
        Err(err @ (ManifestError::Syntax { .. } | ManifestError::Invalid { .. })) => {
            assert!(err.to_string().contains("fuzz/plugin.json"), "{err}");
        }
        Err(other) => panic!("parse returned an error only loading can: {other:?}"),
    }
});
