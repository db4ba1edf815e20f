"""The session actor under the real ``/sessions`` supervisor of a real engine.

Its dependencies are real (settings, metrics, the pipeline service) except the two
callbacks, which are recorded, and the client connection, which is a fake.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.pipelines.handle import PipelineHandle
from actors.plugins import PipelineConfig
from actors.sessions.actor import SessionActor
from actors.sessions.drains import AllDrain, LatestDrain
from actors.sessions.messages import (
    Attach,
    Attachment,
    Call,
    Close,
    Describe,
    Detach,
    Expire,
    PumpFailed,
    SessionMessage,
    UpdateParams,
)
from actors.sessions.state import SessionState
from engine.errors import BadParams, Conflict, Invalid, NotFound, PipelineError, SessionClosed
from engine.ref import ActorRef, ActorState, Cell
from engine.supervisor import ActorSpec, Restart, Supervisor
from engine.types import DrainStrategy
from tests.actors.pipelines.kit import SCRIPTED, Rig, open_rig
from tests.actors.sessions.kit import FakeConnection, Recorder, deps_for, frame, new_state
from tests.support import eventually

SessionRef = ActorRef[SessionMessage, Any]


async def start_session(
    rig: Rig, state: SessionState, recorder: Recorder, shutdown_timeout: float = 5.0
) -> SessionRef:
    """A session actor as the session service starts one: a transient child."""
    deps = deps_for(rig, recorder)
    ref = await rig.sessions_group.start_child(
        ActorSpec(
            id=state.id,
            factory=lambda: SessionActor(state, deps),
            restart=Restart.TRANSIENT,
            kind="session",
            shutdown_timeout=shutdown_timeout,
        )
    )
    assert not isinstance(ref, Supervisor)
    return ref


def supervised(rig: Rig, state: SessionState) -> bool:
    """Whether ``/sessions`` still has the session (it is gone once it ended for good)."""
    try:
        rig.sessions_group.child(state.id)
    except NotFound:
        return False
    return True


def cell_of(rig: Rig, state: SessionState) -> Cell[Any, Any]:
    cell = rig.sessions_group.child(state.id)
    assert isinstance(cell, Cell)
    return cell


async def passthrough(rig: Rig) -> PipelineHandle:
    return await rig.pipelines.init(PipelineConfig(name="pt", kind="passthrough"))


async def scripted(rig: Rig) -> PipelineHandle:
    return await rig.pipelines.init(PipelineConfig(name="sc", kind=SCRIPTED))


def pending_event_sends() -> list[asyncio.Task[Any]]:
    """Tasks still sending an EVENT to a fake connection."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and getattr(task.get_coro(), "__qualname__", "") == "FakeConnection.send_event"
    ]


@pytest.fixture
async def pt(rig: Rig) -> PipelineHandle:
    return await passthrough(rig)


# --- attach and detach ---------------------------------------------------------------


async def test_attach_returns_an_attachment_that_feeds_the_session(
    rig: Rig, pt: PipelineHandle
) -> None:
    state = new_state("pt", DrainStrategy.ALL)
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    connection = FakeConnection()
    attachment = await ref.ask(Attach(connection))
    assert isinstance(attachment, Attachment)
    assert attachment.state is state
    assert isinstance(attachment.drain, AllDrain)
    assert attachment.drain.capacity == rig.settings.drain_capacity
    assert state.attached
    assert recorder.attached == [+1]
    for seq in range(3):
        await attachment.submit(frame(seq, payload=bytes([seq])))
    await eventually(lambda: connection.answered == 3)
    assert connection.seqs == [0, 1, 2]
    assert [bytes(sent.out.payload) for sent in connection.results] == [b"\0", b"\1", b"\2"]
    assert (state.stats.frames_in, state.stats.frames_out) == (3, 3)
    assert rig.sample("easel_frames_total", pipeline="pt", outcome="in") == 3


async def test_a_latest_session_gets_a_latest_drain(rig: Rig, pt: PipelineHandle) -> None:
    ref = await start_session(rig, new_state("pt", DrainStrategy.LATEST), Recorder())
    attachment = await ref.ask(Attach(FakeConnection()))
    assert isinstance(attachment.drain, LatestDrain)


