"""The WebSocket side: one socket per client id, and every event in one ordered stream.

Events are queued and sent by a single publisher task, as a real server's message
loop does, so every socket sees them in the order they were raised. An event for a
client id goes only to the socket registered under that id (nowhere if there is
none); an event without one goes to every socket.

Binary frames are a 4-byte big-endian event type and a payload:
``PREVIEW_IMAGE`` (1) carries a 4-byte image format (1 JPEG, 2 PNG) and the image;
``PREVIEW_IMAGE_WITH_METADATA`` (4) carries a 4-byte metadata length, that much
JSON, and the image. (Type 3, progress text, is used by API nodes only.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

__all__ = [
    "PREVIEW_IMAGE",
    "PREVIEW_IMAGE_WITH_METADATA",
    "Hub",
    "encode_preview",
    "encode_preview_with_metadata",
]

log = logging.getLogger(__name__)

PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2  # internal in a real server; never on the wire
TEXT = 3  # progress text from API nodes; the fake has none, so never sends it
PREVIEW_IMAGE_WITH_METADATA = 4

IMAGE_FORMATS = {"JPEG": 1, "PNG": 2}


def encode_preview(image_format: str, image: bytes) -> bytes:
    """A legacy preview frame: ``[1][format][image]``."""
    return struct.pack(">II", PREVIEW_IMAGE, IMAGE_FORMATS[image_format]) + image


def encode_preview_with_metadata(metadata: dict[str, Any], image: bytes) -> bytes:
    """A preview frame for clients that asked for metadata: ``[4][n][n bytes JSON][image]``."""
    blob = json.dumps(metadata).encode()
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(blob)) + blob + image


class Hub:
    """Sockets by client id, and the publisher that sends every event in order.

    ``client_id`` and ``last_node_id`` are the executing prompt's client and node: a
    socket that connects under that client id mid-run is told the current node.
    """

    def __init__(self, queue_info: Callable[[], dict[str, Any]], features: dict[str, Any]) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self._queue_info = queue_info
        self._features = features
        self._messages: asyncio.Queue[tuple[str | int, Any, str | None]] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._transports: dict[web.WebSocketResponse, asyncio.Transport] = {}
        self.closed = False

    def start(self) -> None:
        self._publisher = asyncio.get_running_loop().create_task(self._publish())

    def kill(self) -> None:
        """Stop sending at once (the sockets are dropped with the connections)."""
        self.closed = True
        if self._publisher is not None:
            self._publisher.cancel()

    # -- raising events ---------------------------------------------------------

    def send(self, event: str, data: Any, sid: str | None = None) -> None:
        """Queue a JSON event for ``sid`` (``None``: every socket)."""
        if not self.closed:
            self._messages.put_nowait((event, data, sid))

    def send_bytes(self, frame: bytes, sid: str | None = None) -> None:
        """Queue an encoded binary frame for ``sid`` (``None``: every socket)."""
        if not self.closed:
            self._messages.put_nowait((0, frame, sid))

    def queue_updated(self) -> None:
        """Broadcast the queue size, as a real server does on every queue change."""
        self.send("status", {"status": self._queue_info()})

    def wants_metadata(self, sid: str | None) -> bool:
        """Whether the socket of ``sid`` asked for previews with metadata."""
        if sid is None:
            return False
        flags = self.metadata.get(sid, {}).get("feature_flags", {})
        return bool(flags.get("supports_preview_metadata"))

    # -- sending ------------------------------------------------------------------

    async def _publish(self) -> None:
        while True:
            event, data, sid = await self._messages.get()
            if sid is None:
                targets = list(self.sockets.values())
            else:
                socket = self.sockets.get(sid)
                targets = [] if socket is None else [socket]
            for ws in targets:
                await self._send_one(ws, event, data)
            self._messages.task_done()

    async def flush(self) -> None:
        """Wait until every queued event has been sent."""
        if self._publisher is not None and not self._publisher.done():
            await self._messages.join()

    @staticmethod
    async def _send_one(ws: web.WebSocketResponse, event: str | int, data: Any) -> None:
        try:
            if isinstance(event, int):
                await ws.send_bytes(data)
            else:
                await ws.send_json({"type": event, "data": data})
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as err:
            log.debug("send error: %s", err)

    # -- sockets --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """``GET /ws?clientId=``: register the socket, greet it, read its frames."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        sid = request.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self.metadata[sid] = {"feature_flags": {}}
        if request.transport is not None:
            self._transports[ws] = request.transport
        try:
            await ws.send_json(
                {"type": "status", "data": {"status": self._queue_info(), "sid": sid}}
            )
            if self.client_id == sid and self.last_node_id is not None:
                await ws.send_json({"type": "executing", "data": {"node": self.last_node_id}})
            first = True
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    first = await self._client_frame(ws, sid, msg.data, first)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            # As in a real server: whichever socket of this id closes, the id is
            # forgotten, even if a newer socket had taken it over.
            self.sockets.pop(sid, None)
            self.metadata.pop(sid, None)
            self._transports.pop(ws, None)
            if task is not None:
                self._handlers.discard(task)
        return ws

    async def _client_frame(
        self, ws: web.WebSocketResponse, sid: str, text: str, first: bool
    ) -> bool:
        """Answer the optional feature-flags handshake; returns whether the next
        frame still counts as the first (a frame that is not a JSON object does not
        count, as in a real server)."""
        try:
            data = json.loads(text)
            if first and data.get("type") == "feature_flags":
                self.metadata.setdefault(sid, {})["feature_flags"] = data.get("data", {})
                await ws.send_json({"type": "feature_flags", "data": self._features})
        except (ValueError, AttributeError):
            return first
        return False

    async def drop(self, code: int | None = None) -> None:
        """Drop every socket: abruptly (no close frame, the client sees 1006) when
        ``code`` is ``None``, otherwise with a close frame carrying ``code``."""
        for ws, transport in list(self._transports.items()):
            if code is None:
                transport.abort()
                continue
            try:  # aiohttp gives up waiting for the client's answer after 10 s
                await ws.close(code=code, message=b"dropped by the fake")
            except (ConnectionError, RuntimeError):
                transport.abort()
        # Let the handlers see the drop and unregister before anyone reconnects.
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=2)
