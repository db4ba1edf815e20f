"""Supervision: strategies, restart types, intensity, escalation, backoff, stop order."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from engine.engine import Engine
from engine.errors import ActorCrashed, ActorStopped, Conflict, NotFound, Unavailable
from engine.ref import ActorState
from engine.settings import Settings
from engine.supervisor import (
    ActorSpec,
    Backoff,
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorSpec,
)
from tests.engine.actors import CRASH, STOP, Journal, loop_actor, stuck_on_stop, thread_actor
from tests.support import eventually

FAST = Backoff(initial=0.001, maximum=0.002, jitter=0.1)

EngineFactory = Callable[..., Any]


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[..., Any]]:
    engines: list[Engine] = []

    async def make(*children: ChildSpec) -> Engine:
        engine = Engine(Settings(), children)
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


def group(strategy: Strategy, *children: ChildSpec, **kw: Any) -> SupervisorSpec:
    kw.setdefault("backoff", FAST)
    kw.setdefault("max_restarts", 10)
    return SupervisorSpec(id="g", strategy=strategy, children=children, **kw)


def three(journal: Journal, **kw: Any) -> tuple[ActorSpec, ...]:
    return tuple(ActorSpec(name, loop_actor(name, journal), **kw) for name in ("a", "b", "c"))


async def crash(engine: Engine, path: str) -> None:
    with pytest.raises(ActorCrashed):
        await engine.system.lookup(path).ask(CRASH)


@pytest.mark.parametrize(
    ("strategy", "crashed", "restarted"),
    [
        (Strategy.ONE_FOR_ONE, "b", ["b"]),
        (Strategy.ONE_FOR_ALL, "b", ["a", "b", "c"]),
        (Strategy.REST_FOR_ONE, "b", ["b", "c"]),
        (Strategy.REST_FOR_ONE, "a", ["a", "b", "c"]),
    ],
)
async def test_strategy_restarts_the_right_children(
    make_engine: EngineFactory, strategy: Strategy, crashed: str, restarted: list[str]
) -> None:
    journal = Journal()
    engine = await make_engine(group(strategy, *three(journal)))
    await crash(engine, f"/g/{crashed}")
    await eventually(lambda: all(len(journal.of("start", n)) == 2 for n in restarted))
    assert journal.order("start")[3:] == restarted  # restarted in start order
    untouched = {"a", "b", "c"} - set(restarted)
    assert all(len(journal.of("start", n)) == 1 for n in untouched)
    others_stopped = [n for n in journal.order("stop")]
    assert others_stopped == [n for n in reversed(restarted) if n != crashed]
    for name in ("a", "b", "c"):
        assert await engine.system.lookup(f"/g/{name}").ask(("echo", name)) == ("echo", name)


@pytest.mark.parametrize("make_actor", [loop_actor, thread_actor])
@pytest.mark.parametrize(
    ("restart", "on_crash", "on_normal_exit"),
    [
        (Restart.PERMANENT, True, True),
        (Restart.TRANSIENT, True, False),
        (Restart.TEMPORARY, False, False),
    ],
)
async def test_restart_types(
    make_engine: EngineFactory,
    make_actor: Callable[[str, Journal], Any],
    restart: Restart,
    on_crash: bool,
    on_normal_exit: bool,
) -> None:
    for message, expect_restart in ((CRASH, on_crash), (STOP, on_normal_exit)):
        journal = Journal()
        spec = ActorSpec("x", make_actor("x", journal), restart=restart)
        engine = await make_engine(group(Strategy.ONE_FOR_ONE, spec))
        ref = engine.system.lookup("/g/x")
        if message == CRASH:
            await crash(engine, "/g/x")
        else:
            await ref.ask(STOP)
        if expect_restart:
            await eventually(lambda j=journal: len(j.of("start", "x")) == 2)  # type: ignore[misc]
            assert await ref.ask("hi") == "hi"  # the same reference reaches the new one
        else:
            await eventually(lambda r=ref: r.state is ActorState.STOPPED)  # type: ignore[misc]
            with pytest.raises(ActorStopped):
                ref.tell("hi")
            with pytest.raises(NotFound):
                engine.system.lookup("/g/x")


async def test_messages_sent_during_restart_reach_the_new_incarnation_once_in_order(
    make_engine: EngineFactory,
) -> None:
    journal = Journal()
    slow = Backoff(initial=0.2, maximum=0.2, jitter=0.0)
    engine = await make_engine(group(Strategy.ONE_FOR_ONE, *three(journal), backoff=slow))
    ref = engine.system.lookup("/g/b")
    await crash(engine, "/g/b")
    assert ref.state is ActorState.RESTARTING
    for i in range(20):
        ref.tell(i)
    replies = [await ref.ask(("last", 1))]
    assert replies == [("last", 1)]
    handled = journal.of("msg", "b")
    assert handled == [CRASH, *range(20), ("last", 1)]
    assert journal.of("start", "b") == [1, 2]  # the new incarnation handled them


async def test_intensity_exceeded_escalates_to_the_parent(make_engine: EngineFactory) -> None:
    journal = Journal()
    inner = SupervisorSpec(
        id="inner",
        children=(ActorSpec("w", loop_actor("w", journal)),),
        max_restarts=2,
        period=10,
        backoff=FAST,
    )
    engine = await make_engine(group(Strategy.ONE_FOR_ONE, inner, max_restarts=5))
    outer = engine.root.child("g")
    assert isinstance(outer, Supervisor)
    inner_sup = outer.child("inner")
    assert isinstance(inner_sup, Supervisor)
    ref = engine.system.lookup("/g/inner/w")
    for _ in range(3):
        await eventually(lambda: ref.state is ActorState.RUNNING)
        await crash(engine, "/g/inner/w")
    # the third crash exceeds 2 restarts in 10 s: inner gives up, outer restarts inner
    await eventually(lambda: inner_sup.incarnation == 2 and ref.state is ActorState.RUNNING)
    assert isinstance(inner_sup.failure, type(None))  # cleared by the restart
    assert await ref.ask("alive") == "alive"
    assert engine.health().alive


async def test_root_failure_marks_the_engine_unhealthy(
    make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    spec = group(Strategy.ONE_FOR_ONE, ActorSpec("w", loop_actor("w", journal)), max_restarts=0)
    engine = await make_engine(spec)
    engine.root.spec = SupervisorSpec(id="root", max_restarts=0, children=(spec,))
    await crash(engine, "/g/w")
    await eventually(lambda: not engine.health().alive)
    assert isinstance(engine.root_failure, RestartIntensityExceeded)
    assert "root supervisor failed" in engine.health().detail
    assert any(r.levelname == "CRITICAL" for r in caplog.records)


def test_backoff_stays_within_its_jitter_bounds() -> None:
    backoff = Backoff(initial=0.05, maximum=5.0, factor=2.0, jitter=0.2)
    rng = random.Random(7)
    for attempt in range(12):
        base = min(5.0, 0.05 * 2**attempt)
        low, high = backoff.bounds(attempt)
        assert (low, high) == pytest.approx((base * 0.8, base * 1.2))
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(low <= d <= high for d in delays)
        assert max(delays) - min(delays) > 0  # jitter is real, not a constant
    assert backoff.bounds(30)[1] == pytest.approx(6.0)  # capped at maximum (+ jitter)


async def test_restart_waits_for_the_backoff(make_engine: EngineFactory) -> None:
    journal = Journal()
    slow = Backoff(initial=0.3, maximum=0.3, jitter=0.0)
    engine = await make_engine(group(Strategy.ONE_FOR_ONE, *three(journal), backoff=slow))
    await crash(engine, "/g/a")
    assert journal.of("start", "a") == [1]  # not yet restarted
    await eventually(lambda: journal.of("start", "a") == [1, 2])


async def test_shutdown_stops_children_in_reverse_start_order(make_engine: EngineFactory) -> None:
    journal = Journal()
    children = (
        ActorSpec("a", loop_actor("a", journal)),
        ActorSpec("b", thread_actor("b", journal)),
        group(Strategy.ONE_FOR_ONE, ActorSpec("c", loop_actor("c", journal))),
        ActorSpec("d", thread_actor("d", journal)),
    )
    engine = Engine(Settings(), children)
    await engine.start()
    assert journal.order("start") == ["a", "b", "c", "d"]
    await engine.stop()
    assert journal.order("stop") == ["d", "c", "b", "a"]


async def test_slow_child_is_cut_off_at_its_shutdown_timeout(make_engine: EngineFactory) -> None:
    journal = Journal()
    spec = ActorSpec("slow", loop_actor("slow", journal), shutdown_timeout=0.05)
    engine = await make_engine(group(Strategy.ONE_FOR_ONE, spec))
    ref = engine.system.lookup("/g/slow")
    ref.tell(("sleep", 30))
    await eventually(lambda: journal.of("msg", "slow") == [("sleep", 30)])
    group_sup = engine.root.child("g")
    assert isinstance(group_sup, Supervisor)
    await group_sup.terminate_child("slow")
    assert ref.state is ActorState.STOPPED


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set after the test: lets the threads of stuck thread actors end."""
    event = threading.Event()
    yield event
    event.set()


