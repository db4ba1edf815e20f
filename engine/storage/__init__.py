"""Persistence: repositories behind one contract, on SQL (SQLAlchemy async) or MongoDB.

The engine calls :func:`open_store` once and ``await store.close()`` at shutdown;
everything else is a repository attribute of :class:`Store` (``store.projects``,
``store.jobs`` …). Errors are the engine's own: ``NotFound``, ``Conflict``,
``Invalid``, ``Unauthorized`` (API keys) and ``Unavailable`` (database unreachable).
"""

from engine.storage.api_keys import ApiKeys
from engine.storage.media import MediaRepository
from engine.storage.metrics import PoolStatus
from engine.storage.projects import Clips, Projects, Scenes
from engine.storage.records import (
    ApiKey,
    Clip,
    ClipPatch,
    ComfyServer,
    ComfyServerPatch,
    Job,
    JobOutput,
    JobPatch,
    JobStatus,
    Media,
    NewApiKey,
    NewClip,
    NewComfyServer,
    NewJob,
    NewProject,
    NewScene,
    NewSession,
    Page,
    PipelineConfigPatch,
    PipelineConfigRecord,
    Project,
    ProjectPatch,
    Role,
    Scene,
    ScenePatch,
    SessionPatch,
    SessionRecord,
    SessionStatus,
)
from engine.storage.repository import ComfyServers, Jobs, PipelineConfigs, Sessions
from engine.storage.store import Store, open_store

__all__ = [
    "ApiKey",
    "ApiKeys",
    "Clip",
    "ClipPatch",
    "Clips",
    "ComfyServer",
    "ComfyServerPatch",
    "ComfyServers",
    "Job",
    "JobOutput",
    "JobPatch",
    "JobStatus",
    "Jobs",
    "Media",
    "MediaRepository",
    "NewApiKey",
    "NewClip",
    "NewComfyServer",
    "NewJob",
    "NewProject",
    "NewScene",
    "NewSession",
    "Page",
    "PipelineConfigPatch",
    "PipelineConfigRecord",
    "PipelineConfigs",
    "PoolStatus",
    "Project",
    "ProjectPatch",
    "Projects",
    "Role",
    "Scene",
    "ScenePatch",
    "Scenes",
    "SessionPatch",
    "SessionRecord",
    "SessionStatus",
    "Sessions",
    "Store",
    "open_store",
]
