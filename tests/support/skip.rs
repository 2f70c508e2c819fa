//! Skipping a test for something missing on this machine.
//!
//! A test may skip when a model or a tool it needs is not installed, so that
//! `cargo test` works on a bare checkout. But `scripts/test.sh` installs
//! them, and CI runs it with `CI=true`: there a missing model or tool is a
//! broken install, and a skip would hide it. So [`missing`] prints the
//! reason and returns normally, except under CI, where it fails the test.
//! (Tests that skip because `../shared/data` is absent do not use this: the
//! data may legitimately be absent anywhere.)

/// The models `scripts/test.sh` installs (`scripts/install-model.sh`).
#[allow(dead_code)]
pub const INSTALLED_BY_SETUP: [&str; 3] = ["tiny.en-q8_0", "base-q8_0", "all-minilm-l6-v2"];

/// True under CI (`CI=true`, as GitHub Actions and our `.ci/run` set it).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports that a model or tool the test needs is missing: a printed skip
/// normally, a failure under CI. The caller returns right after.
#[allow(dead_code)]
pub fn missing(reason: impl std::fmt::Display) {
    assert!(
        !under_ci(),
        "{reason} — under CI the project's setup installs it, so this is a broken install, not a skip"
    );
    eprintln!("skipping: {reason}");
}
