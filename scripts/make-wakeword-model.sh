#!/usr/bin/env bash
# make-wakeword-model.sh: (re)make the committed default wake word model,
# models/jarvis.rpw and its manifest models/jarvis.rpw.json.
#
# Usage: scripts/make-wakeword-model.sh [--check]
#   --check  retrain into a temporary directory and compare the sha256 with
#            the committed model; exit 1 on any difference
#
# Needs the shared recordings beside the repository (../shared/data/
# wake-word/jarvis): the files whose name hashes into the training split
# are used (--samples-split train); the others stay unseen for validation.
# Installs piper with scripts/setup-tts.sh (pinned versions). Takes about
# 5 minutes on 2 cores.

set -euo pipefail

SEED=1

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
log() { printf '[make-wakeword-model] %s\n' "$*" >&2; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

check=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --check) check=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "make-wakeword-model: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

samples="$repo_root/../shared/data/wake-word/jarvis"
if [[ ! -d "$samples" ]]; then
    echo "make-wakeword-model: $samples not found: the jarvis recordings must be checked out beside this repository (../shared)" >&2
    exit 1
fi

scripts/setup-tts.sh
log "building voicegate (release)"
cargo build --release --quiet --bin voicegate
bin="$repo_root/target/release/voicegate"

out_dir="$repo_root/models"
if [[ $check -eq 1 ]]; then
    out_dir="$(mktemp -d)"
    trap 'rm -rf "$out_dir"' EXIT
fi
# Run from the output directory so that no voicegate.toml is picked up.
(cd "$out_dir" && "$bin" wakeword train jarvis \
    --samples "$samples" --samples-split train \
    --seed "$SEED" --out "$out_dir/jarvis.rpw")

if [[ $check -eq 1 ]]; then
    want="$(sha256sum "$repo_root/models/jarvis.rpw" | cut -d' ' -f1)"
    got="$(sha256sum "$out_dir/jarvis.rpw" | cut -d' ' -f1)"
    if [[ "$want" != "$got" ]]; then
        log "DIFFERENT: committed $want, retrained $got"
        exit 1
    fi
    log "identical: $got"
fi
