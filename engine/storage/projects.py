"""Projects → scenes (ordered, reorderable) → clips (on a scene's timeline).

Deleting a project deletes its scenes and clips; deleting a scene deletes its clips
and closes the gap in its project's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Sequence
from typing import Any

from engine.errors import Invalid, NotFound
from engine.storage.metrics import StoreMetrics
from engine.storage.records import (
    Clip,
    ClipPatch,
    Media,
    NewClip,
    NewProject,
    NewScene,
    Page,
    Project,
    ProjectPatch,
    Record,
    Scene,
    ScenePatch,
    now,
)
from engine.storage.repository import Repository
from engine.storage.table import Child, Table, TableSpec

__all__ = ["CLIPS", "MAX_SCENES", "PROJECTS", "SCENES", "Clips", "Projects", "Scenes"]

MAX_SCENES = 1000
"""Scenes one project may hold (reordering reads them all at once)."""

PROJECTS = TableSpec(
    "projects",
    Project,
    unique=(("owner", "name"),),
    null_is_value=("owner",),
    retired=(("name",),),
    children=(Child("scenes", "project_id"), Child("clips", "project_id")),
)
SCENES = TableSpec(
    "scenes",
    Scene,
    order=("position", "id"),
    indexes=(("project_id", "position"),),
    children=(Child("clips", "scene_id"),),
)
CLIPS = TableSpec(
    "clips", Clip, order=("start", "id"), indexes=(("project_id",), ("scene_id", "start"))
)


class Projects(Repository[Project]):
    """Projects; names are unique per owner. ``delete`` cascades to scenes and clips."""

    async def create(self, new: NewProject, *, owner: str | None = None) -> Project:
        """Create a project owned by the key ``owner``. Raises ``Conflict`` if the
        owner has a project of that name (another owner's is no conflict)."""
        return await self._create(**new.model_dump(), owner=owner)

    async def list(
        self, *, owner: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[Project]:
        """A page of projects (of ``owner`` if given), oldest first. Raises ``Invalid``."""
        return await self._list(limit, offset, owner=owner)

    async def update(self, record_id: str, patch: ProjectPatch) -> Project:
        """Rename or describe a project. Raises ``NotFound``, ``Conflict`` (its owner
        has a project of the new name)."""
        return await self._patch(record_id, patch)


class Scenes(Repository[Scene]):
    """The scenes of projects, kept in a dense 0-based order per project.

    ``create``, ``delete`` and ``reorder`` of one project's scenes run one at a time
    (a per-project ``asyncio.Lock``), so concurrent calls can't duplicate a position
    or leave a gap. That holds within one process: several engines writing the same
    database would need the database to serialise them (``SELECT … FOR UPDATE`` on
    the project row), which this does not do.
    """

    def __init__(
        self, table: Table[Scene], metrics: StoreMetrics, projects: Table[Project]
    ) -> None:
        super().__init__(table, metrics)
        self._projects = projects
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _ordering(self, project_id: str) -> asyncio.Lock:
        # Weak values: a project's lock lives only while someone holds or awaits it.
        lock = self._locks.get(project_id)
        if lock is None:
            lock = self._locks[project_id] = asyncio.Lock()
        return lock

    async def create(self, project_id: str, new: NewScene) -> Scene:
        """Append a scene to a project.

        Raises ``NotFound`` if the project is missing (or deleted meanwhile),
        ``Invalid`` if it already holds ``MAX_SCENES`` scenes.
        """
        async with self._ordering(project_id):
            await self._projects.get(project_id)
            count = (await self._table.find({"project_id": project_id}, limit=1, offset=0)).total
            if count >= MAX_SCENES:
                raise Invalid(f"a project holds at most {MAX_SCENES} scenes")
            scene = await self._create(project_id=project_id, position=count, **new.model_dump())
        await _unless_orphaned(self, scene, self._projects, project_id)
        return scene

    async def list(self, project_id: str, *, limit: int = 50, offset: int = 0) -> Page[Scene]:
        """A page of a project's scenes in order. Raises ``Invalid``."""
        return await self._list(limit, offset, project_id=project_id)

    async def update(self, record_id: str, patch: ScenePatch) -> Scene:
        """Rename a scene. Raises ``NotFound``."""
        return await self._patch(record_id, patch)

    async def delete(self, record_id: str) -> None:
        """Delete a scene and its clips, and close the gap. Raises ``NotFound``."""
        scene = await self.get(record_id)
        async with self._ordering(scene.project_id):
            await super().delete(record_id)
            remaining = await self._all(scene.project_id)
            await self._renumber(tuple(s.id for s in remaining), remaining)

    async def reorder(self, project_id: str, scene_ids: Sequence[str]) -> tuple[Scene, ...]:
        """Put a project's scenes in the order given and return them in that order.

        ``scene_ids`` must name every scene of the project exactly once: otherwise
        raises ``Invalid``. Raises ``NotFound`` if the project is missing.
        """
        async with self._ordering(project_id):
            await self._projects.get(project_id)
            current = await self._all(project_id)
            if sorted(scene_ids) != sorted(scene.id for scene in current):
                raise Invalid("scene_ids must list every scene of the project exactly once")
            async with self._op("reorder"):
                await self._renumber(tuple(scene_ids), current)
            return await self._all(project_id)

    async def _all(self, project_id: str) -> tuple[Scene, ...]:
        page = await self._table.find({"project_id": project_id}, limit=MAX_SCENES, offset=0)
        return page.items

    async def _renumber(self, order: tuple[str, ...], scenes: tuple[Scene, ...]) -> None:
        positions = {scene.id: scene.position for scene in scenes}
        stamp = now()
        changes = {
            scene_id: {"position": index, "updated_at": stamp}
            for index, scene_id in enumerate(order)
            if positions[scene_id] != index
        }
        if changes:
            await self._table.update_each(changes)


async def _unless_orphaned(
    repository: Repository[Any], record: Record, parents: Table[Any], parent_id: str
) -> None:
    """Undo the creation of ``record`` if its parent was deleted meanwhile.

    SQL refuses such a row (a foreign key), MongoDB does not: a parent deleted
    between the check before the insert and the insert itself would leave an orphan
    its cascade never reaches. Raises ``NotFound`` after deleting ``record``.
    """
    try:
        await parents.get(parent_id)
    except NotFound:
        with contextlib.suppress(NotFound):
            await repository.delete(record.id)
        raise


class Clips(Repository[Clip]):
    """Clips on scene timelines, each optionally referencing a media record."""

    def __init__(
        self,
        table: Table[Clip],
        metrics: StoreMetrics,
        scenes: Table[Scene],
        media: Table[Media],
    ) -> None:
        super().__init__(table, metrics)
        self._scenes = scenes
        self._media = media

    async def create(self, scene_id: str, new: NewClip) -> Clip:
        """Place a clip on a scene. Raises ``NotFound`` if the scene or the media is missing."""
        scene = await self._scenes.get(scene_id)
        if new.media_id is not None:
            await self._media.get(new.media_id)
        clip = await self._create(
            project_id=scene.project_id, scene_id=scene_id, **new.model_dump()
        )
        await _unless_orphaned(self, clip, self._scenes, scene_id)
        return clip

    async def list(
        self,
        *,
        scene_id: str | None = None,
        project_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Clip]:
        """A page of clips by timeline position, of a scene and/or project. Raises ``Invalid``."""
        return await self._list(limit, offset, scene_id=scene_id, project_id=project_id)

    async def update(self, record_id: str, patch: ClipPatch) -> Clip:
        """Move, resize or re-point a clip. Raises ``NotFound`` (clip or media)."""
        if patch.media_id is not None:
            await self._media.get(patch.media_id)
        return await self._patch(record_id, patch)
