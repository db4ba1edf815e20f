from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from actors.plugins import FrameIn, FrameOut, ImageFx, ImageFxParams, PipelineConfig
from engine.errors import BadContent, BadParams

from .frames import Pixel, encoded_frame, opened, pixels_of, raw_frame

PIXEL = (10, 20, 30)


@pytest.fixture
def fx() -> ImageFx:
    pipeline = ImageFx(PipelineConfig(name="fx", kind="imagefx"))
    pipeline.load()
    return pipeline


def run_one(fx: ImageFx, pixels: Sequence[Sequence[Pixel]], **params: Any) -> list[list[Pixel]]:
    [out] = fx.process([raw_frame(pixels, ImageFx.parse_params(params))])
    return pixels_of(out)


def test_invert_is_255_minus_each_channel(fx: ImageFx) -> None:
    assert run_one(fx, [[PIXEL]], effect="invert") == [[(245, 235, 225)]]


def test_grayscale_uses_luma_weights(fx: ImageFx) -> None:
    [[(r, g, b)]] = run_one(fx, [[PIXEL]], effect="grayscale")
    luma = (10 * 299 + 20 * 587 + 30 * 114) / 1000  # 18.15
    assert r == g == b
    assert abs(r - luma) <= 1


def test_posterize_keeps_the_top_bits(fx: ImageFx) -> None:
    assert run_one(fx, [[(200, 100, 50)]], effect="posterize", bits=2) == [[(192, 64, 0)]]


def test_blur_spreads_a_bright_pixel(fx: ImageFx) -> None:
    dark, bright = (0, 0, 0), (255, 255, 255)
    image = [[bright if (x, y) == (2, 2) else dark for x in range(5)] for y in range(5)]
    out = run_one(fx, image, effect="blur", radius=1.0)
    assert 0 < out[2][2][0] < 255
    assert out[2][1][0] > 0
    assert out[2][1][0] < out[2][2][0]


def test_edges_light_up_a_step_and_leave_flat_areas_black(fx: ImageFx) -> None:
    image = [[(0, 0, 0)] * 3 + [(200, 200, 200)] * 3 for _ in range(5)]
    row = run_one(fx, image, effect="edges")[2]
    # Interior pixels only: the 3x3 kernel leaves the one-pixel border as it was.
    assert row[1:5] == [(0, 0, 0), (0, 0, 0), (255, 255, 255), (0, 0, 0)]


def test_sketch_turns_flat_areas_white_and_draws_the_edge(fx: ImageFx) -> None:
    image = [[(60, 60, 60)] * 10 + [(220, 220, 220)] * 10 for _ in range(3)]
    row = run_one(fx, image, effect="sketch", radius=1.5)[1]
    assert row[0] == row[19] == (255, 255, 255)
    assert row[9][0] < 200  # the darker side of the edge is drawn
    assert all(pixel[0] == pixel[1] == pixel[2] for pixel in row)


@pytest.mark.parametrize("effect", ["invert", "grayscale", "posterize", "blur", "edges", "sketch"])
def test_each_effect_changes_the_image(fx: ImageFx, effect: str) -> None:
    image = [[((x * 37) % 256, (y * 53) % 256, 90) for x in range(6)] for y in range(6)]
    assert run_one(fx, image, effect=effect) != image


@pytest.mark.parametrize("effect", ["invert", "grayscale", "posterize", "blur", "edges", "sketch"])
def test_strength_zero_returns_the_original_pixels(fx: ImageFx, effect: str) -> None:
    image = [[((x * 37) % 256, (y * 53) % 256, 90) for x in range(4)] for y in range(3)]
    assert run_one(fx, image, effect=effect, strength=0.0) == image


def test_strength_blends_original_and_effect(fx: ImageFx) -> None:
    [[pixel]] = run_one(fx, [[PIXEL]], effect="invert", strength=0.5)
    assert all(abs(value - 127.5) <= 1 for value in pixel)


def test_effect_none_returns_the_original_pixels(fx: ImageFx) -> None:
    assert run_one(fx, [[PIXEL, (1, 2, 3)]]) == [[PIXEL, (1, 2, 3)]]


def test_raw_keeps_size_and_content_type(fx: ImageFx) -> None:
    image = [[PIXEL] * 7 for _ in range(3)]
    [out] = fx.process([raw_frame(image, ImageFx.parse_params({"effect": "invert"}))])
    assert isinstance(out, FrameOut)
    assert (out.content_type, out.width, out.height) == ("raw/rgb8", 7, 3)
    assert len(out.payload) == 7 * 3 * 3


def test_rgba_keeps_alpha_and_changes_colour(fx: ImageFx) -> None:
    assert run_one(fx, [[(*PIXEL, 77)]], effect="invert") == [[(245, 235, 225, 77)]]


