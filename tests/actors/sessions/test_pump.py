"""The frame pump: drain → pipeline → connection, in seq order, with room admission.

Real pipelines on a real engine; only the client connection is a fake.
"""

from __future__ import annotations

import asyncio

from actors.pipelines.handle import PipelineHandle
from actors.plugins import PipelineConfig
from actors.sessions.drains import LatestDrain
from engine.errors import (
    ActorError,
    BadParams,
    EaselError,
    PipelineError,
    Unavailable,
)
from engine.types import DrainStrategy
from tests.actors.pipelines.kit import SCRIPTED, Rig
from tests.actors.sessions.kit import FakeConnection, frame, new_state, pumping
from tests.support import eventually


async def scripted(rig: Rig, replicas: int = 1, name: str = "sc") -> PipelineHandle:
    return await rig.pipelines.init(PipelineConfig(name=name, kind=SCRIPTED, replicas=replicas))


async def simulated(rig: Rig, name: str = "sim") -> PipelineHandle:
    config = PipelineConfig(name=name, kind="simulated", options={"cost_ms": 0})
    return await rig.pipelines.init(config)


async def settle() -> None:
    """Give every task that could still move a generous chance to do so."""
    await asyncio.sleep(0.05)


# --- order and in-flight limits ------------------------------------------------------


