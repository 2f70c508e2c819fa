//! Fuzz the intent-file loader and the matcher: the bytes are one YAML intent
//! file. Whatever it holds, loading must report problems as diagnostics, and
//! matching a few sentences against whatever loaded must not panic.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use voicegate::intent::{IntentSet, SourceFile};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let (set, _diagnostics) = IntentSet::build(
            vec![SourceFile {
                path: "fuzz.yaml".into(),
                text: s.to_string(),
            }],
            &HashMap::new(),
        );
        let context = serde_json::Map::new();
        for sentence in [
            "turn on the kitchen light",
            "set a timer for 5 minutes",
            "a b c 1 2 3",
        ] {
            let _ = set.recognize(sentence, &context);
        }
    }
});
