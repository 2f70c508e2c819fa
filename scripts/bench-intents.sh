#!/usr/bin/env bash
# bench-intents.sh: time voicegate's intent matcher against hassil (Home
# Assistant's) on every sentence of the HA English test files, in one run.
#
# Usage: scripts/bench-intents.sh [--data DIR] [--repeat N] [--hassil-only] [--check]
#   --data DIR     HA intents checkout holding sentences/en and tests/en
#                  (default: ../shared/data/ha-intents, relative to the repo root)
#   --repeat N     timed matches per sentence for each engine (default: 10)
#   --hassil-only  skip the voicegate half (e.g. while the example doesn't build)
#   --check        exit 1 unless the goals are met: voicegate at least 50x
#                  faster than hassil (median per sentence) and loading its
#                  compiled intents in at most 50 ms
#
# voicegate is measured by `cargo run --release --example bench_intents`,
# hassil by bench/hassil_bench.py in a throwaway virtualenv under
# target/bench-venv (created on first use, reused after). Each prints one JSON
# line; this script prints both, then a summary with the ratio.

set -euo pipefail

# hassil release the comparison is made against. Bump deliberately: results
# from different hassil versions are not comparable.
HASSIL_VERSION="3.12.1"
PYYAML_VERSION="6.0.4"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

data_dir="$repo_root/../shared/data/ha-intents"
repeat=10
hassil_only=0
check=0

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data_dir="${2:?--data needs a directory}"; shift 2 ;;
        --repeat) repeat="${2:?--repeat needs a number}"; shift 2 ;;
        --hassil-only) hassil_only=1; shift ;;
        --check) check=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench-intents: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if ! [[ "$repeat" =~ ^[1-9][0-9]*$ ]]; then
    echo "bench-intents: --repeat must be a positive integer, got '$repeat'" >&2
    exit 2
fi

sentences_dir="$data_dir/sentences/en"
tests_dir="$data_dir/tests/en"
if [[ ! -d "$sentences_dir" || ! -f "$tests_dir/_fixtures.yaml" ]]; then
    echo "bench-intents: HA intents data not found." >&2
    echo "  expected $sentences_dir/ and $tests_dir/_fixtures.yaml" >&2
    echo "  (a copy of the home-assistant/intents repository; pass --data DIR to point elsewhere)" >&2
    exit 1
fi
sentences_dir="$(cd "$sentences_dir" && pwd)"
tests_dir="$(cd "$tests_dir" && pwd)"

log() {
    printf '==> %s\n' "$*" >&2
}

# shellcheck source=scripts/setup.sh
source "$repo_root/scripts/setup.sh"

# --- the throwaway virtualenv for hassil ---------------------------------------
venv="$repo_root/target/bench-venv"
venv_python="$venv/bin/python"
python_cmd="${PYTHON:-python3}"
if ! command -v "$python_cmd" >/dev/null 2>&1; then
    echo "bench-intents: $python_cmd not found; install Python 3 (with venv) or set PYTHON" >&2
    exit 1
fi
if [[ ! -x "$venv_python" ]]; then
    log "creating virtualenv $venv"
    mkdir -p "$repo_root/target"
    "$python_cmd" -m venv "$venv"
fi
installed_hassil="$("$venv_python" -c 'from importlib import metadata; print(metadata.version("hassil"))' 2>/dev/null || true)"
if [[ "$installed_hassil" != "$HASSIL_VERSION" ]] || ! "$venv_python" -c 'import yaml' 2>/dev/null; then
    log "installing hassil==$HASSIL_VERSION pyyaml==$PYYAML_VERSION into $venv"
    "$venv_python" -m pip install --quiet --disable-pip-version-check \
        "hassil==$HASSIL_VERSION" "pyyaml==$PYYAML_VERSION"
fi

results_dir="$repo_root/target/bench-intents"
mkdir -p "$results_dir"
voicegate_json="$results_dir/voicegate.json"
hassil_json="$results_dir/hassil.json"
rm -f "$voicegate_json" "$hassil_json"