async def test_a_second_attach_is_a_conflict(rig: Rig, pt: PipelineHandle) -> None:
    state = new_state("pt")
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    first = FakeConnection()
    attachment = await ref.ask(Attach(first))
    with pytest.raises(Conflict):
        await ref.ask(Attach(FakeConnection()))
    assert recorder.attached == [+1]
    await attachment.submit(frame(0))
    await eventually(lambda: first.answered == 1)  # the first connection is still served


async def test_attach_to_a_missing_pipeline_fails_and_leaves_the_session_detached(
    rig: Rig,
) -> None:
    state = new_state("ghost")
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    with pytest.raises(NotFound):
        await ref.ask(Attach(FakeConnection()))
    assert not state.attached
    assert recorder.attached == []
    await passthrough(rig)
    state.pipeline = "pt"
    assert isinstance(await ref.ask(Attach(FakeConnection())), Attachment)


async def test_detach_of_a_stale_connection_is_ignored(rig: Rig, pt: PipelineHandle) -> None:
    state = new_state("pt")
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    current = FakeConnection()
    attachment = await ref.ask(Attach(current))
    await ref.ask(Detach(FakeConnection()))
    assert state.attached
    assert recorder.attached == [+1]
    assert not attachment.drain.closed
    await attachment.submit(frame(0))
    await eventually(lambda: current.answered == 1)
    await ref.ask(Detach(current))
    assert not state.attached
    assert recorder.attached == [+1, -1]
    assert attachment.drain.closed
    await ref.ask(Detach(current))  # twice: nothing more happens
    assert recorder.attached == [+1, -1]


async def test_after_a_detach_another_connection_can_attach(rig: Rig, pt: PipelineHandle) -> None:
    state = new_state("pt")
    ref = await start_session(rig, state, Recorder())
    gone = FakeConnection()
    await ref.ask(Attach(gone))
    await ref.ask(Detach(gone))
    resumed = FakeConnection()
    attachment = await ref.ask(Attach(resumed))
    assert not attachment.drain.closed
    await attachment.submit(frame(5))
    await eventually(lambda: resumed.answered == 1)
    assert gone.answered == 0
    assert gone.closes == []  # a detached connection is not the session's to close


async def test_a_detach_abandons_frames_in_flight_and_frees_their_places(rig: Rig) -> None:
    handle = await scripted(rig)
    rig.script.hold()
    ref = await start_session(rig, new_state("sc", DrainStrategy.ALL), Recorder())
    gone = FakeConnection()
    attachment = await ref.ask(Attach(gone))
    for seq in range(3):
        await attachment.submit(frame(seq, {"tag": seq, "hold": True}))
    await eventually(lambda: handle.room.used == handle.room.capacity)
    await ref.ask(Detach(gone))
    await eventually(lambda: handle.room.used == 0)
    rig.script.release()
    resumed = FakeConnection()
    attachment = await ref.ask(Attach(resumed))
    await attachment.submit(frame(3, {"tag": 3}))
    await eventually(lambda: resumed.answered == 1)
    assert resumed.seqs == [3]
    assert gone.answered == 0
    assert handle.room.used == 0


# --- params, describe, calls ---------------------------------------------------------


async def test_update_params_validates_then_merges(rig: Rig) -> None:
    await rig.pipelines.init(
        PipelineConfig(name="fx", kind="imagefx"),
    )
    state = new_state("fx", params={"effect": "invert"})
    ref = await start_session(rig, state, Recorder())
    before = state.params
    with pytest.raises(BadParams):
        await ref.ask(UpdateParams({"strength": "very"}))
    with pytest.raises(BadParams):
        await ref.ask(UpdateParams({"bogus": 1}))
    assert state.params is before
    assert state.params == {"effect": "invert"}
    merged = await ref.ask(UpdateParams({"strength": 0.5}))
    assert merged == {"effect": "invert", "strength": 0.5}
    assert state.params == merged
    assert state.params is not before  # replaced, never mutated
    assert before == {"effect": "invert"}


async def test_describe(rig: Rig, pt: PipelineHandle) -> None:
    state = new_state("pt", DrainStrategy.LATEST)
    ref = await start_session(rig, state, Recorder())
    description = await ref.ask(Describe())
    assert description == state.describe()
    assert description["id"] == state.id
    assert description["drain"] == "latest"
    assert description["attached"] is False
    await ref.ask(Attach(FakeConnection()))
    assert (await ref.ask(Describe()))["attached"] is True


