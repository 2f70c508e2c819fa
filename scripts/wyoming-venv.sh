#!/usr/bin/env bash
# wyoming-venv.sh: the virtualenv the Wyoming tests' client runs in.
#
# Creates target/wyoming-venv (git-ignored, under target/) and installs
# tests/wyoming/requirements.txt into it with --require-hashes: the real
# `wyoming` package from PyPI, pinned by version and sha256. Idempotent:
# nothing is downloaded when the pinned version is already there.
# scripts/test.sh runs it; tests/wyoming.rs looks for the venv's python.
# PYTHON names the interpreter (default python3).

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/target/wyoming-venv"
requirements="$repo_root/tests/wyoming/requirements.txt"
python_cmd="${PYTHON:-python3}"
pinned="$(sed -n 's/^wyoming==\([^ ]*\).*/\1/p' "$requirements")"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "[wyoming-venv] creating $venv" >&2
    "$python_cmd" -m venv "$venv"
fi
installed="$("$venv/bin/python" -c 'from importlib import metadata; print(metadata.version("wyoming"))' 2>/dev/null || true)"
if [[ "$installed" != "$pinned" ]]; then
    echo "[wyoming-venv] installing wyoming==$pinned (hash-checked)" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --require-hashes -r "$requirements"
fi
