"""Typed keys under which the app holds what its handlers need."""

from __future__ import annotations

from aiohttp import web

from engine.engine import Engine

__all__ = ["ENGINE"]

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