async def test_call_session_stats(rig: Rig, pt: PipelineHandle) -> None:
    state = new_state("pt")
    ref = await start_session(rig, state, Recorder())
    assert await ref.ask(Call("session.stats", {})) == state.stats.as_dict()
    connection = FakeConnection()
    attachment = await ref.ask(Attach(connection))
    await attachment.submit(frame(0))
    await attachment.submit(frame(1))
    await eventually(lambda: connection.answered == 2)
    stats = await ref.ask(Call("session.stats", {}))
    assert stats["frames_in"] == stats["frames_out"] == 2
    assert stats["queued"] == 0
    assert stats["queued_peak"] >= 1


async def test_call_session_params_reads_and_sets(rig: Rig) -> None:
    await rig.pipelines.init(PipelineConfig(name="fx", kind="imagefx"))
    state = new_state("fx", params={"effect": "invert"})
    ref = await start_session(rig, state, Recorder())
    assert await ref.ask(Call("session.params", {})) == {"effect": "invert"}
    merged = await ref.ask(Call("session.params", {"set": {"strength": 0.25}}))
    assert merged == {"effect": "invert", "strength": 0.25}
    assert state.params == merged
    with pytest.raises(BadParams):
        await ref.ask(Call("session.params", {"set": {"strength": "x"}}))
    assert state.params == merged
    # a "set" that is not a mapping reads the params
    assert await ref.ask(Call("session.params", {"set": 3})) == merged


async def test_call_pipeline_info(rig: Rig) -> None:
    await rig.pipelines.init(PipelineConfig(name="sim", kind="simulated", replicas=2))
    ref = await start_session(rig, new_state("sim"), Recorder())
    info = await ref.ask(Call("pipeline.info", {}))
    assert info["name"] == "sim"
    assert info["kind"] == "simulated"
    assert info["replicas"] == 2
    assert info["ready"] is True
    assert set(info["params_schema"]["properties"]) == {"fail", "crash"}


async def test_an_unknown_call_is_invalid_and_the_session_lives_on(
    rig: Rig, pt: PipelineHandle
) -> None:
    ref = await start_session(rig, new_state("pt"), Recorder())
    with pytest.raises(Invalid, match="unknown method"):
        await ref.ask(Call("session.launch", {}))
    assert ref.state is ActorState.RUNNING
    assert (await ref.ask(Describe()))["pipeline"] == "pt"


# --- endings -------------------------------------------------------------------------


async def test_close_says_goodbye_then_ends_the_session(rig: Rig, pt: PipelineHandle) -> None:
    state = new_state("pt")
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    connection = FakeConnection()
    await ref.ask(Attach(connection))
    await ref.ask(Close(4000, "bye now"))
    await eventually(lambda: not ref.alive)
    assert connection.events == [("session.closed", {"reason": "bye now"})]
    assert connection.closes == [(4000, "bye now")]
    assert connection.log == ["event:session.closed", "close:4000"]
    assert recorder.ended == [state.id]
    assert recorder.attached == [+1, -1]
    assert not state.attached
    assert not supervised(rig, state)  # a normal end: not restarted


async def test_close_of_a_detached_session_just_ends_it(rig: Rig, pt: PipelineHandle) -> None:
    state = new_state("pt")
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    await ref.ask(Close())
    await eventually(lambda: recorder.ended == [state.id])
    await eventually(lambda: not ref.alive)
    assert recorder.attached == []


async def test_an_engine_stop_ends_sessions_with_server_going_away() -> None:
    recorder = Recorder()
    connection = FakeConnection()
    state = new_state("pt")
    async with open_rig() as rig:
        await passthrough(rig)
        ref = await start_session(rig, state, recorder)
        await ref.ask(Attach(connection))
    assert connection.events == [("session.closed", {"reason": "server going away"})]
    assert connection.closes == [(1001, "server going away")]
    assert recorder.ended == [state.id]


async def test_a_session_whose_client_does_not_take_the_goodbye_is_still_reported_ended() -> None:
    recorder = Recorder()
    connection = FakeConnection(held_events={"session.closed"})  # a client not reading
    state = new_state("pt")
    async with open_rig() as rig:
        await passthrough(rig)
        ref = await start_session(rig, state, recorder, shutdown_timeout=0.1)
        await ref.ask(Attach(connection))
    assert not ref.alive
    assert recorder.ended == [state.id]


