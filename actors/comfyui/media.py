"""Media in and out of a ComfyUI server.

In: a workflow input written ``"media:<id>"`` names a stored media record; before
the workflow is submitted, its bytes are uploaded to the chosen server and the value
is replaced by the name the server returns (which may differ from the one sent).
Out: each image a finished prompt lists in its history is fetched with ``/view``
and stored as media. Loop only.
"""

from __future__ import annotations

import copy
import mimetypes
from typing import Any

from actors.comfyui.client import ComfyClient, outputs_of
from engine.errors import EaselError, NotFound
from engine.storage import Job, JobOutput, MediaRepository

__all__ = ["MEDIA_PREFIX", "discard", "fetch_outputs", "media_inputs", "upload_inputs"]

MEDIA_PREFIX = "media:"


def media_inputs(prompt: dict[str, Any]) -> set[str]:
    """The media ids a workflow refers to."""
    found: set[str] = set()
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for value in inputs.values() if isinstance(inputs, dict) else ():
            if isinstance(value, str) and value.startswith(MEDIA_PREFIX):
                found.add(value[len(MEDIA_PREFIX) :])
    return found


async def upload_inputs(
    prompt: dict[str, Any], client: ComfyClient, media: MediaRepository
) -> dict[str, Any]:
    """A copy of ``prompt`` whose ``media:<id>`` inputs name files uploaded to the server.

    Raises ``NotFound`` for a media id that does not exist, ``ComfyUnavailable``.
    """
    ids = media_inputs(prompt)
    if not ids:
        return prompt
    names: dict[str, str] = {}
    for media_id in sorted(ids):
        record = await media.get(media_id)
        data = await media.read(media_id)
        suffix = mimetypes.guess_extension(record.content_type) or ".png"
        # Named by id: the same bytes sent twice keep one file on the server.
        names[media_id] = await client.upload_image(data, f"easel-{media_id}{suffix}")
    ready = copy.deepcopy(prompt)
    for node in ready.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for key, value in inputs.items():
            if isinstance(value, str) and value.startswith(MEDIA_PREFIX):
                inputs[key] = names[value[len(MEDIA_PREFIX) :]]
    return ready


async def fetch_outputs(
    entry: dict[str, Any], client: ComfyClient, media: MediaRepository, job: Job
) -> tuple[JobOutput, ...]:
    """Store every image of a finished history entry as media of ``job`` (owned by its
    owner, so its key can read them, and made by it, so its retention deletes them);
    the job's outputs, saved files (``output``) before previews (``temp``), each group
    in the history's order.

    If anything fails half way, what was stored is deleted again and the error
    raised (``ComfyUnavailable``, or the store's errors).
    """
    files = sorted(outputs_of(entry), key=lambda found: found[1].type != "output")
    stored: list[JobOutput] = []
    try:
        for node, output in files:
            data, content_type = await client.view(output)
            record = await media.put(
                data,
                content_type or "image/png",
                output.filename,
                owner=job.owner,
                job_id=job.id,
            )
            stored.append(
                JobOutput(
                    media_id=record.id,
                    kind="image",
                    node=node,
                    name=output.filename,
                    content_type=record.content_type,
                    size=record.size,
                    blake3=record.blake3,
                )
            )
    except BaseException:
        await discard(stored, media)
        raise
    return tuple(stored)


async def discard(outputs: tuple[JobOutput, ...] | list[JobOutput], media: MediaRepository) -> None:
    """Delete stored outputs that will not be recorded (best effort)."""
    for output in outputs:
        try:
            await media.delete(output.media_id)
        except (NotFound, EaselError):
            continue