def test_raw_to_rgba_output_adds_opaque_alpha(fx: ImageFx) -> None:
    assert run_one(fx, [[PIXEL]], output="raw/rgba8") == [[(*PIXEL, 255)]]


@pytest.mark.parametrize(
    ("output", "image_format"),
    [("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP")],
)
def test_output_content_type_conversion(fx: ImageFx, output: str, image_format: str) -> None:
    params = ImageFx.parse_params({"effect": "invert", "output": output})
    [out] = fx.process([raw_frame([[PIXEL] * 8] * 5, params)])
    assert isinstance(out, FrameOut)
    assert out.content_type == output
    image = opened(out)
    assert image.format == image_format
    assert image.size == (8, 5)


def test_png_in_png_out_is_exact(fx: ImageFx) -> None:
    params = ImageFx.parse_params({"effect": "invert"})
    [out] = fx.process([encoded_frame(Image.new("RGB", (3, 2), PIXEL), "PNG", params)])
    image = opened(out)
    assert image.format == "PNG"
    assert image.convert("RGB").getpixel((1, 1)) == (245, 235, 225)


def test_jpeg_in_defaults_to_jpeg_out(fx: ImageFx) -> None:
    params = ImageFx.parse_params({"effect": "grayscale"})
    [out] = fx.process([encoded_frame(Image.new("RGB", (16, 16), PIXEL), "JPEG", params)])
    assert isinstance(out, FrameOut)
    assert out.content_type == "image/jpeg"
    assert opened(out).format == "JPEG"


def test_undecodable_frame_fails_alone(fx: ImageFx) -> None:
    params = ImageFx.parse_params({"effect": "invert"})
    good = raw_frame([[PIXEL]], params)
    broken = FrameIn(b"\x89PNG not really", "image/png", None, None, params)
    answers = fx.process([good, broken, good])
    assert len(answers) == 3
    assert isinstance(answers[1], BadContent)
    assert answers[1].code == "bad_content"
    assert pixels_of(answers[0]) == pixels_of(answers[2]) == [[(245, 235, 225)]]


def test_bad_params_name_the_field() -> None:
    with pytest.raises(BadParams) as caught:
        ImageFx.parse_params({"effect": "melt", "strength": 2})
    assert "effect" in caught.value.message
    assert "strength" in caught.value.message
    assert set(caught.value.extra["fields"]) == {"effect", "strength"}


def test_frames_over_max_pixels_are_refused() -> None:
    fx = ImageFx(PipelineConfig(name="fx", kind="imagefx", options={"max_pixels": 4}))
    params = ImageFx.parse_params({})
    [small, large] = fx.process(
        [raw_frame([[PIXEL] * 2] * 2, params), raw_frame([[PIXEL] * 5], params)]
    )
    assert isinstance(small, FrameOut)
    assert isinstance(large, BadContent)


def _encoded(image_format: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), PIXEL).save(out, format=image_format)
    return out.getvalue()


MAGIC = {
    "image/jpeg": b"\xff\xd8\xff\xe0",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/webp": b"RIFF",
}
VALID = {ct: _encoded(ct.split("/")[1].upper()) for ct in MAGIC}


@st.composite
def hostile_payloads(draw: st.DrawFn, content_type: str) -> bytes:
    """Random bytes, random bytes behind the format's magic, or a real image cut and flipped."""
    noise = draw(st.binary(max_size=256))
    if content_type not in MAGIC:
        return noise
    valid = VALID[content_type]
    cut = draw(st.integers(0, len(valid) - 1))
    flip = draw(st.integers(0, len(valid) - 1))
    mangled = bytearray(valid)
    mangled[flip] ^= 0xFF
    return draw(st.sampled_from([noise, MAGIC[content_type] + noise, valid[:cut], bytes(mangled)]))


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "image/webp", "raw/rgb8"])
@given(data=st.data())
@settings(max_examples=80, deadline=None)
def test_hostile_bytes_never_raise(content_type: str, data: st.DataObject) -> None:
    payload = data.draw(hostile_payloads(content_type))
    fx = ImageFx(PipelineConfig(name="fx", kind="imagefx"))
    params = ImageFxParams(effect="invert")
    answers = fx.process([FrameIn(payload, content_type, 3, 3, params)])
    assert len(answers) == 1
    assert isinstance(answers[0], BadContent | FrameOut)
    if content_type == "raw/rgb8" and len(payload) != 27:
        assert isinstance(answers[0], BadContent)


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "image/webp"])
@given(payload=st.binary(max_size=256))
@settings(max_examples=60, deadline=None)
def test_random_bytes_give_bad_content(content_type: str, payload: bytes) -> None:
    fx = ImageFx(PipelineConfig(name="fx", kind="imagefx"))
    [answer] = fx.process([FrameIn(payload, content_type, None, None, ImageFxParams())])
    assert isinstance(answer, BadContent)
