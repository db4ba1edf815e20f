"""The three directories (input, output, temp) and the routes that touch files:
``POST /upload/image``, ``POST /upload/mask`` and ``GET /view``.

Paths are checked the way a real server checks them: an upload whose path leaves
its directory is a 400, a ``/view`` ``filename`` holding ``..`` or starting with
``/`` is a 400, and a ``subfolder`` leaving the directory is a 403. Error answers
have empty bodies.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image
from PIL.PngImagePlugin import PngInfo

__all__ = ["Dirs", "annotated", "next_save_path"]

_DANGEROUS = {
    "text/html",
    "text/html-sandboxed",
    "application/xhtml+xml",
    "text/javascript",
    "text/css",
}


@dataclass(frozen=True)
class Dirs:
    """Absolute input, output and temp directories."""

    input: Path
    output: Path
    temp: Path

    def by_type(self, kind: str) -> Path | None:
        return {"input": self.input, "output": self.output, "temp": self.temp}.get(kind)

    def create(self) -> None:
        for path in (self.input, self.output, self.temp):
            path.mkdir(parents=True, exist_ok=True)


def annotated(name: str) -> tuple[str, str | None]:
    """Split a ``"name [output]"`` style annotation off a file name."""
    for kind in ("output", "input", "temp"):
        suffix = f"[{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix) - 1], kind
    return name, None


def inside(base: Path, path: str) -> bool:
    """Whether ``path`` (made absolute) stays within ``base``."""
    root = os.path.abspath(base)
    return os.path.commonpath((root, os.path.abspath(path))) == root


def resolve_image(dirs: Dirs, name: str) -> Path | None:
    """The file a LoadImage ``image`` value names, or ``None`` when there is none."""
    plain, kind = annotated(name)
    base = dirs.by_type(kind or "input")
    if base is None:
        return None
    path = os.path.join(base, plain)
    if not inside(base, path) or not os.path.isfile(path):
        return None
    return Path(path)


def input_images(dirs: Dirs) -> list[str]:
    """The LoadImage combo: top-level files of the input directory that look like images."""
    names = []
    for entry in os.scandir(dirs.input):
        kind = mimetypes.guess_type(entry.name)[0] or ""
        if entry.is_file() and kind.startswith("image/"):
            names.append(entry.name)
    return sorted(names)


_VARS = ("year", "month", "day", "hour", "minute", "second")


def next_save_path(base: Path, prefix: str, width: int, height: int) -> tuple[Path, str, int, str]:
    """Where SaveImage writes: ``(folder, file stem, first counter, subfolder)``.

    The counter is one more than the highest ``<stem>_NNNNN_`` already in the
    folder, so it keeps counting across restarts. Raises when the prefix leaves
    the base directory.
    """
    if "%" in prefix:
        now = time.localtime()
        values = dict(
            zip(
                _VARS,
                (now.tm_year, now.tm_mon, now.tm_mday, now.tm_hour, now.tm_min, now.tm_sec),
                strict=True,
            )
        )
        prefix = prefix.replace("%width%", str(width)).replace("%height%", str(height))
        for key, value in values.items():
            prefix = prefix.replace(f"%{key}%", str(value) if key == "year" else f"{value:02}")
    normal = os.path.normpath(prefix)
    subfolder = os.path.dirname(normal)
    stem = os.path.basename(normal)
    folder = os.path.join(base, subfolder)
    if not inside(base, folder):
        raise ValueError(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {os.path.abspath(folder)}\n output_dir: {base}"
        )
    pattern = re.compile(re.escape(stem) + r"_(\d+)_")
    counter = 0
    try:
        for name in os.listdir(folder):
            found = pattern.match(name)
            if found is not None:
                counter = max(counter, int(found.group(1)))
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    return Path(folder), stem, counter + 1, subfolder


def png_info(prompt: object, extra_pnginfo: object) -> PngInfo:
    """The tEXt chunks SaveImage writes: the API graph, and each extra_pnginfo key."""
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    if isinstance(extra_pnginfo, dict):
        for key, value in extra_pnginfo.items():
            info.add_text(str(key), json.dumps(value))
    return info


# -- upload ---------------------------------------------------------------------------


async def upload(request: web.Request, dirs: Dirs, *, mask: bool = False) -> web.Response:
    """``POST /upload/image`` (and ``/upload/mask``, which also takes ``original_ref``)."""
    post = await request.post()
    return _store(post, dirs, mask)


def _store(post: Any, dirs: Dirs, mask: bool) -> web.Response:
    image = post.get("image")
    kind = post.get("type")
    kind = "input" if kind is None else str(kind)
    base = dirs.by_type(kind)
    if base is None:
        # A real server hits an unbound variable here and answers with its 500.
        raise RuntimeError(f"unknown upload type {kind!r}")
    if not isinstance(image, web.FileField) or not image.filename:
        return web.Response(status=400)
    filename = image.filename
    subfolder = str(post.get("subfolder", ""))
    folder = os.path.join(base, os.path.normpath(subfolder))
    path = os.path.abspath(os.path.join(folder, filename))
    if not inside(base, path):
        return web.Response(status=400)
    os.makedirs(folder, exist_ok=True)
    data = image.file.read()
    duplicate = False
    if post.get("overwrite") not in ("true", "1"):
        stem, ext = os.path.splitext(filename)
        number = 1
        while os.path.exists(path):
            if Path(path).read_bytes() == data:
                duplicate = True
                break
            filename = f"{stem} ({number}){ext}"
            path = os.path.join(folder, filename)
            number += 1
    if not duplicate:
        if mask:
            data = _apply_mask(dirs, str(post.get("original_ref", "")), data)
        Path(path).write_bytes(data)
    return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})


def _apply_mask(dirs: Dirs, original_ref: str, data: bytes) -> bytes:
    ref = json.loads(original_ref)
    name, kind = annotated(ref["filename"])
    if name.startswith("/") or ".." in name:
        raise web.HTTPBadRequest()
    base = dirs.by_type(kind or ref.get("type", "output"))
    if base is None:
        raise web.HTTPBadRequest()
    folder = os.path.join(base, ref.get("subfolder", ""))
    if not inside(base, folder):
        raise web.HTTPForbidden()
    original = os.path.join(folder, name)
    if not os.path.isfile(original):
        return data
    with Image.open(original) as source, Image.open(io.BytesIO(data)) as mask_image:
        info = PngInfo()
        for key, value in getattr(source, "text", {}).items():
            info.add_text(key, value)
        merged = source.convert("RGBA")
        merged.putalpha(mask_image.convert("RGBA").getchannel("A"))
        out = io.BytesIO()
        merged.save(out, format="PNG", compress_level=4, pnginfo=info)
        return out.getvalue()


# -- view -------------------------------------------------------------------------------


async def view(request: web.Request, dirs: Dirs) -> web.StreamResponse:
    """``GET /view?filename=&subfolder=&type=[&preview=][&channel=]``."""
    return _view(request.query, dirs)


def _view(query: Mapping[str, str], dirs: Dirs) -> web.StreamResponse:
    if "filename" not in query:
        return web.Response(status=404)
    filename, kind = annotated(query["filename"])
    if filename[0] == "/" or ".." in filename:
        return web.Response(status=400)
    base = dirs.by_type(kind or query.get("type", "output"))
    if base is None:
        return web.Response(status=400)
    folder = str(base)
    if "subfolder" in query:
        folder = os.path.join(base, query["subfolder"])
        if not inside(base, folder):
            return web.Response(status=403)
    filename = os.path.basename(filename)
    path = os.path.join(folder, filename)
    if not os.path.isfile(path):
        return web.Response(status=404)
    headers = {"Content-Disposition": f'filename="{filename}"', "X-Content-Type-Options": "nosniff"}
    channel = query.get("channel", "")
    if "preview" in query:
        return _preview(path, filename, query["preview"], channel, headers)
    if channel in ("rgb", "a"):
        with Image.open(path) as img:
            if channel == "rgb":
                out_img = img.convert("RGB")
            else:
                alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
                out_img = Image.new("RGBA", img.size)
                out_img.putalpha(alpha)
            buffer = io.BytesIO()
            out_img.save(buffer, format="PNG")
        return web.Response(body=buffer.getvalue(), content_type="image/png", headers=headers)
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if content_type in _DANGEROUS:
        content_type = "application/octet-stream"
    headers["Content-Type"] = content_type
    return web.FileResponse(path, headers=headers)


def _preview(
    path: str, filename: str, spec: str, channel: str, headers: dict[str, str]
) -> web.Response:
    parts = spec.split(";")
    image_format = parts[0]
    if image_format not in ("webp", "jpeg") or "a" in channel:
        image_format = "webp"
    quality = int(parts[-1]) if parts[-1].isdigit() else 90
    with Image.open(path) as img:
        converted = img.convert("RGB") if image_format == "jpeg" or channel == "rgb" else img.copy()
    buffer = io.BytesIO()
    converted.save(buffer, format=image_format, quality=quality)
    headers["Content-Disposition"] = f'filename="{filename.replace("png", image_format)}"'
    return web.Response(
        body=buffer.getvalue(), content_type=f"image/{image_format}", headers=headers
    )
