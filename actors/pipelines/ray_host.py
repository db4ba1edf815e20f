"""``hosting: ray``: each replica's plug-in instance lives in a Ray actor.

Needs the ``ray`` extra (``pip install easel[ray]``). The replica is still a
``ThreadActor`` (same mailbox, micro-batches, metrics and supervision); its thread
creates one Ray actor that builds and loads the plug-in, and waits on Ray for each
batch, so the event loop never blocks on Ray. The engine joins the cluster at
``EASEL_RAY_ADDRESS`` or, without it, starts a local one (unless this process has
already called ``ray.init``).

The Ray actor asks for the config's ``resources`` (``num_cpus``, ``num_gpus``,
custom; ``num_cpus`` 0 when not given), so Ray places it where they are free.
Ray's own restarts are off (``max_restarts=0``): Easel's supervisor decides. A Ray
actor or node that dies fails the batch in flight (its frames get
``pipeline_error``); the replica crashes and its supervisor starts a new one, with a
new Ray actor, after its back-off. Stopping the replica kills its Ray actor.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from actors.pipelines.handle import PipelineAnswer, PipelineJob
from actors.pipelines.replicas import ReplicaCore
from actors.plugins import FrameIn, Pipeline, PipelineConfig
from actors.plugins.catalog import PluginClass
from engine.actor import ThreadActor
from engine.errors import EaselError

__all__ = ["ACTOR_PREFIX", "RayPipelineReplica", "RayReplicaHost", "ray_available"]

log = logging.getLogger(__name__)

ACTOR_PREFIX = "easel:"
"""Ray actors of replicas are named ``easel:<replica path>:<n>``."""

_init_lock = threading.Lock()
_serial = itertools.count(1)


def ray_available() -> bool:
    try:
        importlib.import_module("ray")
    except ImportError:
        return False
    return True


def _ray() -> Any:
    ray = importlib.import_module("ray")
    with _init_lock:
        if not ray.is_initialized():
            address = os.environ.get("EASEL_RAY_ADDRESS") or None
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


class RayReplicaHost:
    """What runs inside the Ray actor: one plug-in instance."""

    def __init__(self, plugin: PluginClass, config: PipelineConfig) -> None:
        self.instance: Pipeline[Any] = plugin(config)
        try:
            self.instance.load()
        except BaseException:
            with contextlib.suppress(Exception):
                self.instance.close()
            raise

    def limits(self) -> tuple[int, float]:
        return self.instance.max_batch, self.instance.max_wait_ms

    def process(self, frames: list[FrameIn[Any]]) -> list[Any]:
        return self.instance.process(frames)

    def close(self) -> None:
        self.instance.close()


class RayPipelineReplica(ThreadActor[PipelineJob, PipelineAnswer]):
    """A replica whose plug-in instance runs in a Ray actor it owns."""

    kind = "pipeline"

    def __init__(self, core: ReplicaCore) -> None:
        self.core = core
        self.actor: Any = None
        self._ray: Any = None

    def on_start(self) -> None:
        ray = self._ray = _ray()
        name = f"{ACTOR_PREFIX}{self.context.path}:{next(_serial)}:{os.getpid()}"
        wanted = dict(self.core.config.resources or {})
        remote = ray.remote(RayReplicaHost).options(
            name=name,
            max_restarts=0,
            max_task_retries=0,
            num_cpus=wanted.pop("num_cpus", 0),
            num_gpus=wanted.pop("num_gpus", 0),
            resources=wanted or None,
        )
        self.actor = remote.remote(self.core.plugin, self.core.config)
        try:
            self.max_batch, max_wait_ms = ray.get(self.actor.limits.remote())
        except BaseException:
            self._kill()
            raise
        self.max_wait = max_wait_ms / 1000.0
        self.core.handle.notify(self.context.path, ready=True)

    def on_stop(self) -> None:
        actor = self.actor
        if actor is not None:
            with contextlib.suppress(Exception):
                self._ray.get(actor.close.remote(), timeout=10)
        self._kill()
        self.core.close()

    def on_failure(self, error: BaseException) -> None:
        self._kill()
        self.core.close()
        self.core.handle.notify(self.context.path, ready=False)

    def _kill(self) -> None:
        actor, self.actor = self.actor, None
        if actor is not None:
            with contextlib.suppress(Exception):
                self._ray.kill(actor, no_restart=True)

    def receive_batch(
        self, messages: Sequence[PipelineJob]
    ) -> Sequence[PipelineAnswer | EaselError]:
        return self.core.process(messages, self._remote)

    def receive(self, message: PipelineJob) -> PipelineAnswer:
        return self.core.process_one(message, self._remote)

    def _remote(self, frames: Sequence[FrameIn[Any]]) -> list[Any]:
        sendable = [
            frame if isinstance(frame.payload, bytes) else _with_bytes(frame) for frame in frames
        ]
        answers: list[Any] = self._ray.get(self.actor.process.remote(sendable))
        return answers


def _with_bytes(frame: FrameIn[Any]) -> FrameIn[Any]:
    return FrameIn(
        bytes(frame.payload),
        frame.content_type,
        frame.width,
        frame.height,
        frame.params,
        frame.data,
    )
