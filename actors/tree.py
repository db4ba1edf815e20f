"""The supervision tree under the engine's root (ARCHITECTURE §3)."""

from __future__ import annotations

from engine.supervisor import ChildSpec, Strategy, SupervisorSpec

__all__ = ["root_children"]


def root_children() -> tuple[ChildSpec, ...]:
    """The root's children in start order; stopped in reverse."""
    return (
        SupervisorSpec(id="pipelines", strategy=Strategy.ONE_FOR_ONE, max_restarts=10, period=30),
        SupervisorSpec(id="comfyui", strategy=Strategy.ONE_FOR_ONE, max_restarts=10, period=30),
        SupervisorSpec(id="sessions", strategy=Strategy.ONE_FOR_ONE, max_restarts=100, period=10),
    )
