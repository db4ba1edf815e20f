"""The aiohttp application of one server lifetime: its in-memory state, middlewares
and routes.

Every route of the real API is served twice, as ``/path`` and ``/api/path``. The
``/_fake/...`` control routes are not part of it: they are never rejected by a
fault and have no ``/api`` alias.

Middlewares, outermost first: the reject fault, then the real server's Origin
check (a request whose ``Origin`` hostname differs from a loopback ``Host`` is a
403 with an empty body). An unhandled exception becomes aiohttp's plain-text 500,
``500 Internal Server Error\\n\\nServer got itself in trouble``, which is what a
real server answers too.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from ops.fakecomfy.config import FakeConfig, Faults, FaultSwitch
from ops.fakecomfy.events import Hub
from ops.fakecomfy.executor import Executor
from ops.fakecomfy.files import Dirs
from ops.fakecomfy.image_nodes import image_nodes
from ops.fakecomfy.model_nodes import model_nodes
from ops.fakecomfy.nodes import NodeEnv, NodeType
from ops.fakecomfy.queue import PromptQueue

__all__ = ["CONTROL", "FEATURES", "STATE", "Controller", "FakeState", "make_app", "registry"]

FEATURES: dict[str, Any] = {
    "supports_preview_metadata": True,
    "supports_model_type_tags": True,
    "max_upload_size": 104857600,
    "extension": {"manager": {"supports_v4": True}},
    "node_replacements": True,
    "assets": False,
}

SERVER_500 = "500 Internal Server Error\n\nServer got itself in trouble"


def registry(names: Any = None) -> dict[str, NodeType]:
    """The node types the fake knows, limited to ``names`` when given."""
    every = {node.name: node for node in [*image_nodes(), *model_nodes()]}
    if names is None:
        return every
    unknown = [name for name in names if name not in every]
    if unknown:
        raise ValueError(f"unknown node types: {', '.join(unknown)} (known: {', '.join(every)})")
    return {name: every[name] for name in names}


class FakeState:
    """What a server holds in memory; a crash loses all of it."""

    def __init__(
        self,
        config: FakeConfig,
        dirs: Dirs,
        faults: FaultSwitch,
        die: Callable[[], None],
        drop_sockets: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.dirs = dirs
        self.faults = faults
        self.env = NodeEnv(dirs, config.models)
        self.registry = registry(config.node_types)
        self.number = 0
        self.features = {**FEATURES, "max_upload_size": config.max_upload_size}
        self.hub = Hub(lambda: self.queue.info(), self.features)  # noqa: PLW0108 - queue comes next
        self.queue = PromptQueue(self.hub.queue_updated, config.max_history)
        self.executor = Executor(
            self.queue, self.hub, self.registry, self.env, faults, die, drop_sockets
        )

    def start(self) -> None:
        self.hub.start()
        self.executor.start()

    def kill(self) -> None:
        self.executor.kill()
        self.hub.kill()


class Controller(Protocol):
    """What the ``/_fake`` routes drive (a :class:`~ops.fakecomfy.server.FakeComfy`)."""

    @property
    def faults(self) -> Faults: ...

    def update_faults(self, **changes: Any) -> Faults: ...

    def reset_faults(self) -> Faults: ...

    def die(self, restart_after: float | None = None) -> None: ...

    async def drop_websockets(self, code: int | None = None) -> None: ...

    async def refuse_connections(self, seconds: float | None = None) -> None: ...

    def describe(self) -> dict[str, Any]: ...


STATE = web.AppKey("fakecomfy.state", FakeState)
CONTROL = web.AppKey("fakecomfy.control", Controller)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


@web.middleware
async def origin_check(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return web.Response(status=403)
    if "Host" in request.headers and "Origin" in request.headers:
        host_domain: str | None = request.headers["Host"].lower()
        parsed = urllib.parse.urlparse(request.headers["Origin"])
        origin_domain: str | None = parsed.netloc.lower()
        host_parsed = urllib.parse.urlsplit("//" + str(host_domain))
        loopback = _is_loopback(host_parsed.hostname)
        if parsed.port is None:
            host_domain = host_parsed.hostname
        if host_parsed.port is None:
            origin_domain = parsed.hostname
        if loopback and host_domain and origin_domain and host_domain != origin_domain:
            return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    return await handler(request)


@web.middleware
async def reject_fault(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    switch = request.app[STATE].faults
    faults = switch.faults
    path = request.path
    if faults.reject_status is None or path.startswith("/_fake"):
        return await handler(request)
    bare = path[4:] if path.startswith("/api/") else path
    if faults.reject_paths and not any(bare.startswith(p) for p in faults.reject_paths):
        return await handler(request)
    status = faults.reject_status
    if faults.reject_count is not None:
        if faults.reject_count <= 1:
            switch.update({"reject_status": None, "reject_count": None})
        else:
            faults.reject_count -= 1
    if status == 500:
        return web.Response(status=500, text=SERVER_500)
    reason = web.Response(status=status).reason
    return web.Response(status=status, text=f"{status}: {reason}")


def make_app(
    state: FakeState,
    controller: Controller,
    api: web.RouteTableDef,
    control: web.RouteTableDef,
) -> web.Application:
    """One server lifetime's application: ``api`` routes (with their ``/api``
    aliases) and the ``control`` routes."""
    app = web.Application(
        client_max_size=state.config.max_upload_size, middlewares=[reject_fault, origin_check]
    )
    app[STATE] = state
    app[CONTROL] = controller
    aliased = web.RouteTableDef()
    for route in api:
        if isinstance(route, web.RouteDef):
            aliased.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
    app.add_routes(aliased)
    app.add_routes(api)
    app.add_routes(control)
    return app
