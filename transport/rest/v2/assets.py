"""``/api/v2/assets``: Comfy API v2 assets, which are the engine's media.

::

    POST   /api/v2/assets                  multipart upload (content_type, file_path,
                                           expected_hash?, tags*, expires_in?, file)
    POST   /api/v2/assets/from-hash        a new asset over bytes the caller has stored
    HEAD   /api/v2/assets/by-hash/{hash}   200 if the caller may mint from it, else 404
    GET    /api/v2/assets/{id}             the asset
    DELETE /api/v2/assets/{id}             the record (bytes shared with another stay)
    GET    /api/v2/assets/{id}/content     the bytes; ``Range`` answers 206 (or 416)

Assets are owned by the key that stored them and addressed by a content hash,
``blake3:<hex>``, computed by the engine from the bytes it received (a declared
``expected_hash`` is checked, never trusted). Two assets over the same bytes share
one file on disk. A caller may mint only from bytes it stored itself: anyone else's
answer exactly as bytes that do not exist. Uploads are images (PNG, JPEG, WebP, GIF,
sniffed from the bytes as on ``/api/v1/media``). A job's outputs are assets too; one
can't be deleted while its job is kept, nor an input while a job that takes it has
not ended (409 ``asset_in_use``).

An asset's ``file_path`` is also how a workflow may name it: an input such as
``"photo.png"`` that is the file path of one of the submitter's assets is that
asset (see :mod:`actors.comfyui.assets`).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from blake3 import blake3
from pydantic import BaseModel, ConfigDict, Field

from actors.comfyui.media import media_inputs
from engine.errors import Conflict, Invalid, NotFound, PayloadTooLarge
from engine.storage import JobStatus, Media, Store
from engine.storage.records import now
from transport.auth import Role, principal, requires
from transport.keys import ENGINE, STORE
from transport.rest.bodies import BadRequest, body_deadline, json_response, read_body
from transport.rest.media import sniff
from transport.rest.v2.errors import PREFIX, BlobNotFound, HashMismatch
from transport.rest.v2.links import origin
from transport.rest.v2.schema import Asset

__all__ = ["ASSETS", "describe", "routes"]

routes = web.RouteTableDef()

ASSETS = PREFIX + "/assets"
ONE = ASSETS + "/{asset_id}"
_HASH = re.compile(r"^blake3:[0-9a-f]{64}$")
_PATH = re.compile(r"^[^/\\\x00-\x1f\x7f][^\\\x00-\x1f\x7f]{0,254}$")
_URL_LIFETIME = timedelta(hours=1)
"""How long an asset's ``url`` is said to be good for (it needs the caller's key
anyway, so it is not a secret and does not really expire)."""
_ENVELOPE = 64 * 1024
"""Bytes of a multipart body that are not the file (boundaries, headers, fields)."""
_CHUNK = 256 * 1024
_MAX_FIELD = 4096
_MAX_TAGS = 32
_PARTS = ("file", "content_type", "file_path", "expected_hash", "tags", "expires_in")
"""The parts an upload may have (``tags`` may repeat): anything else is refused, so a
body can't be made of countless fields."""


class AssetInUse(Conflict):
    code = "asset_in_use"


class _Retention(BaseModel):
    expires_in: int | None = Field(default=None, ge=60, le=604_800)


class FromHash(_Retention):
    """A new asset over bytes the caller already stored."""

    model_config = ConfigDict(extra="forbid")

    hash: str = Field(max_length=71, description="blake3:<hex>")
    file_path: str | None = Field(default=None, max_length=255)
    tags: list[str] = Field(default_factory=list, max_length=_MAX_TAGS)


def _store(request: web.Request) -> Store:
    return request.app[STORE]


