//! Fuzz the template parser: any UTF-8 string must parse or be rejected with
//! an error, never panic, overflow the stack or loop forever.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = voicegate::intent::template::parse(s);
    }
});
