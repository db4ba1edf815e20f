"""What a session needs from the rest of the engine, and nothing more: ``SessionDeps``.

A session does not hold its owner (the session service): it holds this narrow
object, so it can be built and tested alone and imports nothing above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from actors.metrics import RealtimeMetrics
from actors.pipelines.handle import PipelineHandle
from actors.sessions.follow import JobFeed
from engine.settings import Settings

__all__ = ["PipelineLookup", "SessionDeps"]


class PipelineLookup(Protocol):
    """Finds a running pipeline by name (``PipelineService`` is one)."""

    def get(self, name: str) -> PipelineHandle:
        """The pipeline's handle; raises ``NotFound`` when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class SessionDeps:
    settings: Settings
    metrics: RealtimeMetrics
    pipelines: PipelineLookup
    attached_changed: Callable[[int], None]
    """Called with +1 when a session attaches a connection, -1 when it detaches."""
    ended: Callable[[str], None]
    """Called with the session's id when it ends for good (not for a restart)."""
    jobs: JobFeed | None = None
    """Where ``job.subscribe`` watches jobs; ``None``: the method is ``not_found``."""