def describe(request: web.Request, media: Media, created_new: bool | None = None) -> Asset:
    """The asset as Comfy API v2 shows it."""
    return Asset(
        id=media.id,
        hash=media.blake3,
        size_bytes=media.size,
        content_type=media.content_type,
        file_path=media.filename or None,
        created_new=created_new,
        created_at=media.created_at,
        url=f"{origin(request)}{ASSETS}/{media.id}/content",
        url_expires_at=now() + _URL_LIFETIME,
        expires_at=media.expires_at,
        job_id=media.job_id,
    )


def _answer(asset: Asset, status: int = 200) -> web.Response:
    body = asset.model_dump(mode="json")
    if body["created_new"] is None:
        del body["created_new"]  # said only when an asset is made
    return json_response(body, status=status)


def _hash(raw: str) -> str:
    value = raw.strip().lower()
    if not _HASH.match(value):
        raise Invalid("a hash is written blake3:<64 hex digits>")
    return value


def _file_path(raw: str | None) -> str:
    """A placement path: relative, no ``..``, printable, at most 255 characters."""
    if raw is None or raw == "":
        return ""
    if not _PATH.match(raw) or ".." in raw.split("/"):
        raise Invalid("file_path is a relative path of at most 255 printable characters")
    return raw


def _expiry(expires_in: int | None) -> datetime | None:
    return now() + timedelta(seconds=expires_in) if expires_in is not None else None


async def _own(request: web.Request) -> Media:
    """The asset in the path if it is the caller's. Raises ``NotFound``."""
    asset_id = request.match_info["asset_id"]
    try:
        media = await _store(request).media.get(asset_id) if asset_id.isalnum() else None
    except NotFound:
        media = None
    if media is None or not principal(request).owns(media.owner):
        raise NotFound(f"no asset {asset_id[:64]}")
    return media


