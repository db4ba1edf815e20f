"""``comfyui``: canvas frames through a ComfyUI workflow template on a ComfyUI server.

Each frame is uploaded to the server (``/upload/image``) and becomes the ``image``
input of the template's ``image_node``; the session's params fill the template's
fields (``{"inputs": {"<node id>.<input>": value}}``); the prompt is submitted and,
once its history entry appears, the first image of ``output_node`` (or of any output
node) is fetched and answered as the frame's result.

A blocking kind: each replica's thread runs its own event loop for the
:class:`~actors.comfyui.client.ComfyClient`, so the engine's loop is never held. A
frame the server refuses is answered ``workflow_rejected`` with the node errors; a
server that can't be reached or takes longer than ``timeout`` seconds fails that
frame (``pipeline_error``); the pipeline itself lives on.
"""

from __future__ import annotations

import asyncio
import copy
import io
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator

from actors.comfyui.client import (
    ComfyClient,
    ComfyUnavailable,
    WorkflowRejected,
    history_status,
    outputs_of,
)
from engine.errors import BadParams, EaselError, Invalid, PipelineError

from .api import Answer, FrameIn, FrameOut, Params, Pipeline, PipelineConfig
from .codec import decode

__all__ = ["ComfyUi", "ComfyUiOptions", "ComfyUiParams"]

_POLL = 0.01
"""Seconds between two reads of the prompt's history entry."""


class ComfyUiParams(Params):
    """Template fields to set for a frame: ``"<node id>.<input>"`` → value."""

    inputs: dict[str, Any] = Field(default_factory=dict)


class ComfyUiOptions(Params):
    """The server and the workflow template of a ``comfyui`` pipeline."""

    url: str = Field(min_length=1, max_length=200, description="the ComfyUI server's base URL")
    workflow: dict[str, Any] = Field(description="API format; node id → {class_type, inputs}")
    image_node: str = Field(description="the node (LoadImage) whose image input is the frame")
    output_node: str | None = Field(default=None, description="whose first image answers")
    timeout: float = Field(default=30.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    def check(self) -> None:
        node = self.workflow.get(self.image_node)
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            raise ValueError(f"image_node {self.image_node!r} is not a node with inputs")


class ComfyUi(Pipeline[ComfyUiParams]):
    """Runs each frame through a workflow on one ComfyUI server."""

    name = "comfyui"
    params_model = ComfyUiParams
    options_model = ComfyUiOptions
    options: ComfyUiOptions

    def __init__(self, config: PipelineConfig) -> None:
        super().__init__(config)
        try:
            self.options.check()
        except ValueError as error:
            raise Invalid(str(error)) from None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: ComfyClient | None = None

    def load(self) -> None:
        """A loop and a client for this replica's thread."""
        self._loop = asyncio.new_event_loop()
        self._client = ComfyClient(self.options.url, timeout=self.options.timeout)

    def close(self) -> None:
        loop, client = self._loop, self._client
        if loop is None:
            return
        if client is not None:
            loop.run_until_complete(client.close())
        loop.close()
        self._loop = None

    def process(self, batch: Sequence[FrameIn[ComfyUiParams]]) -> list[Answer]:
        """One prompt per frame, one after the other (a ComfyUI server runs one at a time)."""
        assert self._loop is not None, "load() first"
        return [self._loop.run_until_complete(self._one(frame)) for frame in batch]

    async def _one(self, frame: FrameIn[ComfyUiParams]) -> Answer:
        client = self._client
        assert client is not None
        try:
            image = decode(frame.payload, frame.content_type, frame.width, frame.height)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            name = await client.upload_image(buffer.getvalue(), f"easel-{uuid.uuid4().hex}.png")
            prompt = self._prompt(name, frame.params)
            prompt_id = await client.submit(prompt, prompt_id=str(uuid.uuid4()))
            entry = await self._finished(client, prompt_id)
            outcome, data = history_status(entry)
            if outcome != "success":
                message = data.get("exception_message") or outcome
                return PipelineError(f"the workflow failed: {str(message).strip()}")
            found = [
                output
                for node, output in outputs_of(entry)
                if self.options.output_node in (None, node)
            ]
            if not found:
                return PipelineError("the workflow produced no image")
            data_bytes, content_type = await client.view(found[0])
            return FrameOut(data_bytes, content_type or "image/png")
        except WorkflowRejected as error:
            return error
        except ComfyUnavailable as error:
            return PipelineError(f"ComfyUI: {error.message}")
        except EaselError as error:
            return error

    def _prompt(self, image: str, params: ComfyUiParams) -> dict[str, Any]:
        prompt = copy.deepcopy(self.options.workflow)
        prompt[self.options.image_node]["inputs"]["image"] = image
        for field, value in params.inputs.items():
            node_id, _, input_name = field.partition(".")
            node = prompt.get(node_id)
            if not input_name or not isinstance(node, dict):
                raise BadParams(f"inputs: {field!r} names no node of the workflow")
            node.setdefault("inputs", {})[input_name] = value
        return prompt

    async def _finished(self, client: ComfyClient, prompt_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.options.timeout
        while time.monotonic() < deadline:
            entry = await client.history(prompt_id)
            if entry is not None:
                return entry
            await asyncio.sleep(_POLL)
        await client.interrupt(prompt_id)
        raise PipelineError(f"no result within {self.options.timeout}s")