def kills(engine: Engine, kind: str) -> float:
    return engine.registry.get_sample_value("easel_actor_kills_total", {"kind": kind}) or 0.0


HANG_GUARD = 60.0
"""Seconds a stop bounded at a fraction of a second may take before the test gives up
on it; a child's own timeout in these tests is an hour."""


@pytest.mark.parametrize("runtime", ["loop", "thread"])
async def test_a_supervisors_shutdown_timeout_bounds_its_whole_subtree(
    runtime: str, release: threading.Event
) -> None:
    journal = Journal()
    inner = SupervisorSpec(
        id="inner",
        shutdown_timeout=0.2,
        children=(
            ActorSpec(
                "stuck", stuck_on_stop(runtime, "stuck", journal, release), shutdown_timeout=3600
            ),
            ActorSpec("fine", loop_actor("fine", journal)),
        ),
    )
    before = ActorSpec("before", loop_actor("before", journal))
    engine = Engine(Settings(), (before, inner))
    await engine.start()
    stuck = engine.system.lookup("/inner/stuck")
    await asyncio.wait_for(engine.stop(), HANG_GUARD)
    # "fine" stopped first, "stuck" was cut off at inner's timeout, and the root went
    # on to stop "before"
    assert journal.order("stop") == ["fine", "before"]
    assert journal.order("stopping") == ["stuck"]
    assert stuck.state is ActorState.STOPPED
    assert kills(engine, "stuck") == 1
    assert kills(engine, "recorder") == 0


