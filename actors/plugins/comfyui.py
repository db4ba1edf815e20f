"""``comfyui``: canvas frames through a ComfyUI workflow template on the fleet.

Each frame becomes the ``image`` input of the template's ``image_node`` (re-encoded
as PNG by ``prepare``, on the stage pool); the session's params fill the template's
fields (``{"inputs": {"<node id>.<input>": value}}``); the first image of
``output_node`` (or of any output node) answers the frame. Which server runs it is
the fleet's business (:mod:`actors.comfyui.frames`): a ready one that has what the
template needs, the least loaded, another one if it fails; option ``server`` pins
one by id or name.

A blocking kind that ``uses_context``: its replica's thread hands each batch to the
engine's :class:`~actors.comfyui.frames.FrameRouter` and waits, while the HTTP work
runs on the engine's loop, never blocking it. Per frame: no ready server that can run
the template is ``overloaded``; a refused workflow is ``workflow_rejected`` with the
node errors; an unreachable server (after one retry elsewhere), a failed workflow or
a frame past ``timeout`` is ``pipeline_error``. The pipeline itself lives on.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from actors.comfyui.frames import FrameImage, FrameRouter, FrameWork
from engine.errors import BadParams, EaselError, Invalid

from .api import Answer, FrameIn, FrameOut, Params, Pipeline, PipelineConfig
from .codec import decode
from .context import PluginContext

__all__ = ["ComfyUi", "ComfyUiOptions", "ComfyUiParams"]


class ComfyUiParams(Params):
    """Template fields to set for a frame: ``"<node id>.<input>"`` → value."""

    inputs: dict[str, Any] = Field(default_factory=dict)


class ComfyUiOptions(Params):
    """The workflow template of a ``comfyui`` pipeline, and where it may run."""

    workflow: dict[str, Any] = Field(description="API format; node id → {class_type, inputs}")
    image_node: str = Field(description="the node (LoadImage) whose image input is the frame")
    output_node: str | None = Field(default=None, description="whose first image answers")
    server: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="id or name of the one fleet server to use (default: any able one)",
    )
    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="the URL of a registered server to use: the same as naming it in"
        " ``server`` (pipelines stored before the fleet named their server so)",
    )
    timeout: float = Field(default=30.0, gt=0, le=600)

    def check(self) -> None:
        node = self.workflow.get(self.image_node)
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            raise ValueError(f"image_node {self.image_node!r} is not a node with inputs")


class ComfyUi(Pipeline[ComfyUiParams]):
    """Runs each frame through a workflow on a server of the ComfyUI fleet."""

    name = "comfyui"
    params_model = ComfyUiParams
    options_model = ComfyUiOptions
    options: ComfyUiOptions
    uses_context = True

    def __init__(self, config: PipelineConfig, context: PluginContext | None = None) -> None:
        super().__init__(config, context)
        try:
            self.options.check()
        except ValueError as error:
            raise Invalid(str(error)) from None
        if self.context.comfyui is None:
            raise Invalid("the comfyui kind needs an engine with the ComfyUI fleet")
        self._router: FrameRouter = self.context.comfyui

    def prepare(self, frame: FrameIn[ComfyUiParams]) -> bytes:
        """The frame as PNG (on the stage pool). Raises ``BadContent``."""
        image = decode(frame.payload, frame.content_type, frame.width, frame.height)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def process(self, batch: Sequence[FrameIn[ComfyUiParams]]) -> list[Answer]:
        """Every frame of the batch at once on the fleet; waits for all of them."""
        answers: list[Answer | None] = [None] * len(batch)
        works: list[tuple[int, FrameWork]] = []
        for index, frame in enumerate(batch):
            try:
                works.append((index, self._work(frame)))
            except EaselError as error:
                answers[index] = error
        results = self._router.run_blocking([work for _, work in works])
        for (index, _), result in zip(works, results, strict=True):
            answers[index] = (
                FrameOut(result.data, result.content_type)
                if isinstance(result, FrameImage)
                else result
            )
        return [answer for answer in answers if answer is not None]

    def _work(self, frame: FrameIn[ComfyUiParams]) -> FrameWork:
        prompt = copy.deepcopy(self.options.workflow)
        for field, value in frame.params.inputs.items():
            node_id, _, input_name = field.partition(".")
            node = prompt.get(node_id)
            if not input_name or not isinstance(node, dict):
                raise BadParams(f"inputs: {field!r} names no node of the workflow")
            node.setdefault("inputs", {})[input_name] = value
        return FrameWork(
            prompt=prompt,
            image_node=self.options.image_node,
            image=frame.data,
            output_node=self.options.output_node,
            server=self.options.server or self.options.url,
            timeout=self.options.timeout,
        )
