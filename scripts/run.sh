#!/usr/bin/env bash
# run.sh: set up the machine if needed, build voicegate and run it.
#
# Usage: scripts/run.sh [ARGS...]
#   Arguments are passed to the voicegate binary unchanged. With no arguments
#   it runs `voicegate run` (the daemon). Any other subcommand works too, e.g.
#   `scripts/run.sh --help`.
#
# Set VOICEGATE_PROFILE=debug for a debug build (default: release).

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# shellcheck source=scripts/setup.sh
source "$repo_root/scripts/setup.sh"

if [[ $# -eq 0 ]]; then
    set -- run
fi

# The daemon transcribes with the whisper model, and the NLU fallback
# embeds sentences with all-MiniLM-L6-v2: install them when missing.
"$repo_root/scripts/install-model.sh" tiny.en-q8_0
"$repo_root/scripts/install-model.sh" all-minilm-l6-v2

# Responses are spoken with piper's voice (espeak-ng when it is missing):
# install it, pinned (idempotent).
"$repo_root/scripts/setup-tts.sh"

profile_args=(--release)
if [[ "${VOICEGATE_PROFILE:-release}" == "debug" ]]; then
    profile_args=()
fi

echo "==> cargo run ${profile_args[*]} --bin voicegate -- $*" >&2
exec cargo run "${profile_args[@]}" --bin voicegate -- "$@"
