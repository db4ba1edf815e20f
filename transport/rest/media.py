"""``/api/v1/media``: images uploaded once, served for ever under their id.

======  ==============================  =============================================
POST    /api/v1/media                   multipart/form-data, one part named ``file``
GET     /api/v1/media/{media_id}        the bytes (HEAD: the same headers, no body)
GET     /api/v1/media/{media_id}/meta   ``{id, content_type, size, sha256, …}``
DELETE  /api/v1/media/{media_id}        204
======  ==============================  =============================================

An upload is read as a stream and refused (``too_large``, 413) as soon as its file
part passes ``max_media_bytes``: an oversize body is never held whole in memory,
and the app's ``client_max_size`` (which bounds JSON bodies) does not apply to it.
The type is sniffed from the bytes, never taken from the client: PNG, JPEG, WebP or
GIF, and Pillow must decode it with sane dimensions; anything else is
``unsupported_media_type`` (415). Ids are never reused, so the bytes are served as
immutable, with the SHA-256 as their ETag.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any, Final

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from PIL import Image

from engine.errors import NotFound, PayloadTooLarge, UnsupportedMediaType
from engine.storage import Media, Store
from transport.auth import Role, principal, requires
from transport.keys import ENGINE, STORE
from transport.rest.bodies import BadRequest, body_deadline, json_response

__all__ = ["ACCEPTED", "MAX_PIXELS", "MAX_SIDE", "MEDIA", "ONE", "PART", "routes", "sniff"]

routes = web.RouteTableDef()

MEDIA: Final = "/api/v1/media"
ONE: Final = MEDIA + "/{media_id}"

ACCEPTED: Final = ("image/png", "image/jpeg", "image/webp", "image/gif")
MAX_SIDE: Final = 16384
MAX_PIXELS: Final = 8192 * 8192
"""Below Pillow's own decompression-bomb threshold; decoding one costs at most ~256 MB."""

PART: Final = "file"
_CHUNK: Final = 64 * 1024
_ENVELOPE: Final = 64 * 1024
"""What a declared ``Content-Length`` may hold beyond the limit: boundaries and part
headers. A body declared larger is refused before a byte of it is read."""
_IMMUTABLE: Final = "private, max-age=31536000, immutable"


