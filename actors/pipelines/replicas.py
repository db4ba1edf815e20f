"""Pipeline replicas: the actors that run a plug-in instance.

Each replica owns one plug-in instance (``load`` in its ``on_start``, ``close`` when
it stops or crashes). A blocking plug-in runs in a ``ThreadActor`` that takes frames
from its mailbox in micro-batches of up to the plug-in's ``max_batch``; a non-blocking
one (``Pipeline.blocking = False``) runs in a ``LoopActor`` on the event loop.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

from actors.pipelines.handle import PipelineAnswer, PipelineHandle, PipelineJob
from actors.plugins import FrameIn, Pipeline, PipelineConfig, build, check_answers
from actors.plugins.catalog import PluginClass
from engine.actor import LoopActor, ThreadActor
from engine.errors import EaselError, Invalid
from engine.types import Hosting

__all__ = [
    "LoopPipelineReplica",
    "PipelineReplica",
    "ReplicaCore",
    "check_hosting",
    "hosting_of",
    "replica_factory",
]

log = logging.getLogger(__name__)

Runner = Callable[[Sequence[FrameIn[Any]]], list[Any]]
"""Runs ``process`` on a batch of frames, wherever the plug-in instance lives."""


class ReplicaCore:
    """One plug-in instance and the bookkeeping around it; used by both replica actors.

    Its methods run wherever the hosting actor runs: the replica's thread for a
    blocking kind, the event loop for a non-blocking one.
    """

    def __init__(self, plugin: PluginClass, config: PipelineConfig, handle: PipelineHandle) -> None:
        self.plugin = plugin
        self.config = config
        self.handle = handle
        self.instance: Pipeline[Any] | None = None
        self._finished = not plugin.staged()
        """Whether ``process`` answers ``FrameOut``s (no ``finish`` stage after it)."""
        metrics = handle.metrics
        self._batches = metrics.batch_size.shard(config.name)
        self._seconds = metrics.process_seconds.shard(config.name)
        self._batch = self._batches.observe
        self._process = self._seconds.observe

    def start(self) -> int:
        """Create and load the instance; returns its ``max_batch``."""
        instance = build(self.plugin, self.config, self.handle.context)
        try:
            instance.load()
        except BaseException:
            self.close(instance)
            raise
        self.instance = instance
        return instance.max_batch

    def process(
        self, jobs: Sequence[PipelineJob], run: Runner | None = None
    ) -> list[PipelineAnswer | EaselError]:
        """Answer ``jobs`` with the instance's ``process`` (or ``run``, which does it
        elsewhere: in the replica's child process)."""
        if run is None:
            instance = self.instance
            assert instance is not None  # start succeeded before any message
            run = instance.process
        started = time.perf_counter()
        frames = [job.frame for job in jobs]
        # for a staged kind the non-error slots are ``finish``'s inputs, carried in
        # ``PipelineAnswer.out`` until the handle has run ``finish``
        answers = check_answers(frames, run(frames), finished=self._finished)
        finished = time.perf_counter()
        self._batch(len(frames))
        self._process(finished - started)
        pipeline_ms = (finished - started) * 1000.0
        return [
            answer
            if isinstance(answer, EaselError)
            else PipelineAnswer(answer, (started - job.enqueued) * 1000.0, pipeline_ms)
            for job, answer in zip(jobs, answers, strict=True)
        ]

    def process_one(self, job: PipelineJob, run: Runner | None = None) -> PipelineAnswer:
        answer = self.process([job], run)[0]
        if isinstance(answer, EaselError):
            raise answer
        return answer

    def close(self, instance: Pipeline[Any] | None = None) -> None:
        metrics = self.handle.metrics
        metrics.batch_size.retire(self._batches, self.config.name)
        metrics.process_seconds.retire(self._seconds, self.config.name)
        instance = instance or self.instance
        if instance is None:
            return
        try:
            instance.close()
        except Exception:
            log.exception("pipeline %s: close failed", self.config.name)


