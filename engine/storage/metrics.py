"""Pool health and query latency as Prometheus metrics, on a registry the caller owns.

=================================  =========  ==========================================
``easel_db_pool_size``             gauge      connections the pool keeps
``easel_db_pool_checked_out``      gauge      connections in use right now
``easel_db_pool_overflow``         gauge      connections open beyond ``pool_size``
``easel_db_pool_wait_seconds``     histogram  time to get a connection from the pool
``easel_db_query_seconds``         histogram  time of one repository operation, by
                                              ``operation`` (``projects.create`` …)
``easel_db_errors_total``          counter    failed operations by ``operation`` and
                                              ``code`` (``unavailable``, ``conflict`` …)
=================================  =========  ==========================================
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.errors import EaselError

__all__ = ["PoolStatus", "StoreMetrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStatus:
    """A snapshot of a connection pool."""

    size: int
    checked_out: int
    overflow: int


class _PoolCollector(Collector):
    """Reads the pool at scrape time, so the gauges are never stale."""

    def __init__(self, status: Callable[[], PoolStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        for name, value, doc in (
            ("size", status.size, "Connections the pool keeps."),
            ("checked_out", status.checked_out, "Connections in use."),
            ("overflow", status.overflow, "Connections open beyond the pool size."),
        ):
            yield GaugeMetricFamily(f"easel_db_pool_{name}", doc, value=value)


class StoreMetrics:
    """The store's metrics, registered once on ``registry``.

    ``pool_status`` is called at each scrape (on the scraping thread); it must only
    read counters.
    """

    def __init__(self, registry: CollectorRegistry, pool_status: Callable[[], PoolStatus]) -> None:
        self.wait_seconds = Histogram(
            "easel_db_pool_wait_seconds",
            "Time to get a connection from the pool.",
            registry=registry,
            buckets=_BUCKETS,
        )
        self.query_seconds = Histogram(
            "easel_db_query_seconds",
            "Time of one repository operation.",
            ["operation"],
            registry=registry,
            buckets=_BUCKETS,
        )
        self.errors = Counter(
            "easel_db_errors",
            "Repository operations that failed, by error code.",
            ["operation", "code"],
            registry=registry,
        )
        self._collector = _PoolCollector(pool_status)
        self._registry = registry
        registry.register(self._collector)

    @asynccontextmanager
    async def operation(self, name: str) -> AsyncIterator[None]:
        """Time one repository operation and count it if it fails with an engine error."""
        start = time.perf_counter()
        try:
            yield
        except EaselError as exc:
            self.errors.labels(name, exc.code).inc()
            raise
        finally:
            self.query_seconds.labels(name).observe(time.perf_counter() - start)

    def unregister(self) -> None:
        """Remove every metric from the registry (when the store closes)."""
        for collector in (self.wait_seconds, self.query_seconds, self.errors, self._collector):
            self._registry.unregister(collector)
