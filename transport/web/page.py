"""``GET /``: the canvas page, and ``/static/…``: its files, with caching and a strict CSP.

Every file under ``static/`` is read once, when this module is imported (they are
small and ship with the package). ``index.html`` names its assets under
``/static/<version>/``, where the version is a hash of every asset: those URLs never
change content, so browsers may keep them for a year. Unversioned ``/static/<file>``
URLs (for other apps importing ``easel-client.js``) and the page itself are
revalidated on every use through their ``ETag``.

The page runs no inline script or style and loads nothing from another origin; the
``Content-Security-Policy`` below says so to the browser.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Final

from aiohttp import web

from transport.auth import Role, requires

__all__ = [
    "CSP",
    "IMMUTABLE",
    "REVALIDATE",
    "STATIC_VERSION",
    "Asset",
    "load_assets",
    "routes",
]

routes = web.RouteTableDef()

CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""Only this origin's scripts, styles, images and connections (WebSocket included)."""

IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"

SECURITY_HEADERS: Final = MappingProxyType(
    {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
)

_TYPES: Final = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".json": "application/json",
        ".txt": "text/plain; charset=utf-8",
        ".md": "text/plain; charset=utf-8",
    }
)

_VERSION_MARK: Final = "{{static}}"


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as served: its bytes, content type and strong ETag."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, name: str, body: bytes) -> Asset:
        suffix = name[name.rfind(".") :] if "." in name else ""
        content_type = _TYPES.get(suffix) or (
            mimetypes.guess_type(name)[0] or "application/octet-stream"
        )
        return cls(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _walk(folder: Traversable, prefix: str = "") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            files.update(_walk(entry, name + "/"))
        elif entry.is_file():
            files[name] = entry.read_bytes()
    return files


def load_assets(folder: Traversable | None = None) -> tuple[str, Asset, dict[str, Asset]]:
    """Read the static folder: the version, the page, and the assets by relative path."""
    root = folder if folder is not None else resources.files("transport.web") / "static"
    files = _walk(root)
    page = files.pop("index.html")
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    version = digest.hexdigest()[:16]
    html = page.replace(_VERSION_MARK.encode(), f"/static/{version}".encode())
    return version, Asset.of("index.html", html), {n: Asset.of(n, b) for n, b in files.items()}


STATIC_VERSION, _PAGE, _ASSETS = load_assets()


def _serve(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    if asset.etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    body = b"" if request.method == "HEAD" else asset.body
    return web.Response(body=body, headers=headers)


@routes.get("/")
@requires(Role.PUBLIC)
async def index(request: web.Request) -> web.Response:
    """The canvas page."""
    return _serve(request, _PAGE, REVALIDATE)


@routes.get("/static/{path:.+}")
@requires(Role.PUBLIC)
async def static(request: web.Request) -> web.Response:
    """An asset: immutable under the current version, revalidated otherwise."""
    path = request.match_info["path"]
    version, _, rest = path.partition("/")
    if version == STATIC_VERSION and rest in _ASSETS:
        return _serve(request, _ASSETS[rest], IMMUTABLE)
    asset = _ASSETS.get(path)
    if asset is None and len(version) == len(STATIC_VERSION) and rest in _ASSETS:
        asset = _ASSETS[rest]  # a page of an older version: serve, but don't pin it
    if asset is None:
        raise web.HTTPNotFound(text=f"no static file {path!r}")
    return _serve(request, asset, REVALIDATE)
