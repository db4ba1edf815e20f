"""The data dir: one process at a time owns it.

The embedded SQLite database, its record cache, the media files and the node id
live there, and a second process on the same directory would corrupt the first
one's cache. :meth:`DataDir.claim` takes an exclusive lock on ``<data-dir>/.lock``
(``flock``; ``msvcrt.locking`` on Windows) and writes its pid there so a refusal
can name the owner; the operating system drops the lock when the process ends,
however it ends.

The node id (``<data-dir>/node-id``, made on the first claim) names the engine node
this directory belongs to, for records several nodes may share a database with.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

from engine.errors import Conflict

__all__ = ["DataDir", "DataDirInUse"]

_NODE_ID = re.compile(r"[0-9a-f]{32}")

if sys.platform == "win32":
    import msvcrt

    # Windows locks are mandatory: lock a byte past the pid, which others must read.
    _LOCKED_BYTE = 1 << 20

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class DataDirInUse(Conflict):
    """Another process (or another store of this one) owns the data dir."""

    title = "Data dir in use"


class DataDir:
    """A data dir this process owns until :meth:`release`. Build it with :meth:`claim`."""

    def __init__(self, path: Path, lock_fd: int, node_id: str) -> None:
        self.path = path
        self.node_id = node_id
        """This node's id: 32 hex digits, the same every time the directory is claimed."""
        self._fd: int | None = lock_fd

    @classmethod
    def claim(cls, path: Path) -> DataDir:
        """Create ``path`` if needed, lock it and read its node id (made on the first
        claim). Raises ``DataDirInUse`` when another process holds it (a second claim
        in this process is refused the same way), ``ValueError`` when ``node-id``
        does not hold one."""
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            owner = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(
                f"data dir {path} is in use by another Easel process (pid {owner or 'unknown'})"
            )
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
            node_id = _node_id(path / "node-id")
        except BaseException:
            _unlock(fd)
            os.close(fd)
            raise
        return cls(path, fd, node_id)

    @classmethod
    def visit(cls, path: Path) -> DataDir:
        """Use ``path`` without owning it, beside the process that does (short
        administrative writes such as ``easel apikey``, which the owner reads from the
        database). Nothing is locked and no node id is made."""
        path.mkdir(parents=True, exist_ok=True)
        node_file = path / "node-id"
        node_id = node_file.read_text().strip() if node_file.exists() else ""
        return cls(path, -1, node_id)

    @property
    def owned(self) -> bool:
        """Whether this process holds the directory's lock (``claim``, not ``visit``)."""
        return self._fd is not None and self._fd >= 0

    def release(self) -> None:
        """Unlock the directory. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None and fd >= 0:
            _unlock(fd)
            os.close(fd)


def _read_pid(fd: int) -> str | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode(errors="replace").strip()
    return text if text.isdigit() else None


def _node_id(path: Path) -> str:
    # Under the lock, so no other process makes one at the same time; written to a
    # file of its own first, so a crash never leaves a half-written id behind.
    if not path.exists():
        fresh = path.with_name(path.name + ".new")
        fresh.write_text(uuid.uuid4().hex + "\n")
        os.replace(fresh, path)
    node_id = path.read_text().strip()
    if not _NODE_ID.fullmatch(node_id):
        raise ValueError(f"{path} does not hold a node id (32 hex digits): {node_id[:40]!r}")
    return node_id
