"""A small Wyoming client for voicegate's tests, on the real `wyoming` package.

Each command connects to URI, does one thing and prints every event it got
back as a JSON line ({"conn": ..., "type": ..., "data": ...}), so the Rust
tests (tests/wyoming.rs) read plain data. Usage:

    client.py URI describe
    client.py URI transcribe WAV [--rate HZ] [--channels N]
    client.py URI detect WAV [--names jarvis ...] [--no-start]
    client.py URI handle STEP...        STEP is CONN:TEXT, e.g. A:yes, sent as a
                                        transcript on connection CONN (opened
                                        when first used); CONN:name=NAME and
                                        CONN:ctx=KEY=VALUE add to the context
                                        of CONN's transcripts; CONN:close ends
                                        the connection (the next step on CONN
                                        opens a new one, as Home Assistant
                                        does for every sentence)
    client.py URI half-stream           audio-start and one chunk, then silence
    client.py URI garbage               a line that is not JSON
    client.py URI oversized             a payload_length over the limit

WAV files are 16-bit PCM; --rate and --channels re-send them at another
rate (by repeating samples: a crude upsampler, which the server's resampler
must filter) and channel count, to exercise the server's conversion.
After a stream the client sends `ping` and reads up to the `pong`, so every
answer to the stream has arrived when it stops reading.
"""

import argparse
import asyncio
import json
import sys
import wave

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping
from wyoming.wake import Detect

READ_TIMEOUT = 120.0
SAMPLES_PER_CHUNK = 1024


def show(conn, event):
    print(json.dumps({"conn": conn, "type": event.type, "data": event.data}), flush=True)


def host_port(uri):
    rest = uri.removeprefix("tcp://")
    host, port = rest.rsplit(":", 1)
    return host, int(port)


def client(uri):
    host, port = host_port(uri)
    return AsyncTcpClient(host, port, read_timeout=READ_TIMEOUT)


async def read_until(conn, c, types):
    """Prints events until one of `types` (or the connection closes)."""
    while True:
        event = await c.read_event()
        if event is None:
            print(json.dumps({"conn": conn, "type": "closed"}), flush=True)
            return None
        show(conn, event)
        if event.type in types:
            return event


def audio(path, rate, channels):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, path
        frames = w.readframes(w.getnframes())
        source_rate = w.getframerate()
    factor = 1
    if rate is not None and rate != source_rate:
        assert rate % source_rate == 0, "only whole multiples of the file's rate"
        factor = rate // source_rate
    out = bytearray()
    for i in range(0, len(frames), 2):
        sample = frames[i : i + 2]
        out += sample * (factor * channels)
    return bytes(out), source_rate * factor, channels


async def stream(c, path, rate, channels, start=True):
    pcm, rate, channels = audio(path, rate, channels)
    width = 2
    if start:
        await c.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
    step = SAMPLES_PER_CHUNK * width * channels
    for i in range(0, len(pcm), step):
        chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=pcm[i : i + step])
        await c.write_event(chunk.event())
    await c.write_event(AudioStop().event())
    await c.write_event(Ping(text="end").event())


async def describe(args):
    async with client(args.uri) as c:
        await c.write_event(Describe().event())
        event = await read_until("A", c, {"info", "error"})
        if event is not None and event.type == "info":
            # Parsed by the package itself: the field names are right.
            info = Info.from_event(event)
            print(json.dumps({"conn": "A", "type": "parsed", "data": {
                "asr": [m.name for p in info.asr for m in p.models],
                "wake": [m.name for p in info.wake for m in p.models],
                "handle": [m.name for p in info.handle for m in p.models],
            }}), flush=True)


async def transcribe(args):
    async with client(args.uri) as c:
        await c.write_event(Transcribe(language="en").event())
        await stream(c, args.wav, args.rate, args.channels)
        await read_until("A", c, {"pong"})


async def detect(args):
    async with client(args.uri) as c:
        await c.write_event(Detect(names=args.names).event())
        await stream(c, args.wav, args.rate, args.channels, start=not args.no_start)
        await read_until("A", c, {"pong"})


async def handle(args):
    conns = {}
    contexts = {}
    try:
        for step in args.steps:
            conn, text = step.split(":", 1)
            if text.startswith("name="):
                contexts.setdefault(conn, {})["name"] = text.removeprefix("name=")
                continue
            if text.startswith("ctx="):
                key, value = text.removeprefix("ctx=").split("=", 1)
                contexts.setdefault(conn, {})[key] = value
                continue
            if text == "close":
                if conn in conns:
                    await conns.pop(conn).disconnect()
                continue
            if conn not in conns:
                conns[conn] = client(args.uri)
                await conns[conn].connect()
            context = contexts.get(conn)
            await conns[conn].write_event(Transcript(text=text, context=context).event())
            await read_until(conn, conns[conn], {"handled", "not-handled", "error"})
    finally:
        for c in conns.values():
            await c.disconnect()


async def half_stream(args):
    async with client(args.uri) as c:
        await c.write_event(Transcribe().event())
        await c.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        await c.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=bytes(2048)).event())
        await read_until("A", c, {"error"})


async def raw(args, payload):
    host, port = host_port(args.uri)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
    if line:
        event = json.loads(line)
        show("A", Event(type=event["type"], data=event.get("data", {})))
    rest = await asyncio.wait_for(reader.read(), READ_TIMEOUT)
    print(json.dumps({"conn": "A", "type": "closed" if not rest else "more"}), flush=True)
    writer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("uri")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("describe")
    for name in ("transcribe", "detect"):
        p = sub.add_parser(name)
        p.add_argument("wav")
        p.add_argument("--rate", type=int)
        p.add_argument("--channels", type=int, default=1)
        if name == "detect":
            p.add_argument("--names", nargs="*")
            # Chunks only, no audio-start: each chunk names its format.
            p.add_argument("--no-start", action="store_true")
    p = sub.add_parser("handle")
    p.add_argument("steps", nargs="+")
    sub.add_parser("half-stream")
    sub.add_parser("garbage")
    sub.add_parser("oversized")
    args = parser.parse_args()
    if args.command == "garbage":
        run = raw(args, b"this is not json\n")
    elif args.command == "oversized":
        run = raw(args, b'{"type":"audio-chunk","payload_length":999999999999}\n')
    else:
        run = {
            "describe": describe,
            "transcribe": transcribe,
            "detect": detect,
            "handle": handle,
            "half-stream": half_stream,
        }[args.command](args)
    asyncio.run(run)


if __name__ == "__main__":
    sys.exit(main())