class _Upload:
    """The fields and file of a multipart upload."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.tags: list[str] = []
        self.data = b""
        self.filename: str | None = None


async def _read_upload(request: web.Request, limit: int) -> _Upload:
    if request.content_type != "multipart/form-data":
        raise Invalid("send multipart/form-data with the fields file, content_type, file_path")
    declared = request.content_length
    if declared is not None and declared > limit + _ENVELOPE:
        raise PayloadTooLarge(f"the file is larger than the limit of {limit} bytes", limit=limit)
    upload = _Upload()
    try:
        async with body_deadline(request, limit + _ENVELOPE):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name not in _PARTS:
                    raise BadRequest(f"the parts are {', '.join(_PARTS)}; each named once")
                await _read_part(part, upload, limit)
                if len(upload.tags) + len(upload.fields) > _MAX_TAGS + len(_PARTS):
                    raise BadRequest("too many parts")
    except (ValueError, RuntimeError, HttpProcessingError, ConnectionError) as error:
        raise BadRequest(f"malformed multipart body: {error}") from None
    if not upload.data:
        raise Invalid("the part 'file' is missing or empty")
    return upload


async def _read_part(part: BodyPartReader, upload: _Upload, limit: int) -> None:
    if part.name == "file":
        if upload.data:
            raise BadRequest("one part named 'file'")
        chunks: list[bytes] = []
        size = 0
        while chunk := await part.read_chunk(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"the file is larger than the limit of {limit} bytes", limit=limit
                )
            chunks.append(chunk)
        upload.data, upload.filename = b"".join(chunks), part.filename
        return
    value = b""
    while chunk := await part.read_chunk(_MAX_FIELD):  # a field is never held past its cap
        value += chunk
        if len(value) > _MAX_FIELD:
            raise Invalid(f"the field {part.name!r} is longer than {_MAX_FIELD} bytes")
    if part.name in upload.fields:
        raise BadRequest(f"the field {part.name!r} is sent twice")
    text = value.decode("utf-8", "replace")
    if part.name == "tags":
        if len(upload.tags) >= _MAX_TAGS:
            raise Invalid(f"at most {_MAX_TAGS} tags")
        upload.tags.append(text)
    else:
        upload.fields[str(part.name)] = text


def _retention(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return _Retention(expires_in=int(raw)).expires_in
    except ValueError:
        raise Invalid("expires_in is a number of seconds from 60 to 604800") from None


@routes.post(ASSETS)
@requires(Role.CLIENT)
async def upload(request: web.Request) -> web.Response:
    limit = request.app[ENGINE].settings.max_media_bytes
    sent = await _read_upload(request, limit)
    path = _file_path(sent.fields.get("file_path") or sent.filename)
    expires = _expiry(_retention(sent.fields.get("expires_in")))
    expected = sent.fields.get("expected_hash")
    content_type = await asyncio.to_thread(sniff, sent.data)
    blake = "blake3:" + (await asyncio.to_thread(lambda: blake3(sent.data).hexdigest()))
    if expected is not None and expected.strip().lower() != blake:
        raise HashMismatch(
            "the bytes received do not have the expected hash", expected=expected, actual=blake
        )
    media = _store(request).media
    owner = principal(request).key_id
    existing = await media.by_hash(owner, blake)
    if existing is not None:
        minted = await media.mint(existing, filename=path, owner=owner, expires_at=expires)
        return _answer(describe(request, minted, created_new=False))
    stored = await media.put(sent.data, content_type, path, owner=owner, expires_at=expires)
    return _answer(describe(request, stored, created_new=True), status=201)


@routes.post(ASSETS + "/from-hash")
@requires(Role.CLIENT)
async def from_hash(request: web.Request) -> web.Response:
    body = await read_body(request, FromHash)
    blake, path = _hash(body.hash), _file_path(body.file_path)
    media = _store(request).media
    owner = principal(request).key_id
    same = await media.by_hash(owner, blake, path)
    if same is not None and same.expires_at is None and body.expires_in is None:
        return _answer(describe(request, same, created_new=False))
    source = same or await media.by_hash(owner, blake)
    if source is None:
        raise BlobNotFound("no stored bytes with this hash that this key may use")
    minted = await media.mint(
        source, filename=path, owner=owner, expires_at=_expiry(body.expires_in)
    )
    return _answer(describe(request, minted, created_new=False), status=201)


@routes.route("HEAD", ASSETS + "/by-hash/{hash}")
@requires(Role.CLIENT)
async def by_hash(request: web.Request) -> web.Response:
    raw = request.match_info["hash"]
    found = None
    if _HASH.match(raw.lower()):
        found = await _store(request).media.by_hash(principal(request).key_id, raw.lower())
    return web.Response(status=200 if found is not None else 404)


@routes.get(ONE)
@requires(Role.CLIENT)
async def get_asset(request: web.Request) -> web.Response:
    return _answer(describe(request, await _own(request)))


@routes.delete(ONE)
@requires(Role.CLIENT)
async def delete_asset(request: web.Request) -> web.Response:
    asset = await _own(request)
    if await _in_use(_store(request), asset):
        raise AssetInUse("the asset can't be deleted while something still depends on it")
    await _store(request).media.delete(asset.id)
    return web.Response(status=204)


async def _in_use(store: Store, asset: Media) -> bool:
    """Whether a kept job produced ``asset``, or an unfinished job of its owner takes it
    as an input (the job would fail at dispatch without it)."""
    if asset.job_id is not None:
        try:
            await store.jobs.get(asset.job_id)
        except NotFound:
            pass
        else:
            return True
    for status in (JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.RUNNING):
        offset = 0
        while True:  # bounded: a key has at most max_queued_jobs_per_key unfinished jobs
            page = await store.jobs.list(
                status=status, owner=asset.owner, limit=500, offset=offset, count=False
            )
            if any(asset.id in media_inputs(job.prompt) for job in page.items):
                return True
            if len(page.items) < 500:
                break
            offset += 500
    return False


@routes.get(ONE + "/content")
@requires(Role.CLIENT)
async def content(request: web.Request) -> web.StreamResponse:
    """The bytes, with ``Range`` (206 / 416) and conditional requests."""
    asset = await _own(request)
    path = _store(request).media.path(asset.id)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": asset.content_type,
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )
