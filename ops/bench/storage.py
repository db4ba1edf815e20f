"""Repository throughput: insert, get by id and list a page, on SQLite and PostgreSQL.

Run from the repository root::

    .venv/bin/python -m ops.bench.storage [--ops 2000] [--postgres-url URL]

Without ``--postgres-url`` a throwaway PostgreSQL cluster is started (``fsync=off``,
so its insert numbers are optimistic). SQLite runs on a file in a temporary
directory with the engine's defaults (WAL, ``synchronous=NORMAL``). Prints one row
per backend and concurrency: operations per second through the public repositories.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from engine.settings import Settings
from engine.storage import NewProject, Store, open_store
from ops.pgcluster import PgCluster

CONCURRENCY = (1, 32)


async def _rate(ops: int, tasks: int, op: Callable[[int], Awaitable[object]]) -> float:
    """Run ``op(0..ops-1)`` on ``tasks`` concurrent tasks; operations per second."""
    counter = iter(range(ops))

    async def worker() -> None:
        for index in counter:
            await op(index)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return ops / (time.perf_counter() - start)


async def _measure(store: Store, ops: int, tasks: int, run: str) -> tuple[float, float, float]:
    ids: list[str] = []

    async def insert(index: int) -> None:
        ids.append((await store.projects.create(NewProject(name=f"{run}-{index}"))).id)

    rng = random.Random(1)

    async def get(_index: int) -> None:
        await store.projects.get(rng.choice(ids))

    async def page(_index: int) -> None:
        await store.projects.list(limit=50, offset=rng.randrange(max(1, len(ids) - 50)))

    return (
        await _rate(ops, tasks, insert),
        await _rate(ops, tasks, get),
        await _rate(ops, tasks, page),
    )


async def _bench(
    name: str, settings: Settings, ops: int
) -> list[tuple[str, int, float, float, float]]:
    rows = []
    store = await open_store(settings, CollectorRegistry())
    try:
        for tasks in CONCURRENCY:
            rows.append((name, tasks, *await _measure(store, ops, tasks, f"c{tasks}")))
    finally:
        await store.close()
    return rows


async def main(ops: int, postgres_url: str | None, pool_size: int) -> None:
    rows = []
    pool = {"db_pool_size": pool_size, "db_max_overflow": max(0, 32 - pool_size)}
    with tempfile.TemporaryDirectory() as tmp:
        rows += await _bench("sqlite", Settings(data_dir=Path(tmp), **pool), ops)
        cluster = None
        if postgres_url is None:
            cluster = PgCluster()
            cluster.start()
            postgres_url = await cluster.create_database()
        try:
            settings = Settings(
                data_dir=Path(tmp), database_url=postgres_url, db_auto_migrate=True, **pool
            )
            rows += await _bench("postgresql", settings, ops)
        finally:
            if cluster is not None:
                cluster.destroy()
    print(f"{ops} operations per cell, pool {pool_size} + overflow {32 - pool_size}")
    print(f"| {'backend':<10} | {'tasks':>5} | {'insert/s':>9} | {'get/s':>9} | {'list/s':>9} |")
    print(f"|{'-' * 12}|{'-' * 7}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for name, tasks, insert, get, page in rows:
        print(f"| {name:<10} | {tasks:>5} | {insert:>9.0f} | {get:>9.0f} | {page:>9.0f} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="operations per cell")
    parser.add_argument("--postgres-url", help="an existing database (postgresql+asyncpg://…)")
    parser.add_argument("--pool-size", type=int, default=16, help="SQL pool size")
    args = parser.parse_args()
    asyncio.run(main(args.ops, args.postgres_url, args.pool_size))


if __name__ == "__main__":
    cli()
