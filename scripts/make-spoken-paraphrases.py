#!/usr/bin/env python3
"""make-spoken-paraphrases.py: spoken versions of CLINC150 dev sentences,
for `voicegate eval speech` (issue 15: "spoken paraphrases, espeak-ng
voices, `run --no-wake --input`").

Usage: scripts/make-spoken-paraphrases.py OUT_DIR [--data FILE] [--seed N]
                                           [--engine espeak|piper] [--voicegate BIN]

Takes sentences from the CLINC150 dev file (default
../shared/data/nlu/clinc150/dev.jsonl, relative to the repository root),
speaks them with espeak-ng in several voices and speeds (or, with
`--engine piper`, each sentence once in the project's piper voice, through
`voicegate speak --out`), and writes
OUT_DIR/clips/NNNN.wav (16 kHz mono 16-bit PCM: 0.3 s of silence, the
sentence, 1.0 s of silence; peaks at -6 dBFS) and OUT_DIR/manifest.jsonl,
one line per clip:

  {"audio": "clips/0001.wav", "intent": "timer", "text": "...",
   "voice": "en-us", "speed": 175, "split": "val"}

(`"voice": "piper"` and no speed with `--engine piper`.)

Score it with the CLINC150 map:

  voicegate eval speech OUT_DIR/manifest.jsonl --map benchmarks/nlu/clinc150.toml

The selection (see SELECTION) is fixed and seeded: the same data, seed and
tools give the same sentences, voices and bytes (piper samples its
voice's noise, so its clips may differ in the last bits from run to run).
Only the `val` split is used: some `train` sentences of these intents are
in the intent files, and a sentence voicegate was written from measures
nothing. With espeak-ng each low-stakes sentence is spoken by two voices,
the others by one; piper has one voice, so each sentence is spoken once.

Generated audio is never committed: put OUT_DIR outside the repository or
under target/ (ignored). Needs espeak-ng and sox (scripts/setup.sh
installs both); `--engine piper` needs a built voicegate (default
target/release/voicegate, else `voicegate` on PATH) and its piper voice
(scripts/setup-tts.sh). Exits 0 with a printed reason when the data is
absent.
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (CLINC150 intent, sentences, voices per sentence). Low stakes: the
# intents issue 15 measures "handled" on; then what must run nothing
# (out of scope) or only be read back (purchases, bookings, payments).
SELECTION = [
    ("timer", 20, 2),
    ("alarm", 20, 2),
    ("play_music", 20, 2),
    ("change_volume", 20, 2),
    ("next_song", 20, 2),
    ("oos", 40, 1),
    ("order", 5, 1),
    ("restaurant_reservation", 5, 1),
    ("book_hotel", 5, 1),
    ("book_flight", 5, 1),
    ("pay_bill", 5, 1),
    ("transfer", 5, 1),
]

SPLIT = "val"

# espeak-ng voice (language + variant) and speed in words per minute
# (espeak-ng's default is 175).
VOICES = [
    ("en-us", 175),
    ("en-gb+f3", 160),
    ("en-us+m3", 190),
    ("en-gb-x-rp+f2", 150),
    ("en-gb-scotland", 170),
    ("en-us+f4", 180),
]

LEAD_S = 0.3
TAIL_S = 1.0
PEAK_DBFS = -6


def select(rows, seed, engine):
    """The clips to make: (intent, text, voice, speed), in a fixed order.
    The sentences are the same for both engines; piper says each once."""
    clips = []
    for intent, count, voices in SELECTION:
        texts = sorted({r["text"] for r in rows if r["intent"] == intent and r.get("split") == SPLIT})
        if len(texts) < count:
            sys.exit(f"make-spoken-paraphrases: {intent}: {len(texts)} {SPLIT} sentences, {count} wanted")
        # A string seed is hashed with SHA-512 by `random`: stable across
        # runs and Python versions (unlike hash()).
        rng = random.Random(f"{seed}:{intent}")
        chosen = rng.sample(texts, count)
        for i, text in enumerate(chosen):
            first = rng.randrange(len(VOICES))
            if engine == "piper":
                clips.append((intent, text, "piper", None))
                continue
            for k in range(voices):
                # A second voice far from the first: another accent and speed.
                voice, speed = VOICES[(first + k * (len(VOICES) // 2)) % len(VOICES)]
                clips.append((intent, text, voice, speed))
    return clips


def speak(text, voice, speed, out, tmp, voicegate):
    """text → 16 kHz mono 16-bit WAV at `out`, padded and normalised."""
    raw = Path(tmp) / "raw.wav"
    if voice == "piper":
        subprocess.run([voicegate, "speak", text, "--out", str(raw)], check=True, capture_output=True)
    else:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), "--stdin"],
            input=text.encode(),
            check=True,
        )
    subprocess.run(
        [
            "sox", "-D", "-R", str(raw),
            "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out),
            "vol", "0.5", "rate", "-v", "norm", str(PEAK_DBFS), "pad", str(LEAD_S), str(TAIL_S),
        ],
        check=True,
    )


def tool_version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/nlu/clinc150/dev.jsonl")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--engine", choices=["espeak", "piper"], default="espeak")
    parser.add_argument("--voicegate", default=None, help="the voicegate binary (for --engine piper)")
    args = parser.parse_args()

    if not args.data.is_file():
        print(f"make-spoken-paraphrases: skipped: {args.data} not found (the shared data is absent)")
        return 0
    versions = {"espeak-ng": tool_version(["espeak-ng", "--version"]), "sox": tool_version(["sox", "--version"])}
    missing = [name for name, v in versions.items() if v is None]
    if missing:
        sys.exit(f"make-spoken-paraphrases: {', '.join(missing)} not installed (scripts/setup.sh installs them)")
    voicegate = None
    if args.engine == "piper":
        built = REPO / "target/release/voicegate"
        voicegate = args.voicegate or (str(built) if built.is_file() else shutil.which("voicegate"))
        versions["voicegate"] = voicegate and tool_version([voicegate, "--version"])
        if not versions["voicegate"]:
            sys.exit("make-spoken-paraphrases: --engine piper needs voicegate (cargo build --release, or --voicegate BIN)")

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    clips = select(rows, args.seed, args.engine)

    out = args.out_dir
    clip_dir = out / "clips"
    if clip_dir.exists():
        shutil.rmtree(clip_dir)
    clip_dir.mkdir(parents=True)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (intent, text, voice, speed) in enumerate(clips, start=1):
            name = f"clips/{n:04d}.wav"
            speak(text, voice, speed, out / name, tmp, voicegate)
            line = {"audio": name, "intent": intent, "text": text, "voice": voice, "speed": speed, "split": SPLIT}
            if speed is None:
                del line["speed"]
            lines.append(json.dumps(line))
    (out / "manifest.jsonl").write_text("".join(line + "\n" for line in lines))
    about = {
        "data": str(args.data),
        "split": SPLIT,
        "seed": args.seed,
        "engine": args.engine,
        "selection": SELECTION,
        "voices": VOICES if args.engine == "espeak" else ["piper"],
        "lead_s": LEAD_S,
        "tail_s": TAIL_S,
        "peak_dbfs": PEAK_DBFS,
        "tools": versions,
        "clips": len(lines),
    }
    (out / "generator.json").write_text(json.dumps(about, indent=2) + "\n")
    print(f"make-spoken-paraphrases: {len(lines)} clips in {out} (manifest.jsonl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
