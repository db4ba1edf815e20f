"""The fleet: registered ComfyUI servers, one supervised actor each under ``/comfyui``.

Servers are stored (``store.comfy_servers``) and restored at start. The fleet keeps
the latest :class:`~actors.comfyui.server.ServerView` each actor reported, so the
dispatcher reads the whole fleet without asking every actor, and it forwards the
actors' socket events and state changes to whoever subscribed (the job service).
One :class:`~actors.comfyui.client.ComfyClient` per server is shared by its actor
(health, catalog, socket) and the dispatcher (submit, upload, history, view). Loop
only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from actors.comfyui.client import ComfyClient, ComfyEvent, Preview
from actors.comfyui.server import (
    Describe,
    Disable,
    Enable,
    ServerActor,
    ServerMessage,
    ServerState,
    ServerTimings,
    ServerView,
)
from engine.errors import NotFound
from engine.ref import ActorRef
from engine.settings import Settings
from engine.storage import ComfyServer, ComfyServerPatch, ComfyServers, NewComfyServer
from engine.supervisor import ActorSpec, Supervisor

__all__ = ["EventSink", "FleetService", "ViewSink"]

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, ComfyEvent | Preview], None]
"""``(server id, client id, event or preview)``, on the loop."""
ViewSink = Callable[[ServerView, ServerView | None], None]
"""``(new view, previous view)``, on the loop."""


class FleetService:
    """Register, list, describe, disable, enable and delete servers. Loop only."""

    def __init__(
        self, group: Supervisor, repo: ComfyServers, settings: Settings, node_id: str
    ) -> None:
        self._group = group
        self._repo = repo
        self._settings = settings
        self.node_id = node_id
        self._timings = ServerTimings(
            health_interval=settings.comfy_health_interval,
            catalog_interval=settings.comfy_catalog_interval,
            reconnect_max=settings.comfy_reconnect_max,
        )
        self._refs: dict[str, ActorRef[ServerMessage, ServerView]] = {}
        self._clients: dict[str, ComfyClient] = {}
        self._views: dict[str, ServerView] = {}
        self._event_sinks: list[EventSink] = []
        self._view_sinks: list[ViewSink] = []

    # --- what the actors report (ServerListener) ------------------------------------------

    def server_changed(self, view: ServerView) -> None:
        if view.id not in self._refs and view.id not in self._clients:
            return  # deleted meanwhile
        previous = self._views.get(view.id)
        self._views[view.id] = view
        for sink in self._view_sinks:
            sink(view, previous)

    def server_event(self, server_id: str, client_id: str, item: ComfyEvent | Preview) -> None:
        for sink in self._event_sinks:
            sink(server_id, client_id, item)

    def subscribe(self, events: EventSink, views: ViewSink) -> None:
        """Hear every server event and every change of a server's view."""
        self._event_sinks.append(events)
        self._view_sinks.append(views)

    # --- reading ---------------------------------------------------------------------

    def views(self) -> list[ServerView]:
        """Every server's latest view, in registration order."""
        return [self._views[i] for i in self._refs if i in self._views]

    def view(self, server_id: str) -> ServerView:
        """Raises ``NotFound``."""
        try:
            return self._views[server_id]
        except KeyError:
            raise NotFound(f"comfyui server {server_id} not found") from None

    def client(self, server_id: str) -> ComfyClient:
        """The HTTP client of a server. Raises ``NotFound``."""
        try:
            return self._clients[server_id]
        except KeyError:
            raise NotFound(f"comfyui server {server_id} not found") from None

    def client_id(self, server_id: str) -> str:
        """The WebSocket client id this node uses on that server."""
        return f"easel-{self.node_id}-{server_id}"

    def find(self, key: str) -> ServerView:
        """A server by id or name. Raises ``NotFound``."""
        if key in self._views:
            return self._views[key]
        for view in self._views.values():
            if view.name == key:
                return view
        raise NotFound(f"comfyui server {key} not found")

    async def describe(self, key: str) -> ServerView:
        """A server's view straight from its actor. Raises ``NotFound``."""
        view = self.find(key)
        return await self._refs[view.id].ask(Describe())

    # --- changing ----------------------------------------------------------------------

    async def _stored(self) -> list[ComfyServer]:
        records: list[ComfyServer] = []
        while True:
            page = await self._repo.list(limit=500, offset=len(records))
            records.extend(page.items)
            if len(records) >= page.total or not page.items:
                return records

    async def restore(self) -> None:
        """Start an actor for every stored server (disabled ones stay disabled)."""
        for record in await self._stored():
            await self._start(record)

    async def sync(self) -> None:
        """Catch up with changes other engine nodes made to the stored servers: start
        the new, forget the deleted, disable or enable as stored."""
        stored = {record.id: record for record in await self._stored()}
        for record in stored.values():
            ref = self._refs.get(record.id)
            if ref is None:
                await self._start(record)
                continue
            disabled = self._views.get(record.id)
            if disabled is not None and (disabled.state is ServerState.DISABLED) == record.enabled:
                await ref.ask(Enable() if record.enabled else Disable())
        for server_id in [i for i in self._refs if i not in stored]:
            await self._forget(server_id)

    async def register(
        self, name: str, url: str, *, max_jobs: int = 1, tags: tuple[str, ...] = ()
    ) -> ServerView:
        """Store a server and start its actor. Raises ``Conflict`` for a taken name or
        URL, ``Invalid``."""
        record = await self._repo.create(
            NewComfyServer(name=name, url=url.rstrip("/"), max_jobs=max_jobs, tags=tags)
        )
        return await self._start(record)

    async def _start(self, record: ComfyServer) -> ServerView:
        client = ComfyClient(record.url, timeout=self._settings.comfy_timeout)
        self._clients[record.id] = client
        spec = ActorSpec(
            id=record.id,
            factory=lambda: ServerActor(
                record, client, self, self.client_id(record.id), self._timings
            ),
            kind=ServerActor.kind,
        )
        try:
            ref = await self._group.start_child(spec)
        except BaseException:
            self._clients.pop(record.id, None)
            await client.close()
            raise
        assert isinstance(ref, ActorRef)
        server: ActorRef[ServerMessage, ServerView] = ref
        self._refs[record.id] = server
        return await server.ask(Describe())

    async def disable(self, key: str) -> ServerView:
        """Stop sending jobs to a server and close its socket (kept across restarts)."""
        view = self.find(key)
        await self._repo.update(view.id, ComfyServerPatch(enabled=False))
        return await self._refs[view.id].ask(Disable())

    async def enable(self, key: str) -> ServerView:
        view = self.find(key)
        await self._repo.update(view.id, ComfyServerPatch(enabled=True))
        return await self._refs[view.id].ask(Enable())

    async def delete(self, key: str) -> None:
        """Stop the actor and forget the server (its jobs in flight are queued again
        when they are next checked). Raises ``NotFound``."""
        view = self.find(key)
        await self._repo.delete(view.id)
        await self._forget(view.id)

    async def _forget(self, server_id: str) -> None:
        self._refs.pop(server_id, None)
        self._views.pop(server_id, None)
        with contextlib.suppress(NotFound):
            await self._group.terminate_child(server_id)
        client = self._clients.pop(server_id, None)
        if client is not None:
            await client.close()

    async def close(self) -> None:
        """Close every HTTP client (the actors stop with the supervision tree)."""
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
