"""The image nodes, run for real on Pillow.

An IMAGE is a batch (a list) of RGB Pillow images with 8-bit channels; a MASK is a
list of ``L`` images. A real server holds float32 tensors; ImageInvert reproduces
its float32 rounding (``1.0 - x``, saved with truncation), so a saved inversion has
the same pixels a real server writes.
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
from typing import Any

from PIL import Image, ImageFilter, ImageOps, ImageSequence

from ops.fakecomfy.files import input_images, next_save_path, png_info, resolve_image
from ops.fakecomfy.nodes import (
    MAX_RESOLUTION,
    NodeEnv,
    NodeResult,
    NodeType,
    RunContext,
    int_spec,
)

__all__ = ["INVERT", "image_nodes"]


def _f32(value: float) -> float:
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


# 1.0 - x in float32, then 255 * y in float32 truncated to 8 bits, as a real server
# computes and saves it: about 62 % of pixels come out as 254 - x.
INVERT = [min(255, max(0, int(_f32(255.0 * _f32(1.0 - _f32(v / 255.0)))))) for v in range(256)]


def _images(value: Any) -> list[Image.Image]:
    if not isinstance(value, list) or not all(isinstance(i, Image.Image) for i in value):
        raise TypeError(f"expected an IMAGE batch, got {type(value).__name__}")
    return value


# -- LoadImage ------------------------------------------------------------------------


def _load_image(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    path = resolve_image(ctx.env.dirs, inputs["image"])
    if path is None:
        raise FileNotFoundError(f"Invalid image file: {inputs['image']}")
    images: list[Image.Image] = []
    masks: list[Image.Image] = []
    with Image.open(path) as img:
        for raw in ImageSequence.Iterator(img):
            frame = ImageOps.exif_transpose(raw)
            if frame.mode == "I":
                frame = frame.point(lambda i: i * (1 / 255))
            rgb = frame.convert("RGB")
            if images and rgb.size != images[0].size:
                continue
            images.append(rgb)
            if "A" in frame.getbands():
                masks.append(ImageOps.invert(frame.getchannel("A")))
            else:
                masks.append(Image.new("L", (64, 64), 0))
    return NodeResult((images, masks))


def _load_image_valid(env: NodeEnv, inputs: dict[str, Any]) -> bool | str:
    if resolve_image(env.dirs, str(inputs.get("image"))) is None:
        return f"Invalid image file: {inputs.get('image')}"
    return True


def _load_image_changed(env: NodeEnv, inputs: dict[str, Any]) -> Any:
    path = resolve_image(env.dirs, str(inputs.get("image")))
    return None if path is None else hashlib.sha256(path.read_bytes()).hexdigest()


# -- image operations -------------------------------------------------------------------


def _invert(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult(([i.point(INVERT * 3) for i in _images(inputs["image"])],))


METHODS = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def _scale(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    images = _images(inputs["image"])
    width, height = inputs["width"], inputs["height"]
    if width == 0 and height == 0:
        return NodeResult((images,))
    old_w, old_h = images[0].size
    if width == 0:
        width = max(1, round(old_w * height / old_h))
    elif height == 0:
        height = max(1, round(old_h * width / old_w))
    out = []
    for source in images:
        img = source
        if inputs["crop"] == "center":
            old_aspect, new_aspect = old_w / old_h, width / height
            x = y = 0
            if old_aspect > new_aspect:
                x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
            elif old_aspect < new_aspect:
                y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
            img = img.crop((x, y, old_w - x, old_h - y))
        out.append(img.resize((width, height), METHODS[inputs["upscale_method"]]))
    return NodeResult((out,))


def _empty(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    color = inputs["color"]
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    size = (inputs["width"], inputs["height"])
    return NodeResult(([Image.new("RGB", size, rgb) for _ in range(inputs["batch_size"])],))


def _blur(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    images = _images(inputs["image"])
    if inputs["blur_radius"] == 0:
        return NodeResult((images,))
    radius = min(float(inputs["sigma"]), float(inputs["blur_radius"]))
    blur = ImageFilter.GaussianBlur(radius=radius)
    return NodeResult(([img.filter(blur) for img in images],))


# -- output nodes ---------------------------------------------------------------------


def _save(
    ctx: RunContext, images: list[Image.Image], prefix: str, kind: str
) -> list[dict[str, str]]:
    base = ctx.env.dirs.output if kind == "output" else ctx.env.dirs.temp
    width, height = images[0].size
    folder, stem, counter, subfolder = next_save_path(base, prefix, width, height)
    info = png_info(ctx.prompt, ctx.extra_pnginfo)
    results = []
    for batch_number, img in enumerate(images):
        name = f"{stem.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        img.save(folder / name, pnginfo=info, compress_level=4 if kind == "output" else 1)
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    return results


def _save_image(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    images = _images(inputs["images"])
    results = _save(ctx, images, str(inputs["filename_prefix"]), "output")
    return NodeResult((images,), {"images": results})


def _preview_image(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    images = _images(inputs["images"])
    letters = "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    results = _save(ctx, images, f"ComfyUI_temp_{letters}", "temp")
    return NodeResult((images,), {"images": results})


def _save_websocket(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    images = _images(inputs["images"])
    for step, img in enumerate(images):
        ctx.progress(step, len(images), ("PNG", img))
    return NodeResult(())


def _image_in(tooltip: str | None = None) -> list[Any]:
    return ["IMAGE", {"tooltip": tooltip}] if tooltip else ["IMAGE"]


PREFIX_TOOLTIP = (
    "The prefix for the file to save. This may include formatting information such as "
    "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."
)
HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def image_nodes() -> list[NodeType]:
    """The image nodes the fake runs for real."""
    return [
        NodeType(
            "LoadImage",
            "Load Image",
            "image",
            lambda env: {"required": {"image": [input_images(env.dirs), {"image_upload": True}]}},
            ("IMAGE", "MASK"),
            _load_image,
            validate=_load_image_valid,
            validated=("image",),
            is_changed=_load_image_changed,
        ),
        NodeType(
            "ImageInvert",
            "Invert Image",
            "image",
            lambda env: {"required": {"image": _image_in()}},
            ("IMAGE",),
            _invert,
        ),
        NodeType(
            "ImageScale",
            "Upscale Image",
            "image/upscaling",
            lambda env: {
                "required": {
                    "image": _image_in(),
                    "upscale_method": [list(METHODS)],
                    "width": int_spec(512, 0, MAX_RESOLUTION),
                    "height": int_spec(512, 0, MAX_RESOLUTION),
                    "crop": [["disabled", "center"]],
                }
            },
            ("IMAGE",),
            _scale,
        ),
        NodeType(
            "EmptyImage",
            "EmptyImage",
            "image",
            lambda env: {
                "required": {
                    "width": int_spec(512, 1, MAX_RESOLUTION),
                    "height": int_spec(512, 1, MAX_RESOLUTION),
                    "batch_size": int_spec(1, 1, 4096),
                    "color": int_spec(0, 0, 0xFFFFFF, display="color"),
                }
            },
            ("IMAGE",),
            _empty,
        ),
        NodeType(
            "ImageBlur",
            "Image Blur",
            "image/postprocessing",
            lambda env: {
                "required": {
                    "image": ["IMAGE", {}],
                    "blur_radius": int_spec(1, 1, 31),
                    "sigma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}],
                }
            },
            ("IMAGE",),
            _blur,
            python_module="comfy_extras.nodes_post_processing",
            newer_api=True,
        ),
        NodeType(
            "SaveImage",
            "Save Image",
            "image",
            lambda env: {
                "required": {
                    "images": _image_in("The images to save."),
                    "filename_prefix": [
                        "STRING",
                        {
                            "default": "ComfyUI",
                            "tooltip": PREFIX_TOOLTIP,
                        },
                    ],
                },
                "hidden": dict(HIDDEN),
            },
            ("IMAGE",),
            _save_image,
            output_node=True,
            description="Saves the input images to your ComfyUI output directory.",
        ),
        NodeType(
            "PreviewImage",
            "Preview Image",
            "image",
            lambda env: {"required": {"images": _image_in()}, "hidden": dict(HIDDEN)},
            ("IMAGE",),
            _preview_image,
            output_node=True,
            description="Saves the input images to your ComfyUI output directory.",
        ),
        NodeType(
            "SaveImageWebsocket",
            "SaveImageWebsocket",
            "api node/image",
            lambda env: {"required": {"images": _image_in()}},
            (),
            _save_websocket,
            output_node=True,
            python_module="custom_nodes.websocket_image_save",
            is_changed=lambda env, inputs: time.time(),
            reports_progress=True,
        ),
    ]
