"""The pipeline service: init, get, reload (blue/green), shutdown, restore, readiness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors.pipelines.admission import room_for
from actors.pipelines.handle import PipelineAnswer, PipelineHandle
from actors.plugins import FrameIn, PipelineConfig
from engine.engine import Health
from engine.errors import Conflict, Invalid, NotFound, Unavailable
from engine.ref import ActorState
from engine.storage import Store
from engine.supervisor import Supervisor
from tests.actors.pipelines.kit import SCRIPTED, Rig, open_copied_store, open_rig
from tests.support import eventually


def job(handle: PipelineHandle, tag: int = 0, **params: Any) -> FrameIn[Any]:
    """A frame for ``handle``'s plug-in, its params validated as a session does (the
    ``tag`` only for a plug-in that takes one)."""
    if "tag" in handle.plugin.params_model.model_fields:
        params["tag"] = tag
    parsed = handle.plugin.parse_params(params)
    return FrameIn(f"frame {tag}".encode(), "image/png", None, None, parsed)


async def answer(handle: PipelineHandle, tag: int = 0) -> PipelineAnswer:
    return await handle.submit(job(handle, tag), 5.0)


def sim(name: str = "sim", **options: Any) -> PipelineConfig:
    return PipelineConfig(name=name, kind="simulated", options={"cost_ms": 0, **options})


def scripted(name: str = "sc", replicas: int = 1) -> PipelineConfig:
    return PipelineConfig(name=name, kind=SCRIPTED, replicas=replicas)


def child_ids(rig: Rig, name: str) -> list[str]:
    group = rig.pipelines_group.child(name)
    assert isinstance(group, Supervisor)
    return [child_id for child_id, _ in group.children()]


@pytest.fixture
async def store(store_template: Path, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_copied_store(store_template, tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


# --- init and get --------------------------------------------------------------------


async def test_init_starts_every_replica_and_returns_a_ready_handle(rig: Rig) -> None:
    handle = await rig.pipelines.init(scripted(replicas=3))
    assert handle.ready
    assert rig.script.loads == 3  # every replica loaded before init returned
    assert rig.pipelines.get("sc") is handle
    assert rig.pipelines.names() == ["sc"]
    assert [ref.path for ref in handle.replicas] == [
        "/pipelines/sc/g1-r0",
        "/pipelines/sc/g1-r1",
        "/pipelines/sc/g1-r2",
    ]
    assert all(ref.state is ActorState.RUNNING for ref in handle.replicas)
    assert handle.generation == 1
    assert handle.room.capacity == room_for(handle.config, handle.plugin) == 6
    result = await answer(handle, 4)
    assert bytes(result.out.payload) == b"frame 4"
    assert result.queue_ms >= 0
    assert result.pipeline_ms >= 0


async def test_names_are_sorted(rig: Rig) -> None:
    for name in ("b", "c", "a"):
        await rig.pipelines.init(PipelineConfig(name=name, kind="passthrough"))
    assert rig.pipelines.names() == ["a", "b", "c"]


async def test_get_of_an_unknown_pipeline_is_not_found(rig: Rig) -> None:
    with pytest.raises(NotFound):
        rig.pipelines.get("ghost")


async def test_a_taken_name_is_a_conflict(rig: Rig) -> None:
    handle = await rig.pipelines.init(sim())
    with pytest.raises(Conflict):
        await rig.pipelines.init(PipelineConfig(name="sim", kind="passthrough"))
    assert rig.pipelines.get("sim") is handle
    assert handle.config.kind == "simulated"
    assert handle.ready


async def test_of_two_inits_at_once_under_one_name_one_wins(rig: Rig) -> None:
    outcomes = await asyncio.gather(
        rig.pipelines.init(sim()),
        rig.pipelines.init(PipelineConfig(name="sim", kind="passthrough")),
        return_exceptions=True,
    )
    [winner] = [o for o in outcomes if isinstance(o, PipelineHandle)]
    assert [type(o) for o in outcomes if not isinstance(o, PipelineHandle)] == [Conflict]
    assert rig.pipelines.get("sim") is winner
    assert child_ids(rig, "sim") == ["g1-r0"]


async def test_an_unknown_kind_is_invalid(rig: Rig) -> None:
    with pytest.raises(Invalid, match=r"unknown pipeline kind 'nope'; known: .*simulated"):
        await rig.pipelines.init(PipelineConfig(name="x", kind="nope"))
    assert rig.pipelines.names() == []
    with pytest.raises(NotFound):
        rig.pipelines_group.child("x")


async def test_bad_options_are_invalid(rig: Rig) -> None:
    with pytest.raises(Invalid, match="cost_ms"):
        await rig.pipelines.init(sim(cost_ms=-1))
    assert rig.pipelines.names() == []
    with pytest.raises(NotFound):
        rig.pipelines_group.child("sim")


async def test_a_pipeline_that_fails_to_load_is_unavailable_and_leaves_nothing(
    rig: Rig,
) -> None:
    with pytest.raises(Unavailable, match="failed to load"):
        await rig.pipelines.init(sim(crash_on_load=True))
    assert rig.pipelines.names() == []
    with pytest.raises(NotFound):
        rig.pipelines_group.child("sim")
    handle = await rig.pipelines.init(sim())  # the name is free again
    assert handle.ready


# --- reload --------------------------------------------------------------------------


async def test_reload_switches_to_new_replicas_and_keeps_the_handle(rig: Rig) -> None:
    handle = await rig.pipelines.init(scripted())
    old = handle.replicas
    reloaded = await rig.pipelines.reload("sc", scripted(replicas=2))
    assert reloaded is handle
    assert rig.pipelines.get("sc") is handle
    assert handle.generation == 2
    assert handle.config.replicas == 2
    assert [ref.path for ref in handle.replicas] == ["/pipelines/sc/g2-r0", "/pipelines/sc/g2-r1"]
    assert handle.room.capacity == 4  # follows the replicas
    assert not any(ref.alive for ref in old)
    assert child_ids(rig, "sc") == ["g2-r0", "g2-r1"]
    assert handle.ready
    assert bytes((await answer(handle, 1)).out.payload) == b"frame 1"


async def test_reload_without_a_config_restarts_the_same_one(rig: Rig) -> None:
    handle = await rig.pipelines.init(sim())
    await rig.pipelines.reload("sim")
    assert handle.generation == 2
    assert handle.config == sim()
    assert child_ids(rig, "sim") == ["g2-r0"]


async def test_frames_in_flight_on_the_old_replicas_finish_there(rig: Rig) -> None:
    handle = await rig.pipelines.init(scripted())
    old = handle.replicas
    rig.script.hold()
    pending = [handle.submit(job(handle, tag, hold=True), 5.0) for tag in range(3)]
    await eventually(lambda: rig.script.entered == [0])
    reload = asyncio.ensure_future(rig.pipelines.reload("sc"))
    await eventually(lambda: handle.generation == 2)  # switched, now draining the old
    assert not reload.done()
    assert all(ref.alive for ref in old)
    fresh = handle.submit(job(handle, 10), 5.0)  # new frames go to the new replica
    assert bytes((await fresh).out.payload) == b"frame 10"
    rig.script.release()
    answers = await asyncio.gather(*pending)
    assert [bytes(a.out.payload) for a in answers] == [b"frame 0", b"frame 1", b"frame 2"]
    await asyncio.wait_for(reload, 5.0)
    assert not any(ref.alive for ref in old)


async def test_a_reload_that_fails_to_load_keeps_the_old_replicas(rig: Rig) -> None:
    handle = await rig.pipelines.init(sim())
    old = handle.replicas
    with pytest.raises(Unavailable):
        await rig.pipelines.reload("sim", sim(crash_on_load=True))
    assert handle.replicas == old
    assert handle.generation == 1
    assert handle.config == sim()
    assert handle.ready
    assert child_ids(rig, "sim") == ["g1-r0"]
    assert bytes((await answer(handle)).out.payload) == b"frame 0"


async def test_a_reload_cannot_rename_or_change_to_a_bad_kind(rig: Rig) -> None:
    await rig.pipelines.init(sim())
    with pytest.raises(Invalid, match="rename"):
        await rig.pipelines.reload("sim", sim(name="other"))
    with pytest.raises(Invalid):
        await rig.pipelines.reload("sim", PipelineConfig(name="sim", kind="nope"))
    with pytest.raises(NotFound):
        await rig.pipelines.reload("ghost")
    assert rig.pipelines.get("sim").generation == 1


# --- shutdown ------------------------------------------------------------------------


async def test_shutdown_stops_the_pipeline_for_good(rig: Rig) -> None:
    handle = await rig.pipelines.init(sim())
    replicas = handle.replicas
    await rig.pipelines.shutdown("sim")
    assert handle.closed
    assert not handle.ready
    assert rig.pipelines.names() == []
    with pytest.raises(NotFound):
        rig.pipelines.get("sim")
    with pytest.raises(NotFound):
        rig.pipelines_group.child("sim")
    assert not any(ref.alive for ref in replicas)
    with pytest.raises(Unavailable):
        handle.submit(job(handle), 1.0)  # a session still holding the handle
    with pytest.raises(NotFound):
        await rig.pipelines.shutdown("sim")
    assert (await rig.pipelines.init(sim())) is not handle  # the name is free again


# --- readiness -----------------------------------------------------------------------


async def test_health_reports_a_restarting_pipeline_alone(rig: Rig) -> None:
    assert rig.pipelines.health() == {}
    handle = await rig.pipelines.init(scripted())
    await rig.pipelines.init(sim())
    all_ok = {"sc": Health(True, "ok"), "sim": Health(True, "ok")}
    assert rig.pipelines.health() == all_ok
    rig.script.hold_loads()  # the restarted replica will wait in its load
    crashed = handle.submit(job(handle, crash=True), 5.0)
    with pytest.raises(Exception, match="crashed"):
        await crashed
    await eventually(lambda: not handle.ready)
    assert rig.pipelines.health() == {"sc": Health(False, "restarting"), "sim": Health(True, "ok")}
    await eventually(lambda: rig.script.loads == 2)
    rig.script.release_loads()
    await eventually(lambda: handle.ready)
    assert rig.pipelines.health() == all_ok


async def test_replica_notices_of_an_old_generation_are_ignored(rig: Rig) -> None:
    handle = await rig.pipelines.init(sim())
    events: list[str] = []
    unsubscribe = handle.subscribe(events.append)
    old_path = handle.replicas[0].path
    await rig.pipelines.reload("sim")
    handle.notify(old_path, ready=False)  # the old generation, stopping: not our concern
    await asyncio.sleep(0.01)
    assert handle.ready
    current = handle.replicas[0].path
    handle.notify(current, ready=False)
    await eventually(lambda: not handle.ready)
    handle.notify(current, ready=True)
    await eventually(lambda: handle.ready)
    assert events == ["pipeline.restarting", "pipeline.ready"]
    unsubscribe()
    handle.notify(current, ready=False)
    await eventually(lambda: not handle.ready)
    assert events == ["pipeline.restarting", "pipeline.ready"]


# --- the store -----------------------------------------------------------------------


async def test_persisted_pipelines_are_restored_by_the_next_engine(store: Store) -> None:
    kept = sim("kept", per_item_ms=1.0)
    async with open_rig(store.pipeline_configs) as rig:
        await rig.pipelines.init(kept, persist=True)
        await rig.pipelines.init(sim("boot"))  # not persisted
        stored = await store.pipeline_configs.list()
        assert [(c.name, c.kind, c.options) for c in stored.items] == [
            ("kept", "simulated", kept.options)
        ]
    async with open_rig(store.pipeline_configs) as rig:
        assert rig.pipelines.names() == []
        await rig.pipelines.restore()
        assert rig.pipelines.names() == ["kept"]
        handle = rig.pipelines.get("kept")
        assert handle.config == kept
        assert handle.ready


async def test_restore_skips_what_cannot_start_and_a_later_init_replaces_it(
    store: Store,
) -> None:
    broken = PipelineConfig(name="broken", kind="simulated", options={"crash_on_load": True})
    await store.pipeline_configs.create(broken)
    await store.pipeline_configs.create(PipelineConfig(name="fine", kind="passthrough"))
    await store.pipeline_configs.create(PipelineConfig(name="gone", kind="no-such-kind"))
    async with open_rig(store.pipeline_configs) as rig:
        await rig.pipelines.restore()
        assert rig.pipelines.names() == ["fine"]
        await rig.pipelines.init(sim("broken"), persist=True)  # replaces, not a conflict
        assert rig.pipelines.names() == ["broken", "fine"]
    stored = {c.name: c for c in (await store.pipeline_configs.list()).items}
    assert set(stored) == {"broken", "fine", "gone"}
    assert stored["broken"].options == {"cost_ms": 0}


async def test_a_reload_of_a_stored_pipeline_is_stored_and_shutdown_deletes_it(
    store: Store,
) -> None:
    async with open_rig(store.pipeline_configs) as rig:
        await rig.pipelines.init(sim(), persist=True)
        await rig.pipelines.reload("sim", sim(cost_ms=1.0).model_copy(update={"replicas": 2}))
        [stored] = (await store.pipeline_configs.list()).items
        assert (stored.replicas, stored.options) == (2, {"cost_ms": 1.0})
        await rig.pipelines.shutdown("sim")
        assert (await store.pipeline_configs.list()).total == 0


async def test_restore_without_a_store_does_nothing(rig: Rig) -> None:
    await rig.pipelines.restore()
    assert rig.pipelines.names() == []


async def test_a_stored_pipeline_keeps_its_hosting(store: Store) -> None:
    threaded = PipelineConfig(name="threaded", kind="passthrough", hosting="thread")
    async with open_rig(store.pipeline_configs) as rig:
        await rig.pipelines.init(threaded, persist=True)
        await rig.pipelines.reload("threaded", threaded.model_copy(update={"replicas": 2}))
    (stored,) = (await store.pipeline_configs.list()).items
    assert (stored.hosting, stored.replicas) == ("thread", 2)
    async with open_rig(store.pipeline_configs) as rig:
        await rig.pipelines.restore()
        assert rig.pipelines.get("threaded").config.hosting == "thread"
