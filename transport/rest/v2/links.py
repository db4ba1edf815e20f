"""Absolute links in Comfy API v2 answers, as the caller reached the engine.

Clients follow the links an answer carries (``urls.self``, an output's ``url``), and
the official SDK sends its key only to the origin it was configured with, so a link
must name that origin. Behind a reverse proxy the request's own scheme and ``Host``
are the proxy's view; the proxy's ``Forwarded`` header (RFC 7239, its first element)
or ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` say what the caller used, and are
honoured unless the ``forwarded_headers`` setting is off. A value that is not a
plain scheme or host is ignored, so a header can't put anything else in a link.
"""

from __future__ import annotations

import re

from aiohttp import web

from transport.keys import ENGINE

__all__ = ["origin"]

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_SCHEMES = ("http", "https")


def _first(value: str | None) -> str | None:
    """The first of a comma-separated list (the client end of a proxy chain)."""
    if not value:
        return None
    return value.split(",", 1)[0].strip() or None


def _forwarded(header: str | None) -> tuple[str | None, str | None]:
    """``(proto, host)`` of a ``Forwarded`` header's first element."""
    element = _first(header)
    proto = host = None
    for pair in (element or "").split(";"):
        name, _, value = pair.strip().partition("=")
        value = value.strip().strip('"')
        if name.lower() == "proto":
            proto = value.lower()
        elif name.lower() == "host":
            host = value
    return proto, host


def origin(request: web.Request) -> str:
    """``scheme://host[:port]`` as the caller reached the engine."""
    scheme, host = request.scheme, request.host
    if request.app[ENGINE].settings.forwarded_headers:
        proto, forwarded_host = _forwarded(request.headers.get("Forwarded"))
        proto = proto or _first(request.headers.get("X-Forwarded-Proto"))
        forwarded_host = forwarded_host or _first(request.headers.get("X-Forwarded-Host"))
        if proto and proto.lower() in _SCHEMES:
            scheme = proto.lower()
        if forwarded_host and _HOST.match(forwarded_host):
            host = forwarded_host
    if not _HOST.match(host):
        host = f"{request.url.host or 'localhost'}" + (
            f":{request.url.port}" if request.url.port else ""
        )
    return f"{scheme}://{host}"
