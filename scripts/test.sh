#!/usr/bin/env bash
# test.sh: set up the machine if needed, then build and run the whole test suite.
#
# Steps, each printed before it runs:
#   1. scripts/setup.sh (Debian packages, Rust toolchain, cargo-nextest)
#   2. cargo build --all-targets
#   3. cargo nextest run --workspace --no-fail-fast
#      (plain `cargo test --workspace --all-targets --no-fail-fast` if nextest
#      is unavailable)
#   4. cargo test --doc (nextest does not run doctests)
#
# Exits non-zero if any step fails: setup or the build stops the script at
# once; steps 3 and 4 both run, and the script fails afterwards. Tests that need data from ../shared/data
# skip themselves with a printed reason when it is absent.
# Extra arguments are passed to the test runner (nextest or cargo test).

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

step() {
    printf '\n==> %s\n' "$*" >&2
}

step "setup: scripts/setup.sh"
# shellcheck source=scripts/setup.sh
source "$repo_root/scripts/setup.sh"

step "build: cargo build --all-targets"
cargo build --all-targets

# The speech tests need the whisper model, the fallback test base-q8_0, and
# the embedder tests (tests/nlu_embed.rs) all-minilm-l6-v2; installing is
# idempotent (a hash check when a model is already there).
step "models: scripts/install-model.sh tiny.en-q8_0 base-q8_0 all-minilm-l6-v2"
VOICEGATE_PROFILE=debug "$repo_root/scripts/install-model.sh" tiny.en-q8_0
VOICEGATE_PROFILE=debug "$repo_root/scripts/install-model.sh" base-q8_0
VOICEGATE_PROFILE=debug "$repo_root/scripts/install-model.sh" all-minilm-l6-v2

# piper's voice: the daemon speaks with it, and tests/tts.rs checks that
# its read-back of a purchase is intelligible (idempotent).
step "voice: scripts/setup-tts.sh (piper, pinned)"
"$repo_root/scripts/setup-tts.sh"

# The fallback recogniser embeds its training sentences once and keeps the
# vectors beside the model; done here, before the tests start many
# voicegate processes at once that would each embed them cold.
step "fallback: embed the shipped intents' training sentences once"
warm_dir="$(mktemp -d)"
"$repo_root/target/debug/voicegate" --data-dir "$warm_dir" say "what can you do" >/dev/null
rm -rf "$warm_dir"

# From here on a failing step doesn't stop the others: every suite runs and
# the script exits non-zero at the end if any of them failed.
failed=()

if [[ "${VOICEGATE_NEXTEST:-0}" == "1" ]]; then
    step "tests: cargo nextest run --workspace --no-fail-fast${*:+ $*}"
    cargo nextest run --workspace --no-fail-fast "$@" || failed+=("cargo nextest run")
else
    # --all-targets leaves doctests out: the next step runs them.
    step "tests: cargo test --workspace --all-targets --no-fail-fast${*:+ $*} (cargo-nextest unavailable)"
    cargo test --workspace --all-targets --no-fail-fast "$@" || failed+=("cargo test")
fi

step "doctests: cargo test --doc"
cargo test --doc || failed+=("cargo test --doc")

if [[ ${#failed[@]} -gt 0 ]]; then
    step "FAILED: ${failed[*]}"
    exit 1
fi
step "all tests passed"
