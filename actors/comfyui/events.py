"""What a ComfyUI server's WebSocket sends: JSON events and binary previews.

Text frames are ``{"type": ..., "data": ...}``. Binary frames start with a 4-byte
big-endian event type: 1 is a preview (a 4-byte image format, 1 JPEG or 2 PNG, then
the image), 4 a preview with metadata (a 4-byte length, that much JSON, then the
image); others are ignored.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["ComfyEvent", "EventStream", "Preview", "parse_binary"]

_PREVIEW_IMAGE = 1
_PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}


@dataclass(frozen=True, slots=True)
class ComfyEvent:
    """A JSON frame from the WebSocket: ``{"type": ..., "data": ...}``."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_id(self) -> str | None:
        value = self.data.get("prompt_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Preview:
    """A binary preview frame: the image, its type, and metadata when the server sent any."""

    image: bytes
    content_type: str
    metadata: dict[str, Any] = field(default_factory=dict)


def parse_binary(frame: bytes) -> Preview | None:
    """A preview from a binary frame, or ``None`` for a frame of another type."""
    if len(frame) < 8:
        return None
    event, second = struct.unpack(">II", frame[:8])
    if event == _PREVIEW_IMAGE:
        return Preview(frame[8:], _IMAGE_TYPES.get(second, "application/octet-stream"))
    if event == _PREVIEW_IMAGE_WITH_METADATA and len(frame) >= 8 + second:
        try:
            metadata = json.loads(frame[8 : 8 + second])
        except ValueError:
            return None
        if not isinstance(metadata, dict):
            return None
        kind = str(metadata.get("image_type", "application/octet-stream"))
        return Preview(frame[8 + second :], kind, metadata)
    return None


class EventStream:
    """The events of one WebSocket: iterate for :class:`ComfyEvent` and :class:`Preview`
    items; iteration ends when the socket closes (for whatever reason)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client_id: str) -> None:
        self._ws = ws
        self.client_id = client_id

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    def __aiter__(self) -> AsyncIterator[ComfyEvent | Preview]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[ComfyEvent | Preview]:
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                event = _event(message.data)
                if event is not None:
                    yield event
            elif message.type == aiohttp.WSMsgType.BINARY:
                preview = parse_binary(message.data)
                if preview is not None:
                    yield preview

    async def close(self) -> None:
        await self._ws.close()


def _event(text: str) -> ComfyEvent | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return None
    data = frame.get("data")
    return ComfyEvent(frame["type"], data if isinstance(data, dict) else {})
