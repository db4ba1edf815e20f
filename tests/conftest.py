from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from tests.support import PgCluster, Secantus, running_pg_cluster

# Crash tests log tracebacks on purpose; keep the output readable.
logging.getLogger("engine").setLevel(logging.CRITICAL)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with running_pg_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    if uri := os.environ.get("MONGODB_URI"):
        yield uri
        return
    server = Secantus()
    try:
        yield server.uri
    finally:
        server.stop()