async def test_a_restart_from_above_closes_the_client_1011_and_keeps_the_session(
    rig: Rig, pt: PipelineHandle
) -> None:
    state = new_state("pt", params={})
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    connection = FakeConnection()
    await ref.ask(Attach(connection))
    await rig.sessions_group.stop_incarnation()  # as a one_for_all parent does
    await rig.sessions_group.start()
    assert connection.closes == [(1011, "session restarting")]
    assert connection.events == []
    assert recorder.ended == []
    assert ref.state is ActorState.RUNNING
    assert cell_of(rig, state).incarnation == 2
    assert not state.attached
    assert isinstance(await ref.ask(Attach(FakeConnection())), Attachment)


async def test_an_idle_detached_session_expires() -> None:
    async with open_rig(session_idle_timeout=0.05) as rig:
        await passthrough(rig)
        state = new_state("pt")
        recorder = Recorder()
        ref = await start_session(rig, state, recorder)
        await eventually(lambda: recorder.ended == [state.id])
        await eventually(lambda: not ref.alive)


async def test_an_attached_session_does_not_expire_until_it_is_detached() -> None:
    async with open_rig(session_idle_timeout=0.05) as rig:
        await passthrough(rig)
        state = new_state("pt")
        recorder = Recorder()
        ref = await start_session(rig, state, recorder)
        connection = FakeConnection()
        await ref.ask(Attach(connection))
        await asyncio.sleep(0.3)  # six idle timeouts
        assert recorder.ended == []
        assert ref.state is ActorState.RUNNING
        await ref.ask(Detach(connection))
        await eventually(lambda: recorder.ended == [state.id])
        assert connection.closes == []  # detached before it ended: nobody to tell


async def test_a_stale_expiry_is_ignored(rig: Rig, pt: PipelineHandle) -> None:
    state = new_state("pt")
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    await ref.ask(Expire(0.0))
    assert ref.state is ActorState.RUNNING
    assert recorder.ended == []


# --- crashes -------------------------------------------------------------------------


async def test_a_pump_failure_crashes_the_incarnation_and_the_session_restarts(
    rig: Rig, pt: PipelineHandle
) -> None:
    state = new_state("pt", DrainStrategy.ALL)
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    broken = FakeConnection(broken_errors=True)  # the pump dies sending an ERROR
    attachment = await ref.ask(Attach(broken))
    await attachment.submit(frame(0))
    await attachment.submit(frame(1, {"bogus": 1}))
    await eventually(lambda: broken.closes == [(1011, "internal error")])
    assert broken.seqs == [0]
    assert broken.events == []  # not an end: no session.closed
    cell = cell_of(rig, state)
    await eventually(lambda: cell.incarnation == 2 and ref.state is ActorState.RUNNING)
    assert recorder.ended == []
    assert recorder.attached == [+1, -1]
    assert not state.attached
    assert state.stats.frames_in == 2  # the same state, stats included
    with pytest.raises(SessionClosed):
        await attachment.submit(frame(2))  # the crashed incarnation's drain is closed
    resumed = FakeConnection()
    attachment = await ref.ask(Attach(resumed))
    assert attachment.state is state
    await attachment.submit(frame(2))
    await eventually(lambda: resumed.answered == 1)
    assert resumed.seqs == [2]


async def test_a_crashed_session_nobody_resumes_still_expires() -> None:
    async with open_rig(session_idle_timeout=0.2) as rig:
        await passthrough(rig)
        state = new_state("pt")
        recorder = Recorder()
        ref = await start_session(rig, state, recorder)
        broken = FakeConnection(broken_errors=True)
        attachment = await ref.ask(Attach(broken))
        await attachment.submit(frame(0, {"bogus": 1}))
        await eventually(lambda: broken.closes == [(1011, "internal error")])
        await eventually(lambda: recorder.ended == [state.id])
        await eventually(lambda: not ref.alive)
        assert not supervised(rig, state)


async def test_a_pump_failure_of_an_earlier_incarnation_is_ignored(
    rig: Rig, pt: PipelineHandle
) -> None:
    state = new_state("pt")
    ref = await start_session(rig, state, Recorder())
    await ref.ask(PumpFailed(RuntimeError("old news"), incarnation=0))
    assert ref.state is ActorState.RUNNING
    assert cell_of(rig, state).incarnation == 1


# --- pipeline events -----------------------------------------------------------------


