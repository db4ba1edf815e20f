"""Fleet and job metrics, registered on the engine's registry.

Labels are server names (declared by operators, so bounded), server states and job
states; never job ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.comfyui.server import ServerState, ServerView
from engine.storage import Job, JobStatus

__all__ = ["FleetMetrics"]

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class _ServerCollector(Collector):
    """Servers by state, and each server's queue and jobs in flight, read at scrape time."""

    def __init__(
        self, views: Callable[[], list[ServerView]], in_flight: Callable[[], dict[str, int]]
    ) -> None:
        self._views = views
        self._in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        views = self._views()
        by_state = GaugeMetricFamily(
            "easel_comfyui_servers", "ComfyUI servers by state.", labels=["state"]
        )
        for state in ServerState:
            by_state.add_metric([state.value], sum(v.state is state for v in views))
        queue = GaugeMetricFamily(
            "easel_comfyui_queue_remaining",
            "Prompts running or pending on each server (its own count).",
            labels=["server"],
        )
        flight = GaugeMetricFamily(
            "easel_comfyui_in_flight",
            "Jobs this node last counted dispatched or running on each server (all nodes).",
            labels=["server"],
        )
        counted = self._in_flight()
        for view in views:
            queue.add_metric([view.name], view.queue_remaining)
            flight.add_metric([view.name], counted.get(view.id, 0))
        yield by_state
        yield queue
        yield flight

    def describe(self) -> Iterator[Metric]:
        return iter(())


class FleetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self.oldest_queued = Gauge(
            "easel_jobs_oldest_queued_age_seconds",
            "Seconds the job that has waited longest in the queue has waited (last count).",
            registry=registry,
        )
        self.jobs = Gauge(
            "easel_jobs",
            "Jobs by state (queued, dispatched, running: last count).",
            ["state"],
            registry=registry,
        )
        self.finished_jobs = Counter(
            "easel_jobs_finished",
            "Jobs this node ended, by final state.",
            ["state"],
            registry=registry,
        )
        self.duration = Histogram(
            "easel_job_duration_seconds",
            "From submission to the end, by final state.",
            ["state"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.dispatch_latency = Histogram(
            "easel_job_dispatch_latency_seconds",
            "From queued (submitted or re-queued) to dispatched to a server.",
            buckets=_SECONDS,
            registry=registry,
        )
        self.redispatches = Counter(
            "easel_job_redispatches",
            "Jobs queued again after their server lost them.",
            registry=registry,
        )
        self.takeovers = Counter(
            "easel_job_lease_takeovers",
            "Jobs taken over from a node whose lease expired.",
            registry=registry,
        )
        self.expired = Counter(
            "easel_jobs_expired",
            "Jobs this node ended expired: their retention ran out before they ended.",
            registry=registry,
        )
        self.retention_deleted = Counter(
            "easel_retention_deleted",
            "Records this node deleted once their retention ran out, by kind (job, media).",
            ["kind"],
            registry=registry,
        )
        self._collector: _ServerCollector | None = None

    def watch_servers(
        self, views: Callable[[], list[ServerView]], in_flight: Callable[[], dict[str, int]]
    ) -> None:
        """Export the fleet's servers (once per engine)."""
        if self._collector is None:
            self._collector = _ServerCollector(views, in_flight)
            self._registry.register(self._collector)

    def finished(self, job: Job) -> None:
        self.finished_jobs.labels(job.status.value).inc()
        if job.finished_at is not None:
            seconds = (job.finished_at - job.created_at).total_seconds()
            self.duration.labels(job.status.value).observe(max(0.0, seconds))

    def counted(self, totals: dict[JobStatus, int], oldest_queued: float = 0.0) -> None:
        """The last count of jobs by state, and the seconds the longest-waiting queued
        job has waited (0 with none queued)."""
        for status, total in totals.items():
            self.jobs.labels(status.value).set(total)
        self.oldest_queued.set(oldest_queued)
