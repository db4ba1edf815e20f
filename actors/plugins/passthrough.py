"""``passthrough``: answers every frame with its own payload, the overhead baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .api import Answer, FrameIn, FrameOut, NoParams, Pipeline

__all__ = ["Passthrough", "echo"]


def echo(frame: FrameIn[Any]) -> FrameOut:
    """The frame's payload back, the same object (no copy), with its type and size."""
    return FrameOut(frame.payload, frame.content_type, frame.width, frame.height)


class Passthrough(Pipeline[NoParams]):
    """Returns its inputs untouched; measures everything but the model."""

    name = "passthrough"
    params_model = NoParams
    max_batch = 64
    blocking = False

    def process(self, batch: Sequence[FrameIn[NoParams]]) -> list[Answer]:
        """Echo each frame. Never fails."""
        return [echo(frame) for frame in batch]