async def test_pipeline_events_reach_the_attached_connection(rig: Rig, pt: PipelineHandle) -> None:
    ref = await start_session(rig, new_state("pt"), Recorder())
    connection = FakeConnection()
    await ref.ask(Attach(connection))
    pt._emit("pipeline.restarting")
    pt._emit("pipeline.ready")
    expected = [
        ("pipeline.restarting", {"pipeline": "pt"}),
        ("pipeline.ready", {"pipeline": "pt"}),
    ]
    await eventually(lambda: connection.events == expected)
    await ref.ask(Detach(connection))
    pt._emit("pipeline.restarting")  # no longer subscribed
    await asyncio.sleep(0.01)
    assert connection.events == expected


async def test_a_replica_crash_is_announced_restarting_then_ready(rig: Rig) -> None:
    handle = await scripted(rig)
    ref = await start_session(rig, new_state("sc"), Recorder())
    connection = FakeConnection()
    attachment = await ref.ask(Attach(connection))
    await attachment.submit(frame(0, {"crash": True}))
    await eventually(lambda: len(connection.events) == 2)
    assert connection.events == [
        ("pipeline.restarting", {"pipeline": "sc"}),
        ("pipeline.ready", {"pipeline": "sc"}),
    ]
    assert handle.ready
    [(error, seq, _)] = connection.errors
    assert (seq, type(error)) == (0, PipelineError)
    await attachment.submit(frame(1))
    await eventually(lambda: connection.seqs == [1])


async def test_no_event_send_is_left_pending_after_the_session_stops(
    rig: Rig, pt: PipelineHandle
) -> None:
    state = new_state("pt")
    recorder = Recorder()
    ref = await start_session(rig, state, recorder)
    connection = FakeConnection(held_events={"pipeline.restarting"})
    await ref.ask(Attach(connection))
    pt._emit("pipeline.restarting")  # the client does not take it
    await eventually(lambda: len(pending_event_sends()) == 1)
    await ref.ask(Close())
    await eventually(lambda: not ref.alive)
    assert pending_event_sends() == []
    assert connection.events == [("session.closed", {"reason": "session closed"})]
    assert connection.closes == [(1000, "session closed")]
    assert recorder.ended == [state.id]


async def test_a_detach_cancels_event_sends_in_flight(rig: Rig, pt: PipelineHandle) -> None:
    ref = await start_session(rig, new_state("pt"), Recorder())
    connection = FakeConnection(held_events={"pipeline.ready"})
    await ref.ask(Attach(connection))
    pt._emit("pipeline.ready")
    await eventually(lambda: len(pending_event_sends()) == 1)
    await ref.ask(Detach(connection))
    await eventually(lambda: pending_event_sends() == [])
    connection.release_events()
    await asyncio.sleep(0.01)
    assert connection.events == []


async def test_a_finishing_close_answers_the_frames_in_the_pipeline_before_the_goodbye(
    rig: Rig,
) -> None:
    handle = await scripted(rig)
    rig.script.hold()
    ref = await start_session(rig, new_state("sc", DrainStrategy.ALL), Recorder())
    connection = FakeConnection()
    attachment = await ref.ask(Attach(connection))
    for seq in range(2):
        await attachment.submit(frame(seq, {"tag": seq, "hold": True}))
    await eventually(lambda: handle.room.used == 2)
    closing = asyncio.create_task(ref.ask(Close(1001, "server going away", finish=10.0)))
    await asyncio.sleep(0.05)  # room for the close to begin: the frames are still held
    assert connection.log == []
    rig.script.release()
    await closing
    await eventually(lambda: bool(connection.closes))
    assert connection.log == ["result:0", "result:1", "event:session.closed", "close:1001"]
    assert connection.closes == [(1001, "server going away")]


async def test_a_finishing_close_says_goodbye_when_its_deadline_passes(rig: Rig) -> None:
    handle = await scripted(rig)
    rig.script.hold()
    ref = await start_session(rig, new_state("sc", DrainStrategy.ALL), Recorder())
    connection = FakeConnection()
    attachment = await ref.ask(Attach(connection))
    await attachment.submit(frame(0, {"tag": 0, "hold": True}))
    await eventually(lambda: handle.room.used == 1)
    await ref.ask(Close(1001, "server going away", finish=0.2))
    await eventually(lambda: bool(connection.closes))
    assert connection.log == ["event:session.closed", "close:1001"]
    assert connection.closes == [(1001, "server going away")]
    await eventually(lambda: handle.room.used == 0)  # the abandoned frame's place is back
    rig.script.release()
