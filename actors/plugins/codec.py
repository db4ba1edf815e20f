"""Frame payloads to Pillow images and back, for the protocol's content types.

Runs wherever it is called (the pipeline actor's thread). Anything wrong with the
bytes a client sent becomes ``BadContent``; nothing else escapes from ``decode``.
"""

from __future__ import annotations

import io
from typing import Final, Literal, TypeAlias, cast, get_args

from PIL import Image

from engine.errors import BadContent

from .api import FrameOut

__all__ = [
    "CONTENT_TYPES",
    "DEFAULT_MAX_PIXELS",
    "ContentType",
    "Subsampling",
    "decode",
    "encode",
]

ContentType: TypeAlias = Literal["image/jpeg", "image/png", "image/webp", "raw/rgb8", "raw/rgba8"]
CONTENT_TYPES: Final[frozenset[str]] = frozenset(get_args(ContentType))
DEFAULT_MAX_PIXELS: Final = 4096 * 4096

_FORMATS: Final = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_RAW_MODES: Final = {"raw/rgb8": "RGB", "raw/rgba8": "RGBA"}


def decode(
    payload: bytes | memoryview,
    content_type: str,
    width: int | None = None,
    height: int | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode a payload into an ``RGB`` or ``RGBA`` image (``RGBA`` when it has alpha).

    The content type is trusted as a contract: a PNG labelled ``image/jpeg`` is refused.
    Raises ``BadContent`` for an unknown content type, bytes that don't decode, a raw
    payload whose length isn't ``w*h*channels``, or more than ``max_pixels`` pixels
    (checked from the header, before decompressing).
    """
    raw_mode = _RAW_MODES.get(content_type)
    if raw_mode is not None:
        return _decode_raw(payload, raw_mode, width, height, max_pixels)
    image_format = _FORMATS.get(content_type)
    if image_format is None:
        raise BadContent(f"unsupported content type {content_type!r}")
    try:
        image = Image.open(io.BytesIO(payload), formats=[image_format])
        _check_size(image.width, image.height, max_pixels)
        image.load()
        return _as_rgb_or_rgba(image)
    except BadContent:
        raise
    except Exception as exc:  # any failure to parse client bytes is about the content
        raise BadContent(f"could not decode {content_type}: {exc}") from None


Subsampling: TypeAlias = Literal["4:4:4", "4:2:2", "4:2:0"]
_SUBSAMPLING: Final = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def encode(
    image: Image.Image,
    content_type: str,
    *,
    quality: int = 85,
    progressive: bool = False,
    optimize: bool = False,
    subsampling: Subsampling | None = None,
) -> FrameOut:
    """Encode an ``RGB``/``RGBA`` image as ``content_type``.

    ``quality`` (1 to 100) is for JPEG and WebP; ``progressive``, ``optimize`` (Huffman
    tables: smaller, slower) and ``subsampling`` (chroma; ``None`` keeps Pillow's
    default, 4:2:0) are for JPEG; ``optimize`` also shrinks PNG.
    Alpha is dropped for JPEG and ``raw/rgb8``, and added (opaque) for ``raw/rgba8``.
    Raises ``BadContent`` for an unknown content type, ``ValueError`` for an unknown
    subsampling.
    """
    raw_mode = _RAW_MODES.get(content_type)
    if raw_mode is not None:
        return FrameOut(
            _converted(image, raw_mode).tobytes(), content_type, image.width, image.height
        )
    image_format = _FORMATS.get(content_type)
    if image_format is None:
        raise BadContent(f"unsupported content type {content_type!r}")
    options: dict[str, object] = {"quality": quality}
    if image_format == "JPEG":
        image = _converted(image, "RGB")
        options["progressive"] = progressive
        options["optimize"] = optimize
        if subsampling is not None:
            if subsampling not in _SUBSAMPLING:
                raise ValueError(f"unknown subsampling {subsampling!r}")
            options["subsampling"] = _SUBSAMPLING[subsampling]
    elif image_format == "PNG":
        options = {"optimize": optimize}
    out = io.BytesIO()
    image.save(out, format=image_format, **options)
    return FrameOut(out.getvalue(), content_type, image.width, image.height)


def _decode_raw(
    payload: bytes | memoryview, mode: str, width: int | None, height: int | None, max_pixels: int
) -> Image.Image:
    if width is None or height is None or width <= 0 or height <= 0:
        raise BadContent(f"raw/{mode.lower()}8 needs positive width and height")
    _check_size(width, height, max_pixels)
    expected = width * height * len(mode)
    if len(payload) != expected:
        raise BadContent(
            f"raw payload of {len(payload)} bytes, expected {expected} for {width}x{height} {mode}"
        )
    # Pillow reads any buffer (a memoryview too, without a copy); its stubs say bytes.
    return Image.frombuffer(mode, (width, height), cast("bytes", payload), "raw", mode, 0, 1)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadContent(f"image of {width}x{height} exceeds the limit of {max_pixels} pixels")


def _as_rgb_or_rgba(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in {"RGBA", "LA", "PA"} or (
        image.mode == "P" and "transparency" in image.info
    )
    return _converted(image, "RGBA" if has_alpha else "RGB")


def _converted(image: Image.Image, mode: str) -> Image.Image:
    return image if image.mode == mode else image.convert(mode)
