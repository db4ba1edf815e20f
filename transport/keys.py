"""Typed keys under which the app holds what its handlers need."""

from __future__ import annotations

from aiohttp import web

from actors.domain import Domain
from engine.engine import Engine
from engine.storage import Store

__all__ = ["DOMAIN", "ENGINE", "STORE"]

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
DOMAIN: web.AppKey[Domain] = web.AppKey("domain", Domain)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