@pytest.mark.parametrize("runtime", ["loop", "thread"])
async def test_a_restart_stops_a_nested_supervisor_within_its_shutdown_timeout(
    make_engine: EngineFactory, runtime: str, release: threading.Event
) -> None:
    journal = Journal()
    inner = SupervisorSpec(
        id="inner",
        shutdown_timeout=0.2,
        children=(
            ActorSpec(
                "stuck", stuck_on_stop(runtime, "stuck", journal, release), shutdown_timeout=3600
            ),
        ),
    )
    crasher = ActorSpec("crasher", loop_actor("crasher", journal))
    engine = await make_engine(group(Strategy.ONE_FOR_ALL, inner, crasher))
    await crash(engine, "/g/crasher")
    # one_for_all: "g" stops "inner" (cutting "stuck" off) and restarts both
    await eventually(lambda: journal.of("start", "crasher") == [1, 2], HANG_GUARD)
    assert journal.of("start", "stuck") == [1, 2]
    assert kills(engine, "stuck") == 1
    assert await engine.system.lookup("/g/inner/stuck").ask("up") == "up"


async def test_dynamic_children(make_engine: EngineFactory) -> None:
    journal = Journal()
    engine = await make_engine(group(Strategy.ONE_FOR_ONE))
    sessions = engine.root.child("g")
    assert isinstance(sessions, Supervisor)
    spec = ActorSpec("s1", loop_actor("s1", journal), restart=Restart.TRANSIENT)
    ref = await sessions.start_child(spec)
    assert not isinstance(ref, Supervisor)
    assert await ref.ask("x") == "x"
    assert engine.system.lookup("/g/s1") is not None
    with pytest.raises(Conflict):
        await sessions.start_child(spec)
    ref.tell(("sleep", 0.2))
    await eventually(lambda: ("sleep", 0.2) in journal.of("msg", "s1"))
    ref.tell("never handled")
    await sessions.terminate_child("s1")
    assert ref.state is ActorState.STOPPED
    assert [letter.message for letter in engine.system.dead_letters] == ["never handled"]
    with pytest.raises(ActorStopped):
        await ref.ask("late")
    with pytest.raises(NotFound):
        await sessions.terminate_child("s1")


async def test_failed_start_of_a_dynamic_child_is_reported_and_forgotten(
    make_engine: EngineFactory,
) -> None:
    journal = Journal()
    engine = await make_engine(group(Strategy.ONE_FOR_ONE))
    sessions = engine.root.child("g")
    assert isinstance(sessions, Supervisor)
    with pytest.raises(RuntimeError, match="refuses to start"):
        await sessions.start_child(
            ActorSpec("s", loop_actor("s", journal, fail_starts=frozenset({1})))
        )
    assert sessions.children() == []
    with pytest.raises(NotFound):
        engine.system.lookup("/g/s")


