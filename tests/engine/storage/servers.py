"""Throwaway database servers for the storage tests: PostgreSQL and SecantusDB."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pymongo import MongoClient

PG_USER = "easel"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing(what: str) -> None:
    """Skip a test whose server can't be found, but fail it on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required on CI")
    pytest.skip(f"{what} not available")


def _os_user() -> str | None:
    """Who runs the PostgreSQL binaries: ourselves, or an unprivileged user under root."""
    if os.getuid() != 0:
        return None
    for name in ("postgres", "easel-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "easel-pg"], check=True)
    return "easel-pg"


class PgCluster:
    """A PostgreSQL cluster in a temporary directory on a free port (fsync off)."""

    def __init__(self) -> None:
        initdb = shutil.which("initdb")
        if initdb is None:
            missing("PostgreSQL (initdb)")
        self._bin = Path(initdb or "").parent
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
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        log = str(self._dir / "log")
        self._run("pg_ctl", "-D", str(self._dir / "data"), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class Secantus:
    """SecantusDB (a MongoDB-compatible server, test-only) in memory on a free port."""

    def __init__(self) -> None:
        binary = Path(sys.executable).parent / "secantusd-py"
        if not binary.exists():
            missing("SecantusDB (secantusd-py)")
        port = free_port()
        self.uri = f"mongodb://127.0.0.1:{port}"
        self._proc = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        client: MongoClient[dict[str, object]] = MongoClient(self.uri, serverSelectionTimeoutMS=500)
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return
                except Exception:
                    if self._proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("SecantusDB did not start") from None
                    time.sleep(0.1)
        finally:
            client.close()

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
