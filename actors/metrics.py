"""Realtime-path metrics, registered on the engine's own registry.

Labels are pipeline names (declared by operators, so bounded) and states; never
session or actor ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RealtimeMetrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "easel_ws_connections", "Open WebSocket connections.", registry=registry
        )
        self.frames = Counter(
            "easel_frames",
            "Frames by pipeline and outcome (in, out, superseded, errored).",
            ["pipeline", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "easel_frame_latency_seconds",
            "From a frame's arrival to its RESULT being written, by pipeline.",
            ["pipeline"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.batch_size = Histogram(
            "easel_pipeline_batch_size",
            "Frames per micro-batch, by pipeline.",
            ["pipeline"],
            buckets=_BATCH,
            registry=registry,
        )
        self.process_seconds = Histogram(
            "easel_pipeline_process_seconds",
            "Seconds per process() call, by pipeline.",
            ["pipeline"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.sessions = Gauge(
            "easel_sessions",
            "Sessions by state (attached, detached).",
            ["state"],
            registry=registry,
        )
