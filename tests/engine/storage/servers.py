"""Throwaway database servers for the storage tests: PostgreSQL and SecantusDB."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pymongo import MongoClient

from ops.pgcluster import PgCluster, free_port

__all__ = ["PgCluster", "Secantus", "free_port", "missing", "running_pg_cluster"]


def missing(what: str) -> None:
    """Skip a test whose server can't be found, but fail it on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required on CI")
    pytest.skip(f"{what} not available")


@contextmanager
def running_pg_cluster() -> Iterator[PgCluster]:
    """A started throwaway cluster, destroyed on exit; a skip (a failure on CI) without
    PostgreSQL."""
    try:
        cluster = PgCluster()
    except FileNotFoundError:
        missing("PostgreSQL (initdb)")
        raise
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


class Secantus:
    """SecantusDB (a MongoDB-compatible server, test-only) in memory on a free port."""

    def __init__(self, port: int | None = None) -> None:
        binary = Path(sys.executable).parent / "secantusd-py"
        if not binary.exists():
            missing("SecantusDB (secantusd-py)")
        self.port = port or free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        command = [str(binary), "--host", "127.0.0.1", "--port", str(self.port)]
        self._proc = subprocess.Popen(
            [*command, "--storage-path", ":memory:"],
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
