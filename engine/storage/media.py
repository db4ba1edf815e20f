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
import tempfile
from pathlib import Path

from engine.errors import EaselError, Invalid, NotFound
from engine.storage.metrics import StoreMetrics
from engine.storage.records import Media, Page, new_id
from engine.storage.repository import Repository
from engine.storage.table import Table, TableSpec

__all__ = ["MAX_MEDIA_BYTES", "MEDIA", "MediaFiles", "MediaRepository"]

MEDIA = TableSpec("media", Media)
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

    def _write(self, media_id: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
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
        return digest

    def _read(self, media_id: str) -> bytes:
        try:
            return self._path(media_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"media/{media_id} has no bytes") from None

    async def write(self, media_id: str, data: bytes) -> str:
        """Store ``data`` as ``media_id`` and return its SHA-256 (hex), both in a worker
        thread: hashing 256 MiB would hold the loop for a second."""
        return await asyncio.to_thread(self._write, media_id, data)

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
        self, data: bytes, content_type: str, filename: str = "", *, owner: str | None = None
    ) -> Media:
        """Store bytes and their metadata. Raises ``Invalid`` if larger than the limit."""
        if len(data) > MAX_MEDIA_BYTES:
            raise Invalid(f"media larger than {MAX_MEDIA_BYTES} bytes")
        media_id = new_id()
        # A task of its own: cancelling ``put`` can't stop the worker thread, so the
        # cleanup waits for it before removing what it wrote.
        write = asyncio.ensure_future(self._files.write(media_id, data))
        try:
            sha256 = await asyncio.shield(write)
            return await self._create(
                id=media_id,
                content_type=content_type,
                filename=filename,
                size=len(data),
                sha256=sha256,
                owner=owner,
            )
        except BaseException:
            await asyncio.shield(self._discard(media_id, write))
            raise

    async def _discard(self, media_id: str, write: asyncio.Future[str]) -> None:
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
