"""The handle sessions send frames to: the stable face of one named pipeline.

A ``PipelineHandle`` spreads frames over the live replicas, survives replica restarts
and blue/green reloads (``switch``), and tells subscribers when the pipeline restarts
and is ready again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from actors.metrics import RealtimeMetrics
from actors.pipelines.admission import Room, room_for
from actors.pipelines.stages import finish_frame, pool_size, prepare_frame, stage_pool
from actors.plugins import FrameIn, FrameOut, Pipeline, PipelineConfig, PluginContext, build
from actors.plugins.catalog import PluginClass
from engine.errors import EaselError, Unavailable
from engine.ref import ActorRef

__all__ = ["Listener", "PipelineAnswer", "PipelineHandle", "PipelineJob"]

log = logging.getLogger(__name__)

Listener = Callable[[str], None]
"""Receives ``pipeline.restarting`` and ``pipeline.ready``, on the loop."""


@dataclass(slots=True)
class PipelineJob:
    frame: FrameIn[Any]
    enqueued: float
    """``time.perf_counter()`` when the job was sent."""


@dataclass(slots=True)
class PipelineAnswer:
    out: FrameOut
    """The frame's result. For a kind with a ``finish`` stage, the replica's answer
    holds what ``process`` returned until the handle has run ``finish`` on it."""
    queue_ms: float
    pipeline_ms: float


class PipelineHandle:
    """The stable face of one named pipeline. Methods run on the loop unless noted."""

    def __init__(
        self,
        config: PipelineConfig,
        plugin: PluginClass,
        metrics: RealtimeMetrics,
        stages: Executor | None = None,
        context: PluginContext | None = None,
    ) -> None:
        self.config = config
        self.context = context or PluginContext()
        """What the engine lends plug-ins that ``uses_context``; every instance of this
        pipeline (replicas, stage instance) is built with it."""
        self.plugin = plugin
        self.metrics = metrics
        self.generation = 0
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._replicas: list[ActorRef[PipelineJob, PipelineAnswer]] = []
        self._inflight: dict[int, int] = {}
        self._next = 0
        self._listeners: set[Listener] = set()
        self._failed: set[str] = set()
        """Paths of current replicas that crashed and have not started again."""
        self.room = Room(room_for(config, plugin))
        self._stages = stages
        self._stage = self._stage_instance(config, plugin)
        self._staging = 0
        """Frames submitted to the stage pool and not back from it."""
        self._workers = pool_size()

    def _stage_instance(self, config: PipelineConfig, plugin: PluginClass) -> Pipeline[Any] | None:
        """The never-loaded instance that runs ``prepare``/``finish``, for a staged kind."""
        if not plugin.staged():
            return None
        if self._stages is None:
            self._stages = stage_pool()
        return build(plugin, config, self.context)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def replicas(self) -> list[ActorRef[PipelineJob, PipelineAnswer]]:
        return list(self._replicas)

    @property
    def ready(self) -> bool:
        return bool(self._replicas) and not self._failed and not self.closed

    def switch(
        self,
        config: PipelineConfig,
        plugin: PluginClass,
        replicas: list[ActorRef[PipelineJob, PipelineAnswer]],
    ) -> list[ActorRef[PipelineJob, PipelineAnswer]]:
        """Route new frames to ``replicas`` from now on; return the previous ones."""
        old = self._replicas
        if config is not self.config or plugin is not self.plugin:
            self._stage = self._stage_instance(config, plugin)
        self.config, self.plugin, self._replicas = config, plugin, list(replicas)
        self.room.resize(room_for(config, plugin))
        self.generation += 1
        self._failed.clear()
        return old

    def submit(
        self,
        frame: FrameIn[Any],
        timeout: float,
        processed: Callable[[], None] | None = None,
    ) -> asyncio.Future[PipelineAnswer]:
        """Send one frame to the least busy replica; the future holds its answer.

        The future fails with the frame's own error (``BadContent`` …),
        ``ActorCrashed`` when the replica crashed on it, ``AskTimeout``. Raises
        ``Unavailable`` at once when the pipeline is gone.

        A staged kind's frame goes through ``prepare`` on the stage pool first and
        through ``finish`` after ``process``; ``processed`` (if given) is called once,
        on the loop, when the replica is done with the frame, before ``finish``; the
        caller must still treat the future's completion as the end of the frame.
        """
        stage = self._stage
        if stage is not None and self._stages is not None:
            if self.closed or not self._replicas:
                raise Unavailable(f"pipeline {self.name} is not available")
            return self._submit_staged(stage, self._stages, frame, timeout, processed)
        return self._ask(frame, timeout)

    def _ask(self, frame: FrameIn[Any], timeout: float) -> asyncio.Future[PipelineAnswer]:
        replicas = self._replicas
        if self.closed or not replicas:
            raise Unavailable(f"pipeline {self.name} is not available")
        ref = replicas[0] if len(replicas) == 1 else self._pick(replicas)
        future = ref.ask_future(PipelineJob(frame, time.perf_counter()), timeout)
        if not future.done():  # answered directly by an idle loop replica otherwise
            key = id(ref)
            inflight = self._inflight
            inflight[key] = inflight.get(key, 0) + 1
            future.add_done_callback(lambda _: self._landed(key))
        return future

    # --- staged kinds: prepare → process → finish ------------------------------------

    def _submit_staged(
        self,
        stage: Pipeline[Any],
        pool: Executor,
        frame: FrameIn[Any],
        timeout: float,
        processed: Callable[[], None] | None,
    ) -> asyncio.Future[PipelineAnswer]:
        loop = self._loop
        outer: asyncio.Future[PipelineAnswer] = loop.create_future()
        done = processed or _nothing
        prepared = loop.run_in_executor(pool, prepare_frame, stage, frame)
        self._staging += 1
        prepared.add_done_callback(self._staged)
        prepared.add_done_callback(
            lambda step: self._prepared(outer, stage, pool, step, timeout, done)
        )
        return outer

    def _prepared(
        self,
        outer: asyncio.Future[PipelineAnswer],
        stage: Pipeline[Any],
        pool: Executor,
        step: asyncio.Future[FrameIn[Any] | EaselError],
        timeout: float,
        processed: Callable[[], None],
    ) -> None:
        if outer.done():  # abandoned by its session meanwhile
            processed()
            return
        try:
            frame = step.result()
            if isinstance(frame, EaselError):
                raise frame
            ask = self._ask(frame, timeout)
        except Exception as error:
            processed()
            outer.set_exception(error)
            return
        ask.add_done_callback(
            lambda answered: self._processed(outer, stage, pool, frame, answered, processed)
        )

    def _processed(
        self,
        outer: asyncio.Future[PipelineAnswer],
        stage: Pipeline[Any],
        pool: Executor,
        frame: FrameIn[Any],
        ask: asyncio.Future[PipelineAnswer],
        processed: Callable[[], None],
    ) -> None:
        processed()
        if outer.done():
            return
        if ask.cancelled():
            outer.cancel()
            return
        error = ask.exception()
        if error is not None:
            outer.set_exception(error)
            return
        answer = ask.result()
        finished = self._loop.run_in_executor(pool, finish_frame, stage, frame, answer.out)
        self._staging += 1
        finished.add_done_callback(self._staged)
        finished.add_done_callback(lambda step: _finished(outer, answer, step))

    def congested(self) -> bool:
        """Whether frames of this pipeline wait for it beyond what it works on: sessions
        queued for room, more than a batch per replica in the mailboxes, or more frames
        at the stage pool than it has threads. Sessions then grant less credit."""
        if self.room.queued:
            return True
        if self._staging > self._workers:
            return True
        replicas = self._replicas
        batch = self.config.max_batch or self.plugin.max_batch
        return sum(ref.pending for ref in replicas) > len(replicas) * batch

    def _staged(self, *_: object) -> None:
        self._staging -= 1

    def _landed(self, key: int) -> None:
        inflight = self._inflight
        if inflight[key] == 1:
            del inflight[key]  # no entry per replica that ever lived
        else:
            inflight[key] -= 1

    def _pick(self, replicas: list[ActorRef[PipelineJob, PipelineAnswer]]) -> ActorRef[Any, Any]:
        self._next = (self._next + 1) % len(replicas)
        best = replicas[self._next]
        load = best.pending + self._inflight.get(id(best), 0)
        for ref in replicas:
            ref_load = ref.pending + self._inflight.get(id(ref), 0)
            if ref_load < load:
                best, load = ref, ref_load
        return best

    def busy(self, refs: Sequence[ActorRef[Any, Any]]) -> bool:
        """Whether any of ``refs`` still has frames waiting or being processed."""
        return any(ref.pending or self._inflight.get(id(ref), 0) for ref in refs)

    # --- restart notifications -----------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with pipeline events; returns the unsubscribe function."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def notify(self, path: str, *, ready: bool) -> None:
        """From the replica at ``path``, on any thread: it failed or (re)started."""
        try:
            self._loop.call_soon_threadsafe(self._replica_changed, path, ready)
        except RuntimeError:  # loop closed: the engine is shutting down
            pass

    def _replica_changed(self, path: str, ready: bool) -> None:
        if all(ref.path != path for ref in self._replicas):
            return  # an old generation draining after a reload: not our concern now
        was_ready = not self._failed
        if ready:
            self._failed.discard(path)
        else:
            self._failed.add(path)
        if was_ready and self._failed:
            self._emit("pipeline.restarting")
        elif not was_ready and not self._failed:
            self._emit("pipeline.ready")

    def _emit(self, event: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("pipeline %s: listener failed", self.name)


def _nothing() -> None:
    pass


def _finished(
    outer: asyncio.Future[PipelineAnswer],
    answer: PipelineAnswer,
    step: asyncio.Future[FrameOut | EaselError],
) -> None:
    if outer.done():
        return
    try:
        result = step.result()
    except BaseException as error:  # the pool shut down under it
        outer.set_exception(Unavailable(f"frame not finished: {error}"))
        return
    if isinstance(result, EaselError):
        outer.set_exception(result)
        return
    answer.out = result
    outer.set_result(answer)
