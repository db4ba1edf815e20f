"""The two drain strategies: ``latest`` supersedes, ``all`` keeps every frame and waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from actors.sessions.drains import AllDrain, Drain, LatestDrain, make_drain
from actors.sessions.messages import Attachment
from engine.doorbell import Doorbell
from engine.errors import SessionClosed
from engine.types import DrainStrategy
from tests.actors.sessions.kit import frame, new_state
from tests.support import eventually


async def rung(bell: Doorbell) -> bool:
    """Whether ``bell`` rang since its owner last waited (the ring is used up)."""
    waiting = asyncio.ensure_future(bell.wait())
    await asyncio.sleep(0)
    if waiting.done():
        return True
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    return False


async def settle() -> None:
    """A few loop turns: enough for any woken task to run."""
    for _ in range(5):
        await asyncio.sleep(0)


# --- latest --------------------------------------------------------------------------


async def test_latest_keeps_only_the_newest_frame_and_counts_the_superseded() -> None:
    superseded: list[None] = []
    drain = LatestDrain(lambda: superseded.append(None))
    assert (len(drain), drain.peak) == (0, 0)
    await drain.put(frame(1))
    assert (len(drain), drain.peak, superseded) == (1, 1, [])
    await drain.put(frame(2))
    await drain.put(frame(3))
    assert len(drain) == 1
    assert drain.peak == 1
    assert len(superseded) == 2  # the callback fires once per replaced frame
    assert drain.take().seq == 3
    assert len(drain) == 0
    assert drain.take_superseded() == 2
    assert drain.take_superseded() == 0  # counted once


async def test_latest_does_not_count_a_frame_put_after_the_last_was_taken() -> None:
    drain = LatestDrain()
    await drain.put(frame(1))
    assert drain.take().seq == 1
    await drain.put(frame(2))
    assert drain.take().seq == 2
    assert drain.take_superseded() == 0


async def test_latest_works_without_a_callback() -> None:
    drain = LatestDrain()
    await drain.put(frame(1))
    await drain.put(frame(2))
    assert drain.take_superseded() == 1


# --- all -----------------------------------------------------------------------------


async def test_all_keeps_every_frame_in_order() -> None:
    drain = AllDrain(8)
    for seq in range(5):
        await drain.put(frame(seq))
    assert (len(drain), drain.peak) == (5, 5)
    assert [drain.take().seq for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(drain) == 0
    assert drain.peak == 5  # the most it ever held
    assert drain.take_superseded() == 0


async def test_all_put_waits_when_full_and_resumes_when_a_frame_is_taken() -> None:
    drain = AllDrain(2)
    await drain.put(frame(0))
    await drain.put(frame(1))
    blocked = asyncio.ensure_future(drain.put(frame(2)))
    await settle()
    assert not blocked.done()
    assert len(drain) == 2
    assert drain.take().seq == 0
    await asyncio.wait_for(blocked, 1.0)
    assert len(drain) == 2
    assert drain.peak == 2
    assert [drain.take().seq, drain.take().seq] == [1, 2]


async def test_all_put_waits_again_while_the_drain_stays_full() -> None:
    drain = AllDrain(1)
    await drain.put(frame(0))
    first = asyncio.ensure_future(drain.put(frame(1)))
    await settle()
    assert drain.take().seq == 0
    await asyncio.wait_for(first, 1.0)
    second = asyncio.ensure_future(drain.put(frame(2)))
    await settle()
    assert not second.done()  # full again: it waits for the next take
    assert drain.take().seq == 1
    await asyncio.wait_for(second, 1.0)
    assert drain.take().seq == 2


async def test_close_releases_a_waiting_put_with_session_closed() -> None:
    drain = AllDrain(1)
    await drain.put(frame(0))
    blocked = asyncio.ensure_future(drain.put(frame(1)))
    await settle()
    assert not blocked.done()
    drain.close()
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(blocked, 1.0)
    assert len(drain) == 1  # the refused frame was not added


@pytest.mark.parametrize("drain", [LatestDrain, lambda: AllDrain(4)])
async def test_a_closed_drain_refuses_frames(drain: Callable[[], Drain]) -> None:
    closed = drain()
    closed.close()
    assert closed.closed
    with pytest.raises(SessionClosed):
        await closed.put(frame(0))
    assert len(closed) == 0


@pytest.mark.parametrize("drain", [LatestDrain, lambda: AllDrain(4)])
async def test_take_on_an_empty_drain_raises_session_closed(drain: Callable[[], Drain]) -> None:
    empty = drain()
    with pytest.raises(SessionClosed):
        empty.take()
    await empty.put(frame(0))
    empty.take()
    with pytest.raises(SessionClosed):
        empty.take()


@pytest.mark.parametrize("capacity", [0, -1])
async def test_an_all_drain_needs_room_for_one_frame(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        AllDrain(capacity)


# --- the bell ------------------------------------------------------------------------


@pytest.mark.parametrize("drain", [LatestDrain, lambda: AllDrain(4)])
async def test_the_bell_rings_on_put_and_on_close(drain: Callable[[], Drain]) -> None:
    watched = drain()
    assert not await rung(watched.bell)
    await watched.put(frame(0))
    assert await rung(watched.bell)
    assert not await rung(watched.bell)
    watched.take()
    assert not await rung(watched.bell)  # taking is the consumer's own doing
    watched.close()
    assert await rung(watched.bell)


async def test_a_put_wakes_a_consumer_waiting_on_the_bell() -> None:
    drain = AllDrain(4)
    taken: list[int] = []

    async def consume() -> None:
        while not drain.closed:
            while len(drain):
                taken.append(drain.take().seq)
            await drain.bell.wait()

    consumer = asyncio.ensure_future(consume())
    expected: list[int] = []
    for seq in range(3):
        await drain.put(frame(seq))
        expected.append(seq)
        await eventually(lambda: taken == expected)  # taken while the consumer slept
    drain.close()
    await asyncio.wait_for(consumer, 1.0)
    assert taken == [0, 1, 2]


# --- make_drain and the attachment ---------------------------------------------------


async def test_make_drain_builds_the_strategy_asked_for() -> None:
    calls: list[None] = []
    latest = make_drain(DrainStrategy.LATEST, 3, lambda: calls.append(None))
    assert isinstance(latest, LatestDrain)
    await latest.put(frame(0))
    await latest.put(frame(1))
    assert calls == [None]
    every = make_drain(DrainStrategy.ALL, 3)
    assert isinstance(every, AllDrain)
    assert every.capacity == 3


async def test_an_attachment_counts_frames_in_and_feeds_the_drain() -> None:
    state = new_state("p", DrainStrategy.LATEST)
    drain = make_drain(state.drain, 4)
    counted: list[None] = []
    attachment = Attachment(state, drain, lambda: counted.append(None))
    await attachment.submit(frame(0))
    await attachment.submit(frame(1))
    assert state.stats.frames_in == 2
    assert len(counted) == 2
    assert drain.take().seq == 1
