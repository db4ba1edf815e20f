"""``imagefx``: classic image effects on Pillow, the CPU pipeline that works out of the box.

Each frame is decoded (see ``codec``), the chosen effect is applied to its colour
channels (alpha is kept), blended with the original by ``strength``, and encoded as
``output`` (default: the input's content type). Frames are independent: one that
can't be decoded is answered ``BadContent`` and the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

from PIL import Image, ImageFilter, ImageMath, ImageOps
from pydantic import Field

from .api import Answer, FrameIn, FrameOut, Params, Pipeline, each_frame
from .codec import DEFAULT_MAX_PIXELS, ContentType, decode, encode

__all__ = ["EFFECTS", "Effect", "ImageFx", "ImageFxOptions", "ImageFxParams", "apply_effect"]

Effect: TypeAlias = Literal["none", "invert", "grayscale", "posterize", "blur", "edges", "sketch"]


class ImageFxParams(Params):
    """Per-session (and per-frame) settings of ``imagefx``."""

    effect: Effect = "none"
    strength: float = Field(default=1.0, ge=0.0, le=1.0)
    """0 returns the original pixels, 1 the full effect, in between a blend."""
    bits: int = Field(default=3, ge=1, le=8)
    """``posterize``: bits kept per channel."""
    radius: float = Field(default=2.0, ge=0.0, le=64.0)
    """``blur`` and ``sketch``: Gaussian blur radius in pixels."""
    output: ContentType | None = None
    """Content type of the result; ``None`` keeps the input's."""
    quality: int = Field(default=85, ge=1, le=100)
    """JPEG/WebP quality of the result."""


class ImageFxOptions(Params):
    """Config options of an ``imagefx`` pipeline."""

    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    """Frames with more pixels are refused (``bad_content``) before decompression."""


EffectFn: TypeAlias = Callable[[Image.Image, ImageFxParams], Image.Image]


def _invert(image: Image.Image, params: ImageFxParams) -> Image.Image:
    return ImageOps.invert(image)


def _grayscale(image: Image.Image, params: ImageFxParams) -> Image.Image:
    return image.convert("L").convert("RGB")


def _posterize(image: Image.Image, params: ImageFxParams) -> Image.Image:
    return ImageOps.posterize(image, params.bits)


def _blur(image: Image.Image, params: ImageFxParams) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(params.radius))


def _edges(image: Image.Image, params: ImageFxParams) -> Image.Image:
    return image.filter(ImageFilter.FIND_EDGES)


def _sketch(image: Image.Image, params: ImageFxParams) -> Image.Image:
    # Pencil sketch: colour-dodge the grey image with its blurred negative, which
    # reduces to gray * 256 / blur(gray): flat areas go white (pure black stays
    # black), the darker side of an edge stays dark.
    gray = image.convert("L")
    blurred = gray.filter(ImageFilter.GaussianBlur(max(params.radius, 0.5)))
    dodged = ImageMath.lambda_eval(
        lambda e: e["min"](e["a"] * 256 / e["max"](e["b"], 1), 255), a=gray, b=blurred
    )
    assert isinstance(dodged, Image.Image)
    return dodged.convert("L").convert("RGB")


EFFECTS: Final[Mapping[str, EffectFn]] = MappingProxyType(
    {
        "invert": _invert,
        "grayscale": _grayscale,
        "posterize": _posterize,
        "blur": _blur,
        "edges": _edges,
        "sketch": _sketch,
    }
)


def apply_effect(image: Image.Image, params: ImageFxParams) -> Image.Image:
    """Apply ``params.effect`` at ``params.strength`` to an ``RGB``/``RGBA`` image."""
    effect = EFFECTS.get(params.effect)
    if effect is None or params.strength == 0.0:
        return image
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = image.convert("RGB") if alpha is not None else image
    result = effect(rgb, params)
    if params.strength < 1.0:
        result = Image.blend(rgb, result, params.strength)
    if alpha is not None:
        result.putalpha(alpha)
    return result


class ImageFx(Pipeline[ImageFxParams]):
    """Pillow image effects; CPU-bound, frames handled one by one."""

    name = "imagefx"
    params_model = ImageFxParams
    options_model = ImageFxOptions
    max_batch = 8
    options: ImageFxOptions

    def process(self, batch: Sequence[FrameIn[ImageFxParams]]) -> list[Answer]:
        """Decode, apply, encode each frame; undecodable frames get ``BadContent``."""
        return each_frame(batch, self._frame)

    def _frame(self, frame: FrameIn[ImageFxParams]) -> FrameOut:
        params = frame.params
        image = decode(
            frame.payload,
            frame.content_type,
            frame.width,
            frame.height,
            max_pixels=self.options.max_pixels,
        )
        result = apply_effect(image, params)
        return encode(result, params.output or frame.content_type, quality=params.quality)
