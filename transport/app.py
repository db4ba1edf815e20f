"""The composition root: ``create_app(settings)`` builds the engine, its tree and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from actors.domain import start_domain, supervision_tree
from actors.sessions.messages import Close
from engine.engine import Engine
from engine.errors import Conflict, EaselError
from engine.settings import Settings
from engine.storage import NewApiKey, Store, open_store
from transport import openapi, ws
from transport.auth import auth_middleware
from transport.browser import browser_middleware, security_headers
from transport.http_metrics import metrics_middleware
from transport.keys import DOMAIN, ENGINE, STORE
from transport.limits import RATE_LIMITER, RateLimiter, rate_limit_middleware
from transport.problem import error_middleware
from transport.request_ids import request_id_header, request_id_middleware
from transport.rest import apikeys, comfyui, health, jobs, media, pipelines, projects, sessions
from transport.rest.v2 import assets as v2_assets
from transport.rest.v2 import events as v2_events
from transport.rest.v2 import jobs as v2_jobs
from transport.web import page

__all__ = ["ADMIN_KEY_FILE", "create_app"]

log = logging.getLogger(__name__)


ADMIN_KEY_FILE = "admin.key"
"""Where the first start writes the admin key it creates, under the data directory."""


def _print(message: str) -> None:
    print(message, flush=True)


def create_app(settings: Settings, announce: Callable[[str], None] = _print) -> web.Application:
    """Build the aiohttp application; the engine starts and stops with it.

    ``announce`` prints what the operator must see once: the URL that carries the
    admin key created on a first start.
    """
    app = web.Application(
        middlewares=[
            request_id_middleware,
            metrics_middleware,
            error_middleware,
            browser_middleware,
            auth_middleware,
            rate_limit_middleware,
        ],
        client_max_size=settings.max_body,
    )
    engine = Engine(settings, supervision_tree())
    app[ENGINE] = engine
    app[RATE_LIMITER] = RateLimiter(settings.rate_limit, settings.rate_burst)
    routes = (
        health,
        media,
        openapi,
        pipelines,
        projects,
        sessions,
        apikeys,
        ws,
        page,
        comfyui,
        jobs,
        v2_jobs,
        v2_events,
        v2_assets,
    )
    for module in routes:
        app.add_routes(module.routes)
    app.on_response_prepare.append(security_headers)
    app.on_response_prepare.append(request_id_header)

    async def engine_lifetime(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(settings, engine.registry)
        app[STORE] = store
        engine.add_readiness_check("store", store.ping)
        await _first_start(store, settings, announce)
        try:
            await store.sessions.close_abandoned()  # its process died with them open
            await engine.start()
            try:
                app[DOMAIN] = await start_domain(engine, store)
                yield
            finally:
                await engine.stop()
                domain = app.get(DOMAIN)
                if domain is not None:
                    await domain.sessions.flush()
        finally:
            await store.close()

    async def close_connections(app: web.Application) -> None:
        # aiohttp waits for open handlers before cleanup: end sessions (1001) first,
        # all at once, each after answering the frames it has in its pipeline.
        domain = app.get(DOMAIN)
        if domain is None:
            return
        going = Close(1001, "server going away", finish=settings.shutdown_timeout)

        async def goodbye(session_id: str) -> None:
            with contextlib.suppress(EaselError):  # it ended meanwhile, or timed out
                ref = domain.sessions.ref(session_id)
                await ref.ask(going, timeout=settings.shutdown_timeout + 5.0)

        await asyncio.gather(*(goodbye(state.id) for state in domain.sessions.states()))

    app.cleanup_ctx.append(engine_lifetime)
    app.on_shutdown.append(close_connections)
    return app


def _page_url(settings: Settings, token: str) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/#key={token}"


async def _first_start(store: Store, settings: Settings, announce: Callable[[str], None]) -> None:
    """With auth off, warn; with no key at all, create an admin key, keep it in
    ``<data-dir>/admin.key`` (0600) and announce a URL that opens the page with it."""
    if settings.insecure:
        log.warning(
            "!!! AUTHENTICATION IS OFF (insecure): every caller on %s is admin."
            " Never use this beyond your own machine. !!!",
            settings.host,
        )
        return
    if await store.api_keys.any():
        return
    try:
        _key, token = await store.api_keys.create(NewApiKey(name="admin", role="admin"))
    except Conflict:
        return  # another process made it first
    path = settings.data_dir / ADMIN_KEY_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)
    announce(
        f"easel: created the admin key (kept in {path}). Open the canvas with it:\n"
        f"  {_page_url(settings, token)}"
    )