async def test_restart_that_fails_to_start_counts_towards_intensity(
    make_engine: EngineFactory,
) -> None:
    journal = Journal()
    spec = ActorSpec("w", loop_actor("w", journal, fail_starts=frozenset({2, 3})))
    engine = await make_engine(group(Strategy.ONE_FOR_ONE, spec, max_restarts=2))
    group_sup = engine.root.child("g")
    assert isinstance(group_sup, Supervisor)
    await crash(engine, "/g/w")
    # restart 1 fails to start, restart 2 fails to start, the third exceeds the intensity:
    # "g" gives up and the root restarts it, which starts w for the fourth time.
    await eventually(lambda: group_sup.incarnation == 2)
    await eventually(lambda: journal.of("start", "w") == [1, 4])
    assert await engine.system.lookup("/g/w").ask("up") == "up"


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
async def test_two_crashes_in_one_tick_restart_each_child_once(
    make_engine: EngineFactory, strategy: Strategy
) -> None:
    journal = Journal()
    engine = await make_engine(group(strategy, *three(journal)))
    group_sup = engine.root.child("g")
    assert isinstance(group_sup, Supervisor)
    engine.system.lookup("/g/a").tell(CRASH)
    engine.system.lookup("/g/b").tell(CRASH)
    await eventually(lambda: all(len(journal.of("start", n)) >= 2 for n in "abc"))
    await asyncio.sleep(0.2)  # room for a second, spurious restart
    assert {n: journal.of("start", n) for n in "abc"} == {n: [1, 2] for n in "abc"}
    assert journal.order("start")[3:] == ["a", "b", "c"]
    assert group_sup.running
    assert group_sup.incarnation == 1  # it did not give up and get restarted
    for name in "abc":
        assert await engine.system.lookup(f"/g/{name}").ask(name) == name


async def test_a_supervisor_that_gave_up_refuses_new_children(make_engine: EngineFactory) -> None:
    journal = Journal()
    inner = SupervisorSpec(
        id="inner", children=(ActorSpec("w", loop_actor("w", journal)),), max_restarts=0
    )
    slow = Backoff(initial=0.3, maximum=0.3, jitter=0.0)
    engine = await make_engine(group(Strategy.ONE_FOR_ONE, inner, backoff=slow))
    outer = engine.root.child("g")
    assert isinstance(outer, Supervisor)
    inner_sup = outer.child("inner")
    assert isinstance(inner_sup, Supervisor)
    await crash(engine, "/g/inner/w")
    await eventually(lambda: not inner_sup.running)  # gave up; "g" restarts it later
    with pytest.raises(Unavailable):
        await inner_sup.start_child(ActorSpec("late", loop_actor("late", journal)))
    await eventually(lambda: inner_sup.incarnation == 2 and inner_sup.running)
    assert [child_id for child_id, _ in inner_sup.children()] == ["w"]
    assert await engine.system.lookup("/g/inner/w").ask("up") == "up"
    assert engine.health().alive


async def test_starting_a_running_supervisor_leaves_running_children_alone(
    make_engine: EngineFactory,
) -> None:
    journal = Journal()
    engine = await make_engine(group(Strategy.ONE_FOR_ONE, *three(journal)))
    group_sup = engine.root.child("g")
    assert isinstance(group_sup, Supervisor)
    await group_sup.start()
    assert journal.order("start") == ["a", "b", "c"]
    assert group_sup.running


@pytest.mark.parametrize("cause", ["inner gives up", "a sibling crashes"])
async def test_temporary_children_do_not_come_back_with_a_restarted_parent(
    make_engine: EngineFactory, cause: str
) -> None:
    journal = Journal()
    inner = SupervisorSpec(
        id="inner",
        children=(
            ActorSpec("w", loop_actor("w", journal)),
            ActorSpec("t", loop_actor("t", journal), restart=Restart.TEMPORARY),
        ),
        max_restarts=0,
    )
    sibling = ActorSpec("s", loop_actor("s", journal))
    engine = await make_engine(group(Strategy.ONE_FOR_ALL, inner, sibling))
    outer = engine.root.child("g")
    assert isinstance(outer, Supervisor)
    inner_sup = outer.child("inner")
    assert isinstance(inner_sup, Supervisor)
    temporary = engine.system.lookup("/g/inner/t")
    # either way "g" stops "inner" and starts it again
    await crash(engine, "/g/inner/w" if cause == "inner gives up" else "/g/s")
    await eventually(lambda: inner_sup.incarnation == 2 and inner_sup.running)
    assert journal.of("start", "w") == [1, 2]
    assert journal.of("start", "t") == [1]
    assert temporary.state is ActorState.STOPPED
    assert [child_id for child_id, _ in inner_sup.children()] == ["w"]
