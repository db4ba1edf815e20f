from __future__ import annotations

import io

import pytest
from PIL import Image, JpegImagePlugin

from actors.plugins.codec import CONTENT_TYPES, decode, encode
from engine.errors import BadContent


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_content_types_are_those_of_the_protocol() -> None:
    assert sorted(CONTENT_TYPES) == [
        "image/jpeg",
        "image/png",
        "image/webp",
        "raw/rgb8",
        "raw/rgba8",
    ]


def test_raw_decodes_from_a_memoryview() -> None:
    image = decode(memoryview(bytes([1, 2, 3, 4, 5, 6])), "raw/rgb8", 2, 1)
    assert (image.mode, image.size) == ("RGB", (2, 1))
    assert image.getpixel((1, 0)) == (4, 5, 6)


@pytest.mark.parametrize(
    ("payload", "width", "height"),
    [(b"\x00" * 5, 2, 1), (b"\x00" * 6, None, 1), (b"\x00" * 6, 2, None), (b"", 0, 0)],
)
def test_raw_needs_size_matching_the_payload(
    payload: bytes, width: int | None, height: int | None
) -> None:
    with pytest.raises(BadContent):
        decode(payload, "raw/rgb8", width, height)


def test_encoded_image_must_match_its_content_type() -> None:
    payload = png(Image.new("RGB", (2, 2)))
    assert decode(payload, "image/png").size == (2, 2)
    with pytest.raises(BadContent, match="image/jpeg"):
        decode(payload, "image/jpeg")


def test_unknown_content_type_is_bad_content() -> None:
    with pytest.raises(BadContent, match="text/plain"):
        decode(b"hello", "text/plain")
    with pytest.raises(BadContent, match="text/plain"):
        encode(Image.new("RGB", (1, 1)), "text/plain")


def test_palette_and_alpha_images_become_rgb_or_rgba() -> None:
    assert decode(png(Image.new("P", (2, 2))), "image/png").mode == "RGB"
    assert decode(png(Image.new("LA", (2, 2))), "image/png").mode == "RGBA"
    assert decode(png(Image.new("L", (2, 2))), "image/png").mode == "RGB"


def test_size_limit_is_checked_before_decompressing() -> None:
    payload = png(Image.new("RGB", (100, 100)))
    with pytest.raises(BadContent, match="exceeds"):
        decode(payload, "image/png", max_pixels=99 * 100)


def test_jpeg_output_drops_alpha() -> None:
    out = encode(Image.new("RGBA", (3, 2), (1, 2, 3, 4)), "image/jpeg", quality=90)
    assert (out.content_type, out.width, out.height) == ("image/jpeg", 3, 2)
    assert Image.open(io.BytesIO(bytes(out.payload))).mode == "RGB"


def test_jpeg_encode_options_reach_the_file() -> None:
    image = Image.new("RGB", (64, 48), (200, 30, 90))
    plain = encode(image, "image/jpeg", quality=95, subsampling="4:4:4")
    tuned = encode(
        image, "image/jpeg", quality=80, progressive=True, optimize=True, subsampling="4:2:0"
    )
    with Image.open(io.BytesIO(bytes(plain.payload))) as opened:
        assert not opened.info.get("progressive")
        assert JpegImagePlugin.get_sampling(opened) == 0
    with Image.open(io.BytesIO(bytes(tuned.payload))) as opened:
        assert opened.info.get("progressive")
        assert JpegImagePlugin.get_sampling(opened) == 2
        assert opened.size == (64, 48)
    with pytest.raises(ValueError, match="subsampling"):
        encode(image, "image/jpeg", subsampling="4:1:1")  # type: ignore[arg-type]
