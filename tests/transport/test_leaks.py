"""A thousand short sessions leave nothing behind: actors, tasks, threads and file
descriptors come back to where they were."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass

from engine.supervisor import Supervisor
from tests.support import Easel, ServerFactory, collect, eventually, png
from transport.client import Client, Result
from transport.keys import DOMAIN, ENGINE
from transport.protocol import ContentType, DrainStrategy

CYCLES = 1_000
CLIENTS = 8
"""Clients cycling side by side: a cycle mostly waits on the store, so they overlap."""
WARM_UP = 5 * CLIENTS
"""Cycles before the baseline: pools that fill once (the store's connections, each with
its thread and file, the loop's default executor) are not leaks."""


@dataclass(frozen=True, slots=True)
class Footprint:
    actors: int
    sessions: int
    session_children: int
    tasks: tuple[str, ...]
    """What each task runs, sorted: a leak names itself."""
    threads: int
    fds: int


def footprint(easel: Easel) -> Footprint:
    app = easel.server.app
    engine = app[ENGINE]
    group = engine.root.child("sessions")
    assert isinstance(group, Supervisor)
    return Footprint(
        actors=sum(1 for _ in engine.system.cells()),
        sessions=len(app[DOMAIN].sessions),
        session_children=len(group.children()),
        tasks=tuple(sorted(_runs(task) for task in asyncio.all_tasks())),
        threads=threading.active_count(),
        fds=len(os.listdir("/proc/self/fd")),
    )


def _runs(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", repr(coro))


async def cycle(easel: Easel, token: str, seq: int) -> None:
    """HELLO makes a session, one frame goes through, the client goes away."""
    client = await Client.connect(
        easel.url, token=token, pipeline="passthrough", drain=DrainStrategy.ALL, http=easel.http
    )
    await client.send_frame(seq, ContentType.PNG, png())
    (answer,) = await collect(client, 1)
    assert isinstance(answer, Result)
    await client.close()


async def cycles(easel: Easel, count: int) -> None:
    """``count`` cycles, ``CLIENTS`` at a time."""
    token = easel.admin_key
    assert token is not None

    async def client(first: int) -> None:
        for seq in range(first, count, CLIENTS):
            await cycle(easel, token, seq)

    await asyncio.gather(*(client(first) for first in range(CLIENTS)))


async def quiet(easel: Easel) -> Footprint:
    """The footprint once every session has expired and its final write is done."""
    sessions = easel.server.app[DOMAIN].sessions
    await eventually(
        lambda: len(sessions) == 0 and footprint(easel).session_children == 0, timeout=30
    )
    await sessions.flush()
    return footprint(easel)


async def test_a_thousand_connect_frame_disconnect_cycles_leak_nothing(
    easel_factory: ServerFactory,
) -> None:
    # Detached sessions expire at once, so every session made here also ends.
    easel = await easel_factory(
        session_idle_timeout=0.01, max_sessions=CYCLES, max_sessions_per_key=CYCLES
    )
    await cycles(easel, WARM_UP)
    baseline = await quiet(easel)
    await cycles(easel, CYCLES)
    await quiet(easel)
    # Periodic work (the job dispatcher's rounds) starts and ends tasks of its own:
    # the footprint must come back to the baseline, not be there at one instant.
    try:
        await eventually(lambda: footprint(easel) == baseline, timeout=10)
    except AssertionError:
        assert footprint(easel) == baseline  # says what differs
