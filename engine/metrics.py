"""Prometheus metrics, one ``CollectorRegistry`` per engine (never the global one).

Labels are kinds (``session``, ``pipeline`` …), never actor ids, so cardinality stays
bounded however many actors run.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from engine.system import ActorSystem

__all__ = ["ActorMetrics", "new_registry"]

_FAST_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


class ActorMetrics(Collector):
    """Actor counts by kind and state, restarts, mailbox depth, handling time, dead letters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._system: ActorSystem | None = None
        self.restarts = Counter(
            "easel_actor_restarts", "Actor restarts by kind.", ["kind"], registry=registry
        )
        self.message_seconds = Histogram(
            "easel_actor_message_seconds",
            "Seconds an actor spent handling one message or micro-batch.",
            ["kind"],
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
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

    def message_observer(self, kind: str) -> Callable[[float], None]:
        return self.message_seconds.labels(kind).observe

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

    def collect(self) -> Iterator[Metric]:
        actors = GaugeMetricFamily(
            "easel_actors", "Actors by kind and state.", labels=["kind", "state"]
        )
        depth = GaugeMetricFamily(
            "easel_actor_mailbox_depth", "Messages waiting, summed by kind.", labels=["kind"]
        )
        states: Tally[tuple[str, str]] = Tally()
        depths: Tally[str] = Tally()
        if self._system is not None:
            for cell in self._system.cells():
                states[(cell.kind, str(cell.state))] += 1
                depths[cell.kind] += len(cell.mailbox)
        for (kind, state), count in sorted(states.items()):
            actors.add_metric([kind, state], count)
        for kind, total in sorted(depths.items()):
            depth.add_metric([kind], total)
        yield actors
        yield depth