async def test_all_answers_in_seq_order_when_the_pipeline_answers_out_of_order(
    rig: Rig,
) -> None:
    await scripted(rig, replicas=3)
    connection = FakeConnection()
    state = new_state("sc", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        # frame 0 finishes only after frame 2 has: its answer lands last
        await running.feed(frame(0, {"tag": 0, "after": 2}), frame(1, {"tag": 1}))
        await running.feed(frame(2, {"tag": 2}))
        await eventually(lambda: connection.answered == 3)
    assert rig.script.finished.index(2) < rig.script.finished.index(0)
    assert connection.seqs == [0, 1, 2]
    assert connection.errors == []


async def test_all_keeps_at_most_max_inflight_frames_in_the_pipeline(rig: Rig) -> None:
    await scripted(rig, replicas=6)
    limit = rig.settings.max_inflight
    rig.script.hold()
    connection = FakeConnection()
    state = new_state("sc", DrainStrategy.ALL, {"hold": True})
    async with pumping(rig, state, connection) as running:
        await running.feed(*(frame(seq, {"tag": seq}) for seq in range(limit + 2)))
        await eventually(lambda: len(rig.script.entered) == limit)
        await settle()
        assert len(rig.script.entered) == limit
        assert len(running.drain) == 2
        rig.script.release()
        await eventually(lambda: connection.answered == limit + 2)
    assert connection.seqs == list(range(limit + 2))
    assert rig.script.most_inside > 1  # the frames really were processed side by side


async def test_latest_has_one_frame_in_flight_and_reports_superseded_in_the_next_result(
    rig: Rig,
) -> None:
    await scripted(rig, replicas=2)
    rig.script.hold()
    connection = FakeConnection()
    state = new_state("sc", DrainStrategy.LATEST, {"hold": True})
    superseded: list[None] = []
    drain = LatestDrain(lambda: superseded.append(None))
    async with pumping(rig, state, connection, drain=drain) as running:
        await running.feed(frame(0, {"tag": 0}))
        await eventually(lambda: rig.script.entered == [0])
        await running.feed(*(frame(seq, {"tag": seq}) for seq in (1, 2, 3)))
        await settle()
        assert rig.script.entered == [0]  # one in flight, though a replica is idle
        rig.script.release()
        await eventually(lambda: connection.answered == 2)
    assert [(sent.seq, sent.superseded) for sent in connection.results] == [(0, 2), (3, 0)]
    assert rig.script.entered == [0, 3]
    assert len(superseded) == 2
    assert state.stats.superseded == 2
    assert state.stats.frames_out == 2


# --- errors --------------------------------------------------------------------------


async def test_a_frame_the_plugin_fails_gets_an_error_with_its_seq_and_the_session_goes_on(
    rig: Rig,
) -> None:
    handle = await simulated(rig)
    connection = FakeConnection()
    state = new_state("sim", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        await running.feed(
            frame(0), frame(1, {"fail": True}), frame(2), frame(3, {"bogus": 1}), frame(4)
        )
        await eventually(lambda: connection.answered == 5)
    assert connection.seqs == [0, 2, 4]
    assert connection.error_seqs == [1, 3]
    (failed, _, fatal), (bad, _, _) = connection.errors
    assert isinstance(failed, PipelineError)
    assert not fatal
    assert isinstance(bad, BadParams)
    assert connection.log == ["result:0", "error:1", "result:2", "error:3", "result:4"]
    assert (state.stats.frames_out, state.stats.errors) == (3, 2)
    assert handle.room.used == 0  # refused frames give their places back too


async def test_a_replica_crash_fails_only_its_frame(rig: Rig) -> None:
    await scripted(rig)
    connection = FakeConnection()
    state = new_state("sc", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        await running.feed(frame(0, {"tag": 0}), frame(1, {"tag": 1, "crash": True}))
        await running.feed(frame(2, {"tag": 2}))
        await eventually(lambda: connection.answered == 3)
    assert connection.seqs == [0, 2]  # frame 2 waited for the restarted replica
    [(error, seq, _)] = connection.errors
    assert seq == 1
    assert isinstance(error, PipelineError)
    assert "failed on this frame" in error.message
    assert isinstance(error.__cause__, ActorError)


async def test_a_missing_pipeline_answers_each_frame_with_an_error(rig: Rig) -> None:
    connection = FakeConnection()
    state = new_state("ghost", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        await running.feed(frame(0), frame(1), frame(2))
        await eventually(lambda: connection.answered == 3)
    assert connection.error_seqs == [0, 1, 2]
    assert all(isinstance(error, Unavailable) for error, _, _ in connection.errors)
    assert (state.stats.frames_out, state.stats.errors) == (0, 3)


async def test_frames_find_a_pipeline_started_after_the_session(rig: Rig) -> None:
    connection = FakeConnection()
    state = new_state("sim", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        await running.feed(frame(0))
        await eventually(lambda: connection.answered == 1)
        await simulated(rig)
        await running.feed(frame(1))
        await eventually(lambda: connection.answered == 2)
    assert connection.error_seqs == [0]
    assert connection.seqs == [1]


async def test_frames_of_a_pipeline_shut_down_under_the_session_get_unavailable(
    rig: Rig,
) -> None:
    await simulated(rig)
    connection = FakeConnection()
    state = new_state("sim", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        await running.feed(frame(0))
        await eventually(lambda: connection.answered == 1)
        await rig.pipelines.shutdown("sim")
        await running.feed(frame(1))
        await eventually(lambda: connection.answered == 2)
    assert connection.seqs == [0]
    [(error, seq, _)] = connection.errors
    assert seq == 1
    assert isinstance(error, Unavailable)


async def test_an_answer_that_cannot_be_sent_becomes_an_internal_error_for_that_frame(
    rig: Rig,
) -> None:
    await simulated(rig)
    connection = FakeConnection(failing_results={1})
    state = new_state("sim", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        await running.feed(frame(0), frame(1), frame(2))
        await eventually(lambda: connection.answered == 3)
    assert connection.seqs == [0, 2]
    [(error, seq, _)] = connection.errors
    assert seq == 1
    assert type(error) is EaselError
    assert error.code == "internal"
    assert (state.stats.frames_out, state.stats.errors) == (2, 1)


# --- stats, timings, metrics, params ---------------------------------------------------


async def test_stats_and_timings_of_answered_frames(rig: Rig) -> None:
    await rig.pipelines.init(PipelineConfig(name="pt", kind="passthrough"))
    connection = FakeConnection()
    state = new_state("pt", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        await running.feed(frame(0, payload=b"a"), frame(1, payload=b"b"), frame(2))
        await eventually(lambda: connection.answered == 3)
        assert state.stats.last_total_ms == connection.results[-1].timings.total_ms
        await running.feed(frame(3, {"bogus": True}))
        await eventually(lambda: connection.answered == 4)
    assert [bytes(sent.out.payload) for sent in connection.results] == [b"a", b"b", b"png"]
    for sent in connection.results:
        assert sent.timings.queue_ms >= 0
        assert sent.timings.pipeline_ms >= 0
        assert sent.timings.total_ms >= 0
        assert sent.superseded == 0
    stats = state.stats
    assert (stats.frames_out, stats.errors, stats.superseded) == (3, 1, 0)
    assert stats.last_total_ms == connection.results[-1].timings.total_ms  # errors leave it
    assert rig.sample("easel_frames_total", pipeline="pt", outcome="out") == 3
    assert rig.sample("easel_frames_total", pipeline="pt", outcome="errored") == 1
    assert rig.sample("easel_frame_latency_seconds_count", pipeline="pt") == 3


async def test_frames_use_the_session_params_merged_with_their_own(rig: Rig) -> None:
    await scripted(rig)
    connection = FakeConnection()
    state = new_state("sc", DrainStrategy.ALL, {"tag": 7})
    async with pumping(rig, state, connection) as running:
        await running.feed(frame(0), frame(1, {"tag": 9}))
        await eventually(lambda: connection.answered == 2)
        state.params = {"tag": 8}  # replaced, as the session does on a change
        await running.feed(frame(2))
        await eventually(lambda: connection.answered == 3)
    assert rig.script.entered == [7, 9, 8]


# --- ending and admission ------------------------------------------------------------


async def test_closing_the_drain_ends_run_and_gives_back_the_room_places(rig: Rig) -> None:
    handle = await scripted(rig)  # one replica: a room of two places
    assert handle.room.capacity == 2
    rig.script.hold()
    connection = FakeConnection()
    state = new_state("sc", DrainStrategy.ALL, {"hold": True})
    async with pumping(rig, state, connection) as running:
        await running.feed(*(frame(seq, {"tag": seq}) for seq in range(3)))
        await eventually(lambda: handle.room.used == 2 and len(running.drain) == 1)
        await running.stop()
        await eventually(lambda: handle.room.used == 0)
        rig.script.release()
        await eventually(lambda: len(rig.script.finished) == 2)
        await settle()
    assert connection.answered == 0  # abandoned frames are never answered
    assert handle.room.used == 0


async def test_the_room_bounds_frames_in_the_pipeline_across_sessions(rig: Rig) -> None:
    handle = await scripted(rig)
    capacity = handle.room.capacity
    rig.script.hold()
    first, second = FakeConnection(), FakeConnection()
    one = new_state("sc", DrainStrategy.ALL, {"hold": True}, session_id="one")
    two = new_state("sc", DrainStrategy.ALL, {"hold": True}, session_id="two")
    async with pumping(rig, one, first) as a, pumping(rig, two, second) as b:
        await a.feed(*(frame(seq, {"tag": seq}) for seq in range(3)))
        await b.feed(*(frame(seq, {"tag": 10 + seq}) for seq in range(3)))
        await eventually(lambda: handle.room.used == capacity)
        await settle()
        assert handle.room.used == capacity
        assert len(a.drain) + len(b.drain) == 6 - capacity  # the rest wait in the drains
        rig.script.release()
        await eventually(lambda: first.answered == 3 and second.answered == 3)
    assert first.seqs == [0, 1, 2]
    assert second.seqs == [0, 1, 2]
    assert handle.room.used == 0


async def test_a_slow_client_does_not_hold_up_other_sessions(rig: Rig) -> None:
    handle = await scripted(rig)
    slow, quick = FakeConnection(), FakeConnection()
    slow.hold_results()
    one = new_state("sc", DrainStrategy.ALL, session_id="slow")
    two = new_state("sc", DrainStrategy.ALL, session_id="quick")
    async with pumping(rig, one, slow) as a, pumping(rig, two, quick) as b:
        await a.feed(*(frame(seq) for seq in range(6)))
        await eventually(lambda: slow.sending == [0])
        await b.feed(*(frame(seq) for seq in range(6)))
        await eventually(lambda: quick.answered == 6)
        assert slow.results == []
        slow.release_results()
        await eventually(lambda: slow.answered == 6)
    assert slow.seqs == list(range(6))
    assert quick.seqs == list(range(6))
    assert handle.room.used == 0


# --- the pipeline changing under the session -----------------------------------------


async def test_a_reload_under_a_session_loses_no_frame(rig: Rig) -> None:
    handle = await scripted(rig, replicas=2)
    rig.script.hold()
    connection = FakeConnection()
    state = new_state("sc", DrainStrategy.ALL, {"hold": True})
    async with pumping(rig, state, connection) as running:
        await running.feed(*(frame(seq, {"tag": seq}) for seq in range(3)))
        await eventually(lambda: len(rig.script.entered) == 2)
        reload = asyncio.ensure_future(rig.pipelines.reload("sc"))
        await eventually(lambda: handle.generation == 2)
        await running.feed(*(frame(seq, {"tag": seq}) for seq in range(3, 6)))
        rig.script.release()
        await eventually(lambda: connection.answered == 6)
        await asyncio.wait_for(reload, 5.0)
    assert connection.seqs == list(range(6))
    assert sorted(rig.script.finished) == list(range(6))
    assert handle.room.used == 0


async def test_a_pipeline_replaced_under_a_session_serves_its_next_frames(rig: Rig) -> None:
    old = await scripted(rig)
    rig.script.hold()
    connection = FakeConnection()
    state = new_state("sc", DrainStrategy.ALL)
    async with pumping(rig, state, connection) as running:
        await running.feed(*(frame(seq, {"tag": seq, "hold": True}) for seq in range(4)))
        await eventually(lambda: old.room.used == old.room.capacity)
        shutdown = asyncio.ensure_future(rig.pipelines.shutdown("sc"))
        await eventually(lambda: old.closed)
        rig.script.release()
        await asyncio.wait_for(shutdown, 5.0)
        new = await scripted(rig)
        await running.feed(frame(4, {"tag": 4}))
        await eventually(lambda: connection.seqs[-1:] == [4])
    assert connection.answer_order == [0, 1, 2, 3, 4]  # each answered once, in order
    assert connection.seqs[-1] == 4
    assert old.room.used == 0
    assert new.room.used == 0
