"""``easel client``: send an image N times over one session, save the results, print timings."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import mimetypes
import os
import statistics
import time
from pathlib import Path

import aiohttp
from PIL import Image

from transport.client import Client, Result, ServerError
from transport.commands import Command
from transport.protocol import ContentType, FrameType

__all__ = ["COMMAND", "add_arguments", "make_jpeg", "run"]

EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


def make_jpeg(width: int, height: int, quality: int = 85) -> bytes:
    """A JPEG of a colourful gradient with some noise, so it compresses like a photo."""
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((width, height)),
            Image.radial_gradient("L").resize((width, height)),
            Image.effect_noise((width, height), 48).convert("L"),
        ),
    )
    buffer = io.BytesIO()
    base.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``easel client`` flags."""
    add = parser.add_argument
    add("--url", default="http://127.0.0.1:8080", help="server base URL")
    add("--session", help="session id (default: create one via REST)")
    add("--token", help="the session's token (with --session)")
    add(
        "--api-key",
        default=os.environ.get("EASEL_API_KEY"),
        help="a client (or admin) API key to create the session with (EASEL_API_KEY)",
    )
    add("--pipeline", default="passthrough")
    add("--params", type=json.loads, default={}, help="session params, JSON")
    add("--file", type=Path, help="image to send (default: a generated 512x512 JPEG)")
    add("--count", "-n", type=int, default=10)
    add("--out", type=Path, help="directory to save results in")


async def _create(
    http: aiohttp.ClientSession, url: str, pipeline: str, params: dict[str, object]
) -> tuple[str, str]:
    body = {"pipeline": pipeline, "drain": "all", "params": params}
    async with http.post(url + "/api/v1/sessions", json=body) as response:
        created = await response.json()
        if response.status != 201:
            raise SystemExit(
                f"easel client: creating a session failed: {response.status} {created}"
            )
    return str(created["id"]), str(created["token"])


async def _main(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/")
    if args.file is not None:
        payload = args.file.read_bytes()
        ct = ContentType(mimetypes.guess_type(args.file.name)[0] or "image/jpeg")
    else:
        payload, ct = make_jpeg(512, 512), ContentType.JPEG
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    async with aiohttp.ClientSession(headers=headers) as http:
        session, token = args.session, args.token
        if session is None:
            session, token = await _create(http, url, args.pipeline, args.params)
        async with await Client.connect(url, token=token or "", session=session, http=http) as c:
            print(f"session {session} pipeline {c.welcome.pipeline} drain {c.welcome.drain}")
            failures, times = 0, []
            for seq in range(args.count):
                start = time.perf_counter()
                await c.send_frame(seq, ct, payload)
                frame = await c.receive()
                elapsed = (time.perf_counter() - start) * 1000
                times.append(elapsed)
                if frame.type is FrameType.ERROR:
                    answer = ServerError.from_frame(frame)
                    failures += 1
                    print(f"#{seq}: error {answer.code}: {answer}  {elapsed:.2f} ms")
                    continue
                result = Result.from_frame(frame)
                print(_line(result, elapsed))
                if args.out is not None:
                    name = f"{seq:05d}{EXTENSIONS.get(result.ct, '.bin')}"
                    (args.out / name).write_bytes(result.payload)
    if times:
        print(
            f"{len(times)} frames, {failures} failed: min {min(times):.2f} "
            f"median {statistics.median(times):.2f} max {max(times):.2f} ms"
        )
    return 1 if failures else 0


def _line(result: Result, elapsed: float) -> str:
    line = f"#{result.seq}: {result.ct} {len(result.payload)} bytes in {elapsed:.2f} ms"
    t = result.timings
    if t is None:
        return line
    return f"{line} (server: queue {t.queue_ms:.2f} pipeline {t.pipeline_ms:.2f} ms)"


def run(args: argparse.Namespace) -> int:
    """Run ``easel client`` from parsed ``args``; exit status 1 if any frame failed."""
    return asyncio.run(_main(args))


COMMAND = Command(
    "client", "send an image N times, save results, print timings", add_arguments, run
)
