"""A throwaway PostgreSQL cluster for tests and benchmarks (never for production).

``initdb`` and ``pg_ctl`` come from PATH. PostgreSQL refuses to run as root, so
under root the binaries run as the ``postgres`` user (or ``easel-pg``, created on
first use). The cluster trusts local connections, listens on 127.0.0.1 on a free
port and runs with ``fsync=off``: fast, and gone when destroyed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from ops.bench.servers import free_port

__all__ = ["PG_USER", "PgCluster", "free_port"]

PG_USER = "easel"


def _os_user() -> str | None:
    if os.getuid() != 0:
        return None
    for name in ("postgres", "easel-pg"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "easel-pg"], check=True)
    return "easel-pg"


class PgCluster:
    """A PostgreSQL cluster in a temporary directory. Raises ``FileNotFoundError``
    when ``initdb`` is not on PATH."""

    def __init__(self) -> None:
        initdb = shutil.which("initdb")
        if initdb is None:
            raise FileNotFoundError("initdb (PostgreSQL) is not on PATH")
        self._bin = Path(initdb).parent
        self._user = _os_user()
        self._dir = Path(tempfile.mkdtemp(prefix="easel-pg-"))
        self.port = free_port()
        if self._user is not None:
            shutil.chown(self._dir, self._user)
        self._run("initdb", "-D", str(self._dir / "data"), "-U", PG_USER, "-A", "trust", "-N")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy (asyncpg) URL of ``database`` on this cluster."""
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        log = str(self._dir / "log")
        self._run("pg_ctl", "-D", str(self._dir / "data"), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate`` is a crash; ``fast`` a clean shutdown)."""
        self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Stop the server if it runs and delete its files."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def create_database(self) -> str:
        """Create a fresh, empty database; returns its SQLAlchemy URL."""
        import uuid

        import asyncpg

        name = "t_" + uuid.uuid4().hex[:12]
        conn = await asyncpg.connect(self.url().replace("+asyncpg", ""))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)
