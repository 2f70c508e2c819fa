"""Transcript latency of `voicegate serve --wyoming` with N concurrent clients.

Each client is a real `wyoming` client (the package pinned in
tests/wyoming/requirements.txt; run with target/wyoming-venv/bin/python,
made by scripts/wyoming-venv.sh). The clips of DIR (16 kHz mono WAVs,
sorted by name) are dealt round-robin to N clients, which run at once; each
sends `transcribe`, the clip as fast as the socket takes it, `audio-stop`,
and waits for the `transcript`. Latency is from `audio-stop` sent to
`transcript` received: what a satellite waits after the user stops
talking, queueing behind the other clients included. Prints one JSON
object: p50, p95, mean and max in ms, the wall time, how many requests were
refused `busy`, and every transcript (for comparing with `voicegate eval
speech-to-intent --json`).

    target/wyoming-venv/bin/python scripts/bench-wyoming.py tcp://127.0.0.1:10700 DIR --clients 4
"""

import argparse
import asyncio
import json
import os
import statistics
import time
import wave

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient

SAMPLES_PER_CHUNK = 1024


def percentile(values, p):
    """The percentile as `voicegate eval` computes it (src/eval.rs)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = int(p / 100 * (len(ordered) - 1) + 0.5)
    return ordered[min(rank, len(ordered) - 1)]


def read(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return w.readframes(w.getnframes())


async def one_client(host, port, clips, results):
    async with AsyncTcpClient(host, port, read_timeout=300) as c:
        for name, pcm in clips:
            await c.write_event(Transcribe(language="en").event())
            await c.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            step = SAMPLES_PER_CHUNK * 2
            for i in range(0, len(pcm), step):
                await c.write_event(
                    AudioChunk(rate=16000, width=2, channels=1, audio=pcm[i : i + step]).event()
                )
            await c.write_event(AudioStop().event())
            sent = time.perf_counter()
            while True:
                event = await c.read_event()
                if event is None:
                    raise RuntimeError("the server closed the connection")
                if event.type in ("transcript", "error"):
                    break
            ms = (time.perf_counter() - sent) * 1000
            if event.type == "error":
                results.append({"file": name, "error": event.data.get("code"), "ms": ms})
            else:
                results.append({"file": name, "text": event.data.get("text"), "ms": ms})


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("uri")
    parser.add_argument("dir")
    parser.add_argument("--clients", type=int, default=1)
    args = parser.parse_args()
    host, port = args.uri.removeprefix("tcp://").rsplit(":", 1)
    names = sorted(n for n in os.listdir(args.dir) if n.endswith(".wav"))
    clips = [(n, read(os.path.join(args.dir, n))) for n in names]
    shares = [clips[i :: args.clients] for i in range(args.clients)]
    results = []
    started = time.perf_counter()
    await asyncio.gather(*(one_client(host, int(port), s, results) for s in shares))
    wall = time.perf_counter() - started
    ok = [r["ms"] for r in results if "text" in r]
    print(json.dumps({
        "clients": args.clients,
        "clips": len(results),
        "busy": sum(1 for r in results if r.get("error") == "busy"),
        "errors": sum(1 for r in results if "error" in r),
        "latency_ms": {
            "p50": round(percentile(ok, 50), 1),
            "p95": round(percentile(ok, 95), 1),
            "mean": round(statistics.mean(ok), 1) if ok else 0.0,
            "max": round(max(ok), 1) if ok else 0.0,
        },
        "wall_s": round(wall, 2),
        "transcripts": {r["file"]: r.get("text") for r in sorted(results, key=lambda r: r["file"])},
    }))


if __name__ == "__main__":
    asyncio.run(main())
