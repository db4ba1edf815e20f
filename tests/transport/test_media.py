"""``/api/v1/media`` over a real server: upload, sniffing, limits, caching, deletion."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from yarl import URL

from tests.support import Easel, ServerFactory, png
from transport.problem import PROBLEM_JSON

BASE = "/api/v1/media"
IMMUTABLE = "private, max-age=31536000, immutable"
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
BOUNDARY = "easel-test-boundary"


def image(
    fmt: str, size: tuple[int, int] = (16, 12), color: tuple[int, int, int] = (200, 30, 90)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """A PNG about ``3 * side**2`` bytes long: random pixels, stored uncompressed."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(3 * side * side)).save(
        buffer, format="PNG", compress_level=0
    )
    return buffer.getvalue()


def form(
    data: bytes, filename: str = "upload.bin", content_type: str = "image/png"
) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename=filename, content_type=content_type)
    return body


def multipart(data: bytes, name: str = "file", filename: str = "x.png") -> bytes:
    """A multipart/form-data body with ``BOUNDARY``, written out by hand."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


async def upload(
    easel: Easel, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    """POST ``body`` to ``/api/v1/media``: status, parsed JSON, headers."""
    async with easel.http.post(easel.url + BASE, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def stored(easel: Easel, data: bytes, **kwargs: str) -> dict[str, Any]:
    status, body, _ = await upload(easel, form(data, **kwargs))
    assert status == 201, body
    result: dict[str, Any] = body
    return result


async def fetch(
    easel: Easel, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, Any]:
    async with easel.http.get(easel.url + path, headers=headers) as response:
        return response.status, await response.read(), response.headers


def files_under(root: Path) -> list[Path]:
    return (
        sorted(p for p in (root / "media").rglob("*") if p.is_file())
        if (root / "media").exists()
        else []
    )


def assert_problem(status: int, body: Any, headers: Any, expected: int, code: str) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith(PROBLEM_JSON)
    assert body["code"] == code
    assert body["status"] == expected


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_an_image_round_trips_with_its_metadata_and_caching_headers(
    easel: Easel, tmp_path: Path, fmt: str
) -> None:
    data = image(fmt)
    status, created, headers = await upload(easel, form(data, filename="shot.img"))
    assert status == 201, created
    media_id = created["id"]
    assert created == {
        "id": media_id,
        "content_type": FORMATS[fmt],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "filename": "shot.img",
        "created_at": created["created_at"],
        "url": f"{BASE}/{media_id}",
    }
    assert created["created_at"].startswith("20")
    assert headers["Location"] == f"{BASE}/{media_id}"

    status, body, headers = await fetch(easel, created["url"])
    assert status == 200
    assert body == data
    assert headers["Content-Type"] == FORMATS[fmt]
    assert headers["Content-Length"] == str(len(data))
    assert headers["Cache-Control"] == IMMUTABLE
    assert headers["ETag"] == f'"{created["sha256"]}"'
    assert headers["X-Content-Type-Options"] == "nosniff"

    assert await easel.request("GET", created["url"] + "/meta") == (200, created)
    on_disk = tmp_path / "media" / media_id[-2:] / media_id
    assert on_disk.read_bytes() == data


async def test_head_answers_the_headers_without_a_body(easel: Easel) -> None:
    data = image("JPEG")
    created = await stored(easel, data)
    async with easel.http.head(easel.url + created["url"]) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(data))
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.headers["ETag"] == f'"{created["sha256"]}"'
        assert await response.read() == b""


@pytest.mark.parametrize(
    ("fmt", "declared", "filename"),
    [
        ("PNG", "image/jpeg", "photo.jpg"),
        ("JPEG", "image/png", "logo.png"),
        ("GIF", "text/html", "x.html"),
    ],
)
async def test_the_type_comes_from_the_bytes_not_from_the_client(
    easel: Easel, fmt: str, declared: str, filename: str
) -> None:
    created = await stored(easel, image(fmt), filename=filename, content_type=declared)
    assert created["content_type"] == FORMATS[fmt]
    status, _, headers = await fetch(easel, created["url"])
    assert status == 200
    assert headers["Content-Type"] == FORMATS[fmt]


def _huge_canvas() -> bytes:
    # 8193 x 8193 is past MAX_PIXELS but compresses to a few kilobytes in mode "1"
    buffer = io.BytesIO()
    Image.new("1", (8193, 8193)).save(buffer, format="PNG")
    return buffer.getvalue()


def _wide() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16385, 1)).save(buffer, format="PNG")
    return buffer.getvalue()


NOT_IMAGES = {
    "text": b"hello, this is not an image\n",
    "html": b"<!doctype html><script>alert(1)</script>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "garbage": bytes(range(256)) * 4,
    "png magic then garbage": b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 64,
    "jpeg magic then garbage": b"\xff\xd8\xff\xe0" + b"\x13" * 300,
    "riff but not webp": b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 32,
    "truncated png": png(size=(64, 64))[:60],
    "bmp (not accepted)": image("BMP", size=(4, 4)),
}


@pytest.mark.parametrize("name", list(NOT_IMAGES))
async def test_what_is_not_an_accepted_image_is_415_and_nothing_is_stored(
    easel: Easel, tmp_path: Path, name: str
) -> None:
    status, body, headers = await upload(easel, form(NOT_IMAGES[name]))
    assert_problem(status, body, headers, 415, "unsupported_media_type")
    assert "image/png" in body["accepted"]
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("make", [_huge_canvas, _wide], ids=["too many pixels", "too wide"])
async def test_an_image_of_insane_dimensions_is_415(easel: Easel, make: Any) -> None:
    status, body, headers = await upload(easel, form(make()))
    assert_problem(status, body, headers, 415, "unsupported_media_type")
    assert "outside the limits" in body["detail"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"file": "x"}', "application/json"),
        (png(), "image/png"),
        (b"file=abc", "application/x-www-form-urlencoded"),
    ],
)
async def test_a_request_that_is_not_multipart_form_data_is_415(
    easel: Easel, body: bytes, content_type: str
) -> None:
    status, problem, headers = await upload(easel, body, {"Content-Type": content_type})
    assert_problem(status, problem, headers, 415, "unsupported_media_type")
    assert problem["accepted"] == ["multipart/form-data"]


async def test_an_empty_file_part_is_400(easel: Easel, tmp_path: Path) -> None:
    status, body, headers = await upload(easel, form(b""))
    assert_problem(status, body, headers, 400, "bad_request")
    assert "empty" in body["detail"]
    assert files_under(tmp_path) == []


def _other_field() -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("image", png(), filename="a.png", content_type="image/png")
    return body


def _two_parts() -> aiohttp.FormData:
    body = form(png())
    body.add_field("file", png(), filename="b.png", content_type="image/png")
    return body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (_other_field, None),
        (_two_parts, None),
        (f"--{BOUNDARY}--\r\n".encode(), MULTIPART),
        (b"no boundary anywhere", MULTIPART),
        (multipart(png())[:-30], MULTIPART),
        (png(), "multipart/form-data"),
        (multipart(png()), "multipart/form-data; boundary=" + "b" * 71),
    ],
    ids=[
        "no part named file",
        "two parts",
        "no part at all",
        "no boundary in the body",
        "cut short",
        "no boundary parameter",
        "boundary too long",
    ],
)
async def test_a_form_without_exactly_one_file_part_is_400(
    easel: Easel, tmp_path: Path, body: Any, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else None
    status, problem, response_headers = await upload(
        easel, body if isinstance(body, bytes) else body(), headers
    )
    assert_problem(status, problem, response_headers, 400, "bad_request")
    assert files_under(tmp_path) == []


async def test_a_hand_written_form_with_a_path_for_a_filename_keeps_only_its_name(
    easel: Easel, tmp_path: Path
) -> None:
    data = png()
    body = multipart(data, filename="../../etc/passwd.png")
    status, created, _ = await upload(easel, body, {"Content-Type": MULTIPART})
    assert status == 201, created
    assert created["filename"] == "passwd.png"
    assert files_under(tmp_path) == [tmp_path / "media" / created["id"][-2:] / created["id"]]


LIMIT = 64 * 1024


@pytest.mark.parametrize(("slack", "expected"), [(0, 201), (-1, 413)])
async def test_the_limit_counts_the_file_bytes_and_is_inclusive(
    easel_factory: ServerFactory, slack: int, expected: int
) -> None:
    data = noise_png(100)
    easel = await easel_factory(max_media_bytes=len(data) + slack)
    status, body, _ = await upload(easel, form(data))
    assert status == expected, body


@pytest.mark.parametrize("side", [160, 600], ids=["just over, read", "far over, by Content-Length"])
async def test_an_oversize_upload_is_413_and_the_server_stays_healthy(
    easel_factory: ServerFactory, tmp_path: Path, side: int
) -> None:
    easel = await easel_factory(max_media_bytes=LIMIT)
    data = noise_png(side)
    assert len(data) > LIMIT
    status, body, headers = await upload(easel, form(data))
    assert_problem(status, body, headers, 413, "too_large")
    assert body["limit"] == LIMIT
    assert files_under(tmp_path) == []
    assert (await easel.request("GET", "/api/v1/health"))[0] == 200
    assert (await stored(easel, png()))["content_type"] == "image/png"


async def test_an_oversize_chunked_upload_is_refused_without_being_held_in_memory(
    easel_factory: ServerFactory, tmp_path: Path
) -> None:
    easel = await easel_factory(max_media_bytes=LIMIT)
    sent = 16 * 1024 * 1024
    chunk = b"\x89PNG\r\n\x1a\n" + bytes(64 * 1024 - 8)  # one object, yielded again and again
    head, tail = multipart(b"").split(b"\r\n--" + BOUNDARY.encode() + b"--")

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        yield head
        for _ in range(sent // len(chunk)):
            yield chunk
        yield b"\r\n--" + BOUNDARY.encode() + b"--" + tail

    tracemalloc.start()
    try:
        status, problem, headers = await upload(easel, body(), {"Content-Type": MULTIPART})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_problem(status, problem, headers, 413, "too_large")
    assert peak < sent // 4, f"peak {peak} bytes while {sent} were sent"
    assert files_under(tmp_path) == []
    assert (await easel.request("GET", "/api/v1/health"))[0] == 200
    assert (await stored(easel, png()))["size"] == len(png())


async def test_the_app_body_limit_lets_big_media_through_but_not_big_json(easel: Easel) -> None:
    client_max_size = 8 * 1024 * 1024
    data = noise_png(1700)  # ~8.7 MB: past the app's client_max_size, under the media limit
    assert client_max_size < len(data) < 32 * 1024 * 1024
    created = await stored(easel, data)
    status, body, _ = await fetch(easel, created["url"])
    assert (status, hashlib.sha256(body).hexdigest()) == (200, created["sha256"])

    huge = {"name": "big", "description": "x" * len(data)}
    status, problem = await easel.post("/api/v1/projects", huge)
    assert (status, problem["code"]) == (413, "too_large")
    status, _ = await easel.post("/api/v1/projects", {"name": "small", "description": "x" * 1000})
    assert status == 201


async def test_if_none_match_with_the_etag_is_304(easel: Easel) -> None:
    created = await stored(easel, image("WEBP"))
    etag = f'"{created["sha256"]}"'
    for tag in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, body, headers = await fetch(easel, created["url"], {"If-None-Match": tag})
        assert (status, body) == (304, b""), tag
        assert headers["ETag"] == etag
        assert headers["Cache-Control"] == IMMUTABLE
    status, body, _ = await fetch(easel, created["url"], {"If-None-Match": '"other"'})
    assert status == 200
    assert len(body) == created["size"]


UNKNOWN = "0" * 32


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE}/{UNKNOWN}",
        f"{BASE}/{UNKNOWN}/meta",
        f"{BASE}/..%2F..",
        f"{BASE}/..%2F..%2Feasel.db",
        f"{BASE}/..%2F..%2Fmedia/meta",
        f"{BASE}/%2e%2e",
        f"{BASE}/..",
        f"{BASE}/a%00b",
        f"{BASE}/%E2%91%A0",
    ],
)
async def test_unknown_and_path_like_ids_are_404(easel: Easel, path: str) -> None:
    await stored(easel, png())  # something to find if an id escaped its directory
    for method in ("GET",) if path.endswith("/meta") else ("GET", "HEAD", "DELETE"):
        url = URL(easel.url + path, encoded=True)
        async with easel.http.request(method, url) as response:
            assert response.status == 404, method
            if method != "HEAD":
                body = await response.json(content_type=None)
                assert_problem(response.status, body, response.headers, 404, "not_found")


async def test_delete_removes_the_record_and_its_bytes(easel: Easel, tmp_path: Path) -> None:
    kept = await stored(easel, image("GIF"))
    gone = await stored(easel, png())
    path = tmp_path / "media" / gone["id"][-2:] / gone["id"]
    assert path.exists()
    assert (await easel.request("DELETE", gone["url"]))[0] == 204
    for suffix in ("", "/meta"):
        status, body, headers = await fetch(easel, gone["url"] + suffix)
        assert_problem(status, orjson.loads(body), headers, 404, "not_found")
    assert (await easel.request("DELETE", gone["url"]))[0] == 404
    assert not path.exists()
    assert (await fetch(easel, kept["url"]))[0] == 200


# -- fuzz --------------------------------------------------------------------------

SEEDS = [image(fmt, size=(9, 7)) for fmt in FORMATS]


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    valid = draw(st.sampled_from(SEEDS))
    noise = draw(st.binary(max_size=512))
    cut = draw(st.integers(0, len(valid)))
    flips = draw(st.lists(st.integers(0, len(valid) - 1), min_size=1, max_size=4))
    mangled = bytearray(valid)
    for index in flips:
        mangled[index] ^= 0xFF
    magic = valid[:12] if valid.startswith(b"RIFF") else valid[:8]
    return draw(st.sampled_from([noise, magic + noise, valid[:cut], bytes(mangled)]))


# aiohttp warns about each mangled Content-Disposition it reads; the part is then
# nameless, and refused.
@pytest.mark.filterwarnings("ignore::aiohttp.BadContentDispositionHeader")
@pytest.mark.filterwarnings("ignore::aiohttp.BadContentDispositionParam")
async def test_hostile_uploads_never_get_a_5xx(easel: Easel) -> None:
    loop = asyncio.get_running_loop()
    seen: set[int] = set()

    async def check_file(data: bytes) -> None:
        status, body, _ = await upload(easel, form(data))
        seen.add(status)
        assert status in {201, 400, 415}, (status, body)
        if status == 201:
            got, stored_bytes, headers = await fetch(easel, body["url"])
            assert (got, stored_bytes) == (200, data)
            assert headers["Content-Type"] == body["content_type"]
        elif not data:
            assert status == 400

    async def check_body(raw: bytes) -> None:
        status, body, _ = await upload(easel, raw, {"Content-Type": MULTIPART})
        seen.add(status)
        assert status in {201, 400, 415}, (status, body)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=hostile())
    def files(data: bytes) -> None:
        asyncio.run_coroutine_threadsafe(check_file(data), loop).result()

    whole = multipart(png(size=(5, 5)))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        cut=st.integers(0, len(whole)), noise=st.binary(max_size=64), at=st.integers(0, len(whole))
    )
    def bodies(cut: int, noise: bytes, at: int) -> None:
        raw = whole[:at] + noise + whole[at:cut] if at < cut else whole[:cut] + noise
        asyncio.run_coroutine_threadsafe(check_body(raw), loop).result()

    await asyncio.to_thread(files)
    await asyncio.to_thread(bodies)
    assert 415 in seen
    assert 400 in seen
    assert (await easel.request("GET", "/api/v1/health"))[0] == 200
