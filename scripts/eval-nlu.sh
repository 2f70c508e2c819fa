#!/usr/bin/env bash
# eval-nlu.sh: how much of what people write for voicegate's intents it
# handles: `voicegate eval nlu` on the CLINC150 and SNIPS dev files, with the
# maps in benchmarks/nlu/ (see docs/benchmarks.md for today's figures).
#
# Usage: scripts/eval-nlu.sh [--data DIR] [--release] [--json] [-- EXTRA...]
#   --data DIR   holds clinc150/dev.jsonl and snips/dev.jsonl
#                (default: ../shared/data/nlu, relative to the repo root)
#   --release    build and run the release binary (latencies as shipped;
#                the debug build's are several times higher)
#   --json       one JSON report per file instead of the tables
#   EXTRA        passed to both runs, e.g. -- --limit 500 or -- --verbose
#
# Skips (exit 0) with the reason printed when the data is absent.

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

data_dir="$repo_root/../shared/data/nlu"
profile=()
json=()
extra=()

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data_dir="${2:?--data needs a directory}"; shift 2 ;;
        --release) profile=(--release); shift ;;
        --json) json=(--json); shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "eval-nlu: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

clinc="$data_dir/clinc150/dev.jsonl"
snips="$data_dir/snips/dev.jsonl"
missing=()
for f in "$clinc" "$snips"; do
    [[ -f "$f" ]] || missing+=("$f")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "eval-nlu: skipped: not found: ${missing[*]} (the shared data is absent)"
    exit 0
fi

cargo build -q "${profile[@]}"
if [[ ${#profile[@]} -gt 0 ]]; then bin=target/release/voicegate; else bin=target/debug/voicegate; fi

for pair in "clinc150:$clinc" "snips:$snips"; do
    name="${pair%%:*}"
    file="${pair#*:}"
    echo "== $name: voicegate ${json[*]} eval nlu $file --map benchmarks/nlu/$name.toml ${extra[*]}"
    "$bin" "${json[@]}" eval nlu "$file" --map "benchmarks/nlu/$name.toml" "${extra[@]}"
done
