"""Realtime-path metrics, registered on the engine's own registry.

Labels are pipeline names (declared by operators, so bounded) and states; never
session or actor ids. What is counted per frame uses lock-free shards
(``engine.metrics.HotFamily``): the loop's writers share one shard per label set,
each pipeline replica owns its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from engine.metrics import hot_counter, hot_histogram

__all__ = ["RealtimeMetrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "easel_ws_connections", "Open WebSocket connections.", registry=registry
        )
        self.frames = hot_counter(
            "easel_frames",
            "Frames by pipeline and outcome (in, out, superseded, errored).",
            ["pipeline", "outcome"],
            registry,
        )
        self.latency = hot_histogram(
            "easel_frame_latency_seconds",
            "From a frame's arrival to its RESULT being written, by pipeline.",
            ["pipeline"],
            _LATENCY,
            registry,
        )
        self.batch_size = hot_histogram(
            "easel_pipeline_batch_size",
            "Frames per micro-batch, by pipeline.",
            ["pipeline"],
            _BATCH,
            registry,
        )
        self.process_seconds = hot_histogram(
            "easel_pipeline_process_seconds",
            "Seconds per process() call, by pipeline.",
            ["pipeline"],
            _LATENCY,
            registry,
        )
        self.sessions = Gauge(
            "easel_sessions",
            "Sessions by state (attached, detached).",
            ["state"],
            registry=registry,
        )
