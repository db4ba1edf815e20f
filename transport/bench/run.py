"""One measurement: connect the clients to a target, run the load, summarize. Loop only."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from transport.bench.load import Load, Tally, run_clients
from transport.bench.report import Row, row_from
from transport.bench.servers import Target, ensure_pipeline, loop_lag, quantile
from transport.client import Client

__all__ = ["PipelineSpec", "measure", "stderr_progress"]

CONNECTS_AT_ONCE = 32


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline to create on the target if it is missing."""

    name: str
    kind: str | None = None
    replicas: int = 1
    max_batch: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


def stderr_progress(label: str, duration: float) -> Callable[[Tally, float], None]:
    """A one-line progress report on stderr, redrawn in place."""

    def show(tally: Tally, elapsed: float) -> None:
        shown = max(0.0, min(elapsed, duration))
        filled = int(20 * shown / duration) if duration else 20
        bar = "#" * filled + "." * (20 - filled)
        print(
            f"\r{label:<24} [{bar}] {shown:5.1f}/{duration:.0f}s "
            f"sent {tally.sent} answered {tally.answered} errors {tally.errors}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


async def _connect_one(
    http: aiohttp.ClientSession, target: Target, load: Load, gate: asyncio.Semaphore
) -> Client:
    async with gate:
        if target.kind == "echo":
            return await Client.connect(target.url, token="echo", session="echo", http=http)
        body = {"pipeline": load.pipeline, "drain": str(load.drain), "params": dict(load.params)}
        async with http.post(target.url + "/api/v1/sessions", json=body) as response:
            created = await response.json()
            if response.status != 201:
                raise RuntimeError(f"creating a session: {response.status} {created}")
        return await Client.connect(
            target.url, token=created["token"], session=created["id"], http=http
        )


async def measure(
    target: Target,
    load: Load,
    *,
    label: str | None = None,
    pipeline: PipelineSpec | None = None,
    progress: bool = True,
) -> Row:
    """Run ``load`` against ``target`` and return its row (RSS if the target is spawned)."""
    label = label or target.kind
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        if pipeline is not None and target.kind == "easel":
            await ensure_pipeline(
                http,
                target.url,
                pipeline.name,
                kind=pipeline.kind,
                replicas=pipeline.replicas,
                max_batch=pipeline.max_batch,
                options=pipeline.options,
            )
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        clients = await asyncio.gather(
            *(_connect_one(http, target, load, gate) for _ in range(load.clients))
        )
        lag_before = await loop_lag(http, target)
        target.rss.clear()
        sampler = asyncio.create_task(target.sample_rss())
        try:
            show = stderr_progress(label, load.duration) if progress else None
            tally = await run_clients(list(clients), load, show)
        finally:
            sampler.cancel()
            if progress:
                print(file=sys.stderr)
        lag_after = await loop_lag(http, target)
    lag_p99 = None
    if lag_before is not None and lag_after is not None:
        before = dict(lag_before)
        lag_p99 = quantile(0.99, [(le, count - before.get(le, 0.0)) for le, count in lag_after])
    return row_from(label, load.clients, tally, loop_lag_p99=lag_p99, rss=target.rss or None)
