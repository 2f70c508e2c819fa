#!/usr/bin/env bash
# ab-coffee-latency.sh: does reading out-of-grammar speech slow down in-grammar
# commands? Runs the coffee benchmark (`eval speech-to-intent`) with the
# speech path issue 15 added (free readings, backing by the fallback) and
# without it, alternately, ROUNDS times each, so that the machine's drift
# falls on both sides alike. Prints one line per run and the median p50 of
# each side.
#
#   scripts/ab-coffee-latency.sh [--rounds N] [--snr DB] [--bin PATH]
#
# Needs ../shared/data/speech-to-intent and the installed whisper model.
# "without" is the same binary with --free-below 0 --short-below 0 (no free
# reading, hence no backing) and `[understanding] fallback = "off"` (no
# embedder loaded): the grammar path as it was before issue 15.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds=5
snr=""
bin=target/release/voicegate
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --snr) snr="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

S=../shared/data/speech-to-intent
[ -d "$S/clean" ] || { echo "no $S/clean: the coffee benchmark is not beside this checkout" >&2; exit 1; }
[ -x "$bin" ] || { echo "no $bin: build it with cargo build --release" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '[understanding]\nfallback = "off"\n' >"$tmp/off.toml"

noise=()
[ -n "$snr" ] && noise=(--noise "$S/kitchen.wav" --snr "$snr")

run() { # side, extra args...
    local side="$1"; shift
    "$bin" --json eval speech-to-intent "$S/clean" --labels "$S/labels.json" "${noise[@]}" "$@" 2>/dev/null \
        | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(sys.argv[1], r["accepted"], r["accepted_sure"], round(r["latency_ms"]["p50"], 1), round(r["latency_ms"]["p95"], 1))
' "$side"
}

echo "side accepted sure p50_ms p95_ms  (124 clips${snr:+, ${snr} dB kitchen noise})"
for i in $(seq "$rounds"); do
    # Alternate which side goes first, so neither always runs on a warmer cache.
    if [ $((i % 2)) -eq 1 ]; then
        run with | tee -a "$tmp/runs"
        run without --config "$tmp/off.toml" --free-below 0 --short-below 0 | tee -a "$tmp/runs"
    else
        run without --config "$tmp/off.toml" --free-below 0 --short-below 0 | tee -a "$tmp/runs"
        run with | tee -a "$tmp/runs"
    fi
done

python3 - "$tmp/runs" <<'EOF'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
for side in ("with", "without"):
    p50 = [float(r[3]) for r in runs if r[0] == side]
    print(f"{side}: median p50 {statistics.median(p50):.1f} ms over {len(p50)} runs "
          f"(min {min(p50):.1f}, max {max(p50):.1f})")
EOF