# Keep the last line of a command's stdout that looks like a JSON object.
last_json_line() {
    grep -E '^[[:space:]]*\{' "$1" | tail -n 1
}

# --- voicegate -------------------------------------------------------------------
if [[ "$hassil_only" == "0" ]]; then
    log "voicegate: cargo run --release --example bench_intents (repeat $repeat)"
    cargo build --release --example bench_intents
    cargo run --quiet --release --example bench_intents -- \
        --sentences "$sentences_dir" --tests "$tests_dir" --repeat "$repeat" --json \
        > "$results_dir/voicegate.out"
    last_json_line "$results_dir/voicegate.out" > "$voicegate_json" || {
        echo "bench-intents: bench_intents printed no JSON line (see $results_dir/voicegate.out)" >&2
        exit 1
    }
fi

# --- hassil ----------------------------------------------------------------------
log "hassil $HASSIL_VERSION: bench/hassil_bench.py (repeat $repeat)"
"$venv_python" "$repo_root/bench/hassil_bench.py" \
    --sentences "$sentences_dir" --tests "$tests_dir" --repeat "$repeat" \
    > "$results_dir/hassil.out"
last_json_line "$results_dir/hassil.out" > "$hassil_json" || {
    echo "bench-intents: hassil_bench.py printed no JSON line (see $results_dir/hassil.out)" >&2
    exit 1
}

# --- summary ---------------------------------------------------------------------
[[ -s "$voicegate_json" ]] && cat "$voicegate_json"
cat "$hassil_json"

"$venv_python" - "$hassil_json" "$voicegate_json" "$check" <<'PY'
import json
import sys
from pathlib import Path

hassil_path, voicegate_path, check = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
hassil = json.loads(Path(hassil_path).read_text())
voicegate = json.loads(voicegate_path.read_text()) if voicegate_path.is_file() and voicegate_path.stat().st_size else None

SPEEDUP_GOAL = 50.0
LOAD_GOAL_MS = 50.0

def row(label, h, v, unit):
    v_text = "-" if v is None else f"{v:,.3f} {unit}"
    print(f"  {label:<28} {h:>14,.3f} {unit:<3} {v_text:>16}")

print()
print(f"summary ({hassil['sentences']} sentences, repeat {hassil.get('repeat', '?')}):")
print(f"  {'':<28} {'hassil ' + hassil['hassil_version']:>18} {'voicegate':>16}")
row("median per sentence", hassil["median_us_per_sentence"],
    voicegate and voicegate["median_us_per_sentence"], "us")
row("mean per sentence", hassil["mean_us_per_sentence"],
    voicegate and voicegate["mean_us_per_sentence"], "us")
row("load", hassil["load_ms"], voicegate and voicegate["load_ms"], "ms")
print(f"  {'recognized':<28} {hassil['recognized']:>14} {'':<3} "
      f"{'-' if voicegate is None else voicegate['recognized']:>16}")

if voicegate is None:
    print("  voicegate not measured (--hassil-only)")
    sys.exit(0)

if voicegate["sentences"] != hassil["sentences"]:
    print(f"  WARNING: sentence counts differ (hassil {hassil['sentences']}, "
          f"voicegate {voicegate['sentences']}): the two runs are not comparable")

v_median = voicegate["median_us_per_sentence"]
ratio = hassil["median_us_per_sentence"] / v_median if v_median > 0 else float("inf")
speed_ok = ratio >= SPEEDUP_GOAL
load_ok = voicegate["load_ms"] <= LOAD_GOAL_MS
print(f"  ratio hassil/voicegate (median): {ratio:,.1f}x  "
      f"(goal >= {SPEEDUP_GOAL:.0f}x: {'met' if speed_ok else 'NOT met'})")
print(f"  voicegate load: {voicegate['load_ms']:,.3f} ms  "
      f"(goal <= {LOAD_GOAL_MS:.0f} ms: {'met' if load_ok else 'NOT met'})")
if check and not (speed_ok and load_ok):
    sys.exit(1)
PY
