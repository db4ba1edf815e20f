"""An async client of one ComfyUI server, over HTTP and its WebSocket.

It speaks the wire contract of a ComfyUI 0.28 server: JSON routes, multipart
uploads, ``POST /prompt`` with its 400 shapes, and ``/ws?clientId=`` with JSON
events and binary preview frames. It never sends an ``Origin`` header (a real
server answers 403 when ``Origin`` and a loopback ``Host`` differ). Every method
runs on the event loop.

Errors: :class:`WorkflowRejected` (a 400 from ``POST /prompt``: the workflow is
invalid; ``node_errors`` says where), :class:`ComfyUnavailable` (the server can't
be reached, timed out or answered something other than the contract) and its
special cases :class:`ComfyUnreached` (no connection could be made: the request
surely never reached the server) and :class:`ComfyRefused` (the connection was
refused: nothing listens there).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from actors.comfyui.events import ComfyEvent, EventStream, Preview, parse_binary
from engine.errors import Invalid, Unavailable

__all__ = [
    "ComfyClient",
    "ComfyEvent",
    "ComfyRefused",
    "ComfyUnavailable",
    "ComfyUnreached",
    "EventStream",
    "OutputFile",
    "Preview",
    "QueueState",
    "WorkflowRejected",
    "history_status",
    "outputs_of",
    "parse_binary",
    "started_at",
]


class WorkflowRejected(Invalid):
    """The server refused the workflow at validation (HTTP 400 on ``POST /prompt``).

    ``extra`` carries ``error`` (the server's ``{type, message, details, extra_info}``)
    and ``node_errors`` (by node id), so a REST caller sees both.
    """

    code = "workflow_rejected"
    title = "Workflow rejected by ComfyUI"

    @property
    def node_errors(self) -> dict[str, Any]:
        errors: dict[str, Any] = self.extra.get("node_errors", {})
        return errors


class ComfyUnavailable(Unavailable):
    """The ComfyUI server can't be reached or answered outside its contract."""

    code = "comfyui_unavailable"
    title = "ComfyUI server unavailable"


class ComfyUnreached(ComfyUnavailable):
    """No connection could be made to the server (refused, no route, name unknown, a
    TLS handshake refused): certain that the request never reached it."""


class ComfyRefused(ComfyUnreached):
    """The server's host refused the connection: nothing listens at its address, so a
    ComfyUI process that was there is gone, and its queue with it. (A name that does
    not resolve or a network that does not route says nothing of the process.)"""


@dataclass(frozen=True, slots=True)
class QueueState:
    """Prompt ids running and pending on a server, in its order."""

    running: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    @property
    def remaining(self) -> int:
        return len(self.running) + len(self.pending)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file a node wrote, as ``/view`` finds it."""

    filename: str
    subfolder: str = ""
    type: str = "output"


class ComfyClient:
    """HTTP and WebSocket calls to the ComfyUI server at ``base_url``.

    ``timeout`` bounds each HTTP call. The client owns its ``aiohttp`` session;
    :meth:`close` releases it. Loop only.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # No default headers: aiohttp adds no Origin on its own.
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        try:
            async with self.http.request(method, self.base_url + path, **kwargs) as response:
                yield response
        except aiohttp.ClientConnectorError as error:
            raise _unreached(f"{self.base_url}{path}", error) from error
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise ComfyUnavailable(
                f"{self.base_url}{path}: {type(error).__name__}: {error}"
            ) from error

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self._request(method, path, **kwargs) as response:
            if response.status != 200:
                raise ComfyUnavailable(f"{method} {path} answered {response.status}")
            try:
                return await response.json(content_type=None)
            except ValueError as error:
                raise ComfyUnavailable(f"{method} {path} answered non-JSON") from error

    async def _post_empty(self, path: str, body: Mapping[str, Any]) -> None:
        async with self._request("POST", path, json=dict(body)) as response:
            if response.status != 200:
                raise ComfyUnavailable(f"POST {path} answered {response.status}")

    # --- information -------------------------------------------------------------

    async def system_stats(self) -> dict[str, Any]:
        """``GET /system_stats``: version, RAM and devices."""
        stats = await self._json("GET", "/system_stats")
        if not isinstance(stats, dict):
            raise ComfyUnavailable("/system_stats is not an object")
        return stats

    async def queue(self) -> QueueState:
        """``GET /queue``: the running and pending prompt ids."""
        body = await self._json("GET", "/queue")
        try:
            return QueueState(
                tuple(str(item[1]) for item in body["queue_running"]),
                tuple(str(item[1]) for item in body["queue_pending"]),
            )
        except (KeyError, IndexError, TypeError) as error:
            raise ComfyUnavailable("/queue is not in the expected shape") from error

    async def object_info(self) -> dict[str, Any]:
        """``GET /object_info``: every node class the server knows, by name."""
        info = await self._json("GET", "/object_info")
        if not isinstance(info, dict):
            raise ComfyUnavailable("/object_info is not an object")
        return info

    async def model_folders(self) -> list[str]:
        """``GET /models``: the model folder names."""
        folders = await self._json("GET", "/models")
        return [str(name) for name in folders] if isinstance(folders, list) else []

    async def models(self, folder: str) -> list[str]:
        """``GET /models/{folder}``: the files in one model folder (``[]`` if unknown)."""
        async with self._request("GET", f"/models/{folder}") as response:
            if response.status == 404:
                return []
            if response.status != 200:
                raise ComfyUnavailable(f"GET /models/{folder} answered {response.status}")
            files = await response.json(content_type=None)
        return [str(name) for name in files] if isinstance(files, list) else []

    # --- work ----------------------------------------------------------------------

    async def upload_image(self, data: bytes, filename: str, *, overwrite: bool = False) -> str:
        """``POST /upload/image``; returns the name to use in a workflow (the server may
        rename the file, and a subfolder is part of the name)."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="application/octet-stream")
        if overwrite:
            form.add_field("overwrite", "true")
        body = await self._json("POST", "/upload/image", data=form)
        try:
            name, subfolder = str(body["name"]), str(body.get("subfolder") or "")
        except (KeyError, TypeError) as error:
            raise ComfyUnavailable("/upload/image answered without a name") from error
        return f"{subfolder}/{name}" if subfolder else name

    async def submit(
        self,
        prompt: Mapping[str, Any],
        *,
        client_id: str | None = None,
        prompt_id: str | None = None,
        number: float | None = None,
    ) -> str:
        """``POST /prompt``; returns the prompt id. ``prompt_id`` (a lowercase uuid4)
        lets the caller know the id before the answer arrives.

        Raises :class:`WorkflowRejected` on a 400, :class:`ComfyUnavailable` otherwise.
        """
        body: dict[str, Any] = {"prompt": dict(prompt)}
        if client_id is not None:
            body["client_id"] = client_id
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        if number is not None:
            body["number"] = number
        async with self._request("POST", "/prompt", json=body) as response:
            text = await response.text()
            status = response.status
        if status == 400:
            try:
                answer = json.loads(text)
            except ValueError:
                answer = {}
            error = answer.get("error") if isinstance(answer, dict) else None
            error = error if isinstance(error, dict) else {"message": text}
            node_errors = answer.get("node_errors", {}) if isinstance(answer, dict) else {}
            raise WorkflowRejected(
                str(error.get("message") or "the workflow is invalid"),
                error=error,
                node_errors=node_errors if isinstance(node_errors, dict) else {},
            )
        if status != 200:
            raise ComfyUnavailable(f"POST /prompt answered {status}")
        try:
            return str(json.loads(text)["prompt_id"])
        except (ValueError, KeyError, TypeError) as error:
            raise ComfyUnavailable("POST /prompt answered without a prompt_id") from error

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """``GET /history/{id}``: the finished prompt's entry, ``None`` until it finished
        (or when the server never had it)."""
        body = await self._json("GET", f"/history/{prompt_id}")
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    async def view(self, output: OutputFile) -> tuple[bytes, str]:
        """``GET /view``: the bytes of an output file and their content type."""
        params = {"filename": output.filename, "subfolder": output.subfolder, "type": output.type}
        async with self._request("GET", "/view", params=params) as response:
            if response.status != 200:
                raise ComfyUnavailable(f"GET /view {output.filename} answered {response.status}")
            data = await response.read()
            return data, response.content_type

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``: stop the running prompt (only ``prompt_id`` if given)."""
        await self._post_empty("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        """``POST /queue {"delete": [...]}``: drop pending prompts (running ones stay)."""
        await self._post_empty("/queue", {"delete": prompt_ids})

    async def stop_prompt(self, prompt_id: str) -> None:
        """Take one prompt off the server, pending or running: dequeue, then interrupt
        (both idempotent). Raises :class:`ComfyUnavailable`."""
        await self.delete_queued([prompt_id])
        await self.interrupt(prompt_id)

    # --- events --------------------------------------------------------------------

    async def connect_events(self, client_id: str | None = None) -> EventStream:
        """Open ``/ws?clientId=``; events for prompts submitted with that client id come
        to this socket. Raises :class:`ComfyUnavailable`."""
        client_id = client_id or uuid.uuid4().hex
        url = self.base_url + "/ws"
        try:
            ws = await self.http.ws_connect(
                url, params={"clientId": client_id}, heartbeat=None, autoping=True
            )
        except aiohttp.ClientConnectorError as error:
            raise _unreached(url, error) from error
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise ComfyUnavailable(f"{url}: {type(error).__name__}: {error}") from error
        return EventStream(ws, client_id)

    @asynccontextmanager
    async def events(self, client_id: str | None = None) -> AsyncIterator[EventStream]:
        """:meth:`connect_events` as a context that closes the socket on exit."""
        stream = await self.connect_events(client_id)
        try:
            yield stream
        finally:
            await asyncio.shield(stream.close())


def outputs_of(entry: Mapping[str, Any]) -> list[tuple[str, OutputFile]]:
    """``(node id, file)`` for every image a history entry lists, in node order."""
    found: list[tuple[str, OutputFile]] = []
    outputs = entry.get("outputs")
    if not isinstance(outputs, dict):
        return found
    for node, result in outputs.items():
        images = result.get("images", []) if isinstance(result, dict) else []
        for image in images if isinstance(images, list) else []:
            if isinstance(image, dict) and isinstance(image.get("filename"), str):
                found.append(
                    (
                        str(node),
                        OutputFile(
                            image["filename"],
                            str(image.get("subfolder") or ""),
                            str(image.get("type") or "output"),
                        ),
                    )
                )
    return found


def _unreached(where: str, error: aiohttp.ClientConnectorError) -> ComfyUnreached:
    refused = isinstance(error.os_error, ConnectionRefusedError)
    return (ComfyRefused if refused else ComfyUnreached)(f"{where}: {error}")


def started_at(entry: Mapping[str, Any]) -> datetime | None:
    """When a finished entry started executing (its ``execution_start`` message), if
    the server said."""
    status = entry.get("status")
    for message in status.get("messages", []) if isinstance(status, dict) else []:
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_start":
            stamp = message[1].get("timestamp") if isinstance(message[1], dict) else None
            if isinstance(stamp, int | float) and 0 < stamp < 2**53:
                return datetime.fromtimestamp(stamp / 1000, tz=UTC)
    return None


def history_status(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A finished entry's outcome: ``("success", {})``, ``("interrupted", data)`` or
    ``("error", execution_error data)``."""
    status = entry.get("status")
    if not isinstance(status, dict):
        return "error", {"exception_message": "history entry without a status"}
    if status.get("status_str") == "success":
        return "success", {}
    for message in status.get("messages", []):
        if isinstance(message, list) and len(message) == 2:
            kind, data = message
            if kind == "execution_interrupted":
                return "interrupted", data if isinstance(data, dict) else {}
            if kind == "execution_error":
                return "error", data if isinstance(data, dict) else {}
    return "error", {}
