"""The shared vocabulary: small value types that cross layers.

Everything here is a plain value with no behaviour beyond its own fields, imported by
the wire protocol, the domain and the storage alike, so each concept is defined once.
Importing this module pulls in nothing of the actor runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DrainStrategy", "FrameTimings", "Hosting", "PipelineConfig"]


class DrainStrategy(StrEnum):
    """What a session does when its client sends frames faster than its pipeline answers.

    ``latest`` keeps only the newest waiting frame (older ones are superseded, never
    answered); ``all`` keeps every frame in order and stops reading the socket when its
    bounded queue is full, so TCP pushes back on the client.
    """

    LATEST = "latest"
    ALL = "all"


@dataclass(slots=True)
class FrameTimings:
    """Where one frame's time went, in milliseconds (RESULT ``t``).

    ``queue_ms``: waiting for a replica; ``pipeline_ms``: the plug-in's ``process``
    call (for the whole batch the frame was in); ``total_ms``: from the moment the
    frame was read off the socket until its RESULT was built.
    """

    queue_ms: float
    pipeline_ms: float
    total_ms: float

    def to_header(self) -> dict[str, float]:
        # Spelled out: dataclasses.asdict recurses and copies (3.8 us vs 0.14 us per RESULT).
        return {
            "queue_ms": float(self.queue_ms),
            "pipeline_ms": float(self.pipeline_ms),
            "total_ms": float(self.total_ms),
        }


Hosting: TypeAlias = Literal["thread", "loop", "process", "ray"]
"""Where a pipeline's replicas run their plug-in instance (``PipelineConfig.hosting``)."""


class PipelineConfig(BaseModel):
    """How an operator declares a pipeline (the REST body, the
    pipeline service's input, and the fields of its stored record).

    - ``name``: the instance's name, unique per engine; the actor path is
      ``/pipelines/<name>``. Several instances may share a kind with other options.
    - ``kind``: the plug-in, as the catalog knows it (``imagefx``, an entry point…).
    - ``replicas``: how many actors (each with its own instance and thread) to run.
    - ``max_batch``: the largest micro-batch handed to ``process``; ``None`` keeps the
      kind's default (``Pipeline.max_batch``).
    - ``options``: kind-specific settings, validated by the kind's ``options_model``
      when the pipeline is constructed (or earlier, by ``Kind.parse_options``).
    - ``hosting``: where each replica's plug-in instance runs: ``thread`` (a thread
      of the engine), ``loop`` (the event loop: only for kinds that never block),
      ``process`` (a child process per replica: a native crash takes only that
      replica down), ``ray`` (a Ray actor per replica; needs the ``ray`` extra).
      ``None`` keeps the kind's default: ``loop`` for kinds with
      ``blocking = False``, ``thread`` otherwise.
    - ``resources``: what each replica asks of its host, for ``ray``: ``num_cpus``,
      ``num_gpus`` and custom resources (Ray places the replica's actor where they
      are free); other hosts ignore it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    kind: str = Field(min_length=1, max_length=100)
    replicas: int = Field(default=1, ge=1, le=64)
    max_batch: int | None = Field(default=None, ge=1, le=1024)
    options: dict[str, Any] = Field(default_factory=dict)
    hosting: Hosting | None = None
    resources: dict[str, float] | None = None