def _magic(data: bytes) -> tuple[str, str] | None:
    """The Pillow format and content type the leading bytes announce, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG", "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP", "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF", "image/gif"
    return None


def sniff(data: bytes) -> str:
    """The content type of ``data``, from its magic number, once Pillow has decoded it.

    Blocking (a full decode of the first frame): run it in a worker thread. Raises
    ``UnsupportedMediaType`` for anything that is not a decodable PNG, JPEG, WebP or
    GIF of at most ``MAX_SIDE`` pixels a side and ``MAX_PIXELS`` in all.
    """
    found = _magic(data)
    if found is None:
        raise UnsupportedMediaType("not a PNG, JPEG, WebP or GIF image", accepted=list(ACCEPTED))
    image_format, content_type = found
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or (
                width * height > MAX_PIXELS
            ):
                raise UnsupportedMediaType(
                    f"an image of {width}x{height} is outside the limits "
                    f"({MAX_SIDE} a side, {MAX_PIXELS} pixels)",
                    accepted=list(ACCEPTED),
                )
            image.verify()
        # ``verify`` leaves the image unusable; decode from a fresh one.
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            if image_format == "JPEG":
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except UnsupportedMediaType:
        raise
    except Exception:  # hostile bytes raise whatever the decoder trips on
        raise UnsupportedMediaType(
            f"the bytes start like {image_format} but do not decode as an image",
            accepted=list(ACCEPTED),
        ) from None
    return content_type


def _filename(raw: str | None) -> str:
    """The client's file name, kept as metadata only: its last path segment, printable
    characters, at most 255 of them. It never names anything on disk."""
    if not raw:
        return ""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = name.encode("utf-8", "ignore").decode("utf-8")
    return "".join(ch for ch in name if ch.isprintable()).strip()[:255]


async def _read_upload(request: web.Request, limit: int) -> tuple[bytes, str]:
    """The bytes and file name of the one part named ``file``, read in chunks and
    refused as soon as they pass ``limit``. Raises ``UnsupportedMediaType`` (not
    multipart/form-data), ``PayloadTooLarge``, ``BadRequest``."""
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"send multipart/form-data with one part named {PART!r}, not {request.content_type}",
            accepted=["multipart/form-data"],
        )
    declared = request.content_length
    if declared is not None and declared > limit + _ENVELOPE:
        raise PayloadTooLarge(_too_large(limit), limit=limit)
    chunks: list[bytes] = []
    try:
        async with body_deadline(request, limit + _ENVELOPE):
            part = await _read_parts(request, limit, chunks)
    except (ValueError, RuntimeError, HttpProcessingError, ConnectionError) as error:
        raise BadRequest(f"malformed multipart body: {error}") from None
    size = sum(len(chunk) for chunk in chunks)
    if not size:
        raise BadRequest(f"the part {PART!r} is empty")
    return b"".join(chunks), _filename(part.filename)


async def _read_parts(request: web.Request, limit: int, chunks: list[bytes]) -> BodyPartReader:
    """Read the one file part into ``chunks`` (refused past ``limit``); the part."""
    size = 0
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != PART:
        raise BadRequest(f"the first part must be a file part named {PART!r}")
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(limit), limit=limit)
        chunks.append(chunk)
    if await reader.next() is not None:
        raise BadRequest(f"only one part, named {PART!r}, is expected")
    return part


def _too_large(limit: int) -> str:
    return f"the file is larger than the limit of {limit} bytes"


def _store(request: web.Request) -> Store:
    return request.app[STORE]


_FIELDS: Final = ("id", "content_type", "size", "sha256", "filename", "created_at")


def _describe(media: Media) -> dict[str, Any]:
    dumped = media.model_dump(mode="json")
    return {name: dumped[name] for name in _FIELDS} | {"url": f"{MEDIA}/{media.id}"}


def _media_id(request: web.Request) -> str:
    """The id in the path; one no record can have (``..``, a slash) is ``NotFound``."""
    media_id = request.match_info["media_id"]
    if not (media_id.isascii() and media_id.isalnum()):
        raise NotFound(f"media/{media_id} not found")
    return media_id


async def _record(request: web.Request) -> Media:
    """The media in the path if it is the caller's; ``NotFound`` otherwise."""
    media = await _store(request).media.get(_media_id(request))
    if not principal(request).owns(media.owner):
        raise NotFound(f"media/{media.id} not found")
    return media


@routes.post(MEDIA)
@requires(Role.CLIENT)
async def upload(request: web.Request) -> web.Response:
    limit = request.app[ENGINE].settings.max_media_bytes
    data, filename = await _read_upload(request, limit)
    content_type = await asyncio.to_thread(sniff, data)
    owner = principal(request).key_id
    media = await _store(request).media.put(data, content_type, filename, owner=owner)
    body = _describe(media)
    response = json_response(body, status=201)
    response.headers["Location"] = body["url"]
    return response


@routes.get(ONE)
@requires(Role.CLIENT)
async def download(request: web.Request) -> web.Response:
    """The bytes; HEAD answers the same headers without reading them."""
    media = await _record(request)
    headers = {
        "Cache-Control": _IMMUTABLE,
        "ETag": f'"{media.sha256}"',
        "X-Content-Type-Options": "nosniff",
    }
    matches = request.if_none_match or ()
    if any(tag.value in (media.sha256, "*") for tag in matches):
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(media.size)
        return web.Response(headers=headers, content_type=media.content_type)
    data = await _store(request).media.read(media.id)
    return web.Response(body=data, headers=headers, content_type=media.content_type)


@routes.get(ONE + "/meta")
@requires(Role.CLIENT)
async def meta(request: web.Request) -> web.Response:
    return json_response(_describe(await _record(request)))


@routes.delete(ONE)
@requires(Role.CLIENT)
async def delete(request: web.Request) -> web.Response:
    media = await _record(request)
    await _store(request).media.delete(media.id)
    return web.Response(status=204)
