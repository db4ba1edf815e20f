"""Find pipeline kinds by name: the built-ins, then plug-ins from Python entry points.

A third-party package declares its pipelines in the ``easel.pipelines`` entry-point
group; the entry point's name is the kind and must equal the class's ``name``::

    # pyproject.toml of the package "easel-depth"
    [project.entry-points."easel.pipelines"]
    depth = "easel_depth.pipeline:DepthPipeline"

Once that distribution is installed in the engine's environment, a config with
``kind: depth`` works. Entry points are listed when the catalog is built and imported
only when their kind is first asked for, so a heavy plug-in (torch…) costs nothing
until it is used. A built-in's name can't be taken over by an entry point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final, TypeAlias

from engine.errors import NotFound, PipelineError

from .api import Pipeline
from .imagefx import ImageFx
from .passthrough import Passthrough
from .simulated import Simulated, SimulatedCodec

__all__ = [
    "BUILTIN_PIPELINES",
    "ENTRY_POINT_GROUP",
    "EntryPointSource",
    "PipelineCatalog",
    "PluginClass",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "easel.pipelines"

PluginClass: TypeAlias = type[Pipeline[Any]]
EntryPointSource: TypeAlias = Callable[[str], Iterable[EntryPoint]]
"""Given a group name, the entry points in it (``importlib.metadata`` by default)."""

BUILTIN_PIPELINES: Final[tuple[PluginClass, ...]] = (
    Passthrough,
    ImageFx,
    Simulated,
    SimulatedCodec,
)


def installed_entry_points(group: str) -> Iterable[EntryPoint]:
    """The entry points of ``group`` declared by installed distributions."""
    return entry_points(group=group)


class PipelineCatalog:
    """The pipeline kinds one engine knows. Safe to use from any thread.

    ``builtins`` are registered directly; ``entry_points`` lists the plug-ins (inject a
    function in tests instead of installing a distribution).
    """

    def __init__(
        self,
        builtins: Iterable[PluginClass] = BUILTIN_PIPELINES,
        entry_points: EntryPointSource = installed_entry_points,
    ) -> None:
        self._loaded: dict[str, PluginClass] = {kind.name: kind for kind in builtins}
        self._pending: dict[str, EntryPoint] = {}
        for entry in entry_points(ENTRY_POINT_GROUP):
            if entry.name in self._loaded or entry.name in self._pending:
                log.warning("pipeline entry point %s ignored: kind already known", entry)
                continue
            self._pending[entry.name] = entry

    def kinds(self) -> list[str]:
        """Every known kind, sorted (without importing any plug-in)."""
        return sorted(self._loaded.keys() | self._pending.keys())

    def get(self, kind: str) -> PluginClass:
        """The pipeline class of ``kind``, importing its plug-in on first use.

        Raises ``NotFound`` for an unknown kind and ``PipelineError`` when a plug-in
        fails to import or isn't a ``Pipeline`` subclass named after its entry point.
        """
        found = self._loaded.get(kind)
        if found is not None:
            return found
        entry = self._pending.get(kind)
        if entry is None:
            raise NotFound(f"no pipeline kind {kind!r}; known: {', '.join(self.kinds())}")
        found = _load(entry)
        self._loaded[kind] = found
        return found


def _load(entry: EntryPoint) -> PluginClass:
    try:
        loaded = entry.load()
    except Exception as exc:  # a broken plug-in must not take the catalog down
        log.exception("pipeline plug-in %s failed to import", entry)
        raise PipelineError(f"pipeline plug-in {entry.value!r} failed to import: {exc}") from None
    if not (isinstance(loaded, type) and issubclass(loaded, Pipeline)):
        raise PipelineError(f"pipeline plug-in {entry.value!r} is not a Pipeline subclass")
    if getattr(loaded, "name", None) != entry.name:
        raise PipelineError(
            f"pipeline plug-in {entry.value!r} is named {getattr(loaded, 'name', None)!r}, "
            f"but its entry point is {entry.name!r}"
        )
    return loaded
