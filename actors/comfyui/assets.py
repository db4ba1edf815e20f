"""What a submitted workflow refers to, checked before it is queued.

Two checks run when a job is submitted, both before anything is stored:

- **References to stored media** become ``media:<id>`` inputs (which the dispatcher
  uploads to the chosen server). A reference is either a Comfy API v2 asset object,
  ``{"__type": "core/ASSET", "info": {"id": …, "hash": …, "file_path": …}}`` (by
  ``id``, else by ``hash``), or a plain file name, such as ``"photo.png"`` in a
  ``LoadImage``, that names one of the submitter's media (its newest with that name).
  A file name that names none is left alone: it may be a file the server has. An
  asset object that names nothing of the submitter's is refused (``MissingAssets``).
- **The graph's shape**: every link names a node of the graph, and every node type is
  known to at least one server whose catalog the fleet has (when it has any).
  Problems are reported per node (``GraphRejected``), as a ComfyUI server would.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from actors.comfyui.media import MEDIA_PREFIX
from engine.errors import Invalid, NotFound
from engine.storage import Media, MediaRepository

__all__ = [
    "ASSET_TYPE",
    "GraphRejected",
    "MissingAssets",
    "check_graph",
    "resolve_references",
]

ASSET_TYPE = "core/ASSET"
_FILE_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,255}\.[A-Za-z0-9]{2,5}$")
"""What a plain input value must look like to be taken for a media file name."""


class MissingAssets(Invalid):
    """Asset references that name nothing the submitter may use."""

    code = "missing_asset"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"unresolvable asset reference(s): {', '.join(missing)}", missing_ids=missing
        )


class GraphRejected(Invalid):
    """A workflow whose graph no server could run, with the problems per node."""

    code = "invalid_workflow"

    def __init__(self, node_errors: dict[str, list[dict[str, str]]]) -> None:
        first = next(iter(node_errors.values()))[0]
        super().__init__(
            f"the workflow is invalid: {first['message']}"
            + (f" (and {len(node_errors) - 1} more node(s))" if len(node_errors) > 1 else ""),
            node_errors=node_errors,
        )


def _asset_info(value: Any) -> dict[str, Any] | None:
    """The ``info`` of an asset object, ``{}`` for a malformed one, ``None`` for a value
    that is not one."""
    if not (isinstance(value, dict) and value.get("__type") == ASSET_TYPE):
        return None
    info = value.get("info")
    return info if isinstance(info, dict) else {}


async def _asset(
    info: dict[str, Any], media: MediaRepository, owner: str | None, admin: bool
) -> Media | None:
    """The media an asset object names, if it is the owner's (anyone's for an admin)."""
    scope = None if admin else owner
    asset_id, blake = info.get("id"), info.get("hash")
    if isinstance(asset_id, str) and asset_id:
        try:
            found = await media.get(asset_id)
        except NotFound:
            return None
        return found if admin or (found.owner is not None and found.owner == owner) else None
    if isinstance(blake, str) and blake:
        return await media.by_hash(scope, blake.lower())
    return None


async def resolve_references(
    prompt: dict[str, Any], media: MediaRepository, owner: str | None, *, admin: bool = False
) -> dict[str, Any]:
    """A copy of ``prompt`` whose asset objects and media file names are ``media:<id>``
    inputs. Raises ``MissingAssets``."""
    resolved = copy.deepcopy(prompt)
    missing: list[str] = []
    names: dict[str, str | None] = {}
    for node in resolved.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for key, value in inputs.items():
            info = _asset_info(value)
            if info is not None:
                found = await _asset(info, media, owner, admin)
                if found is None:
                    missing.append(str(info.get("id") or info.get("hash") or "<malformed>"))
                else:
                    inputs[key] = MEDIA_PREFIX + found.id
            elif isinstance(value, str) and _FILE_NAME.match(value) and key != "filename_prefix":
                if value not in names:
                    named = await media.by_name(None if admin else owner, value)
                    names[value] = named.id if named is not None else None
                if (media_id := names[value]) is not None:
                    inputs[key] = MEDIA_PREFIX + media_id
    if missing:
        raise MissingAssets(missing)
    return resolved


def check_graph(prompt: dict[str, Any], known_types: Iterable[frozenset[str]]) -> None:
    """Refuse a graph whose links name missing nodes, or whose node types no server
    knows (``known_types``: each catalogued server's node types; none: not checked).
    Raises ``GraphRejected``."""
    catalogs = [types for types in known_types if types]
    errors: dict[str, list[dict[str, str]]] = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            continue
        kind = node.get("class_type")
        if catalogs and isinstance(kind, str) and not any(kind in types for types in catalogs):
            errors.setdefault(str(node_id), []).append(
                {
                    "type": "invalid_class",
                    "message": f"node {node_id}: no server knows the node type {kind!r}",
                    "field": "class_type",
                }
            )
        inputs = node.get("inputs")
        for name, value in inputs.items() if isinstance(inputs, dict) else ():
            if _is_link(value) and str(value[0]) not in prompt:
                errors.setdefault(str(node_id), []).append(
                    {
                        "type": "bad_linked_input",
                        "message": f"node {node_id}: input {name!r} links to missing node "
                        f"{value[0]!r}",
                        "field": str(name),
                    }
                )
    if errors:
        raise GraphRejected(errors)


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )
