"""Pipeline actors: a thread actor per replica, and the handle sessions send frames to.

Each replica is a ``ThreadActor`` that owns one plug-in instance (``load`` in its
``on_start``, ``close`` when it stops or crashes) and takes frames from its mailbox in
micro-batches of up to the plug-in's ``max_batch``. A ``PipelineHandle`` is what a
session holds: it spreads frames over the live replicas, survives replica restarts and
blue/green reloads (``switch``), and tells subscribers when the pipeline restarts and
is ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from actors.metrics import RealtimeMetrics
from actors.pipelines import FrameIn, FrameOut, Pipeline, PipelineConfig, check_answers
from actors.pipelines.catalog import PipelineKind
from engine.actor import LoopActor, ThreadActor
from engine.doorbell import Doorbell
from engine.errors import EaselError, Unavailable
from engine.ref import ActorRef

__all__ = [
    "LoopPipelineReplica",
    "PipelineAnswer",
    "PipelineHandle",
    "PipelineJob",
    "PipelineReplica",
    "ReplicaCore",
    "Room",
    "Ticket",
    "replica_factory",
]

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
    queue_ms: float
    pipeline_ms: float


class ReplicaCore:
    """One plug-in instance and the bookkeeping around it; used by both replica actors.

    Its methods run wherever the hosting actor runs: the replica's thread for a
    blocking kind, the event loop for a non-blocking one.
    """

    def __init__(
        self, plugin: PipelineKind, config: PipelineConfig, handle: PipelineHandle
    ) -> None:
        self.plugin = plugin
        self.config = config
        self.handle = handle
        self.instance: Pipeline[Any] | None = None
        metrics = handle.metrics
        self._batches = metrics.batch_size.shard(config.name)
        self._seconds = metrics.process_seconds.shard(config.name)
        self._batch = self._batches.observe
        self._process = self._seconds.observe

    def start(self) -> int:
        """Create and load the instance; returns its ``max_batch``."""
        instance = self.plugin(self.config)
        try:
            instance.load()
        except BaseException:
            self.close(instance)
            raise
        self.instance = instance
        return instance.max_batch

    def process(self, jobs: Sequence[PipelineJob]) -> list[PipelineAnswer | EaselError]:
        instance = self.instance
        assert instance is not None  # start succeeded before any message
        started = time.perf_counter()
        frames = [job.frame for job in jobs]
        answers = check_answers(frames, instance.process(frames))
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

    def process_one(self, job: PipelineJob) -> PipelineAnswer:
        answer = self.process([job])[0]
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


def replica_factory(
    plugin: PipelineKind, config: PipelineConfig, handle: PipelineHandle
) -> Callable[[], PipelineReplica | LoopPipelineReplica]:
    """How the supervisor makes each incarnation of a replica: a fresh plug-in instance."""
    if plugin.blocking:
        return lambda: PipelineReplica(ReplicaCore(plugin, config, handle))
    return lambda: LoopPipelineReplica(ReplicaCore(plugin, config, handle))


class Ticket:
    """One consumer's place in a ``Room``'s queue; granted entry rings its bell."""

    __slots__ = ("bell", "granted", "queued")

    def __init__(self, bell: Doorbell) -> None:
        self.bell = bell
        self.queued = False
        self.granted = False


class Room:
    """Admission to a pipeline: at most ``capacity`` frames queued or in process.

    Sessions wait here, in FIFO order (fair across sessions), *before* taking a frame
    from their drain, so under ``latest`` the frame that waits is still the one a newer
    frame can supersede, and latency stays bounded when many sessions oversubscribe a
    pipeline. A session's frame loop never blocks here: ``enter`` either admits it or
    queues its ticket, and the ticket's bell rings when a place is handed to it. The
    capacity follows the replicas (it changes on reload). Loop only.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._queue: deque[Ticket] = deque()

    def enter(self, ticket: Ticket) -> bool:
        """Take a place now (True), or queue ``ticket`` for the next free one (False)."""
        if ticket.granted:
            ticket.granted = False  # the place was counted when it was handed over
            return True
        if ticket.queued:
            return False
        if self.used < self.capacity and not self._queue:
            self.used += 1
            return True
        ticket.queued = True
        self._queue.append(ticket)
        return False

    def release(self, *_: object) -> None:
        """Give a place back: to the first queued ticket, or to the room. Usable as a
        future's done callback."""
        if self.used <= self.capacity:
            while self._queue:
                ticket = self._queue.popleft()
                if ticket.queued:
                    self._grant(ticket)  # the place passes on, still counted
                    return
        self.used -= 1

    def withdraw(self, ticket: Ticket) -> None:
        """``ticket``'s owner no longer wants in: unqueue it or give back its place."""
        if ticket.granted:
            ticket.granted = False
            self.release()
        elif ticket.queued:
            ticket.queued = False
            with contextlib.suppress(ValueError):
                self._queue.remove(ticket)

    async def acquire(self) -> None:
        """Wait for a place (for callers with a task of their own)."""
        ticket = Ticket(Doorbell())
        try:
            while not self.enter(ticket):
                await ticket.bell.wait()
        except asyncio.CancelledError:
            self.withdraw(ticket)
            raise

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        while self._queue and self.used < self.capacity:
            ticket = self._queue.popleft()
            if ticket.queued:
                self.used += 1
                self._grant(ticket)

    @staticmethod
    def _grant(ticket: Ticket) -> None:
        ticket.queued = False
        ticket.granted = True
        ticket.bell.ring()


def room_for(config: PipelineConfig, plugin: PipelineKind) -> int:
    """Two full micro-batches per replica: one in process, one gathering."""
    return config.replicas * 2 * (config.max_batch or plugin.max_batch)


class PipelineHandle:
    """The stable face of one named pipeline. Methods run on the loop unless noted."""

    def __init__(
        self, config: PipelineConfig, plugin: PipelineKind, metrics: RealtimeMetrics
    ) -> None:
        self.config = config
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
        plugin: PipelineKind,
        replicas: list[ActorRef[PipelineJob, PipelineAnswer]],
    ) -> list[ActorRef[PipelineJob, PipelineAnswer]]:
        """Route new frames to ``replicas`` from now on; return the previous ones."""
        old = self._replicas
        self.config, self.plugin, self._replicas = config, plugin, list(replicas)
        self.room.resize(room_for(config, plugin))
        self.generation += 1
        self._failed.clear()
        return old

    def submit(self, frame: FrameIn[Any], timeout: float) -> asyncio.Future[PipelineAnswer]:
        """Send one frame to the least busy replica; the future holds its answer.

        The future fails with the frame's own error (``BadContent`` …),
        ``ActorCrashed`` when the replica crashed on it, ``AskTimeout``. Raises
        ``Unavailable`` at once when the pipeline is gone.
        """
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
