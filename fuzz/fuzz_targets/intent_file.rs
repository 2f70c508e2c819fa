//! Fuzz the intent-file loader: the bytes are one YAML intent file. Whatever
//! it holds, loading must report problems as errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = voicegate::intent::check_sources(&[voicegate::intent::SourceFile {
            path: "fuzz.yaml".into(),
            text: s.to_string(),
        }]);
    }
});
