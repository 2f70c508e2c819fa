#!/usr/bin/env bash
# fuzz.sh: run every cargo-fuzz target in fuzz/ for a fixed time, seeded from
# the project's intent files (and Home Assistant's, when shared data is there).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  time per target (default 300)
#   TARGET   fuzz targets to run (default: all, from `cargo fuzz list`)
#
# Environment:
#   FUZZ_TOOLCHAIN  rustup toolchain to build with (default: the default one,
#                   normally stable; RUSTC_BOOTSTRAP=1 lets it take the -Z
#                   flags cargo-fuzz passes). Set to "nightly" to use nightly.
#   FUZZ_SANITIZER  address (default), leak, memory, thread or none
#
# Seeds are rebuilt on every run under fuzz/corpus/seeds/<target>/:
#   intent_file: each intents/**/*.yaml and HA sentences/en/**/*.yaml, whole;
#   template:    each template-like string from those files, one per file.
# What libFuzzer finds is kept in fuzz/corpus/<target>/ across runs, crashes go
# to fuzz/artifacts/<target>/, logs to fuzz/target/logs/<target>.log.
# Prints libFuzzer's executed-unit count per target, and exits non-zero if a
# target failed to build or found a crash.

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

seconds="${1:-300}"
if [[ $# -gt 0 ]]; then
    shift
fi
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: SECONDS must be a positive integer, got '$seconds'" >&2
    exit 2
fi

log() {
    printf '==> %s\n' "$*" >&2
}

# shellcheck source=scripts/setup.sh
source "$repo_root/scripts/setup.sh"

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes -Z flags (sanitizers, coverage instrumentation) that only a
# nightly compiler accepts; RUSTC_BOOTSTRAP=1 unlocks them on stable, so the
# machine's one toolchain is enough.
fuzz_cmd=(cargo)
if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
    fuzz_cmd+=("+$FUZZ_TOOLCHAIN")
fi
fuzz_cmd+=(fuzz)
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-address}"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz_cmd[@]}" list)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "fuzz.sh: no fuzz targets found in fuzz/" >&2
    exit 1
fi

# --- seed corpora -------------------------------------------------------------------
seed_root="$repo_root/fuzz/corpus/seeds"
ha_sentences="$repo_root/../shared/data/ha-intents/sentences/en"

yaml_sources=()
if [[ -d "$repo_root/intents" ]]; then
    while IFS= read -r -d '' file; do
        yaml_sources+=("$file")
    done < <(find "$repo_root/intents" -type f -name '*.yaml' -print0 | sort -z)
fi
if [[ -d "$ha_sentences" ]]; then
    while IFS= read -r -d '' file; do
        yaml_sources+=("$file")
    done < <(find "$ha_sentences" -type f -name '*.yaml' -print0 | sort -z)
else
    log "no HA sentences at $ha_sentences: seeding from intents/ only"
fi

rm -rf "$seed_root"
mkdir -p "$seed_root/intent_file" "$seed_root/template"

# Seeds are named by content hash, as libFuzzer names its own inputs.
add_seed() { # add_seed DIR < content
    local dir="$1" tmp hash
    tmp="$(mktemp "$dir/.seed.XXXXXX")"
    cat > "$tmp"
    hash="$(sha1sum "$tmp" | cut -d' ' -f1)"
    mv -f "$tmp" "$dir/$hash"
}

for file in "${yaml_sources[@]}"; do
    add_seed "$seed_root/intent_file" < "$file"
done

# Template seeds: the scalar values of list items and keys (sentences,
# expansion rules, list values), quoted or plain, one string per seed file.
# A crude line-based reader is enough for seeds; it needs only Python's stdlib.
if [[ ${#yaml_sources[@]} -gt 0 ]]; then
    python3 - "$seed_root/template" "${yaml_sources[@]}" <<'PY'
import hashlib
import json
import re
import sys
from pathlib import Path

out_dir = Path(sys.argv[1])
ITEM = re.compile(r"^\s*(?:-\s+|[\w@.-]+:\s+)(?P<value>\S.*?)\s*$")
seen = set()

def scalar(raw):
    if raw.startswith('"'):
        end = raw.rfind('"')
        if end <= 0:
            return None
        try:
            return json.loads(raw[: end + 1])
        except ValueError:
            return raw[1:end]
    if raw.startswith("'"):
        end = raw.rfind("'")
        return raw[1:end].replace("''", "'") if end > 0 else None
    if raw[0] in "|>&*!{[#":
        return None
    return raw.split(" #", 1)[0].strip()

for name in sys.argv[2:]:
    for line in Path(name).read_text(encoding="utf-8", errors="replace").splitlines():
        match = ITEM.match(line)
        if not match:
            continue
        text = scalar(match.group("value"))
        if not text or text in seen:
            continue
        seen.add(text)
        data = text.encode("utf-8")
        (out_dir / hashlib.sha1(data).hexdigest()).write_bytes(data)
PY
fi

log "seeds: $(find "$seed_root/intent_file" -type f | wc -l) intent files, $(find "$seed_root/template" -type f | wc -l) templates"

# --- fuzzing ------------------------------------------------------------------------
log_dir="$repo_root/fuzz/target/logs"
mkdir -p "$log_dir"
summary=()
status=0

for target in "${targets[@]}"; do
    corpus="$repo_root/fuzz/corpus/$target"
    mkdir -p "$corpus"
    seeds=()
    if [[ -d "$seed_root/$target" ]]; then
        seeds=("$seed_root/$target")
    fi
    target_log="$log_dir/$target.log"

    log "$target: building (sanitizer $sanitizer)"
    if ! "${fuzz_cmd[@]}" build --sanitizer "$sanitizer" --debug-assertions "$target" \
        > "$target_log" 2>&1; then
        # Show the compiler's errors rather than cargo-fuzz's backtrace.
        grep -m 10 -A 6 -E '^error' "$target_log" >&2 || tail -n 20 "$target_log" >&2
        summary+=("$target: BUILD FAILED (see $target_log)")
        status=1
        continue
    fi

    log "$target: fuzzing for ${seconds}s"
    # The first corpus directory receives new inputs; the seeds are read only.
    if "${fuzz_cmd[@]}" run --sanitizer "$sanitizer" --debug-assertions "$target" \
        "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 \
        >> "$target_log" 2>&1; then
        outcome="ok"
    else
        outcome="FAILED (crash or error; see $target_log and fuzz/artifacts/$target/)"
        status=1
    fi
    # libFuzzer's closing statistics (-print_final_stats=1).
    executed="$(sed -n 's/^stat::number_of_executed_units: *//p' "$target_log" | tail -n 1)"
    summary+=("$target: ${executed:-unknown} executions in ${seconds}s, $outcome")
done

printf '\nfuzz summary:\n' >&2
printf '  %s\n' "${summary[@]}" >&2
exit "$status"
