"""``hosting: process``: each replica's plug-in instance lives in a child process.

The replica is still a ``ThreadActor`` (same mailbox, micro-batches, metrics and
supervision); its thread owns one child process and talks to it over a pipe. The
child builds and loads the plug-in, then answers batches until told to stop. A child
that dies for any reason (SIGKILL, SIGSEGV, ``os.abort()``, the OOM killer) shows up
as a broken pipe: the batch in flight fails (its frames get ``pipeline_error``), the
replica crashes and its supervisor starts a new one, with a new child, after its
back-off. The engine itself never runs the plug-in's code, so it survives.

Payloads cross once: each frame's bytes are written to the pipe straight from the
received message (``send_bytes`` of a ``memoryview``, no pickling), and read once on
the other side; results come back the same way. Params, ``prepare``'s output and
non-``FrameOut`` results are pickled.

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


class ChildDied(RuntimeError):
    """The replica's child process ended while it was owed an answer."""


class ProcessPipelineReplica(ThreadActor[PipelineJob, PipelineAnswer]):
    """A replica whose plug-in instance runs in a child process it owns."""

    kind = "pipeline"

    def __init__(self, core: ReplicaCore) -> None:
        self.core = core
        self.process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None

    # --- lifecycle, on the replica's thread ------------------------------------------

    def on_start(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=child_main,
            args=(theirs, self.core.plugin, self.core.config, os.getpid()),
            name=f"easel-replica:{self.core.config.name}",
            daemon=True,
        )
        process.start()
        theirs.close()
        self.process, self._pipe = process, ours
        try:
            ready = self._receive()
        except BaseException:
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
        try:
            pipe.send([(f.content_type, f.width, f.height, f.params, f.data) for f in frames])
            for frame in frames:
                pipe.send_bytes(frame.payload)
        except (OSError, ValueError) as error:
            raise self._died() from error
        kinds = self._receive()
        answers: list[Any] = []
        for kind, value in kinds:
            if kind == "raised":
                raise RuntimeError(f"process raised in the replica's process: {value}")
            if kind == "out":
                content_type, width, height = value
                answers.append(FrameOut(self._receive_bytes(), content_type, width, height))
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


def child_main(pipe: Connection, plugin: PluginClass, config: PipelineConfig, parent: int) -> None:
    """The child's life: load the plug-in, answer batches until told to stop."""
    _die_with_parent(parent)
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
    try:
        _serve(pipe, instance)
    except (EOFError, OSError):
        pass  # the engine is gone
    finally:
        _close(instance)


def _serve(pipe: Connection, instance: Pipeline[Any]) -> None:
    while True:
        request = pipe.recv()
        if request == _STOP:
            return
        frames = [
            FrameIn(pipe.recv_bytes(), content_type, width, height, params, data)
            for content_type, width, height, params, data in request
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
        payloads: list[bytes | memoryview] = []
        for answer in answers:
            if isinstance(answer, FrameOut):
                replies.append(("out", (answer.content_type, answer.width, answer.height)))
                payloads.append(answer.payload)
            else:
                replies.append(("value", answer))
        pipe.send(replies)
        for payload in payloads:
            pipe.send_bytes(payload)


def _close(instance: Pipeline[Any] | None) -> None:
    if instance is not None:
        with contextlib.suppress(Exception):
            instance.close()
