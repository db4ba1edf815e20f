"""The session service on a real engine, with a real SQLite store behind it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from actors.plugins import PipelineConfig
from actors.sessions.messages import Attach, Attachment, Detach
from actors.sessions.service import SessionService
from engine.errors import (
    BadParams,
    Invalid,
    NotFound,
    Overloaded,
    Unauthorized,
    Unavailable,
)
from engine.settings import Settings
from engine.storage import SessionStatus, Store, open_store
from engine.supervisor import Supervisor, SupervisorSpec
from engine.types import DrainStrategy
from tests.actors.pipelines.kit import Rig, open_copied_store, open_rig
from tests.actors.sessions.kit import FakeConnection, frame
from tests.support import eventually


@dataclass
class World:
    rig: Rig
    store: Store
    sessions: SessionService

    def gauge(self) -> tuple[float, float]:
        """The ``easel_sessions`` gauge: (attached, detached)."""
        return (
            self.rig.sample("easel_sessions", state="attached"),
            self.rig.sample("easel_sessions", state="detached"),
        )


@asynccontextmanager
async def open_world(
    template: Path, data_dir: Path, *, stored: bool = True, **overrides: Any
) -> AsyncIterator[World]:
    """Engine, pipelines (``pt``: passthrough, ``fx``: imagefx), store and session service,
    wired as the domain wires them; stopped, flushed and closed in that order."""
    store = await open_copied_store(template, data_dir)
    try:
        async with open_rig(**overrides) as rig:
            await rig.pipelines.init(PipelineConfig(name="pt", kind="passthrough"))
            await rig.pipelines.init(PipelineConfig(name="fx", kind="imagefx"))
            sessions = SessionService(
                rig.sessions_group,
                rig.pipelines,
                rig.settings,
                rig.metrics,
                store.sessions if stored else None,
            )
            yield World(rig, store, sessions)
        await sessions.flush()  # the engine stopped: sessions ended, their writes pending
    finally:
        await store.close()


Worlds = Callable[..., AbstractAsyncContextManager[World]]


@pytest.fixture
def worlds(store_template: Path, tmp_path: Path) -> Worlds:
    """``open_world`` in this test's data directory, with settings of the test's choice."""
    return functools.partial(open_world, store_template, tmp_path)


@pytest.fixture
async def world(store_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with open_world(store_template, tmp_path) as started:
        yield started


# --- create --------------------------------------------------------------------------


async def test_create_starts_a_session_and_stores_it(world: World) -> None:
    state = await world.sessions.create("fx", DrainStrategy.ALL, {"effect": "invert"})
    assert (state.pipeline, state.drain) == ("fx", DrainStrategy.ALL)
    assert state.params == {"effect": "invert"}
    assert state.token
    assert len(world.sessions) == 1
    assert world.sessions.get(state.id) is state
    assert world.sessions.ref(state.id).alive
    record = await world.store.sessions.get(state.id)
    assert record.status is SessionStatus.OPEN
    assert (record.pipeline, record.drain, record.params) == ("fx", "all", {"effect": "invert"})


async def test_create_defaults_to_latest_and_no_params(world: World) -> None:
    state = await world.sessions.create("pt")
    assert (state.drain, state.params) == (DrainStrategy.LATEST, {})


async def test_create_copies_the_params_it_is_given(world: World) -> None:
    params = {"effect": "blur"}
    state = await world.sessions.create("fx", params=params)
    params["effect"] = "invert"
    assert state.params == {"effect": "blur"}


async def test_create_with_an_unknown_pipeline_is_invalid(world: World) -> None:
    with pytest.raises(Invalid, match="no pipeline named 'ghost'") as raised:
        await world.sessions.create("ghost")
    assert not isinstance(raised.value, BadParams)
    assert len(world.sessions) == 0
    assert (await world.store.sessions.list()).total == 0


async def test_create_with_bad_params_is_refused_before_anything_starts(world: World) -> None:
    with pytest.raises(BadParams):
        await world.sessions.create("fx", params={"effect": "melt"})
    assert len(world.sessions) == 0
    assert world.rig.sessions_group.children() == []
    assert (await world.store.sessions.list()).total == 0


async def test_create_at_the_session_limit_is_overloaded(worlds: Worlds) -> None:
    async with worlds(max_sessions=2) as world:
        first = await world.sessions.create("pt")
        await world.sessions.create("pt")
        with pytest.raises(Overloaded) as raised:
            await world.sessions.create("pt")
        assert raised.value.retry_after == 15.0  # a quarter of the idle timeout
        assert len(world.sessions) == 2
        await world.sessions.delete(first.id)
        await world.sessions.create("pt")  # a place again
        assert len(world.sessions) == 2


async def test_retry_after_is_at_least_a_second(worlds: Worlds) -> None:
    async with worlds(max_sessions=1, session_idle_timeout=2.0) as world:
        await world.sessions.create("pt")
        with pytest.raises(Overloaded) as raised:
            await world.sessions.create("pt")
        assert raised.value.retry_after == 1.0


async def test_sessions_being_created_count_towards_the_limit(worlds: Worlds) -> None:
    async with worlds(max_sessions=1) as world:
        outcomes = await asyncio.gather(
            world.sessions.create("pt"), world.sessions.create("pt"), return_exceptions=True
        )
        assert sum(isinstance(outcome, Overloaded) for outcome in outcomes) == 1
        assert len(world.sessions) == 1
        assert (await world.store.sessions.list()).total == 1


async def test_a_session_that_cannot_start_is_not_kept(world: World) -> None:
    stopped = Supervisor(world.rig.engine.system, SupervisorSpec(id="nowhere"), "/nowhere")
    sessions = SessionService(
        stopped, world.rig.pipelines, world.rig.settings, world.rig.metrics, world.store.sessions
    )
    with pytest.raises(Unavailable):
        await sessions.create("pt")
    assert len(sessions) == 0
    assert (await world.store.sessions.list()).total == 0


async def test_without_a_store_sessions_still_work(worlds: Worlds) -> None:
    async with worlds(stored=False) as world:
        state = await world.sessions.create("pt")
        assert len(state.id) == 16
        await world.sessions.update_params(state.id, {})
        await world.sessions.delete(state.id)
        await world.sessions.flush()
        assert len(world.sessions) == 0
        assert (await world.store.sessions.list()).total == 0


# --- find and authenticate -----------------------------------------------------------


async def test_get_and_ref_of_an_unknown_session_are_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        world.sessions.get("nope")
    with pytest.raises(NotFound):
        world.sessions.ref("nope")


async def test_authenticate_checks_the_token(world: World) -> None:
    state = await world.sessions.create("pt")
    assert world.sessions.authenticate(state.id, state.token) is state
    with pytest.raises(Unauthorized):
        world.sessions.authenticate(state.id, state.token + "x")
    with pytest.raises(Unauthorized):
        world.sessions.authenticate(state.id, None)
    with pytest.raises(NotFound):
        world.sessions.authenticate("nope", state.token)


async def test_states_lists_sessions_oldest_first(world: World) -> None:
    created = [await world.sessions.create("pt") for _ in range(3)]
    assert world.sessions.states() == sorted(created, key=lambda s: (s.created_at, s.id))
    assert {s.id for s in world.sessions.states()} == {s.id for s in created}


# --- params --------------------------------------------------------------------------


async def test_update_params_merges_validates_and_stores(world: World) -> None:
    state = await world.sessions.create("fx", params={"effect": "invert"})
    merged = await world.sessions.update_params(state.id, {"strength": 0.5})
    assert merged == {"effect": "invert", "strength": 0.5}
    assert state.params == merged
    assert (await world.store.sessions.get(state.id)).params == merged
    with pytest.raises(BadParams):
        await world.sessions.update_params(state.id, {"strength": 2})
    assert state.params == merged
    assert (await world.store.sessions.get(state.id)).params == merged
    with pytest.raises(NotFound):
        await world.sessions.update_params("nope", {})


# --- endings -------------------------------------------------------------------------


async def attach(world: World, session_id: str) -> tuple[FakeConnection, Attachment]:
    connection = FakeConnection()
    attachment = await world.sessions.ref(session_id).ask(Attach(connection))
    assert isinstance(attachment, Attachment)
    return connection, attachment


async def test_delete_says_goodbye_forgets_and_stores_the_final_stats(world: World) -> None:
    state = await world.sessions.create("pt", DrainStrategy.ALL)
    connection, attachment = await attach(world, state.id)
    await attachment.submit(frame(0))
    await attachment.submit(frame(1, {"bogus": 1}))
    await eventually(lambda: connection.answered == 2)
    ref = world.sessions.ref(state.id)
    await world.sessions.delete(state.id)
    assert connection.events == [("session.closed", {"reason": "session deleted"})]
    assert connection.closes == [(1000, "session deleted")]
    assert len(world.sessions) == 0
    assert not ref.alive
    with pytest.raises(NotFound):
        world.sessions.get(state.id)
    with pytest.raises(NotFound):
        await world.sessions.delete(state.id)
    await world.sessions.flush()
    record = await world.store.sessions.get(state.id)
    assert record.status is SessionStatus.CLOSED
    assert record.ended_at is not None
    assert record.stats == state.stats.as_dict()
    assert (record.stats["frames_in"], record.stats["frames_out"]) == (2, 1)
    assert record.stats["errors"] == 1


async def test_an_idle_session_ends_by_itself_and_is_stored_closed(worlds: Worlds) -> None:
    async with worlds(session_idle_timeout=0.05) as world:
        state = await world.sessions.create("fx", params={"effect": "blur"})
        await world.sessions.update_params(state.id, {"radius": 3.0})
        await eventually(lambda: len(world.sessions) == 0)
        await world.sessions.flush()
        record = await world.store.sessions.get(state.id)
        assert record.status is SessionStatus.CLOSED
        assert record.params == {"effect": "blur", "radius": 3.0}
        assert record.stats == state.stats.as_dict()


async def test_forget_of_an_unknown_session_does_nothing(world: World) -> None:
    state = await world.sessions.create("pt")
    world.sessions.forget("nope")
    await world.sessions.flush()
    assert len(world.sessions) == 1
    assert (await world.store.sessions.get(state.id)).status is SessionStatus.OPEN


async def test_sessions_open_at_shutdown_are_stored_closed(worlds: Worlds, tmp_path: Path) -> None:
    async with worlds() as world:
        state = await world.sessions.create("pt")
    # open_world stopped the engine and flushed before closing the store: reopen it
    store = await open_store(Settings(data_dir=tmp_path), CollectorRegistry())
    try:
        record = await store.sessions.get(state.id)
    finally:
        await store.close()
    assert record.status is SessionStatus.CLOSED


# --- the gauge -----------------------------------------------------------------------


async def test_the_gauge_counts_attached_and_detached_sessions(world: World) -> None:
    assert world.gauge() == (0, 0)
    one = await world.sessions.create("pt")
    two = await world.sessions.create("pt")
    assert world.gauge() == (0, 2)
    connection, _ = await attach(world, one.id)
    assert world.gauge() == (1, 1)
    await world.sessions.ref(one.id).ask(Detach(connection))
    assert world.gauge() == (0, 2)
    await attach(world, two.id)
    await world.sessions.delete(two.id)  # ended while attached
    assert world.gauge() == (0, 1)
    await world.sessions.delete(one.id)
    assert world.gauge() == (0, 0)
