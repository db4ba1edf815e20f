"""Prometheus metrics, one ``CollectorRegistry`` per engine (never the global one).

Labels are kinds (``session``, ``pipeline`` …), never actor ids, so cardinality stays
bounded however many actors run.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from engine.system import ActorSystem

__all__ = [
    "ActorMetrics",
    "HotFamily",
    "LocalCounter",
    "LocalHistogram",
    "hot_counter",
    "hot_histogram",
    "new_registry",
]

_FAST_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


class LocalHistogram:
    """A histogram written by one thread alone, so without locks.

    ``prometheus_client.Histogram.observe`` takes a lock per bucket touched, which
    was a visible share of a loop→loop ask and of every frame. A writer that owns its
    own ``LocalHistogram`` (an actor, the loop) needs no lock; scrapes read the counts (under
    the GIL) and add them up.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = _FAST_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def add(self, other: LocalHistogram) -> None:
        for index, count in enumerate(other.counts):
            self.counts[index] += count
        self.total += other.total

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        running, pairs = 0, []
        labels = [*map(floatToGoString, self.bounds), "+Inf"]
        for bound, count in zip(labels, self.counts, strict=True):
            running += count
            pairs.append((bound, float(running)))
        return pairs


class LocalCounter:
    """A counter written by one thread alone, so without locks."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.total += amount

    def add(self, other: LocalCounter) -> None:
        self.total += other.total


Shard = TypeVar("Shard", LocalHistogram, LocalCounter)


class HotFamily(Collector, Generic[Shard]):
    """A labelled counter or histogram for hot paths: each writer thread owns shards.

    ``shard(labels)`` hands out a child nobody else writes to; the loop's writers may
    share one through ``loop_shard``. A scrape adds up the live shards and those
    handed back with ``retire`` (so totals never go back when a writer goes away).
    """

    def __init__(
        self,
        make: Callable[[], Shard],
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        histogram: bool,
    ) -> None:
        self.make: Callable[[], Shard] = make
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.histogram = histogram
        self._lock = threading.Lock()
        self._live: dict[tuple[str, ...], list[Shard]] = {}
        self._retired: dict[tuple[str, ...], Shard] = {}
        self._loop: dict[tuple[str, ...], Shard] = {}
        registry.register(self)

    def shard(self, *labels: str) -> Shard:
        """A new child for one writer; ``retire`` it when the writer is done."""
        shard = self.make()
        with self._lock:
            self._live.setdefault(labels, []).append(shard)
        return shard

    def loop_shard(self, *labels: str) -> Shard:
        """The child shared by every writer on the event loop thread (never retired)."""
        shard = self._loop.get(labels)
        if shard is None:
            shard = self._loop[labels] = self.shard(*labels)
        return shard

    def retire(self, shard: Shard, *labels: str) -> None:
        with self._lock:
            live = self._live.get(labels, [])
            if shard in live:
                live.remove(shard)
                self._retired.setdefault(labels, self.make()).add(shard)

    def _totals(self) -> dict[tuple[str, ...], Shard]:
        totals: dict[tuple[str, ...], Shard] = {}
        with self._lock:  # writers never take it: only shard() and retire() wait
            for labels, live in self._live.items():
                for member in live:
                    totals.setdefault(labels, self.make()).add(member)
            for labels, retired in self._retired.items():
                totals.setdefault(labels, self.make()).add(retired)
        return totals

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def _family(self) -> Metric:
        if self.histogram:
            return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for labels, total in sorted(self._totals().items()):
            if isinstance(family, HistogramMetricFamily) and isinstance(total, LocalHistogram):
                family.add_metric(list(labels), total.cumulative(), sum_value=total.total)
            elif isinstance(family, CounterMetricFamily):
                family.add_metric(list(labels), total.total)
        yield family


def hot_histogram(
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    buckets: Sequence[float],
    registry: CollectorRegistry,
) -> HotFamily[LocalHistogram]:
    return HotFamily(
        lambda: LocalHistogram(buckets), name, documentation, labelnames, registry, histogram=True
    )


def hot_counter(
    name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
) -> HotFamily[LocalCounter]:
    return HotFamily(LocalCounter, name, documentation, labelnames, registry, histogram=False)


class ActorMetrics(Collector):
    """Actor counts by kind and state, restarts, kills, mailbox depth, handling time,
    dead letters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._system: ActorSystem | None = None
        self.restarts = prometheus_client.Counter(
            "easel_actor_restarts", "Actor restarts by kind.", ["kind"], registry=registry
        )
        self.kills = prometheus_client.Counter(
            "easel_actor_kills",
            "Actors cut off at their shutdown timeout (cancelled, or thread abandoned), by kind.",
            ["kind"],
            registry=registry,
        )
        self._retired: dict[str, LocalHistogram] = {}
        """LocalHistogram of actors that are gone, by kind, so counters never go back."""
        self.dead_letters = prometheus_client.Counter(
            "easel_actor_dead_letters",
            "Messages that were never handled, by kind and reason.",
            ["kind", "reason"],
            registry=registry,
        )
        self.loop_lag = Histogram(
            "easel_event_loop_lag_seconds",
            "How late the event loop ran a periodic tick.",
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
        registry.register(self)

    def bind(self, system: ActorSystem) -> None:
        self._system = system

    def retire(self, kind: str, timings: LocalHistogram) -> None:
        """Keep the counts of an actor that stopped for good."""
        self._retired.setdefault(kind, LocalHistogram()).add(timings)

    def restarted(self, kind: str) -> None:
        self.restarts.labels(kind).inc()

    def killed(self, kind: str) -> None:
        self.kills.labels(kind).inc()

    def dead_letter(self, kind: str, reason: str) -> None:
        self.dead_letters.labels(kind, reason).inc()

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "easel_actors", "Actors by kind and state.", labels=["kind", "state"]
        )
        yield GaugeMetricFamily(
            "easel_actor_mailbox_depth", "Messages waiting, summed by kind.", labels=["kind"]
        )
        yield self._seconds_family()

    def _seconds_family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            "easel_actor_message_seconds",
            "Seconds an actor spent handling one message or micro-batch.",
            labels=["kind"],
        )

    def collect(self) -> Iterator[Metric]:
        actors = GaugeMetricFamily(
            "easel_actors", "Actors by kind and state.", labels=["kind", "state"]
        )
        depth = GaugeMetricFamily(
            "easel_actor_mailbox_depth", "Messages waiting, summed by kind.", labels=["kind"]
        )
        states: Counter[tuple[str, str]] = Counter()
        depths: Counter[str] = Counter()
        timings: dict[str, LocalHistogram] = {}
        for kind, retired in self._retired.items():
            timings.setdefault(kind, LocalHistogram()).add(retired)
        if self._system is not None:
            for cell in self._system.cells():
                states[(cell.kind, str(cell.state))] += 1
                depths[cell.kind] += len(cell.mailbox)
                timings.setdefault(cell.kind, LocalHistogram()).add(cell.timings)
        for (kind, state), count in sorted(states.items()):
            actors.add_metric([kind, state], count)
        for kind, total in sorted(depths.items()):
            depth.add_metric([kind], total)
        seconds = self._seconds_family()
        for kind, timing in sorted(timings.items()):
            seconds.add_metric([kind], timing.cumulative(), sum_value=timing.total)
        yield actors
        yield depth
        yield seconds
