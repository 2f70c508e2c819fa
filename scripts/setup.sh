#!/usr/bin/env bash
# setup.sh: prepare a fresh Debian machine to build, run and test voicegate.
#
# Idempotent: every step checks first and does nothing when already done, so
# it is cheap to run before every build. Both scripts/run.sh and
# scripts/test.sh source it (`source scripts/setup.sh`); it can also be run on
# its own (`scripts/setup.sh`).
#
#   - installs the Debian packages below that are missing (apt-get update runs
#     only when something must be installed; sudo is used only when not root);
#   - checks that a Rust toolchain (cargo) is present, and says how to get one
#     if it is not;
#   - makes sure cargo-nextest is available, installing it from crates.io if
#     needed. If that fails, VOICEGATE_NEXTEST=0 is exported and callers fall
#     back to plain `cargo test`.
#
# Environment knobs:
#   VOICEGATE_SKIP_APT=1      skip the Debian package step entirely
#   VOICEGATE_SKIP_NEXTEST=1  don't try to install cargo-nextest

set -euo pipefail

# Debian packages the project needs now or soon. One per line, with what needs it.
APT_PACKAGES=(
    build-essential  # C compiler and make, for crates that build C code
    cmake            # crates that build bundled C/C++ libraries with CMake
    pkg-config       # -sys crates locate system libraries through it
    libasound2-dev   # ALSA headers: microphone capture and playback
    clang            # bindgen-based -sys crates (speech models) compile with it
    libclang-dev     # libclang itself, loaded by bindgen at build time
    libsqlite3-dev   # SQLite: the audit log and local state
    espeak-ng        # text-to-speech for spoken replies and for test audio
    python3-venv     # virtualenvs: piper's voice (scripts/setup-tts.sh)
    sox              # converting and generating audio fixtures in tests
    mpd              # music player daemon: target of the media actions
)

setup_log() {
    printf '[setup] %s\n' "$*" >&2
}

# Print the packages from APT_PACKAGES that are not installed yet.
setup_missing_apt_packages() {
    local pkg status
    for pkg in "${APT_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        if [[ "$status" != "install ok installed" ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

setup_apt() {
    if [[ "${VOICEGATE_SKIP_APT:-0}" == "1" ]]; then
        setup_log "VOICEGATE_SKIP_APT=1: not checking Debian packages"
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        setup_log "dpkg not found: not a Debian system, skipping package installation"
        setup_log "install the equivalents of: ${APT_PACKAGES[*]}"
        return 0
    fi

    local missing=()
    local pkg
    while IFS= read -r pkg; do
        [[ -n "$pkg" ]] && missing+=("$pkg")
    done < <(setup_missing_apt_packages)

    if [[ ${#missing[@]} -eq 0 ]]; then
        setup_log "Debian packages: all ${#APT_PACKAGES[@]} present"
        return 0
    fi

    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            setup_log "ERROR: missing packages (${missing[*]}) and not root, and sudo is not available"
            return 1
        fi
        sudo=(sudo)
    fi

    setup_log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # Services pulled in by these packages (mpd) must not be started here:
    # tests start what they need themselves.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}"
}

setup_rust() {
    # rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH.
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        setup_log "ERROR: no Rust toolchain found (cargo is not on PATH)."
        setup_log "Install one with rustup, then re-run this script:"
        setup_log "    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
        setup_log "    . \"\$HOME/.cargo/env\""
        setup_log "(or see https://rustup.rs). This script does not download toolchains itself."
        return 1
    fi
    setup_log "Rust: $(cargo --version)"
}

setup_nextest() {
    export VOICEGATE_NEXTEST=1
    if cargo nextest --version >/dev/null 2>&1; then
        setup_log "cargo-nextest: $(cargo nextest --version 2>/dev/null | head -n 1)"
        return 0
    fi
    if [[ "${VOICEGATE_SKIP_NEXTEST:-0}" == "1" ]]; then
        setup_log "cargo-nextest missing and VOICEGATE_SKIP_NEXTEST=1: tests will use cargo test"
        VOICEGATE_NEXTEST=0
        return 0
    fi
    setup_log "cargo-nextest missing: installing it (cargo install cargo-nextest --locked)"
    if cargo install cargo-nextest --locked && cargo nextest --version >/dev/null 2>&1; then
        setup_log "cargo-nextest: $(cargo nextest --version 2>/dev/null | head -n 1)"
    else
        setup_log "WARNING: could not install cargo-nextest; tests will use plain cargo test"
        VOICEGATE_NEXTEST=0
    fi
}

setup_main() {
    setup_apt
    setup_rust
    setup_nextest
}

# Runs both when executed and when sourced; sourcing also leaves PATH and
# VOICEGATE_NEXTEST set in the caller's shell.
setup_main
