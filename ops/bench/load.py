"""The load: N clients sending frames at a rate or with a window in flight. Loop only.

Every client goes through :class:`transport.client.Client`, against Easel and the
echo baseline alike. Latency is measured client side, from just before a FRAME is
written to when the answer carrying its ``seq`` is read. Answers come in ``seq``
order, so when the answer to ``seq`` arrives every earlier frame still pending was
superseded (``latest`` drain) and will never be answered: it frees its window slot.

With ``paced`` (``rate`` only) clients honour the server's credits: a capture that
finds no credit is kept on the client (:meth:`Client.offer`) and sent when an answer
frees a place, unless a newer capture replaces it (counted in ``kept``: never sent).
Latency then runs from the capture, so time spent waiting for credit counts.

Only frames sent after ``warmup`` count; sending stops at ``warmup + duration`` and
the run then waits up to ``grace`` seconds for the answers still owed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from transport.client import Client, ConnectionClosed
from transport.client_cli import make_jpeg
from transport.protocol import ContentType, DrainStrategy, FrameType

__all__ = ["Load", "LoadResult", "make_jpeg", "make_payload", "run_clients"]

Connector = Callable[[aiohttp.ClientSession], "asyncio.Future[Client] | Any"]


@dataclass(frozen=True)
class Load:
    """What each client does."""

    payload: bytes
    content_type: ContentType = ContentType.JPEG
    clients: int = 1
    rate: float | None = None
    """Frames per second per client; ``None`` means pipelined with ``window`` in flight."""
    window: int = 1
    pipeline: str = "passthrough"
    drain: DrainStrategy = DrainStrategy.LATEST
    params: Mapping[str, Any] = field(default_factory=dict)
    duration: float = 5.0
    warmup: float = 0.5
    grace: float = 5.0
    paced: bool = False
    """Honour the server's credits (with ``rate``): see the module's docstring."""


@dataclass
class LoadResult:
    """What the clients saw, summed over them (frames sent during the measured span)."""

    sent: int = 0
    """Measured frames captured (sent, or offered under ``paced``)."""
    kept: int = 0
    """Measured captures a paced client replaced before sending them."""
    answered: int = 0
    superseded: int = 0
    """Measured frames never answered because a later one was (``latest`` drain)."""
    errors: int = 0
    unanswered: int = 0
    latencies: list[float] = field(default_factory=list)
    """Seconds from send to answer, one per answered measured frame."""
    span: float = 0.0
    """Seconds measured: throughput is ``in_span / span``."""
    in_span: int = 0
    """Answers (to any frame) that arrived during the measured span."""
    in_span_bytes: int = 0
    start: float = 0.0
    stop: float = 0.0
    error_codes: dict[str, int] = field(default_factory=dict)

    def add(self, other: LoadResult) -> None:
        """Fold in another measured span of the same load (interleaved runs)."""
        self.sent += other.sent
        self.kept += other.kept
        self.answered += other.answered
        self.superseded += other.superseded
        self.errors += other.errors
        self.unanswered += other.unanswered
        self.latencies.extend(other.latencies)
        self.span += other.span
        self.in_span += other.in_span
        self.in_span_bytes += other.in_span_bytes
        for code, count in other.error_codes.items():
            self.error_codes[code] = self.error_codes.get(code, 0) + count


def make_payload(size: int) -> bytes:
    """``size`` random bytes (not an image: for pipelines that don't decode)."""
    return os.urandom(size)


class _Pending:
    """One client's unanswered frames, oldest first."""

    def __init__(self, window: int | None) -> None:
        self.sent_at: dict[int, tuple[float, bool]] = {}
        self.slots = asyncio.Semaphore(window) if window else None
        self.empty = asyncio.Event()
        self.empty.set()

    def add(self, seq: int, at: float, measured: bool) -> None:
        self.sent_at[seq] = (at, measured)
        self.empty.clear()

    def drop(self, seq: int) -> bool:
        """Forget ``seq`` (never sent); whether it was measured."""
        _, measured = self.sent_at.pop(seq, (0.0, False))
        if not self.sent_at:
            self.empty.set()
        return measured

    def answer(self, seq: int) -> tuple[tuple[float, bool] | None, int]:
        """The send time of ``seq`` and how many earlier measured frames were skipped."""
        skipped = measured = 0
        for older in list(self.sent_at):
            if older >= seq:
                break
            measured += self.sent_at.pop(older)[1]
            skipped += 1
        sent = self.sent_at.pop(seq, None)
        if self.slots is not None:
            for _ in range(skipped + (sent is not None)):
                self.slots.release()
        if not self.sent_at:
            self.empty.set()
        return sent, measured


async def _receive(client: Client, pending: _Pending, tally: LoadResult) -> None:
    while True:
        try:
            frame = await client.receive()
        except ConnectionClosed:
            return
        now = time.perf_counter()
        seq = frame.header.get("seq")
        if not isinstance(seq, int):
            continue
        sent, skipped = pending.answer(seq)
        tally.superseded += skipped
        if tally.start <= now < tally.stop and frame.type is not FrameType.ERROR:
            tally.in_span += 1
            tally.in_span_bytes += len(frame.payload)
        if sent is None or not sent[1]:
            continue
        if frame.type is FrameType.ERROR:
            tally.errors += 1
            code = str(frame.header.get("code", "?"))
            tally.error_codes[code] = tally.error_codes.get(code, 0) + 1
            continue
        tally.answered += 1
        tally.latencies.append(now - sent[0])


async def _send(
    client: Client, load: Load, pending: _Pending, tally: LoadResult, t0: float
) -> None:
    start_measuring, stop = tally.start, tally.stop
    seq = 0
    kept: int | None = None  # the capture a paced client holds, waiting for credit
    while True:
        if pending.slots is not None:
            await pending.slots.acquire()
        else:
            assert load.rate is not None
            delay = t0 + seq / load.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        now = time.perf_counter()
        if now >= stop or client.closed:
            if kept is not None and client.holding:
                pending.drop(kept)  # never sent: nothing to wait for
            return
        measured = now >= start_measuring
        pending.add(seq, now, measured)
        tally.sent += measured
        if load.paced:
            if kept is not None and not client.holding:
                kept = None  # an answer freed a place and the client sent it
            if not await client.offer(seq, load.content_type, load.payload):
                if kept is not None:
                    tally.kept += pending.drop(kept)
                kept = seq
        else:
            await client.send_frame(seq, load.content_type, load.payload)
        seq += 1


async def _drive(client: Client, load: Load, tally: LoadResult, t0: float) -> None:
    pending = _Pending(None if load.rate else load.window)
    receiver = asyncio.create_task(_receive(client, pending, tally))
    try:
        await _send(client, load, pending, tally, t0)
        try:
            await asyncio.wait_for(pending.empty.wait(), load.grace)
        except TimeoutError:
            pass
        tally.unanswered += sum(1 for _, measured in pending.sent_at.values() if measured)
    finally:
        await client.close()
        receiver.cancel()


async def run_clients(
    clients: list[Client], load: Load, progress: Callable[[LoadResult, float], None] | None = None
) -> LoadResult:
    """Drive connected ``clients`` (closed afterwards) through ``load``; sum what they saw."""
    t0 = time.perf_counter() + 0.05
    start = t0 + load.warmup
    tally = LoadResult(span=load.duration, start=start, stop=start + load.duration)
    ticker = None
    if progress is not None:
        ticker = asyncio.create_task(_tick(progress, tally, t0, load))
    try:
        await asyncio.gather(*(_drive(client, load, tally, t0) for client in clients))
    finally:
        if ticker is not None:
            ticker.cancel()
    return tally


async def _tick(
    progress: Callable[[LoadResult, float], None], tally: LoadResult, t0: float, load: Load
) -> None:
    while True:
        progress(tally, time.perf_counter() - t0 - load.warmup)
        await asyncio.sleep(0.25)
