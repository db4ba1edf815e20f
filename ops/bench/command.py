"""``easel bench``: load a server with realtime clients and print what they saw.

With no ``--url`` it serves Easel itself (in process, embedded defaults, temporary
data dir; ``--spawn`` runs it as an ``easel serve`` subprocess instead). With
``--baseline echo`` it also serves a raw aiohttp echo the same way, puts the same
load on it, and prints both rows and Easel's ratios to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ops.bench.load import Load, make_jpeg, make_payload
from ops.bench.measure import PipelineSpec, measure
from ops.bench.report import Row, format_table, ratios
from ops.bench.servers import Target, in_process, spawned
from transport.commands import Command
from transport.protocol import ContentType, DrainStrategy

__all__ = ["COMMAND", "add_arguments", "bench", "run"]


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``easel bench`` flags."""
    add = parser.add_argument
    add("--url", help="server to load (default: start one here)")
    add("--spawn", action="store_true", help="start servers as subprocesses (RSS is measured)")
    add("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="spawned servers' loop")
    add("--setting", action="append", default=[], metavar="NAME=VALUE",
        help="engine setting for a server started here, e.g. max_inflight=4")  # fmt: skip
    add("--clients", type=int, default=1)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=float, help="frames per second per client")
    mode.add_argument("--pipelined", action="store_true", help="keep --window frames in flight")
    add("--window", type=int, default=1, help="frames in flight per client when pipelined")
    add("--paced", action="store_true",
        help="with --rate: honour the server's credits; keep captures while none")  # fmt: skip
    payload = parser.add_mutually_exclusive_group()
    payload.add_argument("--frame-size", type=int, help="random payload of BYTES")
    payload.add_argument("--image", type=_size, metavar="WxH", help="a generated JPEG")
    add("--pipeline", default="passthrough")
    add("--kind", help="create --pipeline with this kind if missing")
    add("--replicas", type=int, default=1)
    add("--max-batch", type=int)
    add("--options", type=json.loads, default={}, help="pipeline options, JSON")
    add("--params", type=json.loads, default={}, help="session params, JSON")
    add("--drain", choices=("latest", "all"), default="latest")
    add("--duration", type=float, default=5.0, help="seconds measured")
    add("--warmup", type=float, default=0.5, help="seconds sent before measuring")
    add("--baseline", choices=("echo",), help="also measure a raw aiohttp echo server")
    add("--json", action="store_true", help="machine-readable output")
    add("--quiet", action="store_true", help="no progress line")


def _load(args: argparse.Namespace) -> Load:
    if args.image is not None:
        payload, ct = make_jpeg(*args.image), ContentType.JPEG
    else:
        payload, ct = make_payload(args.frame_size or 64 * 1024), ContentType.JPEG
    return Load(
        payload=payload,
        content_type=ct,
        clients=args.clients,
        rate=None if args.pipelined else (args.rate or 30.0),
        window=args.window,
        pipeline=args.pipeline,
        drain=DrainStrategy(args.drain),
        params=args.params,
        duration=args.duration,
        warmup=args.warmup,
        paced=args.paced and not args.pipelined,
    )


def _settings(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


@contextlib.asynccontextmanager
async def _server(
    kind: str, url: str | None, spawn: bool, loop: str, settings: Mapping[str, Any]
) -> AsyncIterator[Target]:
    if url is not None:
        yield Target(kind, url.rstrip("/"))
    elif spawn:
        async with spawned(kind, settings, loop=loop) as target:
            yield target
    else:
        async with in_process(kind, settings) as target:
            yield target


async def bench(
    load: Load,
    *,
    url: str | None = None,
    baseline: str | None = None,
    pipeline: PipelineSpec | None = None,
    spawn: bool = False,
    loop: str = "asyncio",
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> list[Row]:
    """Measure Easel, then the baseline (if any) under the same load."""
    rows = []
    async with _server("easel", url, spawn, loop, settings or {}) as target:
        rows.append(await measure(target, load, pipeline=pipeline, progress=progress))
    if baseline == "echo":
        async with _server("echo", None, spawn or url is not None, loop, {}) as target:
            rows.append(await measure(target, load, progress=progress))
    return rows


def run(args: argparse.Namespace) -> int:
    """Run ``easel bench`` from parsed ``args``; exit status 0 on success."""
    pipeline = None
    if args.kind or args.pipeline not in ("passthrough", "imagefx"):
        pipeline = PipelineSpec(
            args.pipeline, args.kind, args.replicas, args.max_batch, dict(args.options)
        )
    rows = asyncio.run(
        bench(
            _load(args),
            url=args.url,
            baseline=args.baseline,
            pipeline=pipeline,
            spawn=args.spawn,
            loop=args.loop,
            settings=_settings(args.setting),
            progress=not args.quiet,
        )
    )
    compared = ratios(rows[0], rows[1]) if len(rows) == 2 else None
    if args.json:
        print(json.dumps({"rows": [r.as_dict() for r in rows], "ratios": compared}, indent=2))
        return 0
    print(format_table(rows))
    if compared is not None:
        print(" ".join(f"{k}={'-' if v is None else f'{v:.3f}'}" for k, v in compared.items()))
    return 0


COMMAND = Command("bench", "load a server with realtime clients, print latency", add_arguments, run)
