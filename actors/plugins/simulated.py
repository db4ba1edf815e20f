"""``simulated``: a stand-in for a GPU model, for sizing deployments and testing recovery.

``process`` sleeps ``cost_ms`` per call plus ``per_item_ms`` per frame beyond the
first, then returns its inputs (as ``passthrough`` does). ``time.sleep`` releases the
GIL, as GPU inference does, so replicas and batching behave as they would on a GPU.

Triggers for failure paths:

- option ``crash_every: N`` makes every Nth ``process`` call of an instance raise
  ``SimulatedCrash`` (a broken pipeline: the actor crashes and restarts; the counter
  starts again in the new instance);
- param ``crash: true`` on any frame makes the ``process`` call holding it raise;
- param ``fail: true`` answers that frame ``PipelineError`` (a failed frame, the
  pipeline is fine);
- option ``crash_on_load: true`` makes ``load`` raise (a pipeline that can't start);
- option ``crash_native`` (``segv``, ``abort``, ``kill``) makes a ``crash`` frame
  kill the process instead of raising: for ``hosting: process`` only.

``simulated-codec`` is the same model between real codec stages, as a diffusion
server has: ``prepare`` decodes each frame, ``process`` sleeps and hands the decoded
images on, ``finish`` encodes each one (JPEG q80 progressive by default).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Sequence
from typing import Any, Literal

from PIL import Image
from pydantic import Field

from engine.errors import EaselError, PipelineError

from .api import Answer, FrameIn, Params, Pipeline, PipelineConfig
from .codec import Subsampling, decode, encode
from .passthrough import echo

__all__ = [
    "Simulated",
    "SimulatedCodec",
    "SimulatedCodecOptions",
    "SimulatedCrash",
    "SimulatedOptions",
    "SimulatedParams",
]


class SimulatedCrash(RuntimeError):
    """Raised on purpose by ``simulated`` to exercise crash recovery."""


class SimulatedParams(Params):
    """Per-frame triggers of ``simulated``."""

    fail: bool = False
    """Answer this frame ``PipelineError``."""
    crash: bool = False
    """Raise from the ``process`` call that holds this frame."""


class SimulatedOptions(Params):
    """Config options of a ``simulated`` pipeline."""

    cost_ms: float = Field(default=20.0, ge=0.0, le=60_000.0)
    """Time per ``process`` call (a batch of one)."""
    per_item_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)
    """Extra time per frame beyond the first in a batch."""
    load_ms: float = Field(default=0.0, ge=0.0, le=600_000.0)
    """Time spent in ``load`` (model load and warm-up)."""
    crash_every: int = Field(default=0, ge=0)
    """Raise from every Nth ``process`` call of an instance; 0 never."""
    crash_on_load: bool = False
    """Raise from ``load``."""
    crash_native: Literal["segv", "abort", "kill"] | None = None
    """How a frame with ``crash: true`` crashes: ``None`` raises ``SimulatedCrash``;
    ``segv`` dereferences NULL, ``abort`` calls ``os.abort()``, ``kill`` SIGKILLs the
    process. Those take down the whole process: only for ``hosting: process``."""


class Simulated(Pipeline[SimulatedParams]):
    """Sleeps like a model and echoes its inputs."""

    name = "simulated"
    params_model = SimulatedParams
    options_model = SimulatedOptions
    max_batch = 8
    options: SimulatedOptions

    def __init__(self, config: PipelineConfig) -> None:
        super().__init__(config)
        self.calls = 0
        """``process`` calls so far, by this instance."""

    def load(self) -> None:
        """Sleep ``load_ms``; raise ``SimulatedCrash`` if ``crash_on_load``."""
        time.sleep(self.options.load_ms / 1000)
        if self.options.crash_on_load:
            raise SimulatedCrash("simulated load failure (crash_on_load)")

    def process(self, batch: Sequence[FrameIn[SimulatedParams]]) -> list[Answer]:
        """Sleep for the batch, then echo it; raises ``SimulatedCrash`` when told to."""
        self.calls += 1
        if not batch:
            return []
        every = self.options.crash_every
        if every and self.calls % every == 0:
            raise SimulatedCrash(f"simulated crash on call {self.calls} (crash_every={every})")
        if any(frame.params.crash for frame in batch):
            _crash_natively(self.options.crash_native)
            raise SimulatedCrash("simulated crash (a frame asked for it)")
        time.sleep((self.options.cost_ms + self.options.per_item_ms * (len(batch) - 1)) / 1000)
        return [
            PipelineError("simulated frame failure (fail=true)")
            if frame.params.fail
            else echo(frame)
            for frame in batch
        ]


def _crash_natively(how: str | None) -> None:
    if how == "segv":
        ctypes.string_at(0)
    elif how == "abort":
        os.abort()
    elif how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


class SimulatedCodecOptions(SimulatedOptions):
    """Options of ``simulated-codec``: the model's, and how results are encoded."""

    output: Literal["image/jpeg", "image/png", "image/webp"] = "image/jpeg"
    quality: int = Field(default=80, ge=1, le=100)
    progressive: bool = True
    optimize: bool = False
    subsampling: Subsampling | None = None


class SimulatedCodec(Simulated):
    """``simulated`` between a real decode (``prepare``) and encode (``finish``)."""

    name = "simulated-codec"
    options_model = SimulatedCodecOptions
    options: SimulatedCodecOptions

    def prepare(self, frame: FrameIn[SimulatedParams]) -> Image.Image:
        """Decode the frame (``BadContent`` for bytes that aren't what they claim)."""
        return decode(frame.payload, frame.content_type, frame.width, frame.height)

    def process(self, batch: Sequence[FrameIn[SimulatedParams]]) -> list[Any]:
        """Sleep like the model, then pass each decoded image on to ``finish``."""
        answers = super().process(batch)
        return [
            answer if isinstance(answer, EaselError) else frame.data
            for frame, answer in zip(batch, answers, strict=True)
        ]

    def finish(self, frame: FrameIn[SimulatedParams], output: Any) -> Answer:
        """Encode the image as the options say."""
        options = self.options
        return encode(
            output,
            options.output,
            quality=options.quality,
            progressive=options.progressive,
            optimize=options.optimize,
            subsampling=options.subsampling,
        )
