"""One measurement: connect the clients to a target, run the load, summarize. Loop only."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from ops.bench.load import Load, LoadResult, run_clients
from ops.bench.report import Row, row_from
from ops.bench.servers import Target, ensure_pipeline, loop_lag, quantile
from transport.client import Client

__all__ = ["PipelineSpec", "measure", "measure_interleaved", "stderr_progress"]

CONNECTS_AT_ONCE = 32


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline to create on the target if it is missing."""

    name: str
    kind: str | None = None
    replicas: int = 1
    max_batch: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    hosting: str | None = None


def stderr_progress(label: str, duration: float) -> Callable[[LoadResult, float], None]:
    """A one-line progress report on stderr, redrawn in place."""

    def show(tally: LoadResult, elapsed: float) -> None:
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
    span = await _measure_span(target, load, label or target.kind, pipeline, progress)
    return span.row(label or target.kind, load.clients, load.paced)


async def measure_interleaved(
    targets: Sequence[tuple[Target, str]],
    load: Load,
    *,
    slices: int,
    pipeline: PipelineSpec | None = None,
    progress: bool = True,
) -> tuple[list[Row], list[list[Row]]]:
    """Give each target ``load.duration`` in all, in ``slices`` turns taken in rotation.

    A noisy machine drifts over a run; targets that take turns see the same drift, so
    their ratio holds better than with one long run after the other. Returns one row
    per target over all its turns, and the rows of every turn (``[turn][target]``).
    """
    turn = replace(load, duration=load.duration / slices)
    totals = [_Span(LoadResult()) for _ in targets]
    turns: list[list[Row]] = []
    for index in range(slices):
        rows = []
        for (target, label), total in zip(targets, totals, strict=True):
            shown = f"{label} {index + 1}/{slices}"
            span = await _measure_span(target, turn, shown, pipeline, progress)
            total.add(span)
            rows.append(span.row(label, load.clients, load.paced))
        turns.append(rows)
    merged = [
        total.row(label, load.clients, load.paced)
        for (_, label), total in zip(targets, totals, strict=True)
    ]
    return merged, turns


@dataclass
class _Span:
    """What one measurement saw, before it is summarized into a row."""

    tally: LoadResult
    lag_p99: float | None = None
    rss: list[int] = field(default_factory=list)

    def add(self, other: _Span) -> None:
        self.tally.add(other.tally)
        if other.lag_p99 is not None:
            self.lag_p99 = max(self.lag_p99 or 0.0, other.lag_p99)
        self.rss.extend(other.rss)

    def row(self, label: str, clients: int, paced: bool = False) -> Row:
        return row_from(
            label,
            clients,
            self.tally,
            loop_lag_p99=self.lag_p99,
            rss=self.rss or None,
            paced=paced,
        )


async def _measure_span(
    target: Target, load: Load, label: str, pipeline: PipelineSpec | None, progress: bool
) -> _Span:
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
                hosting=pipeline.hosting,
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
    return _Span(tally, lag_p99, list(target.rss))
