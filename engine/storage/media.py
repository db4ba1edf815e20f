"""Media: metadata in the database, bytes in a directory under the data dir.

Files are written to a temporary name and renamed into place, so a reader never
sees half a file. File I/O runs in a worker thread (``asyncio.to_thread``), never on
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from blake3 import blake3

from engine.errors import EaselError, Invalid, NotFound
from engine.storage.metrics import StoreMetrics
from engine.storage.records import Media, Page, new_id
from engine.storage.repository import MAX_LIMIT, Repository
from engine.storage.table import Table, TableSpec

__all__ = ["MAX_MEDIA_BYTES", "MEDIA", "MediaFiles", "MediaRepository"]

MEDIA = TableSpec(
    "media",
    Media,
    indexes=(("owner", "blake3"), ("owner", "filename"), ("job_id",), ("expires_at",), ("owner",)),
)
MAX_MEDIA_BYTES = 256 * 1024 * 1024


class MediaFiles:
    """Bytes by media id under ``root``: ``root/<last 2 hex digits>/<id>`` (the random end
    of the id, so files spread evenly over 256 directories)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, media_id: str) -> Path:
        if not media_id.isalnum():
            raise NotFound(f"media/{media_id} not found")
        return self.root / media_id[-2:] / media_id

    def _write(self, media_id: str, data: bytes) -> tuple[str, str]:
        digests = hashlib.sha256(data).hexdigest(), f"blake3:{blake3(data).hexdigest()}"
        path = self._path(media_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return digests

    def _read(self, media_id: str) -> bytes:
        try:
            return self._path(media_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"media/{media_id} has no bytes") from None

    async def write(self, media_id: str, data: bytes) -> tuple[str, str]:
        """Store ``data`` as ``media_id`` and return its SHA-256 (hex) and BLAKE3
        (``blake3:<hex>``), all in a worker thread: hashing 256 MiB would hold the loop
        for a second."""
        return await asyncio.to_thread(self._write, media_id, data)

    def _share(self, source: str, media_id: str) -> None:
        path, origin = self._path(media_id), self._path(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(origin, path)  # one blob, two names: deleting either keeps the other
        except FileNotFoundError:
            raise NotFound(f"media/{source} has no bytes") from None
        except OSError:
            shutil.copyfile(origin, path)  # a file system without hard links

    async def share(self, source: str, media_id: str) -> None:
        """Give ``media_id`` the bytes of ``source`` without writing them again. Raises
        ``NotFound`` when ``source`` has none."""
        await asyncio.to_thread(self._share, source, media_id)

    def path(self, media_id: str) -> Path:
        """Where the bytes of ``media_id`` are (for serving ranges). Raises ``NotFound``."""
        return self._path(media_id)

    async def read(self, media_id: str) -> bytes:
        """The bytes of ``media_id``. Raises ``NotFound``."""
        return await asyncio.to_thread(self._read, media_id)

    async def remove(self, media_id: str) -> None:
        """Delete the bytes of ``media_id`` if they exist."""
        await asyncio.to_thread(self._path(media_id).unlink, missing_ok=True)


class MediaRepository(Repository[Media]):
    """Media records and their bytes."""

    def __init__(self, table: Table[Media], metrics: StoreMetrics, files: MediaFiles) -> None:
        super().__init__(table, metrics)
        self._files = files

    async def put(
        self,
        data: bytes,
        content_type: str,
        filename: str = "",
        *,
        owner: str | None = None,
        job_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> Media:
        """Store bytes and their metadata (``job_id``: the job that made them;
        ``expires_at``: when the retention sweep deletes them). Raises ``Invalid`` if
        larger than the limit."""
        if len(data) > MAX_MEDIA_BYTES:
            raise Invalid(f"media larger than {MAX_MEDIA_BYTES} bytes")
        media_id = new_id()
        # A task of its own: cancelling ``put`` can't stop the worker thread, so the
        # cleanup waits for it before removing what it wrote.
        write = asyncio.ensure_future(self._files.write(media_id, data))
        try:
            sha256, blake = await asyncio.shield(write)
            return await self._create(
                id=media_id,
                content_type=content_type,
                filename=filename,
                size=len(data),
                sha256=sha256,
                blake3=blake,
                owner=owner,
                job_id=job_id,
                expires_at=expires_at,
            )
        except BaseException:
            await asyncio.shield(self._discard(media_id, write))
            raise

    async def mint(
        self,
        source: Media,
        *,
        filename: str,
        owner: str | None,
        expires_at: datetime | None = None,
    ) -> Media:
        """A new record over the bytes of ``source`` (shared on disk, not copied)."""
        media_id = new_id()
        share = asyncio.ensure_future(self._files.share(source.id, media_id))
        try:
            await asyncio.shield(share)
            return await self._create(
                id=media_id,
                content_type=source.content_type,
                filename=filename,
                size=source.size,
                sha256=source.sha256,
                blake3=source.blake3,
                owner=owner,
                expires_at=expires_at,
            )
        except BaseException:
            await asyncio.shield(self._discard(media_id, share))
            raise

    async def by_hash(
        self, owner: str | None, blake: str, filename: str | None = None
    ) -> Media | None:
        """The newest of ``owner``'s media (anyone's for ``None``) with these bytes
        (``blake3:<hex>``), and this file name if given."""
        where: dict[str, Any] = {"blake3": blake}
        if owner is not None:
            where["owner"] = owner
        if filename is not None:
            where["filename"] = filename
        return await self._newest("by_hash", where)

    async def by_name(self, owner: str | None, filename: str) -> Media | None:
        """The newest of ``owner``'s media (anyone's for ``None``) with this file name."""
        where: dict[str, Any] = {"filename": filename}
        if owner is not None:
            where["owner"] = owner
        return await self._newest("by_name", where)

    async def _newest(self, operation: str, where: dict[str, Any]) -> Media | None:
        async with self._op(operation):
            page = await self._table.find(
                where, limit=1, offset=0, order=("created_at", "id"), descending=True, count=False
            )
        return page.items[0] if page.items else None

    async def of_job(self, job_id: str) -> tuple[Media, ...]:
        """The media a job produced."""
        async with self._op("of_job"):
            page = await self._table.find({"job_id": job_id}, limit=MAX_LIMIT, offset=0)
        return page.items

    async def due(self, moment: datetime, *, limit: int) -> tuple[Media, ...]:
        """Up to ``limit`` media whose ``expires_at`` is before ``moment``."""
        async with self._op("due"):
            page = await self._table.find(
                {}, limit=limit, offset=0, order=("expires_at", "id"), below=(moment, "")
            )
        return page.items

    async def _discard(self, media_id: str, write: asyncio.Future[Any]) -> None:
        # The bytes of a put that failed or was cancelled, unless its record was
        # stored after all (cancelled once the insert had committed): a file without
        # a record costs disk, a record without its file is broken. When the
        # database can't tell, the file stays.
        with contextlib.suppress(Exception):
            await write
        try:
            await self._table.get(media_id)
        except NotFound:
            await self._files.remove(media_id)
        except EaselError:
            pass

    def path(self, media_id: str) -> Path:
        """Where the bytes of a media record are on disk (to serve ranges of them)."""
        return self._files.path(media_id)

    async def read(self, media_id: str) -> bytes:
        """The bytes of a media record. Raises ``NotFound``."""
        await self.get(media_id)
        return await self._files.read(media_id)

    async def list(
        self,
        *,
        content_type: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Media]:
        """A page of media records (of ``owner`` if given), oldest first. Raises ``Invalid``."""
        return await self._list(limit, offset, content_type=content_type, owner=owner)

    async def delete(self, record_id: str) -> None:
        """Delete the record, then its bytes. Raises ``NotFound``."""
        await super().delete(record_id)
        await self._files.remove(record_id)
