"""``hosting: process``: each replica's plug-in instance lives in a child process.

The replica is still a ``ThreadActor`` (same mailbox, micro-batches, metrics and
supervision); its thread owns one child process and talks to it over a pipe. The
child builds and loads the plug-in, then answers batches until told to stop. A child
that dies for any reason (SIGKILL, SIGSEGV, ``os.abort()``, the OOM killer) shows up
as a broken pipe: the batch in flight fails (its frames get ``pipeline_error``), the
replica crashes and its supervisor starts a new one, with a new child, after its
back-off. The engine itself never runs the plug-in's code, so it survives.

Payloads cross once: each replica has two shared-memory segments of ``SHARED_BYTES``
(one per direction). A frame's bytes are copied once from the received message into
the inbound segment, and the plug-in gets a zero-copy ``memoryview`` of them; a
result's bytes are copied once into the outbound segment and once out of it (the
segment is reused for the next batch). What does not fit crosses the pipe instead.
Params, ``prepare``'s output and non-``FrameOut`` results are pickled.

Children never outlive the engine: on Linux each child asks the kernel for SIGKILL
when the thread that started it ends (``PR_SET_PDEATHSIG``: the replica's thread,
so also when the engine is SIGKILLed), and everywhere it also exits when its pipe to
the engine closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from actors.pipelines.handle import PipelineAnswer, PipelineJob
from actors.pipelines.replicas import ReplicaCore
from actors.plugins import FrameIn, FrameOut, Pipeline, PipelineConfig
from actors.plugins.catalog import PluginClass
from engine.actor import ThreadActor
from engine.errors import EaselError

__all__ = ["ChildDied", "ProcessPipelineReplica", "child_main"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_STOP = "stop"
_STOP_TIMEOUT = 10.0
SHARED_BYTES = 16 * 1024 * 1024
"""Size of each of a replica's two shared-memory segments (inbound, outbound)."""
_PIPED = -1
"""Offset of a payload that did not fit in shared memory and crosses the pipe."""


class _Packer:
    """Lays payloads out one after the other in a shared segment, per batch."""

    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer
        self.used = 0

    def put(self, payload: bytes | memoryview) -> int:
        """Copy ``payload`` in; its offset, or ``_PIPED`` when it does not fit."""
        size = len(payload) if isinstance(payload, bytes) else payload.nbytes
        start = self.used
        if start + size > len(self.buffer):
            return _PIPED
        self.buffer[start : start + size] = payload
        self.used = start + size
        return start


class ChildDied(RuntimeError):
    """The replica's child process ended while it was owed an answer."""


class ProcessPipelineReplica(ThreadActor[PipelineJob, PipelineAnswer]):
    """A replica whose plug-in instance runs in a child process it owns."""

    kind = "pipeline"

    def __init__(self, core: ReplicaCore) -> None:
        self.core = core
        self.process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None
        self._shared: list[SharedMemory] = []
        """The inbound and outbound segments, owned (and unlinked) by this replica."""

    # --- lifecycle, on the replica's thread ------------------------------------------

    def on_start(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._shared = [SharedMemory(create=True, size=SHARED_BYTES) for _ in range(2)]
        names = tuple(segment.name for segment in self._shared)
        process = context.Process(
            target=child_main,
            args=(theirs, self.core.plugin, self.core.config, os.getpid(), names),
            name=f"easel-replica:{self.core.config.name}",
            daemon=True,
        )
        self._pipe = ours
        try:
            process.start()
            self.process = process
            theirs.close()
            ready = self._receive()
        except BaseException:
            theirs.close()
            self._kill()
            raise
        if ready[0] == "failed":
            self._kill()
            raise RuntimeError(f"pipeline {self.core.config.name} failed to load: {ready[1]}")
        _, self.max_batch, max_wait_ms = ready
        self.max_wait = max_wait_ms / 1000.0
        self.core.handle.notify(self.context.path, ready=True)

    def on_stop(self) -> None:
        pipe, process = self._pipe, self.process
        if pipe is not None and process is not None:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(_STOP)
            process.join(_STOP_TIMEOUT)
        self._kill()
        self.core.close()

    def on_failure(self, error: BaseException) -> None:
        self._kill()
        self.core.close()
        self.core.handle.notify(self.context.path, ready=False)

    def _kill(self) -> None:
        process, pipe = self.process, self._pipe
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(_STOP_TIMEOUT)
        if pipe is not None:
            pipe.close()
        self._pipe = None
        for segment in self._shared:
            with contextlib.suppress(OSError, BufferError):
                segment.close()
            with contextlib.suppress(OSError):
                segment.unlink()
        self._shared = []

    # --- frames ------------------------------------------------------------------------

    def receive_batch(
        self, messages: Sequence[PipelineJob]
    ) -> Sequence[PipelineAnswer | EaselError]:
        return self.core.process(messages, self._remote)

    def receive(self, message: PipelineJob) -> PipelineAnswer:
        return self.core.process_one(message, self._remote)

    def _remote(self, frames: Sequence[FrameIn[Any]]) -> list[Any]:
        pipe = self._pipe
        assert pipe is not None
        inbound, outbound = (_view(segment) for segment in self._shared)
        packer = _Packer(inbound)
        offsets = [packer.put(frame.payload) for frame in frames]
        try:
            pipe.send(
                [
                    (offset, _size(f.payload), f.content_type, f.width, f.height, f.params, f.data)
                    for offset, f in zip(offsets, frames, strict=True)
                ]
            )
            for offset, frame in zip(offsets, frames, strict=True):
                if offset == _PIPED:
                    pipe.send_bytes(frame.payload)
        except (OSError, ValueError) as error:
            raise self._died() from error
        kinds = self._receive()
        answers: list[Any] = []
        for kind, value in kinds:
            if kind == "raised":
                raise RuntimeError(f"process raised in the replica's process: {value}")
            if kind == "out":
                offset, size, content_type, width, height = value
                if offset == _PIPED:
                    payload = self._receive_bytes()
                else:
                    payload = bytes(outbound[offset : offset + size])
                answers.append(FrameOut(payload, content_type, width, height))
            else:
                answers.append(value)
        return answers

    def _receive(self) -> Any:
        pipe = self._pipe
        assert pipe is not None
        try:
            return pipe.recv()
        except (EOFError, OSError) as error:
            raise self._died() from error

    def _receive_bytes(self) -> bytes:
        pipe = self._pipe
        assert pipe is not None
        try:
            return pipe.recv_bytes()
        except (EOFError, OSError) as error:
            raise self._died() from error

    def _died(self) -> ChildDied:
        process = self.process
        code = None
        if process is not None:
            process.join(1.0)
            code = process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else code
        return ChildDied(f"replica process of {self.core.config.name} died ({how})")


# --- the child ------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the engine died before the line above
        os._exit(1)


def child_main(
    pipe: Connection,
    plugin: PluginClass,
    config: PipelineConfig,
    parent: int,
    shared: tuple[str, str],
) -> None:
    """The child's life: load the plug-in, answer batches until told to stop."""
    _die_with_parent(parent)
    segments = [SharedMemory(name=name) for name in shared]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine decides when we stop
    instance: Pipeline[Any] | None = None
    try:
        instance = plugin(config)
        instance.load()
    except Exception as error:
        pipe.send(("failed", f"{type(error).__name__}: {error}"))
        _close(instance)
        return
    pipe.send(("ready", instance.max_batch, instance.max_wait_ms))
    inbound, outbound = (_view(segment) for segment in segments)
    try:
        _serve(pipe, instance, inbound, outbound)
    except (EOFError, OSError):
        pass  # the engine is gone
    finally:
        _close(instance)


def _serve(
    pipe: Connection, instance: Pipeline[Any], inbound: memoryview, outbound: memoryview
) -> None:
    while True:
        request = pipe.recv()
        if request == _STOP:
            return
        frames = [
            FrameIn(
                pipe.recv_bytes() if offset == _PIPED else inbound[offset : offset + size],
                content_type,
                width,
                height,
                params,
                data,
            )
            for offset, size, content_type, width, height, params, data in request
        ]
        try:
            answers = instance.process(frames)
            if not isinstance(answers, list):
                raise TypeError(f"process must return a list, got {type(answers).__name__}")
        except Exception as error:
            # a broken pipeline: the replica crashes as a thread-hosted one would
            pipe.send([("raised", f"{type(error).__name__}: {error}")])
            raise SystemExit(1) from None
        replies: list[tuple[str, Any]] = []
        piped: list[bytes | memoryview] = []
        packer = _Packer(outbound)
        for answer in answers:
            if isinstance(answer, FrameOut):
                offset = packer.put(answer.payload)
                if offset == _PIPED:
                    piped.append(answer.payload)
                meta = (offset, _size(answer.payload), answer.content_type)
                replies.append(("out", (*meta, answer.width, answer.height)))
            else:
                replies.append(("value", answer))
        pipe.send(replies)
        for payload in piped:
            pipe.send_bytes(payload)


def _view(segment: SharedMemory) -> memoryview:
    buffer = segment.buf
    assert buffer is not None  # until closed
    return buffer


def _size(payload: bytes | memoryview) -> int:
    return len(payload) if isinstance(payload, bytes) else payload.nbytes


def _close(instance: Pipeline[Any] | None) -> None:
    if instance is not None:
        with contextlib.suppress(Exception):
            instance.close()
