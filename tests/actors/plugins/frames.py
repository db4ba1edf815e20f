"""Tiny frames for pipeline tests: raw pixels in, pixels out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TypeVar

from PIL import Image
from pydantic import BaseModel

from actors.plugins import FrameIn, FrameOut

M = TypeVar("M", bound=BaseModel)
Pixel = tuple[int, ...]


def raw_frame(pixels: Sequence[Sequence[Pixel]], params: M) -> FrameIn[M]:
    """A ``raw/rgb8`` (or ``raw/rgba8`` for 4-tuples) frame from rows of pixels."""
    channels = len(pixels[0][0])
    payload = bytes(value for row in pixels for pixel in row for value in pixel)
    content_type = "raw/rgba8" if channels == 4 else "raw/rgb8"
    return FrameIn(payload, content_type, len(pixels[0]), len(pixels), params)


def encoded_frame(image: Image.Image, image_format: str, params: M) -> FrameIn[M]:
    """A frame holding ``image`` encoded as ``image_format`` (``PNG``, ``JPEG``, ``WEBP``)."""
    out = io.BytesIO()
    image.save(out, format=image_format)
    return FrameIn(out.getvalue(), f"image/{image_format.lower()}", None, None, params)


def pixels_of(out: object) -> list[list[Pixel]]:
    """The rows of pixels of a raw result (fails unless it is a raw ``FrameOut``)."""
    assert isinstance(out, FrameOut), out
    assert out.width is not None
    assert out.height is not None
    channels = {"raw/rgb8": 3, "raw/rgba8": 4}[out.content_type]
    data = bytes(out.payload)
    assert len(data) == out.width * out.height * channels
    flat = [tuple(data[i : i + channels]) for i in range(0, len(data), channels)]
    return [flat[y * out.width : (y + 1) * out.width] for y in range(out.height)]


def opened(out: object) -> Image.Image:
    """An encoded result, opened with Pillow (fails unless it is a ``FrameOut``)."""
    assert isinstance(out, FrameOut), out
    return Image.open(io.BytesIO(bytes(out.payload)))
