"""The data dir: one process at a time owns it.

The embedded SQLite database, its record cache, the media files and the node id
(``node-id``) live there, and a second process on the same directory would corrupt
the first one's cache. :meth:`DataDir.claim` takes an exclusive lock on
``<data-dir>/.lock`` (``flock``; ``msvcrt.locking`` on Windows) and writes its pid
there so a refusal can name the owner; the operating system drops the lock when
the process ends, however it ends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.errors import Conflict

__all__ = ["DataDir", "DataDirInUse"]

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

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._fd: int | None = lock_fd

    @classmethod
    def claim(cls, path: Path) -> DataDir:
        """Create ``path`` if needed and lock it. Raises ``DataDirInUse`` when another
        process holds it (a second claim in this process is refused the same way)."""
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            owner = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(
                f"data dir {path} is in use by another Easel process (pid {owner or 'unknown'})"
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        """Unlock the directory. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            _unlock(fd)
            os.close(fd)


def _read_pid(fd: int) -> str | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode(errors="replace").strip()
    return text if text.isdigit() else None