class PipelineReplica(ThreadActor[PipelineJob, PipelineAnswer]):
    """A replica of a blocking pipeline. Every hook runs on the replica's own thread."""

    kind = "pipeline"

    def __init__(self, core: ReplicaCore) -> None:
        self.core = core

    def on_start(self) -> None:
        self.max_batch = self.core.start()
        assert self.core.instance is not None
        self.max_wait = self.core.instance.max_wait_ms / 1000.0
        self.core.handle.notify(self.context.path, ready=True)

    def receive_batch(
        self, messages: Sequence[PipelineJob]
    ) -> Sequence[PipelineAnswer | EaselError]:
        return self.core.process(messages)

    def receive(self, message: PipelineJob) -> PipelineAnswer:
        return self.core.process_one(message)

    def on_stop(self) -> None:
        self.core.close()

    def on_failure(self, error: BaseException) -> None:
        self.core.close()
        self.core.handle.notify(self.context.path, ready=False)


class LoopPipelineReplica(LoopActor[PipelineJob, PipelineAnswer]):
    """A replica of a non-blocking pipeline (``Pipeline.blocking = False``), on the loop.

    Frames are handled one message at a time; the plug-in's calls must not block.
    While the replica is idle, a session's ask runs it directly (``receive_now``):
    no mailbox round trip and no task switch per frame.
    """

    kind = "pipeline"

    def __init__(self, core: ReplicaCore) -> None:
        self.core = core

    async def on_start(self) -> None:
        self.core.start()
        self.core.handle.notify(self.context.path, ready=True)

    def receive_now(self, message: PipelineJob) -> PipelineAnswer:
        return self.core.process_one(message)

    async def receive(self, message: PipelineJob) -> PipelineAnswer:
        return self.core.process_one(message)

    async def on_stop(self) -> None:
        self.core.close()

    async def on_failure(self, error: BaseException) -> None:
        self.core.close()
        self.core.handle.notify(self.context.path, ready=False)


def hosting_of(plugin: PluginClass, config: PipelineConfig) -> Hosting:
    """Where ``config``'s replicas run: its ``hosting``, or the kind's default."""
    if config.hosting is not None:
        return config.hosting
    return "thread" if plugin.blocking else "loop"


def check_hosting(plugin: PluginClass, config: PipelineConfig) -> None:
    """Raise ``Invalid`` if ``plugin`` can't be hosted as ``config`` asks."""
    hosting = hosting_of(plugin, config)
    if hosting == "loop" and plugin.blocking:
        raise Invalid(f"kind {plugin.name!r} may block: it can't be hosted on the loop")
    if hosting == "ray":
        from actors.pipelines.ray_host import ray_available

        if not ray_available():
            raise Invalid("hosting 'ray' needs Ray: pip install easel[ray]")
    if hosting in ("process", "ray") and plugin.uses_context:
        raise Invalid(
            f"kind {plugin.name!r} uses the engine's services: it runs in the engine "
            "(hosting 'thread' or 'loop'), not in a process or on Ray"
        )
    if hosting in ("process", "ray"):
        try:
            pickle.dumps(plugin)
        except Exception:
            raise Invalid(
                f"kind {plugin.name!r} can't be hosted in {hosting}: its class is not "
                "importable by name (defined in a function?)"
            ) from None


def replica_factory(
    plugin: PluginClass, config: PipelineConfig, handle: PipelineHandle
) -> Callable[[], ThreadActor[PipelineJob, PipelineAnswer] | LoopPipelineReplica]:
    """How the supervisor makes each incarnation of a replica: a fresh plug-in instance
    (in a fresh child process under ``process`` hosting)."""
    hosting = hosting_of(plugin, config)
    if hosting == "process":
        from actors.pipelines.process import ProcessPipelineReplica

        return lambda: ProcessPipelineReplica(ReplicaCore(plugin, config, handle))
    if hosting == "ray":
        from actors.pipelines.ray_host import RayPipelineReplica

        return lambda: RayPipelineReplica(ReplicaCore(plugin, config, handle))
    if hosting == "thread":
        return lambda: PipelineReplica(ReplicaCore(plugin, config, handle))
    return lambda: LoopPipelineReplica(ReplicaCore(plugin, config, handle))
