"""Prometheus metrics, one ``CollectorRegistry`` per engine (never the global one).

Labels are kinds (``session``, ``pipeline`` …), never actor ids, so cardinality stays
bounded however many actors run.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from engine.system import ActorSystem

__all__ = ["ActorMetrics", "Timings", "new_registry"]

_FAST_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


class Timings:
    """One actor's message-handling histogram, written by that actor's thread alone.

    ``prometheus_client.Histogram.observe`` takes a lock per bucket touched, which
    was a visible share of a loop→loop ask. An actor handles one message at a time on
    one thread, so its counts need no lock; scrapes read them (under the GIL) and add
    them up by kind.
    """

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_FAST_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(_FAST_BUCKETS, seconds)] += 1
        self.total += seconds

    def add(self, other: Timings) -> None:
        for index, count in enumerate(other.counts):
            self.counts[index] += count
        self.total += other.total


class ActorMetrics(Collector):
    """Actor counts by kind and state, restarts, mailbox depth, handling time, dead letters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._system: ActorSystem | None = None
        self.restarts = Counter(
            "easel_actor_restarts", "Actor restarts by kind.", ["kind"], registry=registry
        )
        self._retired: dict[str, Timings] = {}
        """Timings of actors that are gone, by kind, so counters never go back."""
        self.dead_letters = Counter(
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

    def retire(self, kind: str, timings: Timings) -> None:
        """Keep the counts of an actor that stopped for good."""
        self._retired.setdefault(kind, Timings()).add(timings)

    def restarted(self, kind: str) -> None:
        self.restarts.labels(kind).inc()

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
        states: Tally[tuple[str, str]] = Tally()
        depths: Tally[str] = Tally()
        timings: dict[str, Timings] = {}
        for kind, retired in self._retired.items():
            timings.setdefault(kind, Timings()).add(retired)
        if self._system is not None:
            for cell in self._system.cells():
                states[(cell.kind, str(cell.state))] += 1
                depths[cell.kind] += len(cell.mailbox)
                timings.setdefault(cell.kind, Timings()).add(cell.timings)
        for (kind, state), count in sorted(states.items()):
            actors.add_metric([kind, state], count)
        for kind, total in sorted(depths.items()):
            depth.add_metric([kind], total)
        seconds = self._seconds_family()
        bounds = [*(str(b) for b in _FAST_BUCKETS), "+Inf"]
        for kind, timing in sorted(timings.items()):
            running, cumulative = 0, []
            for bound, count in zip(bounds, timing.counts, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            seconds.add_metric([kind], cumulative, sum_value=timing.total)
        yield actors
        yield depth
        yield seconds
